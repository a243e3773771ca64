"""Twin-field QKD (SNS, PM): the repeaterless-bound crossing, sqrt(eta) scaling, hand values."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import i0e

from qkd.errors import ParameterError
from qkd.kinds import get_kind
from qkd.linkbase import h2
from qkd.params import Detector, Fibre
from qkd.twinfield import (
    PRESETS,
    TwinFieldSystem,
    plob_crossing_km,
    pm_key_rate_per_pulse,
    pm_rate_and_mu,
    repeaterless_bound,
    sns_key_rate_bps,
    sns_key_rate_per_pulse,
    sns_rate_and_settings,
)

MZZ = PRESETS["mzz-2018"]
FANG = PRESETS["fang-2020"]
PROTOCOLS = {"sns": sns_key_rate_per_pulse, "pm": pm_key_rate_per_pulse}


# The twin-field headline: the key rate exceeds the repeaterless bound at long distance.
# With detectors counted in the channel (equal detector technology) both protocols cross it
# on the Ma-Zeng-Zhou parameters; with perfect detectors (fibre only, the stricter bound)
# PM crosses it there and both cross it on the SNSPD-class "fang-2020" system.
@pytest.mark.parametrize("protocol", sorted(PROTOCOLS))
def test_mzz_crosses_the_bound_with_detectors_counted(protocol: str) -> None:
    rate = PROTOCOLS[protocol]
    crossing = plob_crossing_km(rate, MZZ, detectors=True)
    reach = get_kind(f"tf-{protocol}").max_distance_km(MZZ)
    assert 150.0 < crossing < reach, (crossing, reach)
    past = np.array([crossing + 10.0, 0.5 * (crossing + reach)])
    assert np.all(rate(MZZ, past) > repeaterless_bound(MZZ, past, detectors=True))
    before = np.array([10.0, 0.5 * crossing])
    assert np.all(rate(MZZ, before) < repeaterless_bound(MZZ, before, detectors=True))


def test_mzz_pm_crosses_the_fibre_only_bound() -> None:
    crossing = plob_crossing_km(pm_key_rate_per_pulse, MZZ)
    assert 250.0 < crossing < get_kind("tf-pm").max_distance_km(MZZ)


@pytest.mark.parametrize("protocol", sorted(PROTOCOLS))
def test_fang_crosses_the_fibre_only_bound(protocol: str) -> None:
    crossing = plob_crossing_km(PROTOCOLS[protocol], FANG)
    assert math.isfinite(crossing)
    assert crossing < get_kind(f"tf-{protocol}").max_distance_km(FANG) - 100.0


@pytest.mark.parametrize("protocol", sorted(PROTOCOLS))
def test_rate_scales_with_the_square_root_of_the_transmittance(protocol: str) -> None:
    # without dark counts, 100 km more (20 dB over the link, 10 dB per arm) costs a factor
    # of about 10 (sqrt of 100), against 100 for a point-to-point link
    quiet = FANG.replace(detector=Detector(0.6, 0.0), misalignment=0.01)
    r = PROTOCOLS[protocol](quiet, np.array([200.0, 300.0]))
    ratio = r[0] / r[1] / 10.0 ** (0.16 * 100 / 20)
    assert ratio == pytest.approx(1.0, rel=0.1)


def test_pm_hand_value_at_fixed_intensity() -> None:
    # p_d = 0, e_d = 0, M -> 2 slices: Q = 1 - e^{-eta mu} averaged over the slice mismatch;
    # check the phase error against the closed form with no mismatch (M large)
    system = MZZ.replace(detector=Detector(0.5, 0.0), misalignment=0.0, phase_slices=10_000)
    system = system.replace(mu=0.2)
    eta = float(system.arm_transmittance(50.0))
    gain = 1.0 - math.exp(-eta * 0.2)
    odd = math.exp(-0.2) * (math.sinh(0.2) - math.sinh((1 - eta) * 0.2))
    e_x = 1.0 - odd / gain
    expected = (2 / 10_000) * gain * (1.0 - float(h2(e_x)))
    rate, mu = pm_rate_and_mu(system, 50.0)
    assert float(mu) == 0.2
    assert float(rate) == pytest.approx(expected, rel=1e-6)


def test_sns_hand_value_at_fixed_settings() -> None:
    # p_d = 0: only "both sent" windows err; untagged yield s1 = eta, e1 = e_d
    system = MZZ.replace(detector=Detector(0.5, 0.0), misalignment=0.02, mu=0.3, send_prob=0.05)
    eta = float(system.arm_transmittance(100.0))
    n = eta * 0.3
    s1 = 2 * math.exp(-n / 2) * (1 - math.exp(-n / 2))
    s2 = 2 * float(i0e(n)) - 2 * math.exp(-2 * n)
    s_z = 2 * 0.05 * 0.95 * s1 + 0.05**2 * s2
    e_z = 0.05**2 * s2 / s_z
    untagged = 2 * 0.05 * 0.95 * 0.3 * math.exp(-0.3) * eta
    expected = untagged * (1 - float(h2(0.02))) - 1.15 * s_z * float(h2(e_z))
    assert expected > 0
    rate, eps, mu = sns_rate_and_settings(system, 100.0)
    assert (float(eps), float(mu)) == (0.05, 0.3)
    assert float(rate) == pytest.approx(expected, rel=1e-9)


def test_optimised_settings_beat_fixed_ones() -> None:
    lengths = np.array([100.0, 250.0])
    best = sns_key_rate_per_pulse(MZZ, lengths)
    for eps, mu in ((0.05, 0.4), (0.2, 0.2), (0.3, 0.6)):
        fixed = sns_key_rate_per_pulse(MZZ.replace(send_prob=eps, mu=mu), lengths)
        assert np.all(fixed <= best * (1 + 1e-9))
    best_pm = pm_key_rate_per_pulse(MZZ, lengths)
    for mu in (0.02, 0.1, 0.5):
        assert np.all(pm_key_rate_per_pulse(MZZ.replace(mu=mu), lengths) <= best_pm * (1 + 1e-9))


def test_bps_is_per_window_times_clock() -> None:
    assert float(sns_key_rate_bps(MZZ, 150.0)) == pytest.approx(
        float(sns_key_rate_per_pulse(MZZ, 150.0)) * MZZ.clock_hz
    )


@pytest.mark.parametrize(
    ("change", "name"),
    [
        (lambda: MZZ.replace(phase_slices=15), "phase_slices"),
        (lambda: MZZ.replace(phase_slices=0), "phase_slices"),
        (lambda: MZZ.replace(send_prob=1.0), "send_prob"),
        (lambda: MZZ.replace(mu=0.0), "mu"),
        (lambda: MZZ.replace(misalignment=0.6), "misalignment"),
        (lambda: MZZ.replace(clock_hz=-1.0), "clock_hz"),
        (
            lambda: MZZ.replace(detector=Detector(0.5, 1e-8, afterpulse_prob=0.1)),
            "detector.afterpulse_prob",
        ),
        (lambda: Detector(efficiency=0.0, dark_count_prob=1e-8), "detector.efficiency"),
    ],
)
def test_bad_parameters_name_the_field(change, name: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ParameterError) as info:
        change()
    assert info.value.name == name


systems = st.builds(
    TwinFieldSystem,
    name=st.just("random"),
    fibre=st.builds(Fibre, st.floats(0.15, 0.3)),
    detector=st.builds(Detector, st.floats(0.1, 1.0), st.floats(1e-10, 1e-6)),
    clock_hz=st.just(1e9),
    misalignment=st.floats(0.0, 0.08),
    f_ec=st.floats(1.0, 1.3),
    phase_slices=st.sampled_from([8, 16, 32]),
)


@settings(max_examples=15, deadline=None)
@given(system=systems, protocol=st.sampled_from(sorted(PROTOCOLS)))
def test_rates_fall_with_distance_and_stop(system: TwinFieldSystem, protocol: str) -> None:
    lengths = np.linspace(0.0, 1500.0, 151)
    rate = PROTOCOLS[protocol](system, lengths)
    assert np.all(rate >= 0.0)
    assert np.all(np.diff(rate) <= 1e-9 * rate[:-1])
    positive = np.flatnonzero(rate > 0)
    assert positive.size == 0 or np.all(rate[positive[-1] + 1 :] == 0.0)
    assert rate[-1] == 0.0
    # below the TGW-like ceiling every twin-field protocol obeys: at most one bit per window
    assert np.all(rate <= 1.0)
