"""The learning half on Ray (issue 23): a local Ray cluster of two worker processes trains
a round's sampled clients with the single-process numbers."""

from __future__ import annotations

import pytest
import torch

from qfl.algorithms.fedavg import FedAvg, FedAvgConfig
from qfl.cosim.jobs import _cnn_loss
from qfl.cosim.sampling import sample_clients
from qfl.data import TensorDataset
from qfl.models import FeatureCNN


def _sets(n: int) -> list[TensorDataset]:
    gen = torch.Generator().manual_seed(4)
    return [
        TensorDataset(
            torch.randn(5 + i % 4, 1, 28, 28, generator=gen),
            torch.randint(0, 10, (5 + i % 4,), generator=gen),
            tuple(str(c) for c in range(10)),
            f"c{i}",
        )
        for i in range(n)
    ]


def _run(config: FedAvgConfig, sets: list[TensorDataset], init: dict) -> tuple[dict, float]:
    fed = FedAvg(FeatureCNN(), sets, loss_fn=_cnn_loss, config=config, seed=3, initial_params=init)
    try:
        for r in range(2):
            fed.selected = sample_clients(3, r, len(sets), 6)
            fed.run_round()
        return fed.params, fed.worker_cpu_seconds
    finally:
        fed.close()


@pytest.mark.slow  # starting a Ray cluster takes 10-30 s
def test_ray_workers_give_the_single_process_numbers() -> None:
    ray = pytest.importorskip("ray")
    sets = _sets(20)
    init = {k: v.detach().clone() for k, v in FeatureCNN().named_parameters()}
    base = dict(rounds=2, local_epochs=1, batch_size=4, engine="sequential")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the actors' thread count: the same float rounding
    try:
        single, _ = _run(FedAvgConfig(**base), sets, init)
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        try:
            on_ray, actor_cpu = _run(FedAvgConfig(**base, workers=2, executor="ray"), sets, init)
        finally:
            ray.shutdown()
    finally:
        torch.set_num_threads(threads)
    assert actor_cpu > 0  # the clients trained on the two Ray workers
    for k in single:
        assert torch.allclose(single[k], on_ray[k], atol=1e-5), k
    assert not torch.equal(single["fc.weight"], init["fc.weight"])


def test_unknown_executor_is_named() -> None:
    from qkd.errors import UnknownNameError

    with pytest.raises(UnknownNameError, match="executor"):
        FedAvgConfig(executor="dask")
