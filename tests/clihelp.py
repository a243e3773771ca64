"""Helpers shared by the CLI tests (importable: ``tests`` is on pytest's ``pythonpath``)."""

from __future__ import annotations

import pytest

from qfl.cli import main


def run_bad(capsys: pytest.CaptureFixture[str], args: list[str]) -> str:
    """Run the CLI, check exit 2 and a single error line; return the message after 'error:'."""
    status = main(args)
    out = capsys.readouterr()
    assert status == 2, (status, out.out, out.err)
    assert "Traceback" not in out.err + out.out
    lines = out.err.strip().splitlines()
    assert len(lines) == 1, out.err
    assert lines[0].startswith("qfl: error: ")
    return lines[0].removeprefix("qfl: error: ")
