"""SimCLR augmentations: each operation against its definition, the pipeline's randomness."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.func import vmap

from qfl.data.augment import (
    N_UNIFORMS,
    AugmentConfig,
    _crop_boxes,
    adjust_brightness,
    adjust_contrast,
    adjust_hue,
    adjust_saturation,
    augment_from_uniform,
    hsv_to_rgb,
    resized_crop,
    rgb_to_grayscale,
    rgb_to_hsv,
    simclr_augment,
)
from qfl.engine.random import uniform
from qkd.errors import ParameterError


def _images(n: int = 4, size: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def test_whole_image_box_is_identity_and_flip_mirrors() -> None:
    x = _images()
    whole = torch.tensor([[0.0, 0.0, 1.0, 1.0]]).repeat(4, 1)
    torch.testing.assert_close(resized_crop(x, whole), x, atol=1e-6, rtol=0)
    flipped = resized_crop(x, whole, torch.tensor([True, False, True, False]))
    torch.testing.assert_close(flipped[0], x[0].flip(-1), atol=1e-6, rtol=0)
    torch.testing.assert_close(flipped[1], x[1], atol=1e-6, rtol=0)


def test_quadrant_crop_selects_the_pixels() -> None:
    x = _images(size=8)
    box = torch.tensor([[-0.5, -0.5, 0.5, 0.5]]).repeat(4, 1)  # top-left quarter
    out = resized_crop(x, box, size=(4, 4))
    torch.testing.assert_close(out, x[..., :4, :4], atol=1e-6, rtol=0)


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.floats(0.0, 0.999), min_size=4, max_size=4),
    st.floats(0.5, 2.0),
)
def test_crop_boxes_stay_inside_the_image(u: list[float], aspect: float) -> None:
    cfg = AugmentConfig()
    boxes = _crop_boxes(torch.tensor([u]), cfg, aspect)
    cx, cy, bw, bh = boxes[0].tolist()
    assert 0 < bw <= 1 and 0 < bh <= 1
    assert abs(cx) + bw <= 1 + 1e-6 and abs(cy) + bh <= 1 + 1e-6


def test_crop_area_follows_the_scale_range() -> None:
    cfg = AugmentConfig(crop_scale=(0.3, 0.3), crop_ratio=(1.0, 1.0))
    u = torch.rand(16, 4, generator=torch.Generator().manual_seed(1))
    boxes = _crop_boxes(u, cfg, 1.0)
    # Side fractions squared = area fraction.
    torch.testing.assert_close(boxes[:, 2] * boxes[:, 3], torch.full((16,), 0.3))


def test_grayscale_weights() -> None:
    x = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]).view(3, 3, 1, 1)
    got = rgb_to_grayscale(x.permute(1, 0, 2, 3)).flatten()
    torch.testing.assert_close(got, torch.tensor([0.299, 0.587, 0.114]))


def test_hsv_known_values_and_round_trip() -> None:
    colours = torch.tensor(
        [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.5, 0.5, 0.5], [1.0, 1.0, 0.0]]
    ).view(5, 3, 1, 1)
    hsv = rgb_to_hsv(colours).flatten(1)
    torch.testing.assert_close(hsv[:, 0], torch.tensor([0.0, 1 / 3, 2 / 3, 0.0, 1 / 6]))
    torch.testing.assert_close(hsv[:, 1], torch.tensor([1.0, 1.0, 1.0, 0.0, 1.0]))
    torch.testing.assert_close(hsv[:, 2], torch.tensor([1.0, 1.0, 1.0, 0.5, 1.0]))
    x = _images(8, 6)
    torch.testing.assert_close(hsv_to_rgb(rgb_to_hsv(x)), x, atol=1e-5, rtol=0)


def test_colour_adjustments_against_their_definitions() -> None:
    x = _images(2)
    zero, one = torch.zeros(2), torch.ones(2)
    assert torch.equal(adjust_brightness(x, zero), torch.zeros_like(x))
    torch.testing.assert_close(adjust_brightness(x, torch.full((2,), 0.5)), 0.5 * x)
    flat = adjust_contrast(x, zero)
    mean = rgb_to_grayscale(x).mean(dim=(1, 2, 3))
    torch.testing.assert_close(flat, mean.view(2, 1, 1, 1).expand_as(x))
    torch.testing.assert_close(adjust_saturation(x, zero), rgb_to_grayscale(x).expand_as(x))
    for op in (adjust_brightness, adjust_contrast, adjust_saturation):
        torch.testing.assert_close(op(x, one), x)
    torch.testing.assert_close(adjust_hue(x, zero), x, atol=1e-5, rtol=0)
    red = torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1)
    green = adjust_hue(red, torch.tensor([1 / 3]))
    torch.testing.assert_close(green.flatten(), torch.tensor([0.0, 1.0, 0.0]), atol=1e-5, rtol=0)


def test_pipeline_is_reproducible_and_in_range() -> None:
    x = _images(6, 12)
    a = simclr_augment(x, generator=torch.Generator().manual_seed(3))
    b = simclr_augment(x, generator=torch.Generator().manual_seed(3))
    c = simclr_augment(x, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert a.shape == x.shape
    assert bool(((a >= 0) & (a <= 1)).all())


def test_pipeline_probabilities_switch_the_operations_off() -> None:
    x = _images(5)
    u = torch.rand(5, N_UNIFORMS, generator=torch.Generator().manual_seed(0))
    off = AugmentConfig(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip_p=0.0,
                        jitter_p=0.0, grayscale_p=0.0)  # fmt: skip
    torch.testing.assert_close(augment_from_uniform(x, u, off), x, atol=1e-6, rtol=0)
    gray = AugmentConfig(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip_p=0.0,
                         jitter_p=0.0, grayscale_p=1.0)  # fmt: skip
    out = augment_from_uniform(x, u, gray)
    torch.testing.assert_close(out, rgb_to_grayscale(x).expand_as(x), atol=1e-6, rtol=0)


def test_random_order_changes_the_result() -> None:
    x = _images(8)
    u = torch.rand(8, N_UNIFORMS, generator=torch.Generator().manual_seed(2))
    u[:, 5] = 0.0  # always jitter
    fixed = augment_from_uniform(x, u, AugmentConfig(random_order=False))
    shuffled = augment_from_uniform(x, u, AugmentConfig(random_order=True))
    assert not torch.allclose(fixed, shuffled)


def test_keyed_views_work_under_vmap_like_a_loop() -> None:
    x = torch.rand(3, 4, 3, 8, 8, generator=torch.Generator().manual_seed(5))
    keys = torch.tensor([7, 8, 9], dtype=torch.int64)

    def views(xi: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
        return augment_from_uniform(xi, uniform(key, (xi.shape[0], N_UNIFORMS)))

    batched = vmap(views, randomness="error")(x, keys)
    looped = torch.stack([views(x[i], keys[i]) for i in range(3)])
    torch.testing.assert_close(batched, looped)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"crop_scale": (0.0, 1.0)}, "crop_scale: must be"),
        ({"crop_ratio": (2.0, 1.0)}, "crop_ratio: must be"),
        ({"flip_p": 1.5}, "flip_p: must be in"),
        ({"brightness": -0.1}, "brightness: must be >= 0"),
        ({"hue": 0.7}, "hue: must be in"),
    ],
)
def test_config_rejects_bad_values(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ParameterError, match=match):
        AugmentConfig(**kwargs)  # type: ignore[arg-type]


def test_bad_shapes_and_generator_are_rejected() -> None:
    with pytest.raises(ParameterError, match=r"x.shape: must be \[N, 3, H, W\]"):
        augment_from_uniform(torch.zeros(2, 1, 4, 4), torch.zeros(2, N_UNIFORMS))
    with pytest.raises(ParameterError, match=r"u\.shape"):
        augment_from_uniform(torch.zeros(2, 3, 4, 4), torch.zeros(3, N_UNIFORMS))
    with pytest.raises(ParameterError, match="generator"):
        simclr_augment(torch.zeros(2, 3, 4, 4), generator=0)  # type: ignore[arg-type]
