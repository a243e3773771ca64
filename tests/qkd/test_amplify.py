"""Toeplitz-hash privacy amplification and the finite-key length."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qkd.amplify import (
    _toeplitz_vector,
    binary_entropy,
    final_key_length,
    phase_error_upper_bound,
    toeplitz_hash,
    toeplitz_matrix,
)
from qkd.errors import ParameterError


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 300),
    m=st.integers(0, 300),
    seed=st.integers(0, 2**32),
    data_seed=st.integers(0, 2**32),
)
def test_fft_hash_equals_direct_matrix_product(n: int, m: int, seed: int, data_seed: int) -> None:
    x = np.random.default_rng(data_seed).integers(0, 2, n, dtype=np.uint8)
    direct = (toeplitz_matrix(n, m, seed=seed).astype(np.int64) @ x) % 2
    np.testing.assert_array_equal(toeplitz_hash(x, m, seed=seed), direct)


def test_matrix_is_toeplitz() -> None:
    t = toeplitz_matrix(50, 30, seed=3)
    assert t.shape == (30, 50)
    np.testing.assert_array_equal(t[1:, 1:], t[:-1, :-1])
    assert set(np.unique(t)) == {0, 1}


def test_large_input_is_exact() -> None:
    """At n = 2**19 the FFT result still matches rows computed directly."""
    n, m = 2**19, 2**18
    rng = np.random.default_rng(11)
    x = rng.integers(0, 2, n, dtype=np.uint8)
    y = toeplitz_hash(x, m, seed=5)
    t = _toeplitz_vector(n, m, 5).astype(np.int64)
    for i in rng.integers(0, m, 25):
        row = t[i : i + n][::-1]  # T[i, j] = t[i - j + n - 1]
        assert y[i] == int(row @ x) % 2


def test_batched_rows_match_single_calls() -> None:
    rng = np.random.default_rng(2)
    keys = rng.integers(0, 2, (3, 1000), dtype=np.uint8)
    batched = toeplitz_hash(keys, 200, seed=9)
    assert batched.shape == (3, 200)
    for row, key in zip(batched, keys, strict=True):
        np.testing.assert_array_equal(row, toeplitz_hash(key, 200, seed=9))


def test_same_key_same_seed_same_output_and_seed_matters() -> None:
    rng = np.random.default_rng(4)
    key = rng.integers(0, 2, 5000, dtype=np.uint8)
    alice = toeplitz_hash(key, 2000, seed=42)
    bob = toeplitz_hash(key.copy(), 2000, seed=42)
    np.testing.assert_array_equal(alice, bob)
    other = toeplitz_hash(key, 2000, seed=43)
    assert 800 < int((alice != other).sum()) < 1200  # independent-looking outputs


def test_hash_is_linear_over_gf2() -> None:
    rng = np.random.default_rng(5)
    x, y = rng.integers(0, 2, (2, 3000), dtype=np.uint8)
    hx, hy, hxy = (toeplitz_hash(v, 700, seed=1) for v in (x, y, x ^ y))
    np.testing.assert_array_equal(hxy, hx ^ hy)


def test_output_is_balanced() -> None:
    key = np.random.default_rng(6).integers(0, 2, 20_000, dtype=np.uint8)
    out = toeplitz_hash(key, 10_000, seed=8)
    assert out.dtype == np.uint8
    assert abs(out.mean() - 0.5) < 0.03


def test_zero_lengths() -> None:
    assert toeplitz_hash(np.ones(10, dtype=np.uint8), 0, seed=1).shape == (0,)
    assert toeplitz_hash(np.zeros(0, dtype=np.uint8), 4, seed=1).tolist() == [0, 0, 0, 0]


@pytest.mark.parametrize(
    ("bits", "out_len", "match"),
    [
        (np.zeros((2, 2, 2), dtype=np.uint8), 3, "bits: must be a 1-D or 2-D array"),
        (np.array([0, 1, 2]), 3, "bits: must be 0/1 bits"),
        (np.array([0.0, 1.0]), 3, "bits: must be 0/1 bits"),
        (np.array([0, 1]), -1, "out_len: must be an integer >= 0, got -1"),
    ],
)
def test_hash_rejects_bad_input(bits: np.ndarray, out_len: int, match: str) -> None:
    with pytest.raises(ParameterError, match=match):
        toeplitz_hash(bits, out_len, seed=0)


def test_binary_entropy() -> None:
    assert float(binary_entropy(0.0)) == 0.0
    assert float(binary_entropy(1.0)) == 0.0
    assert float(binary_entropy(0.5)) == 1.0
    p = np.linspace(0.01, 0.49, 20)
    np.testing.assert_allclose(binary_entropy(p), binary_entropy(1 - p))
    assert np.all(np.diff(binary_entropy(p)) > 0)
    with pytest.raises(ParameterError, match="p: must be in \\[0, 1\\]"):
        binary_entropy(1.5)


def test_phase_error_bound_shrinks_with_the_sample() -> None:
    small = phase_error_upper_bound(0.02, 100_000, 1_000, 1e-10)
    large = phase_error_upper_bound(0.02, 100_000, 100_000, 1e-10)
    assert 0.02 < large < small <= 0.5
    # mu by hand for n = k: sqrt(2/k * (k+1)/k * ln(2/eps))
    k = 100_000
    mu = math.sqrt(2 / k * (k + 1) / k * math.log(2 / 1e-10))
    assert large == pytest.approx(0.02 + mu)
    assert phase_error_upper_bound(0.2, 100, 10, 1e-10) == 0.5  # capped


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((0.6, 10, 10, 1e-9), "qber: must be in \\[0, 0.5\\], got 0.6"),
        ((0.1, 0, 10, 1e-9), "n_key: must be >= 1, got 0"),
        ((0.1, 10, 0, 1e-9), "n_sample: must be >= 1, got 0"),
        ((0.1, 10, 10, 0.0), "epsilon: must be in \\(0, 1\\), got 0.0"),
    ],
)
def test_phase_error_bound_rejects_bad_input(args: tuple, match: str) -> None:
    with pytest.raises(ParameterError, match=match):
        phase_error_upper_bound(*args)


def test_final_key_length_formula() -> None:
    n, e, leak, eps = 1_000_000, 0.03, 200_000, 1e-10
    expected = math.floor(n * (1 - float(binary_entropy(e))) - leak - math.log2(2 / eps**2))
    assert final_key_length(n, e, leak, eps) == expected
    assert final_key_length(n, 0.11, 550_000, eps) == 0  # f = 1.1 at the BB84 threshold
    assert final_key_length(0, 0.0, 0, eps) == 0


@settings(max_examples=80, deadline=None)
@given(
    n=st.integers(0, 10**7),
    e=st.floats(0, 0.5),
    leak=st.integers(0, 10**7),
    eps=st.floats(1e-20, 0.5),
)
def test_final_key_length_is_bounded_and_monotone(n: int, e: float, leak: int, eps: float) -> None:
    ell = final_key_length(n, e, leak, eps)
    assert 0 <= ell <= n
    assert final_key_length(n, e, leak + 1000, eps) <= ell
    assert final_key_length(n, min(0.5, e + 0.01), leak, eps) <= ell
    assert final_key_length(n, e, leak, eps / 10) <= ell


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((-1, 0.1, 0, 1e-9), "n: must be >= 0, got -1"),
        ((10, 0.7, 0, 1e-9), "phase_error: must be in \\[0, 0.5\\], got 0.7"),
        ((10, 0.1, -5, 1e-9), "leaked_bits: must be >= 0, got -5"),
        ((10, 0.1, 0, 1.0), "epsilon_sec: must be in \\(0, 1\\), got 1.0"),
    ],
)
def test_final_key_length_rejects_bad_input(args: tuple, match: str) -> None:
    with pytest.raises(ParameterError, match=match):
        final_key_length(*args)
