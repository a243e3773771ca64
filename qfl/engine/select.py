"""The one place that picks a training engine.

Algorithms name an engine (``"auto"``, ``"batched"`` or ``"sequential"``) and get a trainer
from :func:`make_trainer`; none of them chooses on its own.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import nn

from qfl.engine import kernels, stacked_cnn
from qfl.engine.batched import BatchedTrainer
from qfl.engine.sequential import SequentialTrainer
from qkd.errors import ParameterError

__all__ = ["ENGINES", "Engine", "make_trainer", "resolve_engine"]

Engine = Literal["auto", "batched", "sequential"]
ENGINES: tuple[str, ...] = ("auto", "batched", "sequential")


def resolve_engine(engine: str, *models: nn.Module) -> Literal["batched", "sequential"]:
    """The concrete engine for ``engine`` and the models a learner will train with it.

    ``auto`` is ``batched`` where CUDA is available, or on a CPU when every model takes the
    fused CPU route (the Def-FD CNN) and its kernels can be built there; ``sequential``
    otherwise. On a 2-core CPU the fused route trains the CNN ~2.7x faster than the
    per-client loop, while the generic ``vmap`` route is about as fast as the loop
    (benchmarks/README.md). The check compiles nothing (:func:`qfl.engine.kernels.buildable`).

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
    if models and all(stacked_cnn.supports(m) for m in models) and kernels.buildable():
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
