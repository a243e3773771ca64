"""Asymptotic secret-key-rate models for BB84 with weak coherent pulses, and repeaterless bounds.

Every model is vectorized over an array of link lengths (km) and follows the notation and
channel model of Ma, Qi, Zhao & Lo (2005), who use the Gobby-Yuan-Shields (GYS) system as
their example (preset ``"gys-2004"``):

* total transmittance ``eta = eta_Bob * 10**(-alpha L / 10)`` (:meth:`QKDSystem.transmittance`);
* ``n``-photon yield ``Y_n = Y0 + 1 - (1 - eta)**n``, error ``e_n = (Y0/2 + e_d (Y_n - Y0)) / Y_n``;
* signal gain ``Q_mu = Y0 + 1 - exp(-eta mu)`` and QBER
  ``E_mu = (Y0/2 + e_d (1 - exp(-eta mu))) / Q_mu`` (first order in ``Y0``, as in Ma et al.);
* GLLP key rate per pulse ``R = q [Q1 (1 - H2(e1)) - f Q_mu H2(E_mu)]``, clipped at 0.

Protocols (``protocol=``):

``"decoy-bb84"``
    Infinitely many decoy states: ``Q1 = Y1 mu exp(-mu)`` and ``e1`` are known exactly
    (Lo, Ma & Chen 2005; Ma et al. 2005).
``"decoy-vacuum-weak"``
    One vacuum and one weak decoy ``nu = source.decoys[0]``; ``Y1`` and ``e1`` are replaced by
    the lower / upper bounds that Ma et al. (2005) derive for the vacuum + weak decoy case.
``"bb84-no-decoy"``
    GLLP with the worst-case assumption that every multi-photon pulse is detected:
    ``Delta = (1 - (1 + mu) exp(-mu)) / Q_mu`` (Gottesman, Lo, Lütkenhaus & Preskill 2004).
``"single-photon"``
    An ideal single-photon source: ``Q = Y1``, ``E = e1``; ``mu`` is fixed at 1 (one photon
    per pulse, no optimisation).

Published values vs this implementation, GYS preset (asymptotic, ``f = 1.22``, ``q = 1/2``):

=============================================  =======================  ======================
quantity (GYS)                                 Ma et al. 2005           this module
=============================================  =======================  ======================
optimal mu, infinite decoys                    ~0.48                    0.486 (0 km),
                                                                        0.475 (100 km)
max. distance, infinite decoys                 ~142 km                  142.2 km (mu optimal),
                                                                        142.0 km (mu = 0.48)
max. distance, vacuum + weak decoy (nu=0.05)   close to the infinite    141.0 km
                                               case (a few km less)
max. distance, no decoy (GLLP)                 far shorter (tens of     40.2 km
                                               km)
max. distance, ideal single photons            --                       171.5 km
=============================================  =======================  ======================

The published entries are those of the text of Ma et al. (2005), quoted from memory: the
paper could not be re-read while this module was written (offline), so the last two are
stated only qualitatively. ``tests/qkd/test_rates.py`` asserts these comparisons
(``mu_opt = 0.48 +- 0.02``, ``L_max = 142 +- 2`` km, vacuum + weak within 3 km of the
infinite case, GLLP between 20 and 60 km). The ``"toshiba-2018"`` comparison is in
:mod:`qkd.params`.

All rate functions return ``numpy.ndarray`` of dtype float64 with the shape of
``numpy.asarray(distance_km)``: a scalar distance gives a 0-d array (use ``float(r)``).

References
----------
.. [Ma05] X. Ma, B. Qi, Y. Zhao, H.-K. Lo, "Practical decoy state for quantum key
   distribution", Phys. Rev. A 72, 012326 (2005).
.. [LMC05] H.-K. Lo, X. Ma, K. Chen, "Decoy state quantum key distribution",
   Phys. Rev. Lett. 94, 230504 (2005).
.. [GLLP04] D. Gottesman, H.-K. Lo, N. Lütkenhaus, J. Preskill, "Security of quantum key
   distribution with imperfect devices", Quantum Inf. Comput. 4, 325 (2004).
.. [PLOB17] S. Pirandola, R. Laurenza, C. Ottaviani, L. Banchi, "Fundamental limits of
   repeaterless quantum communications", Nat. Commun. 8, 15043 (2017).
.. [TGW14] M. Takeoka, S. Guha, M. M. Wilde, "Fundamental rate-loss tradeoff for optical
   quantum key distribution", Nat. Commun. 5, 5235 (2014).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import brentq

from qkd.errors import ParameterError, UnknownNameError
from qkd.linkbase import lengths_km
from qkd.optimize import maximise_1d
from qkd.params import QKDSystem

__all__ = [
    "ABORT_QBER",
    "PROTOCOLS",
    "Protocol",
    "attack_rate_factor",
    "binary_entropy",
    "gain_and_qber",
    "key_rate_and_mu",
    "key_rate_bps",
    "key_rate_per_pulse",
    "max_distance",
    "optimal_mu",
    "plob_bound",
    "single_photon_gain_and_qber",
    "tgw_bound",
]

Protocol = Literal["decoy-bb84", "decoy-vacuum-weak", "bb84-no-decoy", "single-photon"]
PROTOCOLS: tuple[str, ...] = ("decoy-bb84", "decoy-vacuum-weak", "bb84-no-decoy", "single-photon")
"""Names accepted by the ``protocol`` argument."""

FloatArray = NDArray[np.float64]

ABORT_QBER = 0.11
"""QBER above which BB84 post-processing aborts (Shor-Preskill limit, about 11%)."""

_E0 = 0.5  # error rate of background counts
_MU_MAX = 2.0  # upper end of the intensity search
_MU_MIN = 1e-7  # lower end of the intensity search
_GRID = 48  # log-spaced intensities scanned before the golden-section refinement
_GOLDEN_ITERATIONS = 64


# ---------------------------------------------------------------------------------------------
# validation helpers


def _check_protocol(protocol: str) -> str:
    if protocol not in PROTOCOLS:
        raise UnknownNameError("protocol", protocol, PROTOCOLS)
    return protocol


def _weak_decoy(system: QKDSystem) -> float:
    decoys = system.source.decoys
    if not decoys or decoys[0] <= 0:
        value = decoys[0] if decoys else None
        raise ParameterError(
            "source.decoys[0]", value, "> 0 (the weak decoy nu) for protocol 'decoy-vacuum-weak'"
        )
    return float(decoys[0])


def _mu_array(mu: ArrayLike, protocol: str, nu: float) -> FloatArray:
    m = np.asarray(mu, dtype=float)
    if protocol == "single-photon":
        raise ParameterError(
            "mu", mu, "omitted (None) for protocol 'single-photon' (one photon per pulse)"
        )
    if protocol == "decoy-vacuum-weak":
        bad = ~np.isfinite(m) | (m <= nu)
        allowed = f"> nu = {nu} (source.decoys[0]) and finite"
    else:
        bad = ~np.isfinite(m) | (m <= 0)
        allowed = "> 0 and finite"
    if np.any(bad):
        raise ParameterError("mu", float(m[bad].ravel()[0]), allowed)
    return m


def _array(x: ArrayLike) -> FloatArray:
    """A float64 ndarray (numpy ufuncs turn 0-d arrays into scalars; this undoes it)."""
    return np.asarray(x, dtype=np.float64)


def _check_transmittance(transmittance: ArrayLike) -> FloatArray:
    t = np.asarray(transmittance, dtype=float)
    bad = ~(t >= 0) | ~(t <= 1)
    if np.any(bad):
        raise ParameterError("transmittance", float(t[bad].ravel()[0]), "in [0, 1]")
    return t


# ---------------------------------------------------------------------------------------------
# physics


def _h2(p: ArrayLike) -> FloatArray:
    """Binary entropy with its argument clipped to [0, 1] (for bounds that overshoot)."""
    x = np.clip(np.asarray(p, dtype=float), 0.0, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -x * np.log2(x) - (1.0 - x) * np.log1p(-x) / math.log(2.0)
    return np.where((x <= 0.0) | (x >= 1.0), 0.0, h)


def binary_entropy(p: ArrayLike) -> FloatArray:
    """Binary Shannon entropy ``H2(p) = -p log2 p - (1-p) log2(1-p)``, with ``H2(0) = H2(1) = 0``.

    Raises
    ------
    ParameterError
        If some ``p`` is outside [0, 1] or not finite.

    Examples
    --------
    >>> float(binary_entropy(0.5))
    1.0
    >>> float(binary_entropy(0.0))
    0.0
    """
    q = np.asarray(p, dtype=float)
    if np.any((q < 0) | (q > 1)) or not np.all(np.isfinite(q)):
        raise ParameterError("p", p, "in [0, 1]")
    return _h2(q)


def _h2_scalar(p: float) -> float:
    # math.log2 on one float: kept apart from the vectorized _h2 (log1p), whose last bit can
    # differ, so that eavesdropper-scaled link rates stay exactly what they were
    if p <= 0 or p >= 1:
        return 0.0
    return -p * math.log2(p) - (1 - p) * math.log2(1 - p)


def attack_rate_factor(
    qber: float, *, baseline_qber: float = 0.01, f_ec: float = 1.16, threshold: float = ABORT_QBER
) -> float:
    """Fraction of a link's key rate left while an eavesdropper raises its QBER to ``qber``.

    Zero above the abort ``threshold``; below it, the ratio of the asymptotic BB84 secret
    fractions ``1 - h(Q) - f_ec h(Q)`` at ``qber`` and at the link's own ``baseline_qber``.

    Raises
    ------
    ParameterError
        ``qber`` is not a number in [0, 0.5].

    References
    ----------
    P. W. Shor and J. Preskill, "Simple proof of security of the BB84 quantum key
    distribution protocol", Phys. Rev. Lett. 85, 441 (2000).

    Examples
    --------
    >>> attack_rate_factor(0.25)  # full intercept-resend: the link aborts
    0.0
    >>> round(attack_rate_factor(0.03), 3)
    0.703
    """
    if not (isinstance(qber, int | float) and 0 <= qber <= 0.5):
        raise ParameterError("eavesdropper.qber", qber, "in [0, 0.5]")
    if qber > threshold:
        return 0.0

    def frac(q: float) -> float:
        return max(0.0, 1.0 - _h2_scalar(q) - f_ec * _h2_scalar(q))

    base = frac(baseline_qber)
    return 0.0 if base <= 0 else min(1.0, frac(qber) / base)


def _gain_qber_eta(
    eta: FloatArray, mu: FloatArray | float, y0: float, e_d: float
) -> tuple[FloatArray, FloatArray]:
    detected = -np.expm1(-eta * mu)  # 1 - exp(-eta mu)
    gain = y0 + detected
    with np.errstate(divide="ignore", invalid="ignore"):
        qber = np.where(gain > 0, (_E0 * y0 + e_d * detected) / gain, _E0)
    return gain, qber


def _afterpulsed(gain: FloatArray, qber: FloatArray, p_ap: float) -> tuple[FloatArray, FloatArray]:
    """Click probability and error rate with after-pulses (Lim et al. 2014's model).

    Each click brings ``p_ap`` after-pulses of random bit value on average: the click
    probability ``D`` becomes ``D (1 + p_ap)`` and the error probability ``E D`` becomes
    ``E D + p_ap D / 2``. The identity when ``p_ap == 0``.
    """
    if p_ap == 0.0:
        return gain, qber
    return gain * (1.0 + p_ap), (qber + 0.5 * p_ap) / (1.0 + p_ap)


def _live_fraction(system: QKDSystem, clicks: ArrayLike) -> FloatArray | float:
    """Fraction of pulses that meet live detectors: ``1 / (1 + f D tau)`` (non-paralysable).

    ``clicks`` is the click probability per pulse (after-pulses included) and ``f`` the clock:
    the detectors count at most ``1 / tau`` clicks per second. Pulses that arrive while a
    detector is dead are discarded (Bob announces them), so every count and every rate per
    sent pulse is multiplied by this fraction. 1 without dead time.

    References
    ----------
    D. Rusca et al., Appl. Phys. Lett. 112, 171104 (2018), Appendix B (the factor ``c_dt``).
    """
    tau = system.detector.dead_time_s
    if tau == 0.0:
        return 1.0
    return 1.0 / (1.0 + system.source.clock_hz * tau * np.asarray(clicks, dtype=float))


def gain_and_qber(
    system: QKDSystem, distance_km: ArrayLike, mu: ArrayLike
) -> tuple[FloatArray, FloatArray]:
    """Gain ``Q_mu`` and quantum bit error rate ``E_mu`` of weak coherent pulses.

    ``Q_mu = Y0 + 1 - exp(-eta mu)`` is the probability that Bob's detectors click for a pulse
    of mean photon number ``mu``, and ``E_mu = (Y0/2 + e_d (1 - exp(-eta mu))) / Q_mu`` the
    fraction of those clicks that give the wrong bit (before sifting). ``Y0`` is
    ``system.detector.dark_count_prob`` and ``e_d`` is ``system.misalignment``. A detector
    with after-pulses (``p_ap``) multiplies the gain by ``1 + p_ap`` and adds ``p_ap / 2`` of
    wrong bits per click; one with a dead time multiplies the gain by the fraction of pulses
    that meet live detectors, ``1 / (1 + f Q tau)`` (both 0 by default). The vacuum
    (``mu = 0``) gives ``Q_0 = Y0`` and ``E_0 = 1/2``; where nothing can click
    (``Q_mu == 0``), ``E_mu`` is reported as 1/2.

    Parameters
    ----------
    system : QKDSystem
        The QKD system.
    distance_km : array_like
        Link lengths in km (``>= 0``).
    mu : array_like
        Mean photon number(s) per pulse (``>= 0``), broadcast against ``distance_km``.

    Returns
    -------
    gain, qber : ndarray
        Arrays of the broadcast shape of ``distance_km`` and ``mu``.

    Raises
    ------
    ParameterError
        For a negative or non-finite distance or ``mu``.

    References
    ----------
    X. Ma, B. Qi, Y. Zhao, H.-K. Lo, Phys. Rev. A 72, 012326 (2005).

    Examples
    --------
    >>> from qkd.params import get_preset
    >>> q, e = gain_and_qber(get_preset("gys-2004"), [0.0, 50.0], 0.48)
    >>> [round(float(x), 5) for x in q]
    [0.02137, 0.00192]
    >>> [round(float(x), 4) for x in e]
    [0.033, 0.0334]
    """
    d = lengths_km(distance_km)
    m = np.asarray(mu, dtype=float)
    bad = ~np.isfinite(m) | (m < 0)
    if np.any(bad):
        raise ParameterError("mu", float(m[bad].ravel()[0]), ">= 0 and finite")
    eta = system.transmittance(d)
    gain, qber = _gain_qber_eta(eta, m, system.detector.dark_count_prob, system.misalignment)
    gain, qber = _afterpulsed(gain, qber, system.detector.afterpulse_prob)
    gain = gain * _live_fraction(system, gain)
    return _array(gain), _array(qber)


def single_photon_gain_and_qber(
    system: QKDSystem, distance_km: ArrayLike
) -> tuple[FloatArray, FloatArray]:
    """Yield ``Y1 = Y0 + eta`` and error rate ``e1 = (Y0/2 + e_d eta) / Y1`` of single photons.

    These are the gain and QBER of an ideal single-photon source, and the single-photon
    quantities that infinitely many decoy states estimate exactly.

    References
    ----------
    X. Ma, B. Qi, Y. Zhao, H.-K. Lo, Phys. Rev. A 72, 012326 (2005).

    Examples
    --------
    >>> from qkd.params import get_preset
    >>> y1, e1 = single_photon_gain_and_qber(get_preset("gys-2004"), 0.0)
    >>> round(float(y1), 6), round(float(e1), 4)
    (0.045002, 0.033)
    """
    d = lengths_km(distance_km)
    eta = system.transmittance(d)
    y0 = system.detector.dark_count_prob
    y1 = y0 + eta
    with np.errstate(divide="ignore", invalid="ignore"):
        e1 = np.where(y1 > 0, (_E0 * y0 + system.misalignment * eta) / y1, _E0)
    y1, e1 = _afterpulsed(y1, e1, system.detector.afterpulse_prob)
    y1 = y1 * _live_fraction(system, y1)
    return _array(y1), _array(e1)


RawRate = Callable[[FloatArray, FloatArray], FloatArray]


def _raw_rate(system: QKDSystem, protocol: str) -> RawRate:
    """The key rate per pulse as a function of (eta, mu), *not* clipped at zero.

    The rate of :func:`_raw_rate_live` (per pulse that meets live detectors) times the
    fraction of such pulses (:func:`_live_fraction`, 1 without dead time) at the click
    probability of the signal.
    """
    live_rate = _raw_rate_live(system, protocol)
    if system.detector.dead_time_s == 0.0:
        return live_rate
    y0 = system.detector.dark_count_prob
    e_d = system.misalignment
    p_ap = system.detector.afterpulse_prob

    def saturated_rate(eta: FloatArray, mu: FloatArray) -> FloatArray:
        if protocol == "single-photon":
            clicks = (y0 + eta) * (1.0 + p_ap) + np.zeros_like(mu)
        else:
            clicks = _gain_qber_eta(eta, mu, y0, e_d)[0] * (1.0 + p_ap)
        return live_rate(eta, mu) * _live_fraction(system, clicks)

    return saturated_rate


def _raw_rate_live(system: QKDSystem, protocol: str) -> RawRate:
    """The key rate per live pulse as a function of (eta, mu), *not* clipped at zero.

    The unclipped expression is continuous in ``mu`` and ``eta``; it is what the optimiser and
    the root finder work on. Error rates entering the privacy-amplification term are capped at
    1/2, where the single-photon contribution vanishes. Gains, yields and error rates include
    the detector's after-pulses (:func:`_afterpulsed`; the identity without them).

    Kept as one function: the formulas of the paper, term by term, read best together.
    """
    y0 = system.detector.dark_count_prob
    e_d = system.misalignment
    f = system.f_ec
    q = system.sifting
    p_ap = system.detector.afterpulse_prob

    def single_photon_terms(eta: FloatArray) -> tuple[FloatArray, FloatArray]:
        y1 = y0 + eta
        with np.errstate(divide="ignore", invalid="ignore"):
            e1 = np.where(y1 > 0, (_E0 * y0 + e_d * eta) / y1, _E0)
        return _afterpulsed(y1, e1, p_ap)

    def signal(eta: FloatArray, mu: FloatArray | float) -> tuple[FloatArray, FloatArray]:
        return _afterpulsed(*_gain_qber_eta(eta, mu, y0, e_d), p_ap)

    if protocol == "decoy-bb84":

        def infinite_decoy_rate(eta: FloatArray, mu: FloatArray) -> FloatArray:
            gain, qber = signal(eta, mu)
            y1, e1 = single_photon_terms(eta)
            q1 = y1 * mu * np.exp(-mu)
            return q * (q1 * (1.0 - _h2(e1)) - f * gain * _h2(qber))

        return infinite_decoy_rate

    if protocol == "decoy-vacuum-weak":
        nu = _weak_decoy(system)

        y0_seen = y0 * (1.0 + p_ap)  # the vacuum's gain, after-pulses included

        def vacuum_weak_rate(eta: FloatArray, mu: FloatArray) -> FloatArray:
            gain, qber = signal(eta, mu)
            gain_nu, qber_nu = signal(eta, nu)
            # Ma et al. (2005), vacuum + weak decoy: lower bound on the single-photon yield.
            y1_low = (
                mu
                / (mu * nu - nu * nu)
                * (
                    gain_nu * math.exp(nu)
                    - gain * np.exp(mu) * nu * nu / (mu * mu)
                    - (mu * mu - nu * nu) / (mu * mu) * y0_seen
                )
            )
            y1_low = np.maximum(y1_low, 0.0)
            # ... and upper bound on the single-photon error rate.
            with np.errstate(divide="ignore", invalid="ignore"):
                e1_up = np.where(
                    y1_low > 0,
                    (qber_nu * gain_nu * math.exp(nu) - _E0 * y0_seen) / (y1_low * nu),
                    _E0,
                )
            e1_up = np.clip(e1_up, 0.0, _E0)
            q1_low = y1_low * mu * np.exp(-mu)
            return q * (q1_low * (1.0 - _h2(e1_up)) - f * gain * _h2(qber))

        return vacuum_weak_rate

    if protocol == "bb84-no-decoy":

        def no_decoy_rate(eta: FloatArray, mu: FloatArray) -> FloatArray:
            gain, qber = signal(eta, mu)
            multi = -np.expm1(-mu) - mu * np.exp(-mu)  # 1 - (1 + mu) exp(-mu)
            with np.errstate(divide="ignore", invalid="ignore"):
                omega = np.where(gain > 0, 1.0 - multi / gain, 0.0)
                e_single = np.where(omega > 0, qber / omega, _E0)
            omega = np.maximum(omega, 0.0)
            e_single = np.clip(e_single, 0.0, _E0)
            secure = gain * omega * (1.0 - _h2(e_single))
            return q * (secure - f * gain * _h2(qber))

        return no_decoy_rate

    def single_photon_rate(eta: FloatArray, mu: FloatArray) -> FloatArray:  # mu is ignored
        y1, e1 = single_photon_terms(eta)
        h = _h2(e1)
        return q * y1 * (1.0 - h - f * h) + np.zeros_like(mu)

    return single_photon_rate


def _mu_bounds(system: QKDSystem, protocol: str) -> tuple[float, float]:
    if protocol == "decoy-vacuum-weak":
        nu = _weak_decoy(system)
        return nu * (1.0 + 1e-6) + 1e-9, max(_MU_MAX, 2.0 * nu)
    return _MU_MIN, _MU_MAX


def _maximise(raw: RawRate, eta: FloatArray, lo: float, hi: float) -> tuple[FloatArray, FloatArray]:
    """Maximise ``raw(eta, mu)`` over ``mu`` in [lo, hi] for each ``eta`` (1-d).

    A log-spaced grid brackets the maximum, then a vectorized golden-section search on
    ``log(mu)`` refines it. Returns ``(mu_best, rate_best)`` (rate unclipped).
    """
    return maximise_1d(raw, eta, lo, hi, grid=_GRID, iterations=_GOLDEN_ITERATIONS)


def _raw_rate_and_mu(
    system: QKDSystem, eta: FloatArray, protocol: str, mu: ArrayLike | None
) -> tuple[FloatArray, FloatArray]:
    raw = _raw_rate(system, protocol)
    flat = eta.ravel()
    if protocol == "single-photon":
        if mu is not None:
            _mu_array(mu, protocol, 0.0)
        ones = np.ones_like(flat)
        return raw(flat, ones).reshape(eta.shape), ones.reshape(eta.shape)
    if mu is None:
        lo, hi = _mu_bounds(system, protocol)
        mu_best, rate = _maximise(raw, flat, lo, hi)
        return rate.reshape(eta.shape), mu_best.reshape(eta.shape)
    nu = _weak_decoy(system) if protocol == "decoy-vacuum-weak" else 0.0
    eta_b, m = np.broadcast_arrays(eta, _mu_array(mu, protocol, nu))
    return raw(eta_b, m), m.astype(float)


def key_rate_and_mu(
    system: QKDSystem,
    distance_km: ArrayLike,
    protocol: str = "decoy-bb84",
    mu: ArrayLike | None = None,
) -> tuple[FloatArray, FloatArray]:
    """Secret key rate per pulse and the signal intensity it was computed at.

    Parameters
    ----------
    system : QKDSystem
        The QKD system.
    distance_km : array_like
        Link lengths in km (``>= 0``).
    protocol : str
        One of :data:`PROTOCOLS`.
    mu : array_like, optional
        Signal mean photon number; ``None`` optimises it for each distance (bounded search
        over ``(0, 2]``; over ``(nu, 2]`` for ``"decoy-vacuum-weak"``). Must be ``None`` for
        ``"single-photon"``.

    Returns
    -------
    rate, mu : ndarray
        Rate in secret bits per pulse (``>= 0``) and the intensity used, both of the shape of
        ``numpy.asarray(distance_km)`` (broadcast with ``mu`` when ``mu`` is an array). Where
        the rate is zero the reported optimal ``mu`` maximises the (negative) unclipped rate
        and has no operational meaning.

    References
    ----------
    X. Ma, B. Qi, Y. Zhao, H.-K. Lo, Phys. Rev. A 72, 012326 (2005).

    Examples
    --------
    >>> from qkd.params import get_preset
    >>> rate, mu = key_rate_and_mu(get_preset("gys-2004"), 0.0)
    >>> round(float(mu), 2), f"{float(rate):.2e}"
    (0.49, '2.55e-03')
    """
    _check_protocol(protocol)
    d = lengths_km(distance_km)
    eta = system.transmittance(d)
    raw, mu_used = _raw_rate_and_mu(system, eta, protocol, mu)
    return _array(np.maximum(raw, 0.0)), _array(mu_used)


def key_rate_per_pulse(
    system: QKDSystem,
    distance_km: ArrayLike,
    protocol: str = "decoy-bb84",
    mu: ArrayLike | None = None,
) -> FloatArray:
    """Asymptotic secret key rate in bits per sent pulse.

    ``R = q [Q1 (1 - H2(e1)) - f Q_mu H2(E_mu)]`` clipped at 0, with ``Q1`` and ``e1`` given
    by the chosen protocol (see the module docstring).

    Parameters
    ----------
    system : QKDSystem
        The QKD system.
    distance_km : array_like
        Link lengths in km (``>= 0``). A scalar gives a 0-d array.
    protocol : str
        One of :data:`PROTOCOLS` (default ``"decoy-bb84"``, infinitely many decoys).
    mu : array_like, optional
        Signal intensity, broadcast against ``distance_km``; ``None`` (default) optimises it
        for each distance.

    Returns
    -------
    ndarray
        Rates of the shape of ``numpy.asarray(distance_km)``.

    Raises
    ------
    UnknownNameError
        For an unknown protocol.
    ParameterError
        For a negative distance or an invalid ``mu``.

    References
    ----------
    X. Ma, B. Qi, Y. Zhao, H.-K. Lo, Phys. Rev. A 72, 012326 (2005); H.-K. Lo, X. Ma, K. Chen,
    Phys. Rev. Lett. 94, 230504 (2005); D. Gottesman et al., Quantum Inf. Comput. 4, 325 (2004).

    Examples
    --------
    >>> from qkd.params import get_preset
    >>> gys = get_preset("gys-2004")
    >>> r = key_rate_per_pulse(gys, [0.0, 50.0, 150.0])
    >>> [f"{x:.2e}" for x in r]
    ['2.55e-03', '2.23e-04', '0.00e+00']
    >>> float(key_rate_per_pulse(gys, 200.0, "single-photon"))
    0.0
    """
    return key_rate_and_mu(system, distance_km, protocol, mu)[0]


def key_rate_bps(
    system: QKDSystem,
    distance_km: ArrayLike,
    protocol: str = "decoy-bb84",
    mu: ArrayLike | None = None,
) -> FloatArray:
    """Asymptotic secret key rate in bit/s: the rate per pulse times ``source.clock_hz``.

    Same arguments as :func:`key_rate_per_pulse`. A scalar distance gives a 0-d float64
    array, so ``float(key_rate_bps(system, 10.0))`` is the usual way to get a number.

    References
    ----------
    X. Ma, B. Qi, Y. Zhao, H.-K. Lo, Phys. Rev. A 72, 012326 (2005).

    Examples
    --------
    >>> from qkd.params import get_preset
    >>> r = key_rate_bps(get_preset("gys-2004"), 25.0)
    >>> r.shape, round(float(r))
    ((), 1509)
    """
    return _array(key_rate_per_pulse(system, distance_km, protocol, mu) * system.source.clock_hz)


def optimal_mu(
    system: QKDSystem, distance_km: ArrayLike, protocol: str = "decoy-bb84"
) -> FloatArray:
    """Signal intensity that maximises the key rate at each distance.

    For ``"single-photon"`` the intensity is fixed at 1 (exactly one photon per pulse).

    References
    ----------
    X. Ma, B. Qi, Y. Zhao, H.-K. Lo, Phys. Rev. A 72, 012326 (2005) (optimal ``mu ~ 0.48``
    for GYS with infinitely many decoys).

    Examples
    --------
    >>> from qkd.params import get_preset
    >>> round(float(optimal_mu(get_preset("gys-2004"), 0.0)), 3)
    0.486
    """
    return key_rate_and_mu(system, distance_km, protocol, None)[1]


def max_distance(system: QKDSystem, protocol: str = "decoy-bb84", mu: float | None = None) -> float:
    """Largest link length (km) with a positive key rate.

    Finds the root in ``L`` of the unclipped rate (optimised over ``mu`` when ``mu`` is
    ``None``) with Brent's method. Returns ``0.0`` if no key is possible at 0 km and ``inf``
    if the rate never reaches zero (lossless fibre).

    References
    ----------
    X. Ma, B. Qi, Y. Zhao, H.-K. Lo, Phys. Rev. A 72, 012326 (2005) (GYS: about 142 km with
    infinitely many decoys).

    Examples
    --------
    >>> from qkd.params import get_preset
    >>> round(max_distance(get_preset("gys-2004")), 1)
    142.2
    """
    _check_protocol(protocol)

    def g(length: float) -> float:
        eta = system.transmittance(np.array([length]))
        raw, _ = _raw_rate_and_mu(system, eta, protocol, mu)
        return float(raw[0])

    if g(0.0) <= 0.0:
        return 0.0
    if system.fibre.attenuation_db_per_km == 0.0:
        return math.inf
    hi = 50.0
    while g(hi) > 0.0:
        hi *= 2.0
        if hi > 1e6:
            return math.inf
    return float(brentq(g, 0.0, hi, xtol=1e-9, rtol=1e-12, maxiter=200))


def plob_bound(transmittance: ArrayLike) -> FloatArray:
    """PLOB bound: the secret-key capacity of a pure-loss channel, ``-log2(1 - eta)``.

    Bits per channel use (per pulse) for transmittance ``eta``; no repeaterless protocol
    can exceed it.

    References
    ----------
    S. Pirandola, R. Laurenza, C. Ottaviani, L. Banchi, "Fundamental limits of repeaterless
    quantum communications", Nat. Commun. 8, 15043 (2017).

    Examples
    --------
    >>> float(plob_bound(0.5))
    1.0
    >>> round(float(plob_bound(0.01)), 5)
    0.0145
    """
    t = _check_transmittance(transmittance)
    with np.errstate(divide="ignore"):
        return np.asarray(-np.log1p(-t) / math.log(2.0), dtype=float)


def tgw_bound(transmittance: ArrayLike) -> FloatArray:
    """TGW bound ``log2((1 + eta) / (1 - eta))`` (bits per channel use), above PLOB.

    References
    ----------
    M. Takeoka, S. Guha, M. M. Wilde, "Fundamental rate-loss tradeoff for optical quantum
    key distribution", Nat. Commun. 5, 5235 (2014).

    Examples
    --------
    >>> round(float(tgw_bound(0.5)), 4)
    1.585
    """
    t = _check_transmittance(transmittance)
    with np.errstate(divide="ignore"):
        return np.asarray((np.log1p(t) - np.log1p(-t)) / math.log(2.0), dtype=float)
