"""Unexpected errors: one line and a log, never a bare traceback; absurd hyperparameters are
bad input (issue 20).

A bug or an environment problem inside a command (here injected with ``monkeypatch``) prints
``qfl: error: Type: message (traceback in PATH)`` on stderr, exits 1 like a failed run and
keeps what was computed; ``--debug`` also prints the traceback. Learning hyperparameters have
ranges, so ``learning.lr: 1e308`` is refused by validation (exit 2, one line).
"""

from __future__ import annotations

import contextlib
import io
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from clihelp import run_bad

from qfl.cli import main
from qfl.commands.crash import LOG_NAME

Tiny = Callable[..., dict[str, Any]]
OVERFLOW = "value cannot be converted to type float without overflow"


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = main(args)
    return status, out.getvalue(), capsys.readouterr().err


@pytest.fixture(autouse=True)
def _cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Logs of commands without a folder go under tmp_path, not the real ~/.cache."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    return cache


def scenario_file(tiny: Tiny, tmp_path: Path, text: str | None = None) -> Path:
    path = tmp_path / "tiny.yaml"
    d = tiny({"outputs": {"dir": str(tmp_path / "runs")}})
    for link in d["topology"]["links"]:
        link["skr_bps"] = 1.0e5
    path.write_text(text or yaml.safe_dump(d, sort_keys=False), encoding="utf-8")
    return path


def raise_overflow(*_a: Any, **_k: Any) -> None:
    raise RuntimeError(OVERFLOW)


ONE_LINE = re.compile(r"^qfl: error: RuntimeError: (?P<msg>.*) \(traceback in (?P<log>.+)\)$")


def one_error_line(err: str) -> re.Match[str]:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    match = ONE_LINE.match(lines[0])
    assert match, lines[0]
    return match


# ------------------------------------------------------------------ hyperparameter ranges


@pytest.mark.parametrize("command", ["validate", "simulate"])
def test_absurd_learning_rate_written_in_the_file_is_refused(
    tiny: Tiny, tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    text = yaml.safe_dump(tiny(), sort_keys=False).replace(
        "learning:\n", "learning:\n  lr: 1e308\n"
    )
    assert "lr: 1e308" in text
    f = scenario_file(tiny, tmp_path, text)
    msg = run_bad(capsys, [command, str(f)])
    assert msg.endswith("learning.lr: must be <= 10, got 1e308"), msg
    assert not (tmp_path / "runs").exists()  # refused before anything is written


@pytest.mark.parametrize(
    ("field", "value", "allowed"),
    [
        ("learning.lr", "1e308", "must be <= 10, got 1e+308"),
        ("learning.lr", "0", "must be > 0, got 0"),
        ("learning.momentum", "1", "must be < 1, got 1"),
        ("learning.weight_decay", "5", "must be <= 1, got 5"),
        ("learning.temperature", "1e6", "must be <= 100 or 'adaptive', got 1000000.0"),
        ("learning.gamma", "1e9", "must be <= 100, got 1000000000.0"),
        ("learning.distill_c", "-1", "must be >= 0, got -1"),
        ("learning.alpha", "1e300", "must be <= 1000, got 1e+300"),
        ("learning.batch_size", "1000000", "must be <= 65536, got 1000000"),
        ("learning.local_epochs", "100000", "must be <= 1000, got 100000"),
        ("learning.fusion_epochs", "0", "must be >= 1, got 0"),
        ("learning.width", "100000", "must be <= 1024, got 100000"),
        ("learning.image_size", "100000", "must be <= 1024, got 100000"),
        ("learning.classes_per_client", "5000", "must be <= 1000, got 5000"),
        ("learning.eval_every", "1000000", "must be <= 100000, got 1000000"),
    ],
)
def test_learning_hyperparameters_have_ranges(
    tiny: Tiny,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    field: str,
    value: str,
    allowed: str,
) -> None:
    f = scenario_file(tiny, tmp_path)
    msg = run_bad(capsys, ["simulate", str(f), "--set", f"{field}={value}"])
    assert msg == f"--set {field}: {allowed}", msg


def test_practical_hyperparameters_stay_valid(tiny: Tiny, tmp_path: Path) -> None:
    from qfl.scenario import apply_overrides, parse_scenario

    sc = parse_scenario(yaml.safe_dump(tiny()))
    edge = {"learning.lr": 10, "learning.momentum": 0.99, "learning.weight_decay": 1,
            "learning.batch_size": 4096, "learning.temperature": 20, "learning.alpha": 100,
            "learning.width": 512, "learning.local_epochs": 50}  # fmt: skip
    out = apply_overrides(sc, edge)
    assert out.learning.lr == 10 and out.learning.batch_size == 4096


# ------------------------------------------------------------------ unexpected errors


def test_unexpected_error_in_a_run_is_one_line_with_a_log_in_the_run_folder(
    tiny: Tiny,
    tmp_path: Path,
    fmnist: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("qfl.cosim.run.execute_learning", raise_overflow)
    out = tmp_path / "run"
    status, _, err = run_cli(["simulate", str(scenario_file(tiny, tmp_path)), "--no-plots",
                              "--out", str(out)], capsys)  # fmt: skip
    assert status == 1  # a failed run, as in a sweep with failed points; not bad input (2)
    match = one_error_line(err)
    assert match["msg"] == OVERFLOW
    assert Path(match["log"]) == out / LOG_NAME
    log = (out / LOG_NAME).read_text(encoding="utf-8")
    assert "Traceback (most recent call last)" in log
    assert "raise_overflow" in log and f"RuntimeError: {OVERFLOW}" in log
    assert "qfl simulate" in log.splitlines()[0]  # the command line that failed
    # nothing computed is lost: the network half and the failed status stay
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["status"], summary["error"]) == ("failed", f"RuntimeError: {OVERFLOW}")
    assert (out / "transfers.csv").is_file()
    assert not list((tmp_path / "cache").rglob("*.log"))  # the run folder holds it


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_prints_the_traceback_too(
    tiny: Tiny,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    where: str,
) -> None:
    monkeypatch.setattr("qfl.cosim.run.simulate_network", raise_overflow)  # no data needed
    out = tmp_path / "run"
    args = ["simulate", str(scenario_file(tiny, tmp_path)), "--no-plots", "--out", str(out)]
    args = ["--debug", *args] if where == "before" else [*args, "--debug"]
    status, _, err = run_cli(args, capsys)
    assert status == 1
    assert "Traceback (most recent call last)" in err
    assert "raise_overflow" in err
    last = err.strip().splitlines()[-1]
    assert last == f"qfl: error: RuntimeError: {OVERFLOW} (traceback in {out / LOG_NAME})"
    assert json.loads((out / "summary.json").read_text())["status"] == "failed"
    assert "Traceback" in (out / LOG_NAME).read_text(encoding="utf-8")


def test_without_a_folder_the_log_goes_to_the_cache(
    tiny: Tiny,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    _cache_home: Path,
) -> None:
    monkeypatch.setattr("qfl.commands.validate._check_file", raise_overflow)
    status, _, err = run_cli(["validate", str(scenario_file(tiny, tmp_path))], capsys)
    assert status == 1
    log = Path(one_error_line(err)["log"])
    assert log.parent == _cache_home / "qfl" / "logs"
    assert re.fullmatch(r"qfl-\d{8}T\d{9}Z-\d+\.log", log.name), log.name
    assert "raise_overflow" in log.read_text(encoding="utf-8")


def test_an_unwritable_cache_falls_back_to_the_temporary_folder(
    tiny: Tiny,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("", encoding="utf-8")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocked))
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "tmp"))
    monkeypatch.setattr("qfl.commands.validate._check_file", raise_overflow)
    status, _, err = run_cli(["validate", str(scenario_file(tiny, tmp_path))], capsys)
    assert status == 1
    log = Path(one_error_line(err)["log"])
    assert log.parent == tmp_path / "tmp" / "qfl-logs"
    assert log.is_file()


def test_a_sweep_logs_into_its_folder(
    tiny: Tiny,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("qfl.commands.sweep.run_sweep", raise_overflow)
    out = tmp_path / "sw"
    args = ["sweep", str(scenario_file(tiny, tmp_path)), "--set", "learning.lr=0.01,0.02",
            "--out", str(out), "--executor", "inline", "--no-plots"]  # fmt: skip
    status, _, err = run_cli(args, capsys)
    assert status == 1
    assert Path(one_error_line(err)["log"]) == out / LOG_NAME
    assert "raise_overflow" in (out / LOG_NAME).read_text(encoding="utf-8")


def test_bad_input_raised_inside_a_run_stays_exit_2(
    tiny: Tiny,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from qfl.scenario import ScenarioError

    def refuse(*_a: Any, **_k: Any) -> None:
        raise ScenarioError("learning.lr", "must be small enough for this model, got 9")

    monkeypatch.setattr("qfl.cosim.run.simulate_network", refuse)
    out = tmp_path / "run"
    msg = run_bad(capsys, ["simulate", str(scenario_file(tiny, tmp_path)), "--out", str(out)])
    assert msg == "learning.lr: must be small enough for this model, got 9"
    assert not (out / LOG_NAME).exists()


def test_help_lists_debug(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run_cli(["--help"], capsys)
    assert status == 0
    assert "--debug" in out
