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
    line, and the bracket where the target starts to hold. A value at which no round
    completed by the deadline (nothing was trained, so there is no accuracy) is a hollow
    triangle on the x axis, "no round completed" in the legend, never a 0 % point."""
    m = result.meta
    leaf = m["vary"].split(".")[-1]
    rows = sorted(result.rows, key=lambda r: r[leaf])
    fig, ax = _figure(8.5, 4.2)
    trained = [r for r in rows if _has_accuracy(r)]
    untrained = [r for r in rows if not _has_accuracy(r)]
    xs = [r[leaf] for r in trained]
    ys = [100 * r["final_global_acc"] for r in trained]
    ax.plot(xs, ys, color="#999999", lw=1, zorder=1)
    for r, x, y in zip(trained, xs, ys, strict=True):
        ax.scatter([x], [y], s=36, zorder=3, color=_HOLD if r["holds"] else _FAIL,
                   marker="o" if r["holds"] else "x")  # fmt: skip
    none_x = [r[leaf] for r in untrained]
    if none_x:
        ax.plot(none_x, [0.0] * len(none_x), ls="", marker="v", mfc="white", mec=_FAIL, mew=1.6,
                ms=9, clip_on=False, transform=ax.get_xaxis_transform(), zorder=4)  # fmt: skip
    target = 100 * m["target"]
    ax.axhline(target, color=_BASE, ls="--", lw=1)
    ax.text(0.01, target, f" target {target:g} %", va="bottom", fontsize=8, color=_BASE,
            transform=ax.get_yaxis_transform())  # fmt: skip
    br = m.get("bracket") or {}
    if br.get("fails_at") is not None and br.get("holds_at") is not None:
        lo, hi = sorted((br["fails_at"], br["holds_at"]))
        ax.axvspan(lo, hi, color="#fdb863", alpha=0.35, lw=0, label="answer bracket")
    ax.set_xscale("log")
    all_x = [r[leaf] for r in rows]
    if all_x:
        ax.set_xlim(min(all_x) / 1.6, max(all_x) * 1.6)  # no marker on the frame
    ax.set_ylim(0, min(100.0, max([*ys, target]) + 10))
    ax.set_xlabel(m["vary"])
    ax.set_ylabel(f"global accuracy at the deadline (%)\n(deadline {_duration(m['within_s'])})")
    ax.scatter([], [], color=_HOLD, marker="o", label="reaches target")
    ax.scatter([], [], color=_FAIL, marker="x", label="misses target")
    if none_x:
        ax.plot([], [], ls="", marker="v", mfc="white", mec=_FAIL, mew=1.6, ms=9,
                label="no round completed (misses target)")  # fmt: skip
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    ax.set_title(result.answer if len(result.answer) < 90 else result.answer[:87] + "...",
                 fontsize=9)  # fmt: skip
    ax.grid(alpha=0.3, which="both")
    _save(fig, path)


def _has_accuracy(row: Any) -> bool:
    """Whether a threshold row has an accuracy: a round completed and was evaluated."""
    acc = row.get("final_global_acc")
    return acc is not None and acc == acc and row.get("rounds_done") != 0


def _duration(seconds: float) -> str:
    """``90 s``, ``30 min``, ``2 h``: a deadline in the unit that reads best."""
    if seconds >= 2 * 3600:
        return f"{seconds / 3600:g} h"
    if seconds >= 120:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"


def _time_unit(seconds: list[float]) -> tuple[str, float]:
    top = max([*seconds, 0.0])
    return ("h", 3600.0) if top >= 3 * 3600 else ("min", 60.0) if top >= 120 else ("s", 1.0)


def plot_impact(result: Any, path: Path, *, metric: str) -> None:
    """One row per variant (contingency) or link (upgrade) under the baseline's row, two
    panels: the time to target of each (a bar; "never" written where the target is missed
    within the horizon, the baseline's included, with the baseline's time as a dashed line
    when it has one), and the change in final accuracy against the baseline (the noise band
    shaded when the study gives one)."""
    import textwrap

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    del metric  # the left panel shows times to target; the table keeps delays and gains
    key = "variant" if result.kind == "contingency" else "link"
    rows = list(result.rows)
    base = rows[0] if rows else {}
    n = max(len(rows), 1)
    fig, (ax_t, ax_a) = plt.subplots(
        1, 2, figsize=(10.0, 1.9 + 0.3 * n), dpi=120, sharey=True,
        gridspec_kw={"width_ratios": [3, 2]},
    )  # fmt: skip
    ys = list(range(len(rows)))[::-1]
    labels = [str(r[key]) + ("" if r.get("connected", True) else " (disconnects)") for r in rows]
    times = [r.get("time_to_target_s") for r in rows]
    unit, scale = _time_unit([t for t in times if t is not None])
    bt = base.get("time_to_target_s")
    horizon = result.meta.get("within_s")
    reached = [t / scale for t in times if t is not None]
    right = max(reached + ([bt / scale] if bt is not None else []) + [1e-9])
    for i, (y, t) in enumerate(zip(ys, times, strict=True)):
        if i == 0:
            colour = _BASE
        elif t is None:
            colour = _FAIL
        elif result.kind == "contingency":
            colour = "#ef8a62" if bt is None or t > bt * (1 + 1e-9) else "#bababa"
        else:
            colour = _HOLD if bt is None or t < bt * (1 - 1e-9) else "#bababa"
        if t is not None:
            ax_t.barh([y], [t / scale], color=colour, height=0.7)
            ax_t.text(t / scale, y, f" {t / scale:.3g}", va="center", fontsize=7, color=_BASE)
        else:
            within = f" within {_duration(horizon)}" if horizon else ""
            ax_t.text(0, y, f" never{within}", va="center", fontsize=7, color=_FAIL,
                      fontweight="bold" if i == 0 else "normal")  # fmt: skip
    if bt is not None:
        ax_t.axvline(bt / scale, color=_BASE, ls="--", lw=1)
        ax_t.text(bt / scale, 1.0, " baseline", transform=ax_t.get_xaxis_transform(),
                  va="bottom", fontsize=7, color=_BASE)  # fmt: skip
    ax_t.set_xlim(0, 1.25 * right if reached or bt is not None else 1.0)
    ax_t.set_ylim(-0.6, len(rows) - 0.4)
    if not reached and bt is None:
        ax_t.set_xticks([])
        ax_t.text(0.97, 0.02, "nothing reaches the target", transform=ax_t.transAxes,
                  ha="right", va="bottom", fontsize=8, color=_BASE)  # fmt: skip
    ax_t.set_xlabel(f"time to target {100 * result.meta.get('target', 0):g} % ({unit})")
    ax_t.set_yticks(ys, labels, fontsize=8)
    ax_t.grid(axis="x", alpha=0.3)
    b_acc = base.get("final_global_acc")
    accs = [
        100 * (r["final_global_acc"] - b_acc)
        if r.get("final_global_acc") is not None and b_acc is not None
        else 0.0
        for r in rows
    ]
    noise = result.meta.get("accuracy_noise")
    shade = ""
    if noise:
        ax_a.axvspan(-100 * noise, 100 * noise, color="#e5e5e5", lw=0)
        shade = f"\n(grey: within noise, +-{100 * noise:.1f})"
    ax_a.barh(ys[1:], accs[1:], color=["#4393c3" if a >= 0 else _FAIL for a in accs[1:]],
              height=0.7)  # fmt: skip
    if b_acc is not None and ys:
        ax_a.text(0, ys[0], f" baseline {100 * b_acc:.1f} %", va="center", fontsize=7,
                  color=_BASE)  # fmt: skip
    ax_a.axvline(0, color=_BASE, lw=0.8)
    ax_a.set_xlabel(f"final accuracy change vs baseline (points){shade}")
    ax_a.grid(axis="x", alpha=0.3)
    fig.suptitle("\n".join(textwrap.wrap(result.answer, 110)), fontsize=9)
    _save(fig, path)
