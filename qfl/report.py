"""One self-contained HTML report of a run, sweep or plan folder (``qfl report DIR``).

The report is built from the files a folder holds (nothing is simulated again) and is one
HTML file that opens without a network: the Plotly library and every chart's data are
inlined. It shows, for a **run folder**: the scenario (name, description, YAML), the run's
key figures, the topology with each link's key rate and channel utilisation, accuracy over
simulated time, the key-pool levels, each client's key rate against its accuracy, and the
bottleneck tables (per round and per link). A **sweep folder** adds the key rate vs
accuracy chart and the table of its points; a **plan folder** adds the plan's answer in a
box at the top, its table and, for a threshold plan, the chart of the evaluated points.
Sweeps and plans embed one representative run (their baseline point, else the first
complete point) for the run sections.

Plotly is an optional dependency (``pip install 'qfl[report]'``); it is imported only when
a report is drawn (:func:`require_plotly`).

Examples
--------
>>> folder_kind(Path("/nonexistent"))  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
qfl.scenario.ScenarioError: /nonexistent: not a folder ...
"""

from __future__ import annotations

import csv
import html
import io
import itertools
import json
import math
import os
import tempfile
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qfl.scenario import ScenarioError, load_yaml, read_text
from qkd.errors import QflError

if TYPE_CHECKING:
    import plotly.graph_objects as go

__all__ = [
    "PLAN_KINDS",
    "REPORT_KINDS",
    "PlanFiles",
    "RunFiles",
    "SweepFiles",
    "folder_kind",
    "load_plan",
    "load_run",
    "load_sweep",
    "render_report",
    "require_plotly",
    "write_report",
]

REPORT_KINDS = ("run", "sweep", "plan")
"""The kinds of folder a report is made of."""
PLAN_KINDS = ("threshold", "contingency", "upgrade")
"""The kinds of plan (``plan.json``'s ``kind``)."""

COMPONENTS = ("compute", "key", "bandwidth", "propagation", "blocked")
_COMPONENT_COLOURS = {
    "compute": "#4c78a8",
    "key": "#e45756",
    "bandwidth": "#f58518",
    "propagation": "#72b7b2",
    "blocked": "#9d755d",
}
_ROLE_STYLE = {  # marker symbol, colour
    "client": ("circle", "#1f77b4"),
    "server": ("square", "#d62728"),
    "relay": ("diamond", "#666666"),
}
_SERIES_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b")
_LINK_LABELS = 30
"""Up to this many links are labelled on the map with their key rate."""
_LINK_TRACES = 300
"""Up to this many links are drawn one trace each (width = utilisation); more are drawn as
one trace per key-rate colour band."""
_LAYOUT_LIMIT = 1500
"""Above this many nodes without coordinates no map is laid out."""
_KEYPOOL_LINKS = 12
"""The links that used the most key shown at first in the key-pool chart (the others can
be switched on in its legend)."""
_KEYPOOL_VERTICES = 4000
"""At most this many vertices of one link's key-pool polyline are drawn."""
_PLOTLY_CONFIG = {
    "displaylogo": False,
    "responsive": True,
    "toImageButtonOptions": {"format": "png", "scale": 2},
}

Row = Mapping[str, Any]


# ---------------------------------------------------------------------------------------
# Reading the folder
# ---------------------------------------------------------------------------------------


def require_plotly() -> None:
    """Check that Plotly can be imported.

    Raises
    ------
    QflError
        If it cannot, with the command that installs it.
    """
    try:
        import plotly  # noqa: F401
    except ImportError:
        raise QflError(
            "qfl report needs plotly, which is not installed: pip install 'qfl[report]'"
        ) from None


def folder_kind(folder: Path) -> str:
    """What a folder holds: ``"plan"`` (``plan.json``), ``"sweep"`` (``sweep.csv`` or
    ``sweep.json``) or ``"run"`` (``summary.json`` and ``metrics.csv``).

    Raises
    ------
    ScenarioError
        On the folder, if it is none of those.
    """
    if not folder.is_dir():
        raise ScenarioError(str(folder), "not a folder (give a run, sweep or plan folder)")
    if (folder / "plan.json").is_file():
        return "plan"
    if (folder / "sweep.csv").is_file() or (folder / "sweep.json").is_file():
        return "sweep"
    if (folder / "summary.json").is_file() and (folder / "metrics.csv").is_file():
        return "run"
    raise ScenarioError(
        str(folder),
        "not a run, sweep or plan folder (no summary.json and metrics.csv, no sweep.csv, "
        "no plan.json): give the folder qfl simulate, qfl sweep or qfl plan wrote",
    )


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ScenarioError(str(path), f"cannot read the file ({exc.strerror})") from None
    except (UnicodeDecodeError, ValueError) as exc:
        why = " ".join(str(exc).split())[:160]
        raise ScenarioError(str(path), f"malformed JSON ({why}); rerun or restore it") from None


def _json_object(path: Path) -> dict[str, Any]:
    data = _read_json(path)
    if not isinstance(data, dict):
        raise ScenarioError(str(path), f"must hold a JSON object, got {type(data).__name__}")
    return data


def _read_csv(
    path: Path, columns: Sequence[str] = (), numeric: Sequence[str] = ()
) -> list[dict[str, str]]:
    """The rows of a CSV file, after checking that it has ``columns``, that every row has
    as many fields as the header and that the ``numeric`` columns it has hold numbers (or
    nothing); otherwise a :class:`ScenarioError` names the file and the row."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(str(path), f"cannot read the file ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise ScenarioError(str(path), "malformed CSV (not UTF-8); rerun or restore it") from None
    try:
        table = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as exc:
        raise ScenarioError(str(path), f"malformed CSV ({exc}); rerun or restore it") from None
    if not table:
        raise ScenarioError(str(path), "empty file (no header row); rerun or restore it")
    header = table[0]
    missing = [c for c in columns if c not in header]
    if missing:
        raise ScenarioError(
            str(path), f"missing column(s) {', '.join(missing)} (it has: {', '.join(header)})"
        )
    rows: list[dict[str, str]] = []
    checked = [c for c in numeric if c in header]
    for line, fields in enumerate(table[1:], start=2):
        if not fields:
            continue
        if len(fields) != len(header):
            raise ScenarioError(
                str(path),
                f"line {line} has {len(fields)} fields, the header {len(header)}; "
                "rerun or restore it",
            )
        row = dict(zip(header, fields, strict=True))
        for c in checked:
            v = row[c].strip()
            if v:
                try:
                    float(v)
                except ValueError:
                    raise ScenarioError(
                        str(path), f"line {line}: column {c} is not a number: {v!r}"
                    ) from None
        rows.append(row)
    return rows


def _check_records(path: Path, data: Mapping[str, Any], key: str, text: str) -> None:
    """``data[key]``, if present, is a list of objects whose ``text`` field is a string."""
    value = data.get(key)
    if value is None:
        return
    if not isinstance(value, list) or not all(isinstance(r, dict) for r in value):
        raise ScenarioError(str(path), f"{key} must be a list of objects")
    for i, r in enumerate(value):
        if text in r and not isinstance(r[text], str | int):
            raise ScenarioError(str(path), f"{key}[{i}].{text} must be a string")
        for k, v in r.items():
            if k != text and v is not None and not isinstance(v, int | float | str):
                raise ScenarioError(str(path), f"{key}[{i}].{k} must be a number, got {v!r}")


def _check_number_map(path: Path, data: Mapping[str, Any], key: str) -> None:
    value = data.get(key)
    if value is None:
        return
    if not isinstance(value, dict) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in value.values()
    ):
        raise ScenarioError(str(path), f"{key} must map names to numbers, got {value!r:.80}")


@dataclass(frozen=True)
class RunFiles:
    """What a run folder holds, as read and checked by :func:`load_run`.

    Attributes
    ----------
    folder : Path
        The run folder.
    summary : dict
        ``summary.json``.
    scenario_text : str
        ``scenario.yaml`` as written ('' if absent).
    scenario : dict
        ``scenario.yaml`` parsed ({} if absent).
    topology : dict
        ``topology.json`` ({} if absent): ``nodes`` and ``links`` lists.
    metrics, keypools, transfers : list of dict
        The rows of ``metrics.csv``, ``keypools.csv`` and ``transfers.csv`` ([] if absent).
    """

    folder: Path
    summary: dict[str, Any]
    scenario_text: str
    scenario: dict[str, Any]
    topology: dict[str, Any]
    metrics: list[dict[str, str]]
    keypools: list[dict[str, str]]
    transfers: list[dict[str, str]]


def load_run(folder: Path) -> RunFiles:
    """Read and check the files of a run folder that the report uses.

    Raises
    ------
    ScenarioError
        On the first file that is missing (``summary.json``, ``metrics.csv``) or malformed.
    """
    summary_path = folder / "summary.json"
    if not summary_path.is_file():
        raise ScenarioError(str(folder), "not a run folder (no summary.json)")
    summary = _json_object(summary_path)
    _check_records(summary_path, summary, "round_breakdown", "critical")
    _check_records(summary_path, summary, "links", "link")
    _check_number_map(summary_path, summary, "time_share")
    _check_number_map(summary_path, summary, "key_wait_by_link_s")
    metrics_path = folder / "metrics.csv"
    if not metrics_path.is_file():
        raise ScenarioError(str(folder), "not a run folder (no metrics.csv)")
    metrics = _read_csv(
        metrics_path,
        ("sim_time_s", "node", "global_acc"),
        ("sim_time_s", "round", "global_acc", "local_acc"),
    )
    scenario_text, scenario = "", {}
    if (folder / "scenario.yaml").is_file():
        scenario_text = read_text(folder / "scenario.yaml")
        parsed = load_yaml(scenario_text, str(folder / "scenario.yaml"))
        if not isinstance(parsed, dict):
            raise ScenarioError(str(folder / "scenario.yaml"), "must hold a YAML mapping")
        scenario = parsed
    topology: dict[str, Any] = {}
    topo_path = folder / "topology.json"
    if topo_path.is_file():
        topology = _json_object(topo_path)
        nodes, links = topology.get("nodes"), topology.get("links")
        if not isinstance(nodes, list) or not isinstance(links, list):
            raise ScenarioError(str(topo_path), "must hold lists 'nodes' and 'links'")
        for i, n in enumerate(nodes):
            if not isinstance(n, dict) or not isinstance(n.get("name"), str):
                raise ScenarioError(str(topo_path), f"nodes[{i}] must be an object with a name")
        for i, lk in enumerate(links):
            if not (
                isinstance(lk, dict)
                and isinstance(lk.get("a"), str)
                and isinstance(lk.get("b"), str)
            ):
                raise ScenarioError(str(topo_path), f"links[{i}] must be an object with a and b")
            if lk.get("skr_bps") is not None and not isinstance(lk["skr_bps"], int | float):
                raise ScenarioError(
                    str(topo_path), f"links[{i}].skr_bps must be a number, got {lk['skr_bps']!r}"
                )
    keypools: list[dict[str, str]] = []
    if (folder / "keypools.csv").is_file():
        keypools = _read_csv(
            folder / "keypools.csv",
            ("sim_time_s", "link", "level_bits"),
            ("sim_time_s", "bits", "level_bits"),
        )
    transfers: list[dict[str, str]] = []
    if (folder / "transfers.csv").is_file():
        transfers = _read_csv(folder / "transfers.csv", (), ("n_bytes", "key_wait_s", "total_s"))
    return RunFiles(
        folder, summary, scenario_text, scenario, topology, metrics, keypools, transfers
    )


def _run_is_complete(folder: Path) -> tuple[bool, float]:
    """Whether ``folder`` holds a run whose summary says ``complete``, and its rounds."""
    path = folder / "summary.json"
    if not (path.is_file() and (folder / "metrics.csv").is_file()):
        return False, 0.0
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return False, 0.0
    if not isinstance(data, dict) or data.get("status") != "complete":
        return False, 0.0
    return True, _num(data.get("rounds_done"))


def _representative(
    folder: Path, slugs: Iterable[str], preferred: tuple[str, str] | None = None
) -> tuple[Path | None, str]:
    """The point to show as the representative run: ``preferred`` (a slug and why) if it
    is complete, else one named ``baseline``, else the first complete point (of ``slugs``,
    then of ``points/``) that completed a round, else the first complete point. Returns
    its folder (None if none) and why it was chosen."""
    points = folder / "points"
    if preferred is not None and _run_is_complete(points / preferred[0])[0]:
        if "/" not in preferred[0] and preferred[0] not in ("", ".", ".."):
            return points / preferred[0], preferred[1]
    ordered = [s for s in slugs if s]
    if points.is_dir():
        ordered += sorted(p.name for p in points.iterdir() if p.is_dir())
    seen: list[str] = []
    for s in ordered:
        if s not in seen and "/" not in s and s not in (".", ".."):
            seen.append(s)
    state = {s: _run_is_complete(points / s) for s in seen}
    for s in seen:
        if "baseline" in s.lower() and state[s][0]:
            return points / s, "the baseline point"
    for s in seen:
        ok, rounds = state[s]
        if ok and rounds > 0:
            return points / s, "the first complete point that completed a round"
    for s in seen:
        if state[s][0]:
            return points / s, "the first complete point (it completed no round)"
    return None, "no complete point"


@dataclass(frozen=True)
class SweepFiles:
    """What a sweep folder holds: ``sweep.json`` (``meta``), ``sweep.csv`` (``rows``) and
    the representative point (``run``, None if no point is complete; ``why`` says which)."""

    folder: Path
    meta: dict[str, Any]
    rows: list[dict[str, str]]
    run: RunFiles | None
    why: str


def load_sweep(folder: Path) -> SweepFiles:
    """Read and check a sweep folder's ``sweep.json``, ``sweep.csv`` and its
    representative point.

    Raises
    ------
    ScenarioError
        On the first file that is missing or malformed.
    """
    meta: dict[str, Any] = {}
    if (folder / "sweep.json").is_file():
        meta = _json_object(folder / "sweep.json")
        if "grid" in meta and not isinstance(meta["grid"], dict):
            raise ScenarioError(str(folder / "sweep.json"), "grid must be an object")
        for k in ("x", "series", "x_label", "name", "base"):
            if meta.get(k) is not None and not isinstance(meta[k], str):
                raise ScenarioError(str(folder / "sweep.json"), f"{k} must be a string")
    if not (folder / "sweep.csv").is_file():
        raise ScenarioError(str(folder), "a sweep folder without sweep.csv; rerun the sweep")
    x = str(meta.get("x") or "mean_skr_bps")
    rows = _read_csv(
        folder / "sweep.csv",
        ("slug", "status", x),
        (x, "final_global_acc", "final_local_acc", "rounds_done", "time_to_target_s",
         "sim_time_end_s", "mean_skr_bps"),
    )  # fmt: skip
    rep, why = _representative(folder, [r.get("slug", "") for r in rows])
    return SweepFiles(folder, meta, rows, load_run(rep) if rep else None, why)


@dataclass(frozen=True)
class PlanFiles:
    """What a plan folder holds: ``plan.json`` (``plan``) and the representative point
    (``run``, None if no point is complete; ``why`` says which)."""

    folder: Path
    plan: dict[str, Any]
    run: RunFiles | None
    why: str


def _plan_preferred(plan: Mapping[str, Any]) -> tuple[str, str] | None:
    """The point a plan's report shows: a threshold plan's point at its answer (where the
    target first holds), another plan's baseline row (a row that says ``baseline``)."""
    rows = [r for r in plan.get("rows", []) if isinstance(r.get("slug"), str)]
    if plan.get("kind") == "threshold":
        holds = _num((plan.get("bracket") or {}).get("holds_at"))
        vary = str(plan.get("vary") or "")
        for key in (vary, vary.rpartition(".")[2], "value"):
            for r in rows:
                v = _num(r.get(key)) if key else math.nan
                if (
                    math.isfinite(holds)
                    and math.isfinite(v)
                    and math.isclose(v, holds, rel_tol=1e-3)
                ):
                    return r["slug"], f"the point at the answer, {key} = {holds:.4g}"
        return None
    for r in rows:
        if any(isinstance(v, str) and "baseline" in v.lower() for v in r.values()):
            return r["slug"], "the baseline point"
    return None


def load_plan(folder: Path) -> PlanFiles:
    """Read and check a plan folder's ``plan.json`` (and ``plan.csv`` if present) and its
    representative point.

    Raises
    ------
    ScenarioError
        On the first file that is missing or malformed.
    """
    path = folder / "plan.json"
    plan = _json_object(path)
    kind = plan.get("kind")
    if kind not in PLAN_KINDS:
        allowed = ", ".join(repr(k) for k in PLAN_KINDS)
        raise ScenarioError(str(path), f"kind must be one of {allowed}, got {kind!r}")
    for k in ("answer", "question", "scenario", "vary"):
        if k == "answer" and k not in plan:
            raise ScenarioError(str(path), "missing 'answer'")
        if plan.get(k) is not None and not isinstance(plan[k], str):
            raise ScenarioError(str(path), f"{k} must be a string, got {plan[k]!r:.60}")
    columns, rows = plan.get("columns", []), plan.get("rows", [])
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        raise ScenarioError(str(path), "columns must be a list of strings")
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise ScenarioError(str(path), "rows must be a list of objects")
    for k in ("target", "within_s"):
        v = plan.get(k)
        if v is not None and (not isinstance(v, int | float) or isinstance(v, bool)):
            raise ScenarioError(str(path), f"{k} must be a number or null, got {v!r:.60}")
    bracket = plan.get("bracket")
    if bracket is not None:
        if not isinstance(bracket, dict):
            raise ScenarioError(str(path), "bracket must be an object (fails_at, holds_at)")
        for k in ("fails_at", "holds_at"):
            v = bracket.get(k)
            if v is not None and (not isinstance(v, int | float) or isinstance(v, bool)):
                raise ScenarioError(str(path), f"bracket.{k} must be a number or null, got {v!r}")
    if (folder / "plan.csv").is_file():
        _read_csv(folder / "plan.csv")
    slugs = [str(r.get("slug") or r.get("point") or "") for r in rows]
    rep, why = _representative(folder, slugs, _plan_preferred(plan))
    return PlanFiles(folder, plan, load_run(rep) if rep else None, why)


# ---------------------------------------------------------------------------------------
# Numbers and words
# ---------------------------------------------------------------------------------------


def _num(v: Any) -> float:
    if v is None or v == "" or isinstance(v, bool):
        return math.nan
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def _si(v: Any, unit: str) -> str:
    """A value with an SI prefix and 3 significant digits.

    Examples
    --------
    >>> _si(11612303.2, "bit/s"), _si(256, "bit"), _si(None, "B")
    ('11.6 Mbit/s', '256 bit', '–')
    """
    x = _num(v)
    if not math.isfinite(x):
        return "–"
    for factor, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= factor:
            return f"{x / factor:.3g} {prefix}{unit}"
    return f"{x:.3g} {unit}"


def _secs(v: Any) -> str:
    """A duration in s, min or h.

    Examples
    --------
    >>> _secs(3.8614), _secs(600), _secs(None)
    ('3.86 s', '10 min', '–')
    """
    x = _num(v)
    if not math.isfinite(x):
        return "–"
    if abs(x) >= 2 * 3600:
        return f"{x / 3600:.3g} h"
    if abs(x) >= 120:
        return f"{x / 60:.3g} min"
    return f"{x:.3g} s"


def _pct(v: Any) -> str:
    """A fraction as a percentage.

    Examples
    --------
    >>> _pct(0.2186857), _pct(""), _pct(0.00043)
    ('21.9 %', '–', '0.043 %')
    """
    x = _num(v)
    return f"{100 * x:.3g} %" if math.isfinite(x) else "–"


def _cell(v: Any) -> str:
    """A table cell: numbers with 4 significant digits, nothing as a dash."""
    if v is None or v == "":
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return f"{v:.4g}" if math.isfinite(v) else "–"
    if isinstance(v, str):
        try:
            x = float(v)
        except ValueError:
            return v
        if v.strip().lstrip("-").isdigit():
            return v.strip()
        return f"{x:.4g}" if math.isfinite(x) else "–"
    if isinstance(v, list | dict):
        return json.dumps(v)
    return str(v)


def _time_unit(times: Iterable[float]) -> tuple[float, str]:
    top = max((t for t in times if math.isfinite(t)), default=0.0)
    if top >= 2 * 3600:
        return 3600.0, "h"
    if top >= 120:
        return 60.0, "min"
    return 1.0, "s"


def _esc(v: Any) -> str:
    return html.escape(str(v), quote=True)


# ---------------------------------------------------------------------------------------
# Charts (Plotly)
# ---------------------------------------------------------------------------------------


def _style(fig: go.Figure, title: str, *, height: int, subtitle: str = "") -> None:
    text = f"<b>{html.escape(title)}</b>"
    if subtitle:
        text += f"<br><span style='font-size:12px;color:#555'>{html.escape(subtitle)}</span>"
    fig.update_layout(
        template="plotly_white",
        title={"text": text, "x": 0.01, "xanchor": "left"},
        height=height,
        margin={"l": 70, "r": 30, "t": 80 if subtitle else 60, "b": 60},
        font={"family": "system-ui, -apple-system, Segoe UI, Roboto, Arial, sans-serif",
              "size": 13},
        legend={"bgcolor": "rgba(255,255,255,0.8)"},
        hoverlabel={"namelength": -1},
    )  # fmt: skip


def _link_table(run: RunFiles) -> list[dict[str, Any]]:
    """One row per link: ``link``, ``a``, ``b``, ``length_km``, ``skr_bps``, the key
    accounting, ``key_wait_s``, ``utilisation`` and ``bytes_sent`` (NaN where the run's
    files do not say: older runs without ``summary.json``'s ``links``)."""
    by_name: dict[str, dict[str, Any]] = {}
    for lk in run.topology.get("links", []):
        name = f"{lk['a']}-{lk['b']}"
        by_name[name] = {
            "link": name,
            "a": lk["a"],
            "b": lk["b"],
            "length_km": _num(lk.get("length_km")),
            "skr_bps": _num(lk.get("skr_bps")),
        }
    blank = {k: math.nan for k in ("key_generated_bits", "key_consumed_bits", "key_wasted_bits",
                                   "key_wait_s", "utilisation", "bytes_sent")}  # fmt: skip
    links = run.summary.get("links")
    if isinstance(links, list):
        for r in links:
            name = str(r.get("link"))
            a, _, b = name.partition("-")
            row = by_name.setdefault(name, {"link": name, "a": a, "b": b, "length_km": math.nan,
                                            "skr_bps": math.nan})  # fmt: skip
            row.update(blank)
            for k in (*blank, "skr_bps"):
                if k in r:
                    row[k] = _num(r[k])
        return list(by_name.values())
    waits = run.summary.get("key_wait_by_link_s") or {}
    consumed: dict[str, float] = defaultdict(float)
    for r in run.keypools:
        if r.get("event") == "take":
            consumed[r["link"]] += max(0.0, _num(r.get("bits")) if r.get("bits") else 0.0)
    sent: dict[str, float] = defaultdict(float)
    for t in run.transfers:
        if t.get("status") != "delivered":
            continue
        hops = str(t.get("path") or "").split(">")
        for u, v in itertools.pairwise(hops):
            name = f"{u}-{v}" if f"{u}-{v}" in by_name else f"{v}-{u}"
            sent[name] += _num(t.get("n_bytes")) if t.get("n_bytes") else 0.0
    for name, row in by_name.items():
        row.update(blank)
        row["key_wait_s"] = _num(waits.get(name, 0.0))
        if run.keypools:
            row["key_consumed_bits"] = consumed.get(name, 0.0)
        if run.transfers:
            row["bytes_sent"] = sent.get(name, 0.0)
    return list(by_name.values())


def _positions(
    nodes: Sequence[Row], links: Sequence[Row]
) -> tuple[dict[str, tuple[float, float]], bool]:
    """Node positions: longitude/latitude when every node has them, else a layout of the
    graph (Kamada-Kawai, or a quick force layout above 500 nodes); {} above
    :data:`_LAYOUT_LIMIT` nodes without coordinates. Also whether they are coordinates."""
    import networkx as nx

    names = [str(n["name"]) for n in nodes]
    geo = bool(nodes) and all(
        math.isfinite(_num(n.get("latitude"))) and math.isfinite(_num(n.get("longitude")))
        for n in nodes
    )
    if geo:
        return {str(n["name"]): (_num(n["longitude"]), _num(n["latitude"])) for n in nodes}, True
    if len(names) > _LAYOUT_LIMIT:
        return {}, False
    g = nx.Graph()
    g.add_nodes_from(names)
    g.add_edges_from((str(lk["a"]), str(lk["b"])) for lk in links)
    if 2 < len(names) <= 500:
        pos = nx.kamada_kawai_layout(g)
    else:
        pos = nx.spring_layout(g, seed=0, iterations=50)
    return {k: (float(v[0]), float(v[1])) for k, v in pos.items()}, False


def _final_acc_by_node(run: RunFiles) -> dict[str, float]:
    last: dict[str, tuple[float, float]] = {}
    for r in run.metrics:
        t, acc = _num(r.get("sim_time_s")), _num(r.get("global_acc"))
        if not math.isfinite(acc):
            acc = _num(r.get("local_acc"))
        node = str(r.get("node"))
        if math.isfinite(t) and (node not in last or t >= last[node][0]):
            last[node] = (t, acc)
    return {k: v[1] for k, v in last.items()}


def topology_figure(run: RunFiles) -> go.Figure | None:
    """The topology: links coloured by secret key rate (log scale), their width by channel
    utilisation (relative to the busiest link), nodes by role; hover for every figure.
    None when the run has no ``topology.json`` or too many nodes to lay out."""
    import plotly.graph_objects as go
    from plotly.colors import sample_colorscale

    nodes = run.topology.get("nodes") or []
    links_in = run.topology.get("links") or []
    if not nodes:
        return None
    pos, geo = _positions(nodes, links_in)
    if not pos:
        return None
    table = _link_table(run)
    rates = [r["skr_bps"] for r in table if math.isfinite(r["skr_bps"]) and r["skr_bps"] > 0]
    lo, hi = (math.log10(min(rates)), math.log10(max(rates))) if rates else (0.0, 1.0)
    if hi - lo < 1e-9:
        lo, hi = lo - 0.5, hi + 0.5
    util = [r["utilisation"] for r in table if math.isfinite(r["utilisation"])]
    u_max = max(util, default=0.0)
    fig = go.Figure()

    def colour(skr: float) -> str:
        if not (math.isfinite(skr) and skr > 0):
            return "#d62728"
        return str(sample_colorscale("Viridis", [(math.log10(skr) - lo) / (hi - lo)])[0])

    mids: dict[str, list[Any]] = {"x": [], "y": [], "c": [], "text": []}
    drawn = [r for r in table if r["a"] in pos and r["b"] in pos]
    per_link = len(drawn) <= _LINK_TRACES
    bands: dict[str, tuple[list[float | None], list[float | None]]] = defaultdict(lambda: ([], []))
    for r in drawn:
        (x0, y0), (x1, y1) = pos[r["a"]], pos[r["b"]]
        skr, u = r["skr_bps"], r["utilisation"]
        keyed = math.isfinite(skr) and skr > 0
        if per_link:
            width = 2.5 + (7.0 * u / u_max if u_max > 0 and math.isfinite(u) else 0.0)
            fig.add_trace(go.Scatter(
                x=[x0, x1], y=[y0, y1], mode="lines", hoverinfo="skip", showlegend=False,
                line={"color": colour(skr), "width": width, "dash": "solid" if keyed else "dash"},
            ))  # fmt: skip
        else:
            xs, ys = bands[colour(skr)]
            xs += [x0, x1, None]
            ys += [y0, y1, None]
        lines = [
            f"<b>{html.escape(r['link'])}</b>",
            f"secret key rate: {_si(skr, 'bit/s')}" + ("" if keyed else " (no key)"),
        ]
        if math.isfinite(r["length_km"]):
            lines.append(f"length: {r['length_km']:.3g} km")
        lines += [
            f"channel utilisation: {_pct(r['utilisation'])}",
            f"key wait: {_secs(r['key_wait_s'])}",
            f"key consumed: {_si(r['key_consumed_bits'], 'bit')}",
            f"key generated: {_si(r['key_generated_bits'], 'bit')}",
            f"key wasted: {_si(r['key_wasted_bits'], 'bit')}",
            f"bytes sent: {_si(r['bytes_sent'], 'B')}",
        ]
        mids["x"].append((x0 + x1) / 2)
        mids["y"].append((y0 + y1) / 2)
        mids["c"].append(math.log10(skr) if keyed else lo)
        mids["text"].append("<br>".join(lines))
    for col, (xs, ys) in bands.items():
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", hoverinfo="skip", showlegend=False,
                                 line={"color": col, "width": 1.5}))  # fmt: skip
    ticks = [
        math.log10(m * 10.0**k)
        for k in range(math.floor(lo) - 1, math.ceil(hi) + 1)
        for m in ((1, 2, 5) if hi - lo < 3 else (1,))
        if lo - 1e-9 <= math.log10(m * 10.0**k) <= hi + 1e-9
    ] or [lo, hi]
    fig.add_trace(go.Scatter(
        x=mids["x"], y=mids["y"], mode="markers", name="links", showlegend=False,
        hovertext=mids["text"], hoverinfo="text",
        marker={"size": 10, "opacity": 0.0, "color": mids["c"], "colorscale": "Viridis",
                "cmin": lo, "cmax": hi, "showscale": True,
                "colorbar": {"title": {"text": "secret key<br>rate", "side": "top"},
                             "tickvals": ticks,
                             "ticktext": [_si(10.0**t, "bit/s") for t in ticks],
                             "thickness": 14, "len": 0.8}},
    ))  # fmt: skip
    if len(drawn) <= _LINK_LABELS:
        for x, y, r in zip(mids["x"], mids["y"], drawn, strict=True):
            label = _si(r["skr_bps"], "bit/s")
            if math.isfinite(r["utilisation"]):
                label += f" · {_pct(r['utilisation'])}"
            fig.add_annotation(x=x, y=y, text=label, showarrow=False,
                               font={"size": 10, "color": "#333"},
                               bgcolor="rgba(255,255,255,0.8)", borderpad=1)  # fmt: skip
    acc = _final_acc_by_node(run)
    by_role: dict[str, list[Row]] = defaultdict(list)
    for n in nodes:
        if str(n["name"]) in pos:
            by_role[str(n.get("role") or "client")].append(n)
    labels = len(nodes) <= 60
    for role, ns in sorted(by_role.items()):
        symbol, col = _ROLE_STYLE.get(role, ("circle", "#1f77b4"))
        hover = []
        for n in ns:
            h = f"<b>{html.escape(str(n['name']))}</b><br>role: {html.escape(role)}"
            if n.get("flops_per_s") is not None:
                h += f"<br>compute: {_si(n['flops_per_s'], 'FLOP/s')}"
            if str(n["name"]) in acc:
                h += f"<br>final accuracy: {_pct(acc[str(n['name'])])}"
            hover.append(h)
        fig.add_trace(go.Scatter(
            x=[pos[str(n["name"])][0] for n in ns], y=[pos[str(n["name"])][1] for n in ns],
            mode="markers", name=role, hovertext=hover, hoverinfo="text",
            marker={"symbol": symbol, "size": 16 if labels else 7, "color": col,
                    "line": {"color": "white", "width": 1.5}},
        ))  # fmt: skip
        for n in ns if labels else ():  # names above the link labels (annotations, in order)
            x, y = pos[str(n["name"])]
            fig.add_annotation(x=x, y=y, yshift=17, text=f"<b>{html.escape(str(n['name']))}</b>",
                               showarrow=False, font={"size": 12, "color": "#1d2430"},
                               bgcolor="rgba(255,255,255,0.75)", borderpad=1)  # fmt: skip
    if not util:
        width_note = "utilisation not recorded by this run"
    elif per_link:
        width_note = f"width = channel utilisation (busiest link {_pct(u_max)})"
    else:
        width_note = "utilisation on hover"
    sub = f"{len(nodes)} nodes, {len(links_in)} links; colour = secret key rate, {width_note}"
    if len(drawn) <= _LINK_LABELS:
        sub += "; labels: key rate" + (" · utilisation" if util else "")
    sub += "; dashed red: no key" if per_link else "; red: no key"
    if not geo:
        sub += "; laid out by graph distance (no coordinates)"
    _style(fig, "Topology: secret key rate and utilisation of each link", height=600,
           subtitle=sub)  # fmt: skip
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False, scaleanchor="x", scaleratio=1)
    fig.update_layout(legend={"title": {"text": "node role"}, "x": 0.0, "y": 0.0,
                              "xanchor": "left", "yanchor": "bottom"})  # fmt: skip
    if geo:
        fig.update_xaxes(visible=True, title="longitude (°)")
        fig.update_yaxes(visible=True, title="latitude (°)")
    return fig


def accuracy_figure(run: RunFiles) -> go.Figure | None:
    """Accuracy over simulated time: the mean over clients (global test set and local
    held-out data), each client's global accuracy faint, and the target. None without
    evaluations."""
    import plotly.graph_objects as go

    rows = run.metrics
    if not rows:
        return None
    scale, unit = _time_unit(_num(r["sim_time_s"]) for r in rows)
    by_node: dict[str, list[Row]] = defaultdict(list)
    for r in rows:
        by_node[str(r["node"])].append(r)
    fig = go.Figure()
    first_client = True
    for node, rs in sorted(by_node.items()):
        if node == "mean":
            continue
        ys = [100 * _num(r.get("global_acc")) for r in rs]
        if all(math.isnan(y) for y in ys):
            ys = [100 * _num(r.get("local_acc")) for r in rs]
        fig.add_trace(go.Scatter(
            x=[_num(r["sim_time_s"]) / scale for r in rs], y=ys, mode="lines",
            name="each client", legendgroup="clients", showlegend=first_client,
            line={"color": "rgba(120,120,120,0.45)", "width": 1},
            hovertemplate=f"{html.escape(node)}<br>%{{x:.3g}} {unit}: %{{y:.1f}} %<extra></extra>",
        ))  # fmt: skip
        first_client = False
    mean = by_node.get("mean", [])
    for key, name, col, dash in (
        ("global_acc", "mean global accuracy (test set)", "#1f77b4", "solid"),
        ("local_acc", "mean local accuracy (held-out)", "#ff7f0e", "dash"),
    ):
        ys = [100 * _num(r.get(key)) for r in mean]
        if not ys or all(math.isnan(y) for y in ys):
            continue
        fig.add_trace(go.Scatter(
            x=[_num(r["sim_time_s"]) / scale for r in mean], y=ys, mode="lines+markers",
            name=name, line={"color": col, "width": 3, "dash": dash}, marker={"size": 7},
            customdata=[r.get("round", "") for r in mean],
            hovertemplate=f"round %{{customdata}}<br>%{{x:.3g}} {unit}: %{{y:.1f}} %<extra>"
                          f"{name}</extra>",
        ))  # fmt: skip
    target = _num(run.summary.get("target_accuracy"))
    if math.isfinite(target):
        fig.add_hline(y=100 * target, line={"color": "#444", "dash": "dot", "width": 1.5},
                      annotation_text=f"target {100 * target:g} %",
                      annotation_position="top left")  # fmt: skip
    tt = _num(run.summary.get("time_to_target_s"))
    sub = (
        f"target reached at {_secs(tt)} of simulated time"
        if math.isfinite(tt)
        else "target not reached"
        if math.isfinite(target)
        else ""
    )
    _style(fig, "Accuracy over simulated time", height=440, subtitle=sub)
    fig.update_xaxes(title=f"simulated time ({unit})", rangemode="tozero")
    fig.update_yaxes(title="accuracy (%)", rangemode="tozero")
    return fig


def keypool_figure(run: RunFiles) -> go.Figure | None:
    """Each link's key-pool level over simulated time (exact block landings and takes):
    the links that used the most key shown, the others in the legend. None without
    ``keypools.csv`` rows."""
    import plotly.graph_objects as go

    from qfl.cosim.plots import keypool_series

    if not run.keypools:
        return None
    rates = {f"{lk['a']}-{lk['b']}": _num(lk.get("skr_bps"))
             for lk in run.topology.get("links", [])}  # fmt: skip
    series = keypool_series(run.keypools, rates)
    used: dict[str, float] = defaultdict(float)
    for r in run.keypools:
        if r.get("event") == "take":
            used[r["link"]] += _num(r.get("bits")) if r.get("bits") else 0.0
    order = sorted(series, key=lambda k: (-used.get(k, 0.0), k))
    scale, unit = _time_unit(t for ts, _ in series.values() for t in ts[-1:])
    fig = go.Figure()
    thinned = False
    for i, link in enumerate(order):
        ts, ls = series[link]
        step = max(1, math.ceil(len(ts) / _KEYPOOL_VERTICES))
        if step > 1:
            thinned = True
            ts, ls = ts[::step] + ts[-1:], ls[::step] + ls[-1:]
        fig.add_trace(go.Scatter(
            x=[t / scale for t in ts], y=ls, mode="lines", name=link,
            visible=True if i < _KEYPOOL_LINKS else "legendonly",
            line={"width": 2, "color": _SERIES_COLOURS[i % len(_SERIES_COLOURS)]
                  if i < len(_SERIES_COLOURS) else None},
            hovertemplate=f"{html.escape(link)}<br>%{{x:.4g}} {unit}: %{{y:.4s}}bit<extra></extra>",
        ))  # fmt: skip
    sub = f"{len(order)} links, most key used first"
    if len(order) > _KEYPOOL_LINKS:
        sub += f"; {len(order) - _KEYPOOL_LINKS} more hidden (click them in the legend)"
    if thinned:
        sub += f"; long series thinned to about {_KEYPOOL_VERTICES} points"
    _style(fig, "Key pool level of each link", height=460, subtitle=sub)
    fig.update_xaxes(title=f"simulated time ({unit})", rangemode="tozero")
    fig.update_yaxes(title="key in pool (bit)", exponentformat="SI", rangemode="tozero")
    return fig


def client_keyrate_figure(run: RunFiles) -> go.Figure | None:
    """Each client's final accuracy against the total secret key rate of its own links.
    None without topology or evaluations."""
    import plotly.graph_objects as go

    acc = _final_acc_by_node(run)
    skr: dict[str, float] = defaultdict(float)
    for lk in run.topology.get("links", []):
        v = _num(lk.get("skr_bps"))
        for end in (lk["a"], lk["b"]):
            skr[str(end)] += v if math.isfinite(v) else 0.0
    names = [n for n in acc if n != "mean" and n in skr and math.isfinite(acc[n])]
    if not names:
        return None
    fig = go.Figure(go.Scatter(
        x=[skr[n] for n in names], y=[100 * acc[n] for n in names], mode="markers+text",
        text=names, textposition="top center", name="clients",
        marker={"size": 12, "color": "#1f77b4", "line": {"color": "white", "width": 1}},
        hovertemplate="%{text}<br>key rate %{x:.3s}bit/s<br>accuracy %{y:.1f} %<extra></extra>",
    ))  # fmt: skip
    mean = acc.get("mean")
    if mean is not None and math.isfinite(mean):
        fig.add_hline(y=100 * mean, line={"color": "#1f77b4", "dash": "dash", "width": 1},
                      annotation_text=f"mean {100 * mean:.1f} %")  # fmt: skip
    _style(fig, "Per client: key rate of its links vs final accuracy", height=420,
           subtitle="x: sum of the secret key rates of the links at the client")  # fmt: skip
    xs = [skr[n] for n in names if skr[n] > 0]
    if xs and max(xs) / min(xs) > 20:
        fig.update_xaxes(type="log")
    fig.update_xaxes(title="secret key rate of the client's links (bit/s)", exponentformat="SI")
    fig.update_yaxes(title="final accuracy (%)", rangemode="tozero")
    return fig


def bottleneck_figure(run: RunFiles) -> go.Figure | None:
    """Where the time went: each round's duration split into compute, key, bandwidth,
    propagation and fault time (stacked bars), or the run's overall shares when the
    summary has no ``round_breakdown``. None if neither is recorded."""
    import plotly.graph_objects as go

    rounds = run.summary.get("round_breakdown")
    fig = go.Figure()
    if isinstance(rounds, list) and rounds:
        scale, unit = _time_unit(_num(r.get("duration_s")) for r in rounds)
        for c in COMPONENTS:
            fig.add_trace(go.Bar(
                x=[r.get("round") for r in rounds], y=[_num(r.get(c)) / scale for r in rounds],
                name=c, marker_color=_COMPONENT_COLOURS[c],
                customdata=[r.get("critical", "") for r in rounds],
                hovertemplate=f"round %{{x}}: %{{y:.3g}} {unit} of {c}<br>ended by "
                              "%{customdata}<extra></extra>",
            ))  # fmt: skip
        fig.update_layout(barmode="stack")
        _style(
            fig,
            "Where the time goes, round by round",
            height=400,
            subtitle="each round's duration split by what the critical chain waited for",
        )
        fig.update_xaxes(title="round", dtick=1 if len(rounds) <= 30 else None)
        fig.update_yaxes(title=f"round duration ({unit})")
        return fig
    shares = run.summary.get("time_share")
    if not isinstance(shares, dict) or not shares:
        return None
    for c in COMPONENTS:
        fig.add_trace(go.Bar(
            x=[100 * _num(shares.get(c, 0.0))], y=["all rounds"], orientation="h", name=c,
            marker_color=_COMPONENT_COLOURS[c],
            hovertemplate=f"{c}: %{{x:.3g}} %<extra></extra>",
        ))  # fmt: skip
    fig.update_layout(barmode="stack")
    _style(
        fig,
        "Where the time goes (all rounds)",
        height=260,
        subtitle="share of the round time by what the critical chain waited for",
    )
    fig.update_xaxes(title="share of round time (%)", range=[0, 100])
    return fig


def sweep_figure(sw: SweepFiles) -> go.Figure | None:
    """Key rate vs accuracy over a sweep's points: final accuracy (top, with the target)
    and time to target, or end of the last round (bottom), one colour per series; a point
    that completed no round is a hollow triangle on the x axis."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    x = str(sw.meta.get("x") or "mean_skr_bps")
    x_label = str(sw.meta.get("x_label") or "mean secret key rate per link (bit/s)")
    rows = [r for r in sw.rows if r.get("status") in ("", "complete") and
            math.isfinite(_num(r.get(x)))]  # fmt: skip
    if not rows:
        return None
    reached = any(math.isfinite(_num(r.get("time_to_target_s"))) for r in rows)
    t_key, t_what = (
        ("time_to_target_s", "time to target") if reached else
        ("sim_time_end_s", "end of last round")
    )  # fmt: skip
    scale, unit = _time_unit(_num(r.get(t_key)) for r in rows)
    use_local = all(math.isnan(_num(r.get("final_global_acc"))) for r in rows)
    acc_key = "final_local_acc" if use_local else "final_global_acc"
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08,
                        row_heights=[0.6, 0.4])  # fmt: skip
    groups: dict[str, list[Row]] = defaultdict(list)
    for r in rows:
        groups[str(r.get("series") or "all points")].append(r)
    for i, (name, rs) in enumerate(sorted(groups.items())):
        rs = sorted(rs, key=lambda r: _num(r[x]))
        col = _SERIES_COLOURS[i % len(_SERIES_COLOURS)]
        some = [r for r in rs if _num(r.get("rounds_done")) != 0]
        none = [r for r in rs if _num(r.get("rounds_done")) == 0]
        hover = "%{customdata}<br>" + f"{html.escape(x)} %{{x:.4s}}"
        fig.add_trace(go.Scatter(
            x=[_num(r[x]) for r in some], y=[100 * _num(r.get(acc_key)) for r in some],
            mode="lines+markers", name=name, legendgroup=name,
            line={"color": col, "width": max(1.5, 3 - 0.5 * i)},
            marker={"size": max(6, 11 - 2 * i), "symbol": "circle"},
            customdata=[r.get("slug", "") for r in some],
            hovertemplate=hover + "<br>final accuracy %{y:.1f} %<extra>" + name + "</extra>",
        ), row=1, col=1)  # fmt: skip
        fig.add_trace(go.Scatter(
            x=[_num(r[x]) for r in some], y=[_num(r.get(t_key)) / scale for r in some],
            mode="lines+markers", name=name, legendgroup=name, showlegend=False,
            line={"color": col, "width": max(1.5, 3 - 0.5 * i), "dash": "dash"},
            marker={"size": max(6, 11 - 2 * i)},
            customdata=[r.get("slug", "") for r in some],
            hovertemplate=hover + f"<br>{t_what} %{{y:.3g}} {unit}<extra>{name}</extra>",
        ), row=2, col=1)  # fmt: skip
        if none:
            fig.add_trace(go.Scatter(
                x=[_num(r[x]) for r in none], y=[0.0] * len(none), mode="markers",
                name=f"{name}: no round completed", legendgroup=name, cliponaxis=False,
                marker={"symbol": "triangle-down-open", "size": 13, "color": col,
                        "line": {"width": 2}},
                customdata=[r.get("slug", "") for r in none],
                hovertemplate=hover + "<br>no round completed (never trained)<extra></extra>",
            ), row=1, col=1)  # fmt: skip
    target = _num(sw.run.summary.get("target_accuracy")) if sw.run else math.nan
    if math.isfinite(target):
        fig.add_hline(y=100 * target, line={"color": "#444", "dash": "dot", "width": 1.5},
                      annotation_text=f"target {100 * target:g} %", row=1, col=1)  # fmt: skip
    positive = [_num(r[x]) for r in rows if _num(r[x]) > 0]
    if positive and max(positive) / min(positive) > 20:
        fig.update_xaxes(type="log")
    fig.update_xaxes(exponentformat="SI")
    fig.update_xaxes(title=x_label, row=2, col=1)
    metric = "final local accuracy (%)" if use_local else "final global accuracy (%)"
    fig.update_yaxes(title=metric, rangemode="tozero", row=1, col=1)
    fig.update_yaxes(title=f"{t_what} ({unit})", rangemode="tozero", row=2, col=1)
    name = sw.meta.get("name") or sw.folder.name
    _style(
        fig,
        f"Key rate vs accuracy: sweep {name}",
        height=640,
        subtitle=f"{len(rows)} complete points; one colour per series "
        f"({sw.meta.get('series') or 'none'}); hollow triangle: no round completed",
    )
    return fig


def _plan_column(plan: Mapping[str, Any], *names: str) -> str | None:
    cols = [str(c) for c in plan.get("columns", [])]
    rows = plan.get("rows", [])
    have = set(cols) | {k for r in rows for k in r}
    for n in names:
        if n and n in have:
            return n
    return None


def threshold_figure(pf: PlanFiles) -> go.Figure | None:
    """The points a threshold plan evaluated: the varied value (log x) against final
    accuracy with the target (top) and time to target with the time limit (bottom, when
    the plan has one), green where the target held, red where it failed; the bracket
    shaded. None when the plan's rows lack the varied value."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    plan = pf.plan
    vary = str(plan.get("vary") or "")
    x_col = _plan_column(plan, vary, vary.rpartition(".")[2], "value")
    acc_col = _plan_column(plan, "final_global_acc", "final_accuracy", "accuracy",
                           "final_local_acc")  # fmt: skip
    t_col = _plan_column(plan, "time_to_target_s")
    rows = [r for r in plan.get("rows", []) if x_col and math.isfinite(_num(r.get(x_col)))]
    if not rows or not (acc_col or t_col):
        return None
    rows.sort(key=lambda r: _num(r[x_col]))
    xs = [_num(r[x_col]) for r in rows]
    target = _num(plan.get("target"))
    within = _num(plan.get("within_s"))
    accs = [_num(r.get(acc_col)) if acc_col else math.nan for r in rows]
    acc_scale = 1.0 if any(a > 1 for a in accs if math.isfinite(a)) else 100.0
    t_scale = 100.0 if math.isfinite(target) and target <= 1 else 1.0
    tts = [_num(r.get(t_col)) if t_col else math.nan for r in rows]

    def holds(a: float, t: float) -> bool | None:
        if math.isfinite(within) and t_col:
            return math.isfinite(t) and t <= within
        if math.isfinite(target) and math.isfinite(a):
            return a * acc_scale >= target * t_scale
        return None

    verdict = [
        r["holds"] if isinstance(r.get("holds"), bool) else holds(a, t)
        for r, a, t in zip(rows, accs, tts, strict=True)
    ]
    colours = ["#2ca02c" if v else "#d62728" if v is False else "#1f77b4" for v in verdict]
    words = ["target held" if v else "target failed" if v is False else "" for v in verdict]
    two = bool(t_col) and bool(acc_col)
    fig = make_subplots(
        rows=2 if two else 1,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.1,
        row_heights=[0.55, 0.45] if two else None,
    )
    hover = f"{html.escape(x_col or '')} = %{{x:.4g}}<br>%{{customdata}}"
    dot = {"size": 12, "line": {"color": "white", "width": 1}}
    if acc_col:
        ok = [i for i, a in enumerate(accs) if math.isfinite(a)]
        fig.add_trace(go.Scatter(
            x=[xs[i] for i in ok], y=[accs[i] * acc_scale for i in ok], mode="lines+markers",
            line={"color": "#999", "width": 1.2}, marker={**dot, "color": [colours[i] for i in ok]},
            customdata=[words[i] for i in ok],
            hovertemplate=hover + "<br>final accuracy %{y:.1f} %<extra></extra>",
        ), row=1, col=1)  # fmt: skip
        none = [i for i, a in enumerate(accs) if not math.isfinite(a)]
        if none:
            fig.add_trace(go.Scatter(
                x=[xs[i] for i in none], y=[0.0] * len(none), mode="markers", cliponaxis=False,
                marker={"symbol": "triangle-down-open", "size": 13, "line": {"width": 2},
                        "color": [colours[i] for i in none]},
                customdata=[words[i] for i in none],
                hovertemplate=hover + "<br>no round completed (never trained)<extra></extra>",
            ), row=1, col=1)  # fmt: skip
        if math.isfinite(target):
            fig.add_hline(y=target * t_scale, line={"color": "#444", "dash": "dot"},
                          annotation_text=f"target {target * t_scale:g} %",
                          annotation_position="top left", row=1, col=1)  # fmt: skip
    if t_col:
        scale, unit = _time_unit([*tts, within])
        row = 2 if two else 1
        ok = [i for i, t in enumerate(tts) if math.isfinite(t)]
        fig.add_trace(go.Scatter(
            x=[xs[i] for i in ok], y=[tts[i] / scale for i in ok], mode="lines+markers",
            line={"color": "#999", "width": 1.2, "dash": "dash"},
            marker={**dot, "symbol": "square", "color": [colours[i] for i in ok]},
            customdata=[words[i] for i in ok],
            hovertemplate=hover + f"<br>time to target %{{y:.3g}} {unit}<extra></extra>",
        ), row=row, col=1)  # fmt: skip
        late = [i for i, t in enumerate(tts) if not math.isfinite(t)]
        if late and math.isfinite(within):
            fig.add_trace(go.Scatter(
                x=[xs[i] for i in late], y=[within / scale] * len(late), mode="markers",
                marker={"symbol": "x-thin-open", "size": 13, "line": {"width": 2.5},
                        "color": [colours[i] for i in late]},
                customdata=[words[i] for i in late],
                hovertemplate=hover + f"<br>target not reached within {_secs(within)}"
                                      "<extra></extra>",
            ), row=row, col=1)  # fmt: skip
        if math.isfinite(within):
            fig.add_hline(y=within / scale, line={"color": "#444", "dash": "dot"},
                          annotation_text=f"deadline {_secs(within)}",
                          annotation_position="top left", row=row, col=1)  # fmt: skip
        fig.update_yaxes(title=f"time to target ({unit})", rangemode="tozero", row=row, col=1)
    bracket = plan.get("bracket") or {}
    fails, holds_at = _num(bracket.get("fails_at")), _num(bracket.get("holds_at"))
    sub = "each point is one evaluated run; green: target held, red: it failed"
    if math.isfinite(fails) and math.isfinite(holds_at):
        fig.add_vrect(x0=min(fails, holds_at), x1=max(fails, holds_at), fillcolor="#ffd54f",
                      opacity=0.3, line_width=0)  # fmt: skip
        sub += f"; shaded: the threshold, between {fails:.4g} and {holds_at:.4g}"
    for v, col in ((fails, "#d62728"), (holds_at, "#2ca02c")):
        if math.isfinite(v):
            fig.add_vline(x=v, line={"color": col, "dash": "dash", "width": 1.5})
    if math.isfinite(holds_at) != math.isfinite(fails):
        sub += (f"; holds at {holds_at:.4g} (the lowest tried)" if math.isfinite(holds_at)
                else f"; fails even at {fails:.4g}")  # fmt: skip
    if all(x > 0 for x in xs):
        wide = max(xs) / min(xs) >= 100
        fig.update_xaxes(type="log", exponentformat="none", dtick=1 if wide else None)
    fig.update_xaxes(title=vary or x_col, row=2 if two else 1, col=1)
    if acc_col:
        fig.update_yaxes(title="final accuracy (%)", rangemode="tozero", row=1, col=1)
    fig.update_layout(showlegend=False)
    _style(fig, f"Threshold search: {vary or x_col}", height=600 if two else 440, subtitle=sub)
    return fig


# ---------------------------------------------------------------------------------------
# HTML
# ---------------------------------------------------------------------------------------

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
        ("final global accuracy", _pct(s.get("final_global_acc"))),
        ("final local accuracy", _pct(s.get("final_local_acc"))),
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
    QflError
        If Plotly is missing (:func:`require_plotly`), or, as a :class:`ScenarioError`
        naming the file, if the folder is none of the three kinds or a file is malformed.
    """
    require_plotly()
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
