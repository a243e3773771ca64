"""The stacked CPU routes of the batched engine for the multi-exit ResNet and LSTM.

Held equal to the per-client model (values and gradients, 1e-5) and to the per-client
trainer (weights, optimizer state, losses after several steps), with GroupNorm's per-client
affine, dropout in the exits, the distillation loss, truncated models and partial uploads.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch.func import vmap

from qfl.engine import (
    BatchedTrainer,
    KeyedDropout,
    SequentialTrainer,
    kernels,
    sgd,
    stack_models,
    stacked,
)
from qfl.engine.random import fold_in, keyed_dropout, replace_dropout, uniform
from qfl.engine.select import resolve_engine
from qfl.engine.stacked_lstm import stacked_forward as lstm_forward
from qfl.engine.stacked_resnet import stacked_forward as resnet_forward
from qfl.losses.multiexit import AdaptiveTemperature, multi_exit_loss
from qfl.models import FeatureCNN, MultiExitLSTM, MultiExitResNet, exit_parameter_mask, truncated
from qfl.models.multiexit import reinitialize
from qkd.errors import ParameterError

# vmap has no batching rule for kl_div (the distillation term): a per-client fallback, fine.
pytestmark = pytest.mark.filterwarnings("ignore:There is a performance drop:UserWarning")


def _resnet(**kw) -> MultiExitResNet:
    base = {"width": 4, "stem_stride": 2, "dropout": 0.5} | kw
    return MultiExitResNet(1, 5, **base)


def _lstm(**kw) -> MultiExitLSTM:
    return MultiExitLSTM(3, 5, **({"hidden_size": 6, "dropout": 0.5} | kw))


def _perturbed(model, n: int, seed: int = 0) -> list:
    """``n`` copies with different weights, GroupNorm's affine included (not 1 and 0)."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        m = reinitialize(copy.deepcopy(model), 100 + i)
        with torch.no_grad():
            for name, p in m.named_parameters():
                if ".norm" in name or "stem.1" in name or "shortcut.1" in name:
                    p.add_(0.3 * torch.randn(p.shape, generator=gen))
        out.append(m)
    return out


def me_loss(outputs, y, teacher):
    """The multi-exit objective: CE at every exit + C * T^2 * KL to the deepest one."""
    return multi_exit_loss(outputs, y, C=0.7, temperature=2.0)


def adaptive_loss(outputs, y, teacher):
    return multi_exit_loss(outputs, y, C=1.0, temperature=AdaptiveTemperature(0.5))


def _check_forward_and_grads(
    model, forward, x, y, n_clients: int, active: int | None = None, tol: float = 1e-5
):
    """Stacked outputs and gradients against each client's own model (dropout keyed alike)."""
    models = [m.to(x.dtype) for m in _perturbed(model, n_clients)]
    if active is not None:
        models = [truncated(m, active) for m in models]
    train = [replace_dropout(copy.deepcopy(m)).train() for m in models]
    params, _ = stack_models(models)
    keys = torch.arange(n_clients, dtype=torch.int64) * 17 + 5
    names = [n for n, _ in train[0].named_modules() if type(_).__name__ == "KeyedDropout"]
    drop = {f"{n}.key": fold_in(keys, j) for j, n in enumerate(names)}
    leaves = {k: v.clone().requires_grad_() for k, v in params.items()}
    outs = forward(train[0], leaves, x, drop)
    losses = vmap(me_loss, in_dims=(0, 0, None))(outs, y, None)
    grads = torch.autograd.grad(
        losses.sum(), list(leaves.values()), allow_unused=True, materialize_grads=True
    )
    for i, m in enumerate(train):
        for j, n in enumerate(names):
            m.get_submodule(n).key = fold_in(keys[i], j)
        ref = m(x[i])
        assert len(ref) == len(outs)
        for a, b in zip(outs, ref, strict=True):
            torch.testing.assert_close(a[i], b, atol=tol, rtol=tol)
        m.zero_grad()
        me_loss(ref, y[i], None).backward()
        for g, (name, p) in zip(grads, m.named_parameters(), strict=True):
            want = torch.zeros_like(p) if p.grad is None else p.grad
            torch.testing.assert_close(
                g[i], want, atol=tol, rtol=tol, msg=lambda m, name=name: f"{name}: {m}"
            )
    return outs


@pytest.mark.parametrize(
    ("kw", "size", "dtype"),
    [
        ({}, 28, torch.float32),  # the reproduction's layout: stem stride 2, 14/7/4 px
        ({"stem_stride": 1, "exit_pool": 2, "dropout": 0.3}, 12, torch.float32),  # 12/6/3 px
        # odd maps, one-channel groups over 2x2 maps (ill-conditioned in float32, hence
        # float64: the same arithmetic to 1e-10), two exits, global pooling
        ({"channels": (4, 6, 6, 8, 8), "exit_after": (2, 5), "exit_pool": 1}, 9, torch.float64),
    ],
    ids=["fmnist-s2", "s1-pool2", "odd-2exits-f64"],
)
def test_resnet_forward_and_gradients_equal_per_client_model(kw, size, dtype) -> None:
    c, n = 3, 5
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(c, n, 1, size, size, generator=gen, dtype=dtype)
    y = torch.randint(0, 5, (c, n), generator=gen)
    tol = 1e-5 if dtype == torch.float32 else 1e-10
    _check_forward_and_grads(_resnet(**kw), resnet_forward, x, y, c, tol=tol)


@pytest.mark.parametrize("active", [1, 2])
def test_truncated_resnet_and_lstm(active: int) -> None:
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(2, 4, 1, 28, 28, generator=gen)
    y = torch.randint(0, 5, (2, 4), generator=gen)
    outs = _check_forward_and_grads(_resnet(), resnet_forward, x, y, 2, active)
    assert len(outs) == active
    xs = torch.randn(2, 4, 9, 3, generator=gen)
    outs = _check_forward_and_grads(_lstm(), lstm_forward, xs, y, 2, active)
    assert len(outs) == active


@pytest.mark.parametrize(
    "kw", [{}, {"num_layers": 2, "exit_after": (2,), "dropout": 0.0}], ids=["3-exits", "baseline"]
)
def test_lstm_forward_and_gradients_equal_per_client_model(kw) -> None:
    c, n = 3, 4
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(c, n, 17, 3, generator=gen)
    y = torch.randint(0, 5, (c, n), generator=gen)
    _check_forward_and_grads(_lstm(**kw), lstm_forward, x, y, c)


def test_keyed_uniform_for_many_keys_equals_one_key_at_a_time() -> None:
    keys = torch.tensor([0, 5, 2**32 - 1, 123456789], dtype=torch.int64)
    many = uniform(keys, (3, 7))
    assert many.shape == (4, 3, 7)
    for i, k in enumerate(keys):
        assert torch.equal(many[i], uniform(k, (3, 7)))
    assert torch.equal(vmap(lambda k: uniform(k, (3, 7)))(keys), many)


@pytest.mark.parametrize("compiled", [True, False], ids=["kernel", "torch"])
@pytest.mark.parametrize("p", [0.5, 0.3, 0.7])
def test_keyed_dropout_of_many_clients_equals_the_module(
    p: float, compiled: bool, monkeypatch
) -> None:
    if compiled:
        kernels.prepare()
    else:
        monkeypatch.setattr(kernels, "ready", lambda: False)
    keys = torch.tensor([0, 1, 2**32 - 1, 987654321], dtype=torch.int64)
    x = torch.randn(4, 9, 13, generator=torch.Generator().manual_seed(5))
    x[0, 0, 0] = -0.0
    fast = keyed_dropout(x, p, keys)
    for i in range(4):
        m = KeyedDropout(p).train()
        m.key = keys[i]
        ref = m(x[i])
        assert torch.equal(fast[i], ref) and torch.equal(fast[i].signbit(), ref.signbit())


def test_keyed_dropout_kernel_at_the_threshold() -> None:
    """Where the uniform number equals float32(p) exactly (key 1, position 1595262 for
    p = 0.7), the compiled mask keeps the element as the module does (float32 comparison)."""
    if not kernels.prepare():
        pytest.skip("the qfl CPU kernels cannot be built here")
    pos = 1595262
    u = uniform(1, (pos + 1,))[pos]
    assert float(u) == float(torch.tensor(0.7, dtype=torch.float32))
    keep = kernels.keyed_keep(torch.tensor([1]), pos + 1, 0.7, 1 / 0.3)[0, pos]
    assert bool(u >= 0.7) and float(keep) > 0


def _data(sizes, shape, classes: int = 5, seed: int = 4):
    gen = torch.Generator().manual_seed(seed)
    return [
        (torch.rand(m, *shape, generator=gen), torch.randint(0, classes, (m,), generator=gen))
        for m in sizes
    ]


def _train_all(model, loss, data, params, tol: float = 1e-5, **kw):
    opt = sgd(0.05, momentum=0.9, weight_decay=5e-4)
    runs = {}
    for name, tr in {
        "stacked": BatchedTrainer(model, loss, opt, batch_size=8, chunk_size=2, fused=True),
        "vmap": BatchedTrainer(model, loss, opt, batch_size=8, fused=False),
        "sequential": SequentialTrainer(model, loss, opt, batch_size=8),
    }.items():
        runs[name] = tr.train_epochs(params, tr.init_state(params), data, 2, seed=9, **kw)
    for other in ("vmap", "sequential"):
        for k in params:
            torch.testing.assert_close(
                runs["stacked"][0][k], runs[other][0][k], atol=tol, rtol=10 * tol, msg=k
            )
            torch.testing.assert_close(
                runs["stacked"][1]["momentum"][k],
                runs[other][1]["momentum"][k],
                atol=tol,
                rtol=10 * tol,
                msg=k,
            )
        torch.testing.assert_close(
            runs["stacked"][2].loss, runs[other][2].loss, atol=tol, rtol=10 * tol
        )
    return runs


def test_resnet_training_equals_vmap_and_sequential_with_partial_upload_mask() -> None:
    """Clients limited to exit 2 (FedAvg's partial training): the truncated model, with the
    parameters past the exit frozen by the mask; dropout on, unequal data sizes."""
    model = truncated(_resnet(), 2)
    params, _ = stack_models(_perturbed(model, 3))
    mask = exit_parameter_mask(model, 2)
    param_mask = {k: torch.full((3,), bool(v)) for k, v in mask.items()}
    param_mask["exits.0.fc.weight"] = torch.tensor([True, False, True])
    data = _data((19, 8, 13), (1, 28, 28))
    runs = _train_all(model, me_loss, data, params, param_mask=param_mask)
    out = runs["stacked"][0]
    for k, v in mask.items():
        if not v:  # past the client's exit: not trained, not changed
            assert torch.equal(out[k], params[k])
    assert torch.equal(out["exits.0.fc.weight"][1], params["exits.0.fc.weight"][1])
    assert float((out["stem.1.weight"] - params["stem.1.weight"]).abs().max()) > 1e-4


def test_resnet_training_on_images_equals_sequential_in_float64() -> None:
    """Image-like data (a blank background: exact ties that float32 rounding can flip at a
    ReLU, as on Fashion-MNIST) in float64: the three trainers agree to 1e-10 after 2 epochs."""
    model = _resnet(width=4, stem_stride=2, exit_pool=2).double()
    params, _ = stack_models(_perturbed(model, 3))
    data = []
    for x, y in _data((11, 16, 7), (1, 12, 12)):
        x = x.double()
        x[:, :, :4] = 0.0  # background rows
        data.append((x, y))
    _train_all(model, me_loss, data, params, tol=1e-10)


def test_lstm_training_equals_vmap_and_sequential() -> None:
    model = _lstm()
    params, _ = stack_models(_perturbed(model, 3))
    data = _data((12, 20, 5), (11, 3))
    _train_all(model, adaptive_loss, data, params)


def test_routes_and_engine_choice() -> None:
    res, lstm = _resnet(), _lstm()
    assert stacked.route_of(res) == "resnet" and stacked.route_of(truncated(res, 1)) == "resnet"
    assert stacked.route_of(lstm) == "lstm" and stacked.route_of(torch.nn.Linear(2, 2)) is None
    assert BatchedTrainer(res, me_loss, sgd(0.1)).route == "resnet"
    assert BatchedTrainer(res, me_loss, sgd(0.1), fused=False).route is None
    assert resolve_engine("auto", res, truncated(res, 1), lstm) == "batched"
    assert resolve_engine("auto", res, torch.nn.Linear(2, 2)) in ("batched", "sequential")
    with pytest.raises(ParameterError, match="MultiExitResNet"):
        BatchedTrainer(torch.nn.Linear(4, 2), me_loss, sgd(0.1), fused=True)
    assert stacked.route_of(FeatureCNN()) == "cnn"


def test_stacked_route_is_deterministic_and_float64_works() -> None:
    model = _lstm(hidden_size=4).double()
    params, _ = stack_models(_perturbed(model, 2))
    data = [(x.double(), y) for x, y in _data((6, 9), (5, 3))]
    tr = BatchedTrainer(model, me_loss, sgd(0.1), batch_size=4, fused=True)
    a = tr.train_epochs(params, tr.init_state(params), data, 1, seed=0)[0]
    b = tr.train_epochs(params, tr.init_state(params), data, 1, seed=0)[0]
    assert all(torch.equal(a[k], b[k]) and a[k].dtype == torch.float64 for k in a)
