"""The QKD network: graph, links with key pools, transfers, faults and records, on one clock.

:class:`QKDNetwork` is the entry point for the co-simulation layer: build it from a
:class:`~network.topology.TopologySpec` on a SimPy environment, call :meth:`QKDNetwork.transfer`
to start transfers (each a SimPy process whose value is its
:class:`~network.records.TransferRecord`), inject faults, and read records and the summary.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from typing import get_args

import networkx as nx
import numpy as np
import simpy

from network.cipher import (
    BitStore,
    CipherPolicy,
    KeySource,
    NoCipher,
    OneTimePad,
    random_key_source,
)
from network.errors import KeyNeverSuffices, NodeNotFound, NoPath
from network.keypool import FluidKeyPool, PoolObserver
from network.link import Link, _system, link_rates_bps
from network.records import (
    FaultRecord,
    LinkSummary,
    PoolLog,
    Summary,
    TransferRecord,
    summarize,
)
from network.routing import Router, check_path, get_router
from network.topology import LinkSpec, TopologySpec, build_graph
from network.transfer import FaultPolicy, Transfer
from qkd.errors import ParameterError, UnknownNameError

__all__ = ["KeySourceFactory", "PoolFactory", "QKDNetwork", "attack_rate_factor"]

PoolFactory = Callable[[simpy.Environment, LinkSpec, float, PoolObserver | None], FluidKeyPool]
"""``factory(env, spec, rate_bps, observer) -> pool``: an alternative key-supply model."""
KeySourceFactory = Callable[[LinkSpec, np.random.SeedSequence], KeySource]
"""``factory(spec, seed) -> source`` of real key bits for a link (bit-exact mode)."""

_POLICIES: tuple[str, ...] = get_args(FaultPolicy)
ABORT_QBER = 0.11
"""QBER above which BB84 post-processing aborts (Shor-Preskill limit, about 11%)."""


def _h2(p: float) -> float:
    if p <= 0 or p >= 1:
        return 0.0
    return -p * math.log2(p) - (1 - p) * math.log2(1 - p)


def attack_rate_factor(
    qber: float, *, baseline_qber: float = 0.01, f_ec: float = 1.16, threshold: float = ABORT_QBER
) -> float:
    """Fraction of a link's key rate left while an eavesdropper raises its QBER to ``qber``.

    Zero above the abort ``threshold``; below it, the ratio of the asymptotic BB84 secret
    fractions ``1 - h(Q) - f_ec h(Q)`` at ``qber`` and at the link's own ``baseline_qber``.

    References
    ----------
    P. W. Shor and J. Preskill, "Simple proof of security of the BB84 quantum key
    distribution protocol", Phys. Rev. Lett. 85, 441 (2000).

    Examples
    --------
    >>> attack_rate_factor(0.25)  # full intercept-resend: the link aborts
    0.0
    >>> round(attack_rate_factor(0.03), 3)
    0.703
    """
    if not (isinstance(qber, int | float) and 0 <= qber <= 0.5):
        raise ParameterError("eavesdropper.qber", qber, "in [0, 0.5]")
    if qber > threshold:
        return 0.0

    def frac(q: float) -> float:
        return max(0.0, 1.0 - _h2(q) - f_ec * _h2(q))

    base = frac(baseline_qber)
    return 0.0 if base <= 0 else min(1.0, frac(qber) / base)


def pipeline_key_source(spec: LinkSpec, seed: np.random.SeedSequence) -> KeySource:
    """Real key bits from the ``qkd`` BB84 pipeline run for the link's system and length."""
    from qkd.pipeline import generate_key  # imported on demand: only bit-exact runs need it

    system = _system(spec)
    children = iter(seed.spawn(1 << 16))
    yield_per_pulse = [1e-3]  # learnt from the runs so far

    def source(n_bits: int) -> np.ndarray:
        pulses = int(min(5e7, max(1e5, 1.5 * n_bits / yield_per_pulse[0])))
        for _ in range(4):  # a run too short for its statistics aborts: run longer
            key = np.asarray(
                generate_key(system, spec.length_km, pulses, seed=next(children)), dtype=np.uint8
            )
            if key.size:
                yield_per_pulse[0] = key.size / pulses
                return key
            pulses *= 4
        return key

    return source


class QKDNetwork:
    """A QKD network on a SimPy environment.

    Parameters
    ----------
    env : simpy.Environment
    topology : TopologySpec
    cipher : CipherPolicy, optional
        How transfers consume key (default :class:`~network.cipher.OneTimePad`).
    seed : int or SeedSequence
        Randomness of bit-exact mode (key bits, generated payloads); the fluid simulation
        itself is deterministic.
    bit_exact : bool
        Hold real key bits per link and really encrypt, send and check every chunk.
    routing : {"latency", "key-aware"} or Router
        Path selection.
    on_fault : {"reroute", "wait", "fail"}
        Default reaction of a transfer caught by a fault.
    key_source : {"random", "pipeline"} or callable
        Bit-exact mode: where the key bits come from (the BB84 pipeline of ``qkd``, uniform
        random bits, or a :data:`KeySourceFactory`).
    pool_factory : callable, optional
        An alternative key-supply model (see :data:`PoolFactory`).
    record_pool_levels : bool
        Log every pool change to :attr:`pool_log`.

    Raises
    ------
    ParameterError
        A bad option, or a cipher whose per-message key exceeds some pool's capacity.

    Examples
    --------
    >>> from network import LinkSpec, NodeSpec, TopologySpec
    >>> env = simpy.Environment()
    >>> topo = TopologySpec(nodes=(NodeSpec("A"), NodeSpec("B", role="server")),
    ...                     links=(LinkSpec("A", "B", 10.0, skr_bps=1e4, latency_s=0.0),))
    >>> net = QKDNetwork(env, topo, OneTimePad(auth_bits=0))
    >>> rec = env.run(net.transfer("A", "B", 1000))
    >>> rec.status, round(rec.key_wait_s, 6), rec.key_bits
    ('delivered', 0.8, (('A-B', 8000.0),))
    """

    def __init__(
        self,
        env: simpy.Environment,
        topology: TopologySpec,
        cipher: CipherPolicy | None = None,
        *,
        seed: int | np.random.SeedSequence = 0,
        bit_exact: bool = False,
        routing: str | Router = "latency",
        on_fault: FaultPolicy = "reroute",
        key_source: str | KeySourceFactory = "pipeline",
        pool_factory: PoolFactory | None = None,
        record_pool_levels: bool = True,
    ) -> None:
        if not isinstance(topology, TopologySpec):
            raise ParameterError("topology", topology, "a TopologySpec")
        if on_fault not in _POLICIES:
            raise UnknownNameError("on_fault", on_fault, _POLICIES)
        self.env = env
        self.topology = topology
        self.cipher: CipherPolicy = cipher if cipher is not None else OneTimePad()
        self.bit_exact = bool(bit_exact)
        self.on_fault: FaultPolicy = on_fault
        self.router: Router = get_router(routing) if isinstance(routing, str) else routing
        self.seed = (
            seed if isinstance(seed, np.random.SeedSequence) else (np.random.SeedSequence(seed))
        )
        self.pool_log = PoolLog()
        self.fault_log: list[FaultRecord] = []
        self.records: list[TransferRecord] = []
        self._active: dict[int, Transfer] = {}
        self._next_id = 0
        self.nodes_down: set[str] = set()
        self.graph = build_graph(topology)
        self._node_watchers: dict[str, set[Transfer]] = {n: set() for n in self.graph}
        self.changed: simpy.Event = env.event()
        self._component = {
            n: i for i, comp in enumerate(nx.connected_components(self.graph)) for n in comp
        }
        rates = link_rates_bps(topology.links)
        seeds = self.seed.spawn(len(topology.links) + 1)
        self._rng = np.random.default_rng(seeds[-1])
        if isinstance(key_source, str):
            if key_source not in ("pipeline", "random"):
                raise UnknownNameError("key_source", key_source, ("pipeline", "random"))
        self.links: dict[frozenset[str], Link] = {}
        self.hop_links: dict[tuple[str, str], Link] = {}  # (u, v) -> link, both directions
        for spec, rate, ss in zip(topology.links, rates, seeds, strict=False):
            observer = self.pool_log.observer(env, spec.name) if record_pool_levels else None
            pool = pool_factory(env, spec, rate, observer) if pool_factory else None
            link = Link(env, spec, rate, observer=observer, pool=pool)
            link.cipher_state = self.cipher.init()
            if self.bit_exact:
                if key_source == "random":
                    src = random_key_source(ss)
                elif key_source == "pipeline":
                    src = pipeline_key_source(spec, ss)
                else:
                    src = key_source(spec, ss)  # type: ignore[operator]
                link.bits = BitStore(src, seed=ss.spawn(1)[0], name=spec.name)
            self.links[frozenset((spec.a, spec.b))] = link
            self.hop_links[spec.a, spec.b] = self.hop_links[spec.b, spec.a] = link
            self.graph.edges[spec.a, spec.b]["link"] = link
        self.chunk_bytes: int | None = None
        if self.links and not isinstance(self.cipher, NoCipher):
            smallest = min(self.links.values(), key=lambda lk: lk.pool.capacity)
            cb = self.cipher.max_chunk_bytes(smallest.pool.capacity)
            if cb is not None and cb < 1:
                raise ParameterError(
                    f"link {smallest.name}: capacity_bits",
                    smallest.pool.capacity,
                    f"large enough for one message of cipher {self.cipher.name!r}",
                )
            self.chunk_bytes = cb

    # -- lookup ------------------------------------------------------------------------
    def link(self, a: str, b: str) -> Link:
        """The link joining ``a`` and ``b`` (either order)."""
        for n in (a, b):
            if n not in self.graph:
                raise NodeNotFound(n)
        try:
            return self.links[frozenset((a, b))]
        except KeyError:
            raise NoPath(a, b, f"there is no link {a}-{b}") from None

    def route_bits(self, chunk_bytes: int) -> float:
        """Key bits one chunk of this size needs on a fresh link (for key-aware routing)."""
        return float(self.cipher.plan(self.cipher.init(), chunk_bytes, self.env.now).bits)

    def route(self, src: str, dst: str, key_bits: float = 0.0) -> list[str] | None:
        """A path now, by the network's router (None if faults leave none)."""
        return self.router(self.graph, src, dst, key_bits)

    # -- transfers ---------------------------------------------------------------------
    def transfer(
        self,
        src: str,
        dst: str,
        n_bytes: int,
        *,
        tag: str = "",
        path: Sequence[str] | None = None,
        payload: bytes | None = None,
        on_fault: FaultPolicy | None = None,
    ) -> simpy.Process:
        """Start a transfer of ``n_bytes`` from ``src`` to ``dst``; returns its process.

        The process's value is the :class:`~network.records.TransferRecord`, also appended
        to :attr:`records` when it ends (delivered or failed).

        Parameters
        ----------
        path : sequence of str, optional
            A fixed path instead of the router's choice.
        payload : bytes, optional
            Bit-exact mode: the bytes to send (default: random bytes from the seed).
        on_fault : {"reroute", "wait", "fail"}, optional
            Overrides the network's policy for this transfer.

        Raises
        ------
        NodeNotFound
            ``src`` or ``dst`` is not a node.
        ParameterError
            ``n_bytes`` is not a positive integer, or a bad payload or policy.
        NoPath
            ``dst`` cannot be reached from ``src`` even with every link intact.
        KeyNeverSuffices
            The path crosses a link with no key rate and too little key in its pool.
        """
        for where, n in (("transfer.src", src), ("transfer.dst", dst)):
            if n not in self.graph:
                raise NodeNotFound(n, where=where)
        if isinstance(n_bytes, bool) or not isinstance(n_bytes, int | np.integer) or n_bytes < 1:
            raise ParameterError("transfer.n_bytes", n_bytes, "an integer >= 1")
        n_bytes = int(n_bytes)
        policy = self.on_fault if on_fault is None else on_fault
        if policy not in _POLICIES:
            raise UnknownNameError("transfer.on_fault", policy, _POLICIES)
        if self._component[src] != self._component[dst]:
            raise NoPath(src, dst)
        fixed = None
        if path is not None:
            fixed = check_path(self.graph, path)
            if fixed[0] != src or fixed[-1] != dst:
                raise ParameterError("transfer.path", list(path), f"from {src!r} to {dst!r}")
        if self.bit_exact:
            if payload is None:
                payload = self._rng.bytes(n_bytes)
            elif not isinstance(payload, bytes | bytearray) or len(payload) != n_bytes:
                raise ParameterError(
                    "transfer.payload", type(payload).__name__, f"bytes of length n_bytes={n_bytes}"
                )
        elif payload is not None:
            raise ParameterError("transfer.payload", "bytes", "None unless bit_exact=True")
        first = fixed
        if first is None and src == dst:
            first = [src]
        elif first is None:
            chunk = n_bytes if self.chunk_bytes is None else min(n_bytes, self.chunk_bytes)
            first = self.route(src, dst, self.route_bits(chunk))
            self._check_key(src, dst, first, n_bytes)
        elif fixed is not None:
            self._check_key(src, dst, fixed, n_bytes)
        tr = Transfer(
            self,
            self._next_id,
            src,
            dst,
            n_bytes,
            tag=tag,
            on_fault=policy,
            fixed_path=fixed,
            first_path=first,
            payload=payload,
        )
        self._next_id += 1
        self._active[tr.id] = tr
        tr.process = self.env.process(tr.run())
        return tr.process

    def _total_bits(self, link: Link, n_bytes: int) -> float:
        if self.chunk_bytes is None:
            return self.cipher.plan(link.cipher_state, n_bytes, self.env.now).bits
        full, rest = divmod(n_bytes, self.chunk_bytes)
        bits = full * self.cipher.plan(self.cipher.init(), self.chunk_bytes, 0.0).bits
        if rest:
            bits += self.cipher.plan(self.cipher.init(), rest, 0.0).bits
        return bits

    def _check_key(self, src: str, dst: str, path: list[str] | None, n_bytes: int) -> None:
        """Raise KeyNeverSuffices if the path (or, with none, the intact shortest path)
        crosses a link that will never hold the key needed."""
        if path is None:
            path = nx.dijkstra_path(self.graph, src, dst, weight="latency_s")
        dead = []
        need = 0.0
        for u, v in itertools.pairwise(path):
            link: Link = self.graph[u][v]["link"]
            if link.nominal_rate_bps > 0:
                continue
            bits = self._total_bits(link, n_bytes)
            if link.never_suffices(bits):
                dead.append(link)
                need = bits
        if dead:
            avail = dead[0].pool.level - dead[0].pool.pending_bits
            raise KeyNeverSuffices([lk.name for lk in dead], needed_bits=need, available_bits=avail)

    def _finished(self, tr: Transfer, rec: TransferRecord) -> None:
        self._active.pop(tr.id, None)
        self.records.append(rec)

    def in_progress(self) -> list[TransferRecord]:
        """Snapshots of the transfers not yet ended (status ``in_progress``)."""
        return [tr.snapshot("in_progress") for tr in self._active.values()]

    # -- faults ------------------------------------------------------------------------
    def _log(self, kind: str, target: str, detail: str = "") -> None:
        self.fault_log.append(FaultRecord(self.env.now, kind, target, detail))

    def _changed(self) -> None:
        self.router.invalidate()
        old, self.changed = self.changed, self.env.event()
        old.succeed()

    def fault_cause(self, link: Link) -> str:
        """Why ``link`` cannot carry traffic now, as a phrase for records."""
        if link.cut:
            return f"link {link.name} cut"
        if link.nodes_down:
            return f"node {sorted(link.nodes_down)[0]} down"
        if link.under_attack:
            return f"eavesdropper on link {link.name}"
        return f"link {link.name} unavailable"

    def _notify_link(self, link: Link, cause: str) -> None:
        for tr in list(link.transfers):
            tr.notify(cause, link=link)

    def cut_link(self, a: str, b: str) -> None:
        """Cut the fibre ``a-b``: no traffic and no key until :meth:`repair_link`."""
        link = self.link(a, b)
        if link.cut:
            return
        link.cut = True
        link.free_at = dict.fromkeys(link.free_at, self.env.now)
        link.update_rate()
        self._log("link_cut", link.name)
        self._notify_link(link, f"link {link.name} cut at t={self.env.now:g}")
        self._changed()

    def repair_link(self, a: str, b: str) -> None:
        """Repair a cut link; its pool keeps the key it held."""
        link = self.link(a, b)
        if not link.cut:
            return
        link.cut = False
        link.update_rate()
        self._log("link_repair", link.name)
        self._changed()

    def node_down(self, node: str) -> None:
        """Take a node down: it sends, receives and relays nothing; its links make no key."""
        if node not in self.graph:
            raise NodeNotFound(node)
        if node in self.nodes_down:
            return
        self.nodes_down.add(node)
        cause = f"node {node} down at t={self.env.now:g}"
        for nb in self.graph[node]:
            link = self.graph[node][nb]["link"]
            link.nodes_down.add(node)
            link.free_at = dict.fromkeys(link.free_at, self.env.now)
            link.update_rate()
            self._notify_link(link, cause)
        for tr in list(self._node_watchers[node]):
            tr.notify(cause, node=node)
        self._log("node_down", node)
        self._changed()

    def node_up(self, node: str) -> None:
        """Bring a node back up."""
        if node not in self.graph:
            raise NodeNotFound(node)
        if node not in self.nodes_down:
            return
        self.nodes_down.discard(node)
        for nb in self.graph[node]:
            link = self.graph[node][nb]["link"]
            link.nodes_down.discard(node)
            link.update_rate()
        self._log("node_up", node)
        self._changed()

    def start_eavesdropper(
        self, a: str, b: str, qber: float = 0.25, *, threshold: float = ABORT_QBER
    ) -> None:
        """An eavesdropper on ``a-b`` raises its QBER to ``qber``.

        Above ``threshold`` the link aborts key generation (rate 0) while the attack lasts
        and raises an alarm, so routing avoids it; key already in the pool is kept. Below
        it the rate drops by :func:`attack_rate_factor`.
        """
        link = self.link(a, b)
        system = _system(link.spec)
        link.attack_factor = attack_rate_factor(
            qber, baseline_qber=system.misalignment, f_ec=system.f_ec, threshold=threshold
        )
        link.under_attack = link.attack_factor == 0.0
        link.update_rate()
        self._log("eavesdrop_start", link.name, f"qber={qber:g}")
        if link.under_attack:
            self._notify_link(link, f"eavesdropper on link {link.name} at t={self.env.now:g}")
        self._changed()

    def stop_eavesdropper(self, a: str, b: str) -> None:
        """End the attack on ``a-b``: the link makes key at its nominal rate again."""
        link = self.link(a, b)
        link.attack_factor = 1.0
        link.under_attack = False
        link.update_rate()
        self._log("eavesdrop_end", link.name)
        self._changed()

    def start_tamper(self, a: str, b: str) -> None:
        """An active attacker alters ciphertexts on ``a-b``: each chunk sent over it fails
        its integrity check at the receiver, and its transfer fails with that reason."""
        link = self.link(a, b)
        link.tampered = True
        self._log("tamper_start", link.name)

    def stop_tamper(self, a: str, b: str) -> None:
        """End the tampering on ``a-b``."""
        link = self.link(a, b)
        link.tampered = False
        self._log("tamper_end", link.name)

    def wipe_pool(self, a: str, b: str) -> float:
        """Empty the pool of ``a-b`` (a scenario decision); returns the bits removed."""
        link = self.link(a, b)
        bits = link.pool.wipe()
        self._log("pool_wipe", link.name, f"bits={bits:.0f}")
        if link.nominal_rate_bps == 0:
            link.pool.fail_waiters(
                KeyNeverSuffices(
                    [link.name], needed_bits=link.pool.pending_bits, available_bits=0.0
                )
            )
        return bits

    # -- results -----------------------------------------------------------------------
    def link_summaries(self) -> list[LinkSummary]:
        """Key accounting of every link now."""
        out = []
        for link in self.links.values():
            acc = link.pool.accounting()
            out.append(LinkSummary(link=link.name, rate_bps=link.nominal_rate_bps, **acc))
        return out

    def summary(self) -> Summary:
        """Summary figures now (see :class:`~network.records.Summary`)."""
        return summarize(self.env.now, self.records, len(self._active), self.link_summaries())

    def key_consumed_by_transfers(self) -> float:
        """Key used or discarded by transfers (ended and in progress)."""
        total = 0.0
        for rec in [*self.records, *self.in_progress()]:
            total += rec.key_bits_total + rec.discarded_bits
        return total

    def __repr__(self) -> str:
        return (
            f"QKDNetwork({self.graph.number_of_nodes()} nodes, {len(self.links)} links, "
            f"cipher={self.cipher.name!r}, t={self.env.now:g})"
        )
