"""The batched trainer's stacked CPU routes: which model takes which, and how it is called.

A *stacked route* evaluates every client's model at once in a layout chosen for a CPU, with
plain autograd over the stacked parameters (no ``vmap``); it equals the model's own forward
up to float rounding. Three exist:

- ``"cnn"``: :class:`qfl.models.FeatureCNN` (the Def-FD CNN), :mod:`qfl.engine.stacked_cnn`
  with the C++ kernels of :mod:`qfl.engine.kernels` (only where they are built);
- ``"resnet"``: :class:`qfl.models.MultiExitResNet`, :mod:`qfl.engine.stacked_resnet`
  (grouped convolutions and per-client GroupNorm, plain PyTorch);
- ``"lstm"``: :class:`qfl.models.MultiExitLSTM`, :mod:`qfl.engine.stacked_lstm` (batched
  matrix products over the clients, plain PyTorch).

:class:`qfl.engine.BatchedTrainer` takes the route where one applies (``fused=None``), and
:func:`qfl.engine.select.resolve_engine` picks the batched engine on a CPU where every model
has one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import torch
from torch import nn

from qfl.engine import kernels, stacked_cnn, stacked_lstm, stacked_resnet

__all__ = ["CHUNK", "Route", "buildable", "forward", "route_of", "runnable_on"]

Route = Literal["cnn", "resnet", "lstm"]

#: Clients per pass of each route when the trainer has no ``chunk_size``, measured on the
#: 2-core development machine (benchmarks/README.md): the CNN's activations of 8 clients stay
#: in cache; the ResNet's passes of 4, 8 or 24 clients run within 5 % of each other, and 8
#: bound the memory (about 0.3 GB of activations at stem stride 1); the LSTM's per-time-step
#: operations are cheapest over all the clients at once (``None``).
CHUNK: dict[str, int | None] = {"cnn": 8, "resnet": 8, "lstm": None}


def route_of(model: nn.Module) -> Route | None:
    """The stacked route that implements ``model``, or ``None``.

    Examples
    --------
    >>> from qfl.models import FeatureCNN, MultiExitLSTM
    >>> route_of(FeatureCNN()), route_of(MultiExitLSTM(hidden_size=4)), route_of(nn.Linear(2, 2))
    ('cnn', 'lstm', None)
    """
    if stacked_cnn.supports(model):
        return "cnn"
    if stacked_resnet.supports(model):
        return "resnet"
    if stacked_lstm.supports(model):
        return "lstm"
    return None


def buildable(route: Route) -> bool:
    """Whether ``route`` can run on this machine's CPU (the CNN's: whether its kernels are
    built or could be built; a check that compiles nothing)."""
    return kernels.buildable() if route == "cnn" else True


def runnable_on(route: Route, device: torch.device) -> bool:
    """Whether ``route`` runs on ``device`` now: a CPU (and, for the CNN, the kernels loaded
    in this process)."""
    if route == "cnn":
        return stacked_cnn.runnable_on(device)
    return device.type == "cpu"


def forward(
    route: Route,
    model: nn.Module,
    params: Mapping[str, torch.Tensor],
    x: torch.Tensor,
    dropout_keys: Mapping[str, torch.Tensor] | None,
    *,
    training: bool,
) -> Any:
    """The model's outputs for every client, stacked on a leading axis.

    ``model`` is the architecture (truncation included), ``params`` the stacked parameters,
    ``x [C, N, ...]`` each client's batch, ``dropout_keys`` ``{"<module>.key": keys [C]}``
    (``training=False``: dropout off, as in eval mode).
    """
    if route == "cnn":
        return stacked_cnn.stacked_forward(params, x)
    if route == "resnet":
        return stacked_resnet.stacked_forward(
            model,  # type: ignore[arg-type]
            params,
            x,
            dropout_keys,
            training=training,
        )
    return stacked_lstm.stacked_forward(
        model,  # type: ignore[arg-type]
        params,
        x,
        dropout_keys,
        training=training,
    )
