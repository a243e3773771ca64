"""The learning half of a co-simulation, one job class per method family.

A job knows, before any training, what the network half needs (a
:class:`~qfl.cosim.schedule.ComputeProfile`: data sizes, FLOPs per sample counted from the
model, model bytes) and which schedule to run; after the network half it executes the
rounds the :class:`~qfl.cosim.schedule.Timeline` completed, through a
:class:`~qfl.cosim.replay.ReplayTransport` that drops what the network failed to deliver,
and reports evaluations as :class:`EvalRow` s.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import simpy

from network import QKDNetwork
from qfl.cosim.replay import ReplayTransport
from qfl.cosim.schedule import ComputeProfile, Timeline, decentralized_schedule, server_schedule
from qfl.scenario import Scenario, ScenarioError
from qkd.errors import ParameterError

__all__ = ["EvalRow", "LearningJob", "make_job"]


@dataclass(frozen=True)
class EvalRow:
    """One evaluation of one client's model (``node="mean"``: the mean over clients)."""

    round: int
    node: str
    global_acc: float = math.nan
    local_acc: float = math.nan
    exit_acc: tuple[float, ...] = ()


OnEval = Callable[[int, list[EvalRow]], None]


class LearningJob(Protocol):
    """What the co-simulation needs of a learning method."""

    profile: ComputeProfile

    def schedule(
        self, env: simpy.Environment, net: QKDNetwork, rounds: int, tl: Timeline
    ) -> Generator[simpy.Event, Any, None]:
        """The SimPy process of the method's communication schedule."""
        ...

    def identity(self) -> str:
        """A hash of every learning input except the timeline (for reuse across points)."""
        ...

    def execute(self, tl: Timeline, eval_rounds: set[int], on_eval: OnEval) -> None:
        """Run the completed rounds of ``tl``, evaluating after the rounds in ``eval_rounds``
        (1-based), and pass each evaluation to ``on_eval``."""
        ...


def _identity(sc: Scenario, clients: Sequence[str], extra: dict[str, Any] | None = None) -> str:
    data = {
        "learning": sc.learning.model_dump(mode="json", exclude={"rounds", "eval_every"}),
        "seed": sc.seed,
        "clients": list(clients),
        "extra": extra or {},
    }
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def resolve_engine(engine: str, *, fused_cnn: bool = False) -> str:
    """``auto`` -> ``batched`` where CUDA is available, or on a CPU for a method that trains
    the Def-FD CNN (``fused_cnn``) when the fused CPU kernels are built; else ``sequential``.

    On a 2-core CPU the fused route trains the CNN ~2.7x faster than the per-client loop,
    while the generic ``vmap`` route is about as fast as the loop (benchmarks/README.md).
    """
    if engine != "auto":
        return engine
    import torch

    if torch.cuda.is_available():
        return "batched"
    if fused_cnn:
        from qfl.engine import kernels

        if kernels.available():
            return "batched"
    return "sequential"


def _learning_error(exc: ParameterError) -> ScenarioError:
    """A learning method's parameter error, as an error on the scenario's ``learning`` field."""
    return ScenarioError(f"learning.{exc.name}", f"must be {exc.allowed}, got {exc.value!r}")


def _star_replay(names: Sequence[str], server: str, tl: Timeline) -> ReplayTransport:
    """The server methods' transport: clients ``0..n-1`` and ``"server"`` on a star, minus
    the transfers the network failed to deliver."""
    from qfl.algorithms.fedavg import star_transport

    index: dict[str, Any] = {nm: i for i, nm in enumerate(names)}
    index[server] = "server"
    dropped = [(r, index[s], index[d]) for r, s, d, _ in tl.dropped]
    star = star_transport(list(range(len(names))), "server")
    return ReplayTransport({node: star.neighbours(node) for node in star.nodes}, dropped)


def _rows(
    r: int, names: Sequence[str], glob: Sequence[float], local: Sequence[float]
) -> list[EvalRow]:
    rows = [EvalRow(r, n, float(g), float(lo)) for n, g, lo in zip(names, glob, local, strict=True)]
    rows.append(EvalRow(r, "mean", float(sum(glob) / len(glob)), float(sum(local) / len(local))))
    return rows


class DecentralizedJob:
    """Def-FD, Def-KT and gossip averaging on Fashion-MNIST (no server).

    Clients are the scenario's client nodes; every client may send to every other (the
    overlay is complete; the network routes each transfer through relays).
    """

    def __init__(self, sc: Scenario, clients: Sequence[str], flops: Sequence[float]) -> None:
        import torch

        from qfl.algorithms.deffd import DefFDConfig
        from qfl.data import load_fashion_mnist
        from qfl.experiments.deffd import DefFDSetup, make_clients
        from qfl.models import FeatureCNN, count_flops

        lr = sc.learning
        if len(clients) < 2:
            raise ScenarioError("learning.clients", f"{len(clients)} clients; needs at least 2")
        self.sc = sc
        self.names = tuple(clients)
        n = len(clients)
        self.setup = DefFDSetup(
            n_clients=n,
            classes_per_client=lr.classes_per_client,
            holdout_fraction=lr.holdout_fraction,
            samples_per_client=lr.samples_per_client,
            test_samples=lr.test_samples,
            rounds=lr.rounds,
            eval_every=lr.eval_every,
            seed=sc.seed,
        )
        if not isinstance(lr.temperature, float | int):
            raise ScenarioError(
                "learning.temperature",
                f"must be a number > 0 for {lr.method} (the adaptive schedule is multi-exit's), "
                f"got {lr.temperature!r}",
            )
        try:
            self.config = DefFDConfig(
                method=lr.method,
                feature_loss=lr.feature_loss,
                gamma=lr.gamma,
                temperature=float(lr.temperature),
                local_epochs=lr.local_epochs,
                fusion_epochs=lr.fusion_epochs,
                lr=lr.lr,
                momentum=lr.momentum,
                weight_decay=lr.weight_decay,
                batch_size=lr.batch_size,
                senders_per_round=lr.senders_per_round,
                # Def-KT trains a pair of models per client, which the fused route does not cover
                engine=resolve_engine(lr.engine, fused_cnn=lr.method != "def-kt"),
            )
            self.n_senders = self.config.n_senders(n)
        except ParameterError as exc:
            raise _learning_error(exc) from None
        train, test = load_fashion_mnist()
        try:
            self.clients, self.test = make_clients(train, test, self.setup)
        except ParameterError as exc:
            raise _learning_error(exc) from None
        self.model = FeatureCNN(in_channels=1, num_classes=10, image_size=28)
        fwd = float(count_flops(self.model, (1, 28, 28)))
        bf = sc.compute.backward_factor
        n_params = sum(p.numel() for p in self.model.parameters())
        model_bytes = int(n_params * torch.finfo(torch.float32).bits // 8)
        fuse = {
            "def-fd": fwd * (bf + 1),  # train the receiver + forward the frozen teacher
            "def-kt": 2 * fwd * bf,  # both models train (mutual learning)
            "gossip-avg": fwd * bf * self.config.gossip_epochs,
        }[lr.method]
        self.profile = ComputeProfile(
            clients=self.names,
            train_sizes=tuple(len(c.train) for c in self.clients),
            flops_per_s=tuple(float(f) for f in flops),
            train_flops_per_sample=(fwd * bf,) * n,
            fuse_flops_per_sample=(fuse,) * n,
            upload_bytes=(model_bytes,) * n,
            download_bytes=(model_bytes,) * n,
            local_epochs=lr.local_epochs,
            fusion_epochs=lr.fusion_epochs,
        )

    def _plan(self, r: int, evaluate: bool = False) -> Any:
        from qfl.algorithms.deffd import plan_round

        return plan_round(
            r,
            range(len(self.names)),
            ReplayTransport(len(self.names)).neighbours,
            self.n_senders,
            seed=self.sc.seed,
            evaluate=evaluate,
        )

    def schedule(
        self, env: simpy.Environment, net: QKDNetwork, rounds: int, tl: Timeline
    ) -> Generator[simpy.Event, Any, None]:
        """Decentralized rounds drawn exactly as the learner draws them."""
        return decentralized_schedule(env, net, self.profile, self._plan, rounds, tl)

    def identity(self) -> str:
        """Hash of the learning inputs."""
        return _identity(self.sc, self.names)

    def execute(self, tl: Timeline, eval_rounds: set[int], on_eval: OnEval) -> None:
        """Run the completed rounds; evaluations go to ``on_eval``."""
        from qfl.algorithms.deffd import DecentralizedLearner, run_round

        index = {n: i for i, n in enumerate(self.names)}
        dropped = [(r, index[s], index[d]) for r, s, d, _ in tl.dropped]
        transport = ReplayTransport(len(self.names), dropped)
        learner = DecentralizedLearner(
            self.model, self.clients, self.test, self.config, seed=self.sc.seed
        )
        for r in range(tl.rounds_done):
            transport.round = r
            metrics = run_round(learner, transport, self._plan(r, evaluate=(r + 1) in eval_rounds))
            if metrics is not None:
                on_eval(r + 1, _rows(r + 1, self.names, metrics.global_acc, metrics.local_acc))


class FedAvgJob:
    """FedAvg with a server: multi-exit (``fedavg-multiexit``) or single-exit (``fedavg``).

    Data: Dirichlet(``alpha``) label skew over the clients, each keeping
    ``holdout_fraction`` as its own held-out set (personalized accuracy); global accuracy is
    the global model on the test set (Fashion-MNIST) or on every client's held-out data
    pooled (HAR). With ``round_budget_s``, each client trains and uploads only up to the
    deepest exit whose local update fits that many simulated seconds on its node.
    """

    def __init__(
        self, sc: Scenario, clients: Sequence[str], flops: Sequence[float], server: str
    ) -> None:
        import torch

        from qfl.algorithms.fedavg import FedAvgConfig, payload_bytes
        from qfl.data import load_fashion_mnist
        from qfl.experiments.multiexit import (
            MultiExitExperiment,
            client_data,
            make_loss,
            make_model,
        )
        from qfl.models.multiexit import exit_flops, exit_parameter_mask

        lr = sc.learning
        self.sc = sc
        self.names = tuple(clients)
        self.server = server
        n = len(clients)
        multi = lr.method == "fedavg-multiexit"
        dataset = lr.dataset
        try:
            self.config = FedAvgConfig(
                rounds=lr.rounds,
                local_epochs=lr.local_epochs,
                batch_size=lr.batch_size,
                lr=lr.lr,
                momentum=lr.momentum,
                weight_decay=lr.weight_decay,
                engine=resolve_engine(lr.engine),
            )
            self.exp = MultiExitExperiment(
                dataset=dataset,
                n_clients=n,
                alpha=lr.alpha,
                holdout_fraction=lr.holdout_fraction,
                pool_size=None if lr.samples_per_client is None else lr.samples_per_client * n,
                width=lr.width,
                C=lr.distill_c,
                temperature=lr.temperature,
                target_accuracy=lr.target_accuracy,
                fedavg=self.config,
                seed=sc.seed,
            )
        except ParameterError as exc:
            raise _learning_error(exc) from None
        self.trains, self.holds = client_data(self.exp)
        if dataset == "fashion-mnist":
            _, test = load_fashion_mnist()
            if lr.test_samples is not None and lr.test_samples < len(test):
                test = test.subset(torch.arange(lr.test_samples))
            self.test = test
        else:
            from qfl.experiments.multiexit import concat_datasets

            self.test = concat_datasets(self.holds)
        self.model = make_model(self.exp, multi_exit=multi)
        self.loss_fn = make_loss(self.exp, multi_exit=multi)
        shape = tuple(self.trains[0].x.shape[1:])
        costs = exit_flops(self.model, shape)
        bf = sc.compute.backward_factor
        self.exits = [len(costs)] * n
        if lr.round_budget_s is not None:
            for i in range(n):
                work = lr.local_epochs * len(self.trains[i]) * bf / flops[i]  # s per FLOP/sample
                fits = [k for k, c in enumerate(costs, 1) if c * work <= lr.round_budget_s]
                if not fits:
                    raise ScenarioError(
                        "learning.round_budget_s",
                        f"must be >= {costs[0] * work:.3g} s for client {clients[i]!r} to train "
                        f"even the first exit, got {lr.round_budget_s}",
                    )
                self.exits[i] = max(fits)
        params = dict(self.model.named_parameters())
        sizes = []
        for k in self.exits:
            mask = exit_parameter_mask(self.model, k) if multi else dict.fromkeys(params, True)
            sizes.append(payload_bytes({p: t for p, t in params.items() if mask[p]}))
        self.profile = ComputeProfile(
            clients=self.names,
            train_sizes=tuple(len(d) for d in self.trains),
            flops_per_s=tuple(float(f) for f in flops),
            train_flops_per_sample=tuple(float(costs[k - 1]) * bf for k in self.exits),
            fuse_flops_per_sample=(0.0,) * n,
            upload_bytes=tuple(sizes),
            download_bytes=tuple(sizes),
            local_epochs=lr.local_epochs,
        )

    def schedule(
        self, env: simpy.Environment, net: QKDNetwork, rounds: int, tl: Timeline
    ) -> Generator[simpy.Event, Any, None]:
        """Synchronous server rounds."""
        return server_schedule(env, net, self.profile, self.server, rounds, tl)

    def identity(self) -> str:
        """Hash of the learning inputs (with the clients' exits)."""
        return _identity(self.sc, self.names, {"server": self.server, "exits": self.exits})

    def execute(self, tl: Timeline, eval_rounds: set[int], on_eval: OnEval) -> None:
        """Run the completed rounds; evaluations go to ``on_eval``."""
        import torch

        from qfl.algorithms.fedavg import FedAvg, exit_accuracies

        n = len(self.names)
        transport = _star_replay(self.names, self.server, tl)
        fed = FedAvg(
            self.model,
            self.trains,
            loss_fn=self.loss_fn,
            config=self.config,
            client_exits=self.exits,
            transport=transport,
            seed=self.sc.seed,
        )
        rows_i = torch.arange(n)
        cols = torch.tensor(self.exits) - 1
        for r in range(tl.rounds_done):
            transport.round = r
            fed.run_round()
            if (r + 1) not in eval_rounds:
                continue
            local = exit_accuracies(self.model, fed.params, self.holds)  # [n, exits]
            glob = exit_accuracies(self.model, fed.params, [self.test])[0]  # [exits]
            mine = local[rows_i, cols]
            rows = [
                EvalRow(r + 1, nm, float(glob[k - 1]), float(mine[i]), tuple(local[i].tolist()))
                for i, (nm, k) in enumerate(zip(self.names, self.exits, strict=True))
            ]
            rows.append(
                EvalRow(
                    r + 1,
                    "mean",
                    float(sum(x.global_acc for x in rows) / n),
                    float(mine.mean()),
                    tuple(local.nanmean(dim=0).tolist()),
                )
            )
            on_eval(r + 1, rows)


class SSLJob:
    """SSL-backbone FL: federated SimCLR (phase 1) through the server, then task heads.

    The first client node holds Flowers102, the second Intel scenes (``learning.clients``
    or the client nodes in file order); each keeps 25 % labeled. Phase 1's encoder
    downloads and uploads go through the network (server rounds); phase 2 (heads on the
    frozen encoder, evaluated on each client's unlabeled part, as the paper does) is local
    and runs at every evaluation.
    """

    def __init__(
        self, sc: Scenario, clients: Sequence[str], flops: Sequence[float], server: str
    ) -> None:
        import numpy as np

        from qfl.algorithms.fedavg import payload_bytes
        from qfl.algorithms.ssl import HeadConfig, SimCLRConfig
        from qfl.experiments.ssl import SSLExperiment, load_clients
        from qfl.models import ProjectionHead, SimCLRNet, count_flops

        lr = sc.learning
        if len(clients) != 2:
            raise ScenarioError(
                "learning.clients",
                f"must name 2 client nodes (Flowers102, Intel) for ssl-backbone, "
                f"got {len(clients)}",
            )
        self.sc = sc
        self.names = tuple(clients)
        self.server = server
        depth = 50 if lr.model == "resnet50" else 18
        try:
            self.pretrain = SimCLRConfig(
                rounds=lr.rounds,
                local_epochs=lr.local_epochs,
                batch_size=max(2, lr.batch_size),
                lr=lr.lr,
                engine=resolve_engine(lr.engine),
            )
            self.heads = HeadConfig(epochs=100, lr=1e-2)
            self.exp = SSLExperiment(
                image_size=lr.image_size,
                depth=depth,
                width=lr.width,
                norm_groups=4,
                projection_dim=64,
                labeled_fraction=0.25,
                pretrain=self.pretrain,
                heads=self.heads,
                seed=sc.seed,
            )
        except ParameterError as exc:
            raise _learning_error(exc) from None
        self.clients = load_clients(image_size=lr.image_size, labeled_fraction=0.25, seed=sc.seed)
        self.encoder = self.exp.encoder()
        self.net = SimCLRNet(
            self.encoder,
            ProjectionHead(self.encoder.feature_dim, out_dim=64, seed=int(
                np.random.SeedSequence(sc.seed, spawn_key=(1, 1)).generate_state(1)[0])),
        )  # fmt: skip
        fwd = float(count_flops(self.net, (3, lr.image_size, lr.image_size)))
        bf = sc.compute.backward_factor
        size = payload_bytes(dict(self.net.named_parameters()))
        self.profile = ComputeProfile(
            clients=self.names,
            train_sizes=tuple(len(c.unlabeled) for c in self.clients),
            flops_per_s=tuple(float(f) for f in flops),
            train_flops_per_sample=(2 * fwd * bf,) * 2,  # two augmented views per image
            fuse_flops_per_sample=(0.0, 0.0),
            upload_bytes=(size, size),
            download_bytes=(size, size),
            local_epochs=lr.local_epochs,
        )

    def schedule(
        self, env: simpy.Environment, net: QKDNetwork, rounds: int, tl: Timeline
    ) -> Generator[simpy.Event, Any, None]:
        """Synchronous server rounds of federated SimCLR."""
        return server_schedule(env, net, self.profile, self.server, rounds, tl, tag="encoder")

    def identity(self) -> str:
        """Hash of the learning inputs."""
        return _identity(self.sc, self.names, {"server": self.server})

    def execute(self, tl: Timeline, eval_rounds: set[int], on_eval: OnEval) -> None:
        """Run the completed SimCLR rounds; at each evaluation train and score the heads."""
        import numpy as np

        from qfl.algorithms.ssl import FedSimCLR, train_heads

        transport = _star_replay(self.names, self.server, tl)
        fed = FedSimCLR(
            self.net,
            [c.unlabeled for c in self.clients],
            self.pretrain,
            transport=transport,
            seed=np.random.SeedSequence(self.sc.seed, spawn_key=(2,)),
        )
        for r in range(tl.rounds_done):
            transport.round = r
            fed.run_round()
            if (r + 1) not in eval_rounds:
                continue
            enc = {
                k.removeprefix("encoder."): v
                for k, v in fed.params.items()
                if k.startswith("encoder.")
            }
            tasks = train_heads(
                self.encoder,
                enc,
                self.clients,
                self.heads,
                seed=np.random.SeedSequence(self.sc.seed, spawn_key=(3,)),
            )
            accs = [float(t.accuracy) for t in tasks]
            rows = [EvalRow(r + 1, nm, math.nan, a) for nm, a in zip(self.names, accs, strict=True)]
            rows.append(EvalRow(r + 1, "mean", math.nan, sum(accs) / len(accs)))
            on_eval(r + 1, rows)


def make_job(
    sc: Scenario, clients: Sequence[str], flops: Sequence[float], server: str | None
) -> LearningJob:
    """The learning job of a scenario.

    Parameters
    ----------
    clients : sequence of str
        Client node names.
    flops : sequence of float
        Their compute speeds (FLOP/s).
    server : str or None
        The aggregator node (server-based methods).
    """
    method = sc.learning.method
    if method in ("def-fd", "def-kt", "gossip-avg"):
        return DecentralizedJob(sc, clients, flops)
    if server is None:
        raise ScenarioError(
            "learning.server",
            f"method {method!r} needs a server: name one or give a node role: server",
        )
    if method in ("fedavg", "fedavg-multiexit"):
        return FedAvgJob(sc, clients, flops, server)
    if method == "ssl-backbone":
        return SSLJob(sc, clients, flops, server)
    raise ScenarioError("learning.method", f"{method!r} is not supported by the co-simulation yet")
