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
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from qfl.scenario import (
    Scenario,
    ScenarioError,
    _parse_scalar,
    apply_overrides,
    load_scenario,
)

__all__ = [
    "EXECUTORS",
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
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ScenarioError(str(p), f"cannot read the file ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise ScenarioError(str(p), f"malformed YAML: {exc}") from None
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
        name=str(data.get("name", p.stem)),
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


def _learn_job(
    scenario_json: str, timeline: dict[str, Any], extra_eval_rounds: list[int], threads: int
) -> list[dict[str, Any]]:
    """Worker: build the point's learning job and train the rounds of its timeline (the
    network half was simulated by the parent; only its outcome comes here)."""
    import dataclasses

    import torch

    from qfl.cosim.netbuild import build_topology
    from qfl.cosim.run import build_job, eval_rounds_for
    from qfl.cosim.schedule import Timeline

    if threads > 0:
        torch.set_num_threads(threads)
    sc = Scenario.model_validate_json(scenario_json)
    job = build_job(sc, build_topology(sc))
    tl = Timeline(
        rounds_done=timeline["rounds_done"],
        dropped={tuple(d) for d in timeline["dropped"]},
    )
    out: list[dict[str, Any]] = []

    def got(_r: int, rows: list[Any]) -> None:
        out.extend(dataclasses.asdict(x) for x in rows)

    rounds = eval_rounds_for(tl.rounds_done, sc.learning.eval_every, extra_eval_rounds)
    job.execute(tl, rounds, got)
    return out


EXECUTORS = ("local", "ray", "inline")


Task = tuple[str, dict[str, Any], list[int]]


def _run_tasks(
    tasks: Sequence[Task], executor: str, jobs: int | None, address: str | None
) -> list[list[dict[str, Any]]]:
    """Run learning tasks ``(scenario_json, timeline, extra_eval_rounds)`` on the executor."""
    import os

    cpus = os.cpu_count() or 1
    if executor == "inline" or (executor == "local" and (len(tasks) <= 1 or jobs == 1)):
        return [_learn_job(s, t, e, 0) for s, t, e in tasks]
    if executor == "local":
        import concurrent.futures as cf
        import multiprocessing as mp

        workers = max(1, min(len(tasks), jobs or cpus))
        threads = max(1, cpus // workers)
        ctx = mp.get_context("spawn")
        with cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            futures = [pool.submit(_learn_job, s, t, e, threads) for s, t, e in tasks]
            return [f.result() for f in futures]
    if executor == "ray":
        try:
            import ray
        except ImportError:
            raise ScenarioError(
                "--executor", "'ray' needs the ray extra: pip install 'qfl[ray]'"
            ) from None
        started = False
        if not ray.is_initialized():
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
            started = True
        try:
            remote = ray.remote(_learn_job)
            refs = [remote.remote(s, t, e, 1) for s, t, e in tasks]
            return list(ray.get(refs))
        finally:
            if started:
                ray.shutdown()
    raise ScenarioError("--executor", f"must be one of {', '.join(EXECUTORS)}, got {executor!r}")


def _prefix_of(short: Any, long: Any) -> bool:
    """Whether the timeline structure ``short`` is a prefix of ``long`` (rounds, drops)."""
    n = short[0]
    drops_long = tuple(d for d in long[1] if d[0] < n)
    return short[1] == drops_long and tuple(short[2]) == tuple(long[2][: len(short[2])])


def _pending(
    spec: SweepSpec, points: Sequence[SweepPoint], folder: Path, rows: dict[int, dict[str, Any]]
) -> list[SweepPoint]:
    """The points to run on ``--resume``; the finished ones' table rows go into ``rows``."""
    todo = []
    for p in points:
        pdir = folder / "points" / p.slug
        done = _read_summary(pdir)
        if (
            done is not None
            and done.get("status") == "complete"
            and _same_scenario(pdir, p.scenario)
        ):
            rows[p.index] = _table_row(spec, p, done, resumed=True)
        else:
            todo.append(p)
    return todo


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


def _task(nruns: Mapping[int, Any], group: Sequence[int]) -> Task:
    """The learning task of a group: its lead's scenario and timeline, every evaluation."""
    lead = nruns[group[0]]
    tl = lead.timeline
    extra = sorted({nruns[i].timeline.rounds_done for i in group})
    timeline = {"rounds_done": tl.rounds_done, "dropped": sorted(tl.dropped)}
    return lead.scenario.model_dump_json(), timeline, extra


def _write_point(
    folder: Path,
    nr: Any,
    all_rows: Sequence[Any],
    *,
    plots: bool,
    group: tuple[int, int],
    wall: dict[str, float],
) -> dict[str, Any]:
    """Write one point's run folder (``folder``) from its group's evaluations; return its
    summary."""
    from qfl.cosim.outputs import RunFolder
    from qfl.cosim.run import eval_rounds_for, summarize_run

    sc = nr.scenario
    mine = eval_rounds_for(nr.timeline.rounds_done, sc.learning.eval_every)
    prow = [r for r in all_rows if r.round in mine]
    out = RunFolder(folder, nr)
    out.add(prow)
    summary = summarize_run(nr, prow, status="complete", wall=wall)
    summary["learning_group"], summary["learning_group_size"] = group
    out.close(summary, plots=plots)
    return summary


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
        The sweep table, a row per point.
    """
    from qfl.cosim.jobs import EvalRow
    from qfl.cosim.run import simulate_network

    if executor not in EXECUTORS:
        raise ScenarioError(
            "--executor", f"must be one of {', '.join(EXECUTORS)}, got {executor!r}"
        )
    import time

    t0 = time.perf_counter()
    points = sweep_points(spec)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "points").mkdir(exist_ok=True)
    meta: dict[str, Any] = {
        "name": spec.name,
        "base": spec.base.name,
        "grid": {k: list(v) for k, v in spec.grid.items()},
        "x": spec.x,
        "series": spec.series,
        "x_label": _x_label(spec.x),
        "points": len(points),
    }
    write_json_atomic(meta, folder / "sweep.json")
    rows: dict[int, dict[str, Any]] = {}
    todo = _pending(spec, points, folder, rows) if resume else list(points)
    # Network half of every point (cheap), then group points by learning inputs.
    cache: dict[str, Any] = {}  # one learning job per distinct learning input, not per point
    nruns = {p.index: simulate_network(p.scenario, job_cache=cache) for p in todo}
    groups = _learning_groups(nruns)
    tasks = [_task(nruns, g) for g in groups]
    t_net = time.perf_counter() - t0
    t1 = time.perf_counter()
    results = _run_tasks(tasks, executor, jobs, address)
    t_learn = time.perf_counter() - t1
    by_point = {p.index: p for p in points}
    for k, (g, res) in enumerate(zip(groups, results, strict=True)):
        all_rows = [EvalRow(**{**r, "exit_acc": tuple(r["exit_acc"])}) for r in res]
        for i in g:
            wall = {"network_s": nruns[i].wall_s, "learning_shared_s": t_learn}
            pdir = folder / "points" / by_point[i].slug
            summary = _write_point(
                pdir, nruns[i], all_rows, plots=plots, group=(k, len(g)), wall=wall
            )
            rows[i] = _table_row(spec, by_point[i], summary, resumed=False)
            if on_point is not None:
                on_point(len(rows), len(points), rows[i])
    table = [rows[i] for i in sorted(rows)]
    write_sweep_table(table, folder / "sweep.csv")
    meta.update(
        {
            "learning_jobs": len(groups),
            "wall_network_s": t_net,
            "wall_learning_s": t_learn,
            "wall_total_s": time.perf_counter() - t0,
        }
    )
    write_json_atomic(meta, folder / "sweep.json")
    if plots:
        from qfl.cosim.plots import plot_sweep

        plot_sweep(
            table, folder / "keyrate_vs_accuracy.png", x=_x_column(spec.x), x_label=meta["x_label"]
        )
    return table


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
    import yaml

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
    row["resumed"] = resumed
    return row
