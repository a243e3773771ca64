"""The same FedAvg job in qfl and in Flower's simulation, side by side (samples/s, accuracy).

The job, identical on both sides: ``--clients`` clients (24) holding a Dirichlet(``--alpha``
0.2) label split of Fashion-MNIST's 60,000 training images (:func:`qfl.data.partition.dirichlet`,
same seed, so the same split); the Def-FD CNN (:class:`qfl.models.FeatureCNN`, 16/32/64)
from the same initial weights; ``--rounds`` (5) rounds of FedAvg in which every client
trains ``--epochs`` (1) local epoch with SGD (lr 0.01, momentum 0.9, a fresh optimizer every
round, mini-batches of 32, the last partial batch kept) on cross-entropy, and the server
averages the uploads weighted by sample counts. Each client even sees its samples in the
same order on both sides (qfl's per-client, per-round permutation, :func:`batch_order`), so
the two runs differ only by float rounding. The final global model is scored on the 10,000
test images by one function (:func:`test_accuracy`) on both sides.

- **qfl**: :class:`qfl.algorithms.fedavg.FedAvg` with ``engine="batched"`` (on a CPU with its
  kernels built: the fused route of :mod:`qfl.engine.stacked_cnn`), ``--qfl-threads`` torch
  intra-op threads (default: qfl's own, one per physical core, :mod:`qfl.threads`) divided
  among ``--qfl-workers`` processes (``FedAvgConfig.workers``, default one per core: each
  trains a share of the clients balanced by samples, :mod:`qfl.engine.workers`).
- **Flower**: a ``ServerApp`` running ``flwr.serverapp.strategy.FedAvg`` (weighted by
  ``num-examples``, no federated evaluation) and a ``ClientApp`` training a plain
  ``nn.Module`` with ``torch.optim.SGD``, in ``flwr.simulation.run_simulation`` on the Ray
  backend with ``--flower-actors`` actors (default: one per core, each with 1 CPU and 1
  torch thread).

Both sides get ``--cores`` CPUs (default: all usable ones): each child process is pinned
to that many, and Ray is started with that many.

**What is timed**, identically: from the moment the server starts round 1 to the end of the
last round's aggregation, with the data already loaded and partitioned in every process
that trains and the model code warmed up (qfl: the fused kernels loaded and one training
call on one batch, in each worker process too; Flower: every ClientApp asked once, before
the timer, to load its data and run one training step on one batch, which also starts the
Ray actors). samples/s =
(samples processed in local training, summed over clients and rounds) / that time. Process
start, imports, data loading, Ray start-up and the final evaluation are outside it.
Alongside, samples per CPU-second over the same span (qfl: its process's CPU time; Flower:
the ClientApps' training calls plus the server process, leaving out Ray's own processes,
in Flower's favour), which other jobs on a shared machine disturb less than wall time.

Each side runs in a fresh subprocess (qfl with this interpreter; Flower with the first
interpreter that imports ``flwr``: this one, else ``.venv-flower/bin/python`` beside the
checkout, else ``--flower-python``), repetitions alternate (qfl, Flower, Flower, qfl, ...)
and the best samples/s of each side is kept (medians printed too). Flower's simulation
installs beside qfl (``pip install -e '.[bench]'``: Flower 1.42 with Ray; the ``qfl``
command works there too); a separate ``.venv-flower`` is still found if you keep one.

Usage::

    python benchmarks/bench_vs_flower.py                  # 3 repetitions of each side
    python benchmarks/bench_vs_flower.py --repeats 1 --pool 12000 --rounds 2   # quick look
    python benchmarks/bench_vs_flower.py --qfl-threads 2,1   # qfl on 2 and on 1 thread too

The run also measures the fp32 matmul rate of the cores given and reports
``ceiling_ratio``: that rate over Flower's nominal training GFLOP/s (3x the forward FLOPs
per sample), i.e. how far Flower's own arithmetic, run at the matmul rate, would lead it.

The last line printed is one JSON object (``qfl_samples_per_s``, ``flower_samples_per_s``,
``ratio``, ``qfl_acc``, ``flower_acc``, ``ceiling_ratio``, ...); the Flower fields are
``null`` (with the reason printed) where no interpreter with Flower was found.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from qfl.data import TensorDataset, load_fashion_mnist, partition
from qfl.models import FeatureCNN, count_flops
from qfl.threads import default_threads, usable_cores

ROOT = Path(__file__).resolve().parents[1]
RESULT_TAG = "BENCH_RESULT "


# --------------------------------------------------------------------------- the shared job


def _data_dir() -> Path | None:
    """``$QFL_DATA_DIR`` if set (the loader resolves it), else ``../shared/data`` beside
    the checkout."""
    if os.environ.get("QFL_DATA_DIR"):
        return None
    return ROOT.parent / "shared" / "data" / "fashion-mnist"


@functools.cache
def load_job(
    clients: int, alpha: float, pool: int, seed: int
) -> tuple[list[TensorDataset], TensorDataset]:
    """Every client's training set (the Dirichlet split of the first ``pool`` training
    images) and the test set; cached per process."""
    train, test = load_fashion_mnist(_data_dir(), download=False)
    if pool < len(train):
        train = train.subset(range(pool))
    parts = partition.dirichlet(train.y.numpy(), clients, alpha, seed=seed)
    return [train.subset(p) for p in parts], test


def initial_state(seed: int) -> dict[str, torch.Tensor]:
    """The initial global model: ``FeatureCNN``'s default initialisation drawn from
    ``seed`` (torch's global generator is forked, not disturbed)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = FeatureCNN()
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def batch_order(seed: int, round_: int, client: int, epoch: int, n: int) -> torch.Tensor:
    """Client ``client``'s sample order in local epoch ``epoch`` of round ``round_`` (0-based),
    exactly as qfl's FedAvg draws it: the client's stream ``derive_seed(seed, 0, round,
    client)`` (:mod:`qfl.seeding`), child ``(0, epoch)`` (:class:`qfl.engine.ClientBatcher`)."""
    ss = np.random.SeedSequence(seed, spawn_key=(0, round_, client, 0, epoch))
    state = ss.generate_state(2, np.uint32)
    gen = torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))
    return torch.randperm(n, generator=gen)


def test_accuracy(state: Mapping[str, torch.Tensor], test: TensorDataset) -> float:
    """Accuracy of the global model ``state`` on ``test`` (eval mode, chunks of 2,000)."""
    model = FeatureCNN()
    model.load_state_dict({k: torch.as_tensor(v) for k, v in state.items()})
    model.eval()
    correct = 0
    with torch.no_grad():
        for a in range(0, len(test), 2000):
            logits, _ = model(test.x[a : a + 2000])
            correct += int((logits.argmax(-1) == test.y[a : a + 2000]).sum())
    return correct / len(test)


def ce_loss(outputs: Any, y: torch.Tensor, teacher_outputs: Any) -> torch.Tensor:
    """Cross-entropy of the logits (the engine's loss signature)."""
    return F.cross_entropy(outputs[0], y)


# --------------------------------------------------------------------------- qfl's side


def run_qfl(args: argparse.Namespace) -> dict[str, Any]:
    """One qfl run in this process: warm up, time the rounds, score the final model."""
    from qfl.algorithms.fedavg import FedAvg, FedAvgConfig
    from qfl.engine import BatchedTrainer, ClientBatcher, kernels, sgd, stack_models
    from qfl.seeding import derive_seed

    torch.set_num_threads(args.qfl_threads)
    train_sets, test = load_job(args.clients, args.alpha, args.pool, args.seed)
    config = FedAvgConfig(
        rounds=args.rounds,
        local_epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        momentum=args.momentum,
        engine="batched",
        workers=args.qfl_workers,
    )
    model = FeatureCNN()
    fed = FedAvg(
        model,
        train_sets,
        loss_fn=ce_loss,
        config=config,
        seed=args.seed,
        initial_params=initial_state(args.seed),
    )
    # The same batches as the Flower side: qfl's own permutation of the first round.
    batcher = ClientBatcher(
        train_sets,
        args.batch_size,
        seed=[derive_seed(args.seed, 0, 0, i) for i in range(args.clients)],
    )
    same_order = all(
        torch.equal(batcher.permutation(i, 0), batch_order(args.seed, 0, i, 0, len(d)))
        for i, d in enumerate(train_sets)
    )
    # Warm-up, outside the timer: load the kernels, one training call on one batch each.
    kernels.prepare()
    warm = BatchedTrainer(model, ce_loss, sgd(args.lr, momentum=args.momentum), batch_size=32)
    p0, _ = stack_models([model] * args.clients)
    warm.train_epochs(
        p0,
        warm.init_state(p0),
        [d.subset(range(min(args.batch_size, len(d)))) for d in train_sets],
        1,
        seed=1,
    )
    route = "fused" if warm._use_fused(torch.device("cpu")) else "vmap"
    fed.start_workers()  # with --qfl-workers > 1: spawn them and load their data now

    ends = []
    t0, cpu0 = time.perf_counter(), time.process_time()
    for _ in range(args.rounds):
        fed.run_round()
        ends.append(time.perf_counter() - t0)
    seconds, cpu = ends[-1], time.process_time() - cpu0 + fed.worker_cpu_seconds
    fed.close()
    samples = args.rounds * args.epochs * sum(len(d) for d in train_sets)
    return {
        "side": "qfl",
        "seconds": seconds,
        "round_ends": ends,
        "samples": samples,
        "samples_per_s": samples / seconds,
        "cpu_seconds": cpu,
        "acc": test_accuracy(fed.params, test),
        "threads": torch.get_num_threads(),
        "workers": args.qfl_workers,
        "route": route,
        "same_batch_order": same_order,
        "torch": torch.__version__,
    }


# --------------------------------------------------------------------------- Flower's side


def _train_one_client(
    state: Mapping[str, torch.Tensor], data: TensorDataset, args: Any, round_: int, client: int
) -> dict[str, torch.Tensor]:
    """Plain PyTorch local training (what a Flower ClientApp does): ``nn.Module``,
    ``torch.optim.SGD``, the client's batches in qfl's order."""
    model = FeatureCNN()
    model.load_state_dict(state)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=args["lr"], momentum=args["momentum"])
    b = args["batch_size"]
    for epoch in range(args["epochs"]):
        order = batch_order(args["seed"], round_, client, epoch, len(data))
        for a in range(0, len(data), b):
            rows = order[a : a + b]
            logits, _ = model(data.x.index_select(0, rows))
            loss = F.cross_entropy(logits, data.y.index_select(0, rows))
            opt.zero_grad()
            loss.backward()
            opt.step()
    return {k: v.detach() for k, v in model.state_dict().items()}


def _flower_apps(args: argparse.Namespace, out: dict[str, Any]) -> tuple[Any, Any]:
    """The ServerApp and ClientApp of the Flower side; the ServerApp fills ``out``."""
    from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
    from flwr.clientapp import ClientApp
    from flwr.serverapp import Grid, ServerApp
    from flwr.serverapp.strategy import FedAvg as FlowerFedAvg

    job = {
        k: getattr(args, k)
        for k in ("clients", "alpha", "pool", "seed", "lr", "momentum", "batch_size", "epochs")
    }
    job["actor_cpus"] = _actor_cpus(args)
    client_app = ClientApp()

    def local_data(context: Context) -> TensorDataset:
        torch.set_num_threads(job["actor_cpus"])  # as many threads as the actor has CPUs
        sets, _ = load_job(job["clients"], job["alpha"], job["pool"], job["seed"])
        return sets[int(context.node_config["partition-id"])]

    @client_app.query()
    def warm_up(msg: Message, context: Context) -> Message:
        data = local_data(context)
        first = data.subset(range(min(job["batch_size"], len(data))))
        _train_one_client(initial_state(0), first, job, 0, 0)
        return Message(RecordDict({"metrics": MetricRecord({"ok": 1})}), reply_to=msg)

    @client_app.train()
    def train(msg: Message, context: Context) -> Message:
        client = int(context.node_config["partition-id"])
        data = local_data(context)
        state = msg.content["arrays"].to_torch_state_dict()
        round_ = int(msg.content["config"]["server-round"]) - 1
        t0, cpu0 = time.perf_counter(), time.process_time()
        new = _train_one_client(state, data, job, round_, client)
        seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        n = len(data) * job["epochs"]
        metrics = MetricRecord({"num-examples": n, "train-s": seconds, "train-cpu-s": cpu})
        reply = RecordDict({"arrays": ArrayRecord(new), "metrics": metrics})
        return Message(reply, reply_to=msg)

    class TimedFedAvg(FlowerFedAvg):
        """Flower's FedAvg, noting when each round's aggregation ends."""

        def aggregate_train(self, server_round: int, replies: Any) -> Any:
            replies = list(replies)
            result = super().aggregate_train(server_round, replies)
            out["round_ends"].append(time.perf_counter() - out["t0"])
            ok = [r for r in replies if not r.has_error()]
            out["trained"].append(len(ok))
            for r in ok:
                out["client_seconds"] += float(r.content["metrics"]["train-s"])
                out["client_cpu"] += float(r.content["metrics"]["train-cpu-s"])
            return result

    server_app = ServerApp()

    @server_app.main()
    def main(grid: Grid, context: Context) -> None:
        nodes = list(grid.get_node_ids())
        while len(nodes) < job["clients"]:
            time.sleep(0.1)
            nodes = list(grid.get_node_ids())
        warm = [
            Message(RecordDict({"config": ConfigRecord({})}), dst_node_id=n, message_type="query")
            for n in nodes
        ]
        replies = list(grid.send_and_receive(warm))
        errors = [r.error.reason for r in replies if r.has_error()]
        if errors:
            raise RuntimeError(f"Flower warm-up: {len(errors)} clients failed: {errors[0][:500]}")
        strategy = TimedFedAvg(
            fraction_train=1.0,
            fraction_evaluate=0.0,
            min_train_nodes=job["clients"],
            min_available_nodes=job["clients"],
        )
        out.update(round_ends=[], trained=[], client_seconds=0.0, client_cpu=0.0)
        out["t0"], cpu0 = time.perf_counter(), time.process_time()
        result = strategy.start(
            grid, ArrayRecord(initial_state(job["seed"])), num_rounds=args.rounds
        )
        out["seconds"] = time.perf_counter() - out["t0"]
        out["server_cpu"] = time.process_time() - cpu0
        out["state"] = result.arrays.to_torch_state_dict()

    return server_app, client_app


def _actor_cpus(args: argparse.Namespace) -> int:
    """CPUs (and torch threads) per Ray actor: the cores shared among the actors."""
    return max(1, args.cores // args.flower_actors)


def run_flower(args: argparse.Namespace) -> dict[str, Any]:
    """One Flower run in this process (Ray simulation), timed like :func:`run_qfl`."""
    import flwr
    from flwr.simulation import run_simulation

    torch.set_num_threads(1)
    train_sets, test = load_job(args.clients, args.alpha, args.pool, args.seed)
    out: dict[str, Any] = {}
    server_app, client_app = _flower_apps(args, out)
    run_simulation(
        server_app=server_app,
        client_app=client_app,
        num_supernodes=args.clients,
        backend_config={
            "client_resources": {"num_cpus": _actor_cpus(args), "num_gpus": 0.0},
            "init_args": {"num_cpus": args.cores, "include_dashboard": False},
        },
    )
    if "state" not in out:
        raise RuntimeError("the Flower simulation ended without finishing its rounds")
    if any(n != args.clients for n in out["trained"]):
        raise RuntimeError(f"clients trained per round: {out['trained']}, not {args.clients}")
    samples = args.rounds * args.epochs * sum(len(d) for d in train_sets)
    return {
        "side": "flower",
        "seconds": out["seconds"],
        "round_ends": out["round_ends"],
        "samples": samples,
        "samples_per_s": samples / out["seconds"],
        # Counted: the ClientApps' training calls and this (server) process; not counted, in
        # Flower's favour: Ray's own processes and the actors' work around the calls.
        "cpu_seconds": out["client_cpu"] + out["server_cpu"],
        "acc": test_accuracy(out["state"], test),
        # Time the ClientApps spent in local training, summed over clients and rounds.
        "client_train_seconds": out["client_seconds"],
        "threads": (
            f"{args.flower_actors} Ray actors x {_actor_cpus(args)} CPU, "
            f"{_actor_cpus(args)} torch thread(s) each"
        ),
        "flwr": flwr.__version__,
        "torch": torch.__version__,
    }


# --------------------------------------------------------------------------- the driver


def flower_python(explicit: str | None) -> tuple[str | None, str]:
    """An interpreter that imports ``flwr``, and how it was found (or why none was)."""
    if explicit:
        if not Path(explicit).exists():
            return None, f"--flower-python {explicit}: no such file"
        return explicit, "--flower-python"
    try:
        import flwr  # noqa: F401
    except ImportError:
        pass
    else:
        return sys.executable, "this interpreter"
    beside = ROOT / ".venv-flower" / "bin" / "python"
    if beside.exists():
        return str(beside), str(beside.relative_to(ROOT))
    return None, (
        "flwr is not importable here and there is no .venv-flower beside the checkout; "
        "install Flower in its own environment (see the module docstring) or pass "
        "--flower-python"
    )


def _child(python: str, side: str, argv: Sequence[str], timeout: float) -> dict[str, Any]:
    """Run one side in a fresh process; its result, or ``{"error": ...}``."""
    here = str(Path(__file__).resolve().parent)
    env = dict(os.environ)
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as qfl's CLI sets it (qfl.threads)
    # Imported as a module (not run as __main__), so that Ray's workers import the
    # ClientApp's functions by name instead of unpickling copies of them.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (here, env.get("PYTHONPATH")) if p)
    code = "import sys, bench_vs_flower as b; b.main(sys.argv[1:])"
    cmd = [python, "-c", code, "--side", side, *argv]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_TAG):
            return json.loads(line[len(RESULT_TAG) :])
    tail = [line[:300] for line in (proc.stderr or proc.stdout).strip().splitlines()[-6:]]
    return {"error": f"exit {proc.returncode}: " + "\n".join(tail)}


def _job_argv(args: argparse.Namespace) -> list[str]:
    return [
        f"--clients={args.clients}",
        f"--alpha={args.alpha}",
        f"--pool={args.pool}",
        f"--rounds={args.rounds}",
        f"--epochs={args.epochs}",
        f"--batch-size={args.batch_size}",
        f"--lr={args.lr}",
        f"--momentum={args.momentum}",
        f"--seed={args.seed}",
        f"--flower-actors={args.flower_actors}",
        f"--cores={args.cores}",
    ]


def _train_share(run: dict[str, Any], args: argparse.Namespace) -> float:
    """Flower: the ClientApps' local training time over the actors' wall time."""
    return float(run["client_train_seconds"]) / (args.flower_actors * run["seconds"])


def _per_cpu(runs: list[dict[str, Any]]) -> float | None:
    """Best samples per CPU-second of a side's runs (see each side's ``cpu_seconds``)."""
    ok = [r["samples"] / r["cpu_seconds"] for r in runs if "error" not in r]
    return max(ok) if ok else None


def _best(runs: list[dict[str, Any]]) -> dict[str, Any] | None:
    ok = [r for r in runs if "error" not in r]
    return max(ok, key=lambda r: r["samples_per_s"]) if ok else None


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cores = usable_cores()
    parser.add_argument("--clients", type=int, default=24)
    parser.add_argument("--alpha", type=float, default=0.2)
    parser.add_argument("--pool", type=int, default=60000, help="training images split")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--momentum", type=float, default=0.9)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3, help="runs of each side")
    parser.add_argument("--cores", type=int, default=cores, help="CPUs given to each side")
    parser.add_argument(
        "--qfl-threads",
        default=None,
        help="torch threads of qfl's side; a comma list (2,1) alternates a qfl run per count, "
        "the first one reported as qfl's (default: qfl's own, one per physical core)",
    )
    parser.add_argument(
        "--qfl-workers",
        default=None,
        help="processes qfl's FedAvg trains in (FedAvgConfig.workers; its threads divided "
        "among them; default: one per core given, measured faster than threads here); a "
        "comma list (2,1) alternates a qfl run per count too",
    )
    parser.add_argument(
        "--flower-actors", type=int, default=None, help="Ray actors (default: one per core)"
    )
    parser.add_argument("--flower-python", default=None)
    parser.add_argument("--only", choices=("qfl", "flower"), default=None)
    parser.add_argument("--timeout", type=float, default=1800.0, help="per run, seconds")
    parser.add_argument("--side", choices=("qfl", "flower"), default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    counts = [min(default_threads(), args.cores)] if args.qfl_threads is None else []
    counts += [int(t) for t in str(args.qfl_threads or "").split(",") if t.strip()]
    args.qfl_threads = counts[0]
    wcounts = [int(w) for w in str(args.qfl_workers or args.cores).split(",") if w.strip()]
    args.qfl_workers = wcounts[0]
    if args.flower_actors is None:
        args.flower_actors = args.cores

    if args.side is not None:  # a child: one run of one side, on the first --cores CPUs
        if hasattr(os, "sched_setaffinity") and args.cores < usable_cores():
            os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[: args.cores])
        result = run_qfl(args) if args.side == "qfl" else run_flower(args)
        print(RESULT_TAG + json.dumps(result), flush=True)
        return result

    print(
        f"machine: {platform.processor() or platform.machine()}, {cores} usable cores, "
        f"torch {torch.__version__}, python {platform.python_version()}"
    )
    print(
        f"job: {args.clients} clients, Dirichlet({args.alpha}) split of {args.pool} "
        f"Fashion-MNIST images, FeatureCNN, {args.rounds} rounds x {args.epochs} local "
        f"epoch(s), batch {args.batch_size}, SGD lr {args.lr} momentum {args.momentum}, "
        f"seed {args.seed}"
    )
    fl_python, how = flower_python(args.flower_python)
    print(f"Flower interpreter: {fl_python or 'none'} ({how})")
    # (label, side, extra arguments): qfl once per thread count, the first one labelled "qfl".
    variants = [
        (
            "qfl" if (t, w) == (counts[0], wcounts[0]) else f"qfl@{t}t{w}w",
            "qfl",
            [f"--qfl-threads={t}", f"--qfl-workers={w}"],
        )
        for t in counts
        for w in wcounts
    ]
    if fl_python is not None:
        variants.append(("flower", "flower", []))
    variants = [v for v in variants if args.only in (None, v[1])]
    runs: dict[str, list[dict[str, Any]]] = {label: [] for label, _, _ in variants}
    runs.setdefault("qfl", [])
    runs.setdefault("flower", [])
    child_argv = _job_argv(args)
    from bench_engine import matmul_gflops  # beside this script; the children do not need it

    torch.set_num_threads(args.cores)
    peak = matmul_gflops()  # the machine's fp32 rate on these cores, before and after
    for rep in range(args.repeats):
        for label, side, extra in variants if rep % 2 == 0 else variants[::-1]:
            python = sys.executable if side == "qfl" else str(fl_python)
            r = _child(python, side, [*child_argv, *extra], args.timeout)
            runs[label].append(r)
            if "error" in r:
                print(f"  rep {rep}: {label:6s} failed: {r['error']}", flush=True)
                continue
            rounds = ", ".join(
                f"{b - a:.1f}"
                for a, b in zip([0.0, *r["round_ends"]], r["round_ends"], strict=False)
            )
            print(
                f"  rep {rep}: {label:6s} {r['seconds']:7.1f} s  {r['samples_per_s']:8.0f} "
                f"samples/s  acc {100 * r['acc']:.2f} %  (rounds: {rounds} s)",
                flush=True,
            )

    q, f = _best(runs["qfl"]), _best(runs["flower"])
    peak = max(peak, matmul_gflops())
    train_mflop = 3 * count_flops(FeatureCNN().eval(), (1, 28, 28)) / 1e6  # ~3x forward

    def med(side: str) -> float:
        return statistics.median(r["samples_per_s"] for r in runs[side] if "error" not in r)

    if q is not None:
        print(
            f"qfl ({q['route']} route, {q['threads']} threads): best {q['samples_per_s']:.0f} "
            f"samples/s (median {med('qfl'):.0f}), test accuracy {100 * q['acc']:.2f} %"
        )
    others = {label: _best(rs) for label, rs in runs.items() if label.startswith("qfl@")}
    for label, o in others.items():
        if o is not None:
            print(
                f"qfl ({o['threads']} thread(s), {o['workers']} process(es)): best "
                f"{o['samples_per_s']:.0f} samples/s "
                f"(median {med(label):.0f}), test accuracy {100 * o['acc']:.2f} %"
            )
    if f is not None:
        print(
            f"Flower {f['flwr']} ({f['threads']}): best {f['samples_per_s']:.0f} samples/s "
            f"(median {med('flower'):.0f}), test accuracy {100 * f['acc']:.2f} %"
        )
        print(
            f"  Flower's ClientApps trained for {f['client_train_seconds']:.1f} s in all: "
            f"{100 * _train_share(f, args):.0f} % of the {args.flower_actors} actors' time "
            "in the timed rounds (the rest: messaging, serialisation, scheduling, idle actors)"
        )
    elif fl_python is None:
        print(f"Flower not measured: {how}")
    ratio = q["samples_per_s"] / f["samples_per_s"] if q and f else None
    if ratio is not None:
        print(f"qfl / Flower: {ratio:.2f}x (best of each)")
    # The nominal training work (3x the forward FLOPs) at the machine's fp32 matmul rate,
    # against Flower's: how far the same arithmetic could lead Flower (the fused route does
    # somewhat less than nominal: no input gradient for block 1, 6x6 of block 3's 7x7 maps).
    ceiling = peak / (f["samples_per_s"] * train_mflop / 1e3) if f else None
    if ceiling is not None and q is not None:
        print(
            f"fp32 matmul rate on {args.cores} cores: {peak:.0f} GFLOP/s. Nominal work "
            f"{train_mflop:.1f} MFLOP per sample (3x forward): Flower ran at "
            f"{f['samples_per_s'] * train_mflop / 1e3:.0f} GFLOP/s, qfl at "
            f"{q['samples_per_s'] * train_mflop / 1e3:.0f} ({ratio / ceiling:.0%} of the "
            f"matmul rate); at the matmul rate the nominal work runs {ceiling:.2f}x Flower's "
            f"speed, so a 3x lead needs {3 / ceiling:.0%} of it"
        )
    qc, fc = _per_cpu(runs["qfl"]), _per_cpu(runs["flower"])
    cpu_ratio = qc / fc if qc and fc else None
    if cpu_ratio is not None:
        print(
            f"per CPU-second (best of each; less sensitive to other load): qfl {qc:.0f}, "
            f"Flower {fc:.0f} samples: {cpu_ratio:.2f}x"
        )
    out: dict[str, Any] = {
        "clients": args.clients,
        "alpha": args.alpha,
        "pool": args.pool,
        "rounds": args.rounds,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "repeats": args.repeats,
        "statistic": "best",
        "qfl_threads": args.qfl_threads,
        "qfl_workers": args.qfl_workers,
        "flower_actors": args.flower_actors,
        "qfl_route": q["route"] if q else None,
        "same_batch_order": q["same_batch_order"] if q else None,
        "flwr_version": f["flwr"] if f else None,
        "qfl_samples_per_s": round(q["samples_per_s"], 1) if q else None,
        "qfl_median_samples_per_s": round(med("qfl"), 1) if q else None,
        "qfl_samples_per_s_by_threads": {
            f"{o['threads']}" + (f"x{o['workers']}" if o.get("workers", 1) > 1 else ""): round(
                o["samples_per_s"], 1
            )
            for o in [q, *others.values()]
            if o is not None
        },
        "flower_samples_per_s": round(f["samples_per_s"], 1) if f else None,
        "flower_median_samples_per_s": round(med("flower"), 1) if f else None,
        "ratio": round(ratio, 3) if ratio is not None else None,
        "qfl_samples_per_cpu_s": round(qc, 1) if qc else None,
        "flower_samples_per_cpu_s": round(fc, 1) if fc else None,
        "cpu_ratio": round(cpu_ratio, 3) if cpu_ratio is not None else None,
        "qfl_acc": round(q["acc"], 4) if q else None,
        "flower_acc": round(f["acc"], 4) if f else None,
        "matmul_gflops": round(peak, 1),
        "train_mflop_per_sample": round(train_mflop, 3),
        "ceiling_ratio": round(ceiling, 3) if ceiling is not None else None,
        "qfl_fraction_of_matmul": round(ratio / ceiling, 3) if ratio and ceiling else None,
        "flower_client_train_share": round(_train_share(f, args), 3) if f else None,
        "flower_unavailable": (
            None
            if f
            else how
            if fl_python is None
            else "not run (--only qfl)"
            if args.only == "qfl"
            else "every Flower run failed"
        ),
    }
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
