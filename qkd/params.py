"""Physical parameters of a QKD link: fibre, source, detector and system.

All parameter classes are frozen dataclasses that validate themselves on construction and
raise :class:`~qkd.errors.ParameterError` naming the bad field. Link length is *not* a
system parameter: the key-rate models are vectorized over arrays of distances.

Conventions (those of Ma, Qi, Zhao & Lo, PRA 72, 012326, 2005):

* ``detector.efficiency`` is Bob's total efficiency ``eta_Bob`` (detector efficiency times
  the transmittance of Bob's optics);
* ``detector.dark_count_prob`` is the background yield ``Y0``: the probability of a click
  per gate with no signal photon (dark counts and stray light, all of Bob's detectors);
* ``misalignment`` is ``e_d``, the probability that a photon hits the wrong detector;
* ``f_ec`` is the error-correction inefficiency (``>= 1``; 1 is the Shannon limit);
* ``sifting`` is ``q``, the fraction of detections kept after basis sifting (1/2 for
  standard BB84, close to 1 for the efficient, biased-basis variant).

Presets and how the asymptotic models of :mod:`qkd.rates` compare with the publications:

``"gys-2004"``
    The GYS parameters of Ma et al. (2005), Table I. With infinitely many decoys the model
    gives an optimal ``mu`` of 0.486 and a maximum distance of 142.2 km (published: about
    0.48 and 142 km); see :mod:`qkd.rates` for the full comparison.
``"toshiba-2018"``
    Yuan et al. (2018) report 13.72 Mb/s of *finite-key* secret key over a 2 dB channel (10 km
    at 0.2 dB/km) at 1 GHz, averaged over 4.4 days, with an efficient decoy BB84 and
    self-differencing InGaAs APDs; their finite-key analysis is that of Lucamarini et al., Opt.
    Express 21, 24550 (2013), on blocks of about 1e8 bits. Only the abstract could be read while
    this preset was revised (offline), so the clock, channel, rate and block are the paper's,
    while the detector numbers are *representative* of 1 GHz self-differencing APDs, not read
    from it: 31% efficiency, ``Y0 = 4e-6``, 1% after-pulsing, a 2 ns dead time (saturation at
    5e8 counts/s), ``e_d = 1.5%``, ``f = 1.1``. With these, the finite-key model of
    :mod:`qkd.finite` (Lim et al. 2014, three intensities, ``eps_sec = 1e-10``, count bounds
    clamped at 0) gives at 10 km with ``block_size = 2e9`` pulses (about 1e8 key-basis
    detections) 16.5 Mb/s, 1.20 times the published figure; with 1e9-pulse blocks, 15.3 Mb/s
    (15.1 and 13.9 Mb/s, 1.10 times, with Lim's count bounds as printed, not clamped at 0). The
    dead time and after-pulsing were chosen inside their plausible range with the unclamped
    comparison in view, so the agreement is a consistency check, not an independent prediction.
    What remains different: Lucamarini et al.'s bounds (Chernoff-type, a vacuum and a weak
    decoy) instead of Lim et al.'s, the paper's measured QBER and real error correction instead
    of ``f h(E)``, and the 4.4-day average over drifting conditions. The asymptotic model of
    :mod:`qkd.rates` at 10 km now gives 29.7 Mb/s (``mu`` optimised; 28.6 Mb/s at ``mu = 0.45``;
    42.0 Mb/s before the after-pulses and dead time were added).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from qkd.errors import ParameterError, UnknownNameError

__all__ = [
    "PRESETS",
    "REQUIRED_FIELDS",
    "SYSTEM_FIELDS",
    "Detector",
    "Fibre",
    "QKDSystem",
    "Source",
    "SystemRegistry",
    "define_system",
    "get_preset",
    "with_overrides",
]


def _check(name: str, value: float, ok: bool, allowed: str) -> None:
    if not (isinstance(value, int | float) and math.isfinite(value) and ok):
        raise ParameterError(name, value, allowed)


@dataclass(frozen=True)
class Fibre:
    """Optical fibre.

    Parameters
    ----------
    attenuation_db_per_km : float
        Loss coefficient in dB/km (``>= 0``; 0.2 for modern SMF-28 at 1550 nm).
    """

    attenuation_db_per_km: float = 0.2

    def __post_init__(self) -> None:
        a = self.attenuation_db_per_km
        _check("fibre.attenuation_db_per_km", a, a >= 0, ">= 0")

    def transmittance(self, length_km: ArrayLike) -> NDArray[np.float64]:
        """Channel transmittance ``10**(-alpha * L / 10)`` for each length.

        Examples
        --------
        >>> float(Fibre(0.2).transmittance(50.0))
        0.1
        """
        length = np.asarray(length_km, dtype=float)
        if np.any(length < 0) or not np.all(np.isfinite(length)):
            bad = length[(length < 0) | ~np.isfinite(length)].ravel()[0]
            raise ParameterError("length_km", float(bad), ">= 0 and finite")
        return np.power(10.0, -self.attenuation_db_per_km * length / 10.0)


@dataclass(frozen=True)
class Source:
    """Weak-coherent-pulse source with decoy states.

    Parameters
    ----------
    clock_hz : float
        Pulse repetition rate in Hz (``> 0``).
    mu : float
        Mean photon number of the signal state (``> 0``); key-rate models may optimise it.
    decoys : tuple of float
        Mean photon numbers of the decoy states, weakest last (``(nu1, nu2)``; ``nu2 = 0`` is
        the vacuum decoy). Each must be ``>= 0`` and ``< mu``.
    """

    clock_hz: float
    mu: float = 0.5
    decoys: tuple[float, ...] = (0.1, 0.0)

    def __post_init__(self) -> None:
        _check("source.clock_hz", self.clock_hz, self.clock_hz > 0, "> 0")
        _check("source.mu", self.mu, self.mu > 0, "> 0")
        object.__setattr__(self, "decoys", tuple(float(d) for d in self.decoys))
        for i, d in enumerate(self.decoys):
            _check(f"source.decoys[{i}]", d, 0 <= d < self.mu, f">= 0 and < mu ({self.mu})")


@dataclass(frozen=True)
class Detector:
    """Bob's detection system.

    Parameters
    ----------
    efficiency : float
        ``eta_Bob`` in (0, 1]: detector efficiency times Bob's internal transmittance.
    dark_count_prob : float
        Background yield ``Y0`` per gate in [0, 1).
    dead_time_s : float
        Dead time in seconds after each click (``>= 0``; 0, the default, is an ideal detector
        that never saturates). With a click probability ``D`` per pulse at clock ``f``, the
        detectors are live for the fraction ``1 / (1 + f D tau)`` of the pulses
        (non-paralysable model), so the count rate saturates at ``1 / tau``.
    afterpulse_prob : float
        After-pulse probability ``p_ap`` per click in [0, 1) (default 0): each click brings
        ``p_ap`` extra clicks on average, with random bit values, so the click probability
        becomes ``D (1 + p_ap)`` and the error probability gains ``p_ap D / 2`` (the model of
        Lim et al., PRA 89, 022307, 2014).
    """

    efficiency: float
    dark_count_prob: float
    dead_time_s: float = 0.0
    afterpulse_prob: float = 0.0

    def __post_init__(self) -> None:
        e = self.efficiency
        _check("detector.efficiency", e, 0 < e <= 1, "in (0, 1]")
        p = self.dark_count_prob
        _check("detector.dark_count_prob", p, 0 <= p < 1, "in [0, 1)")
        t = self.dead_time_s
        _check("detector.dead_time_s", t, 0 <= t < 1, "in [0, 1) (seconds)")
        a = self.afterpulse_prob
        _check("detector.afterpulse_prob", a, 0 <= a < 1, "in [0, 1)")

    @property
    def max_count_rate(self) -> float:
        """Saturated count rate ``1 / dead_time_s`` in counts/s (``inf`` without dead time).

        Examples
        --------
        >>> Detector(0.3, 1e-6, dead_time_s=1e-8).max_count_rate
        100000000.0
        """
        return math.inf if self.dead_time_s == 0 else 1.0 / self.dead_time_s


@dataclass(frozen=True)
class QKDSystem:
    """A complete QKD system: fibre, source, detector and protocol constants.

    Parameters
    ----------
    name : str
        A short name (the preset name for presets).
    fibre, source, detector
        Component parameters.
    misalignment : float
        ``e_d`` in [0, 0.5].
    f_ec : float
        Error-correction inefficiency, ``>= 1``.
    sifting : float
        Sifting factor ``q`` in (0, 1].
    block_size : float or None
        The published post-processing block, in pulses sent per block (the default block of
        the finite-key model, :func:`qkd.finite.finite_key`); ``None`` if not published.
    reference : str
        Where the numbers come from.

    Examples
    --------
    >>> sys = get_preset("gys-2004")
    >>> sys.detector.efficiency
    0.045
    >>> sys.replace(misalignment=0.01).misalignment
    0.01
    """

    name: str
    fibre: Fibre
    source: Source
    detector: Detector
    misalignment: float = 0.01
    f_ec: float = 1.16
    sifting: float = 0.5
    block_size: float | None = None
    reference: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        e = self.misalignment
        _check("misalignment", e, 0 <= e <= 0.5, "in [0, 0.5]")
        _check("f_ec", self.f_ec, self.f_ec >= 1, ">= 1")
        q = self.sifting
        _check("sifting", q, 0 < q <= 1, "in (0, 1]")
        if self.block_size is not None:
            n = self.block_size
            _check("block_size", n, n >= 1, ">= 1 (pulses per block) or None")

    def replace(self, **changes: Any) -> QKDSystem:
        """Return a copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def transmittance(self, length_km: ArrayLike) -> NDArray[np.float64]:
        """Total transmittance ``eta = eta_Bob * 10**(-alpha L / 10)``."""
        return self.detector.efficiency * self.fibre.transmittance(length_km)


_GYS = QKDSystem(
    name="gys-2004",
    fibre=Fibre(attenuation_db_per_km=0.21),
    source=Source(clock_hz=2e6, mu=0.48, decoys=(0.05, 0.0)),
    detector=Detector(efficiency=0.045, dark_count_prob=1.7e-6),
    misalignment=0.033,
    f_ec=1.22,
    sifting=0.5,
    reference=(
        "C. Gobby, Z. L. Yuan, A. J. Shields, Appl. Phys. Lett. 84, 3762 (2004), with the "
        "parameters as used by X. Ma, B. Qi, Y. Zhao, H.-K. Lo, PRA 72, 012326 (2005), Table I"
    ),
)

_YUAN_2018 = QKDSystem(
    name="toshiba-2018",
    fibre=Fibre(attenuation_db_per_km=0.2),
    source=Source(clock_hz=1e9, mu=0.45, decoys=(0.1, 0.0)),
    detector=Detector(
        efficiency=0.31, dark_count_prob=4e-6, dead_time_s=2e-9, afterpulse_prob=0.01
    ),
    misalignment=0.015,
    f_ec=1.1,
    sifting=0.94,
    block_size=2e9,
    reference=(
        "Z. L. Yuan et al., 10-Mb/s quantum key distribution, J. Lightwave Technol. 36, 3427 "
        "(2018): 1 GHz efficient (biased-basis) decoy BB84, self-differencing InGaAs APDs; "
        "13.72 Mb/s secret key over a 2 dB (about 10 km) channel, averaged over 4.4 days "
        "(clock, channel and rate from the abstract; detector numbers representative, see "
        "qkd.params)"
    ),
)

PRESETS: Mapping[str, QKDSystem] = MappingProxyType({p.name: p for p in (_GYS, _YUAN_2018)})
"""Named systems from published experiments, by name."""


def get_preset(name: str) -> QKDSystem:
    """Return the named preset system.

    Raises
    ------
    UnknownNameError
        If ``name`` is not a preset; the message lists the presets.

    Examples
    --------
    >>> get_preset("gys-2004").source.clock_hz
    2000000.0
    """
    try:
        return PRESETS[name]
    except KeyError:
        raise UnknownNameError("preset", name, sorted(PRESETS)) from None


def with_overrides(
    system: QKDSystem | str,
    *,
    attenuation_db_per_km: float | None = None,
    efficiency: float | None = None,
    dark_count_prob: float | None = None,
    clock_hz: float | None = None,
    decoy: float | None = None,
    misalignment: float | None = None,
    f_ec: float | None = None,
    sifting: float | None = None,
    dead_time_s: float | None = None,
    afterpulse_prob: float | None = None,
) -> QKDSystem:
    """A system (or the preset named ``system``) with some parameters replaced.

    The one place that builds a link's system from a preset and overrides (scenarios,
    GraphML links, ``qfl keyrate`` options). ``None`` keeps the system's value; ``decoy``
    replaces the weak decoy intensity.

    Raises
    ------
    ParameterError
        Named after the field of the bad value (``detector.efficiency: must be in (0, 1],
        got 2.0``), so a caller can rename it to its own option or YAML path.

    Examples
    --------
    >>> s = with_overrides("gys-2004", efficiency=0.1, attenuation_db_per_km=0.18)
    >>> s.detector.efficiency, s.fibre.attenuation_db_per_km, s.source.clock_hz
    (0.1, 0.18, 2000000.0)
    >>> with_overrides("gys-2004", efficiency=2.0)
    Traceback (most recent call last):
    ...
    qkd.errors.ParameterError: detector.efficiency: must be in (0, 1], got 2.0
    """
    out = get_preset(system) if isinstance(system, str) else system
    if attenuation_db_per_km is not None:
        out = out.replace(fibre=Fibre(attenuation_db_per_km))
    if efficiency is not None:
        out = out.replace(detector=dataclasses.replace(out.detector, efficiency=efficiency))
    if dark_count_prob is not None:
        det = dataclasses.replace(out.detector, dark_count_prob=dark_count_prob)
        out = out.replace(detector=det)
    if dead_time_s is not None:
        det = dataclasses.replace(out.detector, dead_time_s=dead_time_s)
        out = out.replace(detector=det)
    if afterpulse_prob is not None:
        det = dataclasses.replace(out.detector, afterpulse_prob=afterpulse_prob)
        out = out.replace(detector=det)
    if clock_hz is not None:
        out = out.replace(source=dataclasses.replace(out.source, clock_hz=clock_hz))
    if decoy is not None:
        decoys = (decoy, *out.source.decoys[1:])
        out = out.replace(source=dataclasses.replace(out.source, decoys=decoys))
    top = {"misalignment": misalignment, "f_ec": f_ec, "sifting": sifting}
    changes = {k: v for k, v in top.items() if v is not None}
    return out.replace(**changes) if changes else out


# ---------------------------------------------------------------------------------------------
# user-defined systems

SYSTEM_FIELDS: Mapping[str, str] = MappingProxyType(
    {
        "clock_hz": "source.clock_hz",
        "source.mu": "source.mu",
        "source.decoys": "source.decoys",
        "detector.efficiency": "detector.efficiency",
        "detector.dark_count_prob": "detector.dark_count_prob",
        "detector.dead_time_s": "detector.dead_time_s",
        "detector.afterpulse_prob": "detector.afterpulse_prob",
        "fibre.attenuation_db_per_km": "fibre.attenuation_db_per_km",
        "misalignment": "misalignment",
        "f_ec": "f_ec",
        "sifting": "sifting",
        "block_size": "block_size",
        "reference": "reference",
    }
)
"""The parameters of a system definition, by the path a user writes (``clock_hz``,
``detector.dark_count_prob``...) -> the :class:`QKDSystem` field it sets. The clock rate
(pulses per second) turns rates per pulse into bit/s and blocks of pulses into seconds."""

REQUIRED_FIELDS: tuple[str, ...] = ("clock_hz", "detector.efficiency", "detector.dark_count_prob")
"""What a definition without a ``base`` must give (the rest take the dataclass defaults)."""

_USER_PATH = {v: k for k, v in SYSTEM_FIELDS.items()}


def define_system(name: str, values: Mapping[str, Any], base: QKDSystem | None = None) -> QKDSystem:
    """A system named ``name``: ``base`` with the parameters ``values`` replaced.

    Parameters
    ----------
    name : str
        The new system's name.
    values : mapping
        Parameter path (a key of :data:`SYSTEM_FIELDS`) -> value.
    base : QKDSystem, optional
        The system the unspecified parameters come from. Without it, the keys of
        :data:`REQUIRED_FIELDS` must be given and the others take the defaults of
        :class:`Fibre`, :class:`Source`, :class:`Detector` and :class:`QKDSystem`.

    Raises
    ------
    ParameterError
        Named after the user's path of the bad value (``clock_hz: must be > 0, got -1.0``); an
        unknown path lists the known ones.

    Examples
    --------
    >>> s = define_system("mine", {"clock_hz": 1e8, "detector.dark_count_prob": 8e-8},
    ...                   base=get_preset("gys-2004"))
    >>> s.name, s.source.clock_hz, s.detector.dark_count_prob, s.detector.efficiency
    ('mine', 100000000.0, 8e-08, 0.045)
    >>> define_system("x", {"clock_hz": 1e9, "detector.efficiency": 0.2})
    Traceback (most recent call last):
    ...
    qkd.errors.ParameterError: detector.dark_count_prob: must be given (no base system), got None
    """
    for key in values:
        if key not in SYSTEM_FIELDS:
            raise UnknownNameError(str(key), "(a parameter)", list(SYSTEM_FIELDS))
    if base is None:
        for key in REQUIRED_FIELDS:
            if values.get(key) is None:
                raise ParameterError(key, None, "given (no base system)")
    parts: dict[str, dict[str, Any]] = {"source": {}, "detector": {}, "fibre": {}, "": {}}
    origin = "user definition" + (f", based on {base.name}" if base is not None else "")
    parts[""]["reference"] = origin
    for key, value in values.items():
        if value is None:
            continue
        group, _, attr = SYSTEM_FIELDS[key].rpartition(".")
        parts[group][attr] = value
    try:
        if base is None:
            return QKDSystem(
                name=name,
                fibre=Fibre(**parts["fibre"]),
                source=Source(**parts["source"]),
                detector=Detector(**parts["detector"]),
                **parts[""],
            )
        return base.replace(
            name=name,
            fibre=dataclasses.replace(base.fibre, **parts["fibre"]),
            source=dataclasses.replace(base.source, **parts["source"]),
            detector=dataclasses.replace(base.detector, **parts["detector"]),
            **parts[""],
        )
    except ParameterError as exc:
        path = _USER_PATH.get(exc.name, exc.name)
        if exc.name.startswith("source.decoys["):
            path = exc.name
        raise ParameterError(path, exc.value, exc.allowed) from None


class SystemRegistry(Mapping[str, QKDSystem]):
    """Named QKD systems: the presets, extended by user definitions (read-only).

    Parameters
    ----------
    systems : mapping, optional
        Name -> system (default: :data:`PRESETS`).

    Examples
    --------
    >>> reg = SystemRegistry().extended({"mine": ("gys-2004", {"clock_hz": 1e7})})
    >>> sorted(reg), reg["mine"].source.clock_hz
    (['gys-2004', 'mine', 'toshiba-2018'], 10000000.0)
    >>> reg.get_system("nope")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    qkd.errors.UnknownNameError: system: must be one of 'gys-2004', 'mine', ..., got 'nope'
    """

    def __init__(self, systems: Mapping[str, QKDSystem] | None = None) -> None:
        self._systems = MappingProxyType(dict(PRESETS if systems is None else systems))

    def __getitem__(self, name: str) -> QKDSystem:
        return self._systems[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._systems)

    def __len__(self) -> int:
        return len(self._systems)

    def get_system(self, name: str, *, field_name: str = "system") -> QKDSystem:
        """The system called ``name``; :class:`UnknownNameError` on ``field_name`` lists the
        names otherwise."""
        try:
            return self._systems[name]
        except KeyError:
            raise UnknownNameError(field_name, name, sorted(self._systems)) from None

    def extended(
        self, definitions: Mapping[str, tuple[str | None, Mapping[str, Any]]]
    ) -> SystemRegistry:
        """A registry with ``definitions`` added: name -> (base name or None, values).

        A base may be a preset or another definition (in any order); a definition may not
        redefine a name that exists.

        Raises
        ------
        ParameterError
            Named ``<name>.<path>`` for a bad value, ``<name>.base`` for an unknown base or
            a cycle of bases, ``<name>`` for a name that is taken.
        """
        systems = dict(self._systems)
        for name in definitions:
            if name in systems:
                raise ParameterError(
                    name, name, f"a name no preset has (to change it: {name}-mine, base: {name})"
                )
        pending = dict(definitions)
        while pending:
            progressed = False
            for name, (base, values) in list(pending.items()):
                if base is not None and base not in systems:
                    if base in pending:
                        continue
                    allowed = sorted({*systems, *definitions} - {name})
                    raise UnknownNameError(f"{name}.base", base, allowed)
                try:
                    made = define_system(name, values, systems[base] if base else None)
                except ParameterError as exc:
                    raise _prefixed(exc, name) from None
                systems[name] = made
                del pending[name]
                progressed = True
            if not progressed:
                first = sorted(pending)[0]
                raise ParameterError(
                    f"{first}.base",
                    pending[first][0],
                    f"a chain of bases that ends in a preset (these form a cycle: "
                    f"{', '.join(sorted(pending))})",
                )
        return SystemRegistry(systems)


def _prefixed(exc: ParameterError, name: str) -> ParameterError:
    if isinstance(exc, UnknownNameError):
        return UnknownNameError(f"{name}.{exc.name}", exc.value, exc.choices)
    return ParameterError(f"{name}.{exc.name}", exc.value, exc.allowed)
