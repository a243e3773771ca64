"""Small helpers shared by the link-kind models: argument checks and entropies.

Kept apart from :mod:`qkd.rates` (whose helpers are private to it) so that the models of
:mod:`qkd.mdi`, :mod:`qkd.twinfield` and :mod:`qkd.cv` validate their inputs the same way:
every bad value raises :class:`~qkd.errors.ParameterError` naming the parameter, the value
and what is allowed.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray

from qkd.errors import ParameterError

__all__ = ["check_number", "h2", "lengths_km"]

FloatArray = NDArray[np.float64]


def check_number(name: str, value: object, ok: bool, allowed: str) -> None:
    """Raise :class:`ParameterError` unless ``value`` is a finite real number and ``ok``.

    Examples
    --------
    >>> check_number("beta", 0.9, 0 < 0.9 <= 1, "in (0, 1]")
    >>> check_number("beta", 1.5, 0 < 1.5 <= 1, "in (0, 1]")
    Traceback (most recent call last):
    ...
    qkd.errors.ParameterError: beta: must be in (0, 1], got 1.5
    """
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    if not (is_number and math.isfinite(float(value)) and ok):  # type: ignore[arg-type]
        raise ParameterError(name, value, allowed)


def lengths_km(distance_km: ArrayLike) -> FloatArray:
    """Link lengths as a float64 array, checked ``>= 0`` and finite.

    Examples
    --------
    >>> lengths_km([0, 10.5]).tolist()
    [0.0, 10.5]
    """
    try:
        d = np.asarray(distance_km, dtype=float)
    except (TypeError, ValueError):
        raise ParameterError("distance_km", distance_km, "a number or array of numbers") from None
    bad = ~np.isfinite(d) | (d < 0)
    if np.any(bad):
        raise ParameterError("distance_km", float(d[bad].ravel()[0]), ">= 0 and finite")
    return d


def h2(p: ArrayLike) -> FloatArray:
    """Binary entropy with the argument clipped to [0, 1] (bounds may overshoot).

    Examples
    --------
    >>> float(h2(0.5)), float(h2(0.0)), float(h2(1.2))
    (1.0, 0.0, 0.0)
    """
    x = np.clip(np.asarray(p, dtype=float), 0.0, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -x * np.log2(x) - (1.0 - x) * np.log1p(-x) / math.log(2.0)
    return np.asarray(np.where((x <= 0.0) | (x >= 1.0), 0.0, h), dtype=np.float64)
