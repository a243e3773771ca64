"""flower_fedprox: the model, the data and the training loop (plain PyTorch)."""

from __future__ import annotations

import gzip
import os
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


class Net(nn.Module):
    """A small CNN for 28 x 28 grey images."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 5)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(8, 16, 5)
        self.fc1 = nn.Linear(16 * 4 * 4, 64)
        self.fc2 = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(torch.relu(self.conv1(x)))
        x = self.pool(torch.relu(self.conv2(x)))
        return self.fc2(torch.relu(self.fc1(x.flatten(1))))


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * dims).reshape(shape)


def load_data(
    partition_id: int, num_partitions: int, samples: int = 1200, seed: int = 42
) -> tuple[DataLoader, DataLoader]:
    """An IID shard of Fashion-MNIST's training images (80 % train, 20 % validation).

    The files are read from ``$FMNIST_DIR`` (default ``$QFL_DATA_DIR/fashion-mnist``).
    """
    root = Path(os.environ.get("FMNIST_DIR", Path(os.environ.get("QFL_DATA_DIR", "data"))
                               / "fashion-mnist"))  # fmt: skip
    x = _read_idx(root / "train-images-idx3-ubyte.gz")
    y = _read_idx(root / "train-labels-idx1-ubyte.gz")
    order = np.random.default_rng(seed).permutation(len(x))
    mine = order[partition_id::num_partitions][:samples]
    xt = torch.tensor(x[mine], dtype=torch.float32).unsqueeze(1) / 255.0
    yt = torch.tensor(y[mine], dtype=torch.long)
    cut = int(0.8 * len(mine))
    g = torch.Generator().manual_seed(seed + partition_id)
    train = DataLoader(TensorDataset(xt[:cut], yt[:cut]), batch_size=32, shuffle=True, generator=g)
    val = DataLoader(TensorDataset(xt[cut:], yt[cut:]), batch_size=64)
    return train, val


def train(
    net: nn.Module, trainloader: DataLoader, epochs: int, lr: float, proximal_mu: float
) -> float:
    """Local SGD with FedProx's proximal term (mu / 2) * ||w - w_global||^2."""
    global_params = [p.detach().clone() for p in net.parameters()]
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9)
    net.train()
    total = 0.0
    for _ in range(epochs):
        for x, y in trainloader:
            opt.zero_grad()
            loss = nn.functional.cross_entropy(net(x), y)
            prox = sum(
                ((p - g) ** 2).sum() for p, g in zip(net.parameters(), global_params, strict=True)
            )
            (loss + proximal_mu / 2 * prox).backward()
            opt.step()
            total += float(loss.detach())
    return total / max(1, epochs * len(trainloader))


def test(net: nn.Module, loader: DataLoader) -> tuple[float, float]:
    """Loss and accuracy on ``loader``."""
    net.eval()
    loss, correct = 0.0, 0
    with torch.no_grad():
        for x, y in loader:
            out = net(x)
            loss += float(nn.functional.cross_entropy(out, y, reduction="sum"))
            correct += int((out.argmax(1) == y).sum())
    n = len(loader.dataset)
    return loss / n, correct / n


def get_weights(net: nn.Module) -> list[np.ndarray]:
    return [v.cpu().numpy() for v in net.state_dict().values()]


def set_weights(net: nn.Module, parameters: list[np.ndarray]) -> None:
    state = OrderedDict(
        (k, torch.tensor(v)) for k, v in zip(net.state_dict().keys(), parameters, strict=True)
    )
    net.load_state_dict(state, strict=True)
