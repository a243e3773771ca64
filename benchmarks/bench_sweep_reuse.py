"""Learning reuse across sweep points: a 10-point key-rate sweep vs one run.

The network timeline of a synchronous FedAvg scenario depends on the key rate only through
*when* rounds happen, not *what* is learned, so every point of a key-rate sweep has the same
learning inputs; ``qfl.cosim.sweep.run_sweep`` simulates the ten network timelines and trains once.
This script measures, in one process and one run:

- ``single_run_s``: ``qfl.cosim.run_scenario`` of the base scenario (network + learning);
- ``sweep_s``: ``qfl.cosim.sweep.run_sweep`` over ``qkd.rate_scale`` in ten values (inline
  executor, so both use the same threads);
- ``cost_ratio = sweep_s / single_run_s`` (target < 2).

A point that fails (``status: failed`` in ``sweep.csv``) is printed with its error and no
figures; the sweep goes on past it. ``--smoke`` is a seconds-long check that the script runs
(three points, one round, a few samples, a narrower model, no warm-up;
tests/test_benchmarks_smoke.py), not a measurement.

Usage: ``python benchmarks/bench_sweep_reuse.py [--rounds N] [--samples N] [--smoke]``. The
last line is one JSON object with ``points``, ``single_run_s``, ``sweep_s``, ``cost_ratio``.
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
SMOKE_SCALES = [0.01, 1.0, 100.0]  # 100: blocks larger than the pools, a failed point


def _g(x: float | None, spec: str) -> str:
    """``x`` formatted, or "n/a" where a point has no such figure (a failed point)."""
    return "n/a" if x is None else format(x, spec)


def scenario_text(rounds: int, samples: int, test_samples: int = 1000, width: int = 8) -> str:
    """A synchronous FedAvg scenario: 6 clients behind 2 relays, a server, OTP.

    Pools hold 1e9 bits: a link's finite-key block must fit in its pool, and at
    ``rate_scale`` 10 the 12 km link's block is 2.7e8 bits (1e8-bit pools failed the 3.0
    and 10.0 points)."""
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
qkd: {{preset: toshiba-2018, pool_capacity_bits: 1.0e+9}}
cipher: {{policy: otp}}
learning:
  method: fedavg
  dataset: fashion-mnist
  server: srv
  partition: dirichlet
  alpha: 0.5
  samples_per_client: {samples}
  test_samples: {test_samples}
  rounds: {rounds}
  local_epochs: 1
  batch_size: 32
  lr: 0.05
  width: {width}
outputs: {{plots: false}}
"""


def main() -> None:
    """Run the benchmark and print the JSON line."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--samples", type=int, default=250)
    ap.add_argument("--smoke", action="store_true", help="seconds-long check, not a measurement")
    args = ap.parse_args()
    scales, test_samples, width = SCALES, 1000, 8
    if args.smoke:
        args.rounds, args.samples, scales, test_samples, width = 1, 10, SMOKE_SCALES, 50, 4
    torch.set_num_threads(os.cpu_count() or 1)
    sc = parse_scenario(scenario_text(args.rounds, args.samples, test_samples, width))
    with tempfile.TemporaryDirectory() as tmp:
        if not args.smoke:
            # Warm-up (dataset load and caches) so neither measurement pays it alone.
            run_scenario(
                sc.model_copy(update={"learning": sc.learning.model_copy(update={"rounds": 1})}),
                None,
                plots=False,
            )
        t0 = time.perf_counter()
        single = run_scenario(sc, Path(tmp) / "single", plots=False)
        single_s = time.perf_counter() - t0
        spec = SweepSpec(sc, {"qkd.rate_scale": scales}, name="reuse")
        t1 = time.perf_counter()
        table = run_sweep(spec, Path(tmp) / "sweep", executor="inline", plots=False)
        sweep_s = time.perf_counter() - t1
        meta = json.loads((Path(tmp) / "sweep" / "sweep.json").read_text())
    accs = {r["final_global_acc"] for r in table}
    final = _g(single.summary["final_global_acc"], ".4f")
    print(f"single run: {single_s:.1f} s (final accuracy {final})")
    print(
        f"sweep of {len(scales)} key rates: {sweep_s:.1f} s; learning jobs run: "
        f"{meta['learning_jobs']}; network {meta['wall_network_s']:.1f} s, "
        f"learning {meta['wall_learning_s']:.1f} s"
    )
    for r in table:
        head = f"  rate_scale {r['qkd.rate_scale']:>7}: "
        if r.get("status") != "complete":
            print(head + f"{r.get('status')}: {r.get('error') or 'no summary'}")
            continue
        print(
            head + f"mean key rate {_g(r['mean_skr_bps'], '.3g')} bit/s, "
            f"end at t={_g(r['sim_time_end_s'], '.4g')} s, "
            f"stalled on key {_g(r['time_stalled_on_key_s'], '.4g')} s, "
            f"accuracy {_g(r['final_global_acc'], '.4f')}"
        )
    out = {
        "points": len(scales),
        "failed_points": sum(r.get("status") != "complete" for r in table),
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
