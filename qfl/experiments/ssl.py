"""SSL-backbone FL against centralized supervised training, on Flowers102 and Intel scenes.

The reproduction set-up (issue 5, after the SSL-backbone FL paper): two clients with
different image tasks, client 1 Flowers102 (102 classes) and client 2 Intel scenes
(6 classes). Each client's images (the loader's train and test splits together) are split,
stratified by class, into a labeled part (``labeled_fraction``, 25 %) and an unlabeled part
(75 %). Then:

- **SSL-backbone FL** (:mod:`qfl.algorithms.ssl`): a ResNet encoder is pretrained with
  SimCLR by FedAvg over both clients' unlabeled parts; each client then trains its own head
  on its labeled part, and is evaluated on its unlabeled part (as the paper does);
- **centralized baseline**: each task's network (same architecture) trained from scratch on
  its labeled part, without SSL, evaluated on the same unlabeled part.

Both methods use the same splits (same seed). :func:`run_ssl_experiment` returns the
accuracies in percent per task.
"""

from __future__ import annotations

import os
import time
from collections.abc import Hashable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from qfl.algorithms.ssl import (
    HeadConfig,
    PretrainRound,
    SimCLRConfig,
    SSLClient,
    SupervisedConfig,
    TaskResult,
    accuracy_percent,
    pretrain_simclr,
    train_centralized,
    train_heads,
)
from qfl.algorithms.transport import Transport
from qfl.data import TensorDataset, load_flowers102, load_intel_scenes, partition
from qfl.models.resnet_ssl import DEPTHS, NORMS, ProjectionHead, ResNetEncoder, SimCLRNet
from qkd.errors import ParameterError, UnknownNameError

__all__ = [
    "PAPER",
    "TASKS",
    "SSLExperiment",
    "SSLExperimentResult",
    "load_clients",
    "run_ssl_experiment",
]

#: Task names, in client order.
TASKS: tuple[str, ...] = ("flowers102", "intel")
#: The paper's table (accuracy in percent): centralized without SSL -> SSL-backbone FL.
PAPER: dict[str, dict[str, float]] = {
    "centralized": {"flowers102": 29.93, "intel": 83.29},
    "ssl": {"flowers102": 53.97, "intel": 88.22},
}

# Seed streams.
_SPLIT, _INIT, _PRETRAIN, _HEADS, _CENTRAL = 0, 1, 2, 3, 4


def _seed_int(seed: int, *key: int) -> int:
    return int(np.random.SeedSequence(seed, spawn_key=key).generate_state(1)[0])


def _concat(a: TensorDataset, b: TensorDataset, name: str) -> TensorDataset:
    return TensorDataset(torch.cat((a.x, b.x)), torch.cat((a.y, b.y)), a.classes, name)


def load_clients(
    *,
    image_size: int = 96,
    labeled_fraction: float = 0.25,
    seed: int = 0,
    flowers_root: str | os.PathLike[str] | None = None,
    intel_root: str | os.PathLike[str] | None = None,
) -> tuple[SSLClient, SSLClient]:
    """The two clients' data: Flowers102 and Intel scenes, each split labeled / unlabeled.

    Parameters
    ----------
    image_size : int
        Side of the square images.
    labeled_fraction : float
        Share of each client's images that keeps its labels (stratified by class).
    seed : int
        Split randomness.
    flowers_root, intel_root : path-like, optional
        Dataset folders (default: the loaders' resolution, ``$QFL_DATA_DIR/...``).

    Returns
    -------
    (SSLClient, SSLClient)
        Named ``"flowers102"`` and ``"intel"``; images RGB in ``[0, 1]``.
    """
    loaded = (
        load_flowers102(flowers_root, image_size=image_size, normalize=False, download=False),
        load_intel_scenes(intel_root, image_size=image_size, normalize=False),
    )
    out = []
    for i, (name, (train, test)) in enumerate(zip(TASKS, loaded, strict=True)):
        data = _concat(train, test, name)
        labeled, unlabeled = partition.labeled_split(
            np.arange(len(data)),
            labeled_fraction,
            seed=np.random.SeedSequence(seed, spawn_key=(_SPLIT, i)),
            labels=data.y.numpy(),
        )
        out.append(SSLClient(name, data.subset(labeled), data.subset(unlabeled)))
    return out[0], out[1]


@dataclass(frozen=True)
class SSLExperiment:
    """Settings of one SSL-backbone FL vs centralized run.

    Attributes
    ----------
    image_size : int
        Image side (the paper-scale run: 96).
    depth, width, small_stem, norm, norm_groups
        The ResNet encoder (:class:`qfl.models.resnet_ssl.ResNetEncoder`).
    projection_dim : int
        Output size of the SimCLR projection head.
    labeled_fraction : float
        Labeled share of each client's data.
    pretrain, heads, baseline
        Phase-1, phase-2 and baseline settings.
    seed : int
        The one seed of the run.
    device : str or None
        ``"cuda"`` to train on a GPU; default CPU.
    """

    image_size: int = 96
    depth: int = 18
    width: int = 64
    small_stem: bool = True
    norm: str = "group"
    norm_groups: int = 32
    projection_dim: int = 128
    labeled_fraction: float = 0.25
    pretrain: SimCLRConfig = field(default_factory=SimCLRConfig)
    heads: HeadConfig = field(default_factory=HeadConfig)
    baseline: SupervisedConfig = field(default_factory=SupervisedConfig)
    seed: int = 0
    device: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.image_size, bool) or self.image_size < 8:
            raise ParameterError("image_size", self.image_size, "an integer >= 8")
        if self.depth not in DEPTHS:
            raise UnknownNameError("depth", self.depth, tuple(str(d) for d in DEPTHS))
        if self.norm not in NORMS:
            raise UnknownNameError("norm", self.norm, NORMS)
        if not 0.0 < self.labeled_fraction < 1.0:
            raise ParameterError("labeled_fraction", self.labeled_fraction, "in (0, 1)")
        if isinstance(self.seed, bool) or self.seed < 0:
            raise ParameterError("seed", self.seed, "an integer >= 0")

    def encoder(self) -> ResNetEncoder:
        """A freshly initialised encoder (seeded from :attr:`seed`)."""
        return ResNetEncoder(
            self.depth,
            width=self.width,
            small_stem=self.small_stem,
            norm=self.norm,
            norm_groups=self.norm_groups,
            seed=_seed_int(self.seed, _INIT, 0),
        )

    def settings(self) -> dict[str, Any]:
        """The settings as plain JSON-able values."""
        out = asdict(self)
        out["model"] = f"resnet{self.depth}"
        return out


@dataclass(frozen=True)
class SSLExperimentResult:
    """Outcome of :func:`run_ssl_experiment`.

    Attributes
    ----------
    ssl, centralized : dict of str to float
        Accuracy in percent per task (``"flowers102"``, ``"intel"``).
    ssl_tasks, centralized_tasks : tuple of TaskResult
        Details per task (sizes, last training loss).
    pretrain_history : tuple of PretrainRound
        NT-Xent loss per client and bytes per round of phase 1.
    seconds : dict of str to float
        Wall-clock time of each part (``pretrain``, ``heads``, ``centralized``).
    """

    ssl: dict[str, float]
    centralized: dict[str, float]
    ssl_tasks: tuple[TaskResult, ...]
    centralized_tasks: tuple[TaskResult, ...]
    pretrain_history: tuple[PretrainRound, ...]
    seconds: dict[str, float]


def run_ssl_experiment(
    experiment: SSLExperiment,
    clients: Sequence[SSLClient] | None = None,
    *,
    transport: Transport | None = None,
    client_names: Sequence[Hashable] | None = None,
    server: Hashable = "server",
    run_baseline: bool = True,
) -> SSLExperimentResult:
    """Run SSL-backbone FL and (optionally) the centralized baseline on the same splits.

    Parameters
    ----------
    experiment : SSLExperiment
        The settings.
    clients : sequence of SSLClient, optional
        The clients' data; default :func:`load_clients` at ``experiment.image_size``.
    transport : Transport, optional
        Carries phase 1's model exchanges (default: an in-memory star).
    client_names, server : hashable
        Node names of the clients and the server on the transport.
    run_baseline : bool
        Also train the centralized baseline.

    Returns
    -------
    SSLExperimentResult
    """
    if clients is None:
        clients = load_clients(
            image_size=experiment.image_size,
            labeled_fraction=experiment.labeled_fraction,
            seed=experiment.seed,
        )
    encoder = experiment.encoder()
    net = SimCLRNet(
        encoder,
        ProjectionHead(
            encoder.feature_dim,
            out_dim=experiment.projection_dim,
            seed=_seed_int(experiment.seed, _INIT, 1),
        ),
    )
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    params, history = pretrain_simclr(
        net,
        [c.unlabeled for c in clients],
        experiment.pretrain,
        clients=client_names,
        server=server,
        transport=transport,
        seed=np.random.SeedSequence(experiment.seed, spawn_key=(_PRETRAIN,)),
        device=experiment.device,
    )
    seconds["pretrain"] = time.perf_counter() - t0
    encoder_params = {
        k.removeprefix("encoder."): v for k, v in params.items() if k.startswith("encoder.")
    }
    t0 = time.perf_counter()
    ssl_tasks = train_heads(
        encoder,
        encoder_params,
        clients,
        experiment.heads,
        seed=np.random.SeedSequence(experiment.seed, spawn_key=(_HEADS,)),
        device=experiment.device,
    )
    seconds["heads"] = time.perf_counter() - t0
    central: tuple[TaskResult, ...] = ()
    if run_baseline:
        t0 = time.perf_counter()
        central = train_centralized(
            encoder,
            clients,
            experiment.baseline,
            seed=np.random.SeedSequence(experiment.seed, spawn_key=(_CENTRAL,)),
            device=experiment.device,
        )
        seconds["centralized"] = time.perf_counter() - t0
    return SSLExperimentResult(
        ssl=accuracy_percent(ssl_tasks),
        centralized=accuracy_percent(central),
        ssl_tasks=ssl_tasks,
        centralized_tasks=central,
        pretrain_history=history,
        seconds=seconds,
    )
