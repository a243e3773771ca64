"""Sweep grids: ``--set`` parsing, sweep files, point expansion, learning-group prefixes.

Nothing here trains: the sweeps that learn are in ``tests/test_cli_sweep.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from qfl.cosim.executors import EXECUTORS, iter_tasks
from qfl.cosim.sweep import (
    SweepSpec,
    _prefix_of,
    load_sweep_file,
    parse_set_options,
    run_sweep,
    sweep_points,
)
from qfl.scenario import Scenario, ScenarioError

Tiny = Callable[..., dict[str, Any]]


@pytest.mark.parametrize(
    ("options", "grid"),
    [
        (["qkd.rate_scale=0.1,0.3,1,3"], {"qkd.rate_scale": [0.1, 0.3, 1, 3]}),
        (["cipher.policy=otp,aes-256-gcm"], {"cipher.policy": ["otp", "aes-256-gcm"]}),
        (["learning.clients=[a, b],[b, c]"], {"learning.clients": [["a", "b"], ["b", "c"]]}),
        (
            ["faults=[],[{kind: link-cut, at_s: 1, link: [a, r]}]"],
            {"faults": [[], [{"kind": "link-cut", "at_s": 1, "link": ["a", "r"]}]]},
        ),
        (["topology.links[0].skr_bps=1e3, 1e4 ,"], {"topology.links[0].skr_bps": [1e3, 1e4]}),
        (["horizon_s=null,60"], {"horizon_s": [None, 60]}),
        (["a=1", "b=x,y"], {"a": [1], "b": ["x", "y"]}),
    ],
)
def test_parse_set_options(options: list[str], grid: dict[str, list[Any]]) -> None:
    assert parse_set_options(options) == grid


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("qkd.rate_scale", r"^--set: must look like field\.path=v1,v2,\.\.\., got 'qkd"),
        ("=1,2", r"^--set: must look like"),
        ("qkd.rate_scale=", r"^--set qkd\.rate_scale: needs at least one value$"),
        ("qkd.rate_scale= , ,", r"^--set qkd\.rate_scale: needs at least one value$"),
    ],
)
def test_parse_set_options_rejects(option: str, message: str) -> None:
    with pytest.raises(ScenarioError, match=message):
        parse_set_options([option])


def test_sweep_points_are_the_cartesian_product(tiny: Tiny) -> None:
    spec = SweepSpec(
        Scenario.model_validate(tiny()),
        {"qkd.rate_scale": [0.1, 1.0], "cipher.policy": ["otp", "aes-256-gcm", "none"]},
    )
    points = sweep_points(spec)
    assert len(points) == 6
    assert [p.index for p in points] == list(range(6))
    assert [(p.scenario.qkd.rate_scale, p.scenario.cipher.policy) for p in points] == [
        (0.1, "otp"),
        (0.1, "aes-256-gcm"),
        (0.1, "none"),
        (1.0, "otp"),
        (1.0, "aes-256-gcm"),
        (1.0, "none"),
    ]
    assert points[1].slug == "001-rate_scale=0.1-policy=aes-256-gcm"
    assert len({p.slug for p in points}) == 6
    assert points[0].series_label(None) == "def-fd"
    assert points[4].series_label("cipher.policy") == "aes-256-gcm"


def test_sweep_point_slug_is_a_safe_folder_name(tiny: Tiny) -> None:
    spec = SweepSpec(Scenario.model_validate(tiny()), {"learning.clients": [["a", "b"]]})
    (p,) = sweep_points(spec)
    assert "/" not in p.slug and " " not in p.slug
    assert p.slug.startswith("000-clients=")


def test_sweep_points_name_the_bad_field(tiny: Tiny) -> None:
    base = Scenario.model_validate(tiny())
    with pytest.raises(ScenarioError, match=r"^--set qkd\.rate_scale: must be >= 0, got -1$"):
        sweep_points(SweepSpec(base, {"qkd.rate_scale": [1, -1]}))
    with pytest.raises(ScenarioError, match=r"^--set learning\.rate: unknown field"):
        sweep_points(SweepSpec(base, {"learning.rate": [1]}))
    # a cut of a link that does not exist, through a grid over faults
    bad_fault = [[{"kind": "link-cut", "at_s": 1, "link": ["a", "c"]}]]
    with pytest.raises(ScenarioError, match=r"^--set faults\[0\]\.link: no link joins 'a' and 'c'"):
        sweep_points(SweepSpec(base, {"faults": bad_fault}))


def _write(path: Path, data: Any) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def test_load_sweep_file(tiny: Tiny, tmp_path: Path) -> None:
    _write(tmp_path / "base.yaml", tiny())
    f = _write(
        tmp_path / "grid.yaml",
        {
            "scenario": "base.yaml",
            "grid": {"qkd.rate_scale": [0.1, 1], "cipher.policy": "otp"},
            "x": "key_budget_bits",
            "series": "cipher.policy",
            "set": {"learning.rounds": 3},
        },
    )
    spec = load_sweep_file(f)
    assert spec.name == "grid" and spec.x == "key_budget_bits" and spec.series == "cipher.policy"
    assert dict(spec.grid) == {"qkd.rate_scale": [0.1, 1], "cipher.policy": ["otp"]}
    assert spec.base.learning.rounds == 3  # `set` applies to every point
    assert len(sweep_points(spec)) == 2


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"grid": {"qkd.rate_scale": [1]}}, r"scenario: missing"),
        ({"scenario": "base.yaml"}, r"grid: must map field paths to lists of values"),
        ({"scenario": "base.yaml", "grid": [1, 2]}, r"grid: must map field paths"),
        ({"scenario": "nope.yaml", "grid": {"a": [1]}}, r"nope\.yaml: cannot read the file"),
        ({"scenario": "base.yaml", "grid": {"a": [1]}, "colour": 1}, r"colour: unknown key"),
        ({"scenario": "base.yaml", "grid": {"a": [1]}, "set": {"seed": -1}}, r"seed: must be >= 0"),
    ],
)
def test_load_sweep_file_rejects(
    data: dict[str, Any], message: str, tiny: Tiny, tmp_path: Path
) -> None:
    _write(tmp_path / "base.yaml", tiny())
    with pytest.raises(ScenarioError, match=message):
        load_sweep_file(_write(tmp_path / "grid.yaml", data))


def test_load_sweep_file_malformed(tmp_path: Path) -> None:
    f = tmp_path / "grid.yaml"
    f.write_text("grid: [\n")
    with pytest.raises(ScenarioError, match=r"malformed YAML"):
        load_sweep_file(f)
    f.write_text("- 1\n")
    with pytest.raises(ScenarioError, match=r"a sweep file must be a mapping"):
        load_sweep_file(f)


def test_prefix_of() -> None:
    long = (3, ((1, "a", "b", "model"),), ((0, 1), (0,), (0, 1)))
    assert _prefix_of((1, (), ((0, 1),)), long)
    assert _prefix_of((2, ((1, "a", "b", "model"),), ((0, 1), (0,))), long)
    assert not _prefix_of((2, (), ((0, 1), (0,))), long)  # round 1's drop is missing
    assert not _prefix_of((1, (), ((1,),)), long)  # other participants
    assert _prefix_of(long, long)


def test_unknown_executor_is_rejected_before_any_work(tiny: Tiny, tmp_path: Path) -> None:
    spec = SweepSpec(Scenario.model_validate(tiny()), {"qkd.rate_scale": [1]})
    with pytest.raises(ScenarioError, match=r"^--executor: must be one of local, ray, inline"):
        run_sweep(spec, tmp_path / "sw", executor="dask")
    assert not (tmp_path / "sw").exists()
    assert EXECUTORS == ("local", "ray", "inline")
    assert list(iter_tasks([], "local")) == []
    with pytest.raises(ScenarioError, match=r"^--jobs: must be an integer >= 1, got 0$"):
        run_sweep(spec, tmp_path / "sw", jobs=0)
    assert not (tmp_path / "sw").exists()


def test_scenario_error_survives_pickling() -> None:
    # A worker process (or Ray) sends exceptions back pickled.
    import pickle

    err = pickle.loads(pickle.dumps(ScenarioError("learning.rounds", "must be >= 1, got 0")))
    assert isinstance(err, ScenarioError)
    assert (err.path, err.message) == ("learning.rounds", "must be >= 1, got 0")
    assert str(err) == "learning.rounds: must be >= 1, got 0"


def test_shipped_sweep_file_expands_to_valid_points() -> None:
    from pathlib import Path

    from qfl.cosim.sweep import load_sweep_file, sweep_points

    path = Path(__file__).resolve().parents[2] / "scenarios" / "sweeps" / "metro-keyrate.yaml"
    spec = load_sweep_file(path)
    points = sweep_points(spec)
    assert len(points) == 8
    assert {p.scenario.cipher.policy for p in points} == {"otp", "aes-256-gcm"}
    assert all(p.scenario.horizon_s == 600 for p in points)
    assert spec.series == "cipher.policy"
