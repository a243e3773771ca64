"""The QKD network: graph, links with key pools, transfers, faults and records, on one clock.

:class:`QKDNetwork` is the entry point for the co-simulation layer: build it from a
:class:`~network.topology.TopologySpec` on a SimPy environment, call :meth:`QKDNetwork.transfer`
to start transfers (each a SimPy process whose value is its
:class:`~network.records.TransferRecord`), inject faults, and read records and the summary.

Links whose :class:`~network.topology.LinkSpec` carries a supply ``schedule`` follow it from
the network's construction on (:func:`~network.schedule.apply_schedule`, one event per change
of the factor); the windows that key waited for are recorded in
:attr:`QKDNetwork.window_waits`.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from typing import get_args

import networkx as nx
import numpy as np
import simpy

from network import faults
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
from network.link import Link, _system, link_between, link_rates_bps
from network.records import (
    FaultRecord,
    LinkSummary,
    PoolLog,
    Summary,
    TransferRecord,
    WindowWait,
    summarize,
)
from network.routing import Router, check_path, get_router
from network.schedule import ScheduleRun, apply_schedule
from network.topology import LinkSpec, TopologySpec, build_graph
from network.transfer import FaultPolicy, Transfer, TransferContext, fresh_key_bits
from qkd.errors import ParameterError, UnknownNameError

__all__ = ["KeySourceFactory", "PoolFactory", "QKDNetwork", "max_chunk_bytes"]

PoolFactory = Callable[[simpy.Environment, LinkSpec, float, PoolObserver | None], FluidKeyPool]
"""``factory(env, spec, rate_bps, observer) -> pool``: an alternative key-supply model."""
KeySourceFactory = Callable[[LinkSpec, np.random.SeedSequence], KeySource]
"""``factory(spec, seed) -> source`` of real key bits for a link (bit-exact mode)."""

_POLICIES: tuple[str, ...] = get_args(FaultPolicy)


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


def max_chunk_bytes(cipher: CipherPolicy, capacities: Mapping[str, float]) -> int | None:
    """The largest chunk a transfer sends at once: one chunk's key must fit the smallest
    pool (None: no limit). A pure check, used before any network is built.

    Raises
    ------
    ParameterError
        Naming the link whose pool cannot hold the key of even one message.

    Examples
    --------
    >>> max_chunk_bytes(OneTimePad(auth_bits=0), {"A-B": 8e3, "B-C": 1.6e4})
    1000
    """
    if not capacities or isinstance(cipher, NoCipher):
        return None
    name = min(capacities, key=capacities.__getitem__)
    cb = cipher.max_chunk_bytes(capacities[name])
    if cb is not None and cb < 1:
        raise ParameterError(
            f"link {name}: capacity_bits",
            capacities[name],
            f"large enough for one message of cipher {cipher.name!r}",
        )
    return cb


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

    Attributes
    ----------
    records : list of TransferRecord
        The transfers that ended, in the order they ended.
    fault_log : list of FaultRecord
    pool_log : PoolLog
    window_waits : list of WindowWait
        Each time key requests on a scheduled link waited for a window of its supply
        schedule (a satellite pass, the end of a maintenance window), in time order.
    schedule_runs : dict of str to ScheduleRun
        The supply schedule applied to each scheduled link, by link name (its ``events``
        count the SimPy events it made).

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

    A link that makes key only during a pass from 100 s to 400 s (a supply schedule):

    >>> from network.schedule import Schedule
    >>> pass0 = Schedule([(100.0, 400.0, 1.0, "pass 0")], default=0.0)
    >>> sat = TopologySpec(nodes=topo.nodes, links=(LinkSpec(
    ...     "A", "B", 0.0, skr_bps=1e4, latency_s=0.0, schedule=pass0),))
    >>> net = QKDNetwork(env := simpy.Environment(), sat, OneTimePad(auth_bits=0))
    >>> rec = env.run(net.transfer("A", "B", 1000))
    >>> round(rec.t_end, 6), [(w.link, w.label, w.waited_s) for w in net.window_waits]
    (100.800008, [('A-B', 'pass 0', 100.0)])

    The constructor is kept as one function: links, pools, cipher sessions and key stores
    are built in one pass over the topology's links.
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
        self.window_waits: list[WindowWait] = []
        self.schedule_runs: dict[str, ScheduleRun] = {}
        self.records: list[TransferRecord] = []
        self._active: dict[int, Transfer] = {}
        self._next_id = 0
        self.graph = build_graph(topology)
        for n in self.graph:
            self.graph.nodes[n].update(down=False, transfers={})
        self.changed: simpy.Event = env.event()
        self._component = {
            n: i for i, comp in enumerate(nx.connected_components(self.graph)) for n in comp
        }
        rates = link_rates_bps(topology.links)
        seeds = self.seed.spawn(len(topology.links) + 1)
        self._rng = np.random.default_rng(seeds[-1])
        if isinstance(key_source, str) and key_source not in ("pipeline", "random"):
            raise UnknownNameError("key_source", key_source, ("pipeline", "random"))
        for spec, rate, ss in zip(topology.links, rates, seeds, strict=False):
            observer = self.pool_log.observer(env, spec.name) if record_pool_levels else None
            pool = pool_factory(env, spec, rate, observer) if pool_factory else None
            link = Link(env, spec, rate, observer=observer, pool=pool)
            link.cipher_state = self.cipher.init()
            link.session = self.cipher.session()
            if self.bit_exact:
                if key_source == "random":
                    src = random_key_source(ss)
                elif key_source == "pipeline":
                    src = pipeline_key_source(spec, ss)
                else:
                    src = key_source(spec, ss)  # type: ignore[operator]
                link.bits = BitStore(src, seed=ss.spawn(1)[0], name=spec.name)
            self.graph.edges[spec.a, spec.b]["link"] = link
            if spec.schedule is not None:
                self.schedule_runs[link.name] = apply_schedule(
                    env, link, spec.schedule, observer=self.window_waits.append
                )
        capacities = {lk.name: lk.pool.capacity for lk in self.links.values()}
        self.chunk_bytes = max_chunk_bytes(self.cipher, capacities)
        self._context = TransferContext(
            env,
            self.graph,
            self.cipher,
            self.router,
            self.chunk_bytes,
            changed=lambda: self.changed,
            ended=self._finished,
        )

    # -- lookup ------------------------------------------------------------------------
    @property
    def links(self) -> dict[frozenset[str], Link]:
        """Every link by its pair of ends, in topology order (read from the graph)."""
        return {
            frozenset((s.a, s.b)): self.graph.edges[s.a, s.b]["link"] for s in self.topology.links
        }

    def link(self, a: str, b: str) -> Link:
        """The link joining ``a`` and ``b`` (either order)."""
        return link_between(self.graph, a, b)

    def route_bits(self, chunk_bytes: int) -> float:
        """Key bits one chunk of this size needs on a fresh link (for key-aware routing)."""
        return fresh_key_bits(self.cipher, chunk_bytes, self.env.now)

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
            self._context,
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
        bits = 0.0
        if full:  # a chunk may be gigabytes (a large store, short re-keys): plan it only if sent
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

    # -- faults (see network.faults) -----------------------------------------------------
    def log_fault(self, kind: str, target: str, detail: str = "") -> None:
        """Append a :class:`~network.records.FaultRecord` at the current time."""
        self.fault_log.append(FaultRecord(self.env.now, kind, target, detail))

    def signal_change(self) -> None:
        """The network changed: routes are recomputed, blocked transfers look again."""
        self.router.invalidate()
        old, self.changed = self.changed, self.env.event()
        old.succeed()

    # one fault each, applied to this network
    cut_link = faults.cut_link
    repair_link = faults.repair_link
    node_down = faults.node_down
    node_up = faults.node_up
    start_eavesdropper = faults.start_eavesdropper
    stop_eavesdropper = faults.stop_eavesdropper
    start_tamper = faults.start_tamper
    stop_tamper = faults.stop_tamper
    wipe_pool = faults.wipe_pool

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
        g = self.graph
        return (
            f"QKDNetwork({g.number_of_nodes()} nodes, {g.number_of_edges()} links, "
            f"cipher={self.cipher.name!r}, t={self.env.now:g})"
        )
