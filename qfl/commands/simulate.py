"""``qfl simulate FILE``: run one scenario with a live progress bar, then summarise it."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn
from rich.table import Table

from qfl.commands.crash import logs_into
from qfl.commands.tables import print_table
from qfl.scenario import Scenario, ScenarioError, apply_overrides, apply_quick, load_scenario

_out = Console(highlight=False, soft_wrap=True)  # notices go to stdout: stderr is for errors

__all__ = [
    "ACCURACY_LABELS",
    "ThreadsOption",
    "exit_label",
    "resolve_scenario",
    "simulate",
    "summary_table",
]

ACCURACY_LABELS = {
    "final_global_acc": "final global accuracy (test set, mean over clients)",
    "final_local_acc": "final local accuracy (held-out data, mean over clients)",
}
"""What the summary's accuracies are (``summary.json``'s ``final_global_acc``: each
client's model, or the global model at the client's exit, on the common test set;
``final_local_acc``: on the client's own held-out data; both averaged over clients)."""


def exit_label(n: int) -> str:
    """The label of ``final_exit_acc`` (multi-exit): the local accuracy at each of the ``n``
    exits on the clients' held-out data, averaged over clients (not the global accuracy).

    Examples
    --------
    >>> exit_label(3)
    'local accuracy at exit 1 / 2 / 3 (held-out data, mean over clients)'
    """
    return (
        f"local accuracy at exit {' / '.join(str(k) for k in range(1, n + 1))} "
        "(held-out data, mean over clients)"
    )


ThreadsOption = Annotated[
    str | None,  # parsed by qfl.threads: a bad value's error names it and what is allowed
    typer.Option(
        "--threads",
        metavar="N",
        help="CPU threads for the learning half, per learning job (default: $QFL_THREADS, "
        "else one per physical core). Numbers are reproducible for a given thread count.",
    ),
]


def resolve_scenario(file: Path, quick: bool, sets: list[str] | None) -> Scenario:
    """Load a scenario and apply ``--quick`` and ``--set field=value`` overrides."""
    sc = load_scenario(file)
    if quick:
        sc, changes = apply_quick(sc)
        _out.print("--quick: " + ("; ".join(changes) or "nothing to reduce"), markup=False)
    overrides: dict[str, Any] = {}
    for opt in sets or []:
        key, sep, value = opt.partition("=")
        if not sep or not key.strip():
            raise ScenarioError("--set", f"must look like field.path=value, got {opt!r}")
        overrides[key.strip()] = value
    if overrides:
        try:
            sc = apply_overrides(sc, overrides)
        except ScenarioError as exc:
            raise ScenarioError(f"--set {exc.path}", exc.message) from None
    return sc


def _fmt_time(s: float | None) -> str:
    if s is None or (isinstance(s, float) and math.isnan(s)):
        return "-"
    if s >= 3600:
        return f"{s / 3600:.2f} h"
    if s >= 60:
        return f"{s / 60:.1f} min"
    return f"{s:.3g} s"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f} %"


def _bits(x: float) -> str:
    for unit, scale in (("Gbit", 1e9), ("Mbit", 1e6), ("kbit", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:.3g} {unit}"
    return f"{x:.3g} bit"


def _bottleneck_rows(table: Table, s: dict[str, Any]) -> None:
    """The rows of the round breakdown and the per-link figures (``bottlenecks.png``)."""
    rounds = s.get("round_breakdown") or []
    if rounds:
        slow = max(rounds, key=lambda r: r["duration_s"])
        order = ("compute", "key", "bandwidth", "propagation", "blocked")
        top = max(order, key=lambda c: slow[c])
        share = slow[top] / slow["duration_s"] if slow["duration_s"] > 0 else 0.0
        table.add_row(
            "slowest round",
            f"round {slow['round']}: {_fmt_time(slow['duration_s'])}, {100 * share:.0f} % {top}",
        )
        table.add_row("slowest round ended by", str(slow["critical"]))
    links = s.get("links") or []
    waited = sorted((lk for lk in links if lk["key_wait_s"] > 0), key=lambda lk: -lk["key_wait_s"])
    if waited:
        text = ", ".join(f"{lk['link']} {_fmt_time(lk['key_wait_s'])}" for lk in waited[:3])
        table.add_row("links waited on most for key", text)
    windows = sorted(s.get("window_waits") or [], key=lambda w: -w["waited_s"])
    if windows:
        more = f" (+{len(windows) - 2} more)" if len(windows) > 2 else ""
        table.add_row(
            "key waited for a window", "; ".join(w["sentence"] for w in windows[:2]) + more
        )
    busy = sorted((lk for lk in links if lk["utilisation"] > 0), key=lambda lk: -lk["utilisation"])
    if busy:
        text = ", ".join(f"{lk['link']} {100 * lk['utilisation']:.2g} %" for lk in busy[:3])
        table.add_row("busiest links (time transmitting)", text)


def summary_table(sc: Scenario, s: dict[str, Any]) -> Table:
    """The table ``qfl simulate`` prints at the end of a run, from its summary."""
    table = Table(
        title=f"{sc.name}: {sc.learning.method} over {sc.cipher.policy}", show_header=False
    )
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("rounds done / planned", f"{s['rounds_done']} / {s['rounds_planned']}")
    table.add_row("simulated time", _fmt_time(s["sim_time_end_s"]))
    table.add_row(ACCURACY_LABELS["final_global_acc"], _pct(s["final_global_acc"]))
    table.add_row(ACCURACY_LABELS["final_local_acc"], _pct(s["final_local_acc"]))
    exits = s.get("final_exit_acc") or []
    if exits:
        table.add_row(exit_label(len(exits)), " / ".join(f"{100 * a:.1f}" for a in exits) + " %")
    table.add_row(
        f"time to {100 * s['target_accuracy']:.0f} %",
        _fmt_time(s["time_to_target_s"])
        + (f" (round {s['rounds_to_target']})" if s["rounds_to_target"] else ""),
    )
    table.add_row("mean key rate per link", f"{_bits(s['mean_skr_bps'])}/s")
    key = " / ".join(
        _bits(s[k]) for k in ("key_generated_bits", "key_consumed_bits", "key_wasted_bits")
    )
    table.add_row("key generated / consumed / wasted", key)
    table.add_row("time stalled on key (all transfers)", _fmt_time(s["time_stalled_on_key_s"]))
    share = s.get("time_share") or {}
    if share:
        order = ("compute", "key", "bandwidth", "propagation", "blocked")
        parts = " / ".join(f"{100 * share[k]:.0f}" for k in order)
        table.add_row("round time % compute / key / bandwidth / propagation / fault", parts)
        table.add_row("what binds", str(s.get("binds", "-")))
    _bottleneck_rows(table, s)
    table.add_row(
        "transfers delivered / failed", f"{s['transfers_delivered']} / {s['transfers_failed']}"
    )
    if s.get("transfers_dropped"):
        table.add_row("models never received (faults, no key)", str(s["transfers_dropped"]))
    engine = s.get("engine")
    if engine:  # a model of the user's own: which engine trained it, and why
        table.add_row("training engine", f"{engine['engine']} ({engine['reason']})")
    threads = f" on {s['threads']} threads" if s.get("threads") else ""
    table.add_row("wall time", _fmt_time(s["wall_s"]["total_s"]) + threads)
    return table


def simulate(
    file: Annotated[Path, typer.Argument(help="Scenario YAML file.")],
    quick: Annotated[
        bool, typer.Option("--quick", help="Apply the scenario's `quick` overrides.")
    ] = False,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a field: --set learning.rounds=5 (repeatable)."),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Run folder (default: outputs.dir/NAME).")
    ] = None,
    plots: Annotated[bool, typer.Option("--plots/--no-plots", help="Draw the PNG plots.")] = True,
    threads: ThreadsOption = None,
    memory: Annotated[
        str | None,
        typer.Option(
            "--memory",
            help="Memory budget of the learning half (512M, 4G): clients train in groups "
            "that fit it (default: $QFL_MEMORY, else half the memory available).",
        ),
    ] = None,
    executor: Annotated[
        str,
        typer.Option(help="Where the learning half trains: local, or ray (Ray workers)."),
    ] = "local",
    address: Annotated[str | None, typer.Option(help="Ray cluster address (executor ray).")] = None,
    workers: Annotated[
        int | None, typer.Option(help="Ray workers (executor ray; default: one per core).")
    ] = None,
) -> None:
    """Run a scenario: the QKD network's timeline, then the learning it allows."""
    from qfl.cosim import run_scenario
    from qfl.cosim.learnexec import check_learning_options, learning_env
    from qfl.cosim.netbuild import check_network
    from qfl.cosim.outputs import claim_folder, new_folder
    from qfl.threads import resolve_threads, using_threads

    console = Console(highlight=False, soft_wrap=True)
    n_threads, _ = resolve_threads(threads)  # a bad value is reported before any work
    check_learning_options(executor, workers, memory)
    sc = resolve_scenario(file, quick, set_)
    topo = check_network(sc)  # bad input is reported before anything is written
    if out is not None:
        folder = claim_folder(out, what="--out")
    else:
        folder = new_folder(Path(sc.outputs.dir), sc.name)
    progress = Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        console=console,
        transient=False,
    )
    task = progress.add_task(f"{sc.name}: network", total=None, info="simulating key and transfers")

    def on_network(nrun: Any) -> None:
        tl = nrun.timeline
        end = tl.round_end_s[-1] if tl.round_end_s else 0.0
        progress.update(
            task,
            description=f"{sc.name}: learning",
            total=tl.rounds_done,
            completed=0,
            info=f"{tl.rounds_done} rounds fit, last ends at t={_fmt_time(end)}",
        )

    def on_eval(r: int, t: float, rows: list[Any]) -> None:
        mean = next((x for x in rows if x.node == "mean"), None)
        acc = ""
        if mean is not None:
            val = mean.global_acc if not math.isnan(mean.global_acc) else mean.local_acc
            acc = f"acc {100 * val:.1f} %"
        progress.update(task, completed=r, info=f"round {r}, t={_fmt_time(t)}, {acc}")

    try:
        env = learning_env(executor, address, workers, memory)
        with progress, using_threads(n_threads), logs_into(folder), env:
            result = run_scenario(
                sc, folder, on_eval=on_eval, on_network=on_network, plots=plots, topo=topo,
                on_progress=lambda r, text: progress.update(task, info=f"round {r}: {text}"),
            )  # fmt: skip
    except KeyboardInterrupt:
        console.print(f"interrupted: the partial run is in {folder}", markup=False)
        raise typer.Exit(130) from None
    print_table(console, summary_table(sc, result.summary))
    console.print(f"run folder: {folder}", markup=False)
