"""Training a round's clients in worker processes (``FedAvgConfig.workers``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from qfl.algorithms.fedavg import FedAvg, FedAvgConfig
from qfl.data import TensorDataset
from qfl.engine.workers import TrainerPool, balanced_shares
from qfl.losses.multiexit import multi_exit_loss
from qfl.models import FeatureCNN
from qfl.models.multiexit import MultiExitResNet
from qkd.errors import ParameterError


def ce(outputs: object, y: torch.Tensor, teacher: object) -> torch.Tensor:
    """Module level, so that it pickles into the workers."""
    del teacher
    return torch.nn.functional.cross_entropy(outputs[0], y)  # type: ignore[index]


def me_loss(outputs: tuple[torch.Tensor, ...], y: torch.Tensor, teacher: object) -> torch.Tensor:
    del teacher
    return multi_exit_loss(outputs, y, C=1.0, temperature=1.0)


@pytest.fixture
def one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _clients(sizes: list[int], seed: int = 0) -> list[TensorDataset]:
    gen = torch.Generator().manual_seed(seed)
    classes = tuple(str(c) for c in range(10))
    return [
        TensorDataset(
            torch.randn(n, 1, 28, 28, generator=gen),
            torch.randint(0, 10, (n,), generator=gen),
            classes,
            f"client{i}",
        )
        for i, n in enumerate(sizes)
    ]


@given(st.lists(st.integers(1, 500), min_size=0, max_size=40), st.integers(1, 6))
def test_balanced_shares_partition_the_clients(sizes: list[int], n: int) -> None:
    shares = balanced_shares(sizes, n)
    assert sorted(i for s in shares for i in s) == list(range(len(sizes)))
    assert len(shares) <= n and all(s == sorted(s) and s for s in shares)
    if sizes:
        loads = [sum(sizes[i] for i in s) for s in shares]
        # Longest first: no share exceeds the mean by more than one item.
        assert max(loads) <= sum(sizes) / n + max(sizes)


def _rounds(model: torch.nn.Module, workers: int, loss: object, **kw: object) -> FedAvg:
    # A small step: on random labels a large one makes training chaotic, and the grouped
    # kernels' rounding (shares of 2-3 clients against 5) would grow beyond 1e-5.
    cfg = FedAvgConfig(
        rounds=2, local_epochs=1, batch_size=8, lr=0.01, engine="batched", workers=workers
    )
    fed = FedAvg(model, _clients([13, 40, 21, 8, 30]), loss_fn=loss, config=cfg, seed=3, **kw)
    try:
        for _ in range(cfg.rounds):
            fed.run_round()
    finally:
        fed.close()
    return fed


def test_two_workers_equal_one_process(one_thread: None) -> None:
    torch.manual_seed(0)
    model = FeatureCNN()
    one = _rounds(model, 1, ce)
    two = _rounds(model, 2, ce)
    assert one.params.keys() == two.params.keys()
    for name, t in one.params.items():
        torch.testing.assert_close(two.params[name], t, atol=1e-5, rtol=1e-5)
    assert not torch.equal(one.params["blocks.0.0.weight"], model.blocks[0][0].weight)  # it trained


def test_two_workers_with_exit_tiers_equal_one_process(one_thread: None) -> None:
    torch.manual_seed(1)
    model = MultiExitResNet(1, 10, width=4, stem_stride=2, exit_after=(1, 3, 5))
    exits = [1, 3, 3, 2, 3]
    one = _rounds(model, 1, me_loss, client_exits=exits)
    two = _rounds(model, 2, me_loss, client_exits=exits)
    for name, t in one.params.items():
        torch.testing.assert_close(two.params[name], t, atol=1e-5, rtol=1e-5)


def test_a_closure_loss_is_refused_with_workers() -> None:
    def closure(outputs: object, y: torch.Tensor, teacher: object) -> torch.Tensor:
        return ce(outputs, y, teacher)

    with pytest.raises(ParameterError, match="workers"):
        TrainerPool(2, {1: FeatureCNN()}, closure, None, _clients([4]))
    with pytest.raises(ParameterError, match="workers"):
        FedAvgConfig(workers=0)
