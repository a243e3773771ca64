"""FeatureCNN shapes, validation, FLOP counting and torch.func compatibility."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.func import functional_call, grad, stack_module_state, vmap

from qfl.models import FeatureCNN, count_flops
from qkd.errors import ParameterError


def test_shapes_default_and_rgb() -> None:
    model = FeatureCNN()
    logits, (f1, f2, f3) = model(torch.randn(5, 1, 28, 28))
    assert logits.shape == (5, 10)
    assert f1.shape == (5, 16, 14, 14) and f2.shape == (5, 32, 7, 7) and f3.shape == (5, 64, 3, 3)
    rgb = FeatureCNN(in_channels=3, num_classes=102, image_size=32, channels=(8, 8, 8))
    logits, feats = rgb(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 102) and feats[2].shape == (2, 8, 4, 4)
    assert sum(p.numel() for p in model.parameters()) == 29066


def test_forward_matches_manual_layers() -> None:
    torch.manual_seed(0)  # test-side randomness only
    model = FeatureCNN(channels=(4, 6, 8))
    x = torch.randn(3, 1, 28, 28)
    h = x
    feats = []
    for block in model.blocks:
        conv = block[0]
        h = torch.nn.functional.max_pool2d(torch.relu(conv(h)), 2)
        feats.append(h)
    expected = h.flatten(1) @ model.fc.weight.T + model.fc.bias
    logits, got = model(x)
    torch.testing.assert_close(logits, expected)
    for a, b in zip(got, feats, strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"in_channels": 0}, "in_channels: must be an integer >= 1, got 0"),
        ({"num_classes": 1.5}, "num_classes: must be an integer >= 1, got 1.5"),
        ({"image_size": 7}, "image_size: must be an integer >= 8, got 7"),
        ({"channels": (16, 32)}, r"channels: must be three positive integers, got \(16, 32\)"),
        ({"channels": (16, 0, 8)}, "channels: must be three positive integers"),
    ],
)
def test_bad_arguments(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ParameterError, match=match):
        FeatureCNN(**kwargs)  # type: ignore[arg-type]


def test_count_flops_by_hand() -> None:
    # conv FLOPs = 2 * C_out * C_in * 9 * H_out * W_out; linear = 2 * in * out.
    expected = (
        2 * 16 * 1 * 9 * 28 * 28
        + 2 * 32 * 16 * 9 * 14 * 14
        + 2 * 64 * 32 * 9 * 7 * 7
        + 2 * 64 * 3 * 3 * 10
    )
    model = FeatureCNN()
    model.eval()
    assert count_flops(model, (1, 28, 28)) == expected == 3_849_984
    assert not model.training  # mode left alone
    assert count_flops(nn.Linear(5, 2), [5]) == 20
    with pytest.raises(ParameterError, match=r"input_shape: must be a non-empty sequence"):
        count_flops(model, (1, 0, 28))
    with pytest.raises(ParameterError, match=r"input_shape"):
        count_flops(model, ())


def test_functional_call_vmap_grad() -> None:
    torch.manual_seed(1)
    models = [FeatureCNN(channels=(4, 6, 8)) for _ in range(3)]
    params, buffers = stack_module_state(models)  # type: ignore[arg-type]
    base = FeatureCNN(channels=(4, 6, 8)).to("meta")
    x = torch.randn(3, 5, 1, 28, 28)
    y = torch.randint(0, 10, (3, 5))

    def forward(p: dict[str, torch.Tensor], b: dict[str, torch.Tensor], xb: torch.Tensor):
        return functional_call(base, (p, b), (xb,))

    logits, feats = vmap(forward)(params, buffers, x)
    for i, model in enumerate(models):
        ref_logits, ref_feats = model(x[i])
        torch.testing.assert_close(logits[i], ref_logits)
        torch.testing.assert_close(feats[1][i], ref_feats[1])

    def loss(p: dict[str, torch.Tensor], b: dict[str, torch.Tensor], xb, yb) -> torch.Tensor:
        out, _ = forward(p, b, xb)
        return torch.nn.functional.cross_entropy(out, yb)

    grads = vmap(grad(loss))(params, buffers, x, y)
    for i, model in enumerate(models):
        model.zero_grad()
        torch.nn.functional.cross_entropy(model(x[i])[0], y[i]).backward()
        for name, p in model.named_parameters():
            torch.testing.assert_close(grads[name][i], p.grad)
