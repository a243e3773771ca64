"""Shared fixtures of the learning-layer tests: where the shared data sets are."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# The repository is checked out with ``shared/`` beside it (``<parent>/shared/data``).
_BESIDE_REPO = Path(__file__).resolve().parents[3] / "shared" / "data"


def _shared_data_dir() -> Path | None:
    env = os.environ.get("QFL_DATA_DIR")
    for candidate in ([Path(env)] if env else []) + [_BESIDE_REPO]:
        if candidate.is_dir():
            return candidate
    return None


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """``$QFL_DATA_DIR`` if set, else ``<repo>/../shared/data``; skips if neither exists."""
    found = _shared_data_dir()
    if found is None:
        pytest.skip(
            "shared data not found: set QFL_DATA_DIR or put the data in "
            f"{_BESIDE_REPO} (see shared/data/README.md)"
        )
    return found


def _sub(base: Path, *names: str) -> Path:
    for name in names:
        if (base / name).is_dir():
            return base / name
    pytest.skip(f"none of {', '.join(names)} in {base}")


@pytest.fixture(scope="session")
def fashion_mnist_dir(shared_data_dir: Path) -> Path:
    """Folder with the four Fashion-MNIST ``.gz`` files."""
    return _sub(shared_data_dir, "fashion-mnist")


@pytest.fixture(scope="session")
def flowers_dir(shared_data_dir: Path) -> Path:
    """Flowers102 folder (the 510-image mini copy first: faster)."""
    return _sub(shared_data_dir, "flowers102-mini", "flowers102")


@pytest.fixture(scope="session")
def intel_dir(shared_data_dir: Path) -> Path:
    """Intel scenes folder in the Kaggle layout (the mini copy first)."""
    return _sub(shared_data_dir, "intel-mini", "intel")
