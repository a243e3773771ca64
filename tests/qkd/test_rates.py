"""Key-rate models against published figures, hand computations and physical invariants."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qkd.errors import ParameterError, UnknownNameError
from qkd.params import Detector, Fibre, QKDSystem, Source, get_preset
from qkd.rates import (
    PROTOCOLS,
    binary_entropy,
    gain_and_qber,
    key_rate_and_mu,
    key_rate_bps,
    key_rate_per_pulse,
    max_distance,
    optimal_mu,
    plob_bound,
    single_photon_gain_and_qber,
    tgw_bound,
)

GYS = get_preset("gys-2004")
TOSHIBA = get_preset("toshiba-2018")


# ---------------------------------------------------------------------------------------------
# Published figures: Ma, Qi, Zhao & Lo, PRA 72, 012326 (2005), GYS parameters.
#
# quantity                                   published          this implementation
# optimal mu, infinite decoys                ~0.48              0.486 (0 km) .. 0.475 (100 km)
# max. distance, infinite decoys             ~142 km            142.2 km
# max. distance, vacuum + weak (nu = 0.05)   a few km less      141.0 km
# max. distance, no decoy (GLLP)             tens of km         40.2 km
#
# The published entries were quoted from memory (the paper could not be re-read offline);
# the tolerances below are those of reading them off the paper's text and figures.


def test_gys_optimal_mu_is_about_0_48() -> None:
    mu = optimal_mu(GYS, [0.0, 50.0, 100.0])
    assert np.all(np.abs(mu - 0.48) < 0.02), mu


def test_gys_max_distance_infinite_decoys_is_about_142_km() -> None:
    assert max_distance(GYS, "decoy-bb84") == pytest.approx(142.0, abs=2.0)
    # At the published operating point mu = 0.48 the distance barely changes.
    assert max_distance(GYS, "decoy-bb84", mu=0.48) == pytest.approx(142.0, abs=2.0)


def test_gys_vacuum_plus_weak_decoy_approaches_the_infinite_decoy_case() -> None:
    infinite = max_distance(GYS, "decoy-bb84")
    vacuum_weak = max_distance(GYS, "decoy-vacuum-weak")
    assert GYS.source.decoys[0] == 0.05
    assert 0.0 < infinite - vacuum_weak < 3.0, (infinite, vacuum_weak)


def test_gys_no_decoy_reaches_only_tens_of_km() -> None:
    no_decoy = max_distance(GYS, "bb84-no-decoy")
    assert 20.0 < no_decoy < 60.0
    assert no_decoy == pytest.approx(40.2, abs=0.5)  # regression value of this implementation


def test_gys_single_photon_source_goes_furthest() -> None:
    distances = [max_distance(GYS, p) for p in PROTOCOLS]
    assert distances[3] > distances[0] > distances[1] > distances[2]


def test_toshiba_2018_asymptotic_rate_is_the_order_of_the_published_finite_key_rate() -> None:
    """Yuan et al., JLT 36, 3427 (2018): 13.72 Mb/s (finite key) over a 2 dB channel."""
    published_bps = 13.72e6
    length = 2.0 / TOSHIBA.fibre.attenuation_db_per_km  # 2 dB of fibre loss
    at_preset_mu = float(key_rate_bps(TOSHIBA, length, mu=TOSHIBA.source.mu))
    optimised = float(key_rate_bps(TOSHIBA, length))
    # Asymptotic >= finite key, and the same order: 28.6 and 29.7 Mb/s (with the detector's
    # after-pulses and dead time; the finite-key comparison is in tests/qkd/test_finite.py).
    assert 1.0 < at_preset_mu / published_bps < 4.0
    assert at_preset_mu <= optimised < 4.0 * published_bps
    assert at_preset_mu == pytest.approx(28.6e6, rel=0.01)


def test_detector_limits_saturate_short_links_and_add_errors() -> None:
    """Dead time: the count rate stays below 1 / tau; after-pulses: more clicks and errors."""
    base = TOSHIBA.replace(detector=Detector(0.31, 4e-6))
    q0, e0 = gain_and_qber(base, [0.0, 10.0], 0.5)
    slow = TOSHIBA.replace(detector=Detector(0.31, 4e-6, dead_time_s=1e-7))
    q1, e1 = gain_and_qber(slow, [0.0, 10.0], 0.5)
    assert np.all(q1 * 1e9 < 1e7) and np.all(q1 < q0)
    np.testing.assert_allclose(e1, e0)
    noisy = TOSHIBA.replace(detector=Detector(0.31, 4e-6, afterpulse_prob=0.04))
    q2, e2 = gain_and_qber(noisy, [0.0, 10.0], 0.5)
    np.testing.assert_allclose(q2, q0 * 1.04)
    np.testing.assert_allclose(e2, (e0 + 0.02) / 1.04)
    for protocol in PROTOCOLS:
        ideal = key_rate_bps(base, [0.0, 5.0, 50.0], protocol)
        assert np.all(key_rate_bps(slow, [0.0, 5.0, 50.0], protocol) < ideal)
        assert np.all(key_rate_bps(noisy, [0.0, 5.0, 50.0], protocol) < ideal)
    # Without dead time the rate keeps growing as the loss falls; with it, it saturates.
    assert key_rate_bps(slow, 0.0) < 1.2 * key_rate_bps(slow, 5.0)
    assert key_rate_bps(base, 0.0) > 1.2 * key_rate_bps(base, 5.0)


# ---------------------------------------------------------------------------------------------
# Independent scalar computations of the formulas


def _h2(p: float) -> float:
    return 0.0 if p <= 0 or p >= 1 else -p * math.log2(p) - (1 - p) * math.log2(1 - p)


def _by_hand(system: QKDSystem, length: float, mu: float) -> dict[str, float]:
    eta = system.detector.efficiency * 10 ** (-system.fibre.attenuation_db_per_km * length / 10)
    y0, e_d = system.detector.dark_count_prob, system.misalignment
    f, q = system.f_ec, system.sifting
    gain = y0 + 1 - math.exp(-eta * mu)
    qber = (0.5 * y0 + e_d * (1 - math.exp(-eta * mu))) / gain
    y1 = y0 + eta
    e1 = (0.5 * y0 + e_d * eta) / y1
    decoy = q * (y1 * mu * math.exp(-mu) * (1 - _h2(e1)) - f * gain * _h2(qber))
    nu = system.source.decoys[0]
    gain_nu = y0 + 1 - math.exp(-eta * nu)
    qber_nu = (0.5 * y0 + e_d * (1 - math.exp(-eta * nu))) / gain_nu
    y1_low = (mu / (mu * nu - nu**2)) * (
        gain_nu * math.exp(nu) - gain * math.exp(mu) * nu**2 / mu**2 - (mu**2 - nu**2) / mu**2 * y0
    )
    e1_up = min(0.5, (qber_nu * gain_nu * math.exp(nu) - 0.5 * y0) / (y1_low * nu))
    vacuum_weak = q * (mu * math.exp(-mu) * y1_low * (1 - _h2(e1_up)) - f * gain * _h2(qber))
    delta = (1 - (1 + mu) * math.exp(-mu)) / gain
    no_decoy = q * (gain * (1 - delta) * (1 - _h2(qber / (1 - delta))) - f * gain * _h2(qber))
    single = q * (y1 * (1 - _h2(e1)) - f * y1 * _h2(e1))
    return {
        "gain": gain,
        "qber": qber,
        "decoy-bb84": max(decoy, 0.0),
        "decoy-vacuum-weak": max(vacuum_weak, 0.0),
        "bb84-no-decoy": max(no_decoy, 0.0),
        "single-photon": max(single, 0.0),
    }


@pytest.mark.parametrize(("length", "mu"), [(0.0, 0.48), (20.0, 0.3), (80.0, 0.55)])
def test_rates_match_a_scalar_transcription_of_the_formulas(length: float, mu: float) -> None:
    ref = _by_hand(GYS, length, mu)
    q, e = gain_and_qber(GYS, length, mu)
    assert float(q) == pytest.approx(ref["gain"], rel=1e-12)
    assert float(e) == pytest.approx(ref["qber"], rel=1e-12)
    for protocol in ("decoy-bb84", "decoy-vacuum-weak"):
        got = float(key_rate_per_pulse(GYS, length, protocol, mu=mu))
        assert got == pytest.approx(ref[protocol], rel=1e-9, abs=1e-300)
    got = float(key_rate_per_pulse(GYS, length, "single-photon"))
    assert got == pytest.approx(ref["single-photon"], rel=1e-12)


def test_no_decoy_matches_by_hand_where_positive() -> None:
    mu = 0.02
    ref = _by_hand(GYS, 5.0, mu)
    assert ref["bb84-no-decoy"] > 0
    got = float(key_rate_per_pulse(GYS, 5.0, "bb84-no-decoy", mu=mu))
    assert got == pytest.approx(ref["bb84-no-decoy"], rel=1e-9)


def test_gain_of_the_vacuum_is_the_background_yield() -> None:
    q, e = gain_and_qber(GYS, [0.0, 100.0], 0.0)
    np.testing.assert_allclose(q, GYS.detector.dark_count_prob)
    np.testing.assert_allclose(e, 0.5)


def test_single_photon_gain_and_qber() -> None:
    y1, e1 = single_photon_gain_and_qber(GYS, 0.0)
    assert float(y1) == pytest.approx(0.045 + 1.7e-6)
    assert float(e1) == pytest.approx((0.5 * 1.7e-6 + 0.033 * 0.045) / (0.045 + 1.7e-6))


def test_binary_entropy() -> None:
    np.testing.assert_allclose(binary_entropy([0.0, 0.11, 0.5, 1.0]), [0, 0.49991596, 1, 0])


# ---------------------------------------------------------------------------------------------
# The optimiser and the root finder


@pytest.mark.parametrize("protocol", ["decoy-bb84", "decoy-vacuum-weak", "bb84-no-decoy"])
def test_optimised_rate_beats_every_fixed_mu_on_a_fine_grid(protocol: str) -> None:
    lengths = np.array([0.0, 10.0, 30.0, 90.0])
    best, mu_best = key_rate_and_mu(GYS, lengths, protocol)
    grid = np.geomspace(0.051, 2.0, 400) if protocol == "decoy-vacuum-weak" else None
    grid = np.geomspace(1e-6, 2.0, 600) if grid is None else grid
    for i, length in enumerate(lengths):
        fixed = key_rate_per_pulse(GYS, np.full(grid.size, length), protocol, mu=grid)
        assert best[i] >= fixed.max() * (1 - 1e-9)
        if best[i] > 0:
            at_mu = float(key_rate_per_pulse(GYS, length, protocol, mu=mu_best[i]))
            assert at_mu == pytest.approx(best[i], rel=1e-12)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_max_distance_is_where_the_rate_reaches_zero(protocol: str) -> None:
    l_max = max_distance(GYS, protocol)
    below, above = key_rate_per_pulse(GYS, [l_max - 0.2, l_max + 0.2], protocol)
    assert below > 0
    assert above == 0


def test_max_distance_edge_cases() -> None:
    assert max_distance(GYS.replace(misalignment=0.5)) == 0.0
    assert max_distance(GYS.replace(fibre=Fibre(0.0))) == math.inf


# ---------------------------------------------------------------------------------------------
# Shapes and units


def test_scalar_distance_gives_a_0d_array_and_arrays_keep_their_shape() -> None:
    r = key_rate_bps(GYS, 25.0)
    assert isinstance(r, np.ndarray)
    assert r.shape == ()
    assert r.dtype == np.float64
    assert float(r) == pytest.approx(float(key_rate_per_pulse(GYS, 25.0)) * 2e6)
    grid = np.array([[0.0, 10.0], [20.0, 30.0]])
    for fn in (key_rate_bps, key_rate_per_pulse, optimal_mu):
        assert fn(GYS, grid).shape == (2, 2)
        assert isinstance(fn(GYS, 5.0), np.ndarray)
    for pair in (gain_and_qber(GYS, 5.0, 0.5), single_photon_gain_and_qber(GYS, 5.0)):
        assert all(isinstance(x, np.ndarray) and x.shape == () for x in pair)
    assert max_distance(GYS).__class__ is float


def test_fixed_mu_broadcasts_against_distance_and_empty_input_works() -> None:
    mus = np.array([0.2, 0.4, 0.6])
    by_mu = key_rate_per_pulse(GYS, 30.0, mu=mus)
    assert by_mu.shape == (3,)
    for m, r in zip(mus, by_mu, strict=True):
        assert r == float(key_rate_per_pulse(GYS, 30.0, mu=m))
    assert key_rate_per_pulse(GYS, np.array([])).shape == (0,)


def test_single_photon_uses_one_photon_per_pulse() -> None:
    np.testing.assert_array_equal(optimal_mu(GYS, [0.0, 50.0], "single-photon"), [1.0, 1.0])


# ---------------------------------------------------------------------------------------------
# Bounds


def test_plob_and_tgw_values() -> None:
    assert float(plob_bound(0.5)) == pytest.approx(1.0)
    assert float(tgw_bound(0.5)) == pytest.approx(math.log2(3.0))
    assert float(plob_bound(1e-6)) == pytest.approx(1e-6 / math.log(2), rel=1e-5)
    assert float(plob_bound(0.0)) == 0.0
    assert float(plob_bound(1.0)) == math.inf
    eta = np.linspace(0.0, 0.99, 50)
    assert np.all(tgw_bound(eta) >= plob_bound(eta))


@pytest.mark.parametrize("bad", [-0.1, 1.5, math.nan])
def test_bounds_reject_transmittance_outside_0_1(bad: float) -> None:
    with pytest.raises(ParameterError, match=r"transmittance: must be in \[0, 1\]"):
        plob_bound(bad)
    with pytest.raises(ParameterError, match="transmittance"):
        tgw_bound([0.5, bad])


# ---------------------------------------------------------------------------------------------
# Bad input


def test_unknown_protocol() -> None:
    with pytest.raises(UnknownNameError, match=r"protocol: must be one of 'decoy-bb84'.*got 'x'"):
        key_rate_per_pulse(GYS, 10.0, "x")
    with pytest.raises(UnknownNameError, match="protocol"):
        max_distance(GYS, "bb84")


@pytest.mark.parametrize("bad", [-1.0, math.inf, math.nan])
def test_bad_distances(bad: float) -> None:
    with pytest.raises(ParameterError, match=r"distance_km: must be >= 0 and finite"):
        key_rate_bps(GYS, [0.0, bad])
    with pytest.raises(ParameterError, match="distance_km"):
        gain_and_qber(GYS, bad, 0.5)


def test_bad_mu() -> None:
    with pytest.raises(ParameterError, match=r"mu: must be > 0 and finite, got -0.1"):
        key_rate_per_pulse(GYS, 10.0, mu=-0.1)
    with pytest.raises(ParameterError, match=r"mu: must be > nu = 0.05"):
        key_rate_per_pulse(GYS, 10.0, "decoy-vacuum-weak", mu=0.04)
    with pytest.raises(ParameterError, match=r"mu: must be omitted .* 'single-photon'"):
        key_rate_per_pulse(GYS, 10.0, "single-photon", mu=0.5)
    with pytest.raises(ParameterError, match=r"mu: must be >= 0 and finite"):
        gain_and_qber(GYS, 10.0, -1.0)


def test_vacuum_weak_needs_a_weak_decoy() -> None:
    no_weak = GYS.replace(source=Source(clock_hz=1e6, mu=0.5, decoys=(0.0,)))
    with pytest.raises(ParameterError, match=r"source.decoys\[0\]: must be > 0"):
        key_rate_per_pulse(no_weak, 10.0, "decoy-vacuum-weak")
    # The other protocols do not need it.
    assert float(key_rate_per_pulse(no_weak, 10.0)) > 0


# ---------------------------------------------------------------------------------------------
# Physical invariants (property tests)

systems = st.builds(
    lambda alpha, nu, eff, y0, e_d, f, q: QKDSystem(
        name="random",
        fibre=Fibre(alpha),
        source=Source(clock_hz=1e6, mu=1.0, decoys=(nu, 0.0)),
        detector=Detector(eff, y0),
        misalignment=e_d,
        f_ec=f,
        sifting=q,
    ),
    alpha=st.floats(0.01, 0.5),
    nu=st.floats(0.001, 0.3),
    eff=st.floats(0.01, 1.0),
    y0=st.floats(1e-9, 1e-3),
    e_d=st.floats(0.0, 0.5),
    f=st.floats(1.0, 2.0),
    q=st.floats(0.05, 1.0),
)
lengths = st.lists(st.floats(0.0, 300.0), min_size=2, max_size=6)


@settings(max_examples=40, deadline=None)
@given(system=systems, ls=lengths, protocol=st.sampled_from(PROTOCOLS))
def test_rates_are_nonnegative_nonincreasing_and_below_plob(
    system: QKDSystem, ls: list[float], protocol: str
) -> None:
    d = np.sort(np.asarray(ls))
    rate = key_rate_per_pulse(system, d, protocol)
    assert np.all(rate >= 0)
    assert np.all(np.diff(rate) <= 1e-12 * rate[:-1] + 1e-300)
    assert np.all(rate <= plob_bound(system.transmittance(d)))


@settings(max_examples=40, deadline=None)
@given(system=systems, length=st.floats(0.0, 200.0), mu=st.floats(0.31, 1.5))
def test_fewer_decoys_never_give_more_key(system: QKDSystem, length: float, mu: float) -> None:
    """The vacuum + weak bounds are bounds: that rate <= the infinite-decoy rate <= ideal."""
    infinite = float(key_rate_per_pulse(system, length, "decoy-bb84", mu=mu))
    vacuum_weak = float(key_rate_per_pulse(system, length, "decoy-vacuum-weak", mu=mu))
    no_decoy = float(key_rate_per_pulse(system, length, "bb84-no-decoy", mu=mu))
    assert vacuum_weak <= infinite * (1 + 1e-9) + 1e-300
    assert no_decoy <= infinite * (1 + 1e-9) + 1e-300
