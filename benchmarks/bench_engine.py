"""Batched vs sequential training throughput of the learning engine (Fashion-MNIST, FeatureCNN).

Trains ``--clients`` FeatureCNN models, each on its own Def-FD-style shard of Fashion-MNIST
(8 of 10 classes per client), with :class:`qfl.engine.SequentialTrainer` (the plain
per-client loop with ``torch.optim``) and with :class:`qfl.engine.BatchedTrainer` as it is
by default (on a CPU with the kernels built: the fused route of
:mod:`qfl.engine.stacked_cnn`) and forced onto its generic ``vmap`` route, all from the same
initial weights and seed. Repetitions of the three alternate and the best time of each is
kept, so that load from other processes on a shared machine biases them alike; the ratios
are taken within this one run. The run also measures the machine's fp32 matmul GFLOP/s, and
checks that the trainers end at the same weights.

Usage::

    python benchmarks/bench_engine.py --clients 24
    python benchmarks/bench_engine.py --clients 10 --batch-size 64

The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from qfl.data import load_fashion_mnist, partition
from qfl.engine import BatchedTrainer, SequentialTrainer, sgd, stack_models
from qfl.losses import cross_entropy
from qfl.models import FeatureCNN, count_flops


def _data_dir() -> Path | None:
    """``$QFL_DATA_DIR`` if set (the loader resolves it), else ``../shared/data`` beside
    the checkout."""
    if os.environ.get("QFL_DATA_DIR"):
        return None
    return Path(__file__).resolve().parents[2] / "shared" / "data" / "fashion-mnist"


def matmul_gflops(n: int = 1024, repeats: int = 10) -> float:
    """Best fp32 ``n x n`` matmul rate, in GFLOP/s (``2 n^3`` flops per product)."""
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=gen)
    b = torch.randn(n, n, generator=gen)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def ce_loss(outputs, y, teacher_outputs):
    """Plain local training: cross-entropy of the logits."""
    return cross_entropy(outputs[0], y)


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=24)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--samples-per-client", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--chunk-size", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--time-budget", type=float, default=120.0, help="no new repetition after this many s"
    )
    args = parser.parse_args(argv)

    threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    torch.set_num_threads(threads or 1)
    gflops = matmul_gflops()
    print(
        f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, fp32 matmul {gflops:.1f} GFLOP/s"
    )

    train, _ = load_fashion_mnist(_data_dir(), download=False)
    parts = partition.by_classes(train.y.numpy(), args.clients, 8, seed=args.seed)
    datasets = [train.subset(p[: args.samples_per_client]) for p in parts]
    n_samples = sum(len(d) for d in datasets)

    gen = torch.Generator().manual_seed(args.seed)
    models = []
    for _ in range(args.clients):
        m = FeatureCNN()
        with torch.no_grad():
            for p in m.parameters():
                p.copy_(torch.randn(p.shape, generator=gen) * 0.05)
        models.append(m)
    params0, _ = stack_models(models)
    opt = sgd(0.01, momentum=0.9, weight_decay=5e-4)
    kw = {"batch_size": args.batch_size}
    batched = BatchedTrainer(models[0], ce_loss, opt, chunk_size=args.chunk_size, **kw)
    route = "fused" if batched._use_fused(torch.device("cpu")) else "vmap"
    trainers = {
        "sequential": SequentialTrainer(models[0], ce_loss, opt, **kw),
        "batched": batched,
        "vmap": BatchedTrainer(
            models[0], ce_loss, opt, chunk_size=args.chunk_size, fused=False, **kw
        ),
    }
    flops = count_flops(models[0], (1, 28, 28))
    print(
        f"{args.clients} clients x {len(datasets[0])} samples, batch {args.batch_size}, "
        f"FeatureCNN {sum(p.numel() for p in models[0].parameters())} params, "
        f"{flops / 1e6:.2f} MFLOP forward/sample, SGD momentum 0.9"
    )

    times: dict[str, list[float]] = {name: [] for name in trainers}
    results = {}
    for tr in trainers.values():  # warm-up (allocations, first-call costs)
        tr.train_epochs(
            params0,
            tr.init_state(params0),
            [d.subset(range(args.batch_size)) for d in datasets],
            1,
            seed=1,
        )
    start = time.perf_counter()
    for rep in range(args.repeats):
        if rep > 0 and time.perf_counter() - start > args.time_budget:
            print(f"  time budget of {args.time_budget:.0f} s spent after {rep} repetitions")
            break
        for name, tr in trainers.items():
            state = tr.init_state(params0)
            t0 = time.perf_counter()
            results[name] = tr.train_epochs(params0, state, datasets, 1, seed=args.seed)
            dt = time.perf_counter() - t0
            times[name].append(dt)
            print(
                f"  rep {rep}: {name:10s} {dt:7.2f} s  {n_samples / dt:8.0f} samples/s", flush=True
            )

    diff = max(
        float((results[name][0][k] - results["sequential"][0][k]).abs().max())
        for k in params0
        for name in ("batched", "vmap")
    )
    seq = n_samples / min(times["sequential"])
    bat = n_samples / min(times["batched"])
    vmp = n_samples / min(times["vmap"])
    # training FLOPs ~ 3x forward (forward + two backward products)
    frac = bat * 3 * flops / (gflops * 1e9)
    med_seq = n_samples / statistics.median(times["sequential"])
    med_bat = n_samples / statistics.median(times["batched"])
    print(
        f"sequential {seq:.0f} samples/s, batched ({route}) {bat:.0f} samples/s, speedup "
        f"{bat / seq:.2f}x (best of {len(times['batched'])}; medians {med_seq:.0f} / "
        f"{med_bat:.0f}); vmap route {vmp:.0f} samples/s ({vmp / seq:.2f}x)"
    )
    print(
        f"batched training runs at ~{100 * frac:.1f}% of the fp32 matmul rate; "
        f"max |batched - sequential| weight difference {diff:.2e} (both routes)"
    )
    out: dict[str, object] = {
        "clients": args.clients,
        "batch_size": args.batch_size,
        "samples_per_client": len(datasets[0]),
        "chunk_size": args.chunk_size,
        "threads": torch.get_num_threads(),
        "batched_samples_per_s": round(bat, 1),
        "sequential_samples_per_s": round(seq, 1),
        "speedup": round(bat / seq, 3),
        "route": route,
        "vmap_samples_per_s": round(vmp, 1),
        "vmap_speedup": round(vmp / seq, 3),
        "matmul_gflops": round(gflops, 2),
        "batched_fraction_of_matmul": round(frac, 4),
        "max_abs_weight_diff": diff,
    }
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
