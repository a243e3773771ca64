"""``--threads`` and ``$QFL_THREADS``: resolved, validated, honoured, and the OpenMP wait
policy set before torch loads (``qfl.threads``)."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

import qfl.cosim
import qfl.cosim.executors
from qfl.cli import main
from qfl.cosim.executors import workers_for
from qfl.scenario import ScenarioError
from qfl.threads import (
    ENV,
    default_threads,
    parse_threads,
    prepare_env,
    resolve_threads,
    threads_env,
    usable_cores,
    using_threads,
)

REPO = Path(__file__).resolve().parents[1]
ALLOWED = "must be an integer from 1 to 1024"


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = main(args)
    return status, out.getvalue(), capsys.readouterr().err


def test_resolution_order() -> None:
    assert resolve_threads(None, {}) == (default_threads(), "default")
    assert resolve_threads(None, {ENV: " "}) == (default_threads(), "default")
    assert resolve_threads(None, {ENV: "3"}) == (3, ENV)
    assert resolve_threads(2, {ENV: "3"}) == (2, "--threads")
    assert parse_threads("+4", ENV) == 4


@pytest.mark.parametrize("bad", ["0", "-1", "abc", "1.5", "2x", "1025", ""])
def test_bad_values_name_the_variable(bad: str) -> None:
    with pytest.raises(ScenarioError) as err:
        parse_threads(bad, ENV)
    assert str(err.value) == f"{ENV}: must be an integer from 1 to 1024, got {bad!r}"


def test_using_threads_restores() -> None:
    before = torch.get_num_threads()
    with using_threads(2) as n:
        assert n == torch.get_num_threads() == 2
    assert torch.get_num_threads() == before


def test_threads_env_restores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV, raising=False)
    with threads_env(3):
        assert os.environ[ENV] == "3"
    assert ENV not in os.environ
    monkeypatch.setenv(ENV, "2")
    with threads_env(5):
        assert resolve_threads() == (5, ENV)
    assert os.environ[ENV] == "2"


def test_workers_fit_the_cores() -> None:
    cores = usable_cores()
    assert workers_for(10, None, 1) == min(10, cores)
    assert workers_for(10, 3, 4) == 3
    assert workers_for(1, 8, 1) == 1
    assert workers_for(10, None, cores * 2) == 1


def test_prepare_env_keeps_a_user_setting() -> None:
    env: dict[str, str] = {}
    prepare_env(env)  # type: ignore[arg-type]
    assert env == {"OMP_WAIT_POLICY": "PASSIVE"}
    env = {"OMP_WAIT_POLICY": "ACTIVE"}
    prepare_env(env)  # type: ignore[arg-type]
    assert env == {"OMP_WAIT_POLICY": "ACTIVE"}


def test_wait_policy_set_before_torch_loads() -> None:
    code = (
        "import os, sys; import qfl.cli; "
        "print(os.environ.get('OMP_WAIT_POLICY'), 'torch' in sys.modules)"
    )
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["PASSIVE", "True"]


@pytest.mark.parametrize("command", ["simulate", "sweep"])
@pytest.mark.parametrize(
    ("args", "env", "want"),
    [
        (["--threads", "0"], None, f"qfl: error: --threads: {ALLOWED}, got '0'"),
        (["--threads", "-2"], None, f"qfl: error: --threads: {ALLOWED}, got '-2'"),
        ([], "abc", f"qfl: error: {ENV}: {ALLOWED}, got 'abc'"),
        ([], "0", f"qfl: error: {ENV}: {ALLOWED}, got '0'"),
    ],
)  # fmt: skip
def test_bad_thread_counts_exit_2(
    command: str,
    args: list[str],
    env: str | None,
    want: str,
    write_scenario: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    if env is None:
        monkeypatch.delenv(ENV, raising=False)
    else:
        monkeypatch.setenv(ENV, env)
    scen = write_scenario()
    extra = ["--set", "qkd.rate_scale=0.5,1"] if command == "sweep" else []
    out = tmp_path / "out"
    status, _, err = run_cli([command, str(scen), *extra, *args, "--out", str(out)], capsys)
    assert status == 2
    assert err.strip() == want
    assert not out.exists()  # reported before any work


def test_bad_option_type_exits_2(write_scenario: Any, capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run_cli(["simulate", str(write_scenario()), "--threads", "abc"], capsys)
    assert status == 2
    assert err.strip() == f"qfl: error: --threads: {ALLOWED}, got 'abc'"


@pytest.mark.parametrize(("args", "env", "want"), [(["--threads", "2"], "1", 2), ([], "2", 2)])
def test_simulate_runs_on_the_threads_asked(
    args: list[str],
    env: str,
    want: int,
    write_scenario: Any,
    fmnist: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv(ENV, env)
    seen: list[int] = []
    real = qfl.cosim.run_scenario

    def spy(*a: Any, **k: Any) -> Any:
        seen.append(torch.get_num_threads())
        return real(*a, **k)

    monkeypatch.setattr(qfl.cosim, "run_scenario", spy)
    before = torch.get_num_threads()
    status, out, err = run_cli(["simulate", str(write_scenario()), *args, "--out",
                                str(tmp_path / "run")], capsys)  # fmt: skip
    assert status == 0, out + err
    assert seen == [want]
    assert torch.get_num_threads() == before  # restored after the command


def test_sweep_tasks_run_on_the_threads_asked(
    write_scenario: Any,
    fmnist: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv(ENV, raising=False)
    seen: list[int] = []
    real = qfl.cosim.executors.learn

    def spy(s: str, t: dict[str, Any], e: list[int], threads: int) -> Any:
        seen.append(torch.get_num_threads())
        return real(s, t, e, threads)

    monkeypatch.setattr(qfl.cosim.executors, "learn", spy)
    # different seeds: two learning tasks, run inline (in this process)
    args = ["sweep", str(write_scenario()), "--set", "seed=1,2", "--executor", "inline",
            "--threads", "2", "--no-plots", "--out", str(tmp_path / "sweep")]  # fmt: skip
    status, out, err = run_cli(args, capsys)
    assert status == 0, out + err
    assert seen == [2, 2]
    assert ENV not in os.environ
