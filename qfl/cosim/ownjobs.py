"""FedAvg and Def-FD (and its baselines) on a model and a dataset of the user's own.

The jobs of :mod:`qfl.cosim.jobs` with their data and model taken from the user's factories
(:mod:`qfl.cosim.own`): the round plans, the learning steps, the evaluations and the network
half are theirs. The FLOPs of a step are counted from the model
(:func:`qfl.models.count_flops`); the engine is the batched one where the model allows it
(:func:`qfl.cosim.own.choose_engine`), and the run summary says which ran and why.

Data: FedAvg splits the pool over the clients with Dirichlet(``alpha``) label skew, Def-FD
and its baselines with ``classes_per_client`` classes each, both keeping
``holdout_fraction`` of each client's share as its held-out set; global accuracy is on the
factory's test set, or on the clients' held-out data pooled when it returns none.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from qfl.cosim.jobs import DecentralizedJob, FedAvgJob, Job
from qfl.cosim.own import build_model, choose_engine, load_dataset, uses_own
from qfl.data import TensorDataset, partition
from qfl.engine.evaluate import default_logits
from qfl.scenario import Scenario
from qfl.seeding import derive_seed, int_seed

__all__ = [
    "OwnDataSplit",
    "OwnDecentralizedJob",
    "OwnFedAvgJob",
    "decentralized_job",
    "fedavg_job",
]

_INIT_KEY, _SUBSAMPLE_KEY = 7001, 7002  # streams of the scenario seed used here only


def _ce(outputs: Any, y: torch.Tensor, teacher: Any) -> torch.Tensor:
    """Cross-entropy on the model's logits (the engine's loss signature; picklable)."""
    del teacher
    return torch.nn.functional.cross_entropy(default_logits(outputs), y)  # type: ignore[arg-type]


def _model_seed(seed: int) -> int:
    return int_seed(derive_seed(seed, _INIT_KEY))


@dataclass(frozen=True)
class OwnDataSplit:
    """How FedAvg splits a user's dataset (the fields :func:`client_data` reads).

    Attributes
    ----------
    dataset, model : str
        The scenario's references.
    n_clients : int
        Clients.
    alpha : float
        Dirichlet concentration of the label skew.
    holdout_fraction : float
        Share of each client's data held out.
    pool_size : int, optional
        Keep a stratified subset of this many samples (None: all).
    seed : int
        The scenario's seed.
    fedavg : object
        The FedAvg settings.
    """

    dataset: str
    model: str
    n_clients: int
    alpha: float
    holdout_fraction: float
    pool_size: int | None
    seed: int
    fedavg: Any


def _subsample(pool: TensorDataset, size: int | None, seed: int) -> TensorDataset:
    if size is None or size >= len(pool):
        return pool
    _, keep = partition.holdout_split(
        np.arange(len(pool)),
        size / len(pool),
        seed=np.random.SeedSequence(seed, spawn_key=(_SUBSAMPLE_KEY,)),
        labels=pool.y.numpy(),
    )
    return pool.subset(keep)


class OwnFedAvgJob(FedAvgJob):
    """FedAvg on the user's model and dataset (``learning.model`` / ``learning.dataset``)."""

    def __init__(
        self, sc: Scenario, clients: Sequence[str], flops: Sequence[float], server: str
    ) -> None:
        super().__init__(sc, clients, flops, server)
        if self.engine_note is not None:
            self.config = dataclasses.replace(self.config, engine=self.engine_note["engine"])

    def _experiment(self, n: int) -> OwnDataSplit:
        lr = self.sc.learning
        return OwnDataSplit(
            dataset=str(lr.dataset),
            model=str(lr.model),
            n_clients=n,
            alpha=lr.alpha,
            holdout_fraction=lr.holdout_fraction,
            pool_size=None if lr.samples_per_client is None else lr.samples_per_client * n,
            seed=self.sc.seed,
            fedavg=self.config,
        )

    def _load_data(self) -> None:
        from qfl.experiments.multiexit import client_data, concat_datasets
        from qfl.registry import DATASETS

        lr = self.sc.learning
        if not DATASETS.is_own(str(lr.dataset)):  # a built-in dataset, the user's model
            assert uses_own(self.sc)
            exp = self._builtin_experiment()
            self.trains, self.holds = client_data(exp)
            self.test = self._builtin_test(exp)
            return
        pool, test = load_dataset(str(lr.dataset), self.sc.seed)
        pool = _subsample(pool, self.exp.pool_size, self.sc.seed)
        self.trains, self.holds = client_data(self.exp, pool=pool)
        if test is None:
            self.test = concat_datasets(self.holds)
            return
        k = lr.test_samples
        self.test = test.subset(torch.arange(k)) if k is not None and k < len(test) else test

    def _builtin_experiment(self) -> Any:
        from qfl.experiments.multiexit import MultiExitExperiment

        e = self.exp
        return MultiExitExperiment(
            dataset=e.dataset,
            n_clients=e.n_clients,
            alpha=e.alpha,
            holdout_fraction=e.holdout_fraction,
            pool_size=e.pool_size,
            fedavg=e.fedavg,
            seed=e.seed,
        )

    def _builtin_test(self, exp: Any) -> TensorDataset:
        from qfl.data import load_fashion_mnist
        from qfl.experiments.multiexit import concat_datasets

        if exp.dataset != "fashion-mnist":
            return concat_datasets(self.holds)
        _, test = load_fashion_mnist()
        k = self.sc.learning.test_samples
        return test.subset(torch.arange(k)) if k is not None and k < len(test) else test

    def _make_model(self, multi: bool) -> tuple[Any, Any, tuple[float, ...]]:
        from qfl.models import count_flops

        shape = tuple(int(d) for d in self.trains[0].x.shape[1:])
        n_classes = self.trains[0].num_classes
        ref = str(self.sc.learning.model)
        model = build_model(ref, shape, n_classes, _model_seed(self.sc.seed), features=False)
        choice = choose_engine(self.sc.learning.engine, model, shape, n_classes, _ce)
        self.engine_note = choice.as_dict()
        return model, _ce, (float(count_flops(model, shape)),)

    def learning_inputs(self) -> dict[str, Any]:
        """The data split and FedAvg settings, the model's architecture, the engine."""
        return {
            **super().learning_inputs(),
            "architecture": repr(self.model),
            "engine": self.engine_note,
        }


class OwnDecentralizedJob(DecentralizedJob):
    """Def-FD, Def-KT or gossip averaging on the user's model and dataset."""

    def __init__(self, sc: Scenario, clients: Sequence[str], flops: Sequence[float]) -> None:
        super().__init__(sc, clients, flops)
        if self.engine_note is not None:
            self.config = dataclasses.replace(self.config, engine=self.engine_note["engine"])

    def _split(self) -> tuple[list[Any], Any]:
        from qfl.data import load_fashion_mnist
        from qfl.experiments.deffd import make_clients
        from qfl.experiments.multiexit import concat_datasets
        from qfl.registry import DATASETS

        ref = str(self.sc.learning.dataset)
        if not DATASETS.is_own(ref):
            train, test = load_fashion_mnist()
            return make_clients(train, test, self.setup)
        pool, own_test = load_dataset(ref, self.sc.seed)
        if own_test is None:
            clients, _ = make_clients(pool, pool.subset([]), self.setup)
            return clients, concat_datasets([c.holdout for c in clients], f"{ref}/held-out")
        return make_clients(pool, own_test, self.setup)

    def _make_model(self) -> tuple[Any, tuple[int, ...]]:
        lr = self.sc.learning
        first = self.clients[0].train
        shape = tuple(int(d) for d in first.x.shape[1:])
        n_classes = first.num_classes
        features = lr.method == "def-fd"
        model = build_model(
            str(lr.model), shape, n_classes, _model_seed(self.sc.seed), features=features
        )
        choice = choose_engine(lr.engine, model, shape, n_classes, _ce)
        self.engine_note = choice.as_dict()
        return model, shape

    def learning_inputs(self) -> dict[str, Any]:
        """Method configuration, data setup, the references and architecture, seed."""
        lr = self.sc.learning
        return {
            **super().learning_inputs(),
            "dataset": lr.dataset,
            "model": lr.model,
            "architecture": repr(self.model),
        }


def decentralized_job(
    sc: Scenario, clients: Sequence[str], flops: Sequence[float], server: Any = None
) -> Job:
    """The job of Def-FD, Def-KT or gossip averaging (on the user's model or dataset if the
    scenario names one)."""
    del server
    cls = OwnDecentralizedJob if uses_own(sc) else DecentralizedJob
    return cls(sc, clients, flops)


def fedavg_job(sc: Scenario, clients: Sequence[str], flops: Sequence[float], server: str) -> Job:
    """The job of FedAvg, multi-exit or not (on the user's model or dataset if the scenario
    names one)."""
    cls = OwnFedAvgJob if uses_own(sc) else FedAvgJob
    return cls(sc, clients, flops, server)
