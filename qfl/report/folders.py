"""The files of a run, sweep or plan folder, as read and checked for the report.

The readers name the file (and, in a CSV file, the line) in the :class:`ScenarioError` they
raise on a missing or malformed file. A sweep or plan comes with one representative run:
its baseline point (a sweep's: the point equal to the unswept scenario, else its highest-rate
point), else the first complete point.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qfl.report.text import _num
from qfl.scenario import ScenarioError, load_yaml, read_text

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
]

REPORT_KINDS = ("run", "sweep", "plan")
"""The kinds of folder a report is made of."""
PLAN_KINDS = ("threshold", "contingency", "upgrade")
"""The kinds of plan (``plan.json``'s ``kind``)."""


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


def _representative_run(
    folder: Path, slugs: Iterable[str], preferred: tuple[str, str] | None = None
) -> tuple[RunFiles | None, str]:
    """The representative point of :func:`_representative`, read by :func:`load_run` (None
    if no point is complete), and why it was chosen."""
    rep, why = _representative(folder, slugs, preferred)
    return (load_run(rep) if rep else None), why


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
    run, why = _representative_run(
        folder, [r.get("slug", "") for r in rows], _sweep_preferred(folder, meta, rows)
    )
    return SweepFiles(folder, meta, rows, run, why)


def _same_value(cell: Any, value: Any) -> bool:
    """Whether a ``sweep.csv`` cell holds the scenario value ``value``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(cell) == str(value) or _yaml_value(cell) == value
    x = _num(cell)
    return math.isfinite(x) and math.isclose(x, float(value), rel_tol=1e-9, abs_tol=1e-300)


def _yaml_value(cell: Any) -> Any:
    try:
        return load_yaml(str(cell), "sweep.csv")
    except ScenarioError:
        return None


def _sweep_preferred(
    folder: Path, meta: Mapping[str, Any], rows: Sequence[Mapping[str, Any]]
) -> tuple[str, str] | None:
    """A sweep's baseline: the complete point whose grid values are the unswept scenario's
    (``sweep.json``'s ``base_values``), else the complete point with the highest mean key
    rate (None if no point is complete)."""
    done = [
        r for r in rows
        if r.get("slug") and "/" not in str(r["slug"])
        and _run_is_complete(folder / "points" / str(r["slug"]))[0]
    ]  # fmt: skip
    base = meta.get("base_values")
    if isinstance(base, dict) and base:
        for r in done:
            if all(k in r and _same_value(r[k], v) for k, v in base.items()):
                where = ", ".join(f"{k} = {v}" for k, v in base.items())
                return str(
                    r["slug"]
                ), f"the baseline: the point equal to the unswept scenario, {where}"
    rated = [(r, _num(r.get("mean_skr_bps"))) for r in done]
    rated = [(r, x) for r, x in rated if math.isfinite(x)]
    if not rated:
        return None
    top = max(x for _, x in rated)
    r = next(r for r, x in rated if x == top)
    return str(r["slug"]), "the highest-rate point (no point equals the unswept scenario)"


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
    run, why = _representative_run(folder, slugs, _plan_preferred(plan))
    return PlanFiles(folder, plan, run, why)
