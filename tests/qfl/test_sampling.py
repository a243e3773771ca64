"""Client sampling of the server methods (issue 23): a few of many clients per round."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from clihelp import run_bad

from qfl.cosim import simulate_network
from qfl.cosim.plan import server_round
from qfl.cosim.run import execute_learning
from qfl.cosim.sampling import per_round_count, sample_clients
from qfl.scenario import ScenarioError, parse_scenario
from qkd.errors import ParameterError


def crowd(n: int = 40, per_round: int | None = 5, **learning: Any) -> dict[str, Any]:
    """``n`` clients behind two relays, FedAvg with the Def-FD CNN, ``per_round`` sampled."""
    nodes = [{"name": "dc", "role": "server", "flops_per_s": 1e12}]
    nodes += [{"name": f"r{j}", "role": "relay"} for j in range(2)]
    nodes += [{"name": f"e{i:02d}", "role": "client", "flops_per_s": 1e10} for i in range(n)]
    links = [{"a": "dc", "b": f"r{j}", "length_km": 10} for j in range(2)]
    links += [{"a": f"e{i:02d}", "b": f"r{i % 2}", "length_km": 3} for i in range(n)]
    lr = {
        "method": "fedavg",
        "dataset": "fashion-mnist",
        "model": "cnn",
        "server": "dc",
        "samples_per_client": 20,
        "test_samples": 100,
        "rounds": 3,
        "batch_size": 8,
        "engine": "sequential",
        "clients_per_round": per_round,
        **learning,
    }
    return {
        "name": "crowd",
        "seed": 11,
        "topology": {"nodes": nodes, "links": links},
        "qkd": {"preset": "toshiba-2018", "key_model": "asymptotic-fluid"},
        "cipher": {"policy": "aes-256-gcm"},
        "learning": {k: v for k, v in lr.items() if v is not None},
        "outputs": {"plots": False},
    }


def test_sampling_is_a_function_of_seed_and_round() -> None:
    a = sample_clients(3, 0, 1000, 20)
    assert a == sample_clients(3, 0, 1000, 20)
    assert len(a) == len(set(a)) == 20 and list(a) == sorted(a)
    assert a != sample_clients(3, 1, 1000, 20) and a != sample_clients(4, 0, 1000, 20)
    assert all(0 <= i < 1000 for i in a)
    # every client is drawn about equally often over many rounds
    counts = [0] * 50
    for r in range(500):
        for i in sample_clients(3, r, 50, 5):
            counts[i] += 1
    assert min(counts) > 20 and max(counts) < 80


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"count": 11}, r"clients_per_round.*<= 10 \(the clients that exist\)"),
        ({"count": 0}, r"clients_per_round.*>= 1"),
        ({"fraction": 1.5}, r"client_fraction.*\(0, 1\]"),
        ({"fraction": 0.0}, r"client_fraction.*\(0, 1\]"),
        ({"count": 2, "fraction": 0.5}, r"clients_per_round.*unset when client_fraction"),
    ],
)
def test_bad_counts_name_the_field(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ParameterError, match=match):
        per_round_count(10, **kwargs)


def test_server_round_holds_only_the_sampled_clients() -> None:
    ops = server_round(0, 1000, sampled=(3, 70))
    assert ops.trains == (3, 70) and len(ops.chains) == 2 and len(ops.sends) == 4
    assert server_round(0, 3).trains == (0, 1, 2)


def test_fraction_follows_flowers_rule() -> None:
    assert per_round_count(500, fraction=0.02) == 10
    assert per_round_count(10, fraction=0.01) == 1
    assert per_round_count(7) == 7


def test_round_plan_and_network_half_see_only_the_sampled_clients() -> None:
    sc = parse_scenario(yaml.safe_dump(crowd()))
    nrun = simulate_network(sc)
    job, tl = nrun.job, nrun.timeline
    assert tl.rounds_done == 3
    for r in range(3):
        sampled = sample_clients(11, r, 40, 5)
        assert job.plan(r).trains == sampled
        assert set(tl.participants[r]) <= set(sampled)
        nodes = {op["node"] for op in tl.ops if op["round"] == r and op["op"] == "local-update"}
        assert nodes == {job.names[i] for i in sampled}
    # cost grows with the clients sampled: one download and one upload each
    assert nrun.net.summary().delivered == 3 * 2 * 5
    # sampling is part of the learning identity (reuse across sweep points)
    full = simulate_network(parse_scenario(yaml.safe_dump(crowd(per_round=None, rounds=1))))
    assert full.job.identity() != job.identity()
    assert full.net.summary().delivered == 2 * 40


def spy_trained_clients(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, ...]]:
    """A list that records, for each ``FedAvg.train_clients`` call, the clients it trains."""
    from qfl.algorithms.fedavg import FedAvg

    trained: list[tuple[int, ...]] = []
    original = FedAvg.train_clients

    def spy(self: FedAvg, starts: Any, epochs: int, stream: int) -> Any:
        trained.append(tuple(i for i, s in enumerate(starts) if s is not None))
        return original(self, starts, epochs, stream)

    monkeypatch.setattr(FedAvg, "train_clients", spy)
    return trained


def test_learning_half_trains_only_the_sampled_clients(monkeypatch: pytest.MonkeyPatch) -> None:
    sc = parse_scenario(yaml.safe_dump(crowd(rounds=2)))
    nrun = simulate_network(sc)
    trained = spy_trained_clients(monkeypatch)
    rows: list[Any] = []
    execute_learning(nrun, lambda r, new: rows.extend(new))
    assert trained == [sample_clients(11, r, 40, 5) for r in range(2)]
    mean = [x for x in rows if x.node == "mean"]
    assert [x.round for x in mean] == [1, 2] and 0 <= mean[-1].global_acc <= 1


def test_group_size_does_not_change_the_numbers() -> None:
    """Training the sampled clients in memory-bounded groups gives the same model."""
    import torch

    from qfl.algorithms.fedavg import FedAvg, FedAvgConfig
    from qfl.data import TensorDataset
    from qfl.models import FeatureCNN

    gen = torch.Generator().manual_seed(0)
    sets = [
        TensorDataset(
            torch.randn(6, 1, 28, 28, generator=gen), torch.arange(6), tuple("abcdef"), f"c{i}"
        )
        for i in range(6)
    ]

    def loss(out: Any, y: torch.Tensor, t: Any) -> torch.Tensor:
        return torch.nn.functional.cross_entropy(out[0], y)

    model = FeatureCNN()
    init = {k: v.detach().clone() for k, v in model.named_parameters()}
    finals = []
    for group in (None, 2):
        cfg = FedAvgConfig(rounds=1, local_epochs=1, batch_size=4, engine="sequential",
                           group_size=group)  # fmt: skip
        fed = FedAvg(model, sets, loss_fn=loss, config=cfg, seed=1, initial_params=init)
        fed.selected = (0, 2, 3, 5)
        fed.run_round()
        finals.append(fed.params)
    assert all(torch.allclose(finals[0][k], finals[1][k], atol=1e-6) for k in finals[0])
    assert not torch.equal(finals[0]["fc.weight"], init["fc.weight"])


def test_decentralized_methods_refuse_client_sampling() -> None:
    from qfl.cosim.netbuild import check_network
    from qfl.cosim.run import build_job

    d = crowd(n=4, per_round=2, method="def-fd", model=None, server=None, partition=None)
    d["learning"].pop("model", None)
    d["learning"].pop("server", None)
    sc = parse_scenario(yaml.safe_dump(d))
    with pytest.raises(ScenarioError, match=r"learning\.clients_per_round.*senders_per_round"):
        build_job(sc, check_network(sc))


@pytest.mark.parametrize(
    ("patch", "env", "expected"),
    [
        ({"clients_per_round": 41}, {}, r"learning\.clients_per_round: must be <= 40"),
        ({"clients_per_round": None, "client_fraction": 1.5}, {}, r"learning\.client_fraction"),
        ({}, {"QFL_MEMORY": "1K"}, r"QFL_MEMORY: must be at least one client's working set"),
        ({}, {"QFL_MEMORY": "lots"}, r"QFL_MEMORY: must be a size in bytes"),
        ({"--memory": "1K"}, {}, r"--memory: must be at least one client's working set"),
        ({"--memory": "-3G"}, {}, r"--memory: must be a size in bytes"),
        ({"--executor": "dask"}, {}, r"--executor: must be one of local, ray"),
    ],
)
def test_bad_input_is_one_line_exit_2(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    patch: dict[str, Any],
    env: dict[str, str],
    expected: str,
) -> None:
    import re

    d = crowd(n=40, rounds=1)
    options = [x for k, v in patch.items() if k.startswith("--") for x in (k, v)]
    for k, v in patch.items():
        if k.startswith("--"):
            continue
        if v is None:
            d["learning"].pop(k, None)
        else:
            d["learning"][k] = v
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump(d), encoding="utf-8")
    args = ["simulate", str(f), "-o", str(tmp_path / "out"), "--no-plots", *options]
    msg = run_bad(capsys, args)
    assert re.search(expected, msg), msg


def test_a_sampled_client_that_is_down_fails_and_is_not_replaced(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Availability: the draw ignores the network; a sampled client whose node is down for
    good fails in the network half, sits the round out, and nobody takes its place."""
    first = sample_clients(11, 0, 40, 5)
    down = f"e{first[0]:02d}"
    d = crowd(rounds=2)
    d["faults"] = [{"kind": "node-down", "at_s": 0, "node": down}]
    nrun = simulate_network(parse_scenario(yaml.safe_dump(d)))
    tl = nrun.timeline
    assert tl.rounds_done == 2
    assert set(tl.participants[0]) == set(first) - {first[0]}
    assert any(src == "dc" and dst == down for _, src, dst, _ in tl.dropped)
    trained = spy_trained_clients(monkeypatch)
    execute_learning(nrun, lambda r, new: None)
    assert trained[0] == tuple(i for i in first if i != first[0])
