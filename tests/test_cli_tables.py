"""The commands' tables and notices: never cut in narrow or non-terminal output, accuracies
that say which is which, and the one-time kernel compile announced on stderr."""

from __future__ import annotations

import io
import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from rich.console import Console
from rich.table import Table

from qfl.cli import NOTICE_LOGGERS, main, show_notices
from qfl.commands import plan
from qfl.commands.simulate import ACCURACY_LABELS, exit_label, summary_table
from qfl.commands.tables import WIDE, cell, print_table
from qfl.scenario import load_scenario

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ["intact (baseline)", "cut university-north", "cut university-lab", "core down"]


def contingency_table() -> Table:
    table = Table(title="contingency: N-1: which single failure hurts reaching 70 % most")
    cols = ["rank", "variant", "connected", "rerouted_share", "final_global_acc",
            "time_to_target_s", "delay_s", "learning"]  # fmt: skip
    for c in cols:
        table.add_column(c.replace("_", " "), justify="left" if c == "variant" else "right")
    for i, v in enumerate(VARIANTS):
        row = {"rank": i, "variant": v, "connected": i != 3, "rerouted_share": 0.2222,
               "final_global_acc": 0.2186857, "time_to_target_s": 11610.0 + i,
               "delay_s": 60.0 * i or None, "learning": "shared"}  # fmt: skip
        table.add_row(*[cell(row[c], c) for c in cols])
    return table


def test_cells_have_fixed_precision_and_units() -> None:
    assert cell(11610.0, "time_to_target_s") == "3.23 h"
    assert cell(754.2, "delay_s") == "12.6 min" and cell(-42.0, "gain_s") == "-42 s"
    assert cell(0.2186857, "final_global_acc") == "21.87 %"
    assert cell(0.2222, "rerouted_share") == "22 %"
    assert cell(1161.0, "mean_skr_bps") == "1.16 kbit/s"
    assert cell(0.0001241, "rate_scale") == "0.0001241" and cell(1e-5) == "1.000e-05"
    assert cell(11610.0) == "11610" and cell(3) == "3" and cell(float("nan")) == "-"
    assert cell(None) == cell("") == "-" and cell(False) == "no" and cell("ran") == "ran"


def test_a_table_piped_or_captured_is_printed_whole() -> None:
    """Not a terminal, and 80 columns (``COLUMNS=80``): the table is laid out wide, one
    line per row, no cell shortened."""
    buf = io.StringIO()
    console = Console(file=buf, width=80, highlight=False, soft_wrap=True)
    assert not console.is_terminal
    print_table(console, contingency_table())
    text = buf.getvalue()
    assert "…" not in text
    for v in VARIANTS:
        assert sum(v in line for line in text.splitlines()) == 1
    assert "3.23 h" in text and "e+" not in text
    assert max(len(line) for line in text.splitlines()) <= WIDE


def test_a_table_on_a_narrow_terminal_wraps_and_cuts_nothing() -> None:
    buf = io.StringIO()
    console = Console(file=buf, width=80, force_terminal=True, color_system=None)
    print_table(console, contingency_table())
    lines = buf.getvalue().splitlines()
    assert all(len(line) <= 80 for line in lines)
    text = "\n".join(lines)
    assert "…" not in text
    for v in VARIANTS:  # names of up to KEEP characters keep one line
        assert v in text
    assert "21.87 %" in text  # numbers are not folded either


def test_plan_table_is_whole_in_captured_output(capsys: pytest.CaptureFixture[str]) -> None:
    rows = [{"rank": i, "variant": v, "connected": True, "rerouted_share": 0.1,
             "final_global_acc": 0.2187, "time_to_target_s": 11610.0, "delay_s": None,
             "learning": "shared"} for i, v in enumerate(VARIANTS)]  # fmt: skip
    result = SimpleNamespace(kind="contingency", rows=rows, folder=Path("x"), answer="a",
                             meta={"question": "N-1", "evaluations": 4})  # fmt: skip
    plan._show(result, ["rank", "variant", "connected", "rerouted_share", "final_global_acc",
                        "time_to_target_s", "delay_s", "learning"], "contingency.png")  # fmt: skip
    out = capsys.readouterr().out
    assert "…" not in out and "cut university-north" in out and "cut university-lab" in out
    assert "3.23 h" in out and "1.161e+" not in out


def test_keyrate_table_piped_at_80_columns(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    assert main(["keyrate", "--preset", "gys-2004", "--distance", "0", "25", "50"]) == 0
    out = capsys.readouterr().out
    assert "…" not in out and "bits/pulse" in out and "PLOB/use" in out


SUMMARY: dict[str, Any] = {
    "rounds_done": 2, "rounds_planned": 2, "sim_time_end_s": 4.48, "final_global_acc": 0.1954,
    "final_local_acc": 0.1398, "final_exit_acc": [0.126, 0.082, 0.140], "target_accuracy": 0.75,
    "time_to_target_s": None, "rounds_to_target": None, "mean_skr_bps": 1.38e7,
    "key_generated_bits": 8.28e8, "key_consumed_bits": 4.4e4, "key_wasted_bits": 0.0,
    "time_stalled_on_key_s": 96.0, "transfers_delivered": 96, "transfers_failed": 0,
    "wall_s": {"total_s": 59.3},
}  # fmt: skip


def test_multiexit_summary_says_which_accuracy_is_which() -> None:
    sc = load_scenario(ROOT / "scenarios" / "multiexit-metro.yaml")
    buf = io.StringIO()
    print_table(Console(file=buf, width=80), summary_table(sc, SUMMARY))
    text = buf.getvalue()
    assert "final global accuracy (test set, mean over clients)" in text
    assert "final local accuracy (held-out data, mean over clients)" in text
    line = next(ln for ln in text.splitlines() if "local accuracy at exit 1 / 2 / 3" in ln)
    assert "(held-out data, mean over clients)" in line and "12.6 / 8.2 / 14.0 %" in line
    assert "accuracy per exit" not in text


def test_report_labels_the_accuracies_as_the_summary_does() -> None:
    from qfl.report.page import _run_figures

    rows = dict(_run_figures(SimpleNamespace(summary=SUMMARY)))
    assert rows[ACCURACY_LABELS["final_global_acc"]] == "19.5 %"
    assert rows[ACCURACY_LABELS["final_local_acc"]] == "14 %"
    assert rows[exit_label(3)] == "12.6 % / 8.2 % / 14 %"
    without = dict(_run_figures(SimpleNamespace(summary={**SUMMARY, "final_exit_acc": []})))
    assert not any("exit" in k for k in without)


class _FakeBuild:
    """Stands in for ``torch.utils.cpp_extension``: a build folder, an instant compile."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.loads = 0

    def _get_build_directory(self, name: str, verbose: bool) -> str:
        return str(self.folder)

    def load_inline(self, name: str, sources: list[str], **kw: Any) -> str:
        self.loads += 1
        (self.folder / f"{name}.so").write_bytes(b"")
        return "module"


@pytest.fixture
def notices() -> Any:
    """The command line's notice handler, removed again afterwards."""
    show_notices()
    yield
    for name in NOTICE_LOGGERS:
        log = logging.getLogger(name)
        for h in [h for h in log.handlers if type(h).__name__ == "_Notice"]:
            log.removeHandler(h)
        log.setLevel(logging.NOTSET)


def test_first_kernel_compile_is_announced_on_stderr(
    tmp_path: Path, notices: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from qfl.engine import kernels

    build = _FakeBuild(tmp_path)
    assert kernels._load("qfl_test_kernels", build) == "module"
    out = capsys.readouterr()
    assert out.out == ""
    first, done = out.err.splitlines()
    assert first.startswith("compiling the engine's CPU kernels once (about 25 s")
    assert done.startswith("compiled the engine's CPU kernels in ") and done.endswith(" s")
    # built: the next process loads it silently
    assert kernels._load("qfl_test_kernels", build) == "module" and build.loads == 2
    assert capsys.readouterr().err == ""


def test_kernel_notices_are_info_records(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    """Library code logs (no print): without the command line's handler nothing is shown."""
    from qfl.engine import kernels

    with caplog.at_level(logging.INFO, logger="qfl.engine.kernels"):
        kernels._load("qfl_test_kernels", _FakeBuild(tmp_path))
    assert [r.levelname for r in caplog.records] == ["INFO", "INFO"]
    assert capsys.readouterr().err == ""
