"""Planner studies: the questions a QKD network planner asks, one command each.

``threshold``
    The least value of a knob (a key rate scale, one link's rate, a block size, a pool) that
    still reaches a target accuracy by a deadline, or with ``maximize`` the largest value of
    a knob where more is worse (a link's length). Bracketing, then bisection in log space to
    a relative tolerance.
``contingency``
    N-1 (or N-2): every single link cut and every trusted relay down, from ``at_s``, against
    the intact baseline, ranked by the harm done to time-to-target and final accuracy, with
    whether the learners stayed connected and how much traffic was rerouted.
``upgrade``
    For each link, the time-to-target gained by multiplying its key rate by a factor: where
    the next QKD system should go.

Every evaluated point is a normal run folder under ``points/`` (resumable, parallel through
the sweep executors, :class:`qfl.cosim.sweep.PointRunner`); learning executions are shared
between points whose learning inputs are identical and whose timelines are prefixes of one
another, so a study whose knob only moves *when* rounds happen (a synchronous method, a key
rate) trains once and answers the rest from the network half. Each row says whether its
answer needed its own learning execution (``learning``: ``ran``) or only the network half
(``shared`` / ``reused``). The study folder holds ``plan.json`` (the question, the answer in
one line, the table), ``plan.csv`` and a plot. The points' own plots are not drawn (a study
runs many points; ``qfl plot points/<slug>`` or ``qfl report`` draws one when wanted).
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qfl.cosim.sweep import PointRunner, SweepPoint, write_json_atomic, write_sweep_table
from qfl.scenario import FaultSpec, Scenario, ScenarioError, apply_overrides

__all__ = [
    "KNOBS",
    "StudyResult",
    "accuracy_noise",
    "check_kinds",
    "check_knob",
    "check_threshold",
    "contingency",
    "knob_direction",
    "threshold",
    "upgrade",
    "upgrade_kinds",
]

# (pattern, direction, what): direction +1 = more of it helps, -1 = more of it hurts.
_LINK = r"topology\.links\[\d+\]"
KNOBS: tuple[tuple[str, int, str], ...] = (
    (r"qkd\.rate_scale", 1, "scales every link's key rate"),
    (rf"{_LINK}\.skr_bps", 1, "one link's secret key rate"),
    (rf"(qkd|{_LINK})\.pool_capacity_bits", 1, "key store size"),
    (rf"(qkd|{_LINK})\.initial_fill_bits", 1, "key stored at t = 0"),
    (rf"(qkd|{_LINK})\.bandwidth_bps", 1, "classical bandwidth"),
    (r"qkd\.block_size", 1, "finite-key block size (smaller blocks pay more finite-size cost)"),
    (r"qkd\.detector_efficiency", 1, "detector efficiency"),
    (r"topology\.nodes\[\d+\]\.flops_per_s", 1, "a node's compute speed"),
    (r"compute\.default_flops_per_s", 1, "compute speed"),
    (r"cipher\.rekey_bytes", 1, "AES re-key interval (bytes)"),
    (r"cipher\.rekey_seconds", 1, "AES re-key interval (s)"),
    (r"satellites\.[^.]+\.max_passes", 1, "passes a satellite makes key in"),
    (r"satellites\.[^.]+\.min_elevation_deg", -1, "a satellite's elevation mask"),
    (rf"{_LINK}\.length_km", -1, "a link's fibre length"),
    (rf"(qkd|{_LINK})\.attenuation_db_per_km", -1, "fibre attenuation"),
    (rf"{_LINK}\.latency_s", -1, "a link's latency"),
    (r"qkd\.misalignment", -1, "optical misalignment (QBER)"),
    (r"qkd\.dark_count_prob", -1, "detector dark counts"),
    (r"qkd\.postprocess_s", -1, "post-processing latency per block"),
    (r"qkd\.auth_bits_per_block", -1, "authentication key per block"),
)


def knob_direction(path: str) -> int:
    """+1 if more of the field ``path`` reaches the target sooner, -1 if later.

    Raises
    ------
    ScenarioError
        For a field whose effect is not monotone (learning hyperparameters, the seed, a
        method's name...), naming the knobs that are.

    Examples
    --------
    >>> knob_direction("qkd.rate_scale"), knob_direction("topology.links[3].length_km")
    (1, -1)
    """
    for pattern, direction, _ in KNOBS:
        if re.fullmatch(pattern, path):
            return direction
    allowed = "qkd.rate_scale, topology.links[i].skr_bps|length_km|bandwidth_bps, qkd.block_size"
    raise ScenarioError(
        "--vary",
        f"{path!r} is not a knob with a monotone effect on time to target (learning "
        f"hyperparameters change accuracy non-monotonically; use qfl sweep for them); "
        f"allowed: {allowed}, pool sizes, flops, attenuation... (qfl.cosim.studies.KNOBS)",
    )


def check_knob(sc: Scenario, path: str) -> int:
    """The direction of knob ``path`` (see :func:`knob_direction`), after checking that it
    names a field of ``sc``.

    Raises
    ------
    ScenarioError
        For a path naming no field, or a field that is not a monotone knob.
    """
    _current(sc, path)
    return knob_direction(path)


@dataclass
class StudyResult:
    """What a study found: the answer in one line, the table, and its files."""

    kind: str
    answer: str
    rows: list[dict[str, Any]]
    folder: Path
    meta: dict[str, Any] = field(default_factory=dict)


def _current(sc: Scenario, path: str) -> Any:
    """The value of a dotted field (``topology.links[2].skr_bps``) in ``sc``."""
    node: Any = sc.model_dump(mode="python")
    for part in re.findall(r"[^.\[\]]+|\[\d+\]", path):
        if part.startswith("["):
            idx = int(part[1:-1])
            if not isinstance(node, list | tuple) or idx >= len(node):
                raise ScenarioError("--vary", f"{path!r}: index {idx} names no element")
            node = node[idx]
        else:
            if not isinstance(node, dict) or part not in node:
                raise ScenarioError("--vary", f"{path!r} names no scenario field")
            node = node[part]
    return node


def _is_integer(vary: str, cur: Any) -> bool:
    """Whether the field ``vary`` (today ``cur``) takes whole numbers."""
    return isinstance(cur, int) or vary.endswith(("block_size", "max_passes"))


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def _hours(s: float | None) -> str:
    if s is None:
        return "-"
    return f"{s / 3600:.2f} h" if s >= 3600 else f"{s / 60:.1f} min" if s >= 60 else f"{s:.1f} s"


def _write(result: StudyResult, columns: Sequence[str]) -> None:
    """``plan.json`` and ``plan.csv`` (atomically; rewritten after each batch)."""
    data = {
        "kind": result.kind,
        "answer": result.answer,
        "columns": list(columns),
        "rows": result.rows,
        **result.meta,
    }
    write_json_atomic(data, result.folder / "plan.json")
    write_sweep_table(result.rows, result.folder / "plan.csv")


def _run_counted(
    runner: PointRunner,
    pts: Sequence[SweepPoint],
    key: str,
    on_point: Callable[[int, int, str], None] | None,
    resume: bool,
) -> dict[int, dict[str, Any]]:
    """One batch; ``on_point(done, total, label)`` as each point's folder is written."""
    done = 0

    def written(p: SweepPoint, _s: Mapping[str, Any]) -> None:
        nonlocal done
        done += 1
        if on_point is not None:
            on_point(done, len(pts), str(p.values[key]))

    return runner.run(pts, on_written=written, resume=resume)


def _finish(result: StudyResult, cols: Sequence[str], png: str, metric: str) -> StudyResult:
    """Write a ranked study's files: ``plan.json``, ``plan.csv`` and its impact plot."""
    from qfl.cosim.studyplots import plot_impact

    _write(result, cols)
    plot_impact(result, result.folder / png, metric=metric)
    return result


# ----------------------------------------------------------------------------- threshold


@dataclass
class _Eval:
    value: float
    holds: bool
    summary: dict[str, Any]
    slug: str


def check_threshold(
    base: Scenario,
    *,
    vary: str,
    target: float,
    within_s: float,
    lo: float | None = None,
    hi: float | None = None,
    rtol: float = 0.1,
    maximize: bool = False,
) -> tuple[int, float, float, Any]:
    """Check a threshold question without running anything (``qfl plan threshold`` calls it
    before it creates the study folder, so a refused question leaves nothing behind).

    Returns
    -------
    tuple
        The knob's direction (:func:`knob_direction`), the search range ``(lo, hi)``
        (defaults filled in, see :func:`threshold`) and the knob's current value.

    Raises
    ------
    ScenarioError
        As :func:`threshold` does for a bad question.
    """
    direction = check_knob(base, vary)
    if direction < 0 and not maximize:
        raise ScenarioError("--vary", f"more of {vary} is worse: add --maximize to find the "
                            "largest value that still reaches the target")  # fmt: skip
    if direction > 0 and maximize:
        raise ScenarioError("--maximize", f"more of {vary} helps: drop --maximize to find the "
                            "least value that reaches the target")  # fmt: skip
    if not 0 < target <= 1:
        raise ScenarioError("--target", f"must be in (0, 1], got {target}")
    if not within_s > 0 or not math.isfinite(within_s):
        raise ScenarioError("--within", f"must be a positive duration, got {within_s} s")
    if not rtol > 0:
        raise ScenarioError("--rtol", f"must be > 0, got {rtol}")
    cur = _current(base, vary)
    if isinstance(cur, bool) or not isinstance(cur, int | float | None):
        raise ScenarioError("--vary", f"{vary} is not numeric (its value is {cur!r})")
    if lo is None or hi is None:
        if not cur:
            raise ScenarioError("--range", f"{vary} is {cur!r} here: give the search range "
                                "explicitly (--range LO,HI)")  # fmt: skip
        # From today's value: how far a helping knob may fall (10^4), how far a hurting
        # one may grow (10^2).
        lo = (float(cur) / 1e4 if direction > 0 else float(cur)) if lo is None else lo
        hi = (float(cur) if direction > 0 else float(cur) * 100) if hi is None else hi
    if not (0 < lo < hi and math.isfinite(hi)):
        raise ScenarioError("--range", f"must satisfy 0 < LO < HI, got {lo}, {hi}")
    is_int = _is_integer(vary, cur)
    for v in (lo, hi):  # both ends must be values the scenario accepts
        try:
            apply_overrides(base, {vary: round(v) if is_int else float(v)})
        except ScenarioError as exc:
            raise ScenarioError(f"--vary {vary}={_fmt(v)}", exc.message) from None
    return direction, lo, hi, cur


def threshold(
    base: Scenario,
    folder: Path,
    *,
    vary: str,
    target: float,
    within_s: float,
    lo: float | None = None,
    hi: float | None = None,
    rtol: float = 0.1,
    maximize: bool = False,
    runner: PointRunner | None = None,
    resume: bool = False,
    on_eval: Callable[[float, bool, dict[str, Any]], None] | None = None,
) -> StudyResult:
    """The least value of ``vary`` that reaches ``target`` accuracy within ``within_s``.

    Parameters
    ----------
    base : Scenario
        The scenario; its ``learning.target_accuracy`` and ``horizon_s`` are replaced by
        ``target`` and ``within_s``.
    vary : str
        A dotted numeric field with a monotone effect (:data:`KNOBS`).
    lo, hi : float, optional
        The search range (default: from the field's current value down to 10^-4 of it for a
        knob where more helps, up to 100 times it for one where more hurts).
    rtol : float
        Stop when the bracket's ends are within this relative distance (``hi / lo <= 1 +
        rtol``).
    maximize : bool
        For knobs where more is worse: the *largest* value that still reaches the target.
    runner : PointRunner, optional
        Where points run (default: inline, in this process).
    resume : bool
        Reuse points of an earlier, interrupted study in ``folder``.

    Returns
    -------
    StudyResult
        ``meta["bracket"]`` is ``{"fails_at": a, "holds_at": b}`` (None for an end not
        seen); the rows are the evaluations in the order they ran.

    Raises
    ------
    ScenarioError
        An unknown, non-numeric or non-monotone field, a bad range, ``maximize`` on a knob
        where more helps (or its absence where more hurts), or evaluations that contradict
        monotonicity.
    """
    direction, lo, hi, cur = check_threshold(
        base, vary=vary, target=target, within_s=within_s, lo=lo, hi=hi, rtol=rtol,
        maximize=maximize,
    )  # fmt: skip
    sc0 = apply_overrides(base, {"learning.target_accuracy": target, "horizon_s": within_s})
    is_int = _is_integer(vary, cur)
    runner = runner or PointRunner(folder, executor="inline", plots=False)
    leaf = vary.split(".")[-1]
    evals: list[_Eval] = []
    result = StudyResult("threshold", "", [], folder)
    result.meta = {
        "scenario": base.name,
        "question": (
            f"{'largest' if maximize else 'least'} {vary} reaching "
            f"{100 * target:g} % accuracy within {_hours(within_s)}"
        ),
        "vary": vary,
        "target": target,
        "within_s": within_s,
        "range": [lo, hi],
        "rtol": rtol,
        "maximize": maximize,
    }
    columns = ["evaluation", leaf, "holds", "final_global_acc", "time_to_target_s",
               "rounds_done", "mean_skr_bps", "learning", "slug"]  # fmt: skip

    def run(values: Sequence[float]) -> list[_Eval]:
        pts: list[SweepPoint] = []
        for v in values:
            v = float(round(v)) if is_int else float(_fmt(v))  # the value the folder names
            try:
                sc = apply_overrides(sc0, {vary: int(v) if is_int else v})
            except ScenarioError as exc:
                raise ScenarioError(f"--vary {vary}={_fmt(v)}", exc.message) from None
            i = len(evals) + len(pts)
            pts.append(SweepPoint(i, {vary: _fmt(v)}, sc))
        got = runner.run(pts, eval_all=True, resume=resume)
        new = []
        for p in pts:
            s = got[p.index]
            if s.get("status") != "complete":
                raise ScenarioError(
                    f"--vary {vary}={p.values[vary]}",
                    f"the point failed: {s.get('error', 'see its folder')} "
                    f"({folder / 'points' / p.slug})",
                )
            ok = s.get("time_to_target_s") is not None and s["time_to_target_s"] <= within_s
            e = _Eval(float(p.values[vary]), ok, s, p.slug)
            new.append(e)
            evals.append(e)
            if on_eval is not None:
                on_eval(e.value, ok, s)
        _check_monotone(evals, direction, vary)
        result.rows = [_threshold_row(k, e, leaf) for k, e in enumerate(evals)]
        _write(result, columns)
        return new

    e_lo, e_hi = run([lo, hi])
    good, bad = (e_hi, e_lo) if direction > 0 else (e_lo, e_hi)
    bracket: dict[str, float | None] = {"fails_at": None, "holds_at": None}
    if bad.holds:
        bracket["holds_at"] = bad.value
        answer = (
            f"reached even at the {'highest' if maximize else 'lowest'} value: "
            f"{vary} = {_fmt(bad.value)} reaches {100 * target:g} % within {_hours(within_s)} "
            f"(widen --range to look further)"
        )
    elif not good.holds:
        bracket["fails_at"] = good.value
        best = max((e.summary.get("final_global_acc") or 0.0) for e in (e_lo, e_hi))
        answer = (
            f"never reached, even at {vary} = {_fmt(good.value)}: best accuracy "
            f"{100 * best:.1f} % by {_hours(within_s)} (target {100 * target:g} %); the knob "
            "does not bind there, or the deadline is too short"
        )
    else:
        a, b = bad.value, good.value  # fails at a, holds at b (the values evaluated)
        while max(a, b) / min(a, b) > 1 + rtol:
            (e,) = run([math.sqrt(a * b)])
            if e.value in (a, b):  # rounding (an integer knob) cannot split the bracket
                break
            a, b = (a, e.value) if e.holds else (e.value, b)
        bracket = {"fails_at": a, "holds_at": b}
        bound = "<=" if maximize else ">="
        answer = (
            f"{vary} {bound} {_fmt(b)} reaches {100 * target:g} % within {_hours(within_s)} "
            f"(fails at {_fmt(a)})"
        )
    result.answer = answer
    result.meta.update(
        bracket=bracket,
        evaluations=len(evals),
        learning_executions=runner.learning_executions,
    )
    _write(result, columns)
    from qfl.cosim.studyplots import plot_threshold

    plot_threshold(result, folder / "threshold.png")
    return result


def _threshold_row(k: int, e: _Eval, leaf: str) -> dict[str, Any]:
    s = e.summary
    return {
        "evaluation": k,
        leaf: e.value,
        "holds": e.holds,
        "final_global_acc": s.get("final_global_acc"),
        "time_to_target_s": s.get("time_to_target_s"),
        "rounds_done": s.get("rounds_done"),
        "mean_skr_bps": s.get("mean_skr_bps"),
        "learning": s.get("learning", ""),
        "slug": e.slug,
    }


def _check_monotone(evals: Sequence[_Eval], direction: int, vary: str) -> None:
    """Evaluations must agree with a monotone knob: no value that holds below (for a
    helping knob) one that fails."""
    for e1, e2 in itertools.combinations(evals, 2):
        lo_e, hi_e = (e1, e2) if e1.value < e2.value else (e2, e1)
        better, worse = (hi_e, lo_e) if direction > 0 else (lo_e, hi_e)
        if worse.holds and not better.holds:
            raise ScenarioError(
                "--vary",
                f"{vary} is not monotone here: the target is reached at {_fmt(worse.value)} "
                f"but not at {_fmt(better.value)} (see points/{worse.slug} and "
                f"points/{better.slug}); use qfl sweep to map it",
            )


# --------------------------------------------------------------------------- contingency


def _label(el: tuple[str, Any]) -> str:
    kind, what = el
    return f"cut {what[0]}-{what[1]}" if kind == "link" else f"{what} down"


def contingency_variants(sc: Scenario, k: int = 1, topo: Any = None) -> list[list[tuple[str, Any]]]:
    """Every set of ``k`` elements (links and relays) to fail, in a stable order.

    ``topo`` is ``sc``'s checked topology (:func:`qfl.cosim.netbuild.check_network`; checked
    here when not given)."""
    from qfl.cosim.netbuild import check_network

    topo = check_network(sc) if topo is None else topo
    elements: list[tuple[str, Any]] = [("link", (lk.a, lk.b)) for lk in topo.links]
    elements += [("relay", n.name) for n in topo.nodes if n.role == "relay"]
    return [list(c) for c in itertools.combinations(elements, k)]


def contingency(
    base: Scenario,
    folder: Path,
    *,
    k: int = 1,
    at_s: float = 0.0,
    runner: PointRunner | None = None,
    resume: bool = False,
    on_point: Callable[[int, int, str], None] | None = None,
) -> StudyResult:
    """N-k contingency: the intact network and every ``k`` links / relays failed at ``at_s``.

    Returns
    -------
    StudyResult
        Rows ranked by impact (never reaching the target first, then the largest delay in
        time to target, then the largest loss of final accuracy); the baseline is row 0.
    """
    if k < 1:
        raise ScenarioError("--k", f"must be 1 or more, got {k}")
    if at_s < 0 or not math.isfinite(at_s):
        raise ScenarioError("--at", f"must be a time >= 0 s, got {at_s}")
    from network.topology import build_graph
    from qfl.cosim.netbuild import check_network

    topo = check_network(base)  # once: the variants, the graph and the learners come from it
    variants = contingency_variants(base, k, topo)
    runner = runner or PointRunner(folder, executor="inline", plots=False)
    pts = [SweepPoint(0, {"variant": "intact"}, base)]
    for i, combo in enumerate(variants, start=1):
        faults = list(base.faults)
        for kind, what in combo:
            if kind == "link":
                faults.append(FaultSpec(kind="link-cut", at_s=at_s, link=tuple(what)))
            else:
                faults.append(FaultSpec(kind="node-down", at_s=at_s, node=what))
        sc = base.model_copy(update={"faults": tuple(faults)})
        label = " + ".join(_label(el) for el in combo)
        pts.append(SweepPoint(i, {"variant": label.replace(" ", "_")}, sc))
    got = _run_counted(runner, pts, "variant", on_point, resume)
    base_paths = _paths(folder / "points" / pts[0].slug)
    graph = build_graph(topo)
    clients = set(_participants(base, topo))
    rows = []
    b = got[0]
    for p in pts:
        s = got[p.index]
        combo = variants[p.index - 1] if p.index else []
        rows.append(
            {
                "variant": "intact (baseline)" if not combo else " + ".join(map(_label, combo)),
                "connected": _connected(graph, combo, clients),
                "rerouted_share": _rerouted(folder / "points" / p.slug, base_paths),
                "transfers_failed": s.get("transfers_failed"),
                "rounds_done": s.get("rounds_done"),
                "final_global_acc": s.get("final_global_acc"),
                "time_to_target_s": s.get("time_to_target_s"),
                "delay_s": _delta(s.get("time_to_target_s"), b.get("time_to_target_s")),
                "acc_loss": _delta(b.get("final_global_acc"), s.get("final_global_acc")),
                "learning": s.get("learning", ""),
                "status": s.get("status"),
                "slug": p.slug,
            }
        )
    noise = accuracy_noise(b.get("final_global_acc"), base.learning.test_samples)
    for row in rows[1:]:
        row["harm"] = _harm(row, rows[0], noise)
    ranked = [rows[0], *sorted(rows[1:], key=lambda r: (_severity(r, rows[0], noise),
                                                          r["variant"]))]  # fmt: skip
    for r, row in enumerate(ranked):
        row["rank"] = r
    worst = ranked[1] if len(ranked) > 1 else None
    target = base.learning.target_accuracy
    answer = _contingency_answer(worst, b, target, noise)
    result = StudyResult("contingency", answer, ranked, folder)
    result.meta = {
        "scenario": base.name,
        "question": f"N-{k}: which single {'failure' if k == 1 else 'pair of failures'} "
        f"hurts reaching {100 * target:g} % most (failures from t = {at_s:g} s)",
        "k": k,
        "at_s": at_s,
        "target": target,
        "within_s": base.horizon_s,
        "evaluations": len(pts),
        "learning_executions": runner.learning_executions,
        "accuracy_noise": noise,
        "ranking": _ranking_rule(noise, base.learning.test_samples),
    }
    cols = ["rank", "variant", "harm", "connected", "rerouted_share", "transfers_failed",
            "rounds_done", "final_global_acc", "time_to_target_s", "delay_s", "acc_loss",
            "learning", "status", "slug"]  # fmt: skip
    return _finish(result, cols, "contingency.png", "delay_s")


def accuracy_noise(acc: float | None, test_samples: int | None) -> float:
    """The accuracy change that is within noise: twice the standard error of the difference
    of two accuracies measured on ``test_samples`` test samples (10 000 when None, the size
    of Fashion-MNIST's test set), at accuracy ``acc``; at least 0.5 points.

    Examples
    --------
    >>> round(accuracy_noise(0.6, 2000), 4)
    0.031
    """
    p = 0.5 if acc is None else min(max(acc, 0.01), 0.99)
    n = test_samples or 10_000
    return max(0.005, 2 * math.sqrt(2 * p * (1 - p) / n))


def _ranking_rule(noise: float, test_samples: int | None) -> str:
    n = test_samples or 10_000
    return (
        "most harmful first: target missed where the intact network reaches it; then learners "
        "disconnected; then the delay in time to target; then the loss of final accuracy "
        f"beyond noise (changes within +-{100 * noise:.1f} points, two standard errors on "
        f"{n} test samples, count as none); then rounds lost; then transfers failed"
    )


def _misses(row: Mapping[str, Any], base: Mapping[str, Any]) -> bool:
    return base.get("time_to_target_s") is not None and row.get("time_to_target_s") is None


def _loss_beyond_noise(row: Mapping[str, Any], base: Mapping[str, Any], noise: float) -> float:
    acc, b = row.get("final_global_acc"), base.get("final_global_acc")
    if b is None:
        return 0.0
    if acc is None:
        return b  # no evaluation at all: everything is lost
    return b - acc if abs(b - acc) > noise else 0.0


def _severity(row: Mapping[str, Any], base: Mapping[str, Any], noise: float) -> tuple[Any, ...]:
    """Sort key of :func:`contingency`'s ranking, most harmful first (see
    :func:`_ranking_rule`)."""
    lost = (base.get("rounds_done") or 0) - (row.get("rounds_done") or 0)
    return (
        not _misses(row, base),
        bool(row.get("connected", True)),
        -(row.get("delay_s") or 0.0),
        -_loss_beyond_noise(row, base, noise),
        -lost,
        -(row.get("transfers_failed") or 0),
    )


def _harm(row: Mapping[str, Any], base: Mapping[str, Any], noise: float) -> str:
    """The reason of a row's rank, in a few words."""
    parts = []
    if _misses(row, base):
        parts.append("target missed")
    if not row.get("connected", True):
        parts.append("disconnects learners")
    if (row.get("delay_s") or 0.0) > 0:
        parts.append(f"{_hours(row['delay_s'])} later")
    loss = _loss_beyond_noise(row, base, noise)
    if loss > 0:
        parts.append(f"-{100 * loss:.1f} points")
    elif loss < 0:
        parts.append(f"+{-100 * loss:.1f} points")
    lost = (base.get("rounds_done") or 0) - (row.get("rounds_done") or 0)
    if lost > 0:
        parts.append(f"{lost} round(s) lost")
    return ", ".join(parts) or "none beyond noise"


def _contingency_answer(
    worst: Mapping[str, Any] | None, base: Mapping[str, Any], target: float, noise: float
) -> str:
    if worst is None:
        return "no link or relay to fail"
    bt = base.get("time_to_target_s")
    wt = worst.get("time_to_target_s")
    head = f"worst: {worst['variant']}"
    if not worst["connected"]:
        head += " (disconnects learners)"
    if bt is not None and wt is None:
        acc = worst.get("final_global_acc")
        acc_text = f"{100 * acc:.1f} %" if acc is not None else "no accuracy"
        return (
            f"{head}: {100 * target:g} % never reached (ends at {acc_text}; intact: {_hours(bt)})"
        )
    if bt is not None and wt is not None:
        return f"{head}: {100 * target:g} % after {_hours(wt)} instead of {_hours(bt)}"
    acc, intact = worst.get("final_global_acc"), base.get("final_global_acc")
    if acc is None or intact is None:
        return f"{head}: no evaluation to compare (see the table)"
    diff = acc - intact
    within = f", within noise +-{100 * noise:.1f}" if abs(diff) <= noise else ""
    return (
        f"{head}: final accuracy {100 * acc:.1f} % vs {100 * intact:.1f} % intact "
        f"({100 * diff:+.1f} points{within}; {100 * target:g} % is not reached even intact)"
    )


def _delta(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def _participants(sc: Scenario, topo: Any) -> list[str]:
    """The learners and the server (if any) of ``sc`` on its checked topology ``topo``."""
    names = list(sc.learning.clients) or [n.name for n in topo.nodes if n.role == "client"]
    servers = [n.name for n in topo.nodes if n.role == "server"]
    if sc.learning.server:
        servers = [sc.learning.server]
    return names + servers[:1]


def _connected(graph: Any, combo: Sequence[tuple[str, Any]], nodes: set[str]) -> bool:
    """Whether the learners (and the server) stay in one component after ``combo``."""
    g = graph.copy()
    for kind, what in combo:
        if kind == "link":
            g.remove_edge(*what)
        else:
            g.remove_node(what)
    alive = [n for n in nodes if n in g]
    if len(alive) < len(nodes):
        return False
    if len(alive) <= 1:
        return True
    import networkx as nx

    component = nx.node_connected_component(g, alive[0])
    return all(n in component for n in alive)


def _paths(pdir: Path) -> dict[tuple[str, str], str]:
    """The path each (src, dst) pair's transfers took in a run folder."""
    import csv

    out: dict[tuple[str, str], str] = {}
    try:
        with open(pdir / "transfers.csv", encoding="utf-8") as fh:
            for r in csv.DictReader(fh):
                out.setdefault((r["src"], r["dst"]), r.get("path", ""))
    except OSError:
        pass
    return out


def _rerouted(pdir: Path, base_paths: Mapping[tuple[str, str], str]) -> float | None:
    """The share of bytes whose path differs from the intact network's for that pair."""
    import csv

    moved = total = 0.0
    try:
        with open(pdir / "transfers.csv", encoding="utf-8") as fh:
            for r in csv.DictReader(fh):
                n = float(r.get("n_bytes") or 0)
                total += n
                known = base_paths.get((r["src"], r["dst"]))
                if known is not None and r.get("path", "") != known:
                    moved += n
    except OSError:
        return None
    return moved / total if total else 0.0


# ------------------------------------------------------------------------------- upgrade


def upgrade(
    base: Scenario,
    folder: Path,
    *,
    factor: float = 2.0,
    runner: PointRunner | None = None,
    resume: bool = False,
    on_point: Callable[[int, int, str], None] | None = None,
) -> StudyResult:
    """For each link, the time to target with that link's key rate multiplied by ``factor``.

    Returns
    -------
    StudyResult
        The baseline first, then the links ranked by the time-to-target gained (then by
        final accuracy gained).
    """
    from qfl.cosim.netbuild import build_topology

    if not factor > 0 or not math.isfinite(factor):
        raise ScenarioError("--factor", f"must be a positive number, got {factor}")
    if base.topology.file is not None:
        raise ScenarioError("topology.file", "upgrade advice needs the links inline in the "
                            "scenario (topology.links), to set one link's rate")  # fmt: skip
    if base.qkd.rate_scale == 0:
        raise ScenarioError("qkd.rate_scale", "is 0: there is no key rate to multiply")
    topo = build_topology(base)
    runner = runner or PointRunner(folder, executor="inline", plots=False)
    pts = [SweepPoint(0, {"upgrade": "none"}, base)]
    for i, (spec, built) in enumerate(zip(base.topology.links, topo.links, strict=True)):
        rate = (built.skr_bps or 0.0) / base.qkd.rate_scale * factor
        sc = apply_overrides(base, {f"topology.links[{i}].skr_bps": rate})
        pts.append(SweepPoint(i + 1, {"upgrade": f"{spec.a}-{spec.b}"}, sc))
    got = _run_counted(runner, pts, "upgrade", on_point, resume)
    b = got[0]
    rows = []
    for p in pts:
        s = got[p.index]
        i = p.index - 1
        rows.append(
            {
                "link": "none (baseline)" if p.index == 0 else p.values["upgrade"],
                "skr_bps": None if p.index == 0 else topo.links[i].skr_bps,
                "upgraded_skr_bps": None
                if p.index == 0
                else (topo.links[i].skr_bps or 0.0) * factor,
                "time_to_target_s": s.get("time_to_target_s"),
                "gain_s": _delta(b.get("time_to_target_s"), s.get("time_to_target_s")),
                "final_global_acc": s.get("final_global_acc"),
                "acc_gain": _delta(s.get("final_global_acc"), b.get("final_global_acc")),
                "rounds_done": s.get("rounds_done"),
                "rounds_planned": s.get("rounds_planned"),
                "sim_time_end_s": s.get("sim_time_end_s"),
                "key_wait_s": s.get("time_stalled_on_key_s"),
                "learning": s.get("learning", ""),
                "status": s.get("status"),
                "slug": p.slug,
            }
        )

    ranked = [rows[0], *sorted(rows[1:], key=_soonest)]
    for r, row in enumerate(ranked):
        row["rank"] = r
    target = base.learning.target_accuracy
    answer = _upgrade_answer(ranked, b, factor, target, base.horizon_s)
    needed = sum(1 for r in rows if r["learning"] == "ran")
    result = StudyResult("upgrade", answer, ranked, folder)
    result.meta = {
        "scenario": base.name,
        "question": f"which link's key rate x{factor:g} brings {100 * target:g} % soonest",
        "factor": factor,
        "target": target,
        "within_s": base.horizon_s,
        "evaluations": len(pts),
        "learning_executions": runner.learning_executions,
        "answers_needing_learning": needed,
        "binds": b.get("binds"),
        "time_share": b.get("time_share"),
        "ranking": "the upgrades that reach the target first, soonest first; then the rest "
        "by accuracy at the horizon, highest first; then by rounds completed, ended soonest",
    }
    cols = ["rank", "link", "skr_bps", "upgraded_skr_bps", "time_to_target_s", "gain_s",
            "final_global_acc", "acc_gain", "rounds_done", "sim_time_end_s", "key_wait_s",
            "learning", "status", "slug"]  # fmt: skip
    return _finish(result, cols, "upgrade.png", "gain_s")


def check_kinds(kinds: Sequence[str]) -> tuple[str, ...]:
    """The ``--kinds`` of an upgrade study, each a link kind a scenario accepts.

    Raises
    ------
    ScenarioError
        On ``--kinds`` for an empty list or an unknown kind (listing the allowed ones).
    """
    from qfl.scenario.qkd import protocol_names

    allowed = protocol_names()
    names = tuple(dict.fromkeys(k.strip() for k in kinds if k.strip()))
    if not names:
        raise ScenarioError("--kinds", f"must name kinds: {', '.join(allowed)}")
    for k in names:
        if k not in allowed:
            raise ScenarioError("--kinds", f"must be among {', '.join(allowed)}, got {k!r}")
    return names


def upgrade_kinds(
    base: Scenario,
    folder: Path,
    *,
    kinds: Sequence[str],
    runner: PointRunner | None = None,
    resume: bool = False,
    on_point: Callable[[int, int, str], None] | None = None,
) -> StudyResult:
    """For each fibre link and each kind of ``kinds``, the time to target with that link
    running that kind (its parameters: a ``qkd.systems`` entry or preset the scenario names
    for the kind, else the kind's default preset), where the kind reaches the link's length.

    Links that already run the kind, satellite links and links whose length is beyond the
    kind's reach (:meth:`qkd.kinds.LinkKind.max_distance_km`; the BB84 models are not
    pre-checked) are skipped. A link's measured ``skr_bps`` is dropped in its variants.

    Returns
    -------
    StudyResult
        The baseline first, then the changes ranked as :func:`upgrade` ranks them; each row
        names the ``kind``, the link (``on_link``) and the key rate before and after.
    """
    from qfl.cosim.netbuild import build_topology, link_kinds
    from qfl.scenario.linkkinds import link_kind
    from qkd.kinds import get_kind

    names = check_kinds(kinds)
    if base.topology.file is not None:
        raise ScenarioError("topology.file", "kind changes need the links inline in the "
                            "scenario (topology.links), to change one link's kind")  # fmt: skip
    topo = build_topology(base)
    now = link_kinds(base, len(topo.links))
    runner = runner or PointRunner(folder, executor="inline", plots=False)
    pts = [SweepPoint(0, {"upgrade": "none"}, base)]
    where: dict[int, tuple[int, str]] = {}
    reach: dict[Any, float] = {}
    skipped: list[str] = []
    for i, (spec, built) in enumerate(zip(base.topology.links, topo.links, strict=True)):
        if now[i].satellite is not None:
            continue
        for k in names:
            if now[i].kind == k:
                continue
            sc = apply_overrides(base, {f"topology.links[{i}].protocol": k,
                                        f"topology.links[{i}].system": None,
                                        f"topology.links[{i}].preset": None,
                                        f"topology.links[{i}].skr_bps": None})  # fmt: skip
            choice = link_kind(sc, i)
            if choice.other_kind:
                key = (k, choice.params)
                if key not in reach:
                    reach[key] = get_kind(k).max_distance_km(choice.params)
                if built.length_km > reach[key]:
                    skipped.append(f"{k} on {spec.a}-{spec.b} ({built.length_km:.0f} km > "
                                   f"its reach {reach[key]:.0f} km)")  # fmt: skip
                    continue
            where[len(pts)] = (i, k)
            pts.append(SweepPoint(len(pts), {"upgrade": f"{k} on {spec.a}-{spec.b}"}, sc))
    got = _run_counted(runner, pts, "upgrade", on_point, resume)
    b = got[0]
    rows = []
    for p in pts:
        s = got[p.index]
        i, k = where.get(p.index, (-1, ""))
        name = topo.links[i].name if i >= 0 else ""
        after = next((r["skr_bps"] for r in s.get("links") or [] if r["link"] == name), None)
        rows.append(
            {
                "link": "none (baseline)" if p.index == 0 else p.values["upgrade"],
                "kind": k or None,
                "on_link": name or None,
                "from_kind": now[i].kind if i >= 0 else None,
                "skr_bps": topo.links[i].skr_bps if i >= 0 else None,
                "upgraded_skr_bps": after,
                "time_to_target_s": s.get("time_to_target_s"),
                "gain_s": _delta(b.get("time_to_target_s"), s.get("time_to_target_s")),
                "final_global_acc": s.get("final_global_acc"),
                "acc_gain": _delta(s.get("final_global_acc"), b.get("final_global_acc")),
                "rounds_done": s.get("rounds_done"),
                "rounds_planned": s.get("rounds_planned"),
                "sim_time_end_s": s.get("sim_time_end_s"),
                "key_wait_s": s.get("time_stalled_on_key_s"),
                "transfers_dropped": s.get("transfers_dropped"),
                "learning": s.get("learning", ""),
                "status": s.get("status"),
                "slug": p.slug,
            }
        )
    # a change under which model exchanges are dropped (a link whose key never suffices)
    # ranks after those that deliver them all, however soon its rounds end
    ranked = [rows[0], *sorted(rows[1:], key=lambda r: (bool(r["transfers_dropped"]),
                                                        *_soonest(r)))]  # fmt: skip
    for r, row in enumerate(ranked):
        row["rank"] = r
    target = base.learning.target_accuracy
    result = StudyResult("upgrade", _kinds_answer(ranked, b, target), ranked, folder)
    result.meta = {
        "scenario": base.name,
        "question": f"which link's kind ({', '.join(names)}) brings {100 * target:g} % soonest",
        "kinds": list(names),
        "target": target,
        "within_s": base.horizon_s,
        "evaluations": len(pts),
        "skipped": skipped,
        "learning_executions": runner.learning_executions,
        "answers_needing_learning": sum(1 for r in rows if r["learning"] == "ran"),
        "binds": b.get("binds"),
        "time_share": b.get("time_share"),
        "ranking": "the changes that reach the target first, soonest first; then the rest "
        "by accuracy at the horizon, highest first; then by rounds completed, ended soonest",
    }
    cols = ["rank", "link", "kind", "on_link", "from_kind", "skr_bps", "upgraded_skr_bps",
            "time_to_target_s", "gain_s", "final_global_acc", "acc_gain", "rounds_done",
            "sim_time_end_s", "key_wait_s", "transfers_dropped", "learning", "status",
            "slug"]  # fmt: skip
    return _finish(result, cols, "upgrade.png", "gain_s")


def _kinds_answer(
    ranked: Sequence[Mapping[str, Any]], base: Mapping[str, Any], target: float
) -> str:
    if len(ranked) < 2:
        return "no link where another of these kinds reaches its length"
    best = ranked[1]
    bt, t = base.get("time_to_target_s"), best.get("time_to_target_s")
    goal = f"{100 * target:g} %"
    lost = base.get("transfers_dropped") or 0
    if lost and not best.get("transfers_dropped"):
        return (
            f"{best['link']} delivers every model exchange (the baseline drops {lost}: a "
            f"link's key never suffices); {goal} after {_hours(t)}"
        )
    if best["gain_s"] is not None and best["gain_s"] > 0:
        return (
            f"{best['link']} saves {_hours(best['gain_s'])} to {goal}: after {_hours(t)} "
            f"instead of {_hours(bt)}"
        )
    if bt is None and t is not None:
        return f"{best['link']} makes {goal} reachable ({_hours(t)})"
    return f"no change of kind brings {goal} sooner ({_key_sentence(base)})"


def _soonest(row: Mapping[str, Any]) -> tuple[Any, ...]:
    """Sort key of :func:`upgrade`'s ranking: reaching the target first, soonest first; then
    the highest accuracy at the horizon; then the most rounds, ended soonest."""
    t, acc = row["time_to_target_s"], row["final_global_acc"]
    end = row.get("sim_time_end_s")
    return (t is None, t or 0.0, -(acc if acc is not None else -1.0),
            -(row.get("rounds_done") or 0), end if end is not None else math.inf,
            row["link"])  # fmt: skip


_KEY_BINDS = 0.10
"""Below this share of the baseline's round time key waiting does not bind."""


def _key_sentence(base: Mapping[str, Any], rows: Sequence[Mapping[str, Any]] = ()) -> str:
    """What the baseline's round time went to, honestly: whether key binds, where, and
    whether a faster key changes it at all (``rows``: the upgrades' rows)."""
    shares = base.get("time_share") or {}
    key = float(shares.get("key") or 0.0)
    others = {c: float(v or 0.0) for c, v in shares.items() if c != "key"}
    top, top_share = max(others.items(), key=lambda kv: kv[1], default=("compute", 0.0))
    waits = base.get("key_wait_by_link_s") or {}
    if not shares:
        return f"see what binds in summary.json ({base.get('binds', '-')})"
    if not any(shares.values()):
        return (
            f"the baseline completes no round within the horizon "
            f"({base.get('binds', 'no round completed')})"
        )
    if key < _KEY_BINDS:
        return (
            f"key does not bind here (key waiting is {100 * key:.0f} % of round time, "
            f"{top} {100 * top_share:.0f} %)"
        )
    where = ""
    if waits:
        link, sec = next(iter(waits.items()))
        where = f", most of it on link {link} ({sec:.3g} s)"
    wait = base.get("time_stalled_on_key_s")
    same = [r.get("key_wait_s") for r in rows]
    if wait and same and all(w is not None and math.isclose(w, wait) for w in same):
        return (
            f"key waiting is {100 * key:.0f} % of round time{where}, and exactly as long "
            "with every upgrade: it does not depend on the key rate (with finite-key blocks "
            "it is the wait for each link's first block, its collection and post-processing; "
            "qkd.initial_fill_bits, a smaller qkd.block_size or a shorter qkd.postprocess_s "
            "shortens it)"
        )
    return (
        f"key waiting is {100 * key:.0f} % of round time{where} ({top} {100 * top_share:.0f} %), "
        "but one link's faster key does not shorten the rounds enough: the wait moves to "
        "another link on the same chains, or the rest of the round binds"
    )


def _share(summary: Mapping[str, Any], component: str) -> float:
    return float((summary.get("time_share") or {}).get(component) or 0.0)


def _upgrade_answer(
    ranked: Sequence[Mapping[str, Any]],
    base: Mapping[str, Any],
    factor: float,
    target: float,
    horizon_s: float | None,
) -> str:
    if len(ranked) < 2:
        return "no link to upgrade"
    best = ranked[1]
    bt, t = base.get("time_to_target_s"), best.get("time_to_target_s")
    goal = f"{100 * target:g} %"
    by = f" within {_hours(horizon_s)}" if horizon_s else ""
    if bt is not None:
        if best["gain_s"] is not None and best["gain_s"] > 0:
            return (
                f"upgrade {best['link']} (key rate x{factor:g}): {goal} after {_hours(t)} "
                f"instead of {_hours(bt)} ({100 * best['gain_s'] / bt:.0f} % sooner)"
            )
        return (
            f"no single link's key rate x{factor:g} brings {goal} sooner than "
            f"{_hours(bt)}: {_key_sentence(base, ranked[1:])}"
        )
    b_acc = base.get("final_global_acc")
    b_text = f"ends at {100 * b_acc:.1f} %" if b_acc is not None else "is never evaluated"
    head = f"the baseline never reaches {goal}{by} (it {b_text})"
    reach = [r for r in ranked[1:] if r.get("time_to_target_s") is not None]
    if reach:
        more = f"; {len(reach) - 1} other upgrade(s) reach it later" if len(reach) > 1 else ""
        return (
            f"{head}; upgrade {best['link']} (key rate x{factor:g}) reaches it after "
            f"{_hours(t)}{more}"
        )
    acc = best.get("final_global_acc")
    done, planned = base.get("rounds_done"), base.get("rounds_planned")
    if done is not None and planned is not None and done >= planned:
        # every planned round completed: the learning falls short, not the key
        end, b_end = best.get("sim_time_end_s"), base.get("sim_time_end_s")
        sooner = ""
        if end is not None and b_end and end < b_end:
            sooner = (
                f"; key waiting is {100 * _share(base, 'key'):.0f} % of round time, so an "
                f"upgrade ends the rounds sooner (best: {best['link']}, after "
                f"{_hours(end)} instead of {_hours(b_end)}), but not more accurate"
            )
        elif _share(base, "key") >= _KEY_BINDS:
            sooner = "; " + _key_sentence(base, ranked[1:])
        return (
            f"the baseline never reaches {goal}{by}: it completes all {planned} planned "
            f"rounds and {b_text}, and no single link's key rate x{factor:g} reaches it "
            f"either: the learning falls short, not the key (more rounds or data, or a lower "
            f"target){sooner}"
        )
    if acc is None or b_acc is None:
        return (
            f"{head}, nor does any single link's key rate x{factor:g}: "
            f"{_key_sentence(base, ranked[1:])}"
        )
    return (
        f"{head}, nor does any single link's key rate x{factor:g} (best: {best['link']}, "
        f"{100 * acc:.1f} %, {100 * (acc - b_acc):+.1f} points): "
        f"{_key_sentence(base, ranked[1:])}"
    )
