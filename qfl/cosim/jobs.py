"""The learning half of a co-simulation: one job per method family, one execute loop.

A job knows, before any training, what the network half needs (a
:class:`~qfl.cosim.schedule.ComputeProfile`: data sizes, FLOPs per sample counted from the
model, model bytes) and its method's round plan (:mod:`qfl.cosim.plan`); the network half
runs that plan (:meth:`Job.schedule`). After it, :meth:`Job.execute` runs the same plan's
completed rounds through a :class:`~qfl.cosim.replay.ReplayTransport` that drops the sends
the network failed to deliver, and reports evaluations as :class:`EvalRow` s. A family
writes only what differs: its plan, how to build its learner, one round's learning step
and its evaluation.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import simpy

from network import QKDNetwork
from qfl.cosim.plan import RoundOps, decentralized_round, server_round
from qfl.cosim.replay import ReplayTransport, RoundTransport
from qfl.cosim.schedule import ComputeProfile, Timeline, run_plan
from qfl.scenario import Scenario, ScenarioError
from qfl.seeding import ExperimentKey
from qkd.errors import ParameterError

__all__ = ["JOBS", "EvalRow", "Job", "make_job"]


@dataclass(frozen=True)
class EvalRow:
    """One evaluation of one client's model (``node="mean"``: the mean over clients)."""

    round: int
    node: str
    global_acc: float = math.nan
    local_acc: float = math.nan
    exit_acc: tuple[float, ...] = ()


OnEval = Callable[[int, list[EvalRow]], None]


_NOT_LEARNING = ("rounds", "eval_every", "target_accuracy")  # what no learned number uses


def _plain(obj: Any) -> Any:
    """JSON form of a configuration object (dataclasses, without the fields that change no
    learned number)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        data = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
        return {k: v for k, v in data.items() if k not in _NOT_LEARNING}
    return repr(obj)


def _learning_error(exc: ParameterError) -> ScenarioError:
    """A learning method's parameter error, as an error on the scenario's ``learning`` field."""
    return ScenarioError(f"learning.{exc.name}", f"must be {exc.allowed}, got {exc.value!r}")


def _rows(
    r: int, names: Sequence[str], glob: Sequence[float], local: Sequence[float]
) -> list[EvalRow]:
    rows = [EvalRow(r, n, float(g), float(lo)) for n, g, lo in zip(names, glob, local, strict=True)]
    rows.append(EvalRow(r, "mean", float(sum(glob) / len(glob)), float(sum(local) / len(local))))
    return rows


class Job:
    """What every learning job shares: identity, schedule and the execute loop.

    Subclasses set ``sc``, ``names``, ``server`` and ``profile`` in their constructor and
    implement :meth:`plan`, :meth:`start`, :meth:`step` and :meth:`evaluate`.
    """

    sc: Scenario
    names: tuple[str, ...]
    server: str | None = None
    profile: ComputeProfile
    #: The server's label in the learners' transport (server families).
    SERVER_LABEL: ClassVar[str] = "server"
    #: ``progress(round, text)``: told what a round is doing (a progress display).
    progress: Callable[[int, str], None] | None = None

    def _phase(self, r: int) -> Callable[[str], None] | None:
        report = self.progress
        return None if report is None else (lambda text: report(r, text))

    def plan(self, r: int) -> RoundOps:
        """The operations of round ``r`` (the same for both halves)."""
        raise NotImplementedError

    def start(self) -> Any:
        """A fresh learner (models at their initial values)."""
        raise NotImplementedError

    def step(self, learner: Any, ops: RoundOps, transport: RoundTransport) -> None:
        """Execute one round's operations on ``learner`` through ``transport``."""
        raise NotImplementedError

    def evaluate(self, learner: Any, r: int) -> list[EvalRow]:
        """Every client's accuracy after round ``r`` (1-based), and their mean."""
        raise NotImplementedError

    def learning_inputs(self) -> dict[str, Any]:
        """Everything the learning half's numbers depend on besides the timeline: the
        configuration the job actually built (not the scenario's text), so that a field
        that changes nothing learned (a target, the evaluation cadence, a network knob) is
        not in it, and every field that does change learning is."""
        raise NotImplementedError

    def identity(self) -> str:
        """A hash of :meth:`learning_inputs` (sweep points with equal identities and
        timelines share one learning execution)."""
        data = {"clients": list(self.names), **self.learning_inputs()}
        text = json.dumps(data, sort_keys=True, default=_plain)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def schedule(
        self, env: simpy.Environment, net: QKDNetwork, rounds: int, tl: Timeline
    ) -> Generator[simpy.Event, Any, None]:
        """The SimPy process of the method's rounds on the network."""
        return run_plan(env, net, self.profile, self.plan, rounds, tl, server=self.server)

    def _replay(self, tl: Timeline) -> ReplayTransport:
        index: dict[str, Any] = {nm: i for i, nm in enumerate(self.names)}
        n = len(self.names)
        if self.server is None:
            graph: Any = n
        else:
            index[self.server] = self.SERVER_LABEL
            graph = {i: [self.SERVER_LABEL] for i in range(n)}
            graph[self.SERVER_LABEL] = list(range(n))
        dropped = [(r, index[s], index[d]) for r, s, d, _ in tl.dropped]
        return ReplayTransport(graph, dropped)

    def execute(self, tl: Timeline, eval_rounds: set[int], on_eval: OnEval) -> None:
        """Run the completed rounds of ``tl``, evaluating after the rounds in
        ``eval_rounds`` (1-based), and pass each evaluation to ``on_eval``."""
        replay = self._replay(tl)
        learner = self.start()
        for r in range(tl.rounds_done):
            ops = self.plan(r)
            if self.progress is not None:
                self.progress(r + 1, f"training {len(ops.trains)} clients")
            self.step(learner, ops, replay.at(r))
            if (r + 1) in eval_rounds:
                if self.progress is not None:
                    self.progress(r + 1, "evaluating")
                on_eval(r + 1, self.evaluate(learner, r + 1))


class DecentralizedJob(Job):
    """Def-FD, Def-KT and gossip averaging on Fashion-MNIST (no server).

    Clients are the scenario's client nodes; every client may send to every other (the
    overlay is complete; the network routes each transfer through relays).
    """

    def __init__(self, sc: Scenario, clients: Sequence[str], flops: Sequence[float]) -> None:
        import torch

        from qfl.data import load_fashion_mnist
        from qfl.experiments.deffd import DefFDSetup, make_clients
        from qfl.models import FeatureCNN, count_flops

        lr = sc.learning
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
        self.config = self._config()
        try:
            self.n_senders = self.config.n_senders(n)
            train, test = load_fashion_mnist()
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

    def _config(self) -> Any:
        """The scenario's hyperparameters as a :class:`~qfl.algorithms.deffd.DefFDConfig`."""
        from qfl.algorithms.deffd import DefFDConfig

        lr = self.sc.learning
        if not isinstance(lr.temperature, float | int):
            raise ScenarioError(
                "learning.temperature",
                f"must be a number > 0 for {lr.method} (the adaptive schedule is multi-exit's), "
                f"got {lr.temperature!r}",
            )
        try:
            return DefFDConfig(
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
                engine=lr.engine,
            )
        except ParameterError as exc:
            raise _learning_error(exc) from None

    def learning_inputs(self) -> dict[str, Any]:
        """Method configuration, data setup (without rounds), engine, seed."""
        return {"config": self.config, "setup": self.setup, "seed": self.sc.seed}

    def plan(self, r: int) -> RoundOps:
        """The senders and receivers of round ``r``, drawn exactly as the learner draws them."""
        from qfl.algorithms.deffd import plan_round
        from qfl.algorithms.transport import complete_adjacency

        adj = complete_adjacency(len(self.names))
        p = plan_round(
            r, range(len(self.names)), adj.__getitem__, self.n_senders, seed=self.sc.seed
        )
        return decentralized_round(r, p.senders, [(t.src, t.dst) for t in p.transfers])

    def start(self) -> Any:
        """The clients' models and the operations of the configured method."""
        from qfl.algorithms.deffd import DecentralizedLearner

        return DecentralizedLearner(
            self.model, self.clients, self.test, self.config, seed=self.sc.seed
        )

    def step(self, learner: Any, ops: RoundOps, transport: RoundTransport) -> None:
        """Senders train and send; receivers fuse what arrived."""
        from qfl.algorithms.deffd import RoundPlan, Transfer, run_round

        transfers = tuple(Transfer(op.src, op.dst) for op in ops.sends)
        plan = RoundPlan(ops.index, ops.trains, transfers, evaluate=False)
        run_round(learner, transport, plan, self._phase(ops.index + 1))

    def evaluate(self, learner: Any, r: int) -> list[EvalRow]:
        """Global (test set) and local (held-out) accuracy of every client."""
        m = learner.evaluate(r)
        return _rows(r, self.names, m.global_acc, m.local_acc)


class FedAvgJob(Job):
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
        from qfl.algorithms.fedavg import FedAvgConfig
        from qfl.experiments.multiexit import MultiExitExperiment, make_loss, make_model
        from qfl.models.multiexit import exit_flops

        lr = sc.learning
        self.sc, self.names, self.server = sc, tuple(clients), server
        n = len(clients)
        multi = lr.method == "fedavg-multiexit"
        try:
            self.config = FedAvgConfig(
                rounds=lr.rounds,
                local_epochs=lr.local_epochs,
                batch_size=lr.batch_size,
                lr=lr.lr,
                momentum=lr.momentum,
                weight_decay=lr.weight_decay,
                engine=lr.engine,
            )
            self.exp = MultiExitExperiment(
                dataset=str(lr.dataset),  # checked: a FedAvg method names one
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
        self._load_data()
        self.model = make_model(self.exp, multi_exit=multi)
        self.loss_fn = make_loss(self.exp, multi_exit=multi)
        costs = exit_flops(self.model, tuple(self.trains[0].x.shape[1:]))
        bf = sc.compute.backward_factor
        self.exits = (
            self._exits(costs, flops) if lr.round_budget_s is not None else [len(costs)] * n
        )
        sizes = self._payload_sizes(multi)
        self.profile = ComputeProfile(
            clients=self.names,
            train_sizes=tuple(len(d) for d in self.trains),
            flops_per_s=tuple(float(f) for f in flops),
            train_flops_per_sample=tuple(float(costs[k - 1]) * bf for k in self.exits),
            fuse_flops_per_sample=(0.0,) * n,
            upload_bytes=sizes,
            download_bytes=sizes,
            local_epochs=lr.local_epochs,
        )

    def _load_data(self) -> None:
        import torch

        from qfl.data import load_fashion_mnist
        from qfl.experiments.multiexit import client_data, concat_datasets

        self.trains, self.holds = client_data(self.exp)
        if self.sc.learning.dataset != "fashion-mnist":
            self.test = concat_datasets(self.holds)
            return
        _, test = load_fashion_mnist()
        k = self.sc.learning.test_samples
        self.test = test.subset(torch.arange(k)) if k is not None and k < len(test) else test

    def _exits(self, costs: Sequence[float], flops: Sequence[float]) -> list[int]:
        """Each client's deepest exit whose local update fits ``round_budget_s``."""
        lr = self.sc.learning
        budget = float(lr.round_budget_s)  # type: ignore[arg-type]
        bf = self.sc.compute.backward_factor
        exits = []
        for i, name in enumerate(self.names):
            work = lr.local_epochs * len(self.trains[i]) * bf / flops[i]  # s per FLOP/sample
            fits = [k for k, c in enumerate(costs, 1) if c * work <= budget]
            if not fits:
                raise ScenarioError(
                    "learning.round_budget_s",
                    f"must be >= {costs[0] * work:.3g} s for client {name!r} to train "
                    f"even the first exit, got {budget}",
                )
            exits.append(max(fits))
        return exits

    def _payload_sizes(self, multi: bool) -> tuple[int, ...]:
        from qfl.algorithms.fedavg import payload_bytes
        from qfl.models.multiexit import exit_parameter_mask

        params = dict(self.model.named_parameters())
        sizes = []
        for k in self.exits:
            mask = exit_parameter_mask(self.model, k) if multi else dict.fromkeys(params, True)
            sizes.append(payload_bytes({p: t for p, t in params.items() if mask[p]}))
        return tuple(sizes)

    def plan(self, r: int) -> RoundOps:
        """A synchronous server round."""
        return server_round(r, len(self.names), down="global")

    def learning_inputs(self) -> dict[str, Any]:
        """The experiment (data, model, loss, FedAvg settings), the clients' exits, the test
        set size."""
        return {
            "experiment": self.exp,
            "multi_exit": self.sc.learning.method == "fedavg-multiexit",
            "exits": self.exits,
            "test_samples": self.sc.learning.test_samples,
        }

    def start(self) -> Any:
        """The server and clients of FedAvg (the global model at its initial value)."""
        from qfl.algorithms.fedavg import FedAvg

        return FedAvg(
            self.model,
            self.trains,
            loss_fn=self.loss_fn,
            config=self.config,
            client_exits=self.exits,
            seed=self.sc.seed,
        )

    def step(self, learner: Any, ops: RoundOps, transport: RoundTransport) -> None:
        """Broadcast, local training of the clients reached, aggregation."""
        learner.run_round(transport, self._phase(ops.index + 1))

    def evaluate(self, learner: Any, r: int) -> list[EvalRow]:
        """Global accuracy at each client's exit, personalized accuracy, accuracy per exit."""
        import torch

        from qfl.algorithms.fedavg import exit_accuracies

        n = len(self.names)
        local = exit_accuracies(self.model, learner.params, self.holds)  # [n, exits]
        glob = exit_accuracies(self.model, learner.params, [self.test])[0]  # [exits]
        mine = local[torch.arange(n), torch.tensor(self.exits) - 1]
        rows = [
            EvalRow(r, nm, float(glob[k - 1]), float(mine[i]), tuple(local[i].tolist()))
            for i, (nm, k) in enumerate(zip(self.names, self.exits, strict=True))
        ]
        mean_glob = float(sum(x.global_acc for x in rows) / n)
        rows.append(
            EvalRow(r, "mean", mean_glob, float(mine.mean()), tuple(local.nanmean(dim=0).tolist()))
        )
        return rows


class SSLJob(Job):
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
        from qfl.algorithms.fedavg import payload_bytes
        from qfl.algorithms.ssl import HeadConfig, SimCLRConfig
        from qfl.experiments.ssl import SSLExperiment, load_clients
        from qfl.models import ProjectionHead, SimCLRNet, count_flops
        from qfl.seeding import derive_seed, int_seed

        lr = sc.learning
        self.sc, self.names, self.server = sc, tuple(clients), server
        try:
            self.pretrain = SimCLRConfig(
                rounds=lr.rounds,
                local_epochs=lr.local_epochs,
                batch_size=max(2, lr.batch_size),
                lr=lr.lr,
                engine=lr.engine,
            )
            self.heads = HeadConfig(epochs=100, lr=1e-2)
            self.exp = SSLExperiment(
                image_size=lr.image_size,
                depth=50 if lr.model == "resnet50" else 18,
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
        head_seed = int_seed(derive_seed(sc.seed, ExperimentKey.INIT, 1))
        head = ProjectionHead(self.encoder.feature_dim, out_dim=64, seed=head_seed)
        self.net = SimCLRNet(self.encoder, head)
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

    def learning_inputs(self) -> dict[str, Any]:
        """The SSL experiment (encoder, pretraining and head settings), seed."""
        return {"experiment": self.exp, "seed": self.sc.seed}

    def plan(self, r: int) -> RoundOps:
        """A synchronous server round of federated SimCLR."""
        return server_round(r, len(self.names), down="encoder")

    def start(self) -> Any:
        """Federated SimCLR from the initial network."""
        import numpy as np

        from qfl.algorithms.ssl import FedSimCLR

        return FedSimCLR(
            self.net,
            [c.unlabeled for c in self.clients],
            self.pretrain,
            seed=np.random.SeedSequence(self.sc.seed, spawn_key=(ExperimentKey.PRETRAIN,)),
        )

    def step(self, learner: Any, ops: RoundOps, transport: RoundTransport) -> None:
        """One FedAvg round of the SimCLR objective."""
        learner.run_round(transport, self._phase(ops.index + 1))

    def evaluate(self, learner: Any, r: int) -> list[EvalRow]:
        """Train each client's head on the current encoder; its accuracy (local only)."""
        import numpy as np

        from qfl.algorithms.ssl import train_heads

        enc = {
            k.removeprefix("encoder."): v
            for k, v in learner.params.items()
            if k.startswith("encoder.")
        }
        seed = np.random.SeedSequence(self.sc.seed, spawn_key=(ExperimentKey.HEADS,))
        tasks = train_heads(self.encoder, enc, self.clients, self.heads, seed=seed)
        accs = [float(t.accuracy) for t in tasks]
        rows = [EvalRow(r, nm, math.nan, a) for nm, a in zip(self.names, accs, strict=True)]
        rows.append(EvalRow(r, "mean", math.nan, sum(accs) / len(accs)))
        return rows


JOBS: dict[str, Callable[..., Job] | str] = {
    "decentralized": lambda sc, clients, flops, server: DecentralizedJob(sc, clients, flops),
    "fedavg": FedAvgJob,
    "ssl": SSLJob,
    # A plugin's job, named by "package.module:attr": imported only when a scenario uses it
    # (Flower is imported only inside that job).
    "flower": "qfl.flower.job:FlowerJob",
}
"""Learning jobs by the key a method's registry entry names (:mod:`qfl.cosim.methods`): a
job class or factory, or the ``"package.module:attr"`` string of one."""


def make_job(
    sc: Scenario, clients: Sequence[str], flops: Sequence[float], server: str | None
) -> Job:
    """The learning job of a scenario (checked by :func:`qfl.cosim.netbuild.check_network`).

    Parameters
    ----------
    clients : sequence of str
        Client node names.
    flops : sequence of float
        Their compute speeds (FLOP/s).
    server : str or None
        The aggregator node (server-based methods).
    """
    from qfl.cosim.methods import get_method, load_hook

    factory = JOBS[get_method(sc.learning.method).job]
    if isinstance(factory, str):
        factory = load_hook(factory)
    return factory(sc, clients, flops, server)
