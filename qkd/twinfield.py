"""Twin-field QKD: sending-or-not-sending (SNS) and phase-matching (PM), vectorized over links.

Alice and Bob each send a weak coherent pulse to an untrusted relay, Charlie, in the middle
of the link, who interferes them on a 50:50 beam splitter and announces which of his two
threshold detectors clicked. A detection needs only *one* photon to cross *half* the link,
so the rate scales as ``sqrt(eta)`` of the whole link and can beat the repeaterless (PLOB)
bound ``-log2(1 - eta)``, which no point-to-point protocol can exceed.

Conventions (both protocols)
----------------------------
* **Rate per pulse pair** (one time window, one pulse from each side); ``*_bps`` multiplies
  by ``clock_hz``.
* **Dark counts per detector**: ``detector.dark_count_prob`` is ``p_d`` of *each* of
  Charlie's two detectors per window; ``detector.efficiency`` ``eta_d`` multiplies each
  arm's fibre transmittance: ``eta = eta_d 10**(-alpha (L/2) / 10)`` (relay in the middle;
  asymmetric twin-field links need the asymmetric-intensity variants, not implemented).
* A window succeeds when exactly one detector clicks.
* ``f`` (``f_ec``) multiplies the error-correction leakage ``Q H2(E)`` only.
* **Asymptotic, infinitely many decoys**: the photon-number yields are known exactly; no
  finite-size version is implemented (the TF finite-key analyses, e.g. Jiang et al. 2019 for
  SNS, need their own joint optimisation of a dozen settings).
* The repeaterless bound is drawn on the fibre alone (``eta = 10**(-alpha L / 10)``,
  detectors perfect), the stricter convention of the twin-field papers.

``"sns"`` -- Wang, Yu & Hu (2018)
    In a Z window each side sends a phase-randomised pulse of intensity ``mu`` with
    probability ``eps`` (bit 1 for Alice, 0 for Bob) or nothing. Windows where exactly one
    side sends give the right bit; both or neither sending give an error. With ``S_n`` the
    probability of exactly one click when ``n`` sides send::

        S_0 = 2 p_d (1 - p_d)
        S_1 = 2 (1 - p_d) e^{-eta mu / 2} [1 - (1 - p_d) e^{-eta mu / 2}]
        S_2 = 2 (1 - p_d) e^{-eta mu} I0(eta mu) - 2 (1 - p_d)^2 e^{-2 eta mu}

    (``S_2`` averages over the random relative phase), ``S_Z = (1-eps)^2 S_0 + 2 eps (1-eps)
    S_1 + eps^2 S_2`` and ``E_Z S_Z = (1-eps)^2 S_0 + eps^2 S_2``. Untagged single photons
    (one side sends exactly one photon, the other nothing) have the yield ``s_1 = (1 - p_d)
    [eta + 2 p_d (1 - eta)]`` and the phase-flip error ``e_1 = [e_d eta + p_d (1 - eta)]
    (1 - p_d) / s_1`` (misalignment ``e_d`` acts only on the X windows that measure it)::

        R_SNS = 2 eps (1 - eps) mu e^{-mu} s_1 [1 - H2(e_1)] - f S_Z H2(E_Z)

    with ``eps`` and ``mu`` optimised per link. The fraction of Z windows is taken as 1
    (asymptotic: the decoy windows are a vanishing fraction); no further sifting factor.
``"pm"`` -- Ma, Zeng & Zhou (2018)
    Both sides send coherent pulses of intensity ``mu/2`` with phases ``pi k + phi``, the
    random phases ``phi`` drawn from ``M`` slices (``phase_slices``) and announced; only
    windows with matching slices (or slices ``M/2`` apart) are kept: a **sifting factor
    2/M**. The relative phase of kept pairs is uniform in ``[-pi/M, pi/M]``; with phase
    difference ``d`` the two ports receive ``eta mu cos^2(d/2)`` and ``eta mu sin^2(d/2)``
    photons on average, and the misalignment ``e_d`` flips the click's bit. ``Q_mu`` and
    ``E_Z`` average over ``d`` (Gauss-Legendre). The phase error is the fraction of
    detections from even photon numbers, ``E_X = 1 - sum_{k odd} e^{-mu} mu^k / k! Y_k /
    Q_mu`` with ``Y_k = (1 - p_d) [1 - (1 - 2 p_d)(1 - eta)^k]`` (summed in closed form)::

        R_PM = (2 / M) Q_mu [1 - f H2(E_Z) - H2(E_X)]

    with ``mu`` optimised per link.

Published values vs this module: both papers report that their protocols exceed the
repeaterless bound at long distances. This module's crossings and reaches (asymptotic;
``plob_crossing_km`` and ``qkd.kinds`` ``max_distance_km``):

==============  ========  =======================  ========================  ===========
preset          protocol  crosses PLOB, fibre only  crosses PLOB, detectors  reach
                                                    counted
==============  ========  =======================  ========================  ===========
``mzz-2018``    SNS       never                     222 km                    331 km
``mzz-2018``    PM        342 km                    244 km                    397 km
``fang-2020``   SNS       320 km                    292 km                    581 km
``fang-2020``   PM        358 km                    331 km                    658 km
==============  ========  =======================  ========================  ===========

``"mzz-2018"`` has the simulation parameters of Ma, Zeng & Zhou as remembered (``eta_d =
14.5%``, ``p_d = 8e-8``, ``e_d = 1.5%``, ``f = 1.15``, ``M = 16``, 0.2 dB/km); the papers
could not be re-read here (offline), so no published crossing distance is quoted.
``tests/qkd/test_twinfield.py`` asserts the crossings (PM on ``mzz-2018`` against the
fibre-only bound, both protocols against the detector-counted bound, both on ``fang-2020``
against the fibre-only bound) and the ``sqrt(eta)`` scaling without dark counts.

References
----------
.. [WYH18] X.-B. Wang, Z.-W. Yu, X.-L. Hu, "Twin-field quantum key distribution with large
   misalignment error", Phys. Rev. A 98, 062323 (2018).
.. [MZZ18] X. Ma, P. Zeng, H. Zhou, "Phase-matching quantum key distribution", Phys. Rev. X
   8, 031043 (2018).
.. [Luc18] M. Lucamarini, Z. L. Yuan, J. F. Dynes, A. J. Shields, "Overcoming the rate-distance
   limit of quantum key distribution without quantum repeaters", Nature 557, 400 (2018).
.. [PLOB17] S. Pirandola, R. Laurenza, C. Ottaviani, L. Banchi, Nat. Commun. 8, 15043 (2017).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import i0e

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
from qkd.rates import plob_bound

__all__ = [
    "PRESETS",
    "TwinFieldSystem",
    "plob_crossing_km",
    "pm_key_rate_bps",
    "pm_key_rate_per_pulse",
    "repeaterless_bound",
    "sns_key_rate_bps",
    "sns_key_rate_per_pulse",
    "sns_rate_and_settings",
]

FloatArray = NDArray[np.float64]

_MU_BOUNDS_SNS = (1e-3, 1.0)
_EPS_BOUNDS = (1e-3, 0.5)
_MU_BOUNDS_PM = (1e-4, 2.0)
_NODES, _WEIGHTS = np.polynomial.legendre.leggauss(12)


@dataclass(frozen=True)
class TwinFieldSystem:
    """A twin-field link: two phase-stabilised sources and an untrusted relay in the middle.

    Parameters
    ----------
    name : str
        A short name (the preset name for presets).
    fibre : Fibre
        The fibre (both halves).
    detector : Detector
        Charlie's two detectors: ``efficiency`` in (0, 1], ``dark_count_prob`` per detector
        and window in [0, 1); dead time and after-pulses must be 0 (not modelled).
    clock_hz : float
        Window (pulse-pair) rate, ``> 0``.
    misalignment : float
        ``e_d`` in [0, 0.5]: SNS phase-flip error of the X windows; PM bit-flip error.
    f_ec : float
        Error-correction inefficiency, ``>= 1``.
    phase_slices : int
        ``M``, the number of phase slices of PM (even, ``>= 2``); unused by SNS.
    mu : float or None
        Fixed signal intensity (SNS: per side; PM: total of both sides), ``None`` to
        optimise per link.
    send_prob : float or None
        Fixed SNS sending probability ``eps`` in (0, 1), ``None`` to optimise; unused by PM.
    reference : str
        Where the numbers come from.

    Examples
    --------
    >>> PRESETS["mzz-2018"].phase_slices
    16
    """

    name: str
    fibre: Fibre
    detector: Detector
    clock_hz: float
    misalignment: float = 0.015
    f_ec: float = 1.15
    phase_slices: int = 16
    mu: float | None = None
    send_prob: float | None = None
    reference: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        check_pulse_link(self.clock_hz, self.misalignment, self.f_ec)
        m = self.phase_slices
        if not (isinstance(m, int) and not isinstance(m, bool) and m >= 2 and m % 2 == 0):
            raise ParameterError("phase_slices", m, "an even integer >= 2")
        if self.mu is not None:
            check_number("mu", self.mu, 0 < self.mu <= 10, "in (0, 10] or None (optimised)")
        if self.send_prob is not None:
            p = self.send_prob
            check_number("send_prob", p, 0 < p < 1, "in (0, 1) or None (optimised)")
        check_ideal_detector(self.detector, "TF-QKD")

    def replace(self, **changes: Any) -> TwinFieldSystem:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def arm_transmittance(self, distance_km: ArrayLike) -> FloatArray:
        """``eta``: detector efficiency times the fibre transmittance of half the link.

        Examples
        --------
        >>> round(float(PRESETS["mzz-2018"].arm_transmittance(100.0)), 5)
        0.0145
        """
        d = lengths_km(distance_km)
        return self.detector.efficiency * self.fibre.transmittance(d / 2.0)


# ---------------------------------------------------------------------------------------------
# sending-or-not-sending


def _sns_raw(
    system: TwinFieldSystem, eta: FloatArray, eps: FloatArray | float, mu: FloatArray | float
) -> FloatArray:
    p_d = system.detector.dark_count_prob
    keep = 1.0 - p_d
    n = eta * mu
    s0 = 2.0 * p_d * keep
    s1 = 2.0 * keep * np.exp(-n / 2.0) * (1.0 - keep * np.exp(-n / 2.0))
    s2 = 2.0 * keep * i0e(n) - 2.0 * keep**2 * np.exp(-2.0 * n)  # e^{-n} I0(n) = i0e(n)
    none, one, both = (1 - eps) ** 2, 2 * eps * (1 - eps), eps**2
    s_z = none * s0 + one * s1 + both * s2
    e_z = (none * s0 + both * s2) / s_z
    y1 = keep * (eta + 2.0 * p_d * (1.0 - eta))
    e1 = keep * (system.misalignment * eta + p_d * (1.0 - eta)) / y1
    untagged = one * mu * np.exp(-mu) * y1
    return untagged * (1.0 - h2(e1)) - system.f_ec * s_z * h2(e_z)


def sns_rate_and_settings(
    system: TwinFieldSystem, distance_km: ArrayLike
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """SNS key rate per window and the ``(send_prob, mu)`` it was found at.

    Examples
    --------
    >>> r, eps, mu = sns_rate_and_settings(PRESETS["mzz-2018"], [100.0, 300.0])
    >>> bool(r[0] > r[1] > 0), bool(np.all((eps > 0) & (eps < 0.5)))
    (True, True)
    """
    d = lengths_km(distance_km)
    eta = system.arm_transmittance(d.ravel())
    eps_fixed, mu_fixed = system.send_prob, system.mu
    if eps_fixed is not None and mu_fixed is not None:
        eps = np.full(eta.shape, eps_fixed)
        mu = np.full(eta.shape, mu_fixed)
        rate = _sns_raw(system, eta, eps, mu)
    elif eps_fixed is not None:
        mu, rate = maximise_1d(lambda e, m: _sns_raw(system, e, eps_fixed, m), eta, *_MU_BOUNDS_SNS)
        eps = np.full(eta.shape, eps_fixed)
    elif mu_fixed is not None:
        eps, rate = maximise_1d(lambda e, p: _sns_raw(system, e, p, mu_fixed), eta, *_EPS_BOUNDS)
        mu = np.full(eta.shape, mu_fixed)
    else:
        eps, mu, rate = maximise_2d(
            lambda e, p, m: _sns_raw(system, e, p, m), eta, _EPS_BOUNDS, _MU_BOUNDS_SNS
        )
    rate, eps, mu = clipped_rate_and_settings(d.shape, rate, eps, mu)
    return rate, eps, mu


def sns_key_rate_per_pulse(system: TwinFieldSystem, distance_km: ArrayLike) -> FloatArray:
    """Asymptotic SNS-TF-QKD key rate in bits per window (pulse pair), settings optimised.

    References
    ----------
    X.-B. Wang, Z.-W. Yu, X.-L. Hu, Phys. Rev. A 98, 062323 (2018).

    Examples
    --------
    >>> r = sns_key_rate_per_pulse(PRESETS["mzz-2018"], [0.0, 1000.0])
    >>> bool(r[0] > 1e-4), float(r[1])
    (True, 0.0)
    """
    return sns_rate_and_settings(system, distance_km)[0]


def sns_key_rate_bps(system: TwinFieldSystem, distance_km: ArrayLike) -> FloatArray:
    """Asymptotic SNS-TF-QKD key rate in bit/s (per window times ``clock_hz``).

    References
    ----------
    X.-B. Wang, Z.-W. Yu, X.-L. Hu, Phys. Rev. A 98, 062323 (2018).

    Examples
    --------
    >>> bool(sns_key_rate_bps(PRESETS["mzz-2018"], 200.0) > 0)
    True
    """
    return np.asarray(sns_key_rate_per_pulse(system, distance_km) * system.clock_hz, dtype=float)


# ---------------------------------------------------------------------------------------------
# phase matching


def _pm_raw(system: TwinFieldSystem, eta: FloatArray, mu: FloatArray) -> FloatArray:
    p_d = system.detector.dark_count_prob
    keep = 1.0 - p_d
    m = system.phase_slices
    e_d = system.misalignment
    n = eta * mu
    # phase difference uniform in [-pi/M, pi/M]: Gauss-Legendre nodes on [0, pi/M]
    delta = (math.pi / m) * (_NODES + 1.0) / 2.0
    weights = _WEIGHTS / 2.0
    shape = np.broadcast(n).shape
    nn = np.asarray(n)[..., None]
    n_right = nn * np.cos(delta / 2.0) ** 2
    n_wrong = nn * np.sin(delta / 2.0) ** 2
    right_alone = (1.0 - keep * np.exp(-n_right)) * keep * np.exp(-n_wrong)
    wrong_alone = (1.0 - keep * np.exp(-n_wrong)) * keep * np.exp(-n_right)
    p_right = np.sum(right_alone * weights, axis=-1).reshape(shape)
    p_wrong = np.sum(wrong_alone * weights, axis=-1).reshape(shape)
    gain = p_right + p_wrong
    e_z = (e_d * p_right + (1.0 - e_d) * p_wrong) / gain
    # odd photon numbers: sum_{k odd} P_mu(k) Y_k in closed form
    odd = keep * (
        np.exp(-mu) * np.sinh(mu) - (1.0 - 2.0 * p_d) * np.exp(-mu) * np.sinh((1.0 - eta) * mu)
    )
    e_x = np.clip(1.0 - odd / gain, 0.0, 0.5)
    return (2.0 / m) * gain * (1.0 - system.f_ec * h2(e_z) - h2(e_x))


def pm_rate_and_mu(
    system: TwinFieldSystem, distance_km: ArrayLike
) -> tuple[FloatArray, FloatArray]:
    """PM key rate per window and the total intensity ``mu`` it was found at.

    Examples
    --------
    >>> r, mu = pm_rate_and_mu(PRESETS["mzz-2018"], [100.0, 300.0])
    >>> bool(r[0] > r[1] > 0)
    True
    """
    d = lengths_km(distance_km)
    eta = system.arm_transmittance(d.ravel())
    if system.mu is not None:
        mu = np.full(eta.shape, system.mu)
        rate = _pm_raw(system, eta, mu)
    else:
        mu, rate = maximise_1d(lambda e, x: _pm_raw(system, e, x), eta, *_MU_BOUNDS_PM)
    rate, mu = clipped_rate_and_settings(d.shape, rate, mu)
    return rate, mu


def pm_key_rate_per_pulse(system: TwinFieldSystem, distance_km: ArrayLike) -> FloatArray:
    """Asymptotic PM-QKD key rate in bits per window (pulse pair), ``mu`` optimised.

    References
    ----------
    X. Ma, P. Zeng, H. Zhou, Phys. Rev. X 8, 031043 (2018).

    Examples
    --------
    >>> r = pm_key_rate_per_pulse(PRESETS["mzz-2018"], [0.0, 1000.0])
    >>> bool(r[0] > 1e-4), float(r[1])
    (True, 0.0)
    """
    return pm_rate_and_mu(system, distance_km)[0]


def pm_key_rate_bps(system: TwinFieldSystem, distance_km: ArrayLike) -> FloatArray:
    """Asymptotic PM-QKD key rate in bit/s (per window times ``clock_hz``).

    References
    ----------
    X. Ma, P. Zeng, H. Zhou, Phys. Rev. X 8, 031043 (2018).

    Examples
    --------
    >>> bool(pm_key_rate_bps(PRESETS["mzz-2018"], 200.0) > 0)
    True
    """
    return np.asarray(pm_key_rate_per_pulse(system, distance_km) * system.clock_hz, dtype=float)


# ---------------------------------------------------------------------------------------------
# the repeaterless bound


def repeaterless_bound(
    system: TwinFieldSystem, distance_km: ArrayLike, *, detectors: bool = False
) -> FloatArray:
    """PLOB bound in bits per channel use for the whole link.

    ``detectors=False`` (default) takes the fibre alone (``10**(-alpha L / 10)``, perfect
    detectors: the stricter comparison); ``detectors=True`` counts the detector efficiency
    as part of the channel (``eta_d 10**(-alpha L / 10)``: the comparison at equal detector
    technology).

    References
    ----------
    S. Pirandola, R. Laurenza, C. Ottaviani, L. Banchi, Nat. Commun. 8, 15043 (2017).

    Examples
    --------
    >>> round(float(repeaterless_bound(PRESETS["mzz-2018"], 50.0)), 4)
    0.152
    """
    eta = system.fibre.transmittance(lengths_km(distance_km))
    if detectors:
        eta = system.detector.efficiency * eta
    return plob_bound(eta)


def plob_crossing_km(
    rate_per_pulse: Callable[[TwinFieldSystem, ArrayLike], FloatArray],
    system: TwinFieldSystem,
    *,
    max_km: float = 1000.0,
    step_km: float = 1.0,
    detectors: bool = False,
) -> float:
    """Shortest distance from which ``rate_per_pulse`` exceeds :func:`repeaterless_bound`.

    Scans ``[0, max_km]`` in ``step_km`` steps, then bisects the first sign change of
    ``rate - bound`` to 0.01 km. Returns ``nan`` if the rate never exceeds the bound.
    ``detectors`` is passed to :func:`repeaterless_bound`.

    Examples
    --------
    >>> x = plob_crossing_km(pm_key_rate_per_pulse, PRESETS["mzz-2018"])
    >>> 300.0 < x < 400.0
    True
    """
    grid = np.arange(0.0, max_km + step_km, step_km)

    def excess(lengths: FloatArray) -> FloatArray:
        return rate_per_pulse(system, lengths) - repeaterless_bound(
            system, lengths, detectors=detectors
        )

    above = excess(grid) > 0
    if not np.any(above):
        return math.nan
    first = int(np.argmax(above))
    if first == 0:
        return 0.0
    lo, hi = float(grid[first - 1]), float(grid[first])
    while hi - lo > 0.01:
        mid = 0.5 * (lo + hi)
        if float(excess(np.array([mid]))[0]) > 0:
            hi = mid
        else:
            lo = mid
    return hi


_MZZ = TwinFieldSystem(
    name="mzz-2018",
    fibre=Fibre(attenuation_db_per_km=0.2),
    detector=Detector(efficiency=0.145, dark_count_prob=8e-8),
    clock_hz=1e9,
    misalignment=0.015,
    f_ec=1.15,
    phase_slices=16,
    reference=(
        "X. Ma, P. Zeng, H. Zhou, PRX 8, 031043 (2018), simulation parameters as remembered "
        "(offline): eta_d 14.5%, p_d 8e-8 per detector, e_d 1.5%, f 1.15, M 16, 0.2 dB/km; "
        "headline: the key rate exceeds the repeaterless bound at long distance. The 1 GHz "
        "clock is representative, not from the paper."
    ),
)

_FANG_2020 = TwinFieldSystem(
    name="fang-2020",
    fibre=Fibre(attenuation_db_per_km=0.16),
    detector=Detector(efficiency=0.60, dark_count_prob=1e-8),
    clock_hz=1e9,
    misalignment=0.04,
    f_ec=1.16,
    phase_slices=16,
    reference=(
        "representative of the PM-QKD field-fibre system of X.-T. Fang et al., Nat. Photon. "
        "14, 422 (2020) (ultra-low-loss fibre, SNSPDs; parameters representative, not read "
        "from the paper, offline)"
    ),
)

PRESETS: Mapping[str, TwinFieldSystem] = MappingProxyType({p.name: p for p in (_MZZ, _FANG_2020)})
"""Twin-field systems by name, each with its ``reference``."""
