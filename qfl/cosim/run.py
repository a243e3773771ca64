"""Run a scenario: network half, learning half, run folder.

:func:`simulate_network` builds the network and the learning job and simulates the
timeline (no training). :func:`execute_learning` trains exactly the rounds that completed.
:func:`run_scenario` does both and writes the run folder (:mod:`qfl.cosim.outputs`).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import simpy

from network import QKDNetwork, schedule_faults
from qfl.cosim.bottlenecks import (
    binding,
    key_wait_by_link,
    link_report,
    round_report,
    time_shares,
    window_report,
)
from qfl.cosim.jobs import EvalRow, Job, make_job
from qfl.cosim.keypaths import scenario_findings
from qfl.cosim.netbuild import (
    build_cipher,
    build_faults,
    check_network,
    learning_clients,
    learning_server,
)
from qfl.cosim.netrun import NetworkRun
from qfl.cosim.outputs import RunFolder, write_unsimulated
from qfl.cosim.schedule import Timeline, run_schedule
from qfl.scenario import Scenario, ScenarioError
from qkd.errors import QflError

__all__ = [
    "NetworkRun",
    "RunResult",
    "build_job",
    "eval_rounds_for",
    "execute_learning",
    "learning_key",
    "one_line",
    "routing_of",
    "run_scenario",
    "simulate_network",
    "summarize_run",
]


@dataclass
class RunResult:
    """A finished (or interrupted) run."""

    folder: Path | None
    summary: dict[str, Any]
    rows: list[EvalRow] = field(default_factory=list)


def learning_key(sc: Scenario, clients: list[str], flops: list[float], server: str | None) -> str:
    """What a learning job is built from: runs with equal keys can share one job."""
    data = {
        "learning": sc.learning.model_dump(mode="json", exclude={"rounds", "eval_every"}),
        "compute": sc.compute.model_dump(mode="json"),
        "seed": sc.seed,
        "nodes": [clients, flops, server],
    }
    return json.dumps(data, sort_keys=True)


def build_job(sc: Scenario, topo: Any, cache: dict[str, Job] | None = None) -> Job:
    """The learning job of ``sc`` on its built topology (from ``cache`` when an equal one is
    there: a sweep's points share their learning inputs' datasets and models)."""
    clients = learning_clients(sc, topo)
    speed = {n.name: n.flops_per_s for n in topo.nodes}
    flops = [speed[c] for c in clients]
    server = learning_server(sc, topo)
    key = learning_key(sc, clients, flops, server)
    if cache is not None and key in cache:
        return cache[key]
    job = make_job(sc, clients, flops, server)
    if cache is not None:
        cache[key] = job
    return job


def routing_of(sc: Scenario, topo: Any) -> str:
    """The scenario's ``routing``; by default ``key-aware`` when some link produces no key
    (latency routing would send models into it, where they fail), else ``latency``."""
    if sc.routing is not None:
        return sc.routing
    return "key-aware" if any(lk.skr_bps == 0 for lk in topo.links) else "latency"


def simulate_network(
    sc: Scenario,
    *,
    job: Job | None = None,
    job_cache: dict[str, Job] | None = None,
    topo: Any = None,
) -> NetworkRun:
    """Build the network and the learning job, and simulate the timeline.

    Parameters
    ----------
    job : Job, optional
        The learning job (default: built from the scenario, or taken from ``job_cache``).
    topo : TopologySpec, optional
        The topology :func:`~qfl.cosim.netbuild.check_network` returned for ``sc`` (default:
        checked and built here).

    Raises
    ------
    ScenarioError
        Anything in the scenario the network or the learning method rejects, with its path.
    """
    t0 = time.perf_counter()
    if topo is None:
        topo = check_network(sc)
    if job is None:
        job = build_job(sc, topo, job_cache)
    env = simpy.Environment()
    try:
        net = QKDNetwork(env, topo, build_cipher(sc), seed=sc.seed, routing=routing_of(sc, topo))
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


def summarize_run(
    nrun: NetworkRun, rows: Sequence[EvalRow], *, status: str, wall: dict[str, float]
) -> dict[str, Any]:
    """The summary figures of a run (what ``summary.json`` holds).

    Besides the run's totals, ``round_breakdown`` gives each completed round's split into
    compute, key, bandwidth, propagation and fault time and the step that ended it
    (:func:`~qfl.cosim.bottlenecks.round_report`), and ``links`` each link's key rate, key
    generated / consumed / wasted, key wait and utilisation
    (:func:`~qfl.cosim.bottlenecks.link_report`, over the run's whole simulated time), and
    ``window_waits`` each time key waited for a window of a link's schedule (a satellite
    pass, :func:`~qfl.cosim.bottlenecks.window_report`).
    """
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
    shares = time_shares(tl)
    waits = key_wait_by_link([*nrun.net.records, *nrun.net.in_progress()])
    no_key = [f for f in scenario_findings(sc, nrun.topology) if f.isolated]
    rates = [lk.skr_bps for lk in nrun.topology.links]
    links = nrun.net.links
    names = {pair: lk.name for pair, lk in links.items()}
    end_s = tl.round_end_s[tl.rounds_done - 1] if tl.rounds_done else 0.0
    return {
        "scenario": sc.name,
        "method": sc.learning.method,
        "cipher": sc.cipher.policy,
        "routing": routing_of(sc, nrun.topology),
        "threads": _threads_in_use(),
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
        "key_auth_bits": net_sum.key_auth_bits,  # spent authenticating QKD's own blocks
        "time_stalled_on_key_s": net_sum.key_wait_total_s,
        "time_share": shares,
        "key_wait_by_link_s": waits,
        "binds": binding(shares, waits, no_key, never_received=len(tl.dropped)),
        "no_key_path": [f"{f.field}: {f.line()}" for f in no_key],
        "transfer_latency_p50_s": net_sum.latency_p50_s,
        "transfer_latency_p99_s": net_sum.latency_p99_s,
        "round_breakdown": round_report(tl, names),
        "links": link_report(links.values(), net_sum.links, waits, net_sum.time),
        "window_waits": window_report(nrun.net.window_waits),
        "wall_s": wall,
        **_own_learning(nrun.job, sc),
    }


def _own_learning(job: Job, sc: Scenario) -> dict[str, Any]:
    """A user's model and dataset: which they are, and the engine that trained them."""
    if job.engine_note is None:
        return {}
    lr = sc.learning
    return {"model": lr.model, "dataset": lr.dataset, "engine": dict(job.engine_note)}


def run_scenario(
    sc: Scenario,
    folder: Path | None,
    *,
    on_eval: Callable[[int, float, list[EvalRow]], None] | None = None,
    on_network: Callable[[NetworkRun], None] | None = None,
    plots: bool | None = None,
    topo: Any = None,
    on_progress: Callable[[int, str], None] | None = None,
) -> RunResult:
    """Run a scenario end to end and (if ``folder`` is given) write its run folder.

    Parameters
    ----------
    sc : Scenario
        The resolved scenario.
    folder : Path or None
        The run folder (created; see :mod:`qfl.cosim.outputs`); None keeps everything in
        memory.
    on_eval : callable, optional
        ``on_eval(round, sim_time_s, rows)`` after each evaluation (progress display).
    on_network : callable, optional
        Called once the network half is done.
    plots : bool, optional
        Draw the PNGs (default: the scenario's ``outputs.plots``).
    topo : TopologySpec, optional
        The checked topology of ``sc`` (see :func:`simulate_network`).
    on_progress : callable, optional
        ``on_progress(round, text)`` during a round (what it is doing).

    Notes
    -----
    Whatever happens, ``summary.json`` says how the run ended: ``complete``; ``interrupted``
    (Ctrl-C or SIGTERM, raised as ``KeyboardInterrupt``; the plots of what was computed are
    drawn); or ``failed``, with the error's one-line text in ``error`` (any exception, in
    either half). The exception then propagates.
    """
    t0 = time.perf_counter()
    try:
        nrun = simulate_network(sc, topo=topo)
    except BaseException as exc:
        if folder is not None:
            _write_failed(folder, sc, exc)
        raise
    wall = {"network_s": nrun.wall_s}
    nrun.job.progress = on_progress
    out = RunFolder(folder, nrun) if folder is not None else None
    rows: list[EvalRow] = []

    def got(r: int, new: list[EvalRow]) -> None:
        rows.extend(new)
        if out is not None:
            out.add(new)
        if on_eval is not None:
            on_eval(r, nrun.timeline.round_end_s[r - 1], new)

    status, error = "complete", ""
    t1 = time.perf_counter()
    try:
        if on_network is not None:
            on_network(nrun)
        execute_learning(nrun, got)
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    except BaseException as exc:
        status, error = "failed", one_line(exc)
        raise
    finally:
        wall["learning_s"] = time.perf_counter() - t1
        wall["total_s"] = time.perf_counter() - t0
        summary = summarize_run(nrun, rows, status=status, wall=wall)
        if error:
            summary["error"] = error
        if out is not None:
            draw = sc.outputs.plots if plots is None else plots
            out.close(summary, plots=draw and status != "failed")
    return RunResult(folder, summary, rows)


def _threads_in_use() -> int | None:
    """Torch's intra-op threads (numbers are reproducible for a given count)."""
    import sys

    torch = sys.modules.get("torch")
    return int(torch.get_num_threads()) if torch is not None else None


def one_line(exc: BaseException) -> str:
    """An exception as one line of at most 300 characters (for summaries and tables)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    if not isinstance(exc, QflError):
        text = f"{type(exc).__name__}: {text}"
    return text if len(text) <= 300 else text[:297] + "..."


def _write_failed(folder: Path, sc: Scenario, exc: BaseException) -> None:
    """A run that ended before its network half finished: the scenario and the error."""
    status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
    write_unsimulated(folder, sc, {"scenario": sc.name, "status": status, "error": one_line(exc)})
