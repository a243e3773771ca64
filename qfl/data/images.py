"""JPEG decoding and resizing (pillow) into normalised float tensors (torch).

Every image is cropped to its central square (side = the shorter side) and then resized to
``size x size`` with pillow's antialiased bilinear filter. For speed, the JPEG decoder is
first asked (``Image.draft``) to decode at the smallest power-of-two reduction that is still
at least twice the target size, which changes the result only marginally.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import torch
from PIL import Image

from qfl.data.base import DatasetCorrupt
from qkd.errors import ParameterError

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "center_square",
    "check_image_size",
    "load_image",
    "load_images",
    "normalize_images",
    "to_tensor",
]

#: Per-channel statistics of ImageNet (RGB, pixels in [0, 1]), the usual default.
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


def check_image_size(size: int) -> int:
    """Return ``size`` as an int, or raise :class:`ParameterError` unless it is >= 1."""
    if isinstance(size, bool) or not isinstance(size, int | np.integer) or size < 1:
        raise ParameterError("image_size", size, "a positive integer")
    return int(size)


def center_square(width: int, height: int) -> tuple[int, int, int, int]:
    """Box ``(left, top, right, bottom)`` of the central square of a ``width x height`` image.

    Examples
    --------
    >>> center_square(500, 300)
    (100, 0, 400, 300)
    """
    side = min(width, height)
    left = (width - side) // 2
    top = (height - side) // 2
    return left, top, left + side, top + side


def load_image(path: str | os.PathLike[str], size: int) -> np.ndarray:
    """Decode one image, center-crop it to a square and resize it.

    Parameters
    ----------
    path : path-like
        JPEG (or any format pillow reads).
    size : int
        Output side length in pixels.

    Returns
    -------
    numpy.ndarray
        uint8 ``[size, size, 3]`` RGB.

    Raises
    ------
    DatasetCorrupt
        The file is missing, truncated or not an image pillow can decode.
    """
    size = check_image_size(size)
    try:
        with Image.open(path) as img:
            img.draft("RGB", (2 * size, 2 * size))
            rgb = img.convert("RGB")
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        # OSError covers pillow's UnidentifiedImageError and "image file is truncated".
        raise DatasetCorrupt(
            f"{os.fspath(path)} cannot be decoded as an image ({exc}); replace it with an "
            "intact copy of the original file"
        ) from exc
    square = rgb.crop(center_square(*rgb.size))
    resized = square.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(resized, dtype=np.uint8)


@lru_cache(maxsize=16)
def _load_cached(paths: tuple[str, ...], size: int) -> np.ndarray:
    out = np.empty((len(paths), size, size, 3), dtype=np.uint8)
    for i, p in enumerate(paths):
        out[i] = load_image(p, size)
    out.flags.writeable = False
    return out


def load_images(paths: Sequence[str | os.PathLike[str]], size: int) -> np.ndarray:
    """Decode many images with :func:`load_image` (cached in-process by paths and size).

    Returns
    -------
    numpy.ndarray
        Read-only uint8 ``[N, size, size, 3]``.
    """
    size = check_image_size(size)
    return _load_cached(tuple(os.fspath(p) for p in paths), size)


def normalize_images(
    x: torch.Tensor,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> torch.Tensor:
    """``(x - mean) / std`` per channel for ``x`` of shape ``[..., C, H, W]`` in [0, 1]."""
    m = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(-1, 1, 1)
    s = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(-1, 1, 1)
    return (x - m) / s


def to_tensor(images: np.ndarray, *, normalize: bool = True) -> torch.Tensor:
    """uint8 ``[N, H, W, C]`` to float32 ``[N, C, H, W]`` in [0, 1], then optionally normalised.

    Parameters
    ----------
    images : numpy.ndarray
        uint8 images, channels last.
    normalize : bool
        Apply :func:`normalize_images` with the ImageNet statistics.
    """
    x = torch.from_numpy(np.ascontiguousarray(images).transpose(0, 3, 1, 2).copy())
    x = x.to(torch.float32).div_(255.0)
    return normalize_images(x) if normalize else x
