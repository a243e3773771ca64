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


@pytest.mark.slow  # a Ray cluster and two co-simulations
def test_simulate_with_the_ray_executor_matches_local(tmp_path) -> None:
    pytest.importorskip("ray")
    import json

    import yaml

    from qfl.cli import main

    nodes = [{"name": "dc", "role": "server", "flops_per_s": 1e12}]
    nodes += [{"name": f"e{i:02d}", "role": "client", "flops_per_s": 1e10} for i in range(16)]
    links = [{"a": "dc", "b": f"e{i:02d}", "length_km": 3 + i} for i in range(16)]
    doc = {
        "name": "ray-crowd",
        "seed": 2,
        "topology": {"nodes": nodes, "links": links},
        "qkd": {"preset": "toshiba-2018", "key_model": "asymptotic-fluid"},
        "learning": {
            "method": "fedavg", "dataset": "fashion-mnist", "model": "cnn", "server": "dc",
            "samples_per_client": 20, "test_samples": 200, "rounds": 2, "batch_size": 8,
            "engine": "sequential", "clients_per_round": 6,
        },
        "outputs": {"plots": False},
    }  # fmt: skip
    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump(doc), encoding="utf-8")
    accs = []
    for extra in ([], ["--executor", "ray", "--workers", "2"]):
        out = tmp_path / ("ray" if extra else "local")
        assert main(["simulate", str(f), "-o", str(out), "--threads", "1", *extra]) == 0
        s = json.loads((out / "summary.json").read_text())
        assert s["status"] == "complete" and s["rounds_done"] == 2
        accs.append((s["final_global_acc"], s["final_local_acc"]))
    assert accs[0] == pytest.approx(accs[1], abs=0.01)
