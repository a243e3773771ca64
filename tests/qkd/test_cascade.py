"""Cascade reconciliation: correctness, leakage accounting, verification."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qkd.amplify import binary_entropy, toeplitz_hash
from qkd.cascade import cascade_block_sizes, reconcile
from qkd.errors import ParameterError, UnknownNameError


def _pair(n: int, qber: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    alice = rng.integers(0, 2, n, dtype=np.uint8)
    bob = alice ^ (rng.random(n) < qber).astype(np.uint8)
    return alice, bob


def _reference_cascade(
    alice: np.ndarray, bob: np.ndarray, sizes: tuple[int, ...], seed: int
) -> tuple[np.ndarray, int, int]:
    """Plain sequential Cascade on the real bits, following the same schedule.

    Each round takes the blocks that are odd at the start of the round, pass by pass; a
    block holding a bit flipped earlier in the round waits for the next round. Bob
    computes every parity from his own bits, Alice from hers.
    """
    n = alice.size
    bob = bob.copy()
    rng = np.random.default_rng(seed)
    rng.integers(2**63)  # the verification seed is drawn first
    perms: list[np.ndarray] = []
    disclosed = 0

    def parity(key: np.ndarray, perm: np.ndarray, lo: int, hi: int) -> int:
        return int(key[perm[lo:hi]].sum()) & 1

    def block_ranges(r: int) -> list[tuple[int, int]]:
        k = sizes[r]
        return [(s, min(s + k, n)) for s in range(0, n, k)]

    for r in range(len(sizes)):
        # reconcile draws pos[i] = shuffled position of bit i; perm lists bits by position
        perms.append(np.argsort(rng.permutation(n)))
        disclosed += len(block_ranges(r))
        while True:
            odd = [
                (q, lo, hi)
                for q in range(r + 1)
                for lo, hi in block_ranges(q)
                if parity(alice, perms[q], lo, hi) != parity(bob, perms[q], lo, hi)
            ]
            if not odd:
                break
            flipped: set[int] = set()
            for q, lo, hi in odd:
                if flipped & set(perms[q][lo:hi].tolist()):
                    continue
                while hi - lo > 1:
                    mid = (lo + hi + 1) // 2
                    disclosed += 1
                    if parity(alice, perms[q], lo, mid) != parity(bob, perms[q], lo, mid):
                        hi = mid
                    else:
                        lo = mid
                bit = int(perms[q][lo])
                bob[bit] ^= 1
                flipped.add(bit)
    return bob, disclosed, int((bob != alice).sum())


@pytest.mark.parametrize(("n", "qber", "seed"), [(600, 0.05, 1), (1500, 0.02, 2), (900, 0.1, 3)])
def test_matches_sequential_reference_on_real_bits(n: int, qber: float, seed: int) -> None:
    alice, bob = _pair(n, qber, seed)
    sizes = cascade_block_sizes(qber, n, 6)
    ref_key, ref_disclosed, _ = _reference_cascade(alice, bob, sizes, seed=seed + 100)
    res = reconcile(alice, bob, qber, seed=seed + 100, passes=6)
    np.testing.assert_array_equal(res.key, ref_key)
    assert res.parity_bits == ref_disclosed


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 3000),
    qber=st.floats(0.001, 0.15),
    seed=st.integers(0, 2**32),
)
def test_verified_keys_agree_and_every_correction_fixes_an_error(
    n: int, qber: float, seed: int
) -> None:
    alice, bob = _pair(n, qber, seed)
    n_errors = int((alice != bob).sum())
    res = reconcile(alice, bob, qber, seed=seed)
    equal = bool(np.array_equal(res.key, alice))
    assert res.verified == equal  # a 64-bit tag never collides here
    # Cascade only ever flips bits that differ: corrections + residual = initial errors.
    assert res.corrected + int((res.key != alice).sum()) == n_errors
    assert res.leaked_bits == res.parity_bits + res.verification_bits == res.parity_queries + 64
    assert res.parity_bits >= sum(math.ceil(n / k) for k in res.block_sizes)


def test_corrects_moderate_keys_and_is_efficient() -> None:
    for qber in (0.01, 0.03, 0.05):
        alice, bob = _pair(20_000, qber, seed=int(qber * 1000))
        res = reconcile(alice, bob, qber, seed=7)
        assert res.verified
        np.testing.assert_array_equal(res.key, alice)
        assert res.corrected == int((alice != bob).sum())
        assert res.efficiency == pytest.approx(
            res.leaked_bits / (20_000 * float(binary_entropy(qber)))
        )
        assert 1.0 < res.efficiency < 1.3


def test_inputs_are_not_modified_and_results_are_reproducible() -> None:
    alice, bob = _pair(5000, 0.04, seed=3)
    a0, b0 = alice.copy(), bob.copy()
    first = reconcile(alice, bob, 0.04, seed=11)
    second = reconcile(alice, bob, 0.04, seed=11)
    np.testing.assert_array_equal(alice, a0)
    np.testing.assert_array_equal(bob, b0)
    np.testing.assert_array_equal(first.key, second.key)
    assert (first.leaked_bits, first.rounds) == (second.leaked_bits, second.rounds)
    other = reconcile(alice, bob, 0.04, seed=12)
    assert other.leaked_bits != first.leaked_bits  # a different shuffle, a different path


def test_no_errors_discloses_only_block_parities_and_tag() -> None:
    alice, _ = _pair(4096, 0.0, seed=1)
    res = reconcile(alice, alice, 0.02, seed=1, passes=4)
    assert res.corrected == 0 and res.verified
    assert res.parity_bits == sum(math.ceil(4096 / k) for k in res.block_sizes)
    assert res.leaked_bits == res.parity_bits + 64


def test_single_error_costs_one_binary_search() -> None:
    n = 1024
    alice, _ = _pair(n, 0.0, seed=2)
    bob = alice.copy()
    bob[417] ^= 1
    res = reconcile(alice, bob, 0.01, seed=3, block_sizes=[n], tag_bits=32)
    assert res.verified and res.corrected == 1
    assert res.parity_bits == 1 + 10  # one block parity, log2(1024) halvings
    assert res.leaked_bits == 11 + 32
    assert res.rounds == 1 + 10 + 1  # parities, halvings, tag


def test_failed_verification_is_reported() -> None:
    """Two errors in one block of a single pass are invisible to Cascade."""
    alice, _ = _pair(256, 0.0, seed=4)
    bob = alice.copy()
    bob[[10, 200]] ^= 1
    res = reconcile(alice, bob, 0.01, seed=5, block_sizes=[256])
    assert not res.verified
    assert res.corrected == 0
    assert int((res.key != alice).sum()) == 2


def test_verification_tag_is_the_toeplitz_hash_of_both_keys() -> None:
    alice, bob = _pair(3000, 0.03, seed=6)
    res = reconcile(alice, bob, 0.03, seed=8, tag_bits=16)
    tag_seed = int(np.random.default_rng(8).integers(2**63))
    np.testing.assert_array_equal(
        toeplitz_hash(res.key, 16, seed=tag_seed), toeplitz_hash(alice, 16, seed=tag_seed)
    )
    assert res.verification_bits == 16


def test_block_size_schedules() -> None:
    # Martinez-Mateo et al. 2015, opt. (8): alpha = log2(1/p) - 1/2.
    assert cascade_block_sizes(0.01, 100_000, 5) == (128, 1024, 4096, 50_000, 50_000)
    assert cascade_block_sizes(0.05, 100_000, 3) == (16, 256, 4096)
    assert cascade_block_sizes(0.01, 100_000, 4, schedule="original") == (73, 146, 292, 584)
    assert cascade_block_sizes(0.02, 1000, 4) == (64, 512, 1000, 500)  # clipped to n
    assert cascade_block_sizes(0.0, 50, 2) == (50, 50)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"bob": np.zeros(9, dtype=np.uint8)}, ParameterError, "bob: must be the length"),
        ({"qber": 0.5}, ParameterError, "qber: must be in \\[0, 0.5\\), got 0.5"),
        ({"passes": 0}, ParameterError, "passes: must be an integer >= 1, got 0"),
        ({"schedule": "fast"}, UnknownNameError, "schedule: must be one of 'martinez-mateo'"),
        ({"tag_bits": 0}, ParameterError, "tag_bits: must be an integer >= 1, got 0"),
        ({"block_sizes": [4, 0]}, ParameterError, "block_sizes: must be a non-empty list"),
        ({"bob": np.full(10, 3)}, ParameterError, "bob: must be 0/1 bits"),
    ],
)
def test_rejects_bad_input(kwargs: dict, error: type, match: str) -> None:
    args = {"alice": np.zeros(10, dtype=np.uint8), "bob": np.zeros(10, dtype=np.uint8)}
    args["qber"] = 0.02
    args.update(kwargs)
    with pytest.raises(error, match=match):
        reconcile(args.pop("alice"), args.pop("bob"), args.pop("qber"), seed=0, **args)


@pytest.mark.slow
@pytest.mark.parametrize("qber", [0.01, 0.02, 0.03, 0.05])
def test_targets_on_1e5_bit_blocks(qber: float) -> None:
    """Efficiency <= 1.25 and no residual errors on 10**5-bit blocks (20 blocks each)."""
    effs = []
    failures = 0
    for i in range(20):
        alice, bob = _pair(100_000, qber, seed=1000 + i)
        res = reconcile(alice, bob, qber, seed=i)
        effs.append(res.efficiency)
        failures += not res.verified
        assert res.verified == bool(np.array_equal(res.key, alice))
    assert float(np.mean(effs)) <= 1.25
    assert failures == 0
