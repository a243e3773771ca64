"""Synthetic accelerometer windows shaped like UniMiB-SHAR's (a stand-in for the real data)."""

from __future__ import annotations

import math

import numpy as np
import torch

from qfl.data.base import TensorDataset
from qkd.errors import ParameterError

__all__ = ["UNIMIB_CLASS_COUNTS", "synthetic_har"]

#: Windows per class (labels 1..17) in the real UniMiB-SHAR 151-sample release.
UNIMIB_CLASS_COUNTS: tuple[int, ...] = (
    153, 216, 1738, 1985, 921, 746, 1324, 296, 200, 529, 511, 526, 661, 484, 434, 513, 534,
)  # fmt: skip


def synthetic_har(
    n_samples: int,
    *,
    seed: int | np.random.SeedSequence,
    length: int = 151,
    noise: float = 0.8,
) -> TensorDataset:
    """Synthetic accelerometer windows shaped like UniMiB-SHAR's: x [N, length, 3], 17 classes.

    Class ``c`` has a fixed random "signature" (per axis: gravity offset, amplitude, base
    frequency, and a fall-like step at a random time for classes 10..17); each window adds
    a random phase, a random amplitude jitter, a random time shift of the step and Gaussian
    noise of standard deviation ``noise`` (in units of the signal, after standardisation).
    Labels are drawn with UniMiB-SHAR's class frequencies. It stands in for the real data,
    which are not available here; it is learnable but not trivially (see ``noise``).

    Examples
    --------
    >>> ds = synthetic_har(20, seed=0)
    >>> tuple(ds.x.shape), ds.num_classes
    ((20, 151, 3), 17)
    """
    from qfl.data.unimib import CLASSES

    if isinstance(n_samples, bool) or int(n_samples) != n_samples or n_samples < 1:
        raise ParameterError("n_samples", n_samples, "an integer >= 1")
    if int(length) != length or length < 8:
        raise ParameterError("length", length, "an integer >= 8")
    if not noise >= 0:
        raise ParameterError("noise", noise, ">= 0")
    seq = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
    sig_rng = np.random.default_rng(np.random.SeedSequence(12345))  # fixed class signatures
    rng = np.random.default_rng(seq)
    k = len(CLASSES)
    offset = sig_rng.normal(0.0, 1.0, (k, 3))
    amp = sig_rng.uniform(0.3, 1.5, (k, 3))
    freq = sig_rng.uniform(0.5, 4.0, (k, 3))  # cycles per window
    step = np.where(np.arange(k)[:, None] >= 9, sig_rng.normal(0.0, 1.5, (k, 3)), 0.0)
    prior = np.asarray(UNIMIB_CLASS_COUNTS, dtype=np.float64)
    y = rng.choice(k, size=int(n_samples), p=prior / prior.sum())
    t = np.linspace(0.0, 1.0, int(length))[None, :, None]  # [1, T, 1]
    phase = rng.uniform(0.0, 2 * math.pi, (n_samples, 1, 3))
    jitter = rng.uniform(0.8, 1.2, (n_samples, 1, 3))
    t_step = rng.uniform(0.3, 0.7, (n_samples, 1, 1))
    x = (
        offset[y][:, None, :]
        + jitter * amp[y][:, None, :] * np.sin(2 * math.pi * freq[y][:, None, :] * t + phase)
        + step[y][:, None, :] * (t > t_step)
        + rng.normal(0.0, noise, (n_samples, int(length), 3))
    )
    return TensorDataset(
        torch.from_numpy(x.astype(np.float32)),
        torch.from_numpy(y.astype(np.int64)),
        CLASSES,
        "synthetic-har",
    )
