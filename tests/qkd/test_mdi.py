"""MDI-QKD: the Lo-Curty-Qi headline, hand limits of the channel model, invariants, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qkd.errors import ParameterError
from qkd.kinds import get_kind
from qkd.mdi import (
    PRESETS,
    MDISystem,
    decoy_bounds,
    gains_and_errors,
    key_rate_and_intensities,
    key_rate_bps,
    key_rate_per_pulse,
    single_photon_terms,
    x_basis_gains_and_errors,
)
from qkd.params import Detector, Fibre
from qkd.rates import plob_bound

LCQ = PRESETS["lcq-2012"]
KIND = get_kind("mdi")


# Lo, Curty & Qi (2012): with infinitely many decoys and the Ursin et al. detectors the key
# reaches "over 200 km". This module: see max_distance_km (about 205 km).
def test_lcq_headline_over_200_km() -> None:
    reach = KIND.max_distance_km(LCQ)
    assert 200.0 < reach < 260.0, reach
    assert float(key_rate_per_pulse(LCQ, 200.0)) > 0.0


def test_single_photon_terms_without_noise_are_half_the_product() -> None:
    y11, e11 = single_photon_terms(np.array([0.3, 0.01]), np.array([0.2, 0.01]), 0.0, 0.02)
    np.testing.assert_allclose(y11, [0.03, 0.00005])
    np.testing.assert_allclose(e11, [0.02, 0.02])


def test_gains_small_intensity_limit() -> None:
    # p_d = 0: Q_Z -> eta_a mu_a eta_b mu_b / 2 for weak pulses, and only misalignment errors
    ea, eb, ma, mb = 0.2, 0.1, 1e-3, 2e-3
    q, e = gains_and_errors(ea, eb, ma, mb, 0.0, 0.03)
    assert float(q) == pytest.approx(ea * ma * eb * mb / 2, rel=1e-3)
    assert float(e) == pytest.approx(0.03)
    # no light: dark coincidences in the 4 detector pairs that announce psi+ or psi-, each
    # pair clicking with p_d^2 and the other two silent; half of them are errors
    p_d = 1e-3
    q0, e0 = gains_and_errors(0.0, 0.0, 0.5, 0.5, p_d, 0.0)
    assert float(q0) == pytest.approx(4 * p_d**2 * (1 - p_d) ** 2)
    assert float(e0) == pytest.approx(0.5)


def test_symmetric_solver_agrees_with_the_two_dimensional_one() -> None:
    lengths = np.array([10.0, 80.0, 150.0])
    one_d = key_rate_per_pulse(LCQ, lengths)
    two_d = key_rate_per_pulse(LCQ.replace(relay_fraction=0.5 + 1e-12), lengths)
    np.testing.assert_allclose(two_d, one_d, rtol=2e-3)


def test_asymmetric_relay_costs_key_and_gets_unequal_intensities() -> None:
    lengths = np.array([60.0, 120.0])
    sym = key_rate_per_pulse(LCQ, lengths)
    rate, mu_a, mu_b = key_rate_and_intensities(LCQ.replace(relay_fraction=0.25), lengths)
    assert np.all(rate < sym)
    assert np.all(mu_a < mu_b)  # the shorter arm (Alice's) sends weaker pulses


def test_fixed_intensity_never_beats_the_optimum() -> None:
    lengths = np.array([0.0, 50.0, 150.0])
    best, mu, _ = key_rate_and_intensities(LCQ, lengths)
    for m in (0.1, 0.3, 0.8):
        fixed = key_rate_per_pulse(LCQ.replace(mu_a=m, mu_b=m), lengths)
        assert np.all(fixed <= best * (1 + 1e-9))
    at_opt = [
        float(key_rate_per_pulse(LCQ.replace(mu_a=float(m), mu_b=float(m)), L))
        for m, L in zip(mu, lengths, strict=True)
    ]
    np.testing.assert_allclose(at_opt, best, rtol=1e-9)


def test_sifting_and_clock_scale_the_rate() -> None:
    base = float(key_rate_bps(LCQ, 50.0))
    assert float(key_rate_bps(LCQ.replace(sifting=0.25), 50.0)) == pytest.approx(base / 4)
    assert float(key_rate_bps(LCQ.replace(clock_hz=2e6), 50.0)) == pytest.approx(2 * base)


def test_shapes_and_dtype() -> None:
    assert key_rate_per_pulse(LCQ, 10.0).shape == ()
    r = key_rate_per_pulse(LCQ, np.full((2, 3), 20.0))
    assert r.shape == (2, 3) and r.dtype == np.float64
    assert np.all(r == r.ravel()[0])


@pytest.mark.parametrize(
    ("change", "name"),
    [
        (lambda: Detector(efficiency=0.0, dark_count_prob=1e-6), "detector.efficiency"),
        (lambda: Detector(efficiency=1.5, dark_count_prob=1e-6), "detector.efficiency"),
        (lambda: Detector(efficiency=0.5, dark_count_prob=-1e-6), "detector.dark_count_prob"),
        (lambda: LCQ.replace(misalignment=-0.1), "misalignment"),
        (lambda: LCQ.replace(f_ec=0.9), "f_ec"),
        (lambda: LCQ.replace(sifting=0.0), "sifting"),
        (lambda: LCQ.replace(relay_fraction=1.5), "relay_fraction"),
        (lambda: LCQ.replace(mu_a=0.0), "mu_a"),
        (lambda: LCQ.replace(clock_hz=0.0), "clock_hz"),
        (
            lambda: LCQ.replace(detector=Detector(0.5, 1e-6, dead_time_s=1e-8)),
            "detector.dead_time_s",
        ),
    ],
)
def test_bad_parameters_name_the_field(change, name: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ParameterError) as info:
        change()
    assert info.value.name == name
    assert "\n" not in str(info.value)


def test_negative_distance_is_rejected() -> None:
    with pytest.raises(ParameterError, match="distance_km"):
        key_rate_per_pulse(LCQ, [-1.0])


systems = st.builds(
    MDISystem,
    name=st.just("random"),
    fibre=st.builds(Fibre, st.floats(0.15, 0.35)),
    detector=st.builds(
        Detector, st.floats(0.05, 1.0), st.floats(1e-9, 1e-4), st.just(0.0), st.just(0.0)
    ),
    clock_hz=st.just(1e8),
    misalignment=st.floats(0.001, 0.06),
    f_ec=st.floats(1.0, 1.3),
    relay_fraction=st.floats(0.2, 0.8),
)


@settings(max_examples=20, deadline=None)
@given(system=systems)
def test_rate_below_plob_falls_with_distance_and_stops(system: MDISystem) -> None:
    lengths = np.linspace(0.0, 1000.0, 201)
    rate = key_rate_per_pulse(system, lengths)
    total = system.detector.efficiency * system.fibre.transmittance(lengths)
    assert np.all(rate <= plob_bound(total) + 1e-15)
    assert np.all(np.diff(rate) <= 1e-12 * rate[:-1])
    # zero from the last positive length on (dark counts end every link)
    positive = np.flatnonzero(rate > 0)
    assert positive.size == 0 or np.all(rate[positive[-1] + 1 :] == 0.0)
    assert rate[-1] == 0.0


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_have_no_key_past_their_reach(name: str) -> None:
    system = PRESETS[name]
    reach = KIND.max_distance_km(system)
    assert math.isfinite(reach) and reach > 0
    assert float(key_rate_per_pulse(system, reach - 0.5)) > 0.0
    assert np.all(key_rate_per_pulse(system, reach + np.array([0.5, 10.0, 100.0])) == 0.0)


# ---------------------------------------------------------------------------------------------
# vacuum + weak decoy (finite number of decoys)


def test_decoy_bounds_bracket_the_true_single_photon_terms() -> None:
    system = LCQ.replace(decoy_ratio=0.2)
    lengths = np.array([0.0, 50.0, 120.0, 180.0])
    ea, eb = system.arm_transmittances(lengths)
    for mu in (0.1, 0.4, 0.8):
        y_low, e_up = decoy_bounds(system, ea, eb, mu, mu)
        y_true, e_true = single_photon_terms(ea, eb, 6.02e-6, 0.015)
        assert np.all(y_low <= y_true * (1 + 1e-9))
        assert np.all(e_up >= e_true * (1 - 1e-9))
        assert np.all(y_low > 0.3 * y_true)  # and not uselessly loose


def test_x_basis_gain_small_intensity_limit() -> None:
    # p_d = 0, weak pulses: Q_X -> (n_a + n_b)^2 / 4 (HOM coincidences of all photon pairs)
    q, e = x_basis_gains_and_errors(0.2, 0.1, 1e-3, 2e-3, 0.0, 0.0)
    na, nb = 0.2e-3, 0.2e-3
    assert float(q) == pytest.approx((na + nb) ** 2 / 4, rel=1e-3)
    # single-photon pairs (n_a n_b / 2 of them) are right, multi-photon ones err half the time
    assert float(e) == pytest.approx(0.5 * (1 - (na * nb / 2) / float(q)), rel=1e-3)


def test_finite_decoys_approach_infinite_decoys() -> None:
    lengths = np.array([20.0, 100.0, 160.0])
    infinite = key_rate_per_pulse(LCQ, lengths)
    previous = np.zeros_like(infinite)
    for r in (0.5, 0.2, 0.05, 0.01):
        finite = key_rate_per_pulse(LCQ.replace(decoy_ratio=r), lengths)
        assert np.all(finite <= infinite * (1 + 1e-9))
        assert np.all(finite >= previous)  # weaker decoys, tighter bounds
        previous = finite
    np.testing.assert_allclose(previous, infinite, rtol=0.1)
    reach = KIND.max_distance_km(LCQ.replace(decoy_ratio=0.1))
    assert KIND.max_distance_km(LCQ) - 15.0 < reach < KIND.max_distance_km(LCQ)


def test_finite_decoys_with_an_asymmetric_relay() -> None:
    system = LCQ.replace(decoy_ratio=0.1, relay_fraction=0.3)
    rate, mu_a, mu_b = key_rate_and_intensities(system, np.array([50.0, 100.0]))
    assert np.all(rate > 0) and np.all(mu_a < mu_b)
    assert np.all(rate <= key_rate_per_pulse(LCQ.replace(relay_fraction=0.3), [50.0, 100.0]))


def test_decoy_ratio_is_checked() -> None:
    with pytest.raises(ParameterError, match="decoy_ratio"):
        LCQ.replace(decoy_ratio=1.0)
    with pytest.raises(ParameterError, match="decoy_ratio"):
        decoy_bounds(LCQ, 0.1, 0.1, 0.3, 0.3)
