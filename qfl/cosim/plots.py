"""Plots of runs and sweeps, drawn from the files a run or sweep folder holds.

Every function takes plain rows (as read back from the CSV files) and writes one PNG, so
``qfl plot DIR`` can redraw everything from disk. Matplotlib's object-oriented API is used
(no pyplot state, no display needed).
"""

from __future__ import annotations

import csv
import json
import logging
import math
import textwrap
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

from matplotlib.figure import Figure

from qkd.errors import QflError

__all__ = [
    "BOTTLENECK_COLOURS",
    "BOTTLENECK_LINKS",
    "DETAIL_LIMIT",
    "LAYOUT_LIMIT",
    "SINGLE_AXES_LINKS",
    "keypool_series",
    "plot_accuracy",
    "plot_bottlenecks",
    "plot_keypools",
    "plot_sweep",
    "plot_topology",
    "read_csv",
    "redraw",
    "sweep_context",
]

Row = Mapping[str, Any]

_log = logging.getLogger(__name__)


def read_csv(path: str | Path) -> list[dict[str, str]]:
    """Read a CSV file into a list of dicts (values as strings)."""
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _num(v: Any) -> float:
    if v is None or v == "":
        return math.nan
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def _time_axis(times: Sequence[float]) -> tuple[float, str]:
    top = max((t for t in times if math.isfinite(t)), default=0.0)
    if top >= 2 * 3600:
        return 3600.0, "simulated time (h)"
    if top >= 120:
        return 60.0, "simulated time (min)"
    return 1.0, "simulated time (s)"


def _plain_ticks(ax: Any, *axes: str) -> None:
    """Plain tick labels on the named axes (``"x"``, ``"y"``): no offset (``+1.6666e1``)
    and no scientific multiplier, whatever the range."""
    from matplotlib.ticker import ScalarFormatter

    for name in axes:
        fmt = ScalarFormatter(useOffset=False)
        fmt.set_scientific(False)
        getattr(ax, f"{name}axis").set_major_formatter(fmt)


def plot_accuracy(
    rows: Iterable[Row], path: str | Path, *, title: str = "", target: float | None = None
) -> Path:
    """Accuracy over simulated time: the mean over clients, with each client faint.

    Solid lines are the global model's accuracy on the test set, dashed ones the local
    accuracy on each client's held-out data (thick and coloured: the mean over clients;
    thin and grey: each client); a legend says so. The time axis starts at 0 in s, min or
    h (from the range), the accuracy axis is in %, neither with an offset; the target
    accuracy, if any, is a dotted horizontal line.

    Parameters
    ----------
    rows : iterable of mapping
        ``metrics.csv`` rows with ``sim_time_s``, ``node``, ``global_acc``, ``local_acc``.
    path : path
        Output PNG.
    title : str
        The title (default: says what the plot shows).
    target : float, optional
        The target accuracy in (0, 1] (``summary.json``'s ``target_accuracy``).
    """
    from matplotlib.lines import Line2D

    rows = list(rows)
    fig = Figure(figsize=(7, 4.6), layout="constrained")
    ax = fig.add_subplot()
    times = [_num(r["sim_time_s"]) for r in rows]
    scale, label = _time_axis(times)
    by_node: dict[str, list[Row]] = defaultdict(list)
    for r in rows:
        by_node[str(r["node"])].append(r)
    drawn: set[str] = set()
    clients = False
    top = 0.0
    for key, style in (("global_acc", "-"), ("local_acc", "--")):
        for node, rs in sorted(by_node.items()):
            xs = [_num(r["sim_time_s"]) / scale for r in rs]
            ys = [100 * _num(r[key]) for r in rs]
            if all(math.isnan(y) for y in ys):
                continue
            top = max([top, *(y for y in ys if math.isfinite(y))])
            if node == "mean":
                drawn.add(key)
                ax.plot(xs, ys, style, color="C0" if key == "global_acc" else "C1", lw=2.2,
                        marker="o", ms=4, zorder=3)  # fmt: skip
            else:
                clients = True
                ax.plot(xs, ys, style, color="0.75", lw=0.8)
    handles: list[Any] = []
    if "global_acc" in drawn:
        handles.append(Line2D([], [], color="C0", lw=2.2, marker="o", ms=4,
                              label="global model, test set (mean over clients)"))  # fmt: skip
    if "local_acc" in drawn:
        handles.append(Line2D([], [], color="C1", ls="--", lw=2.2, marker="o", ms=4,
                              label="local, held-out data (mean over clients)"))  # fmt: skip
    if clients:
        handles.append(Line2D([], [], color="0.75", lw=0.8,
                              label="each client (solid: global, dashed: local)"))  # fmt: skip
    if target is not None and math.isfinite(target):
        ax.axhline(100 * target, color="0.3", ls=":", lw=1.4)
        handles.append(Line2D([], [], color="0.3", ls=":", lw=1.4,
                              label=f"target accuracy ({100 * target:g} %)"))  # fmt: skip
        top = max(top, 100 * target)
    end = max((t for t in times if math.isfinite(t)), default=0.0)
    ax.set_xlim(0, 1.03 * end / scale if end > 0 else 1.0)
    ax.set_ylim(0, min(100.0, top + 8) if top > 0 else 100.0)
    _plain_ticks(ax, "x", "y")
    ax.set_xlabel(label)
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title or "Accuracy over simulated time")
    ax.grid(alpha=0.3)
    if handles:
        fig.legend(handles=handles, loc="outside lower center", ncols=2, fontsize=8)
    else:
        ax.text(0.5, 0.5, "no evaluation recorded", ha="center", va="center",
                transform=ax.transAxes, color="0.4")  # fmt: skip
    out = Path(path)
    fig.savefig(out, dpi=110)
    return out


def keypool_series(
    rows: Iterable[Row], rates: Mapping[str, float] | None = None
) -> dict[str, tuple[list[float], list[float]]]:
    """Each link's key-pool level over simulated time, as the vertices of an exact polyline.

    Between two records the level is what the pool model makes of it: in block mode (a link
    with ``block`` records) it stays flat and steps up at each block landing; in fluid mode
    it rises at the link's rate (from its ``start`` or ``rate`` record, else ``rates``) until
    it reaches the level the next record found, flat from there if it got there early (the
    pool was full). A take, a wipe or a block is a vertical step at its time.

    Parameters
    ----------
    rows : iterable of mapping
        ``keypools.csv`` rows: ``sim_time_s``, ``link``, ``event`` (``start``, ``take``,
        ``block``, ``rate``, ``wipe``, ``end``), ``bits`` (a take's, wipe's or block's key;
        a ``start``'s or ``rate``'s key rate in bit/s) and ``level_bits`` (the level just
        after). A folder written before ``start``/``end`` rows existed starts each link at
        its first record's level before it and ends at its last record.
    rates : mapping, optional
        Key rate (bit/s) of each link where there is no ``start`` row (``topology.json``'s
        ``skr_bps``).

    Returns
    -------
    dict
        ``link -> (times, levels)``, the polyline's vertices in time order (a step is two
        vertices at one time), links in the order of their first row.

    Examples
    --------
    Fluid refill at 100 bit/s from 0; a take of 300 bits at 5 s; full (600 bits) at 8 s:

    >>> rows = [
    ...     {"sim_time_s": 0, "link": "a-b", "event": "start", "bits": 100, "level_bits": 0},
    ...     {"sim_time_s": 5, "link": "a-b", "event": "take", "bits": 300, "level_bits": 200},
    ...     {"sim_time_s": 20, "link": "a-b", "event": "end", "bits": 100, "level_bits": 600},
    ... ]
    >>> keypool_series(rows)["a-b"]
    ([0.0, 5.0, 5.0, 9.0, 20.0], [0.0, 500.0, 200.0, 600.0, 600.0])
    """
    by_link: dict[str, list[tuple[float, int, str, float, float]]] = defaultdict(list)
    for i, r in enumerate(rows):
        kind = str(r.get("event") or "")
        by_link[str(r["link"])].append(
            (_num(r["sim_time_s"]), i, kind, _num(r.get("bits")), _num(r["level_bits"]))
        )
    rates = rates or {}
    out: dict[str, tuple[list[float], list[float]]] = {}
    for link, events in by_link.items():
        events.sort()
        blocks = any(kind == "block" for _, _, kind, _, _ in events)
        rate = 0.0 if blocks else _num(rates.get(link))
        ts: list[float] = []
        ls: list[float] = []
        for t, _, kind, bits, level in events:
            if not (math.isfinite(t) and math.isfinite(level)):
                continue
            if kind == "take" and math.isfinite(bits):
                before = level + bits
            elif kind == "wipe" and math.isfinite(bits):
                before = bits
            elif kind == "block" and ls:
                before = ls[-1]
            elif kind == "block" and math.isfinite(bits):
                before = max(0.0, level - bits)
            else:  # start, rate, end: the level at that time
                before = level
            if ts:
                _refill(ts, ls, t, before, rate)
            else:
                ts.append(t)
                ls.append(before)
            if level != ls[-1] or t != ts[-1]:
                ts.append(t)
                ls.append(level)
            if kind in ("start", "rate") and not blocks and math.isfinite(bits):
                rate = bits
        out[link] = (ts, ls)
    return out


def _refill(ts: list[float], ls: list[float], t1: float, level1: float, rate: float) -> None:
    """Extend the polyline from its last vertex to ``level1`` at ``t1``: flat, a straight
    rise, or a rise at ``rate`` to ``level1`` and flat from there (the pool was full)."""
    t0, level0 = ts[-1], ls[-1]
    if t1 <= t0:
        if level1 != level0:
            ts.append(t1)
            ls.append(level1)
        return
    tol = 1e-9 * max(1.0, abs(level1))
    if abs(level1 - level0) <= tol:
        ts.append(t1)
        ls.append(level0)
        return
    if level1 > level0 and math.isfinite(rate) and rate > 0:
        knee = t0 + (level1 - level0) / rate
        if knee < t1 - 1e-9 * max(1.0, abs(t1)):
            ts.append(knee)
            ls.append(level1)
    ts.append(t1)
    ls.append(level1)


SINGLE_AXES_LINKS = 4
"""Up to this many links whose fullest levels are within :data:`_SPREAD` of one another
share one axes in ``keypools.png``; more, or more spread, get one small panel each."""
_SPREAD = 30.0


def plot_keypools(
    rows: Iterable[Row],
    path: str | Path,
    *,
    max_links: int = 16,
    rates: Mapping[str, float] | None = None,
) -> Path:
    """Key-pool levels over simulated time, every link's exact refill and takes.

    The levels come from :func:`keypool_series` (block landings as steps, fluid refill as
    slopes). A few links of similar levels share one linear axes (a colour each, the legend
    outside it); otherwise each link gets a small panel with its own linear axis, all
    sharing the time axis, the ``max_links`` links that used the most key first (a note
    says how many are left out).

    Parameters
    ----------
    rows : iterable of mapping
        ``keypools.csv`` rows (see :func:`keypool_series`).
    rates : mapping, optional
        Key rate of each link, for folders without ``start`` rows.
    """
    rows = list(rows)
    series = keypool_series(rows, rates)
    used: dict[str, float] = defaultdict(float)
    takes: dict[str, list[float]] = defaultdict(list)
    for r in rows:
        if r.get("event") == "take":
            bits = _num(r.get("bits"))
            used[str(r["link"])] += bits if bits > 0 else 0.0
            takes[str(r["link"])].append(_num(r["sim_time_s"]))
    ranked = sorted(series, key=lambda k: (-used[k], k))
    shown = sorted(ranked[:max_links])
    blocks = {str(r["link"]) for r in rows if r.get("event") == "block"}
    end = max((ts[-1] for ts, _ in series.values() if ts), default=0.0)
    scale, xlabel = _time_axis([end])
    how = "steps: block landings" if blocks else "slopes: key refilling at each link's rate"
    if any(0 < len(takes[k]) <= RUG_LIMIT for k in shown):
        how += "; ticks: key taken"
    note = (
        f"; the {len(shown)} of {len(series)} links that used the most key"
        if len(shown) < len(series)
        else ""
    )
    peaks = [max(series[k][1]) for k in shown if series[k][1] and max(series[k][1]) > 0]
    single = len(shown) <= SINGLE_AXES_LINKS and (not peaks or max(peaks) <= _SPREAD * min(peaks))
    colours = _distinct_colours(len(shown))
    if single:
        fig = Figure(figsize=(7.5, 4.2), layout="constrained")
        ax = fig.add_subplot()
        for link, col in zip(shown, colours, strict=True):
            ts, ls = series[link]
            ax.plot([t / scale for t in ts], ls, color=col, lw=1.6, label=link)
            _rug(ax, takes[link], scale, col)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("key in pool")
        ax.set_ylim(bottom=0)
        if shown:
            _bit_axis(ax, max(peaks, default=0.0))
        ax.set_xlim(0, 1.01 * end / scale if end > 0 else 1)
        _plain_ticks(ax, "x")
        ax.grid(alpha=0.3)
        if shown:
            fig.legend(loc="outside right upper", fontsize=8, title="link")
            ax.set_title(f"Key-pool levels ({how})", fontsize=10)
        else:
            ax.set_title("Key-pool levels")
            ax.text(0.5, 0.5, "no key-pool records", ha="center", va="center",
                    transform=ax.transAxes, color="0.4")  # fmt: skip
    else:
        ncols = 3 if len(shown) <= 9 else 4
        nrows = math.ceil(len(shown) / ncols)
        fig = Figure(figsize=(2.6 * ncols, 1.5 * nrows + 1.0), layout="constrained")
        axes = fig.subplots(nrows, ncols, sharex=True, squeeze=False).ravel()
        for ax, link, col in zip(axes, shown, colours, strict=False):
            ts, ls = series[link]
            xs = [t / scale for t in ts]
            ax.plot(xs, ls, color=col, lw=1.4, label=link)
            _rug(ax, takes[link], scale, col)
            ax.fill_between(xs, ls, color=col, alpha=0.15, lw=0)
            ax.set_title(link, fontsize=8, pad=2)
            ax.tick_params(labelsize=7)
            ax.set_ylim(bottom=0, top=max(ls, default=0.0) * 1.08 or 1.0)
            _bit_axis(ax, max(ls, default=0.0))
            ax.grid(alpha=0.3)
        for ax in axes[len(shown) :]:
            ax.set_axis_off()
        axes[0].set_xlim(0, 1.01 * end / scale if end > 0 else 1)
        for ax in axes[: len(shown)]:
            _plain_ticks(ax, "x")
        fig.supxlabel(xlabel, fontsize=9)
        fig.supylabel("key in pool", fontsize=9)
        fig.suptitle(f"Key-pool levels ({how}; each panel its own scale{note})", fontsize=10)
    out = Path(path)
    fig.savefig(out, dpi=110)
    return out


def _bit_axis(ax: Any, peak: float) -> None:
    """A y axis of key in bits with SI prefixes (``400 kbit``), its ticks whole bits: never
    below 1 bit (no millibits). A pool that never held key (``peak`` 0) shows a flat 0
    and a note saying so."""
    from matplotlib.ticker import EngFormatter, MaxNLocator

    if not peak > 0:
        ax.set_ylim(0, 1)
        ax.set_yticks([0.0], ["0 bit"])
        ax.text(0.5, 0.55, "no key in this pool\n(0 bits throughout)", ha="center",
                va="center", transform=ax.transAxes, fontsize=8, color="0.4")  # fmt: skip
        return
    ax.yaxis.set_major_locator(MaxNLocator(nbins="auto", steps=[1, 2, 2.5, 5, 10], integer=True))
    ax.yaxis.set_major_formatter(EngFormatter(unit="bit", sep=" "))


RUG_LIMIT = 500
"""A link's takes are marked as ticks along the time axis when it has at most this many."""


def _rug(ax: Any, times: Sequence[float], scale: float, colour: Any) -> None:
    """Ticks at the bottom of ``ax`` where key was taken (too little to see in the level)."""
    if not 0 < len(times) <= RUG_LIMIT:
        return
    ax.plot([t / scale for t in times], [0.0] * len(times), ls="", marker="|", ms=7,
            mew=1.0, color=colour, alpha=0.8, transform=ax.get_xaxis_transform(),
            clip_on=False, label="_key taken")  # fmt: skip


def _distinct_colours(n: int) -> list[Any]:
    """``n`` colours no two alike: tab10, tab20, then evenly spaced hues."""
    from matplotlib import colormaps

    if n <= 10:
        return [colormaps["tab10"](i) for i in range(n)]
    if n <= 20:
        tab = colormaps["tab20"]
        return [tab(2 * i if i < 10 else 2 * (i - 10) + 1) for i in range(n)]
    hsv = colormaps["hsv"]
    return [hsv(i / n) for i in range(n)]


DETAIL_LIMIT = 500
"""Above this many nodes ``topology.png`` is a simplified map (see :func:`plot_topology`)."""
LAYOUT_LIMIT = 1500
"""Above this many nodes without coordinates no map is laid out (a force layout would take
longer than the whole network simulation)."""


def plot_topology(
    nodes: Sequence[Row],
    links: Sequence[Row],
    path: str | Path,
    *,
    seed: int = 0,
    detail_limit: int | None = DETAIL_LIMIT,
) -> Path:
    """The topology, with links coloured by secret key rate (log scale).

    Parameters
    ----------
    nodes : sequence of mapping
        ``name``, ``role`` and optionally ``latitude``/``longitude``.
    links : sequence of mapping
        ``a``, ``b``, ``skr_bps`` and optionally ``length_km``.
    detail_limit : int or None
        Above this many nodes the map is simplified (logged): no names, small markers, the
        links drawn as one collection, and without coordinates a quick force layout instead
        of Kamada-Kawai (above :data:`LAYOUT_LIMIT` nodes without coordinates, no map: the
        figure says so). Drawing every node and link one by one takes minutes for
        thousands of nodes. None: always the detailed drawing.

    Kept as one function: the map's layers (links, nodes, labels, colour bar) share its
    axes, its scale and the size-dependent choices.
    """
    import networkx as nx
    from matplotlib import cm, colors

    g = nx.Graph()
    sats = {str(lk["satellite"]) for lk in links if lk.get("satellite")}
    for n in nodes:
        g.add_node(str(n["name"]), role=n.get("role", "client"))
    for lk in links:
        g.add_edge(
            str(lk["a"]),
            str(lk["b"]),
            skr=_num(lk.get("skr_bps")),
            middle=bool(lk.get("untrusted_middle")),
            sat=bool(lk.get("satellite")),
            kind=str(lk.get("kind") or ""),
        )
    simple = detail_limit is not None and g.number_of_nodes() > detail_limit
    geo = all(
        math.isfinite(_num(n.get("latitude"))) and math.isfinite(_num(n.get("longitude")))
        for n in nodes
        if str(n["name"]) not in sats
    )
    n_nodes = g.number_of_nodes()
    if simple and not geo and n_nodes > LAYOUT_LIMIT:
        _log.warning(
            "topology.png: %d nodes without coordinates (more than %d): no map drawn",
            n_nodes,
            LAYOUT_LIMIT,
        )
        return _no_map(g, path)
    if simple:
        _log.info(
            "topology.png: %d nodes (more than %d): a simplified map without node names%s",
            n_nodes,
            detail_limit,
            "" if geo and nodes else ", laid out by a quick force layout (no coordinates)",
        )
    if geo and nodes:
        pos = {
            str(n["name"]): (_num(n["longitude"]), _num(n["latitude"]))
            for n in nodes
            if str(n["name"]) not in sats
        }
        pos.update(_above_ground(g, pos, sats))
    elif simple:
        pos = nx.spring_layout(g, seed=seed, iterations=30)
    else:
        pos = (
            nx.kamada_kawai_layout(g) if g.number_of_nodes() > 2 else nx.spring_layout(g, seed=seed)
        )
    # the colour scale spans the links that have key; those without are drawn red
    rates = [d["skr"] for _, _, d in g.edges(data=True) if math.isfinite(d["skr"]) and d["skr"] > 0]
    lo, hi = (min(rates), max(rates)) if rates else (1.0, 10.0)
    if hi <= lo:
        hi = lo * 10
    norm = colors.LogNorm(vmin=lo, vmax=hi)
    cmap = cm.viridis
    fig = Figure(figsize=(7, 5.5), layout="constrained")
    ax = fig.add_subplot()
    marker = {"client": ("o", "C0"), "server": ("s", "C3"), "relay": ("D", "0.4")}
    if simple:
        _draw_simplified(ax, g, pos, norm, cmap, lo, marker)
    else:
        kinds = {d["kind"] for _, _, d in g.edges(data=True)}
        for a, b, d in g.edges(data=True):
            (x0, y0), (x1, y1) = pos[a], pos[b]
            skr = d["skr"]
            col = cmap(norm(max(skr, lo))) if math.isfinite(skr) and skr > 0 else "red"
            ax.plot([x0, x1], [y0, y1], color=col, lw=2 if d["sat"] else 3, zorder=1,
                    linestyle=(0, (4, 2)) if d["sat"] else "-")  # fmt: skip
            xm, ym = (x0 + x1) / 2, (y0 + y1) / 2
            if d["middle"]:  # MDI / twin-field: the untrusted measuring station (Charlie)
                ax.scatter([xm], [ym], marker="^", s=90, facecolor="white", edgecolor="black",
                           linewidths=1.2, zorder=3)  # fmt: skip
            if len(kinds) > 1 and d["kind"] and g.number_of_edges() <= 40:
                ax.annotate(d["kind"], (xm, ym), textcoords="offset points", xytext=(5, -10),
                            fontsize=7, color="0.25")  # fmt: skip
        for name, data in g.nodes(data=True):
            m, c = marker.get(str(data.get("role")), ("o", "C0"))
            if name in sats:
                m, c = "*", "goldenrod"
            x, y = pos[name]
            ax.scatter([x], [y], marker=m, s=260 if name in sats else 120, color=c, zorder=2,
                       edgecolors="white")  # fmt: skip
            ax.annotate(name, (x, y), textcoords="offset points", xytext=(6, 6), fontsize=8)
    sm = cm.ScalarMappable(norm=norm, cmap=cmap)
    fig.colorbar(sm, ax=ax, label="secret key rate (bit/s)")
    title = "Topology (o client, s server, D trusted relay; red: no key)"
    extra = []
    if any(d["middle"] for _, _, d in g.edges(data=True)):
        extra.append("^ untrusted middle station")
    if sats:
        extra.append("* satellite, dashed: key only in passes (zenith rate)")
    if extra and not simple:
        title += "\n" + "; ".join(extra)
    if simple:
        title = (
            f"Topology: {g.number_of_nodes()} nodes, {g.number_of_edges()} links "
            "(o client, s server, . relay; red: no key)"
        )
    ax.set_title(title, fontsize=10 if simple else None)
    ax.set_axis_off()
    out = Path(path)
    fig.savefig(out, dpi=110)
    return out


def _above_ground(
    g: Any, pos: Mapping[str, tuple[float, float]], sats: set[str]
) -> dict[str, tuple[float, float]]:
    """Map positions of satellites (no coordinates): above the mean of their ground nodes."""
    ys = [y for _, y in pos.values()] or [0.0]
    lift = max(2.0, 0.25 * (max(ys) - min(ys)))
    out = {}
    for sat in sorted(sats):
        ground = [pos[v] for v in g.neighbors(sat) if v in pos] or list(pos.values()) or [(0, 0)]
        x = sum(p[0] for p in ground) / len(ground)
        out[sat] = (x, max(p[1] for p in ground) + lift)
    return out


def _no_map(g: Any, path: str | Path) -> Path:
    """A figure that says why there is no map."""
    fig = Figure(figsize=(7, 5.5), layout="constrained")
    ax = fig.add_subplot()
    ax.set_axis_off()
    roles = Counter(str(d.get("role")) for _, d in g.nodes(data=True))
    counts = ", ".join(f"{k} {roles[k]}" for k in sorted(roles))
    ax.text(
        0.5,
        0.5,
        f"{g.number_of_nodes()} nodes ({counts}), {g.number_of_edges()} links\n"
        f"no coordinates, and too many nodes (> {LAYOUT_LIMIT}) to lay out quickly:\n"
        "no map drawn (give nodes latitude/longitude for one)",
        ha="center",
        va="center",
        transform=ax.transAxes,
    )
    ax.set_title("Topology")
    out = Path(path)
    fig.savefig(out, dpi=110)
    return out


def _draw_simplified(
    ax: Any,
    g: Any,
    pos: Mapping[str, Any],
    norm: Any,
    cmap: Any,
    lo: float,
    marker: Mapping[str, tuple[str, str]],
) -> None:
    """Links as one collection (thin, the fastest on top), nodes as one scatter per role."""
    import numpy as np
    from matplotlib.collections import LineCollection
    from matplotlib.colors import to_rgba

    edges = list(g.edges(data=True))
    skr = np.array([d["skr"] for _, _, d in edges], dtype=float)
    segs = np.array([(pos[a], pos[b]) for a, b, _ in edges], dtype=float).reshape(-1, 2, 2)
    keyed = np.isfinite(skr) & (skr > 0)
    rgba = np.empty((len(edges), 4))
    if keyed.any():
        rgba[keyed] = cmap(norm(np.maximum(skr[keyed], lo)))
    rgba[~keyed] = to_rgba("red")
    order = np.argsort(np.where(keyed, skr, np.inf), kind="stable")  # no-key links on top
    n = g.number_of_nodes()
    lw = 1.2 if n <= 2000 else 0.6
    lines = LineCollection(cast(Any, segs[order]), colors=rgba[order], linewidths=lw, zorder=1)
    ax.add_collection(lines)
    size = 10.0 if n <= 2000 else 4.0
    for role, (m, c) in marker.items():
        pts = [pos[v] for v, d in g.nodes(data=True) if str(d.get("role")) == role]
        if role == "relay":
            m = "."
        if pts:
            xy = np.asarray(pts, dtype=float)
            ax.scatter(xy[:, 0], xy[:, 1], marker=m, s=size * (3 if role == "server" else 1),
                       color=c, zorder=3 if role == "server" else 2, linewidths=0)  # fmt: skip
    others = [pos[v] for v, d in g.nodes(data=True) if str(d.get("role")) not in marker]
    if others:
        xy = np.asarray(others, dtype=float)
        ax.scatter(xy[:, 0], xy[:, 1], marker="o", s=size, color="C0", zorder=2, linewidths=0)
    ax.autoscale_view()


def sweep_context(folder: str | Path) -> dict[str, Any]:
    """What a sweep's plot title says, from its folder: ``name`` and ``scenario`` (from
    ``sweep.json``), and ``horizon_s`` and ``target_accuracy`` from the points'
    ``summary.json`` (each a value, None if unset, or ``"varies"`` if points differ).
    Missing files give an empty context."""
    d = Path(folder)
    meta = _read_json(d / "sweep.json")
    ctx: dict[str, Any] = {"name": meta.get("name"), "scenario": meta.get("base")}
    seen: dict[str, set[Any]] = {"horizon_s": set(), "target_accuracy": set()}
    for f in sorted(d.glob("points/*/summary.json")):
        s = _read_json(f)
        if "horizon_s" not in s:  # a failed point's summary holds only its error
            continue
        ctx["scenario"] = ctx["scenario"] or s.get("scenario")
        for k, values in seen.items():
            values.add(s.get(k))
    for k, values in seen.items():
        if values:
            ctx[k] = values.pop() if len(values) == 1 else "varies"
    return ctx


def _duration(seconds: float) -> str:
    if seconds >= 2 * 3600:
        return f"{seconds / 3600:g} h"
    if seconds >= 120:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"


def _sweep_title(ctx: Mapping[str, Any], what: str) -> str:
    scenario = ctx.get("scenario") or ctx.get("name")
    head = f"{scenario}: {what}" if scenario else what.capitalize()
    horizon, target = ctx.get("horizon_s", "unknown"), ctx.get("target_accuracy", "unknown")
    parts = []
    if horizon is None:
        parts.append("no horizon: every point runs all its rounds")
    elif isinstance(horizon, int | float):
        parts.append(f"horizon {_duration(float(horizon))}")
    elif horizon == "varies":
        parts.append("horizon varies")
    if isinstance(target, int | float):
        parts.append(f"target {100 * float(target):g} % accuracy")
    elif target is None:
        parts.append("no target accuracy")
    return head + ("\n" + ", ".join(parts) if parts else "")


def _flat_sweep(rows: Sequence[Row]) -> str:
    """Why no point of the sweep can differ in accuracy from another ('' if they can)."""
    if len(rows) < 2:
        return ""
    done = {_num(r.get("rounds_done")) for r in rows}
    failed = any(_num(r.get("transfers_failed")) > 0 for r in rows)
    if len(done) != 1 or failed or not all(math.isfinite(v) for v in done):
        return ""
    (n,) = done
    return (
        f"every point completed the same {n:g} rounds with no failed transfer: the swept "
        "values cannot change accuracy (give the scenario a horizon_s)"
    )


def _series_style(i: int) -> dict[str, Any]:
    """Colour, marker and size of the ``i``-th series: later ones smaller and on top, so
    series with equal values stay visible."""
    return {"color": f"C{i}", "marker": "osDPX*"[i % 6], "ms": max(4.0, 9.0 - 1.5 * i),
            "lw": max(1.0, 2.4 - 0.4 * i), "zorder": 2 + i}  # fmt: skip


def _sweep_series(
    ax: Any,
    ax2: Any,
    name: str,
    rows: Sequence[Row],
    x: str,
    time: tuple[str, str, float],
    style: Mapping[str, Any],
) -> tuple[list[float], list[float]]:
    """Draw one series of a sweep: the final accuracy of the points that completed a round
    (``ax``), their time (``ax2``: ``time`` is the column, its name and its unit), and a
    hollow marker on the x axis for each point that completed none. Returns the accuracies
    drawn and the x of the points without a round."""
    t_key, t_what, scale = time
    none = [_num(r[x]) for r in rows if _num(r.get("rounds_done")) == 0]
    some = [r for r in rows if _num(r.get("rounds_done")) != 0]
    xs = [_num(r[x]) for r in some]
    acc = [100 * _num(r.get("final_global_acc")) for r in some]
    if all(math.isnan(a) for a in acc):  # methods without a global test set (SSL)
        acc = [100 * _num(r.get("final_local_acc")) for r in some]
    ax.plot(xs, acc, ls="-", **style, clip_on=False, label=f"{name}: final accuracy")
    ts = [_num(r.get(t_key)) / scale for r in some]
    ax2.plot(xs, ts, ls="--", **style, clip_on=False, label=f"{name}: {t_what}")
    if none:
        ax.plot(none, [0.0] * len(none), "v", mfc="white", mec=style["color"], mew=1.8, ms=9,
                clip_on=False, transform=ax.get_xaxis_transform(), zorder=9,
                label=f"{name}: no round completed")  # fmt: skip
    return [a for a in acc if math.isfinite(a)], none


def plot_sweep(
    rows: Sequence[Row],
    path: str | Path,
    *,
    x: str = "mean_skr_bps",
    group: str = "series",
    x_label: str = "mean secret key rate per link (bit/s)",
    context: Mapping[str, Any] | None = None,
) -> Path:
    """The key-rate vs accuracy plot of a sweep.

    Two panels sharing the x axis, one colour per method or cipher policy (one legend,
    outside the data): the final accuracy (top, with the target accuracy as a dashed line)
    and the time to the target accuracy, or when no point reached it the end of the last
    round (bottom). A point that completed no round is a hollow marker on the x axis (its
    accuracy is not 0 %, it was never trained). The title names the scenario, the horizon
    and the target. When every point completed the same rounds (no horizon, say), the plot
    says so and a warning is logged: the sweep cannot show a difference in accuracy.

    Parameters
    ----------
    rows : sequence of mapping
        ``sweep.csv`` rows: ``x``, ``group``, ``final_global_acc`` (or
        ``final_local_acc``), ``rounds_done``, ``time_to_target_s``, ``sim_time_end_s``,
        ``transfers_failed``, ``status`` (rows not ``complete`` are left out).
    context : mapping, optional
        ``scenario``, ``horizon_s``, ``target_accuracy`` (see :func:`sweep_context`);
        default: read from the folder ``path`` is in.
    """
    from matplotlib.lines import Line2D

    ctx = dict(sweep_context(Path(path).parent) if context is None else context)
    rows = [r for r in rows if r.get("status") in (None, "", "complete")]
    fig = Figure(figsize=(8, 6), layout="constrained")
    ax, ax2 = fig.subplots(2, 1, sharex=True, height_ratios=[3, 2])
    groups: dict[str, list[Row]] = defaultdict(list)
    for r in rows:
        groups[str(r.get(group, "") or "all")].append(r)
    # Time to the target accuracy if any point reached it, else when the last round ended.
    reached = any(math.isfinite(_num(r.get("time_to_target_s"))) for r in rows)
    t_key, t_what = (
        ("time_to_target_s", "time to target")
        if reached
        else ("sim_time_end_s", "end of last round")
    )
    scale, t_unit = _time_axis([_num(r.get(t_key)) for r in rows])
    t_unit = t_unit[t_unit.index("(") :]
    handles: list[Any] = []
    accs: list[float] = []
    no_round: list[float] = []
    for i, (name, rs) in enumerate(sorted(groups.items())):
        rs = sorted(rs, key=lambda r: _num(r[x]))
        style = _series_style(i)
        acc, none = _sweep_series(ax, ax2, name, rs, x, (t_key, t_what, scale), style)
        accs += acc
        no_round += none
        handles.append(Line2D([], [], **style, label=name))
    target = ctx.get("target_accuracy")
    if isinstance(target, int | float) and rows:
        ax.axhline(100 * target, color="0.35", ls=":", lw=1.4, label="target accuracy")
        handles.append(Line2D([], [], color="0.35", ls=":", lw=1.4,
                              label=f"target accuracy ({100 * target:g} %)"))  # fmt: skip
        accs.append(100 * target)
    for xv in sorted(set(no_round)):
        ax.annotate("no round", (xv, 0.0), xycoords=ax.get_xaxis_transform(), xytext=(0, 10),
                    textcoords="offset points", ha="center", fontsize=7, color="0.3")  # fmt: skip
    if no_round:
        handles.append(Line2D([], [], ls="", marker="v", mfc="white", mec="0.3", mew=1.8, ms=9,
                              label="no round completed (never trained)"))  # fmt: skip
    positive = [_num(r[x]) for r in rows if _num(r[x]) > 0]
    if positive and max(positive) / min(positive) > 20:
        ax.set_xscale("log")
        ax.set_xlim(min(positive) / 1.5, max(positive) * 1.5)  # markers clear of the frame
    else:
        ax.margins(x=0.06)
    ax.set_ylim(0, min(100.0, max(accs, default=90.0) + 8))
    times = [_num(r.get(t_key)) / scale for r in rows if _num(r.get("rounds_done")) != 0]
    top = max((t for t in times if math.isfinite(t)), default=0.0)
    ax2.set_ylim(0, 1.15 * top if top > 0 else 1.0)  # every time inside the axes
    _plain_ticks(ax, "y")
    _plain_ticks(ax2, "y")
    ax2.set_xlabel(x_label)
    metric = "final global accuracy (%)"
    if rows and all(math.isnan(_num(r.get("final_global_acc"))) for r in rows):
        metric = "final local accuracy (%)"
    ax.set_ylabel(metric)
    ax2.set_ylabel(f"{t_what} {t_unit}", fontsize=9)
    for a in (ax, ax2):
        a.grid(alpha=0.3)
    if handles:
        fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 4),
                   fontsize=8)  # fmt: skip
    flat = _flat_sweep(rows)
    if flat:
        _log.warning("sweep %s: %s", ctx.get("name") or Path(path).parent.name, flat)
        ax.text(0.5, 0.5, "\n".join(textwrap.wrap(flat, 60)), transform=ax.transAxes,
                ha="center", va="center", fontsize=9, color="0.15",
                bbox={"boxstyle": "round", "fc": "#fff3c4", "ec": "0.6"})  # fmt: skip
    fig.suptitle(_sweep_title(ctx, "key rate vs accuracy"), fontsize=11)
    out = Path(path)
    fig.savefig(out, dpi=110)
    return out


BOTTLENECK_COLOURS = {
    "compute": "#4c72b0",
    "key": "#c44e52",
    "bandwidth": "#dd8452",
    "propagation": "#55a868",
    "blocked": "#8c8c8c",
}
"""The colour of each part of a round's time in ``bottlenecks.png`` (the same in every run)."""
_BOTTLENECK_LABELS = {
    "compute": "compute (local update, fusion)",
    "key": "waiting for key",
    "bandwidth": "bandwidth (queueing, serialising)",
    "propagation": "propagation",
    "blocked": "blocked by a fault",
}
BOTTLENECK_LINKS = 15
"""``bottlenecks.png`` shows at most this many links: those waited on most, then the busiest."""


def _seconds_unit(top: float) -> tuple[float, str]:
    if top >= 2 * 3600:
        return 3600.0, "h"
    if top >= 120:
        return 60.0, "min"
    return 1.0, "s"


def _link_bars(
    ax: Any, vals: Sequence[float], colour: str, xlabel: str, title: str, fmt: str, empty: str
) -> None:
    """One horizontal bar per link (in the axes' y order), each labelled with ``fmt``."""
    ys = list(range(len(vals)))
    ax.barh(ys, vals, color=colour, height=0.7)
    top = max(vals, default=0.0)
    ax.set_xlim(0, top * 1.35 if top > 0 else 1.0)
    for y, v in zip(ys, vals, strict=True):
        if v > 0:
            ax.text(v + 0.02 * top, y, fmt.format(v), va="center", fontsize=7)
    if top <= 0:
        ax.text(0.5, 0.5, empty, ha="center", va="center", transform=ax.transAxes, color="0.4")
    ax.set_xlabel(xlabel, fontsize=9)
    ax.set_title(title, fontsize=9)
    ax.grid(axis="x", alpha=0.3)
    ax.tick_params(labelsize=8)


def plot_bottlenecks(
    summary: Mapping[str, Any], path: str | Path, *, max_links: int = BOTTLENECK_LINKS
) -> Path:
    """Where a run's time went: each round's critical path by cause, and each link's key
    wait and channel utilisation.

    Left, one stacked bar per completed round: the seconds its critical path spent
    computing, waiting for key, on bandwidth (queueing and serialising), propagating and
    blocked by a fault (they add up to the round's duration); the longest round's ending
    step is named. Right, per link (the ``max_links`` waited on most, then the busiest),
    the seconds transfers waited for its key and the fraction of the run its busier
    direction spent transmitting.

    Parameters
    ----------
    summary : mapping
        A ``summary.json``: ``round_breakdown`` and ``links`` (see
        :func:`qfl.cosim.run.summarize_run`), optionally ``scenario`` and ``time_share``.
    path : path
        Output PNG.
    max_links : int
        Most links shown (a note says how many are left out).
    """
    from matplotlib.patches import Patch
    from matplotlib.ticker import MaxNLocator

    parts = tuple(BOTTLENECK_COLOURS)
    rounds = list(summary.get("round_breakdown") or [])
    links = list(summary.get("links") or [])
    ranked = sorted(
        links,
        key=lambda lk: (-_num(lk.get("key_wait_s")), -_num(lk.get("utilisation")), lk["link"]),
    )
    shown = ranked[:max_links]
    fig = Figure(figsize=(13, max(4.8, 0.3 * len(shown) + 2.4)), layout="constrained")
    grid = fig.add_gridspec(1, 3, width_ratios=(2.3, 1, 1))
    ax = fig.add_subplot(grid[0])
    durations = [_num(r.get("duration_s")) for r in rounds]
    scale, unit = _seconds_unit(max((d for d in durations if math.isfinite(d)), default=0.0))
    xs = [int(r["round"]) for r in rounds]
    bottom = [0.0] * len(rounds)
    edge = "none" if len(rounds) > 60 else "white"  # thin bars: no white gaps between parts
    for c in parts:
        ys = [max(0.0, _num(r.get(c))) / scale for r in rounds]
        ax.bar(
            xs, ys, bottom=bottom, width=0.8, color=BOTTLENECK_COLOURS[c], edgecolor=edge, lw=0.4
        )
        bottom = [b + y for b, y in zip(bottom, ys, strict=True)]
    ax.set_xlabel("round")
    ax.set_ylabel(f"round time on its critical path ({unit})")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(axis="y", alpha=0.3)
    if rounds:
        i = max(range(len(rounds)), key=lambda k: durations[k])
        ending = textwrap.shorten(str(rounds[i].get("critical", "")), 90, placeholder="...")
        ax.set_title(
            f"Round time by cause (critical path of each round)\nlongest: round {xs[i]}, "
            f"{durations[i] / scale:.3g} {unit}, ended by {ending}",
            fontsize=9,
        )
        ax.set_xlim(min(xs) - 0.6, max(xs) + 0.6)
        ax.set_ylim(0, 1.06 * max(bottom) if max(bottom) > 0 else 1.0)
    else:
        ax.set_title("Round time by cause (critical path of each round)", fontsize=9)
        ax.text(0.5, 0.5, "no round completed", ha="center", va="center",
                transform=ax.transAxes, color="0.4")  # fmt: skip
    handles = [Patch(color=BOTTLENECK_COLOURS[c], label=_BOTTLENECK_LABELS[c]) for c in parts]
    fig.legend(handles=handles, loc="outside lower center", ncols=len(parts), fontsize=8)
    ax_w = fig.add_subplot(grid[1])
    ax_u = fig.add_subplot(grid[2], sharey=ax_w)
    names = [str(lk["link"]) for lk in shown]
    ys_l = list(range(len(shown)))
    waits = [max(0.0, _num(lk.get("key_wait_s"))) for lk in shown]
    utils = [100 * max(0.0, _num(lk.get("utilisation"))) for lk in shown]
    w_scale, w_unit = _seconds_unit(max(waits, default=0.0))
    key_title = "Key waited for, per link\n(all transfers"
    key_title += f"; top {len(shown)} of {len(links)} links)" if len(shown) < len(links) else ")"
    _link_bars(
        ax_w,
        [w / w_scale for w in waits],
        BOTTLENECK_COLOURS["key"],
        f"key wait ({w_unit})",
        key_title,
        f"{{:.3g}} {w_unit}",
        "no key waited for",
    )
    _link_bars(
        ax_u,
        utils,
        BOTTLENECK_COLOURS["bandwidth"],
        "busy transmitting (% of simulated time)",
        "Channel utilisation\n(busier direction)",
        "{:.2g} %",
        "no traffic",
    )
    ax_w.set_yticks(ys_l, names)
    if shown:
        ax_w.set_ylim(len(shown) - 0.5, -0.5)  # the link waited on most at the top
    ax_u.tick_params(labelleft=False)
    share = summary.get("time_share") or {}
    head = f"{summary['scenario']}: " if summary.get("scenario") else ""
    parts_text = ", ".join(
        f"{c} {100 * _num(share.get(c)):.0f} %" for c in parts if _num(share.get(c)) >= 0.005
    )
    fig.suptitle(
        f"{head}where the time goes" + (f": {parts_text}" if parts_text else ""),
        fontsize=11,
    )
    out = Path(path)
    fig.savefig(out, dpi=110)
    return out


def redraw(folder: str | Path) -> list[Path]:
    """Redraw every plot of a run folder or sweep folder from its saved files.

    Raises
    ------
    QflError
        If the folder holds neither a run (``metrics.csv``) nor a sweep (``sweep.csv``).
    """
    d = Path(folder)
    made: list[Path] = []
    if (d / "sweep.csv").is_file():
        rows = read_csv(d / "sweep.csv")
        meta = _read_json(d / "sweep.json")
        made.append(
            plot_sweep(
                rows,
                d / "keyrate_vs_accuracy.png",
                x=meta.get("x", "mean_skr_bps"),
                x_label=meta.get("x_label", "mean secret key rate per link (bit/s)"),
                context=sweep_context(d),
            )
        )
        return made
    if not (d / "metrics.csv").is_file():
        raise QflError(f"{d}: not a run folder (no metrics.csv) nor a sweep folder (no sweep.csv)")
    summary = _read_json(d / "summary.json")
    target = _num(summary.get("target_accuracy"))
    made.append(
        plot_accuracy(
            read_csv(d / "metrics.csv"),
            d / "accuracy.png",
            target=target if math.isfinite(target) else None,
        )
    )
    topo = _read_json(d / "topology.json")
    if (d / "keypools.csv").is_file():
        rates = {f"{lk['a']}-{lk['b']}": _num(lk.get("skr_bps")) for lk in topo.get("links", [])}
        made.append(plot_keypools(read_csv(d / "keypools.csv"), d / "keypools.png", rates=rates))
    if topo:
        made.append(plot_topology(topo["nodes"], topo["links"], d / "topology.png"))
    if "round_breakdown" in summary and "links" in summary:
        made.append(plot_bottlenecks(summary, d / "bottlenecks.png"))
    return made


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    with open(path, encoding="utf-8") as fh:
        data = json.load(fh)
    return data if isinstance(data, dict) else {}
