"""Numbers, durations and shares as the report writes them, and HTML escaping.

The formatting helpers take what a CSV cell or a JSON field holds (a number, a string,
nothing) and show what is not a number as a dash.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Iterable
from typing import Any

__all__: list[str] = []  # helpers of the report's modules, nothing public


def _num(v: Any) -> float:
    """``v`` as a float; NaN for nothing, a bool or what is not a number."""
    if v is None or v == "" or isinstance(v, bool):
        return math.nan
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def _si(v: Any, unit: str) -> str:
    """A value with an SI prefix and 3 significant digits.

    Examples
    --------
    >>> _si(11612303.2, "bit/s"), _si(256, "bit"), _si(None, "B")
    ('11.6 Mbit/s', '256 bit', '–')
    """
    x = _num(v)
    if not math.isfinite(x):
        return "–"
    for factor, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= factor:
            return f"{x / factor:.3g} {prefix}{unit}"
    return f"{x:.3g} {unit}"


def _secs(v: Any) -> str:
    """A duration in s, min or h.

    Examples
    --------
    >>> _secs(3.8614), _secs(600), _secs(None)
    ('3.86 s', '10 min', '–')
    """
    x = _num(v)
    if not math.isfinite(x):
        return "–"
    scale, unit = _time_unit([abs(x)])
    return f"{x / scale:.3g} {unit}"


def _pct(v: Any) -> str:
    """A fraction as a percentage.

    Examples
    --------
    >>> _pct(0.2186857), _pct(""), _pct(0.00043)
    ('21.9 %', '–', '0.043 %')
    """
    x = _num(v)
    return f"{100 * x:.3g} %" if math.isfinite(x) else "–"


def _cell(v: Any) -> str:
    """A table cell: numbers with 4 significant digits, nothing as a dash."""
    if v is None or v == "":
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return f"{v:.4g}" if math.isfinite(v) else "–"
    if isinstance(v, str):
        try:
            x = float(v)
        except ValueError:
            return v
        if v.strip().lstrip("-").isdigit():
            return v.strip()
        return f"{x:.4g}" if math.isfinite(x) else "–"
    if isinstance(v, list | dict):
        return json.dumps(v)
    return str(v)


def _time_unit(times: Iterable[float]) -> tuple[float, str]:
    """The unit of a time axis that reaches the largest finite of ``times`` (seconds):
    its length in seconds and its name (``h`` from 2 h, ``min`` from 2 min, else ``s``)."""
    top = max((t for t in times if math.isfinite(t)), default=0.0)
    if top >= 2 * 3600:
        return 3600.0, "h"
    if top >= 120:
        return 60.0, "min"
    return 1.0, "s"


def _esc(v: Any) -> str:
    """``str(v)`` escaped for HTML text and attribute values."""
    return html.escape(str(v), quote=True)
