"""Reproduce the SSL-backbone FL table: centralized (no SSL) vs SSL-backbone FL accuracy.

Two clients: Flowers102 (client 1) and Intel scenes (client 2), each split 25 % labeled /
75 % unlabeled (stratified). SSL-backbone FL pretrains one ResNet encoder with SimCLR by
FedAvg over both unlabeled parts, then trains a linear head per client on its labeled part;
the baseline trains each task's network from scratch on its labeled part. Both are evaluated
on the client's unlabeled part. The paper reports (centralized -> SSL-backbone FL):
Flowers102 29.93 -> 53.97, Intel 83.29 -> 88.22.

Usage::

    python benchmarks/repro_ssl.py --quick          # reduced run, CPU, a few minutes
    python benchmarks/repro_ssl.py --device cuda    # paper scale: ResNet-18, 96 px (GPU)
    python benchmarks/repro_ssl.py --device cuda --depth 50
    python benchmarks/repro_ssl.py --smoke          # seconds: the script runs (not a result)

The data are read from ``$QFL_DATA_DIR`` (default ``../shared/data`` beside the checkout):
the full Flowers102 / Intel folders if present, else the mini copies. The last line printed
is one JSON object with ``ssl`` and ``centralized`` (task -> accuracy in percent), the
paper's numbers and the settings.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from seeds import add_seeds_option, fmt, run_seeds

from qfl.algorithms.ssl import HeadConfig, SimCLRConfig, SupervisedConfig
from qfl.data.augment import AugmentConfig
from qfl.experiments.ssl import PAPER, SSLExperiment, load_clients, run_ssl_experiment

_DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def _experiment(args: argparse.Namespace) -> SSLExperiment:
    engine = args.engine or ("batched" if args.device == "cuda" else "sequential")
    if args.quick:
        exp = SSLExperiment(
            image_size=32,
            depth=18,
            width=8,
            norm_groups=4,
            projection_dim=64,
            # 60 rounds: about 2.5 min on an idle 2-core machine; SSL is still improving
            # there (10 rounds: Intel 45 %, 60 rounds: 55 %).
            pretrain=SimCLRConfig(
                rounds=60, local_epochs=1, batch_size=128, lr=2e-3, temperature=0.5,
                augment=AugmentConfig.simclr(0.5), engine=engine,
            ),
            heads=HeadConfig(epochs=200, batch_size=128, lr=1e-2, engine=engine),
            baseline=SupervisedConfig(epochs=30, batch_size=64, lr=2e-3, engine=engine),
            seed=args.seed,
            device=args.device,
        )  # fmt: skip
    else:
        # Paper scale: ResNet-18 (or 50) at 96 px with the small-image stem, SimCLR's
        # CIFAR-style schedule (batch 256, temperature 0.5, colour strength 0.5).
        exp = SSLExperiment(
            image_size=96,
            depth=args.depth,
            width=64,
            projection_dim=128,
            pretrain=SimCLRConfig(
                rounds=200, local_epochs=1, batch_size=256, lr=1e-3, temperature=0.5,
                augment=AugmentConfig.simclr(0.5), engine=engine,
            ),
            heads=HeadConfig(epochs=200, batch_size=128, lr=1e-3, engine=engine),
            baseline=SupervisedConfig(epochs=200, batch_size=64, lr=1e-3, engine=engine),
            seed=args.seed,
            device=args.device,
        )  # fmt: skip
    if args.smoke:
        # A check that the script runs end to end (tests/test_benchmarks_smoke.py): 16 px, a
        # narrow encoder, one SimCLR round, one epoch of each head and baseline.
        exp = replace(
            exp,
            image_size=16,
            width=4,
            norm_groups=4,
            projection_dim=16,
            pretrain=replace(exp.pretrain, rounds=1, batch_size=64),
            heads=replace(exp.heads, epochs=1),
            baseline=replace(exp.baseline, epochs=1),
        )
    if args.rounds is not None:
        exp = replace(exp, pretrain=replace(exp.pretrain, rounds=args.rounds))
    # The knobs of the SSL direction study (benchmarks/README.md): image size, SimCLR
    # temperature and augmentation strength, encoder width, baseline epochs.
    if args.image_size is not None:
        exp = replace(exp, image_size=args.image_size)
    if args.width is not None:
        exp = replace(exp, width=args.width)
    if args.temperature is not None:
        exp = replace(exp, pretrain=replace(exp.pretrain, temperature=args.temperature))
    if args.strength is not None:
        aug = AugmentConfig.simclr(args.strength)
        exp = replace(exp, pretrain=replace(exp.pretrain, augment=aug))
    if args.baseline_epochs is not None:
        exp = replace(exp, baseline=replace(exp.baseline, epochs=args.baseline_epochs))
    if args.finetune:
        exp = replace(exp, heads=replace(exp.heads, finetune_last_block=True))
    return exp


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="reduced run (CPU, minutes)")
    parser.add_argument(
        "--smoke", action="store_true", help="seconds-long check that the script runs"
    )
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--depth", type=int, default=18, choices=(18, 50))
    parser.add_argument("--engine", choices=("batched", "sequential"), default=None,
                        help="default: batched on cuda, sequential on cpu")  # fmt: skip
    parser.add_argument("--rounds", type=int, default=None, help="override SimCLR rounds")
    parser.add_argument("--finetune", action="store_true", help="also train layer4 in phase 2")
    parser.add_argument("--image-size", type=int, default=None, help="override image side")
    parser.add_argument("--width", type=int, default=None, help="override encoder width")
    parser.add_argument("--temperature", type=float, default=None, help="SimCLR temperature")
    parser.add_argument("--strength", type=float, default=None, help="colour-jitter strength")
    parser.add_argument("--baseline-epochs", type=int, default=None, help="override")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=0)
    add_seeds_option(parser)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(json.dumps(run_seeds(args, _run, _print_seeds), default=str))
    return 0


def _print_seeds(result: dict[str, Any]) -> None:
    """The table against the paper, mean ± standard deviation over the seeds."""
    print(f"\nover seeds {result['seeds']} (mean ± sample std):")
    print(f"{'task':<12}{'centralized':>20}{'SSL-backbone':>20}{'paper':>20}")
    for task in result["mean"]["ssl"]:
        paper = f"{PAPER['centralized'][task]:.2f} -> {PAPER['ssl'][task]:.2f}"
        print(f"{task:<12}{fmt(result, 'centralized', task):>20}"
              f"{fmt(result, 'ssl', task):>20}{paper:>20}")  # fmt: skip


def _run(args: argparse.Namespace) -> dict[str, Any]:
    """One seed's run: its lines, then its result (a seed's JSON)."""
    if "QFL_DATA_DIR" not in os.environ and _DEFAULT_DATA.is_dir():
        os.environ["QFL_DATA_DIR"] = str(_DEFAULT_DATA)
    exp = _experiment(args)
    t0 = time.perf_counter()
    clients = load_clients(
        image_size=exp.image_size, labeled_fraction=exp.labeled_fraction, seed=exp.seed
    )
    load_s = time.perf_counter() - t0
    scale = "smoke" if args.smoke else "quick" if args.quick else "paper"
    print(f"scale: {scale}; device {args.device}; "
          f"resnet{exp.depth} width {exp.width} at {exp.image_size} px; "
          f"engine {exp.pretrain.engine}")  # fmt: skip
    for c in clients:
        print(f"client {c.name}: {len(c.labeled)} labeled, {len(c.unlabeled)} unlabeled, "
              f"{c.num_classes} classes")  # fmt: skip
    result = run_ssl_experiment(exp, clients)
    for r in result.pretrain_history:
        losses = ", ".join(f"{v:.3f}" for v in r.client_loss)
        print(f"  SimCLR round {r.round:3d}: NT-Xent per client [{losses}]")
    print(f"{'task':<12}{'centralized':>14}{'SSL-backbone':>14}{'paper':>20}")
    for task in result.ssl:
        paper = f"{PAPER['centralized'][task]:.2f} -> {PAPER['ssl'][task]:.2f}"
        print(f"{task:<12}{result.centralized[task]:>13.2f}%{result.ssl[task]:>13.2f}%"
              f"{paper:>20}")  # fmt: skip
    seconds = {"load": load_s, **result.seconds}
    print("seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in seconds.items()))
    settings = exp.settings()
    settings.update(
        scale=scale,
        threads=args.threads,
        data_dir=os.environ.get("QFL_DATA_DIR"),
        sizes={c.name: [len(c.labeled), len(c.unlabeled)] for c in clients},
    )
    out = {
        "ssl": result.ssl,
        "centralized": result.centralized,
        "paper": PAPER,
        "pretrain_loss_last": list(result.pretrain_history[-1].client_loss),
        "seconds": seconds,
        "settings": settings,
    }
    return out


if __name__ == "__main__":
    sys.exit(main())
