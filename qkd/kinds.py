"""The registry of link kinds: one entry per kind of QKD link the toolkit can model.

A *link kind* is a key-rate model (a function from link lengths to bit/s given a parameter
object), the parameter dataclass it takes, named presets from published systems with their
sources, its rate unit and whether the link has an untrusted station in the middle. The
scenario parser, ``qfl keyrate``, the network builder and the planner read this registry;
nothing outside it names a kind by string, and a new kind is one :func:`register` call.

=============  =================================  ==============  ==================
kind           model                              rate unit       untrusted middle
=============  =================================  ==============  ==================
``decoy-bb84``  :mod:`qkd.rates` (infinite decoys)  bit/pulse       no
``mdi``         :mod:`qkd.mdi`                      bit/pulse pair  yes (Charlie)
``tf-sns``      :mod:`qkd.twinfield` (SNS)          bit/pulse pair  yes (Charlie)
``tf-pm``       :mod:`qkd.twinfield` (PM)           bit/pulse pair  yes (Charlie)
``cv-gg02``     :mod:`qkd.cv`                       bit/symbol      no
=============  =================================  ==============  ==================

User-supplied parameters go through :meth:`LinkKind.from_mapping`: a mapping with an
optional ``preset`` (the starting point; the kind's default otherwise) and fields to
override, as dotted keys (``{"detector.dark_count_prob": 1e-7}``) or nested mappings
(``{"detector": {"dark_count_prob": 1e-7}}``). Every bad key or value raises one
:class:`~qkd.errors.ParameterError` whose one-line message names the key, the value and what
is allowed.

Examples
--------
>>> kind = get_kind("mdi")
>>> kind.rate_unit, kind.untrusted_middle
('bit/pulse pair', True)
>>> params = kind.from_mapping({"preset": "lcq-2012", "detector.efficiency": 0.5})
>>> params.detector.efficiency
0.5
>>> bool(kind.rate_bps(params, [50.0])[0] > 0)
True
>>> kind.from_mapping({"detector.efficiency": 1.5})
Traceback (most recent call last):
...
qkd.errors.ParameterError: detector.efficiency: must be in (0, 1], got 1.5
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType, NoneType, UnionType
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from qkd import cv, mdi, rates, twinfield
from qkd.errors import ParameterError, UnknownNameError
from qkd.params import PRESETS as BB84_PRESETS
from qkd.params import QKDSystem

__all__ = [
    "KINDS",
    "LinkKind",
    "Preset",
    "get_kind",
    "kind_names",
    "register",
]

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class Preset:
    """A named parameter set of a kind, with where its numbers come from.

    Parameters
    ----------
    params : object
        An instance of the kind's parameter dataclass.
    source : str
        The publication (and any caveat about which numbers are representative).
    """

    params: Any
    source: str


@dataclass(frozen=True)
class LinkKind:
    """One kind of QKD link.

    Parameters
    ----------
    name : str
        The registry key (``"mdi"``).
    title : str
        A human-readable name, with its paper.
    params_type : type
        The frozen dataclass of its parameters.
    rate_per_use : callable
        ``rate_per_use(params, lengths_km) -> ndarray``: asymptotic secret bits per channel
        use (pulse, pulse pair or symbol, see ``rate_unit``), shape of the lengths.
    uses_per_second : callable
        ``uses_per_second(params) -> float``: the clock or symbol rate.
    rate_unit : str
        The unit of ``rate_per_use`` (``"bit/pulse"``, ``"bit/pulse pair"``, ``"bit/symbol"``).
    untrusted_middle : bool
        Whether the link has an untrusted station in the middle (MDI, twin-field).
    presets : Mapping[str, Preset]
        Named published systems.
    default_preset : str
        The preset :meth:`from_mapping` starts from when none is named.
    """

    name: str
    title: str
    params_type: type
    rate_per_use: Callable[[Any, ArrayLike], FloatArray]
    uses_per_second: Callable[[Any], float]
    rate_unit: str
    untrusted_middle: bool
    presets: Mapping[str, Preset]
    default_preset: str

    def __post_init__(self) -> None:
        if self.default_preset not in self.presets:
            raise ParameterError(
                "default_preset", self.default_preset, f"one of the presets of {self.name!r}"
            )

    def rate_bps(self, params: Any, lengths_km: ArrayLike) -> FloatArray:
        """Secret key rate in bit/s for each length: ``rate_per_use * uses_per_second``.

        Examples
        --------
        >>> kind = get_kind("cv-gg02")
        >>> bool(kind.rate_bps(kind.preset(), 10.0) > 0)
        True
        """
        self._check_params(params)
        per_use = self.rate_per_use(params, lengths_km)
        return np.asarray(per_use * self.uses_per_second(params), dtype=np.float64)

    def preset(self, name: str | None = None) -> Any:
        """The parameters of the named preset (the default preset for ``None``).

        Raises
        ------
        UnknownNameError
            For an unknown preset name; the message lists this kind's presets.

        Examples
        --------
        >>> get_kind("tf-pm").preset().name
        'mzz-2018'
        """
        key = self.default_preset if name is None else name
        try:
            return self.presets[key].params
        except KeyError:
            raise UnknownNameError("preset", key, sorted(self.presets)) from None

    def from_mapping(self, mapping: Mapping[str, Any]) -> Any:
        """Parameters from a user mapping: an optional ``preset`` plus overridden fields.

        Keys are dotted paths into the parameter dataclass (``"detector.efficiency"``) or
        nested mappings; values are numbers, booleans, strings or ``None`` as the field
        takes. Unknown keys and bad values raise :class:`ParameterError` naming the key.

        Examples
        --------
        >>> p = get_kind("decoy-bb84").from_mapping(
        ...     {"preset": "gys-2004", "source": {"clock_hz": 1e9}, "misalignment": 0.02}
        ... )
        >>> p.source.clock_hz, p.misalignment
        (1000000000.0, 0.02)
        >>> get_kind("decoy-bb84").from_mapping({"detector.gain": 1})
        Traceback (most recent call last):
        ...
        qkd.errors.ParameterError: detector.gain: must be one of the fields of Detector: \
efficiency, dark_count_prob, dead_time_s, afterpulse_prob, got 1
        """
        if not isinstance(mapping, Mapping):
            raise ParameterError(self.name, mapping, "a mapping of parameter names to values")
        flat = _flatten(mapping)
        preset_name = flat.pop("preset", None)
        if preset_name is not None and not isinstance(preset_name, str):
            raise ParameterError("preset", preset_name, "a preset name (string)")
        params = self.preset(preset_name)
        for key, value in flat.items():
            params = _set_path(params, key.split("."), value, key)
        return params

    def max_distance_km(self, params: Any, *, limit_km: float = 5000.0) -> float:
        """Longest link (km) with a positive key rate, to 0.01 km (bisection).

        Returns 0 if no key is possible at 0 km and ``inf`` if the rate is still positive at
        ``limit_km``.

        Examples
        --------
        >>> kind = get_kind("decoy-bb84")
        >>> round(kind.max_distance_km(kind.preset("gys-2004")), 1)
        142.2
        """
        self._check_params(params)

        def positive(length: float) -> bool:
            return bool(self.rate_per_use(params, np.array([length]))[0] > 0.0)

        if not positive(0.0):
            return 0.0
        hi = 50.0
        while positive(hi):
            if hi >= limit_km:
                return math.inf
            hi = min(2.0 * hi, limit_km)
        lo = 0.0
        while hi - lo > 0.01:
            mid = 0.5 * (lo + hi)
            if positive(mid):
                lo = mid
            else:
                hi = mid
        return lo

    def _check_params(self, params: Any) -> None:
        if not isinstance(params, self.params_type):
            raise ParameterError(
                "params", type(params).__name__, f"a {self.params_type.__name__} ({self.name})"
            )


# ---------------------------------------------------------------------------------------------
# user mappings -> dataclasses


def _flatten(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        if not isinstance(key, str) or not key:
            raise ParameterError(prefix + str(key), key, "a non-empty string key")
        path = prefix + key
        if isinstance(value, Mapping):
            out.update(_flatten(value, path + "."))
        else:
            out[path] = value
    return out


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.init}


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _coerce(tp: Any, value: Any, key: str) -> Any:
    """``value`` converted to the field type ``tp``, or a ParameterError naming ``key``."""
    args = typing.get_args(tp)
    if isinstance(tp, UnionType) or typing.get_origin(tp) is typing.Union:
        if value is None and NoneType in args:
            return None
        inner = [a for a in args if a is not NoneType]
        if len(inner) == 1:
            try:
                return _coerce(inner[0], value, key)
            except ParameterError:
                raise ParameterError(key, value, f"{_describe(inner[0])} or null") from None
    if tp is float:
        if _is_number(value):
            return float(value)
        raise ParameterError(key, value, "a number")
    if tp is int:
        if _is_number(value) and float(value).is_integer():
            return int(value)
        raise ParameterError(key, value, "an integer")
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ParameterError(key, value, "true or false")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ParameterError(key, value, "a string")
    if typing.get_origin(tp) is tuple:
        if isinstance(value, list | tuple) and all(_is_number(v) for v in value):
            return tuple(float(v) for v in value)
        raise ParameterError(key, value, "a list of numbers")
    raise ParameterError(key, value, f"a {_describe(tp)}")


def _describe(tp: Any) -> str:
    names = {float: "number", int: "integer", bool: "boolean", str: "string"}
    return names.get(tp, getattr(tp, "__name__", str(tp)))


def _set_path(obj: Any, parts: list[str], value: Any, key: str) -> Any:
    """A copy of the dataclass ``obj`` with the field at ``parts`` set to ``value``."""
    types = _field_types(type(obj))
    head = parts[0]
    if head not in types:
        prefix = key[: len(key) - len(".".join(parts))]
        where = prefix + head
        allowed = f"one of the fields of {type(obj).__name__}: " + ", ".join(types)
        raise ParameterError(where, value, allowed)
    current = getattr(obj, head)
    if len(parts) > 1:
        if not dataclasses.is_dataclass(current):
            raise ParameterError(key, value, f"a key without '.' after {head!r}")
        new = _set_path(current, parts[1:], value, key)
    elif dataclasses.is_dataclass(current):
        raise ParameterError(key, value, f"a mapping of the fields of {type(current).__name__}")
    else:
        new = _coerce(types[head], value, key)
    return dataclasses.replace(obj, **{head: new})


# ---------------------------------------------------------------------------------------------
# the registry

_REGISTRY: dict[str, LinkKind] = {}

KINDS: Mapping[str, LinkKind] = MappingProxyType(_REGISTRY)
"""Registered link kinds by name (read-only view; add with :func:`register`)."""


def register(kind: LinkKind) -> LinkKind:
    """Add a kind to the registry (its ``name`` must be new); returns it.

    Raises
    ------
    ParameterError
        If a kind of that name is already registered.
    """
    if kind.name in _REGISTRY:
        raise ParameterError("kind", kind.name, "a name not yet registered")
    _REGISTRY[kind.name] = kind
    return kind


def get_kind(name: str) -> LinkKind:
    """The registered kind called ``name``.

    Raises
    ------
    UnknownNameError
        For an unknown name; the message lists the kinds.

    Examples
    --------
    >>> get_kind("tf-sns").untrusted_middle
    True
    >>> get_kind("satellite")
    Traceback (most recent call last):
    ...
    qkd.errors.UnknownNameError: kind: must be one of 'cv-gg02', 'decoy-bb84', 'mdi', \
'tf-pm', 'tf-sns', got 'satellite'
    """
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownNameError("kind", name, sorted(_REGISTRY)) from None


def kind_names() -> tuple[str, ...]:
    """Names of the registered kinds, sorted.

    Examples
    --------
    >>> kind_names()
    ('cv-gg02', 'decoy-bb84', 'mdi', 'tf-pm', 'tf-sns')
    """
    return tuple(sorted(_REGISTRY))


def _presets(systems: Mapping[str, Any]) -> Mapping[str, Preset]:
    return MappingProxyType({name: Preset(p, p.reference) for name, p in systems.items()})


def _bb84_rate(system: QKDSystem, lengths_km: ArrayLike) -> FloatArray:
    return rates.key_rate_per_pulse(system, lengths_km, "decoy-bb84")


register(
    LinkKind(
        name="decoy-bb84",
        title="decoy-state BB84, infinitely many decoys (Lo, Ma & Chen 2005; Ma et al. 2005)",
        params_type=QKDSystem,
        rate_per_use=_bb84_rate,
        uses_per_second=lambda p: p.source.clock_hz,
        rate_unit="bit/pulse",
        untrusted_middle=False,
        presets=_presets(BB84_PRESETS),
        default_preset="gys-2004",
    )
)
register(
    LinkKind(
        name="mdi",
        title="MDI-QKD with decoy states (Lo, Curty & Qi 2012; Xu, Curty, Qi & Lo 2013)",
        params_type=mdi.MDISystem,
        rate_per_use=mdi.key_rate_per_pulse,
        uses_per_second=lambda p: p.clock_hz,
        rate_unit="bit/pulse pair",
        untrusted_middle=True,
        presets=_presets(mdi.PRESETS),
        default_preset="lcq-2012",
    )
)
register(
    LinkKind(
        name="tf-sns",
        title="twin-field QKD, sending-or-not-sending (Wang, Yu & Hu 2018)",
        params_type=twinfield.TwinFieldSystem,
        rate_per_use=twinfield.sns_key_rate_per_pulse,
        uses_per_second=lambda p: p.clock_hz,
        rate_unit="bit/pulse pair",
        untrusted_middle=True,
        presets=_presets(twinfield.PRESETS),
        default_preset="mzz-2018",
    )
)
register(
    LinkKind(
        name="tf-pm",
        title="twin-field QKD, phase matching (Ma, Zeng & Zhou 2018)",
        params_type=twinfield.TwinFieldSystem,
        rate_per_use=twinfield.pm_key_rate_per_pulse,
        uses_per_second=lambda p: p.clock_hz,
        rate_unit="bit/pulse pair",
        untrusted_middle=True,
        presets=_presets(twinfield.PRESETS),
        default_preset="mzz-2018",
    )
)
register(
    LinkKind(
        name="cv-gg02",
        title="CV-QKD GG02, Gaussian modulation, reverse reconciliation (Grosshans & Grangier "
        "2002)",
        params_type=cv.CVSystem,
        rate_per_use=cv.key_rate_per_symbol,
        uses_per_second=lambda p: p.symbol_rate_hz,
        rate_unit="bit/symbol",
        untrusted_middle=False,
        presets=_presets(cv.PRESETS),
        default_preset="jain-2022",
    )
)
