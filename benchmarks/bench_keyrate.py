"""Speed of the optimised finite-key rates for many links at once.

Computes the finite-key rate (``qkd.finite.finite_key``, both protocols) and the asymptotic
rate (``qkd.rates.key_rate_bps``, intensity optimised) of one preset for 1,000 distinct link
lengths, in one call each, as the network layer does for a topology. The cache is cleared
first, so the time is that of the optimisation itself.

Prints human-readable lines, then as the very last line one JSON object with ``links``,
``finite_key_s`` (decoy-2), ``finite_key_decoy1_s``, ``asymptotic_s`` and a checksum.

Run: ``python benchmarks/bench_keyrate.py`` (a few seconds; ``--links``, ``--preset``,
``--block-size`` to change the load).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np

from qkd.finite import _solve, finite_key
from qkd.params import get_preset
from qkd.rates import key_rate_bps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--links", type=int, default=1000)
    parser.add_argument("--preset", default="toshiba-2018")
    parser.add_argument("--block-size", type=float, default=1e10)
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
    record = {
        "links": args.links,
        "finite_key_s": round(finite_s, 3),
        "finite_key_decoy1_s": round(finite1_s, 3),
        "finite_key_cached_s": round(cached_s, 5),
        "asymptotic_s": round(asym_s, 4),
        "preset": args.preset,
        "block_size": args.block_size,
        "rate_bps_sum": float(np.sum(fk.rate_bps)),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
    }
    print(json.dumps(record))


if __name__ == "__main__":
    main()
