"""Service clocks: how wall time maps onto the simulated time that fills the key pools.

The pools are the simulation's own (:class:`network.keypool.FluidKeyPool`); a clock only
says which simulated time a request arrives at. :class:`RealClock` runs simulated time at
``speed`` times the wall clock (``speed = 1``: real time; ``--speed 60``: a minute of key
generation per second), from ``start`` (a restart resumes where the journal stopped).
:class:`ManualClock` is set by hand (tests, replays driven step by step).
"""

from __future__ import annotations

import math
import time
from typing import Protocol

from qkd.errors import ParameterError

__all__ = ["ManualClock", "RealClock", "ServiceClock"]


class ServiceClock(Protocol):
    """Anything with ``now() -> float``: the simulated time, never decreasing."""

    def now(self) -> float: ...

    def resume(self, t: float) -> None:
        """Continue from simulated time ``t`` (a restart from a journal)."""
        ...


class RealClock:
    """Simulated time ``start + speed * (wall seconds since creation)``.

    Examples
    --------
    >>> c = RealClock(speed=60.0, start=10.0)
    >>> 10.0 <= c.now() < 10.0 + 60.0 * 60
    True
    """

    def __init__(self, speed: float = 1.0, *, start: float = 0.0) -> None:
        ok = isinstance(speed, int | float) and not isinstance(speed, bool)
        if not ok or not math.isfinite(speed) or speed <= 0:
            raise ParameterError("--speed", speed, "a finite number > 0")
        self.speed = float(speed)
        self.start = float(start)
        self._t0 = time.monotonic()

    def now(self) -> float:
        """The simulated time now."""
        return self.start + self.speed * (time.monotonic() - self._t0)

    def resume(self, t: float) -> None:
        """Continue from simulated time ``t`` from now on (the downtime is not simulated)."""
        self.start = float(t)
        self._t0 = time.monotonic()


class ManualClock:
    """A clock moved by :meth:`advance` or :meth:`set` only.

    Examples
    --------
    >>> c = ManualClock()
    >>> c.advance(2.5); c.now()
    2.5
    """

    def __init__(self, start: float = 0.0) -> None:
        self._t = float(start)

    def now(self) -> float:
        """The simulated time now."""
        return self._t

    def resume(self, t: float) -> None:
        """Continue from ``t`` if it is later than now."""
        self._t = max(self._t, float(t))

    def advance(self, seconds: float) -> None:
        """Move forward by ``seconds`` (``>= 0``)."""
        if not seconds >= 0:
            raise ParameterError("seconds", seconds, ">= 0")
        self._t += float(seconds)

    def set(self, t: float) -> None:
        """Move to ``t`` (not earlier than now)."""
        if not t >= self._t:
            raise ParameterError("t", t, f">= the current time {self._t}")
        self._t = float(t)
