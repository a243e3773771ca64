"""Multi-exit FedAvg against single-exit FedAvg on the same clients, data and schedule.

The reproduction set-up (issue 5, after the multi-exit FL paper's Fashion-MNIST experiment):
the data pool (Fashion-MNIST's 60000 training images, optionally a stratified subsample) is
split over ``n_clients`` clients with Dirichlet(``alpha``) label skew; each client keeps a
stratified ``holdout_fraction`` (default 20 %) of its share as its own held-out set, which
therefore follows its own label distribution. Both methods start from the same backbone
initialisation (same seed) and see the same partition and local schedule:

- **multi-exit (ME)**: :class:`~qfl.models.multiexit.MultiExitResNet` (exits after blocks
  1, 3, 5) trained with :func:`~qfl.losses.multiexit.multi_exit_loss` (cross-entropy at every
  exit + distillation from the deepest exit, weight ``C``, temperature constant or adaptive);
- **baseline**: the same ResNet with one exit after block 5 and plain cross-entropy.

Metrics (see :func:`qfl.algorithms.fedavg.run_fedavg`): personalized accuracy = mean over
clients of the downloaded global model's accuracy on the client's held-out data at the
client's deepest allowed exit (all clients full depth unless ``client_exits="tiers"``), per
round; accuracy per exit; rounds to reach ``target_accuracy``.

UniMiB-SHAR's data files are not available on the development machines, so the HAR pipeline
(:class:`~qfl.models.multiexit.MultiExitLSTM`, 3 layers, an exit after each) runs on
:func:`qfl.data.har_synthetic.synthetic_har`: accelerometer-shaped windows ``[N, 151, 3]``
in 17 classes whose frequencies follow UniMiB-SHAR's class counts. Its numbers say that the
pipeline works, nothing about UniMiB-SHAR.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from qfl.algorithms.fedavg import FedAvgConfig, FedAvgResult, RoundRecord, run_fedavg
from qfl.data import TensorDataset, load_fashion_mnist, load_unimib_shar, partition
from qfl.data.har_synthetic import synthetic_har
from qfl.losses.multiexit import AdaptiveTemperature, multi_exit_loss
from qfl.models.multiexit import (
    MultiExitLSTM,
    MultiExitResNet,
    deepest_affordable_exit,
    exit_flops,
    reinitialize,
)
from qkd.errors import ParameterError, UnknownNameError

__all__ = [
    "DATASETS",
    "EXIT_MODES",
    "MultiExitExperiment",
    "client_data",
    "concat_datasets",
    "make_loss",
    "make_model",
    "run_multiexit_experiment",
]

DATASETS: tuple[str, ...] = ("fashion-mnist", "synthetic-har", "unimib-shar")
EXIT_MODES: tuple[str, ...] = ("full", "tiers")

_PARTITION, _HOLDOUT, _SUBSAMPLE, _INIT, _TRAIN, _SYNTH = range(6)


def _seq(seed: int, *key: int) -> np.random.SeedSequence:
    return np.random.SeedSequence(seed, spawn_key=key)


@dataclass(frozen=True)
class MultiExitExperiment:
    """Settings of one ME-vs-baseline comparison (defaults: the paper-scale Fashion-MNIST run).

    Attributes
    ----------
    dataset : {"fashion-mnist", "synthetic-har"}
        Image task (ResNet) or the synthetic stand-in for UniMiB-SHAR (LSTM).
    n_clients, alpha : int, float
        Clients and Dirichlet concentration of the label skew (24, 0.2).
    holdout_fraction : float
        Share of each client's data held out for personalized accuracy (0.2).
    pool_size : int, optional
        Use a stratified random subset of this many samples as the pool (None: all 60000
        training images; the synthetic set is generated at this size, default 6000 there).
    width : int
        ResNet base width (channels ``w, 2w, 2w, 4w, 4w``); LSTM hidden size for HAR.
    stem_stride : int
        ResNet stem stride (1: blocks at 28/14/7 px; 2: at 14/7/4 px, about 4x cheaper).
    exit_pool : int
        Each ResNet exit average-pools to an ``exit_pool x exit_pool`` grid (default 4; 1 is
        global average pooling, which starves the shallow exit: see
        :mod:`qfl.models.multiexit`).
    C : float
        Distillation weight (1.0 = the authors' 0.5 in their parametrisation).
    temperature : float or "adaptive"
        Constant distillation temperature, or the adaptive schedule with ``target_maxprob``.
    target_maxprob : float
        Target mean top probability of the softened teacher (adaptive temperature).
    target_accuracy : float
        Threshold for "rounds to target" (0.75).
    client_exits : {"full", "tiers"}
        Every client trains all exits, or clients are given compute budgets equal to the
        cost of exit 1, 2, 3 in turn and train the deepest exit they can afford.
    fedavg : FedAvgConfig
        Rounds, local epochs, batch size, optimizer, engine.
    finetune_epochs : int
        After the last round, each client also fine-tunes the global model for this many
        epochs on its training data and is evaluated again (0: not done; the headline
        personalized accuracy is always the one without fine-tuning).
    seed : int
        One seed for partition, initialisation and training.
    data_root : str, optional
        Folder of the Fashion-MNIST files (default: the loaders' resolution).
    """

    dataset: str = "fashion-mnist"
    n_clients: int = 24
    alpha: float = 0.2
    holdout_fraction: float = 0.2
    pool_size: int | None = None
    width: int = 16
    stem_stride: int = 1
    exit_pool: int = 4
    C: float = 1.0
    temperature: float | str = "adaptive"
    target_maxprob: float = 0.5
    target_accuracy: float = 0.75
    client_exits: str = "full"
    fedavg: FedAvgConfig = field(default_factory=FedAvgConfig)
    finetune_epochs: int = 0
    seed: int = 0
    data_root: str | None = None

    def __post_init__(self) -> None:
        if self.dataset not in DATASETS:
            raise UnknownNameError("dataset", self.dataset, DATASETS)
        if self.client_exits not in EXIT_MODES:
            raise UnknownNameError("client_exits", self.client_exits, EXIT_MODES)
        if isinstance(self.n_clients, bool) or self.n_clients < 1:
            raise ParameterError("n_clients", self.n_clients, "an integer >= 1")
        if not 0 < self.holdout_fraction < 1:
            raise ParameterError("holdout_fraction", self.holdout_fraction, "in (0, 1)")
        if isinstance(self.temperature, str):
            if self.temperature != "adaptive":
                raise UnknownNameError("temperature", self.temperature, ("adaptive",))
        elif not self.temperature > 0:
            raise ParameterError("temperature", self.temperature, "> 0 or 'adaptive'")
        if isinstance(self.exit_pool, bool) or self.exit_pool < 1:
            raise ParameterError("exit_pool", self.exit_pool, "an integer >= 1")
        if not 0 < self.target_accuracy <= 1:
            raise ParameterError("target_accuracy", self.target_accuracy, "in (0, 1]")
        if isinstance(self.finetune_epochs, bool) or self.finetune_epochs < 0:
            raise ParameterError("finetune_epochs", self.finetune_epochs, "an integer >= 0")
        if self.pool_size is not None and self.pool_size < 2 * self.n_clients:
            raise ParameterError("pool_size", self.pool_size, f">= {2 * self.n_clients}")


def _pool(exp: MultiExitExperiment) -> TensorDataset:
    if exp.dataset == "synthetic-har":
        return synthetic_har(exp.pool_size or 6000, seed=_seq(exp.seed, _SYNTH))
    if exp.dataset == "unimib-shar":
        train = load_unimib_shar(exp.data_root)
    else:
        train, _ = load_fashion_mnist(exp.data_root)
    if exp.pool_size is None or exp.pool_size >= len(train):
        return train
    _, keep = partition.holdout_split(
        np.arange(len(train)),
        exp.pool_size / len(train),
        seed=_seq(exp.seed, _SUBSAMPLE),
        labels=train.y.numpy(),
    )
    return train.subset(keep)


def client_data(
    exp: MultiExitExperiment, pool: TensorDataset | None = None
) -> tuple[list[TensorDataset], list[TensorDataset]]:
    """Each client's training set and held-out set (Dirichlet split, then stratified holdout)
    of ``pool`` (default: the experiment's dataset)."""
    pool = _pool(exp) if pool is None else pool
    labels = pool.y.numpy()
    min_per_client = max(5, math.ceil(2 / exp.holdout_fraction))
    try:
        # Up to 1000 draws for a few clients; fewer for thousands, where no draw gives every
        # client the minimum and one draw is topped up instead (cross-device studies).
        parts = partition.dirichlet(
            labels,
            exp.n_clients,
            exp.alpha,
            seed=_seq(exp.seed, _PARTITION),
            min_per_client=min_per_client,
            max_tries=min(1000, max(10, 100_000 // exp.n_clients)),
        )
    except ParameterError as exc:
        if exc.name != "min_per_client" or exp.n_clients * min_per_client > len(labels):
            raise
        parts = partition.dirichlet_topped_up(
            labels,
            exp.n_clients,
            exp.alpha,
            seed=_seq(exp.seed, _PARTITION),
            min_per_client=min_per_client,
        )
    trains, holds = [], []
    for i, idx in enumerate(parts):
        tr, ho = partition.holdout_split(
            idx, exp.holdout_fraction, seed=_seq(exp.seed, _HOLDOUT, i), labels=labels
        )
        trains.append(pool.subset(tr))
        holds.append(pool.subset(ho))
    return trains, holds


def concat_datasets(parts: Sequence[TensorDataset], name: str = "pooled") -> TensorDataset:
    """The datasets one after the other (same classes), e.g. every client's held-out set."""
    if not parts:
        raise ParameterError("parts", 0, "at least one dataset")
    return TensorDataset(
        torch.cat([d.x for d in parts]), torch.cat([d.y for d in parts]), parts[0].classes, name
    )


def make_model(exp: MultiExitExperiment, *, multi_exit: bool) -> MultiExitResNet | MultiExitLSTM:
    """The experiment's model: exits after blocks 1, 3, 5 (ResNet) or every layer (LSTM),
    or only the deepest exit for the baseline; initialised from the experiment's seed."""
    return _model(exp, multi_exit)


def make_loss(exp: MultiExitExperiment, *, multi_exit: bool) -> Any:
    """The engine loss: multi-exit self-distillation, or plain cross-entropy (baseline)."""
    return _me_loss(exp) if multi_exit else _ce_loss


def _model(exp: MultiExitExperiment, multi_exit: bool) -> MultiExitResNet | MultiExitLSTM:
    net: MultiExitResNet | MultiExitLSTM
    if exp.dataset in ("synthetic-har", "unimib-shar"):
        net = MultiExitLSTM(
            3, 17, hidden_size=exp.width, exit_after=(1, 2, 3) if multi_exit else (3,)
        )
    else:
        net = MultiExitResNet(
            1,
            10,
            width=exp.width,
            stem_stride=exp.stem_stride,
            exit_pool=exp.exit_pool,
            exit_after=(1, 3, 5) if multi_exit else (5,),
        )
    # Same seed for both: the backbone is drawn first, so ME and baseline share it.
    return reinitialize(net, int(_seq(exp.seed, _INIT).generate_state(1)[0]))


def _input_shape(exp: MultiExitExperiment) -> tuple[int, ...]:
    return (151, 3) if exp.dataset in ("synthetic-har", "unimib-shar") else (1, 28, 28)


def _me_loss(exp: MultiExitExperiment) -> Any:
    """The multi-exit loss as a picklable callable (worker processes receive it)."""
    temp: float | AdaptiveTemperature = (
        AdaptiveTemperature(target_maxprob=exp.target_maxprob)
        if exp.temperature == "adaptive"
        else float(exp.temperature)
    )
    return functools.partial(_distilled_loss, C=exp.C, temperature=temp)


def _distilled_loss(
    outputs: Sequence[torch.Tensor],
    y: torch.Tensor,
    teacher: Any,
    *,
    C: float,
    temperature: float | AdaptiveTemperature,
) -> torch.Tensor:
    del teacher
    return multi_exit_loss(outputs, y, C=C, temperature=temperature)


def _ce_loss(outputs: Sequence[torch.Tensor], y: torch.Tensor, teacher: Any) -> torch.Tensor:
    del teacher
    return multi_exit_loss(outputs, y)  # the baseline has one exit: plain cross-entropy


def _summary(res: FedAvgResult, target: float) -> dict[str, Any]:
    return {
        "personalized_acc": res.final.personalized_acc,
        "exit_acc": list(res.final.exit_acc),
        "rounds_to_target": res.rounds_to_target(target),
        "curve": [r.personalized_acc for r in res.history],
        "bytes_up_per_round": res.history[0].bytes_up,
        "finetuned_personalized_acc": res.finetuned_personalized_acc,
    }


def run_multiexit_experiment(
    exp: MultiExitExperiment,
    *,
    baseline: bool = True,
    multi_exit: bool = True,
    on_round: Callable[[str, RoundRecord], None] | None = None,
) -> dict[str, Any]:
    """Run multi-exit FedAvg (and, by default, the single-exit baseline) on the same data.

    ``on_round(method, record)``, if given, is called after every round of each method
    (``method`` is ``"me"`` or ``"baseline"``), e.g. to print progress. ``multi_exit=False``
    or ``baseline=False`` leaves that method out (its key is then missing from the result):
    the two methods are independent given ``exp``, so running them in two processes gives
    the numbers one process gives (at the same thread count).

    Returns
    -------
    dict
        ``me`` and ``baseline`` summaries (final personalized accuracy, final accuracy per
        exit, rounds to the target, the per-round curve, bytes uploaded per round),
        ``exit_flops`` (forward FLOPs per sample to reach each exit), ``client_exits``,
        ``data`` (client sizes) and ``settings``.
    """
    trains, holds = client_data(exp)
    me_model = _model(exp, multi_exit=True)
    costs = exit_flops(me_model, _input_shape(exp))
    if exp.client_exits == "tiers":
        budgets = [costs[i % len(costs)] for i in range(exp.n_clients)]
        exits = [deepest_affordable_exit(costs, b) for b in budgets]
    else:
        exits = [len(costs)] * exp.n_clients
    seed = _seq(exp.seed, _TRAIN)
    out: dict[str, Any] = {}
    if multi_exit:
        me = run_fedavg(
            me_model,
            trains,
            holds,
            loss_fn=_me_loss(exp),
            config=exp.fedavg,
            client_exits=exits,
            seed=seed,
            finetune_epochs=exp.finetune_epochs,
            on_round=None if on_round is None else functools.partial(on_round, "me"),
        )
        out["me"] = _summary(me, exp.target_accuracy)
    out |= {
        "exit_flops": list(costs),
        "client_exits": exits,
        "data": {
            "train_sizes": [len(d) for d in trains],
            "holdout_sizes": [len(d) for d in holds],
        },
        "settings": {**asdict(exp), "fedavg": asdict(exp.fedavg)},
    }
    if baseline:
        res = run_fedavg(
            _model(exp, multi_exit=False),
            trains,
            holds,
            loss_fn=_ce_loss,
            config=exp.fedavg,
            seed=seed,
            finetune_epochs=exp.finetune_epochs,
            on_round=None if on_round is None else functools.partial(on_round, "baseline"),
        )
        out["baseline"] = _summary(res, exp.target_accuracy)
    return out
