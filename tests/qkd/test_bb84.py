"""Tests of the vectorized BB84 simulation against the analytic model of Ma et al. (2005)."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qkd.bb84 import (
    Detections,
    basis_bias,
    estimate_qber,
    gains_and_errors,
    sift,
    simulate,
)
from qkd.errors import ParameterError
from qkd.params import Detector, QKDSystem, Source, get_preset
from qkd.rates import gain_and_qber

SIGMAS = 5.0
GYS = get_preset("gys-2004")
# The Monte Carlo simulation models ideal detectors: no dead time, no after-pulses.
TOSHIBA_IDEAL = get_preset("toshiba-2018").replace(detector=Detector(0.31, 4e-6))
# GYS with more background, so that dark counts matter at 100 km.
NOISY = GYS.replace(detector=Detector(efficiency=0.045, dark_count_prob=2e-5))


def quiet(system: QKDSystem, e_d: float = 0.0) -> QKDSystem:
    """The same system without background clicks and with misalignment e_d."""
    det = Detector(efficiency=system.detector.efficiency, dark_count_prob=0.0)
    return system.replace(detector=det, misalignment=e_d)


def analytic(system: QKDSystem, distance_km: float, mu: float) -> tuple[float, float]:
    """Ma et al.'s gain and QBER; the vacuum decoy (mu = 0) gives Q = Y0, E = 1/2."""
    if mu == 0:
        return system.detector.dark_count_prob, 0.5
    q, e = gain_and_qber(system, distance_km, mu)
    return float(q), float(e)


def model_bias(system: QKDSystem, distance_km: float, mu: float) -> tuple[float, float]:
    """Upper bounds on |simulated - Ma et al.| of the gain and the QBER (not sampling error).

    Ma et al.'s linear formulas neglect coincidences of a background click with a signal
    photon (probability <= Y0 (1 - exp(-x)), x = eta mu) and the extra error of pulses with
    three or more arriving photons that split over both detectors (probability <= x^3/6, at
    most an error of 1/2 each).
    """
    y0 = system.detector.dark_count_prob
    x = float(system.transmittance(distance_km)) * mu
    q, _ = analytic(system, distance_km, mu)
    coincidence = y0 * -math.expm1(-x)
    return coincidence, (coincidence + 0.5 * x**3 / 6) / q


def within(observed: float, expected: float, n: int, bias: float = 0.0) -> bool:
    """|observed - expected| within SIGMAS binomial standard errors (plus a known bias)."""
    sigma = math.sqrt(expected * (1 - expected) / n)
    return abs(observed - expected) <= SIGMAS * sigma + bias


@pytest.mark.parametrize(
    ("system", "distance_km"),
    [(GYS, 0.0), (GYS, 25.0), (GYS, 60.0), (NOISY, 100.0), (TOSHIBA_IDEAL, 10.0)],
)
def test_gain_and_qber_per_intensity_match_ma_2005(system: QKDSystem, distance_km: float) -> None:
    det = simulate(system, distance_km, 24_000_000, seed=11, intensity_probs=(0.6, 0.2, 0.2))
    stats = gains_and_errors(det)
    for k, mu in enumerate(det.intensities):
        q, e = analytic(system, distance_km, mu)
        bias_q, bias_e = model_bias(system, distance_km, mu)
        assert within(stats.gain[k], q, int(stats.n_pulses[k]), bias_q), (k, stats.gain[k], q)
        if stats.n_sifted[k] > 0:
            assert within(stats.qber[k], e, int(stats.n_sifted[k]), bias_e), (k, stats.qber[k], e)
    # The signal comparison is informative: its tolerance is small against the values.
    q0, e0 = analytic(system, distance_km, det.intensities[0])
    assert SIGMAS * math.sqrt(q0 / stats.n_pulses[0]) < 0.15 * q0
    assert SIGMAS * math.sqrt(e0 / stats.n_sifted[0]) < 0.5 * e0


def test_background_clicks_give_random_bits_and_squashed_double_clicks() -> None:
    y0 = 0.2
    system = GYS.replace(
        source=Source(clock_hz=1e6, mu=0.5, decoys=(0.0,)),
        detector=Detector(efficiency=0.5, dark_count_prob=y0),
    )
    det = simulate(system, 0.0, 400_000, seed=3, intensity_probs=(0.0, 1.0))
    assert det.pulses_per_intensity == (0, 400_000)
    assert within(det.n_detected / det.n_pulses, y0, det.n_pulses)
    # Each detector fires with p_d, 1 - (1 - p_d)^2 = Y0; both fire with p_d^2.
    p_d = 1 - math.sqrt(1 - y0)
    assert within(np.mean(det.double_click), p_d**2 / y0, det.n_detected)
    key = sift(det)
    assert within(key.error_rate, 0.5, len(key))


def test_efficient_bb84_basis_bias_sets_the_sifting_factor() -> None:
    system = quiet(GYS, 0.01).replace(sifting=0.9)
    det = simulate(system, 0.0, 2_000_000, seed=5)
    assert basis_bias(0.9) == pytest.approx((1 + math.sqrt(0.8)) / 2)
    assert within(len(sift(det)) / det.n_detected, 0.9, det.n_detected)
    assert within(np.mean(det.alice_basis == 0), basis_bias(0.9), det.n_detected)


def test_full_intercept_resend_gives_a_quarter_qber() -> None:
    system = quiet(GYS)
    mu, distance = system.source.mu, 10.0
    det = simulate(system, distance, 3_000_000, seed=7, eve_fraction=1.0, intensity_probs=(1, 0, 0))
    key = sift(det)
    assert within(key.error_rate, 0.25, len(key))
    # Eve resends one photon on each non-empty pulse; it then meets the whole channel loss.
    eta = float(system.transmittance(distance))
    assert within(det.n_detected / det.n_pulses, -math.expm1(-mu) * eta, det.n_pulses)
    assert det.n_eve_pulses == det.n_pulses
    assert within(det.n_eve_results / det.n_pulses, -math.expm1(-mu), det.n_pulses)
    # Eve knows a sifted bit when her basis matched Alice's (half the time), and then exactly.
    assert within(key.n_eve_known / len(key), 0.5, len(key))
    known = det.eve_intercepted & (det.eve_basis == det.alice_basis)
    assert np.array_equal(det.eve_bit[known], det.alice_bit[known])
    assert np.all(key.alice[key.eve_known] == key.bob[key.eve_known])  # e_d = 0


def test_partial_intercept_resend_mixes_error_rates_by_detection_probability() -> None:
    e_d, f = 0.02, 0.3
    system = quiet(GYS, e_d)
    mu, eta = system.source.mu, float(system.transmittance(0.0))
    det = simulate(system, 0.0, 4_000_000, seed=9, eve_fraction=f, intensity_probs=(1, 0, 0))
    clean = (1 - f) * -math.expm1(-eta * mu)
    attacked = f * -math.expm1(-mu) * eta
    expected = (clean * e_d + attacked * (0.25 + e_d / 2)) / (clean + attacked)
    key = sift(det)
    assert within(key.error_rate, expected, len(key))
    assert within(det.n_eve_pulses / det.n_pulses, f, det.n_pulses)


def test_same_seed_same_result_and_other_seed_differs() -> None:
    def run(seed: int | np.random.Generator | np.random.SeedSequence) -> Detections:
        return simulate(GYS, 5.0, 300_000, seed=seed, eve_fraction=0.2, chunk_size=50_000)

    a, b, c = run(3), run(3), run(4)
    for name in ("pulse_index", "alice_bit", "bob_bit", "bob_basis", "eve_bit", "intensity"):
        assert np.array_equal(getattr(a, name), getattr(b, name))
    assert a.pulses_per_intensity == b.pulses_per_intensity
    assert not np.array_equal(a.pulse_index, c.pulse_index)
    g = run(np.random.default_rng(3))
    s = run(np.random.SeedSequence(3))
    assert np.array_equal(g.pulse_index, s.pulse_index)
    assert not a.alice_bit.flags.writeable


def test_chunk_size_does_not_change_statistics() -> None:
    det = simulate(GYS, 0.0, 1_000_003, seed=1, chunk_size=4_099)
    assert sum(det.pulses_per_intensity) == 1_000_003
    assert np.all(np.diff(det.pulse_index) > 0) and det.pulse_index[-1] < 1_000_003
    q, _ = analytic(GYS, 0.0, GYS.source.mu)
    stats = gains_and_errors(det)
    assert within(stats.gain[0], q, int(stats.n_pulses[0]))


def test_zero_pulses_give_empty_detections() -> None:
    det = simulate(GYS, 0.0, 0, seed=1)
    assert det.n_detected == 0 and det.pulses_per_intensity == (0, 0, 0)
    assert len(sift(det)) == 0
    assert np.all(np.isnan(gains_and_errors(det).gain))


def test_qber_sample_is_disclosed_and_removed() -> None:
    key = sift(simulate(GYS, 0.0, 2_000_000, seed=2))
    est = estimate_qber(key, 0.25, seed=8)
    assert est.n_sample == round(0.25 * len(key))
    assert est.n_sample + len(est.remaining) == len(key)
    assert est.n_errors + est.remaining.n_errors == key.n_errors
    assert within(est.estimate, key.error_rate, est.n_sample)
    assert within(est.by_basis[1], key.error_rate, est.n_sample // 2)
    again = estimate_qber(key, 0.25, seed=8)
    assert np.array_equal(again.remaining.alice, est.remaining.alice)
    assert est.std_error == pytest.approx(
        math.sqrt(est.estimate * (1 - est.estimate) / est.n_sample)
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_pulses": -1}, r"n_pulses: must be an int >= 0, got -1"),
        ({"n_pulses": 1.5}, r"n_pulses: must be an int >= 0, got 1.5"),
        ({"eve_fraction": 1.5}, r"eve_fraction: must be in \[0, 1\], got 1.5"),
        ({"eve_fraction": -0.1}, r"eve_fraction: must be in \[0, 1\], got -0.1"),
        ({"intensity_probs": (0.5, 0.2, 0.2)}, r"intensity_probs: must be 3 probabilities"),
        ({"intensity_probs": (0.5, 0.5)}, r"intensity_probs: must be 3 probabilities"),
        ({"intensity_probs": (1.2, -0.1, -0.1)}, r"intensity_probs: must be 3 probabilities"),
        ({"intensity_probs": ("a", 0, 0)}, r"intensity_probs: must be 3 probabilities"),
        ({"chunk_size": 0}, r"chunk_size: must be an int >= 1, got 0"),
        ({"distance_km": -3.0}, r"distance_km: must be >= 0 and finite, got -3.0"),
        ({"seed": None}, r"seed: must be an int >= 0, a numpy SeedSequence"),
        ({"seed": -2}, r"seed: must be an int >= 0"),
    ],
)
def test_bad_simulation_inputs_raise(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"distance_km": 1.0, "n_pulses": 10, "seed": 0} | kwargs
    with pytest.raises(ParameterError, match=message):
        simulate(GYS, **args)  # type: ignore[arg-type]


def test_bad_sifting_and_sample_fraction_raise() -> None:
    with pytest.raises(ParameterError, match=r"system.sifting: must be in \[0.5, 1\]"):
        simulate(GYS.replace(sifting=0.3), 0.0, 10, seed=0)
    key = sift(simulate(GYS, 0.0, 10_000, seed=0))
    for bad in (0.0, 1.5):
        with pytest.raises(ParameterError, match=r"sample_fraction: must be in \(0, 1\]"):
            estimate_qber(key, bad, seed=0)


@settings(max_examples=25, deadline=None)
@given(
    mu=st.floats(0.05, 5.0),
    distance=st.floats(0.0, 150.0),
    eve=st.floats(0.0, 1.0),
    sifting=st.floats(0.5, 1.0),
    chunk=st.integers(1_000, 40_000),
    seed=st.integers(0, 2**32),
)
def test_accounting_invariants(
    mu: float, distance: float, eve: float, sifting: float, chunk: int, seed: int
) -> None:
    system = quiet(GYS).replace(
        source=Source(clock_hz=1e6, mu=mu, decoys=(mu / 4, 0.0)),
        detector=Detector(efficiency=0.3, dark_count_prob=1e-3),
        sifting=sifting,
    )
    n = 30_000
    det = simulate(system, distance, n, seed=seed, eve_fraction=eve, chunk_size=chunk)
    assert sum(det.pulses_per_intensity) == n
    assert det.n_eve_results <= det.n_eve_pulses <= n
    assert det.n_detected <= n and np.all(np.diff(det.pulse_index) > 0)
    assert np.all(det.eve_bit[~det.eve_intercepted] == 0)
    known = det.eve_intercepted & (det.eve_basis == det.alice_basis)
    assert np.array_equal(det.eve_bit[known], det.alice_bit[known])
    stats = gains_and_errors(det)
    assert stats.n_detected.sum() == det.n_detected
    assert np.all(stats.n_errors <= stats.n_sifted) and np.all(stats.n_sifted <= stats.n_detected)
    key = sift(det)
    assert len(key) == stats.n_sifted.sum() and key.n_errors == stats.n_errors.sum()
    if len(key):
        est = estimate_qber(key, 0.3, seed=seed)
        assert est.n_errors + est.remaining.n_errors == key.n_errors


@settings(max_examples=20, deadline=None)
@given(mu=st.floats(0.01, 10.0), distance=st.floats(0.0, 100.0), seed=st.integers(0, 2**32))
def test_no_noise_and_no_eve_means_no_errors(mu: float, distance: float, seed: int) -> None:
    system = quiet(GYS).replace(source=Source(clock_hz=1e6, mu=mu, decoys=()))
    det = simulate(system, distance, 20_000, seed=seed)
    assert not np.any(det.double_click & (det.alice_basis == det.bob_basis))
    assert sift(det).n_errors == 0


@pytest.mark.slow
def test_throughput_at_least_ten_million_pulses_per_second() -> None:
    n = 20_000_000
    simulate(GYS, 25.0, 1 << 20, seed=0)  # warm up
    start = time.perf_counter()
    simulate(GYS, 25.0, n, seed=1)
    assert n / (time.perf_counter() - start) >= 1e7
