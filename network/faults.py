"""Scheduled faults: link cuts, node outages, eavesdroppers, tampering, pool wipes.

Faults are frozen specifications; :func:`schedule_faults` turns each into a plain SimPy
process that applies it to a :class:`~network.qkdnetwork.QKDNetwork` at ``start_s`` and
undoes it at ``end_s`` (if given). Every change is logged in ``network.fault_log``.
"""

from __future__ import annotations

import math
from collections.abc import Generator, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import simpy

from qkd.errors import ParameterError

if TYPE_CHECKING:
    from network.qkdnetwork import QKDNetwork

__all__ = [
    "Eavesdropper",
    "Fault",
    "LinkCut",
    "NodeOutage",
    "PoolWipe",
    "Tamper",
    "schedule_faults",
]


def _window(kind: str, start: float, end: float | None) -> None:
    if (
        isinstance(start, bool)
        or not isinstance(start, int | float)
        or not (math.isfinite(start) and start >= 0)
    ):
        raise ParameterError(f"{kind}.start_s", start, ">= 0")
    if end is not None and (
        isinstance(end, bool) or not isinstance(end, int | float) or not end > start
    ):
        raise ParameterError(f"{kind}.end_s", end, f"> start_s ({start}) or None")


@dataclass(frozen=True)
class LinkCut:
    """The fibre ``a-b`` is cut from ``start_s`` until ``end_s`` (None: for good)."""

    a: str
    b: str
    start_s: float
    end_s: float | None = None

    def __post_init__(self) -> None:
        _window("link_cut", self.start_s, self.end_s)

    def begin(self, net: QKDNetwork) -> None:
        net.cut_link(self.a, self.b)

    def end(self, net: QKDNetwork) -> None:
        net.repair_link(self.a, self.b)


@dataclass(frozen=True)
class NodeOutage:
    """Node ``node`` is down from ``start_s`` until ``end_s``."""

    node: str
    start_s: float
    end_s: float | None = None

    def __post_init__(self) -> None:
        _window("node_outage", self.start_s, self.end_s)

    def begin(self, net: QKDNetwork) -> None:
        net.node_down(self.node)

    def end(self, net: QKDNetwork) -> None:
        net.node_up(self.node)


@dataclass(frozen=True)
class Eavesdropper:
    """An eavesdropper on ``a-b`` raising its QBER to ``qber`` (above ``threshold``, 11% by
    default, the link makes no key while the attack lasts)."""

    a: str
    b: str
    start_s: float
    end_s: float | None = None
    qber: float = 0.25
    threshold: float = 0.11

    def __post_init__(self) -> None:
        _window("eavesdropper", self.start_s, self.end_s)
        if not (isinstance(self.qber, int | float) and 0 <= self.qber <= 0.5):
            raise ParameterError("eavesdropper.qber", self.qber, "in [0, 0.5]")
        if not (isinstance(self.threshold, int | float) and 0 < self.threshold <= 0.5):
            raise ParameterError("eavesdropper.threshold", self.threshold, "in (0, 0.5]")

    def begin(self, net: QKDNetwork) -> None:
        net.start_eavesdropper(self.a, self.b, self.qber, threshold=self.threshold)

    def end(self, net: QKDNetwork) -> None:
        net.stop_eavesdropper(self.a, self.b)


@dataclass(frozen=True)
class Tamper:
    """An active attacker alters ciphertexts on ``a-b`` (detected by authentication)."""

    a: str
    b: str
    start_s: float
    end_s: float | None = None

    def __post_init__(self) -> None:
        _window("tamper", self.start_s, self.end_s)

    def begin(self, net: QKDNetwork) -> None:
        net.start_tamper(self.a, self.b)

    def end(self, net: QKDNetwork) -> None:
        net.stop_tamper(self.a, self.b)


@dataclass(frozen=True)
class PoolWipe:
    """The scenario empties the pool of ``a-b`` at ``start_s``."""

    a: str
    b: str
    start_s: float

    def __post_init__(self) -> None:
        _window("pool_wipe", self.start_s, None)

    @property
    def end_s(self) -> None:
        return None

    def begin(self, net: QKDNetwork) -> None:
        net.wipe_pool(self.a, self.b)

    def end(self, net: QKDNetwork) -> None:
        return None


Fault = LinkCut | NodeOutage | Eavesdropper | Tamper | PoolWipe


def _fault_process(
    env: simpy.Environment, net: QKDNetwork, fault: Fault
) -> Generator[simpy.Event, Any, None]:
    if fault.start_s > env.now:
        yield env.timeout(fault.start_s - env.now)
    fault.begin(net)
    if fault.end_s is not None:
        yield env.timeout(fault.end_s - env.now)
        fault.end(net)


def schedule_faults(
    env: simpy.Environment, net: QKDNetwork, faults: Iterable[Fault]
) -> list[simpy.Process]:
    """Start one process per fault; names are checked now (unknown node/link raises).

    Examples
    --------
    >>> from network import LinkSpec, NodeSpec, QKDNetwork, TopologySpec
    >>> env = simpy.Environment()
    >>> net = QKDNetwork(env, TopologySpec((NodeSpec("A"), NodeSpec("B")),
    ...                                    (LinkSpec("A", "B", 5.0, skr_bps=1e3),)))
    >>> _ = schedule_faults(env, net, [LinkCut("A", "B", 10.0, 20.0)])
    >>> env.run(until=30)
    >>> [(f.time, f.kind) for f in net.fault_log]
    [(10.0, 'link_cut'), (20.0, 'link_repair')]
    """
    procs = []
    for fault in faults:
        if isinstance(fault, NodeOutage):
            if fault.node not in net.graph:
                from network.errors import NodeNotFound

                raise NodeNotFound(fault.node, where="fault.node")
        else:
            net.link(fault.a, fault.b)
        procs.append(env.process(_fault_process(env, net, fault)))
    return procs
