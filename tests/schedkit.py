"""Shared by the supply-schedule tests of :mod:`network.schedule` (``tests/network``): an
environment that counts its events and a hypothesis strategy of valid schedules."""

from __future__ import annotations

import simpy
from hypothesis import strategies as st

from network.schedule import Schedule, Window


class CountingEnv(simpy.Environment):
    """An environment that counts every event scheduled on it."""

    def __init__(self) -> None:
        super().__init__()
        self.scheduled = 0

    def schedule(self, event, priority=1, delay=0):  # type: ignore[no-untyped-def]
        self.scheduled += 1
        super().schedule(event, priority, delay)


@st.composite
def schedules(draw: st.DrawFn, max_windows: int = 8) -> Schedule:
    """Sorted, non-overlapping windows (gaps may be 0) with factors in [0, 3]."""
    n = draw(st.integers(0, max_windows))
    t = draw(st.floats(0.0, 50.0))
    wins = []
    for _ in range(n):
        gap = draw(st.sampled_from([0.0, draw(st.floats(0.0, 100.0))]))
        dur = draw(st.floats(0.5, 200.0))
        factor = draw(st.sampled_from([0.0, 1.0, draw(st.floats(0.0, 3.0))]))
        wins.append(Window(t + gap, t + gap + dur, factor))
        t = t + gap + dur
    default = draw(st.sampled_from([0.0, 1.0, draw(st.floats(0.0, 2.0))]))
    return Schedule(tuple(wins), default)
