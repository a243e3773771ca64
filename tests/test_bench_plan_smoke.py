"""``benchmarks/bench_plan.py --smoke``: the planner benchmark runs, end to end, in seconds.

The same code as the default job (one run, then a threshold search over ``qkd.rate_scale``
in [1e-4, 1]) on 2 rounds of 40 samples per client; the figures are checked for sense, not
speed (the machine may be busy).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_bench_plan_smoke(fmnist: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "MPLBACKEND": "Agg"}
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "bench_plan.py"), "--smoke"],
        capture_output=True, text=True, env=env, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["learning_executions"] == 1  # the key rate only moves when rounds happen
    assert out["evaluations"] >= 3  # the two ends and at least one bisection step
    fails, holds = out["bracket"]
    assert 1e-4 <= fails < holds <= 1.0 and holds / fails <= 1.1 + 1e-9
    assert out["single_run_s"] > 0 and out["plan_s"] > 0
    # the ratio is of the unrounded times; the printed times are rounded to 0.01 s
    assert out["cost_ratio"] == pytest.approx(out["plan_s"] / out["single_run_s"], abs=0.01)
    assert out["cpu_ratio"] > 0 and out["busy_process"] is False
