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


# ------------------------------------------------ ranking rules and verdicts (no training)


def _cut(variant: str, connected: bool, acc: float | None, t: float | None = None,
         rounds: int = 3, failed: int = 0) -> dict[str, Any]:  # fmt: skip
    return {"variant": variant, "connected": connected, "final_global_acc": acc,
            "time_to_target_s": t, "rounds_done": rounds, "transfers_failed": failed,
            "delay_s": None}  # fmt: skip


def test_a_disconnecting_cut_is_never_ranked_harmless_by_noise() -> None:
    from qfl.cosim.studies import _contingency_answer, _severity, accuracy_noise

    # the metro case: the intact network misses the target, the cut that disconnects bank
    # ends 0.35 points *higher* (noise), a connected cut 0.3 points lower
    base = _cut("intact (baseline)", True, 0.6550)
    rows = [_cut("cut core-north", True, 0.6520), _cut("cut bank-core", False, 0.6585, failed=4),
            _cut("cut lab-south", True, 0.6000)]  # fmt: skip
    noise = accuracy_noise(0.655, 2000)
    assert 0.0035 < noise < 0.05
    ranked = sorted(rows, key=lambda r: (_severity(r, base, noise), r["variant"]))
    assert [r["variant"] for r in ranked] == ["cut bank-core", "cut lab-south", "cut core-north"]
    answer = _contingency_answer(ranked[0], base, 0.7, noise)
    assert answer.startswith("worst: cut bank-core (disconnects learners)")
    assert "within noise" in answer
    # where the intact network reaches the target, missing it ranks first of all
    base = _cut("intact (baseline)", True, 0.72, t=100.0)
    slow = dict(_cut("cut a-r", True, 0.72, t=180.0), delay_s=80.0)
    miss = _cut("cut b-r", True, 0.69)
    split = dict(_cut("cut c-r", False, 0.715, t=110.0), delay_s=10.0)
    ranked = sorted([slow, split, miss], key=lambda r: (_severity(r, base, noise), r["variant"]))
    assert [r["variant"] for r in ranked] == ["cut b-r", "cut c-r", "cut a-r"]


def _up(link: str, t: float | None, acc: float) -> dict[str, Any]:
    return {"link": link, "time_to_target_s": t, "final_global_acc": acc, "gain_s": None}


SHARES = {"compute": 0.61, "key": 0.39, "bandwidth": 0.0, "propagation": 0.0, "blocked": 0.0}


def test_upgrade_verdict_when_the_baseline_misses_the_target() -> None:
    from qfl.cosim.studies import _soonest, _upgrade_answer

    base = {"link": "none (baseline)", "time_to_target_s": None, "final_global_acc": 0.655,
            "time_share": SHARES, "key_wait_by_link_s": {"core-south": 12.0}}  # fmt: skip
    ups = [_up("a-r", None, 0.69), _up("b-r", 3300.0, 0.705), _up("c-r", 2900.0, 0.70),
           _up("d-r", None, 0.66)]  # fmt: skip
    ranked = [base, *sorted(ups, key=_soonest)]
    assert [r["link"] for r in ranked[1:]] == ["c-r", "b-r", "a-r", "d-r"]
    answer = _upgrade_answer(ranked, base, 2.0, 0.70, 3600.0)
    assert answer.startswith("the baseline never reaches 70 % within 1.00 h (it ends at 65.5 %)")
    assert "upgrade c-r (key rate x2) reaches it after 48.3 min" in answer
    # nothing reaches it: the key share is stated as it is (39 %), not "does not bind"
    none = [base, *sorted([_up("a-r", None, 0.69), _up("d-r", None, 0.66)], key=_soonest)]
    answer = _upgrade_answer(none, base, 2.0, 0.70, 3600.0)
    assert "nor does any single link's key rate x2 (best: a-r, 69.0 %, +3.5 points)" in answer
    assert "key waiting is 39 % of round time, most of it on link core-south" in answer
    assert "does not bind" not in answer
    idle = dict(base, time_share={**SHARES, "compute": 0.97, "key": 0.03})
    assert "key does not bind here (key waiting is 3 % of round time, compute 97 %)" in (
        _upgrade_answer(none, idle, 2.0, 0.70, 3600.0)
    )


def test_upgrade_verdict_when_no_round_completes() -> None:
    from qfl.cosim.studies import _upgrade_answer

    base = {"link": "none (baseline)", "time_to_target_s": None, "final_global_acc": None,
            "time_share": dict.fromkeys(SHARES, 0.0), "binds": "no round completed"}  # fmt: skip
    answer = _upgrade_answer([base, _up("a-r", None, 0.1)], base, 4.0, 0.5, 9.7)
    assert "completes no round within the horizon" in answer and "does not bind" not in answer


def test_upgrade_verdict_when_every_round_completes_short_of_the_target() -> None:
    from qfl.cosim.studies import _soonest, _upgrade_answer

    # metro --quick: all 3 rounds complete, 21.9 %; key is 39 % of round time
    base = {"link": "none (baseline)", "time_to_target_s": None, "final_global_acc": 0.219,
            "time_share": SHARES, "rounds_done": 3, "rounds_planned": 3,
            "sim_time_end_s": 20.0}  # fmt: skip
    ups = [dict(_up(link, None, 0.219), rounds_done=3, sim_time_end_s=end)
           for link, end in (("a-r", 19.0), ("b-r", 16.0), ("c-r", 20.0))]  # fmt: skip
    ranked = [base, *sorted(ups, key=_soonest)]
    assert [r["link"] for r in ranked[1:]] == ["b-r", "a-r", "c-r"]  # same accuracy: soonest
    answer = _upgrade_answer(ranked, base, 2.0, 0.70, None)
    assert answer.startswith("the baseline never reaches 70 %: it completes all 3 planned")
    assert "the learning falls short, not the key" in answer
    assert "key waiting is 39 % of round time" in answer and "best: b-r, after 16.0 s" in answer
    assert "does not bind" not in answer


def test_upgrade_verdict_when_key_waiting_does_not_depend_on_the_rate() -> None:
    from qfl.cosim.studies import _upgrade_answer

    # the finite-key case: every upgrade waits exactly as long (for the first blocks)
    base = {"link": "none (baseline)", "time_to_target_s": 50.0, "final_global_acc": 0.72,
            "time_share": SHARES, "time_stalled_on_key_s": 11.1}  # fmt: skip
    ups = [dict(_up(link, 50.0, 0.72), gain_s=0.0, key_wait_s=11.1) for link in ("a-r", "b-r")]
    answer = _upgrade_answer([base, *ups], base, 2.0, 0.70, None)
    assert answer.startswith("no single link's key rate x2 brings 70 % sooner than 50.0 s")
    assert "exactly as long with every upgrade: it does not depend on the key rate" in answer
    ups[1]["key_wait_s"] = 9.0  # it does depend: the wait moves elsewhere
    answer = _upgrade_answer([base, *ups], base, 2.0, 0.70, None)
    assert "the wait moves to another link" in answer
