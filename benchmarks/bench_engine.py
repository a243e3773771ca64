"""Batched vs sequential training throughput of the learning engine.

``--model cnn`` (default): trains ``--clients`` FeatureCNN models, each on its own
Def-FD-style shard of Fashion-MNIST (8 of 10 classes per client). ``--model
multiexit-resnet``: the multi-exit ResNet (width 16, exits after blocks 1, 3, 5, dropout 0.5
in the exits, GroupNorm) with the multi-exit distillation loss (C = 1, T = 1), on the same
shards; ``--stem-stride 2`` (default) is the reproduction's model (``repro_multiexit.py``),
``--stem-stride 1`` the one of ``scenarios/multiexit-metro.yaml``. ``--model lstm``: the
3-layer multi-exit LSTM (hidden size ``--width``, default 16 as in the HAR pipeline) on
synthetic accelerometer windows ([151, 3], 17 classes), same loss. Every client starts from
its own weights.

Each model is trained with :class:`qfl.engine.SequentialTrainer` (the plain per-client loop
with ``torch.optim``) and with :class:`qfl.engine.BatchedTrainer` as it is by default (on a
CPU: its stacked route, :mod:`qfl.engine.stacked`) and forced onto its generic ``vmap``
route (skipped for the LSTM, whose ``vmap`` route needs gigabytes at 24 clients; ``--vmap``
forces it), all from the same initial weights and seed. Repetitions alternate and the best
time of each is kept, so that load from other processes on a shared machine biases them
alike; the ratios are taken within this one run. The run also measures the machine's fp32
matmul GFLOP/s and the batched route's achieved GFLOP/s (3x the forward FLOPs per sample),
and checks that the trainers end at the same weights. ``ceiling_speedup`` is that matmul
rate over the sequential loop's GFLOP/s: the most any route doing the same fp32 arithmetic
(direct convolutions, no Winograd or lower precision) could gain over the loop here.

Usage::

    python benchmarks/bench_engine.py --clients 24
    python benchmarks/bench_engine.py --model multiexit-resnet --clients 24
    python benchmarks/bench_engine.py --model multiexit-resnet --stem-stride 1
    python benchmarks/bench_engine.py --model lstm --clients 24

The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

from qfl.data import load_fashion_mnist, partition
from qfl.data.har_synthetic import synthetic_har
from qfl.engine import BatchedTrainer, SequentialTrainer, sgd, stack_models
from qfl.experiments.multiexit import MultiExitExperiment, make_loss, make_model
from qfl.losses import cross_entropy
from qfl.models import FeatureCNN, count_flops
from qfl.models.multiexit import reinitialize

MODELS = ("cnn", "multiexit-resnet", "lstm")


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


def _shards(args: argparse.Namespace) -> list[Any]:
    """Fashion-MNIST, 8 of 10 classes per client, ``--samples-per-client`` each."""
    train, _ = load_fashion_mnist(_data_dir(), download=False)
    parts = partition.by_classes(train.y.numpy(), args.clients, 8, seed=args.seed)
    return [train.subset(p[: args.samples_per_client]) for p in parts]


def _setup(args: argparse.Namespace) -> tuple[list[torch.nn.Module], list[Any], Any, str]:
    """The clients' models, their datasets, the loss and a one-line description."""
    if args.model == "cnn":
        gen = torch.Generator().manual_seed(args.seed)
        models = []
        for _ in range(args.clients):
            m = FeatureCNN()
            with torch.no_grad():
                for p in m.parameters():
                    p.copy_(torch.randn(p.shape, generator=gen) * 0.05)
            models.append(m)
        return models, _shards(args), ce_loss, "FeatureCNN, cross-entropy"
    har = args.model == "lstm"
    exp = MultiExitExperiment(
        dataset="synthetic-har" if har else "fashion-mnist",
        width=args.width,
        stem_stride=args.stem_stride,
        temperature=1.0,
        C=1.0,
    )
    base = make_model(exp, multi_exit=True)
    models = [reinitialize(copy.deepcopy(base), args.seed + i) for i in range(args.clients)]
    if har:
        pool = synthetic_har(args.clients * args.samples_per_client, seed=args.seed)
        n = args.samples_per_client
        datasets = [pool.subset(torch.arange(i * n, (i + 1) * n)) for i in range(args.clients)]
        what = f"MultiExitLSTM hidden {args.width}, 3 layers, 3 exits"
    else:
        datasets = _shards(args)
        what = f"MultiExitResNet width {args.width}, stem stride {args.stem_stride}, 3 exits"
    return models, datasets, make_loss(exp, multi_exit=True), what + ", C = 1, T = 1"


def _float64_diff(
    args: argparse.Namespace, models: list[Any], datasets: list[Any], loss: Any, opt: Any
) -> float:
    """Max weight difference of the batched and the sequential trainer in float64 (the same
    arithmetic: agreement to rounding, where float32 runs may part at a ReLU's kink)."""
    k = min(4, len(models))
    params, _ = stack_models([copy.deepcopy(m).double() for m in models[:k]])
    data = [(d.x[: 2 * args.batch_size].double(), d.y[: 2 * args.batch_size]) for d in datasets]
    out = []
    for cls in (BatchedTrainer, SequentialTrainer):
        tr = cls(models[0].double(), loss, opt, batch_size=args.batch_size)
        out.append(tr.train_epochs(params, tr.init_state(params), data[:k], 1, seed=args.seed)[0])
    models[0].float()
    return max(float((out[0][n] - out[1][n]).abs().max()) for n in params)


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=MODELS, default="cnn")
    parser.add_argument("--clients", type=int, default=24)
    parser.add_argument(
        "--width", type=int, default=16, help="ResNet base width / LSTM hidden size"
    )
    parser.add_argument("--stem-stride", type=int, default=2, help="ResNet stem stride")
    parser.add_argument(
        "--vmap",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also time the vmap route (default: not for the LSTM)",
    )
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

    models, datasets, loss, what = _setup(args)
    n_samples = sum(len(d) for d in datasets)
    params0, _ = stack_models(models)
    opt = sgd(0.01, momentum=0.9, weight_decay=5e-4)
    kw = {"batch_size": args.batch_size}
    batched = BatchedTrainer(models[0], loss, opt, chunk_size=args.chunk_size, **kw)
    route = batched.route if batched._use_fused(torch.device("cpu")) else "vmap"
    trainers = {
        "sequential": SequentialTrainer(models[0], loss, opt, **kw),
        "batched": batched,
    }
    if args.vmap if args.vmap is not None else args.model != "lstm":
        trainers["vmap"] = BatchedTrainer(
            models[0], loss, opt, chunk_size=args.chunk_size, fused=False, **kw
        )
    shape = tuple(datasets[0].x.shape[1:])
    flops = count_flops(models[0].eval(), shape)
    models[0].train()
    print(
        f"{args.clients} clients x {len(datasets[0])} samples, batch {args.batch_size}, "
        f"{what}, {sum(p.numel() for p in models[0].parameters())} params, "
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

    gflops = max(gflops, matmul_gflops())  # the peak, measured before and after the runs
    diff64 = _float64_diff(args, models, datasets, loss, opt) if args.model != "cnn" else None
    others = [name for name in trainers if name != "sequential"]
    diff = max(
        float((results[name][0][k] - results["sequential"][0][k]).abs().max())
        for k in params0
        for name in others
    )
    seq = n_samples / min(times["sequential"])
    bat = n_samples / min(times["batched"])
    vmp = n_samples / min(times["vmap"]) if "vmap" in times else float("nan")
    # training FLOPs ~ 3x forward (forward + two backward products)
    achieved = bat * 3 * flops / 1e9
    frac = achieved / gflops
    med_seq = n_samples / statistics.median(times["sequential"])
    med_bat = n_samples / statistics.median(times["batched"])
    print(
        f"sequential {seq:.0f} samples/s, batched ({route}) {bat:.0f} samples/s, speedup "
        f"{bat / seq:.2f}x (best of {len(times['batched'])}; medians {med_seq:.0f} / "
        f"{med_bat:.0f}); vmap route {vmp:.0f} samples/s ({vmp / seq:.2f}x)"
    )
    print(
        f"batched training: {achieved:.1f} GFLOP/s, ~{100 * frac:.1f}% of the fp32 matmul "
        f"rate (sequential {seq * 3 * flops / 1e9:.1f} GFLOP/s); max |batched - sequential| "
        f"weight difference {diff:.2e} ({', '.join(others)})"
    )
    # The most any route doing the same arithmetic could gain: the sequential loop's
    # GFLOP/s against the machine's fp32 matmul rate (its convolutions cannot beat it).
    ceiling = gflops / (seq * 3 * flops / 1e9)
    print(
        f"ceiling at the fp32 matmul rate: {ceiling:.2f}x the sequential loop (the batched "
        f"route reaches {bat / seq / ceiling:.0%} of it)"
    )
    if diff64 is not None:
        print(
            f"in float64 (4 clients, 2 steps each): max |batched - sequential| weight "
            f"difference {diff64:.2e}"
        )
    out: dict[str, object] = {
        "model": args.model,
        "width": args.width if args.model != "cnn" else None,
        "stem_stride": args.stem_stride if args.model == "multiexit-resnet" else None,
        "clients": args.clients,
        "batch_size": args.batch_size,
        "samples_per_client": len(datasets[0]),
        "chunk_size": args.chunk_size,
        "threads": torch.get_num_threads(),
        "batched_samples_per_s": round(bat, 1),
        "sequential_samples_per_s": round(seq, 1),
        "speedup": round(bat / seq, 3),
        "route": route,
        "vmap_samples_per_s": round(vmp, 1) if vmp == vmp else None,
        "vmap_speedup": round(vmp / seq, 3) if vmp == vmp else None,
        "forward_mflop_per_sample": round(flops / 1e6, 3),
        "matmul_gflops": round(gflops, 2),
        "batched_gflops": round(achieved, 2),
        "sequential_gflops": round(seq * 3 * flops / 1e9, 2),
        "batched_fraction_of_matmul": round(frac, 4),
        "ceiling_speedup": round(ceiling, 3),
        "max_abs_weight_diff": diff,
        "max_abs_weight_diff_float64": diff64,
    }
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
