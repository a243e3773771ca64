"""``qfl keyrate``: JSON and table output, several values after one ``--distance``, and
one-line errors with exit status 2."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from qfl.cli import main
from qfl.commands.keyrate import expand_multi_value
from qkd.params import Detector, Fibre, get_preset
from qkd.rates import key_rate_per_pulse, optimal_mu, plob_bound

REQUIRED = {"distance_km", "mu", "rate_per_pulse", "rate_bps", "plob_per_use"}
EXAMPLE = ["keyrate", "--preset", "gys-2004", "--protocol", "decoy-bb84"]


def run_json(capsys: pytest.CaptureFixture[str], *args: str) -> list[dict[str, object]]:
    assert main([*args, "--json"]) == 0
    out = capsys.readouterr()
    assert out.err == ""
    records = json.loads(out.out)
    assert isinstance(records, list)
    return records


def test_the_documented_invocation(capsys: pytest.CaptureFixture[str]) -> None:
    records = run_json(capsys, *EXAMPLE, "--distance", "0", "25", "50", "100")
    assert [r["distance_km"] for r in records] == [0.0, 25.0, 50.0, 100.0]
    gys = get_preset("gys-2004")
    lengths = np.array([0.0, 25.0, 50.0, 100.0])
    expected = key_rate_per_pulse(gys, lengths, "decoy-bb84")
    plob = plob_bound(gys.transmittance(lengths))
    for r, rate, mu, bound in zip(records, expected, optimal_mu(gys, lengths), plob, strict=True):
        assert REQUIRED | {"protocol", "gain", "qber"} <= set(r)
        assert r["protocol"] == "decoy-bb84"
        assert r["rate_per_pulse"] == pytest.approx(rate)
        assert r["rate_bps"] == pytest.approx(rate * 2e6)
        assert r["mu"] == pytest.approx(mu)
        assert r["plob_per_use"] == pytest.approx(bound)
        assert 0 < r["rate_per_pulse"] < r["plob_per_use"]  # type: ignore[operator]
    rates = [float(r["rate_per_pulse"]) for r in records]  # type: ignore[arg-type]
    assert rates == sorted(rates, reverse=True)


@pytest.mark.parametrize(
    "distance_args",
    [
        ["--distance", "0", "--distance", "25"],
        ["-d", "0", "25"],
        ["--distance=0", "25"],
        ["--distance", "0", "--json", "--distance", "25"],
    ],
)
def test_distance_forms(capsys: pytest.CaptureFixture[str], distance_args: list[str]) -> None:
    records = run_json(capsys, *EXAMPLE, *distance_args)
    assert [r["distance_km"] for r in records] == [0.0, 25.0]


def test_expand_multi_value() -> None:
    flags = ("--distance", "-d")
    assert expand_multi_value(["-d", "1", "2e1", "--json"], flags) == [
        "-d",
        "1",
        "-d",
        "2e1",
        "--json",
    ]
    # The first value is always taken (so that click reports a bad one).
    assert expand_multi_value(["--distance", "x", "1"], flags) == [
        "--distance",
        "x",
        "--distance",
        "1",
    ]
    assert expand_multi_value(["--", "--distance", "1", "2"], flags) == [
        "--",
        "--distance",
        "1",
        "2",
    ]


def test_overrides_change_the_result(capsys: pytest.CaptureFixture[str]) -> None:
    base = run_json(capsys, *EXAMPLE, "--distance", "20")[0]
    faster = run_json(capsys, *EXAMPLE, "--distance", "20", "--clock-hz", "4e6")[0]
    assert faster["rate_bps"] == pytest.approx(2 * base["rate_bps"])  # type: ignore[operator]
    better = run_json(capsys, *EXAMPLE, "--distance", "20", "--efficiency", "0.1")[0]
    assert better["rate_per_pulse"] > base["rate_per_pulse"]  # type: ignore[operator]
    fixed = run_json(capsys, *EXAMPLE, "--distance", "20", "--mu", "0.3")[0]
    assert fixed["mu"] == 0.3
    noisy = run_json(
        capsys,
        *EXAMPLE,
        "--distance",
        "20",
        "--misalignment",
        "0.05",
        "--f-ec",
        "1.5",
        "--sifting",
        "0.4",
        "--dark-count",
        "1e-5",
        "--attenuation",
        "0.25",
    )[0]
    system = get_preset("gys-2004").replace(misalignment=0.05, f_ec=1.5, sifting=0.4)
    system = system.replace(detector=Detector(0.045, 1e-5), fibre=Fibre(0.25))
    assert noisy["rate_per_pulse"] == pytest.approx(float(key_rate_per_pulse(system, 20.0)))


@pytest.mark.parametrize("protocol", ["decoy-vacuum-weak", "bb84-no-decoy", "single-photon"])
def test_other_protocols(capsys: pytest.CaptureFixture[str], protocol: str) -> None:
    records = run_json(capsys, "keyrate", "--protocol", protocol, "--distance", "0", "30")
    assert all(r["protocol"] == protocol for r in records)
    if protocol == "single-photon":
        assert all(r["mu"] == 1.0 for r in records)
    assert records[0]["rate_per_pulse"] > 0  # type: ignore[operator]


def test_table_output(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keyrate", "--preset", "toshiba-2018", "--distance", "0", "10"]) == 0
    out = capsys.readouterr().out
    assert "toshiba-2018: decoy-bb84" in out
    assert "maximum distance 186.6 km" in out
    assert "PLOB/use" in out


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--distance", "0", "-5"], "--distance: must be >= 0 (km) and finite, got -5.0"),
        (["--efficiency", "1.5"], "--efficiency (detector.efficiency): must be in (0, 1], got 1.5"),
        (["--efficiency", "0"], "--efficiency (detector.efficiency): must be in (0, 1], got 0.0"),
        (["--misalignment", "0.6"], "--misalignment: must be in [0, 0.5], got 0.6"),
        (["--f-ec", "0.9"], "--f-ec: must be >= 1, got 0.9"),
        (["--preset", "gys"], "--preset: must be one of 'gys-2004', 'toshiba-2018', got 'gys'"),
        (["--protocol", "bb84"], "--protocol: must be one of 'decoy-bb84', 'decoy-vacuum-weak'"),
        (["--mu", "-1"], "--mu: must be > 0 and finite, got -1.0"),
        (["--dark-count", "1"], "--dark-count (detector.dark_count_prob): must be in [0, 1)"),
        (["--sifting", "0"], "--sifting: must be in (0, 1], got 0.0"),
        (["--distance", "abc"], "Invalid value for '--distance'"),
        (["--bogus"], "No such option: --bogus"),
    ],
)
def test_bad_values_give_one_line_and_status_2(
    capsys: pytest.CaptureFixture[str], args: list[str], expected: str
) -> None:
    assert main(["keyrate", *args, "--json"]) == 2
    out = capsys.readouterr()
    assert out.out == ""
    lines = out.err.strip().splitlines()
    assert len(lines) == 1, out.err
    assert lines[0].startswith("qfl: error: ")
    assert expected in lines[0]
    assert "Traceback" not in out.err


def test_through_a_subprocess() -> None:
    cmd = [sys.executable, "-m", "qfl.cli", *EXAMPLE, "--distance", "0", "25", "50", "100"]
    done = subprocess.run([*cmd, "--json"], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert [r["distance_km"] for r in json.loads(done.stdout)] == [0.0, 25.0, 50.0, 100.0]
    bad = subprocess.run(
        [*cmd, "--misalignment", "0.7"], capture_output=True, text=True, check=False
    )
    assert bad.returncode == 2
    assert bad.stderr.strip() == "qfl: error: --misalignment: must be in [0, 0.5], got 0.7"
    assert bad.stdout == ""
