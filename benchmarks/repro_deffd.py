"""Reproduce the Def-FD paper's Fashion-MNIST table beside Def-KT and gossip averaging.

Setup (paper): Fashion-MNIST, every client holds 8 of the 10 classes, 20% of each client's
samples held out for local accuracy; global accuracy is each client's model on the test set.
Where the paper is silent we choose (and print): 10 clients, half of them (Q = 5) train and
send each round to a distinct random neighbour of a complete graph (Def-KT's schedule),
E = 1 local epoch, 1 fusion epoch, SGD lr 0.01 momentum 0.9, batch 32, T = 1.

    python benchmarks/repro_deffd.py --quick            # reduced run, a few minutes on 2 cores
    python benchmarks/repro_deffd.py                    # paper scale: all 60 000 samples
    python benchmarks/repro_deffd.py --quick --gammas   # L2/COS/MSE x gamma in {.01,.02,.03}
    python benchmarks/repro_deffd.py --quick --seeds 3  # mean ± std over seeds 0, 1, 2

The last line printed is one JSON object: a key per method (``def-fd-mse``, ``def-fd-cos``,
``def-fd-l2``, ``def-kt``, ``gossip-avg``, and ``def-fd-<loss>@<gamma>`` in a sweep) with
``global_acc`` and ``local_acc`` in percent (means over clients, plus their spreads), and
the settings under ``settings``; with ``--seeds K`` (K > 1) it is ``{"seeds", "per_seed",
"mean", "std", "n"}`` (``benchmarks/seeds.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import torch
from seeds import add_seeds_option, fmt, run_seeds

from qfl.algorithms import DefFDConfig
from qfl.data import load_fashion_mnist
from qfl.experiments import METHOD_NAMES, PAPER_RESULTS, DefFDSetup, run_deffd_experiment

QUICK = {"samples_per_client": 500, "test_samples": 2000, "rounds": 30, "eval_every": 15}
FULL = {"samples_per_client": None, "test_samples": None, "rounds": 50, "eval_every": 10}
SWEEP = (0.01, 0.02, 0.03)


def _data_root() -> Path | None:
    env = os.environ.get("QFL_DATA_DIR")
    beside = Path(__file__).resolve().parents[2] / "shared" / "data"
    for base in ([Path(env)] if env else []) + [beside]:
        if (base / "fashion-mnist").is_dir():
            return base / "fashion-mnist"
    return None  # the loader's own search (user cache, download)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="reduced run (fewer samples, rounds)")
    ap.add_argument("--methods", default=",".join(METHOD_NAMES), help="comma-separated")
    ap.add_argument(
        "--gammas",
        nargs="?",
        const=",".join(map(str, SWEEP)),
        default=None,
        help="sweep gamma for the Def-FD methods (default 0.01,0.02,0.03)",
    )
    ap.add_argument("--clients", type=int, default=10)
    ap.add_argument("--classes-per-client", type=int, default=8)
    ap.add_argument("--rounds", type=int)
    ap.add_argument("--eval-every", type=int)
    ap.add_argument("--samples-per-client", type=int)
    ap.add_argument("--test-samples", type=int)
    ap.add_argument("--local-epochs", type=int, default=1)
    ap.add_argument("--fusion-epochs", type=int, default=1)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--momentum", type=float, default=0.9)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--engine", choices=["batched", "sequential"], default="batched")
    ap.add_argument("--device", default=None, help="torch device (default: cuda if available)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--seed", type=int, default=0)
    add_seeds_option(ap)
    args = ap.parse_args()
    print(json.dumps(run_seeds(args, _run, _print_seeds)))


def _print_seeds(agg: dict[str, Any]) -> None:
    """The table against the paper, mean ± standard deviation over the seeds."""
    print(f"\nover seeds {agg['seeds']} (mean ± sample std of the client means):")
    print("| method | global % (ours) | local % (ours) | global % (paper) | local % (paper) |")
    print("|---|---|---|---|---|")
    for name in agg["mean"]:
        if name in ("paper", "settings"):
            continue
        paper = PAPER_RESULTS.get(name)
        pg, pl = (f"{paper[1]:.2f}", f"{paper[2]:.2f}") if paper else ("-", "-")
        print(f"| {name} | {fmt(agg, name, 'global_acc')} | {fmt(agg, name, 'local_acc')} "
              f"| {pg} | {pl} |")  # fmt: skip


def _run(args: argparse.Namespace) -> dict[str, Any]:
    """One seed's run: progress lines and its table, then its result (a seed's JSON)."""

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    scale = dict(QUICK if args.quick else FULL)
    for key in ("rounds", "eval_every", "samples_per_client", "test_samples"):
        value = getattr(args, key)
        if value is not None:
            scale[key] = value
    setup = DefFDSetup(
        n_clients=args.clients,
        classes_per_client=args.classes_per_client,
        seed=args.seed,
        **scale,
    )
    base = DefFDConfig(
        local_epochs=args.local_epochs,
        fusion_epochs=args.fusion_epochs,
        lr=args.lr,
        momentum=args.momentum,
        batch_size=args.batch_size,
        temperature=args.temperature,
        engine=args.engine,
        eval_batch_size=64 if device == "cpu" else 1000,
    )
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    gammas = None if args.gammas is None else [float(g) for g in args.gammas.split(",")]
    q = base.n_senders(setup.n_clients)
    settings = {
        "dataset": "fashion-mnist",
        "clients": setup.n_clients,
        "classes_per_client": setup.classes_per_client,
        "holdout_fraction": setup.holdout_fraction,
        "samples_per_client": setup.samples_per_client,
        "test_samples": setup.test_samples or 10000,
        "rounds": setup.rounds,
        "senders_per_round": q,
        "topology": "complete",
        "local_epochs": base.local_epochs,
        "fusion_epochs": base.fusion_epochs,
        "optimizer": f"SGD lr={base.lr} momentum={base.momentum}",
        "batch_size": base.batch_size,
        "temperature": base.temperature,
        "engine": base.engine,
        "device": device,
        "threads": torch.get_num_threads(),
        "seed": setup.seed,
        "quick": bool(args.quick),
    }
    print("Def-FD reproduction:", ", ".join(f"{k}={v}" for k, v in settings.items()))
    data = load_fashion_mnist(_data_root())
    t0 = time.perf_counter()
    results = {}
    for m in methods:  # one call per method, so that progress can be printed
        t = time.perf_counter()
        out = run_deffd_experiment(setup, base, [m], gammas=gammas, data=data, device=device)
        for name, res in out.items():
            if name in results:
                continue
            results[name] = res
            cfg = res.config
            what = f"{cfg.method}" + (
                f" {cfg.feature_loss} gamma={cfg.gamma:g}" if cfg.method == "def-fd" else ""
            )
            for h in res.history:
                print(
                    f"  {name:<16} round {h.round:>3}: global {100 * h.global_mean:6.2f} "
                    f"± {100 * h.global_std:5.2f} %, local {100 * h.local_mean:6.2f} "
                    f"± {100 * h.local_std:5.2f} %   ({what})"
                )
        print(f"  {m}: {time.perf_counter() - t:.1f} s wall")
    wall = time.perf_counter() - t0

    print()
    print(
        "| method | gamma | global % (ours) | local % (ours) | global % (paper) | local % (paper) |"
    )
    print("|---|---|---|---|---|---|")
    for name, res in results.items():
        f = res.final
        gamma = f"{res.config.gamma:g}" if res.config.method == "def-fd" else "-"
        paper = PAPER_RESULTS.get(name)
        pg, pl = (f"{paper[1]:.2f}", f"{paper[2]:.2f}") if paper else ("-", "-")
        print(
            f"| {name} | {gamma} | {100 * f.global_mean:.2f} ± {100 * f.global_std:.2f} "
            f"| {100 * f.local_mean:.2f} ± {100 * f.local_std:.2f} | {pg} | {pl} |"
        )
    print(f"total wall time {wall:.1f} s")

    summary: dict[str, object] = {}
    for name, res in results.items():
        f = res.final
        summary[name] = {
            "global_acc": round(100 * f.global_mean, 2),
            "local_acc": round(100 * f.local_mean, 2),
            "global_std": round(100 * f.global_std, 2),
            "local_std": round(100 * f.local_std, 2),
            "gamma": res.config.gamma if res.config.method == "def-fd" else None,
            "rounds": f.round,
            "megabytes_sent": round(res.bytes_sent / 1e6, 2),
        }
    summary["paper"] = {
        k: {"gamma": g, "global_acc": a, "local_acc": b} for k, (g, a, b) in PAPER_RESULTS.items()
    }
    summary["settings"] = {**settings, "wall_s": round(wall, 1)}
    return summary


if __name__ == "__main__":
    main()
