"""What-if studies: a scenario run over a grid of field values.

A sweep is a base scenario plus a grid ``{dotted.field: [values...]}``; every point of the
Cartesian product is one run. The sweep follows the plan/executor design: every point's
network timeline is simulated first (cheap, no learning); points whose learning inputs are
identical (same method, data, seed and plan of operations, possibly a prefix of a longer one)
share one learning execution; the distinct learning jobs run on an executor (local processes
by default, or Ray). Each point then gets its own run folder, and the sweep folder gets
``sweep.csv`` (a row per point) and the key-rate vs accuracy plot.
"""

from __future__ import annotations

import csv
import itertools
import json
import os
import re
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from qfl.cosim.executors import Task, check_executor, iter_tasks
from qfl.cosim.jobs import EvalRow
from qfl.scenario import (
    Scenario,
    ScenarioError,
    _parse_scalar,
    apply_overrides,
    check_folder_name,
    load_scenario,
    load_yaml,
    read_text,
)
from qkd.errors import QflError

__all__ = [
    "PointRunner",
    "SweepPoint",
    "SweepSpec",
    "load_sweep_file",
    "parse_set_options",
    "run_sweep",
    "sweep_points",
]


@dataclass(frozen=True)
class SweepSpec:
    """A sweep: base scenario, grid, and how to draw it.

    Parameters
    ----------
    base : Scenario
        The scenario every point starts from.
    grid : mapping of str to sequence
        Dotted field path -> values; points are the Cartesian product, in order.
    x : str
        What the key-rate plot uses on its x axis: ``mean_skr_bps`` (measured from the
        network of each point), ``key_budget_bits`` or a grid field.
    series : str or None
        A grid field whose values become separate lines (method, cipher policy...).
    """

    base: Scenario
    grid: Mapping[str, Sequence[Any]]
    x: str = "mean_skr_bps"
    series: str | None = None
    name: str = "sweep"
    overrides: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SweepPoint:
    """One point of a sweep: its index, its field values and the resulting scenario."""

    index: int
    values: Mapping[str, Any]
    scenario: Scenario

    @property
    def slug(self) -> str:
        """A folder name for the point: ``003-rate_scale=0.3``."""
        parts = [f"{k.split('.')[-1]}={v}" for k, v in self.values.items()]
        text = "-".join(parts) or "base"
        return f"{self.index:03d}-" + re.sub(r"[^A-Za-z0-9_.=+\-]", "_", text)[:80]

    def series_label(self, series: str | None) -> str:
        """The label of the line this point belongs to."""
        if series is None:
            return self.scenario.learning.method
        return str(self.values.get(series, ""))


_SET_RE = re.compile(r"^(?P<key>[A-Za-z_][\w.\[\]-]*)=(?P<values>.*)$")


def parse_set_options(options: Sequence[str]) -> dict[str, list[Any]]:
    """Parse ``--set field=v1,v2,...`` options into a grid.

    Values are YAML scalars (``0.1`` -> float, ``otp`` -> str, ``[a, b]`` -> list).

    Raises
    ------
    ScenarioError
        For an option without ``=`` or without values.

    Examples
    --------
    >>> parse_set_options(["qkd.rate_scale=0.1,1", "cipher.policy=otp"])
    {'qkd.rate_scale': [0.1, 1], 'cipher.policy': ['otp']}
    """
    grid: dict[str, list[Any]] = {}
    for opt in options:
        m = _SET_RE.match(opt.strip())
        if not m:
            raise ScenarioError("--set", f"must look like field.path=v1,v2,..., got {opt!r}")
        raw = m.group("values")
        values = _split_values(raw)
        if not values:
            raise ScenarioError(f"--set {m.group('key')}", "needs at least one value")
        grid[m.group("key")] = values
    return grid


def _split_values(raw: str) -> list[Any]:
    out: list[Any] = []
    depth = 0
    cur = ""
    for ch in raw:
        if ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    if cur.strip():
        out.append(cur)
    return [_parse_scalar(v.strip()) for v in out if v.strip()]


def load_sweep_file(path: str | Path) -> SweepSpec:
    """Read a sweep YAML file.

    The file holds ``scenario`` (a path, relative to the sweep file), ``grid`` (field ->
    list of values), and optionally ``x``, ``series``, ``name`` and ``set`` (fixed
    overrides applied to every point).

    Raises
    ------
    ScenarioError
        Naming the bad key of the sweep file.
    """
    p = Path(path)
    data = load_yaml(read_text(p), str(p))
    if not isinstance(data, dict):
        raise ScenarioError(str(p), "a sweep file must be a mapping")
    allowed = {"scenario", "grid", "x", "series", "name", "set"}
    for key in data:
        if key not in allowed:
            raise ScenarioError(
                f"{p}: {key}", f"unknown key; allowed: {', '.join(sorted(allowed))}"
            )
    if "scenario" not in data:
        raise ScenarioError(f"{p}: scenario", "missing (a path to the base scenario)")
    grid = data.get("grid") or {}
    if not isinstance(grid, dict) or not grid:
        raise ScenarioError(f"{p}: grid", "must map field paths to lists of values")
    grid = {k: (v if isinstance(v, list) else [v]) for k, v in grid.items()}
    base = load_scenario(p.parent / str(data["scenario"]))
    fixed = data.get("set") or {}
    if fixed:
        base = apply_overrides(base, fixed)
    return SweepSpec(
        base=base,
        grid=grid,
        x=str(data.get("x", "mean_skr_bps")),
        series=data.get("series"),
        name=check_folder_name(str(data.get("name", p.stem)), f"{p}: name"),
        overrides=fixed,
    )


def sweep_points(spec: SweepSpec) -> list[SweepPoint]:
    """Expand a sweep into its points, validating every one.

    Raises
    ------
    ScenarioError
        If a grid field names no scenario field or a value is invalid; the message names
        the field and the value.
    """
    keys = list(spec.grid)
    points = []
    for i, combo in enumerate(itertools.product(*(spec.grid[k] for k in keys))):
        values = dict(zip(keys, combo, strict=True))
        try:
            sc = apply_overrides(spec.base, values)
        except ScenarioError as exc:
            bad = next((k for k in keys if exc.path.startswith(k.split("[")[0])), None)
            where = f"--set {exc.path}" if bad else exc.path
            raise ScenarioError(where, exc.message) from None
        points.append(SweepPoint(i, values, sc))
    return points


def write_sweep_table(rows: Sequence[Mapping[str, Any]], path: Path) -> None:
    """Write the sweep's table (a row per point) atomically."""
    cols: list[str] = []
    for r in rows:
        for k in r:
            if k not in cols:
                cols.append(k)
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=cols)
        w.writeheader()
        for r in rows:
            w.writerow({k: r.get(k, "") for k in cols})
    tmp.replace(path)


def write_json_atomic(obj: Any, path: Path) -> None:
    """Write JSON to ``path`` through a temporary file, so a crash leaves no half file."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str), encoding="utf-8")
    tmp.replace(path)


# ----------------------------------------------------------------------------- execution


def _prefix_of(short: Any, long: Any) -> bool:
    """Whether the timeline structure ``short`` is a prefix of ``long`` (rounds, drops)."""
    n = short[0]
    drops_long = tuple(d for d in long[1] if d[0] < n)
    return short[1] == drops_long and tuple(short[2]) == tuple(long[2][: len(short[2])])


def _finished(points: Sequence[SweepPoint], folder: Path) -> set[int]:
    """Points whose folder holds a complete run of the same resolved scenario (``--resume``
    skips exactly these; a failed point, or one whose scenario changed, runs again)."""
    out = set()
    for p in points:
        pdir = folder / "points" / p.slug
        done = _read_summary(pdir)
        if done and done.get("status") == "complete" and _same_scenario(pdir, p.scenario):
            out.add(p.index)
    return out


def _learning_groups(nruns: Mapping[int, Any]) -> list[list[int]]:
    """Points whose learning inputs are equal and whose timelines are prefixes of the first
    (longest) one's: one learning execution serves them all."""
    groups: list[list[int]] = []
    for i in sorted(nruns, key=lambda j: -nruns[j].timeline.rounds_done):
        nr = nruns[i]
        ident, struct = nr.job.identity(), nr.timeline.structure()
        for g in groups:
            lead = nruns[g[0]]
            if lead.job.identity() == ident and _prefix_of(struct, lead.timeline.structure()):
                g.append(i)
                break
        else:
            groups.append([i])
    return groups


def _task(nruns: Mapping[int, Any], group: Sequence[int], *, eval_all: bool = False) -> Task:
    """The learning task of a group: its lead's scenario and timeline, and an evaluation
    after the last round of every member (after every round with ``eval_all``)."""
    lead = nruns[group[0]]
    tl = lead.timeline
    if eval_all:
        extra = list(range(1, tl.rounds_done + 1))
    else:
        extra = sorted({nruns[i].timeline.rounds_done for i in group})
    timeline = {"rounds_done": tl.rounds_done, "dropped": sorted(tl.dropped)}
    return lead.scenario.model_dump_json(), timeline, extra


def _publish(tmp: Path, dest: Path) -> None:
    """Move a finished point folder into place in one rename (an older attempt's folder,
    e.g. a failed one, is replaced)."""
    if dest.exists():
        old = dest.with_name(f".old-{dest.name}-{os.getpid()}")
        dest.replace(old)
        shutil.rmtree(old, ignore_errors=True)
    tmp.replace(dest)


def _write_point(
    pdir: Path,
    p: SweepPoint,
    nr: Any,
    outcome: Sequence[Any] | BaseException,
    *,
    plots: bool,
    extra: dict[str, Any],
) -> None:
    """Write point ``p``'s run folder from its group's evaluations (or its error),
    atomically: built beside ``pdir`` and renamed into place."""
    from qfl.cosim.outputs import RunFolder, write_unsimulated
    from qfl.cosim.run import eval_rounds_for, summarize_run

    tmp = pdir.with_name(f".tmp-{pdir.name}-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    if nr is None:  # the network half failed: the scenario and the error only
        write_unsimulated(tmp, p.scenario, {"scenario": p.scenario.name, **extra})
        _publish(tmp, pdir)
        return
    failed = isinstance(outcome, BaseException)
    mine = eval_rounds_for(nr.timeline.rounds_done, p.scenario.learning.eval_every)
    rows = [] if failed else [r for r in outcome if r.round in mine]  # type: ignore[union-attr]
    out = RunFolder(tmp, nr)
    out.add(rows)
    summary = summarize_run(nr, rows, status="failed" if failed else "complete", wall={})
    summary.update(extra)
    out.close(summary, plots=plots and not failed)
    _publish(tmp, pdir)


def _table(
    spec: SweepSpec, points: Sequence[SweepPoint], folder: Path, resumed: set[int]
) -> list[dict[str, Any]]:
    """The sweep table, rebuilt from the point folders (a row per point that has one)."""
    rows = []
    for p in points:
        summary = _read_summary(folder / "points" / p.slug)
        if summary is not None:
            rows.append(_table_row(spec, p, summary, resumed=p.index in resumed))
    return rows


def run_sweep(
    spec: SweepSpec,
    folder: Path,
    *,
    executor: str = "local",
    jobs: int | None = None,
    address: str | None = None,
    resume: bool = False,
    plots: bool = True,
    on_point: Callable[[int, int, dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Run every point of a sweep, sharing learning between points with identical inputs.

    Each point's run folder (``points/<slug>/``) is written the moment its learning finishes
    (atomically), and ``sweep.csv`` is rebuilt from the point folders after each, so an
    interrupted or crashed sweep keeps every finished point; ``resume`` skips exactly those.
    A point that fails (in its network half or its learning) gets ``status: failed`` and its
    error in its folder and in ``sweep.csv``; the others go on.

    Parameters
    ----------
    spec : SweepSpec
        The sweep.
    folder : Path
        The sweep folder: ``sweep.csv``, ``sweep.json``, ``keyrate_vs_accuracy.png`` and
        ``points/<slug>/`` (a run folder per point).
    executor : {"local", "ray", "inline"}
        Where the distinct learning jobs run: local processes, a Ray cluster (``address``;
        None starts a local one), or this process.
    resume : bool
        Skip points whose run folder already holds a complete ``summary.json`` for the same
        resolved scenario (a point whose scenario changed is run again).
    on_point : callable, optional
        ``on_point(done, total, row)`` after each point is written.

    Returns
    -------
    list of dict
        The sweep table, a row per point (``status`` says complete or failed).
    """
    check_executor(executor, jobs)
    points = sweep_points(spec)
    meta = _meta(spec, len(points))
    (folder / "points").mkdir(parents=True, exist_ok=True)
    write_json_atomic(meta, folder / "sweep.json")
    resumed = _finished(points, folder) if resume else set()
    done = len(resumed)

    def written(p: SweepPoint, _summary: Mapping[str, Any]) -> None:
        nonlocal done
        done += 1
        table = _table(spec, points, folder, resumed)
        write_sweep_table(table, folder / "sweep.csv")
        if on_point is not None:
            row = next(r for r in table if r["point"] == p.index)
            on_point(done, len(points), row)

    todo = [p for p in points if p.index not in resumed]
    runner = PointRunner(folder, executor=executor, jobs=jobs, address=address, plots=plots)
    runner.run(todo, on_written=written)
    table = _table(spec, points, folder, resumed)
    write_sweep_table(table, folder / "sweep.csv")
    meta.update(runner.timings())
    write_json_atomic(meta, folder / "sweep.json")
    if plots:
        from qfl.cosim.plots import plot_sweep

        ok = [r for r in table if r.get("status") == "complete"]
        plot_sweep(
            ok, folder / "keyrate_vs_accuracy.png", x=_x_column(spec.x), x_label=meta["x_label"]
        )
    return table


@dataclass
class _Learned:
    """One learning execution: its job identity, timeline structure, the rounds it
    evaluated, and its rows (or its error)."""

    index: int
    identity: str
    structure: Any
    evaluated: frozenset[int]
    rows: Sequence[EvalRow] | BaseException


class PointRunner:
    """Runs batches of points (scenarios) into run folders ``folder/points/<slug>/``.

    Every point's network half is simulated here (cheap); points whose learning inputs are
    identical and whose timelines are prefixes of one another share one learning execution
    (run on the executor), and a later batch reuses an earlier batch's execution when it
    evaluated every round the new point reports (``eval_all`` makes a batch's executions
    evaluate after every round, so any later prefix finds them). Sweeps run one batch;
    planner studies (:mod:`qfl.cosim.studies`) run several, each chosen from the last.

    Parameters
    ----------
    folder : Path
        The study folder (its ``points/`` subfolder holds the run folders).
    executor, jobs, address
        Where learning executions run (see :func:`qfl.cosim.executors.iter_tasks`).
    plots : bool
        Draw each point's PNGs.
    """

    def __init__(
        self,
        folder: Path,
        *,
        executor: str = "local",
        jobs: int | None = None,
        address: str | None = None,
        plots: bool = True,
    ) -> None:
        check_executor(executor, jobs)
        self.folder = folder
        self.executor, self.jobs, self.address, self.plots = executor, jobs, address, plots
        self.learned: list[_Learned] = []
        self.learning_executions = 0
        self.job_cache: dict[str, Any] = {}  # one learning job per distinct learning input
        self.wall = {"wall_network_s": 0.0, "wall_learning_s": 0.0}
        (folder / "points").mkdir(parents=True, exist_ok=True)

    def timings(self) -> dict[str, Any]:
        """Learning executions run and the wall time of each half so far."""
        total = self.wall["wall_network_s"] + self.wall["wall_learning_s"]
        return {"learning_jobs": self.learning_executions, **self.wall, "wall_total_s": total}

    def run(
        self,
        points: Sequence[SweepPoint],
        *,
        eval_all: bool = False,
        resume: bool = False,
        on_written: Callable[[SweepPoint, Mapping[str, Any]], None] | None = None,
    ) -> dict[int, dict[str, Any]]:
        """Run ``points`` (one batch) and return each point's summary by index.

        Each point's folder is written atomically the moment its learning finishes, and
        ``on_written(point, summary)`` is called; a point that fails gets ``status: failed``
        and its error, and the others go on. With ``resume``, a point whose folder holds a
        complete run of the same scenario is read back, not run.
        """
        from qfl.cosim.run import eval_rounds_for, one_line, simulate_network

        out: dict[int, dict[str, Any]] = {}

        def write(p: SweepPoint, nr: Any, rows: Any, extra: dict[str, Any]) -> None:
            pdir = self.folder / "points" / p.slug
            _write_point(pdir, p, nr, rows, plots=self.plots, extra=extra)
            out[p.index] = _read_summary(pdir) or {"status": "failed", **extra}
            if on_written is not None:
                on_written(p, out[p.index])

        t0 = time.perf_counter()
        if resume:
            for i in _finished(points, self.folder):
                p = next(q for q in points if q.index == i)
                out[i] = _read_summary(self.folder / "points" / p.slug) or {}
                if on_written is not None:
                    on_written(p, out[i])
        nruns: dict[int, Any] = {}
        for p in points:
            if p.index in out:
                continue
            try:
                nruns[p.index] = simulate_network(p.scenario, job_cache=self.job_cache)
            except QflError as exc:
                why = {"status": "failed", "error": one_line(exc)}
                write(p, None, exc, why)
        by_index = {p.index: p for p in points}
        fresh: dict[int, Any] = {}
        for i, nr in nruns.items():
            known = self._reusable(nr, eval_rounds_for)
            if known is None:
                fresh[i] = nr
            else:
                write(by_index[i], nr, known.rows, {"learning": "reused",
                                                    "learning_group": known.index})  # fmt: skip
        groups = _learning_groups(fresh)
        tasks = [_task(fresh, g, eval_all=eval_all) for g in groups]
        self.wall["wall_network_s"] += time.perf_counter() - t0
        t1 = time.perf_counter()
        base = self.learning_executions  # executions are numbered by group, batch after batch
        for k, outcome in iter_tasks(tasks, self.executor, self.jobs, self.address):
            self.learning_executions += 1
            rows = outcome if isinstance(outcome, BaseException) else [
                EvalRow(**{**r, "exit_acc": tuple(r["exit_acc"])}) for r in outcome
            ]  # fmt: skip
            lead = fresh[groups[k][0]]
            if not isinstance(rows, BaseException):
                evaluated = {r.round for r in rows}
                self.learned.append(_Learned(base + k, lead.job.identity(),
                                             lead.timeline.structure(), frozenset(evaluated),
                                             rows))  # fmt: skip
            for i in groups[k]:
                extra: dict[str, Any] = {
                    "learning": "ran" if i == groups[k][0] else "shared",
                    "learning_group": base + k,
                    "learning_group_size": len(groups[k]),
                }
                if isinstance(rows, BaseException):
                    extra["error"] = one_line(rows)
                write(by_index[i], fresh[i], rows, extra)
        self.wall["wall_learning_s"] += time.perf_counter() - t1
        return out

    def _reusable(self, nr: Any, eval_rounds_for: Callable[..., set[int]]) -> _Learned | None:
        """An earlier execution that serves ``nr``: same learning inputs, a timeline that
        ``nr``'s is a prefix of, and an evaluation after every round ``nr`` reports."""
        ident, struct = nr.job.identity(), nr.timeline.structure()
        need = eval_rounds_for(nr.timeline.rounds_done, nr.scenario.learning.eval_every)
        for known in self.learned:
            if (
                known.identity == ident
                and _prefix_of(struct, known.structure)
                and need <= known.evaluated
            ):
                return known
        return None


def _base_value(base: Scenario, path: str) -> Any:
    """The unswept scenario's value of a dotted grid field (None where it has none)."""
    node: Any = base.model_dump(mode="json")
    for part in re.findall(r"[^.\[\]]+|\[\d+\]", path):
        if part.startswith("["):
            i = int(part[1:-1])
            node = node[i] if isinstance(node, list) and i < len(node) else None
        else:
            node = node.get(part) if isinstance(node, dict) else None
    return node


def _meta(spec: SweepSpec, n_points: int) -> dict[str, Any]:
    return {
        "name": spec.name,
        "base": spec.base.name,
        "grid": {k: list(v) for k, v in spec.grid.items()},
        # the unswept scenario's values: the report shows the point equal to it
        "base_values": {k: _base_value(spec.base, k) for k in spec.grid},
        "x": spec.x,
        "series": spec.series,
        "x_label": _x_label(spec.x),
        "points": n_points,
    }


def _x_column(x: str) -> str:
    return x if x in ("mean_skr_bps", "key_budget_bits", "min_skr_bps") else "x"


def _x_label(x: str) -> str:
    return {
        "mean_skr_bps": "mean secret key rate per link (bit/s)",
        "min_skr_bps": "slowest link's secret key rate (bit/s)",
        "key_budget_bits": "key generated in the run (bits)",
    }.get(x, x)


def _same_scenario(pdir: Path, scenario: Any) -> bool:
    """Whether the point folder's ``scenario.yaml`` is ``scenario`` (resume reruns a point
    whose sweep file or base scenario changed since)."""

    try:
        stored = yaml.safe_load((pdir / "scenario.yaml").read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return False
    return bool(stored == scenario.model_dump(mode="json"))


def _read_summary(pdir: Path) -> dict[str, Any] | None:
    f = pdir / "summary.json"
    if not f.is_file():
        return None
    try:
        data = json.loads(f.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _table_row(
    spec: SweepSpec, p: SweepPoint, summary: Mapping[str, Any], *, resumed: bool
) -> dict[str, Any]:
    row: dict[str, Any] = {"point": p.index, "slug": p.slug}
    row.update({k: v for k, v in p.values.items()})
    row["series"] = p.series_label(spec.series)
    if spec.x in p.values:
        row["x"] = p.values[spec.x]
    row["key_budget_bits"] = summary.get("key_generated_bits")
    for k in (
        "mean_skr_bps",
        "min_skr_bps",
        "rounds_done",
        "final_global_acc",
        "final_local_acc",
        "rounds_to_target",
        "time_to_target_s",
        "sim_time_end_s",
        "key_consumed_bits",
        "key_wasted_bits",
        "time_stalled_on_key_s",
        "transfers_failed",
        "learning_group",
    ):
        row[k] = summary.get(k)
    row["status"] = summary.get("status")
    row["error"] = summary.get("error", "")
    row["resumed"] = resumed
    return row
