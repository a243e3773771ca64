"""A user's own model and dataset for the built-in methods (FedAvg, Def-FD and its baselines).

``learning.model`` and ``learning.dataset`` may name a factory of one's own (a
``"package.module:attr"`` string, a name registered with :func:`qfl.register_model` /
:func:`qfl.register_dataset`, or an entry point; see :mod:`qfl.registry`). This module
builds them and checks what they return, each problem a
:class:`~qfl.scenario.ScenarioError` naming the field in one line; it also decides which
training engine the model runs on (:func:`choose_engine`), a choice the run summary states.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from qfl.data import TensorDataset
from qfl.registry import DATASETS, MODELS, _short, call_with
from qfl.scenario import Scenario, ScenarioError
from qkd.errors import ParameterError

__all__ = ["EngineChoice", "build_model", "choose_engine", "load_dataset", "uses_own"]


def uses_own(sc: Scenario) -> bool:
    """Whether the scenario names a model or a dataset of the user's own."""
    lr = sc.learning
    return any(
        v is not None and reg.is_own(v) for v, reg in ((lr.model, MODELS), (lr.dataset, DATASETS))
    )


def _as_dataset(obj: Any, ref: str, what: str) -> TensorDataset:
    if isinstance(obj, TensorDataset):
        return obj
    if (
        isinstance(obj, tuple | list)
        and len(obj) == 2
        and all(isinstance(t, torch.Tensor) for t in obj)
    ):
        x, y = obj
        if not x.is_floating_point() or y.is_floating_point() or y.ndim != 1:
            raise ScenarioError(
                "learning.dataset",
                f"{ref} returned {what} tensors x {x.dtype} {tuple(x.shape)}, "
                f"y {y.dtype} {tuple(y.shape)}; must be float inputs [N, ...] and integer "
                "labels [N]",
            )
        y = y.long()
        n_classes = int(y.max()) + 1 if len(y) else 1
        try:
            return TensorDataset(x.float(), y, tuple(str(c) for c in range(n_classes)), "data")
        except ParameterError as exc:
            raise ScenarioError(
                "learning.dataset", f"{ref} returned (x, y) tensors that do not fit: {exc}"
            ) from None
    raise ScenarioError(
        "learning.dataset",
        f"{ref} returned {type(obj).__name__}; must be a qfl.data.TensorDataset, a pair "
        "(train, test) of them, or a pair (x, y) of tensors",
    )


def load_dataset(ref: str, seed: int) -> tuple[TensorDataset, TensorDataset | None]:
    """The pool of training data and the test set (None: the clients' held-out data, pooled)
    that the dataset factory ``ref`` returns (called with ``seed`` if it takes one).

    Raises
    ------
    ScenarioError
        On ``learning.dataset``: a factory that does not import or raises, a value of the
        wrong kind, inconsistent shapes (inputs of ``x`` and labels of ``y`` differ in
        number; train and test samples of different shapes or classes), fewer than two
        classes or no feature axis.
    """
    factory = DATASETS.lookup(ref)
    try:
        out = call_with(factory, seed=seed)
    except ScenarioError:
        raise
    except ParameterError as exc:
        raise ScenarioError("learning.dataset", f"{ref} returned a bad dataset: {exc}") from None
    except Exception as exc:
        raise ScenarioError(
            "learning.dataset", f"{ref} raised {type(exc).__name__}: {_short(exc)}"
        ) from None
    pair = isinstance(out, tuple | list) and len(out) == 2
    if pair and all(isinstance(d, TensorDataset) for d in out):
        train, test = out[0], out[1]
    else:
        train, test = _as_dataset(out, ref, "training"), None
    if train.x.ndim < 2 or len(train) < 2:
        raise ScenarioError(
            "learning.dataset",
            f"{ref} returned x of shape {tuple(train.x.shape)}; must be [N >= 2, features...]",
        )
    if train.num_classes < 2 or int(train.y.unique().numel()) < 2:
        raise ScenarioError(
            "learning.dataset", f"{ref} returned labels of fewer than 2 classes; must be >= 2"
        )
    if test is not None and (
        tuple(test.x.shape[1:]) != tuple(train.x.shape[1:]) or test.classes != train.classes
    ):
        raise ScenarioError(
            "learning.dataset",
            f"{ref} returned test samples of shape {tuple(test.x.shape[1:])} in "
            f"{test.num_classes} classes; must match the training samples' "
            f"{tuple(train.x.shape[1:])} in {train.num_classes} classes",
        )
    return train, test


def build_model(
    ref: str, input_shape: tuple[int, ...], num_classes: int, seed: int, *, features: bool
) -> nn.Module:
    """The model the factory ``ref`` returns, checked on a batch of two samples.

    The factory is called with those of ``input_shape``, ``num_classes`` and ``seed`` it
    takes, inside :func:`torch.random.fork_rng` with torch's generator seeded from
    ``seed`` (and restored afterwards): a factory that draws its initial weights from the
    global generator, as torch's layers do, gives the same model every time.

    Parameters
    ----------
    features : bool
        Def-FD: the forward must return ``(logits, feature_maps)``.

    Raises
    ------
    ScenarioError
        On ``learning.model``: a factory that does not import or raises, something that is
        not a ``torch.nn.Module``, no parameters, a forward that fails on the dataset's
        samples or returns logits of another shape than ``[batch, num_classes]``.
    """
    factory = MODELS.lookup(ref)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # scoped: fork_rng restores the global state
        try:
            model = call_with(
                factory, input_shape=tuple(input_shape), num_classes=num_classes, seed=seed
            )
        except ScenarioError:
            raise
        except Exception as exc:
            raise ScenarioError(
                "learning.model", f"{ref} raised {type(exc).__name__}: {_short(exc)}"
            ) from None
    if not isinstance(model, nn.Module):
        raise ScenarioError(
            "learning.model",
            f"{ref} returned {type(model).__name__}, not a torch.nn.Module",
        )
    if not any(True for _ in model.parameters()):
        raise ScenarioError("learning.model", f"{ref} returned a module without parameters")
    _check_forward(model, ref, tuple(input_shape), num_classes, features)
    return model


def _check_forward(
    model: nn.Module, ref: str, shape: tuple[int, ...], n_classes: int, features: bool
) -> None:
    x = torch.zeros((2, *shape))
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(x)
    except Exception as exc:
        raise ScenarioError(
            "learning.model",
            f"{ref}: its forward on a batch of shape {tuple(x.shape)} (learning.dataset's "
            f"samples) raised {type(exc).__name__}: {_short(exc)}",
        ) from None
    finally:
        model.train(was)
    if features:
        ok = (
            isinstance(out, tuple | list)
            and len(out) == 2
            and isinstance(out[0], torch.Tensor)
            and isinstance(out[1], tuple | list)
            and all(isinstance(f, torch.Tensor) for f in out[1])
        )
        if not ok:
            raise ScenarioError(
                "learning.model",
                f"{ref}: method 'def-fd' needs a forward returning (logits, feature_maps), "
                f"got {type(out).__name__}; use def-kt or gossip-avg for a plain classifier",
            )
        out = out[0]
    if not isinstance(out, torch.Tensor):
        raise ScenarioError(
            "learning.model",
            f"{ref}: its forward returns {type(out).__name__}; must return a logits tensor",
        )
    if tuple(out.shape) != (2, n_classes):
        raise ScenarioError(
            "learning.model",
            f"{ref}: its forward returns shape {tuple(out.shape)} on a batch of 2; must be "
            f"[batch, num_classes] = (2, {n_classes})",
        )


@dataclass(frozen=True)
class EngineChoice:
    """The engine a user's model trains on, and why (stated in the run summary)."""

    engine: str
    reason: str

    def as_dict(self) -> dict[str, str]:
        """JSON form."""
        return {"engine": self.engine, "reason": self.reason}


def _vmap_works(model: nn.Module, shape: tuple[int, ...], n_classes: int, loss: Any) -> str:
    """Empty if the batched engine trains ``model`` (two clients, one step), else why not."""
    from qfl.engine import BatchedTrainer, sgd, stack_models

    try:
        params, _ = stack_models([model, model])
        trainer = BatchedTrainer(model, loss, sgd(0.01), batch_size=2, fused=False)
        y = torch.arange(2) % n_classes
        data = [(torch.zeros((2, *shape)), y)] * 2
        trainer.train_epochs(params, trainer.init_state(params), data, 1, seed=[0, 1])
    except Exception as exc:
        first = str(exc).strip().split("\n")[0].split(". ")[0]
        return f"{type(exc).__name__}: {first[:150]}"
    return ""


def choose_engine(
    requested: str, model: nn.Module, shape: tuple[int, ...], n_classes: int, loss: Any
) -> EngineChoice:
    """The engine for a user's model: ``learning.engine``'s, where the model allows it.

    ``sequential`` is always possible. ``batched`` (asked for, or ``auto`` on a GPU) is
    tried on the model (one vectorized step of two clients, ``torch.func.vmap``); a model it
    cannot run (data-dependent control flow, in-place buffer updates...) falls back to the
    sequential loop. ``auto`` on a CPU uses the loop, faster there than the generic
    ``vmap`` route (benchmarks/README.md), unless the model has a stacked CPU route.
    """
    from qfl.engine.select import resolve_engine

    if requested == "sequential":
        return EngineChoice("sequential", "learning.engine: sequential")
    resolved = resolve_engine(requested, model)
    if resolved == "sequential":
        return EngineChoice(
            "sequential",
            "learning.engine: auto on a CPU: the per-client loop (the generic vmap route is "
            "slower there)",
        )
    why = _vmap_works(model, shape, n_classes, loss)
    if why:
        return EngineChoice(
            "sequential", f"the batched engine (torch.func vmap) cannot train this model: {why}"
        )
    return EngineChoice("batched", f"learning.engine: {requested}; the model runs under vmap")
