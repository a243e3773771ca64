"""Parameter classes validate themselves and name the bad field; presets are read-only."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from qkd.errors import ParameterError, UnknownNameError
from qkd.params import PRESETS, Detector, Fibre, QKDSystem, Source, get_preset


def test_presets_and_their_conventions() -> None:
    assert sorted(PRESETS) == ["gys-2004", "toshiba-2018"]
    gys = get_preset("gys-2004")
    # Ma, Qi, Zhao & Lo (2005), Table I (GYS).
    assert gys.fibre.attenuation_db_per_km == 0.21
    assert gys.detector.efficiency == 0.045
    assert gys.detector.dark_count_prob == 1.7e-6
    assert (gys.misalignment, gys.f_ec, gys.sifting) == (0.033, 1.22, 0.5)
    assert (gys.detector.dead_time_s, gys.detector.afterpulse_prob, gys.block_size) == (0, 0, None)
    toshiba = get_preset("toshiba-2018")
    assert toshiba.source.clock_hz == 1e9
    assert toshiba.detector.max_count_rate == pytest.approx(5e8)
    assert toshiba.block_size == 2e9
    for system in PRESETS.values():
        assert system.reference


def test_presets_are_read_only() -> None:
    with pytest.raises(TypeError):
        PRESETS["mine"] = get_preset("gys-2004")  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        get_preset("gys-2004").f_ec = 1.0  # type: ignore[misc]


def test_unknown_preset_lists_the_choices() -> None:
    with pytest.raises(
        UnknownNameError, match=r"preset: must be one of 'gys-2004', 'toshiba-2018'"
    ):
        get_preset("gys")


def test_transmittance() -> None:
    assert float(Fibre(0.2).transmittance(50.0)) == pytest.approx(0.1)
    gys = get_preset("gys-2004")
    np.testing.assert_allclose(gys.transmittance([0.0, 100.0]), [0.045, 0.045 * 10**-2.1])
    with pytest.raises(ParameterError, match="length_km: must be >= 0"):
        Fibre(0.2).transmittance([1.0, -2.0])


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Fibre(-0.1), r"fibre.attenuation_db_per_km: must be >= 0, got -0.1"),
        (lambda: Fibre(math.nan), r"fibre.attenuation_db_per_km"),
        (lambda: Source(clock_hz=0.0), r"source.clock_hz: must be > 0, got 0.0"),
        (lambda: Source(clock_hz=1e6, mu=0.0), r"source.mu: must be > 0"),
        (lambda: Source(clock_hz=1e6, mu=0.5, decoys=(0.6,)), r"source.decoys\[0\]: .* < mu"),
        (lambda: Source(clock_hz=1e6, decoys=(0.1, -0.1)), r"source.decoys\[1\]: must be >= 0"),
        (lambda: Detector(0.0, 1e-6), r"detector.efficiency: must be in \(0, 1\], got 0.0"),
        (lambda: Detector(1.5, 1e-6), r"detector.efficiency: must be in \(0, 1\], got 1.5"),
        (lambda: Detector(0.1, 1.0), r"detector.dark_count_prob: must be in \[0, 1\)"),
        (lambda: Detector(0.1, 1e-6, dead_time_s=-1e-9), r"detector.dead_time_s: must be in"),
        (lambda: Detector(0.1, 1e-6, afterpulse_prob=1.0), r"detector.afterpulse_prob: must"),
        (lambda: get_preset("gys-2004").replace(block_size=0.0), r"block_size: must be >= 1"),
        (lambda: get_preset("gys-2004").replace(misalignment=0.6), r"misalignment: .*0.5\]"),
        (lambda: get_preset("gys-2004").replace(f_ec=0.9), r"f_ec: must be >= 1, got 0.9"),
        (lambda: get_preset("gys-2004").replace(sifting=0.0), r"sifting: must be in \(0, 1\]"),
    ],
)
def test_bad_parameters_are_rejected_by_name(build: object, message: str) -> None:
    with pytest.raises(ParameterError, match=message):
        build()  # type: ignore[operator]


def test_parameter_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match=r"detector\.efficiency"):
        Detector(2.0, 0.0)


def test_replace_returns_a_validated_copy() -> None:
    gys = get_preset("gys-2004")
    other = gys.replace(misalignment=0.01)
    assert isinstance(other, QKDSystem)
    assert other.misalignment == 0.01
    assert gys.misalignment == 0.033
