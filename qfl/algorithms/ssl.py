"""SSL-backbone FL: a SimCLR encoder pretrained by FedAvg, then per-client task heads.

**Phase 1 (federated SimCLR).** Every client holds unlabeled images (75 % of its data). Each
round the server sends the global SimCLR network (encoder + projection head) to every
client; each client trains it for ``local_epochs`` on its unlabeled images with the NT-Xent
loss on two augmented views per image (:mod:`qfl.data.augment`,
:func:`qfl.losses.ssl.nt_xent`), with a fresh optimizer, and sends it back; the server
averages the parameters weighted by the clients' sample counts
(:func:`qfl.algorithms.fedavg.aggregate`, the FedAvg rule shared with multi-exit FedAvg).
Downloads and uploads go through a :class:`qfl.algorithms.transport.Transport` with their
size in bytes (in a co-simulation, a replay of the key-gated network: :mod:`qfl.cosim`).

The clients hold different datasets but run the same architecture, so a round's local
training is one vectorized computation over the clients (:class:`qfl.engine.BatchedTrainer`,
its ``loss_of`` entry: the augmentations draw from the engine's per-client step keys, so
they work under ``vmap``); ``engine="sequential"`` runs the per-client reference loop with
the same data order and the same augmentations.

**Phase 2 (task heads).** Each client keeps the global encoder and trains its own head on
its labeled 25 %: a linear layer on the frozen representation, or (``finetune_last_block``)
the encoder's last stage ``layer4`` together with the linear layer. The frozen part of the
encoder is run once over the client's images and its output cached, so head training costs
only the trained part. Evaluation follows the SSL-backbone paper: the labeled part trains
the head and the client's unlabeled part is the evaluation set.

**Different tasks, one computation.** The clients' tasks have different class counts
(Flowers102: 102, Intel scenes: 6). Heads are padded to the largest class count and each
client's logits beyond its own count are masked out (set to a large negative value) in the
loss and in the prediction; the padded rows then get exactly zero gradient, so each client
trains exactly a head of its own size, and both clients' heads train in one batched
computation. The centralized baseline (each task's full network trained from scratch on its
labeled data, without SSL) uses the same padded-head trick, so its two tasks also train
together; they share nothing but the computation.

References
----------
.. [1] T. Chen, S. Kornblith, M. Norouzi, G. Hinton, "A simple framework for contrastive
   learning of visual representations", ICML 2020.
.. [2] H. B. McMahan et al., "Communication-efficient learning of deep networks from
   decentralized data", AISTATS 2017.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.func import functional_call
from torch.nn import functional as F

from qfl.algorithms.fedavg import ServerRounds, star_transport
from qfl.algorithms.transport import Transport
from qfl.data import TensorDataset
from qfl.data.augment import N_UNIFORMS, AugmentConfig, augment_from_uniform
from qfl.data.images import IMAGENET_MEAN, IMAGENET_STD, normalize_images
from qfl.engine import BatchedTrainer, SequentialTrainer, adam, load_into, sgd
from qfl.engine.random import fold_in, uniform
from qfl.engine.select import ENGINES, make_trainer, resolve_engine
from qfl.losses.ssl import nt_xent
from qfl.models.resnet_ssl import (
    LAST_BLOCK,
    Classifier,
    ResNetEncoder,
    SimCLRNet,
    init_parameters,
)
from qfl.seeding import derive_seed as _derive
from qfl.seeding import int_seed as _int_seed
from qkd.errors import ParameterError, UnknownNameError

__all__ = [
    "DOWNLOAD_TAG",
    "ENGINES",
    "OPTIMIZERS",
    "UPLOAD_TAG",
    "FedSimCLR",
    "HeadConfig",
    "PretrainRound",
    "SSLClient",
    "SimCLRConfig",
    "SimCLRObjective",
    "SupervisedConfig",
    "TaskResult",
    "accuracy_percent",
    "masked_logits",
    "pretrain_simclr",
    "train_centralized",
    "train_heads",
]

OPTIMIZERS: tuple[str, ...] = ("adam", "sgd")
DOWNLOAD_TAG = "ssl/global"
UPLOAD_TAG = "ssl/update"

Params = dict[str, torch.Tensor]
Seed = int | np.random.SeedSequence

# Independent random streams derived from the one seed.
_PRETRAIN, _HEADS, _CENTRAL, _HEAD_INIT = 0, 1, 2, 3
# fold_in tags separating the uses of a step key.
_VIEW_TAG = 0x5EED
_MASK_VALUE = -1.0e9


def _positive_int(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ParameterError(name, value, "an integer >= 1")


def _check_common(cfg: Any) -> None:
    _positive_int("batch_size", cfg.batch_size)
    if not float(cfg.lr) > 0:
        raise ParameterError("lr", cfg.lr, "> 0")
    if not float(cfg.weight_decay) >= 0:
        raise ParameterError("weight_decay", cfg.weight_decay, ">= 0")
    if cfg.engine not in ENGINES:
        raise UnknownNameError("engine", cfg.engine, ENGINES)
    if cfg.optimizer not in OPTIMIZERS:
        raise UnknownNameError("optimizer", cfg.optimizer, OPTIMIZERS)
    if not 0.0 <= float(cfg.momentum) < 1.0:
        raise ParameterError("momentum", cfg.momentum, "in [0, 1)")
    if cfg.chunk_size is not None:
        _positive_int("chunk_size", cfg.chunk_size)


def _optimizer(cfg: Any) -> Any:
    """The functional optimizer of a config (``optimizer``, ``lr``, ``momentum``, ...)."""
    if cfg.optimizer == "sgd":
        return sgd(cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    return adam(cfg.lr, weight_decay=cfg.weight_decay)


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class SimCLRConfig:
    """Phase 1: federated SimCLR pretraining.

    Attributes
    ----------
    rounds : int
        FedAvg rounds.
    local_epochs : int
        Epochs over the client's unlabeled images per round.
    batch_size : int
        Images per step (each gives two views, so ``2 * batch_size`` rows in the loss);
        each round, a client's last, partial batch is left out (a contrastive batch needs
        >= 2 images), as with ``drop_last``.
    lr, weight_decay : float
        Learning rate and (L2) weight decay; a fresh optimizer state every round.
    optimizer : str
        ``"adam"`` or ``"sgd"`` (with ``momentum``).
    momentum : float
        SGD momentum (ignored by Adam).
    temperature : float
        NT-Xent temperature.
    augment : AugmentConfig
        The SimCLR augmentations (default: colour strength 0.5).
    engine : str
        ``"batched"`` (all clients in one vectorized computation) or ``"sequential"``.
    chunk_size : int or None
        Clients per vectorized call (memory bound).
    """

    rounds: int = 100
    local_epochs: int = 1
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 1e-6
    optimizer: str = "adam"
    momentum: float = 0.9
    temperature: float = 0.5
    augment: AugmentConfig = AugmentConfig()  # noqa: RUF009 (frozen, immutable)
    engine: str = "batched"
    chunk_size: int | None = None

    def __post_init__(self) -> None:
        _positive_int("rounds", self.rounds)
        _positive_int("local_epochs", self.local_epochs)
        _check_common(self)
        if self.batch_size < 2:
            raise ParameterError("batch_size", self.batch_size, ">= 2 (contrastive batches)")
        if not float(self.temperature) > 0:
            raise ParameterError("temperature", self.temperature, "> 0")


@dataclass(frozen=True)
class HeadConfig:
    """Phase 2: per-client task heads on the pretrained encoder.

    Attributes
    ----------
    epochs : int
        Epochs over the client's labeled data.
    batch_size : int
        Samples per step.
    lr, weight_decay, optimizer, momentum
        As in :class:`SimCLRConfig`.
    finetune_last_block : bool
        Train the encoder's last stage (``layer4``) with the head; otherwise a linear head
        on the frozen representation (linear evaluation).
    engine, chunk_size
        As in :class:`SimCLRConfig`.
    """

    epochs: int = 100
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    optimizer: str = "adam"
    momentum: float = 0.9
    finetune_last_block: bool = False
    engine: str = "batched"
    chunk_size: int | None = None

    def __post_init__(self) -> None:
        _positive_int("epochs", self.epochs)
        _check_common(self)


@dataclass(frozen=True)
class SupervisedConfig:
    """The centralized baseline: each task's network trained from scratch, without SSL.

    Attributes
    ----------
    epochs : int
        Epochs over the task's labeled data.
    batch_size : int
        Samples per step.
    lr, weight_decay, optimizer, momentum
        As in :class:`SimCLRConfig`.
    augment : AugmentConfig or None
        Training augmentation (default: random resized crop + flip); ``None``: none.
    engine, chunk_size
        As in :class:`SimCLRConfig`.
    """

    epochs: int = 100
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 5e-4
    optimizer: str = "adam"
    momentum: float = 0.9
    augment: AugmentConfig | None = AugmentConfig.crop_flip()  # noqa: RUF009 (frozen)
    engine: str = "batched"
    chunk_size: int | None = None

    def __post_init__(self) -> None:
        _positive_int("epochs", self.epochs)
        _check_common(self)


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class SSLClient:
    """One client's data: its task name, labeled part and unlabeled part.

    Images are RGB in ``[0, 1]`` (``normalize=False`` in the loaders); the algorithms
    normalise them (ImageNet statistics) after augmenting.
    """

    name: str
    labeled: TensorDataset = field(repr=False)
    unlabeled: TensorDataset = field(repr=False)

    def __post_init__(self) -> None:
        for part in ("labeled", "unlabeled"):
            ds = getattr(self, part)
            if ds.x.ndim != 4 or ds.x.shape[1] != 3:
                raise ParameterError(
                    f"{self.name}.{part}.x.shape", tuple(ds.x.shape), "[N, 3, H, W]"
                )
        if self.labeled.x.shape[1:] != self.unlabeled.x.shape[1:]:
            raise ParameterError(
                f"{self.name}.unlabeled.x.shape",
                tuple(self.unlabeled.x.shape),
                f"images like the labeled part {tuple(self.labeled.x.shape[1:])}",
            )
        if self.labeled.classes != self.unlabeled.classes:
            raise ParameterError(f"{self.name}.unlabeled.classes", "other classes", "the same")

    @property
    def num_classes(self) -> int:
        """Classes of the client's task."""
        return self.labeled.num_classes


def _normalize(x: torch.Tensor) -> torch.Tensor:
    return normalize_images(x, IMAGENET_MEAN, IMAGENET_STD)


# --------------------------------------------------------------------------- phase 1


class SimCLRObjective:
    """``loss_of(params, buffers, batch, key)``: NT-Xent of two augmented views of a batch.

    The two views of every image are drawn from the client's step key
    (:func:`qfl.engine.random.uniform`), so the objective runs under ``vmap`` and gives the
    same views in the batched and the sequential engine.

    Parameters
    ----------
    net : SimCLRNet
        Architecture (its weights are not used; ``functional_call`` takes the params).
    augment : AugmentConfig
        The augmentations.
    temperature : float
        NT-Xent temperature.
    """

    def __init__(self, net: SimCLRNet, augment: AugmentConfig, temperature: float) -> None:
        self.net = copy.deepcopy(net).train()
        self.augment = augment
        self.temperature = float(temperature)

    def views(self, x: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
        """Two normalised views ``[2N, 3, H, W]`` (first views, then second views)."""
        n = x.shape[0]
        u = uniform(fold_in(key, _VIEW_TAG), (2 * n, N_UNIFORMS), dtype=x.dtype)
        return _normalize(augment_from_uniform(torch.cat((x, x)), u, self.augment))

    def __call__(
        self, params: Params, buffers: Params, batch: dict[str, Any], key: torch.Tensor
    ) -> torch.Tensor:
        x = batch["x"]
        z = functional_call(self.net, params | buffers, (self.views(x, key),))
        n = x.shape[0]
        return nt_xent(z[:n], z[n:], self.temperature)


def _trainer(
    engine: str,
    model: nn.Module,
    optimizer: Any,
    *,
    batch_size: int,
    drop_last: bool,
    chunk_size: int | None,
    device: torch.device | str | None,
    loss_of: Any,
) -> BatchedTrainer | SequentialTrainer:
    return make_trainer(
        resolve_engine(engine, model),
        model,
        None,
        optimizer,
        batch_size=batch_size,
        drop_last=drop_last,
        chunk_size=chunk_size,
        device=device,
        loss_of=loss_of,
    )


@dataclass(frozen=True)
class PretrainRound:
    """What one round of federated SimCLR did.

    Attributes
    ----------
    round : int
        Round number, from 1.
    client_loss : tuple of float
        Each client's mean NT-Xent loss over its local steps.
    bytes_down, bytes_up : int
        Bytes sent server -> clients and clients -> server.
    """

    round: int
    client_loss: tuple[float, ...]
    bytes_down: int
    bytes_up: int


class FedSimCLR(ServerRounds):
    """Federated SimCLR: FedAvg rounds over the clients' unlabeled images (the FedAvg round
    of :class:`~qfl.algorithms.fedavg.ServerRounds`, with the SimCLR objective).

    Parameters
    ----------
    net : SimCLRNet
        Architecture and initial global parameters.
    unlabeled : sequence of TensorDataset
        Each client's unlabeled images (RGB in ``[0, 1]``; labels are ignored).
    config : SimCLRConfig
        Schedule and local training.
    clients : sequence of hashable, optional
        Node names of the clients (default ``0 .. n-1``).
    server : hashable
        Node name of the server.
    transport : Transport, optional
        Default: an in-memory star (:func:`qfl.algorithms.fedavg.star_transport`).
    seed : int or SeedSequence
        Data order and augmentations of every round.
    device : torch.device or str, optional
        Where clients train (default: CPU).
    """

    def __init__(
        self,
        net: SimCLRNet,
        unlabeled: Sequence[TensorDataset],
        config: SimCLRConfig,
        *,
        clients: Sequence[Hashable] | None = None,
        server: Hashable = "server",
        transport: Transport | None = None,
        seed: Seed = 0,
        device: torch.device | str | None = None,
    ) -> None:
        n = len(unlabeled)
        if n == 0:
            raise ParameterError("unlabeled", "[]", "one dataset per client (at least one)")
        for i, ds in enumerate(unlabeled):
            if len(ds) < 2:
                raise ParameterError(f"unlabeled[{i}]", f"{len(ds)} images", ">= 2 images")
        self.clients: tuple[Hashable, ...] = tuple(range(n)) if clients is None else tuple(clients)
        if len(self.clients) != n or len(set(self.clients)) != n:
            raise ParameterError("clients", self.clients, f"{n} distinct node names")
        if server in self.clients:
            raise ParameterError("server", server, "a node name different from every client's")
        self.server = server
        self.config = config
        self.unlabeled = tuple(unlabeled)
        self.transport: Transport = (
            star_transport(self.clients, server) if transport is None else transport
        )
        self.seed = _derive(seed)
        self.params: Params = {k: v.detach().clone() for k, v in net.named_parameters()}
        self.round = 0
        objective = SimCLRObjective(net, config.augment, config.temperature)
        self._optimizer = _optimizer(config)
        self._trainer = _trainer(
            config.engine,
            net,
            self._optimizer,
            batch_size=min(config.batch_size, *(len(d) for d in unlabeled)),
            drop_last=False,
            chunk_size=config.chunk_size,
            device=device,
            loss_of=objective,
        )
        self._batch_size = min(config.batch_size, *(len(d) for d in unlabeled))

    def _round_data(
        self, round_seed: np.random.SeedSequence
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Each client's images of this round: a random ``b * floor(n / b)`` of its ``n``.

        A contrastive batch needs at least two images, so a client's last, partial batch is
        left out, as with ``drop_last``: a random subset of ``n mod b`` images sits the
        round out. The trainer wants ``(x, y)``: unlabeled images get dummy labels.
        """
        out = []
        b = self._batch_size
        for i, d in enumerate(self.unlabeled):
            n = len(d) - len(d) % b
            gen = torch.Generator().manual_seed(_int_seed(_derive(round_seed, 1, i)))
            keep = torch.randperm(len(d), generator=gen)[:n].sort().values
            out.append((d.x[keep], torch.zeros(n, dtype=torch.int64)))
        return out

    download_tag = DOWNLOAD_TAG
    upload_tag = UPLOAD_TAG

    def n_samples(self, i: int) -> int:
        """Client ``i``'s unlabeled images."""
        return len(self.unlabeled[i])

    def train_present(self, downloads: Sequence[Params | None]) -> list[Params | None]:
        """Train the clients whose download arrived on their unlabeled images, together.

        Each client's mean loss goes to ``last_losses`` (NaN for a client that sat the round
        out: its global model did not arrive).
        """
        present = [i for i, d in enumerate(downloads) if d is not None]
        self.last_losses: tuple[float, ...] = (float("nan"),) * len(self.clients)
        out: list[Params | None] = [None] * len(self.clients)
        if not present:
            return out
        stacked = {k: torch.stack([downloads[i][k] for i in present]) for k in self.params}  # type: ignore[index]
        state = self._trainer.init_state(stacked)
        round_seed = _derive(self.seed, self.round)
        data = self._round_data(round_seed)
        trained, _, stats = self._trainer.train_epochs(
            stacked,
            state,
            [data[i] for i in present],
            self.config.local_epochs,
            seed=_int_seed(_derive(round_seed, 0)),
        )
        losses = [float("nan")] * len(self.clients)
        for j, i in enumerate(present):
            losses[i] = float(stats.loss[j].nanmean())
            out[i] = {k: trained[k][j].detach().to("cpu").clone() for k in self.params}
        self.last_losses = tuple(losses)
        return out

    def run_round(  # type: ignore[override]
        self, transport: Transport | None = None, on_phase: Callable[[str], None] | None = None
    ) -> PretrainRound:
        """One full round (over ``transport``, default: the one given at construction)."""
        down, up = super().run_round(transport, on_phase)
        return PretrainRound(self.round, self.last_losses, down, up)


def pretrain_simclr(
    net: SimCLRNet,
    unlabeled: Sequence[TensorDataset],
    config: SimCLRConfig,
    *,
    clients: Sequence[Hashable] | None = None,
    server: Hashable = "server",
    transport: Transport | None = None,
    seed: Seed = 0,
    device: torch.device | str | None = None,
) -> tuple[Params, tuple[PretrainRound, ...]]:
    """Run ``config.rounds`` rounds of federated SimCLR (arguments as :class:`FedSimCLR`).

    Returns
    -------
    (dict, tuple of PretrainRound)
        The global SimCLR network's parameters (``encoder.*``, ``projection.*``) and the
        history of the rounds.
    """
    fed = FedSimCLR(
        net,
        unlabeled,
        config,
        clients=clients,
        server=server,
        transport=transport,
        seed=seed,
        device=device,
    )
    history = tuple(fed.run_round() for _ in range(config.rounds))
    return fed.params, history


# --------------------------------------------------------------------------- phase 2


def masked_logits(logits: torch.Tensor, class_mask: torch.Tensor) -> torch.Tensor:
    """Logits with the classes outside ``class_mask`` set to a large negative value.

    A padded head of ``K`` outputs, masked to a client's ``k <= K`` classes, gives the
    softmax, the cross-entropy and the gradients of a ``k``-output head exactly (up to
    ``exp(-1e9) = 0``); the masked rows get zero gradient.

    Examples
    --------
    >>> masked_logits(torch.tensor([[1.0, 5.0]]), torch.tensor([True, False])).argmax().item()
    0
    """
    return torch.where(class_mask, logits, torch.full_like(logits, _MASK_VALUE))


class _LastBlockNet(nn.Module):
    """The encoder's last stage + pooling + a linear head (input: the stage-3 feature map)."""

    def __init__(self, encoder: ResNetEncoder, num_classes: int) -> None:
        super().__init__()
        self.layer4 = copy.deepcopy(encoder.layer4)
        self.head = nn.Linear(encoder.feature_dim, num_classes)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        h = self.layer4(h)
        return self.head(torch.flatten(F.adaptive_avg_pool2d(h, 1), 1))


class _MaskedCE:
    """``loss_of`` of a padded-head model: cross-entropy over the client's own classes."""

    def __init__(self, model: nn.Module, augment: AugmentConfig | None = None) -> None:
        self.model = copy.deepcopy(model).train()
        self.augment = augment

    def __call__(
        self, params: Params, buffers: Params, batch: dict[str, Any], key: torch.Tensor
    ) -> torch.Tensor:
        x = batch["x"]
        if self.augment is not None:
            u = uniform(fold_in(key, _VIEW_TAG), (x.shape[0], N_UNIFORMS), dtype=x.dtype)
            x = _normalize(augment_from_uniform(x, u, self.augment))
        logits = functional_call(self.model, params | buffers, (x,))
        return F.cross_entropy(masked_logits(logits, batch["class_mask"]), batch["y"])


def _class_masks(num_classes: Sequence[int]) -> torch.Tensor:
    k = max(num_classes)
    return torch.arange(k)[None, :] < torch.tensor(list(num_classes))[:, None]


@torch.no_grad()
def _features(
    encoder: ResNetEncoder,
    encoder_params: Mapping[str, torch.Tensor],
    x: torch.Tensor,
    stage: int | None,
    batch_size: int,
    device: torch.device,
) -> torch.Tensor:
    """Representations (``stage=None``) or stage-``stage`` maps of raw images, in batches."""
    net = copy.deepcopy(encoder).eval().to(device)
    load_into(net, encoder_params)
    out = []
    for s in range(0, x.shape[0], batch_size):
        xb = _normalize(x[s : s + batch_size].to(device))
        out.append(net(xb) if stage is None else net.forward_to(xb, stage))
    return torch.cat(out).cpu()


def _sub_params(params: Mapping[str, torch.Tensor], prefix: str) -> Params:
    return {k.removeprefix(prefix): v for k, v in params.items() if k.startswith(prefix)}


@dataclass(frozen=True)
class TaskResult:
    """Outcome of one client's task.

    Attributes
    ----------
    name : str
        The task (client) name.
    accuracy : float
        Accuracy on the evaluation set, in ``[0, 1]``.
    n_train, n_eval : int
        Sizes of the training (labeled) and evaluation sets.
    train_loss : float
        Mean training loss of the last epoch.
    """

    name: str
    accuracy: float
    n_train: int
    n_eval: int
    train_loss: float


def _accuracy(
    model: nn.Module,
    params: Mapping[str, torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    class_mask: torch.Tensor,
    *,
    normalize: bool,
    batch_size: int,
    device: torch.device,
) -> float:
    net = copy.deepcopy(model).eval().to(device)
    p = {k: v.to(device) for k, v in params.items()}
    mask = class_mask.to(device)
    correct = 0
    with torch.no_grad():
        for s in range(0, x.shape[0], batch_size):
            xb = x[s : s + batch_size].to(device)
            if normalize:
                xb = _normalize(xb)
            logits = masked_logits(functional_call(net, p, (xb,)), mask)
            correct += int((logits.argmax(dim=1).cpu() == y[s : s + batch_size]).sum())
    return correct / max(int(x.shape[0]), 1)


def train_heads(
    encoder: ResNetEncoder,
    encoder_params: Mapping[str, torch.Tensor],
    clients: Sequence[SSLClient],
    config: HeadConfig,
    *,
    seed: Seed = 0,
    device: torch.device | str | None = None,
    eval_batch_size: int = 256,
) -> tuple[TaskResult, ...]:
    """Phase 2: train each client's head on its labeled part, evaluate on its unlabeled part.

    Parameters
    ----------
    encoder : ResNetEncoder
        The architecture of the pretrained encoder.
    encoder_params : mapping of str to torch.Tensor
        Its parameters (names as ``encoder.named_parameters()``; e.g. the ``encoder.*``
        entries of :func:`pretrain_simclr`'s result with the prefix removed).
    clients : sequence of SSLClient
        The clients, each with its own task and class count.
    config : HeadConfig
        Head training.
    seed : int or SeedSequence
        Head initialisation and data order.
    device : torch.device or str, optional
        Where to compute (default CPU).
    eval_batch_size : int
        Images per forward pass when caching features and evaluating.

    Returns
    -------
    tuple of TaskResult
        One per client, in order.

    Kept as one function: feature caching, padded heads and the batched training are one
    pipeline with shared locals.
    """
    if not clients:
        raise ParameterError("clients", "[]", "at least one client")
    names = {n for n, _ in encoder.named_parameters()}
    if set(encoder_params) != names:
        raise ParameterError(
            "encoder_params", sorted(set(encoder_params) ^ names), "the encoder's parameters"
        )
    dev = torch.device("cpu") if device is None else torch.device(device)
    masks = _class_masks([c.num_classes for c in clients])
    k = masks.shape[1]
    stage = 3 if config.finetune_last_block else None
    model: nn.Module
    if config.finetune_last_block:
        model = _LastBlockNet(encoder, k)
    else:
        model = nn.Linear(encoder.feature_dim, k)
    seq = _derive(seed, _HEADS)
    per_client: list[Params] = []
    for i in range(len(clients)):
        init_parameters(model, _int_seed(_derive(seq, _HEAD_INIT, i)))
        p = {n: v.detach().clone() for n, v in model.named_parameters()}
        if config.finetune_last_block:
            last = _sub_params(encoder_params, f"{LAST_BLOCK}.")
            p.update({f"{LAST_BLOCK}.{n}": v.clone() for n, v in last.items()})
        per_client.append(p)
    train = [
        (_features(encoder, encoder_params, c.labeled.x, stage, eval_batch_size, dev), c.labeled.y)
        for c in clients
    ]
    stacked = {n: torch.stack([p[n] for p in per_client]) for n in per_client[0]}
    trainer = _trainer(
        config.engine,
        model,
        _optimizer(config),
        batch_size=config.batch_size,
        drop_last=False,
        chunk_size=config.chunk_size,
        device=dev,
        loss_of=_MaskedCE(model),
    )
    trained, _, stats = trainer.train_epochs(
        stacked,
        trainer.init_state(stacked),
        train,
        config.epochs,
        seed=_int_seed(_derive(seq, 0)),
        client_inputs={"class_mask": masks},
    )
    out = []
    for i, c in enumerate(clients):
        x_eval = _features(encoder, encoder_params, c.unlabeled.x, stage, eval_batch_size, dev)
        acc = _accuracy(
            model,
            {n: v[i] for n, v in trained.items()},
            x_eval,
            c.unlabeled.y,
            masks[i],
            normalize=False,
            batch_size=eval_batch_size,
            device=dev,
        )
        out.append(
            TaskResult(c.name, acc, len(c.labeled), len(c.unlabeled), float(stats.loss[i, -1]))
        )
    return tuple(out)


# --------------------------------------------------------------------------- baseline


def train_centralized(
    encoder: ResNetEncoder,
    clients: Sequence[SSLClient],
    config: SupervisedConfig,
    *,
    seed: Seed = 0,
    device: torch.device | str | None = None,
    eval_batch_size: int = 256,
) -> tuple[TaskResult, ...]:
    """Baseline: each task's encoder + linear head trained from scratch on its labeled part.

    No pretraining and no federation: task ``i`` trains a fresh network (the architecture of
    ``encoder``, re-initialised per task) on ``clients[i].labeled`` and is evaluated on
    ``clients[i].unlabeled``, the same split as the SSL heads. The tasks train side by side
    in one batched computation with padded, masked heads; they share no parameters.

    Parameters
    ----------
    encoder : ResNetEncoder
        The architecture (its weights are not used).
    clients : sequence of SSLClient
        The tasks.
    config : SupervisedConfig
        Training schedule and augmentation.
    seed : int or SeedSequence
        Initialisation, data order and augmentation.
    device, eval_batch_size
        As in :func:`train_heads`.

    Returns
    -------
    tuple of TaskResult
        One per task.
    """
    if not clients:
        raise ParameterError("clients", "[]", "at least one client")
    dev = torch.device("cpu") if device is None else torch.device(device)
    masks = _class_masks([c.num_classes for c in clients])
    model = Classifier(copy.deepcopy(encoder), masks.shape[1])
    seq = _derive(seed, _CENTRAL)
    per_task = []
    for i in range(len(clients)):
        init_parameters(model, _int_seed(_derive(seq, _HEAD_INIT, i)))
        per_task.append({n: v.detach().clone() for n, v in model.named_parameters()})
    stacked = {n: torch.stack([p[n] for p in per_task]) for n in per_task[0]}
    augment = config.augment
    train: list[tuple[torch.Tensor, torch.Tensor]] = [
        (c.labeled.x if augment is not None else _normalize(c.labeled.x), c.labeled.y)
        for c in clients
    ]
    trainer = _trainer(
        config.engine,
        model,
        _optimizer(config),
        batch_size=config.batch_size,
        drop_last=False,
        chunk_size=config.chunk_size,
        device=dev,
        loss_of=_MaskedCE(model, augment),
    )
    trained, _, stats = trainer.train_epochs(
        stacked,
        trainer.init_state(stacked),
        train,
        config.epochs,
        seed=_int_seed(_derive(seq, 0)),
        client_inputs={"class_mask": masks},
    )
    out = []
    for i, c in enumerate(clients):
        acc = _accuracy(
            model,
            {n: v[i] for n, v in trained.items()},
            c.unlabeled.x,
            c.unlabeled.y,
            masks[i],
            normalize=True,
            batch_size=eval_batch_size,
            device=dev,
        )
        out.append(
            TaskResult(c.name, acc, len(c.labeled), len(c.unlabeled), float(stats.loss[i, -1]))
        )
    return tuple(out)


def accuracy_percent(results: Sequence[TaskResult]) -> dict[str, float]:
    """``{task name: accuracy in percent}``.

    Examples
    --------
    >>> accuracy_percent([TaskResult("intel", 0.5, 1, 2, 0.0)])
    {'intel': 50.0}
    """
    return {r.name: 100.0 * r.accuracy for r in results}
