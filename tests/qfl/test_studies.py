"""Planner studies (:mod:`qfl.cosim.studies`): threshold search, N-1 contingency, upgrade.

The tiny scenario (three clients around a relay, OTP, every link at 10^5 bit/s, a 25 s
horizon) completes its two rounds at full key rate and none at 10^-4 of it, so the least
rate scale reaching a low target lies inside the default search range.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from qfl.commands.plan import parse_duration
from qfl.cosim.studies import (
    _check_monotone,
    _Eval,
    contingency,
    knob_direction,
    threshold,
    upgrade,
)
from qfl.cosim.sweep import PointRunner
from qfl.scenario import Scenario, ScenarioError

Tiny = Callable[..., dict[str, Any]]


def tiny_scenario(tiny: Tiny) -> Scenario:
    d = tiny({"cipher": {"policy": "otp"}, "learning": {"rounds": 2}, "horizon_s": 25.0})
    for link in d["topology"]["links"]:
        link["skr_bps"] = 1.0e5
    return Scenario.model_validate(d)


def test_knob_directions() -> None:
    assert knob_direction("qkd.rate_scale") == 1
    assert knob_direction("topology.links[0].skr_bps") == 1
    assert knob_direction("qkd.block_size") == 1
    assert knob_direction("topology.links[2].length_km") == -1
    with pytest.raises(ScenarioError, match="not a knob with a monotone effect"):
        knob_direction("learning.lr")


@given(st.floats(0.001, 1e6), st.sampled_from(["", "s", "min", "h", "d"]))
def test_durations_scale_by_unit(x: float, unit: str) -> None:
    factor = {"": 1, "s": 1, "min": 60, "h": 3600, "d": 86400}[unit]
    assert parse_duration(f"{x!r}{unit}", "--within") == pytest.approx(x * factor)


@pytest.mark.parametrize("bad", ["0", "-1h", "1 week", "h", "nan", ""])
def test_bad_durations(bad: str) -> None:
    with pytest.raises(ScenarioError, match="--within"):
        parse_duration(bad, "--within")


def test_monotonicity_is_checked() -> None:
    ok = [_Eval(1.0, False, {}, "a"), _Eval(2.0, True, {}, "b")]
    _check_monotone(ok, 1, "qkd.rate_scale")
    bad = [_Eval(1.0, True, {}, "a"), _Eval(2.0, False, {}, "b")]
    with pytest.raises(ScenarioError, match="not monotone"):
        _check_monotone(bad, 1, "qkd.rate_scale")
    _check_monotone(bad, -1, "topology.links[0].length_km")  # more is worse: consistent


def _threshold(sc: Scenario, folder: Path, **kw: Any) -> Any:
    return threshold(sc, folder, vary="qkd.rate_scale", target=0.05, within_s=25.0, **kw)


def test_threshold_brackets_with_one_learning_execution(
    tiny: Tiny, tmp_path: Path, fmnist: Path
) -> None:
    sc = tiny_scenario(tiny)
    res = _threshold(sc, tmp_path)
    br = res.meta["bracket"]
    assert br["fails_at"] < br["holds_at"] <= 1.0
    assert br["holds_at"] / br["fails_at"] <= 1.1
    assert res.meta["learning_executions"] == 1  # every point's rounds are a prefix
    assert res.meta["evaluations"] == len(res.rows) >= 4
    for row in res.rows:  # every evaluated point is a normal run folder, agreeing
        s = json.loads((tmp_path / "points" / row["slug"] / "summary.json").read_text())
        assert s["status"] == "complete"
        assert row["holds"] == (row["rate_scale"] >= br["holds_at"])
    assert "qkd.rate_scale >= " in res.answer
    plan = json.loads((tmp_path / "plan.json").read_text())
    assert plan["kind"] == "threshold" and plan["bracket"] == br
    assert (tmp_path / "threshold.png").stat().st_size > 10_000
    # resumed: the same points are read back, nothing trains again
    again = _threshold(sc, tmp_path, resume=True, runner=PointRunner(tmp_path, executor="inline"))
    assert again.meta["bracket"] == br and again.meta["learning_executions"] == 0


def test_threshold_never_and_always(tiny: Tiny, tmp_path: Path, fmnist: Path) -> None:
    sc = tiny_scenario(tiny)
    never = threshold(sc, tmp_path / "n", vary="qkd.rate_scale", target=0.99, within_s=25.0)
    assert never.answer.startswith("never reached") and never.meta["evaluations"] == 2
    always = _threshold(sc, tmp_path / "a", lo=0.5, hi=1.0)
    assert always.answer.startswith("reached even at the lowest value")
    assert always.meta["bracket"] == {"fails_at": None, "holds_at": 0.5}


def test_threshold_rejects_bad_questions(tiny: Tiny, tmp_path: Path) -> None:
    sc = tiny_scenario(tiny)
    with pytest.raises(ScenarioError, match="add --maximize"):
        threshold(sc, tmp_path, vary="topology.links[0].length_km", target=0.5, within_s=9)
    with pytest.raises(ScenarioError, match="drop --maximize"):
        threshold(sc, tmp_path, vary="qkd.rate_scale", target=0.5, within_s=9, maximize=True)
    with pytest.raises(ScenarioError, match="names no element"):
        threshold(sc, tmp_path, vary="topology.links[9].skr_bps", target=0.5, within_s=9)
    with pytest.raises(ScenarioError, match=r"--target"):
        threshold(sc, tmp_path, vary="qkd.rate_scale", target=1.5, within_s=9)
    with pytest.raises(ScenarioError, match="explicitly"):
        threshold(sc, tmp_path, vary="qkd.initial_fill_bits", target=0.5, within_s=9)


def test_contingency_ranks_failures(tiny: Tiny, tmp_path: Path, fmnist: Path) -> None:
    sc = tiny_scenario(tiny)
    res = contingency(sc, tmp_path)
    by = {r["variant"]: r for r in res.rows}
    assert res.rows[0]["variant"] == "intact (baseline)"
    assert set(by) == {"intact (baseline)", "cut a-r", "cut b-r", "cut c-r", "cut a-b",
                       "r down"}  # fmt: skip
    assert not by["cut c-r"]["connected"] and not by["r down"]["connected"]  # c is a leaf
    assert by["cut a-b"]["connected"] and by["cut a-r"]["connected"]
    assert by["intact (baseline)"]["rerouted_share"] == 0.0
    assert [r["rank"] for r in res.rows] == list(range(len(res.rows)))
    assert res.answer.startswith("worst: ")
    assert res.meta["learning_executions"] <= len(res.rows)
    assert (tmp_path / "contingency.png").is_file() and (tmp_path / "plan.csv").is_file()


def test_upgrade_ranks_links(tiny: Tiny, tmp_path: Path, fmnist: Path) -> None:
    sc = tiny_scenario(tiny)
    slow = sc.model_copy(update={"horizon_s": None})
    res = upgrade(slow, tmp_path, factor=4.0)
    assert res.rows[0]["link"] == "none (baseline)"
    assert len(res.rows) == 5
    for r in res.rows[1:]:
        assert r["upgraded_skr_bps"] == pytest.approx(4 * r["skr_bps"])
    gains = [r["gain_s"] or 0.0 for r in res.rows[1:]]
    assert gains == sorted(gains, reverse=True)
    # the links whose timelines are prefixes of another's share its learning execution
    assert res.meta["answers_needing_learning"] == res.meta["learning_executions"]
