"""Satellite-to-ground QKD downlinks: passes, slant range, loss over a pass, key per pass.

Geometry (stated simplifications): a circular orbit of given altitude and inclination around
a spherical Earth (radius 6,371 km) that rotates at the sidereal rate, with the secular J2
drift of the ascending node (so a sun-synchronous inclination behaves as one); no drag, no
eccentricity, no refraction. A ground station is a latitude, longitude and altitude on that
sphere. The elevation is the angle of the line of sight above the station's horizontal
plane, the slant range the length of that line; a pass is a stretch above the station's
elevation mask (:func:`passes`). Passes can also be given directly as a list of windows.

Loss of the downlink at slant range ``L`` and elevation ``el`` (:class:`Downlink`), three
stated terms and the terminals' efficiencies:

* **geometric**: a Gaussian beam with waist ``w0 = D_tx / 2`` and beam quality ``M2`` has
  radius ``w(L) = w0 sqrt(1 + (L / z_R)^2)``, ``z_R = pi w0^2 / (M2 lambda)`` (far-field
  half-angle divergence ``M2 lambda / (pi w0)``); a random pointing error of ``sigma`` rad
  rms per axis spreads the long-term spot to ``w_eff^2 = w(L)^2 + 4 (sigma L)^2`` (exact
  for an aperture small against the spot), and a receiver of diameter ``D_rx`` collects
  ``1 - exp(-2 (D_rx / 2)^2 / w_eff^2)``;
* **atmospheric**: the zenith transmittance ``T0`` raised to the air mass of Kasten & Young
  (1989), ``1 / (sin el + 0.50572 (el + 6.07995 deg)^-1.6364)`` normalised to 1 at zenith
  (``1 / sin el`` away from the horizon); turbulence is neglected (a downlink crosses it
  at the end of its path);
* **terminals**: the transmitter's optics ``eta_tx`` and the receiver's telescope and
  analysis optics ``eta_rx``; the detectors' efficiency is that of the QKD system
  (``system.detector.efficiency``), as for fibre links.

The key rates per pulse come from the decoy-state BB84 model of :mod:`qkd.rates` evaluated at
the total transmittance (the same formulas as a fibre link of equal loss), at the source's
fixed signal intensity ``source.mu``. The *sifted* rate is ``clock * q * sum_k p_k Q_k`` (every
detection of every intensity in matching bases), the *secret* rate ``clock * p_signal *
R(mu)`` (asymptotic: the infinite-decoy rate of the signal pulses, no finite-key
correction). Below the elevation mask both are 0.

Micius (preset :data:`MICIUS`) against Liao et al. (2017), quoted from memory (the paper
could not be re-read while this was written, offline; the per-pass key of about 300 kbit is
corroborated by press reports of the paper). The pass is the one of :data:`MICIUS_ORBIT`
over :data:`XINGLONG` whose culmination is closest to the 49 deg that a 645 km minimum
slant range implies at 500 km, cut to the paper's 273 s of data around culmination:

==========================================  ==================  ==========================
quantity                                    Liao et al. 2017    this module (MICIUS)
==========================================  ==================  ==========================
sifted key rate at 645 km slant range       about 12 kbit/s     11.9 kbit/s (fitted, see
                                                                below)
sifted key rate at 1,200 km                 about 1.1 kbit/s    1.36 kbit/s (+23%)
one pass, 273 s around culmination at       645 to 1,200 km     644 to 1,195 km
about 49 deg (slant range over the data)
sifted key of that pass                     1,671,072 bits      1,727,234 bits (+3.4%)
final key of that pass (19 Dec 2016,        300,939 bits        501,348 bits (x 1.67:
Xinglong)                                                       asymptotic, no finite-key
                                                                correction)
QBER                                        about 1.1%          1.05-1.5% over the pass
==========================================  ==================  ==========================

One parameter is fitted: the receiver optics ``eta_rx`` sets the 645 km point; the 1,200 km
rate and the key of a pass then follow from the geometry, the atmosphere and the QKD model.
Terminal numbers from the paper's description (memory): 300 mm transmitter at 850 nm with a
divergence of about 10 urad (full angle), the 1 m telescope at Xinglong, a 100 MHz
decoy-state source (signal 0.8, decoy 0.1, vacuum, sent with probabilities 0.5, 0.25,
0.25), QBER of about 1-2%. Representative, not read from the paper: pointing jitter 1 urad
rms, zenith transmittance 0.55 at 850 nm (an aerosol optical depth of about 0.6, hazy
continental site), transmitter optics 0.5, detector efficiency 0.5, background yield 5e-7.
The secret key here is asymptotic; the paper's final key includes finite-key corrections,
and real error correction, so the model's key of the pass is above the published one (the
table's ratios are asserted by ``tests/qkd/test_satellite.py``). Time-varying supply in the
network (the pass as a rate schedule) is :mod:`network.schedule`.

References
----------
.. [Liao17] S.-K. Liao et al., "Satellite-to-ground quantum key distribution", Nature 549,
   43-47 (2017).
.. [KY89] F. Kasten, A. T. Young, "Revised optical air mass tables and approximation
   formula", Appl. Opt. 28, 4735 (1989).
.. [Ma05] X. Ma, B. Qi, Y. Zhao, H.-K. Lo, Phys. Rev. A 72, 012326 (2005).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import brentq, minimize_scalar

from qkd.errors import ParameterError
from qkd.linkbase import check_number
from qkd.params import Detector, Fibre, QKDSystem, Source
from qkd.rates import _check_protocol, _gain_qber_eta, _raw_rate_and_mu

__all__ = [
    "EARTH_RADIUS_KM",
    "MICIUS",
    "MICIUS_ORBIT",
    "XINGLONG",
    "Downlink",
    "GroundStation",
    "Orbit",
    "Pass",
    "PassKey",
    "PassProfile",
    "air_mass",
    "key_per_pass",
    "look_angles",
    "pass_profile",
    "passes",
]

FloatArray = NDArray[np.float64]

EARTH_RADIUS_KM = 6371.0
"""Mean Earth radius (spherical Earth)."""
_GM_KM3_S2 = 398600.4418  # Earth's gravitational parameter
_OMEGA_EARTH = 7.2921150e-5  # sidereal rotation rate, rad/s
_J2 = 1.08262668e-3


# ---------------------------------------------------------------------------------------------
# geometry


@dataclass(frozen=True)
class Orbit:
    """A circular orbit.

    Parameters
    ----------
    altitude_km : float
        Height above the spherical Earth (``> 0``).
    inclination_deg : float
        In [0, 180].
    raan_deg : float
        Right ascension of the ascending node at ``t = 0``.
    arg_latitude_deg : float
        Angle from the ascending node to the satellite at ``t = 0``.
    earth_angle_deg : float
        Earth's rotation angle (Greenwich sidereal angle) at ``t = 0``.
    j2 : bool
        Apply the secular J2 drift of the node (default True).

    Examples
    --------
    >>> round(Orbit(500.0, 97.4).period_s / 60, 1)
    94.5
    """

    altitude_km: float
    inclination_deg: float
    raan_deg: float = 0.0
    arg_latitude_deg: float = 0.0
    earth_angle_deg: float = 0.0
    j2: bool = True

    def __post_init__(self) -> None:
        check_number("orbit.altitude_km", self.altitude_km, self.altitude_km > 0, "> 0")
        i = self.inclination_deg
        check_number("orbit.inclination_deg", i, 0 <= i <= 180, "in [0, 180]")
        for name in ("raan_deg", "arg_latitude_deg", "earth_angle_deg"):
            v = getattr(self, name)
            check_number(f"orbit.{name}", v, True, "finite")

    @property
    def radius_km(self) -> float:
        """Orbit radius from the Earth's centre."""
        return EARTH_RADIUS_KM + self.altitude_km

    @property
    def mean_motion(self) -> float:
        """Angular rate in rad/s."""
        return math.sqrt(_GM_KM3_S2 / self.radius_km**3)

    @property
    def period_s(self) -> float:
        """Orbital period."""
        return 2 * math.pi / self.mean_motion

    @property
    def node_rate(self) -> float:
        """Secular drift of the ascending node (rad/s; 0 without J2)."""
        if not self.j2:
            return 0.0
        ratio = EARTH_RADIUS_KM / self.radius_km
        return (
            -1.5 * self.mean_motion * _J2 * ratio**2 * math.cos(math.radians(self.inclination_deg))
        )

    def position_ecef(self, t_s: ArrayLike) -> FloatArray:
        """Earth-fixed position (km), shape ``(*t.shape, 3)``."""
        t = np.asarray(t_s, dtype=float)
        u = math.radians(self.arg_latitude_deg) + self.mean_motion * t
        node = math.radians(self.raan_deg) + self.node_rate * t
        inc = math.radians(self.inclination_deg)
        # node angle seen from the rotating Earth
        lam = node - (math.radians(self.earth_angle_deg) + _OMEGA_EARTH * t)
        cu, su = np.cos(u), np.sin(u)
        cl, sl = np.cos(lam), np.sin(lam)
        r = self.radius_km
        x = r * (cl * cu - sl * su * math.cos(inc))
        y = r * (sl * cu + cl * su * math.cos(inc))
        z = r * su * math.sin(inc)
        return np.stack([x, y, z], axis=-1)


@dataclass(frozen=True)
class GroundStation:
    """A ground station on the spherical Earth.

    Parameters
    ----------
    name : str
    latitude_deg : float
        In [-90, 90].
    longitude_deg : float
        East positive.
    altitude_m : float
        Height above the sphere (``>= -500``).
    """

    name: str
    latitude_deg: float
    longitude_deg: float
    altitude_m: float = 0.0

    def __post_init__(self) -> None:
        la = self.latitude_deg
        check_number(f"station {self.name}: latitude_deg", la, -90 <= la <= 90, "in [-90, 90]")
        check_number(f"station {self.name}: longitude_deg", self.longitude_deg, True, "finite")
        a = self.altitude_m
        check_number(f"station {self.name}: altitude_m", a, -500 <= a <= 1e4, "in [-500, 10000]")

    def up(self) -> FloatArray:
        """Unit vector of the local vertical (Earth-fixed)."""
        la, lo = math.radians(self.latitude_deg), math.radians(self.longitude_deg)
        return np.array([math.cos(la) * math.cos(lo), math.cos(la) * math.sin(lo), math.sin(la)])

    def position_ecef(self) -> FloatArray:
        """Earth-fixed position (km)."""
        return (EARTH_RADIUS_KM + self.altitude_m / 1e3) * self.up()


def look_angles(
    orbit: Orbit, station: GroundStation, t_s: ArrayLike
) -> tuple[FloatArray, FloatArray]:
    """Elevation (degrees) and slant range (km) of the satellite seen from the station.

    Examples
    --------
    >>> el, rng = look_angles(Orbit(500.0, 0.0), GroundStation("eq", 0.0, 0.0), 0.0)
    >>> float(el), float(rng)
    (90.0, 500.0)
    """
    sat = orbit.position_ecef(t_s)
    los = sat - station.position_ecef()
    rng = np.linalg.norm(los, axis=-1)
    sin_el = (los @ station.up()) / rng
    el = np.degrees(np.arcsin(np.clip(sin_el, -1.0, 1.0)))
    return np.asarray(el, dtype=float), np.asarray(rng, dtype=float)


@dataclass(frozen=True)
class Pass:
    """A pass: the satellite above the elevation mask from ``start_s`` to ``end_s``."""

    start_s: float
    end_s: float
    max_elevation_deg: float = math.nan
    t_max_s: float = math.nan

    def __post_init__(self) -> None:
        check_number("pass.start_s", self.start_s, True, "finite")
        check_number(
            "pass.end_s", self.end_s, self.end_s > self.start_s, f"> start_s ({self.start_s})"
        )

    @property
    def duration_s(self) -> float:
        """``end_s - start_s``."""
        return self.end_s - self.start_s


def passes(
    orbit: Orbit,
    station: GroundStation,
    t0: float,
    t1: float,
    min_elevation_deg: float = 10.0,
    *,
    step_s: float = 5.0,
) -> list[Pass]:
    """Passes of the satellite over the station between ``t0`` and ``t1`` (seconds).

    The elevation is sampled every ``step_s`` seconds; each crossing of the mask is refined
    by Brent's method and each culmination by a bounded search, so start, end and maximum
    are exact to about a millisecond. A pass that stays above the mask for less than one step
    between samples can be missed (at LEO a pass above 10 deg lasts minutes). Passes cut by
    ``t0`` or ``t1`` start or end there.

    Returns
    -------
    list of Pass
        In time order.

    Examples
    --------
    >>> ps = passes(MICIUS_ORBIT, XINGLONG, 0.0, 86400.0, 10.0)
    >>> len(ps) > 0 and all(p.max_elevation_deg >= 10.0 for p in ps)
    True
    """
    check_number("t1", t1, t1 > t0, f"> t0 ({t0})")
    check_number(
        "min_elevation_deg", min_elevation_deg, -90 <= min_elevation_deg < 90, "in [-90, 90)"
    )
    check_number("step_s", step_s, step_s > 0, "> 0")
    n = max(2, math.ceil((t1 - t0) / step_s) + 1)
    t = np.linspace(t0, t1, n)
    el = look_angles(orbit, station, t)[0] - min_elevation_deg

    def f(x: float) -> float:
        return float(look_angles(orbit, station, x)[0]) - min_elevation_deg

    above = np.concatenate([[False], el >= 0, [False]])
    rises = np.flatnonzero(~above[:-1] & above[1:])  # first sample of each run above
    sets = np.flatnonzero(above[:-1] & ~above[1:]) - 1  # last sample of each run
    out: list[Pass] = []
    for i, j in zip(rises.tolist(), sets.tolist(), strict=True):
        start = t0 if i == 0 else brentq(f, t[i - 1], t[i], xtol=1e-4)
        end = t1 if j == n - 1 else brentq(f, t[j], t[j + 1], xtol=1e-4)
        k = i + int(np.argmax(el[i : j + 1]))  # the highest sample brackets the culmination
        lo = max(float(start), float(t[max(k - 1, 0)]))
        hi = min(float(end), float(t[min(k + 1, n - 1)]))
        best = minimize_scalar(
            lambda x: -f(x), bounds=(lo, hi), method="bounded", options={"xatol": 1e-3}
        )
        t_max = float(best.x) if -best.fun >= el[k] else float(t[k])
        if end > start:
            out.append(Pass(float(start), float(end), f(t_max) + min_elevation_deg, t_max))
    return out


# ---------------------------------------------------------------------------------------------
# the link


def air_mass(elevation_deg: ArrayLike) -> FloatArray:
    """Relative optical air mass of Kasten & Young (1989), normalised to 1 at zenith; ``inf``
    below the horizon.

    Examples
    --------
    >>> round(float(air_mass(90.0)), 4), round(float(air_mass(30.0)), 3)
    (1.0, 1.995)
    """
    el = np.asarray(elevation_deg, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        am = _KY_ZENITH / (
            np.sin(np.radians(el)) + 0.50572 * np.power(np.maximum(el, 0.0) + 6.07995, -1.6364)
        )
    # the fit's minimum lies a hair below zenith (1 - 2e-9): no path is shorter than zenith's
    return np.asarray(np.where(el < 0, np.inf, np.maximum(am, 1.0)), dtype=float)


_KY_ZENITH = 1.0 + 0.50572 * 96.07995**-1.6364  # normalises the air mass to 1 at zenith


@dataclass(frozen=True)
class Downlink:
    """A satellite-to-ground QKD downlink: optical terminals, atmosphere and QKD system.

    Parameters
    ----------
    name : str
    system : QKDSystem
        Source (clock, signal ``mu``, decoys), detectors, ``e_d``, ``f_ec``, sifting; its
        fibre is not used.
    intensity_probs : tuple of float
        Probabilities of sending the signal and each decoy, in ``(mu, *decoys)`` order; sum 1.
    wavelength_nm, tx_aperture_m, beam_quality, pointing_jitter_urad
        The transmitter: wavelength, aperture (beam waist ``D / 2``), ``M2 >= 1``, pointing
        error (rms per axis).
    tx_efficiency, rx_efficiency : float
        Transmittance of the transmitter's optics and of the receiver's telescope and
        analysis optics, in (0, 1].
    rx_aperture_m : float
        Receiving telescope diameter.
    zenith_transmittance : float
        Atmosphere at zenith, in (0, 1].
    min_elevation_deg : float
        Elevation mask: no key below it.
    protocol : str
        Key-rate model of :mod:`qkd.rates` (default ``"decoy-bb84"``).
    reference : str

    Examples
    --------
    >>> round(MICIUS.divergence_urad, 1)
    10.0
    >>> [round(float(x), 1) for x in MICIUS.loss_db([645.0, 1200.0], [49.3, 19.7])]
    [32.5, 42.0]
    """

    name: str
    system: QKDSystem
    intensity_probs: tuple[float, ...]
    wavelength_nm: float = 850.0
    tx_aperture_m: float = 0.3
    beam_quality: float = 1.0
    pointing_jitter_urad: float = 1.0
    tx_efficiency: float = 1.0
    rx_aperture_m: float = 1.0
    rx_efficiency: float = 1.0
    zenith_transmittance: float = 0.8
    min_elevation_deg: float = 10.0
    protocol: str = "decoy-bb84"
    reference: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        n = self.name
        probs = tuple(float(p) for p in self.intensity_probs)
        k = 1 + len(self.system.source.decoys)
        if len(probs) != k or any(not (0 <= p <= 1) for p in probs) or abs(sum(probs) - 1) > 1e-9:
            raise ParameterError(
                f"downlink {n}: intensity_probs",
                self.intensity_probs,
                f"{k} probabilities (signal and each decoy) in [0, 1] summing to 1",
            )
        object.__setattr__(self, "intensity_probs", probs)
        check_number(
            f"downlink {n}: wavelength_nm", self.wavelength_nm, self.wavelength_nm > 0, "> 0"
        )
        for fname in ("tx_aperture_m", "rx_aperture_m"):
            v = getattr(self, fname)
            check_number(f"downlink {n}: {fname}", v, v > 0, "> 0")
        check_number(
            f"downlink {n}: beam_quality", self.beam_quality, self.beam_quality >= 1, ">= 1"
        )
        j = self.pointing_jitter_urad
        check_number(f"downlink {n}: pointing_jitter_urad", j, j >= 0, ">= 0")
        for fname in ("tx_efficiency", "rx_efficiency", "zenith_transmittance"):
            v = getattr(self, fname)
            check_number(f"downlink {n}: {fname}", v, 0 < v <= 1, "in (0, 1]")
        m = self.min_elevation_deg
        check_number(f"downlink {n}: min_elevation_deg", m, 0 <= m < 90, "in [0, 90)")
        _check_protocol(self.protocol)

    # -- loss ------------------------------------------------------------------------------
    @property
    def divergence_urad(self) -> float:
        """Far-field full-angle divergence ``2 M2 lambda / (pi w0)`` in microradians."""
        w0 = self.tx_aperture_m / 2
        return 2e6 * self.beam_quality * self.wavelength_nm * 1e-9 / (math.pi * w0)

    def geometric_transmittance(self, slant_km: ArrayLike) -> FloatArray:
        """Fraction of the beam the telescope collects (diffraction, beam quality, pointing)."""
        L = _nonneg_array("slant_km", slant_km) * 1e3
        lam = self.wavelength_nm * 1e-9
        w0 = self.tx_aperture_m / 2
        z_r = math.pi * w0**2 / (self.beam_quality * lam)
        w2 = w0**2 * (1 + (L / z_r) ** 2) + 4 * (self.pointing_jitter_urad * 1e-6 * L) ** 2
        a = self.rx_aperture_m / 2
        return np.asarray(-np.expm1(-2 * a * a / w2), dtype=float)

    def atmospheric_transmittance(self, elevation_deg: ArrayLike) -> FloatArray:
        """``T0 ** air_mass(el)`` (0 below the horizon)."""
        am = air_mass(elevation_deg)
        return np.asarray(np.where(np.isinf(am), 0.0, self.zenith_transmittance**am), dtype=float)

    def transmittance(self, slant_km: ArrayLike, elevation_deg: ArrayLike) -> FloatArray:
        """Channel transmittance up to the detectors (their efficiency is not included)."""
        return np.asarray(
            self.tx_efficiency
            * self.geometric_transmittance(slant_km)
            * self.atmospheric_transmittance(elevation_deg)
            * self.rx_efficiency,
            dtype=float,
        )

    def loss_db(self, slant_km: ArrayLike, elevation_deg: ArrayLike) -> FloatArray:
        """Total loss in dB, detectors included (``-10 log10(eta_total)``)."""
        eta = self.transmittance(slant_km, elevation_deg) * self.system.detector.efficiency
        with np.errstate(divide="ignore"):
            return np.asarray(-10 * np.log10(eta), dtype=float)

    # -- key -------------------------------------------------------------------------------
    def rates(
        self, slant_km: ArrayLike, elevation_deg: ArrayLike
    ) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Sifted rate (bit/s), secret rate (bit/s) and QBER of the signal, per point.

        Both rates are 0 below the elevation mask.
        """
        el = np.asarray(elevation_deg, dtype=float)
        eta = self.transmittance(slant_km, el) * self.system.detector.efficiency
        eta = np.broadcast_to(eta, np.broadcast_shapes(eta.shape, el.shape))
        sys = self.system
        y0, e_d = sys.detector.dark_count_prob, sys.misalignment
        mus = (sys.source.mu, *sys.source.decoys)
        gains = [_gain_qber_eta(eta, m, y0, e_d) for m in mus]
        clock = sys.source.clock_hz
        visible = el >= self.min_elevation_deg
        sifted = (
            clock
            * sys.sifting
            * sum(p * g for p, (g, _) in zip(self.intensity_probs, gains, strict=True))
        )
        raw, _ = _raw_rate_and_mu(sys, np.asarray(eta, dtype=float), self.protocol, sys.source.mu)
        secret = clock * self.intensity_probs[0] * np.maximum(raw, 0.0)
        zero = np.zeros_like(eta)
        return (
            np.asarray(np.where(visible, sifted, zero), dtype=float),
            np.asarray(np.where(visible, secret, zero), dtype=float),
            np.asarray(gains[0][1], dtype=float),
        )


def _nonneg_array(name: str, x: ArrayLike) -> FloatArray:
    a = np.asarray(x, dtype=float)
    bad = ~np.isfinite(a) | (a < 0)
    if np.any(bad):
        raise ParameterError(name, float(a[bad].ravel()[0]), ">= 0 and finite")
    return a


# ---------------------------------------------------------------------------------------------
# over a pass


@dataclass(frozen=True)
class PassProfile:
    """A pass sampled in time: geometry, transmittance and rates at each of ``times_s``."""

    times_s: FloatArray
    elevation_deg: FloatArray
    slant_range_km: FloatArray
    transmittance: FloatArray
    sifted_bps: FloatArray
    secret_bps: FloatArray
    qber: FloatArray

    @property
    def sifted_bits(self) -> float:
        """Sifted key over the profile (trapezoidal rule)."""
        return float(np.trapezoid(self.sifted_bps, self.times_s))

    @property
    def secret_bits(self) -> float:
        """Secret key over the profile (trapezoidal rule)."""
        return float(np.trapezoid(self.secret_bps, self.times_s))

    def steps(self, step_s: float) -> tuple[FloatArray, FloatArray]:
        """A piecewise-constant secret rate: edges every ``step_s`` (the last step may be
        shorter) and the mean rate over each step, so that ``sum(rate * width)`` is the
        pass's secret key (for :meth:`network.schedule.Schedule.from_steps`)."""
        check_number("step_s", step_s, step_s > 0, "> 0")
        t0, t1 = float(self.times_s[0]), float(self.times_s[-1])
        edges = np.arange(t0, t1, step_s)
        edges = np.append(edges, t1) if edges[-1] < t1 else edges
        cum = np.concatenate(
            [
                [0.0],
                np.cumsum(np.diff(self.times_s) * (self.secret_bps[1:] + self.secret_bps[:-1]) / 2),
            ]
        )
        at_edges = np.interp(edges, self.times_s, cum)
        return edges, np.diff(at_edges) / np.diff(edges)


def pass_profile(
    link: Downlink,
    orbit: Orbit,
    station: GroundStation,
    start_s: float,
    end_s: float,
    *,
    step_s: float = 1.0,
) -> PassProfile:
    """Geometry, transmittance and key rates every ``step_s`` over ``[start_s, end_s]``.

    Examples
    --------
    >>> p = passes(MICIUS_ORBIT, XINGLONG, 0.0, 86400.0, 10.0)[0]
    >>> prof = pass_profile(MICIUS, MICIUS_ORBIT, XINGLONG, p.start_s, p.end_s)
    >>> bool(prof.secret_bits < prof.sifted_bits)
    True
    """
    check_number("end_s", end_s, end_s > start_s, f"> start_s ({start_s})")
    check_number("step_s", step_s, step_s > 0, "> 0")
    n = max(2, math.ceil((end_s - start_s) / step_s) + 1)
    t = np.linspace(start_s, end_s, n)
    el, rng = look_angles(orbit, station, t)
    eta = link.transmittance(rng, np.maximum(el, -90.0))
    sifted, secret, qber = link.rates(rng, el)
    return PassProfile(t, el, rng, eta, sifted, secret, qber)


@dataclass(frozen=True)
class PassKey:
    """The key of one pass: sifted and secret (final) bits kept apart."""

    window: Pass
    sifted_bits: float
    secret_bits: float
    max_elevation_deg: float
    min_slant_range_km: float


def key_per_pass(
    link: Downlink,
    orbit: Orbit,
    station: GroundStation,
    windows: Sequence[Pass],
    *,
    step_s: float = 1.0,
) -> list[PassKey]:
    """Sifted and secret key of each pass (computed by :func:`passes` or given as windows).

    Examples
    --------
    >>> ps = passes(MICIUS_ORBIT, XINGLONG, 0.0, 86400.0, MICIUS.min_elevation_deg)
    >>> keys = key_per_pass(MICIUS, MICIUS_ORBIT, XINGLONG, ps)
    >>> all(k.secret_bits <= k.sifted_bits for k in keys)
    True
    """
    out = []
    for w in windows:
        prof = pass_profile(link, orbit, station, w.start_s, w.end_s, step_s=step_s)
        out.append(
            PassKey(
                w,
                prof.sifted_bits,
                prof.secret_bits,
                float(prof.elevation_deg.max()),
                float(prof.slant_range_km.min()),
            )
        )
    return out


# ---------------------------------------------------------------------------------------------
# presets

XINGLONG = GroundStation("xinglong", 40.3958, 117.5775, 960.0)
"""The Xinglong station of the National Astronomical Observatories (1 m telescope)."""

MICIUS_ORBIT = Orbit(altitude_km=500.0, inclination_deg=97.4)
"""A Micius-class sun-synchronous orbit (about 500 km); the phase is arbitrary."""

_MICIUS_SYSTEM = QKDSystem(
    name="micius-2017",
    fibre=Fibre(0.0),
    source=Source(clock_hz=1e8, mu=0.8, decoys=(0.1, 0.0)),
    detector=Detector(efficiency=0.5, dark_count_prob=5e-7),
    misalignment=0.01,
    f_ec=1.16,
    sifting=0.5,
    reference="S.-K. Liao et al., Nature 549, 43 (2017)",
)

MICIUS = Downlink(
    name="micius-2017",
    system=_MICIUS_SYSTEM,
    intensity_probs=(0.5, 0.25, 0.25),
    wavelength_nm=850.0,
    tx_aperture_m=0.3,
    beam_quality=2.77,
    pointing_jitter_urad=1.0,
    tx_efficiency=0.5,
    rx_aperture_m=1.0,
    rx_efficiency=0.122,
    zenith_transmittance=0.55,
    min_elevation_deg=10.0,
    reference=(
        "S.-K. Liao et al., Satellite-to-ground quantum key distribution, Nature 549, 43 (2017);"
        " terminals from the paper's description, eta_rx fitted to the 645 km sifted rate, "
        "atmosphere and pointing representative (see qkd.satellite)"
    ),
)
"""Micius-class downlink to Xinglong (see the module docstring for what is fitted)."""
