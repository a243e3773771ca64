"""Smoke test of ``bench_vs_flower.py --adapter`` (the job through qfl's Flower adapter),
at a tiny size, where Flower is installed (the Flower environment)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("flwr")

ROOT = Path(__file__).resolve().parents[1]


def test_the_adapter_side_runs_and_reports(fmnist: Path) -> None:
    env = {**os.environ, "QFL_DATA_DIR": str(fmnist), "PYTHONPATH": str(ROOT)}
    args = ["--only", "adapter", "--repeats", "1", "--clients", "3", "--pool", "600",
            "--rounds", "1", "--cores", "1"]  # fmt: skip
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_vs_flower.py"), *args],
        capture_output=True, text=True, env=env, timeout=600, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["adapter_seconds"] > 0 and 0 < out["adapter_acc"] <= 1
    assert out["adapter_network_s"] < out["adapter_seconds"]
    assert out["flower_seconds"] is None and out["adapter_over_flower"] is None
    assert "qfl's Flower adapter (learning.method: flower" in proc.stdout
