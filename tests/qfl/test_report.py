"""``qfl.report``: the HTML report of run, sweep and plan folders, from hand-made folders.

The folders are written here (no simulation): a run with and without the per-round and
per-link accounting of ``summary.json``, a sweep with a failed point, and threshold and
contingency plans. A headless Chromium opens one report with the network off, and the test
checks that the charts were drawn, that their data are on the page and that nothing went
wrong in the page's JavaScript.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from qfl.report import (
    folder_kind,
    keypool_figure,
    load_run,
    render_report,
    topology_figure,
    write_report,
)
from qfl.scenario import ScenarioError

SCENARIO_YAML = """\
name: tiny-ring
description: Three clients around a trusted relay (hand-made report fixture)
seed: 3
topology:
  nodes:
  - {name: a, role: client}
  - {name: b, role: client}
  - {name: c, role: client}
  - {name: r, role: relay}
"""
NODES = [
    {"name": "a", "role": "client", "flops_per_s": 1e9, "latitude": None, "longitude": None},
    {"name": "b", "role": "client", "flops_per_s": 2e9, "latitude": None, "longitude": None},
    {"name": "c", "role": "client", "flops_per_s": 1e9, "latitude": None, "longitude": None},
    {"name": "r", "role": "relay", "flops_per_s": 5e11, "latitude": None, "longitude": None},
]
LINKS = [
    {"a": "a", "b": "r", "length_km": 5.0, "skr_bps": 12_345_678.0},
    {"a": "b", "b": "r", "length_km": 8.0, "skr_bps": 6_543_210.0},
    {"a": "c", "b": "r", "length_km": 12.0, "skr_bps": 2_222_222.0},
    {"a": "a", "b": "b", "length_km": 20.0, "skr_bps": 0.0},
]
BINDS = "key (71 % of round time); key binds most on link c-r (2.5 s of waiting)"


def _write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)


def make_run(folder: Path, *, accounting: bool = True, acc_end: float = 0.4321) -> Path:
    """A run folder of 3 rounds over :data:`LINKS` (``accounting``: with ``summary.json``'s
    ``round_breakdown`` and ``links``, as runs write them now)."""
    folder.mkdir(parents=True)
    (folder / "scenario.yaml").write_text(SCENARIO_YAML, encoding="utf-8")
    (folder / "topology.json").write_text(json.dumps({"nodes": NODES, "links": LINKS}))
    metrics = []
    for rnd, t, acc in ((1, 2.5, 0.21), (2, 4.0, 0.33), (3, 5.5, acc_end)):
        for k, node in enumerate(("a", "b", "c")):
            metrics.append([t, rnd, node, f"{acc - 0.01 * k:.6f}", f"{acc + 0.05:.6f}", ""])
        metrics.append([t, rnd, "mean", f"{acc - 0.01:.6f}", f"{acc + 0.05:.6f}", ""])
    _write_csv(
        folder / "metrics.csv",
        ["sim_time_s", "round", "node", "global_acc", "local_acc", "exit_acc"],
        metrics,
    )
    pools = [[0.0, f"{lk['a']}-{lk['b']}", "start", lk["skr_bps"], 0.0] for lk in LINKS]
    pools += [[1.0, "a-r", "block", 12_000_000, 12_000_000], [2.5, "a-r", "take", 256, 11_999_744],
              [1.0, "c-r", "block", 2_000_000, 2_000_000], [2.5, "c-r", "take", 512, 1_999_488],
              [6.0, "a-r", "end", 0, 11_999_744], [6.0, "c-r", "end", 0, 1_999_488]]  # fmt: skip
    _write_csv(folder / "keypools.csv", ["sim_time_s", "link", "event", "bits", "level_bits"],
               pools)  # fmt: skip
    _write_csv(folder / "transfers.csv", ["id", "src", "dst", "n_bytes", "status", "path",
                                          "key_wait_s", "total_s"],
               [[0, "a", "c", 116264, "delivered", "a>r>c", 2.5, 2.6],
                [1, "b", "a", 116264, "delivered", "b>r>a", 0.0, 0.01]])  # fmt: skip
    summary: dict[str, Any] = {
        "scenario": "tiny-ring", "method": "def-fd", "cipher": "one-time-pad",
        "routing": "latency", "status": "complete", "rounds_planned": 3, "rounds_done": 3,
        "sim_time_end_s": 5.5, "horizon_s": None, "final_global_acc": acc_end - 0.01,
        "final_local_acc": acc_end + 0.05, "target_accuracy": 0.4, "time_to_target_s": 5.5,
        "mean_skr_bps": 5_277_777.5, "min_skr_bps": 0.0, "transfers_delivered": 2,
        "transfers_failed": 0, "key_generated_bits": 14_000_000.0, "key_consumed_bits": 768.0,
        "key_wasted_bits": 0.0, "time_stalled_on_key_s": 2.5,
        "time_share": {"compute": 0.25, "key": 0.71, "bandwidth": 0.03, "propagation": 0.01,
                       "blocked": 0.0},
        "key_wait_by_link_s": {"c-r": 2.5, "a-r": 0.5},
        "binds": BINDS,
    }  # fmt: skip
    if accounting:
        summary["round_breakdown"] = [
            {"round": i + 1, "start_s": s, "end_s": e, "duration_s": e - s, "compute": 0.4,
             "key": e - s - 0.45, "bandwidth": 0.04, "propagation": 0.01, "blocked": 0.0,
             "critical": f"send a->c (links a-r, c-r) round-{i + 1}-marker"}
            for i, (s, e) in enumerate(((0.0, 2.5), (2.5, 4.0), (4.0, 5.5)))
        ]  # fmt: skip
        summary["links"] = [
            {"link": f"{lk['a']}-{lk['b']}", "skr_bps": lk["skr_bps"],
             "key_generated_bits": 6e6, "key_consumed_bits": 256.0, "key_wasted_bits": 1e5,
             "key_wait_s": {"c-r": 2.5, "a-r": 0.5}.get(f"{lk['a']}-{lk['b']}", 0.0),
             "utilisation": 0.0123 if lk["a"] == "c" else 0.002, "bytes_sent": 116264}
            for lk in LINKS
        ]  # fmt: skip
    (folder / "summary.json").write_text(json.dumps(summary, indent=1))
    return folder


def make_sweep(folder: Path) -> Path:
    """A sweep of 3 points over qkd.rate_scale: no round, complete, failed."""
    folder.mkdir(parents=True)
    (folder / "sweep.json").write_text(json.dumps({
        "name": "tiny-sweep", "base": "tiny-ring", "grid": {"qkd.rate_scale": [0.001, 1, 10]},
        "x": "mean_skr_bps", "series": None, "x_label": "mean secret key rate per link (bit/s)",
    }))  # fmt: skip
    header = ["point", "slug", "qkd.rate_scale", "series", "mean_skr_bps", "rounds_done",
              "final_global_acc", "final_local_acc", "time_to_target_s", "sim_time_end_s",
              "status", "error"]  # fmt: skip
    rows = [
        [0, "000-rate_scale=0.001", 0.001, "", 5277.8, 0, "", "", "", 0.0, "complete", ""],
        [1, "001-rate_scale=1", 1, "", 5277777.5, 3, 0.4221, 0.48, 5.5, 5.5, "complete", ""],
        [2, "002-rate_scale=10", 10, "", 52777775, "", "", "", "", "", "failed",
         "ValueError: sweep-failure-marker"],
    ]  # fmt: skip
    _write_csv(folder / "sweep.csv", header, rows)
    make_run(folder / "points" / "000-rate_scale=0.001")
    zero = json.loads((folder / "points/000-rate_scale=0.001/summary.json").read_text())
    zero["rounds_done"] = 0
    (folder / "points/000-rate_scale=0.001/summary.json").write_text(json.dumps(zero))
    make_run(folder / "points" / "001-rate_scale=1")
    return folder


def make_plan(folder: Path, kind: str = "threshold") -> Path:
    """A plan folder as ``qfl plan`` writes it (``plan.json``, ``plan.csv``, points)."""
    folder.mkdir(parents=True)
    if kind == "threshold":
        columns = ["evaluation", "rate_scale", "holds", "final_global_acc",
                   "time_to_target_s", "rounds_done", "slug"]  # fmt: skip
        rows = [
            {"evaluation": 0, "rate_scale": 0.001, "holds": False, "final_global_acc": None,
             "time_to_target_s": None, "rounds_done": 0, "slug": "000-rate_scale=0.001"},
            {"evaluation": 1, "rate_scale": 1.0, "holds": True, "final_global_acc": 0.45,
             "time_to_target_s": 20.0, "rounds_done": 3, "slug": "001-rate_scale=1"},
            {"evaluation": 2, "rate_scale": 0.0316, "holds": True, "final_global_acc": 0.44,
             "time_to_target_s": 50.0, "rounds_done": 3, "slug": "002-rate_scale=0.0316"},
            {"evaluation": 3, "rate_scale": 0.00562, "holds": False, "final_global_acc": 0.3,
             "time_to_target_s": None, "rounds_done": 2, "slug": "003-rate_scale=0.00562"},
        ]  # fmt: skip
        meta = {"scenario": "tiny-ring", "vary": "qkd.rate_scale", "target": 0.4,
                "within_s": 60.0, "bracket": {"fails_at": 0.00562, "holds_at": 0.0316},
                "question": "least qkd.rate_scale reaching 40 % accuracy within 1.0 min",
                "answer": "qkd.rate_scale >= 0.0316 reaches 40 % within 1.0 min "
                          "(fails at 0.00562)"}  # fmt: skip
    else:
        columns = ["rank", "variant", "final_global_acc", "time_to_target_s", "delay_s", "slug"]
        rows = [
            {"rank": 0, "variant": "intact (baseline)", "final_global_acc": 0.45,
             "time_to_target_s": 20.0, "delay_s": None, "slug": "000-variant=intact"},
            {"rank": 1, "variant": "link c-r", "final_global_acc": 0.3,
             "time_to_target_s": None, "delay_s": None, "slug": "001-variant=link_c-r"},
        ]  # fmt: skip
        meta = {"scenario": "tiny-ring", "question": "N-1: which single failure hurts most",
                "answer": "losing link c-r hurts most: the target is never reached",
                "target": 0.4, "within_s": None}  # fmt: skip
    (folder / "plan.json").write_text(
        json.dumps({"kind": kind, "columns": columns, "rows": rows, **meta}, indent=1)
    )
    _write_csv(folder / "plan.csv", columns, [[r[c] for c in columns] for r in rows])
    for i, r in enumerate(rows):
        make_run(folder / "points" / r["slug"], acc_end=0.4 + 0.01 * i)
    return folder


# ------------------------------------------------------------------------------ content


def test_run_report_shows_every_section(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run")
    page = render_report(run)
    assert folder_kind(run) == "run"
    assert page.startswith("<!DOCTYPE html>")
    for text in (
        "tiny-ring",
        "Three clients around a trusted relay (hand-made report fixture)",  # description
        "seed: 3",  # the YAML itself
        BINDS,
        "round-2-marker",  # per-round table: the step that ended the round
        "12.3 Mbit/s",  # a link's key rate, formatted
        "1.23 %",  # c-r's utilisation
        "Accuracy over simulated time",
        "Key pool level of each link",
        "Where the time goes, round by round",
    ):
        assert text in page, text
    # Plotly inlined once, every chart drawn from it; nothing fetched from the network
    assert page.count("Plotly.newPlot(") == 5
    assert len(re.findall(r"plotly\.js v\d", page)) == 1
    from plotly.offline import get_plotlyjs

    outside = page.replace(get_plotlyjs(), "")  # plotly.js names URLs it never loads here
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", outside)


def test_run_report_without_per_round_accounting_falls_back(tmp_path: Path) -> None:
    """A run written before ``round_breakdown`` / ``links``: the overall shares and the
    key wait by link from ``summary.json``, the key consumed from ``keypools.csv``."""
    page = render_report(make_run(tmp_path / "run", accounting=False))
    assert "Share of round time (all rounds)" in page
    assert "71 %" in page  # the key share
    assert "2.5 s" in page  # c-r's key wait (key_wait_by_link_s)
    assert "512 bit" in page  # c-r's key consumed, summed from keypools.csv
    assert "predates per-link accounting" in page
    assert "round-2-marker" not in page


def test_sweep_report(tmp_path: Path) -> None:
    sweep = make_sweep(tmp_path / "sweep")
    page = render_report(sweep)
    assert folder_kind(sweep) == "sweep"
    assert "Key rate vs accuracy: sweep tiny-sweep" in page
    assert "sweep-failure-marker" in page  # the failed point's error, in the table
    assert "1 of 3 points did not complete" in page
    # the representative run: no point says it is the unswept scenario, so the highest-rate
    # complete point (tests/qfl/test_report_representative.py has the baseline's case)
    assert "points/001-rate_scale=1 (the highest-rate point" in page
    assert page.count("Plotly.newPlot(") == 6


def test_threshold_plan_report(tmp_path: Path) -> None:
    plan = make_plan(tmp_path / "plan")
    page = render_report(plan)
    assert folder_kind(plan) == "plan"
    answer = "qkd.rate_scale &gt;= 0.0316 reaches 40 % within 1.0 min (fails at 0.00562)"
    assert answer in page
    # the answer box comes before the table, the chart and the run sections
    order = [answer, "<h2>The threshold plan (4 rows)", 'id="fig-threshold"', "<h2>Run summary"]
    assert [page.index(t) for t in order] == sorted(page.index(t) for t in order)
    assert "Threshold search: qkd.rate_scale" in page
    assert "between 0.00562 and 0.0316" in page
    assert "points/002-rate_scale=0.0316 (the point at the answer" in page


def test_contingency_plan_report_shows_its_baseline(tmp_path: Path) -> None:
    page = render_report(make_plan(tmp_path / "plan", kind="contingency"))
    assert "losing link c-r hurts most" in page
    assert "points/000-variant=intact (the baseline point)" in page
    assert "fig-threshold" not in page


def test_write_report(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run")
    out = write_report(run)
    assert out == run / "report.html"
    assert out.stat().st_mode & 0o644 == 0o644
    assert [p.name for p in run.iterdir() if p.name.startswith(".report-")] == []
    other = write_report(run, tmp_path / "elsewhere.html")
    assert other.read_text(encoding="utf-8") == out.read_text(encoding="utf-8")


def test_topology_uses_coordinates_and_keypools_hide_extra_links(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run")
    topo = json.loads((run / "topology.json").read_text())
    for i, n in enumerate(topo["nodes"]):
        n["latitude"], n["longitude"] = 48.0 + 0.1 * i, 16.0 + 0.2 * i
    (run / "topology.json").write_text(json.dumps(topo))
    fig = topology_figure(load_run(run))
    assert fig is not None
    nodes = {t.name: t for t in fig.data if t.name in ("client", "relay")}
    assert list(nodes["relay"].x) == [16.6] and list(nodes["relay"].y) == [48.3]
    assert fig.layout.xaxis.title.text == "longitude (°)"
    rows = [[0.0, f"l{i}", "start", 1e6, 0.0] for i in range(15)]
    rows += [[1.0, f"l{i}", "take", 10 * (i + 1), 1e6] for i in range(15)]
    _write_csv(run / "keypools.csv", ["sim_time_s", "link", "event", "bits", "level_bits"], rows)
    fig = keypool_figure(load_run(run))
    assert fig is not None
    shown = [t.name for t in fig.data if t.visible is not False and t.visible != "legendonly"]
    assert shown[0] == "l14" and len(shown) == 12  # the most key used first; 3 in the legend


# ------------------------------------------------------------------------------ bad input


def _corrupt(folder: Path, name: str, text: str) -> None:
    (folder / name).write_text(text, encoding="utf-8")


@pytest.mark.parametrize(
    ("setup", "where", "message"),
    [
        (lambda d: d.mkdir(), "empty", "not a run, sweep or plan folder"),
        (lambda d: None, "missing", "not a folder"),
        (lambda d: (make_run(d), _corrupt(d, "summary.json", "{oops")),
         "summary.json", "malformed JSON"),
        (lambda d: (make_run(d), _corrupt(d, "summary.json", "[1, 2]")),
         "summary.json", "must hold a JSON object, got list"),
        (lambda d: (make_run(d), _corrupt(d, "metrics.csv", "sim_time_s,round\n1,2\n")),
         "metrics.csv", "missing column.s. node, global_acc"),
        (lambda d: (make_run(d), _corrupt(d, "metrics.csv",
                                          "sim_time_s,node,global_acc\n1,a,abc\n")),
         "metrics.csv", "line 2: column global_acc is not a number: 'abc'"),
        (lambda d: (make_run(d), _corrupt(d, "keypools.csv",
                                          "sim_time_s,link,level_bits\n1,a-r\n")),
         "keypools.csv", "line 2 has 2 fields, the header 3"),
        (lambda d: (make_run(d), _corrupt(d, "topology.json", '{"nodes": []}')),
         "topology.json", "must hold lists 'nodes' and 'links'"),
        (lambda d: (make_run(d), _corrupt(d, "scenario.yaml", "a: [1,\n")),
         "scenario.yaml", "YAML"),
        (lambda d: (make_sweep(d), _corrupt(d, "sweep.csv", "slug,status\nx,complete\n")),
         "sweep.csv", "missing column.s. mean_skr_bps"),
        (lambda d: (make_plan(d), _corrupt(d, "plan.json", '{"kind": "guess", "answer": ""}')),
         "plan.json", "kind must be one of 'threshold', 'contingency', 'upgrade', got 'guess'"),
        (lambda d: (make_plan(d), _corrupt(d, "plan.json", '{"kind": "upgrade"}')),
         "plan.json", "missing 'answer'"),
    ],
)  # fmt: skip
def test_bad_folders_name_the_file(tmp_path: Path, setup: Any, where: str, message: str) -> None:
    folder = tmp_path / "f"
    setup(folder)
    with pytest.raises(ScenarioError, match=message) as info:
        render_report(folder)
    assert where in str(info.value) or where in ("empty", "missing")
    assert "\n" not in str(info.value)


def test_plotly_is_a_core_dependency() -> None:
    """``qfl report`` works after the README's plain install: plotly is no extra."""
    import tomllib

    meta = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    assert any(re.match(r"plotly\b", d) for d in meta["project"]["dependencies"])
    assert not meta["project"]["optional-dependencies"].get("report")  # an empty alias at most


def test_missing_plotly_is_an_import_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without plotly, importing qfl.report fails at once, naming plotly and the fix."""
    import importlib

    for name in [m for m in sys.modules if m == "qfl.report" or m.startswith("qfl.report.")]:
        monkeypatch.delitem(sys.modules, name)  # restored afterwards
    monkeypatch.setitem(sys.modules, "plotly", None)  # import plotly -> ImportError
    with pytest.raises(ImportError, match=r"qfl.report needs plotly.*pip install 'plotly>="):
        importlib.import_module("qfl.report")


# ------------------------------------------------------------------------------ browser

CHROMIUM = next(
    (p for p in (os.environ.get("QFL_CHROMIUM"), shutil.which("chromium"),
                 shutil.which("chromium-browser"), shutil.which("google-chrome")) if p),
    None,
)  # fmt: skip

# Records every script error, console.error and failed resource load (a fetch the network
# refused) on the page, as an attribute of <html> that --dump-dom shows.
ERROR_HOOK = """<script>(function(){var seen=[];function note(m){seen.push(String(m));
document.documentElement.setAttribute('data-page-errors',JSON.stringify(seen));}
window.addEventListener('error',function(e){note(e.message||('failed to load '+
(e.target&&(e.target.src||e.target.href))));},true);
window.addEventListener('unhandledrejection',function(e){note('rejection: '+e.reason);});
var ce=console.error;console.error=function(){note([].join.call(arguments,' '));
ce.apply(console,arguments);};})();</script>"""


def _chromium(page: Path, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Headless Chromium on ``page`` with the network off: every request goes to a proxy
    on a closed port (loopback included), so any fetch from the web fails."""
    assert CHROMIUM is not None
    cmd = [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
           "--disable-extensions", f"--user-data-dir={profile}",
           "--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>",
           "--window-size=1400,3000", "--virtual-time-budget=5000", "--hide-scrollbars",
           "--enable-logging=stderr", "--v=0", *args, page.as_uri()]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


def _page_errors(dom: str) -> list[str]:
    m = re.search(r"data-page-errors=\"([^\"]*)\"", dom)
    return json.loads(m.group(1).replace("&quot;", '"')) if m else []


@pytest.mark.timeout(120)
def test_report_opens_offline_in_a_browser(tmp_path: Path, png_pixels: Any) -> None:
    if CHROMIUM is None:
        pytest.skip("no chromium on PATH (apt-get install chromium, or set QFL_CHROMIUM)")
    plan = make_plan(tmp_path / "plan")
    page = write_report(plan)
    text = page.read_text(encoding="utf-8")
    hooked = tmp_path / "hooked.html"
    hooked.write_text(text.replace("<head>", "<head>" + ERROR_HOOK, 1), encoding="utf-8")

    # the detector detects: a page that throws and fetches from the web is caught
    control = tmp_path / "control.html"
    control.write_text(
        f"<html><head>{ERROR_HOOK}</head><body><img src='https://example.com/"
        "x.png'><script>throw new Error('control-error')</script></body></html>"
    )
    got = _chromium(control, tmp_path / "profile0", "--dump-dom")
    errors = _page_errors(got.stdout)
    assert any("control-error" in e for e in errors), got.stdout[-2000:]
    assert any("example.com" in e for e in errors), errors

    got = _chromium(hooked, tmp_path / "profile1", "--dump-dom")
    dom = got.stdout
    assert got.returncode == 0, got.stderr[-2000:]
    assert _page_errors(dom) == []
    assert "Uncaught" not in got.stderr, [ln for ln in got.stderr.splitlines() if "CONSOLE" in ln]
    # every chart drawn by plotly, with its data on the page
    n_figs = text.count("Plotly.newPlot(")
    assert n_figs == 6
    assert dom.count('class="plot-container plotly"') == n_figs
    assert dom.count('class="main-svg"') >= n_figs
    assert 'data-unformatted="12.3 Mbit/s · 0.2 %"' in dom  # a-r's label on the map
    assert 'data-unformatted="target 40 %"' in dom  # the threshold chart's target line
    assert "qkd.rate_scale &gt;= 0.0316 reaches 40 %" in dom  # the answer box

    shot = tmp_path / "report.png"
    got = _chromium(hooked, tmp_path / "profile2", f"--screenshot={shot}")
    assert shot.is_file(), got.stderr[-2000:]
    png_pixels(shot, min_side=1000, coloured=True)
