"""``qfl report DIR``: one self-contained HTML report of a run, sweep or plan folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from qfl.scenario import ScenarioError

__all__ = ["report"]


def report(
    folder: Annotated[Path, typer.Argument(help="A run, sweep or plan folder.")],
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="The HTML file to write (default: DIR/report.html)."),
    ] = None,
) -> None:
    """Write one HTML page of a run, sweep or plan folder: scenario, topology with key
    rates, accuracy, key pools, bottlenecks (and a plan's answer). It opens offline."""
    from qfl.report import folder_kind, write_report

    folder_kind(folder)  # a folder of no known kind is named before --out is checked
    if out is not None:
        if out.is_dir():
            raise ScenarioError(
                "--out", f"{str(out)!r} is a folder: give a file name, such as report.html"
            )
        if not out.parent.is_dir():
            raise ScenarioError("--out", f"folder {str(out.parent)!r} does not exist")
    try:
        path = write_report(folder, out)
    except OSError as exc:
        target = out if out is not None else folder / "report.html"
        raise ScenarioError(
            str(target), f"cannot write the report ({exc.strerror or exc})"
        ) from None
    size = path.stat().st_size / 1e6
    Console(highlight=False, soft_wrap=True).print(
        f"report: {path} ({size:.1f} MB, opens offline)", markup=False
    )
