"""Small helpers shared by the link-kind models: argument checks and entropies.

Kept apart from :mod:`qkd.rates` (whose helpers are private to it) so that the models of
:mod:`qkd.mdi`, :mod:`qkd.twinfield` and :mod:`qkd.cv` validate their inputs the same way:
every bad value raises :class:`~qkd.errors.ParameterError` naming the parameter, the value
and what is allowed.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike, NDArray

from qkd.errors import ParameterError

if TYPE_CHECKING:
    from qkd.params import Detector

__all__ = [
    "check_ideal_detector",
    "check_number",
    "check_pulse_link",
    "clipped_rate_and_settings",
    "h2",
    "lengths_km",
]

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


def check_pulse_link(clock_hz: float, misalignment: float, f_ec: float) -> None:
    """Check the fields shared by the pulse-pair relay links (MDI, twin-field).

    Raises :class:`ParameterError` unless ``clock_hz > 0``, ``misalignment`` is in
    [0, 0.5] and ``f_ec >= 1``.

    Examples
    --------
    >>> check_pulse_link(1e6, 0.015, 1.16)
    >>> check_pulse_link(1e6, 0.6, 1.16)
    Traceback (most recent call last):
    ...
    qkd.errors.ParameterError: misalignment: must be in [0, 0.5], got 0.6
    """
    check_number("clock_hz", clock_hz, clock_hz > 0, "> 0")
    check_number("misalignment", misalignment, 0 <= misalignment <= 0.5, "in [0, 0.5]")
    check_number("f_ec", f_ec, f_ec >= 1, ">= 1")


def check_ideal_detector(detector: Detector, kind: str) -> None:
    """Raise :class:`ParameterError` unless ``detector`` has no dead time and no after-pulses.

    ``kind`` names the model that does not handle them (it ends the ``allowed`` text).

    Examples
    --------
    >>> from qkd.params import Detector
    >>> check_ideal_detector(Detector(efficiency=0.5, dark_count_prob=1e-6), "MDI")
    >>> check_ideal_detector(
    ...     Detector(efficiency=0.5, dark_count_prob=1e-6, dead_time_s=1e-6), "MDI"
    ... )
    Traceback (most recent call last):
    ...
    qkd.errors.ParameterError: detector.dead_time_s: must be 0 (not modelled for MDI), got 1e-06
    """
    for name in ("dead_time_s", "afterpulse_prob"):
        value = getattr(detector, name)
        if value != 0.0:
            raise ParameterError(f"detector.{name}", value, f"0 (not modelled for {kind})")


def clipped_rate_and_settings(
    shape: tuple[int, ...], rate: ArrayLike, *settings: ArrayLike
) -> tuple[FloatArray, ...]:
    """``(max(rate, 0), *settings)``, each as a float array reshaped to ``shape``.

    The optimisers work on the flattened links; this gives the results back in the shape of
    the caller's ``distance_km``, with negative (no-key) rates clipped to 0.

    Examples
    --------
    >>> r, mu = clipped_rate_and_settings((2,), [-0.5, 0.25], [0.1, 0.2])
    >>> r.tolist(), mu.tolist()
    ([0.0, 0.25], [0.1, 0.2])
    """
    clipped = np.maximum(np.asarray(rate, dtype=float), 0.0).reshape(shape)
    return (clipped, *(np.asarray(x, dtype=float).reshape(shape) for x in settings))


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
