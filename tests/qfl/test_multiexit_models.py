"""Multi-exit models (ResNet, plain-op LSTM) and the distillation-based multi-exit loss."""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest
import torch
from torch import nn
from torch.func import functional_call, grad, vmap
from torch.nn import functional as F

from qfl.losses.multiexit import (
    AdaptiveTemperature,
    mean_max_probability,
    multi_exit_loss,
    paper_temperature_step,
)
from qfl.models.multiexit import (
    MultiExitLSTM,
    MultiExitResNet,
    _AdaptiveAvgPool,
    deepest_affordable_exit,
    exit_flops,
    exit_parameter_mask,
    truncated,
)
from qkd.errors import ParameterError


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _tiny_resnet(**kw: object) -> MultiExitResNet:
    return MultiExitResNet(width=4, **kw)  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """Small tensors on a shared 2-core machine: more threads only oversubscribe (restored)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ---------------------------------------------------------------- models


def test_resnet_returns_three_exits_shallow_to_deep_and_truncates() -> None:
    net = _tiny_resnet().eval()
    x = torch.randn(5, 1, 28, 28, generator=_gen(1))
    outs = net(x)
    assert isinstance(outs, tuple) and len(outs) == 3
    assert all(o.shape == (5, 10) for o in outs)
    short = truncated(net, 2)
    assert net.active_exits == 3 and short.active_exits == 2
    outs2 = short(x)
    assert len(outs2) == 2
    for a, b in zip(outs2, outs[:2], strict=True):
        torch.testing.assert_close(a, b)


def test_single_exit_baseline_has_only_the_last_exit() -> None:
    net = _tiny_resnet(exit_after=(5,))
    assert net.n_exits == 1
    assert len(net.eval()(torch.zeros(2, 1, 28, 28))) == 1


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"width": 0}, "width: must be an integer >= 1"),
        ({"exit_after": (1, 3)}, "exit_after: must be increasing block numbers ending at 5"),
        ({"exit_after": (3, 1, 5)}, "exit_after"),
        ({"dropout": 1.0}, r"dropout: must be in \[0, 1\)"),
        ({"num_classes": 1}, "num_classes"),
        ({"exit_pool": 0}, "exit_pool: must be an integer >= 1"),
    ],
)
def test_resnet_rejects_bad_parameters(kwargs: dict, match: str) -> None:
    with pytest.raises(ParameterError, match=match):
        MultiExitResNet(**kwargs)


def test_active_exits_is_validated() -> None:
    net = MultiExitLSTM(hidden_size=4)
    with pytest.raises(ParameterError, match=r"active_exits: must be an integer in \[1, 3\]"):
        net.active_exits = 4
    with pytest.raises(ParameterError, match="max_exit"):
        exit_parameter_mask(net, 0)


@pytest.mark.parametrize("size", [4, 7, 14, 28])
@pytest.mark.parametrize("bins", [1, 2, 4])
def test_exit_pooling_equals_adaptive_avg_pool(size: int, bins: int) -> None:
    x = torch.randn(3, 5, size, size, generator=_gen(size + bins))
    pool = _AdaptiveAvgPool(bins)
    torch.testing.assert_close(pool(x), F.adaptive_avg_pool2d(x, bins), atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("exit_pool", [1, 4])
def test_exits_pool_to_a_grid_then_dropout_then_linear(exit_pool: int) -> None:
    net = MultiExitResNet(width=4, stem_stride=2, exit_pool=exit_pool).eval()
    # blocks 1, 3, 5 have 4, 8, 16 channels; the linear layer sees every cell of the grid
    assert [e.fc.in_features for e in net.exits] == [c * exit_pool**2 for c in (4, 8, 16)]
    x = torch.randn(2, 1, 28, 28, generator=_gen(9))
    h = net.blocks[0](net.stem(x))
    expected = net.exits[0].fc(F.adaptive_avg_pool2d(h, exit_pool).flatten(1))
    torch.testing.assert_close(net(x)[0], expected)


def test_groupnorm_resnet_output_does_not_depend_on_the_batch() -> None:
    net = _tiny_resnet().eval()
    x = torch.randn(6, 1, 28, 28, generator=_gen(2))
    full = net(x)
    alone = net(x[:1])
    for a, b in zip(alone, full, strict=True):
        torch.testing.assert_close(a, b[:1], atol=1e-5, rtol=1e-5)
    assert not list(net.buffers())  # no running statistics


def test_lstm_matches_nn_lstm_with_the_same_weights() -> None:
    hidden, layers = 16, 3
    ours = MultiExitLSTM(3, 17, hidden_size=hidden, num_layers=layers).eval()
    ref = nn.LSTM(3, hidden, num_layers=layers, batch_first=True)
    with torch.no_grad():
        for name, p in ref.named_parameters():
            p.copy_(torch.randn(p.shape, generator=_gen(hash(name) % 1000)) * 0.3)
    missing = ours.load_state_dict(ref.state_dict(), strict=False)
    assert not missing.unexpected_keys
    assert all(k.startswith("exits.") for k in missing.missing_keys)
    x = torch.randn(4, 151, 3, generator=_gen(3))
    out_ref, (h_n, _) = ref(x)
    logits = ours(x)
    for k in range(layers):
        torch.testing.assert_close(logits[k], ours.exits[k].fc(h_n[k]), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours._layer(ours._layer(ours._layer(x, 0), 1), 2), out_ref,
                               atol=1e-5, rtol=1e-5)  # fmt: skip


@pytest.mark.parametrize("kind", ["resnet", "lstm"])
def test_models_run_under_vmap_with_stacked_parameters(kind: str) -> None:
    if kind == "resnet":
        nets = [MultiExitResNet(width=4, dropout=0.0) for _ in range(3)]
        x = torch.randn(3, 2, 1, 28, 28, generator=_gen(4))
    else:
        nets = [MultiExitLSTM(hidden_size=6, dropout=0.0) for _ in range(3)]
        x = torch.randn(3, 2, 20, 3, generator=_gen(4))
    names = [n for n, _ in nets[0].named_parameters()]
    stacked = {
        n: torch.stack([dict(m.named_parameters())[n].detach() for m in nets]) for n in names
    }
    base = nets[0]

    def fwd(p: dict[str, torch.Tensor], xb: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return functional_call(base, p, (xb,))

    batched = vmap(fwd)(stacked, x)
    for i, m in enumerate(nets):
        for a, b in zip(batched, m(x[i]), strict=True):
            torch.testing.assert_close(a[i], b, atol=1e-5, rtol=1e-5)

    y = torch.zeros(3, 2, dtype=torch.long)

    def loss(p: dict[str, torch.Tensor], xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        return multi_exit_loss(fwd(p, xb), yb, C=1.0, temperature=AdaptiveTemperature())

    grads = vmap(grad(loss))(stacked, x, y)
    single = grad(loss)({n: t[1] for n, t in stacked.items()}, x[1], y[1])
    for n in names:
        torch.testing.assert_close(grads[n][1], single[n], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("kind", ["resnet", "lstm"])
def test_exit_parameter_mask_is_exactly_what_each_exit_depends_on(kind: str) -> None:
    if kind == "resnet":
        net: MultiExitResNet | MultiExitLSTM = MultiExitResNet(width=4)
        x = torch.randn(2, 1, 28, 28, generator=_gen(5))
    else:
        net = MultiExitLSTM(hidden_size=4)
        x = torch.randn(2, 7, 3, generator=_gen(5))
    for k in range(1, net.n_exits + 1):
        short = truncated(net, k)
        short.zero_grad()
        sum(o.sum() for o in short(x)).backward()
        used = {n for n, p in short.named_parameters() if p.grad is not None}
        mask = exit_parameter_mask(net, k)
        assert used == {n for n, m in mask.items() if m}


def test_exit_flops_and_assignment() -> None:
    costs = exit_flops(MultiExitResNet(width=8, exit_pool=1), (1, 28, 28))
    assert len(costs) == 3 and costs[0] < costs[1] < costs[2]
    # stem + block 1 at 28x28 with 8 channels: 2 * 784 * 9 * (1*8 + 8*8 + 8*8) MACs, + exit fc
    assert costs[0] == 2 * 784 * 9 * (8 + 64 + 64) + 2 * 8 * 10
    lstm = exit_flops(MultiExitLSTM(hidden_size=8), (151, 3))
    # layer 1: input and recurrent projections of 4H gates at 151 steps, + exit fc
    assert lstm[0] == 2 * 151 * (3 * 32 + 8 * 32) + 2 * 8 * 17
    assert deepest_affordable_exit(costs, costs[1]) == 2
    assert deepest_affordable_exit(costs, costs[1] - 1) == 1
    with pytest.raises(ParameterError, match="budget: must be >= "):
        deepest_affordable_exit(costs, costs[0] - 1)
    with pytest.raises(ParameterError, match="costs"):
        deepest_affordable_exit([3, 2], 10)


# ---------------------------------------------------------------- loss


def _logits(seed: int, k: int = 3, n: int = 8, c: int = 5) -> tuple[torch.Tensor, ...]:
    g = _gen(seed)
    return tuple((torch.randn(n, c, generator=g) * 3).requires_grad_() for _ in range(k))


def test_loss_reduces_to_cross_entropy() -> None:
    z = _logits(0)
    y = torch.arange(8) % 5
    ce = sum(F.cross_entropy(t, y) for t in z)
    torch.testing.assert_close(multi_exit_loss(z, y, C=0.0), ce)
    torch.testing.assert_close(multi_exit_loss(z[-1:], y, C=3.0), F.cross_entropy(z[-1], y))


def test_loss_formula_and_detached_teacher() -> None:
    z = _logits(1)
    y = torch.arange(8) % 5
    t, c = 2.5, 0.7
    loss = multi_exit_loss(z, y, C=c, temperature=t)
    p_t = F.softmax(z[2] / t, -1)
    kl = sum((p_t * (p_t.log() - F.log_softmax(s / t, -1))).sum(-1).mean() for s in z[:2])
    expected = sum(F.cross_entropy(s, y) for s in z) + c * t * t * kl
    torch.testing.assert_close(loss, expected)
    (g_deep,) = torch.autograd.grad(loss, z[2])
    (g_ce,) = torch.autograd.grad(F.cross_entropy(z[2], y), z[2])
    torch.testing.assert_close(g_deep, g_ce)  # distillation does not move the teacher


def test_loss_gradients_match_the_authors_parametrisation() -> None:
    """(1-c) sum CE + c T^2 sum CE(p_T, p_k) has our gradients with C = c/(1-c), times 1-c."""
    z = _logits(2)
    y = torch.arange(8) % 5
    c, t = 0.5, 3.0
    p_t = F.softmax(z[2].detach() / t, -1)
    theirs = (1 - c) * sum(F.cross_entropy(s, y) for s in z) + c * t * t * sum(
        -(p_t * F.log_softmax(s / t, -1)).sum(-1).mean() for s in z[:2]
    )
    ours = (1 - c) * multi_exit_loss(z, y, C=c / (1 - c), temperature=t)
    for a, b in zip(torch.autograd.grad(theirs, z), torch.autograd.grad(ours, z), strict=True):
        torch.testing.assert_close(a, b)


def test_loss_rejects_bad_arguments() -> None:
    z = _logits(3)
    y = torch.zeros(8, dtype=torch.long)
    with pytest.raises(ParameterError, match="C: must be >= 0"):
        multi_exit_loss(z, y, C=-1.0)
    with pytest.raises(ParameterError, match="temperature: must be > 0"):
        multi_exit_loss(z, y, temperature=0.0)
    with pytest.raises(ParameterError, match="exit_logits"):
        multi_exit_loss((), y)
    with pytest.raises(ParameterError, match="target_maxprob"):
        AdaptiveTemperature(target_maxprob=1.0)


def test_adaptive_temperature_hits_the_target_confidence() -> None:
    sched = AdaptiveTemperature(target_maxprob=0.5)
    z = _logits(4, k=1, n=32, c=10)[0].detach() * 4
    assert float(mean_max_probability(z, 1.0)) > 0.5
    t = sched(z)
    assert float(t) > 1.0
    assert math.isclose(float(mean_max_probability(z, t)), 0.5, abs_tol=1e-4)
    assert float(sched(z * 2)) > float(t)  # a more confident teacher needs a higher T
    assert float(sched(torch.zeros(4, 10))) == 1.0
    # under vmap: one temperature per client
    ts = vmap(sched)(torch.stack([z, z * 2]))
    torch.testing.assert_close(ts, torch.stack([t, sched(z * 2)]))


def test_paper_schedule_converges_to_the_adaptive_temperature() -> None:
    z = _logits(5, k=1, n=32, c=10)[0].detach() * 4
    t = 1.0
    for _ in range(200):
        t = paper_temperature_step(t, z)
    t_star = float(AdaptiveTemperature()(z))
    assert t_star <= t <= 1.05 * t_star * (1 + 1e-6)
    with pytest.raises(ParameterError, match="factor"):
        paper_temperature_step(1.0, z, factor=0.9)
