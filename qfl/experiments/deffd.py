"""The Def-FD experiment: Fashion-MNIST, 8 of 10 classes per client, Def-FD vs its baselines.

The setup reproduces the Def-FD paper's table (global / local accuracy of the clients'
models for the L2, COS and MSE feature losses) beside Def-KT and gossip averaging, on the
same partition, the same schedule and the same seed:

- every client holds 8 of the 10 classes (:func:`qfl.data.partition.by_classes`) and keeps
  20% of its samples as its local held-out set (local accuracy);
- global accuracy is each client's model on the test set (mean and spread over clients);
- the paper does not state the number of clients or rounds; we use 10 clients with half of
  them sending each round (``Q = 5``), and a fixed number of rounds (:class:`DefFDSetup`).

:func:`run_deffd_experiment` runs named methods (:data:`METHOD_PRESETS`) and returns one
:class:`~qfl.algorithms.DecentralizedResult` per method; ``benchmarks/repro_deffd.py`` is its
command-line front end.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from qfl.algorithms.deffd import (
    ClientData,
    DecentralizedLearner,
    DecentralizedResult,
    DefFDConfig,
    run_decentralized,
)
from qfl.algorithms.transport import InMemoryTransport
from qfl.data import TensorDataset, load_fashion_mnist, partition
from qfl.models import FeatureCNN
from qkd.errors import ParameterError, UnknownNameError

__all__ = [
    "METHOD_NAMES",
    "METHOD_PRESETS",
    "PAPER_RESULTS",
    "DefFDSetup",
    "make_clients",
    "method_config",
    "run_deffd_experiment",
    "run_method",
]

#: Method name -> overrides of :class:`DefFDConfig` (gammas as in the paper's table).
METHOD_PRESETS: dict[str, dict[str, Any]] = {
    "def-fd-mse": {"method": "def-fd", "feature_loss": "mse", "gamma": 0.03},
    "def-fd-cos": {"method": "def-fd", "feature_loss": "cos", "gamma": 0.03},
    "def-fd-l2": {"method": "def-fd", "feature_loss": "l2", "gamma": 0.01},
    "def-kt": {"method": "def-kt"},
    "gossip-avg": {"method": "gossip-avg"},
}
METHOD_NAMES: tuple[str, ...] = tuple(METHOD_PRESETS)

#: The Def-FD paper's table: method -> (gamma, global %, local %).
PAPER_RESULTS: dict[str, tuple[float, float, float]] = {
    "def-fd-l2": (0.01, 40.95, 81.95),
    "def-fd-cos": (0.03, 41.21, 81.73),
    "def-fd-mse": (0.03, 42.32, 81.84),
}


@dataclass(frozen=True)
class DefFDSetup:
    """Data split and length of a Def-FD experiment.

    Parameters
    ----------
    n_clients : int
        Number of clients (>= 2).
    classes_per_client : int
        Classes each client holds, in ``[1, 10]`` for Fashion-MNIST (the paper: 8).
    holdout_fraction : float
        Share of each client's samples kept as its local test set, in (0, 1) (paper: 0.2).
    samples_per_client : int or None
        Keep at most this many of each client's samples (before the held-out split),
        drawn at random; ``None`` keeps all (6000 per client with 10 clients).
    test_samples : int or None
        Evaluate global accuracy on the first this-many test samples (``None``: all 10 000).
    rounds : int
        Rounds (>= 1).
    eval_every : int
        Evaluate after every ``eval_every``-th round and after the last (>= 1).
    seed : int
        Seed of the partition, the initialisation, the schedule and the data order.
    """

    n_clients: int = 10
    classes_per_client: int = 8
    holdout_fraction: float = 0.2
    samples_per_client: int | None = None
    test_samples: int | None = None
    rounds: int = 50
    eval_every: int = 10
    seed: int = 0

    def __post_init__(self) -> None:
        for name, low in (("n_clients", 2), ("classes_per_client", 1), ("rounds", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ParameterError(name, value, f"an int >= {low}")
        for name in ("eval_every", "samples_per_client", "test_samples"):
            value = getattr(self, name)
            if name != "eval_every" and value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ParameterError(name, value, "an int >= 1")
        if not (isinstance(self.holdout_fraction, float | int) and 0 < self.holdout_fraction < 1):
            raise ParameterError("holdout_fraction", self.holdout_fraction, "in (0, 1)")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ParameterError("seed", self.seed, "an int >= 0")


def method_config(name: str, base: DefFDConfig, *, gamma: float | None = None) -> DefFDConfig:
    """The configuration of a named method: ``base`` with the preset's overrides.

    Parameters
    ----------
    name : str
        A key of :data:`METHOD_PRESETS`.
    base : DefFDConfig
        Shared hyperparameters (learning rate, epochs, engine, ...).
    gamma : float, optional
        Override the preset's gamma (Def-FD methods only).

    Examples
    --------
    >>> cfg = method_config("def-fd-cos", DefFDConfig())
    >>> cfg.method, cfg.feature_loss, cfg.gamma
    ('def-fd', 'cos', 0.03)
    """
    if name not in METHOD_PRESETS:
        raise UnknownNameError("method", name, METHOD_NAMES)
    overrides = dict(METHOD_PRESETS[name])
    if gamma is not None:
        if overrides["method"] != "def-fd":
            raise ParameterError("gamma", gamma, f"None for {name!r} (it has no feature loss)")
        overrides["gamma"] = gamma
    return replace(base, **overrides)


def make_clients(
    train: TensorDataset, test: TensorDataset, setup: DefFDSetup
) -> tuple[list[ClientData], TensorDataset]:
    """Partition ``train`` among the clients and cut the test set, as ``setup`` says.

    Returns
    -------
    clients : list of ClientData
        Client ``i``'s training part and its held-out part.
    test : TensorDataset
        The (possibly shortened) shared test set.
    """
    n_classes = train.num_classes
    if setup.classes_per_client > n_classes:
        raise ParameterError(
            "classes_per_client",
            setup.classes_per_client,
            f"<= {n_classes} (the classes in {train.name})",
        )
    root = np.random.SeedSequence(setup.seed)
    part_seed, sub_seed, hold_seed = (
        np.random.SeedSequence(root.entropy, spawn_key=(100, k)) for k in range(3)
    )
    labels = train.y.numpy()
    parts = partition.by_classes(labels, setup.n_clients, setup.classes_per_client, seed=part_seed)
    sub_rng = np.random.default_rng(sub_seed)
    hold_seeds = hold_seed.spawn(setup.n_clients)
    clients = []
    for i, idx in enumerate(parts):
        if setup.samples_per_client is not None and len(idx) > setup.samples_per_client:
            idx = np.sort(sub_rng.choice(idx, setup.samples_per_client, replace=False))
        tr, ho = partition.holdout_split(
            idx, setup.holdout_fraction, seed=hold_seeds[i], labels=labels
        )
        clients.append(ClientData(train=train.subset(tr), holdout=train.subset(ho)))
    if setup.test_samples is not None and setup.test_samples < len(test):
        test = test.subset(np.arange(setup.test_samples))
    return clients, test


def run_method(
    name: str,
    setup: DefFDSetup,
    base: DefFDConfig,
    clients: Sequence[ClientData],
    test: TensorDataset,
    *,
    gamma: float | None = None,
    device: str | None = None,
) -> DecentralizedResult:
    """Run one named method on prepared clients over a complete graph."""
    config = method_config(name, base, gamma=gamma)
    model = FeatureCNN(
        in_channels=int(test.x.shape[1]),
        num_classes=test.num_classes,
        image_size=int(test.x.shape[-1]),
    )
    learner = DecentralizedLearner(model, clients, test, config, seed=setup.seed, device=device)
    transport = InMemoryTransport(setup.n_clients)
    return run_decentralized(learner, transport, setup.rounds, eval_every=setup.eval_every)


def run_deffd_experiment(
    setup: DefFDSetup,
    base: DefFDConfig | None = None,
    methods: Sequence[str] = METHOD_NAMES,
    *,
    gammas: Sequence[float] | None = None,
    data: tuple[TensorDataset, TensorDataset] | None = None,
    data_root: str | Path | None = None,
    device: str | None = None,
) -> dict[str, DecentralizedResult]:
    """Run several methods on one Fashion-MNIST split.

    Parameters
    ----------
    setup : DefFDSetup
        Clients, classes per client, rounds, seed.
    base : DefFDConfig, optional
        Shared hyperparameters (defaults of :class:`DefFDConfig` if omitted).
    methods : sequence of str
        Keys of :data:`METHOD_PRESETS`.
    gammas : sequence of float, optional
        Sweep: each Def-FD method is run once per gamma, under the key ``"<name>@<gamma>"``
        (e.g. ``"def-fd-l2@0.02"``); the plain key then holds the run with the preset's
        gamma if it is in the sweep.
    data : (train, test), optional
        Datasets to use instead of loading Fashion-MNIST.
    data_root : str or Path, optional
        Folder of the Fashion-MNIST files (default: the loader's search path).
    device : str, optional
        Torch device (default CPU).

    Returns
    -------
    dict of str to DecentralizedResult
        In the order run.
    """
    base = DefFDConfig() if base is None else base
    methods = list(methods)
    for m in methods:
        if m not in METHOD_PRESETS:
            raise UnknownNameError("methods", m, METHOD_NAMES)
    if gammas is not None:
        for g in gammas:
            if isinstance(g, bool) or not isinstance(g, int | float) or not g >= 0:
                raise ParameterError("gammas", g, "numbers >= 0")
    if data is None:
        data = load_fashion_mnist(data_root)
    clients, test = make_clients(data[0], data[1], setup)
    out: dict[str, DecentralizedResult] = {}
    for m in methods:
        is_fd = METHOD_PRESETS[m]["method"] == "def-fd"
        if gammas is None or not is_fd:
            out[m] = run_method(m, setup, base, clients, test, device=device)
            continue
        preset = METHOD_PRESETS[m]["gamma"]
        for g in gammas:
            res = run_method(m, setup, base, clients, test, gamma=float(g), device=device)
            out[f"{m}@{float(g):g}"] = res
            if float(g) == preset:
                out[m] = res
    return out
