"""From a scenario (or a finished run's folder) to a :class:`~qfl.kme.service.KeyService`.

The network is the one ``qfl simulate`` builds (:mod:`qfl.cosim.netbuild`: same links, key
rates, pool capacities, block delivery, faults), on its own SimPy environment driven by the
service clock. With ``replay``, the finished run's key takes (``keypools.csv``: the model
transfers of that run) are re-applied at their simulated times, so the KME's applications
compete for key with the run's own traffic, and see its faults.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import simpy

from network import NoCipher, QKDNetwork, schedule_faults
from qfl.cosim.netbuild import build_faults, build_topology
from qfl.kme.clock import ServiceClock
from qfl.kme.journal import Journal
from qfl.kme.service import KeyService
from qfl.kme.spec import Limits
from qfl.scenario import Scenario, load_scenario
from qkd.errors import ParameterError

__all__ = ["ReplayFeed", "build_service", "default_saes", "load_replay", "parse_sae_options"]


def default_saes(sc: Scenario) -> dict[str, str]:
    """One SAE per client node, named after it (``hospital``, ``bank``, ...); a scenario
    with no client nodes gets one per node that is not a relay."""
    topo = build_topology(sc)
    clients = [n.name for n in topo.nodes if n.role == "client"]
    if not clients:
        clients = [n.name for n in topo.nodes if n.role != "relay"]
    return {n: n for n in clients}


def parse_sae_options(values: Sequence[str], nodes: Sequence[str]) -> dict[str, str]:
    """``--sae NAME=NODE`` options as ``{NAME: NODE}``.

    Examples
    --------
    >>> parse_sae_options(["hospital-2=hospital"], ["hospital", "bank"])
    {'hospital-2': 'hospital'}
    """
    out: dict[str, str] = {}
    for v in values:
        name, eq, node = v.partition("=")
        if not eq or not name or not node:
            raise ParameterError("--sae", v, "NAME=NODE (an SAE ID and the node of its KME)")
        if not all(c.isalnum() or c in "-_." for c in name) or len(name) > 64:
            raise ParameterError("--sae", v, "a NAME of letters, digits, '-', '_', '.' (<= 64)")
        if node not in nodes:
            raise ParameterError("--sae", v, f"a NODE among {', '.join(nodes)}")
        if name in out:
            raise ParameterError("--sae", v, f"a NAME not given before ({name!r} is)")
        out[name] = node
    return out


@dataclass
class ReplayFeed:
    """The key takes of a finished run, re-applied to the service's pools on its clock.

    Attributes
    ----------
    takes : list of (float, str, float)
        ``(time, link, bits)`` in time order.
    shortfall_bits : float
        Bits the run took that the pools no longer held (the KME's clients took them first).
    """

    takes: list[tuple[float, str, float]]
    shortfall_bits: float = 0.0
    applied: int = 0

    @property
    def end_s(self) -> float:
        """Time of the last take."""
        return self.takes[-1][0] if self.takes else 0.0

    def start(self, net: QKDNetwork) -> simpy.Process:
        """Run the feed as a process of ``net``'s environment."""
        links = {lk.name: lk for lk in net.links.values()}
        unknown = sorted({name for _, name, _ in self.takes} - set(links))
        if unknown:
            raise ParameterError("--replay keypools.csv link", unknown[0], "a link of the run")

        def feed() -> Any:
            env = net.env
            for t, name, bits in self.takes:
                if t > env.now:
                    yield env.timeout(t - env.now)
                pool = links[name].pool
                got = min(bits, pool.level)
                if got > 0:
                    pool.try_take(got)
                self.shortfall_bits += bits - got
                self.applied += 1

        return net.env.process(feed())


def load_replay(folder: str | Path) -> tuple[Scenario, ReplayFeed]:
    """The scenario and the key takes of a finished run folder (``qfl simulate``'s output).

    Raises
    ------
    ParameterError
        ``--replay``: not a run folder (no ``scenario.yaml`` or ``keypools.csv``).
    """
    d = Path(folder)
    for name in ("scenario.yaml", "keypools.csv"):
        if not (d / name).is_file():
            raise ParameterError("--replay", str(folder), f"a run folder with {name}")
    sc = load_scenario(d / "scenario.yaml")
    takes = []
    with open(d / "keypools.csv", newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            if row.get("event") == "take":
                try:
                    takes.append((float(row["sim_time_s"]), row["link"], float(row["bits"])))
                except (KeyError, TypeError, ValueError):
                    raise ParameterError(
                        "--replay keypools.csv", str(row)[:80], "rows of sim_time_s, link, bits"
                    ) from None
    takes.sort(key=lambda r: r[0])
    return sc, ReplayFeed(takes)


def build_service(
    sc: Scenario,
    clock: ServiceClock,
    *,
    saes: Mapping[str, str] | None = None,
    limits: Limits | None = None,
    journal: str | Path | None = None,
    replay: ReplayFeed | None = None,
) -> KeyService:
    """The KMEs of the scenario's network, its faults scheduled, on ``clock``.

    Parameters
    ----------
    journal : path, optional
        The journal file: replayed first if it exists (a restart), then appended to.
    """
    topo = build_topology(sc)
    env = simpy.Environment()
    routing = sc.routing or (
        "key-aware" if any(lk.skr_bps == 0 for lk in topo.links) else "latency"
    )
    net = QKDNetwork(env, topo, NoCipher(), seed=sc.seed, routing=routing, record_pool_levels=False)
    schedule_faults(env, net, build_faults(sc))
    if replay is not None:
        replay.start(net)
    service = KeyService(net, saes if saes is not None else default_saes(sc), clock, limits)
    if journal is not None:
        clock.resume(service.restore(str(journal)))
        service.journal = Journal(journal)
    return service
