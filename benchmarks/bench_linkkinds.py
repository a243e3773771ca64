"""Speed of every link kind's key-rate model on many links at once.

For each registered kind (:mod:`qkd.kinds`), computes the rate in bit/s of its default
preset for ``--links`` distinct link lengths (0.5 km to 80% of the preset's reach) in one
call, as the network builder does for a topology, and reports the time and its ratio to
``decoy-bb84`` measured in the same run. Each kind is timed ``--repeat`` times and the best
time is kept (the machine is shared). Variants whose settings are optimised differently are
timed too: MDI with the relay at 30% of the link (two intensities optimised), the same with
vacuum + weak decoys, and GG02 with the modulation variance optimised (the default CV preset
fixes it at the published operating point).

Prints human-readable lines, then as the very last line one JSON object with ``links``,
``seconds`` (kind -> s), ``ratio_to_decoy_bb84`` (kind -> ratio), ``variants_seconds`` and
``rate_bps_sum``.

Run: ``python benchmarks/bench_linkkinds.py`` (a few seconds; ``--links``, ``--repeat``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np

from qkd.kinds import KINDS, get_kind


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--links", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    seconds: dict[str, float] = {}
    sums: dict[str, float] = {}
    for name in sorted(KINDS):
        kind = get_kind(name)
        params = kind.preset()
        reach = kind.max_distance_km(params)
        lengths = np.linspace(0.5, 0.8 * reach, args.links)  # distinct lengths
        best = np.inf
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            rate = kind.rate_bps(params, lengths)
            best = min(best, time.perf_counter() - t0)
        seconds[name] = best
        sums[name] = float(np.sum(rate))
        print(
            f"{name:11s} {kind.default_preset:14s} {args.links} links of 0.5-{0.8 * reach:.0f} km:"
            f" {best:.3f} s ({kind.rate_unit}, {rate[0]:.4g} .. {rate[-1]:.4g} bit/s)"
        )
    variants = {
        "mdi relay 30%": ("mdi", {"relay_fraction": 0.3}),
        "mdi relay 30%, vacuum + weak decoy": ("mdi", {"relay_fraction": 0.3, "decoy_ratio": 0.1}),
        "cv-gg02 V_A optimised": ("cv-gg02", {"modulation_variance": None}),
    }
    variant_seconds: dict[str, float] = {}
    for label, (name, overrides) in variants.items():
        kind = get_kind(name)
        params = kind.from_mapping(overrides)
        lengths = np.linspace(0.5, 0.8 * kind.max_distance_km(params), args.links)
        best = np.inf
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            kind.rate_bps(params, lengths)
            best = min(best, time.perf_counter() - t0)
        variant_seconds[label] = best
        print(f"{label}: {best:.3f} s")
    base = seconds["decoy-bb84"]
    ratios = {name: round(s / base, 2) for name, s in seconds.items()}
    print("ratio to decoy-bb84: " + ", ".join(f"{k} {v:.1f}x" for k, v in ratios.items()))
    record = {
        "links": args.links,
        "seconds": {k: round(v, 4) for k, v in seconds.items()},
        "ratio_to_decoy_bb84": ratios,
        "variants_seconds": {k: round(v, 4) for k, v in variant_seconds.items()},
        "rate_bps_sum": sums,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
    }
    print(json.dumps(record))


if __name__ == "__main__":
    main()
