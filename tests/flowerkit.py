"""Flower clients and strategies for the tests of :mod:`qfl.flower`, written as a Flower
user writes them (``NumPyClient`` + a ``client_fn(context)``), on small synthetic data.

Every client's data and initial weights come from its ``partition-id`` and the run's
``seed`` (``context.node_config``), so two runs build the same clients.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest
import torch

pytest.importorskip("flwr")  # the module is collected (doctests) where Flower is missing too

from flwr.client import NumPyClient
from flwr.common import Context
from flwr.server.strategy import FedAvg
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

N_FEATURES, N_CLASSES = 8, 3


class Net(nn.Module):
    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.fc1 = nn.Linear(N_FEATURES, 16)
        self.fc2 = nn.Linear(16, N_CLASSES)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x)))


def make_data(partition: int, seed: int, n: int = 64) -> TensorDataset:
    g = torch.Generator().manual_seed(1000 * seed + partition)
    centers = torch.randn(N_CLASSES, N_FEATURES, generator=torch.Generator().manual_seed(seed))
    y = torch.randint(0, N_CLASSES, (n,), generator=g)
    x = centers[y] + 0.8 * torch.randn(n, N_FEATURES, generator=g)
    return TensorDataset(x, y)


def get_weights(net: nn.Module) -> list[np.ndarray]:
    return [v.cpu().numpy() for v in net.state_dict().values()]


def set_weights(net: nn.Module, weights: list[np.ndarray]) -> None:
    keys = net.state_dict().keys()
    pairs = zip(keys, weights, strict=True)
    net.load_state_dict(OrderedDict((k, torch.tensor(w)) for k, w in pairs))


class FlowerClient(NumPyClient):
    def __init__(self, partition: int, seed: int, metrics: bool = True) -> None:
        self.net = Net(seed)
        self.trainloader = DataLoader(
            make_data(partition, seed), batch_size=16, shuffle=True,
            generator=torch.Generator().manual_seed(partition),
        )  # fmt: skip
        self.valloader = DataLoader(make_data(partition + 100, seed, 32), batch_size=32)
        self.metrics = metrics

    def get_parameters(self, config):
        return get_weights(self.net)

    def fit(self, parameters, config):
        set_weights(self.net, parameters)
        opt = torch.optim.SGD(self.net.parameters(), lr=0.1)
        mu = float(config.get("proximal_mu", 0.0))
        glob = [p.detach().clone() for p in self.net.parameters()]
        for x, y in self.trainloader:
            opt.zero_grad()
            loss = nn.functional.cross_entropy(self.net(x), y)
            if mu:
                pairs = zip(self.net.parameters(), glob, strict=True)
                loss = loss + mu / 2 * sum(((p - g) ** 2).sum() for p, g in pairs)
            loss.backward()
            opt.step()
        n = len(self.trainloader.dataset)
        return get_weights(self.net), n, ({"loss": float(loss.detach())} if self.metrics else {})

    def evaluate(self, parameters, config):
        set_weights(self.net, parameters)
        correct, loss = 0, 0.0
        with torch.no_grad():
            for x, y in self.valloader:
                out = self.net(x)
                loss += float(nn.functional.cross_entropy(out, y, reduction="sum"))
                correct += int((out.argmax(1) == y).sum())
        n = len(self.valloader.dataset)
        return loss / n, n, ({"accuracy": correct / n} if self.metrics else {})


def client_fn(context: Context):
    cfg = context.node_config
    return FlowerClient(int(cfg["partition-id"]), int(cfg.get("seed", 0))).to_client()


def client_fn_plain(context: Context):
    """No metrics in FitRes / EvaluateRes (so their serialized sizes are known before the
    client runs)."""
    cfg = context.node_config
    return FlowerClient(int(cfg["partition-id"]), int(cfg.get("seed", 0)), metrics=False)


class Flaky(FlowerClient):
    def fit(self, parameters, config):
        raise RuntimeError("GPU fell off the bus")


def client_fn_flaky(context: Context):
    """Client 1 raises in every fit."""
    i = int(context.node_config["partition-id"])
    seed = int(context.node_config.get("seed", 0))
    return Flaky(i, seed) if i == 1 else FlowerClient(i, seed)


class WrongShapes(FlowerClient):
    def fit(self, parameters, config):
        _, n, m = super().fit(parameters, config)
        return [np.zeros(3, dtype=np.float32)], n, m


def client_fn_wrong_shapes(context: Context):
    return WrongShapes(int(context.node_config["partition-id"]), 0)


def client_fn_raises(context: Context):
    raise FileNotFoundError("no data at /data/missing")


def not_a_client(context: Context):
    return 42


NOT_A_STRATEGY = 3


def fedavg_all(**kwargs):
    """FedAvg over every client, evaluating on every client."""
    kwargs.setdefault("fraction_fit", 1.0)
    kwargs.setdefault("fraction_evaluate", 1.0)
    return FedAvg(**kwargs)
