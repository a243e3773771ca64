"""Your own QKD system (issue 20 D): ``qkd.systems`` in a scenario, ``system:`` per link, and
``qfl keyrate --systems FILE --system NAME --param KEY=VALUE`` reading the same definitions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from qfl.cli import main
from qfl.cosim.netbuild import build_topology
from qfl.scenario import ScenarioError, parse_scenario
from qfl.scenario.qkd import read_systems
from qkd.errors import ParameterError, UnknownNameError
from qkd.params import PRESETS, REQUIRED_FIELDS, SYSTEM_FIELDS, SystemRegistry, define_system

# a vendor's datasheet, in full (no base), and a variant of a preset
SYSTEMS: dict[str, Any] = {
    "vendor-x": {
        "clock_hz": 1.25e9,
        "detector": {
            "efficiency": 0.25,
            "dark_count_prob": 1e-7,
            "dead_time_s": 1e-8,
            "afterpulse_prob": 0.02,
        },
        "source": {"mu": 0.5, "decoys": [0.1, 0.0]},
        "fibre": {"attenuation_db_per_km": 0.18},
        "misalignment": 0.01,
        "f_ec": 1.1,
        "sifting": 0.9,
        "block_size": 5e9,
        "reference": "vendor X datasheet, rev. 3",
    },
    "slow-gys": {"base": "gys-2004", "clock_hz": 1e8, "detector": {"dark_count_prob": 8e-8}},
}


def scenario(tiny: Any, key_model: str, systems: dict[str, Any] | None = None) -> dict[str, Any]:
    return tiny(
        {
            "topology": {
                "links": [
                    {"a": "a", "b": "r", "length_km": 5, "system": "vendor-x"},
                    {"a": "b", "b": "r", "length_km": 8, "system": "slow-gys"},
                    {"a": "c", "b": "r", "length_km": 12},
                    {"a": "a", "b": "b", "length_km": 20, "system": "gys-2004"},
                ]
            },
            "qkd": {
                "preset": None,
                "system": "vendor-x",
                "key_model": key_model,
                "systems": SYSTEMS if systems is None else systems,
            },
        }
    )


def keyrate_json(capsys: pytest.CaptureFixture[str], *args: str) -> list[dict[str, Any]]:
    assert main(["keyrate", *args, "--json"]) == 0
    out = capsys.readouterr()
    assert out.err == ""
    return json.loads(out.out)  # type: ignore[no-any-return]


@pytest.mark.parametrize("key_model", ["finite-blocks", "asymptotic-fluid"])
def test_each_link_gets_the_rate_qfl_keyrate_gives_for_its_system(
    tiny: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str], key_model: str
) -> None:
    data = scenario(tiny, key_model)
    file = tmp_path / "scenario.yaml"
    file.write_text(yaml.safe_dump(data, sort_keys=False))
    sc = parse_scenario(file.read_text())
    topo = build_topology(sc)
    finite = ["--finite-key"] if key_model == "finite-blocks" else []
    expected = {"a-r": "vendor-x", "b-r": "slow-gys", "c-r": "vendor-x", "a-b": "gys-2004"}
    rates = {}
    for link in topo.links:
        name = expected[f"{link.a}-{link.b}"]
        assert link.system.name == name  # type: ignore[union-attr]
        record = keyrate_json(capsys, "--systems", str(file), "--system", name, *finite,
                              "-d", str(link.length_km))[0]  # fmt: skip
        assert link.skr_bps == pytest.approx(record["rate_bps"], rel=1e-12), name
        assert link.skr_bps > 0
        rates[name] = link.skr_bps
        if finite:  # the block is the system's own, and lasts N / clock_hz
            system = link.system
            assert record["block_size"] == (system.block_size or 1e10)  # type: ignore[union-attr]
            assert link.block_bits == pytest.approx(link.skr_bps * record["block_time_s"])
    # a systems-only file gives the same numbers as the scenario
    only = tmp_path / "systems.yaml"
    only.write_text(yaml.safe_dump({"systems": SYSTEMS}))
    record = keyrate_json(capsys, "--systems", str(only), "--system", "slow-gys", *finite,
                          "-d", "8")[0]  # fmt: skip
    assert record["rate_bps"] == pytest.approx(rates["slow-gys"], rel=1e-12)


@pytest.mark.parametrize("key_model", ["finite-blocks", "asymptotic-fluid"])
def test_doubling_the_clock_doubles_the_rate(tiny: Any, key_model: str) -> None:
    """slow-gys (no dead time): exactly twice the bit/s from the same key per pulse;
    vendor-x (10 ns dead time, 1.25 -> 2.5 GHz): less than twice, its detectors saturate."""
    fast = {
        "slow-gys": {**SYSTEMS["slow-gys"], "clock_hz": 2e8},
        "vendor-x": {**SYSTEMS["vendor-x"], "clock_hz": 2.5e9},
    }
    slow_topo = build_topology(parse_scenario(yaml.safe_dump(scenario(tiny, key_model))))
    fast_topo = build_topology(parse_scenario(yaml.safe_dump(scenario(tiny, key_model, fast))))
    for slow, quick in zip(slow_topo.links, fast_topo.links, strict=True):
        name = quick.system.name  # type: ignore[union-attr]
        if name == "slow-gys":
            assert quick.skr_bps == pytest.approx(2.0 * slow.skr_bps, rel=1e-9)
            if key_model == "finite-blocks":  # the same pulses per block, in half the time
                assert quick.block_bits == pytest.approx(slow.block_bits)
        elif name == "vendor-x":
            assert slow.skr_bps < quick.skr_bps < 1.9 * slow.skr_bps
        else:
            assert quick.skr_bps == slow.skr_bps


def test_the_clock_in_qfl_keyrate(capsys: pytest.CaptureFixture[str]) -> None:
    base = keyrate_json(capsys, "-d", "20", "--finite-key", "--block-size", "1e10")[0]
    fast = keyrate_json(capsys, "-d", "20", "--finite-key", "--block-size", "1e10", "--param",
                        "clock_hz=4e6")[0]  # fmt: skip
    assert fast["rate_bps"] == pytest.approx(2 * base["rate_bps"])
    assert fast["key_per_block"] == base["key_per_block"]
    assert fast["block_time_s"] == pytest.approx(base["block_time_s"] / 2)


def test_param_overrides_match_a_definition(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = tmp_path / "s.yaml"
    file.write_text(yaml.safe_dump({"systems": SYSTEMS}))
    defined = keyrate_json(capsys, "--systems", str(file), "--system", "slow-gys", "-d", "30")
    by_param = keyrate_json(capsys, "--system", "gys-2004", "--param", "clock_hz=1e8",
                            "--param", "detector.dark_count_prob=8e-8", "-d", "30")  # fmt: skip
    assert by_param[0]["rate_bps"] == pytest.approx(defined[0]["rate_bps"], rel=1e-12)


# ---------------------------------------------------------------------------------------------
# bad values: one line, exit status 2, naming the field


BAD_SYSTEMS = [
    ({"x": {"base": "gys-2004", "detector": {"efficiency": 1.5}}},
     "qkd.systems.x.detector.efficiency: must be in (0, 1], got 1.5"),
    ({"x": {"base": "gys-2004", "detector": {"efficiency": 0}}},
     "qkd.systems.x.detector.efficiency: must be in (0, 1], got 0"),
    ({"x": {"base": "gys-2004", "detector": {"dark_count_prob": -1e-6}}},
     "qkd.systems.x.detector.dark_count_prob: must be in [0, 1), got -1e-06"),
    ({"x": {"base": "gys-2004", "clock_hz": -5}}, "qkd.systems.x.clock_hz: must be > 0, got -5"),
    ({"x": {"base": "gys-2004", "misalignment": 0.7}},
     "qkd.systems.x.misalignment: must be in [0, 0.5], got 0.7"),
    ({"x": {"base": "gys-2004", "f_ec": 0.9}}, "qkd.systems.x.f_ec: must be >= 1, got 0.9"),
    ({"x": {"base": "gys-2004", "source": {"mu": 0.01}}},
     "qkd.systems.x.source.decoys[0]: must be >= 0 and < mu (0.01), got 0.05"),
    ({"x": {"base": "gys-2004", "detector": {"efficency": 0.2}}},
     "qkd.systems.x.detector.efficency: unknown key 'efficency' (did you mean 'efficiency'?)"),
    ({"x": {"detector": {"efficiency": 0.2, "dark_count_prob": 1e-6}}},
     "qkd.systems.x.clock_hz: must be given (no base system), got None"),
    ({"x": {"base": "nope"}}, "qkd.systems.x.base: must be one of 'gys-2004', 'toshiba-2018'"),
    ({"x": {"base": "y"}, "y": {"base": "x"}},
     "qkd.systems.x.base: must be a chain of bases that ends in a preset"),
    ({"gys-2004": {"clock_hz": 1e6}}, "qkd.systems.gys-2004: must be a name no preset has"),
    ({"x": {"base": "gys-2004", "clock_hz": "fast"}},
     "qkd.systems.x.clock_hz: must be a number, got 'fast'"),
]  # fmt: skip


@pytest.mark.parametrize(("systems", "message"), BAD_SYSTEMS)
def test_bad_definitions_give_one_line_and_status_2(
    tiny: Any,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    systems: dict[str, Any],
    message: str,
) -> None:
    data = tiny({"qkd": {"systems": systems}})
    file = tmp_path / "bad.yaml"
    file.write_text(yaml.safe_dump(data, sort_keys=False))
    assert main(["validate", str(file)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("qfl: error: ") and message in err[0], err
    # qfl keyrate reads the same file with the same message
    assert main(["keyrate", "--systems", str(file), "--json"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"qkd": {"system": "my-system"}},
         "qkd.system: must be one of 'gys-2004', 'slow-gys', 'toshiba-2018', 'vendor-x', "
         "got 'my-system'"),
        ({"qkd": {"preset": "my-system", "system": None}}, "qkd.preset: must be one of 'gys-2004'"),
        ({"topology": {"links": [{"a": "a", "b": "r", "length_km": 5, "system": "nope"}]}},
         "topology.links[0].system: must be one of 'gys-2004', 'slow-gys'"),
        ({"topology": {"links": [{"a": "a", "b": "r", "length_km": 5, "system": "slow-gys",
                                  "preset": "gys-2004"}]}},
         "topology.links[0].preset: give system or preset (its older name), not both"),
    ],
)  # fmt: skip
def test_unknown_system_names_list_the_allowed_ones(
    tiny: Any, capsys: pytest.CaptureFixture[str], patch: dict[str, Any], message: str
) -> None:
    qkd = {"preset": None, "systems": SYSTEMS, **patch.get("qkd", {})}
    data = tiny({**patch, "qkd": qkd})
    with pytest.raises(ScenarioError) as info:
        parse_scenario(yaml.safe_dump(data))
    assert message in str(info.value)


def test_keyrate_system_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    file = tmp_path / "s.yaml"
    file.write_text(yaml.safe_dump({"systems": SYSTEMS}))
    cases = [
        (["--systems", str(file), "--system", "mine"],
         "--system: must be one of 'gys-2004', 'slow-gys', 'toshiba-2018', 'vendor-x', got 'mine'"),
        (["--system", "slow-gys"], "--system: must be one of 'gys-2004', 'toshiba-2018'"),
        (["--systems", str(tmp_path / "none.yaml")], "none.yaml: no such file"),
        (["--param", "detector.dark_count_prob=2"],
         "--param detector.dark_count_prob: must be in [0, 1), got 2.0"),
        (["--param", "clock_hz=fast"], "--param clock_hz: must be a number, got 'fast'"),
        (["--param", "clockhz=1e9"], "--param clockhz: must be one of 'clock_hz'"),
        (["--param", "clock_hz"], "--param: must be KEY=VALUE"),
        (["--system", "gys-2004", "--preset", "gys-2004"], "--preset: must be left out"),
    ]  # fmt: skip
    for args, message in cases:
        assert main(["keyrate", *args, "--json"]) == 2, args
        out = capsys.readouterr()
        lines = out.err.strip().splitlines()
        assert out.out == "" and len(lines) == 1 and message in lines[0], (args, out.err)


# ---------------------------------------------------------------------------------------------
# the registry


def test_registry_extends_the_presets_and_stays_read_only() -> None:
    reg = read_systems_from(SYSTEMS)
    assert set(reg) == {*PRESETS, "vendor-x", "slow-gys"}
    assert set(PRESETS) == {"gys-2004", "toshiba-2018"}  # the presets are not changed
    vx = reg["vendor-x"]
    assert (vx.source.clock_hz, vx.detector.dead_time_s, vx.fibre.attenuation_db_per_km) == (
        1.25e9, 1e-8, 0.18)  # fmt: skip
    assert (vx.f_ec, vx.sifting, vx.block_size, vx.source.decoys) == (1.1, 0.9, 5e9, (0.1, 0.0))
    assert vx.reference == "vendor X datasheet, rev. 3"
    slow = reg["slow-gys"]
    gys = PRESETS["gys-2004"]
    assert slow.detector.efficiency == gys.detector.efficiency and slow.misalignment == 0.033
    assert slow.reference == "user definition, based on gys-2004"
    with pytest.raises(TypeError):
        reg["other"] = gys  # type: ignore[index]


def read_systems_from(systems: dict[str, Any]) -> SystemRegistry:
    defs = {n: (d.get("base"), _flat({k: v for k, v in d.items() if k != "base"}))
            for n, d in systems.items()}  # fmt: skip
    return SystemRegistry().extended(defs)


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = tuple(v) if isinstance(v, list) else v
    return out


def test_scenario_and_file_readers_agree(tmp_path: Path) -> None:
    file = tmp_path / "s.yaml"
    file.write_text(yaml.safe_dump({"systems": SYSTEMS}))
    assert dict(read_systems(file)) == dict(read_systems_from(SYSTEMS))


def test_every_parameter_of_a_system_can_be_set() -> None:
    fields = {f.split(".")[-1] for f in SYSTEM_FIELDS.values()}
    assert {"clock_hz", "efficiency", "dark_count_prob", "dead_time_s", "afterpulse_prob", "mu",
            "decoys", "attenuation_db_per_km", "misalignment", "f_ec", "sifting", "block_size",
            "reference"} == fields  # fmt: skip
    with pytest.raises(ParameterError, match=r"detector\.efficiency: must be given"):
        define_system("x", {"clock_hz": 1e9, "detector.dark_count_prob": 1e-6})
    assert set(REQUIRED_FIELDS) <= set(SYSTEM_FIELDS)
    with pytest.raises(UnknownNameError, match="bogus: must be one of 'clock_hz'"):
        define_system("x", {"bogus": 1.0}, base=PRESETS["gys-2004"])


@settings(max_examples=25, deadline=None)
@given(
    eff=st.floats(-1.0, 2.0),
    y0=st.floats(-1e-3, 1.5),
    clock=st.floats(-1e9, 1e10),
)
def test_invalid_values_are_named_never_accepted(eff: float, y0: float, clock: float) -> None:
    values = {"detector.efficiency": eff, "detector.dark_count_prob": y0, "clock_hz": clock}
    ok = 0 < eff <= 1 and 0 <= y0 < 1 and clock > 0
    if ok:
        s = define_system("x", values)
        assert (s.detector.efficiency, s.detector.dark_count_prob, s.source.clock_hz) == (
            eff, y0, clock)  # fmt: skip
    else:
        with pytest.raises(ParameterError) as info:
            define_system("x", values)
        assert info.value.name in values


def test_topology_json_reports_each_links_system_and_rate(
    tiny: Any, fmnist: Path, tmp_path: Path
) -> None:
    from qfl.cosim.outputs import write_network_outputs
    from qfl.cosim.run import simulate_network

    sc = parse_scenario(yaml.safe_dump(scenario(tiny, "finite-blocks")))
    nrun = simulate_network(sc)
    write_network_outputs(nrun, tmp_path)
    links = json.loads((tmp_path / "topology.json").read_text())["links"]
    built = {f"{lk.a}-{lk.b}": lk for lk in build_topology(sc).links}
    assert [lk["system"] for lk in links] == ["vendor-x", "slow-gys", "vendor-x", "gys-2004"]
    for lk in links:
        assert lk["skr_bps"] == built[f"{lk['a']}-{lk['b']}"].skr_bps
