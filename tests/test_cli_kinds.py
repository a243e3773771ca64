"""``qfl keyrate`` for every link kind (issue 21): presets, ``--param``, ``--params FILE``,
units in the JSON, the several-kinds plot with PLOB, and one-line errors with status 2."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from qfl.cli import main
from qfl.commands.kindrates import KindLink, crossing_km, parse_value, plot_kinds, short_source
from qkd.kinds import KINDS, get_kind, kind_names
from qkd.rates import PROTOCOLS, plob_bound

CV, MDI, SNS, PM, BB84 = "cv-gg02", "mdi", "tf-sns", "tf-pm", "decoy-bb84"
DISTANCES = (0.0, 20.0, 50.0)


def run_json(capsys: pytest.CaptureFixture[str], *args: str) -> list[dict[str, Any]]:
    assert main(["keyrate", *args, "--json"]) == 0
    out = capsys.readouterr()
    assert out.err == ""
    return json.loads(out.out)  # type: ignore[no-any-return]


def fails(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """The one error line of a failing ``qfl keyrate`` (exit status 2, nothing on stdout)."""
    assert main(["keyrate", *args, "--json"]) == 2
    out = capsys.readouterr()
    assert out.out == ""
    lines = out.err.strip().splitlines()
    assert len(lines) == 1, out.err
    assert lines[0].startswith("qfl: error: ") and "Traceback" not in out.err
    return lines[0].removeprefix("qfl: error: ")


def distance_args() -> list[str]:
    return ["--distance", *(f"{d:g}" for d in DISTANCES)]


@pytest.mark.parametrize("name", kind_names())
def test_every_kind_and_preset_matches_the_registry(
    capsys: pytest.CaptureFixture[str], name: str
) -> None:
    kind = get_kind(name)
    for preset in kind.presets:
        records = run_json(capsys, "--protocol", name, "--preset", preset, *distance_args())
        params = kind.preset(preset)
        per_use = kind.rate_per_use(params, np.array(DISTANCES))
        uses = kind.uses_per_second(params)
        legacy = name in PROTOCOLS  # alone, decoy-BB84 keeps the records of its own table
        eta = (params.transmittance if legacy else params.fibre.transmittance)(np.array(DISTANCES))
        plob = plob_bound(eta)
        assert [r["distance_km"] for r in records] == list(DISTANCES)
        for r, rate, bound in zip(records, per_use, plob, strict=True):
            assert (r["kind"], r["rate_unit"]) == (name, kind.rate_unit)
            assert r["preset" if not legacy else "system"] == preset
            assert r["rate_per_use"] == pytest.approx(rate, rel=1e-12)
            assert r["uses_per_second"] == uses
            assert r["rate_bps"] == pytest.approx(rate * uses, rel=1e-12)
            assert r["units"]["rate_per_use"] == kind.rate_unit
            assert r["units"]["rate_bps"] == "bit/s"
            assert r["units"]["uses_per_second"].endswith("s/s")
            assert r["untrusted_middle"] is kind.untrusted_middle
            assert r.get("changed", []) == []
            if math.isfinite(bound):
                assert r["plob_per_use"] == pytest.approx(bound)
                assert r["rate_per_use"] < r["plob_per_use"]  # short links: below PLOB
            else:
                assert r["plob_per_use"] is None  # 0 km: unbounded, JSON null
        assert records[0]["rate_bps"] > records[-1]["rate_bps"] > 0


def test_cv_rates_per_symbol_and_per_second(capsys: pytest.CaptureFixture[str]) -> None:
    kind = get_kind(CV)
    args = ["--protocol", CV, "--distance", "25", "--param", "symbol_rate_hz=2.5e8"]
    het = run_json(capsys, *args)[0]
    hom = run_json(capsys, *args, "--param", "detector.detection=homodyne")[0]
    assert het["units"] == {
        "rate_per_use": "bit/symbol",
        "uses_per_second": "symbols/s",
        "rate_bps": "bit/s",
        "plob_per_use": "bit/symbol",
        "plob_bps": "bit/s",
        "distance_km": "km",
    }
    assert het["uses_per_second"] == 2.5e8
    assert het["rate_bps"] == pytest.approx(het["rate_per_use"] * 2.5e8)
    expected = kind.from_mapping({"detector.detection": "homodyne", "symbol_rate_hz": 2.5e8})
    assert hom["rate_per_use"] == pytest.approx(float(kind.rate_per_use(expected, 25.0)))
    assert hom["rate_per_use"] != pytest.approx(het["rate_per_use"])
    assert hom["changed"] == ["symbol_rate_hz", "detector.detection"]
    optimised = run_json(capsys, *args, "--param", "modulation_variance=null")[0]
    assert optimised["rate_per_use"] >= het["rate_per_use"] * (1 - 1e-9)


@pytest.mark.parametrize("name", kind_names())
def test_a_worse_detector_lowers_every_kinds_rate(
    capsys: pytest.CaptureFixture[str], name: str
) -> None:
    eff = get_kind(name).preset().detector.efficiency
    base = run_json(capsys, "--protocol", name, "--distance", "30")[0]
    worse = run_json(capsys, "--protocol", name, "--distance", "30", "--efficiency", f"{eff / 2}")
    assert 0 < worse[0]["rate_per_use"] < base["rate_per_use"]
    assert worse[0].get("changed", ["detector.efficiency"]) == ["detector.efficiency"]


def test_params_file_then_param_then_options(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mine = {
        MDI: {"preset": "tang-2014", "detector": {"efficiency": 0.6, "dark_count_prob": "1e-8"}},
        CV: {"detector.detection": "homodyne", "excess_noise": 0.005},
        BB84: {"preset": "toshiba-2018", "detector.dark_count_prob": 8e-8},
    }
    file = tmp_path / "mine.yaml"
    file.write_text(yaml.safe_dump(mine, sort_keys=False))
    records = run_json(capsys, "--params", str(file), "--distance", "40")
    assert [r["kind"] for r in records] == [MDI, CV, BB84]  # the file's kinds, in its order
    by_kind = {r["kind"]: r for r in records}
    mdi_params = get_kind(MDI).from_mapping(
        {"preset": "tang-2014", "detector.efficiency": 0.6, "detector.dark_count_prob": 1e-8}
    )
    assert by_kind[MDI]["preset"] == "tang-2014"
    assert by_kind[MDI]["rate_per_use"] == pytest.approx(
        float(get_kind(MDI).rate_per_use(mdi_params, 40.0))
    )
    bb84 = get_kind(BB84).from_mapping(mine[BB84])
    assert by_kind[BB84]["rate_per_use"] == pytest.approx(
        float(get_kind(BB84).rate_per_use(bb84, 40.0))
    )
    # --param (scoped to one kind) overrides the file; --preset overrides the file's preset
    again = run_json(
        capsys, "--params", str(file), "--protocol", MDI, "--distance", "40",
        "--param", f"{MDI}:detector.efficiency=0.3", "--preset", "lcq-2012",
    )  # fmt: skip
    expected = get_kind(MDI).from_mapping(
        {"preset": "lcq-2012", "detector.efficiency": 0.3, "detector.dark_count_prob": 1e-8}
    )
    assert again[0]["preset"] == "lcq-2012"
    assert again[0]["rate_per_use"] == pytest.approx(
        float(get_kind(MDI).rate_per_use(expected, 40.0))
    )


def test_several_kinds_with_their_own_presets_and_params(
    capsys: pytest.CaptureFixture[str],
) -> None:
    records = run_json(
        capsys, "--protocol", f"{MDI},{SNS},{PM}", "--distance", "100",
        "--preset", "fang-2020", "--preset", f"{MDI}:tang-2014",
        "--param", f"{MDI}:relay_fraction=0.3", "--param", "misalignment=0.02",
    )  # fmt: skip
    got = {r["kind"]: r for r in records}
    assert (got[MDI]["preset"], got[SNS]["preset"], got[PM]["preset"]) == (
        "tang-2014",
        "fang-2020",
        "fang-2020",
    )
    mdi = get_kind(MDI).from_mapping(
        {"preset": "tang-2014", "relay_fraction": 0.3, "misalignment": 0.02}
    )
    assert got[MDI]["rate_per_use"] == pytest.approx(float(get_kind(MDI).rate_per_use(mdi, 100)))
    sns = get_kind(SNS).from_mapping({"preset": "fang-2020", "misalignment": 0.02})
    assert got[SNS]["rate_per_use"] == pytest.approx(float(get_kind(SNS).rate_per_use(sns, 100)))


def test_decoy_bb84_alone_keeps_its_records_and_states_units(
    capsys: pytest.CaptureFixture[str],
) -> None:
    record = run_json(capsys, "--protocol", BB84, "--distance", "20")[0]
    assert {"mu", "gain", "qber", "tgw_per_use"} <= set(record)  # the decoy-BB84 table
    assert record["units"]["rate_per_pulse"] == "bit/pulse"
    assert record["units"]["rate_bps"] == "bit/s"
    finite = run_json(capsys, "--finite-key", "--distance", "20")[0]
    assert finite["units"]["key_per_block"] == "bit"


def test_table_output(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keyrate", "--protocol", f"{PM},{CV}", "--distance", "0", "100"]) == 0
    out = capsys.readouterr().out
    assert "tf-pm: mzz-2018" in out and "cv-gg02: jain-2022" in out
    assert "beats PLOB from 34" in out  # TF-PM (mzz-2018) crosses PLOB at about 342 km
    assert "symbols/s" in out and "pulse pairs/s" in out


def test_help_lists_every_kind_and_its_presets(capsys: pytest.CaptureFixture[str]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "qfl.cli", "keyrate", "--help"],
        capture_output=True, text=True, check=True, env={**os.environ, "COLUMNS": "400"},
    )  # fmt: skip
    text = " ".join(done.stdout.split())
    for name, kind in KINDS.items():
        assert name in text
        for preset in kind.presets:
            assert preset in text, preset
        assert f"{kind.default_preset}*" in text


def test_plot_of_several_kinds(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    png = tmp_path / "kinds.png"
    names = [MDI, SNS, PM, CV]
    assert main(["keyrate", "--protocol", ",".join(names), "--plot", str(png)]) == 0
    assert "wrote" in capsys.readouterr().out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    links = [KindLink(get_kind(n), get_kind(n).default_preset, get_kind(n).preset()) for n in names]
    fig = plot_kinds(links, tmp_path / "again.png")
    ax = fig.axes[0]
    assert ax.get_yscale() == "log"
    assert ax.get_ylabel() == "secret key rate (bit/s)"
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    for link in links:  # each kind with its preset and a source reference
        assert any(t.startswith(f"{link.kind.name}: {link.preset} [") for t in legend)
    assert sum(t.startswith("PLOB bound") for t in legend) == 3  # 1 MHz, 1 GHz, 100 MHz
    cross = crossing_km(links[2], 1000.0)
    assert 300 < cross < 400
    notes = " ".join(t.get_text() for t in ax.texts)
    assert f"{PM} beats PLOB\nfrom {cross:.0f} km" in notes
    assert short_source(get_kind(PM).presets["mzz-2018"].source) in notes
    assert math.isnan(crossing_km(links[3], 1000.0))  # point-to-point CV never beats PLOB


def test_parse_value() -> None:
    assert parse_value("8e-8") == 8e-8
    assert parse_value("false") is False
    assert parse_value("homodyne") == "homodyne"
    assert parse_value("0.5,0.1") == (0.5, 0.1)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            [CV, "--param", "detector.efficiency=1.5"],
            "--param detector.efficiency: must be in (0, 1], got 1.5",
        ),
        ([MDI, "--efficiency", "0"], "--efficiency: must be in (0, 1], got 0.0"),
        ([CV, "--param", "excess_noise=-0.01"], "--param excess_noise: must be >= 0 (SNU), got"),
        (
            [CV, "--param", "detector.electronic_noise=-1"],
            "--param detector.electronic_noise: must be >= 0 (SNU), got -1",
        ),
        (
            [CV, "--param", "modulation_variance=0"],
            "--param modulation_variance: must be in (0, 1e4] (SNU) or None, got 0",
        ),
        ([CV, "--param", "beta=1.2"], "--param beta: must be in (0, 1], got 1.2"),
        (
            [CV, "--param", "detector.detection=balanced"],
            "--param detector.detection: must be one of 'homodyne', 'heterodyne', got 'balanced'",
        ),
        ([CV, "--param", "symbol_rate_hz=0"], "--param symbol_rate_hz: must be > 0, got 0"),
        ([MDI, "--dark-count", "1"], "--dark-count: must be in [0, 1), got 1.0"),
        ([MDI, "--param", "relay_fraction=1.5"], "--param relay_fraction: must be in [0, 1]"),
        (
            [MDI, "--param", "detector.dead_time_s=1e-9"],
            "--param detector.dead_time_s: must be 0 (not modelled for MDI)",
        ),
        ([SNS, "--param", "send_prob=1"], "--param send_prob: must be in (0, 1) or None"),
        ([PM, "--param", "phase_slices=3"], "--param phase_slices: must be an even integer >= 2"),
        (
            [PM, "--param", "fibre.attenuation_db_per_km=-0.2"],
            "--param fibre.attenuation_db_per_km: must be",
        ),
        ([PM, "--param", "gain=2"], "--param gain: must be one of the fields of TwinFieldSystem"),
        ([PM, "--param", "clock_hz"], "--param: must be KEY=VALUE"),
        ([PM, "--preset", "gys-2004"], "--preset: must be one of 'fang-2020', 'mzz-2018'"),
        (
            [f"{MDI},{CV}", "--dark-count", "1e-6"],
            "--dark-count (cv-gg02:detector.dark_count_prob): must be one of the fields of",
        ),
        (
            [f"{MDI},{CV}", "--param", "clock_hz=1e9"],
            "--param cv-gg02:clock_hz: must be one of the fields of CVSystem",
        ),
        ([MDI, "--preset", f"{CV}:jain-2022"], "--preset: must be a KIND: prefix among"),
        ([f"{MDI},{MDI}"], "--protocol: must be each kind once"),
        ([f"{MDI},sarg"], "--protocol: must be one of 'decoy-bb84', 'decoy-vacuum-weak'"),
        ([MDI, "--mu", "0.3"], "--mu: must be left out with link kinds"),
        ([MDI, "--system", "gys-2004"], "--system: must be left out: a decoy-BB84 option"),
        ([MDI, "--finite-key"], "--protocol: must be one of 'decoy-2', 'decoy-1'"),
        ([MDI, "--distance", "-5"], "--distance: must be >= 0 (km) and finite, got -5.0"),
        ([MDI, "--params", "/nonexistent/mine.yaml"], "--params: must be an existing YAML file"),
    ],
)
def test_bad_input_gives_one_line_and_status_2(
    capsys: pytest.CaptureFixture[str], args: list[str], expected: str
) -> None:
    assert expected in fails(capsys, "--protocol", *args)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (
            {CV: {"modulation_variance": 0}},
            "mine.yaml: cv-gg02.modulation_variance: must be in (0, 1e4] (SNU) or None, got 0",
        ),
        (
            {MDI: {"detector": {"efficiency": 2}}},
            "mine.yaml: mdi.detector.efficiency: must be in (0, 1], got 2",
        ),
        ({MDI: {"preset": "nope"}}, "mine.yaml: mdi.preset: must be one of 'lcq-2012'"),
        ({"sarg": {}}, "mine.yaml: sarg: must be one of 'cv-gg02', 'decoy-bb84'"),
        ({MDI: 3}, "mine.yaml: mdi: must be a mapping of parameters, got 3"),
        ([1, 2], "--params: must be a YAML mapping of kind names to their parameters"),
        ({BB84: {"detector": {"efficiency": 0}}}, "mine.yaml: detector.efficiency: must be in"),
    ],
)
def test_bad_params_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: Any, expected: str
) -> None:
    file = tmp_path / "mine.yaml"
    file.write_text(yaml.safe_dump(content))
    assert expected in fails(capsys, "--params", str(file), "--distance", "10")


def test_through_a_subprocess() -> None:
    cmd = [sys.executable, "-m", "qfl.cli", "keyrate", "--protocol", f"{MDI},{CV}", "--json"]
    done = subprocess.run([*cmd, "--distance", "10"], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert [r["kind"] for r in json.loads(done.stdout)] == [MDI, CV]
    bad = subprocess.run(
        [*cmd, "--param", f"{CV}:detector.efficiency=0"], capture_output=True, text=True,
        check=False,
    )  # fmt: skip
    assert bad.returncode == 2
    assert bad.stderr.strip() == (
        "qfl: error: --param cv-gg02:detector.efficiency: must be in (0, 1], got 0.0"
    )
    assert bad.stdout == ""


def test_decoy_bb84_beside_other_kinds_reads_the_systems_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = tmp_path / "systems.yaml"
    systems = {"slow-gys": {"base": "gys-2004", "clock_hz": 1.0e8}}
    file.write_text(yaml.safe_dump({"systems": systems}))
    records = run_json(
        capsys, "--protocol", f"{BB84},{MDI}", "--systems", str(file), "--system", "slow-gys",
        "--distance", "20", "--efficiency", "0.1",
    )  # fmt: skip
    bb84, mdi = records
    assert (bb84["kind"], bb84["preset"], mdi["kind"]) == (BB84, "slow-gys", MDI)
    assert bb84["uses_per_second"] == 1e8
    assert bb84["changed"] == mdi["changed"] == ["detector.efficiency"]
    expected = get_kind(BB84).from_mapping({"source.clock_hz": 1e8, "detector.efficiency": 0.1})
    assert bb84["rate_bps"] == pytest.approx(float(get_kind(BB84).rate_bps(expected, 20.0)))
