"""Speed and quality of the BB84 simulation and its post-processing.

Measures

* ``qkd.bb84.simulate`` throughput (pulses per second);
* Cascade (``qkd.cascade.reconcile``) on many 10**5-bit blocks at QBER 1%, 2%, 3%, 5%:
  efficiency ``f = leaked / (n h(QBER))``, the fraction of blocks left with errors (failed
  verification), undetected residual errors, and throughput;
* Toeplitz privacy amplification throughput;
* the full pipeline (``qkd.pipeline.distill``) throughput in sifted bits per second, and
  one end-to-end link run (simulate + sift + distill).

Prints human-readable lines, then as the very last line one JSON object.

Run: ``python benchmarks/bench_bb84.py`` (about 1-3 minutes; ``--blocks`` sets the Cascade
sample size per QBER). ``--smoke``: every part at a tenth of its size or less, in seconds (a
check that the script runs, tests/test_benchmarks_smoke.py; not a measurement).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from typing import TypeVar

import numpy as np

from qkd.amplify import binary_entropy, toeplitz_hash
from qkd.bb84 import simulate
from qkd.cascade import reconcile
from qkd.params import get_preset
from qkd.pipeline import distill, simulate_and_distill

QBERS = (0.01, 0.02, 0.03, 0.05)
T = TypeVar("T")


def _timed(fn: Callable[[], T], repeat: int) -> tuple[float, T]:
    """Best wall time of ``repeat`` calls, and the last result."""
    best = float("inf")
    out: T | None = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    assert out is not None
    return best, out


def bench_simulate(n_pulses: int, repeat: int) -> dict[str, float]:
    system = get_preset("toshiba-2018")
    secs, det = _timed(lambda: simulate(system, 25.0, n_pulses, seed=1), repeat)
    n_det = det.n_detected
    rate = n_pulses / secs
    print(
        f"simulate: toshiba-2018 @ 25 km, {n_pulses:.2e} pulses in {secs:.3f} s (best of "
        f"{repeat}) -> {rate:.3e} pulses/s, {n_det} detections"
    )
    return {"n_pulses": n_pulses, "seconds": secs, "pulses_per_s": rate, "detections": n_det}


def bench_cascade(n: int, blocks: int, passes: int) -> list[dict[str, float]]:
    rows = []
    print(f"cascade: {blocks} blocks of {n} bits per QBER, {passes} passes (Martinez-Mateo)")
    for qber in QBERS:
        rng = np.random.default_rng(int(qber * 1e4))
        effs, effs_actual, rounds = [], [], []
        failed = undetected = 0
        secs = 0.0
        for i in range(blocks):
            alice = rng.integers(0, 2, n, dtype=np.uint8)
            err = rng.random(n) < qber
            bob = alice ^ err.astype(np.uint8)
            t0 = time.perf_counter()
            res = reconcile(alice, bob, qber, seed=i, passes=passes)
            secs += time.perf_counter() - t0
            equal = bool(np.array_equal(res.key, alice))
            failed += not res.verified
            undetected += res.verified and not equal
            effs.append(res.efficiency)
            effs_actual.append(res.leaked_bits / (n * float(binary_entropy(err.mean()))))
            rounds.append(res.rounds)
        row = {
            "qber": qber,
            "blocks": blocks,
            "n": n,
            "efficiency": statistics.fmean(effs),
            "efficiency_std": statistics.pstdev(effs),
            "efficiency_actual_qber": statistics.fmean(effs_actual),
            "failed_fraction": failed / blocks,
            "undetected": undetected,
            "rounds": statistics.fmean(rounds),
            "bits_per_s": blocks * n / secs,
        }
        rows.append(row)
        print(
            f"  QBER {qber:.0%}: f = {row['efficiency']:.4f} +- {row['efficiency_std']:.4f} "
            f"(vs actual error rate {row['efficiency_actual_qber']:.4f}), failed "
            f"{failed}/{blocks}, undetected {undetected}, {row['rounds']:.0f} rounds, "
            f"{row['bits_per_s'] / 1e6:.2f} Mbit/s"
        )
    return rows


def bench_amplify(n: int, repeat: int) -> dict[str, float]:
    x = np.random.default_rng(3).integers(0, 2, n, dtype=np.uint8)
    m = n // 2
    secs, _ = _timed(lambda: toeplitz_hash(x, m, seed=4), repeat)
    rate = n / secs
    print(f"privacy amplification: {n} -> {m} bits in {secs:.4f} s -> {rate:.3e} input bits/s")
    return {"n": n, "out": m, "seconds": secs, "bits_per_s": rate}


def bench_pipeline(n: int, qber: float, repeat: int) -> dict[str, float]:
    rng = np.random.default_rng(5)
    alice = rng.integers(0, 2, n, dtype=np.uint8)
    bob = alice ^ (rng.random(n) < qber).astype(np.uint8)
    secs, r = _timed(lambda: distill(alice, bob, seed=6), repeat)
    rate = n / secs
    print(
        f"pipeline distill: {n} sifted bits at QBER {qber:.0%} in {secs:.3f} s -> "
        f"{rate:.3e} sifted bits/s; final {r.final_length} bits "
        f"({r.final_length / n:.3f} per sifted bit), ec f = {r.ec_efficiency:.3f}"
    )
    return {
        "n_sifted": n,
        "qber": qber,
        "seconds": secs,
        "sifted_bits_per_s": rate,
        "final_length": r.final_length,
    }


def bench_link(n_pulses: int) -> dict[str, float]:
    system = get_preset("toshiba-2018")
    t0 = time.perf_counter()
    res = simulate_and_distill(system, 25.0, n_pulses, seed=7)
    secs = time.perf_counter() - t0
    print(
        f"link end to end: toshiba-2018 @ 25 km, {n_pulses:.1e} pulses -> {res.n_sifted} "
        f"signal sifted bits, QBER {res.qber:.4f}, final key {res.final_length} bits "
        f"in {secs:.2f} s"
    )
    return {
        "n_pulses": n_pulses,
        "n_sifted": res.n_sifted,
        "qber": res.qber,
        "final_length": res.final_length,
        "seconds": secs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pulses", type=int, default=20_000_000)
    parser.add_argument("--blocks", type=int, default=200, help="Cascade blocks per QBER")
    parser.add_argument("--passes", type=int, default=14)
    parser.add_argument(
        "--smoke", action="store_true", help="seconds-long check, not a measurement"
    )
    args = parser.parse_args()
    print(f"python {platform.python_version()}, numpy {np.__version__}, {platform.machine()}")
    # block, amplification, pipeline and link sizes; the smoke run's are small
    sizes = (100_000, 1_000_000, 1_000_000, 10_000_000)
    repeat = 3
    if args.smoke:
        args.pulses, args.blocks, sizes, repeat = (
            200_000,
            2,
            (10_000, 100_000, 100_000, 2_000_000),
            1,
        )

    sim = bench_simulate(args.pulses, repeat=repeat)
    cascade = bench_cascade(sizes[0], args.blocks, args.passes)
    pa = bench_amplify(sizes[1], repeat=repeat)
    pipe = bench_pipeline(sizes[2], 0.02, repeat=min(repeat, 2))
    link = bench_link(sizes[3])

    at2 = next(r for r in cascade if r["qber"] == 0.02)
    cascade_bps = statistics.fmean(r["bits_per_s"] for r in cascade)
    print("\n| QBER | blocks | f (mean +- sd) | blocks failed | undetected | Mbit/s |")
    print("|---|---|---|---|---|---|")
    for r in cascade:
        print(
            f"| {r['qber']:.0%} | {r['blocks']} | {r['efficiency']:.3f} +- "
            f"{r['efficiency_std']:.3f} | {r['failed_fraction']:.1%} | {r['undetected']} | "
            f"{r['bits_per_s'] / 1e6:.2f} |"
        )
    summary = {
        "pulses_per_s": sim["pulses_per_s"],
        "n_pulses": sim["n_pulses"],
        "cascade_efficiency": at2["efficiency"],
        "cascade_failed_fraction_max": max(r["failed_fraction"] for r in cascade),
        "cascade_bits_per_s": cascade_bps,
        "cascade": cascade,
        "pa_bits_per_s": pa["bits_per_s"],
        "pipeline_sifted_bits_per_s": pipe["sifted_bits_per_s"],
        "pipeline": pipe,
        "link": link,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
