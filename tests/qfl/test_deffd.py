"""Def-FD, Def-KT and gossip averaging: schedule, operations, engines, determinism, input."""

from __future__ import annotations

from pathlib import Path

import networkx as nx
import numpy as np
import pytest
import torch

from qfl.algorithms import (
    ClientData,
    DecentralizedLearner,
    DefFDConfig,
    RoundPlan,
    plan_round,
    run_decentralized,
    run_round,
)
from qfl.algorithms.transport import InMemoryTransport
from qfl.data import TensorDataset, load_fashion_mnist
from qfl.experiments import DefFDSetup, make_clients, method_config, run_deffd_experiment
from qfl.models import FeatureCNN
from qkd.errors import ParameterError, UnknownNameError

CLASSES = tuple(str(i) for i in range(4))


def _toy_clients(n: int = 4, per_client: int = 20, seed: int = 0) -> list[ClientData]:
    """Tiny image data whose class is visible in the mean brightness of one quadrant."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        parts = []
        for size in (per_client, per_client // 4):
            y = torch.randint(0, 4, (size,), generator=g)
            x = 0.3 * torch.randn(size, 1, 8, 8, generator=g)
            for k in range(4):
                r, c = divmod(k, 2)
                x[y == k, :, 4 * r : 4 * r + 4, 4 * c : 4 * c + 4] += 1.0
            parts.append(TensorDataset(x, y, CLASSES, f"toy{i}"))
        out.append(ClientData(train=parts[0], holdout=parts[1]))
    return out


def _toy_model() -> FeatureCNN:
    return FeatureCNN(in_channels=1, num_classes=4, image_size=8, channels=(3, 4, 4))


def _learner(config: DefFDConfig, seed: int = 0, n: int = 4) -> DecentralizedLearner:
    clients = _toy_clients(n)
    test = clients[0].holdout
    return DecentralizedLearner(_toy_model(), clients, test, config, seed=seed)


def _run(config: DefFDConfig, seed: int = 0, rounds: int = 2):
    learner = _learner(config, seed)
    result = run_decentralized(learner, InMemoryTransport(4), rounds)
    return learner, result


FAST = {"batch_size": 8, "lr": 0.05}


# ------------------------------------------------------------------------------ schedule


def test_plan_is_disjoint_distinct_and_deterministic() -> None:
    t = InMemoryTransport(10)
    for r in range(20):
        p = plan_round(r, range(10), t.neighbours, 5, seed=3)
        assert p == plan_round(r, range(10), t.neighbours, 5, seed=3)
        assert len(p.senders) == 5 and len(p.transfers) == 5  # complete graph: always a match
        assert set(p.senders).isdisjoint(p.receivers)
        assert len(set(p.receivers)) == 5
        assert {tr.src for tr in p.transfers} == set(p.senders)
    plans = [plan_round(r, range(10), t.neighbours, 5, seed=3) for r in range(20)]
    assert len({p.senders for p in plans}) > 1  # senders change from round to round
    other = [plan_round(r, range(10), t.neighbours, 5, seed=4) for r in range(20)]
    assert plans != other


def test_plan_respects_the_topology() -> None:
    ring = InMemoryTransport(nx.cycle_graph(8))
    for r in range(30):
        p = plan_round(r, range(8), ring.neighbours, 3, seed=0)
        for tr in p.transfers:
            assert tr.dst in ring.neighbours(tr.src)
            assert tr.dst not in p.senders
        assert len(set(p.receivers)) == len(p.transfers)
    # A star: all leaves are senders' only neighbour is the hub; only one can send to it.
    star = InMemoryTransport(nx.star_graph(4))
    p = plan_round(0, range(5), star.neighbours, 2, seed=0)
    assert len(p.transfers) <= 2
    assert all(tr.dst not in p.senders for tr in p.transfers)


def test_plan_bad_input() -> None:
    t = InMemoryTransport(4)
    with pytest.raises(ParameterError, match=r"n_senders: must be in \[1, 4\], got 5"):
        plan_round(0, range(4), t.neighbours, 5, seed=0)
    with pytest.raises(ParameterError, match=r"index: must be >= 0, got -1"):
        plan_round(-1, range(4), t.neighbours, 2, seed=0)
    with pytest.raises(ParameterError, match=r"seed: must be an int >= 0"):
        plan_round(0, range(4), t.neighbours, 2, seed=-3)


# --------------------------------------------------------------------------- validation


def test_config_rejects_bad_values_naming_them() -> None:
    with pytest.raises(ParameterError, match=r"gamma: must be >= 0, got -0.1"):
        DefFDConfig(gamma=-0.1)
    with pytest.raises(
        UnknownNameError, match=r"feature_loss: must be one of 'l2', 'cos', 'mse', got 'kl'"
    ):
        DefFDConfig(feature_loss="kl")
    with pytest.raises(UnknownNameError, match=r"method: must be one of .*got 'fedavg'"):
        DefFDConfig(method="fedavg")
    with pytest.raises(
        UnknownNameError, match=r"engine: must be one of 'auto', 'batched', 'sequential', got 'gpu'"
    ):
        DefFDConfig(engine="gpu")
    with pytest.raises(ParameterError, match=r"temperature: must be > 0, got 0"):
        DefFDConfig(temperature=0)
    with pytest.raises(ParameterError, match=r"fusion_epochs: must be an int >= 1, got 0"):
        DefFDConfig(fusion_epochs=0)
    with pytest.raises(ParameterError, match=r"senders_per_round: must be in \[1, 2\] for 4"):
        DefFDConfig(senders_per_round=3).n_senders(4)
    with pytest.raises(UnknownNameError, match=r"method: must be one of .*got 'def-fd-kl'"):
        method_config("def-fd-kl", DefFDConfig())
    with pytest.raises(ParameterError, match=r"gamma: must be None for 'def-kt'"):
        method_config("def-kt", DefFDConfig(), gamma=0.02)


def test_too_many_classes_per_client() -> None:
    clients = _toy_clients(1)
    data = clients[0].train
    with pytest.raises(ParameterError, match=r"classes_per_client: must be <= 4 .*got 5"):
        make_clients(data, data, DefFDSetup(n_clients=2, classes_per_client=5))
    with pytest.raises(ParameterError, match=r"n_clients: must be an int >= 2, got 1"):
        DefFDSetup(n_clients=1)
    with pytest.raises(UnknownNameError, match=r"methods: must be one of .*got 'avg'"):
        run_deffd_experiment(DefFDSetup(), methods=["avg"], data=(data, data))


def test_learner_rejects_bad_clients() -> None:
    clients = _toy_clients(2)
    with pytest.raises(ParameterError, match=r"clients: must be at least 2 clients"):
        DecentralizedLearner(_toy_model(), clients[:1], clients[0].holdout, DefFDConfig(), seed=0)
    learner = _learner(DefFDConfig(**FAST))
    with pytest.raises(ParameterError, match=r"clients: must be a client in \[0, 3\], got 4"):
        learner.local_update([4], round_index=0)
    with pytest.raises(ParameterError, match=r"clients: must be distinct clients"):
        learner.local_update([1, 1], round_index=0)


# --------------------------------------------------------------------------- operations


def _changed(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> list[int]:
    n = next(iter(before.values())).shape[0]
    return [i for i in range(n) if any(not torch.equal(before[k][i], after[k][i]) for k in before)]


@pytest.mark.parametrize("method", ["def-fd", "def-kt", "gossip-avg"])
def test_a_round_changes_exactly_senders_and_receivers(method: str) -> None:
    learner = _learner(DefFDConfig(method=method, **FAST))
    t = InMemoryTransport(4)
    plan = plan_round(0, range(4), t.neighbours, 2, seed=0, evaluate=True)
    before = {k: v.clone() for k, v in learner.params.items()}
    metrics = run_round(learner, t, plan)
    assert metrics is not None and metrics.round == 1
    assert _changed(before, learner.params) == sorted(plan.senders + plan.receivers)
    assert len(t.log) == len(plan.transfers)
    assert all(m.n_bytes == sum(v[0].numel() * 4 for v in before.values()) for m in t.log)


def test_gossip_average_is_the_mean_of_the_two_models() -> None:
    learner = _learner(DefFDConfig(method="gossip-avg", **FAST))
    learner.local_update([0], round_index=0)
    sent = learner.snapshot(0, round_index=0)
    own = {k: v[3].clone() for k, v in learner.params.items()}
    t = InMemoryTransport(4)
    t.send(0, 3, sent, n_bytes=sent.n_bytes, tag="model")
    learner.fuse(t.receive(3), round_index=0)
    for k, v in learner.params.items():
        torch.testing.assert_close(v[3], 0.5 * (own[k] + sent.params[k]))
        torch.testing.assert_close(v[0], sent.params[k])  # the sender keeps its model


def test_deffd_fusion_uses_the_feature_loss_and_defkt_differs() -> None:
    finals = {}
    for name, cfg in {
        "kd-only": DefFDConfig(gamma=0.0, **FAST),
        "l2": DefFDConfig(gamma=0.5, feature_loss="l2", **FAST),
        "cos": DefFDConfig(gamma=0.5, feature_loss="cos", **FAST),
        "kt": DefFDConfig(method="def-kt", **FAST),
    }.items():
        learner, _ = _run(cfg, rounds=1)
        finals[name] = torch.cat([v.flatten() for v in learner.params.values()])
    names = list(finals)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert not torch.equal(finals[a], finals[b]), (a, b)


def test_two_messages_for_one_receiver_are_fused_in_turn() -> None:
    learner = _learner(DefFDConfig(**FAST))
    t = InMemoryTransport(4)
    for src in (0, 1):
        p = learner.snapshot(src, round_index=0)
        t.send(src, 2, p, n_bytes=p.n_bytes, tag="model")
    before = {k: v.clone() for k, v in learner.params.items()}
    learner.fuse(t.receive(2), round_index=0)
    assert _changed(before, learner.params) == [2]
    with pytest.raises(ParameterError, match=r"arrivals.payload: must be a ModelPayload"):
        t.send(0, 2, "weights", n_bytes=1, tag="model")
        learner.fuse(t.receive(2), round_index=0)


# ----------------------------------------------------------------- engines, determinism


@pytest.mark.parametrize("method", ["def-fd", "def-kt", "gossip-avg"])
def test_batched_and_sequential_engines_agree(method: str) -> None:
    kw = {"method": method, "gossip_epochs": 1, **FAST}
    lb, rb = _run(DefFDConfig(engine="batched", **kw))
    ls, rs = _run(DefFDConfig(engine="sequential", **kw))
    assert rb.plans == rs.plans
    for k in lb.params:
        torch.testing.assert_close(lb.params[k], ls.params[k], rtol=1e-4, atol=1e-5)
    assert rb.history == rs.history


def test_same_seed_same_metrics_other_seed_other_models() -> None:
    cfg = DefFDConfig(method="def-fd", feature_loss="mse", gamma=0.03, **FAST)
    la, ra = _run(cfg, seed=5)
    lb, rb = _run(cfg, seed=5)
    lc, _ = _run(cfg, seed=6)
    assert ra.history == rb.history and ra.plans == rb.plans
    assert all(torch.equal(la.params[k], lb.params[k]) for k in la.params)
    assert not all(torch.equal(la.params[k], lc.params[k]) for k in la.params)
    assert len(ra.history) == 2 and [m.round for m in ra.history] == [1, 2]
    assert ra.bytes_sent == 2 * 2 * sum(v[0].numel() * 4 for v in la.params.values())


def test_result_types() -> None:
    learner, res = _run(DefFDConfig(**FAST), rounds=3)
    assert all(isinstance(p, RoundPlan) for p in res.plans)
    m = res.final
    assert len(m.global_acc) == len(m.local_acc) == 4
    # each accuracy is the share of right answers of that client's final model
    for i, client in enumerate(learner.clients):
        params = {k: v[i] for k, v in learner.params.items()}
        for data, acc in ((learner.test, m.global_acc[i]), (client.holdout, m.local_acc[i])):
            with torch.no_grad():
                logits, _ = torch.func.functional_call(learner.model, params, (data.x,))
            assert acc == pytest.approx((logits.argmax(-1) == data.y).double().mean().item())
    assert m.global_mean == pytest.approx(np.mean(m.global_acc))
    assert m.local_std == pytest.approx(np.std(m.local_acc))


# --------------------------------------------------------------- on Fashion-MNIST itself


def test_fashion_mnist_runner_learns(fashion_mnist_dir: Path) -> None:
    data = load_fashion_mnist(fashion_mnist_dir, download=False)
    setup = DefFDSetup(
        n_clients=4, samples_per_client=150, test_samples=300, rounds=4, eval_every=2, seed=1
    )
    base = DefFDConfig(batch_size=16, lr=0.05)
    results = run_deffd_experiment(setup, base, ["def-fd-l2", "gossip-avg"], data=data)
    assert list(results) == ["def-fd-l2", "gossip-avg"]
    clients, _ = make_clients(*data, setup)
    for c in clients:
        assert len(np.unique(c.train.y.numpy())) == 8
        assert len(c.train) + len(c.holdout) == 150
        assert 26 <= len(c.holdout) <= 34  # 20%, stratified by class (rounded per class)
    for res in results.values():
        assert [m.round for m in res.history] == [2, 4]
        assert res.final.local_mean > 0.3  # well above chance (1/8 of the local classes)
        assert res.final.global_mean > 0.2
