"""``scenarios/mixed-kinds.yaml`` (CV-QKD metro, twin-field long haul, satellite to a remote
site) run reduced through ``qfl simulate``: each link's kind in topology.json, the passes key
waited for in window_waits.csv and the summary, and the key of every link over the run equal
to its rate's integral over its schedule."""

from __future__ import annotations

import contextlib
import csv
import io
import json
from pathlib import Path

import pytest

from qfl.cli import main
from qfl.cosim.netbuild import build_topology
from qfl.scenario import load_scenario

REPO = Path(__file__).resolve().parents[1]
MIXED = REPO / "scenarios" / "mixed-kinds.yaml"
REDUCE = [
    "--quick",
    "--set", "learning.samples_per_client=50",
    "--set", "learning.test_samples=200",
    "--set", "learning.engine=sequential",
    "--no-plots",
]  # fmt: skip


@pytest.fixture(scope="module")
def mixed_run(tmp_path_factory: pytest.TempPathFactory, fmnist: Path) -> Path:
    folder = tmp_path_factory.mktemp("mixed") / "run"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = main(["simulate", str(MIXED), *REDUCE, "--out", str(folder)])
    assert status == 0, out.getvalue()
    return folder


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_topology_json_names_each_links_kind(mixed_run: Path) -> None:
    links = json.loads((mixed_run / "topology.json").read_text())["links"]
    kinds = {f"{lk['a']}-{lk['b']}": (lk["kind"], lk["rate_unit"]) for lk in links}
    assert kinds["hub-quiron"] == ("cv-gg02", "bit/symbol")
    assert kinds["hub-north"] == ("tf-sns", "bit/pulse pair")
    assert kinds["micius-remote"][0] == "satellite-downlink"
    middle = {f"{lk['a']}-{lk['b']}" for lk in links if lk["untrusted_middle"]}
    assert middle == {"hub-north"}


def test_key_waited_for_passes_and_the_summary_says_so(mixed_run: Path) -> None:
    waits = _rows(mixed_run / "window_waits.csv")
    assert waits and {w["link"] for w in waits} <= {"micius-north", "micius-remote"}
    assert all(w["label"].startswith("pass ") for w in waits)
    s = json.loads((mixed_run / "summary.json").read_text())
    sentences = [w["sentence"] for w in s["window_waits"]]
    assert len(sentences) == len(waits)
    assert any(x.startswith("key on micius-remote waited ") and " for pass 0" in x
               for x in sentences)  # fmt: skip
    assert "micius" in s["binds"]


def test_key_of_every_link_is_its_rate_integrated_over_its_schedule(mixed_run: Path) -> None:
    """The satellite links make key only in passes: generated = zenith rate x the integral
    of the pass schedule up to the run's end; the metro and TF links, blocks of their rate."""
    sc = load_scenario(mixed_run / "scenario.yaml")
    topo = build_topology(sc)
    s = json.loads((mixed_run / "summary.json").read_text())
    got = {row["link"]: row["key_generated_bits"] for row in s["links"]}
    pools = _rows(mixed_run / "keypools.csv")
    end = max(float(r["sim_time_s"]) for r in pools)
    for spec in topo.links:
        if spec.schedule is None:
            continue
        want = spec.skr_bps * spec.schedule.integral(0.0, end)
        assert got[spec.name] == pytest.approx(want, rel=1e-9), spec.name
        assert want > 0
