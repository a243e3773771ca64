"""SimCLR data augmentations in plain torch, batched over ``[N, 3, H, W]`` images.

Every image of a batch gets its own random crop, flip, colour jitter and grayscale, in one
vectorized computation. The randomness is split from the image operations: an augmentation is
a pure function of the images and of a ``[N, N_UNIFORMS]`` tensor of uniform numbers in
``[0, 1)`` (:func:`augment_from_uniform`). :func:`simclr_augment` draws those numbers from an
explicit ``torch.Generator``; inside the batched engine (``torch.func.vmap``), where a
``torch.Generator`` cannot be used, the same function is fed with
``qfl.engine.random.uniform(key, (n, N_UNIFORMS))``. Both paths run the same operations.

Images are RGB in ``[0, 1]`` (load with ``normalize=False`` and normalise after augmenting,
with :func:`qfl.data.images.normalize_images`). The operations follow torchvision's
definitions (which SimCLR's reference code uses):

- **random resized crop** (Szegedy et al. 2015): a box of area fraction ``U(scale)`` and log
  aspect ratio ``U(log ratio)`` at a uniform position, resized (bilinear) to the output size;
  implemented as one ``grid_sample`` with a per-image affine grid. torchvision retries a draw
  whose box does not fit (up to 10 times, then takes a central crop); here a side that would
  exceed the image is clamped to the image instead (same law whenever the box fits, which at
  the default scale and ratio is nearly always).
- **horizontal flip**, folded into the same grid (the x axis negated).
- **colour jitter**: brightness ``x * b``, contrast (blend with the mean gray level),
  saturation (blend with the grayscale image), hue (a shift in HSV), each factor uniform in
  its range, clamped to ``[0, 1]`` after each step, the four in a random order per image;
  applied with probability ``jitter_p``.
- **random grayscale** (ITU-R 601 luma ``0.299 R + 0.587 G + 0.114 B`` on all three
  channels), with probability ``grayscale_p``.

SimCLR's Gaussian blur is left out, as SimCLR itself does for 32 px images (CIFAR-10,
appendix B.9 of the paper).

References
----------
.. [1] T. Chen, S. Kornblith, M. Norouzi, G. Hinton, "A simple framework for contrastive
   learning of visual representations", ICML 2020 (appendix A: the augmentations).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.nn import functional as F

from qkd.errors import ParameterError

__all__ = [
    "N_UNIFORMS",
    "AugmentConfig",
    "adjust_brightness",
    "adjust_contrast",
    "adjust_hue",
    "adjust_saturation",
    "augment_from_uniform",
    "hsv_to_rgb",
    "resized_crop",
    "rgb_to_grayscale",
    "rgb_to_hsv",
    "simclr_augment",
]

#: Uniform numbers one image's augmentation consumes (see :func:`augment_from_uniform`).
N_UNIFORMS = 15
# Column layout of the uniform numbers.
_CROP = slice(0, 4)  # area, log-ratio, x position, y position
_FLIP = 4
_JITTER = 5
_FACTORS = slice(6, 10)  # brightness, contrast, saturation, hue
_ORDER = slice(10, 14)
_GRAY = 14

_LUMA = (0.299, 0.587, 0.114)


def _probability(name: str, p: float) -> float:
    if not 0.0 <= float(p) <= 1.0:
        raise ParameterError(name, p, "in [0, 1]")
    return float(p)


@dataclass(frozen=True)
class AugmentConfig:
    """Parameters of the SimCLR augmentation pipeline (defaults: SimCLR, strength 0.5).

    Parameters
    ----------
    crop_scale : (float, float)
        Range of the crop's area as a fraction of the image, ``0 < lo <= hi <= 1``.
    crop_ratio : (float, float)
        Range of the crop's aspect ratio (width / height), ``0 < lo <= hi``.
    flip_p : float
        Probability of a horizontal flip.
    jitter_p : float
        Probability of applying the colour jitter.
    brightness, contrast, saturation : float
        Jitter strengths ``>= 0``: the factor is uniform in ``[max(0, 1 - v), 1 + v]``.
    hue : float
        Hue shift range, in ``[0, 0.5]``: the shift is uniform in ``[-hue, hue]`` (in turns).
    grayscale_p : float
        Probability of converting to grayscale.
    random_order : bool
        Apply the four jitter operations in a random order per image (torchvision's
        ``ColorJitter``); otherwise brightness, contrast, saturation, hue.

    Examples
    --------
    >>> AugmentConfig.simclr(1.0).brightness
    0.8
    """

    crop_scale: tuple[float, float] = (0.08, 1.0)
    crop_ratio: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0)
    flip_p: float = 0.5
    jitter_p: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    hue: float = 0.1
    grayscale_p: float = 0.2
    random_order: bool = True

    def __post_init__(self) -> None:
        lo, hi = self.crop_scale
        if not 0.0 < lo <= hi <= 1.0:
            raise ParameterError("crop_scale", self.crop_scale, "(lo, hi) with 0 < lo <= hi <= 1")
        rlo, rhi = self.crop_ratio
        if not 0.0 < rlo <= rhi:
            raise ParameterError("crop_ratio", self.crop_ratio, "(lo, hi) with 0 < lo <= hi")
        for name in ("flip_p", "jitter_p", "grayscale_p"):
            _probability(name, getattr(self, name))
        for name in ("brightness", "contrast", "saturation"):
            if not float(getattr(self, name)) >= 0.0:
                raise ParameterError(name, getattr(self, name), ">= 0")
        if not 0.0 <= float(self.hue) <= 0.5:
            raise ParameterError("hue", self.hue, "in [0, 0.5]")

    @classmethod
    def simclr(cls, strength: float = 0.5) -> AugmentConfig:
        """SimCLR's pipeline with colour strength ``s``: jitter ``(0.8s, 0.8s, 0.8s, 0.2s)``.

        SimCLR uses ``s = 1`` on ImageNet and ``s = 0.5`` on CIFAR-10.
        """
        if not float(strength) >= 0.0:
            raise ParameterError("strength", strength, ">= 0")
        s = float(strength)
        return cls(brightness=0.8 * s, contrast=0.8 * s, saturation=0.8 * s, hue=min(0.2 * s, 0.5))

    @classmethod
    def crop_flip(cls, scale: tuple[float, float] = (0.25, 1.0)) -> AugmentConfig:
        """Random resized crop + flip only, for supervised training of task models."""
        return cls(crop_scale=scale, jitter_p=0.0, grayscale_p=0.0)


# --------------------------------------------------------------------------- colour maps


def rgb_to_grayscale(x: torch.Tensor) -> torch.Tensor:
    """Luma ``0.299 R + 0.587 G + 0.114 B`` of ``[..., 3, H, W]``, as ``[..., 1, H, W]``.

    Examples
    --------
    >>> rgb_to_grayscale(torch.ones(1, 3, 1, 1)).flatten().tolist()
    [1.0]
    """
    r, g, b = x.unbind(-3)
    return (_LUMA[0] * r + _LUMA[1] * g + _LUMA[2] * b).unsqueeze(-3)


def rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    """RGB in ``[0, 1]`` to HSV (hue in turns ``[0, 1)``), over dimension ``-3``.

    Examples
    --------
    >>> rgb_to_hsv(torch.tensor([0.0, 1.0, 0.0]).view(3, 1, 1)).flatten().tolist()
    [0.3333333432674408, 1.0, 1.0]
    """
    r, g, b = x.unbind(-3)
    maxc = torch.maximum(torch.maximum(r, g), b)
    minc = torch.minimum(torch.minimum(r, g), b)
    delta = maxc - minc
    gray = delta == 0
    safe_delta = torch.where(gray, torch.ones_like(delta), delta)
    safe_max = torch.where(maxc == 0, torch.ones_like(maxc), maxc)
    s = delta / safe_max
    rc = (maxc - r) / safe_delta
    gc = (maxc - g) / safe_delta
    bc = (maxc - b) / safe_delta
    is_r = maxc == r
    is_g = (maxc == g) & ~is_r
    h = torch.where(is_r, bc - gc, torch.where(is_g, 2.0 + rc - bc, 4.0 + gc - rc))
    h = torch.where(gray, torch.zeros_like(h), h)
    h = torch.remainder(h / 6.0, 1.0)
    return torch.stack((h, s, maxc), dim=-3)


def hsv_to_rgb(x: torch.Tensor) -> torch.Tensor:
    """HSV (hue in turns) to RGB, over dimension ``-3``: the inverse of :func:`rgb_to_hsv`.

    Uses ``c_n = v - v s max(0, min(k, 4 - k, 1))`` with ``k = (n + 6h) mod 6`` for
    ``n = 5, 3, 1`` (R, G, B).
    """
    h, s, v = x.unbind(-3)
    out = []
    for n in (5.0, 3.0, 1.0):
        k = torch.remainder(n + 6.0 * h, 6.0)
        w = torch.clamp(torch.minimum(k, 4.0 - k), 0.0, 1.0)
        out.append(v - v * s * w)
    return torch.stack(out, dim=-3)


def _per_image(f: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Factors ``[N]`` shaped to broadcast over images ``[N, C, H, W]``."""
    return f.reshape(f.shape + (1,) * (x.ndim - f.ndim))


def adjust_brightness(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """``clamp(factor * x, 0, 1)`` with one factor per image (``factor`` of shape ``[N]``)."""
    return torch.clamp(_per_image(factor, x) * x, 0.0, 1.0)


def adjust_contrast(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Blend each image with its mean gray level: ``clamp(f x + (1 - f) mean, 0, 1)``."""
    mean = rgb_to_grayscale(x).mean(dim=(-3, -2, -1), keepdim=True)
    f = _per_image(factor, x)
    return torch.clamp(f * x + (1.0 - f) * mean, 0.0, 1.0)


def adjust_saturation(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Blend each image with its grayscale version: ``clamp(f x + (1 - f) gray, 0, 1)``."""
    f = _per_image(factor, x)
    return torch.clamp(f * x + (1.0 - f) * rgb_to_grayscale(x), 0.0, 1.0)


def adjust_hue(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate the hue of each image by ``shift`` turns (``[N]``, in ``[-0.5, 0.5]``)."""
    h, s, v = rgb_to_hsv(x).unbind(-3)
    h = torch.remainder(h + _per_image(shift, x).squeeze(-3), 1.0)
    return torch.clamp(hsv_to_rgb(torch.stack((h, s, v), dim=-3)), 0.0, 1.0)


# --------------------------------------------------------------------------- geometry


def resized_crop(
    x: torch.Tensor,
    boxes: torch.Tensor,
    flip: torch.Tensor | None = None,
    size: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Crop a box out of each image and resize it (bilinear), optionally flipped.

    Parameters
    ----------
    x : torch.Tensor
        Images ``[N, C, H, W]``.
    boxes : torch.Tensor
        ``[N, 4]``: centre ``(cx, cy)`` and size ``(w, h)`` of each box in normalised
        coordinates (the image spans ``[-1, 1]``, so ``(0, 0, 1, 1)`` is the whole image and
        ``w, h`` are fractions of the image side).
    flip : torch.Tensor, optional
        ``[N]`` bool: mirror the crop horizontally.
    size : (int, int), optional
        Output ``(height, width)``; default the input's.

    Returns
    -------
    torch.Tensor
        ``[N, C, *size]``. The whole-image box without flip returns ``x`` (up to rounding).
    """
    n, _, height, width = x.shape
    out_h, out_w = (height, width) if size is None else size
    # Pixel centres of the output in [-1, 1] (align_corners=False convention).
    ys = (torch.arange(out_h, dtype=x.dtype, device=x.device) * 2.0 + 1.0) / out_h - 1.0
    xs = (torch.arange(out_w, dtype=x.dtype, device=x.device) * 2.0 + 1.0) / out_w - 1.0
    cx, cy, bw, bh = boxes.to(x.dtype).unbind(-1)
    if flip is not None:
        bw = torch.where(flip, -bw, bw)
    gx = cx[:, None] + bw[:, None] * xs[None, :]  # [N, W']
    gy = cy[:, None] + bh[:, None] * ys[None, :]  # [N, H']
    grid = torch.stack(
        (gx[:, None, :].expand(n, out_h, out_w), gy[:, :, None].expand(n, out_h, out_w)), dim=-1
    )
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _crop_boxes(u: torch.Tensor, config: AugmentConfig, aspect: float) -> torch.Tensor:
    """Boxes ``[N, 4]`` from four uniforms per image; ``aspect`` = height / width."""
    lo, hi = config.crop_scale
    log_lo, log_hi = math.log(config.crop_ratio[0]), math.log(config.crop_ratio[1])
    area = lo + (hi - lo) * u[:, 0]
    ratio = torch.exp(log_lo + (log_hi - log_lo) * u[:, 1])
    bw = torch.clamp(torch.sqrt(area * ratio * aspect), max=1.0)
    bh = torch.clamp(torch.sqrt(area / ratio / aspect), max=1.0)
    cx = (1.0 - bw) * (2.0 * u[:, 2] - 1.0)
    cy = (1.0 - bh) * (2.0 * u[:, 3] - 1.0)
    return torch.stack((cx, cy, bw, bh), dim=-1)


# --------------------------------------------------------------------------- pipeline


def _factor(strength: float, u: torch.Tensor) -> torch.Tensor:
    """Uniform in ``[max(0, 1 - strength), 1 + strength]`` from uniforms ``u``."""
    lo = max(0.0, 1.0 - strength)
    return lo + (1.0 + strength - lo) * u


def _jitter(x: torch.Tensor, u: torch.Tensor, config: AugmentConfig) -> torch.Tensor:
    b, c, s, h = u[:, _FACTORS].unbind(-1)
    factors = (
        _factor(config.brightness, b),
        _factor(config.contrast, c),
        _factor(config.saturation, s),
        config.hue * (2.0 * h - 1.0),
    )
    ops = (adjust_brightness, adjust_contrast, adjust_saturation, adjust_hue)
    active = (
        config.brightness > 0,
        config.contrast > 0,
        config.saturation > 0,
        config.hue > 0,
    )
    if config.random_order:
        order = torch.argsort(u[:, _ORDER], dim=-1)  # a uniform random permutation
    else:
        order = torch.arange(4, device=u.device).expand(u.shape[0], 4)
    for slot in range(4):
        for k in range(4):
            if not active[k]:
                continue
            chosen = _per_image(order[:, slot] == k, x)
            x = torch.where(chosen, ops[k](x, factors[k]), x)
    return x


def augment_from_uniform(
    x: torch.Tensor, u: torch.Tensor, config: AugmentConfig | None = None
) -> torch.Tensor:
    """Augment each image with the randomness given as uniform numbers (a pure function).

    Parameters
    ----------
    x : torch.Tensor
        RGB images ``[N, 3, H, W]`` in ``[0, 1]``.
    u : torch.Tensor
        ``[N, N_UNIFORMS]`` uniform numbers in ``[0, 1)``, one row per image.
    config : AugmentConfig, optional
        The pipeline; default :class:`AugmentConfig` ().

    Returns
    -------
    torch.Tensor
        ``[N, 3, H, W]`` in ``[0, 1]``.
    """
    config = AugmentConfig() if config is None else config
    if x.ndim != 4 or x.shape[1] != 3:
        raise ParameterError("x.shape", tuple(x.shape), "[N, 3, H, W] (RGB images)")
    if tuple(u.shape) != (x.shape[0], N_UNIFORMS):
        raise ParameterError("u.shape", tuple(u.shape), f"({x.shape[0]}, {N_UNIFORMS})")
    u = u.to(x.dtype)
    boxes = _crop_boxes(u[:, _CROP], config, x.shape[2] / x.shape[3])
    x = resized_crop(x, boxes, u[:, _FLIP] < config.flip_p)
    if config.jitter_p > 0:
        jittered = _jitter(x, u, config)
        x = torch.where(_per_image(u[:, _JITTER] < config.jitter_p, x), jittered, x)
    if config.grayscale_p > 0:
        gray = rgb_to_grayscale(x).expand_as(x)
        x = torch.where(_per_image(u[:, _GRAY] < config.grayscale_p, x), gray, x)
    return x


def simclr_augment(
    x: torch.Tensor, config: AugmentConfig | None = None, *, generator: torch.Generator
) -> torch.Tensor:
    """One random SimCLR view of each image, drawn from ``generator``.

    Parameters
    ----------
    x : torch.Tensor
        RGB images ``[N, 3, H, W]`` in ``[0, 1]``.
    config : AugmentConfig, optional
        The pipeline; default :class:`AugmentConfig` () (SimCLR, colour strength 0.5).
    generator : torch.Generator
        Source of the ``N * N_UNIFORMS`` uniform numbers (drawn on the generator's device).

    Returns
    -------
    torch.Tensor
        ``[N, 3, H, W]`` in ``[0, 1]``.

    Examples
    --------
    >>> g = torch.Generator().manual_seed(0)
    >>> v = simclr_augment(torch.rand(4, 3, 8, 8, generator=g), generator=g)
    >>> tuple(v.shape), bool(((v >= 0) & (v <= 1)).all())
    ((4, 3, 8, 8), True)
    """
    if not isinstance(generator, torch.Generator):
        raise ParameterError("generator", type(generator).__name__, "a torch.Generator")
    u = torch.rand((x.shape[0], N_UNIFORMS), generator=generator, device=generator.device)
    return augment_from_uniform(x, u.to(x.device), config)
