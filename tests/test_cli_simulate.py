"""``qfl validate``, ``qfl schema`` and ``qfl simulate`` end to end.

``qfl simulate`` runs ``scenarios/metro.yaml`` reduced (``--quick`` plus ``--set``: three of
its clients, 50 samples each, two rounds), once with plots and once more without, to check
the run folder and that the same scenario and seed give the same numbers.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
from pathlib import Path
from typing import Any

import pytest

from qfl.cli import main
from qfl.commands.simulate import resolve_scenario
from qfl.cosim.netbuild import build_topology, check_network
from qfl.cosim.outputs import new_folder
from qfl.scenario import load_scenario

REPO = Path(__file__).resolve().parents[1]
METRO = REPO / "scenarios" / "metro.yaml"
SCENARIO_FILES = sorted((REPO / "scenarios").glob("*.yaml"))
REDUCE = [
    "--quick",
    "--set", "learning.rounds=2",
    "--set", "learning.samples_per_client=50",
    "--set", "learning.test_samples=200",
    "--set", "learning.engine=sequential",
    "--set", "learning.clients=[hospital, bank, clinic]",
]  # fmt: skip
RUN_FILES = (
    "scenario.yaml",
    "topology.json",
    "transfers.csv",
    "keypools.csv",
    "faults.csv",
    "ops.csv",
    "metrics.csv",
    "summary.json",
)
PLOTS = ("accuracy.png", "keypools.png", "topology.png")
SUMMARY_KEYS = {
    "status",
    "rounds_done",
    "final_global_acc",
    "final_local_acc",
    "time_to_target_s",
    "key_generated_bits",
    "key_consumed_bits",
    "key_wasted_bits",
    "time_stalled_on_key_s",
    "wall_s",
}


def run_cli(args: list[str]) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = main(args)
    return status, out.getvalue()


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def metro_runs(tmp_path_factory: pytest.TempPathFactory, fmnist: Path) -> dict[str, Any]:
    base = tmp_path_factory.mktemp("simulate")
    first, second = base / "run", base / "again"
    status, out = run_cli(["simulate", str(METRO), *REDUCE, "--out", str(first)])
    assert status == 0, out
    status2, out2 = run_cli(["simulate", str(METRO), *REDUCE, "--out", str(second), "--no-plots"])
    assert status2 == 0, out2
    return {"folder": first, "again": second, "stdout": out}


def test_run_folder_has_every_file(metro_runs: dict[str, Any], png_pixels: Any) -> None:
    folder: Path = metro_runs["folder"]
    for name in RUN_FILES:
        assert (folder / name).is_file(), name
    for name in PLOTS:
        png_pixels(folder / name, coloured=True)  # the mean accuracy, key pools, links
    assert not list(folder.glob("*.tmp"))
    assert not list(metro_runs["again"].glob("*.png"))  # --no-plots
    out = metro_runs["stdout"]
    assert f"run folder: {folder}" in out
    assert "rounds done / planned" in out and "2 / 2" in out


def test_summary_is_consistent_with_the_tables(metro_runs: dict[str, Any]) -> None:
    folder: Path = metro_runs["folder"]
    s = json.loads((folder / "summary.json").read_text())
    assert SUMMARY_KEYS <= set(s)
    assert s["status"] == "complete" and s["rounds_done"] == 2 and s["rounds_planned"] == 2
    metrics = read_rows(folder / "metrics.csv")
    assert len(metrics) == 2 * 4  # two rounds x (three clients + their mean)
    assert [m["round"] for m in metrics] == ["1"] * 4 + ["2"] * 4
    means = [m for m in metrics if m["node"] == "mean"]
    for m in means:
        clients = [float(x["global_acc"]) for x in metrics if x["round"] == m["round"]][:-1]
        assert float(m["global_acc"]) == pytest.approx(sum(clients) / 3, abs=1e-5)
        # a share of the 200 test images each (metrics.csv rounds to 6 decimals)
        assert all(200 * a == pytest.approx(round(200 * a), abs=1e-3) for a in clients)
    assert s["final_global_acc"] == pytest.approx(float(means[-1]["global_acc"]), abs=1e-6)
    assert float(means[-1]["sim_time_s"]) == pytest.approx(s["sim_time_end_s"])
    assert float(means[0]["sim_time_s"]) < s["sim_time_end_s"]
    if s["rounds_to_target"] is None:
        assert s["time_to_target_s"] is None
    transfers = read_rows(folder / "transfers.csv")
    delivered = [t for t in transfers if t["status"] == "delivered"]
    assert len(delivered) == s["transfers_delivered"] >= 2  # one sender per round at least
    assert s["key_consumed_bits"] == pytest.approx(
        sum(float(t["key_bits_total"]) for t in transfers)
    )
    assert s["time_stalled_on_key_s"] == pytest.approx(
        sum(float(t["key_wait_s"]) for t in transfers)
    )
    assert s["key_generated_bits"] >= s["key_consumed_bits"] > 0
    assert s["key_wasted_bits"] >= 0
    ops = read_rows(folder / "ops.csv")
    assert {o["node"] for o in ops} <= {"hospital", "bank", "clinic"}
    assert max(float(o["end_s"]) for o in ops) == pytest.approx(s["sim_time_end_s"])
    pools = read_rows(folder / "keypools.csv")
    assert pools and all(float(p["level_bits"]) >= -1e-6 for p in pools)


def test_resolved_scenario_and_topology(metro_runs: dict[str, Any]) -> None:
    folder: Path = metro_runs["folder"]
    saved = load_scenario(folder / "scenario.yaml")
    sets = [a for a in REDUCE if a != "--quick" and a != "--set"]
    expected = resolve_scenario(METRO, True, sets)
    assert saved == expected
    assert saved.learning.clients == ("hospital", "bank", "clinic")
    assert saved.learning.rounds == 2 and saved.learning.eval_every == 1  # --quick applied
    topo = json.loads((folder / "topology.json").read_text())
    assert len(topo["nodes"]) == 10 and len(topo["links"]) == 12
    assert all(lk["skr_bps"] > 0 for lk in topo["links"])
    by_length = sorted(topo["links"], key=lambda lk: lk["length_km"])
    assert by_length[0]["skr_bps"] > by_length[-1]["skr_bps"]


def test_same_scenario_and_seed_give_the_same_run(metro_runs: dict[str, Any]) -> None:
    a, b = metro_runs["folder"], metro_runs["again"]
    for name in ("metrics.csv", "transfers.csv", "keypools.csv", "ops.csv", "topology.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    sa = json.loads((a / "summary.json").read_text())
    sb = json.loads((b / "summary.json").read_text())
    sa.pop("wall_s"), sb.pop("wall_s")
    assert sa == sb


def test_validate_every_shipped_scenario(capsys: pytest.CaptureFixture[str]) -> None:
    assert len(SCENARIO_FILES) >= 6
    assert main(["validate", *map(str, SCENARIO_FILES)]) == 0
    out = capsys.readouterr()
    assert out.err == ""
    lines = out.out.strip().splitlines()
    assert len(lines) == len(SCENARIO_FILES)
    for f, line in zip(SCENARIO_FILES, lines, strict=True):
        assert line.startswith(f"{f}: ok (")


@pytest.mark.parametrize("path", SCENARIO_FILES, ids=[p.stem for p in SCENARIO_FILES])
def test_shipped_scenario_builds_its_network(path: Path) -> None:
    sc = load_scenario(path)
    topo = build_topology(sc)
    assert len(topo.nodes) >= 3 and len(topo.links) >= 2
    assert all(math.isfinite(lk.skr_bps) and lk.skr_bps >= 0 for lk in topo.links)
    # a modelled link may be beyond the finite-key reach of its blocks (SECOQC's 85 km
    # St. Poelten link with the GYS preset): the others carry the key
    assert sum(lk.skr_bps > 0 for lk in topo.links) >= len(topo.links) - 1
    check_network(sc, topo)
    if sc.quick:  # the reduced form validates too
        assert resolve_scenario(path, True, None).learning.rounds <= sc.learning.rounds


def test_schema(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["type"] == "object"
    assert {"topology", "learning", "qkd", "cipher", "faults"} <= set(schema["properties"])
    assert {"name", "topology", "learning"} <= set(schema["required"])
    assert schema["additionalProperties"] is False
    assert main(["schema", "-o", str(tmp_path / "s.json")]) == 0
    assert json.loads((tmp_path / "s.json").read_text()) == schema
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.Draft202012Validator.check_schema(schema)
    import yaml

    v = jsonschema.Draft202012Validator(schema)
    for f in SCENARIO_FILES:
        assert not list(v.iter_errors(yaml.safe_load(f.read_text()))), f
    bad = yaml.safe_load(METRO.read_text()) | {"colour": "blue"}
    assert list(v.iter_errors(bad))


def test_new_folder_never_overwrites_even_when_runs_start_at_once(tmp_path: Path) -> None:
    import concurrent.futures as cf

    assert new_folder(tmp_path, "metro") == tmp_path / "metro"
    (tmp_path / "metro-2").mkdir()
    assert new_folder(tmp_path, "metro") == tmp_path / "metro-3"
    with cf.ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda _: new_folder(tmp_path, "race"), range(8)))
    assert len(set(got)) == 8 and all(p.is_dir() for p in got)
