"""Changing a parsed scenario: ``--set`` dotted-path overrides and ``--quick``."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

import yaml

from qfl.scenario.base import ScenarioError
from qfl.scenario.document import Scenario, _from_mapping, parse_scenario  # noqa: F401

__all__ = ["DEFAULT_QUICK", "apply_overrides", "apply_quick"]


def _parse_scalar(text: str) -> Any:
    """A command-line value as YAML (``0.3`` -> 0.3, ``[a, b]`` -> list); unlike YAML 1.1,
    ``1e3`` and ``1e-3`` are numbers."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, str):
        try:
            return float(value) if value.strip().lower() not in _NOT_NUMBERS else value
        except ValueError:
            return value
    return value


_NOT_NUMBERS = {"nan", "inf", "+inf", "-inf", "infinity", "+infinity", "-infinity"}


def apply_overrides(sc: Scenario, overrides: Mapping[str, Any]) -> Scenario:
    """Return a new scenario with dotted-path fields replaced, validated again.

    Parameters
    ----------
    sc : Scenario
        The base scenario.
    overrides : mapping
        ``{"qkd.rate_scale": 0.3, "learning.gamma": 0.01, "topology.links[2].skr_bps": 1e3}``;
        string values are parsed as YAML scalars (``"0.3"`` -> 0.3).

    Raises
    ------
    ScenarioError
        For a path that names no field, or a value that fails validation.

    Examples
    --------
    >>> sc = parse_scenario('''
    ... name: t
    ... topology: {nodes: [{name: a}, {name: b}], links: [{a: a, b: b, length_km: 1}]}
    ... learning: {method: fedavg, dataset: fashion-mnist}
    ... ''')
    >>> apply_overrides(sc, {"qkd.rate_scale": "0.5"}).qkd.rate_scale
    0.5
    """
    data = sc.model_dump(mode="python", exclude_none=False)
    for dotted, raw in overrides.items():
        value = _parse_scalar(raw) if isinstance(raw, str) else raw
        _set_path(data, dotted, value)
    return _from_mapping(data)


def _split_path(dotted: str) -> list[str | int]:
    parts: list[str | int] = []
    for chunk in dotted.split("."):
        name, _, rest = chunk.partition("[")
        if name:
            parts.append(name)
        while rest:
            idx, _, rest = rest.partition("]")
            if not idx.lstrip("-").isdigit():
                raise ScenarioError(dotted, "an index must be an integer, like links[3]")
            parts.append(int(idx))
            rest = rest.lstrip("[")
    if not parts:
        raise ScenarioError(dotted, "an empty field path")
    return parts


def _set_path(data: Any, dotted: str, value: Any) -> None:
    parts = _split_path(dotted)
    node = data
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        here = _dotted(parts[: depth + 1])
        if isinstance(part, int):
            if not isinstance(node, list | tuple):
                raise ScenarioError(dotted, f"{_dotted(parts[:depth])!r} is not a list")
            if not -len(node) <= part < len(node):
                raise ScenarioError(
                    dotted,
                    f"no item {part}: {_dotted(parts[:depth])!r} has {len(node)} items"
                    + (f" (0-{len(node) - 1})" if node else ""),
                )
            if isinstance(node, tuple):
                raise ScenarioError(dotted, "internal: tuple container")
            if last:
                node[part] = value
            else:
                node[part] = _thaw(node[part])
                node = node[part]
        else:
            if not isinstance(node, dict) or part not in node:
                where = _dotted(parts[:depth])
                if not isinstance(node, dict):
                    raise ScenarioError(dotted, f"{where!r} has no fields (it is a value)")
                close = difflib.get_close_matches(str(part), list(node), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ScenarioError(
                    dotted,
                    f"unknown field {here!r}{hint}; fields "
                    + (f"of {where!r} " if where else "")
                    + f"are {', '.join(node)}",
                )
            if last:
                node[part] = value
            else:
                node[part] = _thaw(node[part])
                node = node[part]


def _dotted(parts: list[str | int]) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else ("." if out else "") + p
    return out


def _thaw(v: Any) -> Any:
    if isinstance(v, tuple):
        return [_thaw(x) for x in v]
    if isinstance(v, list):
        return [_thaw(x) for x in v]
    if isinstance(v, dict):
        return {k: _thaw(x) for k, x in v.items()}
    return v


DEFAULT_QUICK: dict[str, int] = {
    "learning.rounds": 3,
    "learning.samples_per_client": 300,
    "learning.test_samples": 2000,
}
"""``--quick`` on a scenario without a ``quick:`` section: at most these values."""


def apply_quick(sc: Scenario) -> tuple[Scenario, list[str]]:
    """The reduced scenario of ``--quick`` and what was reduced (``field: old -> new``).

    The scenario's own ``quick:`` overrides, or, without them, :data:`DEFAULT_QUICK` (each a
    cap: a value already smaller stays), so ``--quick`` is never silently a full run.

    Examples
    --------
    >>> sc = parse_scenario('''
    ... name: t
    ... topology: {nodes: [{name: a}, {name: b}], links: [{a: a, b: b, length_km: 1}]}
    ... learning: {method: def-fd, dataset: fashion-mnist, rounds: 50}
    ... ''')
    >>> for change in apply_quick(sc)[1]:
    ...     print(change)
    learning.rounds: 50 -> 3
    learning.samples_per_client: None -> 300
    learning.test_samples: None -> 2000
    """
    if sc.quick:
        overrides = dict(sc.quick)
    else:
        overrides = {}
        for path, cap in DEFAULT_QUICK.items():
            current = getattr(sc.learning, path.split(".")[1])
            if current is None or current > cap:
                overrides[path] = cap
    before = sc.model_dump(mode="json")
    out = apply_overrides(sc, overrides) if overrides else sc
    after = out.model_dump(mode="json")
    changes = []
    for path in overrides:
        old: Any = before
        new: Any = after
        for part in path.split("."):
            old = old.get(part) if isinstance(old, dict) else None
            new = new.get(part) if isinstance(new, dict) else None
        if old != new:
            changes.append(f"{path}: {old} -> {new}")
    return out, changes
