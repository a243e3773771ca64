"""Printing the commands' tables whole, on any terminal and into any file.

Rich shortens a cell that does not fit its column with "…" by default, and a console that
is not a terminal (a pipe, a file, a captured run) is 80 columns wide unless told
otherwise: link names ("cut university-north") and numbers ("1.161e+04") came out cut.
:func:`print_table` folds overlong cells onto further lines instead, and prints to a
non-terminal at least :data:`WIDE` columns wide, so a table written to a file is one line
per row. :func:`cell` formats a value for its column with a fixed precision and the unit
its name says (``_s``: a duration; ``_acc``: a percentage; ``_bps``: a bit rate).
"""

from __future__ import annotations

import math
from typing import Any

from rich.cells import cell_len
from rich.console import Console
from rich.table import Table

__all__ = ["WIDE", "cell", "duration", "print_table"]

WIDE = 200
"""The width tables are printed at where the output is not a terminal."""
KEEP = 22
"""Cells up to this many characters keep a line of their own where the terminal allows."""


def print_table(console: Console, table: Table) -> None:
    """Print ``table`` without shortening any cell.

    Every column folds what does not fit onto further lines (no "…"), the headers before
    the values (a column is at least as wide as its longest value, up to :data:`KEEP`
    characters, while the terminal allows); where ``console`` is not a terminal the table
    is laid out :data:`WIDE` columns wide (or the console's width, if wider).

    Parameters
    ----------
    console : Console
        Where to print.
    table : Table
        The table (its columns are changed to fold).
    """
    for column in table.columns:
        column.overflow = "fold"
        column.no_wrap = False
        longest = max((cell_len(c) for c in column.cells if isinstance(c, str)), default=0)
        if column.min_width is None:  # values whole where they fit; headers wrap first
            column.min_width = min(longest, KEEP)
    if console.is_terminal or console.width >= WIDE:
        console.print(table)
        return
    # Console.print(width=...) can only narrow: a console as wide, on the same stream
    wide = Console(file=console.file, width=WIDE, highlight=False, color_system=None)
    wide.print(table)


def duration(seconds: float | None) -> str:
    """A duration in s, min or h, three significant digits (``-`` for none).

    Examples
    --------
    >>> duration(42.0), duration(754.2), duration(11610.0), duration(None)
    ('42 s', '12.6 min', '3.23 h', '-')
    """
    if seconds is None or not math.isfinite(seconds):
        return "-"
    if abs(seconds) >= 3600:
        return f"{seconds / 3600:.3g} h"
    if abs(seconds) >= 60:
        return f"{seconds / 60:.3g} min"
    return f"{seconds:.3g} s"


def _si(value: float, unit: str) -> str:
    for prefix, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}"


def cell(value: Any, column: str = "") -> str:
    """A table cell: ``-`` for nothing, yes/no, and a number with a fixed precision in the
    unit its column's name says.

    Parameters
    ----------
    value : object
        The value.
    column : str
        The column's name: ``..._s`` a duration (s, min or h), ``..._acc`` an accuracy
        (``0.1234`` prints ``12.34 %``), ``..._bps`` a bit rate (``1.16 kbit/s``), ``..._share``
        a fraction (as %); another float prints with 4 significant digits, never in
        exponent form between 1e-4 and 1e9.

    Examples
    --------
    >>> cell(11610.0, "time_to_target_s"), cell(0.1234, "final_global_acc")
    ('3.23 h', '12.34 %')
    >>> cell(1161.0, "mean_skr_bps"), cell(11610.0), cell(True), cell(None)
    ('1.16 kbit/s', '11610', 'yes', '-')
    """
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if not isinstance(value, int | float):
        return str(value)
    v = float(value)
    if not math.isfinite(v):
        return "-"
    if column.endswith("_s"):
        return duration(v)
    if column.endswith("_acc"):
        return f"{100 * v:.2f} %"
    if column.endswith("_share"):
        return f"{100 * v:.0f} %"
    if column.endswith("_bps"):
        return _si(v, "bit/s")
    if isinstance(value, int):
        return str(value)
    if v == 0 or 1e-4 <= abs(v) < 1e9:
        return f"{v:.4g}" if abs(v) < 1e4 else f"{v:.0f}"
    return f"{v:.3e}"
