"""Key rate per channel use against distance for every link kind, beside the PLOB bound.

Draws the default preset of each registered kind (:mod:`qkd.kinds`) and the repeaterless
(PLOB) bound of 0.2 dB/km fibre, and marks where the twin-field protocols cross it (fibre-only
bound, the stricter comparison). Writes one PNG.

Run: ``python benchmarks/plot_linkkinds.py --out linkkinds_rates.png``.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from qkd.kinds import KINDS, get_kind
from qkd.params import Fibre
from qkd.rates import plob_bound
from qkd.twinfield import plob_crossing_km


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("linkkinds_rates.png"))
    parser.add_argument("--max-km", type=float, default=600.0)
    args = parser.parse_args()

    lengths = np.linspace(0.0, args.max_km, 1201)
    fig, ax = plt.subplots(figsize=(8.0, 5.2), dpi=130)
    plob = plob_bound(Fibre(0.2).transmittance(lengths))
    ax.plot(lengths, plob, "k--", lw=1.4, label="PLOB bound, 0.2 dB/km (repeaterless)")
    for name in sorted(KINDS):
        kind = get_kind(name)
        params = kind.preset()
        rate = kind.rate_per_use(params, lengths)
        shown = np.where(rate > 0, rate, np.nan)
        alpha = params.fibre.attenuation_db_per_km
        label = f"{name} ({kind.default_preset}, {alpha:.2f} dB/km), {kind.rate_unit}"
        (line,) = ax.plot(lengths, shown, lw=1.8, label=label)
        if kind.untrusted_middle and name.startswith("tf-"):
            crossing = plob_crossing_km(kind.rate_per_use, params, max_km=args.max_km)
            if math.isfinite(crossing):
                y = float(kind.rate_per_use(params, crossing))
                ax.plot([crossing], [y], "o", color=line.get_color(), ms=6)
                ax.annotate(
                    f"{name} > PLOB\nfrom {crossing:.0f} km",
                    (crossing, y),
                    textcoords="offset points",
                    xytext=(8, 10),
                    fontsize=8,
                    color=line.get_color(),
                )
    ax.set_yscale("log")
    ax.set_ylim(1e-12, 1.0)
    ax.set_xlim(0.0, args.max_km)
    ax.set_xlabel("link length (km)")
    ax.set_ylabel("secret key per channel use (bit)")
    ax.set_title("Asymptotic key rates of the link kinds (default presets)")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=7.5, loc="upper right")
    fig.tight_layout()
    fig.savefig(args.out)
    print(args.out)


if __name__ == "__main__":
    main()
