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
    plot_accuracy,
    plot_keypools,
    plot_sweep,
    plot_topology,
    read_csv,
    redraw,
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


@pytest.mark.parametrize("hours", [False, True])
def test_plot_accuracy(tmp_path: Path, hours: bool, is_png: Any, drawn: list[Figure]) -> None:
    rows = metrics_rows(hours)
    path = write_csv(tmp_path / "metrics.csv", rows)
    out = plot_accuracy(read_csv(path), tmp_path / "acc.png", title="t")
    assert out == tmp_path / "acc.png"
    assert is_png(out) == (770, 462)  # 7 x 4.2 in at 110 dpi
    (ax,) = drawn[0].axes
    assert ax.get_title() == "t"
    assert ax.get_xlabel() == ("simulated time (h)" if hours else "simulated time (s)")
    times = np.array([1, 2, 3]) * (5000.0 / 3600 if hours else 3.0)
    lines = lines_by_label(ax)
    mean = lines.pop("mean global (test set)")  # no "mean local": the mean row has none
    np.testing.assert_allclose(mean.get_xdata(), times)
    np.testing.assert_allclose(mean.get_ydata(), [15.0, 30.0, 45.0])  # percent
    assert to_rgba(mean.get_color()) == to_rgba("C0")
    # the clients, faint: global accuracy of a, b, c, then their local accuracy (+5 points)
    assert all(to_rgba(ln.get_color()) == to_rgba("0.75") for ln in lines.values())
    clients = [ln.get_ydata() for ln in lines.values()]
    glob = [[10.0, 20.0, 30.0], [20.0, 40.0, 60.0], [15.0, 30.0, 45.0]]
    np.testing.assert_allclose(clients, [*glob, *(np.array(glob) + 5)])
    for ln in lines.values():
        np.testing.assert_allclose(ln.get_xdata(), times)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["mean global (test set)"]


def test_plot_accuracy_of_no_rows(tmp_path: Path, is_png: Any, drawn: list[Figure]) -> None:
    is_png(plot_accuracy([], tmp_path / "acc.png"))
    (ax,) = drawn[0].axes
    assert not ax.get_lines() and ax.get_legend() is None


def test_plot_keypools(tmp_path: Path, is_png: Any, drawn: list[Figure], png_pixels: Any) -> None:
    rows = [
        {"sim_time_s": t, "link": link, "event": "take", "bits": 10, "level_bits": lvl}
        for link in ("a-r", "b-r")
        for t, lvl in ((0.0, 0.0), (1.0, 5e3), (2.0, 0.0), (300.0, 1e6))
    ]
    is_png(plot_keypools(rows, tmp_path / "kp.png"))
    is_png(plot_keypools([], tmp_path / "empty.png"))
    (ax,) = drawn[0].axes
    lines = lines_by_label(ax)
    assert list(lines) == ["a-r", "b-r"]
    for ln in lines.values():
        assert ln.get_drawstyle() == "steps-post"
        np.testing.assert_allclose(ln.get_xdata(), [0.0, 1 / 60, 2 / 60, 5.0])  # minutes
        np.testing.assert_allclose(ln.get_ydata(), [0.0, 5e3, 0.0, 1e6])
    assert ax.get_xlabel() == "simulated time (min)" and ax.get_yscale() == "symlog"
    assert coloured(png_pixels(tmp_path / "kp.png")) > 0.002  # the two coloured lines
    (empty,) = drawn[1].axes
    assert not empty.get_lines() and empty.get_legend() is None
    assert coloured(png_pixels(tmp_path / "empty.png")) == 0.0


def test_plot_keypools_keeps_the_busiest_links(tmp_path: Path, drawn: list[Figure]) -> None:
    rows = [
        {"sim_time_s": float(t), "link": link, "level_bits": 1.0}
        for link, n in (("quiet", 1), ("busy", 3), ("busiest", 5))
        for t in range(n)
    ]
    plot_keypools(rows, tmp_path / "kp.png", max_links=2)
    assert list(lines_by_label(drawn[0].axes[0])) == ["busiest", "busy"]


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


def test_plot_sweep(tmp_path: Path, is_png: Any, drawn: list[Figure]) -> None:
    rows = [
        {"series": s, "mean_skr_bps": x, "final_global_acc": acc, "time_to_target_s": ttt}
        for s in ("otp", "aes-256-gcm")
        for x, acc, ttt in ((1e2, 0.3, ""), (1e4, 0.6, 600.0), (1e6, 0.8, 60.0))
    ]
    is_png(plot_sweep(rows, tmp_path / "sweep.png"))
    is_png(plot_sweep(rows[:1], tmp_path / "one.png", x_label="key (bits)"))
    ax, ax2 = drawn[0].axes
    assert ax.get_xscale() == "log"  # the key rates span four decades
    acc, ttt = lines_by_label(ax), lines_by_label(ax2)
    assert list(acc) == ["aes-256-gcm: final accuracy", "otp: final accuracy"]
    assert list(ttt) == ["aes-256-gcm: time to target", "otp: time to target"]
    for i, name in enumerate(("aes-256-gcm", "otp")):
        a, t = acc[f"{name}: final accuracy"], ttt[f"{name}: time to target"]
        np.testing.assert_allclose(a.get_xdata(), [1e2, 1e4, 1e6])
        np.testing.assert_allclose(a.get_ydata(), [30.0, 60.0, 80.0])
        np.testing.assert_allclose(t.get_ydata(), [np.nan, 10.0, 1.0])  # minutes
        assert to_rgba(a.get_color()) == to_rgba(t.get_color()) == to_rgba(f"C{i}")
    assert ax2.get_ylabel() == "time to target accuracy (min)"
    one, one2 = drawn[1].axes
    assert one.get_xlabel() == "key (bits)" and one.get_xscale() == "linear"
    assert list(lines_by_label(one2)) == ["otp: end of last round"]  # no target reached
    assert one2.get_ylabel() == "simulated time of the last round (min)"


def test_redraw_a_run_folder(tmp_path: Path, is_png: Any, drawn: list[Figure]) -> None:
    write_csv(tmp_path / "metrics.csv", metrics_rows())
    write_csv(
        tmp_path / "keypools.csv",
        [{"sim_time_s": 0.0, "link": "a-r", "event": "fill", "bits": 1, "level_bits": 1.0}],
    )
    (tmp_path / "topology.json").write_text(json.dumps({"nodes": NODES, "links": LINKS}))
    made = redraw(tmp_path)
    assert [p.name for p in made] == ["accuracy.png", "keypools.png", "topology.png"]
    for p in made:
        is_png(p)
    mean = lines_by_label(drawn[0].axes[0])["mean global (test set)"]
    np.testing.assert_allclose(mean.get_ydata(), [15.0, 30.0, 45.0])  # from metrics.csv
    assert list(lines_by_label(drawn[1].axes[0])) == ["a-r"]  # from keypools.csv
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
    (made,) = redraw(tmp_path)
    assert made.name == "keyrate_vs_accuracy.png"
    is_png(made)
    ax = drawn[0].axes[0]
    assert ax.get_xlabel() == "key generated (bits)"  # from sweep.json
    (line,) = ax.get_lines()
    np.testing.assert_allclose(line.get_xdata(), [10.0, 100.0, 1000.0])
    np.testing.assert_allclose(line.get_ydata(), [10.0, 20.0, 30.0])


def test_redraw_needs_results(tmp_path: Path) -> None:
    with pytest.raises(QflError, match=r"not a run folder \(no metrics\.csv\) nor a sweep folder"):
        redraw(tmp_path)
