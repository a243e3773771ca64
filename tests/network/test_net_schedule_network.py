"""Supply schedules through QKDNetwork: per-link schedules, window-wait records, forecasts for
key-aware routing, exhausted schedules, faults, and satellite links as trusted nodes."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import simpy
from hypothesis import given, settings
from hypothesis import strategies as st
from schedkit import CountingEnv, schedules

from network import (
    KeyNeverSuffices,
    LinkCut,
    LinkSpec,
    NodeSpec,
    OneTimePad,
    QKDNetwork,
    TopologySpec,
    schedule_faults,
    write_csv,
)
from network.keypool import FluidKeyPool
from network.link import expected_wait_s
from network.records import WindowWait
from network.schedule import ScaledPool, Schedule, ScheduledRate, apply_schedule
from qkd.errors import ParameterError

OTP = OneTimePad(auth_bits=0)  # one key bit per payload bit: 8 bits a byte


def _pair(
    schedule: Schedule | None, rate: float = 100.0, capacity: float = 1e12, **kw: object
) -> TopologySpec:
    """Two nodes joined by one link (rate in bit/s, no latency, fast channel)."""
    nodes = (NodeSpec("S", role="relay"), NodeSpec("G", role="server"))
    link = LinkSpec(
        "S",
        "G",
        0.0,
        skr_bps=rate,
        latency_s=0.0,
        bandwidth_bps=1e12,
        capacity_bits=capacity,
        schedule=schedule,
        **kw,  # type: ignore[arg-type]
    )
    return TopologySpec(nodes, (link,))


# -- key delivered, events -----------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(schedules(max_windows=6), st.floats(1.0, 1e4), st.floats(10.0, 3000.0))
def test_network_link_makes_rate_times_integral(s: Schedule, rate: float, horizon: float) -> None:
    env = simpy.Environment()
    net = QKDNetwork(env, _pair(s, rate), OTP)
    env.run(until=horizon)
    [summary] = net.link_summaries()
    assert summary.generated_bits == pytest.approx(
        rate * s.integral(0.0, horizon), rel=1e-9, abs=1e-6
    )
    run = net.schedule_runs["S-G"]
    edges = s.edges(after=0.0)
    assert sum(t < horizon for t, _, _ in edges) <= run.events <= len(edges)


def test_events_are_per_window_not_per_second() -> None:
    s = Schedule([(1000.0 * k, 1000.0 * k + 300.0, 1.0, f"pass {k}") for k in range(1, 21)], 0.0)
    counts = []
    for horizon in (3e4, 3e7):
        env = CountingEnv()
        net = QKDNetwork(env, _pair(s, 50.0), OTP)
        procs = [net.transfer("S", "G", 1000) for _ in range(3)]  # 8,000 bits each
        env.run(until=horizon)
        assert all(p.value.status == "delivered" for p in procs)
        counts.append(env.scheduled)
    assert counts[0] == counts[1]
    assert counts[0] <= 2 * len(s.edges()) + 3 * 8


# -- waiting for a window --------------------------------------------------------------------


def test_transfer_waits_for_the_window_and_the_record_names_it(tmp_path: Path) -> None:
    s = Schedule([(100.0, 200.0, 1.0, "pass 0"), (500.0, 700.0, 0.5, "pass 1")], default=0.0)
    env = simpy.Environment()
    net = QKDNetwork(env, _pair(s, 100.0), OTP)

    def later():  # type: ignore[no-untyped-def]
        yield env.timeout(30.0)
        return (yield net.transfer("S", "G", 2500, tag="round-1"))  # 20,000 bits

    proc = env.process(later())
    env.run(proc)
    rec = proc.value
    # 10,000 bits from pass 0, the other 10,000 at 50 bit/s in pass 1: 200 s into it
    assert rec.status == "delivered" and rec.t_end == pytest.approx(700.0)
    assert rec.key_wait_s == pytest.approx(670.0)
    assert [(w.label, w.window, w.link) for w in net.window_waits] == [
        ("pass 0", 0, "S-G"),
        ("pass 1", 1, "S-G"),
    ]
    first, second = net.window_waits
    assert (first.waiting_since, first.waited_s, first.pending_bits) == (30.0, 70.0, 20_000.0)
    assert (second.time, second.waiting_since, second.previous_label) == (
        500.0,
        200.0,
        "outside windows",
    )
    path = tmp_path / "window_waits.csv"
    assert write_csv(path, net.window_waits, WindowWait.columns()) == 2
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == WindowWait.columns()
    assert rows[1]["label"] == "pass 1" and float(rows[1]["waited_s"]) == 300.0
    empty = tmp_path / "none.csv"
    assert write_csv(empty, [], WindowWait.columns()) == 0
    assert empty.read_text().strip() == ",".join(WindowWait.columns())


def test_no_window_before_the_horizon_leaves_the_transfer_unfinished() -> None:
    s = Schedule([(5000.0, 5100.0, 1.0, "pass 0")], default=0.0)
    env = simpy.Environment()
    net = QKDNetwork(env, _pair(s, 100.0), OTP)
    net.transfer("S", "G", 100, tag="stuck")
    env.run(until=1000.0)
    assert net.records == []
    [snap] = net.in_progress()
    assert (snap.status, snap.tag, snap.t_end) == ("in_progress", "stuck", 1000.0)
    assert net.window_waits == []


def test_a_schedule_that_ends_fails_its_waiters_with_the_reason() -> None:
    # 10,000 bits in the only pass
    s = Schedule([(100.0, 200.0, 1.0, "pass 0")], default=0.0)
    env = simpy.Environment()
    net = QKDNetwork(env, _pair(s, 100.0), OTP)
    ok = net.transfer("S", "G", 750, tag="fits")  # 6,000 bits
    late = net.transfer("S", "G", 750, tag="too much")  # 6,000 more: only 4,000 to come
    env.run(until=1000.0)
    assert ok.value.status == "delivered" and ok.value.t_end == pytest.approx(160.0)
    rec = late.value
    assert rec.status == "failed" and rec.t_end == 0.0  # known at once: no wait for nothing
    assert "link S-G makes no more key (its schedule has no window after t=200 s)" in rec.reason
    assert "will hold 4000 of the 6000 key bits needed" in rec.reason
    # a new transfer after the last window fails at once, with the same reason
    after = net.transfer("S", "G", 1000)
    env.run(until=1001.0)
    assert after.value.status == "failed" and "makes no more key" in after.value.reason
    assert net.link("S", "G").key_to_come() == 0.0


def test_a_cut_in_the_last_pass_fails_the_waiter_when_the_pass_ends() -> None:
    s = Schedule([(100.0, 200.0, 1.0, "pass 0")], default=0.0)
    env = simpy.Environment()
    net = QKDNetwork(env, _pair(s, 100.0), OTP, on_fault="wait")
    proc = net.transfer("S", "G", 1000)  # 8,000 bits of the pass's 10,000
    schedule_faults(env, net, [LinkCut("S", "G", 120.0, 300.0)])  # the pass makes 2,000
    env.run(until=1000.0)
    rec = proc.value
    assert rec.status == "failed" and rec.t_end == 200.0
    assert "will hold 2000 of the 8000 key bits needed" in rec.reason
    assert [w.label for w in net.window_waits] == ["pass 0"]


def test_waiters_the_blocks_in_flight_serve_are_kept() -> None:
    env = simpy.Environment()
    pool = FluidKeyPool(env, 100.0, 1e9, block_bits=1000.0, block_latency_s=50.0)
    target = ScaledPool(pool)
    apply_schedule(env, target, Schedule([(0.0, 20.0, 1.0, "pass 0")], default=0.0))
    first, second = pool.get(1500.0), pool.get(1000.0)
    env.run(until=20.0)  # two blocks collected, landing at 60 and 70 s
    assert pool.unlanded_bits == 2000.0
    failed = pool.fail_waiters(RuntimeError("no more key"), keep_bits=pool.level + 2000.0)
    assert failed == 1 and second.triggered and not second.ok
    second.defused = True  # nobody waits on it here
    env.run(until=100.0)
    assert first.ok and env.now == 100.0 and pool.level == 500.0


def test_cut_during_a_window_through_the_network() -> None:
    s = Schedule([(0.0, 100.0, 0.5, "maintenance"), (100.0, 200.0, 2.0, "boost")], default=1.0)
    env = simpy.Environment()
    net = QKDNetwork(env, _pair(s, 100.0), OTP)
    schedule_faults(env, net, [LinkCut("S", "G", 50.0, 150.0)])
    env.run(until=250.0)
    link = net.link("S", "G")
    # 0-50 at 0.5, cut 50-150 (the edge at 100 makes no key), 150-200 at 2, 200-250 at 1
    assert link.pool.level == pytest.approx(100.0 * (50 * 0.5 + 50 * 2.0 + 50 * 1.0))
    assert [f.kind for f in net.fault_log] == ["link_cut", "link_repair"]
    assert link.schedule is s and link.schedule_factor == 1.0


def test_link_spec_rejects_a_schedule_of_the_wrong_type() -> None:
    with pytest.raises(ParameterError, match=r"link S-G: schedule: must be a Schedule or None"):
        LinkSpec("S", "G", 1.0, schedule=[(0.0, 1.0, 1.0)])  # type: ignore[arg-type]


# -- forecasts: expected wait and routing ------------------------------------------------------


@settings(max_examples=80, deadline=None)
@given(
    schedules(max_windows=6),
    st.floats(1.0, 1e3),
    st.sampled_from([None, 50.0, 700.0]),
    st.sampled_from([0.0, 7.5]),
    st.floats(0.0, 300.0),
    st.floats(1.0, 3e4),
)
def test_forecast_is_the_wake_up_time(
    s: Schedule, rate: float, block: float | None, latency: float, at: float, bits: float
) -> None:
    env = simpy.Environment()
    pool = FluidKeyPool(
        env,
        rate,
        1e18,
        block_bits=block,
        block_latency_s=latency if block else 0.0,
    )
    apply_schedule(env, ScaledPool(pool), s)
    if at > 0:
        env.run(until=at)
    target = pool.level + bits
    forecast = pool.time_to(target, outlook=ScheduledRate(rate, s))
    req = pool.get(target)
    woke: list[float] = []
    req.callbacks.append(lambda _ev: woke.append(env.now))
    env.run(until=1e5)
    if math.isinf(forecast):
        assert not woke
        return
    if at + forecast > 1e5 * (1 - 1e-9):
        return
    assert woke == [pytest.approx(at + forecast, rel=1e-9, abs=1e-6)]


def test_expected_wait_counts_the_next_window() -> None:
    s = Schedule([(60.0, 300.0, 0.5, "pass 0")], default=0.0)
    env = simpy.Environment()
    net = QKDNetwork(env, _pair(s, 100.0), OTP)
    link = net.link("S", "G")
    assert link.pool.rate_bps == 0.0
    assert expected_wait_s(link, 1000.0) == pytest.approx(80.0)
    assert expected_wait_s(link, 20_000.0) == math.inf  # more than the pass makes
    link.start_attack(0.03)  # an eavesdropper below the abort threshold slows the forecast
    assert expected_wait_s(link, 1000.0) == pytest.approx(60.0 + 20.0 / link.attack_factor)


def _two_routes(t_open: float, fast: float, slow: float) -> TopologySpec:
    """A-S-B through a scheduled link A-S (``fast`` bit/s from ``t_open``) and A-D-B through
    an always-on link A-D (``slow`` bit/s); S-B and D-B hold plenty of key."""
    nodes = tuple(NodeSpec(n, role="relay") for n in "ASDB")
    kw = {"bandwidth_bps": 1e9, "capacity_bits": 1e9}
    plenty = {"skr_bps": 1e6, "initial_bits": 1e8, **kw}
    window = Schedule([(t_open, t_open + 1e4, 1.0, "pass 0")], default=0.0)
    links = (
        LinkSpec("A", "S", 0.0, skr_bps=fast, latency_s=0.002, schedule=window, **kw),
        LinkSpec("S", "B", 0.0, latency_s=0.002, **plenty),
        LinkSpec("A", "D", 0.0, skr_bps=slow, latency_s=0.001, **kw),
        LinkSpec("D", "B", 0.0, latency_s=0.001, **plenty),
    )
    return TopologySpec(nodes, links)


def _deliver(topo: TopologySpec, routing: str, path: list[str] | None = None) -> tuple:
    env = simpy.Environment()
    net = QKDNetwork(env, topo, OTP, routing=routing)
    rec = env.run(net.transfer("A", "B", 10_000, path=path))  # 80,000 bits
    return rec.path, rec.t_end


@pytest.mark.parametrize("t_open", [0.0, 5.0, 30.0, 75.0, 200.0])
def test_key_aware_routing_picks_the_route_that_delivers_first(t_open: float) -> None:
    topo = _two_routes(t_open, fast=1e4, slow=1e3)  # the pass: 8 s of key; the fibre: 80 s
    via_s = _deliver(topo, "latency", ["A", "S", "B"])
    via_d = _deliver(topo, "latency", ["A", "D", "B"])
    best = min(via_s, via_d, key=lambda r: r[1])
    path, t_end = _deliver(topo, "key-aware")
    assert path == best[0] and t_end == pytest.approx(best[1])
    assert path == (("A", "S", "B") if t_open + 8.0 < 80.0 else ("A", "D", "B"))
    # latency routing is unchanged: the lower-latency route, whatever the key
    assert _deliver(topo, "latency")[0] == ("A", "D", "B")


def test_key_never_suffices_survives_recreation_from_its_args() -> None:
    # SimPy hands a process waiting on a failed event a copy made as type(exc)(*exc.args)
    err = KeyNeverSuffices(["S-G"], needed_bits=8e3, available_bits=2e3, ended_at=200.0)
    copy = type(err)(*err.args)
    assert str(copy) == str(err) and copy.ended_at == 200.0 and copy.links == ("S-G",)
    plain = KeyNeverSuffices(["A-B"], needed_bits=264, available_bits=0.0)
    assert str(type(plain)(*plain.args)) == str(plain)
