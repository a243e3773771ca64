"""Split a dataset's indices among clients, and each client's indices into parts.

Every function is deterministic given ``seed`` (an int, a :class:`numpy.random.SeedSequence`
or a :class:`numpy.random.Generator`, which is then advanced) and returns sorted ``int64``
index arrays, disjoint from one another.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from qkd.errors import ParameterError

__all__ = [
    "by_classes",
    "dirichlet",
    "dirichlet_topped_up",
    "holdout_split",
    "iid",
    "labeled_split",
]

SeedLike = int | np.random.SeedSequence | np.random.Generator
ArrayLike = np.ndarray | Sequence[int]


def _rng(seed: SeedLike) -> np.random.Generator:
    if seed is None or isinstance(seed, bool):
        raise ParameterError("seed", seed, "an int, a numpy SeedSequence or a Generator")
    return np.random.default_rng(seed)


def _positive_int(name: str, value: int, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ParameterError(name, value, f"an integer >= {minimum}")
    return int(value)


def _labels(labels: ArrayLike) -> np.ndarray:
    arr = np.asarray(labels)
    if arr.ndim != 1 or (arr.size and not np.issubdtype(arr.dtype, np.integer)):
        raise ParameterError("labels", f"array {arr.dtype} {arr.shape}", "a 1-D integer array")
    return arr.astype(np.int64, copy=False)


def _fraction(name: str, value: float) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float | np.floating)
        or not (0.0 < float(value) < 1.0)
    ):
        raise ParameterError(name, value, "in (0, 1)")
    return float(value)


def _sorted(parts: Sequence[np.ndarray]) -> list[np.ndarray]:
    return [np.sort(np.asarray(p, dtype=np.int64)) for p in parts]


def iid(n_samples: int, n_clients: int, *, seed: SeedLike) -> list[np.ndarray]:
    """Shuffle ``0 .. n_samples - 1`` and deal it into ``n_clients`` near-equal parts.

    Parameters
    ----------
    n_samples : int
        Number of samples to split.
    n_clients : int
        Number of clients (at most ``n_samples``); part sizes differ by at most one.
    seed : int, SeedSequence or Generator
        Randomness.

    Returns
    -------
    list of numpy.ndarray
        One sorted index array per client.

    Examples
    --------
    >>> [len(p) for p in iid(10, 3, seed=0)]
    [4, 3, 3]
    """
    n_samples = _positive_int("n_samples", n_samples, 0)
    n_clients = _positive_int("n_clients", n_clients)
    if n_clients > n_samples:
        raise ParameterError("n_clients", n_clients, f"<= n_samples = {n_samples}")
    perm = _rng(seed).permutation(n_samples)
    return _sorted(np.array_split(perm, n_clients))


def by_classes(
    labels: ArrayLike, n_clients: int, classes_per_client: int, *, seed: SeedLike
) -> list[np.ndarray]:
    """Pathological label skew: each client holds ``classes_per_client`` of the classes.

    Classes are randomly relabelled, then client ``i`` gets the ``k`` consecutive classes
    starting at position ``i * k`` (cyclically). So the slots cover every class, each class is
    held by ``floor(n k / C)`` or ``ceil(n k / C)`` clients, and a client's classes are distinct.
    The samples of each class are shuffled and split into near-equal, disjoint shares among
    the clients holding it (as in the Def-KT / Def-FD setups: 8 of 10 classes per client).

    Parameters
    ----------
    labels : array-like of int
        Label of every sample; the classes are its distinct values.
    n_clients : int
        Number of clients, >= 1.
    classes_per_client : int
        ``k``, between ``ceil(C / n_clients)`` (so every class is held) and ``C``.
    seed : int, SeedSequence or Generator
        Randomness.

    Returns
    -------
    list of numpy.ndarray
        One sorted index array per client; together they cover every index exactly once.

    Examples
    --------
    >>> labels = np.repeat(np.arange(10), 20)
    >>> parts = by_classes(labels, 10, 8, seed=0)
    >>> sorted({len(np.unique(labels[p])) for p in parts}), sum(map(len, parts))
    ([8], 200)
    """
    y = _labels(labels)
    n_clients = _positive_int("n_clients", n_clients)
    k = _positive_int("classes_per_client", classes_per_client)
    classes = np.unique(y)
    n_classes = len(classes)
    if k > n_classes:
        raise ParameterError(
            "classes_per_client", k, f"<= {n_classes} (the number of classes in labels)"
        )
    if n_clients * k < n_classes:
        raise ParameterError(
            "classes_per_client",
            k,
            f">= {math.ceil(n_classes / n_clients)} so that {n_clients} clients hold all "
            f"{n_classes} classes",
        )
    rng = _rng(seed)
    order = classes[rng.permutation(n_classes)]
    holders: dict[int, list[int]] = {int(c): [] for c in classes}
    for client in range(n_clients):
        for j in range(k):
            holders[int(order[(client * k + j) % n_classes])].append(client)
    parts: list[list[np.ndarray]] = [[] for _ in range(n_clients)]
    for c in classes:
        idx = np.flatnonzero(y == c)
        rng.shuffle(idx)
        owners = np.asarray(holders[int(c)])[rng.permutation(len(holders[int(c)]))]
        for owner, share in zip(owners, np.array_split(idx, len(owners)), strict=True):
            parts[int(owner)].append(share)
    return _sorted([np.concatenate(p) if p else np.empty(0, np.int64) for p in parts])


def dirichlet(
    labels: ArrayLike,
    n_clients: int,
    alpha: float,
    *,
    seed: SeedLike,
    min_per_client: int = 10,
    max_tries: int = 1000,
) -> list[np.ndarray]:
    """Dirichlet label skew (Hsu, Qi & Brown 2019), resampled until every client is big enough.

    For each class, proportions ``p ~ Dirichlet(alpha, ..., alpha)`` over the clients are
    drawn; as customary (Wang et al. 2020; Li et al. 2022, NIID-Bench), clients that already
    hold ``N / n_clients`` samples or more get no share of later classes (``p`` is zeroed
    there and renormalised), and the class' shuffled samples are cut at the cumulative
    proportions. The whole draw is repeated until every client has at least
    ``min_per_client`` samples.

    Parameters
    ----------
    labels : array-like of int
        Label of every sample.
    n_clients : int
        Number of clients, >= 1.
    alpha : float
        Concentration, > 0; small values (0.1 - 0.5) give strong skew.
    seed : int, SeedSequence or Generator
        Randomness.
    min_per_client : int
        Smallest acceptable client size (0 accepts the first draw).
    max_tries : int
        Draws to try before giving up.

    Returns
    -------
    list of numpy.ndarray
        One sorted index array per client; together they cover every index exactly once.

    Raises
    ------
    ParameterError
        For ``alpha <= 0``, ``n_clients < 1``, or when ``min_per_client`` cannot be met.

    References
    ----------
    T.-M. H. Hsu, H. Qi, M. Brown, "Measuring the effects of non-identical data distribution
    for federated visual classification", arXiv:1909.06335 (2019).
    """
    y = _labels(labels)
    n_clients = _positive_int("n_clients", n_clients)
    if (
        isinstance(alpha, bool)
        or not isinstance(alpha, int | float | np.floating)
        or not (math.isfinite(alpha) and alpha > 0)
    ):
        raise ParameterError("alpha", alpha, "a finite number > 0")
    min_per_client = _positive_int("min_per_client", min_per_client, 0)
    max_tries = _positive_int("max_tries", max_tries)
    n = len(y)
    if n_clients * min_per_client > n:
        raise ParameterError(
            "min_per_client",
            min_per_client,
            f"<= {n // n_clients} ({n} samples over {n_clients} clients)",
        )
    rng = _rng(seed)
    classes = np.unique(y)
    by_class = [np.flatnonzero(y == c) for c in classes]
    cap = n / n_clients
    for _ in range(max_tries):
        parts: list[list[np.ndarray]] = [[] for _ in range(n_clients)]
        sizes = np.zeros(n_clients, dtype=np.int64)
        for members in by_class:
            idx = rng.permutation(members)
            p = rng.dirichlet(np.full(n_clients, float(alpha)))
            p = np.where(sizes < cap, p, 0.0)
            total = p.sum()
            p = p / total if total > 0 else np.full(n_clients, 1.0 / n_clients)
            cuts = (np.cumsum(p)[:-1] * len(idx)).astype(np.int64)
            for client, share in enumerate(np.split(idx, cuts)):
                parts[client].append(share)
                sizes[client] += len(share)
        if sizes.min() >= min_per_client:
            return _sorted([np.concatenate(p) for p in parts])
    raise ParameterError(
        "min_per_client",
        min_per_client,
        f"reachable: no Dirichlet(alpha={alpha}) draw out of {max_tries} gave every one of "
        f"{n_clients} clients that many samples; lower it or raise alpha",
    )


def dirichlet_topped_up(
    labels: ArrayLike,
    n_clients: int,
    alpha: float,
    *,
    seed: SeedLike,
    min_per_client: int = 10,
) -> list[np.ndarray]:
    """Dirichlet label skew for many small clients: one draw, then topped up to a minimum.

    With thousands of clients holding a dozen samples each (cross-device studies), no
    Dirichlet draw gives every client ``min_per_client`` samples, so :func:`dirichlet`'s
    resampling cannot succeed. This takes one draw of :func:`dirichlet` (its rule, no
    minimum) and then moves samples, one at a time, from the currently largest client (a
    random one of its samples) to each client below the minimum. The label skew of the draw
    is kept except for the moved samples (at most ``n_clients * min_per_client``).

    Examples
    --------
    >>> y = np.arange(1200) % 10
    >>> parts = dirichlet_topped_up(y, 100, 0.3, seed=0, min_per_client=10)
    >>> min(len(p) for p in parts), sum(len(p) for p in parts)
    (10, 1200)
    """
    y = _labels(labels)
    n_clients = _positive_int("n_clients", n_clients)
    min_per_client = _positive_int("min_per_client", min_per_client, 0)
    if n_clients * min_per_client > len(y):
        raise ParameterError(
            "min_per_client",
            min_per_client,
            f"<= {len(y) // n_clients} ({len(y)} samples over {n_clients} clients)",
        )
    rng = _rng(seed)
    parts = [list(p) for p in dirichlet(y, n_clients, alpha, seed=rng, min_per_client=0)]
    sizes = np.array([len(p) for p in parts], dtype=np.int64)
    for client in np.flatnonzero(sizes < min_per_client):
        while sizes[client] < min_per_client:
            donor = int(np.argmax(sizes))
            k = int(rng.integers(sizes[donor]))
            parts[donor][k], parts[donor][-1] = parts[donor][-1], parts[donor][k]
            parts[client].append(parts[donor].pop())
            sizes[donor] -= 1
            sizes[client] += 1
    return _sorted([np.asarray(p, dtype=np.int64) for p in parts])


def _take_fraction(
    indices: ArrayLike, fraction: float, seed: SeedLike, labels: ArrayLike | None
) -> tuple[np.ndarray, np.ndarray]:
    """(rest, taken) where ``taken`` is ``round(fraction * n)`` shuffled indices."""
    idx = np.asarray(indices)
    if idx.ndim != 1 or (idx.size and not np.issubdtype(idx.dtype, np.integer)):
        raise ParameterError("indices", f"array {idx.dtype} {idx.shape}", "a 1-D integer array")
    idx = idx.astype(np.int64, copy=False)
    rng = _rng(seed)
    if labels is None:
        groups = [idx]
    else:
        y = _labels(labels)
        if idx.size and (idx.min() < 0 or idx.max() >= len(y)):
            raise ParameterError(
                "indices", f"values in [{idx.min()}, {idx.max()}]", f"in [0, {len(y)})"
            )
        sub = y[idx]
        groups = [idx[sub == c] for c in np.unique(sub)]
    taken: list[np.ndarray] = []
    rest: list[np.ndarray] = []
    for group in groups:
        perm = rng.permutation(group)
        n_take = math.floor(fraction * len(group) + 0.5)
        taken.append(perm[:n_take])
        rest.append(perm[n_take:])
    empty = np.empty(0, np.int64)
    rest_arr = np.sort(np.concatenate(rest)) if rest else empty
    taken_arr = np.sort(np.concatenate(taken)) if taken else empty
    return rest_arr, taken_arr


def holdout_split(
    indices: ArrayLike, fraction: float, *, seed: SeedLike, labels: ArrayLike | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Split a client's indices into a training part and a held-out part.

    Parameters
    ----------
    indices : array-like of int
        The client's sample indices.
    fraction : float
        Share held out, in (0, 1) (Def-FD: 0.2); ``round(fraction * n)`` indices.
    seed : int, SeedSequence or Generator
        Randomness.
    labels : array-like of int, optional
        Labels of the *whole* dataset (indexed by ``indices``); if given, the split is
        stratified: ``round(fraction * n_c)`` of each class ``c``.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        ``(train_idx, holdout_idx)``, sorted, disjoint, together equal to ``indices``.

    Examples
    --------
    >>> train, held = holdout_split(np.arange(10), 0.2, seed=1)
    >>> len(train), len(held)
    (8, 2)
    """
    return _take_fraction(indices, _fraction("fraction", fraction), seed, labels)


def labeled_split(
    indices: ArrayLike,
    labeled_fraction: float,
    *,
    seed: SeedLike,
    labels: ArrayLike | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Split a client's indices into a labeled part and an unlabeled part.

    Parameters
    ----------
    indices : array-like of int
        The client's sample indices.
    labeled_fraction : float
        Share that keeps its labels, in (0, 1) (SSL-backbone FL: 0.25).
    seed : int, SeedSequence or Generator
        Randomness.
    labels : array-like of int, optional
        Labels of the whole dataset, for a split stratified by class.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        ``(labeled_idx, unlabeled_idx)``, sorted, disjoint, together equal to ``indices``.
    """
    rest, taken = _take_fraction(
        indices, _fraction("labeled_fraction", labeled_fraction), seed, labels
    )
    return taken, rest
