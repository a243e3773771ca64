"""The topology chart: each link coloured by its key rate, its width by its utilisation.

:func:`_link_table` (one row per link, with the key accounting) also feeds the report's
per-link table.
"""

from __future__ import annotations

import html
import itertools
import math
from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from qfl.report.charts import Row, _final_acc_by_node, _style
from qfl.report.folders import RunFiles
from qfl.report.text import _num, _pct, _secs, _si

if TYPE_CHECKING:
    import plotly.graph_objects as go

__all__ = ["topology_figure"]

_ROLE_STYLE = {  # marker symbol, colour
    "client": ("circle", "#1f77b4"),
    "server": ("square", "#d62728"),
    "relay": ("diamond", "#666666"),
    "satellite": ("star", "#daa520"),  # a trusted satellite node (links only in passes)
}
_LINK_LABELS = 30
"""Up to this many links are labelled on the map with their key rate."""
_LINK_TRACES = 300
"""Up to this many links are drawn one trace each (width = utilisation); more are drawn as
one trace per key-rate colour band."""
_LAYOUT_LIMIT = 1500
"""Above this many nodes without coordinates no map is laid out."""


def _link_table(run: RunFiles) -> list[dict[str, Any]]:
    """One row per link: ``link``, ``a``, ``b``, ``length_km``, ``skr_bps``, the key
    accounting, ``key_wait_s``, ``utilisation`` and ``bytes_sent`` (NaN where the run's
    files do not say: older runs without ``summary.json``'s ``links``)."""
    by_name: dict[str, dict[str, Any]] = {}
    for lk in run.topology.get("links", []):
        name = f"{lk['a']}-{lk['b']}"
        by_name[name] = {
            "link": name,
            "a": lk["a"],
            "b": lk["b"],
            "length_km": _num(lk.get("length_km")),
            "skr_bps": _num(lk.get("skr_bps")),
        }
    blank = {k: math.nan for k in ("key_generated_bits", "key_consumed_bits", "key_wasted_bits",
                                   "key_wait_s", "utilisation", "bytes_sent")}  # fmt: skip
    for row in by_name.values():  # a link the files do not account for stays NaN
        row.update(blank)
    links = run.summary.get("links")
    if isinstance(links, list):
        for r in links:
            name = str(r.get("link"))
            a, _, b = name.partition("-")
            row = by_name.setdefault(name, {"link": name, "a": a, "b": b, "length_km": math.nan,
                                            "skr_bps": math.nan, **blank})  # fmt: skip
            for k in (*blank, "skr_bps"):
                if k in r:
                    row[k] = _num(r[k])
        return list(by_name.values())
    waits = run.summary.get("key_wait_by_link_s") or {}
    consumed: dict[str, float] = defaultdict(float)
    for r in run.keypools:
        if r.get("event") == "take":
            consumed[r["link"]] += max(0.0, _num(r.get("bits")) if r.get("bits") else 0.0)
    sent: dict[str, float] = defaultdict(float)
    for t in run.transfers:
        if t.get("status") != "delivered":
            continue
        hops = str(t.get("path") or "").split(">")
        for u, v in itertools.pairwise(hops):
            name = f"{u}-{v}" if f"{u}-{v}" in by_name else f"{v}-{u}"
            sent[name] += _num(t.get("n_bytes")) if t.get("n_bytes") else 0.0
    for name, row in by_name.items():
        row.update(blank)
        row["key_wait_s"] = _num(waits.get(name, 0.0))
        if run.keypools:
            row["key_consumed_bits"] = consumed.get(name, 0.0)
        if run.transfers:
            row["bytes_sent"] = sent.get(name, 0.0)
    return list(by_name.values())


def _positions(
    nodes: Sequence[Row], links: Sequence[Row]
) -> tuple[dict[str, tuple[float, float]], bool]:
    """Node positions: longitude/latitude when every node has them, else a layout of the
    graph (Kamada-Kawai, or a quick force layout above 500 nodes); {} above
    :data:`_LAYOUT_LIMIT` nodes without coordinates. Also whether they are coordinates."""
    import networkx as nx

    names = [str(n["name"]) for n in nodes]
    geo = bool(nodes) and all(
        math.isfinite(_num(n.get("latitude"))) and math.isfinite(_num(n.get("longitude")))
        for n in nodes
    )
    if geo:
        return {str(n["name"]): (_num(n["longitude"]), _num(n["latitude"])) for n in nodes}, True
    if len(names) > _LAYOUT_LIMIT:
        return {}, False
    g = nx.Graph()
    g.add_nodes_from(names)
    g.add_edges_from((str(lk["a"]), str(lk["b"])) for lk in links)
    if 2 < len(names) <= 500:
        pos = nx.kamada_kawai_layout(g)
    else:
        pos = nx.spring_layout(g, seed=0, iterations=50)
    return {k: (float(v[0]), float(v[1])) for k, v in pos.items()}, False


def topology_figure(run: RunFiles) -> go.Figure | None:
    """The topology: links coloured by secret key rate (log scale), their width by channel
    utilisation (relative to the busiest link), nodes by role; hover for every figure.
    None when the run has no ``topology.json`` or too many nodes to lay out."""
    import plotly.graph_objects as go
    from plotly.colors import sample_colorscale

    nodes = run.topology.get("nodes") or []
    links_in = run.topology.get("links") or []
    if not nodes:
        return None
    pos, geo = _positions(nodes, links_in)
    if not pos:
        return None
    table = _link_table(run)
    rates = [r["skr_bps"] for r in table if math.isfinite(r["skr_bps"]) and r["skr_bps"] > 0]
    lo, hi = (math.log10(min(rates)), math.log10(max(rates))) if rates else (0.0, 1.0)
    if hi - lo < 1e-9:
        lo, hi = lo - 0.5, hi + 0.5
    util = [r["utilisation"] for r in table if math.isfinite(r["utilisation"])]
    u_max = max(util, default=0.0)
    fig = go.Figure()

    def colour(skr: float) -> str:
        if not (math.isfinite(skr) and skr > 0):
            return "#d62728"
        return str(sample_colorscale("Viridis", [(math.log10(skr) - lo) / (hi - lo)])[0])

    meta = {frozenset((str(lk["a"]), str(lk["b"]))): lk for lk in links_in}
    sats = {str(lk["satellite"]) for lk in links_in if lk.get("satellite")}
    middles: tuple[list[float], list[float]] = ([], [])
    mids: dict[str, list[Any]] = {"x": [], "y": [], "c": [], "text": []}
    drawn = [r for r in table if r["a"] in pos and r["b"] in pos]
    per_link = len(drawn) <= _LINK_TRACES
    bands: dict[str, tuple[list[float | None], list[float | None]]] = defaultdict(lambda: ([], []))
    for r in drawn:
        (x0, y0), (x1, y1) = pos[r["a"]], pos[r["b"]]
        skr, u = r["skr_bps"], r["utilisation"]
        keyed = math.isfinite(skr) and skr > 0
        if per_link:
            width = 2.5 + (7.0 * u / u_max if u_max > 0 and math.isfinite(u) else 0.0)
            fig.add_trace(go.Scatter(
                x=[x0, x1], y=[y0, y1], mode="lines", hoverinfo="skip", showlegend=False,
                line={"color": colour(skr), "width": width, "dash": "solid" if keyed else "dash"},
            ))  # fmt: skip
        else:
            xs, ys = bands[colour(skr)]
            xs += [x0, x1, None]
            ys += [y0, y1, None]
        lines = [
            f"<b>{html.escape(r['link'])}</b>",
            f"secret key rate: {_si(skr, 'bit/s')}" + ("" if keyed else " (no key)"),
        ]
        lk = meta.get(frozenset((str(r["a"]), str(r["b"])))) or {}
        if lk.get("kind"):
            lines.append(f"kind: {html.escape(str(lk['kind']))}"
                         + (" (untrusted middle station)" if lk.get("untrusted_middle") else "")
                         + (" (key only in passes)" if lk.get("satellite") else ""))  # fmt: skip
        if lk.get("untrusted_middle"):
            middles[0].append((x0 + x1) / 2)
            middles[1].append((y0 + y1) / 2)
        if math.isfinite(r["length_km"]):
            lines.append(f"length: {r['length_km']:.3g} km")
        lines += [
            f"channel utilisation: {_pct(r['utilisation'])}",
            f"key wait: {_secs(r['key_wait_s'])}",
            f"key consumed: {_si(r['key_consumed_bits'], 'bit')}",
            f"key generated: {_si(r['key_generated_bits'], 'bit')}",
            f"key wasted: {_si(r['key_wasted_bits'], 'bit')}",
            f"bytes sent: {_si(r['bytes_sent'], 'B')}",
        ]
        mids["x"].append((x0 + x1) / 2)
        mids["y"].append((y0 + y1) / 2)
        mids["c"].append(math.log10(skr) if keyed else lo)
        mids["text"].append("<br>".join(lines))
    for col, (xs, ys) in bands.items():
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", hoverinfo="skip", showlegend=False,
                                 line={"color": col, "width": 1.5}))  # fmt: skip
    ticks = [
        math.log10(m * 10.0**k)
        for k in range(math.floor(lo) - 1, math.ceil(hi) + 1)
        for m in ((1, 2, 5) if hi - lo < 3 else (1,))
        if lo - 1e-9 <= math.log10(m * 10.0**k) <= hi + 1e-9
    ] or [lo, hi]
    fig.add_trace(go.Scatter(
        x=mids["x"], y=mids["y"], mode="markers", name="links", showlegend=False,
        hovertext=mids["text"], hoverinfo="text",
        marker={"size": 10, "opacity": 0.0, "color": mids["c"], "colorscale": "Viridis",
                "cmin": lo, "cmax": hi, "showscale": True,
                "colorbar": {"title": {"text": "secret key<br>rate", "side": "top"},
                             "tickvals": ticks,
                             "ticktext": [_si(10.0**t, "bit/s") for t in ticks],
                             "thickness": 14, "len": 0.8}},
    ))  # fmt: skip
    if len(drawn) <= _LINK_LABELS:
        for x, y, r in zip(mids["x"], mids["y"], drawn, strict=True):
            label = _si(r["skr_bps"], "bit/s")
            if math.isfinite(r["utilisation"]):
                label += f" · {_pct(r['utilisation'])}"
            fig.add_annotation(x=x, y=y, text=label, showarrow=False,
                               font={"size": 10, "color": "#333"},
                               bgcolor="rgba(255,255,255,0.8)", borderpad=1)  # fmt: skip
    if middles[0]:
        fig.add_trace(go.Scatter(
            x=middles[0], y=middles[1], mode="markers", name="untrusted middle (MDI/TF)",
            hoverinfo="skip", marker={"symbol": "triangle-up-open", "size": 14,
                                      "color": "#111", "line": {"width": 2}},
        ))  # fmt: skip
    acc = _final_acc_by_node(run)
    by_role: dict[str, list[Row]] = defaultdict(list)
    for n in nodes:
        if str(n["name"]) in pos:
            role = "satellite" if str(n["name"]) in sats else str(n.get("role") or "client")
            by_role[role].append(n)
    labels = len(nodes) <= 60
    for role, ns in sorted(by_role.items()):
        symbol, col = _ROLE_STYLE.get(role, ("circle", "#1f77b4"))
        hover = []
        for n in ns:
            h = f"<b>{html.escape(str(n['name']))}</b><br>role: {html.escape(role)}"
            if n.get("flops_per_s") is not None:
                h += f"<br>compute: {_si(n['flops_per_s'], 'FLOP/s')}"
            if str(n["name"]) in acc:
                h += f"<br>final accuracy: {_pct(acc[str(n['name'])])}"
            hover.append(h)
        fig.add_trace(go.Scatter(
            x=[pos[str(n["name"])][0] for n in ns], y=[pos[str(n["name"])][1] for n in ns],
            mode="markers", name=role, hovertext=hover, hoverinfo="text",
            marker={"symbol": symbol, "size": 16 if labels else 7, "color": col,
                    "line": {"color": "white", "width": 1.5}},
        ))  # fmt: skip
        for n in ns if labels else ():  # names above the link labels (annotations, in order)
            x, y = pos[str(n["name"])]
            fig.add_annotation(x=x, y=y, yshift=17, text=f"<b>{html.escape(str(n['name']))}</b>",
                               showarrow=False, font={"size": 12, "color": "#1d2430"},
                               bgcolor="rgba(255,255,255,0.75)", borderpad=1)  # fmt: skip
    if not util:
        width_note = "utilisation not recorded by this run"
    elif per_link:
        width_note = f"width = channel utilisation (busiest link {_pct(u_max)})"
    else:
        width_note = "utilisation on hover"
    sub = f"{len(nodes)} nodes, {len(links_in)} links; colour = secret key rate, {width_note}"
    if len(drawn) <= _LINK_LABELS:
        sub += "; labels: key rate" + (" · utilisation" if util else "")
    sub += "; dashed red: no key" if per_link else "; red: no key"
    if not geo:
        sub += "; laid out by graph distance (no coordinates)"
    _style(fig, "Topology: secret key rate and utilisation of each link", height=600,
           subtitle=sub)  # fmt: skip
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False, scaleanchor="x", scaleratio=1)
    fig.update_layout(legend={"title": {"text": "node role"}, "x": 0.0, "y": 0.0,
                              "xanchor": "left", "yanchor": "bottom"})  # fmt: skip
    if geo:
        fig.update_xaxes(visible=True, title="longitude (°)")
        fig.update_yaxes(visible=True, title="latitude (°)")
    return fig
