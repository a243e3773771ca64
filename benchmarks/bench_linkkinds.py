"""Speed of every link kind's key-rate model on many links at once.

For each registered kind (:mod:`qkd.kinds`), computes the rate in bit/s of its default
preset for ``--links`` distinct link lengths (0.5 km to 80% of the preset's reach) in one
call, as the network builder does for a topology, and reports the time and its ratio to
``decoy-bb84`` measured in the same run. Each kind is timed ``--repeat`` times and the best
time is kept (the machine is shared).

Prints human-readable lines, then as the very last line one JSON object with ``links``,
``seconds`` (kind -> s), ``ratio_to_decoy_bb84`` (kind -> ratio) and ``rate_bps_sum``.

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
    base = seconds["decoy-bb84"]
    ratios = {name: round(s / base, 2) for name, s in seconds.items()}
    print("ratio to decoy-bb84: " + ", ".join(f"{k} {v:.1f}x" for k, v in ratios.items()))
    record = {
        "links": args.links,
        "seconds": {k: round(v, 4) for k, v in seconds.items()},
        "ratio_to_decoy_bb84": ratios,
        "rate_bps_sum": sums,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
    }
    print(json.dumps(record))


if __name__ == "__main__":
    main()
