"""Vectorized maximisation of key rates over source settings, for many links at once.

The link-kind models (:mod:`qkd.mdi`, :mod:`qkd.twinfield`, :mod:`qkd.cv`) optimise one or
two settings (intensities, sending probability, modulation variance) separately for every
link. Doing it link by link with a scalar optimiser costs milliseconds per link; here every
step works on all links together:

* :func:`maximise_1d` scans a log-spaced grid, then refines the best bracket of every link
  by a golden-section search on the logarithm of the setting;
* :func:`maximise_2d` scans a coarse log-spaced 2-d grid, then refines by alternating
  golden-section searches along each axis inside the bracket of the best grid point.

The objective takes arrays of one shape (one entry per link and candidate) and returns an
array of the same shape; it must be finite (unclipped rates, negative where no key is
possible, so that the search still has a slope to follow).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["maximise_1d", "maximise_2d"]

FloatArray = NDArray[np.float64]

_INV_PHI = (math.sqrt(5.0) - 1.0) / 2.0


def _golden(
    f: Callable[[FloatArray], FloatArray], a: FloatArray, b: FloatArray, iterations: int
) -> tuple[FloatArray, FloatArray]:
    """Golden-section maximisation of ``f`` on ``[a, b]`` elementwise; ``(x_best, f_best)``."""
    c = b - _INV_PHI * (b - a)
    d = a + _INV_PHI * (b - a)
    fc, fd = f(c), f(d)
    for _ in range(iterations):
        left = fc >= fd  # the maximum lies in [a, d]
        c_old, d_old, fc_old, fd_old = c, d, fc, fd
        a = np.where(left, a, c_old)
        b = np.where(left, d_old, b)
        c = np.where(left, b - _INV_PHI * (b - a), d_old)
        d = np.where(left, c_old, a + _INV_PHI * (b - a))
        fx = f(np.where(left, c, d))
        fc = np.where(left, fx, fd_old)
        fd = np.where(left, fc_old, fx)
    x = np.where(fc >= fd, c, d)
    return x, np.maximum(fc, fd)


def maximise_1d(
    objective: Callable[[FloatArray, FloatArray], FloatArray],
    links: NDArray[Any],
    lo: float,
    hi: float,
    *,
    grid: int = 40,
    iterations: int = 40,
) -> tuple[FloatArray, FloatArray]:
    """Maximise ``objective(links, x)`` over ``x`` in ``[lo, hi]`` for every link.

    Parameters
    ----------
    objective : callable
        ``objective(link_values, x)`` with arrays broadcast together, elementwise.
    links : ndarray
        1-d array of per-link values (transmittances, lengths).
    lo, hi : float
        Search interval (``0 < lo < hi``); the search runs on ``log x``.
    grid, iterations : int
        Grid points and golden-section iterations.

    Returns
    -------
    x_best, value_best : ndarray
        One entry per link.

    Examples
    --------
    >>> x, v = maximise_1d(lambda t, x: -(x - t) ** 2, np.array([0.5, 2.0]), 0.01, 10.0)
    >>> [round(float(u), 6) for u in x]
    [0.5, 2.0]
    """
    log_grid = np.linspace(math.log(lo), math.log(hi), grid)
    values = objective(links[:, None], np.exp(log_grid)[None, :])
    best = np.argmax(values, axis=1)
    a = log_grid[np.maximum(best - 1, 0)]
    b = log_grid[np.minimum(best + 1, grid - 1)]
    log_x, value = _golden(lambda u: objective(links, np.exp(u)), a, b, iterations)
    grid_best = values[np.arange(links.size), best]
    use_grid = grid_best > value
    log_x = np.where(use_grid, log_grid[best], log_x)
    return np.exp(log_x), np.where(use_grid, grid_best, value)


def maximise_2d(
    objective: Callable[[FloatArray, FloatArray, FloatArray], FloatArray],
    links: NDArray[Any],
    bounds_x: tuple[float, float],
    bounds_y: tuple[float, float],
    *,
    grid: int = 16,
    rounds: int = 3,
    iterations: int = 30,
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Maximise ``objective(links, x, y)`` over a box for every link.

    A ``grid x grid`` log-spaced scan picks each link's best point; then ``rounds`` of
    alternating golden-section searches along ``x`` and ``y`` refine it, each inside the
    grid bracket around the current point (the objectives here are smooth and unimodal near
    their maximum, so coordinate ascent converges quickly).

    Returns
    -------
    x_best, y_best, value_best : ndarray
        One entry per link.

    Examples
    --------
    >>> def f(t, x, y):
    ...     return -((x - t) ** 2) - (y - 2 * t) ** 2
    >>> x, y, v = maximise_2d(f, np.array([0.1, 0.3]), (0.01, 1.0), (0.01, 1.0))
    >>> [round(float(u), 4) for u in x], [round(float(u), 4) for u in y]
    ([0.1, 0.3], [0.2, 0.6])
    """
    gx = np.linspace(math.log(bounds_x[0]), math.log(bounds_x[1]), grid)
    gy = np.linspace(math.log(bounds_y[0]), math.log(bounds_y[1]), grid)
    values = objective(
        links[:, None, None], np.exp(gx)[None, :, None], np.exp(gy)[None, None, :]
    ).reshape(links.size, grid * grid)
    best = np.argmax(values, axis=1)
    ix, iy = np.divmod(best, grid)
    lx, ly = gx[ix], gy[iy]
    value = values[np.arange(links.size), best]
    step_x = gx[1] - gx[0]
    step_y = gy[1] - gy[0]
    for _ in range(rounds):
        ax = np.maximum(lx - step_x, gx[0])
        bx = np.minimum(lx + step_x, gx[-1])
        ly_fixed = ly

        def along_x(u: FloatArray, fy: FloatArray = ly_fixed) -> FloatArray:
            return objective(links, np.exp(u), np.exp(fy))

        cand, v = _golden(along_x, ax, bx, iterations)
        better = v > value
        lx = np.where(better, cand, lx)
        value = np.where(better, v, value)
        ay = np.maximum(ly - step_y, gy[0])
        by = np.minimum(ly + step_y, gy[-1])
        lx_fixed = lx

        def along_y(u: FloatArray, fx: FloatArray = lx_fixed) -> FloatArray:
            return objective(links, np.exp(fx), np.exp(u))

        cand, v = _golden(along_y, ay, by, iterations)
        better = v > value
        ly = np.where(better, cand, ly)
        value = np.where(better, v, value)
    return np.exp(lx), np.exp(ly), value
