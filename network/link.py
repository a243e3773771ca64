"""A link: key supply (a fluid key pool at the QKD rate), classical channels, fault state.

The link object is the ``link`` attribute of its edge in the network graph, so that routing
weights can read its state. A link makes its own state changes (cut, repair, an end going
down, eavesdropping, tampering, a pool wipe) and interrupts the transfers registered on it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Protocol

import networkx as nx
import numpy as np
import simpy

from network.cipher import Encryption
from network.errors import KeyNeverSuffices, NodeNotFound, NoPath
from network.keypool import FluidKeyPool, PoolObserver
from network.schedule import Schedule, ScheduledRate
from network.topology import LinkSpec
from qkd.errors import ParameterError
from qkd.params import Fibre, QKDSystem, get_preset
from qkd.rates import ABORT_QBER, attack_rate_factor

__all__ = ["Link", "Watcher", "expected_wait_s", "link_between", "link_rates_bps"]


class Watcher(Protocol):
    """What a link tells about its faults: a transfer registered on it."""

    def notify(self, cause: str, link: Link | None = None, node: str | None = None) -> None: ...


def _system(spec: LinkSpec) -> QKDSystem:
    system = get_preset(spec.system) if isinstance(spec.system, str) else spec.system
    if spec.attenuation_db_per_km is not None:
        system = system.replace(fibre=Fibre(spec.attenuation_db_per_km))
    return system


def link_rates_bps(specs: Sequence[LinkSpec]) -> list[float]:
    """Secret key rate of each link in bit/s: its ``skr_bps`` override, else
    :func:`qkd.rates.key_rate_bps` (decoy-state BB84) of its system at its length.

    Links that share a system are computed in one vectorized call.

    Examples
    --------
    >>> link_rates_bps([LinkSpec("A", "B", 10.0, skr_bps=5e3)])
    [5000.0]
    """
    rates = [math.nan] * len(specs)
    groups: dict[QKDSystem, list[int]] = {}
    for i, s in enumerate(specs):
        if s.skr_bps is not None:
            rates[i] = float(s.skr_bps)
        else:
            groups.setdefault(_system(s), []).append(i)
    if groups:
        from qkd.rates import key_rate_bps

        for system, idx in groups.items():
            lengths = np.array([specs[i].length_km for i in idx], dtype=float)
            values = np.atleast_1d(np.asarray(key_rate_bps(system, lengths), dtype=float))
            for i, r in zip(idx, values, strict=True):
                rates[i] = max(0.0, float(r))
    return rates


class Link:
    """A full-duplex fibre link with a QKD key pool.

    Parameters
    ----------
    env : simpy.Environment
    spec : LinkSpec
    rate_bps : float
        The nominal secret key rate (from :func:`link_rates_bps`).
    observer : callable, optional
        Receives the pool's changes (see :class:`network.records.PoolLog`).
    pool : FluidKeyPool, optional
        A pool to use instead of a fluid one (alternative key-supply models).

    Attributes
    ----------
    pool : FluidKeyPool
    free_at : dict
        Per sending node, when that direction's channel is next free (FIFO queueing).
    busy_s : dict
        Per sending node, the seconds that direction's channel spent serialising frames
        that crossed the link (a frame lost to a fault is not counted).
    bytes_sent : int
        Bytes of the frames that crossed the link, both directions.
    cut, attack_factor, under_attack, nodes_down, tampered
        Fault state (changed by the methods below); the pool's rate is
        ``nominal_rate_bps * attack_factor * schedule_factor`` while the link is intact and
        both ends are up, else 0.
    schedule_factor : float
        The supply schedule's factor now (1 without a schedule; see
        :mod:`network.schedule`).
    schedule : Schedule or None
        The supply schedule being applied to the link (set by
        :func:`~network.schedule.apply_schedule`): forecasts of the key to come read it.
    transfers : dict
        The transfers registered on the link, told about its faults.
    cipher_state, session, bits
        The cipher's planning state, its bit-exact session and the link's real key bits
        (:class:`~network.cipher.BitStore`, bit-exact mode only).
    encryptions : list of Encryption
        Bit-exact mode: every encryption made on the link, in order, with the key bits and
        nonce it used (:class:`~network.cipher.Encryption`).
    """

    def __init__(
        self,
        env: simpy.Environment,
        spec: LinkSpec,
        rate_bps: float,
        *,
        observer: PoolObserver | None = None,
        pool: FluidKeyPool | None = None,
    ) -> None:
        self.env = env
        self.spec = spec
        self.name = spec.name
        self.a, self.b = spec.a, spec.b
        self.nominal_rate_bps = float(rate_bps)
        self.latency_s = spec.propagation_s
        self.bandwidth_bps = float(spec.bandwidth_bps)
        self.pool = (
            pool
            if pool is not None
            else FluidKeyPool(
                env,
                rate_bps,
                spec.capacity_bits,
                spec.initial_bits,
                block_bits=spec.block_bits,
                block_latency_s=spec.block_latency_s,
                block_auth_bits=spec.block_auth_bits,
                name=f"link {spec.name}",
                observer=observer,
            )
        )
        self.free_at: dict[str, float] = {spec.a: env.now, spec.b: env.now}
        self.busy_s: dict[str, float] = {spec.a: 0.0, spec.b: 0.0}
        self.bytes_sent = 0
        self.cut = False
        self.attack_factor = 1.0
        self.under_attack = False
        self.tampered = False
        self.nodes_down: set[str] = set()
        self.schedule_factor = 1.0
        self.schedule: Schedule | None = None
        # insertion-ordered (a dict as an ordered set): interrupts go out in registration
        # order, not in an order that depends on object addresses
        self.transfers: dict[Watcher, None] = {}
        self.cipher_state: Any = None
        self.session: Any = None
        self.bits: Any = None  # BitStore in bit-exact mode
        self.encryptions: list[Encryption] = []

    def __repr__(self) -> str:
        return f"Link({self.name!r}, rate={self.pool.rate_bps:g} b/s, level={self.pool.level:g})"

    def ends(self) -> tuple[str, str]:
        return self.a, self.b

    def other(self, node: str) -> str:
        return self.b if node == self.a else self.a

    @property
    def usable(self) -> bool:
        """Can carry traffic: not cut and both ends up."""
        return not self.cut and not self.nodes_down

    @property
    def routable(self) -> bool:
        """Offered to routing: usable and not raising an eavesdropping alarm."""
        return self.usable and not self.under_attack

    @property
    def producing(self) -> bool:
        """Producing key now (usable and the attack, if any, leaves a positive rate)."""
        return (
            self.usable
            and self.attack_factor > 0
            and self.schedule_factor > 0
            and self.nominal_rate_bps > 0
        )

    def key_to_come(self) -> float:
        """At most how much key the link will still make from now (bits; inf: no bound).

        0 without a nominal rate; with a supply schedule whose default factor is 0, the
        nominal rate times what is left of the schedule (faults only lower it).
        """
        if self.nominal_rate_bps <= 0:
            return 0.0
        if self.schedule is None:
            return math.inf
        left = self.schedule.remaining(self.env.now)
        return math.inf if left == math.inf else self.nominal_rate_bps * left

    def shortage(self, bits: float) -> KeyNeverSuffices | None:
        """The error to fail a new request of ``bits`` with if the link can never serve it
        (no nominal rate, or a schedule that makes too little key from now on, and too little
        key in and on its way to the pool); None if it may."""
        if bits <= 0:
            return None
        future = self.key_to_come()
        if future == math.inf:
            return None
        pool = self.pool
        have = pool.level + pool.unlanded_bits - pool.pending_bits
        if have + future >= bits * (1 - 1e-9):
            return None
        if self.nominal_rate_bps <= 0 or self.schedule is None:
            return KeyNeverSuffices([self.name], needed_bits=bits, available_bits=have)
        return KeyNeverSuffices(
            [self.name],
            needed_bits=bits,
            available_bits=have + future,
            ended_at=self.schedule.last_key_s(),
        )

    def never_suffices(self, bits: float) -> bool:
        """True if the link can never hold ``bits`` for a new request: no nominal rate (or a
        supply schedule that makes too little key from now on) and too little key in the
        pool (see :meth:`shortage`)."""
        return self.shortage(bits) is not None

    def _fault_rate_bps(self) -> float:
        """The key rate under the fault state alone (no supply schedule)."""
        return self.nominal_rate_bps * self.attack_factor if self.usable else 0.0

    def rate_outlook(self) -> ScheduledRate | None:
        """The key rate to come, for forecasts: the supply schedule times the nominal rate
        under the current faults; None without a schedule (the current rate stays)."""
        if self.schedule is None:
            return None
        return ScheduledRate(self._fault_rate_bps(), self.schedule)

    def update_rate(self) -> None:
        """Set the pool's rate from the fault state."""
        rate = self._fault_rate_bps() * self.schedule_factor
        if rate != self.pool.rate_bps:
            self.pool.set_rate(rate)

    def set_schedule_factor(self, factor: float) -> None:
        """Scale the key rate by a supply schedule's ``factor`` (see
        :func:`network.schedule.apply_schedule`); it multiplies the fault state's rate, so a
        cut link stays at 0 whatever the factor."""
        if (
            isinstance(factor, bool)
            or not isinstance(factor, int | float)
            or not (math.isfinite(factor) and factor >= 0)
        ):
            raise ParameterError(f"link {self.name}: schedule factor", factor, ">= 0 and finite")
        self.schedule_factor = float(factor)
        self.update_rate()
        if factor == 0 and self.pool.waiters and self.key_to_come() == 0:
            self._fail_starved()

    def _fail_starved(self) -> None:
        """The link makes no more key: fail the waiters its pool will never serve (those that
        the key in it and in post-processing serves are kept)."""
        pool = self.pool
        keep = pool.level + pool.unlanded_bits
        ended = self.schedule.last_key_s() if self.schedule is not None else None
        exc = KeyNeverSuffices(
            [self.name], needed_bits=pool.pending_bits, available_bits=keep, ended_at=ended
        )
        pool.fail_waiters(exc, keep_bits=keep)

    def tx_time(self, n_bytes: int) -> float:
        """Seconds to serialise ``n_bytes`` onto the link."""
        return 8.0 * n_bytes / self.bandwidth_bps

    def fault_cause(self) -> str:
        """Why the link cannot carry traffic now, as a phrase for records."""
        if self.cut:
            return f"link {self.name} cut"
        if self.nodes_down:
            return f"node {sorted(self.nodes_down)[0]} down"
        if self.under_attack:
            return f"eavesdropper on link {self.name}"
        return f"link {self.name} unavailable"

    def deliver(self, data: bytes) -> bytes:
        """The bytes that arrive when ``data`` is sent (one bit flipped while tampered)."""
        if not self.tampered or not data:
            return data
        flipped = bytearray(data)
        flipped[len(flipped) // 2] ^= 0x01
        return bytes(flipped)

    def _notify(self, cause: str) -> None:
        for tr in list(self.transfers):
            tr.notify(cause, link=self)

    def _halt(self) -> None:
        """Traffic stops: frames in flight are lost and both directions are free now."""
        self.free_at = dict.fromkeys(self.free_at, self.env.now)
        self.update_rate()

    def cut_fibre(self) -> bool:
        """Cut the fibre: no traffic and no key until :meth:`repair`; False if already cut."""
        if self.cut:
            return False
        self.cut = True
        self._halt()
        self._notify(f"link {self.name} cut at t={self.env.now:g}")
        return True

    def repair(self) -> bool:
        """Repair the cut fibre (the pool keeps its key); False if it was not cut."""
        if not self.cut:
            return False
        self.cut = False
        self.update_rate()
        return True

    def end_down(self, node: str, cause: str) -> None:
        """The link's end ``node`` went down: no traffic and no key while it is down."""
        self.nodes_down.add(node)
        self._halt()
        self._notify(cause)

    def end_up(self, node: str) -> None:
        """The link's end ``node`` is back up."""
        self.nodes_down.discard(node)
        self.update_rate()

    def start_attack(self, qber: float, threshold: float = ABORT_QBER) -> None:
        """An eavesdropper raises the link's QBER to ``qber``.

        Above ``threshold`` the link aborts key generation (rate 0) and raises an alarm that
        routing avoids; below it the rate drops by :func:`~qkd.rates.attack_rate_factor`.
        """
        system = _system(self.spec)
        self.attack_factor = attack_rate_factor(
            qber, baseline_qber=system.misalignment, f_ec=system.f_ec, threshold=threshold
        )
        self.under_attack = self.attack_factor == 0.0
        self.update_rate()
        if self.under_attack:
            self._notify(f"eavesdropper on link {self.name} at t={self.env.now:g}")

    def stop_attack(self) -> None:
        """The eavesdropper leaves: the link makes key at its nominal rate again."""
        self.attack_factor = 1.0
        self.under_attack = False
        self.update_rate()

    def set_tampered(self, tampered: bool) -> None:
        """Start (True) or end (False) an active attacker altering what the link carries."""
        self.tampered = bool(tampered)

    def wipe_pool(self) -> float:
        """Empty the pool; returns the bits removed. Waiters on a link with no key rate fail."""
        bits = self.pool.wipe()
        if self.nominal_rate_bps == 0:
            self.pool.fail_waiters(
                KeyNeverSuffices(
                    [self.name], needed_bits=self.pool.pending_bits, available_bits=0.0
                )
            )
        elif self.pool.waiters and self.key_to_come() == 0:
            self._fail_starved()
        return bits


def link_between(graph: nx.Graph, a: str, b: str) -> Link:
    """The link joining ``a`` and ``b`` (either order) in a network graph.

    Raises
    ------
    NodeNotFound
        ``a`` or ``b`` is not a node.
    NoPath
        No link joins them.
    """
    for n in (a, b):
        if n not in graph:
            raise NodeNotFound(n)
    if not graph.has_edge(a, b):
        raise NoPath(a, b, f"there is no link {a}-{b}")
    link: Link = graph.edges[a, b]["link"]
    return link


def expected_wait_s(link: Link, bits: float) -> float:
    """Expected key wait for a new request of ``bits`` behind the current waiters.

    At the current rate, or, on a link with a supply schedule, at the rate the schedule
    gives from now on (a satellite link between passes: the key of its next pass, not
    never). Block mode: the landing time of the block that covers it (blocks in
    post-processing count even while the rate is 0).

    Examples
    --------
    >>> import simpy
    >>> from network.schedule import apply_schedule
    >>> env = simpy.Environment()
    >>> link = Link(env, LinkSpec("S", "G", 0.0, skr_bps=100.0), 100.0)
    >>> expected_wait_s(link, 1000.0)
    10.0
    >>> _ = apply_schedule(env, link, Schedule([(60.0, 300.0, 0.5, "pass 0")], default=0.0))
    >>> link.pool.rate_bps, expected_wait_s(link, 1000.0)
    (0.0, 80.0)
    """
    pool = link.pool
    short = bits + pool.pending_bits - pool.level
    if short <= 0:
        return 0.0
    outlook = link.rate_outlook()
    if pool.block_bits is not None or outlook is not None:
        return pool.time_to(bits + pool.pending_bits, outlook=outlook)
    rate = pool.rate_bps
    return math.inf if rate <= 0 else short / rate
