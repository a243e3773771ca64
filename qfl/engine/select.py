"""The one place that picks a training engine.

Algorithms name an engine (``"auto"``, ``"batched"`` or ``"sequential"``) and get a trainer
from :func:`make_trainer`; none of them chooses on its own.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import nn

from qfl.engine import stacked
from qfl.engine.batched import BatchedTrainer
from qfl.engine.sequential import SequentialTrainer
from qkd.errors import ParameterError

__all__ = ["ENGINES", "Engine", "make_trainer", "resolve_engine"]

Engine = Literal["auto", "batched", "sequential"]
ENGINES: tuple[str, ...] = ("auto", "batched", "sequential")


def resolve_engine(engine: str, *models: nn.Module) -> Literal["batched", "sequential"]:
    """The concrete engine for ``engine`` and the models a learner will train with it.

    ``auto`` is ``batched`` where CUDA is available, or on a CPU when every model takes a
    stacked CPU route (:mod:`qfl.engine.stacked`: the Def-FD CNN where its kernels can be
    built, the multi-exit ResNet and LSTM, truncated or not); ``sequential`` otherwise. On
    a 2-core CPU those routes train faster than the per-client loop (the CNN ~2.7x, the
    multi-exit ResNet 2.0-4.2x and the LSTM ~10x on a busy machine), while the generic
    ``vmap`` route is slower than they are (benchmarks/README.md). The check compiles
    nothing (:func:`qfl.engine.kernels.buildable`).

    Examples
    --------
    >>> resolve_engine("sequential", nn.Linear(2, 2))
    'sequential'
    >>> resolve_engine("auto", nn.Linear(2, 2)) in ("batched", "sequential")
    True
    """
    if engine not in ENGINES:
        raise ParameterError("engine", engine, f"one of {', '.join(ENGINES)}")
    if engine != "auto":
        return engine  # type: ignore[return-value]
    if torch.cuda.is_available():
        return "batched"
    routes = [stacked.route_of(m) for m in models]
    if routes and all(r is not None and stacked.buildable(r) for r in routes):
        return "batched"
    return "sequential"


def make_trainer(
    engine: str, model: nn.Module, loss_fn: Any, optimizer: Any, **kwargs: Any
) -> BatchedTrainer | SequentialTrainer:
    """A trainer of the resolved ``engine`` (``batched`` or ``sequential``; resolve ``auto``
    with :func:`resolve_engine` first, once per learner, so all its trainers agree).

    Other arguments are those of :class:`~qfl.engine.BatchedTrainer`.
    """
    if engine == "batched":
        return BatchedTrainer(model, loss_fn, optimizer, **kwargs)
    if engine == "sequential":
        return SequentialTrainer(model, loss_fn, optimizer, **kwargs)
    raise ParameterError("engine", engine, "'batched' or 'sequential' (resolve 'auto' first)")
