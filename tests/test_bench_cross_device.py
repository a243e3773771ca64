"""benchmarks/bench_cross_device.py runs at a tiny size and ends with its JSON line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(600)  # three fresh processes, each loading Fashion-MNIST (~15 s CPU)
def test_bench_cross_device_smoke() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, str(ROOT / "benchmarks" / "bench_cross_device.py"), "--smoke"]
    cmd += ["--models", "cnn", "--engine", "sequential", "--threads", "1"]
    out = subprocess.run(
        cmd, capture_output=True, text=True, check=True, env=env, timeout=600
    ).stdout
    record = json.loads(out.strip().splitlines()[-1])
    assert {"peak_memory_gb", "round_time_ratio", "vs_flower"} <= set(record)
    cnn = record["cnn"]
    assert cnn["clients"] == 60 and cnn["per_round"] == 10
    assert 0 < record["peak_memory_gb"] < 4
    assert record["round_time_ratio"] > 0
    assert cnn["working_set_bytes_per_client"] > 0
    assert len(cnn["qfl_round_s"]) == len(cnn["qfl_small_round_s"]) == 2


def test_gen_cross_device_scenario_writes_the_shipped_file(tmp_path: Path) -> None:
    """benchmarks/gen_cross_device_scenario.py reproduces scenarios/cross-device-edge.yaml,
    which validates."""
    repo = Path(__file__).resolve().parents[1]
    proc = subprocess.run(
        [sys.executable, str(repo / "benchmarks" / "gen_cross_device_scenario.py")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    shipped = (repo / "scenarios" / "cross-device-edge.yaml").read_text(encoding="utf-8")
    assert proc.stdout == shipped
    out = tmp_path / "edge.yaml"
    out.write_text(proc.stdout, encoding="utf-8")
    from qfl.scenario import load_scenario

    sc = load_scenario(out)
    assert sc.learning.clients_per_round == 30
