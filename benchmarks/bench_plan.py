"""Threshold search cost: ``qfl plan threshold`` vs one run of the same scenario.

The synchronous FedAvg scenario of ``bench_sweep_reuse.py`` (six clients behind two relays,
OTP): the key rate moves only *when* rounds complete, so the search trains once (the point
with the most rounds, evaluated after every round) and answers every other point from its
network half. Measured in one process and one run, after a warm-up:

- ``single_run_s``: :func:`qfl.cosim.run_scenario` of the scenario at ``rate_scale`` 1;
- ``plan_s``: :func:`qfl.cosim.studies.threshold` over ``qkd.rate_scale`` in [1e-4, 1] (a
  10^4 range) to a relative tolerance of 10 %, inline executor (the same threads);
- ``cost_ratio = plan_s / single_run_s`` (target <= 2), ``evaluations`` and
  ``learning_executions``; ``cpu_ratio``, the same ratio of the process's CPU time (less
  sensitive to other jobs on a shared machine).

The target accuracy is set a little below what the full run reaches, and the deadline at
three times the full-rate run's duration, so the answer lies inside the range. ``--busy``
runs one process spinning a pure-Python loop beside the measurement (killed afterwards);
``--smoke`` is a seconds-long run of the same code (2 rounds, 40 samples) for the tests.

Usage: ``python benchmarks/bench_plan.py [--rounds N] [--samples N] [--busy] [--smoke]``;
the last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from qfl.threads import default_threads, prepare_env

prepare_env()  # idle OpenMP threads sleep (as the qfl command has them), set before torch loads
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_sweep_reuse import scenario_text  # noqa: E402

from qfl.cosim import run_scenario  # noqa: E402
from qfl.cosim.studies import threshold  # noqa: E402
from qfl.scenario import parse_scenario  # noqa: E402


def main() -> None:
    """Run the benchmark and print the JSON line."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--samples", type=int, default=250)
    ap.add_argument("--busy", action="store_true", help="One busy process beside the run.")
    ap.add_argument("--smoke", action="store_true", help="A seconds-long run (tests).")
    args = ap.parse_args()
    if args.smoke:
        args.rounds, args.samples = 2, 40
    torch.set_num_threads(default_threads())  # the qfl command's default: one per core
    sc = parse_scenario(scenario_text(args.rounds, args.samples))
    busy = None
    if args.busy:
        busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        out = measure(sc, warm=not args.smoke)
    finally:
        if busy is not None:
            busy.kill()
            busy.wait()
    out["busy_process"] = args.busy
    out["load_1min"] = round(os.getloadavg()[0], 2)
    print(json.dumps(out))


def measure(sc: Any, *, warm: bool = True) -> dict[str, Any]:
    """One run and one threshold search of ``sc``, timed; print a summary and return the
    figures."""
    with tempfile.TemporaryDirectory() as tmp:
        if warm:
            one = sc.learning.model_copy(update={"rounds": 1})
            run_scenario(sc.model_copy(update={"learning": one}), None, plots=False)
        # (the warm-up pays the dataset load and caches, for neither)
        t0, c0 = time.perf_counter(), time.process_time()
        single = run_scenario(sc, Path(tmp) / "single", plots=False)
        single_s, single_cpu = time.perf_counter() - t0, time.process_time() - c0
        acc = single.summary["final_global_acc"]
        target = round(0.95 * acc, 3)
        within = 3 * single.summary["sim_time_end_s"]
        folder = Path(tmp) / "plan"
        folder.mkdir()
        t1, c1 = time.perf_counter(), time.process_time()
        res = threshold(sc, folder, vary="qkd.rate_scale", target=target, within_s=within,
                        lo=1e-4, hi=1.0, rtol=0.1)  # fmt: skip
        plan_s, plan_cpu = time.perf_counter() - t1, time.process_time() - c1
    br = res.meta["bracket"]
    print(f"single run: {single_s:.1f} s (final accuracy {acc:.4f})")
    print(f"threshold: {res.answer}")
    print(
        f"{res.meta['evaluations']} evaluations, {res.meta['learning_executions']} learning "
        f"execution(s), {plan_s:.1f} s"
    )
    return {
        "evaluations": res.meta["evaluations"],
        "learning_executions": res.meta["learning_executions"],
        "target": target,
        "within_s": round(within, 3),
        "bracket": [br["fails_at"], br["holds_at"]],
        "single_run_s": round(single_s, 2),
        "plan_s": round(plan_s, 2),
        "cost_ratio": round(plan_s / single_s, 3),
        "single_run_cpu_s": round(single_cpu, 2),
        "plan_cpu_s": round(plan_cpu, 2),
        "cpu_ratio": round(plan_cpu / single_cpu, 3),
    }


if __name__ == "__main__":
    main()
