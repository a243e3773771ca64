"""What the batched and the sequential trainer share: types, results, input checks."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn

from qfl.engine.batcher import ClientBatcher, Seed, SupervisedData
from qfl.engine.optim import FunctionalOptimizer, OptState
from qfl.engine.random import fold_in, keyed_dropout_names, replace_dropout
from qfl.engine.stack import Tree, clone_tree, n_clients
from qkd.errors import ParameterError, QflError

__all__ = [
    "LossFn",
    "LossOf",
    "TrainStats",
    "resolve_device",
]

#: ``loss_fn(outputs, y, teacher_outputs, **client_inputs) -> scalar``: ``outputs`` is what
#: the model's forward returns on one client's batch, ``teacher_outputs`` the same for the
#: teacher model (``None`` without teacher); ``client_inputs`` are that client's entries of
#: the ``client_inputs`` argument of ``train_epochs`` (only passed when given).
LossFn = Callable[..., torch.Tensor]


class LossOf(Protocol):
    """Low-level per-client objective: ``loss_of(params, buffers, batch, key) -> scalar``.

    ``params`` and ``buffers`` are one client's trees (``buffers`` already holds the step's
    dropout keys), ``batch`` a dict with ``"x"``, ``"y"``, ``"teacher_outputs"`` (with a
    teacher) and the ``client_inputs``, ``key`` the client's 0-d int64 step key (draw with
    :mod:`qfl.engine.random`). Call ``torch.func.functional_call(model, params | buffers,
    ...)``; the function is run under ``vmap`` + ``grad`` by the batched trainer and with
    autograd by the sequential one.
    """

    def __call__(
        self, params: Tree, buffers: Tree, batch: dict[str, Any], key: torch.Tensor
    ) -> torch.Tensor: ...


@dataclass(frozen=True)
class TrainStats:
    """What a ``train_epochs`` call did, per client.

    Attributes
    ----------
    loss : torch.Tensor
        float64 ``[n_clients, epochs]``: mean of the batch losses of each epoch (``nan``
        where a client took no step).
    steps : torch.Tensor
        int64 ``[n_clients]``: optimizer steps taken.
    samples : torch.Tensor
        int64 ``[n_clients]``: samples seen (counting repeats over epochs).
    """

    loss: torch.Tensor
    steps: torch.Tensor
    samples: torch.Tensor


def resolve_device(device: torch.device | str | None, fallback: torch.device) -> torch.device:
    """``device`` as a ``torch.device`` (``fallback`` when ``None``); CUDA must be available.

    Examples
    --------
    >>> resolve_device(None, torch.device("cpu"))
    device(type='cpu')
    """
    if device is None:
        return fallback
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ParameterError("device", device, "a torch device such as 'cpu' or 'cuda'") from err
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ParameterError("device", str(device), "'cpu' on this machine (CUDA is not available)")
    return dev


def _client_mask(mask: Any, c: int, name: str, device: torch.device) -> torch.Tensor:
    m = torch.as_tensor(mask, device=device)
    if m.dtype != torch.bool:
        raise ParameterError(f"{name}.dtype", m.dtype, "torch.bool (or a Python bool)")
    if m.ndim == 0:
        return m.expand(c)
    if tuple(m.shape) != (c,):
        raise ParameterError(f"{name}.shape", tuple(m.shape), f"() or ({c},) (one flag per client)")
    return m


class TrainerBase:
    """Constructor and input checks shared by :class:`BatchedTrainer` and
    :class:`SequentialTrainer` (not public on its own)."""

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFn | None,
        optimizer: FunctionalOptimizer,
        *,
        batch_size: int = 32,
        drop_last: bool = False,
        chunk_size: int | None = None,
        device: torch.device | str | None = None,
        loss_of: LossOf | None = None,
    ) -> None:
        if chunk_size is not None and (
            isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1
        ):
            raise ParameterError("chunk_size", chunk_size, "None or an integer >= 1")
        self.chunk_size = chunk_size
        if not isinstance(model, nn.Module):
            raise ParameterError("model", type(model).__name__, "a torch.nn.Module")
        if (loss_fn is None) == (loss_of is None):
            raise ParameterError(
                "loss_fn",
                "loss_fn and loss_of" if loss_fn else "neither",
                "exactly one of loss_fn, loss_of",
            )
        if not isinstance(optimizer, FunctionalOptimizer):
            raise ParameterError(
                "optimizer",
                type(optimizer).__name__,
                "a functional optimizer (qfl.engine.sgd/adam)",
            )
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ParameterError("batch_size", batch_size, "an integer >= 1")
        self.loss_fn = loss_fn
        self.loss_of = loss_of
        self.optimizer = optimizer
        self.batch_size = batch_size
        self.drop_last = bool(drop_last)
        self.device = None if device is None else resolve_device(device, torch.device("cpu"))
        # Private templates: the train copy has keyed dropout, the eval copy is in eval mode.
        self.train_model = replace_dropout(copy.deepcopy(model)).train()
        self.eval_model = copy.deepcopy(model).eval()
        self.dropout_names = keyed_dropout_names(self.train_model)
        self.param_names = tuple(n for n, _ in model.named_parameters())
        self.buffers: Tree = {n: b.detach() for n, b in model.named_buffers()}

    def init_state(self, params: Mapping[str, torch.Tensor]) -> OptState:
        """Fresh optimizer state for stacked ``params`` (one state per client)."""
        return self.optimizer.init(params, batch_ndim=1)

    def supervised_loss(
        self, out: Any, y: torch.Tensor, teacher_out: Any, extra: Mapping[str, Any]
    ) -> torch.Tensor:
        """``loss_fn(out, y, teacher_out, **extra)`` (only for trainers built with loss_fn)."""
        if self.loss_fn is None:
            raise QflError("this trainer was built with loss_of, not loss_fn")
        return self.loss_fn(out, y, teacher_out, **extra)

    def dropout_keys(self, key: torch.Tensor) -> Tree:
        """The ``{"<module>.key": key}`` buffers of the model's dropout modules for one step."""
        return {f"{n}.key": fold_in(key, j) for j, n in enumerate(self.dropout_names)}

    # -- input checks -------------------------------------------------------------------

    def _prepare(
        self,
        params: Mapping[str, torch.Tensor],
        opt_state: OptState,
        datasets: Sequence[SupervisedData | tuple[torch.Tensor, torch.Tensor]] | None,
        epochs: int,
        seed: Seed,
        teacher_params: Mapping[str, torch.Tensor] | None,
        param_mask: Mapping[str, Any] | None,
        client_inputs: Mapping[str, torch.Tensor] | None,
        buffers: Mapping[str, torch.Tensor] | None,
    ) -> dict[str, Any]:
        """Check and lay out one call's inputs (shared by both trainers).

        Kept as one function: it validates every per-call input (data, masks, teacher,
        buffers) against the same client count and device, in one place.
        """
        if set(params) != set(self.param_names):
            raise ParameterError(
                "params", sorted(set(params) ^ set(self.param_names)), "the model's parameter names"
            )
        c = n_clients(params)
        first = next(iter(params.values()))
        dev = self.device if self.device is not None else first.device
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
            raise ParameterError("epochs", epochs, "an integer >= 0")
        if datasets is not None and len(datasets) != c:
            raise ParameterError("datasets", f"{len(datasets)} datasets", f"one per client ({c})")
        for slot, tree in opt_state.items():
            if set(tree) != set(params):
                raise ParameterError(
                    f"opt_state[{slot!r}]", sorted(set(tree) ^ set(params)), "the parameter names"
                )
            if n_clients(tree, f"opt_state[{slot!r}]") != c:
                raise ParameterError(f"opt_state[{slot!r}]", "another client count", f"{c} clients")
        teacher = None
        if teacher_params is not None:
            known = set(self.param_names) | set(self.buffers)
            unknown = sorted(set(teacher_params) - known)
            if unknown:
                raise ParameterError("teacher_params", unknown, "names of the model's tensors")
            if n_clients(teacher_params, "teacher_params") != c:
                raise ParameterError("teacher_params", "another client count", f"{c} clients")
            teacher = clone_tree(teacher_params, dev)
        masks: dict[str, torch.Tensor] = {}
        for k, m in (param_mask or {}).items():
            if k not in params:
                raise ParameterError("param_mask", k, "a parameter name of the model")
            masks[k] = _client_mask(m, c, f"param_mask.{k}", dev)
        inputs: Tree = {}
        for k, v in (client_inputs or {}).items():
            if k in ("x", "y", "teacher_outputs"):
                raise ParameterError("client_inputs", k, "names other than x, y, teacher_outputs")
            if not isinstance(v, torch.Tensor) or v.ndim == 0 or v.shape[0] != c:
                raise ParameterError(
                    f"client_inputs.{k}", getattr(v, "shape", v), f"a tensor [{c}, ...]"
                )
            inputs[k] = v.to(dev)
        cbuf: Tree = {}
        if buffers is not None:
            unknown = sorted(set(buffers) - set(self.buffers))
            if unknown:
                raise ParameterError("buffers", unknown, "buffer names of the model")
            if buffers and n_clients(buffers, "buffers") != c:
                raise ParameterError("buffers", "another client count", f"{c} clients")
            cbuf = clone_tree(buffers, dev)
        batcher = None
        if datasets is not None:
            batcher = ClientBatcher(
                datasets, self.batch_size, seed=seed, drop_last=self.drop_last, device=dev
            )
        return {
            "c": c,
            "device": dev,
            "params": clone_tree(params, dev),
            "state": {slot: clone_tree(t, dev) for slot, t in opt_state.items()},
            "teacher": teacher,
            "masks": masks,
            "inputs": inputs,
            "cbuf": cbuf,
            "shared": {k: v.to(dev) for k, v in self.buffers.items() if k not in cbuf},
            "batcher": batcher,
        }
