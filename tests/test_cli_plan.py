"""``qfl plan threshold|contingency|upgrade`` end to end on the tiny scenario, and their
bad-input errors (exit 2, one line naming the option, the value and what is allowed)."""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from clihelp import run_bad

from qfl.cli import main

Writer = Callable[..., Path]
PATCH: dict[str, Any] = {"cipher": {"policy": "otp"}, "learning": {"rounds": 2}, "horizon_s": 25.0}


def scenario(write_scenario: Writer) -> Path:
    """The tiny scenario, its ``outputs.dir`` in the test's own folder (never the checkout)."""
    import yaml
    from conftest import TINY, merge

    d = merge(TINY, PATCH)
    for link in d["topology"]["links"]:
        link["skr_bps"] = 1.0e5
    path = write_scenario(text="{}")
    d["outputs"]["dir"] = str(path.parent / "runs")
    path.write_text(yaml.safe_dump(d, sort_keys=False), encoding="utf-8")
    return path


def run_cli(args: list[str]) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = main(args)
    return status, out.getvalue()


def test_threshold_end_to_end(write_scenario: Writer, tmp_path: Path, fmnist: Path) -> None:
    sc = scenario(write_scenario)
    out = tmp_path / "thr"
    args = ["plan", "threshold", str(sc), "--target", "0.05", "--within", "25s",
            "--vary", "qkd.rate_scale", "--executor", "inline", "-o", str(out)]  # fmt: skip
    status, text = run_cli(args)
    assert status == 0, text
    plan = json.loads((out / "plan.json").read_text())
    assert text.strip().splitlines()[-1] == f"answer: {plan['answer']}"
    assert plan["bracket"]["fails_at"] < plan["bracket"]["holds_at"]
    assert (out / "threshold.png").is_file() and (out / "plan.csv").is_file()
    # an interrupted study resumes: the same answer, no point run again
    status, again = run_cli([*args, "--resume"])
    assert status == 0 and json.loads((out / "plan.json").read_text())["answer"] == plan["answer"]
    assert "0 learning execution(s)" in again


def test_contingency_and_upgrade_end_to_end(
    write_scenario: Writer, tmp_path: Path, fmnist: Path
) -> None:
    sc = scenario(write_scenario)
    status, text = run_cli(["plan", "contingency", str(sc), "--executor", "inline",
                            "-o", str(tmp_path / "c")])  # fmt: skip
    assert status == 0, text
    assert "answer: worst: " in text and (tmp_path / "c" / "contingency.png").is_file()
    rows = json.loads((tmp_path / "c" / "plan.json").read_text())["rows"]
    assert len(rows) == 6  # intact + 4 link cuts + the relay
    status, text = run_cli(["plan", "upgrade", str(sc), "--executor", "inline",
                            "--within", "1h", "-o", str(tmp_path / "u")])  # fmt: skip
    assert status == 0, text
    assert "answers needing the learning half:" in text
    assert (tmp_path / "u" / "upgrade.png").is_file()


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--vary", "qkd.nope"], "--vary: 'qkd.nope' names no scenario field"),
        (["--vary", "learning.lr"], "not a knob with a monotone effect"),
        (["--vary", "cipher.policy"], "--vary: 'cipher.policy' is not a knob"),
        (["--vary", "qkd.rate_scale", "--target", "1.5"], "--target: must be an accuracy in"),
        (["--vary", "qkd.rate_scale", "--within", "0"], "--within: must be a duration > 0"),
        (["--vary", "qkd.rate_scale", "--within", "soon"], "--within: must be a duration like"),
        (["--vary", "qkd.rate_scale", "--range", "5,1"], "--range: must be LO,HI"),
        (["--vary", "topology.links[0].length_km"], "add --maximize"),
    ],
)
def test_threshold_bad_input(
    capsys: pytest.CaptureFixture[str], write_scenario: Writer, extra: list[str], needle: str
) -> None:
    sc = scenario(write_scenario)
    base = {"--target": "0.5", "--within": "1h"}
    for i in range(0, len(extra), 2):
        base[extra[i]] = extra[i + 1]
    args = ["plan", "threshold", str(sc)] + [x for kv in base.items() for x in kv]
    assert needle in run_bad(capsys, args)


@pytest.mark.parametrize(
    "extra",
    [
        ["--vary", "topology.links[0].length_km"],  # more is worse: needs --maximize
        ["--vary", "qkd.rate_scale", "--maximize"],
        ["--vary", "topology.links[9].skr_bps"],
        ["--vary", "qkd.misalignment", "--maximize", "--range", "0.1,0.9"],  # 0.9 > 0.5
    ],
)
def test_refused_threshold_leaves_no_folder(
    capsys: pytest.CaptureFixture[str], write_scenario: Writer, extra: list[str]
) -> None:
    sc = scenario(write_scenario)
    runs = sc.parent / "runs"
    args = ["plan", "threshold", str(sc), "--target", "0.5", "--within", "1h", *extra]
    run_bad(capsys, args)
    assert not runs.exists() or not any(runs.iterdir()), sorted(runs.rglob("*"))
    out = sc.parent / "study"
    run_bad(capsys, [*args, "-o", str(out)])
    assert not out.exists()


def test_refused_study_removes_its_empty_folder(tmp_path: Path) -> None:
    from qfl.commands.plan import _run
    from qfl.scenario import ScenarioError

    folder = tmp_path / "study"
    (folder / "points").mkdir(parents=True)

    def refuse() -> None:
        raise ScenarioError("--vary", "refused")

    with pytest.raises(ScenarioError):
        _run(refuse, None, folder)
    assert not folder.exists()
    (folder / "points" / "000-x").mkdir(parents=True)  # a finished point is kept
    with pytest.raises(ScenarioError):
        _run(refuse, None, folder)
    assert (folder / "points" / "000-x").is_dir()


def test_contingency_bad_input(capsys: pytest.CaptureFixture[str], write_scenario: Writer) -> None:
    sc = str(scenario(write_scenario))
    assert "--k: 3 failures at once" in run_bad(capsys, ["plan", "contingency", sc, "--k", "3"])
    assert "--k: must be 1 or 2" in run_bad(capsys, ["plan", "contingency", sc, "--k", "0"])
    assert "--at: must be a duration" in run_bad(capsys, ["plan", "contingency", sc, "--at", "x"])
    assert "--factor: must be a positive" in run_bad(
        capsys, ["plan", "upgrade", sc, "--factor", "-2"]
    )
