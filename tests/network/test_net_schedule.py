"""Supply schedules: validation, exact integrals, O(windows) events, exact wake-ups, faults."""

from __future__ import annotations

import math

import pytest
import simpy
from hypothesis import given, settings
from hypothesis import strategies as st
from schedkit import CountingEnv, schedules

from network import LinkCut, QKDNetwork, schedule_faults
from network.keypool import FluidKeyPool
from network.schedule import ScaledPool, Schedule, apply_schedule
from qkd.errors import ParameterError

# -- validation ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("windows", "match"),
    [
        ([(10.0, 5.0, 1.0)], r"schedule\.windows\[0\]\.end_s: must be > start_s \(10\.0\)"),
        ([(-1.0, 5.0, 1.0)], r"schedule\.windows\[0\]\.start_s: must be >= 0"),
        ([(0.0, 5.0, -0.5)], r"schedule\.windows\[0\]\.factor: must be >= 0"),
        ([(0.0, 5.0, math.nan)], r"schedule\.windows\[0\]\.factor"),
        (
            [(0.0, 5.0, 1.0), (4.0, 8.0, 0.0)],
            r"schedule\.windows\[1\]\.start_s: must be >= windows\[0\]\.end_s \(5\.0\)",
        ),
        ([(0.0, 5.0, 1.0), "x"], r"schedule\.windows\[1\]: must be a Window"),
    ],
)
def test_bad_windows_name_index_and_field(windows: list, match: str) -> None:
    with pytest.raises(ParameterError, match=match):
        Schedule(windows)


def test_horizon_default_and_where() -> None:
    with pytest.raises(ParameterError, match=r"links\[2\]\.schedule\.windows\[0\]\.end_s: .*"):
        Schedule([(0.0, 500.0, 1.0)], horizon_s=100.0, where="links[2].schedule")
    with pytest.raises(ParameterError, match=r"schedule\.default: must be >= 0"):
        Schedule([], default=-1.0)
    with pytest.raises(ParameterError, match=r"schedule\.edges_s"):
        Schedule.from_steps([0.0, 1.0], [1.0, 2.0])


def test_edges_merge_adjacent_windows_and_skip_no_change() -> None:
    s = Schedule([(0.0, 10.0, 0.5), (10.0, 20.0, 0.0), (20.0, 30.0, 1.0), (40.0, 50.0, 1.0)])
    assert s.edges() == [(0.0, 0.5, 0), (10.0, 0.0, 1), (20.0, 1.0, 2)]
    assert s.edges(after=5.0) == [(10.0, 0.0, 1), (20.0, 1.0, 2)]
    sat = Schedule([(100.0, 200.0, 1.0)], default=0.0)
    assert sat.edges() == [(100.0, 1.0, 0), (200.0, 0.0, None)]


@given(schedules(), st.floats(0.0, 2000.0), st.floats(0.0, 2000.0))
def test_integral_is_additive(s: Schedule, a: float, b: float) -> None:
    lo, hi = min(a, b), max(a, b)
    mid = (lo + hi) / 2
    assert s.integral(lo, hi) == pytest.approx(
        s.integral(lo, mid) + s.integral(mid, hi), rel=1e-12, abs=1e-9
    )


@given(schedules(), st.floats(0.0, 500.0), st.floats(0.0, 3000.0))
def test_time_to_integral_inverts_integral(s: Schedule, t0: float, amount: float) -> None:
    t = s.time_to_integral(t0, amount)
    if math.isinf(t):
        last = s.windows[-1].end_s if s.windows else t0
        # no default supply, or one so small that the wait overflows a float (a subnormal)
        assert s.default == 0 or math.isinf(t0 + amount / s.default)
        assert s.integral(t0, max(t0, last)) < amount
    else:
        assert t >= t0
        assert s.integral(t0, t) == pytest.approx(amount, rel=1e-9, abs=1e-9)


# -- pools ---------------------------------------------------------------------------------


def _pool(env: simpy.Environment, rate: float, block: float | None) -> FluidKeyPool:
    return FluidKeyPool(env, rate, math.inf if block is None else 1e18, block_bits=block)


@settings(max_examples=60, deadline=None)
@given(
    schedules(),
    st.floats(1.0, 1e4),
    st.sampled_from([None, 50.0, 1000.0]),
    st.floats(10.0, 3000.0),
)
def test_delivered_equals_integral_of_rate_times_factor(
    s: Schedule, rate: float, block: float | None, horizon: float
) -> None:
    env = simpy.Environment()
    pool = FluidKeyPool(env, rate, 1e18, block_bits=block)
    run = apply_schedule(env, ScaledPool(pool), s)
    env.run(until=horizon)
    delivered = pool.level
    expected = rate * s.integral(0.0, horizon)
    assert pool.wasted_bits == 0
    if block is None:
        assert delivered == pytest.approx(expected, rel=1e-9, abs=1e-6)
    else:
        # blocks land whole; a drop to 0 discards the part-collected block
        assert delivered <= expected + 1e-6 * max(1.0, expected)
        lost = (pool.interrupted_blocks + 1) * block
        assert delivered >= expected - lost - 1e-6 * max(1.0, expected)
        if all(f > 0 for _, f, _ in s.edges()) and s.factor_at(0.0) > 0:
            assert expected - delivered <= block * (1 + 1e-9)
    edges = s.edges(after=0.0)
    assert sum(t < horizon for t, _, _ in edges) <= run.events <= len(edges)


def test_events_do_not_grow_with_the_horizon() -> None:
    s = Schedule([(100.0 * k, 100.0 * k + 40.0, 0.0) for k in range(1, 11)])
    counts = []
    for horizon in (2e3, 2e6):
        env = CountingEnv()
        pool = FluidKeyPool(env, 100.0, 1e18, block_bits=500.0)
        apply_schedule(env, ScaledPool(pool), s)
        for k in range(5):  # a few requests, served by the pool's own wake-ups
            env.process(_taker(env, pool, 300.0 * k, 20_000.0))
        env.run(until=horizon)
        counts.append(env.scheduled)
    assert counts[0] == counts[1]
    assert counts[0] <= 2 * len(s.edges()) + 5 * 6  # one per edge, a few per request


def _taker(env: simpy.Environment, pool: FluidKeyPool, at: float, bits: float):  # type: ignore[no-untyped-def]
    yield env.timeout(at)
    yield pool.get(bits)


@settings(max_examples=80, deadline=None)
@given(schedules(), st.floats(1.0, 1e3), st.floats(0.0, 300.0), st.floats(1.0, 1e5))
def test_request_wakes_at_the_exact_time(s: Schedule, rate: float, at: float, bits: float) -> None:
    env = simpy.Environment()
    pool = FluidKeyPool(env, rate, 1e18)
    apply_schedule(env, ScaledPool(pool), s)
    woke: list[float] = []

    def proc():  # type: ignore[no-untyped-def]
        yield env.timeout(at)
        yield pool.get(bits)
        woke.append(env.now)

    env.process(proc())
    expected = s.time_to_integral(0.0, bits / rate)
    env.run(until=1e5)
    # SimPy's run(until=T) stops before the events at T itself: a wake-up at exactly T is
    # beyond the run
    if math.isinf(expected) or expected >= 1e5:
        assert not woke or woke[0] <= 1e5
        if math.isinf(expected):
            assert not woke
        return
    want = max(at, expected)
    assert woke == [pytest.approx(want, rel=1e-9, abs=1e-6)]


def test_wait_on_a_window_is_recorded() -> None:
    env = simpy.Environment()
    pool = FluidKeyPool(env, 10.0, 1e6, name="sat")
    seen = []
    s = Schedule([(50.0, 60.0, 1.0, "pass 0"), (200.0, 300.0, 1.0, "pass 1")], default=0.0)
    run = apply_schedule(env, ScaledPool(pool), s, observer=seen.append)

    def proc():  # type: ignore[no-untyped-def]
        yield env.timeout(20.0)
        yield pool.get(500.0)

    p = env.process(proc())
    env.run(p)
    # 100 bits from pass 0, 400 more from pass 1 (40 s into it)
    assert env.now == pytest.approx(240.0)
    assert [w.label for w in run.waits] == ["pass 0", "pass 1"]
    assert run.waits[0].waiting_since == 20.0 and run.waits[0].waited_s == 30.0
    assert run.waits[1].waiting_since == 60.0 and run.waits[1].pending_bits == 500.0
    assert seen == run.waits
    assert run.waits[1].as_row()["window"] == 1


# -- links: composition with faults --------------------------------------------------------


def test_cut_during_a_window_stays_a_cut(line) -> None:  # type: ignore[no-untyped-def]
    env = simpy.Environment()
    net = QKDNetwork(env, line("AB", rate=100.0, capacity=1e9))
    link = net.link("A", "B")
    apply_schedule(env, link, Schedule([(0.0, 100.0, 0.5), (100.0, 200.0, 2.0)], default=1.0))
    schedule_faults(env, net, [LinkCut("A", "B", 50.0, 150.0)])
    env.run(until=250.0)
    # 0-50 at 0.5, cut 50-150 (the window edge at 100 makes no key), 150-200 at 2, 200-250 at 1
    assert link.pool.level == pytest.approx(100.0 * (50 * 0.5 + 50 * 2.0 + 50 * 1.0))
    assert link.schedule_factor == 1.0 and not link.cut


def test_eavesdropper_and_schedule_multiply(line) -> None:  # type: ignore[no-untyped-def]
    env = simpy.Environment()
    net = QKDNetwork(env, line("AB", rate=100.0, capacity=1e9))
    link = net.link("A", "B")
    apply_schedule(env, link, Schedule([(0.0, 100.0, 0.5)]))
    link.start_attack(0.03)
    assert link.pool.rate_bps == pytest.approx(100.0 * 0.5 * link.attack_factor)
    with pytest.raises(ParameterError, match="schedule factor"):
        link.set_schedule_factor(-1.0)


# -- a satellite link in the network --------------------------------------------------------


def test_satellite_pass_feeds_a_link_and_transfers_wait_for_it(line) -> None:  # type: ignore[no-untyped-def]
    from qkd.satellite import MICIUS, MICIUS_ORBIT, XINGLONG, key_per_pass, pass_profile, passes

    ps = passes(MICIUS_ORBIT, XINGLONG, 0.0, 86400.0, MICIUS.min_elevation_deg)[:3]
    profiles = [pass_profile(MICIUS, MICIUS_ORBIT, XINGLONG, p.start_s, p.end_s) for p in ps]
    steps = [prof.steps(10.0) for prof in profiles]
    nominal = max(float(r.max()) for _, r in steps)
    schedule = Schedule.from_passes(steps, nominal)
    env = CountingEnv()
    net = QKDNetwork(env, line("AB", rate=nominal, capacity=1e12))
    link = net.link("A", "B")
    run = apply_schedule(env, link, schedule)
    first_pass_key = profiles[0].secret_bits
    bits = first_pass_key + 0.5 * profiles[1].secret_bits  # needs two passes
    n_bytes = int(bits // 8)
    proc = net.transfer("A", "B", n_bytes)
    env.run(proc)
    rec = proc.value
    assert rec.status == "delivered"
    # woke inside pass 1, where the schedule's integral first reaches the key needed
    needed = rec.key_bits_total / nominal
    assert env.now == pytest.approx(
        schedule.time_to_integral(0.0, needed) + rec.propagation_s + rec.transmit_s, rel=1e-9
    )
    assert ps[1].start_s < env.now < ps[1].end_s
    assert [w.label for w in run.waits] == ["pass 0", "pass 1"]
    env.run(until=86400.0)
    keys = key_per_pass(MICIUS, MICIUS_ORBIT, XINGLONG, ps)
    made = link.pool.level + link.pool.consumed_bits
    assert made == pytest.approx(sum(k.secret_bits for k in keys), rel=1e-9)
    # one event per edge, plus the waiter's re-timing at the edges it waits through, plus a
    # handful for the transfer
    assert run.events == len(schedule.edges())
    assert env.scheduled < 2 * len(schedule.edges()) + 40


def test_reduced_window_records_what_slowed_the_key() -> None:
    env = simpy.Environment()
    pool = FluidKeyPool(env, 10.0, 1e6, name="fibre")
    s = Schedule([(0.0, 100.0, 0.1, "maintenance")])
    run = apply_schedule(env, ScaledPool(pool), s)
    req = pool.get(300.0)
    env.run(req)
    # 100 bits during maintenance, 200 more at the full rate
    assert env.now == pytest.approx(120.0)
    [w] = run.waits
    assert (w.label, w.previous_label, w.factor_before, w.factor_after) == (
        "outside windows",
        "maintenance",
        0.1,
        1.0,
    )
    assert w.waited_s == 100.0 and w.window is None
