"""Finite-key decoy BB84 (Lim et al. 2014, Rusca et al. 2018): published figures, the
asymptotic limit, and the invariants of a finite-size bound."""

from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qkd.errors import ParameterError, UnknownNameError
from qkd.finite import (
    _EPS_COUNT,
    FINITE_PROTOCOLS,
    _box,
    _count_bounds,
    _counts,
    _decode,
    _key_length,
    _optimise,
    _rate_at_detections,
    asymptotic_key,
    asymptotic_limit,
    finite_key,
    finite_max_distance,
)
from qkd.params import Detector, Fibre, QKDSystem, Source, get_preset
from qkd.rates import key_rate_per_pulse, plob_bound

GYS = get_preset("gys-2004")
TOSHIBA = get_preset("toshiba-2018")

# Lim, Curty, Walenta, Xu & Zbinden, PRA 89, 022307 (2014), Sec. IV: eta_Bob = 10%,
# p_dc = 6e-7 per detector (Y0 = 2 p_dc), p_ap = 4%, e_mis = 0.5%, f_EC = 1.16, 0.2 dB/km.
LIM = QKDSystem(
    name="lim-2014",
    fibre=Fibre(0.2),
    source=Source(clock_hz=1e9),
    detector=Detector(0.1, 1.2e-6, afterpulse_prob=0.04),
    misalignment=0.005,
    f_ec=1.16,
    sifting=1.0,
)
# An SNSPD-class system for Rusca et al.'s comparison (their parameters not read, offline).
SNSPD = QKDSystem(
    name="snspd",
    fibre=Fibre(0.2),
    source=Source(clock_hz=1e9),
    detector=Detector(0.5, 1e-8, dead_time_s=1e-7),
    misalignment=0.01,
    f_ec=1.16,
    sifting=1.0,
)


def lim_rate(length: float | np.ndarray, n_x: float, clamp: bool = True) -> np.ndarray:
    """Lim et al.'s rate per pulse at blocks of n_X detections, eps_sec = 1e-15 * key."""
    eps = 1e-10
    for _ in range(3):
        rate, key = _rate_at_detections(LIM, length, n_x, "decoy-2", (eps, 1e-15, 2e-4), clamp)
        eps = min(max(1e-15 * float(np.max(key)), 1e-30), 0.5)
    return rate


# ---------------------------------------------------------------------------------------------
# Published figures


@pytest.mark.parametrize(("clamp", "measured"), [(True, 1.71), (False, 1.79)])
def test_lim_rate_ratio_between_blocks_of_1e9_and_1e7_at_100_km(
    clamp: bool, measured: float
) -> None:
    """Published: 'about 1.75 times'; this implementation 1.71 with the count bounds clamped
    at 0, 1.79 with the bounds as printed (tolerance 5% to the paper)."""
    ratio = float(lim_rate(100.0, 1e9, clamp) / lim_rate(100.0, 1e7, clamp))
    assert ratio == pytest.approx(1.75, rel=0.05)
    assert ratio == pytest.approx(measured, abs=0.01)


def test_lim_reach_with_blocks_of_1e4_is_135_km() -> None:
    """Published: 'up to 135 km' with n_X = 1e4; this implementation 132 km (tolerance 5 km)."""
    lengths = np.arange(120.0, 146.0, 1.0)
    rate = lim_rate(lengths, 1e4)
    reach = float(lengths[rate > 0].max())
    assert reach == pytest.approx(135.0, abs=5.0)


def _one_over_two(system: QKDSystem, length: float, n_x: float, clamp: bool) -> float:
    eps = (1e-9, 1e-15, 2e-4)
    one, _ = _rate_at_detections(system, length, n_x, "decoy-1", eps, clamp)
    two, _ = _rate_at_detections(system, length, n_x, "decoy-2", eps, clamp)
    return float(one / two)


@pytest.mark.parametrize("n_x", [1e5, 1e7, 1e8])
def test_rusca_one_decoy_beats_lims_two_decoy_bound_as_printed(n_x: float) -> None:
    """Rusca et al.'s claim, against Lim's bound without the clamp, low-noise detectors."""
    for length in (50.0, 100.0, 150.0):
        assert 1.0 < _one_over_two(SNSPD, length, n_x, clamp=False) < 1.25


@pytest.mark.parametrize("n_x", [1e5, 1e7, 1e8])
def test_rusca_claim_against_the_clamped_two_decoy_bound(n_x: float) -> None:
    """With the count bounds clamped at 0 the decoy-2 bound is tighter: the 1-decoy bound
    loses at 50 km (0.90-0.98), wins beyond 100 km only for n_X >= 1e7, by at most 5%."""
    near = _one_over_two(SNSPD, 50.0, n_x, clamp=True)
    far = _one_over_two(SNSPD, 150.0, n_x, clamp=True)
    assert 0.85 < near < 1.0
    assert far < 1.06
    assert (far > 1.0) == (n_x >= 1e7)


def test_rusca_claim_does_not_hold_with_lim_noisy_detectors() -> None:
    eps = (1e-10, 1e-15, 2e-4)
    for clamp, measured in ((True, 0.84), (False, 0.94)):
        one, _ = _rate_at_detections(LIM, 50.0, 1e7, "decoy-1", eps, clamp)
        two, _ = _rate_at_detections(LIM, 50.0, 1e7, "decoy-2", eps, clamp)
        assert float(one / two) == pytest.approx(measured, abs=0.03)


def test_toshiba_2018_finite_key_rate_is_the_published_13_72_mbps() -> None:
    """Yuan et al., JLT 36, 3427 (2018): 13.72 Mb/s over 2 dB; within 25% (here +20%: 16.5
    Mb/s, +10% before the count bounds were clamped at 0; see qkd.params)."""
    assert TOSHIBA.block_size == 2e9
    fk = finite_key(TOSHIBA, 2.0 / TOSHIBA.fibre.attenuation_db_per_km, TOSHIBA.block_size)
    assert float(fk.rate_bps) == pytest.approx(13.72e6, rel=0.25)
    assert float(fk.detections) == pytest.approx(1e8, rel=0.1)  # the paper's ~1e8-bit blocks


# ---------------------------------------------------------------------------------------------
# API, shapes, caching


def test_result_fields_and_shapes() -> None:
    grid = np.array([[0.0, 20.0], [40.0, 60.0]])
    fk = finite_key(GYS, grid, 1e11, protocol="decoy-1")
    assert fk.key_per_block.shape == fk.rate_bps.shape == fk.key_basis_prob.shape == (2, 2)
    assert fk.intensities.shape == fk.probabilities.shape == (2, 2, 2)
    assert fk.block_time_s == pytest.approx(1e11 / 2e6)
    np.testing.assert_allclose(fk.rate_bps, fk.key_per_block / fk.block_time_s)
    np.testing.assert_allclose(fk.rate_per_pulse, fk.key_per_block / 1e11)
    np.testing.assert_allclose(fk.probabilities.sum(axis=-1), 1.0)
    assert np.all(fk.intensities[..., 0] > fk.intensities[..., 1])
    assert np.all(fk.key_per_block == np.floor(fk.key_per_block))
    assert fk.protocol == "decoy-1"
    scalar = finite_key(GYS, 20.0, 1e11)
    assert scalar.rate_bps.shape == () and scalar.intensities.shape == (3,)


def test_two_decoy_ordering_and_weakest() -> None:
    fk = finite_key(GYS, [0.0, 80.0], 1e12, weakest=1e-3)
    mu1, mu2, mu3 = np.moveaxis(fk.intensities, -1, 0)
    np.testing.assert_array_equal(mu3, 1e-3)
    assert np.all(mu1 > mu2 + mu3) and np.all(mu2 > mu3)
    vacuum = finite_key(GYS, 30.0, 1e12, weakest=0.0)
    assert float(vacuum.intensities[2]) == 0.0 and float(vacuum.rate_bps) > 0


def test_one_call_per_link_set_is_cached_and_results_are_independent() -> None:
    a = finite_key(GYS, [10.0, 20.0], 1e10)
    b = finite_key(GYS, [10.0, 20.0], 1e10)
    np.testing.assert_array_equal(a.rate_bps, b.rate_bps)
    a.rate_bps[0] = -1.0  # callers own their arrays
    assert finite_key(GYS, [10.0, 20.0], 1e10).rate_bps[0] > 0
    one = finite_key(GYS, 20.0, 1e10)
    assert float(one.rate_per_pulse) == pytest.approx(float(b.rate_per_pulse[1]), rel=1e-3)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"block_size": 0.0}, r"block_size: must be > 0 \(pulses per block\) and finite, got 0.0"),
        ({"block_size": -5.0}, r"block_size: must be > 0"),
        ({"block_size": math.inf}, r"block_size: must be > 0"),
        ({"eps_sec": 0.0}, r"eps_sec: must be in \(0, 1\), got 0.0"),
        ({"eps_sec": 1.0}, r"eps_sec: must be in \(0, 1\)"),
        ({"eps_cor": 2.0}, r"eps_cor: must be in \(0, 1\), got 2.0"),
        ({"weakest": 0.5}, r"weakest: must be in \[0, 0.1\]"),
    ],
)
def test_bad_input_is_named(kwargs: dict[str, float], message: str) -> None:
    args = {"block_size": 1e10, **kwargs}
    block = args.pop("block_size")
    with pytest.raises(ParameterError, match=message):
        finite_key(GYS, 10.0, block, **args)  # type: ignore[arg-type]


def test_unknown_protocol_and_bad_length() -> None:
    with pytest.raises(UnknownNameError, match=r"protocol: must be one of 'decoy-2', 'decoy-1'"):
        finite_key(GYS, 10.0, 1e10, protocol="decoy-3")
    with pytest.raises(ParameterError, match=r"distance_km: must be >= 0"):
        finite_key(GYS, [1.0, -1.0], 1e10)


# ---------------------------------------------------------------------------------------------
# The asymptotic limit


def test_asymptotic_limit_is_the_infinite_decoy_rate_with_full_sifting_plus_vacuum() -> None:
    lengths = np.array([0.0, 50.0, 100.0])
    limit = asymptotic_limit(GYS, lengths)
    ma = key_rate_per_pulse(GYS.replace(sifting=1.0), lengths)  # no vacuum term
    assert np.all(limit >= ma)
    np.testing.assert_allclose(limit, ma, rtol=0.035)  # the vacuum term grows with loss
    # Three intensities with perfect statistics approach infinitely many decoys.
    np.testing.assert_allclose(asymptotic_key(GYS, lengths), limit, rtol=0.01)
    assert np.all(asymptotic_key(GYS, lengths, protocol="decoy-1") < 0.8 * limit)


@pytest.mark.parametrize(
    ("protocol", "tolerances"),
    [("decoy-2", (0.50, 0.20, 0.07, 0.04)), ("decoy-1", (0.40, 0.12, 0.04, 0.02))],
)
def test_converges_to_the_asymptotic_rate(protocol: str, tolerances: tuple[float, ...]) -> None:
    """The gap to :func:`asymptotic_key` at N = 1e10, 1e14, 1e18, 1e20 pulses shrinks slowly:
    the sampling terms go like 1 / sqrt(N p_k (1 - q_x)^2), and with three intensities the
    limit is that of infinitely many decoys (mu2 -> mu3), reached only as p_mu2 -> 0.
    Measured (toshiba-2018, 5 and 20 km): decoy-2 42-48%, 16-18%, 5-6%, 3-3.5%; decoy-1
    33-38%, 10-11%, 3%, below 2%. So 'within a few %' needs N ~ 1e18 (decoy-1) to 1e20."""
    lengths = np.array([5.0, 20.0])
    target = asymptotic_key(TOSHIBA, lengths, protocol=protocol)
    gaps = [
        1.0 - finite_key(TOSHIBA, lengths, n, protocol=protocol).rate_per_pulse / target
        for n in (1e10, 1e14, 1e18, 1e20)
    ]
    for gap, tolerance in zip(gaps, tolerances, strict=True):
        assert np.all(gap >= 0) and np.all(gap < tolerance), (gaps, tolerances)
    assert all(np.all(a > b) for a, b in itertools.pairwise(gaps))


# ---------------------------------------------------------------------------------------------
# Property tests

systems = st.builds(
    lambda alpha, eff, y0, e_d, f, tau, ap: QKDSystem(
        name="random",
        fibre=Fibre(alpha),
        source=Source(clock_hz=1e9),
        detector=Detector(eff, y0, dead_time_s=tau, afterpulse_prob=ap),
        misalignment=e_d,
        f_ec=f,
    ),
    alpha=st.floats(0.15, 0.3),
    eff=st.floats(0.05, 0.8),
    y0=st.floats(1e-8, 1e-5),
    e_d=st.floats(0.0, 0.04),
    f=st.floats(1.0, 1.3),
    tau=st.sampled_from([0.0, 1e-9, 1e-7]),
    ap=st.sampled_from([0.0, 0.02]),
)
blocks = st.lists(st.sampled_from([1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e14]), min_size=2,
                  max_size=4, unique=True)  # fmt: skip


@settings(max_examples=12, deadline=None)
@given(system=systems, ns=blocks, protocol=st.sampled_from(FINITE_PROTOCOLS))
def test_finite_rate_is_below_the_asymptotic_one_and_grows_with_the_block(
    system: QKDSystem, ns: list[float], protocol: str
) -> None:
    lengths = np.array([0.0, 25.0, 60.0, 120.0])
    asym = asymptotic_key(system, lengths, protocol=protocol)
    limit = asymptotic_limit(system, lengths)
    assert np.all(asym <= limit * (1 + 1e-6) + 1e-15)
    previous = np.zeros_like(lengths)
    for n in sorted(ns):
        rate = finite_key(system, lengths, n, protocol=protocol).rate_per_pulse
        assert np.all(rate <= asym * (1 + 1e-6) + 1e-15), (n, rate, asym)
        assert np.all(rate >= previous * (1 - 2e-3)), (n, rate, previous)  # optimiser: 0.2%
        assert np.all(rate <= plob_bound(system.transmittance(lengths)))
        previous = rate


def test_maximum_distance_shrinks_with_the_block() -> None:
    reach = [finite_max_distance(GYS, n) for n in (1e9, 1e10, 1e12, 1e14)]
    assert reach == sorted(reach)
    assert reach[0] < reach[-1] - 10.0
    one = [finite_max_distance(GYS, n, protocol="decoy-1") for n in (1e9, 1e12)]
    assert one[0] < one[1]
    assert finite_max_distance(GYS.replace(fibre=Fibre(0.0)), 1e10) == math.inf
    assert finite_max_distance(GYS.replace(misalignment=0.3), 1e10) == 0.0


# ---------------------------------------------------------------------------------------------
# Detector limits


def test_dead_time_saturates_short_links() -> None:
    fast = TOSHIBA.replace(detector=dataclasses.replace(TOSHIBA.detector, dead_time_s=1e-7))
    fk = finite_key(fast, [0.0, 2.0, 5.0], 1e10)
    clicks_per_s = fk.detections / fk.key_basis_prob**2 / fk.block_time_s
    assert np.all(clicks_per_s < 1e7)  # at most 1 / tau
    ideal = TOSHIBA.replace(detector=dataclasses.replace(TOSHIBA.detector, dead_time_s=0.0))
    assert np.all(finite_key(ideal, [0.0, 2.0], 1e10).rate_bps > fk.rate_bps[:2])


def test_afterpulses_raise_the_qber() -> None:
    clean = finite_key(LIM.replace(detector=Detector(0.1, 1.2e-6)), 50.0, 1e11)
    noisy = finite_key(LIM, 50.0, 1e11)
    assert float(noisy.qber) > float(clean.qber) + 0.015
    assert float(noisy.rate_bps) < float(clean.rate_bps)


# ---------------------------------------------------------------------------------------------
# Count bounds clamped at 0 (issue 20 C)


@settings(max_examples=40, deadline=None)
@given(
    system=systems,
    n=st.sampled_from([1e6, 1e8, 1e10, 1e12]),
    protocol=st.sampled_from(FINITE_PROTOCOLS),
    length=st.floats(0.0, 150.0),
    seed=st.integers(0, 2**32 - 1),
)
def test_count_bounds_are_non_negative_and_the_clamp_only_raises_the_key(
    system: QKDSystem, n: float, protocol: str, length: float, seed: int
) -> None:
    """At random intensities, probabilities and q_x: every lower count bound is >= 0, and the
    key with the clamp is >= the key without it (the clamp only tightens the bounds)."""
    lo, hi, _ = _box(protocol, 2e-4)
    z = np.random.default_rng(seed).uniform(lo, hi, size=(1, 64, lo.size))
    eta = system.transmittance(np.array([[length]]))
    eps = (1e-10, 1e-15, 2e-4)
    mus, probs, (qx,) = _decode(z, protocol, 2e-4)
    clicks, errors = _counts(system, eta, mus, probs)
    for q in (qx * qx, (1.0 - qx) ** 2):
        cnt = [n * q * p * d for p, d in zip(probs, clicks, strict=True)]
        err = [n * q * p * e for p, e in zip(probs, errors, strict=True)]
        log_term = math.log(_EPS_COUNT[protocol] / eps[0])
        dn, dm = np.sqrt(0.5 * sum(cnt) * log_term), np.sqrt(0.5 * sum(err) * log_term)
        for bound in _count_bounds(mus, probs, cnt, err, dn, dm):
            assert all(np.all(b >= 0) for b in bound)
    clamped = _key_length(system, eta, z, n, protocol, eps, clamp=True)
    raw = _key_length(system, eta, z, n, protocol, eps, clamp=False)
    assert np.all(clamped["key"] >= raw["key"] - 1e-9 * np.abs(raw["key"]))
    assert np.all(clamped["v1Z"] <= raw["v1Z"] * (1 + 1e-12) + 1e-12)


@settings(max_examples=8, deadline=None)
@given(system=systems, n=st.sampled_from([1e8, 1e10, 1e12]))
def test_optimised_rate_with_the_clamp_is_at_least_the_rate_without(
    system: QKDSystem, n: float
) -> None:
    eta = system.transmittance(np.array([0.0, 10.0, 40.0, 80.0]))
    eps = (1e-10, 1e-15, 2e-4)
    clamped = np.maximum(_optimise(system, eta, n, "decoy-2", eps)["key"], 0.0)
    raw = np.maximum(_optimise(system, eta, n, "decoy-2", eps, clamp=False)["key"], 0.0)
    assert np.all(clamped >= raw * (1 - 2e-3))  # the optimiser's tolerance, 0.2%


def test_the_clamp_at_short_range_and_a_small_block() -> None:
    """GYS, 0 km, N = 1e8, each bound at its own optimum: phi_X 0.083 -> 0.077 and the key
    +28% with the clamp."""
    eta = GYS.transmittance(np.array([0.0]))
    eps = (1e-10, 1e-15, 2e-4)
    raw = _optimise(GYS, eta, 1e8, "decoy-2", eps, clamp=False)
    clamped = _optimise(GYS, eta, 1e8, "decoy-2", eps)
    assert float(raw["phi"][0]) == pytest.approx(0.083, abs=0.002)
    assert float(clamped["phi"][0]) == pytest.approx(0.077, abs=0.002)
    assert float(clamped["key"][0]) / float(raw["key"][0]) == pytest.approx(1.28, abs=0.03)
