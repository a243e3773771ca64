"""``qfl sweep`` and ``qfl plot`` end to end, and the Ray executor.

The sweep varies ``qkd.rate_scale`` over a tiny OTP scenario with a 25 s horizon: at half
the key rate only one of the two rounds fits, so the points differ in rounds done but share
one learning execution (the one-round point is a prefix of the others).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

import qfl.cosim.sweep
from qfl.cli import main
from qfl.cosim.sweep import SweepSpec, run_sweep
from qfl.scenario import Scenario, load_scenario

Tiny = Callable[..., dict[str, Any]]
SKR = 1.0e5


def run_cli(args: list[str]) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = main(args)
    return status, out.getvalue()


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def sweep_scenario(tiny: Tiny) -> dict[str, Any]:
    d = tiny({"cipher": {"policy": "otp"}, "learning": {"rounds": 2}, "horizon_s": 25.0})
    for link in d["topology"]["links"]:
        link["skr_bps"] = SKR
    return d


@pytest.fixture(scope="module")
def keyrate_sweep(
    tmp_path_factory: pytest.TempPathFactory, tiny: Tiny, fmnist: Path
) -> dict[str, Any]:
    base = tmp_path_factory.mktemp("sweep")
    scen = base / "tiny.yaml"
    scen.write_text(yaml.safe_dump(sweep_scenario(tiny), sort_keys=False))
    out = base / "sw"
    tasks: list[Any] = []
    real = qfl.cosim.sweep.iter_tasks
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(
            qfl.cosim.sweep, "iter_tasks", lambda t, *a: tasks.append(list(t)) or real(t, *a)
        )
        status, stdout = run_cli(
            ["sweep", str(scen), "--set", "qkd.rate_scale=0.5,1,2", "--out", str(out)]
        )
    assert status == 0, stdout
    return {"scenario": scen, "out": out, "stdout": stdout, "tasks": tasks}


def test_sweep_table_and_shared_learning(keyrate_sweep: dict[str, Any], png_pixels: Any) -> None:
    out: Path = keyrate_sweep["out"]
    rows = read_rows(out / "sweep.csv")
    assert [r["qkd.rate_scale"] for r in rows] == ["0.5", "1", "2"]
    assert [int(r["rounds_done"]) for r in rows] == [1, 2, 2]  # the horizon cuts round 2
    for r, scale in zip(rows, (0.5, 1.0, 2.0), strict=True):
        assert float(r["mean_skr_bps"]) == pytest.approx(SKR * scale)
        assert float(r["key_budget_bits"]) > 0 and r["resumed"] == "False"
    # identical learning inputs: one learning job of two rounds served all three points
    assert {r["learning_group"] for r in rows} == {"0"}
    meta = json.loads((out / "sweep.json").read_text())
    assert meta["points"] == 3 and meta["learning_jobs"] == 1
    (tasks,) = keyrate_sweep["tasks"]
    assert len(tasks) == 1 and tasks[0][2] == [1, 2]  # evaluated after rounds 1 and 2
    assert tasks[0][1] == {"rounds_done": 2, "dropped": []}  # the timeline, not re-simulated
    acc = [float(r["final_global_acc"]) for r in rows]
    assert acc[1] == acc[2]
    point1 = out / "points" / rows[1]["slug"]
    metrics = read_rows(point1 / "metrics.csv")
    round1 = next(m for m in metrics if m["round"] == "1" and m["node"] == "mean")
    assert acc[0] == pytest.approx(float(round1["global_acc"]), abs=1e-6)
    png_pixels(out / "keyrate_vs_accuracy.png", coloured=True)  # the lines of the sweep
    assert "sweep folder:" in keyrate_sweep["stdout"]


def test_each_point_is_a_run_folder(keyrate_sweep: dict[str, Any]) -> None:
    out: Path = keyrate_sweep["out"]
    rows = read_rows(out / "sweep.csv")
    for r in rows:
        p = out / "points" / r["slug"]
        s = json.loads((p / "summary.json").read_text())
        assert s["status"] == "complete" and s["rounds_done"] == int(r["rounds_done"])
        assert load_scenario(p / "scenario.yaml").qkd.rate_scale == float(r["qkd.rate_scale"])
        metrics = read_rows(p / "metrics.csv")
        assert len(metrics) == 4 * s["rounds_done"]
        # a point's folder is a run folder like `qfl simulate`'s (one writer for both)
        names = {f.name for f in p.iterdir()}
        assert names >= {"accuracy.png", "keypools.png", "topology.png", "ops.csv"}, names
        topo = json.loads((p / "topology.json").read_text())
        rate = [lk["skr_bps"] for lk in topo["links"]]
        assert rate == pytest.approx([SKR * float(r["qkd.rate_scale"])] * 4)
    assert not list(out.rglob("*.tmp"))


def test_resume_skips_finished_points(
    keyrate_sweep: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    out: Path = keyrate_sweep["out"]
    before = read_rows(out / "sweep.csv")
    (out / "points" / before[0]["slug"] / "summary.json").unlink()  # as if interrupted
    tasks: list[Any] = []
    real = qfl.cosim.sweep.iter_tasks
    monkeypatch.setattr(
        qfl.cosim.sweep, "iter_tasks", lambda t, *a: tasks.append(list(t)) or real(t, *a)
    )
    args = ["sweep", str(keyrate_sweep["scenario"]), "--set", "qkd.rate_scale=0.5,1,2"]
    status, _ = run_cli([*args, "--out", str(out), "--resume", "--no-plots"])
    assert status == 0
    after = read_rows(out / "sweep.csv")
    assert [r["resumed"] for r in after] == ["False", "True", "True"]
    assert len(tasks) == 1 and len(tasks[0]) == 1  # only the unfinished point learned
    # The recomputed point learned alone (a one-round job of its own); before, it reused
    # the first round of the two-round job: the same figures.
    for a, b in zip(before, after, strict=True):
        for k in ("rounds_done", "final_global_acc", "mean_skr_bps", "key_budget_bits"):
            assert a[k] == b[k], k
    tasks.clear()
    status, _ = run_cli([*args, "--out", str(out), "--resume", "--no-plots"])
    assert status == 0 and tasks == [[]]  # nothing left to do
    assert [r["resumed"] for r in read_rows(out / "sweep.csv")] == ["True"] * 3
    # A point finished under another scenario (the sweep or base file changed) is run again.
    stale = out / "points" / before[2]["slug"] / "scenario.yaml"
    stale.write_text(stale.read_text().replace("seed: ", "seed: 9", 1))
    tasks.clear()
    status, _ = run_cli([*args, "--out", str(out), "--resume", "--no-plots"])
    assert status == 0 and len(tasks) == 1 and len(tasks[0]) == 1
    assert [r["resumed"] for r in read_rows(out / "sweep.csv")] == ["True", "True", "False"]
    assert (
        load_scenario(stale).seed
        == load_scenario(stale.parent.parent / before[0]["slug"] / "scenario.yaml").seed
    )


def test_plot_redraws_sweep_and_run_folders(
    keyrate_sweep: dict[str, Any], capsys: pytest.CaptureFixture[str], png_pixels: Any
) -> None:
    out: Path = keyrate_sweep["out"]
    png = out / "keyrate_vs_accuracy.png"
    png.unlink()
    assert main(["plot", str(out)]) == 0
    png_pixels(png, coloured=True)
    point = out / "points" / read_rows(out / "sweep.csv")[1]["slug"]
    for name in ("accuracy.png", "keypools.png", "topology.png"):
        (point / name).unlink(missing_ok=True)
    assert main(["plot", str(point)]) == 0
    printed = capsys.readouterr().out
    for name in ("accuracy.png", "keypools.png", "topology.png"):
        png_pixels(point / name, coloured=True)
        assert name in printed


# ------------------------------------------------------------------------------ executors


@pytest.fixture(scope="module")
def lr_spec(tiny: Tiny, fmnist: Path) -> SweepSpec:
    """Two points with different learning inputs: two learning jobs."""
    base = Scenario.model_validate(tiny())
    return SweepSpec(base, {"learning.lr": [0.01, 0.05]}, name="lr")


@pytest.fixture(scope="module")
def inline_rows(lr_spec: SweepSpec, tmp_path_factory: pytest.TempPathFactory) -> list[Any]:
    return run_sweep(lr_spec, tmp_path_factory.mktemp("inline"), executor="inline", plots=False)


def _figures(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [
        (r["learning.lr"], r["rounds_done"], r["final_global_acc"], r["final_local_acc"])
        for r in rows
    ]


def test_two_learning_jobs_inline(inline_rows: list[dict[str, Any]]) -> None:
    assert [r["learning_group"] for r in inline_rows] == [0, 1]
    assert inline_rows[0]["final_global_acc"] != inline_rows[1]["final_global_acc"]


def test_ray_executor_matches_inline(
    inline_rows: list[dict[str, Any]], tiny: Tiny, tmp_path: Path
) -> None:
    ray = pytest.importorskip("ray", reason="the Ray executor needs the optional `ray` extra")
    scen = tmp_path / "tiny.yaml"
    scen.write_text(yaml.safe_dump(tiny(), sort_keys=False))
    out = tmp_path / "ray"
    # A local Ray instance of one CPU; ``qfl sweep --executor ray`` runs on the instance
    # this process is connected to (without one, it starts and stops its own: slower).
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        args = ["sweep", str(scen), "--set", "learning.lr=0.01,0.05", "--executor", "ray"]
        status, stdout = run_cli([*args, "--out", str(out), "--no-plots"])
    finally:
        ray.shutdown()
    assert status == 0, stdout
    rows = read_rows(out / "sweep.csv")
    assert [r["learning_group"] for r in rows] == ["0", "1"]  # two learning jobs
    got = [
        (float(r["learning.lr"]), int(r["rounds_done"]), float(r["final_global_acc"])) for r in rows
    ]
    want = [(r["learning.lr"], r["rounds_done"], r["final_global_acc"]) for r in inline_rows]
    assert got == want


@pytest.mark.slow
def test_local_executor_matches_inline(
    lr_spec: SweepSpec, inline_rows: list[dict[str, Any]], tmp_path: Path
) -> None:
    # two worker processes (spawned: each imports torch and loads the data)
    rows = run_sweep(lr_spec, tmp_path / "local", executor="local", jobs=2, plots=False)
    assert _figures(rows) == _figures(inline_rows)
