"""Cross-device scale: thousands of clients, a sampled hundred per round, bounded memory.

The job (issue 23): ``--clients`` (5,000) clients share a Dirichlet(``--alpha`` 0.3) split
of Fashion-MNIST's 60,000 training images (about 12 each;
:func:`qfl.data.partition.dirichlet_topped_up`, at least 2 each); every round the server
samples ``--per-round`` (100) of them (:func:`qfl.cosim.sampling.sample_clients`, from the
seed), each trains one local epoch (SGD lr 0.05, momentum 0.9, batches of 32, a fresh
optimizer every round) and the server averages the uploads weighted by sample counts,
``--rounds`` (20) rounds, on the Def-FD CNN (:class:`qfl.models.FeatureCNN`) under qfl's
FedAvg (:class:`qfl.algorithms.fedavg.FedAvg`, batched engine, groups sized to the memory
budget of :mod:`qfl.engine.memory`). The same is then run at ``--resnet-clients`` (1,000)
clients on the ResNet (:class:`qfl.models.MultiExitResNet`, one exit: ``fedavg``'s
``resnet-me``).

Three measurements per model, each side in a fresh subprocess (so that its peak memory,
``ru_maxrss``, is its own):

- **qfl at N clients**: peak memory (the process's maximum resident set: data of all N
  clients, the model, the round's working set) and wall time per round;
- **qfl with only ``--small`` (100) clients in all**, each holding as many samples as at N
  (a Dirichlet split of the first ``small * pool / N`` images), all of them sampled every
  round: the same rounds with only the client count changed. ``round_time_ratio`` = time
  per round at N / time per round here; and (peak at N - peak here) / (N - small) is the
  memory an idle client costs;
- **Flower 1.42's own simulation of the N-client job** (``flwr.simulation.run_simulation``,
  Ray backend, one actor per core, ``FedAvg(fraction_train=per_round / N)``, a ClientApp
  training a plain ``nn.Module`` with ``torch.optim.SGD`` on the same split), run with
  ``/work/venv-flower``'s interpreter (``--flower-python``). ``vs_flower`` = qfl's samples/s
  over Flower's.

Timing: the first round is a warm-up on both sides (kernels loaded, Ray actors started,
data loaded); samples/s and seconds per round are over rounds 2..R (samples: the sampled
clients' training samples, summed). The load average of the (shared) machine is printed
before and after and goes in the JSON.

Usage::

    python benchmarks/bench_cross_device.py               # the issue's job (minutes)
    python benchmarks/bench_cross_device.py --smoke       # a tiny run of every path
    python benchmarks/bench_cross_device.py --no-flower   # qfl only

The last line printed is one JSON object with at least ``peak_memory_gb`` (qfl at N, the
largest over the models), ``round_time_ratio`` and ``vs_flower`` (the CNN's), and the
same per model under ``cnn`` and ``resnet``.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from qfl.data import TensorDataset, load_fashion_mnist, partition
from qfl.models import FeatureCNN, MultiExitResNet
from qfl.models.multiexit import reinitialize

ROOT = Path(__file__).resolve().parents[1]
RESULT_TAG = "BENCH_RESULT "
FLOWER_PYTHON = Path("/work/venv-flower/bin/python")


# --------------------------------------------------------------------------- the shared job


@functools.cache
def load_split(
    clients: int, pool: int, alpha: float, seed: int
) -> tuple[list[TensorDataset], TensorDataset]:
    """Every client's training set (Dirichlet split of the first ``pool`` training images,
    at least 2 samples each) and the test set; cached per process."""
    train, test = load_fashion_mnist(download=False)
    if pool < len(train):
        train = train.subset(range(pool))
    parts = partition.dirichlet_topped_up(
        train.y.numpy(), clients, alpha, seed=np.random.SeedSequence(seed), min_per_client=2
    )
    return [train.subset(p) for p in parts], test


def make_model(name: str, seed: int) -> torch.nn.Module:
    """The Def-FD CNN or fedavg's single-exit ResNet, initialised from ``seed``."""
    if name == "cnn":
        net: torch.nn.Module = FeatureCNN(in_channels=1, num_classes=10, image_size=28)
    else:
        net = MultiExitResNet(1, 10, width=16, exit_after=(5,))
    return reinitialize(net, seed)


def ce_loss(outputs: Any, y: torch.Tensor, teacher_outputs: Any) -> torch.Tensor:
    """Cross-entropy of the (first / only) logits: the engine's loss signature."""
    del teacher_outputs
    return F.cross_entropy(outputs[0], y)


def test_accuracy(model: torch.nn.Module, state: dict[str, torch.Tensor], test: Any) -> float:
    """Accuracy of ``state`` on the test set (eval mode)."""
    from torch.func import functional_call

    model.eval()
    correct = 0
    with torch.no_grad():
        for a in range(0, len(test), 2000):
            out = functional_call(model, state, (test.x[a : a + 2000],))
            correct += int((out[0].argmax(-1) == test.y[a : a + 2000]).sum())
    model.train()
    return correct / len(test)


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _job(args: argparse.Namespace) -> tuple[int, int, int]:
    """(clients, pool, per_round) of this side's run."""
    if args.small_job:
        pool = max(2 * args.small, round(args.pool * args.small / args.clients))
        return args.small, pool, min(args.per_round, args.small)
    return args.clients, args.pool, args.per_round


# --------------------------------------------------------------------------- qfl's side


def run_qfl(args: argparse.Namespace) -> dict[str, Any]:
    """One qfl run in this process: the job's rounds, timed; peak memory."""
    from qfl.algorithms.fedavg import FedAvg, FedAvgConfig
    from qfl.cosim.sampling import sample_clients
    from qfl.engine.memory import chunk_clients, client_working_set, resolve_memory
    from qfl.engine.select import resolve_engine

    torch.set_num_threads(args.threads)
    n, pool, k = _job(args)
    sets, test = load_split(n, pool, args.alpha, args.seed)
    model = make_model(args.model, args.seed)
    per_client = client_working_set(model, (1, 28, 28), args.batch_size)
    budget, where = resolve_memory(args.memory)
    group = chunk_clients(budget, per_client, where=where)
    config = FedAvgConfig(
        rounds=args.rounds,
        local_epochs=1,
        batch_size=args.batch_size,
        lr=args.lr,
        momentum=args.momentum,
        engine=resolve_engine(args.engine, model),
        group_size=group if group < k else None,
    )
    init = {name: p.detach().clone() for name, p in model.named_parameters()}
    fed = FedAvg(model, sets, loss_fn=ce_loss, config=config, seed=args.seed, initial_params=init)
    rss_setup = _rss_bytes()
    seconds, samples = [], []
    for r in range(args.rounds):
        fed.selected = sample_clients(args.seed, r, n, k)
        t0 = time.perf_counter()
        fed.run_round()
        seconds.append(time.perf_counter() - t0)
        samples.append(sum(len(sets[i]) for i in fed.selected))
    timed = seconds[1:] or seconds
    timed_samples = samples[1:] or samples
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {
        "side": "qfl",
        "clients": n,
        "per_round": k,
        "pool": pool,
        "engine": config.engine,
        "group_size": config.group_size,
        "working_set_bytes_per_client": per_client,
        "budget_bytes": budget,
        "rss_after_setup_bytes": rss_setup,
        "peak_bytes": peak,
        "round_s": seconds,
        "s_per_round": sum(timed) / len(timed),
        "samples_per_s": sum(timed_samples) / sum(timed),
        "acc": test_accuracy(model, dict(fed.params), test),
        "threads": torch.get_num_threads(),
    }


# --------------------------------------------------------------------------- Flower's side


def _train_one(state: Any, data: TensorDataset, job: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Plain PyTorch local training (what a Flower ClientApp does)."""
    model = make_model(job["model"], job["seed"])
    model.load_state_dict(state)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=job["lr"], momentum=job["momentum"])
    b = job["batch_size"]
    order = torch.randperm(len(data))
    for a in range(0, len(data), b):
        rows = order[a : a + b]
        loss = ce_loss(model(data.x.index_select(0, rows)), data.y.index_select(0, rows), None)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return {k: v.detach() for k, v in model.state_dict().items()}


def run_flower(args: argparse.Namespace) -> dict[str, Any]:
    """One Flower run in this process (Ray simulation), timed like :func:`run_qfl`."""
    import flwr
    from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
    from flwr.clientapp import ClientApp
    from flwr.serverapp import Grid, ServerApp
    from flwr.serverapp.strategy import FedAvg as FlowerFedAvg
    from flwr.simulation import run_simulation

    torch.set_num_threads(1)
    n, pool, k = _job(args)
    job = {
        key: getattr(args, key)
        for key in ("model", "alpha", "seed", "lr", "momentum", "batch_size")
    }
    job.update(clients=n, pool=pool)
    out: dict[str, Any] = {"ends": [], "samples": []}
    client_app = ClientApp()

    @client_app.train()
    def train(msg: Message, context: Context) -> Message:
        sets, _ = load_split(job["clients"], job["pool"], job["alpha"], job["seed"])
        data = sets[int(context.node_config["partition-id"])]
        new = _train_one(msg.content["arrays"].to_torch_state_dict(), data, job)
        metrics = MetricRecord({"num-examples": len(data)})
        return Message(RecordDict({"arrays": ArrayRecord(new), "metrics": metrics}), reply_to=msg)

    class TimedFedAvg(FlowerFedAvg):
        def aggregate_train(self, server_round: int, replies: Any) -> Any:
            replies = list(replies)
            result = super().aggregate_train(server_round, replies)
            out["ends"].append(time.perf_counter())
            ok = [r for r in replies if not r.has_error()]
            out["samples"].append(sum(int(r.content["metrics"]["num-examples"]) for r in ok))
            return result

    server_app = ServerApp()

    @server_app.main()
    def main(grid: Grid, context: Context) -> None:
        strategy = TimedFedAvg(
            fraction_train=k / n,
            fraction_evaluate=0.0,
            min_train_nodes=k,
            min_available_nodes=n,
        )
        init = make_model(job["model"], job["seed"]).state_dict()
        out["t0"] = time.perf_counter()
        result = strategy.start(grid, ArrayRecord(init), num_rounds=args.rounds)
        out["state"] = result.arrays.to_torch_state_dict()

    run_simulation(
        server_app=server_app,
        client_app=client_app,
        num_supernodes=n,
        backend_config={
            "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
            "init_args": {"num_cpus": args.threads, "include_dashboard": False},
        },
    )
    if "state" not in out or len(out["ends"]) < args.rounds:
        raise RuntimeError("the Flower simulation ended without finishing its rounds")
    ends = [out["t0"], *out["ends"]]
    seconds = [b - a for a, b in itertools.pairwise(ends)]
    timed, timed_samples = seconds[1:] or seconds, out["samples"][1:] or out["samples"]
    _, test = load_split(n, pool, args.alpha, args.seed)
    model = make_model(args.model, args.seed)
    state = {name: out["state"][name] for name, _ in model.named_parameters()}
    return {
        "side": "flower",
        "clients": n,
        "per_round": k,
        "round_s": seconds,
        "s_per_round": sum(timed) / len(timed),
        "samples_per_s": sum(timed_samples) / sum(timed),
        "peak_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "acc": test_accuracy(model, state, test),
        "flwr": flwr.__version__,
        "actors": args.threads,
    }


# --------------------------------------------------------------------------- the driver


def _child(python: str, argv: list[str], timeout: float, extra_path: str = "") -> dict[str, Any]:
    """Run one side in a fresh process; its result, or ``{"error": ...}``."""
    here = str(Path(__file__).resolve().parent)
    env = dict(os.environ)
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    # Imported as a module, so that Ray's workers import the ClientApp's functions by name.
    parts = (here, str(ROOT), env.get("PYTHONPATH"), extra_path)
    env["PYTHONPATH"] = os.pathsep.join(p for p in parts if p)
    code = "import sys, bench_cross_device as b; b.main(sys.argv[1:])"
    try:
        proc = subprocess.run(
            [python, "-c", code, *argv], capture_output=True, text=True, env=env, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_TAG):
            return json.loads(line[len(RESULT_TAG) :])
    tail = [line[:300] for line in (proc.stderr or proc.stdout).strip().splitlines()[-6:]]
    return {"error": f"exit {proc.returncode}: " + "\n".join(tail)}


def _load() -> float:
    return os.getloadavg()[0]


def _compare(
    args: argparse.Namespace, model: str, clients: int, rounds: int, flower: str | None
) -> dict:
    """qfl at N, qfl at the small job, Flower at N: one model's figures."""
    common = [
        f"--model={model}",
        f"--clients={clients}",
        f"--small={args.small}",
        f"--per-round={args.per_round}",
        f"--rounds={rounds}",
        f"--pool={args.pool}",
        f"--alpha={args.alpha}",
        f"--batch-size={args.batch_size}",
        f"--lr={args.lr}",
        f"--momentum={args.momentum}",
        f"--seed={args.seed}",
        f"--threads={args.threads}",
        f"--engine={args.engine}",
    ]
    if args.memory:
        common.append(f"--memory={args.memory}")
    runs: dict[str, dict[str, Any]] = {}
    plan = [("qfl", sys.executable, []), ("qfl_small", sys.executable, ["--small-job"])]
    if flower is not None:
        plan.append(("flower", flower, []))
    plan = [p for p in plan if args.only in (None, p[0])]
    for label, python, extra in plan:
        side = "flower" if label == "flower" else "qfl"
        load0 = _load()
        path = args.flower_pythonpath if side == "flower" else ""
        r = _child(python, [*common, f"--side={side}", *extra], args.timeout, path)
        r["load_avg"] = [load0, _load()]
        runs[label] = r
        if "error" in r:
            print(f"  {model} {label}: failed: {r['error']}", flush=True)
            continue
        print(
            f"  {model} {label:9s}: {r['clients']} clients, {r['per_round']} per round, "
            f"{r['s_per_round']:.2f} s/round, {r['samples_per_s']:.0f} samples/s, peak "
            f"{r['peak_bytes'] / 2**30:.2f} GB, acc {100 * r['acc']:.1f} % "
            f"(load {load0:.1f} -> {_load():.1f})",
            flush=True,
        )
    missing = {"error": "not run"}
    q, s = runs.get("qfl", missing), runs.get("qfl_small", missing)
    f = runs.get("flower", missing)
    ok = "error" not in q and "error" not in s
    idle = (q["peak_bytes"] - s["peak_bytes"]) / (q["clients"] - s["clients"]) if ok else None
    return {
        "clients": clients,
        "per_round": args.per_round,
        "peak_memory_gb": q["peak_bytes"] / 2**30 if "error" not in q else None,
        "round_time_ratio": q["s_per_round"] / s["s_per_round"] if ok else None,
        "vs_flower": (q["samples_per_s"] / f["samples_per_s"] if "error" not in f | q else None),
        "qfl_samples_per_s": q.get("samples_per_s"),
        "flower_samples_per_s": f.get("samples_per_s"),
        "qfl_s_per_round": q.get("s_per_round"),
        "small_s_per_round": s.get("s_per_round"),
        "flower_s_per_round": f.get("s_per_round"),
        "working_set_bytes_per_client": q.get("working_set_bytes_per_client"),
        "idle_bytes_per_client": idle,
        "group_size": q.get("group_size"),
        "qfl_acc": q.get("acc"),
        "flower_acc": f.get("acc"),
        "runs": runs,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=5000)
    parser.add_argument("--resnet-clients", type=int, default=1000)
    parser.add_argument("--small", type=int, default=100, help="clients of the small job")
    parser.add_argument("--per-round", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument(
        "--resnet-rounds", type=int, default=None, help="rounds of the ResNet job (--rounds)"
    )
    parser.add_argument("--pool", type=int, default=60000)
    parser.add_argument("--alpha", type=float, default=0.3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--momentum", type=float, default=0.9)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--memory", default=None, help="qfl's budget (default: QFL_MEMORY)")
    parser.add_argument("--models", default="cnn,resnet", help="cnn, resnet or both")
    parser.add_argument("--engine", default="auto", help="qfl's engine (auto, batched, ...)")
    parser.add_argument("--flower-python", default=str(FLOWER_PYTHON))
    parser.add_argument(
        "--flower-pythonpath",
        default="",
        help="extra PYTHONPATH of Flower's side (e.g. a folder linking the ray package when "
        "Flower's environment lacks it)",
    )
    parser.add_argument("--no-flower", action="store_true")
    parser.add_argument("--only", choices=("qfl", "qfl_small", "flower"), default=None)
    parser.add_argument("--smoke", action="store_true", help="a tiny run of every path")
    parser.add_argument("--timeout", type=float, default=3600.0, help="per run, seconds")
    parser.add_argument("--model", default="cnn", help=argparse.SUPPRESS)
    parser.add_argument("--side", choices=("qfl", "flower"), default=None, help=argparse.SUPPRESS)
    parser.add_argument("--small-job", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.smoke:
        args.clients, args.resnet_clients, args.small = 60, 40, 10
        args.per_round, args.rounds, args.pool = 10, 2, 1200
        args.no_flower = True
    if args.side is not None:  # a child: one run of one side
        result = run_qfl(args) if args.side == "qfl" else run_flower(args)
        print(RESULT_TAG + json.dumps(result), flush=True)
        return result

    flower = None if args.no_flower else args.flower_python
    if flower is not None and not Path(flower).exists():
        print(f"Flower not measured: no interpreter at {flower}")
        flower = None
    load0 = _load()
    print(
        f"machine: {os.cpu_count()} CPUs, {args.threads} threads per side, torch "
        f"{torch.__version__}; load average {load0:.2f}",
        flush=True,
    )
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    out: dict[str, Any] = {}
    for m in models:
        clients = args.clients if m == "cnn" else args.resnet_clients
        rounds = args.rounds if m == "cnn" else args.resnet_rounds or args.rounds
        print(
            f"{m}: {clients} clients sharing {args.pool} images (Dirichlet {args.alpha}), "
            f"{args.per_round} per round, {rounds} rounds",
            flush=True,
        )
        out[m] = _compare(args, "cnn" if m == "cnn" else "resnet-me", clients, rounds, flower)
        out[m]["rounds"] = rounds
    first = out[models[0]]
    peaks = [v["peak_memory_gb"] for v in out.values() if v["peak_memory_gb"] is not None]
    summary = {
        "peak_memory_gb": max(peaks) if peaks else None,
        "round_time_ratio": first["round_time_ratio"],
        "vs_flower": first["vs_flower"],
        "load_avg": [load0, _load()],
        "smoke": args.smoke,
        **{m: {k: v for k, v in d.items() if k != "runs"} for m, d in out.items()},
    }
    for m, d in out.items():
        for label, r in d["runs"].items():
            if "error" not in r:
                summary[m][f"{label}_round_s"] = r["round_s"]
    print(json.dumps(summary), flush=True)
    return summary


if __name__ == "__main__":
    main()
