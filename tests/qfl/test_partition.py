"""Partitioners: disjoint, complete, deterministic, and the requested skew."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qfl.data.partition import by_classes, dirichlet, holdout_split, iid, labeled_split
from qkd.errors import ParameterError


def _check_partition(parts: list[np.ndarray], n: int) -> None:
    """Disjoint, sorted int64 arrays whose union is exactly 0..n-1."""
    assert all(p.dtype == np.int64 and np.all(np.diff(p) > 0) for p in parts)
    joined = np.concatenate(parts) if parts else np.empty(0, np.int64)
    assert len(joined) == n
    np.testing.assert_array_equal(np.sort(joined), np.arange(n))


def _same(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


# --------------------------------------------------------------------------- iid


def test_iid_sizes_and_seed() -> None:
    parts = iid(103, 10, seed=3)
    _check_partition(parts, 103)
    assert sorted(len(p) for p in parts) == [10] * 7 + [11] * 3
    assert _same(parts, iid(103, 10, seed=3))
    assert not _same(parts, iid(103, 10, seed=4))
    assert _same(iid(50, 5, seed=np.random.SeedSequence(9)), iid(50, 5, seed=9))
    with pytest.raises(ParameterError, match="n_clients: must be <= n_samples = 3, got 4"):
        iid(3, 4, seed=0)
    with pytest.raises(ParameterError, match="n_clients: must be an integer >= 1, got 0"):
        iid(3, 0, seed=0)
    with pytest.raises(ParameterError, match="seed: must be an int"):
        iid(3, 1, seed=None)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- k of C classes


def test_by_classes_deffd_setup() -> None:
    labels = np.repeat(np.arange(10), 600)
    parts = by_classes(labels, 10, 8, seed=0)
    _check_partition(parts, len(labels))
    holders = np.zeros(10, dtype=int)
    for p in parts:
        cls = np.unique(labels[p])
        assert len(cls) == 8
        holders[cls] += 1
    # 10 clients x 8 slots over 10 classes: every class is held by exactly 8 clients,
    # and its 600 samples are split in equal shares of 75.
    assert holders.tolist() == [8] * 10
    assert sorted({len(p) for p in parts}) == [600]


def test_by_classes_uneven_and_errors() -> None:
    labels = np.array([3] * 7 + [5] * 11 + [9] * 2)  # non-contiguous class ids
    parts = by_classes(labels, 4, 2, seed=1)
    _check_partition(parts, 20)
    assert all(len(np.unique(labels[p])) <= 2 for p in parts)
    with pytest.raises(ParameterError, match=r"classes_per_client: must be <= 3 \(the number"):
        by_classes(labels, 4, 4, seed=0)
    with pytest.raises(ParameterError, match=r"classes_per_client: must be >= 2 so that 2 clients"):
        by_classes(labels, 2, 1, seed=0)
    with pytest.raises(ParameterError, match="n_clients: must be an integer >= 1, got 0"):
        by_classes(labels, 0, 1, seed=0)
    with pytest.raises(ParameterError, match="labels: must be a 1-D integer array"):
        by_classes(np.zeros((2, 2), int), 1, 1, seed=0)


@settings(max_examples=60, deadline=None)
@given(
    labels=st.lists(st.integers(0, 6), min_size=1, max_size=120),
    n_clients=st.integers(1, 12),
    k=st.integers(1, 7),
    seed=st.integers(0, 2**32 - 1),
)
def test_by_classes_properties(labels: list[int], n_clients: int, k: int, seed: int) -> None:
    y = np.asarray(labels)
    n_classes = len(np.unique(y))
    if k > n_classes or n_clients * k < n_classes:
        with pytest.raises(ParameterError, match="classes_per_client"):
            by_classes(y, n_clients, k, seed=seed)
        return
    parts = by_classes(y, n_clients, k, seed=seed)
    assert len(parts) == n_clients
    _check_partition(parts, len(y))
    assert all(len(np.unique(y[p])) <= k for p in parts)
    assert _same(parts, by_classes(y, n_clients, k, seed=seed))


# --------------------------------------------------------------------------- Dirichlet


def test_dirichlet_skew_min_size_and_errors() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 6000)
    parts = dirichlet(labels, 24, 0.2, seed=5, min_per_client=20)
    _check_partition(parts, 6000)
    assert min(len(p) for p in parts) >= 20
    # strong skew: on average a client's largest class holds far more than 1/10 of its data
    top_share = np.mean([np.bincount(labels[p], minlength=10).max() / len(p) for p in parts])
    assert top_share > 0.4
    iid_like = dirichlet(labels, 24, 1000.0, seed=5)
    top_iid = np.mean([np.bincount(labels[p], minlength=10).max() / len(p) for p in iid_like])
    assert top_iid < 0.25
    assert _same(parts, dirichlet(labels, 24, 0.2, seed=5, min_per_client=20))
    for bad in (0, -1.0, float("nan")):
        with pytest.raises(ParameterError, match=r"alpha: must be a finite number > 0"):
            dirichlet(labels, 4, bad, seed=0)
    with pytest.raises(ParameterError, match=r"min_per_client: must be <= 10 \(20 samples"):
        dirichlet(labels[:20], 2, 0.5, seed=0, min_per_client=11)
    with pytest.raises(ParameterError, match=r"min_per_client: must be reachable"):
        dirichlet(np.repeat(np.arange(2), 6), 3, 0.01, seed=0, min_per_client=4, max_tries=3)


@settings(max_examples=40, deadline=None)
@given(
    labels=st.lists(st.integers(0, 4), min_size=10, max_size=150),
    n_clients=st.integers(1, 6),
    alpha=st.floats(0.05, 50.0),
    seed=st.integers(0, 2**32 - 1),
)
def test_dirichlet_properties(labels: list[int], n_clients: int, alpha: float, seed: int) -> None:
    y = np.asarray(labels)
    parts = dirichlet(y, n_clients, alpha, seed=seed, min_per_client=0)
    assert len(parts) == n_clients
    _check_partition(parts, len(y))
    assert _same(parts, dirichlet(y, n_clients, alpha, seed=seed, min_per_client=0))


# --------------------------------------------------------------------------- splits


def test_holdout_and_labeled_split() -> None:
    idx = np.arange(100, 200)
    train, held = holdout_split(idx, 0.2, seed=0)
    assert len(held) == 20 and len(train) == 80
    np.testing.assert_array_equal(np.sort(np.concatenate([train, held])), idx)
    labeled, unlabeled = labeled_split(idx, 0.25, seed=0)
    assert len(labeled) == 25 and len(unlabeled) == 75
    labels = np.repeat(np.arange(4), 50)  # labels of the whole dataset (200 samples)
    train_s, held_s = holdout_split(idx, 0.2, seed=0, labels=labels)
    assert np.bincount(labels[held_s]).tolist() == [0, 0, 10, 10]
    assert np.intersect1d(train_s, held_s).size == 0
    for bad in (0.0, 1.0, -0.1, 1.5):
        with pytest.raises(ParameterError, match=rf"fraction: must be in \(0, 1\), got {bad}"):
            holdout_split(idx, bad, seed=0)
    with pytest.raises(ParameterError, match=r"labeled_fraction: must be in \(0, 1\), got 2"):
        labeled_split(idx, 2, seed=0)
    with pytest.raises(ParameterError, match=r"indices: must be in \[0, 50\)"):
        holdout_split(idx, 0.5, seed=0, labels=labels[:50])


@settings(max_examples=60, deadline=None)
@given(
    indices=st.lists(st.integers(0, 500), max_size=80, unique=True),
    fraction=st.floats(0.01, 0.99),
    seed=st.integers(0, 2**32 - 1),
    stratify=st.booleans(),
)
def test_split_properties(indices: list[int], fraction: float, seed: int, stratify: bool) -> None:
    idx = np.asarray(indices, dtype=np.int64)
    labels = np.arange(501) % 3 if stratify else None
    rest, taken = holdout_split(idx, fraction, seed=seed, labels=labels)
    assert np.intersect1d(rest, taken).size == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([rest, taken])), np.sort(idx))
    if not stratify:
        assert len(taken) == int(np.floor(fraction * len(idx) + 0.5))
    again = holdout_split(idx, fraction, seed=seed, labels=labels)
    assert np.array_equal(rest, again[0]) and np.array_equal(taken, again[1])
    labeled, unlabeled = labeled_split(idx, fraction, seed=seed, labels=labels)
    assert np.array_equal(labeled, taken) and np.array_equal(unlabeled, rest)
