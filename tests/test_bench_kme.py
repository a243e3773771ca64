"""``benchmarks/bench_kme.py --smoke``: 3 SAE pairs for ~2 s against ``qfl kme serve`` on
the metro network, a kill -9 and restart in between; every invariant must hold."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytest.importorskip("requests")


@pytest.mark.timeout(240)
def test_bench_kme_smoke(tmp_path: Path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "bench_kme.py"),
            "--smoke",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=230,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["ok"] and res["keys_delivered"] > 0
    assert res["duplicate_key_ids"] == res["key_mismatches"] == res["held_lost"] == 0
    assert res["held_over_kill"] == 3 and res["bad_requests_400"] > 0
    assert res["server_keys_issued"] == res["keys_issued"]
    assert res["kme_bits_total"] <= res["generated_bits_total"]
