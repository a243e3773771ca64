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
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

from matplotlib.figure import Figure

from qkd.errors import QflError

__all__ = [
    "DETAIL_LIMIT",
    "LAYOUT_LIMIT",
    "plot_accuracy",
    "plot_keypools",
    "plot_sweep",
    "plot_topology",
    "read_csv",
    "redraw",
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


def plot_accuracy(rows: Iterable[Row], path: str | Path, *, title: str = "") -> Path:
    """Accuracy over simulated time: the mean over clients, with each client faint.

    Parameters
    ----------
    rows : iterable of mapping
        ``metrics.csv`` rows with ``sim_time_s``, ``node``, ``global_acc``, ``local_acc``.
    path : path
        Output PNG.
    """
    rows = list(rows)
    fig = Figure(figsize=(7, 4.2), layout="constrained")
    ax = fig.add_subplot()
    scale, label = _time_axis([_num(r["sim_time_s"]) for r in rows])
    by_node: dict[str, list[Row]] = defaultdict(list)
    for r in rows:
        by_node[str(r["node"])].append(r)
    for key, style in (("global_acc", "-"), ("local_acc", "--")):
        for node, rs in sorted(by_node.items()):
            xs = [_num(r["sim_time_s"]) / scale for r in rs]
            ys = [100 * _num(r[key]) for r in rs]
            if all(math.isnan(y) for y in ys):
                continue
            if node == "mean":
                name = "global (test set)" if key == "global_acc" else "local (held-out)"
                ax.plot(
                    xs,
                    ys,
                    style,
                    color="C0" if key == "global_acc" else "C1",
                    lw=2.2,
                    marker="o",
                    ms=3,
                    label=f"mean {name}",
                )
            else:
                ax.plot(xs, ys, style, color="0.75", lw=0.8)
    ax.set_xlabel(label)
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title or "Accuracy over simulated time (grey: individual clients)")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="lower right")
    out = Path(path)
    fig.savefig(out, dpi=110)
    return out


def plot_keypools(rows: Iterable[Row], path: str | Path, *, max_links: int = 12) -> Path:
    """Key-pool levels over simulated time, one line per link (the busiest first).

    Parameters
    ----------
    rows : iterable of mapping
        ``keypools.csv`` rows with ``sim_time_s``, ``link`` and ``level_bits``.
    """
    rows = list(rows)
    by_link: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for r in rows:
        by_link[str(r["link"])].append((_num(r["sim_time_s"]), _num(r["level_bits"])))
    ranked = sorted(by_link, key=lambda k: -len(by_link[k]))[:max_links]
    fig = Figure(figsize=(7, 4.2), layout="constrained")
    ax = fig.add_subplot()
    scale, label = _time_axis([t for pts in by_link.values() for t, _ in pts])
    for link in sorted(ranked):
        pts = sorted(by_link[link])
        ax.step([t / scale for t, _ in pts], [v for _, v in pts], where="post", label=link)
    ax.set_xlabel(label)
    ax.set_ylabel("key in pool (bits)")
    ax.set_yscale("symlog", linthresh=1e3)
    ax.set_title("Key-pool levels")
    ax.grid(alpha=0.3)
    if ranked:
        ax.legend(fontsize=7, ncol=2, loc="best")
    out = Path(path)
    fig.savefig(out, dpi=110)
    return out


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
    for n in nodes:
        g.add_node(str(n["name"]), role=n.get("role", "client"))
    for lk in links:
        g.add_edge(str(lk["a"]), str(lk["b"]), skr=_num(lk.get("skr_bps")))
    simple = detail_limit is not None and g.number_of_nodes() > detail_limit
    geo = all(
        math.isfinite(_num(n.get("latitude"))) and math.isfinite(_num(n.get("longitude")))
        for n in nodes
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
        pos = {str(n["name"]): (_num(n["longitude"]), _num(n["latitude"])) for n in nodes}
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
        for a, b, d in g.edges(data=True):
            (x0, y0), (x1, y1) = pos[a], pos[b]
            skr = d["skr"]
            col = cmap(norm(max(skr, lo))) if math.isfinite(skr) and skr > 0 else "red"
            ax.plot([x0, x1], [y0, y1], color=col, lw=3, zorder=1)
        for name, data in g.nodes(data=True):
            m, c = marker.get(str(data.get("role")), ("o", "C0"))
            x, y = pos[name]
            ax.scatter([x], [y], marker=m, s=120, color=c, zorder=2, edgecolors="white")
            ax.annotate(name, (x, y), textcoords="offset points", xytext=(6, 6), fontsize=8)
    sm = cm.ScalarMappable(norm=norm, cmap=cmap)
    fig.colorbar(sm, ax=ax, label="secret key rate (bit/s)")
    title = "Topology (o client, s server, D trusted relay; red: no key)"
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


def plot_sweep(
    rows: Sequence[Row],
    path: str | Path,
    *,
    x: str = "mean_skr_bps",
    group: str = "series",
    x_label: str = "mean secret key rate per link (bit/s)",
) -> Path:
    """The key-rate vs accuracy plot of a sweep.

    Final accuracy (left axis, solid) and time to target accuracy (right axis, dashed)
    against the key rate (or key budget), one line per method or cipher policy.

    Parameters
    ----------
    rows : sequence of mapping
        ``sweep.csv`` rows: ``x``, ``group``, ``final_global_acc``, ``time_to_target_s``.
    """
    fig = Figure(figsize=(7.5, 4.5), layout="constrained")
    ax = fig.add_subplot()
    ax2 = ax.twinx()
    groups: dict[str, list[Row]] = defaultdict(list)
    for r in rows:
        groups[str(r.get(group, "") or "all")].append(r)
    # Time to the target accuracy if any point reached it, else when the last round ended.
    reached = any(math.isfinite(_num(r.get("time_to_target_s"))) for r in rows)
    t_key, t_label = (
        ("time_to_target_s", "time to target")
        if reached
        else ("sim_time_end_s", "end of last round")
    )
    for i, (name, rs) in enumerate(sorted(groups.items())):
        rs = sorted(rs, key=lambda r: _num(r[x]))
        xs = [_num(r[x]) for r in rs]
        acc = [100 * _num(r.get("final_global_acc")) for r in rs]
        if all(math.isnan(a) for a in acc):  # methods without a global test set (SSL)
            acc = [100 * _num(r.get("final_local_acc")) for r in rs]
        ttt = [_num(r.get(t_key)) / 60 for r in rs]
        ax.plot(xs, acc, "-o", color=f"C{i}", label=f"{name}: final accuracy")
        ax2.plot(xs, ttt, "--s", color=f"C{i}", alpha=0.7, label=f"{name}: {t_label}")
        none = [xv for xv, r in zip(xs, rs, strict=True) if _num(r.get("rounds_done")) == 0]
        if none:
            ax.plot(none, [0.0] * len(none), "x", color=f"C{i}", ms=9,
                    label=f"{name}: no round completed")  # fmt: skip
    positive = [_num(r[x]) for r in rows if _num(r[x]) > 0]
    if positive and max(positive) / min(positive) > 20:
        ax.set_xscale("log")
    ax.set_xlabel(x_label)
    ax.set_ylabel("final global accuracy (%)")
    ax2.set_ylabel(
        "time to target accuracy (min)" if reached else "simulated time of the last round (min)"
    )
    ax.grid(alpha=0.3)
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    if h1 or h2:
        ax.legend(h1 + h2, l1 + l2, fontsize=8, loc="best")
    ax.set_title("Key rate vs accuracy")
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
            )
        )
        return made
    if not (d / "metrics.csv").is_file():
        raise QflError(f"{d}: not a run folder (no metrics.csv) nor a sweep folder (no sweep.csv)")
    made.append(plot_accuracy(read_csv(d / "metrics.csv"), d / "accuracy.png"))
    if (d / "keypools.csv").is_file():
        made.append(plot_keypools(read_csv(d / "keypools.csv"), d / "keypools.png"))
    topo = _read_json(d / "topology.json")
    if topo:
        made.append(plot_topology(topo["nodes"], topo["links"], d / "topology.png"))
    return made


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    with open(path, encoding="utf-8") as fh:
        data = json.load(fh)
    return data if isinstance(data, dict) else {}
