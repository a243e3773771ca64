"""Run a scenario: network half, learning half, run folder.

:func:`simulate_network` builds the network and the learning job and simulates the
timeline (no training). :func:`execute_learning` trains exactly the rounds that completed.
:func:`run_scenario` does both and writes the run folder:

``scenario.yaml``
    the resolved scenario (with ``--quick`` and ``--set`` applied);
``topology.json``
    nodes and links with their secret key rates (for the topology plot);
``transfers.csv``, ``keypools.csv``, ``faults.csv``, ``ops.csv``
    every transfer, key-pool change, fault and learning operation, in simulated time;
``metrics.csv``
    one row per evaluation and client (and ``node = mean``), appended as training runs;
``summary.json``
    final accuracy, time and rounds to the target accuracy, key generated / consumed /
    wasted, time stalled on key, status (``complete`` or ``interrupted``);
``accuracy.png``, ``keypools.png``, ``topology.png``
    the plots.

Every file but ``metrics.csv`` is written whole through a temporary file and renamed, and
``metrics.csv`` is flushed after each evaluation, so an interrupted run leaves a consistent
folder.
"""

from __future__ import annotations

import csv
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import simpy
import yaml

from network import QKDNetwork, schedule_faults
from network.records import to_rows
from qfl.cosim.jobs import EvalRow, Job, make_job
from qfl.cosim.netbuild import (
    build_cipher,
    build_faults,
    check_network,
    learning_clients,
    learning_server,
)
from qfl.cosim.schedule import Timeline, run_schedule
from qfl.scenario import Scenario, ScenarioError
from qkd.errors import QflError

__all__ = [
    "METRIC_COLUMNS",
    "NetworkRun",
    "RunResult",
    "eval_rounds_for",
    "execute_learning",
    "metric_row",
    "run_scenario",
    "simulate_network",
    "summarize_run",
    "write_network_outputs",
]

METRIC_COLUMNS = ("sim_time_s", "round", "node", "global_acc", "local_acc", "exit_acc")


@dataclass
class NetworkRun:
    """The network half of a run."""

    scenario: Scenario
    job: Job
    net: QKDNetwork
    timeline: Timeline
    topology: Any
    wall_s: float


@dataclass
class RunResult:
    """A finished (or interrupted) run."""

    folder: Path | None
    summary: dict[str, Any]
    rows: list[EvalRow] = field(default_factory=list)


def simulate_network(sc: Scenario, *, job: Job | None = None) -> NetworkRun:
    """Build the network and the learning job, and simulate the timeline.

    Raises
    ------
    ScenarioError
        Anything in the scenario the network or the learning method rejects, with its path.
    """
    t0 = time.perf_counter()
    topo = check_network(sc)
    clients = learning_clients(sc, topo)
    speed = {n.name: n.flops_per_s for n in topo.nodes}
    if job is None:
        job = make_job(sc, clients, [speed[c] for c in clients], learning_server(sc, topo))
    env = simpy.Environment()
    try:
        net = QKDNetwork(env, topo, build_cipher(sc), seed=sc.seed)
        schedule_faults(env, net, build_faults(sc))
        tl = Timeline()
        run_schedule(env, job.schedule(env, net, sc.learning.rounds, tl), sc.horizon_s, tl)
    except ScenarioError:
        raise
    except QflError as exc:
        raise ScenarioError(sc.name, f"the network rejects this scenario: {exc}") from None
    return NetworkRun(sc, job, net, tl, topo, time.perf_counter() - t0)


def eval_rounds_for(rounds_done: int, eval_every: int, extra: Sequence[int] = ()) -> set[int]:
    """Rounds (1-based) after which to evaluate: every ``eval_every``-th, the last, extras."""
    out = {r for r in range(1, rounds_done + 1) if r % eval_every == 0}
    if rounds_done:
        out.add(rounds_done)
    out.update(r for r in extra if 1 <= r <= rounds_done)
    return out


def execute_learning(
    nrun: NetworkRun,
    on_eval: Callable[[int, list[EvalRow]], None],
    *,
    extra_eval_rounds: Sequence[int] = (),
) -> None:
    """Train the completed rounds of ``nrun``; each evaluation goes to ``on_eval``."""
    tl = nrun.timeline
    rounds = eval_rounds_for(tl.rounds_done, nrun.scenario.learning.eval_every, extra_eval_rounds)
    nrun.job.execute(tl, rounds, on_eval)


def _write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def _write_rows_atomic(path: Path, rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(columns), extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    tmp.replace(path)


def _records_rows(records: Sequence[Any]) -> tuple[list[dict[str, Any]], list[str]]:
    rows = to_rows(records)
    cols = list(rows[0]) if rows else []
    return rows, cols


def write_network_outputs(nrun: NetworkRun, folder: Path) -> None:
    """Write the resolved scenario, topology, transfers, key pools, faults and operations."""
    folder.mkdir(parents=True, exist_ok=True)
    sc = nrun.scenario
    _write_text_atomic(
        folder / "scenario.yaml",
        yaml.safe_dump(sc.model_dump(mode="json"), sort_keys=False, allow_unicode=True),
    )
    topo = nrun.topology
    topo_json = {
        "nodes": [
            {
                "name": n.name,
                "role": n.role,
                "flops_per_s": n.flops_per_s,
                "latitude": n.lat,
                "longitude": n.lon,
            }
            for n in topo.nodes
        ],
        "links": [
            {"a": lk.a, "b": lk.b, "length_km": lk.length_km, "skr_bps": lk.skr_bps}
            for lk in topo.links
        ],
    }
    _write_text_atomic(folder / "topology.json", json.dumps(topo_json, indent=2))
    net = nrun.net
    rows, cols = _records_rows([*net.records, *net.in_progress()])
    _write_rows_atomic(folder / "transfers.csv", rows, cols or ["id"])
    pool_rows = [
        {
            "sim_time_s": r.time,
            "link": r.link,
            "event": r.kind,
            "bits": r.bits,
            "level_bits": r.level,
        }
        for r in net.pool_log
    ]
    _write_rows_atomic(
        folder / "keypools.csv", pool_rows, ["sim_time_s", "link", "event", "bits", "level_bits"]
    )
    frows, fcols = _records_rows(net.fault_log)
    _write_rows_atomic(folder / "faults.csv", frows, fcols or ["time", "kind", "target", "detail"])
    _write_rows_atomic(
        folder / "ops.csv", nrun.timeline.ops, ["round", "node", "op", "start_s", "end_s"]
    )


def metric_row(row: EvalRow, t: float) -> dict[str, Any]:
    """One ``metrics.csv`` row: an evaluation at simulated time ``t`` (blank where n/a)."""
    return {
        "sim_time_s": t,
        "round": row.round,
        "node": row.node,
        "global_acc": "" if math.isnan(row.global_acc) else f"{row.global_acc:.6f}",
        "local_acc": "" if math.isnan(row.local_acc) else f"{row.local_acc:.6f}",
        "exit_acc": ";".join(f"{a:.6f}" for a in row.exit_acc),
    }


def summarize_run(
    nrun: NetworkRun, rows: Sequence[EvalRow], *, status: str, wall: dict[str, float]
) -> dict[str, Any]:
    """The summary figures of a run (what ``summary.json`` holds)."""
    sc = nrun.scenario
    tl = nrun.timeline
    net_sum = nrun.net.summary()
    means = [r for r in rows if r.node == "mean"]
    final = means[-1] if means else None
    target = sc.learning.target_accuracy

    def acc_of(r: EvalRow) -> float:
        if not math.isnan(r.global_acc):
            return r.global_acc
        return r.local_acc

    hit = next((r for r in means if acc_of(r) >= target), None)
    rates = [lk.skr_bps for lk in nrun.topology.links]
    end_s = tl.round_end_s[tl.rounds_done - 1] if tl.rounds_done else 0.0
    return {
        "scenario": sc.name,
        "method": sc.learning.method,
        "cipher": sc.cipher.policy,
        "status": status,
        "rounds_planned": sc.learning.rounds,
        "rounds_done": tl.rounds_done,
        "rounds_evaluated": len(means),
        "sim_time_end_s": end_s,
        "horizon_s": sc.horizon_s,
        "final_round": final.round if final else None,
        "final_global_acc": None
        if final is None or math.isnan(final.global_acc)
        else final.global_acc,
        "final_local_acc": None
        if final is None or math.isnan(final.local_acc)
        else final.local_acc,
        "final_exit_acc": list(final.exit_acc) if final else [],
        "target_accuracy": target,
        "rounds_to_target": hit.round if hit else None,
        "time_to_target_s": tl.round_end_s[hit.round - 1] if hit else None,
        "mean_skr_bps": sum(rates) / len(rates) if rates else 0.0,
        "min_skr_bps": min(rates) if rates else 0.0,
        "transfers_delivered": net_sum.delivered,
        "transfers_failed": net_sum.failed,
        "transfers_in_progress": net_sum.in_progress,
        "transfers_dropped": len(tl.dropped),  # model exchanges the learners never received
        "key_generated_bits": net_sum.key_generated_bits,
        "key_consumed_bits": net_sum.key_consumed_bits,
        "key_wasted_bits": net_sum.key_wasted_bits,
        "time_stalled_on_key_s": net_sum.key_wait_total_s,
        "transfer_latency_p50_s": net_sum.latency_p50_s,
        "transfer_latency_p99_s": net_sum.latency_p99_s,
        "wall_s": wall,
    }


def run_scenario(
    sc: Scenario,
    folder: Path | None,
    *,
    on_eval: Callable[[int, float, list[EvalRow]], None] | None = None,
    on_network: Callable[[NetworkRun], None] | None = None,
    plots: bool | None = None,
) -> RunResult:
    """Run a scenario end to end and (if ``folder`` is given) write its run folder.

    Parameters
    ----------
    sc : Scenario
        The resolved scenario.
    folder : Path or None
        The run folder (created); None keeps everything in memory.
    on_eval : callable, optional
        ``on_eval(round, sim_time_s, rows)`` after each evaluation (progress display).
    on_network : callable, optional
        Called once the network half is done.
    plots : bool, optional
        Draw the PNGs (default: the scenario's ``outputs.plots``).

    Notes
    -----
    A ``KeyboardInterrupt`` during training writes ``summary.json`` with status
    ``interrupted`` (and the plots of what was computed), then propagates.
    """
    t0 = time.perf_counter()
    nrun = simulate_network(sc)
    wall = {"network_s": nrun.wall_s}
    if folder is not None:
        write_network_outputs(nrun, folder)
    if on_network is not None:
        on_network(nrun)
    rows: list[EvalRow] = []
    metrics_fh = None
    writer = None
    if folder is not None:
        metrics_fh = open(folder / "metrics.csv", "w", newline="", encoding="utf-8")
        writer = csv.DictWriter(metrics_fh, fieldnames=list(METRIC_COLUMNS))
        writer.writeheader()
        metrics_fh.flush()

    def got(r: int, new: list[EvalRow]) -> None:
        t = nrun.timeline.round_end_s[r - 1]
        rows.extend(new)
        if writer is not None and metrics_fh is not None:
            writer.writerows(metric_row(x, t) for x in new)
            metrics_fh.flush()
        if on_eval is not None:
            on_eval(r, t, new)

    status = "complete"
    t1 = time.perf_counter()
    try:
        execute_learning(nrun, got)
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    finally:
        if metrics_fh is not None:
            metrics_fh.close()
        wall["learning_s"] = time.perf_counter() - t1
        wall["total_s"] = time.perf_counter() - t0
        summary = summarize_run(nrun, rows, status=status, wall=wall)
        if folder is not None:
            _write_text_atomic(folder / "summary.json", json.dumps(summary, indent=2))
            if sc.outputs.plots if plots is None else plots:
                from qfl.plots import redraw

                redraw(folder)
    return RunResult(folder, summary, rows)
