"""Satellite links in the network: pass profiles as schedules, key per pass, a trusted
satellite node relaying key between two ground stations."""

from __future__ import annotations

import dataclasses
import math

import pytest
import simpy

from network import KeyNeverSuffices, NodeSpec, OneTimePad, QKDNetwork, TopologySpec
from network.satellite import satellite_schedule, zenith_rate_bps
from qkd.errors import ParameterError
from qkd.satellite import MICIUS, MICIUS_ORBIT, XINGLONG, GroundStation, key_per_pass, passes

DAY = 86400.0
NANSHAN = GroundStation("nanshan", 43.475, 87.176, 2080.0)  # Urumqi; a Micius station
OTP = OneTimePad(auth_bits=0)


@pytest.fixture(scope="module")
def xinglong_day():  # type: ignore[no-untyped-def]
    return satellite_schedule(MICIUS, MICIUS_ORBIT, XINGLONG, 2 * DAY)


def test_schedule_integral_is_the_key_of_the_passes(xinglong_day) -> None:  # type: ignore[no-untyped-def]
    sat = xinglong_day
    ps = passes(MICIUS_ORBIT, XINGLONG, 0.0, 2 * DAY, MICIUS.min_elevation_deg)
    assert [(p.start_s, p.end_s) for p in sat.passes] == [(p.start_s, p.end_s) for p in ps]
    keys = key_per_pass(MICIUS, MICIUS_ORBIT, XINGLONG, ps)
    assert len(keys) >= 4
    s, rate = sat.schedule, sat.nominal_rate_bps
    assert rate == pytest.approx(zenith_rate_bps(MICIUS, MICIUS_ORBIT, XINGLONG))
    assert rate * s.integral(0.0, 2 * DAY) == pytest.approx(
        sum(k.secret_bits for k in keys), rel=1e-9
    )
    for k, (key, p) in enumerate(zip(keys, sat.passes, strict=True)):
        assert sat.pass_bits[k] == pytest.approx(key.secret_bits, rel=1e-12)
        assert rate * s.integral(p.start_s, p.end_s) == pytest.approx(key.secret_bits, rel=1e-9)
        labels = {w.label for w in s.windows if p.start_s <= w.start_s < p.end_s}
        assert labels == {f"pass {k}"}
    assert s.default == 0.0 and s.factor_at(sat.passes[0].start_s - 1.0) == 0.0
    assert all(0.0 <= w.factor <= 1.0 for w in s.windows)  # fractions of the zenith rate
    assert 500.0 < sat.mean_slant_km < 1800.0


def test_mask_and_pass_count_thresholds() -> None:
    base = satellite_schedule(MICIUS, MICIUS_ORBIT, XINGLONG, 2 * DAY, min_elevation_deg=10.0)
    high = satellite_schedule(MICIUS, MICIUS_ORBIT, XINGLONG, 2 * DAY, min_elevation_deg=30.0)
    assert len(high.passes) < len(base.passes)
    assert all(p.max_elevation_deg >= 30.0 for p in high.passes)
    assert high.total_bits < base.total_bits
    assert high.downlink.min_elevation_deg == 30.0
    two = satellite_schedule(MICIUS, MICIUS_ORBIT, XINGLONG, 2 * DAY, max_passes=2)
    assert two.passes == base.passes[:2]
    assert {w.label for w in two.schedule.windows} == {"pass 0", "pass 1"}
    assert two.nominal_rate_bps * two.schedule.remaining(0.0) == pytest.approx(
        sum(base.pass_bits[:2]), rel=1e-9
    )


def test_start_shifts_the_clock() -> None:
    later = satellite_schedule(MICIUS, MICIUS_ORBIT, XINGLONG, DAY, start_s=DAY)
    ps = passes(MICIUS_ORBIT, XINGLONG, DAY, 2 * DAY, MICIUS.min_elevation_deg)
    assert [p.start_s for p in later.passes] == pytest.approx([p.start_s - DAY for p in ps])
    assert later.schedule.windows[0].start_s == pytest.approx(ps[0].start_s - DAY)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"horizon_s": 0.0}, r"links\[1\]\.schedule\.horizon_s: must be > 0"),
        ({"step_s": -1.0}, r"links\[1\]\.schedule\.step_s: must be > 0"),
        ({"min_elevation_deg": 95.0}, r"links\[1\]\.schedule\.min_elevation_deg: .*\[0, 90\)"),
        ({"max_passes": -1}, r"links\[1\]\.schedule\.max_passes: must be an integer >= 0"),
        ({"start_s": math.nan}, r"links\[1\]\.schedule\.start_s"),
    ],
)
def test_bad_arguments_name_the_field(kwargs: dict, match: str) -> None:
    args = {"horizon_s": DAY, **kwargs}
    with pytest.raises(ParameterError, match=match):
        satellite_schedule(MICIUS, MICIUS_ORBIT, XINGLONG, where="links[1].schedule", **args)


def test_a_downlink_that_makes_no_key_gives_a_rate_0_link() -> None:
    tiny = dataclasses.replace(MICIUS, rx_aperture_m=1e-4)
    sat = satellite_schedule(tiny, MICIUS_ORBIT, XINGLONG, DAY)
    assert sat.nominal_rate_bps == 0.0 and sat.schedule.windows == () and sat.total_bits == 0
    topo = TopologySpec(
        (NodeSpec("micius", role="relay"), NodeSpec("xinglong")),
        (sat.link_spec("micius", "xinglong"),),
    )
    net = QKDNetwork(simpy.Environment(), topo, OTP)
    with pytest.raises(KeyNeverSuffices, match="link micius-xinglong produces no key"):
        net.transfer("xinglong", "micius", 10)


def test_a_trusted_satellite_relays_key_between_two_stations(xinglong_day) -> None:  # type: ignore[no-untyped-def]
    horizon = 2 * DAY
    to_x = xinglong_day
    to_n = satellite_schedule(MICIUS, MICIUS_ORBIT, NANSHAN, horizon)
    nodes = (
        NodeSpec("micius", role="relay"),
        NodeSpec("xinglong"),
        NodeSpec("nanshan", role="server"),
    )
    links = (
        to_x.link_spec("micius", "xinglong", capacity_bits=1e9),
        to_n.link_spec("micius", "nanshan", capacity_bits=1e9),
    )
    env = simpy.Environment()
    net = QKDNetwork(env, TopologySpec(nodes, links), OTP, routing="key-aware")
    n_bytes = 125_000  # 1 Mbit: several passes over each station
    proc = net.transfer("xinglong", "nanshan", n_bytes)
    env.run(until=horizon)
    rec = proc.value
    assert rec.status == "delivered" and rec.path == ("xinglong", "micius", "nanshan")
    bits = 8 * n_bytes
    ready = {
        name: sat.schedule.time_to_integral(0.0, bits / sat.nominal_rate_bps)
        for name, sat in (("micius-xinglong", to_x), ("micius-nanshan", to_n))
    }
    assert rec.t_end == pytest.approx(
        max(ready.values()) + rec.transmit_s + rec.propagation_s, rel=1e-9
    )
    assert rec.propagation_s == pytest.approx(
        (to_x.mean_slant_km + to_n.mean_slant_km) / 299_792.458
    )
    # each link's key was requested at t=0: it waited for every pass that began before its
    # key was there, and the records name them
    for name, sat in (("micius-xinglong", to_x), ("micius-nanshan", to_n)):
        want = [f"pass {k}" for k, p in enumerate(sat.passes) if p.start_s < ready[name]]
        assert len(want) >= 2
        assert [w.label for w in net.window_waits if w.link == name] == want
    # the satellite's links made exactly the key of their passes
    for sat, link in zip((to_x, to_n), net.links.values(), strict=True):
        made = link.pool.accounting()["generated_bits"]
        assert made == pytest.approx(sat.total_bits, rel=1e-9)
    # O(windows) events: one per edge of each schedule
    for sat, name in ((to_x, "micius-xinglong"), (to_n, "micius-nanshan")):
        assert net.schedule_runs[name].events == len(sat.schedule.edges())
