"""Learning reuse across sweep points: a 10-point key-rate sweep vs one run.

The network timeline of a synchronous FedAvg scenario depends on the key rate only through
*when* rounds happen, not *what* is learned, so every point of a key-rate sweep has the same
learning inputs; ``qfl.cosim.sweep.run_sweep`` simulates the ten network timelines and trains once.
This script measures, in one process and one run:

- ``single_run_s``: ``qfl.cosim.run_scenario`` of the base scenario (network + learning);
- ``sweep_s``: ``qfl.cosim.sweep.run_sweep`` over ``qkd.rate_scale`` in ten values (inline
  executor, so both use the same threads);
- ``cost_ratio = sweep_s / single_run_s`` (target < 2).

Usage: ``python benchmarks/bench_sweep_reuse.py [--rounds N] [--samples N]``. The last line
is one JSON object with ``points``, ``single_run_s``, ``sweep_s``, ``cost_ratio``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch

from qfl.cosim import run_scenario
from qfl.cosim.sweep import SweepSpec, run_sweep
from qfl.scenario import parse_scenario

SCALES = [0.001, 0.002, 0.005, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0]


def scenario_text(rounds: int, samples: int) -> str:
    """A synchronous FedAvg scenario: 6 clients behind 2 relays, a server, OTP."""
    clients = "\n".join(
        f"    - {{name: c{i}, role: client, flops_per_s: 5.0e+9}}" for i in range(6)
    )
    links = "\n".join(f"    - {{a: c{i}, b: r{i % 2}, length_km: {4 + 3 * i}}}" for i in range(6))
    return f"""
name: fedavg-reuse
seed: 3
topology:
  nodes:
    - {{name: srv, role: server, flops_per_s: 1.0e+11}}
    - {{name: r0, role: relay}}
    - {{name: r1, role: relay}}
{clients}
  links:
    - {{a: srv, b: r0, length_km: 12}}
    - {{a: srv, b: r1, length_km: 20}}
{links}
qkd: {{preset: toshiba-2018, pool_capacity_bits: 1.0e+8}}
cipher: {{policy: otp}}
learning:
  method: fedavg
  dataset: fashion-mnist
  server: srv
  partition: dirichlet
  alpha: 0.5
  samples_per_client: {samples}
  test_samples: 1000
  rounds: {rounds}
  local_epochs: 1
  batch_size: 32
  lr: 0.05
  width: 8
outputs: {{plots: false}}
"""


def main() -> None:
    """Run the benchmark and print the JSON line."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--samples", type=int, default=250)
    args = ap.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    sc = parse_scenario(scenario_text(args.rounds, args.samples))
    with tempfile.TemporaryDirectory() as tmp:
        # Warm-up (dataset load and caches) so neither measurement pays it alone.
        run_scenario(
            sc.model_copy(update={"learning": sc.learning.model_copy(update={"rounds": 1})}),
            None,
            plots=False,
        )
        t0 = time.perf_counter()
        single = run_scenario(sc, Path(tmp) / "single", plots=False)
        single_s = time.perf_counter() - t0
        spec = SweepSpec(sc, {"qkd.rate_scale": SCALES}, name="reuse")
        t1 = time.perf_counter()
        table = run_sweep(spec, Path(tmp) / "sweep", executor="inline", plots=False)
        sweep_s = time.perf_counter() - t1
        meta = json.loads((Path(tmp) / "sweep" / "sweep.json").read_text())
    accs = {r["final_global_acc"] for r in table}
    print(f"single run: {single_s:.1f} s (final accuracy {single.summary['final_global_acc']:.4f})")
    print(
        f"sweep of {len(SCALES)} key rates: {sweep_s:.1f} s; learning jobs run: "
        f"{meta['learning_jobs']}; network {meta['wall_network_s']:.1f} s, "
        f"learning {meta['wall_learning_s']:.1f} s"
    )
    for r in table:
        print(
            f"  rate_scale {r['qkd.rate_scale']:>7}: mean key rate {r['mean_skr_bps']:.3g} bit/s, "
            f"end at t={r['sim_time_end_s']:.4g} s, "
            f"stalled on key {r['time_stalled_on_key_s']:.4g} s, "
            f"accuracy {r['final_global_acc']:.4f}"
        )
    out = {
        "points": len(SCALES),
        "single_run_s": round(single_s, 3),
        "sweep_s": round(sweep_s, 3),
        "cost_ratio": round(sweep_s / single_s, 3),
        "learning_jobs": meta["learning_jobs"],
        "distinct_final_accuracies": len(accs),
        "rounds": args.rounds,
        "samples_per_client": args.samples,
        "threads": torch.get_num_threads(),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
