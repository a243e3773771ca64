"""The fused CPU route of the batched engine: stacked FeatureCNN forward and its kernels."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.func import vmap

from qfl.engine import BatchedTrainer, SequentialTrainer, evaluate, kernels, sgd, stack_models
from qfl.engine.stacked_cnn import stacked_forward, supports
from qfl.losses import DefFDLoss
from qfl.models import FeatureCNN
from qkd.errors import ParameterError, QflError

pytestmark = pytest.mark.skipif(
    not kernels.available(), reason="the qfl CPU kernels cannot be built here"
)


def _models(n: int, seed: int = 0, **kw) -> list[FeatureCNN]:
    torch.manual_seed(seed)
    return [FeatureCNN(**kw) for _ in range(n)]


def _loss(logits, feats, y):
    """CE plus terms on every feature map, so each block's gradient path is exercised."""
    return (
        F.cross_entropy(logits, y)
        + 0.1 * feats[0].abs().mean()
        + 0.1 * feats[1].square().mean()
        + 0.1 * feats[2].mean()
    )


@pytest.mark.parametrize(
    ("kw", "size"),
    [
        ({}, 28),  # the Def-FD CNN on Fashion-MNIST
        ({"in_channels": 2, "channels": (4, 6, 8), "image_size": 13}, 13),  # odd maps
        ({"in_channels": 3, "channels": (8, 32, 5), "image_size": 16}, 16),  # O = 8, 32
    ],
    ids=["fmnist", "odd-2ch", "rgb"],
)
def test_stacked_forward_and_gradients_equal_per_client_model(kw, size) -> None:
    c, n = 3, 5
    models = _models(c, **kw)
    params, _ = stack_models(models)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(c, n, models[0].in_channels, size, size, generator=gen)
    x[:, :, :, : size // 3] = 0.0  # blank rows: exact ties inside pooling windows
    y = torch.randint(0, 10, (c, n), generator=gen)
    leaves = {k: v.clone().requires_grad_() for k, v in params.items()}
    logits, feats = stacked_forward(leaves, x)
    losses = vmap(_loss)(logits, feats, y)
    grads = torch.autograd.grad(losses.sum(), list(leaves.values()))
    for i, m in enumerate(models):
        ref_logits, ref_feats = m(x[i])
        torch.testing.assert_close(logits[i], ref_logits, atol=1e-5, rtol=1e-5)
        for a, b in zip(feats, ref_feats, strict=True):
            assert a[i].shape == b.shape
            torch.testing.assert_close(a[i], b, atol=1e-5, rtol=1e-5)
        m.zero_grad()
        _loss(ref_logits, ref_feats, y[i]).backward()
        for g, p in zip(grads, m.parameters(), strict=True):
            torch.testing.assert_close(g[i], p.grad, atol=1e-5, rtol=1e-4)


def test_pooling_kernels_match_torch_ties_and_nan() -> None:
    gen = torch.Generator().manual_seed(2)
    z = torch.randn(2, 7, 9, 5, generator=gen)  # [N, H, W, R]: odd sizes drop a row/column
    z[0, :2, :2, :] = 0.5  # a window of ties: the first position takes the gradient
    z[1, 2, 3, 1] = float("nan")
    zz = z.clone().requires_grad_()
    out = kernels.PoolReLU2x2.apply(zz)
    ref_in = z.clone().permute(0, 3, 1, 2).requires_grad_()
    ref = F.max_pool2d(F.relu(ref_in), 2).permute(0, 2, 3, 1)
    torch.testing.assert_close(out, ref, equal_nan=True)
    g = torch.randn(out.shape, generator=gen)
    (gz,) = torch.autograd.grad(out, zz, g)
    (gr,) = torch.autograd.grad(ref, ref_in, g)
    torch.testing.assert_close(gz, gr.permute(0, 2, 3, 1), equal_nan=True)
    assert gz[0, 0, 0, 0] == g[0, 0, 0, 0] and gz[0, 0, 1, 0] == 0  # first of the ties


def test_fused_training_equals_vmap_and_sequential_with_teacher_and_mask(
    _one_torch_thread: None,
) -> None:
    # One thread: on two, the three engines' float32 sums are split differently across the
    # threads and part by ~1e-4 after a few steps (numbers are reproducible per thread count).
    c = 5
    models = _models(c)
    params, _ = stack_models(models)
    teachers, _ = stack_models(_models(c, seed=3))
    gen = torch.Generator().manual_seed(4)
    data = [
        (torch.rand(m, 1, 28, 28, generator=gen), torch.randint(0, 10, (m,), generator=gen))
        for m in (40, 23, 32, 9, 33)
    ]
    loss = DefFDLoss(gamma=0.02, kind="mse", temperature=2.0)
    opt = sgd(0.05, momentum=0.9, weight_decay=5e-4)
    mask = {"fc.weight": torch.tensor([True, False, True, True, True])}
    runs = {}
    for name, tr in {
        "fused": BatchedTrainer(models[0], loss, opt, batch_size=16, chunk_size=2, fused=True),
        "vmap": BatchedTrainer(models[0], loss, opt, batch_size=16, fused=False),
        "sequential": SequentialTrainer(models[0], loss, opt, batch_size=16),
    }.items():
        runs[name] = tr.train_epochs(
            params,
            tr.init_state(params),
            data,
            2,
            seed=11,
            teacher_params=teachers,
            param_mask=mask,
        )
    for other in ("vmap", "sequential"):
        for k in params:
            torch.testing.assert_close(runs["fused"][0][k], runs[other][0][k], atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(runs["fused"][2].loss, runs[other][2].loss, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(runs["fused"][0]["fc.weight"][1], params["fc.weight"][1])
    assert float((runs["fused"][0]["fc.weight"][0] - params["fc.weight"][0]).abs().max()) > 1e-3


def test_fused_route_is_deterministic() -> None:
    models = _models(3)
    params, _ = stack_models(models)
    gen = torch.Generator().manual_seed(5)
    data = [
        (torch.rand(20, 1, 28, 28, generator=gen), torch.randint(0, 10, (20,))) for _ in range(3)
    ]
    tr = BatchedTrainer(models[0], lambda o, y, t: F.cross_entropy(o[0], y), sgd(0.1), fused=True)
    a = tr.train_epochs(params, tr.init_state(params), data, 1, seed=0)[0]
    b = tr.train_epochs(params, tr.init_state(params), data, 1, seed=0)[0]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_fused_option_is_checked() -> None:
    ce = lambda o, y, t: F.cross_entropy(o[0], y)  # noqa: E731
    assert supports(FeatureCNN()) and not supports(torch.nn.Linear(2, 2))
    with pytest.raises(ParameterError, match="fused"):
        BatchedTrainer(torch.nn.Linear(4, 2), ce, sgd(0.1), fused=True)
    with pytest.raises(ParameterError, match="fused"):
        BatchedTrainer(FeatureCNN(), ce, sgd(0.1), fused="yes")  # type: ignore[arg-type]
    tr = BatchedTrainer(FeatureCNN(), ce, sgd(0.1), fused=True)
    assert tr._use_fused(torch.device("cpu"))
    with pytest.raises(QflError, match="CPU device"):
        tr._use_fused(torch.device("meta"))


def test_kernels_can_be_disabled(monkeypatch) -> None:
    monkeypatch.setenv("QFL_KERNELS", "0")
    kernels._module.cache_clear()
    try:
        assert not kernels.available()
        tr = BatchedTrainer(FeatureCNN(), lambda o, y, t: F.cross_entropy(o[0], y), sgd(0.1))
        assert not tr._use_fused(torch.device("cpu"))  # falls back to vmap
    finally:
        monkeypatch.delenv("QFL_KERNELS")
        kernels._module.cache_clear()
    assert kernels.available()


def test_evaluate_fused_equals_vmap_shared_and_per_client() -> None:
    models = _models(4)
    params, _ = stack_models(models)
    gen = torch.Generator().manual_seed(6)
    x, y = torch.rand(70, 1, 28, 28, generator=gen), torch.randint(0, 10, (70,), generator=gen)
    own = [(x[i * 10 : i * 10 + 7 + i], y[i * 10 : i * 10 + 7 + i]) for i in range(4)]
    for data in ((x, y), own):
        fast = evaluate(models[0], params, data, batch_size=16, chunk_size=3, fused=True)
        slow = evaluate(models[0], params, data, batch_size=16, chunk_size=3, fused=False)
        assert torch.equal(fast, slow)
        ref = torch.tensor(
            [
                float((m(xx)[0].argmax(-1) == yy).double().mean())
                for m, (xx, yy) in zip(models, own if data is own else [(x, y)] * 4, strict=True)
            ],
            dtype=torch.float64,
        )
        torch.testing.assert_close(fast, ref)


def test_float64_models_take_the_vmap_route() -> None:
    models = [m.double() for m in _models(2)]
    params, _ = stack_models(models)
    data = [(torch.rand(6, 1, 28, 28, dtype=torch.float64), torch.randint(0, 10, (6,)))] * 2
    tr = BatchedTrainer(models[0], lambda o, y, t: F.cross_entropy(o[0], y), sgd(0.1))
    out, _, _ = tr.train_epochs(params, tr.init_state(params), data, 1, seed=0)
    assert all(v.dtype == torch.float64 for v in out.values())
    acc = evaluate(models[0], out, data)
    assert acc.shape == (2,) and bool(torch.isfinite(acc).all())


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 3),
    h=st.integers(2, 9),
    w=st.integers(2, 9),
    r=st.integers(1, 40),
    levels=st.integers(2, 5),
    seed=st.integers(0, 2**16),
)
def test_pool_kernel_matches_torch_property(n, h, w, r, levels, seed) -> None:
    """Any shape (odd sizes, channel counts off the vector width) and many exact ties (values
    drawn from a few levels): values and gradients equal relu + max_pool2d's."""
    gen = torch.Generator().manual_seed(seed)
    z = torch.randint(-1, levels, (n, h, w, r), generator=gen).float()
    zz = z.clone().requires_grad_()
    out = kernels.PoolReLU2x2.apply(zz)
    ref_in = z.permute(0, 3, 1, 2).clone().requires_grad_()
    ref = F.max_pool2d(F.relu(ref_in), 2).permute(0, 2, 3, 1)
    assert torch.equal(out, ref)
    g = torch.randn(out.shape, generator=gen)
    (gz,) = torch.autograd.grad(out, zz, g)
    (gr,) = torch.autograd.grad(ref, ref_in, g)
    assert torch.equal(gz, gr.permute(0, 2, 3, 1))
