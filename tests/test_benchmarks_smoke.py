"""Every script under ``benchmarks/`` runs: each at a tiny size, as a user runs it.

Each script is started as a subprocess (``python benchmarks/NAME.py ...``) with its smoke
size (``--smoke`` or its own size flags), must exit 0 and print the figures it exists to
report: its human-readable lines and, as its last line, its JSON object with those figures
as numbers. These are checks that the scripts work, not measurements. ``seeds.py`` (the
``--seeds K`` helper of the reproductions) runs inside ``repro_deffd.py --seeds 2``;
``bench_plan.py`` has its own smoke test (``tests/test_bench_plan_smoke.py``).

The last test fails when a script in ``benchmarks/`` is named by no test under ``tests/``,
so a new benchmark comes with a smoke test.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "benchmarks"


@dataclass(frozen=True)
class Smoke:
    """One script's smoke run and what its output must hold."""

    args: tuple[str, ...]
    lines: tuple[str, ...]  # regular expressions, each matching some line of stdout
    numbers: tuple[str, ...]  # JSON fields (dotted paths) that must be finite numbers
    checks: dict[str, Any] = field(default_factory=dict)  # JSON fields with exact values


SMOKES: dict[str, Smoke] = {
    "bench_bb84.py": Smoke(
        ("--smoke",),
        (r"^simulate: .* pulses/s", r"^  QBER 2%: f = \d\.\d+", r"^privacy amplification: ",
         r"^pipeline distill: .* sifted bits/s", r"^link end to end: .* final key \d+ bits"),
        ("pulses_per_s", "cascade_efficiency", "cascade_bits_per_s", "pa_bits_per_s",
         "pipeline_sifted_bits_per_s", "link.final_length"),
    ),
    "bench_contention.py": Smoke(
        ("--smoke",),
        (r"default +idle +\d+\.\d s", r"default +contended +\d+\.\d s",
         r"default: idle \d+\.\d s, contended \d+\.\d s, ratio \d+\.\d\d"),
        ("idle_s", "contended_s", "ratio"),
        {"repeat": 1, "smoke": True},
    ),
    "bench_cosim_scale.py": Smoke(
        ("--nodes", "60", "--clients", "12"),
        (r"^network half: \d+\.\d s wall; 1 round", r"^topology\.png: \d+\.\d s"),
        ("network_half_s", "transfers", "delivered", "topology_png_s", "check_network_s"),
        {"nodes": 60, "clients": 12, "rounds_done": 1},
    ),
    "bench_engine.py": Smoke(
        ("--clients", "2", "--samples-per-client", "32", "--repeats", "1"),
        (r"fp32 matmul \d+\.\d GFLOP/s",
         r"^sequential \d+ samples/s, batched \(\w+\) \d+ samples/s",
         r"^ceiling at the fp32 matmul rate: \d+\.\d\dx"),
        ("batched_samples_per_s", "sequential_samples_per_s", "speedup", "matmul_gflops",
         "ceiling_speedup", "max_abs_weight_diff"),
        {"clients": 2, "model": "cnn"},
    ),
    "bench_keyrate.py": Smoke(  # every link kind too (qkd.kinds)
        ("--links", "20", "--repeat", "1"),
        (r"^finite key decoy-2: \d+\.\d\d s; decoy-1: ", r"^ +150\.0 km: finite [\d.e+]+ b/s",
         r"^every kind, ratio to decoy-bb84: .*decoy-bb84 1x", r"^cv-gg02 +\S+ +20 links",
         r"^mdi relay 30%, vacuum \+ weak decoy: \d+\.\d{3} s"),
        ("finite_key_s", "finite_key_decoy1_s", "asymptotic_s", "rate_bps_sum",
         "kinds_seconds.mdi", "kinds_seconds.tf-sns", "kinds_seconds.tf-pm",
         "kinds_seconds.cv-gg02", "kinds_max_s", "kinds_rate_bps_sum.tf-pm",
         "variants_seconds.cv-gg02 V_A optimised"),
        {"links": 20, "ratio_to_decoy_bb84.decoy-bb84": 1.0},
    ),
    "bench_network.py": Smoke(
        ("--nodes", "60", "--transfers", "300", "--horizon", "3600", "--naive-window", "120"),
        (r"measured ratio \d+\.\dx", r"speedup \d+x"),
        ("wall_s", "events_per_transfer", "speedup_measured_window", "speedup_vs_naive"),
        {"nodes": 60, "transfers": 300, "delivered": 300},
    ),
    "bench_sweep_reuse.py": Smoke(
        ("--smoke",),
        (r"^single run: \d+\.\d s \(final accuracy 0\.\d{4}\)",
         r"^sweep of 3 key rates: .* learning jobs run: 1",
         r"^  rate_scale +100\.0: failed: .*capacity_bits",  # it crashed on such a point
         r"^  rate_scale +0\.01: mean key rate [\d.e+]+ bit/s, .* accuracy 0\.\d{4}"),
        ("single_run_s", "sweep_s", "cost_ratio"),
        {"points": 3, "failed_points": 1, "learning_jobs": 1, "rounds": 1},
    ),
    "bench_vs_flower.py": Smoke(  # qfl's side only: Flower is not installed beside qfl
        ("--only", "qfl", "--repeats", "1", "--clients", "3", "--pool", "600", "--rounds", "1",
         "--cores", "1"),
        (r"^  rep 0: qfl +\d+\.\d s +\d+ samples/s  acc \d+\.\d\d %",
         r"^qfl \(\w+ route, \d threads?\): best \d+ samples/s"),
        ("qfl_samples_per_s", "qfl_acc", "matmul_gflops", "qfl_samples_per_cpu_s"),
        {"clients": 3, "rounds": 1, "flower_samples_per_s": None, "ratio": None},
    ),
    "repro_deffd.py": Smoke(  # --seeds 2: seeds.py's mean ± std over two seeds
        ("--quick", "--methods", "def-fd-mse,gossip-avg", "--clients", "4", "--rounds", "1",
         "--eval-every", "1", "--samples-per-client", "40", "--test-samples", "100",
         "--engine", "sequential", "--seeds", "2"),
        (r"^over seeds \[0, 1\]", r"^\| def-fd-mse \| \d+\.\d\d ± \d+\.\d\d \| ",
         r"^\| gossip-avg \| \d+\.\d\d ± \d+\.\d\d \| "),
        ("mean.def-fd-mse.global_acc", "std.def-fd-mse.global_acc",
         "mean.gossip-avg.local_acc", "per_seed.1.def-fd-mse.global_acc"),
        {"seeds": [0, 1]},
    ),
    "repro_multiexit.py": Smoke(
        ("--smoke", "--threads", "1"),
        (r"^personalized accuracy: ME \d+\.\d\d % \(paper 81\.38\), baseline \d+\.\d\d %",
         r"^ME accuracy per exit: \d+\.\d\d / \d+\.\d\d / \d+\.\d\d %"),
        ("me_personalized_acc", "baseline_personalized_acc", "exit_acc.0", "exit_acc.2",
         "wall_s"),
        {"settings.smoke": True},
    ),
    "repro_ssl.py": Smoke(
        ("--smoke", "--threads", "1"),
        (r"^scale: smoke; device cpu", r"^client flowers102: \d+ labeled",
         r"^  SimCLR round +1: NT-Xent per client \[\d+\.\d{3}, \d+\.\d{3}\]",
         r"^intel +\d+\.\d\d% +\d+\.\d\d%"),
        ("ssl.flowers102", "ssl.intel", "centralized.flowers102", "centralized.intel",
         "pretrain_loss_last.0"),
    ),
}  # fmt: skip


def _field(data: Any, path: str) -> Any:
    for part in path.split("."):
        data = data[int(part)] if isinstance(data, list) else data[part]
    return data


def run_script(name: str, args: tuple[str, ...]) -> tuple[str, dict[str, Any]]:
    """Run ``benchmarks/name`` as a user does; its stdout and its last line's JSON."""
    env = dict(os.environ, MPLBACKEND="Agg")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    proc = subprocess.run(
        [sys.executable, str(BENCH / name), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, f"{name} exited {proc.returncode}:\n{proc.stderr[-3000:]}"
    lines = proc.stdout.strip().splitlines()
    assert lines, f"{name} printed nothing"
    return proc.stdout, json.loads(lines[-1])


@pytest.mark.timeout(300)
@pytest.mark.parametrize("name", sorted(SMOKES))
def test_benchmark_runs_at_a_tiny_size(name: str) -> None:
    smoke = SMOKES[name]
    out, result = run_script(name, smoke.args)
    for pattern in smoke.lines:
        assert re.search(pattern, out, re.MULTILINE), f"{name}: no line matches {pattern!r}"
    for path in smoke.numbers:
        value = _field(result, path)
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        assert ok and math.isfinite(value), f"{name}: {path} = {value!r}, not a finite number"
    for path, want in smoke.checks.items():
        assert _field(result, path) == want, f"{name}: {path} = {_field(result, path)!r}"


def test_every_benchmark_has_a_smoke_test() -> None:
    """A script under benchmarks/ that no test names (here or in another test file) fails."""
    others = "\n".join(
        p.read_text(encoding="utf-8")
        for p in (REPO / "tests").rglob("*.py")
        if p.resolve() != Path(__file__).resolve()
    )
    covered = set(SMOKES) | {"seeds.py"}  # seeds.py: repro_deffd.py --seeds 2 runs it
    missing = [
        p.name
        for p in sorted(BENCH.glob("*.py"))
        if p.name not in covered and not re.search(rf"\b{re.escape(p.name)}\b", others)
    ]
    assert not missing, f"benchmarks without a smoke test: {missing}"
