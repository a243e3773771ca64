"""What-if studies: a scenario run over a grid of field values.

A sweep is a base scenario plus a grid ``{dotted.field: [values...]}``; every point of the
Cartesian product is one run. The sweep follows the plan/executor design: every point's
network timeline is simulated first (cheap, no learning); points whose learning inputs are
identical (same method, data, seed and plan of operations, possibly a prefix of a longer one)
share one learning execution; the distinct learning jobs run on an executor (local processes
by default, or Ray). Each point then gets its own run folder, and the sweep folder gets
``sweep.csv`` (a row per point) and the key-rate vs accuracy plot.
"""

from __future__ import annotations

import csv
import itertools
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from qfl.scenario import Scenario, ScenarioError, apply_overrides, load_scenario

__all__ = [
    "SweepPoint",
    "SweepSpec",
    "load_sweep_file",
    "parse_set_options",
    "sweep_points",
]


@dataclass(frozen=True)
class SweepSpec:
    """A sweep: base scenario, grid, and how to draw it.

    Parameters
    ----------
    base : Scenario
        The scenario every point starts from.
    grid : mapping of str to sequence
        Dotted field path -> values; points are the Cartesian product, in order.
    x : str
        What the key-rate plot uses on its x axis: ``mean_skr_bps`` (measured from the
        network of each point), ``key_budget_bits`` or a grid field.
    series : str or None
        A grid field whose values become separate lines (method, cipher policy...).
    """

    base: Scenario
    grid: Mapping[str, Sequence[Any]]
    x: str = "mean_skr_bps"
    series: str | None = None
    name: str = "sweep"
    overrides: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SweepPoint:
    """One point of a sweep: its index, its field values and the resulting scenario."""

    index: int
    values: Mapping[str, Any]
    scenario: Scenario

    @property
    def slug(self) -> str:
        """A folder name for the point: ``003-rate_scale=0.3``."""
        parts = [f"{k.split('.')[-1]}={v}" for k, v in self.values.items()]
        text = "-".join(parts) or "base"
        return f"{self.index:03d}-" + re.sub(r"[^A-Za-z0-9_.=+\-]", "_", text)[:80]

    def series_label(self, series: str | None) -> str:
        """The label of the line this point belongs to."""
        if series is None:
            return self.scenario.learning.method
        return str(self.values.get(series, ""))


_SET_RE = re.compile(r"^(?P<key>[A-Za-z_][\w.\[\]-]*)=(?P<values>.*)$")


def parse_set_options(options: Sequence[str]) -> dict[str, list[Any]]:
    """Parse ``--set field=v1,v2,...`` options into a grid.

    Values are YAML scalars (``0.1`` -> float, ``otp`` -> str, ``[a, b]`` -> list).

    Raises
    ------
    ScenarioError
        For an option without ``=`` or without values.

    Examples
    --------
    >>> parse_set_options(["qkd.rate_scale=0.1,1", "cipher.policy=otp"])
    {'qkd.rate_scale': [0.1, 1], 'cipher.policy': ['otp']}
    """
    grid: dict[str, list[Any]] = {}
    for opt in options:
        m = _SET_RE.match(opt.strip())
        if not m:
            raise ScenarioError("--set", f"must look like field.path=v1,v2,..., got {opt!r}")
        raw = m.group("values")
        values = _split_values(raw)
        if not values:
            raise ScenarioError(f"--set {m.group('key')}", "needs at least one value")
        grid[m.group("key")] = values
    return grid


def _split_values(raw: str) -> list[Any]:
    out: list[Any] = []
    depth = 0
    cur = ""
    for ch in raw:
        if ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    if cur.strip():
        out.append(cur)
    parsed = []
    for v in out:
        v = v.strip()
        if not v:
            continue
        try:
            parsed.append(yaml.safe_load(v))
        except yaml.YAMLError:
            parsed.append(v)
    return parsed


def load_sweep_file(path: str | Path) -> SweepSpec:
    """Read a sweep YAML file.

    The file holds ``scenario`` (a path, relative to the sweep file), ``grid`` (field ->
    list of values), and optionally ``x``, ``series``, ``name`` and ``set`` (fixed
    overrides applied to every point).

    Raises
    ------
    ScenarioError
        Naming the bad key of the sweep file.
    """
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ScenarioError(str(p), f"cannot read the file ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise ScenarioError(str(p), f"malformed YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ScenarioError(str(p), "a sweep file must be a mapping")
    allowed = {"scenario", "grid", "x", "series", "name", "set"}
    for key in data:
        if key not in allowed:
            raise ScenarioError(
                f"{p}: {key}", f"unknown key; allowed: {', '.join(sorted(allowed))}"
            )
    if "scenario" not in data:
        raise ScenarioError(f"{p}: scenario", "missing (a path to the base scenario)")
    grid = data.get("grid") or {}
    if not isinstance(grid, dict) or not grid:
        raise ScenarioError(f"{p}: grid", "must map field paths to lists of values")
    grid = {k: (v if isinstance(v, list) else [v]) for k, v in grid.items()}
    base = load_scenario(p.parent / str(data["scenario"]))
    fixed = data.get("set") or {}
    if fixed:
        base = apply_overrides(base, fixed)
    return SweepSpec(
        base=base,
        grid=grid,
        x=str(data.get("x", "mean_skr_bps")),
        series=data.get("series"),
        name=str(data.get("name", p.stem)),
        overrides=fixed,
    )


def sweep_points(spec: SweepSpec) -> list[SweepPoint]:
    """Expand a sweep into its points, validating every one.

    Raises
    ------
    ScenarioError
        If a grid field names no scenario field or a value is invalid; the message names
        the field and the value.
    """
    keys = list(spec.grid)
    points = []
    for i, combo in enumerate(itertools.product(*(spec.grid[k] for k in keys))):
        values = dict(zip(keys, combo, strict=True))
        try:
            sc = apply_overrides(spec.base, values)
        except ScenarioError as exc:
            bad = next((k for k in keys if exc.path.startswith(k.split("[")[0])), None)
            where = f"--set {bad}" if bad else exc.path
            raise ScenarioError(where, exc.message) from None
        points.append(SweepPoint(i, values, sc))
    return points


def write_sweep_table(rows: Sequence[Mapping[str, Any]], path: Path) -> None:
    """Write the sweep's table (a row per point) atomically."""
    cols: list[str] = []
    for r in rows:
        for k in r:
            if k not in cols:
                cols.append(k)
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=cols)
        w.writeheader()
        for r in rows:
            w.writerow({k: r.get(k, "") for k in cols})
    tmp.replace(path)


def write_json_atomic(obj: Any, path: Path) -> None:
    """Write JSON to ``path`` through a temporary file, so a crash leaves no half file."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str), encoding="utf-8")
    tmp.replace(path)


ExecutorFn = Callable[[Sequence[Callable[[], Any]]], list[Any]]
