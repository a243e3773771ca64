"""A model and a dataset of your own, run by qfl's FedAvg over a QKD network.

Plain PyTorch, nothing of qfl but its dataset type: a two-layer perceptron and a synthetic
classification task (eight Gaussian blobs in 20 dimensions). ``metro.yaml`` names them by
``"own_mlp:mlp"`` and ``"own_mlp:blobs"``; ``run.py`` registers them through the API.
"""

from __future__ import annotations

import torch
from torch import nn

from qfl.data import TensorDataset

FEATURES, CLASSES, SAMPLES = 20, 8, 4000


def blobs(seed: int) -> TensorDataset:
    """Eight overlapping Gaussian blobs in 20 dimensions: ``SAMPLES`` samples, drawn from
    ``seed`` (qfl passes the scenario's seed)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, CLASSES, (SAMPLES,), generator=g)
    centers = 0.6 * torch.randn(CLASSES, FEATURES, generator=g)
    x = centers[y] + torch.randn(SAMPLES, FEATURES, generator=g)
    return TensorDataset(x, y, tuple(f"blob{c}" for c in range(CLASSES)), "blobs")


def mlp(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """A two-layer perceptron sized from the data (qfl passes both arguments)."""
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(int(torch.tensor(input_shape).prod()), 64),
        nn.ReLU(),
        nn.Linear(64, num_classes),
    )
