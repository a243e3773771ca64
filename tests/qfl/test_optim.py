"""Functional optimizers against torch.optim, masks, validation."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from qfl.engine import adam, sgd
from qfl.engine.optim import SGD, Adam
from qkd.errors import ParameterError

SHAPES = {"w": (3, 4), "b": (4,)}


def _trees(seed: int, n: int) -> tuple[dict[str, torch.Tensor], list[dict[str, torch.Tensor]]]:
    gen = torch.Generator().manual_seed(seed)
    params = {k: torch.randn(s, generator=gen) for k, s in SHAPES.items()}
    grads = [{k: torch.randn(s, generator=gen) for k, s in SHAPES.items()} for _ in range(n)]
    return params, grads


def _run_torch(opt: SGD | Adam, params, grads):
    leaves = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    topt = opt.torch_optimizer(leaves.values())
    for g in grads:
        for k, p in leaves.items():
            p.grad = g[k].clone()
        topt.step()
    return {k: v.detach() for k, v in leaves.items()}, topt


OPTIMIZERS = [
    sgd(0.1),
    sgd(0.05, momentum=0.9),
    sgd(0.05, momentum=0.9, weight_decay=0.01),
    sgd(0.05, momentum=0.8, weight_decay=0.01, nesterov=True),
    adam(0.01),
    adam(0.003, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.02),
]


@pytest.mark.parametrize("opt", OPTIMIZERS, ids=repr)
def test_matches_torch_optim(opt: SGD | Adam) -> None:
    params, grads = _trees(0, 6)
    expected, topt = _run_torch(opt, params, grads)
    state = opt.init(params)
    p = params
    for g in grads:
        p, state = opt.update(p, g, state)
    for k in params:
        torch.testing.assert_close(p[k], expected[k], atol=1e-6, rtol=1e-6)
    # the optimizer state equals torch's (read back through the bridge)
    leaves = dict(zip(params, topt.param_groups[0]["params"], strict=True))
    for k, leaf in leaves.items():
        like = {slot: tree[k] for slot, tree in state.items()}
        ours = opt.from_torch_state(topt.state.get(leaf, {}), like)
        assert set(ours) == set(like)
        for slot in like:
            torch.testing.assert_close(like[slot], ours[slot], atol=1e-6, rtol=1e-6)
    assert params["w"].equal(_trees(0, 6)[0]["w"])  # inputs are not modified


@pytest.mark.parametrize("opt", OPTIMIZERS, ids=repr)
def test_stacked_clients_are_independent(opt: SGD | Adam) -> None:
    """batch_ndim=1: each client follows its own trajectory, as if optimized alone."""
    runs = [_trees(s, 4) for s in (1, 2, 3)]
    stacked = {k: torch.stack([r[0][k] for r in runs]) for k in SHAPES}
    state = opt.init(stacked, batch_ndim=1)
    p = stacked
    for t in range(4):
        g = {k: torch.stack([r[1][t][k] for r in runs]) for k in SHAPES}
        p, state = opt.update(p, g, state)
    for i, (p0, gs) in enumerate(runs):
        alone, s_alone = p0, opt.init(p0)
        for g in gs:
            alone, s_alone = opt.update(alone, g, s_alone)
        for k in SHAPES:
            torch.testing.assert_close(p[k][i], alone[k], atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("opt", [sgd(0.1, momentum=0.9, weight_decay=0.1), adam(0.01)], ids=repr)
def test_mask_freezes_tensor_and_state_like_grad_none(opt: SGD | Adam) -> None:
    params, grads = _trees(4, 5)
    stacked = {k: torch.stack([v, v + 1]) for k, v in params.items()}
    state = opt.init(stacked, batch_ndim=1)
    p = stacked
    # client 1 freezes "w" for the first 3 steps; torch equivalent: grad None for those steps
    for t, g in enumerate(grads):
        gs = {k: torch.stack([v, v]) for k, v in g.items()}
        mask = {"w": torch.tensor([True, t >= 3])}
        before = {k: v.clone() for k, v in p.items()}
        p, state = opt.update(p, gs, state, mask=mask)
        if t < 3:
            assert p["w"][1].equal(before["w"][1])
    leaves = {k: (v + 1).clone().requires_grad_(True) for k, v in params.items()}
    topt = opt.torch_optimizer(leaves.values())
    for t, g in enumerate(grads):
        for k, leaf in leaves.items():
            leaf.grad = None if (k == "w" and t < 3) else g[k].clone()
        topt.step()
    for k in SHAPES:
        torch.testing.assert_close(p[k][1], leaves[k].detach(), atol=1e-6, rtol=1e-6)
    if isinstance(opt, Adam):
        assert state["step"]["w"].flatten().tolist() == [5.0, 2.0]
        assert state["step"]["b"].flatten().tolist() == [5.0, 5.0]


def test_sgd_elementwise_mask() -> None:
    opt = sgd(0.5)
    p, _ = opt.update(
        {"w": torch.ones(3)},
        {"w": torch.ones(3)},
        {},
        mask={"w": torch.tensor([True, False, True])},
    )
    assert p["w"].tolist() == [0.5, 1.0, 0.5]


@settings(max_examples=25, deadline=None)
@given(
    lr=st.floats(1e-4, 1.0),
    momentum=st.floats(0.0, 0.99),
    wd=st.floats(0.0, 0.1),
    seed=st.integers(0, 2**16),
)
def test_all_false_mask_is_identity(lr: float, momentum: float, wd: float, seed: int) -> None:
    """Property: with every entry masked out, parameters and state are unchanged bit for bit."""
    for opt in (sgd(lr, momentum=momentum, weight_decay=wd), adam(lr, weight_decay=wd)):
        params, grads = _trees(seed, 2)
        state = opt.init(params)
        p1, s1 = opt.update(params, grads[0], state)
        p2, s2 = opt.update(p1, grads[1], s1, mask=torch.tensor(False))
        assert all(p2[k].equal(p1[k]) for k in p1)
        assert all(s2[s][k].equal(s1[s][k]) for s in s1 for k in s1[s])


def test_torch_state_round_trip() -> None:
    for opt in (sgd(0.1, momentum=0.9), adam(0.1)):
        params, grads = _trees(5, 1)
        state = opt.init(params)
        _, state = opt.update(params, grads[0], state)
        slots = {slot: tree["w"] for slot, tree in state.items()}
        back = opt.from_torch_state(opt.to_torch_state(slots), slots)
        assert all(back[s].equal(slots[s]) for s in slots)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: sgd(0.0), r"lr: must be a number in \(0.0, inf\), got 0.0"),
        (lambda: sgd(0.1, momentum=1.0), r"momentum: must be a number in \[0.0, 1.0\)"),
        (lambda: sgd(0.1, weight_decay=-1), r"weight_decay: must be"),
        (lambda: sgd(0.1, nesterov=True), r"nesterov: must be False when momentum == 0"),
        (lambda: adam(-1.0), r"lr: must be"),
        (lambda: adam(0.1, betas=(0.9, 1.0)), r"betas\[1\]: must be a number in \[0.0, 1.0\)"),
        (lambda: adam(0.1, betas=(0.9,)), r"betas: must be a pair"),
        (lambda: adam(0.1, eps=-1e-8), r"eps: must be"),
    ],
)
def test_bad_hyperparameters(make, match: str) -> None:
    with pytest.raises(ParameterError, match=match):
        make()


def test_bad_masks_and_trees() -> None:
    opt = adam(0.1)
    params = {"w": torch.zeros(2, 3)}
    state = opt.init(params, batch_ndim=1)
    grads = {"w": torch.zeros(2, 3)}
    with pytest.raises(ParameterError, match=r"mask.w.dtype: must be torch.bool"):
        opt.update(params, grads, state, mask={"w": torch.ones(2)})
    with pytest.raises(ParameterError, match=r"mask.w.shape: must be a prefix"):
        opt.update(params, grads, state, mask={"w": torch.ones(3, dtype=torch.bool)})
    with pytest.raises(ParameterError, match=r"mask.w.shape: must be broadcastable to \(2, 1\)"):
        opt.update(params, grads, state, mask={"w": torch.ones(2, 3, dtype=torch.bool)})
    with pytest.raises(ParameterError, match=r"mask: must be names among the parameters"):
        opt.update(params, grads, state, mask={"v": True})
    with pytest.raises(ParameterError, match=r"grads: must be the parameter names"):
        opt.update(params, {"v": torch.zeros(2, 3)}, state)
    with pytest.raises(ParameterError, match=r"batch_ndim: must be an integer >= 0"):
        opt.init(params, batch_ndim=-1)
    with pytest.raises(ParameterError, match=r"state: must be a state with a 'momentum' slot"):
        sgd(0.1, momentum=0.5).update(params, grads, {})
