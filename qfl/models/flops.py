"""Forward FLOPs of a model, counted by PyTorch's own FLOP counter."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from qkd.errors import ParameterError

__all__ = ["count_flops"]


def count_flops(model: nn.Module, input_shape: Sequence[int]) -> int:
    """Forward FLOPs for one sample, as counted by ``torch.utils.flop_counter``.

    The counter covers matrix multiplications and convolutions (a multiply-add counts as two
    FLOPs); element-wise operations (activations, pooling, normalisation) are not counted and
    are typically a few percent. A training step (forward + backward) costs about three times
    the forward FLOPs.

    Parameters
    ----------
    model : torch.nn.Module
        Any model; it is run once, without gradients, on a zero input of batch size 1 (so
        its mode, ``train`` or ``eval``, is left as it is).
    input_shape : sequence of int
        Shape of one sample, without the batch axis (e.g. ``(1, 28, 28)``).

    Returns
    -------
    int
        FLOPs of one forward pass of one sample.

    Examples
    --------
    >>> count_flops(nn.Linear(4, 3), (4,))
    24
    """
    shape = tuple(input_shape)
    if not shape or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in shape):
        raise ParameterError("input_shape", input_shape, "a non-empty sequence of positive ints")
    param = next(iter(model.parameters()), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    x = torch.zeros((1, *shape), device=device, dtype=dtype)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(x)
    return int(counter.get_total_flops())
