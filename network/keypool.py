"""Fluid key pools with exact wake-ups: key supply without one event per tick.

A pool's level is a piecewise-linear function of simulated time,
``min(capacity, level0 + rate * (t - t0))`` since the last change ``t0``, minus what was taken.
:meth:`FluidKeyPool.get` returns a SimPy event that fires at the exact time the level reaches
the requested amount; waiters are served first come, first served. Only the head waiter has a
wake-up scheduled, and a rate change (a fault, an eavesdropper) re-schedules it, so the number
of events per request is O(1), independent of the simulated horizon.

In *block mode* key arrives in post-processing blocks of ``block_bits``: one block every
``block_bits / rate`` seconds (the fraction of a block in progress is kept across rate
changes).

Key that arrives while the pool is full is counted as wasted, so that at any time
``initial + generated == consumed + wasted + wiped + level``.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from typing import Any

import simpy

from qkd.errors import ParameterError

__all__ = ["FluidKeyPool", "KeyRequest", "PoolObserver"]

PoolObserver = Callable[[str, float, float], None]
"""Called as ``observer(kind, bits, level)`` on ``"take"``, ``"rate"`` and ``"wipe"``."""

_EPS = 1e-9


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


class FluidKeyPool:
    """A key store filled at a secret-key rate, used like a SimPy resource.

    Parameters
    ----------
    env : simpy.Environment
    rate_bps : float
        Secret key rate in bit/s (``>= 0``).
    capacity_bits : float
        Largest level (``> 0``).
    initial_bits : float
        Level at creation (``<= capacity_bits``).
    block_bits : float, optional
        Deliver key in blocks of this size instead of continuously.
    name : str
        For messages and records.
    observer : callable, optional
        Told about every take, rate change and wipe (see :data:`PoolObserver`).

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
    """

    def __init__(
        self,
        env: simpy.Environment,
        rate_bps: float,
        capacity_bits: float,
        initial_bits: float = 0.0,
        *,
        block_bits: float | None = None,
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
        if block_bits is not None:
            block_bits = _nonneg(f"{name}: block_bits", block_bits, "> 0", strict=True)
        self._block = block_bits
        self._progress = 0.0  # block mode: raw bits produced, delivered in whole blocks
        self._level0 = init
        self._t0 = env.now
        self.initial_bits = init
        self.generated_bits = 0.0
        self.consumed_bits = 0.0
        self.wasted_bits = 0.0
        self.wiped_bits = 0.0
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

    def _delivered(self, dt: float) -> float:
        produced = self._rate * dt
        if self._block is None:
            return produced
        b = self._block
        before = math.floor(self._progress / b + _EPS)
        self._progress += produced
        return (math.floor(self._progress / b + _EPS) - before) * b

    def _settle(self) -> None:
        """Bring ``level0`` forward to now (exact: no take happened since ``t0``)."""
        now = self.env.now
        dt = now - self._t0
        if dt <= 0:
            return
        self._t0 = now
        if self._rate == 0:
            return
        got = self._delivered(dt)
        if got <= 0:
            return
        self.generated_bits += got
        new = self._level0 + got
        if new > self._capacity:
            self.wasted_bits += new - self._capacity
            new = self._capacity
        self._level0 = new

    def time_to(self, n_bits: float) -> float:
        """Seconds from now until the level reaches ``n_bits`` at the current rate (no takes).

        ``math.inf`` when the rate is 0 and the level is short.
        """
        self._settle()
        short = n_bits - self._level0
        if short <= 0:
            return 0.0
        if self._rate == 0:
            return math.inf
        if self._block is None:
            return short / self._rate
        b = self._block
        blocks = math.ceil(short / b - _EPS)
        target = (math.floor(self._progress / b + _EPS) + blocks) * b
        return max(0.0, (target - self._progress) / self._rate)

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
            self.observer("take", n, self._level0)

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

    def fail_waiters(self, exc: Exception) -> None:
        """Fail every waiting request with ``exc`` (for pools that will never fill)."""
        while self._waiters:
            req = self._waiters.popleft()
            self.pending_bits -= req.n_bits
            req.fail(exc)
        self._gen += 1

    def set_rate(self, rate_bps: float) -> None:
        """Change the key rate from now on; the head waiter's wake-up is re-scheduled."""
        rate = _nonneg(f"{self.name}: rate_bps", rate_bps, ">= 0")
        self._settle()
        self._rate = rate
        if self.observer is not None:
            self.observer("rate", rate, self._level0)
        self._schedule()

    def wipe(self) -> float:
        """Empty the pool (a scenario decision, e.g. after a compromise); returns the bits."""
        self._settle()
        bits = self._level0
        self.wiped_bits += bits
        self._level0 = 0.0
        if self.observer is not None:
            self.observer("wipe", bits, 0.0)
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
        """The conservation terms now: initial, generated, consumed, wasted, wiped, level."""
        self._settle()
        return {
            "initial_bits": self.initial_bits,
            "generated_bits": self.generated_bits,
            "consumed_bits": self.consumed_bits,
            "wasted_bits": self.wasted_bits,
            "wiped_bits": self.wiped_bits,
            "level_bits": self._level0,
        }
