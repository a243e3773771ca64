"""FedAvg with a server, for single-exit and multi-exit models, with partial participation.

One round (McMahan et al. 2017): the server sends the global model to every client; each
client trains it for ``local_epochs`` on its own data (a fresh optimizer every round) and
sends it back; the server replaces each parameter by the average of the values it received,
weighted by the senders' sample counts.

**Multi-exit clients.** A client may be limited to exit ``k`` (its compute budget, see
:func:`qfl.models.multiexit.deepest_affordable_exit`). It downloads only the parameters up
to exit ``k``, trains the model truncated at exit ``k`` (the forward pass stops there, so it
pays only for those layers), and uploads only those parameters. Partial aggregation is a
*mask*, not a separate algorithm: every upload is a dict holding a subset of the parameter
names, and :func:`aggregate` averages each parameter over the clients that sent it
(:func:`masked_average` is the same rule over stacked tensors and a 0/1 mask); a parameter
nobody sent keeps its value.

**Transport.** Every download and upload goes through a :class:`qfl.algorithms.transport.Transport`
(``send`` / ``receive``) with its size in bytes; :func:`star_transport` builds the in-memory
star topology used by default. In a co-simulation the network half has already timed each
transfer on the key-gated network (:mod:`qfl.cosim`) and the round runs over a replay
transport that drops the transfers that failed there.

**Engine.** The clients of a round train together in the batched engine
(:class:`qfl.engine.BatchedTrainer`, one vectorized computation for all clients with the same
exit depth), or one after the other (:class:`qfl.engine.SequentialTrainer`); the two give
the same numbers (tested).

References
----------
.. [1] H. B. McMahan, E. Moore, D. Ramage, S. Hampson, B. Agüera y Arcas,
   "Communication-efficient learning of deep networks from decentralized data",
   AISTATS 2017.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from qfl.algorithms.transport import InMemoryTransport, Message, Transport
from qfl.data import TensorDataset
from qfl.engine import BatchedTrainer, SequentialTrainer, optim
from qfl.engine.select import ENGINES, make_trainer, resolve_engine
from qfl.engine.workers import TrainerPool
from qfl.models.multiexit import MultiExitModel, exit_parameter_mask, truncated
from qfl.seeding import derive_seed as _derive
from qkd.errors import ParameterError, UnknownNameError

__all__ = [
    "DOWNLOAD_TAG",
    "UPLOAD_TAG",
    "ClientUpdate",
    "FedAvg",
    "FedAvgConfig",
    "FedAvgResult",
    "RoundRecord",
    "ServerRounds",
    "aggregate",
    "exit_accuracies",
    "masked_average",
    "payload_bytes",
    "run_fedavg",
    "star_transport",
]

DOWNLOAD_TAG = "fedavg/global"
UPLOAD_TAG = "fedavg/update"

Params = dict[str, torch.Tensor]
Seed = int | np.random.SeedSequence
LossFn = Callable[[Any, torch.Tensor, Any], torch.Tensor]

# Independent random streams derived from the one seed.
_LOCAL, _FINETUNE = 0, 1


# --------------------------------------------------------------------------- pure math


def payload_bytes(params: Mapping[str, torch.Tensor]) -> int:
    """Size of a parameter dict on the wire: the sum of its tensors' raw bytes.

    Examples
    --------
    >>> payload_bytes({"w": torch.zeros(3, 2), "b": torch.zeros(2, dtype=torch.float64)})
    40
    """
    return int(sum(t.numel() * t.element_size() for t in params.values()))


def masked_average(
    stacked: Mapping[str, torch.Tensor],
    weights: torch.Tensor,
    mask: Mapping[str, torch.Tensor] | None,
    current: Mapping[str, torch.Tensor],
) -> Params:
    """Per-parameter weighted average over the clients whose mask is set.

    ``new[p] = sum_i w_i m_ip x_ip / sum_i w_i m_ip``, and ``new[p] = current[p]`` where no
    client sent ``p`` (``sum_i w_i m_ip = 0``).

    Parameters
    ----------
    stacked : dict of str to tensor [n, ...]
        Every client's value of every parameter (anything where the mask is 0).
    weights : tensor [n]
        Client weights ``>= 0`` (sample counts).
    mask : dict of str to tensor [n], optional
        1 (or True) where client ``i`` sent parameter ``p``; ``None``: everyone sent all.
    current : dict of str to tensor
        The server's current values (kept where nobody sent a parameter).

    Examples
    --------
    >>> x = {"a": torch.tensor([[1.0], [3.0]]), "b": torch.tensor([[1.0], [3.0]])}
    >>> m = {"a": torch.tensor([1, 1]), "b": torch.tensor([1, 0])}
    >>> out = masked_average(x, torch.tensor([1.0, 3.0]), m, {"a": 0, "b": 0})
    >>> out["a"].item(), out["b"].item()
    (2.5, 1.0)
    """
    w = torch.as_tensor(weights, dtype=torch.float64)
    if w.ndim != 1 or bool((w < 0).any()):
        raise ParameterError("weights", w.tolist(), "a 1-D tensor of values >= 0")
    out: Params = {}
    for name, x in stacked.items():
        if x.shape[0] != w.shape[0]:
            raise ParameterError(f"stacked[{name!r}]", tuple(x.shape), f"{w.shape[0]} rows")
        wm = w if mask is None else w * torch.as_tensor(mask[name], dtype=torch.float64)
        total = wm.sum()
        if total > 0:
            coef = (wm / total).to(x.dtype).reshape((-1,) + (1,) * (x.ndim - 1))
            out[name] = (coef * x).sum(dim=0)
        else:
            out[name] = torch.as_tensor(current[name]).clone()
    return out


@dataclass(frozen=True)
class ClientUpdate:
    """What a client uploads: the parameters it trained (a subset) and its sample count."""

    params: Mapping[str, torch.Tensor] = field(repr=False)
    n_samples: int
    round: int


def aggregate(current: Mapping[str, torch.Tensor], updates: Sequence[ClientUpdate]) -> Params:
    """FedAvg over uploads that may each hold only some parameters.

    Each parameter becomes the sample-weighted mean over the updates that contain it; a
    parameter no update contains keeps its current value. Built on :func:`masked_average`
    (the mask records which update sent which parameter).

    Examples
    --------
    >>> cur = {"a": torch.zeros(1), "b": torch.zeros(1)}
    >>> ups = [ClientUpdate({"a": torch.ones(1), "b": torch.ones(1)}, 1, 0),
    ...        ClientUpdate({"a": torch.full((1,), 4.0)}, 2, 0)]
    >>> out = aggregate(cur, ups)
    >>> out["a"].item(), out["b"].item()
    (3.0, 1.0)
    """
    for u in updates:
        unknown = set(u.params) - set(current)
        if unknown:
            raise UnknownNameError("update parameter", sorted(unknown)[0], sorted(current))
        if u.n_samples < 0:
            raise ParameterError("n_samples", u.n_samples, ">= 0")
    if not updates:
        return {k: torch.as_tensor(v).clone() for k, v in current.items()}
    stacked = {
        name: torch.stack([u.params.get(name, torch.as_tensor(cur)) for u in updates])
        for name, cur in current.items()
    }
    mask = {
        name: torch.tensor([name in u.params for u in updates], dtype=torch.float64)
        for name in current
    }
    weights = torch.tensor([float(u.n_samples) for u in updates], dtype=torch.float64)
    return masked_average(stacked, weights, mask, current)


def exit_accuracies(
    model: nn.Module,
    params: Mapping[str, torch.Tensor],
    datasets: Sequence[TensorDataset],
    *,
    batch_size: int = 2048,
) -> torch.Tensor:
    """Accuracy of one model at every exit on each dataset: tensor [n_datasets, n_exits].

    The model runs in eval mode (dropout off) on all datasets concatenated, in chunks of
    ``batch_size``; an empty dataset gets NaN.
    """
    if batch_size < 1:
        raise ParameterError("batch_size", batch_size, ">= 1")
    x = torch.cat([d.x for d in datasets])
    y = torch.cat([d.y for d in datasets])
    owner = torch.cat([torch.full((len(d),), i, dtype=torch.long) for i, d in enumerate(datasets)])
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            correct: list[torch.Tensor] = []
            for start in range(0, len(y), batch_size):
                outs = functional_call(model, dict(params), (x[start : start + batch_size],))
                # Exit logits; a model that also returns feature maps (the Def-FD CNN:
                # ``(logits, (f1, f2, f3))``) has one exit, its tensor entries.
                outs = outs if isinstance(outs, tuple) else (outs,)
                outs = tuple(o for o in outs if isinstance(o, torch.Tensor))
                yb = y[start : start + batch_size]
                correct.append(torch.stack([(o.argmax(-1) == yb) for o in outs], dim=1))
    finally:
        model.train(was_training)
    hits = torch.cat(correct).double()  # [N, n_exits]
    n_exits = hits.shape[1]
    sums = torch.zeros(len(datasets), n_exits, dtype=torch.float64).index_add_(0, owner, hits)
    counts = torch.bincount(owner, minlength=len(datasets)).double()
    return sums / counts[:, None]  # 0/0 -> NaN for empty datasets


def star_transport(clients: Sequence[Hashable], server: Hashable = "server") -> InMemoryTransport:
    """In-memory transport on the star graph: the server linked to every client.

    Examples
    --------
    >>> t = star_transport([0, 1])
    >>> t.neighbours("server"), t.neighbours(1)
    ([0, 1], ['server'])
    """
    adj: dict[Hashable, list[Hashable]] = {server: list(clients)}
    for c in clients:
        adj[c] = [server]
    return InMemoryTransport(adj)


# --------------------------------------------------------------------------- the algorithm


def _process_pool(config: FedAvgConfig, *args: Any, **kwargs: Any) -> TrainerPool:
    return TrainerPool(config.workers, *args, **kwargs)


def _ray_pool(config: FedAvgConfig, *args: Any, **kwargs: Any) -> Any:
    from qfl.engine.raypool import RayTrainerPool

    return RayTrainerPool(config.workers, *args, address=config.ray_address, **kwargs)


#: Where a round's clients train when not in this process, by ``FedAvgConfig.executor``.
_POOLS: dict[str, Callable[..., Any]] = {"processes": _process_pool, "ray": _ray_pool}


@dataclass(frozen=True)
class FedAvgConfig:
    """Schedule and local training of FedAvg.

    Attributes
    ----------
    rounds : int
        Communication rounds (default 50).
    local_epochs : int
        Local epochs per round (default 5).
    batch_size : int
        Local mini-batch size (default 32).
    lr, momentum, weight_decay : float
        Local SGD (a fresh optimizer state every round).
    engine : {"batched", "sequential"}
        Train the clients of a round together (vectorized) or one after the other.
    chunk_size : int, optional
        Most clients per vectorized chunk (batched engine); ``None``: all.
    workers : int
        Processes that train a round's clients, each a share balanced by samples with this
        process's threads divided among them (:class:`qfl.engine.workers.TrainerPool`); 1
        (default): this process. The numbers equal one process's at the workers' thread
        count up to float rounding; ``loss_fn`` must then be picklable.
    executor : {"processes", "ray"}
        Where ``workers`` train: local spawned processes
        (:class:`~qfl.engine.workers.TrainerPool`), or Ray actors, possibly on other
        machines of a Ray cluster (:class:`~qfl.engine.raypool.RayTrainerPool`; with
        ``"ray"`` even ``workers=1`` trains on one actor).
    ray_address : str, optional
        The Ray cluster (``executor="ray"``); ``None``: a local one.
    group_size : int, optional
        Most clients whose parameters and optimizer state are held at once: a round's
        clients train in groups of this many, one after the other (a memory budget, see
        :mod:`qfl.engine.memory`); ``None``: all of them together. The numbers do not
        depend on it (a client's randomness is its own).
    """

    rounds: int = 50
    local_epochs: int = 5
    batch_size: int = 32
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 0.0
    engine: str = "batched"
    chunk_size: int | None = None
    workers: int = 1
    group_size: int | None = None
    executor: str = "processes"
    ray_address: str | None = None

    def __post_init__(self) -> None:
        for name in ("rounds", "local_epochs", "batch_size", "workers"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ParameterError(name, v, "an integer >= 1")
        if not self.lr > 0:
            raise ParameterError("lr", self.lr, "> 0")
        if not 0 <= self.momentum < 1:
            raise ParameterError("momentum", self.momentum, "in [0, 1)")
        if not self.weight_decay >= 0:
            raise ParameterError("weight_decay", self.weight_decay, ">= 0")
        if self.engine not in ENGINES:
            raise UnknownNameError("engine", self.engine, ENGINES)
        if self.chunk_size is not None and (
            isinstance(self.chunk_size, bool) or self.chunk_size < 1
        ):
            raise ParameterError("chunk_size", self.chunk_size, "None or an integer >= 1")
        if self.executor not in _POOLS:
            raise UnknownNameError("executor", self.executor, tuple(_POOLS))
        if self.group_size is not None and (
            isinstance(self.group_size, bool) or self.group_size < 1
        ):
            raise ParameterError("group_size", self.group_size, "None or an integer >= 1")


@dataclass(frozen=True)
class RoundRecord:
    """Metrics after one round's aggregation, on the clients' held-out data.

    Attributes
    ----------
    round : int
        1-based round number.
    exit_acc : tuple of float
        Per exit, the mean over clients of the global model's held-out accuracy there.
    client_acc : tuple of float
        Per client, the held-out accuracy at its own (deepest allowed) exit.
    personalized_acc : float
        Mean of ``client_acc``.
    bytes_down, bytes_up : int
        Bytes sent through the transport this round.
    """

    round: int
    exit_acc: tuple[float, ...]
    client_acc: tuple[float, ...]
    personalized_acc: float
    bytes_down: int
    bytes_up: int


@dataclass(frozen=True)
class FedAvgResult:
    """History and final global parameters of a FedAvg run."""

    history: tuple[RoundRecord, ...]
    params: Mapping[str, torch.Tensor] = field(repr=False)
    finetuned_client_acc: tuple[float, ...] | None = None

    @property
    def finetuned_personalized_acc(self) -> float | None:
        """Mean over clients of the held-out accuracy after local fine-tuning (if run)."""
        if self.finetuned_client_acc is None:
            return None
        return float(np.nanmean(self.finetuned_client_acc))

    @property
    def final(self) -> RoundRecord:
        """The last round's record."""
        return self.history[-1]

    def rounds_to_target(self, target: float) -> int | None:
        """First round whose personalized accuracy is ``>= target``; ``None`` if never."""
        return next((r.round for r in self.history if r.personalized_acc >= target), None)


class ServerRounds:
    """The round of synchronous server methods, written once: the server sends each client
    its part of the global model, the clients whose download arrived train and upload, the
    server averages what arrived (:func:`aggregate`).

    Subclasses (:class:`FedAvg`, :class:`qfl.algorithms.ssl.FedSimCLR`) set ``clients``,
    ``server``, ``transport``, ``params`` and ``round`` and say what a client receives
    (:meth:`part`), how many samples it holds (:meth:`n_samples`) and how the present
    clients train (:meth:`train_present`): the objective is theirs, the round is shared.
    """

    download_tag = DOWNLOAD_TAG
    upload_tag = UPLOAD_TAG
    clients: tuple[Hashable, ...]
    server: Hashable
    transport: Transport
    params: Params
    round: int
    #: Client indices taking part in the next round (client sampling); ``None``: all.
    selected: Sequence[int] | None = None

    def round_members(self) -> Sequence[int]:
        """The clients of this round: ``selected``, or every client."""
        return range(len(self.clients)) if self.selected is None else self.selected

    def part(self, i: int) -> Params:
        """What the server sends client ``i`` (default: the whole global model)."""
        return dict(self.params)

    def n_samples(self, i: int) -> int:
        """Client ``i``'s sample count (its weight in the average)."""
        raise NotImplementedError

    def train_present(self, downloads: Sequence[Params | None]) -> list[Params | None]:
        """Train the clients whose download arrived; each one's upload (``None``: absent)."""
        raise NotImplementedError

    def broadcast(self, transport: Transport | None = None) -> int:
        """Server -> clients: each client's part of the global model. Returns bytes sent."""
        t = self.transport if transport is None else transport
        total = 0
        for i in self.round_members():
            part = self.part(i)
            size = payload_bytes(part)
            t.send(self.server, self.clients[i], part, n_bytes=size, tag=self.download_tag)
            total += size
        return total

    def local_training(self, transport: Transport | None = None) -> int:
        """Clients: receive, train, upload. Returns bytes uploaded.

        A client whose global model did not arrive this round (its transfer failed on the
        network) sits the round out.
        """
        t = self.transport if transport is None else transport
        downloads: list[Params | None] = [None] * len(self.clients)
        for i in self.round_members():
            got = [m for m in t.receive(self.clients[i]) if m.tag == self.download_tag]
            downloads[i] = dict(got[-1].payload) if got else None
        total = 0
        for i, upload in enumerate(self.train_present(downloads)):
            if upload is None:
                continue
            size = payload_bytes(upload)
            payload = ClientUpdate(upload, self.n_samples(i), self.round)
            t.send(self.clients[i], self.server, payload, n_bytes=size, tag=self.upload_tag)
            total += size
        return total

    def aggregate_updates(self, transport: Transport | None = None) -> int:
        """Server: average what arrived this round (per parameter). Returns the count."""
        t = self.transport if transport is None else transport
        msgs: list[Message] = [m for m in t.receive(self.server) if m.tag == self.upload_tag]
        updates = [m.payload for m in msgs if m.payload.round == self.round]
        self.params = aggregate(self.params, updates)
        return len(updates)

    def run_round(
        self, transport: Transport | None = None, on_phase: Callable[[str], None] | None = None
    ) -> tuple[int, int]:
        """One full round over ``transport`` (default: the one given at construction);
        returns ``(bytes_down, bytes_up)``. ``on_phase(text)`` hears when the clients have
        trained (progress)."""
        down = self.broadcast(transport)
        up = self.local_training(transport)
        if on_phase is not None:
            on_phase("clients trained, aggregating")
        self.aggregate_updates(transport)
        self.round += 1
        return down, up


class FedAvg(ServerRounds):
    """Server and clients of synchronous FedAvg, talking only through a transport.

    Parameters
    ----------
    model : nn.Module
        The architecture (a multi-exit model, or any model whose forward returns a tuple of
        exit logits); its parameters are the initial global model unless
        ``initial_params`` is given.
    train_sets : sequence of TensorDataset
        Each client's local training data.
    loss_fn : callable
        ``loss_fn(outputs, y, teacher_outputs) -> scalar`` (the engine's signature;
        ``teacher_outputs`` is ``None`` here), e.g. a wrapper of
        :func:`qfl.losses.multiexit.multi_exit_loss`. A client limited to exit ``k`` passes
        the ``k`` exits it computes.
    config : FedAvgConfig
        Schedule and local optimizer.
    client_exits : sequence of int, optional
        Deepest exit each client trains (1-based); default: all of them.
    transport : Transport, optional
        Default: :func:`star_transport` over the clients.
    clients : sequence of hashable, optional
        Node names of the clients (default ``0 .. n-1``); ``server`` is the server's.
    seed : int or SeedSequence
        Seeds the local training (shuffling, dropout).
    """

    def __init__(
        self,
        model: nn.Module,
        train_sets: Sequence[TensorDataset],
        *,
        loss_fn: LossFn,
        config: FedAvgConfig,
        client_exits: Sequence[int] | None = None,
        transport: Transport | None = None,
        clients: Sequence[Hashable] | None = None,
        server: Hashable = "server",
        seed: Seed = 0,
        initial_params: Mapping[str, torch.Tensor] | None = None,
    ) -> None:
        if not train_sets:
            raise ParameterError("train_sets", len(train_sets), "at least one client")
        n = len(train_sets)
        for i, d in enumerate(train_sets):
            if len(d) == 0:
                raise ParameterError(f"train_sets[{i}]", 0, "a non-empty dataset")
        self.model = model
        self.n_exits = model.n_exits if isinstance(model, MultiExitModel) else 1
        exits = [self.n_exits] * n if client_exits is None else [int(k) for k in client_exits]
        if len(exits) != n:
            raise ParameterError("client_exits", len(exits), f"one entry per client ({n})")
        for i, k in enumerate(exits):
            if not 1 <= k <= self.n_exits:
                raise ParameterError(f"client_exits[{i}]", k, f"in [1, {self.n_exits}]")
        self.client_exits = tuple(exits)
        self.clients = tuple(range(n)) if clients is None else tuple(clients)
        if len(self.clients) != n or len(set(self.clients)) != n:
            raise ParameterError("clients", self.clients, f"{n} distinct node names")
        if server in self.clients:
            raise ParameterError("server", server, "a node name different from every client's")
        self.server = server
        self.train_sets = tuple(train_sets)
        self.config = config
        self.loss_fn = loss_fn
        self.transport: Transport = (
            star_transport(self.clients, server) if transport is None else transport
        )
        self.seed = seed
        base = {k: v.detach().clone() for k, v in model.named_parameters()}
        if initial_params is not None:
            if set(initial_params) != set(base):
                raise ParameterError(
                    "initial_params", sorted(initial_params), "the model's parameter names"
                )
            base = {k: torch.as_tensor(v).detach().clone() for k, v in initial_params.items()}
        self.params: Params = base
        self.round = 0
        self._masks = {
            k: self._mask_of(k) for k in sorted(set(self.client_exits))
        }  # exit depth -> parameter name -> bool
        self._models = {k: self._model_of(k) for k in self._masks}
        self.engine = resolve_engine(config.engine, *self._models.values())
        self._optimizer = optim.sgd(
            config.lr, momentum=config.momentum, weight_decay=config.weight_decay
        )
        self._pool = (
            _POOLS[config.executor](
                config, self._models, loss_fn, self._optimizer, self.train_sets,
                engine=self.engine, **self._trainer_kwargs(),
            )
            if config.workers > 1 or config.executor != "processes"
            else None
        )  # fmt: skip

    def start_workers(self) -> None:
        """Start the worker processes now (``config.workers > 1``; else nothing to do)."""
        if self._pool is not None:
            self._pool.start()

    @property
    def worker_cpu_seconds(self) -> float:
        """CPU time the worker processes spent training (0 without workers)."""
        return 0.0 if self._pool is None else self._pool.cpu_seconds

    def close(self) -> None:
        """Stop the worker processes, if any (they also stop with this object)."""
        if self._pool is not None:
            self._pool.close()

    # -- helpers ------------------------------------------------------------------------

    def _mask_of(self, k: int) -> dict[str, bool]:
        if not isinstance(self.model, MultiExitModel):
            return dict.fromkeys(self.params, True)
        return exit_parameter_mask(self.model, k)

    def _model_of(self, k: int) -> nn.Module:
        if k == self.n_exits or not isinstance(self.model, MultiExitModel):
            return self.model
        return truncated(self.model, k)

    def _trainer_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"batch_size": self.config.batch_size}
        if self.engine == "batched":
            kwargs["chunk_size"] = self.config.chunk_size
        return kwargs

    def _trainer(self, k: int) -> BatchedTrainer | SequentialTrainer:
        return make_trainer(
            self.engine, self._models[k], self.loss_fn, self._optimizer, **self._trainer_kwargs()
        )

    # -- one round, phase by phase --------------------------------------------------------

    def part(self, i: int) -> Params:
        """Client ``i``'s download: the global parameters up to its exit."""
        mask = self._masks[self.client_exits[i]]
        return {name: t for name, t in self.params.items() if mask[name]}

    def n_samples(self, i: int) -> int:
        """Client ``i``'s training samples."""
        return len(self.train_sets[i])

    def train_present(self, downloads: Sequence[Params | None]) -> list[Params | None]:
        """Local training (``local_epochs``) of the clients whose download arrived."""
        trained = self.train_clients(downloads, self.config.local_epochs, _LOCAL)
        return [None if d is None else up for d, up in zip(downloads, trained, strict=True)]

    def train_clients(
        self,
        starts: Sequence[Mapping[str, torch.Tensor] | None],
        epochs: int,
        stream: int,
    ) -> list[Params]:
        """Train every client from its own starting parameters; return what it trained.

        Clients are grouped by exit depth; each group trains together in one engine call
        (batched or sequential). Client ``i`` returns only the parameters up to its exit.

        Parameters
        ----------
        starts : sequence of dict or None
            Per client, the parameters it holds (at least those up to its exit); ``None``
            for a client that does not train (its global model did not arrive): it gets
            an empty dict back.
        epochs : int
            Local epochs.
        stream : int
            Random stream (with the round and the client index, the seed of its batches
            and dropout masks; independent of which clients it is grouped with).
        """
        out: list[Params] = [{} for _ in self.clients]
        for k in sorted(set(self.client_exits)):
            every = [i for i, e in enumerate(self.client_exits) if e == k and starts[i] is not None]
            size = self.config.group_size or max(1, len(every))
            for g in range(0, len(every), size):
                self._train_group(k, every[g : g + size], starts, epochs, stream, out)
        return out

    def _train_group(
        self,
        k: int,
        members: Sequence[int],
        starts: Sequence[Mapping[str, torch.Tensor] | None],
        epochs: int,
        stream: int,
        out: list[Params],
    ) -> None:
        """Train ``members`` (all at exit ``k``) together; write their uploads to ``out``."""
        if members:
            mask = self._masks[k]
            # Parameters a client did not receive are never used by its truncated forward;
            # they are filled from zeros only to give every client the same dict of names.
            stacked = {
                name: torch.stack(
                    [starts[i][name] if mask[name] else torch.zeros_like(t) for i in members]  # type: ignore[index]
                )
                for name, t in self.params.items()
            }
            param_mask = {
                name: torch.full((len(members),), bool(mask[name])) for name in self.params
            }
            seeds = [_derive(self.seed, stream, self.round, i) for i in members]
            if self._pool is not None and len(members) > 1:
                trained = self._pool.train(k, members, stacked, param_mask, seeds, epochs)
            else:
                trainer = self._trainer(k)
                trained, _, _ = trainer.train_epochs(
                    stacked,
                    trainer.init_state(stacked),
                    [self.train_sets[i] for i in members],
                    epochs,
                    seed=seeds,
                    param_mask=param_mask,
                )
            for j, i in enumerate(members):
                out[i] = {
                    name: trained[name][j].detach().clone() for name in self.params if mask[name]
                }

    def finetuned(self, epochs: int) -> list[Params]:
        """Each client's copy of the current global model after ``epochs`` local epochs.

        Local only (no transport): what a client would use after downloading the global
        model and fine-tuning it on its own training data (personalization).
        """
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
            raise ParameterError("epochs", epochs, "an integer >= 1")
        return self.train_clients([self.params] * len(self.clients), epochs, _FINETUNE)


def run_fedavg(
    model: nn.Module,
    train_sets: Sequence[TensorDataset],
    holdout_sets: Sequence[TensorDataset],
    *,
    loss_fn: LossFn,
    config: FedAvgConfig,
    client_exits: Sequence[int] | None = None,
    transport: Transport | None = None,
    seed: Seed = 0,
    initial_params: Mapping[str, torch.Tensor] | None = None,
    eval_batch_size: int = 2048,
    finetune_epochs: int = 0,
    on_round: Callable[[RoundRecord], None] | None = None,
) -> FedAvgResult:
    """Run FedAvg for ``config.rounds`` rounds, evaluating after every round.

    Personalized accuracy: after each round every client downloads the global model (up to
    its exit) and evaluates it, without further training, on its own held-out data (which
    follows its own label distribution); the per-client accuracy is taken at the client's
    deepest allowed exit, and the personalized accuracy is the unweighted mean over clients.
    ``exit_acc`` is the same mean at every exit of the global model. Optionally, after the
    last round, every client also fine-tunes the final global model for ``finetune_epochs``
    on its own training data and is evaluated again (``finetuned_client_acc``).

    Parameters
    ----------
    holdout_sets : sequence of TensorDataset
        Each client's held-out data (same order as ``train_sets``).
    eval_batch_size : int
        Evaluation chunk size.
    finetune_epochs : int
        Local fine-tuning epochs after the last round (0: none).
    on_round : callable, optional
        Called with each round's :class:`RoundRecord` as soon as it is known (progress).

    Other parameters are those of :class:`FedAvg`.
    """
    if len(holdout_sets) != len(train_sets):
        raise ParameterError(
            "holdout_sets", len(holdout_sets), f"one per client ({len(train_sets)})"
        )
    fed = FedAvg(
        model,
        train_sets,
        loss_fn=loss_fn,
        config=config,
        client_exits=client_exits,
        transport=transport,
        seed=seed,
        initial_params=initial_params,
    )
    try:
        return _run_rounds(fed, model, holdout_sets, eval_batch_size, finetune_epochs, on_round)
    finally:
        fed.close()


def _run_rounds(
    fed: FedAvg,
    model: nn.Module,
    holdout_sets: Sequence[TensorDataset],
    eval_batch_size: int,
    finetune_epochs: int,
    on_round: Callable[[RoundRecord], None] | None,
) -> FedAvgResult:
    history = []
    rows = torch.arange(len(fed.train_sets))
    cols = torch.tensor(fed.client_exits) - 1
    for _ in range(fed.config.rounds):
        down, up = fed.run_round()
        acc = exit_accuracies(model, fed.params, holdout_sets, batch_size=eval_batch_size)
        client_acc = acc[rows, cols]
        record = RoundRecord(
            round=fed.round,
            exit_acc=tuple(float(a) for a in acc.nanmean(dim=0)),
            client_acc=tuple(float(a) for a in client_acc),
            personalized_acc=float(client_acc.nanmean()),
            bytes_down=down,
            bytes_up=up,
        )
        history.append(record)
        if on_round is not None:
            on_round(record)
    finetuned = None
    if finetune_epochs:
        accs = []
        for i, own in enumerate(fed.finetuned(finetune_epochs)):
            acc_i = exit_accuracies(
                model, fed.params | own, holdout_sets[i : i + 1], batch_size=eval_batch_size
            )
            accs.append(float(acc_i[0, fed.client_exits[i] - 1]))
        finetuned = tuple(accs)
    return FedAvgResult(history=tuple(history), params=fed.params, finetuned_client_acc=finetuned)
