"""A sweep's report shows its baseline as the representative run: the point equal to the
unswept scenario (``sweep.json``'s ``base_values``), else the highest-rate point; never
simply the first point of the grid (the lowest rate, the first cipher)."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from qfl.report.folders import _representative, _sweep_preferred, load_sweep

Tiny = Callable[..., dict[str, Any]]


def hand_made(folder: Path, base_values: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Four complete points over cipher.policy x qkd.rate_scale, the lowest rate first."""
    rows = []
    for i, (policy, scale) in enumerate(
        [("aes-256-gcm", 0.01), ("aes-256-gcm", 1.0), ("otp", 0.01), ("otp", 1.0)]
    ):
        slug = f"{i:03d}-policy={policy}-rate_scale={scale}"
        pdir = folder / "points" / slug
        pdir.mkdir(parents=True)
        (pdir / "summary.json").write_text(json.dumps({"status": "complete", "rounds_done": 2}))
        (pdir / "metrics.csv").write_text("sim_time_s,round,node,global_acc\n")
        rows.append({"slug": slug, "cipher.policy": policy, "qkd.rate_scale": str(scale),
                     "mean_skr_bps": str(1e6 * scale), "status": "complete"})  # fmt: skip
    meta: dict[str, Any] = {"grid": {"cipher.policy": [], "qkd.rate_scale": []}}
    if base_values is not None:
        meta["base_values"] = base_values
    (folder / "sweep.json").write_text(json.dumps(meta))
    return rows


def pick(folder: Path, rows: list[dict[str, Any]]) -> tuple[str, str]:
    meta = json.loads((folder / "sweep.json").read_text())
    got, why = _representative(folder, [r["slug"] for r in rows],
                               _sweep_preferred(folder, meta, rows))  # fmt: skip
    assert got is not None
    return got.name, why


def test_the_point_equal_to_the_unswept_scenario(tmp_path: Path) -> None:
    rows = hand_made(tmp_path, {"cipher.policy": "otp", "qkd.rate_scale": 1})
    assert pick(tmp_path, rows) == (
        "003-policy=otp-rate_scale=1.0",
        "the baseline: the point equal to the unswept scenario, cipher.policy = otp, "
        "qkd.rate_scale = 1",
    )


def test_the_highest_rate_point_without_a_baseline(tmp_path: Path) -> None:
    rows = hand_made(tmp_path, {"cipher.policy": "otp", "qkd.rate_scale": 3.0})  # not in grid
    slug, why = pick(tmp_path, rows)
    assert slug == "001-policy=aes-256-gcm-rate_scale=1.0" and why.startswith("the highest-rate")
    (tmp_path / "points" / slug / "summary.json").write_text('{"status": "failed"}')
    assert pick(tmp_path, rows)[0] == "003-policy=otp-rate_scale=1.0"  # a complete one
    old = tmp_path / "old"  # a sweep folder written before base_values existed
    old.mkdir()
    assert pick(old, hand_made(old, None))[0] == "001-policy=aes-256-gcm-rate_scale=1.0"


@pytest.mark.slow  # two training runs: about 10 s on an idle machine, over a minute when busy
def test_a_real_sweep_reports_its_baseline(tiny: Tiny, tmp_path: Path, fmnist: Path) -> None:
    from qfl.cli import main

    sc = tmp_path / "tiny.yaml"
    sc.write_text(yaml.safe_dump(tiny()), encoding="utf-8")  # AES-256-GCM
    out = tmp_path / "sw"
    args = ["sweep", str(sc), "--set", "cipher.policy=otp,aes-256-gcm", "--executor",
            "inline", "-o", str(out)]  # fmt: skip
    assert main(args) == 0
    with open(out / "sweep.csv", encoding="utf-8") as fh:
        first = next(csv.DictReader(fh))["slug"]
    sw = load_sweep(out)
    assert sw.run is not None and sw.run.folder.name != first
    assert sw.run.folder.name == "001-policy=aes-256-gcm", sw.why
    assert sw.why.startswith("the baseline: the point equal to the unswept scenario")
