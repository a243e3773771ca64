"""Where a sweep's learning tasks run: this process, local worker processes, or Ray.

A task is a point's scenario (JSON), its network timeline (rounds done, failed sends) and
the rounds to evaluate after; the worker builds the learning job and trains those rounds
(it never re-simulates the network) on the sweep's thread count (``--threads``,
``$QFL_THREADS``, else :func:`qfl.threads.default_threads`: every worker, local or Ray, and
the inline executor use the same count, so a point gives the numbers ``qfl simulate`` gives
at that count). :func:`iter_tasks` yields each task's outcome as soon
as it finishes, so the caller can write that point at once: a sweep keeps every finished
point whatever happens to the others, and local workers die with the parent process
(Linux: a parent-death signal), so none outlives an interrupted or killed sweep.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import Any

from qfl.cosim.learnexec import check_executor_choice
from qfl.scenario import Scenario
from qfl.threads import resolve_threads, usable_cores

__all__ = ["EXECUTORS", "Task", "check_executor", "iter_tasks", "learn", "workers_for"]

EXECUTORS = ("local", "ray", "inline")

Task = tuple[str, dict[str, Any], list[int]]
"""``(scenario_json, {"rounds_done": n, "dropped": [...]}, extra_eval_rounds)``."""

Outcome = tuple[int, list[dict[str, Any]] | BaseException]


def learn(
    scenario_json: str, timeline: dict[str, Any], extra_eval_rounds: list[int], threads: int
) -> list[dict[str, Any]]:
    """Worker: build the point's learning job and train the rounds of its timeline (the
    network half was simulated by the parent; only its outcome comes here), on ``threads``
    torch threads (0: leave the process's count as it is)."""
    import dataclasses

    import torch

    from qfl.cosim.netbuild import build_topology
    from qfl.cosim.run import build_job, eval_rounds_for
    from qfl.cosim.schedule import Timeline

    if threads > 0:
        torch.set_num_threads(threads)
    sc = Scenario.model_validate_json(scenario_json)
    job = build_job(sc, build_topology(sc))
    tl = Timeline(
        rounds_done=timeline["rounds_done"], dropped={tuple(d) for d in timeline["dropped"]}
    )
    out: list[dict[str, Any]] = []

    def got(_r: int, rows: list[Any]) -> None:
        out.extend(dataclasses.asdict(x) for x in rows)

    rounds = eval_rounds_for(tl.rounds_done, sc.learning.eval_every, extra_eval_rounds)
    job.execute(tl, rounds, got)
    return out


def _die_with_parent(parent: int) -> None:
    """Worker initializer: be killed when the parent dies (Linux ``PR_SET_PDEATHSIG``)."""
    import signal
    import sys

    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before the signal was armed
        os._exit(1)


def _inline(tasks: Sequence[Task], threads: int) -> Iterator[Outcome]:
    from qfl.threads import using_threads

    with using_threads(threads):
        for k, (s, t, e) in enumerate(tasks):
            try:
                yield k, learn(s, t, e, 0)
            except (KeyboardInterrupt, SystemExit):
                raise
            except Exception as exc:  # a failing point is recorded; the others go on
                yield k, exc


def workers_for(n_tasks: int, jobs: int | None, threads: int) -> int:
    """Local worker processes: ``jobs``, else as many as the usable cores hold at
    ``threads`` threads each; never more than the tasks."""
    return max(1, min(n_tasks, jobs or usable_cores() // threads))


def _local(tasks: Sequence[Task], jobs: int | None, threads: int) -> Iterator[Outcome]:
    import concurrent.futures as cf
    import multiprocessing as mp

    workers = workers_for(len(tasks), jobs, threads)
    ctx = mp.get_context("spawn")
    pool = cf.ProcessPoolExecutor(
        max_workers=workers, mp_context=ctx, initializer=_die_with_parent, initargs=(os.getpid(),)
    )
    try:
        futures = {pool.submit(learn, s, t, e, threads): k for k, (s, t, e) in enumerate(tasks)}
        for f in cf.as_completed(futures):
            exc = f.exception()
            yield futures[f], (f.result() if exc is None else exc)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def _ray(tasks: Sequence[Task], address: str | None, threads: int) -> Iterator[Outcome]:
    import ray

    started = not ray.is_initialized()
    if started:
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    try:
        # one CPU requested per task (a larger request may fit no node of a small cluster);
        # the task still runs on ``threads`` threads, so its numbers match the other executors
        remote = ray.remote(learn)
        refs = {remote.remote(s, t, e, threads): k for k, (s, t, e) in enumerate(tasks)}
        pending = list(refs)
        while pending:
            (ref,), pending = ray.wait(pending, num_returns=1)
            try:
                yield refs[ref], ray.get(ref)
            except ray.exceptions.RayTaskError as exc:
                yield refs[ref], exc.as_instanceof_cause()
    finally:
        if started:
            ray.shutdown()


def check_executor(executor: str, jobs: int | None) -> None:
    """Check the executor options before any work (``--executor``, ``--jobs``)."""
    check_executor_choice(executor, EXECUTORS, "--jobs", jobs)


def iter_tasks(
    tasks: Sequence[Task],
    executor: str,
    jobs: int | None = None,
    address: str | None = None,
    threads: int | None = None,
) -> Iterator[Outcome]:
    """Run learning tasks; yield ``(task index, rows or the exception it raised)`` as each
    finishes (in completion order). Each task runs on ``threads`` torch threads (default:
    ``$QFL_THREADS``, else :func:`qfl.threads.default_threads`)."""
    check_executor(executor, jobs)
    n_threads, _ = resolve_threads(threads)
    if executor == "local" and workers_for(len(tasks), jobs, n_threads) > 1:
        return _local(tasks, jobs, n_threads)
    if executor in ("inline", "local"):
        return _inline(tasks, n_threads)
    return _ray(tasks, address, n_threads)
