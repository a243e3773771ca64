"""A model and datasets of one's own, for tests/qfl/test_own_model.py (imported by path)."""

from __future__ import annotations

import torch
from torch import nn

from qfl.data import TensorDataset

IN, HIDDEN, CLASSES = 6, 16, 4


def blobs(seed: int) -> TensorDataset:
    """Four Gaussian blobs in 6 dimensions, 480 samples (a pool; no test set)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(480) % CLASSES
    centers = 2.0 * torch.randn(CLASSES, IN, generator=g)
    x = centers[y] + torch.randn(480, IN, generator=g)
    return TensorDataset(x, y, ("a", "b", "c", "d"), "blobs")


def blobs_split(seed: int) -> tuple[TensorDataset, TensorDataset]:
    """The blobs as (train, test)."""
    d = blobs(seed)
    return d.subset(range(400)), d.subset(range(400, 480))


def blobs_tensors() -> tuple[torch.Tensor, torch.Tensor]:
    """The blobs as (x, y) tensors."""
    d = blobs(0)
    return d.x, d.y


def mlp(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """A two-layer perceptron (on the flattened sample)."""
    n_in = 1
    for d in input_shape:
        n_in *= d
    return nn.Sequential(
        nn.Flatten(), nn.Linear(n_in, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, num_classes)
    )


class FeatureMLP(nn.Module):
    """The perceptron returning (logits, feature_maps), as Def-FD needs."""

    def __init__(self, input_shape: tuple[int, ...], num_classes: int) -> None:
        super().__init__()
        self.hidden = nn.Linear(input_shape[0], HIDDEN)
        self.out = nn.Linear(HIDDEN, num_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        h = torch.relu(self.hidden(x))
        return self.out(h), (h,)


class Branchy(nn.Module):
    """A model vmap cannot batch (data-dependent control flow)."""

    def __init__(self, input_shape: tuple[int, ...], num_classes: int) -> None:
        super().__init__()
        self.lin = nn.Linear(input_shape[0], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:
            return self.lin(x)
        return -self.lin(x)


def not_a_module() -> int:
    return 3


def wrong_logits(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    return nn.Linear(input_shape[0], num_classes + 1)


def mismatched() -> tuple[torch.Tensor, torch.Tensor]:
    return torch.zeros(10, 3), torch.zeros(9, dtype=torch.long)


def raises(seed: int) -> TensorDataset:
    raise OSError("the data server is down")


NOT_CALLABLE = 42
