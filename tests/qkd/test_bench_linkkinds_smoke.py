"""benchmarks/bench_linkkinds.py runs at a tiny size and reports every registered kind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from qkd.kinds import kind_names

ROOT = Path(__file__).resolve().parents[2]


def test_bench_linkkinds_smoke() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "bench_linkkinds.py"),
            "--links",
            "8",
            "--repeat",
            "1",
        ],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        timeout=120,
    ).stdout
    record = json.loads(out.strip().splitlines()[-1])
    assert record["links"] == 8
    assert set(record["seconds"]) == set(kind_names())
    assert record["ratio_to_decoy_bb84"]["decoy-bb84"] == 1.0
    assert all(v > 0 for v in record["rate_bps_sum"].values())
