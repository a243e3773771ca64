"""The Plotly charts of a run: accuracy, key pools, each client's key rate, bottlenecks.

Plotly's submodules are imported inside each function, when a chart is drawn.
"""

from __future__ import annotations

import html
import math
from collections import defaultdict
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from qfl.report.folders import RunFiles
from qfl.report.text import _num, _secs, _time_unit

if TYPE_CHECKING:
    import plotly.graph_objects as go

__all__ = [
    "COMPONENTS",
    "accuracy_figure",
    "bottleneck_figure",
    "client_keyrate_figure",
    "keypool_figure",
]

COMPONENTS = ("compute", "key", "bandwidth", "propagation", "blocked")
"""The parts a round's time is split into (the columns of ``round_breakdown``)."""
_COMPONENT_COLOURS = {
    "compute": "#4c78a8",
    "key": "#e45756",
    "bandwidth": "#f58518",
    "propagation": "#72b7b2",
    "blocked": "#9d755d",
}
_SERIES_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b")
_KEYPOOL_LINKS = 12
"""The links that used the most key shown at first in the key-pool chart (the others can
be switched on in its legend)."""
_KEYPOOL_VERTICES = 4000
"""At most this many vertices of one link's key-pool polyline are drawn."""

Row = Mapping[str, Any]
"""A row of a CSV file or an object of a JSON list."""


def _style(fig: go.Figure, title: str, *, height: int, subtitle: str = "") -> None:
    """Give ``fig`` the report's look: ``title`` (bold, ``subtitle`` smaller under it),
    ``height`` in pixels, the white template and the page's font."""
    text = f"<b>{html.escape(title)}</b>"
    if subtitle:
        text += f"<br><span style='font-size:12px;color:#555'>{html.escape(subtitle)}</span>"
    fig.update_layout(
        template="plotly_white",
        title={"text": text, "x": 0.01, "xanchor": "left"},
        height=height,
        margin={"l": 70, "r": 30, "t": 80 if subtitle else 60, "b": 60},
        font={"family": "system-ui, -apple-system, Segoe UI, Roboto, Arial, sans-serif",
              "size": 13},
        legend={"bgcolor": "rgba(255,255,255,0.8)"},
        hoverlabel={"namelength": -1},
    )  # fmt: skip


def _final_acc_by_node(run: RunFiles) -> dict[str, float]:
    """Each node's accuracy at its last evaluation (global, else local), by name; the
    mean over clients under ``mean``."""
    last: dict[str, tuple[float, float]] = {}
    for r in run.metrics:
        t, acc = _num(r.get("sim_time_s")), _num(r.get("global_acc"))
        if not math.isfinite(acc):
            acc = _num(r.get("local_acc"))
        node = str(r.get("node"))
        if math.isfinite(t) and (node not in last or t >= last[node][0]):
            last[node] = (t, acc)
    return {k: v[1] for k, v in last.items()}


def accuracy_figure(run: RunFiles) -> go.Figure | None:
    """Accuracy over simulated time: the mean over clients (global test set and local
    held-out data), each client's global accuracy faint, and the target. None without
    evaluations."""
    import plotly.graph_objects as go

    rows = run.metrics
    if not rows:
        return None
    scale, unit = _time_unit(_num(r["sim_time_s"]) for r in rows)
    by_node: dict[str, list[Row]] = defaultdict(list)
    for r in rows:
        by_node[str(r["node"])].append(r)
    fig = go.Figure()
    first_client = True
    for node, rs in sorted(by_node.items()):
        if node == "mean":
            continue
        ys = [100 * _num(r.get("global_acc")) for r in rs]
        if all(math.isnan(y) for y in ys):
            ys = [100 * _num(r.get("local_acc")) for r in rs]
        fig.add_trace(go.Scatter(
            x=[_num(r["sim_time_s"]) / scale for r in rs], y=ys, mode="lines",
            name="each client", legendgroup="clients", showlegend=first_client,
            line={"color": "rgba(120,120,120,0.45)", "width": 1},
            hovertemplate=f"{html.escape(node)}<br>%{{x:.3g}} {unit}: %{{y:.1f}} %<extra></extra>",
        ))  # fmt: skip
        first_client = False
    mean = by_node.get("mean", [])
    for key, name, col, dash in (
        ("global_acc", "mean global accuracy (test set)", "#1f77b4", "solid"),
        ("local_acc", "mean local accuracy (held-out)", "#ff7f0e", "dash"),
    ):
        ys = [100 * _num(r.get(key)) for r in mean]
        if not ys or all(math.isnan(y) for y in ys):
            continue
        fig.add_trace(go.Scatter(
            x=[_num(r["sim_time_s"]) / scale for r in mean], y=ys, mode="lines+markers",
            name=name, line={"color": col, "width": 3, "dash": dash}, marker={"size": 7},
            customdata=[r.get("round", "") for r in mean],
            hovertemplate=f"round %{{customdata}}<br>%{{x:.3g}} {unit}: %{{y:.1f}} %<extra>"
                          f"{name}</extra>",
        ))  # fmt: skip
    target = _num(run.summary.get("target_accuracy"))
    if math.isfinite(target):
        fig.add_hline(y=100 * target, line={"color": "#444", "dash": "dot", "width": 1.5},
                      annotation_text=f"target {100 * target:g} %",
                      annotation_position="top left")  # fmt: skip
    tt = _num(run.summary.get("time_to_target_s"))
    sub = (
        f"target reached at {_secs(tt)} of simulated time"
        if math.isfinite(tt)
        else "target not reached"
        if math.isfinite(target)
        else ""
    )
    _style(fig, "Accuracy over simulated time", height=440, subtitle=sub)
    fig.update_xaxes(title=f"simulated time ({unit})", rangemode="tozero")
    fig.update_yaxes(title="accuracy (%)", rangemode="tozero")
    return fig


def keypool_figure(run: RunFiles) -> go.Figure | None:
    """Each link's key-pool level over simulated time (exact block landings and takes):
    the links that used the most key shown, the others in the legend. None without
    ``keypools.csv`` rows."""
    import plotly.graph_objects as go

    from qfl.cosim.plots import keypool_series

    if not run.keypools:
        return None
    rates = {f"{lk['a']}-{lk['b']}": _num(lk.get("skr_bps"))
             for lk in run.topology.get("links", [])}  # fmt: skip
    series = keypool_series(run.keypools, rates)
    used: dict[str, float] = defaultdict(float)
    for r in run.keypools:
        if r.get("event") == "take":
            used[r["link"]] += _num(r.get("bits")) if r.get("bits") else 0.0
    order = sorted(series, key=lambda k: (-used.get(k, 0.0), k))
    scale, unit = _time_unit(t for ts, _ in series.values() for t in ts[-1:])
    fig = go.Figure()
    thinned = False
    for i, link in enumerate(order):
        ts, ls = series[link]
        step = max(1, math.ceil(len(ts) / _KEYPOOL_VERTICES))
        if step > 1:
            thinned = True
            ts, ls = ts[::step] + ts[-1:], ls[::step] + ls[-1:]
        fig.add_trace(go.Scatter(
            x=[t / scale for t in ts], y=ls, mode="lines", name=link,
            visible=True if i < _KEYPOOL_LINKS else "legendonly",
            line={"width": 2, "color": _SERIES_COLOURS[i % len(_SERIES_COLOURS)]
                  if i < len(_SERIES_COLOURS) else None},
            hovertemplate=f"{html.escape(link)}<br>%{{x:.4g}} {unit}: %{{y:.4s}}bit<extra></extra>",
        ))  # fmt: skip
    sub = f"{len(order)} links, most key used first"
    if len(order) > _KEYPOOL_LINKS:
        sub += f"; {len(order) - _KEYPOOL_LINKS} more hidden (click them in the legend)"
    if thinned:
        sub += f"; long series thinned to about {_KEYPOOL_VERTICES} points"
    _style(fig, "Key pool level of each link", height=460, subtitle=sub)
    fig.update_xaxes(title=f"simulated time ({unit})", rangemode="tozero")
    fig.update_yaxes(title="key in pool (bit)", exponentformat="SI", rangemode="tozero")
    return fig


def client_keyrate_figure(run: RunFiles) -> go.Figure | None:
    """Each client's final accuracy against the total secret key rate of its own links.
    None without topology or evaluations."""
    import plotly.graph_objects as go

    acc = _final_acc_by_node(run)
    skr: dict[str, float] = defaultdict(float)
    for lk in run.topology.get("links", []):
        v = _num(lk.get("skr_bps"))
        for end in (lk["a"], lk["b"]):
            skr[str(end)] += v if math.isfinite(v) else 0.0
    names = [n for n in acc if n != "mean" and n in skr and math.isfinite(acc[n])]
    if not names:
        return None
    fig = go.Figure(go.Scatter(
        x=[skr[n] for n in names], y=[100 * acc[n] for n in names], mode="markers+text",
        text=names, textposition="top center", name="clients",
        marker={"size": 12, "color": "#1f77b4", "line": {"color": "white", "width": 1}},
        hovertemplate="%{text}<br>key rate %{x:.3s}bit/s<br>accuracy %{y:.1f} %<extra></extra>",
    ))  # fmt: skip
    mean = acc.get("mean")
    if mean is not None and math.isfinite(mean):
        fig.add_hline(y=100 * mean, line={"color": "#1f77b4", "dash": "dash", "width": 1},
                      annotation_text=f"mean {100 * mean:.1f} %")  # fmt: skip
    _style(fig, "Per client: key rate of its links vs final accuracy", height=420,
           subtitle="x: sum of the secret key rates of the links at the client")  # fmt: skip
    xs = [skr[n] for n in names if skr[n] > 0]
    if xs and max(xs) / min(xs) > 20:
        fig.update_xaxes(type="log")
    fig.update_xaxes(title="secret key rate of the client's links (bit/s)", exponentformat="SI")
    fig.update_yaxes(title="final accuracy (%)", rangemode="tozero")
    return fig


def bottleneck_figure(run: RunFiles) -> go.Figure | None:
    """Where the time went: each round's duration split into compute, key, bandwidth,
    propagation and fault time (stacked bars), or the run's overall shares when the
    summary has no ``round_breakdown``. None if neither is recorded."""
    import plotly.graph_objects as go

    rounds = run.summary.get("round_breakdown")
    fig = go.Figure()
    if isinstance(rounds, list) and rounds:
        scale, unit = _time_unit(_num(r.get("duration_s")) for r in rounds)
        for c in COMPONENTS:
            fig.add_trace(go.Bar(
                x=[r.get("round") for r in rounds], y=[_num(r.get(c)) / scale for r in rounds],
                name=c, marker_color=_COMPONENT_COLOURS[c],
                customdata=[r.get("critical", "") for r in rounds],
                hovertemplate=f"round %{{x}}: %{{y:.3g}} {unit} of {c}<br>ended by "
                              "%{customdata}<extra></extra>",
            ))  # fmt: skip
        fig.update_layout(barmode="stack")
        _style(
            fig,
            "Where the time goes, round by round",
            height=400,
            subtitle="each round's duration split by what the critical chain waited for",
        )
        fig.update_xaxes(title="round", dtick=1 if len(rounds) <= 30 else None)
        fig.update_yaxes(title=f"round duration ({unit})")
        return fig
    shares = run.summary.get("time_share")
    if not isinstance(shares, dict) or not shares:
        return None
    for c in COMPONENTS:
        fig.add_trace(go.Bar(
            x=[100 * _num(shares.get(c, 0.0))], y=["all rounds"], orientation="h", name=c,
            marker_color=_COMPONENT_COLOURS[c],
            hovertemplate=f"{c}: %{{x:.3g}} %<extra></extra>",
        ))  # fmt: skip
    fig.update_layout(barmode="stack")
    _style(
        fig,
        "Where the time goes (all rounds)",
        height=260,
        subtitle="share of the round time by what the critical chain waited for",
    )
    fig.update_xaxes(title="share of round time (%)", range=[0, 100])
    return fig
