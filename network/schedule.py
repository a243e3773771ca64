"""Key supply that changes over time: a schedule of rate factors, applied with exact wake-ups.

A :class:`Schedule` is a sorted list of non-overlapping :class:`Window` s ``(start_s, end_s,
factor)``: the link's key rate is multiplied by ``factor`` inside a window and by
``default`` outside every window (1 for maintenance or day/night on a fibre link, 0 for a
satellite downlink that only makes key during its passes). The factor is piecewise constant,
so the key a link makes over ``[t0, t1]`` is ``rate * integral(t0, t1)`` exactly.

:func:`apply_schedule` drives a link (or a bare pool, through :class:`ScaledPool`) with the
schedule: one SimPy event per change of the factor, armed one at a time, never one per second
and never per block, so the events of a run are O(number of windows), independent of the
horizon. Between edges the pool's own exact wake-ups serve requests (a request is re-timed at
each edge, as at any rate change). On a :class:`~network.link.Link` the factor composes
multiplicatively with the fault state: the pool's rate is ``nominal * attack_factor *
schedule_factor`` while the link is usable and 0 otherwise, so a cut during a window stays a
cut and a window opening during a cut makes no key.

When a window raises the factor while requests are waiting on the pool, a :class:`WindowWait`
is recorded (and passed to the ``observer``): the bottleneck analysis can say that key
"waited for window X of link L" and for how long.

A satellite pass is expressed as a piecewise-constant profile, e.g. the pass's secret-key rate
averaged over 10-s steps: :meth:`Schedule.from_steps` (see :mod:`qkd.satellite`,
``PassProfile.steps``).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import simpy

from network.keypool import FluidKeyPool
from network.records import WindowWait
from qkd.errors import ParameterError

__all__ = [
    "ScaledPool",
    "Schedule",
    "ScheduleRun",
    "ScheduleTarget",
    "ScheduledRate",
    "Window",
    "WindowWait",
    "apply_schedule",
]


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class Window:
    """A stretch ``[start_s, end_s)`` of simulated time with the rate factor ``factor``.

    Parameters
    ----------
    start_s, end_s : float
        Simulated seconds, ``0 <= start_s < end_s``.
    factor : float
        Multiplies the link's key rate inside the window (``>= 0``; 0 is an outage, 1 the
        nominal rate, more than 1 is allowed for a link whose nominal rate is a reference).
    label : str
        A name for records ("pass 3", "maintenance"); ``""`` gives ``"window <index>"``.
    """

    start_s: float
    end_s: float
    factor: float = 0.0
    label: str = ""

    @property
    def duration_s(self) -> float:
        """``end_s - start_s``."""
        return self.end_s - self.start_s


@dataclass(frozen=True)
class Schedule:
    """A piecewise-constant rate factor over simulated time.

    Parameters
    ----------
    windows : sequence of Window or of (start_s, end_s, factor[, label]) tuples
        Sorted by start, not overlapping (a window may start where the previous one ends).
    default : float
        The factor outside every window (``>= 0``): 1 for a link that runs except in its
        windows (maintenance), 0 for one that runs only in them (a satellite's passes).
    horizon_s : float, optional
        If given, every window must end by it.
    where : str
        The name of the schedule in error messages (a YAML path such as
        ``"topology.links[2].schedule"``).

    Raises
    ------
    ParameterError
        Naming the window index and field: ``schedule.windows[1].end_s: must be > start_s
        (40.0), got 30.0``.

    Examples
    --------
    >>> s = Schedule([(10.0, 20.0, 0.0, "maintenance"), (30.0, 40.0, 0.5)])
    >>> s.factor_at(15.0), s.factor_at(35.0), s.factor_at(50.0)
    (0.0, 0.5, 1.0)
    >>> s.integral(0.0, 50.0)
    35.0
    >>> s.time_to_integral(0.0, 12.0)  # 10 s before the outage, 2 s after it
    22.0
    >>> Schedule([(0.0, 10.0, 1.0), (5.0, 8.0, 0.0)])
    Traceback (most recent call last):
    ...
    qkd.errors.ParameterError: schedule.windows[1].start_s: must be >= windows[0].end_s (10.0) \
(sorted, not overlapping), got 5.0
    """

    windows: tuple[Window, ...]
    default: float = 1.0
    horizon_s: float | None = None
    where: str = field(default="schedule", compare=False)

    def __post_init__(self) -> None:
        w = self.where
        if not _number(self.default) or self.default < 0:
            raise ParameterError(f"{w}.default", self.default, ">= 0 and finite")
        if self.horizon_s is not None and (not _number(self.horizon_s) or self.horizon_s <= 0):
            raise ParameterError(f"{w}.horizon_s", self.horizon_s, "> 0 and finite, or None")
        try:
            raw = list(self.windows)
        except TypeError:
            raise ParameterError(f"{w}.windows", self.windows, "a list of windows") from None
        windows = tuple(_window(f"{w}.windows[{i}]", x, i) for i, x in enumerate(raw))
        for i, win in enumerate(windows):
            name = f"{w}.windows[{i}]"
            if self.horizon_s is not None and win.end_s > self.horizon_s:
                raise ParameterError(
                    f"{name}.end_s", win.end_s, f"<= the horizon ({self.horizon_s:g} s)"
                )
            if i and win.start_s < windows[i - 1].end_s:
                prev = windows[i - 1].end_s
                raise ParameterError(
                    f"{name}.start_s",
                    win.start_s,
                    f">= windows[{i - 1}].end_s ({prev}) (sorted, not overlapping)",
                )
        object.__setattr__(self, "windows", windows)
        object.__setattr__(self, "default", float(self.default))
        starts = [x.start_s for x in windows]
        object.__setattr__(self, "_starts", starts)

    # -- construction ----------------------------------------------------------------------
    @classmethod
    def from_steps(
        cls,
        edges_s: Sequence[float],
        factors: Sequence[float],
        *,
        default: float = 0.0,
        label: str = "step",
        horizon_s: float | None = None,
        where: str = "schedule",
    ) -> Schedule:
        """A piecewise-constant profile: ``factors[i]`` over ``[edges_s[i], edges_s[i+1])``.

        For a satellite pass sampled in steps (``len(edges_s) == len(factors) + 1``); the
        factor outside the profile is ``default`` (0: no key outside the pass).

        Examples
        --------
        >>> s = Schedule.from_steps([100.0, 110.0, 120.0], [0.5, 1.0])
        >>> s.integral(0.0, 200.0), len(s.windows)
        (15.0, 2)
        """
        edges = list(edges_s)
        facs = list(factors)
        if len(edges) != len(facs) + 1:
            raise ParameterError(
                f"{where}.edges_s", f"{len(edges)} edges", f"len(factors) + 1 = {len(facs) + 1}"
            )
        wins = [Window(edges[i], edges[i + 1], facs[i], f"{label} {i}") for i in range(len(facs))]
        return cls(tuple(wins), default, horizon_s, where)

    @classmethod
    def from_passes(
        cls,
        passes: Sequence[tuple[Sequence[float], Sequence[float]]],
        nominal_rate_bps: float,
        *,
        horizon_s: float | None = None,
        where: str = "schedule",
    ) -> Schedule:
        """A satellite link's schedule: no key outside its passes, each pass a profile.

        Parameters
        ----------
        passes : sequence of (edges_s, rates_bps)
            Per pass, the step edges and the mean secret rate over each step (what
            :meth:`qkd.satellite.PassProfile.steps` returns), passes in time order.
        nominal_rate_bps : float
            The link's nominal rate (``> 0``): each step's factor is its rate over it, so a
            link at this nominal rate makes exactly the pass's key.

        Every step of pass ``k`` is labelled ``"pass k"``, so a :class:`WindowWait` names the
        pass that key waited for.

        Examples
        --------
        >>> s = Schedule.from_passes([([100.0, 110.0, 120.0], [50.0, 150.0])], 100.0)
        >>> s.integral(0.0, 1e3) * 100.0, s.label(1)
        (2000.0, 'pass 0')
        """
        if not _number(nominal_rate_bps) or nominal_rate_bps <= 0:
            raise ParameterError(f"{where}.nominal_rate_bps", nominal_rate_bps, "> 0 and finite")
        wins: list[Window] = []
        for k, (edges_s, rates) in enumerate(passes):
            edges, values = list(edges_s), list(rates)
            if len(edges) != len(values) + 1:
                raise ParameterError(
                    f"{where}.passes[{k}]",
                    f"{len(edges)} edges, {len(values)} rates",
                    "one more edge than rates",
                )
            wins += [
                Window(edges[i], edges[i + 1], values[i] / nominal_rate_bps, f"pass {k}")
                for i in range(len(values))
            ]
        return cls(tuple(wins), 0.0, horizon_s, where)

    # -- evaluation ------------------------------------------------------------------------
    def index_at(self, t: float) -> int | None:
        """Index of the window holding ``t`` (``start_s <= t < end_s``), or None."""
        i = bisect.bisect_right(self._starts, t) - 1  # type: ignore[attr-defined]
        if i >= 0 and t < self.windows[i].end_s:
            return i
        return None

    def factor_at(self, t: float) -> float:
        """The rate factor at time ``t``."""
        i = self.index_at(t)
        return self.default if i is None else float(self.windows[i].factor)

    def label(self, index: int | None) -> str:
        """The label of window ``index`` (``"outside windows"`` for None)."""
        if index is None:
            return "outside windows"
        return self.windows[index].label or f"window {index}"

    def pieces(self, t0: float, t1: float) -> list[tuple[float, float, float, int | None]]:
        """The constant pieces ``(start, end, factor, window index or None)`` covering
        ``[t0, t1]``, in time order."""
        out: list[tuple[float, float, float, int | None]] = []
        t = t0
        # windows are sorted and disjoint: those before the one starting at or before t0
        # all end by t0, so skip them
        first = max(0, bisect.bisect_right(self._starts, t0) - 1)  # type: ignore[attr-defined]
        for i in range(first, len(self.windows)):
            win = self.windows[i]
            if win.end_s <= t:
                continue
            if win.start_s >= t1:
                break
            if win.start_s > t:
                out.append((t, win.start_s, self.default, None))
                t = win.start_s
            end = min(win.end_s, t1)
            out.append((t, end, float(win.factor), i))
            t = end
        if t < t1:
            out.append((t, t1, self.default, None))
        return out

    def integral(self, t0: float, t1: float) -> float:
        """``integral of factor(t) dt`` over ``[t0, t1]`` (0 if ``t1 <= t0``)."""
        if t1 <= t0:
            return 0.0
        return math.fsum((b - a) * f for a, b, f, _ in self.pieces(t0, t1))

    def _windows_end(self, t0: float) -> float:
        """The end of the last window, or ``t0`` if that is later (or there is no window):
        from then on the factor is ``default``."""
        return max(t0, self.windows[-1].end_s) if self.windows else t0

    def time_to_integral(self, t0: float, amount: float) -> float:
        """The earliest ``t >= t0`` with ``integral(t0, t) >= amount`` (inf if never)."""
        if amount <= 0:
            return t0
        left = amount
        last = self._windows_end(t0)
        for a, b, f, _ in self.pieces(t0, last):
            if f > 0 and (b - a) * f >= left:
                return a + left / f
            left -= (b - a) * f
        if self.default > 0:
            return last + left / self.default
        return math.inf

    def mean_factor(self, t0: float, t1: float) -> float:
        """The mean factor over ``[t0, t1]`` (``t1 > t0``): a scheduled link's mean key rate
        over a run is its nominal rate times this (for planning without simulating).

        Examples
        --------
        >>> Schedule([(0.0, 25.0, 0.0, "maintenance")]).mean_factor(0.0, 100.0)
        0.75
        """
        if not t1 > t0:
            raise ParameterError(f"{self.where}: mean_factor t1", t1, f"> t0 ({t0})")
        return self.integral(t0, t1) / (t1 - t0)

    def remaining(self, t0: float) -> float:
        """``integral(t0, inf)``: what is left of the schedule from ``t0`` (inf when the
        default factor is positive; 0 when no window with a positive factor is left and the
        default is 0: the link makes no more key).

        Examples
        --------
        >>> s = Schedule([(10.0, 20.0, 1.0, "pass 0")], default=0.0)
        >>> s.remaining(0.0), s.remaining(15.0), s.remaining(20.0)
        (10.0, 5.0, 0.0)
        """
        if self.default > 0:
            return math.inf
        return self.integral(t0, self._windows_end(t0))

    def last_key_s(self) -> float:
        """When the factor drops to 0 for good (the end of the last window with a positive
        factor; 0 if there is none); inf when the default is positive."""
        if self.default > 0:
            return math.inf
        return max((w.end_s for w in self.windows if w.factor > 0), default=0.0)

    def edges(self, after: float = -math.inf) -> list[tuple[float, float, int | None]]:
        """The times ``> after`` where the factor changes: ``(time, new factor, window index
        or None)``. Coincident edges are merged, and no edge is given where the factor stays
        the same."""
        out: list[tuple[float, float, int | None]] = []
        current = self.default
        for i, win in enumerate(self.windows):
            cand: list[tuple[float, float, int | None]] = [(win.start_s, float(win.factor), i)]
            nxt = self.windows[i + 1] if i + 1 < len(self.windows) else None
            if nxt is None or nxt.start_s > win.end_s:
                cand.append((win.end_s, self.default, None))
            for t, f, idx in cand:
                if f != current:
                    if out and out[-1][0] == t:
                        out[-1] = (t, f, idx)
                    else:
                        out.append((t, f, idx))
                    current = f
                elif out and out[-1][0] == t:
                    out[-1] = (t, f, idx)
        return [e for e in out if e[0] > after]


@dataclass(frozen=True)
class ScheduledRate:
    """A key rate ``base_rate_bps * schedule.factor_at(t)``: the forecast that routing and
    :meth:`~network.keypool.FluidKeyPool.time_to` use for a scheduled link (a
    :class:`~network.keypool.RateOutlook`).

    Examples
    --------
    A satellite link making 100 bit/s during passes from 50 s to 80 s and from 200 s: 1,000
    bits take until 10 s into the first pass; in blocks of 2,000 bits, the first block is
    collected at 70 s and the second, whose first 1,000 bits are lost when the first pass
    ends, 20 s into the second pass.

    >>> rate = ScheduledRate(100.0, Schedule([(50.0, 80.0, 1.0), (200.0, 300.0, 1.0)], 0.0))
    >>> rate.time_to_collect(0.0, 1000.0)
    60.0
    >>> rate.time_to_blocks(0.0, 1, 2000.0, 0.0), rate.time_to_blocks(0.0, 2, 2000.0, 0.0)
    (70.0, 220.0)
    """

    base_rate_bps: float
    schedule: Schedule

    def time_to_collect(self, t0: float, bits: float) -> float:
        """The earliest ``t >= t0`` by which ``bits`` are collected (inf: never)."""
        if bits <= 0:
            return t0
        if self.base_rate_bps <= 0:
            return math.inf
        return self.schedule.time_to_integral(t0, bits / self.base_rate_bps)

    def time_to_blocks(self, t0: float, blocks: int, block_bits: float, progress: float) -> float:
        """When the ``blocks``-th block is collected from ``t0`` (``progress`` bits of the
        first one collected already); a stretch at factor 0 discards the part-collected
        block, as :class:`~network.keypool.FluidKeyPool` does. inf: never."""
        if blocks <= 0:
            return t0
        base = self.base_rate_bps
        if base <= 0:
            return math.inf
        s = self.schedule
        m, p = blocks, progress
        last = s._windows_end(t0)
        for a, b, f, _ in s.pieces(t0, last):
            r = base * f
            if r <= 0:
                p = 0.0
                continue
            need = m * block_bits - p
            if r * (b - a) >= need:
                return a + need / r
            total = p + r * (b - a)
            k = math.floor(total / block_bits + 1e-9)
            m -= k
            p = max(0.0, total - k * block_bits)
        r = base * s.default
        if r <= 0:
            return math.inf
        return last + (m * block_bits - p) / r


def _window(name: str, x: Any, index: int) -> Window:
    if isinstance(x, Window):
        win = x
    else:
        try:
            win = Window(*x)
        except TypeError:
            raise ParameterError(
                name, x, "a Window or a (start_s, end_s, factor[, label]) tuple"
            ) from None
    if not _number(win.start_s) or win.start_s < 0:
        raise ParameterError(f"{name}.start_s", win.start_s, ">= 0 and finite")
    if not _number(win.end_s) or win.end_s <= win.start_s:
        raise ParameterError(f"{name}.end_s", win.end_s, f"> start_s ({win.start_s}) and finite")
    if not _number(win.factor) or win.factor < 0:
        raise ParameterError(f"{name}.factor", win.factor, ">= 0 and finite")
    if not isinstance(win.label, str):
        raise ParameterError(f"{name}.label", win.label, "a string")
    return Window(float(win.start_s), float(win.end_s), float(win.factor), win.label)


# ---------------------------------------------------------------------------------------------
# driving a pool


WindowObserver = Callable[[WindowWait], None]


class ScheduleTarget(Protocol):
    """What a schedule drives: a :class:`~network.link.Link` or a :class:`ScaledPool`.

    ``schedule`` is set to the schedule being applied (None once stopped): forecasts of the
    key to come (key-aware routing) read it.
    """

    schedule: Schedule | None

    @property
    def name(self) -> str: ...

    @property
    def pool(self) -> FluidKeyPool: ...

    def set_schedule_factor(self, factor: float) -> None: ...


class ScaledPool:
    """A bare pool driven by a schedule: its rate is ``base_rate_bps * factor``.

    Parameters
    ----------
    pool : FluidKeyPool
    base_rate_bps : float, optional
        The rate at factor 1 (default: the pool's rate now).

    Examples
    --------
    >>> env = simpy.Environment()
    >>> target = ScaledPool(FluidKeyPool(env, 100.0, 1e6))
    >>> run = apply_schedule(env, target, Schedule([(10.0, 20.0, 0.0)]))
    >>> env.run(until=30.0)
    >>> target.pool.level, run.events
    (2000.0, 2)
    """

    def __init__(self, pool: FluidKeyPool, base_rate_bps: float | None = None) -> None:
        self.pool = pool
        self.name = pool.name
        self.base_rate_bps = pool.rate_bps if base_rate_bps is None else float(base_rate_bps)
        self.schedule_factor = 1.0
        self.schedule: Schedule | None = None

    def set_schedule_factor(self, factor: float) -> None:
        """Set the pool's rate to ``base_rate_bps * factor``."""
        self.schedule_factor = float(factor)
        self.pool.set_rate(self.base_rate_bps * self.schedule_factor)


class ScheduleRun:
    """A schedule being applied to one target (made by :func:`apply_schedule`).

    Attributes
    ----------
    events : int
        SimPy events scheduled so far (one per edge; O(number of windows)).
    waits : list of WindowWait
        The windows that key requests waited for.
    """

    def __init__(
        self,
        env: simpy.Environment,
        target: ScheduleTarget,
        schedule: Schedule,
        observer: WindowObserver | None,
    ) -> None:
        self.env = env
        self.target = target
        self.schedule = schedule
        self.observer = observer
        self.events = 0
        self.waits: list[WindowWait] = []
        self.stopped = False
        now = env.now
        self._edges = schedule.edges(after=now)
        self._next = 0
        self._factor = schedule.factor_at(now)
        self._index = schedule.index_at(now)
        self._since = now
        target.schedule = schedule
        target.set_schedule_factor(self._factor)
        self._arm()

    @property
    def factor(self) -> float:
        """The factor applied now."""
        return self._factor

    def stop(self) -> None:
        """Apply no further edges (the factor in force stays, and forecasts assume it)."""
        self.stopped = True
        if self.target.schedule is self.schedule:
            self.target.schedule = None

    def _arm(self) -> None:
        if self._next >= len(self._edges):
            return
        t = self._edges[self._next][0]
        ev = self.env.timeout(max(0.0, t - self.env.now))
        self.events += 1
        ev.callbacks.append(self._fire)

    def _fire(self, _ev: simpy.Event) -> None:
        if self.stopped:
            return
        _, factor, index = self._edges[self._next]
        self._next += 1
        before = self._factor
        previous = self.schedule.label(self._index)
        label = self.schedule.label(index)
        pool = self.target.pool
        if factor > before and pool.waiters and (before == 0 or label != previous):
            oldest = pool.oldest_request_at
            since = self._since if oldest is None else max(oldest, self._since)
            rec = WindowWait(
                self.env.now,
                self.target.name,
                index,
                label,
                previous,
                before,
                factor,
                since,
                pool.waiters,
                pool.pending_bits,
            )
            self.waits.append(rec)
            if self.observer is not None:
                self.observer(rec)
        self._factor = factor
        self._index = index
        self._since = self.env.now
        self.target.set_schedule_factor(factor)
        self._arm()


def apply_schedule(
    env: simpy.Environment,
    target: ScheduleTarget,
    schedule: Schedule,
    *,
    observer: WindowObserver | None = None,
) -> ScheduleRun:
    """Drive ``target``'s key rate with ``schedule`` from now on.

    The factor in force now is applied at once; each later change of the factor is one
    SimPy timeout, armed when the previous one fires (so at most one is pending).

    Parameters
    ----------
    env : simpy.Environment
    target : Link or ScaledPool
        Anything with ``name``, ``pool`` and ``set_schedule_factor(factor)``.
    schedule : Schedule
    observer : callable, optional
        Called with each :class:`WindowWait` as it is recorded.

    Returns
    -------
    ScheduleRun
        Its ``waits`` list the windows that requests waited for; ``events`` counts the
        events scheduled.

    Examples
    --------
    A pass from 100 s to 400 s at the full rate, nothing outside it; a request made at
    t = 0 for 1,000 bits at 10 bit/s wakes when the pass has delivered them:

    >>> env = simpy.Environment()
    >>> target = ScaledPool(FluidKeyPool(env, 10.0, 1e6, name="sat"))
    >>> run = apply_schedule(env, target, Schedule([(100.0, 400.0, 1.0, "pass 0")], 0.0))
    >>> req = target.pool.get(1000.0)
    >>> _ = env.run(req)
    >>> env.now, run.waits[0].label, run.waits[0].waited_s
    (200.0, 'pass 0', 100.0)
    """
    return ScheduleRun(env, target, schedule, observer)
