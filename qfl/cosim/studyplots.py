"""Plots of planner studies (:mod:`qfl.cosim.studies`): report-ready PNGs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["plot_impact", "plot_threshold"]

_HOLD, _FAIL, _BASE = "#1b7837", "#b2182b", "#4d4d4d"


def _figure(w: float, h: float) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(w, h), dpi=120)


def _save(fig: Any, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    tmp = path.with_name(f".tmp-{path.name}")
    fig.savefig(tmp, format="png")
    plt.close(fig)
    tmp.replace(path)


def plot_threshold(result: Any, path: Path) -> None:
    """Accuracy at the deadline of every evaluated value of the knob (log x), the target
    line, and the bracket where the target starts to hold."""
    m = result.meta
    leaf = m["vary"].split(".")[-1]
    rows = sorted(result.rows, key=lambda r: r[leaf])
    fig, ax = _figure(7.5, 4.2)
    xs = [r[leaf] for r in rows]
    ys = [100 * (r["final_global_acc"] or 0.0) for r in rows]
    ax.plot(xs, ys, color="#999999", lw=1, zorder=1)
    for r, x, y in zip(rows, xs, ys, strict=True):
        ax.scatter([x], [y], s=36, zorder=3, color=_HOLD if r["holds"] else _FAIL,
                   marker="o" if r["holds"] else "x")  # fmt: skip
    ax.axhline(100 * m["target"], color=_BASE, ls="--", lw=1)
    ax.text(xs[0], 100 * m["target"], f" target {100 * m['target']:g} %", va="bottom",
            fontsize=8, color=_BASE)  # fmt: skip
    br = m.get("bracket") or {}
    if br.get("fails_at") is not None and br.get("holds_at") is not None:
        lo, hi = sorted((br["fails_at"], br["holds_at"]))
        ax.axvspan(lo, hi, color="#fdb863", alpha=0.35, lw=0, label="answer bracket")
    ax.set_xscale("log")
    ax.set_xlabel(m["vary"])
    ax.set_ylabel(f"global accuracy at the deadline (%)\n(deadline {m['within_s']:g} s)")
    ax.scatter([], [], color=_HOLD, marker="o", label="reaches target")
    ax.scatter([], [], color=_FAIL, marker="x", label="misses target")
    ax.legend(loc="lower right", fontsize=8, frameon=False)
    ax.set_title(result.answer if len(result.answer) < 90 else result.answer[:87] + "...",
                 fontsize=9)  # fmt: skip
    ax.grid(alpha=0.3, which="both")
    _save(fig, path)


def plot_impact(result: Any, path: Path, *, metric: str) -> None:
    """One row per variant (contingency) or link (upgrade), two panels: the change in time
    to target (delay for a failure, saving for an upgrade; "never" where the target is
    missed) and the change in final accuracy, against the baseline."""
    import textwrap

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result.rows[1:]
    key = "variant" if result.kind == "contingency" else "link"
    base = result.rows[0] if result.rows else {}
    n = max(len(rows), 1)
    fig, (ax_t, ax_a) = plt.subplots(
        1, 2, figsize=(10.0, 1.6 + 0.3 * n), dpi=120, sharey=True,
        gridspec_kw={"width_ratios": [3, 2]},
    )  # fmt: skip
    ys = list(range(len(rows)))[::-1]
    labels = [str(r[key]) + ("" if r.get("connected", True) else " (disconnects)") for r in rows]
    seconds = [r.get(metric) or 0.0 for r in rows]
    unit, scale = ("s", 1.0) if max([abs(x) for x in seconds] + [0.0]) < 120 else ("min", 60.0)
    delays = [x / scale for x in seconds]
    never = [r.get("time_to_target_s") is None for r in rows]
    span = max([abs(d) for d in delays] + [1e-9])
    if result.kind == "contingency":
        colours = [_FAIL if nv else "#ef8a62" for nv in never]
    else:
        colours = [_HOLD if d > 0 else "#bababa" for d in delays]
    ax_t.barh(ys, delays, color=colours)
    for y, nv in zip(ys, never, strict=True):
        if nv and base.get("time_to_target_s") is not None:
            ax_t.text(0, y, "  target never reached", va="center", fontsize=7, color=_FAIL)
    if base.get("time_to_target_s") is None:
        ax_t.text(0.5, 0.5, "the baseline does not reach the target:\ncompare final accuracy",
                  transform=ax_t.transAxes, ha="center", va="center", fontsize=8,
                  color=_BASE)  # fmt: skip
        ax_t.set_xticks([])
    else:
        ax_t.set_xlim(-1.1 * span, 1.1 * span)
    what = "delay in time to target" if metric == "delay_s" else "time to target saved"
    ax_t.set_xlabel(f"{what} vs baseline ({unit})")
    ax_t.set_yticks(ys, labels, fontsize=8)
    ax_t.axvline(0, color=_BASE, lw=0.8)
    ax_t.grid(axis="x", alpha=0.3)
    b_acc = base.get("final_global_acc")
    accs = [
        100 * (r["final_global_acc"] - b_acc)
        if r.get("final_global_acc") is not None and b_acc is not None
        else 0.0
        for r in rows
    ]
    ax_a.barh(ys, accs, color=["#4393c3" if a >= 0 else _FAIL for a in accs])
    ax_a.axvline(0, color=_BASE, lw=0.8)
    ax_a.set_xlabel("final accuracy change vs baseline (points)")
    ax_a.grid(axis="x", alpha=0.3)
    fig.suptitle("\n".join(textwrap.wrap(result.answer, 110)), fontsize=9)
    _save(fig, path)
