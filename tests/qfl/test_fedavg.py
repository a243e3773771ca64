"""FedAvg with a server: masked aggregation, transport traffic, engines, multi-exit clients."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from qfl.algorithms.fedavg import (
    DOWNLOAD_TAG,
    UPLOAD_TAG,
    ClientUpdate,
    FedAvg,
    FedAvgConfig,
    aggregate,
    exit_accuracies,
    masked_average,
    payload_bytes,
    run_fedavg,
    star_transport,
)
from qfl.data import TensorDataset
from qfl.data.har_synthetic import synthetic_har
from qfl.experiments.multiexit import (
    MultiExitExperiment,
    client_data,
    run_multiexit_experiment,
)
from qfl.losses.multiexit import multi_exit_loss
from qfl.models.multiexit import MultiExitLSTM, exit_parameter_mask, reinitialize
from qkd.errors import ParameterError, UnknownNameError


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """Small tensors on a shared 2-core machine: more threads only oversubscribe (restored)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ---------------------------------------------------------------- aggregation math


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 5),
    seed=st.integers(0, 2**16),
    mask_bits=st.lists(st.booleans(), min_size=10, max_size=10),
)
def test_masked_average_is_the_weighted_mean_over_senders(
    n: int, seed: int, mask_bits: list[bool]
) -> None:
    g = torch.Generator().manual_seed(seed)
    stacked = {"a": torch.randn(n, 3, generator=g), "b": torch.randn(n, 2, 2, generator=g)}
    w = torch.rand(n, generator=g, dtype=torch.float64) + 0.1
    mask = {"a": torch.tensor(mask_bits[:n]), "b": torch.tensor(mask_bits[5 : 5 + n])}
    current = {"a": torch.full((3,), 7.0), "b": torch.full((2, 2), -7.0)}
    out = masked_average(stacked, w, mask, current)
    for name in stacked:
        m = mask[name].double()
        if m.sum() == 0:
            assert torch.equal(out[name], current[name])  # nobody sent it: unchanged
            continue
        expected = sum((w[i] * m[i] / (w * m).sum()).item() * stacked[name][i] for i in range(n))
        torch.testing.assert_close(out[name], expected, rtol=1e-5, atol=1e-6)
    # full mask = plain FedAvg; identical clients -> that value (convex combination)
    same = {"a": stacked["a"][:1].expand(n, 3), "b": stacked["b"][:1].expand(n, 2, 2)}
    avg = masked_average(same, w, None, current)
    torch.testing.assert_close(avg["a"], stacked["a"][0])


def test_aggregate_averages_each_parameter_over_its_senders() -> None:
    cur = {"shallow": torch.zeros(2), "deep": torch.zeros(2), "unsent": torch.ones(2)}
    ups = [
        ClientUpdate({"shallow": torch.full((2,), 1.0), "deep": torch.full((2,), 10.0)}, 10, 0),
        ClientUpdate({"shallow": torch.full((2,), 4.0)}, 30, 0),  # limited to a shallow exit
    ]
    out = aggregate(cur, ups)
    torch.testing.assert_close(out["shallow"], torch.full((2,), (10 * 1 + 30 * 4) / 40))
    torch.testing.assert_close(out["deep"], torch.full((2,), 10.0))
    torch.testing.assert_close(out["unsent"], torch.ones(2))
    assert aggregate(cur, [])["deep"].equal(cur["deep"])
    with pytest.raises(UnknownNameError, match="update parameter"):
        aggregate(cur, [ClientUpdate({"nope": torch.zeros(2)}, 1, 0)])


def test_masked_average_rejects_bad_weights() -> None:
    x = {"a": torch.zeros(2, 1)}
    with pytest.raises(ParameterError, match="weights: must be a 1-D tensor of values >= 0"):
        masked_average(x, torch.tensor([1.0, -1.0]), None, {"a": torch.zeros(1)})
    with pytest.raises(ParameterError, match=r"stacked\['a'\]: must be 3 rows"):
        masked_average(x, torch.ones(3), None, {"a": torch.zeros(1)})


def test_payload_bytes_and_star_transport() -> None:
    assert payload_bytes({"w": torch.zeros(4, 4)}) == 64
    t = star_transport(["a", "b"], server="srv")
    assert t.neighbours("srv") == ["a", "b"] and t.neighbours("a") == ["srv"]


def test_config_validation() -> None:
    with pytest.raises(ParameterError, match="rounds: must be an integer >= 1"):
        FedAvgConfig(rounds=0)
    with pytest.raises(
        UnknownNameError, match="engine: must be one of 'auto', 'batched', 'sequential'"
    ):
        FedAvgConfig(engine="threads")
    with pytest.raises(ParameterError, match="lr: must be > 0"):
        FedAvgConfig(lr=0.0)


# ---------------------------------------------------------------- the algorithm


def _har_clients(n_clients: int = 3, per_client: int = 24, length: int = 12):
    data = synthetic_har(n_clients * per_client * 2, seed=3, length=length)
    idx = np.arange(len(data))
    trains = [data.subset(idx[i * per_client : (i + 1) * per_client]) for i in range(n_clients)]
    off = n_clients * per_client
    holds = [
        data.subset(idx[off + i * per_client : off + (i + 1) * per_client])
        for i in range(n_clients)
    ]
    # uneven client sizes: exercises the engine's validity masks
    trains[0] = trains[0].subset(np.arange(per_client - 7))
    return trains, holds


def _lstm(dropout: float = 0.0) -> MultiExitLSTM:
    return reinitialize(MultiExitLSTM(3, 17, hidden_size=8, dropout=dropout), 11)


def _loss(outputs: tuple[torch.Tensor, ...], y: torch.Tensor, teacher: object) -> torch.Tensor:
    del teacher
    return multi_exit_loss(outputs, y, C=1.0, temperature=2.0)


def _cfg(**kw: object) -> FedAvgConfig:
    base = {"rounds": 2, "local_epochs": 1, "batch_size": 8, "lr": 0.05, "momentum": 0.9}
    base.update(kw)
    return FedAvgConfig(**base)  # type: ignore[arg-type]


def test_batched_and_sequential_engines_agree() -> None:
    trains, holds = _har_clients()
    results = {}
    for engine in ("batched", "sequential"):
        results[engine] = run_fedavg(
            _lstm(dropout=0.5),
            trains,
            holds,
            loss_fn=_loss,
            config=_cfg(engine=engine),
            client_exits=[3, 1, 2],
            seed=5,
        )
    a, b = results["batched"], results["sequential"]
    for name in a.params:
        torch.testing.assert_close(a.params[name], b.params[name], atol=1e-5, rtol=1e-4)
    for x, y in zip(a.history, b.history, strict=True):
        np.testing.assert_allclose(x.exit_acc, y.exit_acc)
        assert (x.bytes_down, x.bytes_up) == (y.bytes_down, y.bytes_up)


def test_clients_limited_to_an_exit_train_and_upload_only_its_parameters() -> None:
    trains, _ = _har_clients()
    model = _lstm()
    transport = star_transport([0, 1, 2])
    fed = FedAvg(
        model,
        trains,
        loss_fn=_loss,
        config=_cfg(),
        client_exits=[1, 1, 2],
        transport=transport,
        seed=0,
    )
    before = {k: v.clone() for k, v in fed.params.items()}
    down, up = fed.run_round()
    mask1 = exit_parameter_mask(model, 1)
    mask2 = exit_parameter_mask(model, 2)
    sizes = {k: v.numel() * 4 for k, v in before.items()}
    bytes1 = sum(s for k, s in sizes.items() if mask1[k])
    bytes2 = sum(s for k, s in sizes.items() if mask2[k])
    assert down == up == 2 * bytes1 + bytes2
    assert transport.bytes_sent == down + up
    tags = [m.tag for m in transport.log]
    assert tags.count(DOWNLOAD_TAG) == 3 and tags.count(UPLOAD_TAG) == 3
    for name, m in mask2.items():
        changed = not torch.equal(fed.params[name], before[name])
        assert changed == m, name  # layer 3 and exit 3 are nobody's: unchanged
    assert fed.round == 1
    tuned = fed.finetuned(1)  # local fine-tuning: each client returns what it trains
    assert set(tuned[0]) == {n for n, m in mask1.items() if m}
    assert set(tuned[2]) == {n for n, m in mask2.items() if m}
    assert transport.bytes_sent == down + up  # fine-tuning sends nothing
    with pytest.raises(ParameterError, match="epochs: must be an integer >= 1"):
        fed.finetuned(0)


def test_a_client_without_download_sits_out_and_stale_updates_are_ignored() -> None:
    trains, _ = _har_clients()
    fed = FedAvg(_lstm(), trains, loss_fn=_loss, config=_cfg(), seed=0)
    assert fed.local_training() == 0  # nothing was broadcast: nobody trains or uploads
    assert fed.transport.receive("server") == []
    # Only client 1's download arrives (the others' transfers failed): only it uploads.
    part = dict(fed.params)
    fed.transport.send("server", 1, part, n_bytes=0, tag=DOWNLOAD_TAG)
    assert fed.local_training() > 0
    assert [m.src for m in fed.transport.receive("server")] == [1]
    fed.transport.send(0, "server", ClientUpdate({}, 5, round=-1), n_bytes=0, tag=UPLOAD_TAG)
    assert fed.aggregate_updates() == 0


def test_fedavg_validates_its_inputs() -> None:
    trains, _ = _har_clients()
    with pytest.raises(ParameterError, match=r"client_exits\[1\]: must be in \[1, 3\]"):
        FedAvg(_lstm(), trains, loss_fn=_loss, config=_cfg(), client_exits=[1, 4, 1])
    with pytest.raises(ParameterError, match="client_exits: must be one entry per client"):
        FedAvg(_lstm(), trains, loss_fn=_loss, config=_cfg(), client_exits=[1])
    with pytest.raises(ParameterError, match="server"):
        FedAvg(_lstm(), trains, loss_fn=_loss, config=_cfg(), clients=["a", "b", "server"])


def test_exit_accuracies_per_client_and_exit() -> None:
    model = _lstm()
    params = dict(model.named_parameters())
    x = torch.randn(10, 5, 3, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        preds = [o.argmax(-1) for o in model.eval()(x)]
    ds = TensorDataset(x, preds[1].clone(), tuple(str(i) for i in range(17)), "t")
    acc = exit_accuracies(model, params, [ds.subset(range(4)), ds.subset(range(4, 10))])
    assert acc.shape == (2, 3)
    assert torch.all(acc[:, 1] == 1.0)  # labels = exit 2's own predictions
    expected = (preds[0][:4] == preds[1][:4]).double().mean()
    torch.testing.assert_close(acc[0, 0], expected)


def test_har_pipeline_end_to_end_on_synthetic_data() -> None:
    exp = MultiExitExperiment(
        dataset="synthetic-har",
        n_clients=3,
        alpha=1.0,
        pool_size=72,
        width=4,
        client_exits="tiers",
        target_accuracy=0.2,
        fedavg=_cfg(rounds=1, local_epochs=1, batch_size=32, engine="sequential"),
        seed=1,
    )
    trains, holds = client_data(exp)
    assert len(trains) == len(holds) == 3
    assert all(d.x.shape[1:] == (151, 3) for d in trains)
    out = run_multiexit_experiment(exp)
    assert out["client_exits"] == [1, 2, 3]
    assert len(out["me"]["exit_acc"]) == 3 and len(out["baseline"]["exit_acc"]) == 1
    assert len(out["me"]["curve"]) == 1
    assert out["exit_flops"][0] < out["exit_flops"][1] < out["exit_flops"][2]
    # Accuracies are means over the clients of a share of each one's held-out samples (three
    # or four here: the untrained-for-long models may well get none right).
    sizes = out["data"]["holdout_sizes"]
    means = {
        round(float(np.mean([k / n for k, n in zip(ks, sizes, strict=True)])), 9)
        for ks in itertools.product(*(range(n + 1) for n in sizes))
    }
    me, base = out["me"], out["baseline"]
    for acc in [me["personalized_acc"], *me["exit_acc"], base["personalized_acc"]]:
        assert round(acc, 9) in means, acc
    assert me["curve"] == [me["personalized_acc"]]
    assert base["personalized_acc"] == pytest.approx(base["exit_acc"][0])  # its one exit
    assert out["settings"]["fedavg"]["rounds"] == 1
    assert out["me"]["finetuned_personalized_acc"] is None
    # Each method alone (as repro_multiexit.py --jobs 2 runs them, one per process) gives
    # the numbers of the joint run: the two are independent given the experiment.
    only_me = run_multiexit_experiment(exp, baseline=False)
    only_base = run_multiexit_experiment(exp, multi_exit=False)
    assert "baseline" not in only_me and "me" not in only_base
    assert only_me["me"] == out["me"] and only_base["baseline"] == out["baseline"]
    assert only_base["exit_flops"] == out["exit_flops"]


def test_run_fedavg_records_rounds_and_optional_finetuning() -> None:
    trains, holds = _har_clients()
    seen: list[int] = []
    res = run_fedavg(
        _lstm(),
        trains,
        holds,
        loss_fn=_loss,
        config=_cfg(rounds=2),
        client_exits=[1, 2, 3],
        seed=2,
        finetune_epochs=1,
        on_round=lambda rec: seen.append(rec.round),
    )
    assert seen == [1, 2] and [r.round for r in res.history] == [1, 2]
    rec = res.final
    assert len(rec.exit_acc) == 3 and len(rec.client_acc) == 3
    assert rec.personalized_acc == pytest.approx(float(np.mean(rec.client_acc)))
    assert res.finetuned_client_acc is not None and len(res.finetuned_client_acc) == 3
    assert res.finetuned_personalized_acc == pytest.approx(np.mean(res.finetuned_client_acc))
    assert res.rounds_to_target(0.0) == 1 and res.rounds_to_target(1.01) is None


def test_experiment_validation() -> None:
    with pytest.raises(UnknownNameError, match="dataset"):
        MultiExitExperiment(dataset="unimib")
    with pytest.raises(UnknownNameError, match="temperature"):
        MultiExitExperiment(temperature="hot")
