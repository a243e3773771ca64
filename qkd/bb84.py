"""Vectorized BB84 prepare-and-measure simulation with weak coherent pulses and decoys.

The model is the one behind the key-rate formulas of Ma, Qi, Zhao & Lo (PRA 72, 012326,
2005), simulated pulse by pulse rather than averaged:

* **Source.** Each pulse picks an intensity among ``(mu, *decoys)`` of ``system.source``
  with the given probabilities and carries a Poissonian number of photons ``n``.
* **Bases.** Alice and Bob each pick the Z basis with probability ``p_Z`` and X otherwise,
  where ``p_Z**2 + (1 - p_Z)**2 = system.sifting`` (``q``). ``q = 1/2`` is standard BB84
  (``p_Z = 1/2``); ``q > 1/2`` is the efficient, biased-basis BB84 of Lo, Chau & Ardehali
  (J. Cryptology 18, 133, 2005), ``p_Z = (1 + sqrt(2q - 1)) / 2``. ``q < 1/2`` cannot be
  realised this way and is rejected.
* **Channel.** Every photon independently survives the fibre and Bob's optics and detector
  with probability ``eta = system.transmittance(L)`` (binomial thinning, exact). The number
  of arriving photons is then Poissonian with mean ``eta * mu``.
* **Misalignment.** Each arriving photon measured in the basis it was prepared in goes to the
  wrong detector with probability ``e_d`` (independently); in the other basis it goes to
  either detector with probability 1/2.
* **Background.** Each of Bob's two detectors fires spuriously with probability
  ``p_d = 1 - sqrt(1 - Y0)`` per gate, so that a pulse without photons clicks with
  probability ``Y0`` and gives a random bit (Ma et al.'s ``Y0`` and ``e_0 = 1/2``).
* **Double clicks** (both detectors fire) are assigned a uniformly random bit, the standard
  squashing rule, and flagged in :attr:`Detections.double_click`.
* **Intercept-resend eavesdropper.** On each pulse independently with probability
  ``eve_fraction``, Eve, sitting at Alice's output, measures the whole pulse with a perfect
  detector in a uniformly random basis. If the pulse was empty she learns nothing and sends
  nothing; otherwise she gets Alice's bit when her basis matches and a random bit when not
  (multi-photon double clicks squashed to a random bit), and she resends one photon prepared
  in her basis and result, which then suffers the channel loss ``eta`` and misalignment. She
  knows a sifted bit exactly when her basis matched Alice's (:attr:`SiftedKey.eve_known`).

With these rules the gain and error rate per intensity agree with Ma et al.'s
``Q = Y0 + 1 - exp(-eta mu)`` and ``E Q = Y0/2 + e_d (1 - exp(-eta mu))`` up to terms of
order ``Y0 * eta * mu`` (coincident background and signal clicks) and ``(eta mu)**2 e_d``
(three or more photons splitting over both detectors); both are far below sampling error at
practical sizes.

How it is vectorized
--------------------
Pulses are processed in chunks of ``chunk_size`` (bounded memory for any ``n_pulses``). Each
pulse draws **one** uniform number ``u``; the interval ``[0, 1)`` is partitioned into cells,
one per joint outcome (intensity, Eve acted, Eve got a result, a photon reached Bob), with
the cells in which a photon reaches Bob placed first. Inverse-transform sampling of that
categorical outcome is exact, and costs one comparison per pulse to find the pulses with an
arrival plus a few comparisons to count pulses per intensity. Background clicks are drawn as
Bernoulli processes from geometric gaps (cost proportional to their number). Everything else
(bits, bases, Eve's choices, photon numbers of detected pulses, detector outcomes) is drawn
only for detected pulses: it is independent of whether a pulse is detected, so this is the
same joint distribution as drawing it for every pulse. Results depend on ``seed`` and
``chunk_size``; the same pair gives the same numbers.

References
----------
.. [1] X. Ma, B. Qi, Y. Zhao, H.-K. Lo, "Practical decoy state for quantum key
   distribution", Phys. Rev. A 72, 012326 (2005).
.. [2] H.-K. Lo, H. F. Chau, M. Ardehali, "Efficient quantum key distribution scheme and a
   proof of its unconditional security", J. Cryptology 18, 133 (2005).
.. [3] N. Lütkenhaus, "Security against individual attacks for realistic quantum key
   distribution", Phys. Rev. A 61, 052304 (2000) (double clicks assigned a random bit).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.special import gammaln

from qkd.errors import ParameterError
from qkd.params import QKDSystem

__all__ = [
    "Detections",
    "IntensityStats",
    "QberEstimate",
    "SeedLike",
    "SiftedKey",
    "as_generator",
    "basis_bias",
    "estimate_qber",
    "gains_and_errors",
    "sift",
    "simulate",
]

SeedLike = int | np.random.SeedSequence | np.random.Generator
"""What stochastic functions accept as ``seed``."""

U8 = NDArray[np.uint8]
Bools = NDArray[np.bool_]


def as_generator(seed: SeedLike, name: str = "seed") -> np.random.Generator:
    """Return a numpy ``Generator`` for ``seed`` (a Generator is returned as is).

    Examples
    --------
    >>> float(as_generator(7).random()) == float(as_generator(7).random())
    True
    """
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, np.random.SeedSequence):
        return np.random.default_rng(seed)
    if isinstance(seed, numbers.Integral) and not isinstance(seed, bool) and seed >= 0:
        return np.random.default_rng(int(seed))
    raise ParameterError(name, seed, "an int >= 0, a numpy SeedSequence or a numpy Generator")


def basis_bias(sifting: float) -> float:
    """Probability ``p_Z`` of the Z basis for both parties, given the sifting factor ``q``.

    Solves ``p_Z**2 + (1 - p_Z)**2 = q`` with ``p_Z >= 1/2``.

    Examples
    --------
    >>> basis_bias(0.5)
    0.5
    >>> round(basis_bias(0.82), 3)
    0.9
    """
    if not (isinstance(sifting, numbers.Real) and 0.5 <= sifting <= 1):
        raise ParameterError(
            "system.sifting", sifting, "in [0.5, 1] for the BB84 simulation (p_Z^2 + p_X^2 = q)"
        )
    return (1.0 + math.sqrt(2.0 * float(sifting) - 1.0)) / 2.0


def _frozen(a: NDArray) -> NDArray:
    a.flags.writeable = False
    return a


@dataclass(frozen=True, eq=False)
class Detections:
    """Bob's detections and what Alice (and Eve) did on those pulses.

    Per-detection arrays (one entry per pulse on which at least one of Bob's detectors
    fired, in pulse order; bases are 0 for Z and 1 for X) and whole-run counts.

    Attributes
    ----------
    pulse_index : ndarray of int64
        Index of the detected pulse in the run, increasing.
    alice_bit, alice_basis, bob_bit, bob_basis : ndarray of uint8
        The parties' bits and bases.
    intensity : ndarray of uint8
        Index into :attr:`intensities` of the pulse.
    double_click : ndarray of bool
        Both detectors fired; ``bob_bit`` was then drawn at random.
    eve_intercepted : ndarray of bool
        Eve measured a non-empty pulse and resent a photon.
    eve_basis, eve_bit : ndarray of uint8
        Eve's basis and result (0 where she did not intercept).
    intensities : tuple of float
        Mean photon numbers, signal first: ``(mu, *decoys)``.
    n_pulses : int
        Pulses sent.
    pulses_per_intensity : tuple of int
        Pulses sent at each intensity (sums to ``n_pulses``).
    n_eve_pulses : int
        Pulses Eve acted on (empty ones included).
    n_eve_results : int
        Pulses on which Eve obtained a measurement result (non-empty pulses she acted on),
        whether or not Bob detected them.
    """

    pulse_index: NDArray[np.int64]
    alice_bit: U8
    alice_basis: U8
    bob_bit: U8
    bob_basis: U8
    intensity: U8
    double_click: Bools
    eve_intercepted: Bools
    eve_basis: U8
    eve_bit: U8
    intensities: tuple[float, ...]
    n_pulses: int
    pulses_per_intensity: tuple[int, ...]
    n_eve_pulses: int
    n_eve_results: int

    @property
    def n_detected(self) -> int:
        """Number of detected pulses."""
        return int(self.pulse_index.size)


@dataclass(frozen=True, eq=False)
class SiftedKey:
    """Bits kept after basis sifting (Alice's and Bob's bases agreed).

    Attributes
    ----------
    alice, bob : ndarray of uint8
        The two raw keys (they differ where there are errors).
    basis : ndarray of uint8
        The common basis of each bit (0 = Z, 1 = X).
    intensity : ndarray of uint8
        Intensity index of the pulse that carried each bit.
    eve_known : ndarray of bool
        Eve knows the bit exactly (she intercepted in Alice's basis).
    intensities : tuple of float
        Mean photon numbers the intensity indices refer to.
    """

    alice: U8
    bob: U8
    basis: U8
    intensity: U8
    eve_known: Bools
    intensities: tuple[float, ...]

    def __len__(self) -> int:
        return int(self.alice.size)

    def select(self, which: NDArray[np.bool_] | NDArray[np.intp]) -> SiftedKey:
        """Return the bits picked by a boolean mask or an index array.

        Examples
        --------
        >>> from qkd.params import get_preset
        >>> key = sift(simulate(get_preset("gys-2004"), 0.0, 100_000, seed=1))
        >>> signal = key.select(key.intensity == 0)
        >>> bool(np.all(signal.intensity == 0))
        True
        """
        return SiftedKey(
            alice=_frozen(self.alice[which]),
            bob=_frozen(self.bob[which]),
            basis=_frozen(self.basis[which]),
            intensity=_frozen(self.intensity[which]),
            eve_known=_frozen(self.eve_known[which]),
            intensities=self.intensities,
        )

    @property
    def n_errors(self) -> int:
        """True number of positions where Alice's and Bob's bits differ (simulation only)."""
        return int(np.count_nonzero(self.alice != self.bob))

    @property
    def error_rate(self) -> float:
        """True bit error rate (``nan`` for an empty key); Alice and Bob must estimate it."""
        return self.n_errors / len(self) if len(self) else math.nan

    @property
    def n_eve_known(self) -> int:
        """Number of bits Eve knows exactly."""
        return int(np.count_nonzero(self.eve_known))


@dataclass(frozen=True, eq=False)
class QberEstimate:
    """QBER estimated on a disclosed random sample of a sifted key.

    Attributes
    ----------
    estimate : float
        Errors / sample size (``nan`` for an empty sample).
    n_sample, n_errors : int
        Sample size and errors found in it.
    by_basis : tuple of float
        ``(E_Z, E_X)``: the estimate restricted to sampled bits of each basis (``nan`` when
        the sample has none of that basis); ``E_X`` bounds the phase error of Z-basis bits.
    remaining : SiftedKey
        The sifted key without the disclosed sample, in the original order.
    """

    estimate: float
    n_sample: int
    n_errors: int
    by_basis: tuple[float, float]
    remaining: SiftedKey

    @property
    def std_error(self) -> float:
        """Binomial standard error ``sqrt(E (1 - E) / n)`` of :attr:`estimate`."""
        if self.n_sample == 0:
            return math.nan
        e = self.estimate
        return math.sqrt(e * (1.0 - e) / self.n_sample)


@dataclass(frozen=True, eq=False)
class IntensityStats:
    """Observed counts per intensity, for decoy-state analysis.

    Attributes
    ----------
    intensities : tuple of float
        Mean photon numbers, signal first.
    n_pulses, n_detected, n_sifted, n_errors : ndarray of int64
        Pulses sent, detections, sifted detections and sifted errors at each intensity.
    """

    intensities: tuple[float, ...]
    n_pulses: NDArray[np.int64]
    n_detected: NDArray[np.int64]
    n_sifted: NDArray[np.int64]
    n_errors: NDArray[np.int64]

    @property
    def gain(self) -> NDArray[np.float64]:
        """Observed gain ``Q_k``: detections per pulse sent (``nan`` where none were sent)."""
        return _ratio(self.n_detected, self.n_pulses)

    @property
    def qber(self) -> NDArray[np.float64]:
        """Observed QBER ``E_k`` over all sifted bits of each intensity (``nan`` if none)."""
        return _ratio(self.n_errors, self.n_sifted)


def _ratio(num: NDArray[np.int64], den: NDArray[np.int64]) -> NDArray[np.float64]:
    out = np.full(num.shape, np.nan)
    np.divide(num, den, out=out, where=den > 0)
    return out


# --------------------------------------------------------------------------- the pulse model


@dataclass(frozen=True)
class _Cells:
    """Partition of [0, 1) into joint per-pulse outcomes (cells of non-zero width only)."""

    upper: NDArray[np.float64]  # upper bound of each cell, increasing; last is +inf
    intensity: U8
    eve_result: Bools  # Eve measured a non-empty pulse
    eve_acted: Bools
    arrival: Bools  # at least one photon reached Bob
    n_arrival: int  # the first n_arrival cells are the arrival cells

    def locate(self, u: NDArray[np.float64]) -> NDArray[np.intp]:
        return np.searchsorted(self.upper, u, side="right")


def _cells(probs: Sequence[float], mus: Sequence[float], eta: float, eve: float) -> _Cells:
    arrival: list[tuple[float, int, bool, bool]] = []
    empty: list[tuple[float, int, bool, bool]] = []
    for k, (p, mu) in enumerate(zip(probs, mus, strict=True)):
        p_emit = -math.expm1(-mu)  # n >= 1
        p_arrive = -math.expm1(-eta * mu)  # Poisson(eta mu) >= 1
        # (width, intensity, eve acted, eve got a result)
        arrival.append((p * (1 - eve) * p_arrive, k, False, False))
        arrival.append((p * eve * p_emit * eta, k, True, True))
        empty.append((p * (1 - eve) * (1 - p_arrive), k, False, False))
        empty.append((p * eve * p_emit * (1 - eta), k, True, True))
        empty.append((p * eve * (1 - p_emit), k, True, False))
    arrival = [c for c in arrival if c[0] > 0]
    empty = [c for c in empty if c[0] > 0]
    rows = arrival + empty
    upper = np.cumsum([c[0] for c in rows])
    upper[-1] = np.inf  # absorb rounding: every u in [0, 1) falls in some cell
    return _Cells(
        upper=upper,
        intensity=np.array([c[1] for c in rows], dtype=np.uint8),
        eve_acted=np.array([c[2] for c in rows], dtype=bool),
        eve_result=np.array([c[3] for c in rows], dtype=bool),
        arrival=np.arange(len(rows)) < len(arrival),
        n_arrival=len(arrival),
    )


def _bernoulli_positions(rng: np.random.Generator, n: int, p: float) -> NDArray[np.int64]:
    """Sorted indices in ``range(n)`` of successes of ``n`` Bernoulli(p) trials."""
    if p <= 0 or n == 0:
        return np.empty(0, dtype=np.int64)
    if p > 0.02:
        return np.flatnonzero(rng.random(n) < p).astype(np.int64)
    mean = n * p
    parts: list[NDArray[np.int64]] = []
    last = -1
    while last < n:  # geometric gaps between successes of a Bernoulli process
        gaps = rng.geometric(p, size=int(mean + 6 * math.sqrt(mean) + 16))
        pos = last + np.cumsum(gaps, dtype=np.int64)
        parts.append(pos)
        last = int(pos[-1])
    out = np.concatenate(parts)
    return out[out < n]


def _zero_truncated_poisson(rng: np.random.Generator, lam: float, size: int) -> NDArray[np.int64]:
    """Poisson(lam) samples conditioned on being >= 1 (inverse CDF)."""
    j = np.arange(1, int(lam + 12 * math.sqrt(lam) + 40), dtype=np.float64)
    log_pmf = j * math.log(lam) - lam - gammaln(j + 1) - math.log(-math.expm1(-lam))
    cdf = np.cumsum(np.exp(log_pmf))
    return 1 + np.searchsorted(cdf, rng.random(size) * cdf[-1], side="right").astype(np.int64)


def _in_sorted(values: NDArray[np.int64], sorted_set: NDArray[np.int64]) -> Bools:
    if sorted_set.size == 0:
        return np.zeros(values.shape, dtype=bool)
    i = np.minimum(np.searchsorted(sorted_set, values), sorted_set.size - 1)
    return sorted_set[i] == values


@dataclass(frozen=True)
class _Model:
    cells: _Cells
    mus: tuple[float, ...]
    eta: float
    e_d: float
    p_dark: float  # per detector
    p_z: float


def _detect_chunk(
    model: _Model, rng: np.random.Generator, u: NDArray[np.float64]
) -> tuple[dict[str, NDArray], NDArray[np.int64]]:
    """Simulate one chunk of pulses; return per-detection arrays and per-cell pulse counts.

    Kept as one function: one vectorized pass over a chunk of pulses (detection, dark
    counts, double clicks).
    """
    cells = model.cells
    m = u.size
    rng.random(out=u)
    # Cells with an arrival come first and are rare: find those pulses with one comparison.
    n_arr = cells.n_arrival
    arrivals = np.flatnonzero(u < cells.upper[n_arr - 1]) if n_arr else np.empty(0, np.int64)
    dark = (
        _bernoulli_positions(rng, m, model.p_dark),
        _bernoulli_positions(rng, m, model.p_dark),
    )
    pos = np.sort(np.concatenate([arrivals, dark[0], dark[1]]))
    first = np.ones(pos.size, dtype=bool)
    first[1:] = pos[1:] != pos[:-1]
    pos = pos[first]  # a pulse with an arrival may also have background clicks
    cell = cells.locate(u[pos])

    # Pulses per cell: arrival cells counted on the detected pulses, which include them all;
    # the others from one comparison per pulse and boundary (pulses below each boundary).
    counts = np.zeros(cells.upper.size, dtype=np.int64)
    counts[:n_arr] = np.bincount(cell[cell < n_arr], minlength=n_arr)
    if n_arr < cells.upper.size:
        below = [np.count_nonzero(u < b) for b in cells.upper[n_arr:-1]]
        counts[n_arr:] = np.diff([arrivals.size, *below, m])

    n = pos.size
    k = cells.intensity[cell]
    eve = cells.eve_result[cell]
    arrival = cells.arrival[cell]

    alice_bit = rng.integers(0, 2, n, dtype=np.uint8)
    alice_basis = (rng.random(n) >= model.p_z).astype(np.uint8)
    bob_basis = (rng.random(n) >= model.p_z).astype(np.uint8)
    eve_basis = rng.integers(0, 2, n, dtype=np.uint8) & eve
    eve_guess = rng.integers(0, 2, n, dtype=np.uint8)
    eve_bit = np.where(eve_basis == alice_basis, alice_bit, eve_guess) & eve

    # The state that travels to Bob: Alice's, or the photon Eve resent.
    prep_basis = np.where(eve, eve_basis, alice_basis)
    prep_bit = np.where(eve, eve_bit, alice_bit)
    photons = arrival.astype(np.int64)  # Eve resends one photon
    for j, mu in enumerate(model.mus):
        sel = np.flatnonzero(arrival & ~eve & (k == j))
        if sel.size:
            photons[sel] = _zero_truncated_poisson(rng, model.eta * mu, sel.size)
    p_wrong = np.where(prep_basis == bob_basis, model.e_d, 0.5)
    wrong = rng.binomial(photons, p_wrong)
    hit_prep = photons > wrong  # a photon in the detector of the prepared bit
    hit_other = wrong > 0
    prep_one = prep_bit.astype(bool)
    click1 = np.where(prep_one, hit_prep, hit_other) | _in_sorted(pos, dark[1])
    click0 = np.where(prep_one, hit_other, hit_prep) | _in_sorted(pos, dark[0])
    double = click0 & click1
    bob_bit = np.where(double, rng.integers(0, 2, n, dtype=np.uint8), click1).astype(np.uint8)

    out = {
        "pulse_index": pos,
        "alice_bit": alice_bit,
        "alice_basis": alice_basis,
        "bob_bit": bob_bit,
        "bob_basis": bob_basis,
        "intensity": k,
        "double_click": double,
        "eve_intercepted": eve,
        "eve_basis": eve_basis,
        "eve_bit": eve_bit,
    }
    return out, counts


def _intensity_probs(
    intensity_probs: Sequence[float] | None, n_intensities: int
) -> tuple[float, ...]:
    if intensity_probs is None:
        if n_intensities == 1:
            return (1.0,)
        decoy = min(0.1, 0.5 / (n_intensities - 1))
        return (1.0 - decoy * (n_intensities - 1),) + (decoy,) * (n_intensities - 1)
    allowed = f"{n_intensities} probabilities (signal, then decoys) >= 0 summing to 1"
    try:
        probs = tuple(float(p) for p in intensity_probs)
    except (TypeError, ValueError):
        raise ParameterError("intensity_probs", intensity_probs, allowed) from None
    if (
        len(probs) != n_intensities
        or not all(math.isfinite(p) and p >= 0 for p in probs)
        or abs(math.fsum(probs) - 1.0) > 1e-9
    ):
        raise ParameterError("intensity_probs", probs, allowed)
    return probs


def _check_count(name: str, value: object, minimum: int) -> int:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < minimum:
        raise ParameterError(name, value, f"an int >= {minimum}")
    return int(value)


def simulate(
    system: QKDSystem,
    distance_km: float,
    n_pulses: int,
    *,
    seed: SeedLike,
    intensity_probs: Sequence[float] | None = None,
    eve_fraction: float = 0.0,
    chunk_size: int = 1 << 20,
) -> Detections:
    """Simulate ``n_pulses`` BB84 pulses over ``distance_km`` of fibre.

    The model is described in the module docstring.

    Parameters
    ----------
    system : QKDSystem
        Source intensities, detector, misalignment and sifting factor (basis bias).
    distance_km : float
        Fibre length, ``>= 0``.
    n_pulses : int
        Number of pulses Alice sends, ``>= 0``.
    seed : int, SeedSequence or Generator
        Randomness; the same seed (and ``chunk_size``) gives the same result.
    intensity_probs : sequence of float, optional
        Probability of each intensity ``(mu, *decoys)``. Default: 0.1 for each decoy (less
        if there are more than five) and the rest for the signal.
    eve_fraction : float
        Probability that Eve intercepts and resends a pulse, in [0, 1].
    chunk_size : int
        Pulses simulated per vectorized step (memory is about 10 bytes per pulse of chunk).

    Returns
    -------
    Detections

    Raises
    ------
    ParameterError
        For a negative ``n_pulses`` or ``distance_km``, ``eve_fraction`` outside [0, 1],
        intensity probabilities of the wrong length or not summing to 1, a non-positive
        ``chunk_size``, a bad seed, or ``system.sifting < 1/2``.

    References
    ----------
    .. [1] X. Ma, B. Qi, Y. Zhao, H.-K. Lo, Phys. Rev. A 72, 012326 (2005).

    Examples
    --------
    >>> from qkd.params import get_preset
    >>> det = simulate(get_preset("gys-2004"), 10.0, 1_000_000, seed=1)
    >>> det.n_pulses, sum(det.pulses_per_intensity)
    (1000000, 1000000)
    >>> det.pulses_per_intensity  # signal, decoy, vacuum with probabilities 0.8, 0.1, 0.1
    (799901, 100223, 99876)
    """
    n_pulses = _check_count("n_pulses", n_pulses, 0)
    chunk_size = _check_count("chunk_size", chunk_size, 1)
    if not (isinstance(distance_km, numbers.Real) and 0 <= distance_km < math.inf):
        raise ParameterError("distance_km", distance_km, ">= 0 and finite")
    if not (isinstance(eve_fraction, numbers.Real) and 0 <= eve_fraction <= 1):
        raise ParameterError("eve_fraction", eve_fraction, "in [0, 1]")
    mus = (system.source.mu, *system.source.decoys)
    probs = _intensity_probs(intensity_probs, len(mus))
    rng = as_generator(seed)
    eta = float(system.transmittance(float(distance_km)))
    model = _Model(
        cells=_cells(probs, mus, eta, float(eve_fraction)),
        mus=mus,
        eta=eta,
        e_d=system.misalignment,
        p_dark=-math.expm1(0.5 * math.log1p(-system.detector.dark_count_prob)),
        p_z=basis_bias(system.sifting),
    )

    buf = np.empty(min(chunk_size, n_pulses), dtype=np.float64)
    parts: list[dict[str, NDArray]] = []
    counts = np.zeros(model.cells.upper.size, dtype=np.int64)
    for start in range(0, n_pulses, chunk_size):
        m = min(chunk_size, n_pulses - start)
        found, chunk_counts = _detect_chunk(model, rng, buf[:m])
        found["pulse_index"] = found["pulse_index"] + start
        parts.append(found)
        counts += chunk_counts

    cells = model.cells
    per_k = np.bincount(cells.intensity, weights=counts, minlength=len(mus))
    fields = {
        name: _frozen(np.concatenate([p[name] for p in parts]) if parts else np.empty(0, dtype))
        for name, dtype in _FIELDS.items()
    }
    return Detections(
        **fields,
        intensities=tuple(float(x) for x in mus),
        n_pulses=n_pulses,
        pulses_per_intensity=tuple(int(c) for c in per_k),
        n_eve_pulses=int(counts[cells.eve_acted].sum()),
        n_eve_results=int(counts[cells.eve_result].sum()),
    )


_FIELDS: dict[str, type] = {
    "pulse_index": np.int64,
    "alice_bit": np.uint8,
    "alice_basis": np.uint8,
    "bob_bit": np.uint8,
    "bob_basis": np.uint8,
    "intensity": np.uint8,
    "double_click": np.bool_,
    "eve_intercepted": np.bool_,
    "eve_basis": np.uint8,
    "eve_bit": np.uint8,
}


# --------------------------------------------------------------------------- post-processing


def sift(det: Detections) -> SiftedKey:
    """Keep the detections in which Alice's and Bob's bases agree.

    Examples
    --------
    >>> from qkd.params import get_preset
    >>> det = simulate(get_preset("gys-2004"), 0.0, 100_000, seed=2)
    >>> key = sift(det)
    >>> len(key) == int(np.count_nonzero(det.alice_basis == det.bob_basis))
    True
    """
    keep = det.alice_basis == det.bob_basis
    eve_known = det.eve_intercepted & (det.eve_basis == det.alice_basis)
    return SiftedKey(
        alice=_frozen(det.alice_bit[keep]),
        bob=_frozen(det.bob_bit[keep]),
        basis=_frozen(det.alice_basis[keep]),
        intensity=_frozen(det.intensity[keep]),
        eve_known=_frozen(eve_known[keep]),
        intensities=det.intensities,
    )


def estimate_qber(sifted: SiftedKey, sample_fraction: float, *, seed: SeedLike) -> QberEstimate:
    """Estimate the QBER on a random sample, which is disclosed and removed from the key.

    Parameters
    ----------
    sifted : SiftedKey
        The sifted key.
    sample_fraction : float
        Fraction of the bits to disclose, in (0, 1]; the sample has
        ``round(sample_fraction * len(sifted))`` bits drawn without replacement.
    seed : int, SeedSequence or Generator
        Chooses the sample.

    Returns
    -------
    QberEstimate

    Examples
    --------
    >>> from qkd.params import get_preset
    >>> key = sift(simulate(get_preset("gys-2004"), 0.0, 1_000_000, seed=3))
    >>> est = estimate_qber(key, 0.5, seed=4)
    >>> est.n_sample + len(est.remaining) == len(key)
    True
    >>> abs(est.estimate - 0.033) < 5 * est.std_error  # e_d = 3.3% dominates at 0 km
    True
    """
    if not (isinstance(sample_fraction, numbers.Real) and 0 < sample_fraction <= 1):
        raise ParameterError("sample_fraction", sample_fraction, "in (0, 1]")
    rng = as_generator(seed)
    n = len(sifted)
    size = round(float(sample_fraction) * n)
    sample = np.zeros(n, dtype=bool)
    sample[rng.choice(n, size=size, replace=False)] = True
    errors = sifted.alice[sample] != sifted.bob[sample]
    basis = sifted.basis[sample]
    by_basis = tuple(
        float(np.mean(errors[basis == b])) if np.any(basis == b) else math.nan for b in (0, 1)
    )
    n_errors = int(np.count_nonzero(errors))
    return QberEstimate(
        estimate=n_errors / size if size else math.nan,
        n_sample=size,
        n_errors=n_errors,
        by_basis=(by_basis[0], by_basis[1]),
        remaining=sifted.select(~sample),
    )


def gains_and_errors(det: Detections) -> IntensityStats:
    """Observed gain and QBER per intensity (the inputs of a decoy-state analysis).

    The QBER of each intensity is counted over *all* its sifted bits (decoy bits are
    disclosed in full in a decoy protocol; for signal bits this is the true error rate).

    Examples
    --------
    >>> from qkd.params import get_preset
    >>> stats = gains_and_errors(simulate(get_preset("gys-2004"), 0.0, 1_000_000, seed=5))
    >>> [round(float(q), 3) for q in stats.gain]  # 1 - exp(-0.045 mu) for mu = 0.48, 0.05, 0
    [0.021, 0.002, 0.0]
    """
    n_k = len(det.intensities)
    keep = det.alice_basis == det.bob_basis
    wrong = keep & (det.alice_bit != det.bob_bit)
    return IntensityStats(
        intensities=det.intensities,
        n_pulses=np.asarray(det.pulses_per_intensity, dtype=np.int64),
        n_detected=np.bincount(det.intensity, minlength=n_k).astype(np.int64),
        n_sifted=np.bincount(det.intensity[keep], minlength=n_k).astype(np.int64),
        n_errors=np.bincount(det.intensity[wrong], minlength=n_k).astype(np.int64),
    )
