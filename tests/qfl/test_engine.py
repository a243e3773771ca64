"""The batched engine against the per-client reference, and its parts."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import vmap

from qfl.engine import (
    BatchedTrainer,
    ClientBatcher,
    KeyedDropout,
    SequentialTrainer,
    adam,
    client_seed_sequences,
    evaluate,
    load_into,
    sgd,
    stack_models,
    unstack,
)
from qfl.engine.random import fold_in, normal, randint, replace_dropout, uniform
from qkd.errors import ParameterError, QflError

SIZES = (13, 7, 20)  # unequal client datasets: different step counts and partial batches


class Tiny(nn.Module):
    """A small conv net with feature taps (like FeatureCNN) and optional dropout."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.norm = nn.GroupNorm(2, 4)
        self.drop = nn.Dropout(p)
        self.fc = nn.Linear(4 * 4 * 4, 3)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor]]:
        f = F.max_pool2d(F.relu(self.norm(self.conv(x))), 2)
        return self.fc(self.drop(f.flatten(1))), (f,)


def _models(n: int, p: float = 0.0, seed: int = 0) -> list[Tiny]:
    gen = torch.Generator().manual_seed(seed)
    models = []
    for _ in range(n):
        m = Tiny(p)
        with torch.no_grad():
            for q in m.parameters():
                q.copy_(torch.randn(q.shape, generator=gen) * 0.3)
        models.append(m)
    return models


def _data(sizes=SIZES, seed: int = 1) -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(n, 1, 8, 8, generator=gen), torch.randint(0, 3, (n,), generator=gen))
        for n in sizes
    ]


def ce(out, y, teacher_out):
    return F.cross_entropy(out[0], y)


def distill(out, y, teacher_out):
    """CE + KD + feature MSE against the teacher (Def-FD's shape of loss)."""
    logits, feats = out
    t_logits, t_feats = teacher_out
    kd = F.kl_div(
        F.log_softmax(logits / 2, -1),
        F.log_softmax(t_logits / 2, -1),
        log_target=True,
        reduction="batchmean",
    )
    return F.cross_entropy(logits, y) + 4 * kd + 0.5 * F.mse_loss(feats[0], t_feats[0])


def _both(model, loss_fn, opt, params, data, epochs=2, **kw):
    init = kw.pop("batch_size", 4)
    out = []
    for cls in (BatchedTrainer, SequentialTrainer):
        trainer = cls(model, loss_fn, opt, batch_size=init, **kw.pop("trainer_kw", {}))
        out.append(trainer.train_epochs(params, trainer.init_state(params), data, epochs, **kw))
    return out


def _assert_equal_runs(a, b, atol=1e-5):
    (pa, sa, sta), (pb, sb, stb) = a, b
    assert set(pa) == set(pb)
    for k in pa:
        torch.testing.assert_close(pa[k], pb[k], atol=atol, rtol=1e-4)
    for slot in sa:
        for k in sa[slot]:
            torch.testing.assert_close(sa[slot][k], sb[slot][k], atol=atol, rtol=1e-4)
    assert sta.steps.tolist() == stb.steps.tolist()
    assert sta.samples.tolist() == stb.samples.tolist()
    torch.testing.assert_close(sta.loss, stb.loss, atol=atol, rtol=1e-4)


# -- batched == sequential ----------------------------------------------------------------


@pytest.mark.parametrize(
    "opt",
    [sgd(0.1, momentum=0.9, weight_decay=1e-3, nesterov=True), adam(0.01, weight_decay=1e-3)],
    ids=["sgd-nesterov-wd", "adam-wd"],
)
def test_batched_equals_sequential_unequal_sizes(opt) -> None:
    models = _models(3)
    params, _ = stack_models(models)
    batched, sequential = _both(models[0], ce, opt, params, _data(), seed=7)
    _assert_equal_runs(batched, sequential)
    assert batched[2].steps.tolist() == [2 * 4, 2 * 2, 2 * 5]  # ceil(n / 4) steps per epoch
    assert batched[2].samples.tolist() == [2 * n for n in SIZES]
    moved = max(float((batched[0][k] - params[k]).abs().max()) for k in params)
    assert moved > 1e-2  # the runs did train


def test_batched_equals_sequential_with_teacher() -> None:
    models = _models(3)
    teachers, _ = stack_models(_models(3, seed=5))
    params, _ = stack_models(models)
    opt = sgd(0.05, momentum=0.9)
    batched, sequential = _both(
        models[0], distill, opt, params, _data(), seed=3, teacher_params=teachers
    )
    _assert_equal_runs(batched, sequential)
    # the teacher matters
    trainer = BatchedTrainer(models[0], ce, opt, batch_size=4)
    plain = trainer.train_epochs(params, trainer.init_state(params), _data(), 2, seed=3)
    assert not torch.allclose(plain[0]["fc.weight"], batched[0]["fc.weight"], atol=1e-4)


def test_batched_equals_sequential_with_param_mask() -> None:
    models = _models(3)
    params, _ = stack_models(models)
    mask = {"fc.weight": torch.tensor([True, False, True]), "conv.bias": False}
    for opt in (sgd(0.1, momentum=0.9, weight_decay=0.01), adam(0.01)):
        batched, sequential = _both(models[0], ce, opt, params, _data(), seed=11, param_mask=mask)
        _assert_equal_runs(batched, sequential)
        p, state = batched[0], batched[1]
        assert p["fc.weight"][1].equal(params["fc.weight"][1])  # frozen exactly
        assert p["conv.bias"].equal(params["conv.bias"])
        assert not p["fc.weight"][0].equal(params["fc.weight"][0])
        for slot in state:
            assert not state[slot]["conv.bias"].any()  # state untouched (still zero)


def test_batched_equals_sequential_with_dropout_and_chunks() -> None:
    models = _models(3, p=0.3)
    params, _ = stack_models(models)
    opt = sgd(0.1, momentum=0.9)
    batched, sequential = _both(models[0], ce, opt, params, _data(), seed=5, trainer_kw={})
    _assert_equal_runs(batched, sequential)
    chunked = BatchedTrainer(models[0], ce, opt, batch_size=4, chunk_size=2)
    again = chunked.train_epochs(params, chunked.init_state(params), _data(), 2, seed=5)
    _assert_equal_runs(batched, again)
    # dropout is active and keyed by the seed: same seed -> identical, other seed -> different
    trainer = BatchedTrainer(models[0], ce, opt, batch_size=4)
    same = trainer.train_epochs(params, trainer.init_state(params), _data(), 2, seed=5)
    other = trainer.train_epochs(params, trainer.init_state(params), _data(), 2, seed=6)
    assert all(same[0][k].equal(batched[0][k]) for k in params)
    assert not torch.allclose(other[0]["fc.weight"], batched[0]["fc.weight"])
    no_drop = BatchedTrainer(_models(1, p=0.0)[0], ce, opt, batch_size=4)
    plain = no_drop.train_epochs(params, no_drop.init_state(params), _data(), 2, seed=5)
    assert not torch.allclose(plain[0]["fc.weight"], batched[0]["fc.weight"])


def test_low_level_loss_of_and_client_inputs() -> None:
    """A custom objective (two noisy views, a per-client weight) through both trainers."""
    models = _models(3)
    model = models[0]
    params, _ = stack_models(models)

    def loss_of(p, buffers, batch, key):
        x = batch["x"]
        views = [x + 0.1 * normal(fold_in(key, v), x.shape) for v in (0, 1)]
        z = [torch.func.functional_call(model, p | buffers, (v,))[0] for v in views]
        return F.mse_loss(z[0], z[1]) + batch["w"] * F.cross_entropy(z[0], batch["y"])

    inputs = {"w": torch.tensor([0.0, 1.0, 2.0])}
    out = []
    for cls in (BatchedTrainer, SequentialTrainer):
        trainer = cls(model, None, sgd(0.05, momentum=0.9), batch_size=5, loss_of=loss_of)
        out.append(
            trainer.train_epochs(
                params, trainer.init_state(params), _data(), 1, seed=2, client_inputs=inputs
            )
        )
    _assert_equal_runs(*out)


def test_step_entry_point_matches_train_epochs() -> None:
    models = _models(2)
    params, _ = stack_models(models)
    data = _data((4, 4))
    trainer = BatchedTrainer(models[0], ce, sgd(0.1), batch_size=4)
    full = trainer.train_epochs(params, trainer.init_state(params), data, 1, seed=0)
    batcher = ClientBatcher(data, 4, seed=0)
    (step,) = list(batcher.steps(0))
    (group,) = step.groups
    x, y = batcher.gather(group)
    p, _, losses = trainer.step(params, trainer.init_state(params), {"x": x, "y": y}, group.keys)
    assert all(p[k].equal(full[0][k]) for k in p)
    assert losses.shape == (2,)


def test_same_seed_same_result_and_inputs_untouched() -> None:
    models = _models(3)
    params, _ = stack_models(models)
    keep = {k: v.clone() for k, v in params.items()}
    trainer = BatchedTrainer(models[0], ce, sgd(0.1, momentum=0.5), batch_size=4)
    state = trainer.init_state(params)
    a = trainer.train_epochs(params, state, _data(), 1, seed=np.random.SeedSequence(9))
    b = trainer.train_epochs(params, state, _data(), 1, seed=np.random.SeedSequence(9))
    assert all(a[0][k].equal(b[0][k]) for k in params)
    assert all(params[k].equal(keep[k]) for k in params)
    assert not state["momentum"]["fc.weight"].any()


def test_train_zero_epochs_and_empty_client() -> None:
    models = _models(2)
    params, _ = stack_models(models)
    trainer = BatchedTrainer(models[0], ce, sgd(0.1), batch_size=4)
    p, _, stats = trainer.train_epochs(params, trainer.init_state(params), _data((5, 0)), 1, seed=0)
    assert stats.steps.tolist() == [2, 0]
    assert p["fc.weight"][1].equal(params["fc.weight"][1])
    assert torch.isnan(stats.loss[1, 0])
    p0, _, stats0 = trainer.train_epochs(
        params, trainer.init_state(params), _data((5, 3)), 0, seed=0
    )
    assert stats0.loss.shape == (2, 0) and all(p0[k].equal(params[k]) for k in params)


# -- evaluation ---------------------------------------------------------------------------


def _accuracy_loop(model, params, datasets):
    out = []
    for i, (x, y) in enumerate(datasets):
        m = copy.deepcopy(model).eval()
        load_into(m, unstack(params, i))
        with torch.no_grad():
            out.append(float((m(x)[0].argmax(-1) == y).float().mean()) if len(y) else float("nan"))
    return torch.tensor(out, dtype=torch.float64)


def test_evaluate_shared_and_per_client() -> None:
    models = _models(3, p=0.5)  # dropout must be off in evaluation
    params, _ = stack_models(models)
    data = _data((11, 30, 4), seed=4)
    test = _data((25,), seed=8)[0]
    shared = evaluate(models[0], params, test, batch_size=7, chunk_size=2)
    torch.testing.assert_close(shared, _accuracy_loop(models[0], params, [test] * 3))
    local = evaluate(models[0], params, data, batch_size=8)
    torch.testing.assert_close(local, _accuracy_loop(models[0], params, data))
    empty = evaluate(models[0], params, _data((3, 0, 2)))
    assert torch.isnan(empty[1]) and not torch.isnan(empty[0])


def test_evaluate_multi_exit_outputs() -> None:
    class TwoExit(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Linear(4, 3)
            self.b = nn.Linear(3, 3)

        def forward(self, x):
            h = self.a(x)
            return h, self.b(torch.relu(h))

    models = [TwoExit() for _ in range(2)]
    params, _ = stack_models(models)
    x, y = torch.randn(9, 4), torch.randint(0, 3, (9,))
    acc = evaluate(models[0], params, (x, y))
    assert acc.shape == (2, 2)
    for i, m in enumerate(models):
        with torch.no_grad():
            outs = m(x)
        for e in range(2):
            assert acc[i, e] == pytest.approx(float((outs[e].argmax(-1) == y).float().mean()))


# -- batcher, stacking, randomness --------------------------------------------------------


def test_batcher_covers_each_client_once_per_epoch() -> None:
    data = _data((10, 3, 7))
    batcher = ClientBatcher(data, 4, seed=3)
    seen: dict[int, list[int]] = {0: [], 1: [], 2: []}
    for step in batcher.steps(1):
        assert step.active.tolist() == [step.step < nb for nb in (3, 1, 2)]
        sizes = [g.batch_size for g in step.groups]
        assert sizes == sorted(sizes, reverse=True)
        for g in step.groups:
            for c, rows in zip(g.clients.tolist(), g.index.tolist(), strict=True):
                seen[c].extend(rows)
    for c, n in enumerate((10, 3, 7)):
        assert sorted(seen[c]) == list(range(batcher.offsets[c], batcher.offsets[c] + n))
    # the per-client view gives the same batches and keys
    for c in range(3):
        flat = [g for s in batcher.steps(1) for g in s.groups if c in g.clients.tolist()]
        for (x, _, key), g in zip(batcher.client_batches(c, 1), flat, strict=True):
            j = g.clients.tolist().index(c)
            assert x.equal(batcher.x[g.index[j]]) and int(key) == int(g.keys[j])
    assert not batcher.permutation(0, 0).equal(batcher.permutation(0, 1))
    dropped = ClientBatcher(data, 4, seed=3, drop_last=True)
    assert dropped.n_batches == (2, 0, 1)


def test_client_seeds() -> None:
    ss = np.random.SeedSequence(4)
    a = client_seed_sequences(ss, 3)
    b = client_seed_sequences(ss, 3)  # not mutated by the first call
    assert [s.generate_state(1)[0] for s in a] == [s.generate_state(1)[0] for s in b]
    explicit = client_seed_sequences([5, 6], 2)
    assert explicit[0].entropy == 5
    with pytest.raises(
        ParameterError, match=r"seed: must be one seed per client \(3\), got '2 seeds'"
    ):
        client_seed_sequences([1, 2], 3)
    with pytest.raises(ParameterError, match=r"seed: must be a non-negative int"):
        client_seed_sequences(-1, 3)


def test_stack_unstack_load_into() -> None:
    models = _models(2)
    params, buffers = stack_models(models)
    assert params["conv.weight"].shape == (2, 4, 1, 3, 3) and buffers == {}
    fresh = Tiny()
    load_into(fresh, unstack(params, 1))
    assert all(fresh.state_dict()[k].equal(models[1].state_dict()[k]) for k in params)
    with pytest.raises(ParameterError, match=r"i: must be in \[-2, 2\), got 2"):
        unstack(params, 2)
    with pytest.raises(ParameterError, match=r"params_i: must be every parameter"):
        load_into(fresh, {"fc.bias": torch.zeros(3)})
    with pytest.raises(ParameterError, match=r"models\[1\].fc.weight: must be \(3, 64\)"):
        stack_models([models[0], _Wide()])


class _Wide(Tiny):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4 * 4 * 4, 5)


def test_keyed_random_numbers() -> None:
    keys = torch.tensor([1, 2, 3], dtype=torch.int64)
    batched = vmap(lambda k: uniform(k, (1000,)))(keys)
    for i, k in enumerate(keys):
        assert batched[i].equal(uniform(k, (1000,)))
    assert not batched[0].equal(batched[1])
    u = uniform(7, (20000,))
    assert 0.0 <= float(u.min()) and float(u.max()) < 1.0 and abs(float(u.mean()) - 0.5) < 0.01
    z = normal(7, (20000,))
    assert abs(float(z.mean())) < 0.03 and abs(float(z.std()) - 1.0) < 0.03
    r = randint(7, 6, (6000,))
    assert set(r.tolist()) == set(range(6))
    assert int(fold_in(3, 1)) != int(fold_in(3, 2)) and int(fold_in(3, 1)) == int(fold_in(3, 1))


def test_keyed_dropout() -> None:
    model = replace_dropout(nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.25), nn.Dropout2d(0.5)))
    assert isinstance(model[1], KeyedDropout) and model[2].channelwise
    drop = KeyedDropout(0.25)
    drop.key = torch.tensor(12, dtype=torch.int64)
    x = torch.ones(100, 200)
    y = drop(x)
    assert abs(float((y == 0).float().mean()) - 0.25) < 0.01
    assert set(torch.unique(y).tolist()) == {0.0, torch.tensor(1.0 / 0.75).item()}
    assert drop(x).equal(y)  # same key, same mask
    assert drop.eval()(x).equal(x)
    with pytest.raises(ParameterError, match=r"p: must be in \[0, 1\), got 1.0"):
        KeyedDropout(1.0)
    with pytest.raises(QflError, match=r"0: AlphaDropout has no keyed version"):
        replace_dropout(nn.Sequential(nn.AlphaDropout(0.1)))


# -- bad input ----------------------------------------------------------------------------


def test_bad_input_is_rejected_with_names() -> None:
    models = _models(3)
    params, _ = stack_models(models)
    with pytest.raises(ParameterError, match=r"loss_fn: must be exactly one of loss_fn, loss_of"):
        BatchedTrainer(models[0], None, sgd(0.1))
    with pytest.raises(ParameterError, match=r"chunk_size: must be None or an integer >= 1, got 0"):
        BatchedTrainer(models[0], ce, sgd(0.1), chunk_size=0)
    with pytest.raises(ParameterError, match=r"batch_size: must be an integer >= 1, got 0"):
        SequentialTrainer(models[0], ce, sgd(0.1), batch_size=0)
    with pytest.raises(ParameterError, match=r"optimizer: must be a functional optimizer"):
        BatchedTrainer(models[0], ce, torch.optim.SGD)
    trainer = BatchedTrainer(models[0], ce, sgd(0.1))
    state = trainer.init_state(params)
    with pytest.raises(
        ParameterError, match=r"datasets: must be one per client \(3\), got '2 datasets'"
    ):
        trainer.train_epochs(params, state, _data((3, 3)), 1, seed=0)
    with pytest.raises(ParameterError, match=r"param_mask.fc.weight.shape: must be \(\) or \(3,\)"):
        trainer.train_epochs(
            params,
            state,
            _data(),
            1,
            seed=0,
            param_mask={"fc.weight": torch.ones(2, dtype=torch.bool)},
        )
    with pytest.raises(
        ParameterError, match=r"param_mask: must be a parameter name of the model, got 'nope'"
    ):
        trainer.train_epochs(params, state, _data(), 1, seed=0, param_mask={"nope": True})
    with pytest.raises(ParameterError, match=r"epochs: must be an integer >= 0, got -1"):
        trainer.train_epochs(params, state, _data(), -1, seed=0)
    with pytest.raises(
        ParameterError, match=r"datasets\[1\].x: must be samples like datasets\[0\]"
    ):
        ClientBatcher(
            [
                (torch.zeros(2, 3), torch.zeros(2, dtype=torch.long)),
                (torch.zeros(2, 4), torch.zeros(2, dtype=torch.long)),
            ],
            2,
            seed=0,
        )
    if not torch.cuda.is_available():
        with pytest.raises(
            ParameterError, match=r"device: must be 'cpu' on this machine \(CUDA is not available\)"
        ):
            BatchedTrainer(models[0], ce, sgd(0.1), device="cuda")


def test_global_randomness_inside_vmap_is_refused() -> None:
    class Noisy(Tiny):
        def forward(self, x):
            return super().forward(x + torch.rand_like(x))

    models = [Noisy() for _ in range(2)]
    params, _ = stack_models(models)
    trainer = BatchedTrainer(models[0], ce, sgd(0.1), batch_size=4)
    with pytest.raises(QflError, match=r"torch's global generator inside vmap"):
        trainer.train_epochs(params, trainer.init_state(params), _data((4, 4)), 1, seed=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu() -> None:
    models = _models(3, p=0.2)
    params, _ = stack_models(models)
    opt = sgd(0.1, momentum=0.9)
    cpu = BatchedTrainer(models[0], ce, opt, batch_size=4)
    gpu = BatchedTrainer(models[0], ce, opt, batch_size=4, device="cuda")
    a = cpu.train_epochs(params, cpu.init_state(params), _data(), 1, seed=1)
    b = gpu.train_epochs(params, gpu.init_state(params), _data(), 1, seed=1)
    for k in params:
        assert b[0][k].device.type == "cuda"
        torch.testing.assert_close(a[0][k], b[0][k].cpu(), atol=1e-4, rtol=1e-3)


def test_batcher_drop_last_with_sizes_not_multiple_of_batch() -> None:
    from qfl.data import TensorDataset
    from qfl.engine import ClientBatcher

    sets = [
        TensorDataset(torch.randn(n, 2), torch.zeros(n, dtype=torch.long), ("a",), "t")
        for n in (10, 7)
    ]
    steps = list(ClientBatcher(sets, 4, seed=0, drop_last=True).steps(0))
    # client 0: two full batches of 4 (2 samples dropped); client 1: one (3 dropped)
    served = [[g.clients.tolist() for g in st.groups] for st in steps]
    assert served == [[[0, 1]], [[0]]]
    assert all(g.batch_size == 4 for st in steps for g in st.groups)
