"""Repeat a reproduction over seeds and report mean ± standard deviation (``--seeds K``).

Each reproduction script turns its run into a function ``run(seed) -> dict`` (the JSON it
prints for one seed); :func:`over_seeds` runs seeds ``seed, seed + 1, ... seed + K - 1``
and returns, for K > 1, ``{"seeds", "per_seed", "mean", "std", "n"}``: every numeric leaf
of the per-seed results (nested dicts and equal-length lists) averaged, with the sample
standard deviation (ddof 1) and the number of seeds that had a value there (a ``None``, e.g.
a target never reached, is left out of that leaf's mean and counted out of ``n``).

Examples
--------
>>> agg = aggregate([{"acc": 80.0, "exits": [1.0, 2.0]}, {"acc": 82.0, "exits": [3.0, 4.0]}])
>>> agg["mean"], agg["std"]["acc"]
({'acc': 81.0, 'exits': [2.0, 3.0]}, 1.4142)
"""

from __future__ import annotations

import argparse
import copy
import math
import statistics
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["add_seeds_option", "aggregate", "fmt", "over_seeds", "run_seeds"]


def add_seeds_option(parser: argparse.ArgumentParser) -> None:
    """Add ``--seeds K`` (runs seeds ``--seed`` .. ``--seed + K - 1``)."""
    parser.add_argument(
        "--seeds",
        type=int,
        default=1,
        help="repeat over K seeds (--seed, --seed+1, ...) and report mean ± std",
    )


def _number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def _agg(values: Sequence[Any]) -> tuple[Any, Any, Any] | None:
    """(mean, std, n) of one leaf across seeds, or None where it is not numeric."""
    present = [v for v in values if v is not None]
    if not present:
        return None
    if all(_number(v) for v in present):
        mean = statistics.fmean(present)
        std = statistics.stdev(present) if len(present) > 1 else 0.0
        return round(mean, 4), round(std, 4), len(present)
    if all(isinstance(v, dict) for v in present) and len(present) == len(values):
        out: tuple[dict[str, Any], dict[str, Any], dict[str, Any]] = ({}, {}, {})
        for key in present[0]:
            if all(key in v for v in present):
                got = _agg([v[key] for v in present])
                if got is not None:
                    for part, value in zip(out, got, strict=True):
                        part[key] = value
        return out if out[0] else None
    lists = [v for v in present if isinstance(v, list)]
    if len(lists) == len(values) and len({len(v) for v in lists}) == 1:
        cols = [_agg([v[i] for v in lists]) for i in range(len(lists[0]))]
        if cols and all(c is not None for c in cols):
            return tuple([c[j] for c in cols if c is not None] for j in range(3))  # type: ignore[return-value]
    return None


_CONSTANT = ("paper", "settings")  # the same for every seed, or not a result


def aggregate(results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Mean, standard deviation and count of every numeric leaf of ``results`` (but
    ``paper`` and ``settings``, kept from the per-seed results)."""
    got = _agg([{k: v for k, v in r.items() if k not in _CONSTANT} for r in results])
    mean, std, n = got if got is not None else ({}, {}, {})
    return {"mean": mean, "std": std, "n": n}


def over_seeds(run: Callable[[int], dict[str, Any]], first: int, k: int) -> dict[str, Any]:
    """``run(seed)`` for ``k`` seeds from ``first``; one seed's result as it is, several
    seeds' as ``{"seeds", "per_seed", "mean", "std", "n"}`` (see the module)."""
    if k < 1:
        raise SystemExit(f"--seeds: must be >= 1, got {k}")
    seeds = list(range(first, first + k))
    results = [run(s) for s in seeds]
    if k == 1:
        return results[0]
    return {"seeds": seeds, "per_seed": copy.deepcopy(results), **aggregate(results)}


def run_seeds(
    args: argparse.Namespace,
    run: Callable[[argparse.Namespace], dict[str, Any]],
    table: Callable[[dict[str, Any]], None],
) -> dict[str, Any]:
    """A script's ``run(args)`` over ``--seeds`` seeds from ``--seed``; ``table(aggregate)``
    prints the mean ± std table when there are several. Returns what the JSON line holds."""
    result = over_seeds(
        lambda seed: run(argparse.Namespace(**{**vars(args), "seed": seed})), args.seed, args.seeds
    )
    if args.seeds > 1:
        table(result)
    return result


def fmt(agg: dict[str, Any], *path: Any, digits: int = 2) -> str:
    """``"81.38 ± 0.52"`` for the leaf at ``path`` of an aggregate (``"-"`` if absent), with
    ``(n/K)`` when some seeds had no value there."""
    mean, std, n = agg["mean"], agg["std"], agg["n"]
    try:
        for p in path:
            mean, std, n = mean[p], std[p], n[p]
    except (KeyError, IndexError, TypeError):
        return "-"
    k = len(agg.get("seeds", [])) or n
    tail = f" ({n}/{k} seeds)" if n != k else ""
    return f"{mean:.{digits}f} ± {std:.{digits}f}{tail}"
