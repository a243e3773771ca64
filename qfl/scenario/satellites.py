"""The ``satellites`` section and per-link ``schedule``: key supply that changes over time.

A satellite (``satellites.<name>``) is a trusted node of the network that is not listed in
``topology.nodes``: a link with the satellite at one end and a ground node (with latitude and
longitude) at the other is a downlink whose key comes only during the satellite's passes over
that node (:func:`network.satellite.satellite_schedule`). A fibre link may carry a
``schedule`` of windows (maintenance, day/night) in simulated seconds from the start of the
run.

Examples
--------
>>> s = SatelliteSpec.model_validate({"min_elevation_deg": 20, "max_passes": 3})
>>> s.orbit().altitude_km, s.downlink().min_elevation_deg
(500.0, 20.0)
>>> ScheduleDef.model_validate({"windows": [{"start_s": 60, "end_s": 120}]}).windows[0].factor
0.0
"""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated, Literal

from pydantic import Field

from qfl.scenario.base import NonNegative, Positive, _Frozen
from qkd.satellite import MICIUS, MICIUS_ORBIT, Downlink, Orbit

__all__ = ["SATELLITE_PRESETS", "SatelliteSpec", "ScheduleDef", "WindowDef"]

SATELLITE_PRESETS: dict[str, tuple[Downlink, Orbit]] = {"micius": (MICIUS, MICIUS_ORBIT)}
"""Downlink and orbit presets by name (``qkd.satellite``)."""


class WindowDef(_Frozen):
    """One window of a link's schedule: ``[start_s, end_s)`` at ``factor`` x the link's rate."""

    start_s: NonNegative = Field(description="Start, simulated seconds from the run's start.")
    end_s: NonNegative = Field(description="End, simulated seconds (> start_s, <= horizon_s).")
    factor: NonNegative = Field(
        0.0,
        description="Multiplies the link's key rate inside the window (>= 0; 0 = no key, an "
        "outage or maintenance).",
    )
    label: str = Field("", description="A name for window_waits.csv and the summary.")


class ScheduleDef(_Frozen):
    """A link's key supply over time: rate factors over windows of simulated seconds."""

    default: NonNegative = Field(
        1.0, description="The rate factor outside every window (>= 0; 1 = the nominal rate)."
    )
    windows: tuple[WindowDef, ...] = Field(
        (), description="Sorted by start_s, not overlapping; each ends by horizon_s if set."
    )


class SatelliteSpec(_Frozen):
    """A satellite: a trusted node whose downlinks to ground nodes make key only in passes.

    Unset orbit and downlink values come from ``preset``.
    """

    preset: Literal["micius"] = Field(
        "micius",
        description="Downlink terminals, QKD system and orbit to start from: micius (Liao et "
        "al. 2017, 500 km sun-synchronous; see qkd.satellite).",
    )
    altitude_km: Annotated[float, Field(gt=100, le=40000)] | None = Field(
        None, description="Circular orbit altitude, km, in (100, 40000]."
    )
    inclination_deg: Annotated[float, Field(ge=0, le=180)] | None = Field(
        None, description="Orbit inclination, degrees, in [0, 180]."
    )
    raan_deg: float | None = Field(
        None, description="Right ascension of the ascending node at t = 0, degrees."
    )
    arg_latitude_deg: float | None = Field(
        None, description="Argument of latitude at t = 0 (the satellite's phase), degrees."
    )
    min_elevation_deg: Annotated[float, Field(ge=0, lt=90)] | None = Field(
        None,
        description="Elevation mask, degrees in [0, 90): no key below it (default: the "
        "preset's, 10).",
    )
    max_passes: Annotated[int, Field(ge=0)] | None = Field(
        None,
        description="Use only the first max_passes passes over each ground node (a threshold "
        "on the pass count; default all).",
    )
    step_s: Positive = Field(
        10.0,
        description="Seconds per window of a pass's piecewise-constant key rate (the pass's "
        "rate averaged over each step; its key is kept exactly).",
    )
    start_s: float = Field(0.0, description="Orbit time at the run's start, s.")
    span_s: Positive = Field(
        172800.0,
        description="Seconds of passes to compute when the scenario has no horizon_s "
        "(default two days; with horizon_s, the horizon).",
    )

    def orbit(self) -> Orbit:
        """The orbit: the preset's with the values given here."""
        base = SATELLITE_PRESETS[self.preset][1]
        given = {
            k: getattr(self, k)
            for k in ("altitude_km", "inclination_deg", "raan_deg", "arg_latitude_deg")
            if getattr(self, k) is not None
        }
        return replace(base, **given)

    def downlink(self) -> Downlink:
        """The downlink: the preset's, with this elevation mask if given."""
        base = SATELLITE_PRESETS[self.preset][0]
        if self.min_elevation_deg is None:
            return base
        return replace(base, min_elevation_deg=float(self.min_elevation_deg))
