"""Plots drawn from the files of run and sweep folders (synthetic rows: no training).

Each plot is checked twice: the PNG is read back (a PNG of the expected size, not blank),
and the figure it was saved from (caught at ``Figure.savefig``) holds the data of the rows.
"""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from matplotlib import colormaps
from matplotlib.collections import LineCollection
from matplotlib.colors import LogNorm, to_rgba
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from PIL import Image

from qfl.cosim.plots import (
    LAYOUT_LIMIT,
    keypool_series,
    plot_accuracy,
    plot_keypools,
    plot_sweep,
    plot_topology,
    read_csv,
    redraw,
    sweep_context,
)
from qkd.errors import QflError


@pytest.fixture
def is_png(png_pixels: Any) -> Any:
    """``is_png(path)`` -> (width, height) of a PNG that is not blank."""

    def check(path: Path) -> tuple[int, int]:
        px = png_pixels(path)
        with Image.open(path) as im:
            assert im.format == "PNG"
        return px.shape[1], px.shape[0]

    return check


@pytest.fixture
def drawn(monkeypatch: pytest.MonkeyPatch) -> list[Figure]:
    """The figures the plot functions save, in order (their axes hold the plotted data)."""
    figures: list[Figure] = []
    real = Figure.savefig

    def savefig(self: Figure, *args: Any, **kwargs: Any) -> None:
        figures.append(self)
        real(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", savefig)
    return figures


viridis = colormaps["viridis"]


def lines_by_label(ax: Any) -> dict[str, Line2D]:
    return {ln.get_label(): ln for ln in ax.get_lines()}


def labelled_lines(ax: Any) -> dict[str, Line2D]:
    """The lines of ``ax`` that a legend would list (labels not starting with '_')."""
    return {k: ln for k, ln in lines_by_label(ax).items() if not k.startswith("_")}


def coloured(px: np.ndarray) -> float:
    """The fraction of pixels in colour (not white, grey or black)."""
    return float((np.ptp(px, axis=-1) > 60).mean())


def write_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


def metrics_rows(hours: bool = False) -> list[dict[str, Any]]:
    rows = []
    for r in range(1, 4):
        t = r * (5000.0 if hours else 3.0)
        accs = [0.1 * r, 0.2 * r, 0.15 * r]
        for node, acc in zip(("a", "b", "c"), accs, strict=True):
            rows.append({"sim_time_s": t, "round": r, "node": node, "global_acc": acc,
                         "local_acc": acc + 0.05, "exit_acc": ""})  # fmt: skip
        rows.append({"sim_time_s": t, "round": r, "node": "mean", "global_acc": sum(accs) / 3,
                     "local_acc": "", "exit_acc": ""})  # fmt: skip
    return rows


NODES = [
    {"name": "a", "role": "client", "latitude": 51.5, "longitude": -0.1},
    {"name": "b", "role": "server", "latitude": 51.7, "longitude": -1.2},
    {"name": "r", "role": "relay", "latitude": 52.2, "longitude": 0.1},
]
LINKS = [
    {"a": "a", "b": "r", "skr_bps": 1.2e4, "length_km": 60},
    {"a": "b", "b": "r", "skr_bps": 3.0e2, "length_km": 90},
    {"a": "a", "b": "b", "skr_bps": 0.0, "length_km": 70},
]


def is_mean(ln: Line2D) -> bool:
    return ln.get_linewidth() == 2.2


@pytest.mark.parametrize("hours", [False, True])
def test_plot_accuracy(tmp_path: Path, hours: bool, is_png: Any, drawn: list[Figure]) -> None:
    rows = metrics_rows(hours)
    path = write_csv(tmp_path / "metrics.csv", rows)
    out = plot_accuracy(read_csv(path), tmp_path / "acc.png", title="t", target=0.7)
    assert out == tmp_path / "acc.png"
    assert is_png(out) == (770, 506)  # 7 x 4.6 in at 110 dpi
    fig = drawn[0]
    (ax,) = fig.axes
    assert ax.get_title() == "t"
    assert ax.get_xlabel() == ("simulated time (h)" if hours else "simulated time (s)")
    times = np.array([1, 2, 3]) * (5000.0 / 3600 if hours else 3.0)
    lines = [ln for ln in ax.get_lines() if ln.get_linestyle() != ":"]
    (mean,) = [ln for ln in lines if is_mean(ln)]  # no mean local: the mean row has none
    np.testing.assert_allclose(mean.get_xdata(), times)
    np.testing.assert_allclose(mean.get_ydata(), [15.0, 30.0, 45.0])  # percent
    assert to_rgba(mean.get_color()) == to_rgba("C0") and mean.get_linestyle() == "-"
    # the clients, faint: global accuracy of a, b, c (solid), their local accuracy (dashed)
    clients = [ln for ln in lines if not is_mean(ln)]
    assert all(to_rgba(ln.get_color()) == to_rgba("0.75") for ln in clients)
    assert [ln.get_linestyle() for ln in clients] == ["-"] * 3 + ["--"] * 3
    glob = [[10.0, 20.0, 30.0], [20.0, 40.0, 60.0], [15.0, 30.0, 45.0]]
    np.testing.assert_allclose([ln.get_ydata() for ln in clients], [*glob, *(np.array(glob) + 5)])
    for ln in clients:
        np.testing.assert_allclose(ln.get_xdata(), times)
    # the target, dotted; the axes from 0
    (target,) = [ln for ln in ax.get_lines() if ln.get_linestyle() == ":"]
    assert list(target.get_ydata()) == [70.0, 70.0]
    assert ax.get_xlim()[0] == 0 and ax.get_ylim()[0] == 0
    # one legend, outside the data, explaining the line styles
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == [
        "global model, test set (mean over clients)",
        "each client (solid: global, dashed: local)",
        "target accuracy (70 %)",
    ]
    assert not legend.get_window_extent().overlaps(ax.get_window_extent())


def test_plot_accuracy_has_no_tick_offset(tmp_path: Path, drawn: list[Figure]) -> None:
    """Two evaluations 10 ms apart at 16.7 min (a quick run over slow key) once drew ticks
    "0.00078 ... 0.00094" with an offset "+1.6666e1"."""
    rows = [
        {"sim_time_s": t, "round": r, "node": "mean", "global_acc": a, "local_acc": a + 0.05}
        for r, (t, a) in enumerate([(1000.0068361429203, 0.1366), (1000.0164832567776, 0.1196)])
    ]
    plot_accuracy(rows, tmp_path / "acc.png", target=0.75)
    (ax,) = drawn[0].axes
    assert ax.get_xlabel() == "simulated time (min)"
    for axis in (ax.xaxis, ax.yaxis):
        assert axis.get_offset_text().get_text() == ""
        labels = [t.get_text() for t in axis.get_ticklabels() if t.get_text()]
        assert labels and not any("e" in x or "+" in x for x in labels)
    assert ax.get_xlim()[0] == 0 and ax.get_xlim()[1] == pytest.approx(1.03 * 1000.0165 / 60)
    xs = [float(t.get_text()) for t in ax.xaxis.get_ticklabels() if t.get_text()]
    assert xs[0] == 0 and max(xs) >= 15  # minutes from 0, not thousandths of a minute
    assert ax.get_ylim()[1] > 75  # the target inside the axes


def test_plot_accuracy_of_no_rows(tmp_path: Path, is_png: Any, drawn: list[Figure]) -> None:
    is_png(plot_accuracy([], tmp_path / "acc.png"))
    (ax,) = drawn[0].axes
    assert not ax.get_lines() and ax.get_legend() is None and not drawn[0].legends
    assert [t.get_text() for t in ax.texts] == ["no evaluation recorded"]


def test_plot_accuracy_legend_of_global_and_local(tmp_path: Path, drawn: list[Figure]) -> None:
    rows = [{**r, "local_acc": 0.3} if r["node"] == "mean" else r for r in metrics_rows()]
    plot_accuracy(rows, tmp_path / "acc.png")  # no target
    (legend,) = drawn[0].legends
    assert [t.get_text() for t in legend.get_texts()] == [
        "global model, test set (mean over clients)",
        "local, held-out data (mean over clients)",
        "each client (solid: global, dashed: local)",
    ]
    (ax,) = drawn[0].axes
    assert not [ln for ln in ax.get_lines() if ln.get_linestyle() == ":"]
    (local,) = [ln for ln in ax.get_lines() if is_mean(ln) and ln.get_linestyle() == "--"]
    assert to_rgba(local.get_color()) == to_rgba("C1")


def pool_row(t: float, link: str, event: str, bits: float, level: float) -> dict[str, Any]:
    return {"sim_time_s": t, "link": link, "event": event, "bits": bits, "level_bits": level}


def test_keypool_series_refills_at_the_rate_in_fluid_mode() -> None:
    """Between two takes the level rises at the link's rate, up to the pool's capacity."""
    rows = [
        pool_row(0.0, "a-b", "start", 100.0, 50.0),  # 100 bit/s from 50 bits
        pool_row(5.0, "a-b", "take", 300.0, 250.0),  # 550 before
        pool_row(8.0, "a-b", "take", 100.0, 450.0),  # 550 before: rose 250 -> 550 in 3 s
        pool_row(9.0, "a-b", "rate", 50.0, 550.0),  # halved
        pool_row(20.0, "a-b", "end", 50.0, 600.0),  # full (600) from 10 s on
    ]
    ts, levels = keypool_series(rows)["a-b"]
    assert ts == [0.0, 5.0, 5.0, 8.0, 8.0, 9.0, 10.0, 20.0]
    assert levels == [50.0, 550.0, 250.0, 550.0, 450.0, 550.0, 600.0, 600.0]
    # the segment between the two takes is a rise at 100 bit/s, not a flat step
    i = ts.index(5.0) + 1
    assert (levels[i + 1] - levels[i]) / (ts[i + 1] - ts[i]) == pytest.approx(100.0)


def test_keypool_series_steps_at_block_landings() -> None:
    """In block mode the level is flat between events and steps up when a block lands."""
    rows = [
        pool_row(0.0, "a-b", "start", 1e3, 0.0),
        pool_row(2.0, "a-b", "block", 500.0, 500.0),
        pool_row(3.0, "a-b", "take", 100.0, 400.0),
        pool_row(4.0, "a-b", "block", 500.0, 900.0),
        pool_row(6.0, "a-b", "end", 1e3, 900.0),
    ]
    ts, levels = keypool_series(rows)["a-b"]
    assert ts == [0.0, 2.0, 2.0, 3.0, 3.0, 4.0, 4.0, 6.0]
    assert levels == [0.0, 0.0, 500.0, 500.0, 400.0, 400.0, 900.0, 900.0]


def test_keypool_series_of_links_without_takes_and_of_old_folders() -> None:
    rows = [
        pool_row(0.0, "idle", "start", 10.0, 100.0),
        pool_row(0.0, "wiped", "start", 10.0, 0.0),
        pool_row(4.0, "wiped", "wipe", 40.0, 0.0),
        pool_row(10.0, "idle", "end", 10.0, 200.0),
        pool_row(10.0, "wiped", "end", 10.0, 60.0),
        pool_row(7.0, "old", "take", 10.0, 5.0),  # no start row: its rate from `rates`
        pool_row(9.0, "old", "take", 10.0, 5.0),
    ]
    series = keypool_series(rows, rates={"old": 5.0})
    assert list(series) == ["idle", "wiped", "old"]
    assert series["idle"] == ([0.0, 10.0], [100.0, 200.0])  # rises from its initial fill
    assert series["wiped"] == ([0.0, 4.0, 4.0, 10.0], [0.0, 40.0, 0.0, 60.0])
    assert series["old"] == ([7.0, 7.0, 9.0, 9.0], [15.0, 5.0, 15.0, 5.0])


def fluid_rows(levels: dict[str, float], end: float = 600.0) -> list[dict[str, Any]]:
    """A start row, takes every 100 s, an end row, for each link (rate: level / 50 s)."""
    rows = []
    for link, top in levels.items():
        rows.append(pool_row(0.0, link, "start", top / 50, top))
        if not link.startswith("idle"):
            rows += [pool_row(t, link, "take", top, 0.0) for t in range(100, int(end), 100)]
    rows += [pool_row(end, link, "end", top / 50, top) for link, top in levels.items()]
    return rows


def test_plot_keypools_few_links_share_one_axes(
    tmp_path: Path, is_png: Any, drawn: list[Figure], png_pixels: Any
) -> None:
    levels = {"a-r": 4e5, "b-r": 1e6, "idle-c": 2e6}  # idle-c: no take at all
    assert is_png(plot_keypools(fluid_rows(levels), tmp_path / "kp.png")) == (825, 462)
    fig = drawn[0]
    (ax,) = fig.axes
    lines = labelled_lines(ax)
    assert sorted(lines) == ["a-r", "b-r", "idle-c"]  # every link, also the one never used
    colours = {to_rgba(ln.get_color()) for ln in lines.values()}
    assert len(colours) == 3  # distinct
    a = lines["a-r"]
    xs, ys = np.asarray(a.get_xdata()), np.asarray(a.get_ydata())
    assert ax.get_xlabel() == "simulated time (min)" and ax.get_yscale() == "linear"
    # a refill slope from each take (level 0 at t = 100 s) to the capacity 50 s later
    i = int(np.flatnonzero((xs == 100 / 60) & (ys == 0.0))[0])
    assert (xs[i + 1], ys[i + 1]) == pytest.approx((150 / 60, 4e5))
    np.testing.assert_allclose(lines["idle-c"].get_ydata(), [2e6, 2e6])
    # the legend lies outside the data
    (legend,) = fig.legends
    assert not legend.get_window_extent().overlaps(ax.get_window_extent())
    assert [t.get_text() for t in legend.get_texts()] == ["a-r", "b-r", "idle-c"]
    assert "slopes" in ax.get_title() and "ticks: key taken" in ax.get_title()
    (rug,) = [ln for ln in ax.get_lines() if ln.get_label() == "_key taken"][:1]
    assert list(rug.get_xdata()) == pytest.approx([t / 60 for t in range(100, 600, 100)])
    assert coloured(png_pixels(tmp_path / "kp.png")) > 0.002


def test_plot_keypools_many_links_get_a_panel_each(
    tmp_path: Path, is_png: Any, drawn: list[Figure]
) -> None:
    levels = {f"l{i:02d}": 1e3 * 2**i for i in range(14)}  # 13 doublings: too spread for one
    rows = fluid_rows(levels)
    rows.insert(20, pool_row(250.0, "l00", "take", 1e9, 0.0))  # l00 used the most key
    is_png(plot_keypools(rows, tmp_path / "kp.png", max_links=12))
    fig = drawn[0]
    panels = [ax for ax in fig.axes if ax.get_lines()]
    names = [ax.get_title() for ax in panels]
    assert len(panels) == 12 and names[0] == "l00" and "l01" not in names  # the busiest 12
    assert "12 of 14 links that used the most key" in fig.get_suptitle()
    colours = {to_rgba(ax.get_lines()[0].get_color()) for ax in panels}
    assert len(colours) == 12
    assert all(ax.get_yscale() == "linear" and ax.get_ylim()[0] == 0 for ax in panels)
    assert not fig.legends and all(ax.get_legend() is None for ax in fig.axes)
    shared = panels[0].get_shared_x_axes()
    assert all(shared.joined(panels[0], ax) for ax in panels)


def tick_texts(ax: Any) -> list[str]:
    return [t.get_text() for t in ax.yaxis.get_ticklabels() if t.get_text()]


def test_plot_keypools_in_bits_never_below_one(tmp_path: Path, drawn: list[Figure]) -> None:
    """A link that never made key drew "200 mb ... 1 b" (millibits); the axes are in bits
    with SI prefixes, whole bits, and the keyless link is a flat 0 with a note."""
    levels = {f"l{i}": 1e3 * 4**i for i in range(5)} | {"dead": 0.0, "tiny": 3.0}
    plot_keypools(fluid_rows(levels), tmp_path / "kp.png")
    panels = {ax.get_title(): ax for ax in drawn[0].axes if ax.get_lines()}
    assert len(panels) == 7
    for name, ax in panels.items():
        texts = tick_texts(ax)
        assert texts and all(t.endswith("bit") for t in texts), (name, texts)
        assert not any(t.split()[-1] in ("mbit", "µbit", "mb", "b") for t in texts), texts
        assert ax.yaxis.get_offset_text().get_text() == ""
        ticks = [v for v in ax.get_yticks() if ax.get_ylim()[0] <= v <= ax.get_ylim()[1]]
        assert all(v == 0 or v >= 1 for v in ticks) and all(v == int(v) for v in ticks)
    dead = panels["dead"]
    assert tick_texts(dead) == ["0 bit"] and dead.get_ylim() == (0.0, 1.0)
    assert any("no key in this pool" in t.get_text() for t in dead.texts)
    assert "60 kbit" in tick_texts(panels["l3"])  # a pool of 64 kbit
    tiny = panels["tiny"]
    assert [v for v in tiny.get_yticks() if v <= tiny.get_ylim()[1]] == [0, 1, 2, 3]


def test_plot_keypools_one_axes_of_a_keyless_link(tmp_path: Path, drawn: list[Figure]) -> None:
    plot_keypools([pool_row(0.0, "a-b", "start", 0.0, 0.0), pool_row(60.0, "a-b", "end", 0, 0)],
                  tmp_path / "kp.png")  # fmt: skip
    (ax,) = drawn[0].axes
    assert tick_texts(ax) == ["0 bit"]
    assert any("no key in this pool" in t.get_text() for t in ax.texts)


def test_plot_keypools_of_no_rows(tmp_path: Path, drawn: list[Figure], png_pixels: Any) -> None:
    plot_keypools([], tmp_path / "empty.png")
    (empty,) = drawn[0].axes
    assert not empty.get_lines() and not drawn[0].legends
    assert coloured(png_pixels(tmp_path / "empty.png")) == 0.0


def edge_colours(ax: Any) -> dict[frozenset[tuple[float, float]], tuple[float, ...]]:
    """The links drawn: {end point, end point} -> colour."""
    return {
        frozenset(zip(map(float, ln.get_xdata()), map(float, ln.get_ydata()), strict=True)): (
            to_rgba(ln.get_color())
        )
        for ln in ax.get_lines()
    }


@pytest.mark.parametrize("geo", [True, False])
def test_plot_topology(tmp_path: Path, geo: bool, is_png: Any, drawn: list[Figure]) -> None:
    nodes = NODES if geo else [{"name": n["name"], "role": n["role"]} for n in NODES]
    assert is_png(plot_topology(nodes, LINKS, tmp_path / "topo.png")) == (770, 605)
    ax, _colourbar = drawn[0].axes
    # one marker per node, at its coordinates when every node has them
    pos = {t.get_text(): tuple(map(float, t.xy)) for t in ax.texts}
    assert sorted(pos) == ["a", "b", "r"]
    if geo:
        assert pos == {n["name"]: (n["longitude"], n["latitude"]) for n in NODES}
    offsets = sorted(tuple(map(float, c.get_offsets()[0])) for c in ax.collections)
    assert offsets == sorted(pos.values())
    # links coloured by key rate on a log scale from the slowest to the fastest; red: none
    norm = LogNorm(vmin=3.0e2, vmax=1.2e4)
    drawn_colours = edge_colours(ax)
    assert len(drawn_colours) == len(LINKS)
    for lk in LINKS:
        skr = lk["skr_bps"]
        want = to_rgba("red") if skr == 0 else viridis(norm(skr))
        np.testing.assert_allclose(drawn_colours[frozenset((pos[lk["a"]], pos[lk["b"]]))], want)


def test_plot_topology_of_two_nodes_and_equal_rates(
    tmp_path: Path, is_png: Any, drawn: list[Figure]
) -> None:
    nodes = [{"name": "x"}, {"name": "y"}]
    links = [{"a": "x", "b": "y", "skr_bps": 5.0}]
    is_png(plot_topology(nodes, links, tmp_path / "topo.png"))
    (line,) = drawn[0].axes[0].get_lines()
    np.testing.assert_allclose(to_rgba(line.get_color()), viridis(0.0))  # the bottom of 5..50


@pytest.mark.parametrize("geo", [True, False])
def test_plot_topology_simplified_above_the_limit(
    tmp_path: Path, geo: bool, is_png: Any, drawn: list[Figure], caplog: Any
) -> None:
    nodes = NODES if geo else [{"name": n["name"], "role": n["role"]} for n in NODES]
    with caplog.at_level(logging.INFO, logger="qfl.cosim.plots"):
        is_png(plot_topology(nodes, LINKS, tmp_path / "topo.png", detail_limit=2))
    assert "simplified map" in caplog.text
    ax, _colourbar = drawn[0].axes
    assert not ax.texts and not ax.get_lines()  # no names; links as one collection
    (links,) = [c for c in ax.collections if isinstance(c, LineCollection)]
    segments = links.get_segments()
    colours = links.get_colors()
    assert len(segments) == len(LINKS)
    norm = LogNorm(vmin=3.0e2, vmax=1.2e4)
    pos = {n["name"]: (n["longitude"], n["latitude"]) for n in NODES}
    for seg, colour in zip(segments, colours, strict=True):
        ends = frozenset(tuple(map(float, p)) for p in seg)
        if geo:
            (lk,) = [lk for lk in LINKS if ends == frozenset((pos[lk["a"]], pos[lk["b"]]))]
            skr = lk["skr_bps"]
            want = to_rgba("red") if skr == 0 else viridis(norm(skr))
            np.testing.assert_allclose(colour, want)
    points = [c for c in ax.collections if not isinstance(c, LineCollection)]
    assert sum(len(c.get_offsets()) for c in points) == len(NODES)  # one scatter per role


def test_plot_topology_without_coordinates_too_large_to_lay_out(
    tmp_path: Path, is_png: Any, drawn: list[Figure], caplog: Any
) -> None:
    n = LAYOUT_LIMIT + 1
    nodes = [{"name": f"n{i}", "role": "relay" if i % 2 else "client"} for i in range(n)]
    links = [{"a": f"n{i}", "b": f"n{i + 1}", "skr_bps": 1e3} for i in range(n - 1)]
    with caplog.at_level(logging.WARNING, logger="qfl.cosim.plots"):
        is_png(plot_topology(nodes, links, tmp_path / "topo.png"))
    assert "no map drawn" in caplog.text
    (ax,) = drawn[0].axes
    assert "no map drawn" in ax.texts[0].get_text() and not ax.collections


def sweep_rows() -> list[dict[str, Any]]:
    return [
        {"series": s, "mean_skr_bps": x, "final_global_acc": acc, "time_to_target_s": ttt,
         "rounds_done": n, "sim_time_end_s": 900.0, "status": "complete"}
        for s in ("otp", "aes-256-gcm")
        for x, acc, ttt, n in ((1e2, 0.1, "", 0), (1e4, 0.6, 600.0, 4), (1e6, 0.8, 60.0, 9))
    ]  # fmt: skip


CONTEXT = {"scenario": "metro", "horizon_s": 600.0, "target_accuracy": 0.75}


def test_plot_sweep(tmp_path: Path, is_png: Any, drawn: list[Figure], caplog: Any) -> None:
    rows = sweep_rows()
    rows.append({**rows[-1], "status": "failed", "final_global_acc": ""})  # left out
    with caplog.at_level(logging.WARNING, logger="qfl.cosim.plots"):
        is_png(plot_sweep(rows, tmp_path / "sweep.png", context=CONTEXT))
    assert not caplog.records  # the points completed different numbers of rounds
    fig = drawn[0]
    ax, ax2 = fig.axes
    assert fig.get_suptitle() == (
        "metro: key rate vs accuracy\nhorizon 10 min, target 75 % accuracy"
    )
    assert ax.get_xscale() == "log"  # the key rates span four decades
    acc, ttt = lines_by_label(ax), lines_by_label(ax2)
    for i, name in enumerate(("aes-256-gcm", "otp")):
        a, t = acc[f"{name}: final accuracy"], ttt[f"{name}: time to target"]
        # the point without a round is not on the line, and not drawn at 0 %
        np.testing.assert_allclose(a.get_xdata(), [1e4, 1e6])
        np.testing.assert_allclose(a.get_ydata(), [60.0, 80.0])
        np.testing.assert_allclose(t.get_ydata(), [10.0, 1.0])  # minutes
        assert to_rgba(a.get_color()) == to_rgba(t.get_color()) == to_rgba(f"C{i}")
        none = acc[f"{name}: no round completed"]
        assert list(none.get_xdata()) == [1e2] and none.get_marker() == "v"
        assert none.get_transform() == ax.get_xaxis_transform()  # on the x axis, with a note
        assert none.get_markerfacecolor() == "white"
    (note,) = ax.texts
    assert note.get_text() == "no round" and note.xy == (1e2, 0.0)
    target = acc["target accuracy"]
    assert list(target.get_ydata()) == [75.0, 75.0]
    assert ax2.get_ylabel() == "time to target (min)"
    # one legend, outside both panels: a colour per series, the target, the no-round marker
    (legend,) = fig.legends
    assert ax.get_legend() is None and ax2.get_legend() is None
    texts = [t.get_text() for t in legend.get_texts()]
    assert texts == ["aes-256-gcm", "otp", "target accuracy (75 %)",
                     "no round completed (never trained)"]  # fmt: skip
    box = legend.get_window_extent()
    assert not any(box.overlaps(a.get_window_extent()) for a in (ax, ax2))


def test_plot_sweep_keeps_every_marker_inside(tmp_path: Path, drawn: list[Figure]) -> None:
    """The slowest time to target was drawn on the top edge of its panel, half its marker
    cut off; the extreme key rates on the left and right edges."""
    plot_sweep(sweep_rows(), tmp_path / "sweep.png", context=CONTEXT)
    ax, ax2 = drawn[0].axes
    lo, hi = ax2.get_ylim()
    assert lo == 0 and hi > 10.0 * 1.1  # the slowest, 10 min, well inside
    x0, x1 = ax.get_xlim()
    assert x0 < 1e2 / 1.2 and x1 > 1e6 * 1.2  # log x: the end points clear of the frame
    for line in [*ax.get_lines(), *ax2.get_lines()]:
        if line.get_marker() not in (None, "None", ""):
            assert not line.get_clip_on(), line.get_label()
    for a in (ax, ax2):
        assert a.yaxis.get_offset_text().get_text() == ""


def test_plot_sweep_without_a_target_reached(tmp_path: Path, drawn: list[Figure]) -> None:
    rows = [{**r, "time_to_target_s": ""} for r in sweep_rows()[:3]]
    plot_sweep(rows, tmp_path / "one.png", x_label="key (bits)", context={})
    ax, ax2 = drawn[0].axes
    assert ax2.get_xlabel() == "key (bits)"
    assert list(lines_by_label(ax2)) == ["otp: end of last round"]
    assert ax2.get_ylabel() == "end of last round (min)"
    assert drawn[0].get_suptitle() == "Key rate vs accuracy"
    assert "target accuracy" not in lines_by_label(ax)


def test_plot_sweep_warns_when_no_point_can_change_accuracy(
    tmp_path: Path, drawn: list[Figure], caplog: Any
) -> None:
    rows = [{**r, "rounds_done": 2, "final_global_acc": 0.16} for r in sweep_rows()]
    ctx = {**CONTEXT, "horizon_s": None}
    with caplog.at_level(logging.WARNING, logger="qfl.cosim.plots"):
        plot_sweep(rows, tmp_path / "flat.png", context=ctx)
    (record,) = caplog.records
    assert record.levelname == "WARNING" and record.getMessage().startswith(
        f"sweep {tmp_path.name}: every point completed the same 2 rounds"
    )
    ax = drawn[0].axes[0]
    (note,) = ax.texts
    assert "the same 2 rounds" in note.get_text()
    assert "no horizon" in drawn[0].get_suptitle()


def test_sweep_context_from_a_sweep_folder(tmp_path: Path) -> None:
    (tmp_path / "sweep.json").write_text(json.dumps({"name": "s", "base": "metro"}))
    for i, horizon in enumerate((600.0, 600.0)):
        (tmp_path / "points" / f"p{i}").mkdir(parents=True)
        summary = {"scenario": "metro", "horizon_s": horizon, "target_accuracy": 0.8}
        (tmp_path / "points" / f"p{i}" / "summary.json").write_text(json.dumps(summary))
    (tmp_path / "points" / "failed").mkdir()
    (tmp_path / "points" / "failed" / "summary.json").write_text('{"status": "failed"}')
    assert sweep_context(tmp_path) == {
        "name": "s", "scenario": "metro", "horizon_s": 600.0, "target_accuracy": 0.8
    }  # fmt: skip
    (tmp_path / "points" / "p1" / "summary.json").write_text(
        json.dumps({"scenario": "metro", "horizon_s": 60.0, "target_accuracy": 0.8})
    )
    assert sweep_context(tmp_path)["horizon_s"] == "varies"
    assert sweep_context(tmp_path / "nothing") == {"name": None, "scenario": None}


def test_redraw_a_run_folder(tmp_path: Path, is_png: Any, drawn: list[Figure]) -> None:
    write_csv(tmp_path / "metrics.csv", metrics_rows())
    write_csv(
        tmp_path / "keypools.csv",
        [{"sim_time_s": 0.0, "link": "a-r", "event": "fill", "bits": 1, "level_bits": 1.0}],
    )
    (tmp_path / "topology.json").write_text(json.dumps({"nodes": NODES, "links": LINKS}))
    (tmp_path / "summary.json").write_text(json.dumps({"target_accuracy": 0.6}))
    made = redraw(tmp_path)
    assert [p.name for p in made] == ["accuracy.png", "keypools.png", "topology.png"]
    for p in made:
        is_png(p)
    (mean,) = [ln for ln in drawn[0].axes[0].get_lines() if is_mean(ln)]
    np.testing.assert_allclose(mean.get_ydata(), [15.0, 30.0, 45.0])  # from metrics.csv
    (target,) = [ln for ln in drawn[0].axes[0].get_lines() if ln.get_linestyle() == ":"]
    assert list(target.get_ydata()) == [60.0, 60.0]  # from summary.json
    assert list(labelled_lines(drawn[1].axes[0])) == ["a-r"]  # from keypools.csv
    assert len(drawn[2].axes[0].get_lines()) == len(LINKS)  # from topology.json


def test_redraw_a_sweep_folder(tmp_path: Path, is_png: Any, drawn: list[Figure]) -> None:
    rows = [
        {"point": i, "series": "def-fd", "key_budget_bits": 10.0**i, "final_global_acc": 0.1 * i}
        for i in range(1, 4)
    ]
    write_csv(tmp_path / "sweep.csv", rows)
    (tmp_path / "sweep.json").write_text(
        json.dumps({"x": "key_budget_bits", "x_label": "key generated (bits)"})
    )
    (tmp_path / "points" / "p1").mkdir(parents=True)
    (tmp_path / "points" / "p1" / "summary.json").write_text(
        json.dumps({"scenario": "metro", "horizon_s": 90.0, "target_accuracy": 0.5})
    )
    (made,) = redraw(tmp_path)
    assert made.name == "keyrate_vs_accuracy.png"
    is_png(made)
    ax, ax2 = drawn[0].axes
    assert ax2.get_xlabel() == "key generated (bits)"  # from sweep.json
    # from the points' summaries
    assert drawn[0].get_suptitle().endswith("horizon 90 s, target 50 % accuracy")
    assert lines_by_label(ax).pop("target accuracy").get_ydata()[0] == 50.0
    line = lines_by_label(ax)["def-fd: final accuracy"]
    np.testing.assert_allclose(line.get_xdata(), [10.0, 100.0, 1000.0])
    np.testing.assert_allclose(line.get_ydata(), [10.0, 20.0, 30.0])


def test_redraw_needs_results(tmp_path: Path) -> None:
    with pytest.raises(QflError, match=r"not a run folder \(no metrics\.csv\) nor a sweep folder"):
        redraw(tmp_path)


def threshold_result(rows: list[dict[str, Any]]) -> Any:
    from types import SimpleNamespace

    meta = {"vary": "qkd.rate_scale", "target": 0.5, "within_s": 600.0,
            "bracket": {"fails_at": 0.01, "holds_at": 0.1}}  # fmt: skip
    return SimpleNamespace(meta=meta, rows=rows, answer="least qkd.rate_scale: 0.1")


def test_plot_threshold_marks_points_without_a_round(tmp_path: Path, drawn: list[Figure]) -> None:
    """A value at which no round completed has no accuracy: a hollow marker on the x axis,
    "no round completed" in the legend, not a point at 0 %."""
    from qfl.cosim.studyplots import plot_threshold

    rows = [
        {"rate_scale": 0.001, "holds": False, "final_global_acc": None, "rounds_done": 0},
        {"rate_scale": 0.01, "holds": False, "final_global_acc": 0.3, "rounds_done": 2},
        {"rate_scale": 0.1, "holds": True, "final_global_acc": 0.6, "rounds_done": 5},
        {"rate_scale": 1.0, "holds": True, "final_global_acc": 0.7, "rounds_done": 9},
    ]
    plot_threshold(threshold_result(rows), tmp_path / "threshold.png")
    assert (tmp_path / "threshold.png").is_file()
    (ax,) = drawn[0].axes
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "no round completed (misses target)" in texts
    (path,) = [ln for ln in ax.get_lines() if ln.get_color() == "#999999"]
    assert list(path.get_xdata()) == [0.01, 0.1, 1.0]  # the accuracy line skips it
    assert list(path.get_ydata()) == pytest.approx([30.0, 60.0, 70.0])
    (none,) = [ln for ln in ax.get_lines() if ln.get_marker() == "v" and len(ln.get_xdata())]
    assert list(none.get_xdata()) == [0.001] and none.get_transform() == ax.get_xaxis_transform()
    assert not none.get_clip_on() and none.get_markerfacecolor() == "white"
    dots = [tuple(o) for c in ax.collections for o in c.get_offsets()]
    assert all(x != 0.001 for x, _ in dots)  # no dot drawn at 0 % for it
    assert ax.get_xlim()[0] < 0.001 and ax.get_xlim()[1] > 1.0
    assert "deadline 10 min" in ax.get_ylabel()


def test_plot_threshold_without_empty_points(tmp_path: Path, drawn: list[Figure]) -> None:
    from qfl.cosim.studyplots import plot_threshold

    rows = [{"rate_scale": 0.1, "holds": True, "final_global_acc": 0.6, "rounds_done": 5}]
    plot_threshold(threshold_result(rows), tmp_path / "threshold.png")
    (ax,) = drawn[0].axes
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert not any("no round" in t for t in texts)
