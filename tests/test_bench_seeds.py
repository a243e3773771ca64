"""``benchmarks/seeds.py``: mean ± standard deviation over seeds for the reproductions."""

from __future__ import annotations

import importlib.util
import statistics
import sys
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import given
from hypothesis import strategies as st


def _seeds() -> ModuleType:
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "seeds.py"
    spec = importlib.util.spec_from_file_location("bench_seeds", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["bench_seeds"] = mod
    spec.loader.exec_module(mod)
    return mod


seeds = _seeds()


@given(st.lists(st.floats(0, 100), min_size=2, max_size=6))
def test_mean_and_sample_std_of_every_leaf(xs: list[float]) -> None:
    runs = [{"a": x, "nested": {"b": [x, 2 * x]}, "name": "same"} for x in xs]
    agg = seeds.over_seeds(lambda s: runs[s], 0, len(xs))
    assert agg["seeds"] == list(range(len(xs))) and agg["per_seed"] == runs
    assert agg["mean"]["a"] == pytest.approx(statistics.fmean(xs), abs=1e-4)
    assert agg["std"]["a"] == pytest.approx(statistics.stdev(xs), abs=1e-4)
    assert agg["mean"]["nested"]["b"][1] == pytest.approx(2 * statistics.fmean(xs), abs=1e-3)
    assert "name" not in agg["mean"]  # not numeric


def test_missing_values_are_counted() -> None:
    agg = seeds.over_seeds(lambda s: {"rounds": [8, None, 10][s]}, 0, 3)
    assert agg["mean"]["rounds"] == 9 and agg["n"]["rounds"] == 2
    assert seeds.fmt(agg, "rounds", digits=1) == "9.0 ± 1.4 (2/3 seeds)"
    assert seeds.fmt(agg, "absent") == "-"


def test_one_seed_is_the_plain_result() -> None:
    assert seeds.over_seeds(lambda s: {"x": s}, 5, 1) == {"x": 5}
    with pytest.raises(SystemExit, match="--seeds"):
        seeds.over_seeds(lambda s: {}, 0, 0)
