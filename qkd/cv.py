"""Continuous-variable QKD: GG02 with Gaussian-modulated coherent states, vectorized over links.

Alice sends coherent states whose two quadratures are drawn from a centred Gaussian of
variance ``V_A`` (the modulation variance); Bob measures one quadrature (homodyne) or both
(heterodyne) and the key is distilled by **reverse reconciliation** (Bob's data is the
reference). Security against **collective attacks**, asymptotic, by the Holevo bound of a
Gaussian attack (optimal: Navascués et al. 2006, García-Patrón & Cerf 2006). Formulas of
Lodewyck et al. (2007) for homodyne and Fossier et al. (2009) for heterodyne detection.

Conventions
-----------
* Everything in **shot-noise units (SNU)**; ``V = V_A + 1``.
* **Rate per symbol** (``key_rate_per_symbol``) ``K = beta I_AB - chi_BE``, clipped at 0;
  ``key_rate_bps`` multiplies by ``symbol_rate_hz``. ``beta`` (reconciliation efficiency,
  in (0, 1]) multiplies Alice and Bob's mutual information only. No basis sifting (homodyne
  Bob announces his quadrature choice; both choices are kept), no pilot or frame overhead.
* Channel transmittance ``T = 10**(-alpha L / 10)``; ``excess_noise`` ``xi`` is referred to
  the channel input, so ``chi_line = 1/T - 1 + xi``.
* Detector: efficiency ``eta`` and electronic noise ``v_el`` (SNU). **Trusted** (default):
  both are Bob's, out of Eve's reach: ``chi_hom = (1 - eta + v_el) / eta``,
  ``chi_het = (2 - eta + 2 v_el) / eta`` and ``chi_tot = chi_line + chi_det / T``.
  **Untrusted**: the detector's loss and noise are given to Eve: a perfect detector behind a
  channel ``T' = eta T`` with excess noise ``xi' = xi + v_el / (eta T)``.
* ``I_AB = (m / 2) log2[(V + chi_tot) / (1 + chi_tot)]`` with ``m = 1`` (homodyne) or 2
  (heterodyne); ``chi_BE = G((l1-1)/2) + G((l2-1)/2) - G((l3-1)/2) - G((l4-1)/2)`` with
  ``G(x) = (x+1) log2(x+1) - x log2 x`` and the symplectic eigenvalues ``l1..l4`` of the
  papers.
* ``modulation_variance`` fixed, or ``None`` to optimise ``V_A`` per link (log-grid plus
  golden-section search over [0.05, 100] SNU).
* Reach: with trusted detector noise and little excess noise the rate falls like ``T``
  without ever reaching 0 (the formulas, checked against ``qosst-skr``, say so); rates
  below 1e-12 bit/symbol (or below the float64 resolution of the Holevo difference) are
  reported as 0, which then sets the maximum distance.

Only the asymptotic rate is implemented: the finite-size GG02 analyses (Leverrier et al.
2010; composable: Leverrier 2017, Pirandola 2021) need the block size and estimation
settings of a given system and were not implemented here.

Published values vs this module (``"jain-2022"`` preset; Jain et al. 2022, Nat. Commun.,
Table 1, as read from the published table: heterodyne with a local oscillator, 20.3 km and
4.6 dB, mean photon number 1.45 (``V_A = 2.9`` SNU), untrusted noise 0.005 photon-number
units at the channel output (``xi = 0.01 / T`` SNU at the input), 100 MHz, composable
finite-size secret key fraction 0.0471 bit/symbol): the asymptotic rate of this module at
that operating point, with every noise untrusted and ``beta = 0.95``, must lie above the
published finite-size fraction (asymptotic >= finite size); ``tests/qkd/test_cv.py`` asserts
it lies between 1 and 3 times it (2.7 here: the
finite-size and composable penalties of a 1e9-symbol block, the real detector and the unknown
``beta``). Numbers are cross-checked against the ``qosst-skr``
package (Piétri et al., QOSST) in the same test file.

References
----------
.. [GG02] F. Grosshans, P. Grangier, "Continuous variable quantum cryptography using coherent
   states", Phys. Rev. Lett. 88, 057902 (2002).
.. [Lod07] J. Lodewyck et al., "Quantum key distribution over 25 km with an all-fiber
   continuous-variable system", Phys. Rev. A 76, 042305 (2007).
.. [Fos09] S. Fossier, E. Diamanti, T. Debuisschert, R. Tualle-Brouri, P. Grangier,
   "Improvement of continuous-variable quantum key distribution systems by using optical
   preamplifiers", J. Phys. B 42, 114014 (2009).
.. [Jain22] N. Jain et al., "Practical continuous-variable quantum key distribution with
   composable security", Nat. Commun. 13, 4740 (2022).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from qkd.errors import ParameterError, UnknownNameError
from qkd.linkbase import check_number, clipped_rate_and_settings, lengths_km
from qkd.optimize import maximise_1d
from qkd.params import Fibre

__all__ = [
    "DETECTIONS",
    "PRESETS",
    "CVSystem",
    "CoherentDetector",
    "holevo_bound",
    "key_rate_and_variance",
    "key_rate_bps",
    "key_rate_per_symbol",
    "mutual_information",
]

FloatArray = NDArray[np.float64]

DETECTIONS: tuple[str, ...] = ("homodyne", "heterodyne")
"""Names accepted by ``CoherentDetector.detection``."""

_VA_BOUNDS = (0.05, 100.0)


@dataclass(frozen=True)
class CoherentDetector:
    """Bob's coherent receiver.

    Parameters
    ----------
    detection : str
        ``"homodyne"`` or ``"heterodyne"``.
    efficiency : float
        Quantum efficiency ``eta`` in (0, 1].
    electronic_noise : float
        ``v_el`` in SNU, ``>= 0``.
    trusted : bool
        Whether the detector's loss and noise are out of Eve's reach (default ``True``).
    """

    detection: str = "homodyne"
    efficiency: float = 1.0
    electronic_noise: float = 0.0
    trusted: bool = True

    def __post_init__(self) -> None:
        if self.detection not in DETECTIONS:
            raise UnknownNameError("detector.detection", self.detection, DETECTIONS)
        e = self.efficiency
        check_number("detector.efficiency", e, 0 < e <= 1, "in (0, 1]")
        v = self.electronic_noise
        check_number("detector.electronic_noise", v, v >= 0, ">= 0 (SNU)")
        if not isinstance(self.trusted, bool):
            raise ParameterError("detector.trusted", self.trusted, "true or false")


@dataclass(frozen=True)
class CVSystem:
    """A GG02 link: Gaussian-modulated coherent states, reverse reconciliation.

    Parameters
    ----------
    name : str
        A short name (the preset name for presets).
    fibre : Fibre
        The fibre.
    detector : CoherentDetector
        Bob's receiver.
    excess_noise : float
        ``xi``, channel excess noise referred to the channel input, SNU, ``>= 0``.
    beta : float
        Reconciliation efficiency in (0, 1].
    modulation_variance : float or None
        ``V_A`` in SNU (``> 0``), or ``None`` to optimise it per link.
    symbol_rate_hz : float
        Symbols per second (``> 0``).
    reference : str
        Where the numbers come from.

    Examples
    --------
    >>> s = PRESETS["jain-2022"]
    >>> s.detector.detection, s.modulation_variance
    ('heterodyne', 2.9)
    """

    name: str
    fibre: Fibre
    detector: CoherentDetector
    excess_noise: float
    beta: float
    symbol_rate_hz: float
    modulation_variance: float | None = None
    reference: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        x = self.excess_noise
        check_number("excess_noise", x, x >= 0, ">= 0 (SNU)")
        check_number("beta", self.beta, 0 < self.beta <= 1, "in (0, 1]")
        r = self.symbol_rate_hz
        check_number("symbol_rate_hz", r, r > 0, "> 0")
        v = self.modulation_variance
        if v is not None:
            check_number("modulation_variance", v, 0 < v <= 1e4, "in (0, 1e4] (SNU) or None")

    def replace(self, **changes: Any) -> CVSystem:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)


def _g(x: FloatArray) -> FloatArray:
    """``G(x) = (x+1) log2(x+1) - x log2 x``, with ``G(0) = 0`` and ``x`` clipped at 0."""
    x = np.maximum(x, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = (x + 1.0) * np.log2(x + 1.0) - np.where(
            x > 0, x * np.log2(np.where(x > 0, x, 1.0)), 0.0
        )
    return out


def _effective(
    det: CoherentDetector, t: FloatArray, xi: float
) -> tuple[FloatArray, FloatArray, float, float]:
    """``(T, xi, eta, v_el)`` as the trusted-detector formulas see them."""
    if det.trusted:
        return t, np.full_like(t, xi), det.efficiency, det.electronic_noise
    t_eff = det.efficiency * t
    with np.errstate(divide="ignore"):
        xi_eff = xi + det.electronic_noise / t_eff
    return t_eff, xi_eff, 1.0, 0.0


def _chi_det(detection: str, eta: float, v_el: float) -> float:
    if detection == "homodyne":
        return (1.0 - eta + v_el) / eta
    return (2.0 - eta + 2.0 * v_el) / eta


def _iab(detection: str, v: FloatArray, chi_tot: FloatArray) -> FloatArray:
    m = 1.0 if detection == "homodyne" else 2.0
    return (m / 2.0) * np.log2((v + chi_tot) / (1.0 + chi_tot))


def _holevo(
    detection: str, v: FloatArray, t: FloatArray, chi_line: FloatArray, chi_d: float
) -> tuple[FloatArray, FloatArray]:
    """``(chi_BE, scale)``: the Holevo bound and the sum of its terms' magnitudes."""
    chi_tot = chi_line + chi_d / t
    a = v**2 * (1.0 - 2.0 * t) + 2.0 * t + t**2 * (v + chi_line) ** 2
    b = t**2 * (v * chi_line + 1.0) ** 2
    sb = np.sqrt(b)
    disc = np.sqrt(np.maximum(a**2 - 4.0 * b, 0.0))
    l1 = np.sqrt(np.maximum((a + disc) / 2.0, 0.0))
    l2 = np.sqrt(np.maximum((a - disc) / 2.0, 0.0))
    den = t * (v + chi_tot)
    if detection == "homodyne":
        c = (v * sb + t * (v + chi_line) + a * chi_d) / den
        d = sb * (v + sb * chi_d) / den
    else:
        c = (
            a * chi_d**2
            + b
            + 1.0
            + 2.0 * chi_d * (v * sb + t * (v + chi_line))
            + 2.0 * t * (v**2 - 1.0)
        ) / den**2
        d = ((v + sb * chi_d) / den) ** 2
    disc2 = np.sqrt(np.maximum(c**2 - 4.0 * d, 0.0))
    l3 = np.sqrt(np.maximum((c + disc2) / 2.0, 0.0))
    l4 = np.sqrt(np.maximum((c - disc2) / 2.0, 0.0))
    terms = [_g((lam - 1) / 2) for lam in (l1, l2, l3, l4)]
    chi = terms[0] + terms[1] - terms[2] - terms[3]
    return chi, np.abs(terms[0]) + np.abs(terms[1]) + np.abs(terms[2]) + np.abs(terms[3])


def _terms(
    system: CVSystem, t: FloatArray, va: FloatArray
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """``(I_AB, chi_BE, scale)``; ``scale`` bounds the magnitude of the terms that cancel."""
    det = system.detector
    t_eff, xi_eff, eta, v_el = _effective(det, t, system.excess_noise)
    v = va + 1.0
    chi_line = 1.0 / t_eff - 1.0 + xi_eff
    chi_d = _chi_det(det.detection, eta, v_el)
    iab = _iab(det.detection, v, chi_line + chi_d / t_eff)
    chi, scale = _holevo(det.detection, v, t_eff, chi_line, chi_d)
    return iab, chi, scale


def _variances(va: ArrayLike) -> FloatArray:
    v = np.asarray(va, dtype=float)
    bad = ~np.isfinite(v) | (v <= 0)
    if np.any(bad):
        raise ParameterError("modulation_variance", float(v[bad].ravel()[0]), "> 0 (SNU)")
    return v


def mutual_information(
    system: CVSystem, distance_km: ArrayLike, modulation_variance: ArrayLike
) -> FloatArray:
    """Alice-Bob mutual information ``I_AB`` in bits per symbol (before ``beta``).

    References
    ----------
    J. Lodewyck et al., Phys. Rev. A 76, 042305 (2007).

    Examples
    --------
    >>> s = PRESETS["jain-2022"]
    >>> round(float(mutual_information(s, 0.0, 2.9)), 3)
    1.281
    """
    t = np.asarray(system.fibre.transmittance(lengths_km(distance_km)), dtype=float)
    iab, _, _ = _terms(system, t, _variances(modulation_variance))
    return np.asarray(iab, dtype=np.float64)


def holevo_bound(
    system: CVSystem, distance_km: ArrayLike, modulation_variance: ArrayLike
) -> FloatArray:
    """Eve's Holevo information on Bob's data ``chi_BE`` in bits per symbol.

    References
    ----------
    J. Lodewyck et al., Phys. Rev. A 76, 042305 (2007) (homodyne); S. Fossier et al.,
    J. Phys. B 42, 114014 (2009) (heterodyne).

    Examples
    --------
    >>> s = PRESETS["jain-2022"]
    >>> bool(0 < holevo_bound(s, 20.3, 2.9) < mutual_information(s, 20.3, 2.9))
    True
    """
    t = np.asarray(system.fibre.transmittance(lengths_km(distance_km)), dtype=float)
    _, chi, _ = _terms(system, t, _variances(modulation_variance))
    return np.asarray(chi, dtype=np.float64)


_RESOLUTION = 1e-13  # relative float64 resolution of the Holevo difference (see _raw_rate)
_FLOOR = 1e-12  # bits per symbol: below, the difference is rounding noise (see _raw_rate)


def _raw_rate(system: CVSystem, t: FloatArray, va: FloatArray) -> FloatArray:
    """``beta I_AB - chi_BE``, with values below the cancellation noise floor set to 0.

    At very high loss the four entropies of ``chi_BE`` are each tens of bits while their
    difference is of order ``T``; below ``1e-13`` times their magnitudes, or below 1e-12
    bit/symbol (about 120 dB of loss: 1 mbit/s at 1 GBd), the difference is rounding noise,
    reported as no key (0) rather than as a spurious positive rate. With trusted detector
    noise and little excess noise the GG02 rate falls like ``T`` without ever reaching 0, so
    this floor is then what ends the link.
    """
    iab, chi, scale = _terms(system, t, va)
    rate = system.beta * iab - chi
    resolved = rate > np.maximum(_RESOLUTION * scale, _FLOOR)
    return np.where(resolved, rate, np.minimum(rate, 0.0))


def key_rate_and_variance(
    system: CVSystem, distance_km: ArrayLike
) -> tuple[FloatArray, FloatArray]:
    """Key rate per symbol and the modulation variance (SNU) it was computed at.

    Returns
    -------
    rate, variance : ndarray
        Of the shape of ``numpy.asarray(distance_km)``; ``rate >= 0``.

    Examples
    --------
    >>> s = PRESETS["jain-2022"].replace(modulation_variance=None)
    >>> r, va = key_rate_and_variance(s, 20.3)
    >>> bool(r >= key_rate_per_symbol(PRESETS["jain-2022"], 20.3)), bool(va > 0)
    (True, True)
    """
    d = lengths_km(distance_km)
    t = np.asarray(system.fibre.transmittance(d.ravel()), dtype=float)
    if system.modulation_variance is not None:
        va = np.full(t.shape, float(system.modulation_variance))
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            rate = _raw_rate(system, t, va)
    else:
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            va, rate = maximise_1d(lambda tt, v: _raw_rate(system, tt, v), t, *_VA_BOUNDS)
    rate = np.where(np.isfinite(rate), rate, 0.0)
    rate, va = clipped_rate_and_settings(d.shape, rate, va)
    return rate, va


def key_rate_per_symbol(system: CVSystem, distance_km: ArrayLike) -> FloatArray:
    """Asymptotic GG02 key rate (reverse reconciliation, collective attacks), bits per symbol.

    Parameters
    ----------
    system : CVSystem
        The link's system.
    distance_km : array_like
        Link lengths in km (``>= 0``).

    Returns
    -------
    ndarray
        ``max(0, beta I_AB - chi_BE)`` of the shape of ``numpy.asarray(distance_km)``.

    References
    ----------
    F. Grosshans, P. Grangier, Phys. Rev. Lett. 88, 057902 (2002); J. Lodewyck et al.,
    Phys. Rev. A 76, 042305 (2007); S. Fossier et al., J. Phys. B 42, 114014 (2009).

    Examples
    --------
    >>> r = key_rate_per_symbol(PRESETS["jain-2022"], [0.0, 20.3, 300.0])
    >>> bool(r[0] > r[1] > 0), float(r[2])
    (True, 0.0)
    """
    return key_rate_and_variance(system, distance_km)[0]


def key_rate_bps(system: CVSystem, distance_km: ArrayLike) -> FloatArray:
    """Asymptotic GG02 key rate in bit/s: per symbol times ``symbol_rate_hz``.

    References
    ----------
    F. Grosshans, P. Grangier, Phys. Rev. Lett. 88, 057902 (2002).

    Examples
    --------
    >>> bool(key_rate_bps(PRESETS["jain-2022"], 20.3) > 1e6)
    True
    """
    return np.asarray(key_rate_per_symbol(system, distance_km) * system.symbol_rate_hz, dtype=float)


_JAIN_T = 10.0 ** (-4.6 / 10.0)

_JAIN_2022 = CVSystem(
    name="jain-2022",
    fibre=Fibre(attenuation_db_per_km=4.6 / 20.3),
    detector=CoherentDetector(
        detection="heterodyne", efficiency=1.0, electronic_noise=0.0, trusted=False
    ),
    excess_noise=0.01 / _JAIN_T,
    beta=0.95,
    symbol_rate_hz=1e8,
    modulation_variance=2.9,
    reference=(
        "N. Jain et al., Nat. Commun. 13, 4740 (2022), Table 1: Gaussian CV-QKD, heterodyne "
        "(local LO), 20.3 km / 4.6 dB, mean photon number 1.45 (V_A = 2.9 SNU), untrusted "
        "noise 0.005 PNU at the output (xi = 0.01 SNU / T at the input), 100 MHz; composable "
        "finite-size key fraction 0.0471 bit/symbol. Detector counted untrusted and ideal; "
        "beta = 0.95 assumed (not in the table)."
    ),
)

_LODEWYCK_2007 = CVSystem(
    name="lodewyck-2007",
    fibre=Fibre(attenuation_db_per_km=0.2),
    detector=CoherentDetector(
        detection="homodyne", efficiency=0.606, electronic_noise=0.041, trusted=True
    ),
    excess_noise=0.005,
    beta=0.95,
    symbol_rate_hz=1e6,
    modulation_variance=None,
    reference=(
        "homodyne trusted-detector GG02 in the manner of Lodewyck et al., PRA 76, 042305 "
        "(2007) and Jouguet et al., Nat. Photon. 7, 378 (2013): eta 0.606, v_el 0.041 SNU "
        "(as remembered, offline), xi 0.005 SNU, beta 0.95 (modern multidimensional "
        "reconciliation), 1 MHz symbol rate; V_A optimised"
    ),
)

PRESETS: Mapping[str, CVSystem] = MappingProxyType(
    {p.name: p for p in (_JAIN_2022, _LODEWYCK_2007)}
)
"""GG02 systems by name, each with its ``reference``."""
