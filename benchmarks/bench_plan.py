"""Threshold search cost: ``qfl plan threshold`` vs one run of the same scenario.

The synchronous FedAvg scenario of ``bench_sweep_reuse.py`` (six clients behind two relays,
OTP): the key rate moves only *when* rounds complete, so the search trains once (the point
with the most rounds, evaluated after every round) and answers every other point from its
network half. Measured in one process and one run, after a warm-up:

- ``single_run_s``: :func:`qfl.cosim.run_scenario` of the scenario at ``rate_scale`` 1;
- ``plan_s``: :func:`qfl.cosim.studies.threshold` over ``qkd.rate_scale`` in [1e-4, 1] (a
  10^4 range) to a relative tolerance of 10 %, inline executor (the same threads);
- ``cost_ratio = plan_s / single_run_s`` (target <= 2), ``evaluations`` and
  ``learning_executions``.

The target accuracy is set a little below what the full run reaches, and the deadline at
three times the full-rate run's duration, so the answer lies inside the range.

Usage: ``python benchmarks/bench_plan.py [--rounds N] [--samples N]``; the last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_sweep_reuse import scenario_text

from qfl.cosim import run_scenario
from qfl.cosim.studies import threshold
from qfl.scenario import parse_scenario


def main() -> None:
    """Run the benchmark and print the JSON line."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--samples", type=int, default=250)
    args = ap.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    sc = parse_scenario(scenario_text(args.rounds, args.samples))
    with tempfile.TemporaryDirectory() as tmp:
        warm = sc.model_copy(update={"learning": sc.learning.model_copy(update={"rounds": 1})})
        run_scenario(warm, None, plots=False)  # dataset load and caches, paid by neither
        t0 = time.perf_counter()
        single = run_scenario(sc, Path(tmp) / "single", plots=False)
        single_s = time.perf_counter() - t0
        acc = single.summary["final_global_acc"]
        target = round(0.95 * acc, 3)
        within = 3 * single.summary["sim_time_end_s"]
        folder = Path(tmp) / "plan"
        folder.mkdir()
        t1 = time.perf_counter()
        res = threshold(sc, folder, vary="qkd.rate_scale", target=target, within_s=within,
                        lo=1e-4, hi=1.0, rtol=0.1)  # fmt: skip
        plan_s = time.perf_counter() - t1
    br = res.meta["bracket"]
    print(f"single run: {single_s:.1f} s (final accuracy {acc:.4f})")
    print(f"threshold: {res.answer}")
    print(
        f"{res.meta['evaluations']} evaluations, {res.meta['learning_executions']} learning "
        f"execution(s), {plan_s:.1f} s"
    )
    print(
        json.dumps(
            {
                "evaluations": res.meta["evaluations"],
                "learning_executions": res.meta["learning_executions"],
                "target": target,
                "within_s": round(within, 3),
                "bracket": [br["fails_at"], br["holds_at"]],
                "single_run_s": round(single_s, 2),
                "plan_s": round(plan_s, 2),
                "cost_ratio": round(plan_s / single_s, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
