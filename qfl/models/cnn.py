"""The feature-tap CNN of Def-FD (figure 1): three conv blocks and one linear layer."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from qkd.errors import ParameterError

__all__ = ["FeatureCNN"]


def _conv_out(size: int, n_pools: int) -> int:
    for _ in range(n_pools):
        size //= 2
    return size


class FeatureCNN(nn.Module):
    """Three ``conv 3x3 (padding 1) -> ReLU -> max-pool 2x2`` blocks, then one linear layer.

    The forward pass returns the logits together with the output of each block, so that
    feature-map distillation (Def-FD) can compare them between two models. The default
    widths 16/32/64 keep a 24-client batched run fast on a CPU (29 066 parameters and
    3.85 MFLOP forward per 1 x 28 x 28 sample); the paper does not state its widths.

    Parameters
    ----------
    in_channels : int
        Input channels (1 for Fashion-MNIST).
    num_classes : int
        Output classes.
    image_size : int
        Input side length (square inputs), >= 8 so each pooling leaves at least one pixel.
    channels : sequence of 3 ints
        Output channels of the three conv blocks.

    Examples
    --------
    >>> model = FeatureCNN()
    >>> logits, (f1, f2, f3) = model(torch.zeros(2, 1, 28, 28))
    >>> tuple(logits.shape), tuple(f1.shape), tuple(f3.shape)
    ((2, 10), (2, 16, 14, 14), (2, 64, 3, 3))
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        image_size: int = 28,
        channels: Sequence[int] = (16, 32, 64),
    ) -> None:
        super().__init__()
        for name, value, minimum in (
            ("in_channels", in_channels, 1),
            ("num_classes", num_classes, 1),
            ("image_size", image_size, 8),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ParameterError(name, value, f"an integer >= {minimum}")
        widths = tuple(channels)
        if len(widths) != 3 or any(
            isinstance(c, bool) or not isinstance(c, int) or c < 1 for c in widths
        ):
            raise ParameterError("channels", channels, "three positive integers")
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.image_size = image_size
        self.channels = widths
        blocks = []
        prev = in_channels
        for width in widths:
            blocks.append(
                nn.Sequential(
                    nn.Conv2d(prev, width, kernel_size=3, padding=1),
                    nn.ReLU(),
                    nn.MaxPool2d(2),
                )
            )
            prev = width
        self.blocks = nn.ModuleList(blocks)
        side = _conv_out(image_size, 3)
        self.fc = nn.Linear(widths[-1] * side * side, num_classes)

    def forward(
        self, x: torch.Tensor
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Return ``(logits, (f1, f2, f3))``; ``fi`` is block ``i``'s output (after pooling)."""
        f1 = self.blocks[0](x)
        f2 = self.blocks[1](f1)
        f3 = self.blocks[2](f2)
        logits = self.fc(f3.flatten(1))
        return logits, (f1, f2, f3)
