"""Satellite links in the network: a downlink's passes over a station as a supply schedule.

In a network, a satellite is a trusted node whose links make key only during passes. Each
link between the satellite node and a ground station is a :class:`~network.topology.LinkSpec`
whose ``schedule`` is built here from :mod:`qkd.satellite`: the passes of the orbit over the
station above an elevation mask (:func:`qkd.satellite.passes`), each pass's secret-key rate
sampled every ``profile_step_s`` (:func:`qkd.satellite.pass_profile`) and averaged over steps
of ``step_s`` (:meth:`qkd.satellite.PassProfile.steps`), one window per step labelled
``"pass k"``, factor 0 outside the passes.

Units: the link's nominal rate is the downlink's secret-key rate with the satellite at the
station's zenith (bit/s), the best the geometry allows, so every factor lies in [0, 1] and is
the fraction of that rate; schedule times are simulated seconds from the network's start,
which is orbit time ``start_s``. The key the link makes over the schedule,
``nominal_rate_bps * schedule.integral(0, horizon_s)``, is exactly the secret key of its passes
(:func:`qkd.satellite.key_per_pass` with the same profile step): the steps keep each pass's
integral.

The classical channel of a satellite link is not scheduled (see
:class:`~network.topology.LinkSpec`): a trusted satellite relays key by announcing the XOR of
its two link keys, which travels over ground networks at any time; what the passes gate is
key. The link's latency is the mean slant range of its passes over the speed of light.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from network.schedule import Schedule
from network.topology import SPEED_OF_LIGHT_KM_S, LinkSpec
from qkd.errors import ParameterError
from qkd.satellite import Downlink, GroundStation, Orbit, Pass, pass_profile, passes

__all__ = ["SatelliteSchedule", "satellite_schedule", "zenith_rate_bps"]


def zenith_rate_bps(downlink: Downlink, orbit: Orbit, station: GroundStation) -> float:
    """The downlink's secret-key rate (bit/s) with the satellite at the station's zenith.

    Examples
    --------
    >>> from qkd.satellite import MICIUS, MICIUS_ORBIT, XINGLONG
    >>> round(zenith_rate_bps(MICIUS, MICIUS_ORBIT, XINGLONG))
    7095
    """
    slant = orbit.altitude_km - station.altitude_m / 1e3
    _, secret, _ = downlink.rates(np.array([slant]), np.array([90.0]))
    return float(secret[0])


@dataclass(frozen=True)
class SatelliteSchedule:
    """A satellite downlink's key supply over a station: what :func:`satellite_schedule`
    returns.

    Attributes
    ----------
    schedule : Schedule
        Default factor 0; one window per step of each pass, labelled ``"pass k"`` (``k``
        counts the passes from 0); factors are fractions of ``nominal_rate_bps``.
    nominal_rate_bps : float
        The secret-key rate at zenith (bit/s; 0 if the downlink makes no key even there, and
        then the schedule has no windows).
    passes : tuple of Pass
        The passes, in simulated seconds from the network's start.
    pass_bits : tuple of float
        The secret key of each pass (bits).
    mean_slant_km : float
        The mean slant range over the passes (nan without passes).
    downlink : Downlink
        The downlink, with the elevation mask used.
    """

    schedule: Schedule
    nominal_rate_bps: float
    passes: tuple[Pass, ...]
    pass_bits: tuple[float, ...]
    mean_slant_km: float
    downlink: Downlink

    @property
    def total_bits(self) -> float:
        """The key of all passes: ``nominal_rate_bps * schedule.integral(0, inf)``."""
        return math.fsum(self.pass_bits)

    def link_spec(self, a: str, b: str, **fields: Any) -> LinkSpec:
        """A :class:`~network.topology.LinkSpec` for this downlink between nodes ``a`` and
        ``b``: the nominal rate as ``skr_bps``, the schedule, the downlink's QKD system (for
        an eavesdropper's effect), the mean slant range as ``length_km`` and its light time
        as ``latency_s``; ``fields`` set the rest (``capacity_bits``, ``block_bits``, ...) or
        override these.

        Examples
        --------
        >>> from qkd.satellite import MICIUS, MICIUS_ORBIT, XINGLONG
        >>> sat = satellite_schedule(MICIUS, MICIUS_ORBIT, XINGLONG, 86400.0)
        >>> spec = sat.link_spec("micius", "xinglong", capacity_bits=1e8)
        >>> spec.skr_bps == sat.nominal_rate_bps, spec.schedule is sat.schedule
        (True, True)
        """
        slant = self.mean_slant_km if math.isfinite(self.mean_slant_km) else 0.0
        kw: dict[str, Any] = {
            "length_km": slant,
            "system": self.downlink.system,
            "skr_bps": self.nominal_rate_bps,
            "latency_s": slant / SPEED_OF_LIGHT_KM_S,
            "schedule": self.schedule,
        }
        kw.update(fields)
        return LinkSpec(a, b, **kw)


def satellite_schedule(
    downlink: Downlink,
    orbit: Orbit,
    station: GroundStation,
    horizon_s: float,
    *,
    min_elevation_deg: float | None = None,
    step_s: float = 10.0,
    profile_step_s: float = 1.0,
    start_s: float = 0.0,
    max_passes: int | None = None,
    where: str = "schedule",
) -> SatelliteSchedule:
    """The key supply of a satellite downlink over a ground station, as a schedule.

    Parameters
    ----------
    downlink : Downlink
        Terminals, atmosphere and QKD system (:data:`qkd.satellite.MICIUS`, ...).
    orbit : Orbit
    station : GroundStation
    horizon_s : float
        Simulated seconds to cover (``> 0``); passes cut by it end there.
    min_elevation_deg : float, optional
        The elevation mask in degrees, in [0, 90): passes are the stretches above it and the
        downlink makes key only above it (default: the downlink's own mask).
    step_s : float
        Seconds per window of a pass's piecewise-constant rate (``> 0``; 10 s gives about
        40 windows, so 80 events, per pass).
    profile_step_s : float
        Sampling of each pass's rate before averaging over the steps (``> 0``).
    start_s : float
        Orbit time at the network's start (shifts the orbit's phase against the clock).
    max_passes : int, optional
        Keep only the first ``max_passes`` passes (a threshold on the pass count, ``>= 0``).
    where : str
        The schedule's name in error messages (a scenario path).

    Returns
    -------
    SatelliteSchedule
        The schedule, the nominal (zenith) rate, the passes and the key of each.

    Raises
    ------
    ParameterError
        A bad argument, named by ``where``.

    Examples
    --------
    >>> from qkd.satellite import MICIUS, MICIUS_ORBIT, XINGLONG
    >>> sat = satellite_schedule(MICIUS, MICIUS_ORBIT, XINGLONG, 86400.0)
    >>> len(sat.passes), sat.schedule.label(0), sat.schedule.default
    (3, 'pass 0', 0.0)
    >>> bits = sat.nominal_rate_bps * sat.schedule.integral(0.0, 86400.0)
    >>> bool(abs(bits - sat.total_bits) < 1e-6 * bits)
    True
    """
    _positive(f"{where}.horizon_s", horizon_s)
    _positive(f"{where}.step_s", step_s)
    _positive(f"{where}.profile_step_s", profile_step_s)
    if isinstance(start_s, bool) or not isinstance(start_s, int | float):
        raise ParameterError(f"{where}.start_s", start_s, "a finite number of seconds")
    if not math.isfinite(start_s):
        raise ParameterError(f"{where}.start_s", start_s, "a finite number of seconds")
    if max_passes is not None and (
        isinstance(max_passes, bool) or not isinstance(max_passes, int) or max_passes < 0
    ):
        raise ParameterError(f"{where}.max_passes", max_passes, "an integer >= 0, or None")
    if min_elevation_deg is not None:
        m = min_elevation_deg
        if isinstance(m, bool) or not isinstance(m, int | float) or not 0 <= m < 90:
            raise ParameterError(f"{where}.min_elevation_deg", m, "in [0, 90) degrees")
        downlink = replace(downlink, min_elevation_deg=float(m))
    nominal = zenith_rate_bps(downlink, orbit, station)
    mask = downlink.min_elevation_deg
    found = passes(orbit, station, start_s, start_s + horizon_s, mask)
    if max_passes is not None:
        found = found[:max_passes]
    if nominal <= 0:  # no key even at zenith: the link never makes any
        none = Schedule((), 0.0, where=where)
        return SatelliteSchedule(none, 0.0, (), (), math.nan, downlink)
    shifted: list[Pass] = []
    steps: list[tuple[np.ndarray, np.ndarray]] = []
    bits: list[float] = []
    slants: list[np.ndarray] = []
    for p in found:
        prof = pass_profile(downlink, orbit, station, p.start_s, p.end_s, step_s=profile_step_s)
        edges, rates = prof.steps(step_s)
        steps.append((edges - start_s, rates))
        bits.append(prof.secret_bits)
        slants.append(prof.slant_range_km)
        shifted.append(
            Pass(p.start_s - start_s, p.end_s - start_s, p.max_elevation_deg, p.t_max_s - start_s)
        )
    schedule = Schedule.from_passes(
        [(e.tolist(), r.tolist()) for e, r in steps], nominal, where=where
    )
    mean_slant = float(np.concatenate(slants).mean()) if slants else math.nan
    return SatelliteSchedule(schedule, nominal, tuple(shifted), tuple(bits), mean_slant, downlink)


def _positive(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ParameterError(name, value, "> 0 and finite")
    if not (math.isfinite(value) and value > 0):
        raise ParameterError(name, value, "> 0 and finite")
