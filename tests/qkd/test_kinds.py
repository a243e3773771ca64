"""The link-kind registry: entries, presets, from_mapping, and properties shared by all kinds."""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qkd import rates
from qkd.errors import ParameterError, UnknownNameError
from qkd.kinds import KINDS, LinkKind, Preset, get_kind, kind_names, register
from qkd.params import get_preset

ROOT = Path(__file__).resolve().parents[2]


def test_the_kinds_of_the_issue_are_registered() -> None:
    assert set(kind_names()) == {"decoy-bb84", "mdi", "tf-sns", "tf-pm", "cv-gg02"}
    units = {name: KINDS[name].rate_unit for name in kind_names()}
    assert units == {
        "decoy-bb84": "bit/pulse",
        "mdi": "bit/pulse pair",
        "tf-sns": "bit/pulse pair",
        "tf-pm": "bit/pulse pair",
        "cv-gg02": "bit/symbol",
    }
    middle = {name for name in kind_names() if KINDS[name].untrusted_middle}
    assert middle == {"mdi", "tf-sns", "tf-pm"}


@pytest.mark.parametrize("name", sorted(KINDS))
def test_presets_carry_sources_and_the_right_type(name: str) -> None:
    kind = get_kind(name)
    assert kind.presets
    for preset in kind.presets.values():
        assert isinstance(preset, Preset)
        assert isinstance(preset.params, kind.params_type)
        assert len(preset.source) > 40  # a citation, not a placeholder


@pytest.mark.parametrize("name", sorted(KINDS))
def test_rate_bps_shapes_dtype_and_units(name: str) -> None:
    kind = get_kind(name)
    params = kind.preset()
    scalar = kind.rate_bps(params, 20.0)
    assert scalar.shape == () and scalar.dtype == np.float64
    grid = np.array([[1.0, 20.0], [40.0, 80.0]])
    r = kind.rate_bps(params, grid)
    assert r.shape == (2, 2) and r.dtype == np.float64
    per_use = kind.rate_per_use(params, grid)
    np.testing.assert_allclose(r, per_use * kind.uses_per_second(params))
    assert float(r[0, 1]) == pytest.approx(float(scalar))
    assert np.all(r >= 0) and r[0, 0] > 0


def test_decoy_bb84_kind_is_the_existing_model() -> None:
    kind = get_kind("decoy-bb84")
    lengths = np.linspace(0.0, 150.0, 31)
    for name in kind.presets:
        system = get_preset(name)
        np.testing.assert_array_equal(
            kind.rate_bps(system, lengths), rates.key_rate_bps(system, lengths, "decoy-bb84")
        )
    assert kind.max_distance_km(get_preset("gys-2004")) == pytest.approx(
        rates.max_distance(get_preset("gys-2004")), abs=0.02
    )


def test_from_mapping_dotted_and_nested_keys() -> None:
    kind = get_kind("mdi")
    a = kind.from_mapping({"detector.dark_count_prob": 1e-7, "relay_fraction": 0.3})
    b = kind.from_mapping({"detector": {"dark_count_prob": 1e-7}, "relay_fraction": 0.3})
    assert a == b
    assert a.detector.dark_count_prob == 1e-7 and a.relay_fraction == 0.3
    assert a.detector.efficiency == kind.preset().detector.efficiency  # the rest is kept
    c = kind.from_mapping({"preset": "tang-2014", "mu_a": 0.3, "mu_b": None})
    assert c.clock_hz == 75e6 and c.mu_a == 0.3 and c.mu_b is None
    cv = get_kind("cv-gg02").from_mapping(
        {"detector": {"detection": "heterodyne", "trusted": False}, "modulation_variance": 5}
    )
    assert cv.detector.detection == "heterodyne" and cv.modulation_variance == 5.0
    bb84 = get_kind("decoy-bb84").from_mapping({"source.decoys": [0.2, 0.0]})
    assert bb84.source.decoys == (0.2, 0.0)
    tf = get_kind("tf-pm").from_mapping({"phase_slices": 32.0})
    assert tf.phase_slices == 32 and isinstance(tf.phase_slices, int)


@pytest.mark.parametrize(
    ("kind", "mapping", "name", "allowed"),
    [
        ("mdi", {"detector.efficiency": 0.0}, "detector.efficiency", "in (0, 1]"),
        ("mdi", {"detector.dark_count_prob": -1e-6}, "detector.dark_count_prob", "[0, 1)"),
        ("mdi", {"detector.gain": 2}, "detector.gain", "fields of Detector"),
        ("mdi", {"relay": 0.5}, "relay", "fields of MDISystem"),
        ("mdi", {"detector": 0.5}, "detector", "mapping of the fields of Detector"),
        ("mdi", {"misalignment": "low"}, "misalignment", "a number"),
        ("mdi", {"mu_a": "0.3"}, "mu_a", "number or null"),
        ("mdi", {"preset": "nope"}, "preset", "'lcq-2012'"),
        ("tf-pm", {"phase_slices": 15}, "phase_slices", "even integer"),
        ("tf-pm", {"phase_slices": 15.5}, "phase_slices", "an integer"),
        ("cv-gg02", {"modulation_variance": 0}, "modulation_variance", "(0, 1e4]"),
        ("cv-gg02", {"excess_noise": -0.01}, "excess_noise", ">= 0"),
        ("cv-gg02", {"beta": 1.5}, "beta", "(0, 1]"),
        ("cv-gg02", {"detector.electronic_noise": -1}, "detector.electronic_noise", ">= 0"),
        ("cv-gg02", {"detector.detection": "balanced"}, "detector.detection", "homodyne"),
        ("cv-gg02", {"detector.trusted": 1}, "detector.trusted", "true or false"),
        ("decoy-bb84", {"source.clock_hz": 0}, "source.clock_hz", "> 0"),
        ("decoy-bb84", {"source.decoys": ["a"]}, "source.decoys", "list of numbers"),
    ],
)
def test_from_mapping_errors_are_one_line_and_name_the_key(
    kind: str, mapping: dict[str, object], name: str, allowed: str
) -> None:
    with pytest.raises(ParameterError) as info:
        get_kind(kind).from_mapping(mapping)
    message = str(info.value)
    assert info.value.name == name, message
    assert allowed in message, message
    assert "\n" not in message


def test_unknown_kind_lists_the_kinds() -> None:
    with pytest.raises(UnknownNameError) as info:
        get_kind("satellite")
    assert info.value.choices == kind_names()


def test_register_refuses_a_duplicate_and_a_bad_default() -> None:
    with pytest.raises(ParameterError, match="not yet registered"):
        register(get_kind("mdi"))
    with pytest.raises(ParameterError, match="default_preset"):
        dataclasses.replace(get_kind("mdi"), name="mdi-2", default_preset="nope")


def test_rate_bps_checks_the_parameter_type() -> None:
    with pytest.raises(ParameterError, match="MDISystem"):
        get_kind("mdi").rate_bps(get_preset("gys-2004"), 10.0)


def test_new_kind_names_appear_only_in_the_registry() -> None:
    # "decoy-bb84" is also a protocol name of qkd.rates, so only the new names are checked
    pattern = re.compile(r"[\"'](mdi|tf-sns|tf-pm|cv-gg02)[\"']")
    offenders = [
        str(path.relative_to(ROOT))
        for folder in ("qkd", "network", "qfl")
        for path in sorted((ROOT / folder).rglob("*.py"))
        if path.name != "kinds.py" and pattern.search(path.read_text(encoding="utf-8"))
    ]
    assert offenders == []


# ---------------------------------------------------------------------------------------------
# properties shared by every kind, on every preset

_POINT_TO_POINT_OR_MDI = {"decoy-bb84", "mdi", "cv-gg02"}


@settings(max_examples=30, deadline=None)
@given(
    name=st.sampled_from(sorted(KINDS)),
    data=st.data(),
    lengths=st.lists(st.floats(0.0, 800.0), min_size=2, max_size=12),
)
def test_rates_fall_with_distance_and_respect_plob(
    name: str, data: st.DataObject, lengths: list[float]
) -> None:
    kind = get_kind(name)
    preset = data.draw(st.sampled_from(sorted(kind.presets)))
    params = kind.preset(preset)
    d = np.sort(np.array(lengths))
    r = kind.rate_per_use(params, d)
    assert np.all(np.diff(r) <= 1e-9 * r[:-1] + 1e-300)
    if name in _POINT_TO_POINT_OR_MDI:
        fibre = params.fibre.transmittance(d)
        assert np.all(r <= rates.plob_bound(fibre) + 1e-15)


@pytest.mark.parametrize("name", sorted(KINDS))
def test_zero_past_the_maximum_distance(name: str) -> None:
    kind = get_kind(name)
    for preset in kind.presets:
        params = kind.preset(preset)
        reach = kind.max_distance_km(params)
        assert 0 < reach < math.inf
        beyond = kind.rate_per_use(params, reach + np.array([0.05, 1.0, 50.0, 500.0]))
        assert np.all(beyond == 0.0)
        assert float(kind.rate_per_use(params, 0.8 * reach)) > 0.0


def test_a_kind_is_a_plain_frozen_dataclass() -> None:
    kind = get_kind("tf-sns")
    assert isinstance(kind, LinkKind)
    with pytest.raises(dataclasses.FrozenInstanceError):
        kind.name = "x"  # type: ignore[misc]


@settings(max_examples=30, deadline=None)
@given(
    efficiency=st.floats(0.01, 1.0),
    dark=st.floats(1e-9, 1e-4),
    misalignment=st.floats(0.0, 0.08),
    attenuation=st.floats(0.15, 0.35),
)
def test_decoy_bb84_from_mapping_stays_below_plob_with_its_detector(
    efficiency: float, dark: float, misalignment: float, attenuation: float
) -> None:
    kind = get_kind("decoy-bb84")
    params = kind.from_mapping(
        {
            "detector": {"efficiency": efficiency, "dark_count_prob": dark},
            "misalignment": misalignment,
            "fibre.attenuation_db_per_km": attenuation,
        }
    )
    d = np.linspace(0.0, 400.0, 41)
    r = kind.rate_per_use(params, d)
    assert np.all(r <= rates.plob_bound(params.transmittance(d)) + 1e-15)
    assert np.all(np.diff(r) <= 1e-12 * r[:-1])
