"""Measurement-device-independent QKD (MDI-QKD) with decoy states, vectorized over links.

Alice and Bob each send phase-randomised weak coherent pulses (BB84 polarisation states,
intensities ``mu_a`` and ``mu_b``) to an untrusted relay, Charlie, who makes a partial Bell
state measurement (a 50:50 beam splitter, two polarising beam splitters and four threshold
detectors) and announces the projections on ``|psi->``. Protocol: Lo, Curty & Qi (2012);
channel and detector model: Ma & Razavi (2012) as written out by Xu, Curty, Qi & Lo (2013).

Conventions
-----------
* **Rate per pulse pair** (one pulse from Alice and one from Bob): ``key_rate_per_pulse``;
  ``key_rate_bps`` multiplies by ``clock_hz``, the common repetition rate.
* **Dark counts per detector**: ``detector.dark_count_prob`` is ``p_d``, the probability of a
  dark click of *each* of Charlie's four detectors per pulse pair (Xu et al.'s ``p_d``; Lo et
  al.'s ``Y0`` in their Table). ``detector.efficiency`` is ``eta_d``, the efficiency of each
  detector; ``misalignment`` is ``e_d``, the polarisation misalignment of the whole link.
* The link of length ``L`` has Charlie at ``relay_fraction * L`` from Alice (0.5, the
  default, is the symmetric case): ``eta_a = eta_d 10**(-alpha L_a / 10)``, likewise
  ``eta_b``.
* Key from the Z (rectilinear) basis, phase errors from X, **asymptotic with infinitely many
  decoys** (the single-photon pair yield ``Y11`` and the X-basis error ``e11`` are known
  exactly)::

      R = s [mu_a mu_b exp(-mu_a - mu_b) Y11 (1 - H2(e11_X)) - f Q_Z H2(E_Z)]

  with ``Q_Z``, ``E_Z`` the gain and error rate of the Z-basis signal pairs (Xu et al. 2013,
  Appendix B) and ``f`` (``f_ec``) multiplying the error-correction leakage only.
* **Basis sifting**: ``sifting`` (``s``) is the fraction of pulse pairs in which both chose
  the key basis. Its default 1 is the asymptotic efficient-basis limit of Lo et al. (2012)
  and Xu et al. (2013), whose rates carry no sifting factor; 1/4 is both parties choosing
  each basis with probability 1/2 and keeping only Z-Z pairs.
* The signal intensities are optimised per link (one common ``mu`` when the relay is in the
  middle; ``mu_a`` and ``mu_b`` separately when it is not), unless fixed by ``mu_a`` /
  ``mu_b``.

Decoys: ``decoy_ratio=None`` (default) assumes infinitely many decoys (``Y11`` and ``e11``
exact, as in Lo et al.'s Fig. 3). A ``decoy_ratio`` ``r`` uses one weak decoy per side at
``r`` times the signal plus the vacuum, and replaces ``Y11`` and ``e11`` by the analytical
vacuum + weak-decoy bounds of :func:`decoy_bounds` (Xu, Xu & Lo 2014's two-decoy method;
the rate is still that of infinitely long keys). No finite-size (statistical-fluctuation)
version is implemented: the MDI finite-key analyses (Curty et al. 2014) need the joint
statistics of the nine intensity pairs and their own optimisation, not a faithful
one-screen formula.

Published values vs this module (``"lcq-2012"`` preset: ``eta_d = 14.5%``, ``p_d = 6.02e-6``,
``e_d = 1.5%``, ``f = 1.16``, 0.2 dB/km; Lo et al. 2012, Table I, from the Ursin et al. 2007
experiment):

===========================================  ==================  ============================
quantity                                     published           this module
===========================================  ==================  ============================
maximum distance, infinite decoys            over 200 km         201.9 km
maximum distance, vacuum + weak decoy        (near the infinite  194.2 km
(``decoy_ratio = 0.1``)                      case)
===========================================  ==================  ============================

The published figures were quoted from the papers' abstracts and tables as remembered (the
papers could not be re-read here, offline). ``tests/qkd/test_mdi.py`` asserts the comparison.

References
----------
.. [LCQ12] H.-K. Lo, M. Curty, B. Qi, "Measurement-device-independent quantum key
   distribution", Phys. Rev. Lett. 108, 130503 (2012).
.. [MR12] X. Ma, M. Razavi, "Alternative schemes for measurement-device-independent quantum
   key distribution", Phys. Rev. A 86, 062319 (2012).
.. [XCQL13] F. Xu, M. Curty, B. Qi, H.-K. Lo, "Practical aspects of measurement-device-
   independent quantum key distribution", New J. Phys. 15, 113007 (2013).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import i0, i0e

from qkd.errors import ParameterError
from qkd.linkbase import (
    check_ideal_detector,
    check_number,
    check_pulse_link,
    clipped_rate_and_settings,
    h2,
    lengths_km,
)
from qkd.optimize import maximise_1d, maximise_2d
from qkd.params import Detector, Fibre

__all__ = [
    "PRESETS",
    "MDISystem",
    "decoy_bounds",
    "gains_and_errors",
    "key_rate_and_intensities",
    "key_rate_bps",
    "key_rate_per_pulse",
    "single_photon_terms",
    "x_basis_gains_and_errors",
]

FloatArray = NDArray[np.float64]

_E0 = 0.5
_MU_BOUNDS = (1e-3, 1.5)


@dataclass(frozen=True)
class MDISystem:
    """An MDI-QKD link: two weak-coherent-pulse sources and an untrusted relay.

    Parameters
    ----------
    name : str
        A short name (the preset name for presets).
    fibre : Fibre
        The fibre of both arms.
    detector : Detector
        Charlie's detectors: ``efficiency`` per detector in (0, 1], ``dark_count_prob`` per
        detector and pulse pair in [0, 1). Dead time and after-pulses are not modelled and
        must be 0.
    clock_hz : float
        Pulse-pair repetition rate (``> 0``).
    misalignment : float
        ``e_d`` in [0, 0.5].
    f_ec : float
        Error-correction inefficiency (``>= 1``), multiplying ``Q_Z H2(E_Z)``.
    sifting : float
        Fraction of pulse pairs kept for the key, in (0, 1] (1: efficient-basis limit).
    relay_fraction : float
        Charlie's position, as the fraction of the link on Alice's side, in [0, 1].
    mu_a, mu_b : float or None
        Fixed signal intensities (``> 0``); ``None`` (default) optimises them per link.
    decoy_ratio : float or None
        ``None`` (default): infinitely many decoys. A number ``r`` in (0, 1): one weak decoy
        per side at ``r`` times that side's signal intensity, plus the vacuum (the
        vacuum + weak decoy estimate, see the module docstring).
    reference : str
        Where the numbers come from.

    Examples
    --------
    >>> s = PRESETS["lcq-2012"]
    >>> s.detector.dark_count_prob, s.relay_fraction
    (6.02e-06, 0.5)
    """

    name: str
    fibre: Fibre
    detector: Detector
    clock_hz: float
    misalignment: float = 0.015
    f_ec: float = 1.16
    sifting: float = 1.0
    relay_fraction: float = 0.5
    mu_a: float | None = None
    mu_b: float | None = None
    decoy_ratio: float | None = None
    reference: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        check_pulse_link(self.clock_hz, self.misalignment, self.f_ec)
        check_number("sifting", self.sifting, 0 < self.sifting <= 1, "in (0, 1]")
        x = self.relay_fraction
        check_number("relay_fraction", x, 0 <= x <= 1, "in [0, 1]")
        r = self.decoy_ratio
        if r is not None:
            check_number("decoy_ratio", r, 0 < r < 1, "in (0, 1) or None (infinite decoys)")
        for name in ("mu_a", "mu_b"):
            mu = getattr(self, name)
            if mu is not None:
                check_number(name, mu, 0 < mu <= 10, "in (0, 10] or None (optimised)")
        check_ideal_detector(self.detector, "MDI")

    def replace(self, **changes: Any) -> MDISystem:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def arm_transmittances(self, distance_km: ArrayLike) -> tuple[FloatArray, FloatArray]:
        """``(eta_a, eta_b)``: detector efficiency times each arm's fibre transmittance.

        Examples
        --------
        >>> ea, eb = PRESETS["lcq-2012"].arm_transmittances(100.0)
        >>> round(float(ea), 5) == round(float(eb), 5) == 0.0145
        True
        """
        d = lengths_km(distance_km)
        eta_d = self.detector.efficiency
        eta_a = eta_d * self.fibre.transmittance(self.relay_fraction * d)
        eta_b = eta_d * self.fibre.transmittance((1.0 - self.relay_fraction) * d)
        return eta_a, eta_b


def single_photon_terms(
    eta_a: ArrayLike, eta_b: ArrayLike, p_d: float, e_d: float
) -> tuple[FloatArray, FloatArray]:
    """Yield ``Y11`` and X-basis error ``e11`` of single-photon pairs (Xu et al. 2013).

    ``Y11 = (1-p_d)^2 [eta_a eta_b / 2 + (2 eta_a + 2 eta_b - 3 eta_a eta_b) p_d
    + 4 (1-eta_a)(1-eta_b) p_d^2]`` and ``e11 Y11 = Y11 / 2 - (1/2 - e_d)(1-p_d)^2
    eta_a eta_b / 2``. With infinitely many decoys these are what the decoy estimate returns.

    References
    ----------
    F. Xu, M. Curty, B. Qi, H.-K. Lo, New J. Phys. 15, 113007 (2013), Appendix B.

    Examples
    --------
    >>> y11, e11 = single_photon_terms(0.5, 0.5, 0.0, 0.0)
    >>> float(y11), float(e11)
    (0.125, 0.0)
    """
    ea = np.asarray(eta_a, dtype=float)
    eb = np.asarray(eta_b, dtype=float)
    good = (1.0 - p_d) ** 2
    y11 = good * (
        ea * eb / 2.0 + (2 * ea + 2 * eb - 3 * ea * eb) * p_d + 4 * (1 - ea) * (1 - eb) * p_d**2
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        e11 = np.where(y11 > 0, (_E0 * y11 - (_E0 - e_d) * good * ea * eb / 2.0) / y11, _E0)
    return np.asarray(y11, dtype=np.float64), np.asarray(e11, dtype=np.float64)


def gains_and_errors(
    eta_a: ArrayLike, eta_b: ArrayLike, mu_a: ArrayLike, mu_b: ArrayLike, p_d: float, e_d: float
) -> tuple[FloatArray, FloatArray]:
    """Z-basis gain ``Q_Z`` and error rate ``E_Z`` of a pair of signal pulses.

    ``Q_Z = Q_C + Q_E`` with ``Q_C = 2 (1-p_d)^2 e^{-mu'/2} [1 - (1-p_d) e^{-eta_a mu_a/2}]
    [1 - (1-p_d) e^{-eta_b mu_b/2}]``, ``Q_E = 2 p_d (1-p_d)^2 e^{-mu'/2} [I0(2x) - (1-p_d)
    e^{-mu'/2}]``, ``E_Z Q_Z = e_d Q_C + (1 - e_d) Q_E``, ``mu' = eta_a mu_a + eta_b mu_b``,
    ``x = sqrt(eta_a mu_a eta_b mu_b) / 2``.

    References
    ----------
    X. Ma, M. Razavi, Phys. Rev. A 86, 062319 (2012); F. Xu, M. Curty, B. Qi, H.-K. Lo,
    New J. Phys. 15, 113007 (2013), Appendix B.

    Examples
    --------
    >>> q, e = gains_and_errors(0.1, 0.1, 0.3, 0.3, 0.0, 0.0)
    >>> f"{float(q):.3e}", float(e)
    ('4.302e-04', 0.0)
    """
    ea = np.asarray(eta_a, dtype=float)
    eb = np.asarray(eta_b, dtype=float)
    na = ea * np.asarray(mu_a, dtype=float)
    nb = eb * np.asarray(mu_b, dtype=float)
    half = (na + nb) / 2.0
    x = np.sqrt(na * nb) / 2.0
    keep = 1.0 - p_d
    q_c = 2 * keep**2 * np.exp(-half) * (1 - keep * np.exp(-na / 2)) * (1 - keep * np.exp(-nb / 2))
    # e^{-mu'/2} I0(2x) = i0e(2x) e^{2x - mu'/2}, with 2x <= mu'/2 (AM-GM): no overflow
    q_e = 2 * p_d * keep**2 * (i0e(2 * x) * np.exp(2 * x - half) - keep * np.exp(-2 * half))
    gain = q_c + q_e
    with np.errstate(divide="ignore", invalid="ignore"):
        err = np.where(gain > 0, (e_d * q_c + (1 - e_d) * q_e) / gain, _E0)
    return np.asarray(gain, dtype=np.float64), np.asarray(err, dtype=np.float64)


def x_basis_gains_and_errors(
    eta_a: ArrayLike, eta_b: ArrayLike, mu_a: ArrayLike, mu_b: ArrayLike, p_d: float, e_d: float
) -> tuple[FloatArray, FloatArray]:
    """X-basis gain ``Q_X`` and error rate ``E_X`` of a pair of pulses.

    ``Q_X = 2 y^2 [1 + 2 y^2 - 4 y I0(x) + I0(2x)]`` and ``E_X Q_X = Q_X / 2 - 2 (1/2 - e_d)
    y^2 [I0(2x) - 1]`` with ``y = (1 - p_d) e^{-mu'/4}``, ``mu'`` and ``x`` as in
    :func:`gains_and_errors`.

    References
    ----------
    F. Xu, M. Curty, B. Qi, H.-K. Lo, New J. Phys. 15, 113007 (2013), Appendix B.

    Examples
    --------
    >>> q, e = x_basis_gains_and_errors(0.0, 0.0, 0.0, 0.0, 1e-3, 0.0)  # dark counts only
    >>> f"{float(q):.4e}", float(e)
    ('3.9920e-06', 0.5)
    """
    na = np.asarray(eta_a, dtype=float) * np.asarray(mu_a, dtype=float)
    nb = np.asarray(eta_b, dtype=float) * np.asarray(mu_b, dtype=float)
    x = np.sqrt(na * nb) / 2.0
    y = (1.0 - p_d) * np.exp(-(na + nb) / 4.0)
    i0_2x = i0(2.0 * x)
    gain = 2.0 * y**2 * (1.0 + 2.0 * y**2 - 4.0 * y * i0(x) + i0_2x)
    wrong = _E0 * gain - 2.0 * (_E0 - e_d) * y**2 * (i0_2x - 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        err = np.where(gain > 0, wrong / gain, _E0)
    return np.asarray(gain, dtype=np.float64), np.asarray(err, dtype=np.float64)


def decoy_bounds(
    system: MDISystem, eta_a: ArrayLike, eta_b: ArrayLike, mu_a: ArrayLike, mu_b: ArrayLike
) -> tuple[FloatArray, FloatArray]:
    """Vacuum + weak-decoy bounds ``(Y11_lower, e11_upper)`` (``decoy_ratio`` must be set).

    With ``G(a, b) = e^{a+b} Q_{ab}`` and ``H(a, b) = G(a, b) - G(a, 0) - G(0, b) + G(0, 0)
    = sum_{n,m >= 1} a^n b^m / (n! m!) Y_nm``, decoys ``(r mu_a, r mu_b)`` give::

        Y11 >= [H(r mu_a, r mu_b) - r^3 H(mu_a, mu_b)] / (mu_a mu_b r^2 (1 - r))
        e11 <= H_E(r mu_a, r mu_b) / (r^2 mu_a mu_b Y11_lower)

    (every term with ``n + m >= 3`` has the sign that keeps the bounds valid; ``H_E`` is
    ``H`` with ``Q E`` for ``Q``). ``Y11`` is bounded in each basis, ``e11`` in X.

    References
    ----------
    F. Xu, H. Xu, H.-K. Lo, "Protocol choice and parameter optimization in decoy-state
    measurement-device-independent quantum key distribution", Phys. Rev. A 89, 052333
    (2014) (the analytical two-decoy method, here in a proportional-decoy form).

    Examples
    --------
    >>> s = PRESETS["lcq-2012"].replace(decoy_ratio=0.1)
    >>> ea, eb = s.arm_transmittances(50.0)
    >>> y_low, e_up = decoy_bounds(s, ea, eb, 0.4, 0.4)
    >>> y_true, e_true = single_photon_terms(ea, eb, 6.02e-6, 0.015)
    >>> bool(y_low <= y_true), bool(e_up >= e_true)
    (True, True)
    """
    r = system.decoy_ratio
    if r is None:
        raise ParameterError("decoy_ratio", None, "a number in (0, 1) for the decoy bounds")
    p_d = system.detector.dark_count_prob
    e_d = system.misalignment
    ma = np.asarray(mu_a, dtype=float)
    mb = np.asarray(mu_b, dtype=float)

    def h(fn, a, b):
        zero = np.zeros_like(a)
        parts = []
        for x, y, sign in ((a, b, 1.0), (a, zero, -1.0), (zero, b, -1.0), (zero, zero, 1.0)):
            q, e = fn(eta_a, eta_b, x, y, p_d, e_d)
            parts.append((sign * np.exp(x + y) * q, sign * np.exp(x + y) * q * e))
        return sum(p[0] for p in parts), sum(p[1] for p in parts)

    ma_b, mb_b = np.broadcast_arrays(ma + 0.0 * np.asarray(eta_a), mb + 0.0 * np.asarray(eta_b))
    low = []
    for fn in (gains_and_errors, x_basis_gains_and_errors):
        h_sig, _ = h(fn, ma_b, mb_b)
        h_dec, he_dec = h(fn, r * ma_b, r * mb_b)
        y11 = (h_dec - r**3 * h_sig) / (ma_b * mb_b * r**2 * (1.0 - r))
        low.append((np.maximum(y11, 0.0), he_dec))
    (y11_z, _), (y11_x, he_x) = low
    with np.errstate(divide="ignore", invalid="ignore"):
        e11 = np.where(y11_x > 0, he_x / (r**2 * ma_b * mb_b * y11_x), _E0)
    return np.asarray(y11_z, dtype=np.float64), np.asarray(np.clip(e11, 0.0, _E0), dtype=float)


def _raw_rate(
    system: MDISystem,
    eta_a: FloatArray,
    eta_b: FloatArray,
    mu_a: FloatArray | float,
    mu_b: FloatArray | float,
) -> FloatArray:
    """Unclipped key rate per pulse pair (negative where no key is possible)."""
    p_d = system.detector.dark_count_prob
    e_d = system.misalignment
    if system.decoy_ratio is None:
        y11, e11 = single_photon_terms(eta_a, eta_b, p_d, e_d)
    else:
        y11, e11 = decoy_bounds(system, eta_a, eta_b, mu_a, mu_b)
    gain, err = gains_and_errors(eta_a, eta_b, mu_a, mu_b, p_d, e_d)
    p11 = mu_a * mu_b * np.exp(-mu_a - mu_b)
    return system.sifting * (p11 * y11 * (1.0 - h2(e11)) - system.f_ec * gain * h2(err))


def key_rate_and_intensities(
    system: MDISystem, distance_km: ArrayLike
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Key rate per pulse pair and the signal intensities ``(mu_a, mu_b)`` it was found at.

    Returns
    -------
    rate, mu_a, mu_b : ndarray
        Each of the shape of ``numpy.asarray(distance_km)``; ``rate >= 0``. Where the rate is
        zero the intensities are those of the least negative unclipped rate.

    Examples
    --------
    >>> r, ma, mb = key_rate_and_intensities(PRESETS["lcq-2012"], [0.0, 100.0])
    >>> bool(np.all(ma == mb)), bool(r[0] > r[1] > 0)
    (True, True)
    """
    d = lengths_km(distance_km)
    eta_a, eta_b = system.arm_transmittances(d.ravel())
    fixed_a, fixed_b = system.mu_a, system.mu_b
    if fixed_a is not None and fixed_b is not None:
        mu_a = np.full(eta_a.shape, fixed_a)
        mu_b = np.full(eta_a.shape, fixed_b)
        rate = _raw_rate(system, eta_a, eta_b, mu_a, mu_b)
    elif system.relay_fraction == 0.5 and fixed_a is None and fixed_b is None:
        mu, rate = maximise_1d(lambda e, m: _raw_rate(system, e, e, m, m), eta_a, *_MU_BOUNDS)
        mu_a = mu_b = mu
    elif fixed_a is not None:
        mu_b, rate = maximise_1d(
            lambda i, m: _raw_rate(system, eta_a[i], eta_b[i], fixed_a, m),
            np.arange(eta_a.size),
            *_MU_BOUNDS,
        )
        mu_a = np.full(eta_a.shape, fixed_a)
    elif fixed_b is not None:
        mu_a, rate = maximise_1d(
            lambda i, m: _raw_rate(system, eta_a[i], eta_b[i], m, fixed_b),
            np.arange(eta_a.size),
            *_MU_BOUNDS,
        )
        mu_b = np.full(eta_a.shape, fixed_b)
    else:
        mu_a, mu_b, rate = maximise_2d(
            lambda i, x, y: _raw_rate(system, eta_a[i], eta_b[i], x, y),
            np.arange(eta_a.size),
            _MU_BOUNDS,
            _MU_BOUNDS,
        )
    rate, mu_a, mu_b = clipped_rate_and_settings(d.shape, rate, mu_a, mu_b)
    return rate, mu_a, mu_b


def key_rate_per_pulse(system: MDISystem, distance_km: ArrayLike) -> FloatArray:
    """Asymptotic MDI-QKD key rate in bits per pulse pair, intensities optimised per link.

    Parameters
    ----------
    system : MDISystem
        The link's system.
    distance_km : array_like
        Alice-Bob link lengths in km (``>= 0``), Charlie at ``relay_fraction`` of each.

    Returns
    -------
    ndarray
        Rates (``>= 0``) of the shape of ``numpy.asarray(distance_km)``.

    References
    ----------
    H.-K. Lo, M. Curty, B. Qi, Phys. Rev. Lett. 108, 130503 (2012); F. Xu, M. Curty, B. Qi,
    H.-K. Lo, New J. Phys. 15, 113007 (2013).

    Examples
    --------
    >>> r = key_rate_per_pulse(PRESETS["lcq-2012"], [0.0, 300.0])
    >>> bool(r[0] > 1e-4), float(r[1])
    (True, 0.0)
    """
    return key_rate_and_intensities(system, distance_km)[0]


def key_rate_bps(system: MDISystem, distance_km: ArrayLike) -> FloatArray:
    """Asymptotic MDI-QKD key rate in bit/s: the rate per pulse pair times ``clock_hz``.

    References
    ----------
    H.-K. Lo, M. Curty, B. Qi, Phys. Rev. Lett. 108, 130503 (2012).

    Examples
    --------
    >>> r = key_rate_bps(PRESETS["lcq-2012"], 50.0)
    >>> r.shape, bool(r > 0)
    ((), True)
    """
    return np.asarray(key_rate_per_pulse(system, distance_km) * system.clock_hz, dtype=float)


_LCQ = MDISystem(
    name="lcq-2012",
    fibre=Fibre(attenuation_db_per_km=0.2),
    detector=Detector(efficiency=0.145, dark_count_prob=6.02e-6),
    clock_hz=1e6,
    misalignment=0.015,
    f_ec=1.16,
    reference=(
        "H.-K. Lo, M. Curty, B. Qi, PRL 108, 130503 (2012), Table I (detector numbers of "
        "Ursin et al., Nat. Phys. 3, 481, 2007): eta_d 14.5%, Y0 6.02e-6 per detector, "
        "e_d 1.5%, f 1.16, 0.2 dB/km; headline: over 200 km with infinite decoys. The clock "
        "(1 MHz) is not from the paper (the paper reports bits per pulse pair)."
    ),
)

_TANG_2014 = MDISystem(
    name="tang-2014",
    fibre=Fibre(attenuation_db_per_km=0.2),
    detector=Detector(efficiency=0.40, dark_count_prob=1e-7),
    clock_hz=75e6,
    misalignment=0.015,
    f_ec=1.16,
    sifting=0.25,
    reference=(
        "representative of an SNSPD-based MDI-QKD field system at 75 MHz (Tang et al., PRL "
        "113, 190501, 2014, 200 km; detector numbers representative, not read from the "
        "paper, offline); sifting 1/4 (both bases equiprobable, Z-Z pairs kept)"
    ),
)

PRESETS: Mapping[str, MDISystem] = MappingProxyType({p.name: p for p in (_LCQ, _TANG_2014)})
"""MDI-QKD systems by name, each with its ``reference``."""
