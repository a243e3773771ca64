"""Tests of the qiskit BB84 circuits and their agreement with the numpy simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from qiskit.quantum_info import Statevector

from qkd.bb84 import sift, simulate
from qkd.circuits import (
    CircuitResult,
    bb84_circuit,
    depolarizing_error_rate,
    sifted_qber,
    simulate_circuits,
)
from qkd.errors import ParameterError
from qkd.params import Detector, Source, get_preset

SIGMAS = 5.0


def n_sifted(result: CircuitResult) -> int:
    return int(np.count_nonzero(result.sifted))


def within(observed: float, expected: float, n: int) -> bool:
    return abs(observed - expected) <= SIGMAS * math.sqrt(expected * (1 - expected) / n)


def expected_qber(eve_fraction: float, p: float) -> float:
    """Eve in Alice's basis (half the time) passes the bit on; otherwise Bob's bit is random.

    The noise acts after Eve, so an error rate e = 2p/3 applies to whatever reaches Bob.
    """
    e = depolarizing_error_rate(p)
    return eve_fraction * (0.25 + e / 2) + (1 - eve_fraction) * e


def bob_probabilities(
    alice_bit: int, alice_basis: int, bob_basis: int, eve: int | None
) -> dict[str, float]:
    """Exact P(bob, eve) of one circuit, from its state vector before the final measurements."""
    circuit = bb84_circuit(alice_bit, alice_basis, bob_basis, eve_basis=eve)
    state = Statevector.from_instruction(circuit.remove_final_measurements(inplace=False))
    # Keys are 'q1q0' (Eve's bit, Bob's bit); drop outcomes of zero probability.
    return {k: v for k, v in state.probabilities_dict().items() if v > 1e-12}


@pytest.mark.parametrize("alice_bit", [0, 1])
@pytest.mark.parametrize("alice_basis", [0, 1])
@pytest.mark.parametrize("bob_basis", [0, 1])
def test_circuits_implement_bb84_and_measure_resend(
    alice_bit: int, alice_basis: int, bob_basis: int
) -> None:
    probs = bob_probabilities(alice_bit, alice_basis, bob_basis, None)
    if alice_basis == bob_basis:
        assert probs == pytest.approx({str(alice_bit): 1.0})
    else:
        assert probs == pytest.approx({"0": 0.5, "1": 0.5})
    for eve_basis in (0, 1):
        probs = bob_probabilities(alice_bit, alice_basis, bob_basis, eve_basis)
        # Measure-and-resend: Eve gets Alice's bit in Alice's basis, else a fair coin; Bob
        # then measures the eigenstate Eve found.
        expected: dict[str, float] = {}
        for eve_bit in (0, 1):
            p_eve = float(eve_bit == alice_bit) if eve_basis == alice_basis else 0.5
            for bob_bit in (0, 1):
                p_bob = float(bob_bit == eve_bit) if bob_basis == eve_basis else 0.5
                if p_eve * p_bob > 0:
                    expected[f"{eve_bit}{bob_bit}"] = p_eve * p_bob
        assert probs == pytest.approx(expected)


def test_full_intercept_resend_gives_a_quarter_qber() -> None:
    res = simulate_circuits(8000, seed=1, eve_fraction=1.0)
    assert res.eve_intercepted.all()
    assert within(sifted_qber(res), 0.25, n_sifted(res))
    known = res.eve_basis == res.alice_basis
    assert np.array_equal(res.eve_bit[known], res.alice_bit[known])
    assert within(float(np.mean(res.eve_bit[~known] == res.alice_bit[~known])), 0.5, 4000)


@pytest.mark.parametrize("p", [0.06, 0.3])
def test_depolarizing_noise_gives_two_thirds_p_errors_in_both_bases(p: float) -> None:
    res = simulate_circuits(8000, seed=2, depolarizing=p)
    e = depolarizing_error_rate(p)
    for basis in (0, 1):
        keep = res.sifted & (res.alice_basis == basis)
        rate = float(np.mean(res.alice_bit[keep] != res.bob_bit[keep]))
        assert within(rate, e, int(np.count_nonzero(keep)))
    assert within(float(np.mean(res.pauli > 0)), p, 8000)


@pytest.mark.parametrize(("eve_fraction", "p"), [(0.0, 0.15), (0.5, 0.3), (1.0, 0.0), (0.3, 0.06)])
def test_circuits_and_numpy_simulation_agree_on_qber(eve_fraction: float, p: float) -> None:
    circuit = simulate_circuits(6000, seed=4, eve_fraction=eve_fraction, depolarizing=p)
    # The numpy side: lossless, no background, misalignment e_d = 2p/3, distance 0. A weak
    # mu keeps pulses with three or more photons (whose error rate differs slightly from e_d)
    # below 0.2% of detections.
    system = get_preset("gys-2004").replace(
        source=Source(clock_hz=1e6, mu=0.1, decoys=()),
        detector=Detector(efficiency=1.0, dark_count_prob=0.0),
        misalignment=depolarizing_error_rate(p),
    )
    key = sift(simulate(system, 0.0, 400_000, seed=5, eve_fraction=eve_fraction))
    q_circ, n_circ = sifted_qber(circuit), n_sifted(circuit)
    q_np, n_np = key.error_rate, len(key)
    expected = expected_qber(eve_fraction, p)
    assert within(q_circ, expected, n_circ)
    assert within(q_np, expected, n_np)
    pooled = (q_circ * n_circ + q_np * n_np) / (n_circ + n_np)
    sigma = math.sqrt(pooled * (1 - pooled) * (1 / n_circ + 1 / n_np))
    assert abs(q_circ - q_np) <= SIGMAS * sigma + 1e-12


def test_same_seed_same_result() -> None:
    a = simulate_circuits(500, seed=9, eve_fraction=0.4, depolarizing=0.2)
    b = simulate_circuits(500, seed=9, eve_fraction=0.4, depolarizing=0.2)
    c = simulate_circuits(500, seed=10, eve_fraction=0.4, depolarizing=0.2)
    for name in ("alice_bit", "bob_bit", "bob_basis", "eve_bit", "pauli"):
        assert np.array_equal(getattr(a, name), getattr(b, name))
    assert not np.array_equal(a.bob_bit, c.bob_bit)


def test_no_qubits() -> None:
    res = simulate_circuits(0, seed=0)
    assert res.alice_bit.size == 0 and math.isnan(sifted_qber(res))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_qubits": -1}, r"n_qubits: must be an int >= 0, got -1"),
        ({"eve_fraction": 2.0}, r"eve_fraction: must be in \[0, 1\], got 2.0"),
        ({"depolarizing": -0.1}, r"depolarizing: must be in \[0, 1\], got -0.1"),
        ({"seed": "x"}, r"seed: must be an int >= 0"),
    ],
)
def test_bad_inputs_raise(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"n_qubits": 10, "seed": 0} | kwargs
    with pytest.raises(ParameterError, match=message):
        simulate_circuits(**args)  # type: ignore[arg-type]


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**32), n=st.integers(1, 300))
def test_without_noise_or_eve_sifted_bits_agree(seed: int, n: int) -> None:
    res = simulate_circuits(n, seed=seed)
    keep = res.sifted
    assert np.array_equal(res.alice_bit[keep], res.bob_bit[keep])
    assert not res.eve_intercepted.any() and not res.pauli.any()
