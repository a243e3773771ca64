"""Def-FD (decentralized FL with feature-map distillation) and its baselines.

No server: in each round a set of *senders* train their models locally and each sends its
model to a distinct neighbour (a *receiver*), which fuses the received model into its own.
The three fusion rules share one schedule, one data split and one engine:

``"def-fd"``
    The receiver trains its model on its own data with
    ``ce_weight * CE + kd_weight * KL_T(received logits) + gamma * feature_loss`` where the
    feature loss (L2, COS or MSE, :data:`qfl.losses.FEATURE_LOSSES`) compares its three conv
    feature maps with the received model's; the received model is a frozen teacher.
``"def-kt"``
    Def-KT (Li, Li & Varshney 2021): mutual knowledge transfer, logits only. The receiver's
    model and the received model learn from each other at the same time on the receiver's
    data (deep mutual learning: each minimises ``CE + KL_T(other's logits)`` with the other
    held fixed for the step). Our reading of the paper: the receiver keeps its own,
    mutually-trained model and the received copy is then discarded.
``"gossip-avg"``
    The receiver replaces its parameters by the mean of its own and the received ones
    (then trains ``gossip_epochs`` local epochs, 0 by default).

Schedule (as in Def-KT): each round ``Q`` clients are drawn at random without replacement
(``senders_per_round``, default half of the clients); each trains ``local_epochs`` epochs on
its own data and sends its model to a neighbour drawn at random among the neighbours that
neither send nor already receive in this round, so senders and receivers are disjoint and
each receiver fuses exactly one model per round. Neighbours come from the transport (a
complete graph by default). A sender with no free neighbour trains but sends nothing.

The schedule does not depend on learned values: :func:`plan_round` returns the plan of a
round (who trains, who sends to whom, whether to evaluate) from the seed alone, and
:class:`DecentralizedLearner` executes its operations (:meth:`~DecentralizedLearner.local_update`,
:meth:`~DecentralizedLearner.snapshot`, :meth:`~DecentralizedLearner.fuse`,
:meth:`~DecentralizedLearner.evaluate`). :func:`run_round` drives one round through a
:class:`~qfl.algorithms.transport.Transport`; the co-simulation runs the same plan on
the network's clock first (:mod:`qfl.cosim`), then drives the learner round by round through
a replay transport that drops the models the network failed to deliver (``fuse`` takes
whatever messages arrived).

Each training phase starts a fresh optimizer state (SGD momentum is not carried between
phases); all clients start from one common initialisation drawn from the seed.

References
----------
.. [1] C. Li, G. Li, P. K. Varshney, "Decentralized federated learning via mutual knowledge
   transfer", IEEE Internet of Things Journal 9(2), 2022 (arXiv:2012.13063).
.. [2] Y. Zhang, T. Xiang, T. M. Hospedales, H. Lu, "Deep mutual learning", CVPR 2018.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from qfl.algorithms.transport import Message, Transport
from qfl.data import TensorDataset
from qfl.engine import default_logits, evaluate, kernels, sgd, stacked_cnn
from qfl.engine.select import ENGINES, make_trainer, resolve_engine
from qfl.losses import FEATURE_LOSSES, DefFDLoss, cross_entropy, kd_loss
from qfl.seeding import derive_seed as _derive
from qfl.seeding import int_seed as _int_seed
from qkd.errors import ParameterError, UnknownNameError

__all__ = [
    "METHODS",
    "ClientData",
    "DecentralizedLearner",
    "DecentralizedResult",
    "DefFDConfig",
    "ModelPayload",
    "RoundMetrics",
    "RoundPlan",
    "Transfer",
    "plan_round",
    "run_decentralized",
    "run_round",
]

METHODS: tuple[str, ...] = ("def-fd", "def-kt", "gossip-avg")

Seed = int | np.random.SeedSequence

# Independent random streams derived from the one seed.
_PLAN, _INIT, _LOCAL, _FUSE = 0, 1, 2, 3


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class DefFDConfig:
    """Hyperparameters of Def-FD and its baselines.

    Parameters
    ----------
    method : {"def-fd", "def-kt", "gossip-avg"}
        Fusion rule (see the module docstring).
    feature_loss : {"l2", "cos", "mse"}
        Feature-map loss of Def-FD.
    gamma : float
        Weight of the feature-map loss (>= 0; 0 reduces Def-FD to logit KD).
    temperature : float
        Distillation temperature ``T`` (> 0) of the KL terms (scaled by ``T**2``).
    ce_weight, kd_weight : float
        Weights (>= 0) of cross-entropy and logit distillation.
    local_epochs : int
        Epochs ``E`` a sender trains on its own data before sending (>= 0).
    fusion_epochs : int
        Epochs a receiver trains to fuse (Def-FD, Def-KT; >= 1).
    gossip_epochs : int
        Epochs a receiver trains after averaging (gossip-avg; >= 0).
    lr, momentum, weight_decay : float
        SGD settings (``lr > 0``, ``0 <= momentum < 1``, ``weight_decay >= 0``).
    batch_size : int
        Mini-batch size (>= 1).
    senders_per_round : int or None
        ``Q``; ``None`` means half of the clients (rounded down, at least 1).
    engine : {"batched", "sequential"}
        Train the clients of a phase as one vectorized computation, or one after another
        (the reference).
    chunk_size : int or None
        Most clients per vectorized chunk (batched engine), ``None`` for all.
    eval_batch_size : int
        Samples per client per evaluation pass (>= 1); small batches are faster on a CPU,
        raise it on a GPU.
    """

    method: str = "def-fd"
    feature_loss: str = "l2"
    gamma: float = 0.01
    temperature: float = 1.0
    ce_weight: float = 1.0
    kd_weight: float = 1.0
    local_epochs: int = 1
    fusion_epochs: int = 1
    gossip_epochs: int = 0
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 0.0
    batch_size: int = 32
    senders_per_round: int | None = None
    engine: str = "batched"
    chunk_size: int | None = None
    eval_batch_size: int = 64

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise UnknownNameError("method", self.method, METHODS)
        if self.feature_loss not in FEATURE_LOSSES:
            raise UnknownNameError("feature_loss", self.feature_loss, FEATURE_LOSSES)
        if self.engine not in ENGINES:
            raise UnknownNameError("engine", self.engine, ENGINES)
        for name in ("gamma", "ce_weight", "kd_weight", "weight_decay"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise ParameterError(name, value, ">= 0")
        for name in ("temperature", "lr"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ParameterError(name, value, "> 0")
        if not (isinstance(self.momentum, int | float) and 0 <= self.momentum < 1):
            raise ParameterError("momentum", self.momentum, "in [0, 1)")
        for name, low in (
            ("local_epochs", 0),
            ("fusion_epochs", 1),
            ("gossip_epochs", 0),
            ("batch_size", 1),
            ("eval_batch_size", 1),
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ParameterError(name, value, f"an int >= {low}")
        for name in ("senders_per_round", "chunk_size"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 1
            ):
                raise ParameterError(name, value, "None or an int >= 1")

    def n_senders(self, n_clients: int) -> int:
        """``Q`` for ``n_clients`` clients (validated: ``1 <= Q <= n_clients // 2``)."""
        q = max(1, n_clients // 2) if self.senders_per_round is None else self.senders_per_round
        if n_clients < 2 or q > n_clients // 2:
            raise ParameterError(
                "senders_per_round", q, f"in [1, {n_clients // 2}] for {n_clients} clients"
            )
        return q


# --------------------------------------------------------------------------------- schedule


@dataclass(frozen=True)
class Transfer:
    """One model transfer of a round: ``src`` sends its model to ``dst``."""

    src: int
    dst: int


@dataclass(frozen=True)
class RoundPlan:
    """The operations of one round, fixed before any learning happens.

    Attributes
    ----------
    index : int
        Round number, from 0.
    senders : tuple of int
        Clients that train locally this round (sorted).
    transfers : tuple of Transfer
        Who sends to whom (receivers distinct and disjoint from the senders).
    evaluate : bool
        Whether the models are evaluated after this round.
    """

    index: int
    senders: tuple[int, ...]
    transfers: tuple[Transfer, ...]
    evaluate: bool

    @property
    def receivers(self) -> tuple[int, ...]:
        """Clients that fuse a received model this round (sorted)."""
        return tuple(sorted(t.dst for t in self.transfers))


def plan_round(
    index: int,
    nodes: Sequence[int],
    neighbours: Callable[[int], Sequence[Hashable]],
    n_senders: int,
    *,
    seed: Seed,
    evaluate: bool = False,
) -> RoundPlan:
    """Draw the senders of round ``index`` and a distinct free neighbour for each.

    Parameters
    ----------
    index : int
        Round number (>= 0); the draw depends only on ``seed`` and ``index``.
    nodes : sequence of int
        The clients.
    neighbours : callable
        ``neighbours(node)`` -> the nodes it may send to (e.g. ``transport.neighbours``).
    n_senders : int
        ``Q``, in ``[1, len(nodes)]``.
    seed : int or numpy.random.SeedSequence
        Seed of the whole run.
    evaluate : bool
        Copied into the plan.

    Returns
    -------
    RoundPlan

    Examples
    --------
    >>> from qfl.algorithms.transport import InMemoryTransport
    >>> p = plan_round(0, range(6), InMemoryTransport(6).neighbours, 3, seed=1)
    >>> len(p.senders), len(p.transfers), set(p.senders) & set(p.receivers)
    (3, 3, set())
    """
    nodes = list(nodes)
    if index < 0:
        raise ParameterError("index", index, ">= 0")
    if not 1 <= n_senders <= len(nodes):
        raise ParameterError("n_senders", n_senders, f"in [1, {len(nodes)}]")
    rng = np.random.default_rng(_derive(seed, _PLAN, index))
    order = [nodes[i] for i in rng.permutation(len(nodes))[:n_senders]]
    sending = set(order)
    taken: set[int] = set()
    transfers: list[Transfer] = []
    for src in order:
        free = [m for m in neighbours(src) if m not in sending and m not in taken]
        if not free:
            continue
        dst = free[int(rng.integers(len(free)))]
        taken.add(dst)  # type: ignore[arg-type]
        transfers.append(Transfer(src=int(src), dst=int(dst)))  # type: ignore[call-overload]
    return RoundPlan(
        index=index,
        senders=tuple(sorted(int(s) for s in order)),
        transfers=tuple(sorted(transfers, key=lambda t: t.src)),
        evaluate=evaluate,
    )


# ---------------------------------------------------------------------------- data, results


@dataclass(frozen=True, eq=False)
class ClientData:
    """One client's data: what it trains on and its local held-out set."""

    train: TensorDataset
    holdout: TensorDataset


@dataclass(frozen=True, eq=False)
class ModelPayload:
    """What a sender puts on the wire: a snapshot of one model's parameters."""

    sender: int
    round: int
    params: dict[str, torch.Tensor] = field(repr=False)

    @property
    def n_bytes(self) -> int:
        """Size of the parameters in bytes (what a network transport must carry)."""
        return sum(t.numel() * t.element_size() for t in self.params.values())


@dataclass(frozen=True)
class RoundMetrics:
    """Accuracies of every client's model after a round.

    Attributes
    ----------
    round : int
        Rounds completed (0: before the first round).
    global_acc : tuple of float
        Per client, accuracy (fraction) on the full test set.
    local_acc : tuple of float
        Per client, accuracy (fraction) on its own held-out data.
    """

    round: int
    global_acc: tuple[float, ...]
    local_acc: tuple[float, ...]

    @property
    def global_mean(self) -> float:
        """Mean global accuracy over clients (fraction)."""
        return float(np.mean(self.global_acc))

    @property
    def global_std(self) -> float:
        """Standard deviation of the global accuracy over clients (fraction)."""
        return float(np.std(self.global_acc))

    @property
    def local_mean(self) -> float:
        """Mean local accuracy over clients (fraction)."""
        return float(np.mean(self.local_acc))

    @property
    def local_std(self) -> float:
        """Standard deviation of the local accuracy over clients (fraction)."""
        return float(np.std(self.local_acc))


@dataclass(frozen=True)
class DecentralizedResult:
    """What a run produced: the configuration, the plans, the metrics and the traffic."""

    config: DefFDConfig
    plans: tuple[RoundPlan, ...]
    history: tuple[RoundMetrics, ...]
    bytes_sent: int

    @property
    def final(self) -> RoundMetrics:
        """The last evaluation."""
        if not self.history:
            raise ParameterError("history", "empty", "at least one evaluation")
        return self.history[-1]


# ------------------------------------------------------------------------------ the losses


def _logits(outputs: Any) -> torch.Tensor:
    out = default_logits(outputs)
    if not isinstance(out, torch.Tensor):
        raise ParameterError("model output", "several exits", "one logits tensor")
    return out


@dataclass(frozen=True)
class _LocalLoss:
    """Plain local training: cross-entropy on the model's logits."""

    def __call__(self, outputs: Any, y: torch.Tensor, teacher_outputs: Any = None) -> torch.Tensor:
        return cross_entropy(_logits(outputs), y)


@dataclass(frozen=True)
class _MutualLoss:
    """Deep mutual learning of the pair ``(own, peer)``: each learns from the other's logits.

    ``kd_loss`` detaches its teacher, so the gradient of the sum with respect to each
    model's parameters is that of its own term: both models take their DML step at once.
    """

    temperature: float
    ce_weight: float
    kd_weight: float

    def __call__(self, outputs: Any, y: torch.Tensor, teacher_outputs: Any = None) -> torch.Tensor:
        own, peer = _logits(outputs[0]), _logits(outputs[1])
        t = self.temperature
        loss_own = self.ce_weight * cross_entropy(own, y) + self.kd_weight * kd_loss(own, peer, t)
        loss_peer = self.ce_weight * cross_entropy(peer, y) + self.kd_weight * kd_loss(peer, own, t)
        return loss_own + loss_peer


class _MutualPair(nn.Module):
    """Two copies of an architecture run side by side on the same batch (Def-KT)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.own = copy.deepcopy(model)
        self.peer = copy.deepcopy(model)

    def forward(self, x: torch.Tensor) -> tuple[Any, Any]:
        return self.own(x), self.peer(x)


def _init_params(model: nn.Module, seed: np.random.SeedSequence) -> dict[str, torch.Tensor]:
    """Fresh parameters drawn like torch's defaults for conv/linear layers, from ``seed``.

    Weights with ``fan_in`` inputs per output and their biases are uniform on
    ``±1/sqrt(fan_in)`` (torch's ``kaiming_uniform_(a=sqrt(5))`` bound); 1-D weights
    without a matching layer (normalisation scales) are ones, their biases zeros.
    """
    gen = torch.Generator().manual_seed(_int_seed(seed))
    named = dict(model.named_parameters())
    out: dict[str, torch.Tensor] = {}
    for name, p in named.items():
        weight_name = name[: -len("bias")] + "weight" if name.endswith("bias") else name
        w = named.get(weight_name, p)
        if w.ndim >= 2:
            fan_in = int(np.prod(w.shape[1:]))
            bound = 1.0 / math.sqrt(fan_in)
            u = torch.rand(p.shape, generator=gen, dtype=torch.float32)
            out[name] = ((2 * u - 1) * bound).to(p.dtype)
        elif name.endswith("bias"):
            out[name] = torch.zeros_like(p)
        else:
            out[name] = torch.ones_like(p)
    return out


# ------------------------------------------------------------------------------- learner


class DecentralizedLearner:
    """The models of every client and the operations of Def-FD and its baselines.

    Parameters
    ----------
    model : torch.nn.Module
        The architecture shared by all clients (its own weights are not used); for Def-FD
        its forward must return ``(logits, feature_maps)`` like :class:`qfl.models.FeatureCNN`.
    clients : sequence of ClientData
        Client ``i``'s training and held-out data; clients are numbered ``0 .. n-1``.
    test : TensorDataset
        The shared test set (global accuracy).
    config : DefFDConfig
        Method and hyperparameters.
    seed : int or numpy.random.SeedSequence
        Seed of the run: common initialisation, data order of every phase, and (through
        :func:`run_decentralized`) the schedule.
    device : torch.device or str or None
        Where to train and evaluate (default CPU).

    Notes
    -----
    Every operation's randomness is keyed by ``(seed, operation, round, client)``, so its
    result does not depend on which other clients are batched with it.
    """

    def __init__(
        self,
        model: nn.Module,
        clients: Sequence[ClientData],
        test: TensorDataset,
        config: DefFDConfig,
        *,
        seed: Seed,
        device: torch.device | str | None = None,
    ) -> None:
        if not isinstance(config, DefFDConfig):
            raise ParameterError("config", type(config).__name__, "a DefFDConfig")
        if len(clients) < 2:
            raise ParameterError("clients", f"{len(clients)} clients", "at least 2 clients")
        for i, c in enumerate(clients):
            if not isinstance(c, ClientData):
                raise ParameterError(f"clients[{i}]", type(c).__name__, "a ClientData")
            if len(c.train) == 0 or len(c.holdout) == 0:
                raise ParameterError(
                    f"clients[{i}]",
                    f"{len(c.train)} training / {len(c.holdout)} held-out samples",
                    "non-empty training and held-out sets",
                )
        config.n_senders(len(clients))  # validates senders_per_round for this many clients
        _derive(seed)  # validates the seed
        self.model = model
        self.clients = tuple(clients)
        self.test = test
        self.config = config
        self.seed = seed
        self.device = torch.device("cpu") if device is None else torch.device(device)
        one = _init_params(model, _derive(seed, _INIT))
        n = len(clients)
        self.params: dict[str, torch.Tensor] = {
            k: v.to(self.device).unsqueeze(0).repeat(n, *([1] * v.ndim)) for k, v in one.items()
        }
        opt = sgd(config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
        common: dict[str, Any] = {
            "batch_size": config.batch_size,
            "chunk_size": config.chunk_size,
            "device": self.device,
        }
        pair = _MutualPair(model) if config.method == "def-kt" else None
        self.engine = resolve_engine(config.engine, *([model] if pair is None else [model, pair]))
        self._local = make_trainer(self.engine, model, _LocalLoss(), opt, **common)
        self._fusion: Any = None
        if config.method == "def-fd":
            loss = DefFDLoss(
                gamma=config.gamma,
                kind=config.feature_loss,
                temperature=config.temperature,
                ce_weight=config.ce_weight,
                kd_weight=config.kd_weight,
            )
            self._fusion = make_trainer(self.engine, model, loss, opt, **common)
        elif pair is not None:
            mutual = _MutualLoss(config.temperature, config.ce_weight, config.kd_weight)
            self._fusion = make_trainer(self.engine, pair, mutual, opt, **common)
        if stacked_cnn.supports(model) and self.device.type == "cpu":
            kernels.prepare()  # the evaluator's fused forward (any engine)

    @property
    def n_clients(self) -> int:
        """Number of clients."""
        return len(self.clients)

    def _check_clients(self, clients: Sequence[int], name: str) -> list[int]:
        out = [int(c) for c in clients]
        for c in out:
            if not 0 <= c < self.n_clients:
                raise ParameterError(name, c, f"a client in [0, {self.n_clients - 1}]")
        if len(set(out)) != len(out):
            raise ParameterError(name, out, "distinct clients")
        return out

    def _seeds(
        self, stream: int, round_index: int, clients: Sequence[int], k: int = 0
    ) -> list[Any]:
        return [_derive(self.seed, stream, round_index, c, k) for c in clients]

    def _train(
        self,
        trainer: Any,
        params: dict[str, torch.Tensor],
        clients: Sequence[int],
        epochs: int,
        seeds: list[Any],
        teacher: dict[str, torch.Tensor] | None = None,
    ) -> dict[str, torch.Tensor]:
        datasets = [self.clients[c].train for c in clients]
        new, _, _ = trainer.train_epochs(
            params,
            trainer.init_state(params),
            datasets,
            epochs,
            seed=seeds,
            teacher_params=teacher,
        )
        return new

    def _write(self, clients: Sequence[int], new: dict[str, torch.Tensor]) -> None:
        idx = torch.as_tensor(list(clients), dtype=torch.int64, device=self.device)
        for k, v in new.items():
            self.params[k].index_copy_(0, idx, v.to(self.device))

    def _read(self, clients: Sequence[int]) -> dict[str, torch.Tensor]:
        idx = torch.as_tensor(list(clients), dtype=torch.int64, device=self.device)
        return {k: v.index_select(0, idx) for k, v in self.params.items()}

    def local_update(self, clients: Sequence[int], *, round_index: int) -> None:
        """Train ``clients`` for ``local_epochs`` epochs on their own data (cross-entropy).

        Parameters
        ----------
        clients : sequence of int
            Distinct clients, trained together (one vectorized computation when batched).
        round_index : int
            Round number, keys the data order.
        """
        clients = self._check_clients(clients, "clients")
        if not clients or self.config.local_epochs == 0:
            return
        seeds = self._seeds(_LOCAL, round_index, clients)
        new = self._train(
            self._local, self._read(clients), clients, self.config.local_epochs, seeds
        )
        self._write(clients, new)

    def snapshot(self, client: int, *, round_index: int) -> ModelPayload:
        """A copy of ``client``'s parameters, ready to send."""
        (client,) = self._check_clients([client], "client")
        params = {k: v[client].detach().clone() for k, v in self.params.items()}
        return ModelPayload(sender=client, round=round_index, params=params)

    def fuse(self, arrivals: Sequence[Message], *, round_index: int) -> None:
        """Fuse every arrived model into its receiver's model, by the configured method.

        Parameters
        ----------
        arrivals : sequence of Message
            Delivered messages whose payload is a :class:`ModelPayload`; ``dst`` is the
            receiver. Messages are taken in order of ``seq``; a receiver with several
            messages fuses them one after another.
        round_index : int
            Round number, keys the data order.
        """
        waves: list[list[Message]] = []
        for msg in sorted(arrivals, key=lambda m: m.seq):
            if not isinstance(msg.payload, ModelPayload):
                raise ParameterError(
                    "arrivals.payload", type(msg.payload).__name__, "a ModelPayload"
                )
            self._check_clients([msg.dst], "arrivals.dst")  # type: ignore[list-item]
            for wave in waves:
                if all(m.dst != msg.dst for m in wave):
                    wave.append(msg)
                    break
            else:
                waves.append([msg])
        for k, wave in enumerate(waves):
            wave.sort(key=lambda m: m.dst)  # type: ignore[arg-type, return-value]
            receivers = [int(m.dst) for m in wave]  # type: ignore[call-overload]
            received = {
                name: torch.stack([m.payload.params[name].to(self.device) for m in wave])
                for name in self.params
            }
            self._fuse_wave(receivers, received, round_index, k)

    def _fuse_wave(
        self,
        receivers: list[int],
        received: dict[str, torch.Tensor],
        round_index: int,
        k: int,
    ) -> None:
        cfg = self.config
        seeds = self._seeds(_FUSE, round_index, receivers, k)
        own = self._read(receivers)
        if cfg.method == "def-fd":
            new = self._train(self._fusion, own, receivers, cfg.fusion_epochs, seeds, received)
        elif cfg.method == "def-kt":
            pair = {f"own.{n}": v for n, v in own.items()}
            pair.update({f"peer.{n}": v for n, v in received.items()})
            trained = self._train(self._fusion, pair, receivers, cfg.fusion_epochs, seeds)
            new = {n: trained[f"own.{n}"] for n in own}
        else:
            new = {n: 0.5 * (own[n] + received[n]) for n in own}
            if cfg.gossip_epochs > 0:
                new = self._train(self._local, new, receivers, cfg.gossip_epochs, seeds)
        self._write(receivers, new)

    def evaluate(self, round_completed: int) -> RoundMetrics:
        """Global (shared test set) and local (own held-out) accuracy of every client."""
        bs = self.config.eval_batch_size
        chunk = self.config.chunk_size
        glob = evaluate(self.model, self.params, self.test, batch_size=bs, chunk_size=chunk)
        local = evaluate(
            self.model,
            self.params,
            [c.holdout for c in self.clients],
            batch_size=bs,
            chunk_size=chunk,
        )
        return RoundMetrics(
            round=round_completed,
            global_acc=tuple(float(a) for a in glob),
            local_acc=tuple(float(a) for a in local),
        )


# ---------------------------------------------------------------------------- the driver


def run_round(
    learner: DecentralizedLearner,
    transport: Transport,
    plan: RoundPlan,
    on_phase: Callable[[str], None] | None = None,
) -> RoundMetrics | None:
    """Execute one planned round through ``transport`` (instant delivery assumed).

    Senders train, snapshot and send; then every client's inbox is read and what arrived
    is fused; then, if the plan says so, all models are evaluated.

    ``on_phase(text)``, if given, is told when the local updates are done (progress).

    Returns
    -------
    RoundMetrics or None
        The evaluation after the round, if the plan asks for one.
    """
    learner.local_update(plan.senders, round_index=plan.index)
    if on_phase is not None:
        on_phase(f"{len(plan.senders)} clients trained, fusing {len(plan.transfers)}")
    for t in plan.transfers:
        payload = learner.snapshot(t.src, round_index=plan.index)
        transport.send(t.src, t.dst, payload, n_bytes=payload.n_bytes, tag="model")
    arrivals: list[Message] = []
    for node in range(learner.n_clients):
        arrivals.extend(transport.receive(node))
    learner.fuse(arrivals, round_index=plan.index)
    return learner.evaluate(plan.index + 1) if plan.evaluate else None


def run_decentralized(
    learner: DecentralizedLearner,
    transport: Transport,
    rounds: int,
    *,
    eval_every: int = 1,
    evaluate_initial: bool = False,
) -> DecentralizedResult:
    """Run ``rounds`` rounds of the learner's method over ``transport``.

    Parameters
    ----------
    learner : DecentralizedLearner
        Clients ``0 .. n-1`` must be nodes of the transport.
    transport : Transport
        Decides the neighbours and carries the models.
    rounds : int
        Number of rounds (>= 1).
    eval_every : int
        Evaluate after every ``eval_every``-th round, and always after the last.
    evaluate_initial : bool
        Also evaluate the common initial model (round 0).

    Returns
    -------
    DecentralizedResult
    """
    for name, value in (("rounds", rounds), ("eval_every", eval_every)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ParameterError(name, value, "an int >= 1")
    q = learner.config.n_senders(learner.n_clients)
    nodes = list(range(learner.n_clients))
    history: list[RoundMetrics] = []
    if evaluate_initial:
        history.append(learner.evaluate(0))
    plans: list[RoundPlan] = []
    n_bytes = 0
    for r in range(rounds):
        plan = plan_round(
            r,
            nodes,
            transport.neighbours,
            q,
            seed=learner.seed,
            evaluate=(r + 1) % eval_every == 0 or r == rounds - 1,
        )
        plans.append(plan)
        metrics = run_round(learner, transport, plan)
        n_bytes += sum(
            sum(v[t.src].numel() * v.element_size() for v in learner.params.values())
            for t in plan.transfers
        )
        if metrics is not None:
            history.append(metrics)
    return DecentralizedResult(
        config=learner.config, plans=tuple(plans), history=tuple(history), bytes_sent=n_bytes
    )
