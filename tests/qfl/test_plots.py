"""Plots drawn from the files of run and sweep folders (synthetic rows: no training)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from qfl.plots import plot_accuracy, plot_keypools, plot_sweep, plot_topology, read_csv, redraw
from qkd.errors import QflError


def is_png(path: Path, min_bytes: int = 3000) -> tuple[int, int]:
    assert path.is_file() and path.stat().st_size >= min_bytes, path
    with Image.open(path) as im:
        assert im.format == "PNG"
        return im.size


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
def test_plot_accuracy(tmp_path: Path, hours: bool) -> None:
    rows = metrics_rows(hours)
    path = write_csv(tmp_path / "metrics.csv", rows)
    out = plot_accuracy(read_csv(path), tmp_path / "acc.png", title="t")
    assert out == tmp_path / "acc.png"
    assert is_png(out) == (770, 462)  # 7 x 4.2 in at 110 dpi


def test_plot_accuracy_of_no_rows(tmp_path: Path) -> None:
    is_png(plot_accuracy([], tmp_path / "acc.png"), min_bytes=1000)


def test_plot_keypools(tmp_path: Path) -> None:
    rows = [
        {"sim_time_s": t, "link": link, "event": "take", "bits": 10, "level_bits": lvl}
        for link in ("a-r", "b-r")
        for t, lvl in ((0.0, 0.0), (1.0, 5e3), (2.0, 0.0), (300.0, 1e6))
    ]
    is_png(plot_keypools(rows, tmp_path / "kp.png"))
    is_png(plot_keypools([], tmp_path / "empty.png"), min_bytes=1000)


@pytest.mark.parametrize("geo", [True, False])
def test_plot_topology(tmp_path: Path, geo: bool) -> None:
    nodes = NODES if geo else [{"name": n["name"], "role": n["role"]} for n in NODES]
    assert is_png(plot_topology(nodes, LINKS, tmp_path / "topo.png")) == (770, 605)


def test_plot_topology_of_two_nodes_and_equal_rates(tmp_path: Path) -> None:
    nodes = [{"name": "x"}, {"name": "y"}]
    links = [{"a": "x", "b": "y", "skr_bps": 5.0}]
    is_png(plot_topology(nodes, links, tmp_path / "topo.png"))


def test_plot_sweep(tmp_path: Path) -> None:
    rows = [
        {"series": s, "mean_skr_bps": x, "final_global_acc": acc, "time_to_target_s": ttt}
        for s in ("otp", "aes-256-gcm")
        for x, acc, ttt in ((1e2, 0.3, ""), (1e4, 0.6, 600.0), (1e6, 0.8, 60.0))
    ]
    is_png(plot_sweep(rows, tmp_path / "sweep.png"))
    is_png(plot_sweep(rows[:1], tmp_path / "one.png", x_label="key (bits)"))


def test_redraw_a_run_folder(tmp_path: Path) -> None:
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


def test_redraw_a_sweep_folder(tmp_path: Path) -> None:
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


def test_redraw_needs_results(tmp_path: Path) -> None:
    with pytest.raises(QflError, match=r"not a run folder \(no metrics\.csv\) nor a sweep folder"):
        redraw(tmp_path)
