"""Fluid key pools with exact wake-ups: key supply without one event per tick.

A pool's level is a piecewise-linear function of simulated time,
``min(capacity, level0 + rate * (t - t0))`` since the last change ``t0``, minus what was taken.
:meth:`FluidKeyPool.get` returns a SimPy event that fires at the exact time the level reaches
the requested amount; waiters are served first come, first served. Only the head waiter has a
wake-up scheduled, and a rate change (a fault, an eavesdropper) re-schedules it, so the number
of events per request is O(1), independent of the simulated horizon.

In *block mode* (``block_bits`` given) key arrives as real links deliver it: the link collects
pulses for one block period, ``block_bits / rate`` seconds (N pulses over the repetition
rate), post-processes them for ``block_latency_s``, and then the block's key lands in the pool
at once: ``block_bits`` minus the ``block_auth_bits`` that QKD's own classical channel spends
to authenticate that block's post-processing. Several blocks may be in post-processing at once.
The part of a block being collected is kept across changes between positive rates; a drop of
the rate to 0 (a cut, an end node down, an eavesdropper above the abort threshold) discards it,
as real systems discard an interrupted block, while blocks already collected go on with their
post-processing and land on time. A block that yields no more than its authentication costs
lands nothing: all of its key goes to authentication and the shortfall is *not* taken from the
pool, so the level never drops except by takes and wipes. A request's wake-up is the landing
time of the block that makes the level sufficient: the pool holds no event per block.

Key that arrives while the pool is full is counted as wasted, so that at any time
``initial + generated == consumed + wasted + wiped + level + auth`` (``generated`` counts a
block's whole ``block_bits``; ``auth`` the part spent on its authentication).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

import simpy

from qkd.errors import ParameterError

__all__ = ["FluidKeyPool", "KeyRequest", "PoolObserver", "RateOutlook"]

PoolObserver = Callable[[str, float, float, float], None]
"""Called as ``observer(kind, bits, level, time)`` on ``"take"``, ``"rate"``, ``"wipe"`` and
``"block"`` (a block's key landing: ``bits`` after authentication, at its landing ``time``,
which may lie before ``env.now`` when the pool was idle)."""

_EPS = 1e-9


class RateOutlook(Protocol):
    """The key rate a pool will have from now on, when it is known to change over time (a
    supply schedule, :class:`network.schedule.ScheduledRate`); used for forecasts only."""

    def time_to_collect(self, t0: float, bits: float) -> float:
        """The earliest time ``t >= t0`` by which ``bits`` of key are collected (inf:
        never)."""
        ...

    def time_to_blocks(self, t0: float, blocks: int, block_bits: float, progress: float) -> float:
        """The time the ``blocks``-th block is collected from ``t0``, the block being
        collected holding ``progress`` bits (a stretch at rate 0 discards the part-collected
        block); inf: never."""
        ...


def _nonneg(name: str, value: Any, allowed: str, strict: bool = False) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (strict and value == 0):
        raise ParameterError(name, value, allowed)
    return float(value)


class KeyRequest(simpy.Event):
    """The event returned by :meth:`FluidKeyPool.get`; its value is the number of bits."""

    __slots__ = ("n_bits", "pool", "requested_at")

    def __init__(self, pool: FluidKeyPool, n_bits: float) -> None:
        super().__init__(pool.env)
        self.pool = pool
        self.n_bits = n_bits
        self.requested_at = pool.env.now


class _Blocks:
    """Block mode's state: the block being collected and the blocks in post-processing.

    Blocks in post-processing are kept as runs ``(first landing time, spacing, count)``, one
    per stretch of constant rate, so a long idle stretch costs one entry, not one per block.
    """

    __slots__ = ("auth", "bits", "flight", "interrupted", "latency", "net", "progress")

    def __init__(self, bits: float, latency: float, auth: float) -> None:
        self.bits = bits
        self.latency = latency
        self.auth = min(auth, bits)  # spent on authentication per block
        self.net = bits - self.auth  # lands in the pool per block
        self.progress = 0.0  # the block being collected, in key bits it will yield
        self.flight: deque[tuple[float, float, int]] = deque()
        self.interrupted = 0

    @property
    def in_flight(self) -> int:
        """Blocks in post-processing (collected, not yet landed)."""
        return sum(n for _, _, n in self.flight)

    def collect(self, t0: float, dt: float, rate: float) -> None:
        """Collect for ``dt`` seconds from ``t0`` at ``rate > 0``; finished blocks go to
        post-processing."""
        b, p0 = self.bits, self.progress
        total = p0 + rate * dt
        k = math.floor(total / b + _EPS)
        self.progress = max(0.0, total - k * b)
        if k > 0:
            self.flight.append((t0 + (b - p0) / rate + self.latency, b / rate, k))

    def due(self, now: float) -> list[tuple[float, float, int]]:
        """Remove and return the runs of landings due by ``now`` (to rounding)."""
        out = []
        while self.flight:
            t1, spacing, n = self.flight[0]
            tol = max(_EPS * spacing, 8 * math.ulp(now))
            if t1 > now + tol:
                break
            k = min(n, math.floor((now + tol - t1) / spacing) + 1)
            if k == n:
                self.flight.popleft()
            else:
                self.flight[0] = (t1 + k * spacing, spacing, n - k)
            out.append((t1, spacing, k))
        return out

    def landing(self, m: int, now: float, rate: float) -> float:
        """Time of the ``m``-th landing from now (``m >= 1``) at ``rate``; inf if never."""
        for t1, spacing, n in self.flight:
            if m <= n:
                return t1 + (m - 1) * spacing
            m -= n
        if rate <= 0:
            return math.inf
        return now + (m * self.bits - self.progress) / rate + self.latency


class FluidKeyPool:
    """A key store filled at a secret-key rate, used like a SimPy resource.

    Parameters
    ----------
    env : simpy.Environment
    rate_bps : float
        Secret key rate in bit/s (``>= 0``), before block authentication.
    capacity_bits : float
        Largest level (``> 0``).
    initial_bits : float
        Level at creation (``<= capacity_bits``).
    block_bits : float, optional
        Deliver key in blocks: the key bits one block yields (``> 0``), one block collected
        every ``block_bits / rate`` seconds. ``None``: continuous (fluid) delivery.
    block_latency_s : float
        Block mode: post-processing time from the end of a block's collection until its key
        lands (``>= 0``).
    block_auth_bits : float
        Block mode: key bits spent to authenticate each block's post-processing, taken from
        the block before it lands (``>= 0``; a block yielding no more lands nothing).
    name : str
        For messages and records.
    observer : callable, optional
        Told about every take, rate change, wipe and block landing (see
        :data:`PoolObserver`).

    Attributes
    ----------
    generated_bits, consumed_bits, wasted_bits, wiped_bits, auth_bits : float
        The conservation terms (see :meth:`accounting`).
    interrupted_blocks : int
        Block mode: blocks discarded part-collected because the rate dropped to 0.

    Examples
    --------
    >>> env = simpy.Environment()
    >>> pool = FluidKeyPool(env, rate_bps=100.0, capacity_bits=1000.0)
    >>> req = pool.get(250)
    >>> env.run(req)
    250.0
    >>> env.now
    2.5
    >>> round(pool.level, 9), pool.consumed_bits
    (0.0, 250.0)

    Blocks of 250 bits (one per 2.5 s), landing 4 s after collection, 50 bits of each spent
    on authentication: two blocks (2 x 200 bits) are needed, the second lands at 5 + 4 s.

    >>> pool = FluidKeyPool(simpy.Environment(), 100.0, 1000.0, block_bits=250.0,
    ...                     block_latency_s=4.0, block_auth_bits=50.0)
    >>> req = pool.get(300)
    >>> pool.env.run(req)
    300.0
    >>> pool.env.now, pool.level, pool.auth_bits
    (9.0, 100.0, 100.0)
    """

    def __init__(
        self,
        env: simpy.Environment,
        rate_bps: float,
        capacity_bits: float,
        initial_bits: float = 0.0,
        *,
        block_bits: float | None = None,
        block_latency_s: float = 0.0,
        block_auth_bits: float = 0.0,
        name: str = "pool",
        observer: PoolObserver | None = None,
    ) -> None:
        self.env = env
        self.name = name
        self._rate = _nonneg(f"{name}: rate_bps", rate_bps, ">= 0")
        self._capacity = _nonneg(f"{name}: capacity_bits", capacity_bits, "> 0", strict=True)
        init = _nonneg(f"{name}: initial_bits", initial_bits, f"in [0, {self._capacity}]")
        if init > self._capacity:
            raise ParameterError(f"{name}: initial_bits", initial_bits, f"in [0, {self._capacity}]")
        self._blocks = _make_blocks(name, block_bits, block_latency_s, block_auth_bits)
        self._level0 = init
        self._t0 = env.now
        self.initial_bits = init
        self.generated_bits = 0.0
        self.consumed_bits = 0.0
        self.wasted_bits = 0.0
        self.wiped_bits = 0.0
        self.auth_bits = 0.0
        self.pending_bits = 0.0
        self._waiters: deque[KeyRequest] = deque()
        self._gen = 0
        self.observer = observer

    # -- state -------------------------------------------------------------------------
    @property
    def capacity(self) -> float:
        """Largest level, bits."""
        return self._capacity

    @property
    def rate_bps(self) -> float:
        """Current key rate, bit/s."""
        return self._rate

    @property
    def level(self) -> float:
        """Bits in the pool now."""
        self._settle()
        return self._level0

    @property
    def waiters(self) -> int:
        """Number of requests waiting."""
        return len(self._waiters)

    @property
    def oldest_request_at(self) -> float | None:
        """When the head waiter (the oldest waiting request) was made; None if none waits."""
        return self._waiters[0].requested_at if self._waiters else None

    @property
    def block_bits(self) -> float | None:
        """Key bits a block yields (before authentication); ``None`` for fluid delivery."""
        return None if self._blocks is None else self._blocks.bits

    @property
    def blocks_in_flight(self) -> int:
        """Block mode: blocks collected and not yet landed (in post-processing)."""
        self._settle()
        return 0 if self._blocks is None else self._blocks.in_flight

    @property
    def unlanded_bits(self) -> float:
        """Block mode: key (net of authentication) made but not yet in the pool: the blocks
        in post-processing and the part of a block being collected (lost if the rate drops
        to 0 first). 0 for fluid delivery."""
        self._settle()
        blk = self._blocks
        if blk is None:
            return 0.0
        return blk.in_flight * blk.net + blk.progress * blk.net / blk.bits

    @property
    def interrupted_blocks(self) -> int:
        """Block mode: blocks discarded part-collected because the rate dropped to 0."""
        return 0 if self._blocks is None else self._blocks.interrupted

    def _fill(self, got: float) -> None:
        new = self._level0 + got
        if new > self._capacity:
            self.wasted_bits += new - self._capacity
            new = self._capacity
        self._level0 = new

    def _settle(self) -> None:
        """Bring ``level0`` forward to now (exact: no take happened since ``t0``)."""
        now = self.env.now
        dt = now - self._t0
        if dt <= 0:
            return
        t0, self._t0 = self._t0, now
        if self._blocks is not None:
            self._settle_blocks(self._blocks, t0, dt, now)
            return
        if self._rate == 0:
            return
        got = self._rate * dt
        self.generated_bits += got
        self._fill(got)

    def _settle_blocks(self, blk: _Blocks, t0: float, dt: float, now: float) -> None:
        """Block mode: collect since ``t0``, land the blocks whose post-processing ended."""
        if self._rate > 0:
            blk.collect(t0, dt, self._rate)
        for t1, spacing, k in blk.due(now):
            if self.observer is None:  # one step for a whole run of landings
                self.generated_bits += k * blk.bits
                self.auth_bits += k * blk.auth
                self._fill(k * blk.net)
                continue
            for i in range(k):
                self.generated_bits += blk.bits
                self.auth_bits += blk.auth
                self._fill(blk.net)
                self.observer("block", blk.net, self._level0, min(now, t1 + i * spacing))

    def time_to(self, n_bits: float, *, outlook: RateOutlook | None = None) -> float:
        """Seconds from now until the level reaches ``n_bits`` (no takes).

        At the current rate, or, given an ``outlook``, at the rate it forecasts (a supply
        schedule: key a satellite link will make in its next pass). ``math.inf`` when the
        rate is and stays 0 (and, in block mode, the blocks in post-processing do not
        suffice) and the level is short. The capacity is ignored.
        """
        self._settle()
        short = n_bits - self._level0
        if short <= 0:
            return 0.0
        now = self.env.now
        blk = self._blocks
        if blk is None:
            if outlook is not None:
                return max(0.0, outlook.time_to_collect(now, short) - now)
            return math.inf if self._rate == 0 else short / self._rate
        if blk.net <= 0:
            return math.inf
        m = max(1, math.ceil(short / blk.net - _EPS))
        if outlook is None:
            return max(0.0, blk.landing(m, now, self._rate) - now)
        flying = blk.in_flight
        if m <= flying:
            return max(0.0, blk.landing(m, now, 0.0) - now)
        done = outlook.time_to_blocks(now, m - flying, blk.bits, blk.progress)
        return max(0.0, done + blk.latency - now)

    # -- resource interface -----------------------------------------------------------
    def _check_amount(self, n_bits: float) -> float:
        if type(n_bits) in (float, int) and 0 < n_bits <= self._capacity:
            return float(n_bits)  # the common case, checked cheaply
        n = _nonneg(f"{self.name}: n_bits", n_bits, "> 0", strict=True)
        if n > self._capacity * (1 + _EPS):
            raise ParameterError(
                f"{self.name}: n_bits",
                n_bits,
                f"<= the pool's capacity ({self._capacity:g}); split the request into chunks",
            )
        return n

    def _take(self, n: float) -> None:
        self._level0 = max(0.0, self._level0 - n)
        self.consumed_bits += n
        if self.observer is not None:
            self.observer("take", n, self._level0, self.env.now)

    def try_take(self, n_bits: float) -> bool:
        """Take ``n_bits`` now if they are there and nobody is waiting; no event is made."""
        n = self._check_amount(n_bits)
        self._settle()
        if self._waiters or self._level0 < n - _EPS * max(1.0, n):
            return False
        self._take(n)
        return True

    def get(self, n_bits: float) -> KeyRequest:
        """Request ``n_bits``: an event that fires (value ``n_bits``) when they are taken.

        Raises
        ------
        ParameterError
            ``n_bits <= 0`` or more than the capacity (such a request could never be served).
        """
        n = self._check_amount(n_bits)
        req = KeyRequest(self, n)
        self._settle()
        if not self._waiters and self._level0 >= n - _EPS * max(1.0, n):
            self._take(n)
            req.succeed(n)
            return req
        self._waiters.append(req)
        self.pending_bits += n
        if len(self._waiters) == 1:
            self._schedule()
        return req

    def cancel(self, req: KeyRequest) -> None:
        """Withdraw a request that has not been served (no effect once it has)."""
        if req.triggered:
            return
        try:
            idx = self._waiters.index(req)
        except ValueError:
            return
        del self._waiters[idx]
        self.pending_bits -= req.n_bits
        if idx == 0:
            self._settle()
            self._serve()

    def fail_waiters(self, exc: Exception, *, keep_bits: float = 0.0) -> int:
        """Fail waiting requests with ``exc`` (for pools that will never fill); returns how
        many failed.

        Parameters
        ----------
        keep_bits : float
            Key the pool will still hold (its level and the blocks in post-processing of a
            link that makes no more key): the waiters it serves, in order, are kept; the first
            one beyond it and every later one fail (default 0: all fail).
        """
        kept: deque[KeyRequest] = deque()
        total = 0.0
        while self._waiters and total + self._waiters[0].n_bits <= keep_bits * (1 + _EPS):
            req = self._waiters.popleft()
            total += req.n_bits
            kept.append(req)
        failed = len(self._waiters)
        while self._waiters:
            req = self._waiters.popleft()
            self.pending_bits -= req.n_bits
            req.fail(exc)
        self._waiters = kept
        if not kept:
            self.pending_bits = 0.0
        self._schedule()
        return failed

    def set_rate(self, rate_bps: float) -> None:
        """Change the key rate from now on; the head waiter's wake-up is re-scheduled.

        In block mode a drop to 0 discards the block being collected (blocks already in
        post-processing still land); a change between positive rates keeps it.
        """
        rate = _nonneg(f"{self.name}: rate_bps", rate_bps, ">= 0")
        self._settle()
        blk = self._blocks
        if rate == 0 and blk is not None and blk.progress > 0:
            blk.progress = 0.0
            blk.interrupted += 1
        self._rate = rate
        if self.observer is not None:
            self.observer("rate", rate, self._level0, self.env.now)
        self._schedule()

    def wipe(self) -> float:
        """Empty the pool (a scenario decision, e.g. after a compromise); returns the bits."""
        self._settle()
        bits = self._level0
        self.wiped_bits += bits
        self._level0 = 0.0
        if self.observer is not None:
            self.observer("wipe", bits, 0.0, self.env.now)
        self._schedule()
        return bits

    # -- wake-ups ----------------------------------------------------------------------
    def _serve(self) -> None:
        while self._waiters:
            head = self._waiters[0]
            n = head.n_bits
            if self._level0 < n - _EPS * max(1.0, n):
                break
            self._waiters.popleft()
            self.pending_bits -= n
            self._take(n)
            head.succeed(n)
        if not self._waiters:
            self.pending_bits = 0.0
        self._schedule()

    def _schedule(self) -> None:
        self._gen += 1
        if not self._waiters:
            return
        delay = self.time_to(self._waiters[0].n_bits)
        if delay == math.inf:
            return
        if delay == 0.0:
            # already enough (a wipe never adds key; a rate change may settle exactly on it)
            ev = self.env.timeout(0.0)
        else:
            ev = self.env.timeout(delay)
        gen = self._gen
        ev.callbacks.append(lambda _ev: self._wake(gen))

    def _wake(self, gen: int) -> None:
        if gen != self._gen:
            return  # superseded by a rate change, a cancel or an earlier serve
        self._settle()
        self._serve()

    def accounting(self) -> dict[str, float]:
        """The conservation terms now: ``initial + generated == consumed + wasted + wiped +
        level + auth`` (``auth``: key spent authenticating blocks' post-processing)."""
        self._settle()
        return {
            "initial_bits": self.initial_bits,
            "generated_bits": self.generated_bits,
            "consumed_bits": self.consumed_bits,
            "wasted_bits": self.wasted_bits,
            "wiped_bits": self.wiped_bits,
            "level_bits": self._level0,
            "auth_bits": self.auth_bits,
        }


def _make_blocks(name: str, bits: float | None, latency: float, auth: float) -> _Blocks | None:
    """Validate the block parameters; ``None`` for fluid delivery."""
    latency = _nonneg(f"{name}: block_latency_s", latency, ">= 0")
    auth = _nonneg(f"{name}: block_auth_bits", auth, ">= 0")
    if bits is None:
        for field, value in (("block_latency_s", latency), ("block_auth_bits", auth)):
            if value:
                allowed = "0 unless block_bits is given (fluid key has no blocks)"
                raise ParameterError(f"{name}: {field}", value, allowed)
        return None
    return _Blocks(_nonneg(f"{name}: block_bits", bits, "> 0", strict=True), latency, auth)
