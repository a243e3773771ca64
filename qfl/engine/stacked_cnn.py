"""The Def-FD CNN evaluated for many clients at once, in layouts chosen for a CPU.

``vmap`` over :class:`qfl.models.FeatureCNN` turns each convolution into a grouped one but
keeps the per-client layout around it, so every step pays for permutes into and out of the
grouped layout, a max-pooling kernel with indices per block (run twice by vmap's batching
rule), and the first layer's single-input-channel convolution, which oneDNN runs at a few
GFLOP/s. This module instead keeps every activation in one layout, ``[batch, height, width,
client x channel]`` (channels-last, all clients' channels side by side), which is what a
grouped convolution reads and writes fastest and what the kernels of
:mod:`qfl.engine.kernels` pool in one pass:

- block 1: convolution, bias, ReLU and max-pooling in one kernel that evaluates the 3x3
  convolution only at the four positions of each pooling window
  (:class:`~qfl.engine.kernels.ConvPoolReLU`; its backward forms the filters' gradient
  straight from the input, without the gradient of the full-resolution map);
- blocks 2 and 3: one grouped convolution over all clients, then ReLU + max-pooling fused
  (:class:`~qfl.engine.kernels.PoolReLU2x2`); on an odd-sized map (7x7 in block 3) the
  convolution skips the last row and column, which the pooling drops (27 % less work);
- the linear layer: one batched matrix product.

The outputs equal the model's own forward up to float rounding, max-pooling's tie rule
included, so the gradients that autograd takes through it match too. It is used by
:class:`qfl.engine.BatchedTrainer` on CPU when the kernels are available.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from qfl.engine import kernels
from qfl.engine.kernels import ConvPoolReLU, PoolReLU2x2
from qfl.models.cnn import FeatureCNN

__all__ = ["runnable_on", "stacked_forward", "supports"]

Outputs = tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]


def supports(model: nn.Module) -> bool:
    """Whether :func:`stacked_forward` implements ``model`` (a plain ``FeatureCNN``)."""
    return type(model) is FeatureCNN


def runnable_on(device: torch.device) -> bool:
    """Whether :func:`stacked_forward` can run on ``device``: a CPU, with the kernels loaded
    in this process (:func:`qfl.engine.kernels.prepare`; this check never compiles)."""
    return device.type == "cpu" and kernels.ready()


def _channels(out: torch.Tensor, c: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``out [N, H, W, C*O]`` -> (feature map view ``[C, N, O, H, W]``, conv input view
    ``[N, C*O, H, W]`` in channels-last memory)."""
    n, h, w, co = out.shape
    feat = out.view(n, h, w, c, co // c).permute(3, 0, 4, 1, 2)
    return feat, out.permute(0, 3, 1, 2)


def _pad_for_pool(a: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Input and padding for a 3x3 convolution whose output is 2x2-max-pooled: one pixel on
    each side, except after an odd last row or column, which the pooling drops, so the
    convolution (then run on an explicitly padded input) never computes it: 27 % less work
    on 7x7 maps."""
    h, w = a.shape[2], a.shape[3]
    if h % 2 == 0 and w % 2 == 0:
        return a, 1
    padded = F.pad(a, (1, 1 - w % 2, 1, 1 - h % 2))
    return padded.contiguous(memory_format=torch.channels_last), 0


def stacked_forward(params: Mapping[str, torch.Tensor], x: torch.Tensor) -> Outputs:
    """``FeatureCNN`` forward of every client on its own batch.

    Parameters
    ----------
    params : mapping of str to torch.Tensor
        Stacked ``FeatureCNN`` parameters ``[C, ...]`` (see :func:`qfl.engine.stack_models`).
    x : torch.Tensor
        ``[C, N, Cin, H, W]`` float32 on the CPU.

    Returns
    -------
    logits : torch.Tensor
        ``[C, N, classes]``.
    features : tuple of torch.Tensor
        The three blocks' outputs, ``[C, N, channels, h, w]`` each (strided views).
    """
    c, n = x.shape[:2]
    w1, b1 = params["blocks.0.0.weight"], params["blocks.0.0.bias"]
    o1 = w1.shape[1]
    h2, w2 = x.shape[3] // 2, x.shape[4] // 2
    out = ConvPoolReLU.apply(x, w1, b1)
    f1, a = _channels(out.view(n, h2, w2, c * o1), c)
    feats = [f1]
    for k in (1, 2):
        wk, bk = params[f"blocks.{k}.0.weight"], params[f"blocks.{k}.0.bias"]
        a, pad = _pad_for_pool(a)
        z = F.conv2d(
            a, wk.reshape(-1, *wk.shape[2:]), bk.reshape(-1), padding=pad, groups=c
        ).contiguous(memory_format=torch.channels_last)
        f, a = _channels(PoolReLU2x2.apply(z.permute(0, 2, 3, 1)), c)
        feats.append(f)
    f3 = feats[2]
    flat = f3.reshape(c, n, -1)
    logits = torch.baddbmm(
        params["fc.bias"].unsqueeze(1), flat, params["fc.weight"].transpose(1, 2)
    )
    return logits, (feats[0], feats[1], f3)
