"""The transfer process: route, take key on every hop, transmit hop by hop, deliver.

One :class:`Transfer` per request; its :meth:`Transfer.run` generator is the SimPy process.
A message is cut into chunks when its key would not fit in the smallest pool (one-time pad
transfers larger than a pool stream in chunks, each taking its key as it comes). For each
chunk, on the current path:

1. **key**: the key of every hop is requested at once (trusted relays re-encrypt hop by
   hop, so every hop pays); a request that the pool can serve now costs no event, the others
   wait in the pool's FIFO queue and wake exactly when their bits are there;
2. **transmit**: store-and-forward; on each hop the chunk queues FIFO for the sending
   direction of the link (``free_at``), is serialised at the link's bandwidth and propagates
   for the link's latency (one timeout per hop).

Faults: a transfer registers on the links and nodes of its path. A fault on a link or node
interrupts it while it waits for key (policies ``reroute`` and ``fail``) or while it crosses
the broken hop (every policy; the chunk in flight is lost and re-sent, its key is kept). Then
``reroute`` looks for a new path from the node holding the chunk (waiting for the network to
change while there is none), ``wait`` waits until its own path works again, ``fail`` ends the
transfer with the fault as its reason. A transfer on a fixed path treats ``reroute`` as
``wait``. Key taken for hops that a new path no longer uses is counted as discarded.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import networkx as nx
import simpy

from network.cipher import CipherPolicy, Hop, IntegrityError, KeyPlan
from network.errors import NetworkError
from network.link import Link
from network.records import TransferRecord
from network.routing import Router

if TYPE_CHECKING:
    from network.keypool import KeyRequest

__all__ = ["FaultPolicy", "Transfer", "TransferContext", "fresh_key_bits"]

FaultPolicy = Literal["reroute", "wait", "fail"]

_IDLE, _KEY, _TX, _BLOCKED = 0, 1, 2, 3


def fresh_key_bits(cipher: CipherPolicy, n_bytes: int, now: float) -> float:
    """Key bits one message of ``n_bytes`` needs on a link that has carried nothing yet."""
    return float(cipher.plan(cipher.init(), n_bytes, now).bits)


@dataclass(frozen=True)
class TransferContext:
    """What a transfer uses of its network.

    Attributes
    ----------
    env : simpy.Environment
    graph : networkx.Graph
        Links as the edge attribute ``link``; per node, ``down`` (bool) and ``transfers``
        (the transfers to tell when the node goes down).
    cipher : CipherPolicy
    router : Router
    chunk_bytes : int or None
        Largest chunk whose key fits in every pool (None: no limit).
    changed : callable
        ``changed()`` is the event that fires at the network's next fault or repair.
    ended : callable
        ``ended(transfer, record)`` is called once when the transfer ends.
    """

    env: simpy.Environment
    graph: nx.Graph
    cipher: CipherPolicy
    router: Router
    chunk_bytes: int | None
    changed: Callable[[], simpy.Event]
    ended: Callable[[Transfer, TransferRecord], None]


class Transfer:
    """State of one transfer; ``run()`` is its SimPy process (value: the record)."""

    def __init__(
        self,
        ctx: TransferContext,
        tid: int,
        src: str,
        dst: str,
        n_bytes: int,
        *,
        tag: str,
        on_fault: FaultPolicy,
        fixed_path: list[str] | None,
        first_path: list[str] | None,
        payload: bytes | None,
    ) -> None:
        self.ctx = ctx
        self.id = tid
        self.src, self.dst = src, dst
        self.n_bytes = n_bytes
        self.tag = tag
        self.on_fault: FaultPolicy = on_fault
        self.fixed = fixed_path is not None
        self.path: list[str] | None = fixed_path if fixed_path is not None else first_path
        self.payload = payload
        self.delivered = bytearray() if payload is not None else None
        self.t_request = ctx.env.now
        self.key_wait_s = self.queued_s = self.transmit_s = self.propagation_s = 0.0
        self.key_used: dict[str, float] = {}
        self.key_wait_by_link: dict[str, float] = {}
        self.discarded_bits = 0.0
        self.chunks = 0
        self.reroutes = 0
        self.phase = _IDLE
        self.tx_link: Link | None = None
        self.cause = ""
        self._interrupting = False
        self._fatal: str | None = None
        self._links: list[Link] = []
        self._nodes: list[str] = []
        self.process: simpy.Process | None = None
        self.record: TransferRecord | None = None

    # -- notifications from the network ------------------------------------------------
    def notify(self, cause: str, link: Link | None = None, node: str | None = None) -> None:
        """A fault touched this transfer's path; interrupt it if it matters now."""
        proc = self.process
        if proc is None or not proc.is_alive or self._interrupting:
            return
        hit = False
        if self.phase == _KEY:
            hit = self.on_fault != "wait" and not (self.fixed and self.on_fault == "reroute")
        elif self.phase == _TX and self.tx_link is not None:
            tl = self.tx_link
            if link is tl and not tl.usable:
                hit = True
            if node is not None and node in (tl.a, tl.b):
                hit = True
        if hit:
            self.cause = cause
            self._interrupting = True
            proc.interrupt(cause)

    def _wait(self, event: simpy.Event) -> Generator[simpy.Event, Any, bool]:
        """Yield ``event``; False if interrupted by a fault (or failed for good)."""
        try:
            yield event
            return True
        except simpy.Interrupt as intr:
            self._interrupting = False
            self.cause = str(intr.cause)
            return False
        except NetworkError as exc:
            self._fatal = str(exc)
            return False

    def _link(self, u: str, v: str) -> Link:
        link: Link = self.ctx.graph.edges[u, v]["link"]
        return link

    def _register(self, path: list[str]) -> None:
        self._unregister()
        for u, v in itertools.pairwise(path):
            link = self._link(u, v)
            link.transfers[self] = None
            self._links.append(link)
        nodes = self.ctx.graph.nodes
        for n in path:
            nodes[n]["transfers"][self] = None
            self._nodes.append(n)

    def _unregister(self) -> None:
        for link in self._links:
            link.transfers.pop(self, None)
        nodes = self.ctx.graph.nodes
        for n in self._nodes:
            nodes[n]["transfers"].pop(self, None)
        self._links.clear()
        self._nodes.clear()

    # -- the process -------------------------------------------------------------------
    def run(self) -> Generator[simpy.Event, Any, TransferRecord]:
        remaining = self.n_bytes
        chunk_max = self.ctx.chunk_bytes
        if self.src != self.dst:
            while remaining > 0:
                chunk = remaining if chunk_max is None else min(remaining, chunk_max)
                self.chunks += 1
                offset = self.n_bytes - remaining
                ok = yield from self._send_chunk(chunk, offset)
                if not ok:
                    return self._finish("failed")
                remaining -= chunk
        return self._finish("delivered")

    def _path_from(self, at: str) -> list[str] | None:
        """The current path's remainder from ``at`` if it works now (for ``reroute``, also
        free of eavesdropping alarms)."""
        if self.path is None or at not in self.path:
            return None
        rest = self.path[self.path.index(at) :]
        nodes = self.ctx.graph.nodes
        for n in rest:
            if nodes[n]["down"]:
                return None
        strict = not self.fixed and self.on_fault == "reroute"
        for u, v in itertools.pairwise(rest):
            link = self._link(u, v)
            if not (link.routable if strict else link.usable):
                return None
        return rest

    def _find_path(self, at: str, chunk: int) -> Generator[simpy.Event, Any, list[str] | None]:
        """A working path from ``at``; waits for the network to change while there is none."""
        ctx = self.ctx
        while True:
            path = self._path_from(at)
            may_route = not self.fixed and (self.on_fault == "reroute" or self.path is None)
            if path is None and may_route and not ctx.graph.nodes[at]["down"]:
                bits = fresh_key_bits(ctx.cipher, chunk, ctx.env.now)
                new = ctx.router(ctx.graph, at, self.dst, bits)
                if new is not None:
                    prefix: list[str] = []
                    if self.path is not None:
                        self.reroutes += 1
                        if at in self.path:
                            prefix = self.path[: self.path.index(at)]
                    self.path = prefix + new
                    path = new
            if path is not None:
                return path
            if self.on_fault == "fail":
                self.cause = self.cause or f"no working path from {at} to {self.dst}"
                return None
            self.phase = _BLOCKED
            self._unregister()
            yield from self._wait(ctx.changed())
            if self._fatal:
                return None

    def _send_chunk(self, chunk: int, offset: int) -> Generator[simpy.Event, Any, bool]:
        env = self.ctx.env
        at = self.src
        held: dict[Link, float] = {}
        plans: dict[Link, KeyPlan] = {}
        data = None
        if self.payload is not None:
            data = bytes(self.payload[offset : offset + chunk])
        while at != self.dst:
            path = yield from self._find_path(at, chunk)
            if path is None:
                self._discard(held)
                return False
            self._register(path)
            hops = [(u, v, self._link(u, v)) for u, v in itertools.pairwise(path)]
            ok = yield from self._take_key([link for _, _, link in hops], chunk, plans, held)
            if not ok:
                if self._fatal is not None or self.on_fault == "fail":
                    self.cause = self._fatal or self.cause
                    self._discard(held)
                    return False
                self.phase = _IDLE
                continue
            # store-and-forward, hop by hop
            for u, v, link in hops:
                if not link.usable:
                    self.cause = link.fault_cause()
                    break
                t = env.now
                tx = 8.0 * chunk / link.bandwidth_bps
                start = link.free_at[u]
                if start < t:
                    start = t
                link.free_at[u] = start + tx
                self.phase = _TX
                self.tx_link = link
                ok = yield from self._wait(env.timeout(start - t + tx + link.latency_s))
                self.tx_link = None
                if not ok:
                    break
                self.queued_s += start - t
                self.transmit_s += tx
                self.propagation_s += link.latency_s
                link.busy_s[u] += tx
                link.bytes_sent += chunk
                try:
                    # the plan is spent: a chunk that crosses the link again plans anew
                    data = self._arrive(link, u, plans.pop(link), held, data)
                except IntegrityError as exc:
                    self.cause = f"link {link.name}: {exc}"
                    self._discard(held)
                    return False
                link.transfers.pop(self, None)
                at = v
            self.phase = _IDLE
            if at != self.dst and self.on_fault == "fail":
                self._discard(held)
                return False
        self._unregister()
        self._discard(held)
        if self.delivered is not None and data is not None:
            self.delivered.extend(data)
        return True

    def _take_key(
        self, links: list[Link], chunk: int, plans: dict[Link, KeyPlan], held: dict[Link, float]
    ) -> Generator[simpy.Event, Any, bool]:
        """Take the chunk's key on every hop at once (what ``held`` lacks); False if
        interrupted or failed for good (``_fatal``)."""
        ctx = self.ctx
        t0 = ctx.env.now
        self.phase = _KEY
        pending: list[tuple[Link, KeyRequest]] = []
        for link in links:
            plan = plans.get(link)
            if plan is None:
                plan = plans[link] = ctx.cipher.plan(link.cipher_state, chunk, ctx.env.now)
                link.cipher_state = plan.state
            missing = plan.bits - held.get(link, 0.0)
            if missing <= 0:
                continue
            shortage = link.shortage(missing)
            if shortage is not None:
                self._fatal = str(shortage)
                break
            if link.pool.try_take(missing):
                held[link] = held.get(link, 0.0) + missing
            else:
                pending.append((link, link.pool.get(missing)))
        ok = self._fatal is None
        done = 0
        for link, req in pending:
            if not ok:
                break
            if not req.triggered:
                t_link = ctx.env.now
                ok = yield from self._wait(req)
                if ctx.env.now > t_link:
                    waited = self.key_wait_by_link.get(link.name, 0.0) + ctx.env.now - t_link
                    self.key_wait_by_link[link.name] = waited
                if not ok:
                    break
            if not req.ok:
                ok = False
                self._fatal = str(req.value)
                break
            held[link] = held.get(link, 0.0) + req.n_bits
            done += 1
        if not ok:
            for link, req in pending[done:]:
                if req.triggered and req.ok:
                    held[link] = held.get(link, 0.0) + req.n_bits
                elif not req.triggered:
                    link.pool.cancel(req)
        self.key_wait_s += ctx.env.now - t0
        return ok

    def _arrive(
        self, link: Link, sender: str, plan: KeyPlan, held: dict[Link, float], data: bytes | None
    ) -> bytes | None:
        """Account for a hop just crossed; in bit-exact mode the cipher carries ``data`` over
        it. Raises IntegrityError if the link altered the message."""
        if plan.bits:
            held[link] -= plan.bits
            self.key_used[link.name] = self.key_used.get(link.name, 0.0) + plan.bits
        if link.bits is not None and data is not None:
            direction = 0 if sender == link.a else 1
            hop = Hop(direction, link.name.encode(), link.deliver, link.encryptions)
            return self.ctx.cipher.carry(link.session, link.bits, plan, data, hop=hop)
        if link.tampered:
            raise IntegrityError("message failed its integrity check")
        return data

    def _discard(self, held: dict[Link, float]) -> None:
        for _link, bits in held.items():
            if bits > 1e-9:
                self.discarded_bits += bits
        held.clear()

    def snapshot(self, status: Literal["delivered", "failed", "in_progress"]) -> TransferRecord:
        now = self.ctx.env.now
        total = now - self.t_request
        busy = self.key_wait_s + self.queued_s + self.transmit_s + self.propagation_s
        verified = None
        if self.delivered is not None and status == "delivered":
            verified = bytes(self.delivered) == self.payload
        return TransferRecord(
            id=self.id,
            tag=self.tag,
            src=self.src,
            dst=self.dst,
            n_bytes=self.n_bytes,
            status=status,
            reason=self.cause if status == "failed" else "",
            t_request=self.t_request,
            t_end=now,
            path=tuple(self.path) if self.path is not None else (),
            key_wait_s=self.key_wait_s,
            queued_s=self.queued_s,
            transmit_s=self.transmit_s,
            propagation_s=self.propagation_s,
            blocked_s=max(0.0, total - busy),
            key_bits=tuple(self.key_used.items()),
            discarded_bits=self.discarded_bits,
            chunks=self.chunks,
            reroutes=self.reroutes,
            verified=verified,
            key_wait_by_link=tuple(self.key_wait_by_link.items()),
        )

    def _finish(self, status: Literal["delivered", "failed"]) -> TransferRecord:
        self._unregister()
        self.phase = _IDLE
        if status == "failed" and not self.cause:
            self.cause = self._fatal or "unknown"
        rec = self.snapshot(status)
        self.record = rec
        self.ctx.ended(self, rec)
        return rec
