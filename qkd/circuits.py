"""BB84 as qiskit circuits, to cross-check the vectorized simulation in :mod:`qkd.bb84`.

Each transmitted qubit is one small circuit, simulated exactly by qiskit's
:class:`~qiskit.primitives.StatevectorSampler` (qiskit 2.x; no qiskit-aer):

1. **Alice** prepares ``|0>``/``|1>`` (Z basis) or ``|+>``/``|->`` (X basis):
   ``x`` for bit 1, then ``h`` for the X basis.
2. **Eve** (on a random fraction of the qubits) measures in a random basis and resends the
   state she found. The sampler cannot run mid-circuit measurements, so her measurement is
   *deferred*: in her basis, a CNOT copies the qubit's value onto a fresh probe qubit that
   is measured at the end into the register ``eve``. This is exactly equivalent: the signal
   qubit is left in the eigenstate of her result (the post-measurement state she would
   resend), and measuring the probe at the end gives the same joint statistics of her and
   Bob's results as measuring it before Bob.
3. **Noise** is a depolarizing channel applied by Monte Carlo Pauli insertion: with
   probability ``p`` (``depolarizing``) a uniformly random one of X, Y, Z is applied,
   ``rho -> (1 - p) rho + p/3 (X rho X + Y rho Y + Z rho Z)``. Two of the three Paulis flip
   the outcome in either basis, so the bit-error probability is ``e = 2p/3``
   (:func:`depolarizing_error_rate`); ``qkd.bb84`` with misalignment ``e_d = 2p/3`` models
   the same noise. The noise acts after Eve, on the way to Bob.
4. **Bob** measures in a random basis (``h`` then measure for X) into the register ``bob``.

Alice's, Bob's and Eve's bases are unbiased (standard BB84). The classical choices are
drawn with numpy from ``seed``; qubits with identical choices share one circuit run with as
many shots as there are such qubits (at most 96 distinct circuits), so thousands of qubits
take a fraction of a second. qiskit is imported by this module only.

References
----------
.. [1] C. H. Bennett, G. Brassard, "Quantum cryptography: public key distribution and coin
   tossing", Proc. IEEE Int. Conf. Computers, Systems and Signal Processing, 175 (1984).
.. [2] M. A. Nielsen, I. L. Chuang, *Quantum Computation and Quantum Information*
   (Cambridge, 2000), sec. 4.4 (principle of deferred measurement) and sec. 8.3.4
   (depolarizing channel).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from qiskit.circuit import ClassicalRegister, QuantumCircuit, QuantumRegister
from qiskit.primitives import StatevectorSampler

from qkd.bb84 import SeedLike, as_generator
from qkd.errors import ParameterError

__all__ = [
    "CircuitResult",
    "bb84_circuit",
    "depolarizing_error_rate",
    "sifted_qber",
    "simulate_circuits",
]

U8 = NDArray[np.uint8]
_PAULIS = ("i", "x", "y", "z")


def depolarizing_error_rate(p: float) -> float:
    """Bit-error probability ``2p/3`` of the depolarizing noise used by the circuits.

    Examples
    --------
    >>> depolarizing_error_rate(0.15)
    0.1
    """
    if not (isinstance(p, numbers.Real) and 0 <= p <= 1):
        raise ParameterError("depolarizing", p, "in [0, 1]")
    return round(2.0 * float(p) / 3.0, 15)


def bb84_circuit(
    alice_bit: int,
    alice_basis: int,
    bob_basis: int,
    *,
    eve_basis: int | None = None,
    pauli: str = "i",
) -> QuantumCircuit:
    """One BB84 qubit as a circuit (bases: 0 = Z, 1 = X).

    Qubit 0 is the signal; with ``eve_basis`` given, qubit 1 is Eve's probe (deferred
    measurement, see the module docstring). ``pauli`` (``"i"``, ``"x"``, ``"y"``, ``"z"``)
    is the noise applied before Bob. Registers: ``bob`` (1 bit) and, with Eve, ``eve``.

    Examples
    --------
    >>> dict(bb84_circuit(1, 1, 1).count_ops())  # |-> measured in X
    {'h': 2, 'x': 1, 'measure': 1}
    """
    n_qubits = 1 if eve_basis is None else 2
    bob = ClassicalRegister(1, "bob")
    regs = [QuantumRegister(n_qubits, "q"), bob]
    eve = ClassicalRegister(1, "eve")
    if eve_basis is not None:
        regs.append(eve)
    qc = QuantumCircuit(*regs)
    if alice_bit:
        qc.x(0)
    if alice_basis:
        qc.h(0)
    if eve_basis is not None:
        if eve_basis:
            qc.h(0)
        qc.cx(0, 1)  # Eve's measurement, deferred: her result is copied onto the probe
        if eve_basis:
            qc.h(0)
        qc.measure(1, eve[0])
    if pauli != "i":
        getattr(qc, pauli)(0)
    if bob_basis:
        qc.h(0)
    qc.measure(0, bob[0])
    return qc


@dataclass(frozen=True, eq=False)
class CircuitResult:
    """Per-qubit choices and outcomes of :func:`simulate_circuits` (bases: 0 = Z, 1 = X).

    Attributes
    ----------
    alice_bit, alice_basis, bob_bit, bob_basis : ndarray of uint8
    eve_intercepted : ndarray of bool
        Eve measured and resent this qubit.
    eve_basis, eve_bit : ndarray of uint8
        Eve's basis and result (0 where she did not intercept).
    pauli : ndarray of uint8
        Noise applied: 0 none, 1 X, 2 Y, 3 Z.
    """

    alice_bit: U8
    alice_basis: U8
    bob_bit: U8
    bob_basis: U8
    eve_intercepted: NDArray[np.bool_]
    eve_basis: U8
    eve_bit: U8
    pauli: U8

    @property
    def sifted(self) -> NDArray[np.bool_]:
        """Mask of the qubits measured in Alice's basis."""
        return self.alice_basis == self.bob_basis


def simulate_circuits(
    n_qubits: int, *, seed: SeedLike, eve_fraction: float = 0.0, depolarizing: float = 0.0
) -> CircuitResult:
    """Run ``n_qubits`` BB84 qubits as qiskit circuits.

    Parameters
    ----------
    n_qubits : int
        Number of qubits Alice sends, ``>= 0``.
    seed : int, SeedSequence or Generator
        Randomness of the classical choices and of the sampler; same seed, same result.
    eve_fraction : float
        Probability that Eve intercepts and resends a qubit, in [0, 1].
    depolarizing : float
        Probability ``p`` of a random Pauli error before Bob, in [0, 1]; the bit error
        probability is ``2p/3``.

    Returns
    -------
    CircuitResult

    Examples
    --------
    >>> res = simulate_circuits(400, seed=1, eve_fraction=1.0)
    >>> 0.15 < sifted_qber(res) < 0.35
    True
    >>> sifted_qber(simulate_circuits(400, seed=1))  # no noise, no Eve: no errors
    0.0
    """
    if not isinstance(n_qubits, numbers.Integral) or isinstance(n_qubits, bool) or n_qubits < 0:
        raise ParameterError("n_qubits", n_qubits, "an int >= 0")
    if not (isinstance(eve_fraction, numbers.Real) and 0 <= eve_fraction <= 1):
        raise ParameterError("eve_fraction", eve_fraction, "in [0, 1]")
    depolarizing_error_rate(depolarizing)  # validates
    rng = as_generator(seed)
    n = int(n_qubits)
    alice_bit = rng.integers(0, 2, n, dtype=np.uint8)
    alice_basis = rng.integers(0, 2, n, dtype=np.uint8)
    bob_basis = rng.integers(0, 2, n, dtype=np.uint8)
    eve = rng.random(n) < eve_fraction
    eve_basis = rng.integers(0, 2, n, dtype=np.uint8) & eve
    noisy = rng.random(n) < depolarizing
    pauli = np.where(noisy, rng.integers(1, 4, n), 0).astype(np.uint8)

    # Group identical circuits; run each once with one shot per qubit of the group.
    eve_code = np.where(eve, 1 + eve_basis.astype(np.int64), 0)  # none, Z, X
    key = ((alice_bit.astype(np.int64) * 2 + alice_basis) * 2 + bob_basis) * 3 + eve_code
    key = key * 4 + pauli
    groups, inverse = np.unique(key, return_inverse=True)
    pubs = []
    for g in groups:
        first = int(np.flatnonzero(key == g)[0])
        circuit = bb84_circuit(
            int(alice_bit[first]),
            int(alice_basis[first]),
            int(bob_basis[first]),
            eve_basis=int(eve_basis[first]) if eve[first] else None,
            pauli=_PAULIS[pauli[first]],
        )
        pubs.append((circuit, None, int(np.count_nonzero(inverse == len(pubs)))))
    results = StatevectorSampler(seed=rng).run(pubs).result() if pubs else []

    bob_bit = np.zeros(n, dtype=np.uint8)
    eve_bit = np.zeros(n, dtype=np.uint8)
    for i, res in enumerate(results):
        members = np.flatnonzero(inverse == i)
        bob_bit[members] = res.data.bob.array[:, 0] & 1
        if "eve" in res.data:
            eve_bit[members] = res.data.eve.array[:, 0] & 1
    return CircuitResult(
        alice_bit=alice_bit,
        alice_basis=alice_basis,
        bob_bit=bob_bit,
        bob_basis=bob_basis,
        eve_intercepted=eve,
        eve_basis=eve_basis,
        eve_bit=eve_bit,
        pauli=pauli,
    )


def sifted_qber(result: CircuitResult) -> float:
    """Error rate of the sifted bits (``nan`` if no basis matched).

    Examples
    --------
    >>> res = simulate_circuits(2000, seed=3, depolarizing=0.3)
    >>> abs(sifted_qber(res) - depolarizing_error_rate(0.3)) < 0.05
    True
    """
    keep = result.sifted
    n = int(np.count_nonzero(keep))
    if n == 0:
        return math.nan
    return int(np.count_nonzero(result.alice_bit[keep] != result.bob_bit[keep])) / n
