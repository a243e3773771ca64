"""The network half of a co-simulation: when each learning operation happens.

The timeline of a run depends on key rates, model sizes and compute times, never on learned
values (ARCHITECTURE.md). So it is simulated first, on the network's SimPy clock, by one
generic runner of the methods' round plans (:mod:`qfl.cosim.plan`): a local update or a
fusion holds its node for ``FLOPs / node speed`` of simulated time, and every send is a
:meth:`network.QKDNetwork.transfer`, which waits for key on every hop, queues on the links'
bandwidth and propagates. The result, a :class:`Timeline`, says how many rounds completed
before the horizon, when each ended, and which transfers failed (a fault with no way
round). The learning half then executes exactly those rounds.

Compute contention on a node is not modelled beyond this: within a round a node does one
thing at a time by construction (a method's chains use disjoint nodes).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any, cast

import simpy

from network import NetworkError, QKDNetwork, TransferRecord
from network.routing import LatencyRouter
from qfl.cosim.plan import SERVER, Aggregate, Fuse, Op, RoundOps, Send, Train

__all__ = ["ComputeProfile", "Segment", "Timeline", "run_plan", "run_schedule"]


@dataclass(frozen=True)
class ComputeProfile:
    """What the schedule needs to know of the learning job (no learned values).

    Attributes
    ----------
    clients : tuple of str
        Client node names, in learner order (client ``i`` is ``clients[i]``).
    train_sizes : tuple of int
        Training samples per client.
    flops_per_s : tuple of float
        Compute speed of each client's node.
    train_flops_per_sample : tuple of float
        FLOPs of one training step per sample for each client (forward x backward factor,
        at the client's exit).
    fuse_flops_per_sample : tuple of float
        FLOPs per sample of fusing a received model (decentralized methods).
    upload_bytes : tuple of int
        Bytes a client sends (its model, or the part up to its exit).
    download_bytes : tuple of int
        Bytes the server sends to each client.
    local_epochs, fusion_epochs : int
        Epochs of a local update and of a fusion.
    server_flops_per_s : float
        Compute speed of the server (aggregation is counted as free).
    """

    clients: tuple[str, ...]
    train_sizes: tuple[int, ...]
    flops_per_s: tuple[float, ...]
    train_flops_per_sample: tuple[float, ...]
    fuse_flops_per_sample: tuple[float, ...]
    upload_bytes: tuple[int, ...]
    download_bytes: tuple[int, ...]
    local_epochs: int = 1
    fusion_epochs: int = 1

    def train_s(self, i: int, epochs: int | None = None) -> float:
        """Simulated seconds of a local update of client ``i``."""
        e = self.local_epochs if epochs is None else epochs
        return e * self.train_sizes[i] * self.train_flops_per_sample[i] / self.flops_per_s[i]

    def send_bytes(self, src: int, dst: int) -> int:
        """Bytes of a send: the server's download to ``dst``, or ``src``'s upload."""
        return self.download_bytes[dst] if src < 0 else self.upload_bytes[src]

    def fuse_s(self, i: int) -> float:
        """Simulated seconds of client ``i`` fusing a received model."""
        return (
            self.fusion_epochs
            * self.train_sizes[i]
            * self.fuse_flops_per_sample[i]
            / self.flops_per_s[i]
        )


@dataclass(frozen=True)
class Segment:
    """One step of a chain on the clock: ``compute`` (a local update or a fusion, at
    ``node``) or ``send`` (from ``node``; ``record`` is its transfer, None if the network
    refused it at once)."""

    kind: str
    node: str
    start_s: float
    end_s: float
    record: TransferRecord | None = None


@dataclass
class Timeline:
    """The network half of a run: rounds, their end times, failed transfers, operations.

    Attributes
    ----------
    rounds_done : int
        Rounds that completed before the horizon.
    round_end_s : list of float
        Simulated time at which round ``r`` (0-based) completed.
    dropped : set of tuple
        ``(round, src, dst, tag)`` of transfers that failed (the learner does not see them).
    ops : list of dict
        Every learning operation: ``round``, ``node``, ``op``, ``start_s``, ``end_s``.
    participants : list of tuple of int
        Server schedules: the clients (indices) whose update reached the server, per round
        (with client sampling, a subset of the round's sampled clients).
    round_start_s : list of float
        Simulated time at which round ``r`` started.
    critical : list of tuple of Segment
        Per round, the chain that finished last (the critical path of a synchronous round):
        its compute steps and sends with their transfer records.
    """

    rounds_done: int = 0
    round_end_s: list[float] = field(default_factory=list)
    dropped: set[tuple[int, str, str, str]] = field(default_factory=set)
    ops: list[dict[str, Any]] = field(default_factory=list)
    participants: list[tuple[int, ...]] = field(default_factory=list)
    round_start_s: list[float] = field(default_factory=list)
    critical: list[tuple[Segment, ...]] = field(default_factory=list)
    # Fires when the network can no longer change (no event left) while transfers still
    # wait: a fault with no way round that is never repaired. Those transfers then fail.
    _stalled: simpy.Event | None = field(default=None, repr=False, compare=False)

    def stalled_event(self, env: simpy.Environment) -> simpy.Event:
        """The event that fires when the run stalls (see :func:`run_schedule`)."""
        if self._stalled is None or self._stalled.triggered:
            self._stalled = env.event()
        return self._stalled

    def structure(self) -> tuple[Any, ...]:
        """What the learning depends on (no times): rounds, drops, participants."""
        return (self.rounds_done, tuple(sorted(self.dropped)), tuple(self.participants))


def _op(tl: Timeline, r: int, node: str, op: str, start: float, end: float) -> None:
    tl.ops.append({"round": r, "node": node, "op": op, "start_s": start, "end_s": end})


def _send(
    env: simpy.Environment,
    net: QKDNetwork,
    tl: Timeline,
    r: int,
    src: str,
    dst: str,
    n_bytes: int,
    tag: str,
) -> Generator[simpy.Event, Any, tuple[bool, TransferRecord | None]]:
    start = env.now
    rec: TransferRecord | None = None
    try:
        proc = net.transfer(src, dst, int(n_bytes), tag=f"r{r}/{tag}")
    except NetworkError as exc:  # e.g. a link with no key rate and too little key left
        why = str(exc)
    else:
        stalled = tl.stalled_event(env)
        yield proc | stalled
        if proc.triggered:
            rec = cast(TransferRecord, proc.value)
            why = "" if rec.status == "delivered" else rec.reason or "failed"
        else:
            why = "blocked by a fault that is never repaired"
    ok = not why
    if not ok:
        tl.dropped.add((r, src, dst, tag))
        if "produces no key" in why and isinstance(net.router, LatencyRouter):
            why += "; routing: latency does not avoid it (routing: key-aware routes around it)"
    _op(tl, r, src, f"send:{tag}->{dst}" + ("" if ok else f" (failed: {why})"), start, env.now)
    return ok, rec


def _chain(
    env: simpy.Environment,
    net: QKDNetwork,
    tl: Timeline,
    profile: ComputeProfile,
    server: str | None,
    r: int,
    chain: tuple[Op, ...],
    segments: list[Segment],
) -> Generator[simpy.Event, Any, bool]:
    """One chain of a round's plan; ``False`` if one of its sends failed (it stops there).
    Each step goes to ``segments``."""
    names = profile.clients

    def name(i: int) -> str:
        return str(server) if i == SERVER else names[i]

    for op in chain:
        t0 = env.now
        if isinstance(op, Train | Fuse):
            train = isinstance(op, Train)
            yield env.timeout(profile.train_s(op.node) if train else profile.fuse_s(op.node))
            _op(tl, r, names[op.node], "local-update" if train else "fuse", t0, env.now)
            segments.append(Segment("compute", names[op.node], t0, env.now))
        elif isinstance(op, Send):
            size = profile.send_bytes(op.src, op.dst)
            ok, rec = yield from _send(env, net, tl, r, name(op.src), name(op.dst), size, op.tag)
            segments.append(Segment("send", name(op.src), t0, env.now, rec))
            if not ok:
                return False
    return True


def _client_of(chain: tuple[Op, ...], i: int) -> int:
    """The client a server chain serves (its local update's node; else its index)."""
    return next((op.node for op in chain if isinstance(op, Train)), i)


def run_plan(
    env: simpy.Environment,
    net: QKDNetwork,
    profile: ComputeProfile,
    plan_of: Callable[[int], RoundOps],
    rounds: int,
    tl: Timeline,
    *,
    server: str | None = None,
) -> Generator[simpy.Event, Any, None]:
    """SimPy process: the rounds of a method's plan, one after another.

    Parameters
    ----------
    plan_of : callable
        ``plan_of(r)`` -> the :class:`~qfl.cosim.plan.RoundOps` of round ``r``.
    rounds : int
        Rounds to run (the horizon may stop the environment earlier).
    tl : Timeline
        Filled in place.
    server : str, optional
        The aggregator's node (plans with :data:`~qfl.cosim.plan.SERVER`).
    """
    for r in range(rounds):
        ops = plan_of(r)
        start = env.now
        segs: list[list[Segment]] = [[] for _ in ops.chains]
        procs = [
            env.process(_chain(env, net, tl, profile, server, r, c, sg))
            for c, sg in zip(ops.chains, segs, strict=True)
        ]
        results = yield env.all_of(procs)
        ends = [sg[-1].end_s if sg else start for sg in segs]
        tl.round_start_s.append(start)
        tl.critical.append(tuple(segs[ends.index(max(ends))]) if segs else ())
        if any(isinstance(op, Aggregate) for op in ops.end):
            arrived = tuple(
                _client_of(c, i)
                for i, (c, p) in enumerate(zip(ops.chains, procs, strict=True))
                if results[p]
            )
            _op(tl, r, str(server), "aggregate", env.now, env.now)
            tl.participants.append(arrived)
        tl.round_end_s.append(env.now)
        tl.rounds_done = r + 1


def run_schedule(
    env: simpy.Environment,
    process: Generator[simpy.Event, Any, None],
    horizon_s: float | None,
    tl: Timeline | None = None,
) -> None:
    """Run a schedule process to its end, or until the horizon.

    If the network runs out of events while the schedule still waits (transfers blocked by
    a fault with no way round that is never repaired: nothing can change any more), the
    waiting transfers are given up as failed (``tl``'s stall event), and the run goes on.
    """
    proc = env.process(process)
    while not proc.processed:
        t = env.peek()
        if t == math.inf:
            stalled = tl._stalled if tl is not None else None
            if stalled is None or stalled.triggered or not stalled.callbacks:
                break  # nothing waits on the network: the schedule cannot go on
            stalled.succeed()
            continue
        if horizon_s is not None and t > horizon_s:
            break
        env.step()
    if horizon_s is not None and not proc.processed and env.now < horizon_s:
        env.run(until=horizon_s)
