"""Speed of the key-rate models for many links at once: decoy-BB84 finite key and every kind.

Computes the finite-key rate (``qkd.finite.finite_key``, both protocols) and the asymptotic
rate (``qkd.rates.key_rate_bps``, intensity optimised) of one decoy-BB84 preset for 1,000
distinct link lengths, in one call each, as the network layer does for a topology. The cache
is cleared first, so the time is that of the optimisation itself.

Then, for each registered link kind (:mod:`qkd.kinds`), the rate in bit/s of its default
preset for ``--links`` distinct lengths (0.5 km to 80% of the preset's reach) in one call,
the best of ``--repeat`` times (the machine is shared), and its ratio to ``decoy-bb84``
measured in the same run. Variants whose settings are optimised differently are timed too:
MDI with the relay at 30% of the link (two intensities optimised), the same with vacuum +
weak decoys, and GG02 with the modulation variance optimised (the default CV preset fixes it
at the published operating point).

Prints human-readable lines, then as the very last line one JSON object with ``links``,
``finite_key_s`` (decoy-2), ``finite_key_decoy1_s``, ``asymptotic_s``, ``kinds_seconds``
(kind -> s), ``ratio_to_decoy_bb84`` (kind -> ratio), ``variants_seconds``,
``kinds_rate_bps_sum``, ``kinds_max_s`` and checksums.

Run: ``python benchmarks/bench_keyrate.py`` (a few seconds; ``--links``, ``--preset``,
``--block-size``, ``--repeat`` to change the load).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable
from functools import partial

import numpy as np

from qkd.finite import _solve, finite_key
from qkd.kinds import KINDS, get_kind
from qkd.params import get_preset
from qkd.rates import key_rate_bps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--links", type=int, default=1000)
    parser.add_argument("--preset", default="toshiba-2018")
    parser.add_argument("--block-size", type=float, default=1e10)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    system = get_preset(args.preset)
    lengths = np.linspace(0.5, 150.0, args.links)  # distinct lengths

    _solve.cache_clear()
    t0 = time.perf_counter()
    fk = finite_key(system, lengths, args.block_size)
    finite_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    fk1 = finite_key(system, lengths, args.block_size, protocol="decoy-1")
    finite1_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    cached = finite_key(system, lengths, args.block_size)
    cached_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    asym = key_rate_bps(system, lengths)
    asym_s = time.perf_counter() - t0
    assert np.array_equal(cached.rate_bps, fk.rate_bps)

    block = f"{args.block_size:.0e}"
    print(f"{args.preset}, {args.links} links of 0.5-150 km, blocks of {block} pulses")
    print(f"finite key decoy-2: {finite_s:.2f} s; decoy-1: {finite1_s:.2f} s")
    print(f"the same call again (cached): {cached_s:.4f} s")
    print(f"asymptotic (mu optimised): {asym_s:.3f} s")
    for i in (0, args.links // 2, args.links - 1):
        print(
            f"  {lengths[i]:6.1f} km: finite {fk.rate_bps[i]:.4g} b/s (decoy-1 "
            f"{fk1.rate_bps[i]:.4g}), asymptotic {asym[i]:.4g} b/s"
        )
    kinds = time_kinds(args.links, args.repeat)
    record = {
        "links": args.links,
        "finite_key_s": round(finite_s, 3),
        "finite_key_decoy1_s": round(finite1_s, 3),
        "finite_key_cached_s": round(cached_s, 5),
        "asymptotic_s": round(asym_s, 4),
        "preset": args.preset,
        "block_size": args.block_size,
        "rate_bps_sum": float(np.sum(fk.rate_bps)),
        **kinds,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
    }
    print(json.dumps(record))


def _best_time(call: Callable[[], np.ndarray], repeat: int) -> tuple[float, np.ndarray]:
    best, out = np.inf, np.empty(0)
    for _ in range(max(repeat, 1)):
        t0 = time.perf_counter()
        out = call()
        best = min(best, time.perf_counter() - t0)
    return best, out


def time_kinds(links: int, repeat: int) -> dict[str, object]:
    """Every kind's default preset (and the variants) on ``links`` distinct lengths."""
    seconds: dict[str, float] = {}
    sums: dict[str, float] = {}
    for name in sorted(KINDS):
        kind = get_kind(name)
        params = kind.preset()
        reach = kind.max_distance_km(params)
        lengths = np.linspace(0.5, 0.8 * reach, links)  # distinct lengths
        best, rate = _best_time(partial(kind.rate_bps, params, lengths), repeat)
        seconds[name], sums[name] = best, float(np.sum(rate))
        print(
            f"{name:11s} {kind.default_preset:14s} {links} links of 0.5-{0.8 * reach:.0f} km:"
            f" {best:.3f} s ({kind.rate_unit}, {rate[0]:.4g} .. {rate[-1]:.4g} bit/s)"
        )
    variants: dict[str, tuple[str, dict[str, float | None]]] = {
        "mdi relay 30%": ("mdi", {"relay_fraction": 0.3}),
        "mdi relay 30%, vacuum + weak decoy": ("mdi", {"relay_fraction": 0.3, "decoy_ratio": 0.1}),
        "cv-gg02 V_A optimised": ("cv-gg02", {"modulation_variance": None}),
    }
    variant_seconds: dict[str, float] = {}
    for label, (name, overrides) in variants.items():
        kind = get_kind(name)
        params = kind.from_mapping(overrides)
        lengths = np.linspace(0.5, 0.8 * kind.max_distance_km(params), links)
        best, _ = _best_time(partial(kind.rate_bps, params, lengths), repeat)
        variant_seconds[label] = best
        print(f"{label}: {best:.3f} s")
    base = seconds["decoy-bb84"]
    ratios = {name: round(s / base, 2) for name, s in seconds.items()}
    shown = ", ".join(f"{k} {v:.2g}x" for k, v in ratios.items())
    print(f"every kind, ratio to decoy-bb84: {shown}")
    slowest = max([*seconds.values(), *variant_seconds.values()])
    print(f"slowest kind or variant: {slowest:.3f} s for {links} links (target 5 s)")
    return {
        "kinds_seconds": {k: round(v, 4) for k, v in seconds.items()},
        "ratio_to_decoy_bb84": ratios,
        "variants_seconds": {k: round(v, 4) for k, v in variant_seconds.items()},
        "kinds_max_s": round(slowest, 4),
        "kinds_rate_bps_sum": sums,
    }


if __name__ == "__main__":
    main()
