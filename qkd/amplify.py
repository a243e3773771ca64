"""Privacy amplification by Toeplitz hashing, and the finite-key length of the final key.

Alice and Bob hold the same reconciled key ``x`` of ``n`` bits. They agree publicly on a
random ``m x n`` Toeplitz matrix ``T`` over GF(2) (described by ``n + m - 1`` random bits,
drawn here from a shared seed) and both output ``y = T x mod 2``. Toeplitz matrices form a
two-universal family, so by the leftover hash lemma ``y`` is close to uniform and
independent of Eve's information when ``m`` is the length given by
:func:`final_key_length`.

The product ``T x`` is a linear convolution of the defining vector with ``x``; it is computed
with one real FFT in ``O((n + m) log(n + m))`` and rounded to integers before the
reduction mod 2. The sums are integers at most ``min(n, m)`` and the float64 round-off of an
FFT convolution of 0/1 vectors of length ``N`` is of the order of ``1e-16 * N * log2(N)``,
far below 1/2 for any key that fits in memory; every call checks that all results are
within 0.25 of an integer (:class:`~qkd.errors.QflError` otherwise), so a rounding failure
could never pass silently.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.fft
from numpy.typing import ArrayLike, NDArray

from qkd.errors import ParameterError, QflError
from qkd.rates import binary_entropy

__all__ = [
    "binary_entropy",
    "final_key_length",
    "phase_error_upper_bound",
    "toeplitz_hash",
    "toeplitz_matrix",
]

Seed = int | np.random.SeedSequence | np.random.Generator

_ROUNDING_TOLERANCE = 0.25


def _as_bits(bits: ArrayLike, name: str, *, max_ndim: int = 1) -> NDArray[np.uint8]:
    arr = np.asarray(bits)
    if not 1 <= arr.ndim <= max_ndim:
        allowed = "a 1-D array of bits" if max_ndim == 1 else "a 1-D or 2-D array of bits"
        raise ParameterError(name, f"array of shape {arr.shape}", allowed)
    if arr.size and (arr.dtype.kind not in "biu" or arr.min() < 0 or arr.max() > 1):
        raise ParameterError(name, f"array with values {np.unique(arr)[:4]}", "0/1 bits")
    return arr.astype(np.uint8, copy=False)


def _toeplitz_vector(n: int, out_len: int, seed: Seed) -> NDArray[np.uint8]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 2, size=n + out_len - 1, dtype=np.uint8)


def toeplitz_matrix(n: int, out_len: int, *, seed: Seed) -> NDArray[np.uint8]:
    """The dense ``out_len x n`` Toeplitz matrix that :func:`toeplitz_hash` applies.

    ``T[i, j] = t[i - j + n - 1]`` for the random defining vector ``t`` of length
    ``n + out_len - 1`` drawn from ``seed``. Meant for tests and small sizes: it takes
    ``O(n * out_len)`` memory.

    Examples
    --------
    >>> T = toeplitz_matrix(4, 3, seed=1)
    >>> T.shape
    (3, 4)
    >>> bool((T[1:, 1:] == T[:-1, :-1]).all())  # constant along diagonals
    True
    """
    _check_sizes(n, out_len)
    t = _toeplitz_vector(n, out_len, seed)
    i = np.arange(out_len)[:, None]
    j = np.arange(n)[None, :]
    return t[i - j + n - 1]


def _check_sizes(n: int, out_len: int) -> None:
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
        raise ParameterError("n", n, "an integer >= 0")
    if isinstance(out_len, bool) or not isinstance(out_len, int | np.integer) or out_len < 0:
        raise ParameterError("out_len", out_len, "an integer >= 0")


def toeplitz_hash(bits: ArrayLike, out_len: int, *, seed: Seed) -> NDArray[np.uint8]:
    """Hash ``bits`` to ``out_len`` bits with a seeded random Toeplitz matrix over GF(2).

    Computes ``T @ bits mod 2`` for the matrix of :func:`toeplitz_matrix` with the same
    ``seed``, in ``O(n log n)`` with an FFT convolution. Two parties holding equal keys and
    the same seed obtain the same output.

    Parameters
    ----------
    bits : array_like of 0/1
        The input key, 1-D of length ``n``; or 2-D of shape ``(keys, n)`` to hash several
        keys with the same matrix (one output row per key).
    out_len : int
        Number of output bits (``>= 0``; may exceed ``n``, though privacy amplification
        always shrinks).
    seed : int, SeedSequence or Generator
        Selects the Toeplitz matrix; public, shared by both parties.

    Returns
    -------
    numpy.ndarray of uint8
        ``out_len`` bits (shape ``(keys, out_len)`` for 2-D input).

    References
    ----------
    .. [1] H. Krawczyk, "LFSR-based hashing and authentication", CRYPTO '94, LNCS 839
       (1994) (Toeplitz matrices are universal hash functions).
    .. [2] M. Hayashi and T. Tsurumaru, "More efficient privacy amplification with less
       random seeds via dual universal hash function", IEEE Trans. Inf. Theory 62, 2213
       (2016).

    Examples
    --------
    >>> key = np.array([1, 0, 1, 1, 0, 0, 1, 0], dtype=np.uint8)
    >>> h = toeplitz_hash(key, 4, seed=7)
    >>> bool((h == toeplitz_matrix(8, 4, seed=7) @ key % 2).all())
    True
    """
    x = _as_bits(bits, "bits", max_ndim=2)
    n = x.shape[-1]
    _check_sizes(n, out_len)
    t = _toeplitz_vector(n, out_len, seed)
    if out_len == 0 or n == 0:
        return np.zeros((*x.shape[:-1], out_len), dtype=np.uint8)
    # y[i] = sum_j t[i - j + n - 1] x[j] = (t * x)[i + n - 1] for i < out_len. A circular
    # convolution of length N >= n + out_len - 1 has no wrap-around at those indices.
    size = scipy.fft.next_fast_len(n + out_len - 1, real=True)
    spec = scipy.fft.rfft(t.astype(np.float64), size) * scipy.fft.rfft(
        x.astype(np.float64), size, axis=-1
    )
    conv = scipy.fft.irfft(spec, size, axis=-1)[..., n - 1 : n - 1 + out_len]
    rounded = np.rint(conv)
    worst = float(np.max(np.abs(conv - rounded)))
    if worst > _ROUNDING_TOLERANCE:
        raise QflError(
            f"toeplitz_hash: FFT round-off {worst:.3g} too large for exact GF(2) arithmetic "
            f"at n={n}, out_len={out_len}; hash the key in smaller pieces"
        )
    return (rounded.astype(np.int64) & 1).astype(np.uint8)


def phase_error_upper_bound(qber: float, n_key: int, n_sample: int, epsilon: float) -> float:
    """Upper bound on the phase-error rate of the key from the error rate of a random sample.

    Alice and Bob compare a random sample of ``k = n_sample`` sifted bits and keep the other
    ``n = n_key`` as key. In BB84 with both bases used for the key and sample, the phase
    error rate of the key bits equals the bit error rate they would have shown in the other
    basis, which is what the sample measures. Sampling without replacement (a
    Serfling-type tail bound) gives, except with probability ``epsilon``,

    ``e_ph <= qber + mu``,  ``mu = sqrt((n + k) / (n k) * (k + 1) / k * ln(2 / epsilon))``,

    the deviation used by Tomamichel et al. (2012). The result is capped at 1/2.

    Parameters
    ----------
    qber : float
        Error rate observed on the sample, in [0, 1/2].
    n_key, n_sample : int
        Sizes of the key and of the sample (``>= 1``).
    epsilon : float
        Failure probability of the estimate, in (0, 1).

    References
    ----------
    .. [1] M. Tomamichel, C. C. W. Lim, N. Gisin and R. Renner, "Tight finite-key analysis
       for quantum cryptography", Nat. Commun. 3, 634 (2012).
    .. [2] R. J. Serfling, "Probability inequalities for the sum in sampling without
       replacement", Ann. Stat. 2, 39 (1974).

    Examples
    --------
    >>> round(phase_error_upper_bound(0.02, 900_000, 100_000, 1e-10), 4)
    0.0362
    """
    if not (0 <= qber <= 0.5):
        raise ParameterError("qber", qber, "in [0, 0.5]")
    if n_key < 1:
        raise ParameterError("n_key", n_key, ">= 1")
    if n_sample < 1:
        raise ParameterError("n_sample", n_sample, ">= 1")
    if not (0 < epsilon < 1):
        raise ParameterError("epsilon", epsilon, "in (0, 1)")
    n, k = float(n_key), float(n_sample)
    mu = math.sqrt((n + k) / (n * k) * (k + 1) / k * math.log(2 / epsilon))
    return min(0.5, qber + mu)


def final_key_length(n: int, phase_error: float, leaked_bits: int, epsilon_sec: float) -> int:
    """Secure length of the final key after privacy amplification (0 when none).

    ``l = floor(n (1 - h(e_ph)) - leak - log2(2 / eps_sec**2))``, clipped at 0,

    the finite-key bound of Tomamichel et al. (2012). ``leak`` counts every bit
    disclosed during error correction *including* the verification tag: their separate
    ``log2(1 / eps_cor)`` term is exactly the length of that tag, so the key is
    ``eps_cor``-correct with ``eps_cor = 2**-tag_bits``. The last term is the leftover-hash
    penalty ``2 log2(1/eps) + 1`` (Renner 2005, Tomamichel et al. 2011), a little more
    conservative than ``2 log2(1 / (2 eps))``.

    Parameters
    ----------
    n : int
        Length of the reconciled key (``>= 0``).
    phase_error : float
        Upper bound on the phase-error rate, e.g. from :func:`phase_error_upper_bound`.
    leaked_bits : int
        Bits disclosed by error correction and verification (``>= 0``).
    epsilon_sec : float
        Secrecy parameter in (0, 1).

    References
    ----------
    .. [1] M. Tomamichel, C. C. W. Lim, N. Gisin and R. Renner, Nat. Commun. 3, 634 (2012).
    .. [2] R. Renner, "Security of quantum key distribution", PhD thesis, ETH Zurich (2005).
    .. [3] M. Tomamichel, C. Schaffner, A. Smith and R. Renner, "Leftover hashing against
       quantum side information", IEEE Trans. Inf. Theory 57, 5524 (2011).

    Examples
    --------
    >>> final_key_length(1_000_000, 0.03, 220_000, 1e-10)
    585540
    >>> final_key_length(1000, 0.11, 600, 1e-10)
    0
    """
    if n < 0:
        raise ParameterError("n", n, ">= 0")
    if not (0 <= phase_error <= 0.5):
        raise ParameterError("phase_error", phase_error, "in [0, 0.5]")
    if leaked_bits < 0:
        raise ParameterError("leaked_bits", leaked_bits, ">= 0")
    if not (0 < epsilon_sec < 1):
        raise ParameterError("epsilon_sec", epsilon_sec, "in (0, 1)")
    h = float(binary_entropy(phase_error))
    length = n * (1.0 - h) - leaked_bits - math.log2(2.0 / epsilon_sec**2)
    return max(0, math.floor(length))
