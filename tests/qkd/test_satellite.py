"""Satellite downlinks: geometry, passes, loss over a pass, the Micius preset against Liao 2017."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qkd.errors import ParameterError
from qkd.satellite import (
    EARTH_RADIUS_KM,
    MICIUS,
    MICIUS_ORBIT,
    XINGLONG,
    Downlink,
    GroundStation,
    Orbit,
    Pass,
    key_per_pass,
    look_angles,
    pass_profile,
    passes,
)

# Liao et al., Nature 549, 43 (2017)
LIAO_SIFTED_645_BPS = 12e3
LIAO_SIFTED_1200_BPS = 1.1e3
LIAO_PASS_S = 273.0
LIAO_PASS_SIFTED_BITS = 1_671_072
LIAO_PASS_FINAL_BITS = 300_939


def _slant_km(el_deg: float, h_km: float = 500.0, station_m: float = 960.0) -> float:
    r1, r2 = EARTH_RADIUS_KM + station_m / 1e3, EARTH_RADIUS_KM + h_km
    e = math.radians(el_deg)
    return math.sqrt(r2**2 - (r1 * math.cos(e)) ** 2) - r1 * math.sin(e)


@pytest.fixture(scope="module")
def liao_pass() -> Pass:
    """The pass over Xinglong culminating closest to the 645 km minimum slant range."""
    ps = passes(MICIUS_ORBIT, XINGLONG, 0.0, 20 * 86400.0, 10.0)
    best = min(ps, key=lambda p: abs(_slant_km(p.max_elevation_deg) - 645.0))
    half = LIAO_PASS_S / 2
    return Pass(best.t_max_s - half, best.t_max_s + half, best.max_elevation_deg, best.t_max_s)


# -- geometry ------------------------------------------------------------------------------


def test_overhead_and_sun_synchronous_node() -> None:
    el, rng = look_angles(Orbit(500.0, 0.0), GroundStation("eq", 0.0, 0.0), 0.0)
    assert float(el) == pytest.approx(90.0) and float(rng) == pytest.approx(500.0)
    drift_deg_per_day = math.degrees(MICIUS_ORBIT.node_rate) * 86400
    assert drift_deg_per_day == pytest.approx(360 / 365.2422, rel=0.02)  # sun-synchronous


@settings(max_examples=50, deadline=None)
@given(st.floats(0.0, 6000.0), st.floats(-80, 80), st.floats(-180, 180))
def test_slant_range_matches_the_law_of_cosines(t: float, lat: float, lon: float) -> None:
    st_ = GroundStation("s", lat, lon, 0.0)
    el, rng = look_angles(MICIUS_ORBIT, st_, t)
    if float(el) > 0:
        assert float(rng) == pytest.approx(_slant_km(float(el), station_m=0.0), rel=1e-9)
    assert float(rng) >= MICIUS_ORBIT.altitude_km - 1e-6


def test_passes_are_above_the_mask_and_exact_at_the_edges() -> None:
    ps = passes(MICIUS_ORBIT, XINGLONG, 0.0, 3 * 86400.0, 15.0)
    assert len(ps) >= 3
    for p in ps:
        el_edges = look_angles(MICIUS_ORBIT, XINGLONG, [p.start_s, p.end_s])[0]
        assert el_edges == pytest.approx([15.0, 15.0], abs=1e-3)
        inside = look_angles(MICIUS_ORBIT, XINGLONG, np.linspace(p.start_s, p.end_s, 50))[0]
        assert inside.min() >= 15.0 - 1e-3
        assert inside.max() <= p.max_elevation_deg + 1e-6
        assert 0 < p.duration_s < 700  # LEO passes last minutes
    gaps = [b.start_s - a.end_s for a, b in itertools.pairwise(ps)]
    assert min(gaps) > 0
    # a lower mask gives longer passes containing the higher-mask ones
    low = passes(MICIUS_ORBIT, XINGLONG, 0.0, 3 * 86400.0, 10.0)
    for p in ps:
        assert any(q.start_s <= p.start_s and p.end_s <= q.end_s for q in low)


# -- loss ----------------------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(st.floats(300.0, 3000.0), st.floats(1.0, 2000.0), st.floats(10.0, 90.0))
def test_loss_grows_with_slant_range(d: float, extra: float, el: float) -> None:
    near, far = MICIUS.geometric_transmittance([d, d + extra])
    assert far < near
    assert float(MICIUS.loss_db(d + extra, el)) > float(MICIUS.loss_db(d, el))


@settings(max_examples=100, deadline=None)
@given(st.floats(0.0, 89.0), st.floats(0.5, 30.0))
def test_atmosphere_worse_at_low_elevation(el: float, up: float) -> None:
    lo, hi = MICIUS.atmospheric_transmittance([el, min(90.0, el + up)])
    assert lo < hi <= MICIUS.zenith_transmittance + 1e-12
    assert float(MICIUS.atmospheric_transmittance(-1.0)) == 0.0


@settings(max_examples=60, deadline=None)
@given(st.floats(0.0, 9.999), st.floats(300.0, 3000.0))
def test_no_key_below_the_elevation_mask(el: float, d: float) -> None:
    sifted, secret, _ = MICIUS.rates(d, el)
    assert float(sifted) == 0.0 and float(secret) == 0.0
    sifted, secret, _ = MICIUS.rates(d, 10.0)
    assert float(sifted) > 0.0


def test_jitter_and_smaller_apertures_cost_key() -> None:
    base = float(MICIUS.geometric_transmittance(800.0))
    jitter = Downlink(**{**_fields(MICIUS), "pointing_jitter_urad": 5.0})
    small = Downlink(**{**_fields(MICIUS), "rx_aperture_m": 0.3})
    assert float(jitter.geometric_transmittance(800.0)) < base
    assert float(small.geometric_transmittance(800.0)) < base
    # far field: about 6 dB per doubling of the range
    ratio = float(MICIUS.geometric_transmittance(1000.0) / MICIUS.geometric_transmittance(2000.0))
    assert 10 * math.log10(ratio) == pytest.approx(6.0, abs=0.3)


def _fields(link: Downlink) -> dict:
    return {f: getattr(link, f) for f in link.__dataclass_fields__}


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"intensity_probs": (0.5, 0.5)}, "intensity_probs"),
        ({"beam_quality": 0.5}, "beam_quality: must be >= 1"),
        ({"zenith_transmittance": 0.0}, "zenith_transmittance: must be in"),
        ({"min_elevation_deg": 95.0}, "min_elevation_deg"),
        ({"protocol": "nope"}, "protocol"),
    ],
)
def test_bad_downlink_names_the_field(change: dict, match: str) -> None:
    with pytest.raises(ParameterError, match=match):
        Downlink(**{**_fields(MICIUS), **change})


def test_bad_orbit_and_station() -> None:
    with pytest.raises(ParameterError, match=r"orbit\.altitude_km"):
        Orbit(-5.0, 50.0)
    with pytest.raises(ParameterError, match="station x: latitude_deg"):
        GroundStation("x", 95.0, 0.0)
    with pytest.raises(ParameterError, match=r"pass\.end_s"):
        Pass(10.0, 5.0)


# -- Micius against Liao et al. 2017 ---------------------------------------------------------


def test_micius_sifted_rates_at_645_and_1200_km() -> None:
    s645 = float(MICIUS.rates(645.0, _elevation(645.0))[0])
    s1200 = float(MICIUS.rates(1200.0, _elevation(1200.0))[0])
    assert s645 == pytest.approx(LIAO_SIFTED_645_BPS, rel=0.05)  # the fitted point
    assert s1200 == pytest.approx(LIAO_SIFTED_1200_BPS, rel=0.30)  # a prediction: +23%


def _elevation(slant_km: float) -> float:
    from scipy.optimize import brentq

    return float(brentq(lambda e: _slant_km(e) - slant_km, 0.0, 90.0))


def test_micius_pass_sifted_and_final_key(liao_pass: Pass) -> None:
    prof = pass_profile(MICIUS, MICIUS_ORBIT, XINGLONG, liao_pass.start_s, liao_pass.end_s)
    # the paper's 273 s span 645 to 1,200 km of slant range
    assert prof.slant_range_km.min() == pytest.approx(645.0, rel=0.02)
    assert prof.slant_range_km.max() == pytest.approx(1200.0, rel=0.03)
    assert prof.sifted_bits == pytest.approx(LIAO_PASS_SIFTED_BITS, rel=0.10)
    # asymptotic secret key, no finite-key correction: above the paper's final key, < 2x
    ratio = prof.secret_bits / LIAO_PASS_FINAL_BITS
    assert 1.0 < ratio < 2.0
    assert prof.secret_bits < prof.sifted_bits
    assert 0.005 < prof.qber.min() and prof.qber.max() < 0.03
    [key] = key_per_pass(MICIUS, MICIUS_ORBIT, XINGLONG, [liao_pass])
    assert key.secret_bits == pytest.approx(prof.secret_bits)
    assert key.sifted_bits == pytest.approx(prof.sifted_bits)


def test_pass_steps_keep_the_key(liao_pass: Pass) -> None:
    prof = pass_profile(MICIUS, MICIUS_ORBIT, XINGLONG, liao_pass.start_s, liao_pass.end_s)
    edges, rates = prof.steps(10.0)
    assert edges[0] == liao_pass.start_s and edges[-1] == pytest.approx(liao_pass.end_s)
    assert len(rates) == math.ceil(LIAO_PASS_S / 10.0)
    assert float(np.sum(rates * np.diff(edges))) == pytest.approx(prof.secret_bits, rel=1e-9)
    assert rates.max() <= prof.secret_bps.max() + 1e-9


def test_key_per_pass_over_a_day_is_zero_only_below_the_mask() -> None:
    ps = passes(MICIUS_ORBIT, XINGLONG, 0.0, 2 * 86400.0, 0.0)
    keys = key_per_pass(MICIUS, MICIUS_ORBIT, XINGLONG, ps, step_s=2.0)
    for k in keys:
        if k.max_elevation_deg < MICIUS.min_elevation_deg - 0.01:
            assert k.secret_bits == 0.0 and k.sifted_bits == 0.0
        elif k.max_elevation_deg > MICIUS.min_elevation_deg + 2:
            assert k.secret_bits > 0.0
    best = max(keys, key=lambda k: k.max_elevation_deg)
    assert best.secret_bits == max(k.secret_bits for k in keys)
