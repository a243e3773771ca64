"""The multi-exit ResNet evaluated for many clients at once, in one grouped layout.

``vmap`` over :class:`qfl.models.MultiExitResNet` batches each convolution into a grouped
one, but its GroupNorm rule applies each client's affine as separate element-wise passes
and every layer pays for permutes between the per-client and the grouped layout, so the
generic route runs at about the per-client loop's speed on a CPU. This module instead keeps
every activation in the grouped layout ``[batch, client x channel, height, width]`` (each
client's channels side by side) from the stem to the exits:

- a convolution is one grouped convolution (``groups = clients``) with the clients'
  filters stacked on the output-channel axis;
- GroupNorm is one ``F.group_norm`` with ``clients x groups`` groups: each group holds
  channels of one client only, so the statistics are the per-client ones, and the affine
  is per channel, i.e. per client;
- ReLU, the residual additions and the exits' average pooling work on all clients alike;
- an exit flattens each client's pooled map, applies the client's dropout mask (drawn from
  the client's key, as :class:`qfl.engine.random.KeyedDropout` draws it) and one batched
  matrix product with the clients' linear layers.

The outputs equal the model's own forward up to float rounding, so the gradients that
autograd takes through them (all clients at once: they share no parameters) match too. It
is used by :class:`qfl.engine.BatchedTrainer` on a CPU (the ``fused`` route).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from qfl.engine.random import dropout_linear
from qfl.models.multiexit import MultiExitResNet, _BasicBlock, _Exit

__all__ = ["stacked_forward", "supports"]


def supports(model: nn.Module) -> bool:
    """Whether :func:`stacked_forward` implements ``model`` (a ``MultiExitResNet``, possibly
    truncated)."""
    return type(model) is MultiExitResNet


def _conv(
    a: torch.Tensor, conv: nn.Conv2d, params: Mapping[str, torch.Tensor], name: str, c: int
) -> torch.Tensor:
    """``conv`` of every client: one grouped convolution over ``a [N, C x in, H, W]``."""
    w = params[f"{name}.weight"]
    b = params.get(f"{name}.bias")
    stride = conv.stride
    if w.shape[-2:] == (1, 1) and conv.padding == (0, 0) and stride != (1, 1):
        # A strided 1x1 convolution reads every stride-th pixel: subsample first (the same
        # products; oneDNN's backward of the strided 1x1 form is 5-8x slower here).
        a = a[:, :, :: stride[0], :: stride[1]].contiguous()
        stride = (1, 1)
    return F.conv2d(
        a,
        w.reshape(-1, *w.shape[2:]),
        None if b is None else b.reshape(-1),
        stride,
        conv.padding,
        conv.dilation,
        groups=c * conv.groups,
    )


def _norm(
    a: torch.Tensor, norm: nn.GroupNorm, params: Mapping[str, torch.Tensor], name: str, c: int
) -> torch.Tensor:
    w = params.get(f"{name}.weight")
    b = params.get(f"{name}.bias")
    return F.group_norm(
        a,
        c * norm.num_groups,
        None if w is None else w.reshape(-1),
        None if b is None else b.reshape(-1),
        norm.eps,
    )


def _block(
    a: torch.Tensor, block: _BasicBlock, params: Mapping[str, torch.Tensor], name: str, c: int
) -> torch.Tensor:
    h = _conv(a, block.conv1, params, f"{name}.conv1", c)
    h = F.relu(_norm(h, block.norm1, params, f"{name}.norm1", c))
    h = _conv(h, block.conv2, params, f"{name}.conv2", c)
    h = _norm(h, block.norm2, params, f"{name}.norm2", c)
    if isinstance(block.shortcut, nn.Sequential):
        s = _conv(a, cast(nn.Conv2d, block.shortcut[0]), params, f"{name}.shortcut.0", c)
        s = _norm(s, cast(nn.GroupNorm, block.shortcut[1]), params, f"{name}.shortcut.1", c)
    else:
        s = a
    return F.relu(h + s)


def _exit(
    h: torch.Tensor,
    ex: _Exit,
    params: Mapping[str, torch.Tensor],
    name: str,
    c: int,
    keys: Mapping[str, torch.Tensor] | None,
    training: bool,
) -> torch.Tensor:
    n = h.shape[0]
    if ex.pool is not None:
        h = ex.pool(h)  # per channel: every client's channels alike
    flat = h.reshape(n, c, -1).transpose(0, 1)  # [C, N, F]: each client's flatten(1)
    key = None if keys is None else keys.get(f"{name}.dropout.key")
    p = float(getattr(ex.dropout, "p", 0.0))
    w, b = params[f"{name}.fc.weight"], params[f"{name}.fc.bias"]
    return dropout_linear(flat, p, key, w, b, training=training)


def stacked_forward(
    model: MultiExitResNet,
    params: Mapping[str, torch.Tensor],
    x: torch.Tensor,
    dropout_keys: Mapping[str, torch.Tensor] | None = None,
    *,
    training: bool = True,
) -> tuple[torch.Tensor, ...]:
    """``model``'s forward (its truncation included) for every client on its own batch.

    Parameters
    ----------
    model : MultiExitResNet
        The architecture (its own parameters are not used; its ``active_exits`` is).
    params : mapping of str to torch.Tensor
        Stacked parameters ``[C, ...]`` (see :func:`qfl.engine.stack_models`).
    x : torch.Tensor
        ``[C, N, channels, H, W]``.
    dropout_keys : mapping of str to torch.Tensor, optional
        ``{"<dropout module>.key": keys [C]}`` (see ``TrainerBase.dropout_keys``); without
        them, or with ``training=False``, dropout is the identity.
    training : bool
        Dropout on (the trainer's model) or off (eval mode).

    Returns
    -------
    tuple of torch.Tensor
        One ``[C, N, classes]`` logits tensor per computed exit, shallow to deep.
    """
    c, n = x.shape[:2]
    a = x.transpose(0, 1).reshape(n, c * x.shape[2], *x.shape[3:])
    a = _conv(a, cast(nn.Conv2d, model.stem[0]), params, "stem.0", c)
    a = F.relu(_norm(a, cast(nn.GroupNorm, model.stem[1]), params, "stem.1", c))
    outs: list[torch.Tensor] = []
    last = model.exit_after[model.active_exits - 1]
    for b, block in enumerate(model.blocks[:last], start=1):
        a = _block(a, cast(_BasicBlock, block), params, f"blocks.{b - 1}", c)
        if b in model.exit_after:
            j = model.exit_after.index(b)
            ex = cast(_Exit, model.exits[j])
            outs.append(_exit(a, ex, params, f"exits.{j}", c, dropout_keys, training))
    return tuple(outs)
