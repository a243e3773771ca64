"""Nothing lost, nothing silently wrong: run and sweep folders under failures and signals.

Each test drives the CLI (in this process, or as a real process where a signal or a second
concurrent run is the point) on the tiny scenario of ``conftest.py``.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

import qfl.cosim.executors
from qfl.cli import main
from qfl.cosim.run import run_scenario
from qfl.scenario import Scenario

Tiny = Callable[..., dict[str, Any]]
REPO = Path(__file__).resolve().parents[1]


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = main(args)
    return status, out.getvalue(), capsys.readouterr().err


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def otp_tiny(tiny: Tiny, tmp_path: Path, **patch: Any) -> Path:
    d = tiny({"cipher": {"policy": "otp"}, "outputs": {"dir": str(tmp_path / "runs")}, **patch})
    for link in d["topology"]["links"]:
        link["skr_bps"] = 1.0e5
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(d, sort_keys=False), encoding="utf-8")
    return path


def qfl_process(*args: str, cwd: Path) -> subprocess.Popen[str]:
    env = dict(os.environ, MPLBACKEND="Agg")
    return subprocess.Popen(
        [sys.executable, "-m", "qfl.cli", *args], cwd=cwd, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip


# --------------------------------------------------------------------------- run folders


def test_a_crashed_run_is_recorded_as_failed(
    tiny: Tiny, tmp_path: Path, fmnist: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(*_a: Any, **_k: Any) -> None:
        raise RuntimeError("out of memory\nin round 1")

    monkeypatch.setattr("qfl.cosim.run.execute_learning", boom)
    sc = Scenario.model_validate(tiny())
    with pytest.raises(RuntimeError):
        run_scenario(sc, tmp_path / "run")
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "failed"
    assert summary["error"] == "RuntimeError: out of memory in round 1"
    assert (tmp_path / "run" / "transfers.csv").is_file()  # the network half is kept


def test_a_run_failing_in_its_network_half_is_recorded(
    tiny: Tiny, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(*_a: Any, **_k: Any) -> None:
        raise ValueError("bad topology")

    monkeypatch.setattr("qfl.cosim.run.simulate_network", boom)
    with pytest.raises(ValueError):
        run_scenario(Scenario.model_validate(tiny()), tmp_path / "run")
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert (summary["status"], summary["error"]) == ("failed", "ValueError: bad topology")


def test_two_runs_started_at_once_get_two_folders(tiny: Tiny, tmp_path: Path, fmnist: Path) -> None:
    scen = otp_tiny(tiny, tmp_path)
    procs = [qfl_process("simulate", str(scen), "--no-plots", cwd=tmp_path) for _ in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=240)
        assert p.returncode == 0, err
    folders = sorted((tmp_path / "runs").iterdir())
    assert [f.name for f in folders] == ["tiny", "tiny-2"]
    for f in folders:
        assert json.loads((f / "summary.json").read_text())["status"] == "complete"


def test_sigterm_is_handled_like_ctrl_c(tiny: Tiny, tmp_path: Path, fmnist: Path) -> None:
    scen = otp_tiny(tiny, tmp_path, learning={"rounds": 400, "eval_every": 1})
    out = tmp_path / "run"
    proc = qfl_process("simulate", str(scen), "--no-plots", "--out", str(out), cwd=tmp_path)
    metrics = out / "metrics.csv"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and (not metrics.is_file() or len(rows(metrics)) < 4):
        time.sleep(0.2)
    assert metrics.is_file(), proc.communicate(timeout=5)
    proc.send_signal(signal.SIGTERM)
    stdout, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert "interrupted" in stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "interrupted"
    assert 1 <= summary["rounds_evaluated"] < 400


@pytest.mark.parametrize(
    ("name", "where"),
    [("..", "name"), (".", "name"), ("a/b", "name"), ("../escape", "name")],
)
def test_names_are_single_folder_names(
    tiny: Tiny, tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, where: str
) -> None:
    scen = tmp_path / "s.yaml"
    scen.write_text(yaml.safe_dump(tiny({"name": name})), encoding="utf-8")
    status, _, err = run_cli(["simulate", str(scen)], capsys)
    assert status == 2
    assert err.startswith(f"qfl: error: {where}: must be one folder name"), err
    assert err.count("\n") == 1
    sweep = tmp_path / "sw.yaml"
    sweep.write_text(
        yaml.safe_dump({"scenario": "ok.yaml", "name": name, "grid": {"qkd.rate_scale": [1]}})
    )
    (tmp_path / "ok.yaml").write_text(yaml.safe_dump(tiny()), encoding="utf-8")
    status, _, err = run_cli(["sweep", str(sweep)], capsys)
    assert status == 2 and "sw.yaml: name: must be one folder name" in err, err


@pytest.mark.parametrize("kind", ["file", "readonly"])
def test_out_must_be_a_writable_folder_checked_before_any_work(
    tiny: Tiny,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    kind: str,
) -> None:
    scen = otp_tiny(tiny, tmp_path)
    target = tmp_path / "target"
    if kind == "file":
        target.write_text("x")
        out = target
    else:
        if os.geteuid() == 0:
            pytest.skip("root can write into a read-only folder (reason printed by pytest -rs)")
        target.mkdir(mode=0o555)
        out = target / "run"

    def never(*_a: Any, **_k: Any) -> None:
        raise AssertionError("the network half ran before --out was checked")

    monkeypatch.setattr("qfl.cosim.run.simulate_network", never)
    status, _, err = run_cli(["simulate", str(scen), "--out", str(out)], capsys)
    assert status == 2 and err.startswith("qfl: error: --out: "), err


# -------------------------------------------------------------------------------- sweeps


def test_a_failing_point_is_recorded_and_the_others_go_on(
    tiny: Tiny,
    tmp_path: Path,
    fmnist: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    scen = otp_tiny(tiny, tmp_path)
    real = qfl.cosim.executors.learn

    def flaky(scenario_json: str, *a: Any) -> Any:
        if json.loads(scenario_json)["learning"]["lr"] == 0.02:
            raise RuntimeError("worker crashed")
        return real(scenario_json, *a)

    monkeypatch.setattr(qfl.cosim.executors, "learn", flaky)
    out = tmp_path / "sw"
    args = ["sweep", str(scen), "--set", "learning.lr=0.01,0.02", "--set",
            "qkd.pool_capacity_bits=1.0e+9,100", "--out", str(out), "--executor", "inline",
            "--no-plots"]  # fmt: skip
    status, stdout, _ = run_cli(args, capsys)
    assert status == 1, stdout
    assert "points failed" in stdout
    table = {
        (float(r["learning.lr"]), float(r["qkd.pool_capacity_bits"])): r
        for r in rows(out / "sweep.csv")
    }
    assert len(table) == 4
    ok = table[(0.01, 1e9)]
    assert ok["status"] == "complete" and ok["error"] == "" and float(ok["final_global_acc"]) > 0
    crashed = table[(0.02, 1e9)]
    assert (crashed["status"], crashed["error"]) == ("failed", "RuntimeError: worker crashed")
    small = table[(0.01, 100.0)]  # the network half rejects it: a pool smaller than a message
    assert small["status"] == "failed" and "qkd.pool_capacity_bits" in small["error"]
    for r in table.values():
        summary = json.loads((out / "points" / r["slug"] / "summary.json").read_text())
        assert summary["status"] == r["status"]
    # --resume reruns exactly the failed points
    monkeypatch.setattr(qfl.cosim.executors, "learn", real)
    seen: list[str] = []
    monkeypatch.setattr(qfl.cosim.executors, "learn", lambda s, *a: seen.append(s) or real(s, *a))
    status, stdout, _ = run_cli([*args, "--resume"], capsys)
    assert status == 1  # the too-small pool still fails
    assert len(seen) == 1 and json.loads(seen[0])["learning"]["lr"] == 0.02
    after = {r["slug"]: r for r in rows(out / "sweep.csv")}
    assert after[crashed["slug"]]["status"] == "complete"
    assert after[ok["slug"]]["resumed"] == "True"


def test_an_interrupted_sweep_keeps_its_finished_points(
    tiny: Tiny,
    tmp_path: Path,
    fmnist: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    scen = otp_tiny(tiny, tmp_path)
    real = qfl.cosim.executors.learn
    calls: list[str] = []

    def interrupted_second(scenario_json: str, *a: Any) -> Any:
        calls.append(scenario_json)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(scenario_json, *a)

    monkeypatch.setattr(qfl.cosim.executors, "learn", interrupted_second)
    out = tmp_path / "sw"
    args = ["sweep", str(scen), "--set", "learning.lr=0.01,0.02,0.03", "--out", str(out),
            "--executor", "inline", "--no-plots"]  # fmt: skip
    status, stdout, _ = run_cli(args, capsys)
    assert status == 130 and "rerun with --resume" in stdout
    (first,) = rows(out / "sweep.csv")
    assert first["status"] == "complete"
    assert not [p for p in (out / "points").iterdir() if p.name.startswith(".")]  # no debris
    # without --resume the folder is refused; with it only the two others run
    status, _, err = run_cli(args, capsys)
    assert status == 2 and "add --resume" in err
    monkeypatch.setattr(qfl.cosim.executors, "learn", lambda s, *a: calls.append(s) or real(s, *a))
    calls.clear()
    status, _, _ = run_cli([*args, "--resume"], capsys)
    assert status == 0 and len(calls) == 2
    assert [r["status"] for r in rows(out / "sweep.csv")] == ["complete"] * 3


def test_resume_without_out_takes_the_latest_folder_of_that_sweep(
    tiny: Tiny,
    tmp_path: Path,
    fmnist: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    scen = otp_tiny(tiny, tmp_path)
    args = ["sweep", str(scen), "--set", "learning.lr=0.01,0.02", "--executor", "inline",
            "--no-plots"]  # fmt: skip
    status, _, err = run_cli([*args, "--resume"], capsys)
    assert status == 2 and "no earlier sweep 'tiny-sweep' with this grid" in err, err
    assert run_cli(args, capsys)[0] == 0
    assert run_cli(args, capsys)[0] == 0  # a second sweep: a new folder, nothing overwritten
    runs = tmp_path / "runs"
    assert sorted(p.name for p in runs.iterdir()) == ["tiny-sweep", "tiny-sweep-2"]
    status, stdout, _ = run_cli([*args, "--resume"], capsys)
    assert status == 0 and "tiny-sweep-2" in stdout
    other = ["sweep", str(scen), "--set", "learning.lr=0.5", "--resume", "--executor", "inline"]
    status, _, err = run_cli(other, capsys)
    assert status == 2 and "tiny-sweep, " in err and "tiny-sweep-2" in err, err


def _children(pid: int) -> set[int]:
    out = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                out.add(int(stat.parent.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc (Linux)")
def test_no_worker_outlives_a_killed_sweep(tiny: Tiny, tmp_path: Path, fmnist: Path) -> None:
    scen = otp_tiny(tiny, tmp_path, learning={"rounds": 300})
    args = ["sweep", str(scen), "--set", "learning.lr=0.01,0.02", "--executor", "local",
            "--jobs", "2", "--no-plots", "--out", str(tmp_path / "sw")]  # fmt: skip
    proc = qfl_process(*args, cwd=tmp_path)
    workers: set[int] = set()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(workers) < 2:
        time.sleep(0.5)
        workers = {w for w in _children(proc.pid) if "spawn" in _cmdline(w)}
    assert len(workers) == 2, "the sweep never started its two workers"
    proc.kill()
    proc.wait(timeout=30)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(_alive(w) for w in workers):
        time.sleep(0.2)
    assert not [w for w in workers if _alive(w)]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def test_quick_without_a_quick_section_reduces_and_says_so(
    tiny: Tiny, tmp_path: Path, fmnist: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scen = otp_tiny(tiny, tmp_path, learning={"rounds": 40, "samples_per_client": 1000})
    out = tmp_path / "run"
    status, stdout, _ = run_cli(
        ["simulate", str(scen), "--quick", "--no-plots", "--out", str(out)], capsys
    )
    assert status == 0
    assert "--quick: learning.rounds: 40 -> 3; learning.samples_per_client: 1000 -> 300" in stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rounds_planned"] == 3
