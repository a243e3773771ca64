"""``qfl report`` end to end: a reduced metro run (``qfl simulate``), then its report; and
the command's one-line errors (exit status 2)."""

from __future__ import annotations

import contextlib
import io
import sys
from pathlib import Path

import pytest
from clihelp import run_bad

from qfl.cli import main

REPO = Path(__file__).resolve().parents[1]
METRO = REPO / "scenarios" / "metro.yaml"
REDUCE = [
    "--quick",
    "--set", "learning.rounds=2",
    "--set", "learning.samples_per_client=50",
    "--set", "learning.test_samples=200",
    "--set", "learning.engine=sequential",
    "--set", "learning.clients=[hospital, bank, clinic]",
    "--no-plots",
]  # fmt: skip


def run_cli(args: list[str]) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = main(args)
    return status, out.getvalue()


@pytest.fixture(scope="module")
def metro_run(tmp_path_factory: pytest.TempPathFactory, fmnist: Path) -> Path:
    folder = tmp_path_factory.mktemp("report") / "run"
    status, out = run_cli(["simulate", str(METRO), *REDUCE, "--out", str(folder)])
    assert status == 0, out
    return folder


def test_report_of_a_run(metro_run: Path, tmp_path: Path) -> None:
    status, out = run_cli(["report", str(metro_run)])
    assert status == 0, out
    page = metro_run / "report.html"
    assert f"report: {page}" in out and "opens offline" in out
    text = page.read_text(encoding="utf-8")
    for section in ("Run summary", "Topology", "Accuracy over simulated time",
                    "Key pool level of each link", "Bottlenecks", "Scenario"):  # fmt: skip
        assert section in text, section
    assert "Metro network (10 nodes, 3 trusted relays)" in text  # the scenario's description
    assert "hospital-north" in text  # a link of the run, in the per-link table
    assert text.count("Plotly.newPlot(") == 5
    # --out elsewhere: the same page
    other = tmp_path / "metro.html"
    status, out = run_cli(["report", str(metro_run), "--out", str(other)])
    assert status == 0, out
    assert other.read_text(encoding="utf-8") == text


def test_report_errors_are_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    msg = run_bad(capsys, ["report", str(empty)])
    assert msg.startswith(f"{empty}: not a run, sweep or plan folder")
    (empty / "summary.json").write_text("{not json")
    (empty / "metrics.csv").write_text("sim_time_s,node,global_acc\n")
    msg = run_bad(capsys, ["report", str(empty)])
    assert msg.startswith(f"{empty / 'summary.json'}: malformed JSON")
    msg = run_bad(capsys, ["report", str(empty), "--out", str(tmp_path / "no" / "r.html")])
    assert msg == f"--out: folder {str(tmp_path / 'no')!r} does not exist"
    for name in [m for m in sys.modules if m == "qfl.report" or m.startswith("qfl.report.")]:
        monkeypatch.delitem(sys.modules, name)  # restored afterwards
    monkeypatch.setitem(sys.modules, "plotly", None)  # as if plotly were not installed
    # a broken install, not bad input: an unexpected error (exit 1, one line and a log)
    status = main(["report", str(empty)])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 1
    assert len(err) == 1 and "ImportError: qfl.report needs plotly" in err[0], err
