"""End-to-end post-processing: sifted keys to equal final keys, or an abort."""

from __future__ import annotations

import numpy as np
import pytest

from qkd.amplify import final_key_length
from qkd.errors import ParameterError
from qkd.params import get_preset
from qkd.pipeline import distill, generate_key, simulate_and_distill


def _pair(n: int, qber: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    alice = rng.integers(0, 2, n, dtype=np.uint8)
    bob = alice ^ (rng.random(n) < qber).astype(np.uint8)
    return alice, bob


def test_end_to_end_on_a_small_system() -> None:
    res = simulate_and_distill(get_preset("toshiba-2018"), 10.0, 1_000_000, seed=3)
    assert not res.aborted and res.reason == ""
    np.testing.assert_array_equal(res.alice_key, res.bob_key)
    assert res.alice_key.size == res.final_length > 10_000
    assert res.n_reconciled == res.n_sifted - res.n_sample
    assert abs(res.qber - 0.015) < 0.01  # misalignment 1.5% dominates at 10 km
    assert res.phase_error > res.qber
    assert res.final_length == final_key_length(
        res.n_reconciled, res.phase_error, res.leaked_ec, 1e-10 / 2
    )
    assert 1.0 < res.ec_efficiency < 1.5


def test_intercept_resend_attack_aborts() -> None:
    res = simulate_and_distill(
        get_preset("toshiba-2018"), 10.0, 1_000_000, seed=4, eve_fraction=1.0
    )
    assert res.aborted
    assert res.qber > 0.2
    assert "exceeds the threshold 0.11" in res.reason
    assert res.final_length == 0 and res.alice_key.size == 0


def test_generate_key_is_the_distilled_key() -> None:
    system = get_preset("toshiba-2018")
    key = generate_key(system, 20.0, 500_000, seed=5)
    res = simulate_and_distill(system, 20.0, 500_000, seed=5)
    assert key.dtype == np.uint8
    np.testing.assert_array_equal(key, res.alice_key)
    assert set(np.unique(key)) <= {0, 1}


def test_distill_synthetic_keys_is_reproducible() -> None:
    alice, bob = _pair(150_000, 0.03, seed=1)
    first = distill(alice, bob, seed=7)
    again = distill(alice, bob, seed=7)
    other = distill(alice, bob, seed=8)
    assert not first.aborted
    np.testing.assert_array_equal(first.alice_key, first.bob_key)
    np.testing.assert_array_equal(first.alice_key, again.alice_key)
    assert first.n_sample == 15_000 and first.frames == 2  # 135 000 key bits, 2**17 frames
    assert abs(first.qber - 0.03) < 0.005
    assert abs(float(first.alice_key.mean()) - 0.5) < 0.02
    n = min(first.final_length, other.final_length)
    assert 0.4 < float((first.alice_key[:n] != other.alice_key[:n]).mean()) < 0.6
    with pytest.raises(ValueError, match="read-only"):
        first.alice_key[0] = 1


def test_failed_frames_are_discarded_and_the_rest_kept() -> None:
    alice, bob = _pair(200_000, 0.02, seed=2)
    # Three passes on 5000-bit frames leave residual errors in many frames.
    res = distill(alice, bob, seed=3, passes=3, frame_bits=5_000)
    assert res.frames == 36 and 0 < res.frames_failed < res.frames
    assert not res.aborted
    assert res.n_reconciled < res.n_sifted - res.n_sample
    np.testing.assert_array_equal(res.alice_key, res.bob_key)


def test_too_little_key_aborts_on_finite_size() -> None:
    alice, bob = _pair(2_000, 0.02, seed=3)
    res = distill(alice, bob, seed=1)
    assert res.aborted and res.reason.startswith("no secret key")
    assert res.alice_key.size == 0


def test_abort_on_high_qber_reports_the_estimate() -> None:
    alice, bob = _pair(50_000, 0.15, seed=4)
    res = distill(alice, bob, seed=1, qber_threshold=0.11)
    assert res.aborted and res.n_sample == 5_000
    assert abs(res.qber - 0.15) < 0.02
    assert res.reason.startswith(f"QBER {res.qber:.4f}")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"bob": np.zeros(5, dtype=np.uint8)}, "bob: must be the length of alice"),
        ({"qber_sample_fraction": 1.0}, "qber_sample_fraction: must be in \\(0, 1\\)"),
        ({"epsilon_sec": 0.0}, "epsilon_sec: must be in \\(0, 1\\)"),
        ({"qber_threshold": 0.5}, "qber_threshold: must be in \\(0, 0.5\\)"),
        ({"frame_bits": 0}, "frame_bits: must be an integer >= 1, got 0"),
        ({"alice": np.full(10, 2)}, "alice: must be 0/1 bits"),
    ],
)
def test_distill_rejects_bad_input(kwargs: dict, match: str) -> None:
    args = {"alice": np.zeros(10, dtype=np.uint8), "bob": np.zeros(10, dtype=np.uint8)}
    args.update(kwargs)
    with pytest.raises(ParameterError, match=match):
        distill(args.pop("alice"), args.pop("bob"), seed=0, **args)
