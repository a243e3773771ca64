"""Losses: hand-computed values, gradients, validation, vmap compatibility."""

from __future__ import annotations

import math

import pytest
import torch
from torch.func import functional_call, grad, stack_module_state, vmap

from qfl.losses import (
    FEATURE_LOSSES,
    DefFDLoss,
    cross_entropy,
    deffd_loss,
    feature_loss,
    kd_loss,
)
from qfl.models import FeatureCNN
from qkd.errors import ParameterError, UnknownNameError

# KL([0.75, 0.25] || [0.5, 0.5]) = 0.75 ln 1.5 + 0.25 ln 0.5
KL_3_1 = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)


def test_cross_entropy_value() -> None:
    logits = torch.tensor([[0.0, 0.0, 0.0, 0.0], [math.log(3.0), 0.0, 0.0, 0.0]])
    y = torch.tensor([2, 0])
    # sample 1: -ln(1/4); sample 2: -ln(3/6)
    expected = (math.log(4.0) + math.log(2.0)) / 2
    assert float(cross_entropy(logits, y)) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("temperature", [1.0, 2.0, 4.0])
def test_kd_loss_value_and_scaling(temperature: float) -> None:
    student = torch.zeros(1, 2)
    teacher = torch.tensor([[temperature * math.log(3.0), 0.0]])  # softmax(t / T) = [3/4, 1/4]
    got = float(kd_loss(student, teacher, temperature))
    assert got == pytest.approx(temperature**2 * KL_3_1, rel=1e-5)


def test_kd_loss_gradient_and_detached_teacher() -> None:
    temperature = 2.0
    student = torch.tensor([[0.5, -1.0, 2.0], [0.0, 0.0, 0.0]], requires_grad=True)
    teacher = torch.tensor([[1.0, 0.0, -1.0], [3.0, 1.0, 0.0]], requires_grad=True)
    kd_loss(student, teacher, temperature).backward()
    p_s = torch.softmax(student.detach() / temperature, dim=1)
    p_t = torch.softmax(teacher.detach() / temperature, dim=1)
    # d/ds [T^2 KL(p_t || p_s)] / B = T (p_s - p_t) / B
    torch.testing.assert_close(student.grad, temperature * (p_s - p_t) / 2)
    assert teacher.grad is None
    assert float(kd_loss(teacher.detach(), teacher.detach(), 3.0)) == pytest.approx(0.0, abs=1e-7)


def test_feature_loss_values() -> None:
    s = [torch.tensor([[3.0, 0.0], [5.0, 12.0]]), torch.tensor([[1.0, 1.0], [2.0, 0.0]])]
    t = [torch.tensor([[0.0, 4.0], [0.0, 0.0]]), torch.tensor([[2.0, 2.0], [-1.0, 0.0]])]
    # l2: map 1 norms 5 and 13 -> 9; map 2 norms sqrt 2 and 3 -> (sqrt 2 + 3) / 2
    assert float(feature_loss(s, t, "l2")) == pytest.approx(9.0 + (math.sqrt(2) + 3) / 2)
    # cos: map 1 cos 0 and (zero teacher -> 0) -> 1 each; map 2 cos 1 and -1 -> 0 and 2
    assert float(feature_loss(s, t, "cos")) == pytest.approx(1.0 + 1.0, abs=1e-6)
    # mse: map 1 (9 + 16 + 25 + 144) / 4; map 2 (1 + 1 + 9 + 0) / 4
    assert float(feature_loss(s, t, "mse")) == pytest.approx(194 / 4 + 11 / 4)


def test_feature_loss_flattens_maps_per_sample() -> None:
    gen = torch.Generator().manual_seed(0)
    s = torch.randn(3, 2, 4, 4, generator=gen)
    t = torch.randn(3, 2, 4, 4, generator=gen)
    l2 = float(feature_loss([s], [t], "l2"))
    assert l2 == pytest.approx(float((s - t).reshape(3, -1).norm(dim=1).mean()), rel=1e-6)
    cos = torch.nn.functional.cosine_similarity(s.reshape(3, -1), t.reshape(3, -1), dim=1)
    assert float(feature_loss([s], [t], "cos")) == pytest.approx(float((1 - cos).mean()), rel=1e-6)


@pytest.mark.parametrize("kind", FEATURE_LOSSES)
def test_feature_loss_gradients_finite_and_teacher_detached(kind: str) -> None:
    s = torch.ones(2, 3, 2, 2, requires_grad=True)
    t = torch.ones(2, 3, 2, 2, requires_grad=True)
    loss = feature_loss([s], [t], kind)
    assert float(loss.detach()) == pytest.approx(0.0, abs=1e-6)
    loss.backward()
    assert s.grad is not None and torch.isfinite(s.grad).all() and t.grad is None


def test_deffd_loss_combines_terms() -> None:
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(4, 10, generator=gen)
    t_logits = torch.randn(4, 10, generator=gen)
    feats = [torch.randn(4, 2, 3, 3, generator=gen) for _ in range(3)]
    t_feats = [torch.randn(4, 2, 3, 3, generator=gen) for _ in range(3)]
    y = torch.tensor([0, 3, 9, 3])
    got = deffd_loss(
        (logits, feats),
        y,
        (t_logits, t_feats),
        gamma=0.03,
        kind="mse",
        temperature=3.0,
        ce_weight=0.5,
        kd_weight=2.0,
    )
    expected = (
        0.5 * cross_entropy(logits, y)
        + 2.0 * kd_loss(logits, t_logits, 3.0)
        + 0.03 * feature_loss(feats, t_feats, "mse")
    )
    torch.testing.assert_close(got, expected)
    only_ce = deffd_loss((logits, feats), y, None, gamma=0.01, kind="l2", temperature=1.0)
    torch.testing.assert_close(only_ce, cross_entropy(logits, y))
    bound = DefFDLoss(gamma=0.03, kind="mse", temperature=3.0, ce_weight=0.5, kd_weight=2.0)
    torch.testing.assert_close(bound((logits, feats), y, (t_logits, t_feats)), expected)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"gamma": -0.01}, ParameterError, r"gamma: must be a finite number >= 0, got -0.01"),
        (
            {"temperature": 0.0},
            ParameterError,
            r"temperature: must be a finite number > 0, got 0.0",
        ),
        ({"kind": "l1"}, UnknownNameError, r"kind: must be one of 'l2', 'cos', 'mse', got 'l1'"),
        ({"ce_weight": -1.0}, ParameterError, r"ce_weight: must be a finite number >= 0"),
        ({"kd_weight": float("inf")}, ParameterError, r"kd_weight: must be a finite number >= 0"),
    ],
)
def test_bad_hyperparameters(kwargs: dict[str, object], error: type, match: str) -> None:
    args: dict[str, object] = {"gamma": 0.01, "kind": "l2", "temperature": 1.0} | kwargs
    out = (torch.zeros(2, 3), [torch.zeros(2, 4)])
    with pytest.raises(error, match=match):
        deffd_loss(out, torch.tensor([0, 1]), out, **args)  # type: ignore[arg-type]
    with pytest.raises(error, match=match):
        DefFDLoss(**args)  # type: ignore[arg-type]


def test_other_errors() -> None:
    with pytest.raises(ParameterError, match=r"temperature: must be a finite number > 0, got -2"):
        kd_loss(torch.zeros(1, 2), torch.zeros(1, 2), -2)
    with pytest.raises(UnknownNameError, match=r"kind: must be one of"):
        feature_loss([torch.zeros(1, 2)], [torch.zeros(1, 2)], "L2")
    with pytest.raises(ParameterError, match=r"teacher_feats: must be as many maps"):
        feature_loss([torch.zeros(1, 2)] * 2, [torch.zeros(1, 2)], "mse")
    with pytest.raises(ParameterError, match=r"teacher_feats shape: must be \(1, 2\)"):
        feature_loss([torch.zeros(1, 2)], [torch.zeros(1, 3)], "mse")


@pytest.mark.parametrize("kind", FEATURE_LOSSES)
def test_vmap_over_clients(kind: str) -> None:
    torch.manual_seed(2)  # test-side model initialisation only
    students = [FeatureCNN(channels=(4, 4, 4)) for _ in range(2)]
    teachers = [FeatureCNN(channels=(4, 4, 4)) for _ in range(2)]
    params, buffers = stack_module_state(students)  # type: ignore[arg-type]
    t_params, t_buffers = stack_module_state(teachers)  # type: ignore[arg-type]
    base = FeatureCNN(channels=(4, 4, 4)).to("meta")
    loss_fn = DefFDLoss(gamma=0.02, kind=kind, temperature=2.0)
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(2, 6, 1, 28, 28, generator=gen)
    y = torch.randint(0, 10, (2, 6), generator=gen)

    def client_loss(p, b, tp, tb, xb, yb) -> torch.Tensor:
        out = functional_call(base, (p, b), (xb,))
        t_out = functional_call(base, (tp, tb), (xb,))
        return loss_fn(out, yb, t_out)

    losses = vmap(client_loss)(params, buffers, t_params, t_buffers, x, y)
    grads = vmap(grad(client_loss))(params, buffers, t_params, t_buffers, x, y)
    for i in range(2):
        students[i].zero_grad()
        ref = loss_fn(students[i](x[i]), y[i], teachers[i](x[i]))
        ref.backward()
        torch.testing.assert_close(losses[i], ref.detach())
        for name, p in students[i].named_parameters():
            torch.testing.assert_close(grads[name][i], p.grad)
        assert all(p.grad is None for p in teachers[i].parameters())
