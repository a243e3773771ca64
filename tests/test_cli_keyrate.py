"""``qfl keyrate``: JSON and table output, several values after one ``--distance``, and
one-line errors with exit status 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from qfl.cli import main
from qfl.commands.keyrate import expand_multi_value, rate_curves
from qkd.finite import finite_key, signal_qber
from qkd.params import Detector, Fibre, get_preset
from qkd.rates import gain_and_qber, key_rate_per_pulse, optimal_mu, plob_bound

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
    assert "maximum distance 184.2 km" in out
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
        (["--dead-time", "-1e-9"], "--dead-time (detector.dead_time_s): must be in [0, 1)"),
        (["--afterpulse", "1"], "--afterpulse (detector.afterpulse_prob): must be in [0, 1)"),
        (["--finite-key", "--block-size", "0"], "--block-size: must be > 0 (pulses per block)"),
        (["--finite-key", "--block-size", "-1e9"], "--block-size: must be > 0"),
        (["--finite-key", "--eps-sec", "0"], "--eps-sec: must be in (0, 1), got 0.0"),
        (["--finite-key", "--eps-cor", "1.5"], "--eps-cor: must be in (0, 1), got 1.5"),
        (["--finite-key", "--weakest", "0.2"], "--weakest: must be in [0, 0.1]"),
        (["--finite-key", "--protocol", "decoy-bb84"], "--protocol: must be one of 'decoy-2'"),
        (["--finite-key", "--distance", "-3"], "--distance: must be >= 0 (km) and finite"),
        (["--bogus"], "No such option"),  # click's wording varies: "No such option: --bogus"
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


FINITE_FIELDS = {
    "block_size",
    "key_per_block",
    "block_time_s",
    "intensities",
    "probabilities",
    "key_basis_prob",
    "limit_rate_bps",
    "no_key",
    "qber_mu",
}


@pytest.mark.parametrize("protocol", ["decoy-2", "decoy-1"])
def test_finite_key_json(capsys: pytest.CaptureFixture[str], protocol: str) -> None:
    args = ["keyrate", "--preset", "toshiba-2018", "--finite-key", "--block-size", "1e10"]
    records = run_json(capsys, *args, "--protocol", protocol, "--distance", "0", "10", "50")
    expected = finite_key(get_preset("toshiba-2018"), [0.0, 10.0, 50.0], 1e10, protocol=protocol)
    n_mu = 3 if protocol == "decoy-2" else 2
    for i, r in enumerate(records):
        assert REQUIRED | FINITE_FIELDS <= set(r)
        assert r["protocol"] == protocol and r["block_size"] == 1e10
        assert r["block_time_s"] == pytest.approx(10.0)
        assert r["key_per_block"] == expected.key_per_block[i]
        assert r["rate_bps"] == pytest.approx(expected.rate_bps[i])
        assert len(r["intensities"]) == len(r["probabilities"]) == n_mu  # type: ignore[arg-type]
        assert 0 < r["rate_bps"] < r["limit_rate_bps"]  # type: ignore[operator]
        assert r["no_key"] is None and r["qber_mu"] is None


def test_finite_key_defaults_to_the_presets_block_and_the_table(
    capsys: pytest.CaptureFixture[str],
) -> None:
    record = run_json(capsys, "keyrate", "--preset", "toshiba-2018", "--finite-key", "-d", "10")[0]
    assert record["block_size"] == 2e9 and record["protocol"] == "decoy-2"
    assert main(["keyrate", "--finite-key", "--block-size", "1e12", "-d", "0", "200"]) == 0
    out = capsys.readouterr().out
    assert "gys-2004: finite key, decoy-2" in out
    assert "key/block" in out and "maximum distance" in out


def test_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "rates.png"
    assert main(["keyrate", "--preset", "toshiba-2018", "--plot", str(target)]) == 0
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    out = capsys.readouterr().out
    assert "toshiba-2018: decoy-bb84" in out and "PLOB/use" in out  # the table too
    assert f"wrote {target}" in out
    assert main(["keyrate", "--plot", str(tmp_path / "missing" / "x.png"), "--json"]) == 2
    assert "--plot: must be a writable PNG path" in capsys.readouterr().err


def test_plot_honours_the_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 20 A: each of --distance, --finite-key, --block-size and --protocol changes
    the picture, and the table or JSON is printed as without --plot."""
    base = ["keyrate", "--preset", "gys-2004", "-d", "0", "50", "100"]
    variants = {
        "asym": [],
        "finite": ["--finite-key"],
        "block": ["--finite-key", "--block-size", "1e12"],
        "blocks": ["--finite-key", "--block-size", "1e10", "1e12"],
        "far": ["--finite-key", "--block-size", "1e12", "-d", "140"],
        "decoy1": ["--finite-key", "--block-size", "1e12", "--protocol", "decoy-1"],
        "vacuum": ["--protocol", "decoy-vacuum-weak"],
    }
    digests = {}
    for name, extra in variants.items():
        png = tmp_path / f"{name}.png"
        assert main([*base, *extra, "--plot", str(png)]) == 0
        out = capsys.readouterr().out
        assert ("finite key" in out) == ("--finite-key" in extra)
        assert f"wrote {png}" in out
        digests[name] = png.read_bytes()
    assert len(set(digests.values())) == len(variants)
    assert main([*base, "--finite-key", "--block-size", "1e10", "1e12", "--json", "--plot",
                 str(tmp_path / "j.png")]) == 0  # fmt: skip
    out = capsys.readouterr()
    records = json.loads(out.out)
    assert [(r["block_size"], r["distance_km"]) for r in records] == [
        (n, d) for n in (1e10, 1e12) for d in (0.0, 50.0, 100.0)
    ]
    assert "wrote" in out.err and (tmp_path / "j.png").exists()


@pytest.mark.parametrize(
    ("preset", "protocol"),
    [("gys-2004", "decoy-2"), ("gys-2004", "decoy-1"), ("toshiba-2018", "decoy-2")],
)
def test_finite_curves_lie_below_their_asymptotic_limit(preset: str, protocol: str) -> None:
    """Issue 20 A: on the plotted grid, every finite-key curve <= the N -> infinity limit of
    the same bound <= the infinite-decoy limit <= PLOB, at every distance."""
    system = get_preset(preset)
    d = np.linspace(0.0, 160.0, 81)
    curves = rate_curves(system, d, finite=True, protocol=protocol,
                         block_sizes=(1e8, 1e10, 1e12, 1e14))  # fmt: skip
    *finite, same, ideal, plob = curves
    assert [c.bound for c in curves] == [False] * 4 + [True] * 3
    assert "q_x → 1" in same.label and "q_x → 1" in ideal.label
    for c in finite:
        assert np.all(c.rate_bps <= same.rate_bps * (1 + 1e-6) + 1e-12), c.label
    assert np.all(same.rate_bps <= ideal.rate_bps * (1 + 1e-6) + 1e-12)
    assert np.all(ideal.rate_bps <= plob.rate_bps)
    assert np.all(finite[-1].rate_bps[:40] > 0)  # the comparison is not vacuous
    if preset == "gys-2004" and protocol == "decoy-2":
        # the old picture: the Ma et al. curve with sifting 1/2 lies below N = 1e12, 1e14
        ma = key_rate_per_pulse(system, d) * system.source.clock_hz
        assert np.any(finite[-1].rate_bps > ma) and np.any(finite[-2].rate_bps > ma)


def test_no_key_rows_report_the_real_qber(capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 20 B: where there is no key, the QBER is the one of the system's signal
    intensity (a few %), not the 1/2 of a degenerate optimum, and the reason is given."""
    gys = get_preset("gys-2004")
    args = ["keyrate", "--finite-key", "--block-size", "1e8", "-d", "0", "50", "150"]
    records = run_json(capsys, *args)
    assert records[0]["no_key"] is None and records[0]["key_per_block"] > 0  # type: ignore[operator]
    expected = signal_qber(gys, [50.0, 150.0])
    for r, e in zip(records[1:], expected, strict=True):
        assert r["key_per_block"] == 0 and r["intensities"] == [None] * 3
        assert r["qber"] == pytest.approx(float(e)) and 0.03 < r["qber"] < 0.1  # type: ignore[operator]
        assert r["qber_mu"] == gys.source.mu
    assert str(records[1]["no_key"]).startswith("block too small")
    assert str(records[2]["no_key"]).startswith("beyond the protocol's reach")
    assert main(args) == 0
    table = capsys.readouterr().out
    assert "N too small" in table and "beyond reach" in table and "0.0797*" in table
    assert "0.49" not in table and "0.50" not in table
    asym = run_json(capsys, "keyrate", "-d", "100", "200")
    assert asym[0]["mu"] is not None and asym[1]["mu"] is None
    _, qber = gain_and_qber(gys, 200.0, gys.source.mu)
    assert asym[1]["qber"] == pytest.approx(float(qber)) and asym[1]["qber"] < 0.4  # type: ignore[operator]
