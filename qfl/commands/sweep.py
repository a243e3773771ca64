"""``qfl sweep`` (what-if studies over a grid) and ``qfl plot`` (redraw from saved files)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from qfl.commands.crash import logs_into
from qfl.commands.simulate import ThreadsOption
from qfl.commands.tables import cell, print_table
from qfl.cosim.executors import check_executor
from qfl.cosim.sweep import SweepSpec, load_sweep_file, parse_set_options, run_sweep
from qfl.scenario import (
    ScenarioError,
    apply_quick,
    load_scenario,
    load_yaml,
    read_text,
)

__all__ = ["claim_out", "plot", "sweep"]


def _is_sweep_file(path: Path) -> bool:
    try:
        data = load_yaml(read_text(path), str(path))
    except ScenarioError:
        return False
    return isinstance(data, dict) and "grid" in data and "topology" not in data


def sweep(
    file: Annotated[Path, typer.Argument(help="A scenario YAML (with --set) or a sweep YAML.")],
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Vary a field: --set qkd.rate_scale=0.1,0.3,1,3 (repeatable)."),
    ] = None,
    x: Annotated[
        str | None,
        typer.Option(
            help="x axis: mean_skr_bps (default), min_skr_bps, key_budget_bits, or a field."
        ),
    ] = None,
    series: Annotated[
        str | None, typer.Option(help="A varied field whose values become separate lines.")
    ] = None,
    quick: Annotated[
        bool, typer.Option("--quick", help="Apply the scenario's quick overrides.")
    ] = False,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Sweep folder.")] = None,
    executor: Annotated[
        str, typer.Option(help="Where learning jobs run: local (processes), ray, inline.")
    ] = "local",
    address: Annotated[str | None, typer.Option(help="Ray cluster address (executor ray).")] = None,
    jobs: Annotated[
        int | None, typer.Option(help="Local worker processes (default: cores / threads).")
    ] = None,
    threads: ThreadsOption = None,
    resume: Annotated[bool, typer.Option("--resume", help="Skip points already finished.")] = False,
    plots: Annotated[bool, typer.Option("--plots/--no-plots")] = True,
) -> None:
    """Run a scenario over a grid of field values; write a table and the key-rate plot."""
    from qfl.threads import resolve_threads, threads_env, using_threads

    console = Console(highlight=False, soft_wrap=True)
    n_threads, _ = resolve_threads(threads)  # a bad value is reported before any work
    spec = _sweep_spec(file, set_, x, series, quick)
    check_executor(executor, jobs)  # before the folder is claimed or anything runs
    out = _sweep_folder(spec, out, resume)
    progress = Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"), console=console,
    )  # fmt: skip
    n_points = math.prod(len(v) for v in spec.grid.values())
    task = progress.add_task(
        f"{spec.name}", total=n_points, info="network timelines, then learning"
    )

    def on_point(done: int, total: int, row: dict[str, Any]) -> None:
        acc = row.get("final_global_acc")
        info = f"{row['slug']}: acc {100 * acc:.1f} %" if acc is not None else row["slug"]
        progress.update(task, completed=done, info=info)

    try:
        with progress, threads_env(n_threads), using_threads(n_threads), logs_into(out):
            table_rows = run_sweep(
                spec, out, executor=executor, jobs=jobs, address=address, resume=resume,
                plots=plots, on_point=on_point,
            )  # fmt: skip
    except KeyboardInterrupt:
        console.print(
            f"interrupted: finished points are in {out}; rerun with --resume", markup=False
        )
        raise typer.Exit(130) from None
    table = Table(title=f"sweep {spec.name}: {len(table_rows)} points")
    cols = [*spec.grid, "status", "mean_skr_bps", "rounds_done", "final_global_acc",
            "time_to_target_s"]  # fmt: skip
    for c in cols:
        table.add_column(c.split(".")[-1].replace("_", " "), justify="right")
    for r in table_rows:
        table.add_row(*[cell(r.get(c), c) for c in cols])
    print_table(console, table)
    console.print(f"sweep folder: {out} (sweep.csv, keyrate_vs_accuracy.png)", markup=False)
    failed = [r for r in table_rows if r.get("status") != "complete"]
    if failed:
        console.print(
            f"{len(failed)} of {len(table_rows)} points failed (first: {failed[0]['slug']}: "
            f"{failed[0].get('error', '')}); see the error column of sweep.csv",
            markup=False,
        )
        raise typer.Exit(1)


def _sweep_spec(
    file: Path, set_: list[str] | None, x: str | None, series: str | None, quick: bool
) -> SweepSpec:
    """The sweep of the command line: a sweep file (plus ``--set``) or a scenario and
    ``--set`` grids, with ``--quick``, ``--x`` and ``--series`` applied."""
    if _is_sweep_file(file):
        spec = load_sweep_file(file)
        extra = parse_set_options(set_ or [])
        if extra:
            spec = SweepSpec(spec.base, {**spec.grid, **extra}, spec.x, spec.series, spec.name)
    else:
        grid = parse_set_options(set_ or [])
        if not grid:
            raise ScenarioError("--set", "give at least one field to vary (field=v1,v2,...)")
        base = load_scenario(file)
        spec = SweepSpec(base, grid, name=f"{base.name}-sweep")
    if quick:
        base, changes = apply_quick(spec.base)
        Console(highlight=False).print(
            "--quick: " + ("; ".join(changes) or "nothing to reduce"), markup=False
        )
        spec = SweepSpec(base, spec.grid, spec.x, spec.series, spec.name)
    if x is not None or series is not None:
        if series is not None and series not in spec.grid:
            raise ScenarioError(
                "--series", f"must be one of the varied fields {sorted(spec.grid)}, got {series!r}"
            )
        spec = SweepSpec(spec.base, spec.grid, x or spec.x, series or spec.series, spec.name)
    return spec


def _sweep_folder(spec: SweepSpec, out: Path | None, resume: bool) -> Path:
    """The sweep folder, claimed before any work: ``--out`` (refused if it holds files,
    unless ``--resume``), else a new ``outputs.dir/NAME[-k]``; ``--resume`` without
    ``--out`` takes the latest folder of this sweep (same name and grid)."""
    from qfl.cosim.outputs import new_folder

    if out is not None:
        return claim_out(out, resume, "sweep")
    parent = Path(spec.base.outputs.dir)
    if not resume:
        return new_folder(parent, spec.name, what="outputs.dir")
    named = sorted(parent.glob(f"{spec.name}*")) if parent.is_dir() else []
    mine = [d for d in named if d.name == spec.name or d.name.startswith(f"{spec.name}-")]
    grid = {k: list(v) for k, v in spec.grid.items()}
    same = [d for d in mine if _sweep_meta(d).get("grid") == grid]
    if not same:
        seen = ", ".join(str(d) for d in mine) or "none"
        raise ScenarioError(
            "--resume",
            f"no earlier sweep {spec.name!r} with this grid in {str(parent)!r} (folders of that "
            f"name: {seen}); give the folder with --out",
        )
    return max(same, key=lambda d: (d / "sweep.json").stat().st_mtime)


def claim_out(out: Path, resume: bool, kind: str) -> Path:
    """``--out`` of a sweep or study, claimed before any work: refused if it holds files,
    unless ``resume`` (then it is continued)."""
    from qfl.cosim.outputs import claim_folder

    if out.is_dir() and any(out.iterdir()) and not resume:
        raise ScenarioError(
            "--out", f"folder {str(out)!r} is not empty: add --resume to continue that {kind}"
        )
    return claim_folder(out, what="--out", existing_ok=resume)


def _sweep_meta(folder: Path) -> dict[str, Any]:
    try:
        data = json.loads((folder / "sweep.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


_cell = cell  # the name ``qfl plan`` imported before :mod:`qfl.commands.tables`


def plot(
    folder: Annotated[Path, typer.Argument(help="A run folder or a sweep folder.")],
) -> None:
    """Redraw the plots of a run or sweep folder from its saved files."""
    from qfl.cosim.plots import redraw

    console = Console(highlight=False, soft_wrap=True)
    _check_saved_files(folder)
    try:
        made = redraw(folder)
    except (ValueError, KeyError, TypeError, IndexError) as exc:  # well-formed, wrong content
        why = " ".join(str(exc).split())[:160] or type(exc).__name__
        raise ScenarioError(
            str(folder), f"cannot redraw its plots from its files ({type(exc).__name__}: {why})"
        ) from None
    for p in made:
        console.print(f"wrote {p}", markup=False)


def _check_saved_files(folder: Path) -> None:
    """Each CSV and JSON file ``qfl plot`` reads parses, or a one-line error names it."""
    import csv

    if not folder.is_dir():
        raise ScenarioError(str(folder), "not a folder (give a run or sweep folder)")
    for f in sorted(folder.glob("*.csv")) + sorted(folder.glob("*.json")):
        try:
            text = f.read_text(encoding="utf-8")
            if f.suffix == ".json":
                json.loads(text)
            else:
                rows = list(csv.reader(text.splitlines()))
                if rows and any(len(r) != len(rows[0]) for r in rows[1:] if r):
                    raise ValueError("rows with a different number of columns than the header")
        except (OSError, UnicodeDecodeError, ValueError, csv.Error) as exc:
            why = " ".join(str(exc).split())[:160]
            kind = "JSON" if f.suffix == ".json" else "CSV"
            raise ScenarioError(str(f), f"malformed {kind} ({why}); rerun or restore it") from None
