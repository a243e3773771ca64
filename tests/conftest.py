"""Shared fixtures: where the data sets are, and tiny scenario files for the CLI tests.

CI clones the repository with ``shared/`` beside it, so the data sets are found in
``<repo>/../shared/data`` when ``QFL_DATA_DIR`` is not set.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SCENARIOS = REPO / "scenarios"

# Three clients around a trusted relay, plus a direct a-b link: one training round with
# 50 samples per client takes a couple of seconds on the sequential engine.
TINY: dict[str, Any] = {
    "name": "tiny",
    "seed": 3,
    "topology": {
        "nodes": [
            {"name": "a", "flops_per_s": 1e9},
            {"name": "b", "flops_per_s": 2e9},
            {"name": "c", "flops_per_s": 1e9},
            {"name": "r", "role": "relay"},
        ],
        "links": [
            {"a": "a", "b": "r", "length_km": 5},
            {"a": "b", "b": "r", "length_km": 8},
            {"a": "c", "b": "r", "length_km": 12},
            {"a": "a", "b": "b", "length_km": 20},
        ],
    },
    # the fluid key model: the unit tests' exact arithmetic (block delivery has its own)
    "qkd": {"preset": "toshiba-2018", "key_model": "asymptotic-fluid"},
    "cipher": {"policy": "aes-256-gcm"},
    "learning": {
        "method": "def-fd",
        "dataset": "fashion-mnist",
        "samples_per_client": 50,
        "test_samples": 200,
        "rounds": 1,
        "batch_size": 32,
        "engine": "sequential",
    },
    "outputs": {"plots": False},
}


def merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of ``base`` with ``patch`` merged in (a ``None`` value deletes the key)."""
    out = copy.deepcopy(base)
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _data_dir() -> Path | None:
    env = os.environ.get("QFL_DATA_DIR")
    for candidate in ([Path(env)] if env else []) + [SHARED_DATA]:
        if (candidate / "fashion-mnist").is_dir():
            return candidate
    return None


@pytest.fixture(scope="session", autouse=True)
def _qfl_data_dir() -> Iterator[None]:
    """Point ``QFL_DATA_DIR`` at ``<repo>/../shared/data`` when it is unset."""
    found = _data_dir()
    with pytest.MonkeyPatch.context() as mp:
        if found is not None and not os.environ.get("QFL_DATA_DIR"):
            mp.setenv("QFL_DATA_DIR", str(found))
        yield


@pytest.fixture(scope="session")
def _one_torch_thread() -> Iterator[None]:
    """Train on one thread: on the shared two-core machine, torch's default of one thread
    per core oversubscribes it and a tiny round runs several times slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def fmnist(_one_torch_thread: None) -> Path:
    """The data folder holding Fashion-MNIST (and one torch thread for the training
    tests); skips the test when there is none."""
    found = _data_dir()
    if found is None:
        pytest.skip(f"Fashion-MNIST not found: set QFL_DATA_DIR or put it in {SHARED_DATA}")
    return found


@pytest.fixture(scope="session")
def tiny() -> Callable[..., dict[str, Any]]:
    """``tiny(patch=None)`` -> the tiny scenario as a dict, deep-merged with ``patch``."""

    def make(patch: dict[str, Any] | None = None) -> dict[str, Any]:
        return merge(TINY, patch or {})

    return make


ScenarioWriter = Callable[..., Path]


@pytest.fixture
def write_scenario(tmp_path: Path) -> ScenarioWriter:
    """``write_scenario(patch=None, name="scenario.yaml", text=None)`` -> the file's path.

    Writes :data:`TINY` deep-merged with ``patch`` (or ``text`` verbatim) into ``tmp_path``.
    """

    def write(
        patch: dict[str, Any] | None = None, name: str = "scenario.yaml", text: str | None = None
    ) -> Path:
        path = tmp_path / name
        if text is None:
            text = yaml.safe_dump(merge(TINY, patch or {}), sort_keys=False)
        path.write_text(text, encoding="utf-8")
        return path

    return write


PngPixels = Callable[..., Any]


def _png_pixels(path: Path, min_side: int = 200, coloured: bool = False) -> Any:
    import numpy as np
    from PIL import Image

    with Image.open(path) as im:
        assert im.format == "PNG", path
        px = np.asarray(im.convert("RGB"))
    h, w, _ = px.shape
    assert min_side <= min(w, h) and max(w, h) <= 4000, (path, (w, h))
    grey = px.mean(axis=-1)
    assert grey.std() > 5.0, f"{path}: blank"  # a frame and some text at least
    assert 0.001 < (grey < 128).mean() < 0.5, f"{path}: no ink, or all ink"
    if coloured:  # lines in colour, not only the grey and black of axes, text and grid
        assert (np.ptp(px, axis=-1) > 60).any(), f"{path}: nothing in colour"
    return px


@pytest.fixture(scope="session")
def png_pixels() -> PngPixels:
    """``png_pixels(path, min_side=200, coloured=False)`` -> the RGB pixels (height x width
    x 3) of a PNG, after checking that it is one, of a sane size, not blank, and (if
    ``coloured``) that something on it is drawn in colour."""
    return _png_pixels
