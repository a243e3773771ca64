"""The charts over many points: a sweep's key rate vs accuracy, a threshold plan's search.

Plotly's submodules are imported inside each function, when a chart is drawn.
"""

from __future__ import annotations

import html
import math
from collections import defaultdict
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from qfl.report.charts import _SERIES_COLOURS, Row, _style
from qfl.report.folders import PlanFiles, SweepFiles
from qfl.report.text import _num, _secs, _time_unit

if TYPE_CHECKING:
    import plotly.graph_objects as go

__all__ = ["sweep_figure", "threshold_figure"]


def sweep_figure(sw: SweepFiles) -> go.Figure | None:
    """Key rate vs accuracy over a sweep's points: final accuracy (top, with the target)
    and time to target, or end of the last round (bottom), one colour per series; a point
    that completed no round is a hollow triangle on the x axis."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    x = str(sw.meta.get("x") or "mean_skr_bps")
    x_label = str(sw.meta.get("x_label") or "mean secret key rate per link (bit/s)")
    rows = [r for r in sw.rows if r.get("status") in ("", "complete") and
            math.isfinite(_num(r.get(x)))]  # fmt: skip
    if not rows:
        return None
    reached = any(math.isfinite(_num(r.get("time_to_target_s"))) for r in rows)
    t_key, t_what = (
        ("time_to_target_s", "time to target") if reached else
        ("sim_time_end_s", "end of last round")
    )  # fmt: skip
    scale, unit = _time_unit(_num(r.get(t_key)) for r in rows)
    use_local = all(math.isnan(_num(r.get("final_global_acc"))) for r in rows)
    acc_key = "final_local_acc" if use_local else "final_global_acc"
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08,
                        row_heights=[0.6, 0.4])  # fmt: skip
    groups: dict[str, list[Row]] = defaultdict(list)
    for r in rows:
        groups[str(r.get("series") or "all points")].append(r)
    for i, (name, rs) in enumerate(sorted(groups.items())):
        rs = sorted(rs, key=lambda r: _num(r[x]))
        col = _SERIES_COLOURS[i % len(_SERIES_COLOURS)]
        some = [r for r in rs if _num(r.get("rounds_done")) != 0]
        none = [r for r in rs if _num(r.get("rounds_done")) == 0]
        hover = "%{customdata}<br>" + f"{html.escape(x)} %{{x:.4s}}"
        fig.add_trace(go.Scatter(
            x=[_num(r[x]) for r in some], y=[100 * _num(r.get(acc_key)) for r in some],
            mode="lines+markers", name=name, legendgroup=name,
            line={"color": col, "width": max(1.5, 3 - 0.5 * i)},
            marker={"size": max(6, 11 - 2 * i), "symbol": "circle"},
            customdata=[r.get("slug", "") for r in some],
            hovertemplate=hover + "<br>final accuracy %{y:.1f} %<extra>" + name + "</extra>",
        ), row=1, col=1)  # fmt: skip
        fig.add_trace(go.Scatter(
            x=[_num(r[x]) for r in some], y=[_num(r.get(t_key)) / scale for r in some],
            mode="lines+markers", name=name, legendgroup=name, showlegend=False,
            line={"color": col, "width": max(1.5, 3 - 0.5 * i), "dash": "dash"},
            marker={"size": max(6, 11 - 2 * i)},
            customdata=[r.get("slug", "") for r in some],
            hovertemplate=hover + f"<br>{t_what} %{{y:.3g}} {unit}<extra>{name}</extra>",
        ), row=2, col=1)  # fmt: skip
        if none:
            fig.add_trace(go.Scatter(
                x=[_num(r[x]) for r in none], y=[0.0] * len(none), mode="markers",
                name=f"{name}: no round completed", legendgroup=name, cliponaxis=False,
                marker={"symbol": "triangle-down-open", "size": 13, "color": col,
                        "line": {"width": 2}},
                customdata=[r.get("slug", "") for r in none],
                hovertemplate=hover + "<br>no round completed (never trained)<extra></extra>",
            ), row=1, col=1)  # fmt: skip
    target = _num(sw.run.summary.get("target_accuracy")) if sw.run else math.nan
    if math.isfinite(target):
        fig.add_hline(y=100 * target, line={"color": "#444", "dash": "dot", "width": 1.5},
                      annotation_text=f"target {100 * target:g} %", row=1, col=1)  # fmt: skip
    positive = [_num(r[x]) for r in rows if _num(r[x]) > 0]
    if positive and max(positive) / min(positive) > 20:
        fig.update_xaxes(type="log")
    fig.update_xaxes(exponentformat="SI")
    fig.update_xaxes(title=x_label, row=2, col=1)
    metric = "final local accuracy (%)" if use_local else "final global accuracy (%)"
    fig.update_yaxes(title=metric, rangemode="tozero", row=1, col=1)
    fig.update_yaxes(title=f"{t_what} ({unit})", rangemode="tozero", row=2, col=1)
    name = sw.meta.get("name") or sw.folder.name
    _style(
        fig,
        f"Key rate vs accuracy: sweep {name}",
        height=640,
        subtitle=f"{len(rows)} complete points; one colour per series "
        f"({sw.meta.get('series') or 'none'}); hollow triangle: no round completed",
    )
    return fig


def _plan_column(plan: Mapping[str, Any], *names: str) -> str | None:
    cols = [str(c) for c in plan.get("columns", [])]
    rows = plan.get("rows", [])
    have = set(cols) | {k for r in rows for k in r}
    for n in names:
        if n and n in have:
            return n
    return None


def threshold_figure(pf: PlanFiles) -> go.Figure | None:
    """The points a threshold plan evaluated: the varied value (log x) against final
    accuracy with the target (top) and time to target with the time limit (bottom, when
    the plan has one), green where the target held, red where it failed; the bracket
    shaded. None when the plan's rows lack the varied value."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    plan = pf.plan
    vary = str(plan.get("vary") or "")
    x_col = _plan_column(plan, vary, vary.rpartition(".")[2], "value")
    acc_col = _plan_column(plan, "final_global_acc", "final_accuracy", "accuracy",
                           "final_local_acc")  # fmt: skip
    t_col = _plan_column(plan, "time_to_target_s")
    rows = [r for r in plan.get("rows", []) if x_col and math.isfinite(_num(r.get(x_col)))]
    if not rows or not (acc_col or t_col):
        return None
    rows.sort(key=lambda r: _num(r[x_col]))
    xs = [_num(r[x_col]) for r in rows]
    target = _num(plan.get("target"))
    within = _num(plan.get("within_s"))
    accs = [_num(r.get(acc_col)) if acc_col else math.nan for r in rows]
    acc_scale = 1.0 if any(a > 1 for a in accs if math.isfinite(a)) else 100.0
    t_scale = 100.0 if math.isfinite(target) and target <= 1 else 1.0
    tts = [_num(r.get(t_col)) if t_col else math.nan for r in rows]

    def holds(a: float, t: float) -> bool | None:
        if math.isfinite(within) and t_col:
            return math.isfinite(t) and t <= within
        if math.isfinite(target) and math.isfinite(a):
            return a * acc_scale >= target * t_scale
        return None

    verdict = [
        r["holds"] if isinstance(r.get("holds"), bool) else holds(a, t)
        for r, a, t in zip(rows, accs, tts, strict=True)
    ]
    colours = ["#2ca02c" if v else "#d62728" if v is False else "#1f77b4" for v in verdict]
    words = ["target held" if v else "target failed" if v is False else "" for v in verdict]
    two = bool(t_col) and bool(acc_col)
    fig = make_subplots(
        rows=2 if two else 1,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.1,
        row_heights=[0.55, 0.45] if two else None,
    )
    hover = f"{html.escape(x_col or '')} = %{{x:.4g}}<br>%{{customdata}}"
    dot = {"size": 12, "line": {"color": "white", "width": 1}}
    if acc_col:
        ok = [i for i, a in enumerate(accs) if math.isfinite(a)]
        fig.add_trace(go.Scatter(
            x=[xs[i] for i in ok], y=[accs[i] * acc_scale for i in ok], mode="lines+markers",
            line={"color": "#999", "width": 1.2}, marker={**dot, "color": [colours[i] for i in ok]},
            customdata=[words[i] for i in ok],
            hovertemplate=hover + "<br>final accuracy %{y:.1f} %<extra></extra>",
        ), row=1, col=1)  # fmt: skip
        none = [i for i, a in enumerate(accs) if not math.isfinite(a)]
        if none:
            fig.add_trace(go.Scatter(
                x=[xs[i] for i in none], y=[0.0] * len(none), mode="markers", cliponaxis=False,
                marker={"symbol": "triangle-down-open", "size": 13, "line": {"width": 2},
                        "color": [colours[i] for i in none]},
                customdata=[words[i] for i in none],
                hovertemplate=hover + "<br>no round completed (never trained)<extra></extra>",
            ), row=1, col=1)  # fmt: skip
        if math.isfinite(target):
            fig.add_hline(y=target * t_scale, line={"color": "#444", "dash": "dot"},
                          annotation_text=f"target {target * t_scale:g} %",
                          annotation_position="top left", row=1, col=1)  # fmt: skip
    if t_col:
        scale, unit = _time_unit([*tts, within])
        row = 2 if two else 1
        ok = [i for i, t in enumerate(tts) if math.isfinite(t)]
        fig.add_trace(go.Scatter(
            x=[xs[i] for i in ok], y=[tts[i] / scale for i in ok], mode="lines+markers",
            line={"color": "#999", "width": 1.2, "dash": "dash"},
            marker={**dot, "symbol": "square", "color": [colours[i] for i in ok]},
            customdata=[words[i] for i in ok],
            hovertemplate=hover + f"<br>time to target %{{y:.3g}} {unit}<extra></extra>",
        ), row=row, col=1)  # fmt: skip
        late = [i for i, t in enumerate(tts) if not math.isfinite(t)]
        if late and math.isfinite(within):
            fig.add_trace(go.Scatter(
                x=[xs[i] for i in late], y=[within / scale] * len(late), mode="markers",
                marker={"symbol": "x-thin-open", "size": 13, "line": {"width": 2.5},
                        "color": [colours[i] for i in late]},
                customdata=[words[i] for i in late],
                hovertemplate=hover + f"<br>target not reached within {_secs(within)}"
                                      "<extra></extra>",
            ), row=row, col=1)  # fmt: skip
        if math.isfinite(within):
            fig.add_hline(y=within / scale, line={"color": "#444", "dash": "dot"},
                          annotation_text=f"deadline {_secs(within)}",
                          annotation_position="top left", row=row, col=1)  # fmt: skip
        fig.update_yaxes(title=f"time to target ({unit})", rangemode="tozero", row=row, col=1)
    bracket = plan.get("bracket") or {}
    fails, holds_at = _num(bracket.get("fails_at")), _num(bracket.get("holds_at"))
    sub = "each point is one evaluated run; green: target held, red: it failed"
    if math.isfinite(fails) and math.isfinite(holds_at):
        fig.add_vrect(x0=min(fails, holds_at), x1=max(fails, holds_at), fillcolor="#ffd54f",
                      opacity=0.3, line_width=0)  # fmt: skip
        sub += f"; shaded: the threshold, between {fails:.4g} and {holds_at:.4g}"
    for v, col in ((fails, "#d62728"), (holds_at, "#2ca02c")):
        if math.isfinite(v):
            fig.add_vline(x=v, line={"color": col, "dash": "dash", "width": 1.5})
    if math.isfinite(holds_at) != math.isfinite(fails):
        sub += (f"; holds at {holds_at:.4g} (the lowest tried)" if math.isfinite(holds_at)
                else f"; fails even at {fails:.4g}")  # fmt: skip
    if all(x > 0 for x in xs):
        wide = max(xs) / min(xs) >= 100
        fig.update_xaxes(type="log", exponentformat="none", dtick=1 if wide else None)
    fig.update_xaxes(title=vary or x_col, row=2 if two else 1, col=1)
    if acc_col:
        fig.update_yaxes(title="final accuracy (%)", rangemode="tozero", row=1, col=1)
    fig.update_layout(showlegend=False)
    _style(fig, f"Threshold search: {vary or x_col}", height=600 if two else 440, subtitle=sub)
    return fig
