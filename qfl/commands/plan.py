"""``qfl plan threshold|contingency|upgrade``: a planner's question, one command each."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from qfl.commands.crash import logs_into
from qfl.commands.simulate import ThreadsOption, resolve_scenario
from qfl.commands.sweep import claim_out
from qfl.commands.tables import cell, print_table
from qfl.scenario import Scenario, ScenarioError
from qkd.errors import QflError

__all__ = ["app", "parse_duration"]

app = typer.Typer(
    name="plan",
    help="Planner studies: least key rate for a target, N-1 contingency, upgrade advice.",
    no_args_is_help=True,
    add_completion=False,
)

_out = Console(highlight=False, soft_wrap=True)

_UNITS = {"s": 1.0, "sec": 1.0, "min": 60.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str, option: str) -> float:
    """Seconds in ``"90"``, ``"90s"``, ``"30min"``, ``"1h"``, ``"1.5d"``.

    Raises
    ------
    ScenarioError
        Naming ``option``, the text and the forms allowed, for anything else or a
        duration that is not positive.

    Examples
    --------
    >>> parse_duration("1h", "--within"), parse_duration("90", "--within")
    (3600.0, 90.0)
    """
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([a-z]*)\s*", text)
    unit = m.group(2) if m else ""
    if m is None or (unit and unit not in _UNITS):
        raise ScenarioError(
            option, f"must be a duration like 90, 90s, 30min, 1h or 2d, got {text!r}"
        )
    seconds = float(m.group(1)) * _UNITS.get(unit, 1.0)
    if not seconds > 0 or not math.isfinite(seconds):
        raise ScenarioError(option, f"must be a duration > 0, got {text!r}")
    return seconds


QuickOption = Annotated[bool, typer.Option("--quick", help="Apply the scenario's quick overrides.")]
SetOption = Annotated[
    list[str] | None, typer.Option("--set", help="Change a field first: --set field=value.")
]
OutOption = Annotated[Path | None, typer.Option("--out", "-o", help="Study folder.")]
ExecutorOption = Annotated[
    str, typer.Option(help="Where learning jobs run: local (processes), ray, inline.")
]
JobsOption = Annotated[int | None, typer.Option(help="Local worker processes.")]
AddressOption = Annotated[str | None, typer.Option(help="Ray cluster address (executor ray).")]
TargetOption = Annotated[
    float | None, typer.Option(help="Target accuracy (default: the scenario's).")
]
WithinOption = Annotated[str | None, typer.Option(help="Deadline (default: horizon_s).")]
ResumeOption = Annotated[
    bool, typer.Option("--resume", help="Continue an interrupted study (finished points kept).")
]


def _target(value: float | None, sc: Scenario) -> float:
    t = sc.learning.target_accuracy if value is None else value
    if not 0 < t <= 1:
        raise ScenarioError("--target", f"must be an accuracy in (0, 1], got {t}")
    return t


def _folder(sc: Scenario, kind: str, out: Path | None, resume: bool) -> Path:
    """The study folder, claimed before any work (``--resume`` without ``--out`` takes the
    latest ``NAME-KIND`` folder)."""
    from qfl.cosim.outputs import new_folder

    name = f"{sc.name}-{kind}"
    if out is not None:
        return claim_out(out, resume, "study")
    parent = Path(sc.outputs.dir)
    if not resume:
        return new_folder(parent, name, what="outputs.dir")
    mine = [d for d in sorted(parent.glob(f"{name}*")) if (d / "points").is_dir()]
    if not mine:
        raise ScenarioError("--resume", f"no earlier {kind} study of {sc.name!r} in "
                            f"{str(parent)!r}; give its folder with --out")  # fmt: skip
    return max(mine, key=lambda d: (d / "points").stat().st_mtime)


def _run(study: Any, threads: str | None, folder: Path, *, fresh: bool = True) -> Any:
    """Run ``study()`` on the thread count; Ctrl-C says how to resume. A study refused
    before any point was written leaves no folder behind (when this command made it)."""
    from qfl.threads import resolve_threads, threads_env, using_threads

    n, _ = resolve_threads(threads)
    try:
        with threads_env(n), using_threads(n), logs_into(folder):
            return study()
    except KeyboardInterrupt:
        _out.print(f"interrupted: finished points are in {folder}; rerun with --resume",
                   markup=False)  # fmt: skip
        raise typer.Exit(130) from None
    except QflError:
        if fresh:
            _remove_if_empty(folder)
        raise


def _remove_if_empty(folder: Path) -> None:
    """Remove a study folder that holds no point yet (only an empty ``points/``)."""
    import shutil

    points = folder / "points"
    if points.is_dir() and any(points.iterdir()):
        return
    if all(p.name == "points" for p in folder.iterdir()):
        shutil.rmtree(folder, ignore_errors=True)


def _runner(folder: Path, executor: str, jobs: int | None, address: str | None) -> Any:
    from qfl.cosim.sweep import PointRunner

    return PointRunner(folder, executor=executor, jobs=jobs, address=address, plots=False)


def _show(result: Any, cols: list[str], png: str) -> None:
    table = Table(title=f"{result.kind}: {result.meta.get('question', '')}")
    for c in cols:
        table.add_column(
            c.replace("_", " "), justify="left" if c in ("variant", "link", "harm") else "right"
        )
    for r in result.rows:
        table.add_row(*[cell(r.get(c), c) for c in cols])
    print_table(_out, table)
    if result.meta.get("ranking"):
        _out.print(f"ranking: {result.meta['ranking']}", markup=False)
    ran = result.meta.get("learning_executions")
    _out.print(
        f"{result.meta.get('evaluations')} points evaluated, {ran} learning execution(s) (learning "
        "'ran': the point trained; 'shared'/'reused': answered from the network half alone); "
        f"folder: {result.folder} (plan.json, plan.csv, {png})",
        markup=False,
    )
    _out.print(f"answer: {result.answer}", markup=False)


@app.command("threshold")
def threshold_cmd(
    file: Annotated[Path, typer.Argument(help="The scenario YAML.")],
    target: Annotated[float, typer.Option(help="Target global accuracy in (0, 1].")],
    within: Annotated[str, typer.Option(help="Deadline in simulated time: 1h, 30min, 600s.")],
    vary: Annotated[str, typer.Option(help="The knob: a numeric field, e.g. qkd.rate_scale.")],
    range_: Annotated[
        str | None, typer.Option("--range", help="Search range LO,HI (default: from the value).")
    ] = None,
    rtol: Annotated[float, typer.Option(help="Relative tolerance of the answer.")] = 0.1,
    maximize: Annotated[
        bool, typer.Option("--maximize", help="For knobs where more is worse (a length).")
    ] = False,
    quick: QuickOption = False,
    set_: SetOption = None,
    out: OutOption = None,
    executor: ExecutorOption = "local",
    jobs: JobsOption = None,
    address: AddressOption = None,
    threads: ThreadsOption = None,
    resume: ResumeOption = False,
) -> None:
    """The least value of a knob that still reaches a target accuracy by a deadline."""
    from qfl.cosim.executors import check_executor
    from qfl.cosim.studies import check_threshold, threshold

    within_s = parse_duration(within, "--within")
    if not 0 < target <= 1:
        raise ScenarioError("--target", f"must be an accuracy in (0, 1], got {target}")
    lo, hi = _range(range_)
    sc = resolve_scenario(file, quick, set_)
    # the whole question is checked before the study folder exists
    check_threshold(sc, vary=vary, target=target, within_s=within_s, lo=lo, hi=hi, rtol=rtol,
                    maximize=maximize)  # fmt: skip
    check_executor(executor, jobs)
    fresh = not resume and not (out is not None and out.exists())
    folder = _folder(sc, "threshold", out, resume)
    runner = _runner(folder, executor, jobs, address)

    def seen(v: float, ok: bool, s: dict[str, Any]) -> None:
        acc = s.get("final_global_acc")
        acc_text = f"{100 * acc:.1f} %" if acc is not None else "-"
        _out.print(f"  {vary} = {v:.4g}: {'reaches' if ok else 'misses'} target "
                   f"(accuracy at deadline {acc_text}; {s.get('learning', '')})",
                   markup=False)  # fmt: skip

    result = _run(
        lambda: threshold(
            sc,
            folder,
            vary=vary,
            target=target,
            within_s=within_s,
            lo=lo,
            hi=hi,
            rtol=rtol,
            maximize=maximize,
            runner=runner,
            resume=resume,
            on_eval=seen,
        ),
        threads,
        folder,
        fresh=fresh,
    )
    leaf = vary.split(".")[-1]
    _show(result, ["evaluation", leaf, "holds", "final_global_acc", "time_to_target_s",
                   "rounds_done", "learning"], "threshold.png")  # fmt: skip


def _range(text: str | None) -> tuple[float | None, float | None]:
    if text is None:
        return None, None
    parts = text.split(",")
    try:
        lo, hi = (float(p) for p in parts)
    except ValueError:
        raise ScenarioError("--range", f"must be LO,HI with 0 < LO < HI, got {text!r}") from None
    if not (0 < lo < hi and math.isfinite(hi)):
        raise ScenarioError("--range", f"must be LO,HI with 0 < LO < HI, got {text!r}")
    return lo, hi


@app.command("contingency")
def contingency_cmd(
    file: Annotated[Path, typer.Argument(help="The scenario YAML.")],
    k: Annotated[int, typer.Option("--k", help="Failures at once: 1 (N-1) or 2 (pairs).")] = 1,
    at: Annotated[str, typer.Option(help="When the failures start (simulated): 0, 10min.")] = "0",
    yes: Annotated[bool, typer.Option("--yes", help="Run a large study without asking.")] = False,
    target: TargetOption = None,
    within: WithinOption = None,
    quick: QuickOption = False,
    set_: SetOption = None,
    out: OutOption = None,
    executor: ExecutorOption = "local",
    jobs: JobsOption = None,
    address: AddressOption = None,
    threads: ThreadsOption = None,
    resume: ResumeOption = False,
) -> None:
    """Every single link cut and relay down (N-1), ranked by harm to time-to-target."""
    from qfl.cosim.executors import check_executor
    from qfl.cosim.studies import contingency, contingency_variants

    if k < 1:
        raise ScenarioError("--k", f"must be 1 or 2, got {k}")
    if k > 2 and not yes:
        raise ScenarioError("--k", f"{k} failures at once is a very large study; allowed: 1 or "
                            "2 (add --yes to run more anyway)")  # fmt: skip
    at_s = 0.0 if at.strip() in ("0", "0s") else parse_duration(at, "--at")
    sc = _with_goal(resolve_scenario(file, quick, set_), target, within)
    check_executor(executor, jobs)
    n = len(contingency_variants(sc, k))
    if k >= 2:
        _out.print(f"--k {k}: {n} failure sets + the intact network = {n + 1} runs", markup=False)
    fresh = not resume and not (out is not None and out.exists())
    folder = _folder(sc, "contingency", out, resume)
    runner = _runner(folder, executor, jobs, address)

    def seen(done: int, total: int, what: str) -> None:
        _out.print(f"  [{done}/{total}] {what.replace('_', ' ')}", markup=False)

    result = _run(
        lambda: contingency(
            sc, folder, k=k, at_s=at_s, runner=runner, resume=resume, on_point=seen
        ),
        threads,
        folder,
        fresh=fresh,
    )
    _show(result, ["rank", "variant", "harm", "connected", "rerouted_share", "final_global_acc",
                   "time_to_target_s", "delay_s", "learning"], "contingency.png")  # fmt: skip


def _with_goal(sc: Scenario, target: float | None, within: str | None) -> Scenario:
    from qfl.scenario import apply_overrides

    changes: dict[str, Any] = {}
    if target is not None:
        changes["learning.target_accuracy"] = _target(target, sc)
    if within is not None:
        changes["horizon_s"] = parse_duration(within, "--within")
    return apply_overrides(sc, changes) if changes else sc


@app.command("upgrade")
def upgrade_cmd(
    file: Annotated[Path, typer.Argument(help="The scenario YAML.")],
    factor: Annotated[float, typer.Option(help="Multiply one link's key rate by this.")] = 2.0,
    kinds: Annotated[
        str | None,
        typer.Option(
            help="Instead of --factor: run each link with each of these kinds where it reaches "
            "the length (comma-separated: tf-sns,mdi,cv-gg02,decoy-bb84).",
        ),
    ] = None,
    target: TargetOption = None,
    within: WithinOption = None,
    quick: QuickOption = False,
    set_: SetOption = None,
    out: OutOption = None,
    executor: ExecutorOption = "local",
    jobs: JobsOption = None,
    address: AddressOption = None,
    threads: ThreadsOption = None,
    resume: ResumeOption = False,
) -> None:
    """For each link, the time-to-target gained by a faster QKD system there (or by another
    kind of link there, with --kinds), ranked."""
    from qfl.cosim.executors import check_executor
    from qfl.cosim.studies import check_kinds, upgrade, upgrade_kinds

    if not factor > 0 or not math.isfinite(factor):
        raise ScenarioError("--factor", f"must be a positive number, got {factor}")
    names = check_kinds(kinds.split(",")) if kinds is not None else None
    sc = _with_goal(resolve_scenario(file, quick, set_), target, within)
    check_executor(executor, jobs)
    fresh = not resume and not (out is not None and out.exists())
    folder = _folder(sc, "upgrade", out, resume)
    runner = _runner(folder, executor, jobs, address)

    def seen(done: int, total: int, what: str) -> None:
        change = what if names else f"x{factor:g} on {what}"
        _out.print(f"  [{done}/{total}] {change}", markup=False)

    def study() -> Any:
        if names:
            return upgrade_kinds(sc, folder, kinds=names, runner=runner, resume=resume,
                                 on_point=seen)  # fmt: skip
        return upgrade(sc, folder, factor=factor, runner=runner, resume=resume, on_point=seen)

    result = _run(study, threads, folder, fresh=fresh)
    _show(result, ["rank", "link", "skr_bps", "time_to_target_s", "gain_s", "final_global_acc",
                   "learning"], "upgrade.png")  # fmt: skip
    _out.print(
        f"answers needing the learning half: {result.meta['answers_needing_learning']} of "
        f"{result.meta['evaluations']} (the rest came from the network half alone)",
        markup=False,
    )
