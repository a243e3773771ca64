"""The HTML page of a folder: its CSS, tables and sections; :func:`render_report` builds
it, :func:`write_report` writes it.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qfl.report.charts import (
    COMPONENTS,
    accuracy_figure,
    bottleneck_figure,
    client_keyrate_figure,
    keypool_figure,
)
from qfl.report.folders import (
    PlanFiles,
    RunFiles,
    SweepFiles,
    folder_kind,
    load_plan,
    load_run,
    load_sweep,
)
from qfl.report.pointcharts import sweep_figure, threshold_figure
from qfl.report.text import _cell, _esc, _num, _pct, _secs, _si
from qfl.report.topology import _link_table, topology_figure

if TYPE_CHECKING:
    import plotly.graph_objects as go

__all__ = ["render_report", "write_report"]

_PLOTLY_CONFIG = {
    "displaylogo": False,
    "responsive": True,
    "toImageButtonOptions": {"format": "png", "scale": 2},
}

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;
 margin:0;color:#1d2430;background:#eef0f3;line-height:1.45}
main{max-width:1240px;margin:0 auto;padding:24px 36px 48px;background:#fff}
h1{font-size:27px;margin:0 0 4px}
h2{font-size:21px;border-bottom:2px solid #e3e6ea;padding-bottom:4px;margin:36px 0 10px}
h3{font-size:16px;margin:20px 0 6px}
.meta{color:#5b6472;font-size:14px;margin:2px 0}
nav{font-size:14px;margin:12px 0 4px}
nav a{margin-right:16px;color:#1f5fa8;text-decoration:none}
.answer{background:#e9f5ea;border-left:7px solid #2e7d32;padding:14px 20px;margin:18px 0;
 border-radius:4px}
.answer .q{font-size:14px;color:#44505c;margin-bottom:6px}
.answer .a{font-size:21px;font-weight:600}
.verdict{background:#fff8e1;border-left:6px solid #f9a825;padding:10px 16px;margin:10px 0;
 border-radius:4px}
table{border-collapse:collapse;font-size:13px;margin:8px 0}
th,td{padding:4px 10px;border-bottom:1px solid #e3e6ea;vertical-align:top}
th{background:#f0f2f5;text-align:left;position:sticky;top:0}
td{white-space:nowrap}
td.n{text-align:right;font-variant-numeric:tabular-nums}
table.kv td:first-child{color:#44505c}
.scroll{max-height:440px;overflow:auto;border:1px solid #eceef1}
pre.yaml{background:#f7f7f9;border:1px solid #e3e6ea;padding:10px 14px;max-height:460px;
 overflow:auto;font-size:12px;line-height:1.35}
.note{color:#5b6472;font-size:13px}
.fig{margin:6px 0 18px;border:1px solid #eceef1;border-radius:4px}
footer{margin-top:40px;color:#7a828c;font-size:12px}
@media print{.scroll,pre.yaml{max-height:none;overflow:visible}nav{display:none}}
"""


def _table(
    header: Sequence[str], rows: Iterable[Sequence[Any]], *, numeric: Sequence[bool] | None = None
) -> str:
    """An HTML table (cells escaped; ``numeric`` columns right-aligned)."""
    num = list(numeric) if numeric is not None else []
    out = ["<table>"]
    if header:
        out += ["<thead><tr>", *(f"<th>{_esc(h)}</th>" for h in header), "</tr></thead>"]
    out.append("<tbody>")
    for r in rows:
        out.append("<tr>")
        for i, v in enumerate(r):
            cls = ' class="n"' if i < len(num) and num[i] else ""
            out.append(f"<td{cls}>{_esc(v)}</td>")
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _figure_html(fig: go.Figure | None, div_id: str, missing: str) -> str:
    """``fig`` as a ``div`` (its data inlined, Plotly's script not), or the note
    ``missing`` where there is no figure."""
    if fig is None:
        return f'<p class="note">{_esc(missing)}</p>'
    body = fig.to_html(full_html=False, include_plotlyjs=False, div_id=div_id,
                       config=_PLOTLY_CONFIG)  # fmt: skip
    return f'<div class="fig">{body}</div>'


def _run_figures(run: RunFiles) -> list[tuple[str, str]]:
    """The key figures of a run as (label, value) pairs."""
    s = run.summary
    target = _num(s.get("target_accuracy"))
    rows = [
        ("status", str(s.get("status", "–"))),
        ("method / cipher / routing",
         f"{s.get('method', '–')} / {s.get('cipher', '–')} / {s.get('routing', '–')}"),
        ("rounds done / planned",
         f"{_cell(s.get('rounds_done'))} / {_cell(s.get('rounds_planned'))}"),
        ("simulated time", _secs(s.get("sim_time_end_s"))),
        ("horizon", _secs(s.get("horizon_s")) if s.get("horizon_s") is not None else "none"),
        ("final global accuracy (test set, mean over clients)",
         _pct(s.get("final_global_acc"))),
        ("final local accuracy (held-out data, mean over clients)",
         _pct(s.get("final_local_acc"))),
        (f"time to target ({_pct(target)})" if math.isfinite(target) else "time to target",
         _secs(s.get("time_to_target_s"))),
        ("mean / min secret key rate per link",
         f"{_si(s.get('mean_skr_bps'), 'bit/s')} / {_si(s.get('min_skr_bps'), 'bit/s')}"),
        ("key generated / consumed / wasted",
         " / ".join(_si(s.get(k), "bit") for k in
                    ("key_generated_bits", "key_consumed_bits", "key_wasted_bits"))),
        ("time stalled on key (all transfers)", _secs(s.get("time_stalled_on_key_s"))),
        ("transfers delivered / failed",
         f"{_cell(s.get('transfers_delivered'))} / {_cell(s.get('transfers_failed'))}"),
        ("transfer latency p50 / p99",
         f"{_secs(s.get('transfer_latency_p50_s'))} / {_secs(s.get('transfer_latency_p99_s'))}"),
    ]  # fmt: skip
    exits = s.get("final_exit_acc")
    if isinstance(exits, list) and exits:
        label = (f"local accuracy at exit {' / '.join(str(k) for k in range(1, len(exits) + 1))}"
                 " (held-out data, mean over clients)")  # fmt: skip
        rows.insert(7, (label, " / ".join(_pct(a) for a in exits)))
    return rows


def _bottleneck_tables(run: RunFiles) -> str:
    parts: list[str] = []
    s = run.summary
    rounds = s.get("round_breakdown")
    if isinstance(rounds, list) and rounds:
        parts.append("<h3>Per round</h3>")
        header = ["round", "start", "end", "duration", *COMPONENTS, "step that ended it"]
        body = [
            [_cell(r.get("round")), _secs(r.get("start_s")), _secs(r.get("end_s")),
             _secs(r.get("duration_s")), *(_secs(r.get(c)) for c in COMPONENTS),
             str(r.get("critical", "–"))]
            for r in rounds
        ]  # fmt: skip
        num = [True] * (4 + len(COMPONENTS)) + [False]
        parts.append(f'<div class="scroll">{_table(header, body, numeric=num)}</div>')
    elif isinstance(s.get("time_share"), dict):
        parts.append("<h3>Share of round time (all rounds)</h3>")
        shares = s["time_share"]
        parts.append(_table(["component", "share of round time"],
                            [[c, _pct(shares.get(c))] for c in COMPONENTS if c in shares],
                            numeric=[False, True]))  # fmt: skip
        parts.append('<p class="note">This run predates the per-round breakdown; rerun it for '
                     "one row per round.</p>")  # fmt: skip
    table = _link_table(run)
    if table:
        table.sort(key=lambda r: (-(r["key_wait_s"] if math.isfinite(r["key_wait_s"]) else 0.0),
                                  -(r["utilisation"] if math.isfinite(r["utilisation"]) else 0.0),
                                  r["link"]))  # fmt: skip
        parts.append("<h3>Per link (most key wait first)</h3>")
        header = ["link", "length", "secret key rate", "key generated", "key consumed",
                  "key wasted", "key wait", "utilisation", "bytes sent"]  # fmt: skip
        body = [
            [r["link"], f"{r['length_km']:.3g} km" if math.isfinite(r["length_km"]) else "–",
             _si(r["skr_bps"], "bit/s"), _si(r["key_generated_bits"], "bit"),
             _si(r["key_consumed_bits"], "bit"), _si(r["key_wasted_bits"], "bit"),
             _secs(r["key_wait_s"]), _pct(r["utilisation"]), _si(r["bytes_sent"], "B")]
            for r in table
        ]  # fmt: skip
        parts.append(f'<div class="scroll">{_table(header, body, numeric=[False, *[True] * 8])}'
                     "</div>")  # fmt: skip
        if not isinstance(s.get("links"), list):
            parts.append('<p class="note">This run predates per-link accounting: key consumed '
                         "is summed from keypools.csv, bytes from transfers.csv; rerun it for "
                         "generated, wasted and utilisation.</p>")  # fmt: skip
    return "".join(parts)


def _run_sections(run: RunFiles, prefix: str, heading: str) -> list[tuple[str, str, str]]:
    """The sections of a run as (anchor, title, html)."""
    s = run.summary
    kv = _table([], _run_figures(run), numeric=[False, True]).replace(
        "<table>", '<table class="kv">', 1
    )
    intro = f'<p class="meta">{_esc(heading)}</p>' if heading else ""
    binds = s.get("binds")
    if binds:
        intro += f'<div class="verdict"><b>What binds:</b> {_esc(binds)}</div>'
    windows = sorted(s.get("window_waits") or [], key=lambda w: -w["waited_s"])
    if windows:
        items = "".join(f"<li>{_esc(w['sentence'])}</li>" for w in windows[:5])
        intro += f'<div class="verdict"><b>Key waited for a window:</b><ul>{items}</ul></div>'
    out = [(f"{prefix}summary", "Run summary", intro + kv)]
    out.append((f"{prefix}topology", "Topology",
                _figure_html(topology_figure(run), f"{prefix}fig-topology",
                             "No topology.json in this run folder (or too many nodes without "
                             "coordinates to lay out).")))  # fmt: skip
    out.append((f"{prefix}accuracy", "Accuracy",
                _figure_html(accuracy_figure(run), f"{prefix}fig-accuracy",
                             "No evaluation in metrics.csv (no round completed).")
                + _figure_html(client_keyrate_figure(run), f"{prefix}fig-clients",
                               "No per-client accuracy to set against key rates.")))  # fmt: skip
    out.append((f"{prefix}keypools", "Key pools",
                _figure_html(keypool_figure(run), f"{prefix}fig-keypools",
                             "No keypools.csv rows in this run folder.")))  # fmt: skip
    out.append((f"{prefix}bottlenecks", "Bottlenecks",
                _figure_html(bottleneck_figure(run), f"{prefix}fig-bottlenecks",
                             "No time breakdown in summary.json.")
                + _bottleneck_tables(run)))  # fmt: skip
    name = run.scenario.get("name") or s.get("scenario") or "–"
    desc = run.scenario.get("description") or ""
    yaml_html = (
        f'<pre class="yaml">{_esc(run.scenario_text)}</pre>'
        if run.scenario_text
        else '<p class="note">No scenario.yaml in this run folder.</p>'
    )
    scen = (
        f"<p><b>{_esc(name)}</b>{' — ' + _esc(desc) if desc else ''}</p>"
        f'<p class="note">The scenario as run (every default filled in), from '
        f"{_esc(run.folder / 'scenario.yaml')}:</p>{yaml_html}"
    )
    out.append((f"{prefix}scenario", "Scenario", scen))
    return out


def _sweep_sections(sw: SweepFiles) -> list[tuple[str, str, str]]:
    grid = [k for k in (sw.meta.get("grid") or {}) if sw.rows and k in sw.rows[0]]
    x = str(sw.meta.get("x") or "mean_skr_bps")
    cols = ["slug", *grid, "status", x, "rounds_done", "final_global_acc", "final_local_acc",
            "time_to_target_s", "sim_time_end_s", "time_stalled_on_key_s", "transfers_failed",
            "error"]  # fmt: skip
    have = [c for c in dict.fromkeys(cols) if sw.rows and c in sw.rows[0]]
    names = {
        "slug": "point",
        "final_global_acc": "final global acc.",
        "final_local_acc": "final local acc.",
        "time_to_target_s": "time to target (s)",
        "sim_time_end_s": "end of last round (s)",
        "mean_skr_bps": "mean SKR (bit/s)",
        "time_stalled_on_key_s": "stalled on key (s)",
        "rounds_done": "rounds",
    }
    body = []
    for r in sw.rows:
        body.append([_pct(r.get(c)) if c.endswith("_acc") else _cell(r.get(c)) for c in have])
    num = [c not in ("slug", "status", "error", "series") and c not in grid for c in have]
    failed = [r for r in sw.rows if r.get("status") not in ("", "complete")]
    note = (
        f'<p class="note">{len(failed)} of {len(sw.rows)} points did not complete; see their '
        "error column.</p>"
        if failed
        else ""
    )
    table = _table([names.get(c, c) for c in have], body, numeric=num)
    return [
        ("sweep", "Key rate vs accuracy",
         _figure_html(sweep_figure(sw), "fig-sweep", "No complete point to draw.")),
        ("points", f"Points ({len(sw.rows)})", note + f'<div class="scroll">{table}</div>'),
    ]  # fmt: skip


def _plan_sections(pf: PlanFiles) -> tuple[str, list[tuple[str, str, str]]]:
    """The answer box and the plan's sections."""
    plan = pf.plan
    q = plan.get("question") or ""
    box = (
        '<div class="answer" id="answer">'
        + (f'<div class="q">Question: {_esc(q)}</div>' if q else "")
        + f'<div class="a">{_esc(plan.get("answer", ""))}</div></div>'
    )
    facts = []
    if plan["kind"] == "threshold":
        for k, label in (("vary", "varied"), ("target", "target"), ("within_s", "within")):
            v = plan.get(k)
            if v is not None:
                shown = _secs(v) if k == "within_s" else _cell(v)
                if k == "target" and isinstance(v, int | float) and v <= 1:
                    shown = _pct(v)
                facts.append(f"{label}: <b>{_esc(shown)}</b>")
        bracket = plan.get("bracket") or {}
        if bracket:
            facts.append(
                f"fails at <b>{_esc(_cell(bracket.get('fails_at')))}</b>, holds at "
                f"<b>{_esc(_cell(bracket.get('holds_at')))}</b>"
            )
    columns = [str(c) for c in plan.get("columns", [])] or sorted(
        {k for r in plan.get("rows", []) for k in r}
    )
    rows = plan.get("rows", [])
    body = [[_cell(r.get(c)) for c in columns] for r in rows]
    num = [
        bool(rows) and all(isinstance(r.get(c), int | float) or r.get(c) is None for r in rows)
        for c in columns
    ]
    html_parts = (
        f'<p class="meta">{" · ".join(facts)}</p>' if facts else ""
    ) + f'<div class="scroll">{_table(columns, body, numeric=num)}</div>'
    sections = [("plan", f"The {plan['kind']} plan ({len(rows)} rows)", html_parts)]
    if plan["kind"] == "threshold":
        sections.append(
            (
                "threshold",
                "Evaluated points",
                _figure_html(
                    threshold_figure(pf),
                    "fig-threshold",
                    "The plan's rows do not carry the varied value.",
                ),
            )
        )
    return box, sections


def render_report(folder: Path) -> str:
    """The HTML report of a run, sweep or plan folder, as one self-contained page.

    Parameters
    ----------
    folder : Path
        A run folder (``qfl simulate``), a sweep folder (``qfl sweep``) or a plan folder
        (``qfl plan``).

    Returns
    -------
    str
        The page: Plotly's JavaScript inlined once, then every chart's data.

    Raises
    ------
    ScenarioError
        Naming the file, if the folder is none of the three kinds or a file is malformed.
    """
    from plotly.offline import get_plotlyjs

    kind = folder_kind(folder)
    top = ""
    sections: list[tuple[str, str, str]] = []
    run: RunFiles | None
    if kind == "plan":
        pf = load_plan(folder)
        title = f"{pf.plan['kind']} plan: {pf.plan.get('scenario') or folder.name}"
        top, sections = _plan_sections(pf)
        run, why = pf.run, pf.why
    elif kind == "sweep":
        sw = load_sweep(folder)
        title = f"sweep {sw.meta.get('name') or folder.name}"
        sections = _sweep_sections(sw)
        run, why = sw.run, sw.why
    else:
        run, why = load_run(folder), ""
        title = f"run of {run.scenario.get('name') or run.summary.get('scenario') or folder.name}"
    if run is not None:
        heading = ""
        if kind != "run":
            heading = (f"Representative run: {run.folder.relative_to(folder)} ({why}). "
                       "The sections below are of this run.")  # fmt: skip
        sections += _run_sections(run, "" if kind == "run" else "rep-", heading)
    else:
        sections.append(("run", "Representative run",
                         f'<p class="note">No run to show: {_esc(why)}.</p>'))  # fmt: skip
    scenario = run.scenario if run is not None else {}
    desc = scenario.get("description") or ""
    nav = "".join(f'<a href="#{a}">{_esc(t)}</a>' for a, t, _ in sections)
    body = "".join(f'<section id="{a}"><h2>{_esc(t)}</h2>{h}</section>' for a, t, h in sections)
    from qfl import __version__

    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>qfl report: {_esc(title)}</title>"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<style>{_CSS}</style>"
        f'<script type="text/javascript">{get_plotlyjs()}</script>'
        "</head><body><main>"
        f"<h1>{_esc(title)}</h1>"
        + (f'<p class="meta">{_esc(desc)}</p>' if desc else "")
        + f'<p class="meta">{_esc(kind)} folder: {_esc(folder.resolve())}</p>'
        f"<nav>{nav}</nav>{top}{body}"
        f"<footer>Made by qfl {_esc(__version__)} (qfl report) from the files of this folder; "
        "the page needs no network: Plotly and the data are inside it.</footer>"
        "</main></body></html>\n"
    )


def write_report(folder: Path, out: Path | None = None) -> Path:
    """Write the report of ``folder`` (see :func:`render_report`) to ``out`` (default
    ``folder/report.html``), atomically: a reader never sees half a file.

    Returns
    -------
    Path
        The file written.
    """
    page = render_report(folder)
    out = folder / "report.html" if out is None else out
    fd, tmp = tempfile.mkstemp(prefix=".report-", suffix=".html", dir=out.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(page)
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide the report from its readers
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out
