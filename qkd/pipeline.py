"""From sifted keys to final secret keys: QBER estimation, Cascade, verification, hashing.

:func:`distill` runs the classical post-processing of one block of sifted key:

1. **Parameter estimation.** A random sample of ``qber_sample_fraction`` of the sifted bits
   is disclosed and compared; the rest is the key. The protocol aborts when the sampled
   QBER exceeds ``qber_threshold`` (11%, where BB84's asymptotic key rate
   ``1 - 2 h(e)`` vanishes). The phase-error rate of the key is bounded from the sample
   with the finite-size deviation of :func:`qkd.amplify.phase_error_upper_bound`.
2. **Error correction.** The key is cut into frames of at most ``frame_bits`` bits, each
   reconciled with :func:`qkd.cascade.reconcile` (block sizes from the sampled QBER) and
   verified by a Toeplitz-hash tag. A frame that fails verification is discarded.
3. **Privacy amplification.** Both parties hash the reconciled key with the same random
   Toeplitz matrix to the length of :func:`qkd.amplify.final_key_length`, which subtracts
   every disclosed bit (parities and tags). The protocol aborts when no secret bits remain.

The security parameter is split evenly: ``epsilon_sec / 2`` for the phase-error estimate
and ``epsilon_sec / 2`` for privacy amplification. The bound treats every key bit like a
single-photon bit (phase error = error rate in the other basis). With weak coherent pulses
this ignores photon-number splitting on multi-photon pulses; the decoy-state bounds of
:mod:`qkd.rates` account for it in the rate models, not in this bit-level pipeline.

:func:`generate_key` strings the whole link together: it simulates BB84 pulses with
:func:`qkd.bb84.simulate`, sifts, keeps the signal-intensity bits (decoy bits are disclosed
in a decoy-state protocol) and distills them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike, NDArray

from qkd.amplify import (
    binary_entropy,
    final_key_length,
    phase_error_upper_bound,
    toeplitz_hash,
)
from qkd.bb84 import as_generator, sift, simulate
from qkd.cascade import reconcile
from qkd.errors import ParameterError
from qkd.params import QKDSystem
from qkd.rates import ABORT_QBER

__all__ = ["DistillResult", "distill", "generate_key", "simulate_and_distill"]

Seed = int | np.random.SeedSequence | np.random.Generator

_EMPTY = np.zeros(0, dtype=np.uint8)
_EMPTY.setflags(write=False)


@dataclass(frozen=True)
class DistillResult:
    """Outcome of :func:`distill`.

    Attributes
    ----------
    alice_key, bob_key : numpy.ndarray of uint8
        The final keys (read-only; equal unless a verification hash collided, probability
        ``2**-tag_bits`` per frame). Empty when ``aborted``.
    n_sifted : int
        Sifted bits given to :func:`distill`.
    n_sample : int
        Bits disclosed to estimate the QBER.
    qber : float
        QBER measured on the sample.
    phase_error : float
        Upper bound on the phase-error rate used for privacy amplification (``nan`` when
        the protocol aborted before computing it).
    n_reconciled : int
        Key bits in frames that passed verification.
    leaked_ec : int
        Bits disclosed by error correction and verification of those frames.
    frames, frames_failed : int
        Frames reconciled, and frames discarded after a failed verification.
    final_length : int
        Length of the final key (0 when aborted).
    aborted : bool
        Whether no key was produced.
    reason : str
        Why the protocol aborted (empty otherwise).
    """

    alice_key: NDArray[np.uint8] = field(repr=False)
    bob_key: NDArray[np.uint8] = field(repr=False)
    n_sifted: int
    n_sample: int
    qber: float
    phase_error: float
    n_reconciled: int
    leaked_ec: int
    frames: int
    frames_failed: int
    final_length: int
    aborted: bool
    reason: str = ""

    @property
    def ec_efficiency(self) -> float:
        """``leaked_ec / (n_reconciled * h(qber))``: Cascade's efficiency ``f`` here."""
        h = float(binary_entropy(self.qber)) if 0 <= self.qber <= 1 else math.nan
        if not self.n_reconciled or not h > 0:
            return math.nan
        return self.leaked_ec / (self.n_reconciled * h)


def _check_key(bits: ArrayLike, name: str) -> NDArray[np.uint8]:
    arr = np.asarray(bits)
    if arr.ndim != 1:
        raise ParameterError(name, f"array of shape {arr.shape}", "a 1-D array of bits")
    if arr.size and (arr.dtype.kind not in "biu" or arr.min() < 0 or arr.max() > 1):
        raise ParameterError(name, f"array with values {np.unique(arr)[:4]}", "0/1 bits")
    return arr.astype(np.uint8, copy=False)


def _frozen(a: NDArray[np.uint8]) -> NDArray[np.uint8]:
    a.setflags(write=False)
    return a


def distill(
    alice: ArrayLike,
    bob: ArrayLike,
    *,
    qber_sample_fraction: float = 0.1,
    epsilon_sec: float = 1e-10,
    seed: Seed,
    qber_threshold: float = ABORT_QBER,
    frame_bits: int = 1 << 17,
    passes: int = 14,
    tag_bits: int = 64,
) -> DistillResult:
    """Turn Alice's and Bob's sifted keys into equal final secret keys, or abort.

    Parameters
    ----------
    alice, bob : array_like of 0/1
        Sifted keys of equal length.
    qber_sample_fraction : float
        Fraction of the sifted bits disclosed to estimate the QBER, in (0, 1).
    epsilon_sec : float
        Security parameter in (0, 1), split evenly between the phase-error estimate and
        privacy amplification.
    seed : int, SeedSequence or Generator
        All public randomness: the sample, Cascade's shuffles, the hash matrices.
    qber_threshold : float
        Abort when the sampled QBER exceeds this, in (0, 0.5).
    frame_bits : int
        Largest frame reconciled at once (``>= 1``).
    passes, tag_bits : int
        Passed to :func:`qkd.cascade.reconcile`.

    Returns
    -------
    DistillResult

    References
    ----------
    .. [1] M. Tomamichel, C. C. W. Lim, N. Gisin and R. Renner, "Tight finite-key analysis
       for quantum cryptography", Nat. Commun. 3, 634 (2012).
    .. [2] G. Brassard and L. Salvail, EUROCRYPT '93, LNCS 765, 410 (1994).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> alice = rng.integers(0, 2, 200_000, dtype=np.uint8)
    >>> bob = alice ^ (rng.random(200_000) < 0.02).astype(np.uint8)
    >>> res = distill(alice, bob, seed=1)
    >>> res.aborted, bool((res.alice_key == res.bob_key).all())
    (False, True)
    >>> 0.5 < res.final_length / 180_000 < 0.8
    True

    Kept as one function: sifting, estimation, reconciliation, verification and
    amplification run in the order of the protocol and share its bookkeeping.
    """
    a = _check_key(alice, "alice")
    b = _check_key(bob, "bob")
    if a.size != b.size:
        raise ParameterError("bob", f"length {b.size}", f"the length of alice ({a.size})")
    if not (0 < qber_sample_fraction < 1):
        raise ParameterError("qber_sample_fraction", qber_sample_fraction, "in (0, 1)")
    if not (0 < epsilon_sec < 1):
        raise ParameterError("epsilon_sec", epsilon_sec, "in (0, 1)")
    if not (0 < qber_threshold < 0.5):
        raise ParameterError("qber_threshold", qber_threshold, "in (0, 0.5)")
    if isinstance(frame_bits, bool) or not isinstance(frame_bits, int) or frame_bits < 1:
        raise ParameterError("frame_bits", frame_bits, "an integer >= 1")
    rng = as_generator(seed)
    n = a.size
    info: dict[str, float] = {
        "n_sifted": n,
        "n_sample": 0,
        "qber": math.nan,
        "phase_error": math.nan,
        "n_reconciled": 0,
        "leaked_ec": 0,
        "frames": 0,
        "frames_failed": 0,
    }

    def aborted(reason: str) -> DistillResult:
        return DistillResult(
            alice_key=_EMPTY,
            bob_key=_EMPTY,
            final_length=0,
            aborted=True,
            reason=reason,
            **info,  # type: ignore[arg-type]
        )

    # 1. Parameter estimation on a disclosed random sample.
    n_sample = round(qber_sample_fraction * n)
    if n_sample < 1 or n - n_sample < 1:
        return aborted(f"too few sifted bits ({n}) to sample the QBER and keep a key")
    sample = np.zeros(n, dtype=bool)
    sample[rng.choice(n, size=n_sample, replace=False)] = True
    qber = float(np.count_nonzero(a[sample] != b[sample])) / n_sample
    info.update(n_sample=n_sample, qber=qber)
    a_key, b_key = a[~sample], b[~sample]
    n_key = a_key.size
    if qber > qber_threshold:
        return aborted(
            f"QBER {qber:.4f} on {n_sample} sampled bits exceeds the threshold "
            f"{qber_threshold} (eavesdropping or a faulty channel)"
        )
    eps_half = epsilon_sec / 2
    e_ph = phase_error_upper_bound(qber, n_key, n_sample, eps_half)
    info.update(phase_error=e_ph)
    if final_key_length(n_key, e_ph, 0, eps_half) == 0:
        return aborted(
            f"no secret key: {n_key} key bits with phase error <= {e_ph:.4f} leave nothing "
            "after the finite-size terms, even before error correction"
        )

    # 2. Error correction and verification, frame by frame; failed frames are dropped.
    n_frames = -(-n_key // frame_bits)
    bounds = np.linspace(0, n_key, n_frames + 1).round().astype(np.int64)
    frame_seeds = rng.integers(2**63, size=n_frames)
    kept_a: list[NDArray[np.uint8]] = []
    kept_b: list[NDArray[np.uint8]] = []
    leaked = 0
    for i in range(n_frames):
        lo, hi = int(bounds[i]), int(bounds[i + 1])
        res = reconcile(
            a_key[lo:hi],
            b_key[lo:hi],
            min(qber, 0.49),
            seed=int(frame_seeds[i]),
            passes=passes,
            tag_bits=tag_bits,
        )
        if res.verified:
            kept_a.append(a_key[lo:hi])
            kept_b.append(res.key)
            leaked += res.leaked_bits
    rec_a = np.concatenate(kept_a) if kept_a else _EMPTY
    rec_b = np.concatenate(kept_b) if kept_b else _EMPTY
    info.update(
        n_reconciled=rec_a.size,
        leaked_ec=leaked,
        frames=n_frames,
        frames_failed=n_frames - len(kept_a),
    )

    # 3. Privacy amplification.
    length = final_key_length(rec_a.size, e_ph, leaked, eps_half)
    if length == 0:
        return aborted(
            f"no secret key: {rec_a.size} reconciled bits, {leaked} disclosed, phase error "
            f"<= {e_ph:.4f}"
        )
    final = toeplitz_hash(np.stack([rec_a, rec_b]), length, seed=int(rng.integers(2**63)))
    return DistillResult(
        alice_key=_frozen(final[0]),
        bob_key=_frozen(final[1]),
        final_length=length,
        aborted=False,
        **info,  # type: ignore[arg-type]
    )


def simulate_and_distill(
    system: QKDSystem,
    distance_km: float,
    n_pulses: int,
    *,
    seed: Seed,
    eve_fraction: float = 0.0,
    qber_sample_fraction: float = 0.1,
    epsilon_sec: float = 1e-10,
) -> DistillResult:
    """Simulate ``n_pulses`` BB84 pulses, sift, keep the signal bits and distill them.

    Parameters
    ----------
    system : QKDSystem
        The link's QKD system.
    distance_km : float
        Fibre length.
    n_pulses : int
        Pulses Alice sends.
    seed : int, SeedSequence or Generator
        Randomness for the simulation and the post-processing (independent streams).
    eve_fraction : float
        Fraction of pulses an intercept-resend eavesdropper attacks, in [0, 1].
    qber_sample_fraction, epsilon_sec : float
        Passed to :func:`distill`.

    Examples
    --------
    >>> from qkd.params import get_preset
    >>> res = simulate_and_distill(get_preset("toshiba-2018"), 10.0, 1_000_000, seed=1)
    >>> res.aborted, res.final_length > 10_000
    (False, True)
    """
    rng = as_generator(seed)
    sim_seed, post_seed = (int(s) for s in rng.integers(2**63, size=2))
    det = simulate(system, distance_km, n_pulses, seed=sim_seed, eve_fraction=eve_fraction)
    key = sift(det)
    signal = key.intensity == 0  # decoy and vacuum bits are disclosed, not kept
    return distill(
        key.alice[signal],
        key.bob[signal],
        qber_sample_fraction=qber_sample_fraction,
        epsilon_sec=epsilon_sec,
        seed=post_seed,
    )


def generate_key(
    system: QKDSystem,
    distance_km: float,
    n_pulses: int,
    *,
    seed: Seed,
    eve_fraction: float = 0.0,
) -> NDArray[np.uint8]:
    """Final secret key bits of one BB84 link run (empty when the protocol aborts).

    Runs :func:`simulate_and_distill` and returns Alice's final key (Bob's is equal). This
    is what the network layer's bit-exact mode puts in a link's key pool.

    Examples
    --------
    >>> from qkd.params import get_preset
    >>> key = generate_key(get_preset("toshiba-2018"), 10.0, 1_000_000, seed=2)
    >>> key.dtype, key.size > 10_000
    (dtype('uint8'), True)
    """
    res = simulate_and_distill(system, distance_km, n_pulses, seed=seed, eve_fraction=eve_fraction)
    return res.alice_key
