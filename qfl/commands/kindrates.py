"""``qfl keyrate`` for every link kind of :mod:`qkd.kinds`: parameters, records and the plot.

A kind's parameters are built in this order, each step validated and its errors named after
where the value came from:

1. the preset: ``--preset NAME`` (or ``--preset KIND:NAME`` for one of several kinds), else
   the ``preset:`` of the kind's section in ``--params FILE.yaml``, else the kind's default;
2. the fields of the kind's section in ``--params FILE.yaml`` (nested mappings or dotted
   keys, as :meth:`qkd.kinds.LinkKind.from_mapping` reads them);
3. ``--param KEY=VALUE`` (or ``--param KIND:KEY=VALUE``), repeatable;
4. the single options (``--efficiency``, ``--dark-count``...) where the kind has that field.

``--params FILE.yaml`` maps kind names to their parameters::

    mdi:
      preset: tang-2014
      detector: {efficiency: 0.6, dark_count_prob: 1.0e-8}
    cv-gg02:
      detector.detection: homodyne
      excess_noise: 0.01

The decoy-BB84 kind (parameters :class:`qkd.params.QKDSystem`) keeps the command's own path
(:func:`qfl.commands.keyrate.build_system`): its ``--system``/``--systems`` definitions, the
same keys (:data:`qkd.params.SYSTEM_FIELDS`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from qkd.errors import ParameterError, UnknownNameError
from qkd.kinds import KINDS, LinkKind, get_kind
from qkd.params import QKDSystem
from qkd.rates import PROTOCOLS, plob_bound
from qkd.twinfield import plob_crossing_km

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "SINGLE_OPTION_FIELDS",
    "KindLink",
    "crossing_km",
    "kind_rows",
    "kinds_help",
    "parse_value",
    "plot_kinds",
    "read_params_file",
    "scoped",
    "short_source",
    "uses_unit",
]

SINGLE_OPTION_FIELDS: Mapping[str, str] = {
    "--attenuation": "fibre.attenuation_db_per_km",
    "--efficiency": "detector.efficiency",
    "--dark-count": "detector.dark_count_prob",
    "--clock-hz": "clock_hz",
    "--misalignment": "misalignment",
    "--f-ec": "f_ec",
    "--sifting": "sifting",
    "--dead-time": "detector.dead_time_s",
    "--afterpulse": "detector.afterpulse_prob",
}
"""The single options and the field of a (non-BB84) kind each sets."""


@dataclass(frozen=True)
class KindLink:
    """One kind with the parameters ``qfl keyrate`` built for it.

    Parameters
    ----------
    kind : LinkKind
        The registry entry.
    preset : str
        The preset (or, for decoy-BB84, the system) the parameters start from.
    params : object
        An instance of ``kind.params_type``.
    changed : tuple of str
        The parameter keys set on top of the preset, in order.
    """

    kind: LinkKind
    preset: str
    params: Any
    changed: tuple[str, ...] = ()


def uses_unit(kind: LinkKind) -> str:
    """The channel use of a kind, plural, per second (``"pulse pairs/s"``).

    Examples
    --------
    >>> sorted({uses_unit(kind) for kind in KINDS.values()})
    ['pulse pairs/s', 'pulses/s', 'symbols/s']
    """
    return kind.rate_unit.removeprefix("bit/") + "s/s"


def kinds_help() -> str:
    """The kinds and their presets, for ``--help`` (the default preset first)."""
    parts = []
    for name in sorted(KINDS):
        kind = KINDS[name]
        others = [p for p in sorted(kind.presets) if p != kind.default_preset]
        parts.append(f"{name} ({', '.join([kind.default_preset + '*', *others])})")
    return "; ".join(parts)


def short_source(text: str) -> str:
    """A preset's source cut after its first year in parentheses or after a comma-year.

    Examples
    --------
    >>> short_source("H.-K. Lo, M. Curty, B. Qi, PRL 108, 130503 (2012), Table I (x)")
    'H.-K. Lo, M. Curty, B. Qi, PRL 108, 130503 (2012)'
    >>> short_source("representative of a system at 75 MHz (Tang et al., PRL 113, 2014, 200 km)")
    'representative of a system at 75 MHz (Tang et al., PRL 113, 2014)'
    """
    m = re.search(r"\((19|20)\d\d\)|, (19|20)\d\d\b", text)
    if m is None:
        return text if len(text) <= 90 else text[:87] + "..."
    cut = text[: m.end()]
    if cut.count("(") > cut.count(")"):
        cut += ")"
    return cut


# ---------------------------------------------------------------------------------------------
# values from the command line and from a file


_WORDS: Mapping[str, Any] = {"true": True, "false": False, "null": None, "none": None}


def parse_value(text: str) -> Any:
    """A ``--param`` value: a number, a comma-separated list of numbers, ``true``/``false``,
    ``null``/``none`` (for the optional fields: optimise), else the string itself.

    Examples
    --------
    >>> parse_value("8e-8"), parse_value("16"), parse_value("0.1,0"), parse_value("null")
    (8e-08, 16, (0.1, 0.0), None)
    >>> parse_value("heterodyne"), parse_value("True")
    ('heterodyne', True)
    """
    s = text.strip()
    if s.lower() in _WORDS:
        return _WORDS[s.lower()]
    try:
        return int(s)
    except ValueError:
        pass
    try:
        return float(s)
    except ValueError:
        pass
    if "," in s:
        try:
            return tuple(float(x) for x in s.split(","))
        except ValueError:
            pass
    return s


def _numbers(value: Any) -> Any:
    """YAML 1.1 reads ``1e-7`` (no dot) as a string: such strings become numbers."""
    if isinstance(value, Mapping):
        return {k: _numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_numbers(v) for v in value]
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return value
        return number if math.isfinite(number) else value
    return value


def read_params_file(path: Path) -> dict[str, dict[str, Any]]:
    """``--params FILE.yaml``: kind name -> that kind's parameter mapping.

    Raises
    ------
    ParameterError
        Naming ``--params`` for a missing or malformed file, ``FILE: KEY`` for a key that is
        not a kind or a section that is not a mapping.
    """
    from qfl.scenario.base import ScenarioError
    from qfl.scenario.yamlfile import load_yaml, read_text

    if not path.is_file():
        raise ParameterError("--params", str(path), "an existing YAML file")
    try:
        data = load_yaml(read_text(path), str(path))
    except ScenarioError as exc:
        raise ParameterError("--params", str(path), f"valid YAML ({exc})") from None
    if not isinstance(data, Mapping) or not data:
        raise ParameterError(
            "--params", str(path), "a YAML mapping of kind names to their parameters"
        )
    out: dict[str, dict[str, Any]] = {}
    for name, section in data.items():
        if name not in KINDS:
            raise UnknownNameError(f"{path}: {name}", name, sorted(KINDS))
        if section is None:
            section = {}
        if not isinstance(section, Mapping):
            raise ParameterError(f"{path}: {name}", section, "a mapping of parameters")
        out[str(name)] = _numbers(dict(section))
    return out


def scoped(items: Sequence[str], option: str, kinds: Sequence[str]) -> dict[str | None, list[str]]:
    """Split ``KIND:VALUE`` options by kind (``None``: for every kind).

    Examples
    --------
    >>> name = sorted(KINDS)[0]
    >>> scoped([f"{name}:its-preset", "x"], "--preset", [name]) == {
    ...     name: ["its-preset"], None: ["x"]}
    True
    """
    out: dict[str | None, list[str]] = {}
    for item in items:
        head, sep, rest = item.partition(":")
        if sep and head in KINDS:
            if head not in kinds:
                raise ParameterError(option, item, f"a KIND: prefix among --protocol: {kinds}")
            out.setdefault(head, []).append(rest)
        else:
            out.setdefault(None, []).append(item)
    return out


def _flat(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flat(value, path + "."))
        else:
            out[path] = value
    return out


def _apply(kind: LinkKind, mapping: dict[str, Any], label: Callable[[str], str]) -> Any:
    try:
        return kind.from_mapping(mapping)
    except UnknownNameError as exc:
        raise UnknownNameError(label(exc.name), exc.value, exc.choices) from None
    except ParameterError as exc:
        raise ParameterError(label(exc.name), exc.value, exc.allowed) from None


def _option_label(option: str, scope: str, name: str) -> str:
    return f"{option} ({scope}{name})" if scope else option


def build_kind(
    kind: LinkKind,
    *,
    preset: str | None,
    file_section: Mapping[str, Any] | None,
    file_label: str,
    params: Sequence[str],
    options: Mapping[str, float],
    several: bool = False,
) -> KindLink:
    """A non-BB84 kind's parameters: preset, file, ``--param``, single options (in order).

    ``params`` are ``KEY=VALUE`` strings; ``options`` maps a single option (a key of
    :data:`SINGLE_OPTION_FIELDS`) to its value. Errors name where the bad value came from.
    """
    scope = f"{kind.name}:" if several else ""
    section = _flat(file_section or {})
    file_preset = section.pop("preset", None)
    base = preset if preset is not None else file_preset
    if base is not None:
        where = "--preset" if preset is not None else f"{file_label}: {kind.name}.preset"
        _apply(kind, {"preset": base}, lambda _n: where)
    mapping: dict[str, Any] = {} if base is None else {"preset": base}
    mapping.update(section)
    _apply(kind, mapping, lambda n: f"{file_label}: {kind.name}.{n}")
    changed = list(section)
    for item in params:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ParameterError("--param", item, "KEY=VALUE (detector.dark_count_prob=8e-8)")
        mapping[key] = parse_value(text)
        changed.append(key)
        _apply(kind, mapping, lambda n: f"--param {scope}{n}")
    for option, value in options.items():
        field = SINGLE_OPTION_FIELDS[option]
        mapping[field] = value
        changed.append(field)
        _apply(kind, mapping, partial(_option_label, option, scope))
    params_obj = _apply(kind, mapping, lambda n: n)
    return KindLink(kind, base or kind.default_preset, params_obj, tuple(dict.fromkeys(changed)))


# ---------------------------------------------------------------------------------------------
# records


def _fibre_plob(link: KindLink, lengths: NDArray[np.float64]) -> NDArray[np.float64]:
    """PLOB per channel use of the fibre alone (perfect detectors: the stricter test)."""
    return plob_bound(link.params.fibre.transmittance(lengths))


def crossing_km(link: KindLink, max_km: float) -> float:
    """Shortest length from which the kind's rate exceeds the fibre's PLOB bound, ``nan``
    if it does not up to ``max_km`` (:func:`qkd.twinfield.plob_crossing_km`)."""
    if not link.kind.untrusted_middle or max_km <= 0:
        return math.nan  # a repeaterless point-to-point link cannot beat PLOB
    return plob_crossing_km(link.kind.rate_per_use, link.params, max_km=max_km)


def reach_km(link: KindLink) -> float:
    """Longest link with a positive key (km; ``inf`` beyond 5000 km)."""
    return link.kind.max_distance_km(link.params)


def kind_rows(link: KindLink, distances_km: Sequence[float]) -> list[dict[str, Any]]:
    """One record per distance: rate per channel use and in bit/s, PLOB, and their units."""
    kind, params = link.kind, link.params
    d = np.asarray(distances_km, dtype=float)
    per_use = kind.rate_per_use(params, d)
    uses = float(kind.uses_per_second(params))
    plob = _fibre_plob(link, d)
    units = {
        "rate_per_use": kind.rate_unit,
        "uses_per_second": uses_unit(kind),
        "rate_bps": "bit/s",
        "plob_per_use": kind.rate_unit,
        "plob_bps": "bit/s",
        "distance_km": "km",
    }
    rows = []
    for i in range(d.size):
        rows.append(
            {
                "kind": kind.name,
                "preset": link.preset,
                "system": params.name,
                "distance_km": float(d[i]),
                "rate_per_use": float(per_use[i]),
                "rate_unit": kind.rate_unit,
                "uses_per_second": uses,
                "rate_bps": float(per_use[i] * uses),
                "plob_per_use": float(plob[i]),
                "plob_bps": float(plob[i] * uses),
                "above_plob": bool(per_use[i] > plob[i]),
                "untrusted_middle": kind.untrusted_middle,
                "changed": list(link.changed),
                "units": units,
            }
        )
    return rows


# ---------------------------------------------------------------------------------------------
# the plot


def _si(value: float, unit: str) -> str:
    for prefix, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= size:
            return f"{value / size:g} {prefix}{unit}"
    return f"{value:g} {unit}"


def plot_kinds(
    links: Sequence[KindLink],
    path: Path,
    *,
    max_km: float | None = None,
    marked_km: Sequence[float] = (),
) -> Figure:
    """Save a PNG of key rate (bit/s, log scale) against link length for several kinds;
    returns the figure.

    Each kind is drawn with its PLOB bound (fibre only, at that kind's channel-use rate and
    fibre loss; one dashed line per distinct pair) and, where it beats the bound, the
    crossing is marked. The legend names each kind's preset and its source.
    """
    from matplotlib.figure import Figure

    reaches = [reach_km(link) for link in links]
    if max_km is None or max_km <= 0:
        finite = [r for r in reaches if math.isfinite(r) and r > 0]
        max_km = min(1.1 * max(finite), 1000.0) if finite else 300.0
    d = np.union1d(np.linspace(0.0, max_km, 801), [m for m in marked_km if 0 <= m <= max_km])
    marks = np.isin(d, marked_km)
    fig = Figure(figsize=(11.0, 5.8), layout="constrained")
    ax = fig.add_subplot()
    shown: list[NDArray[np.float64]] = []
    plobs: dict[tuple[float, float], str] = {}
    sources: list[str] = []
    for i, link in enumerate(links):
        kind, params = link.kind, link.params
        colour = f"C{i % 10}"
        uses = float(kind.uses_per_second(params))
        rate = kind.rate_bps(params, d)
        rate = np.where(rate > 0, rate, np.nan)
        preset = kind.presets.get(link.preset)
        source = short_source(preset.source) if preset is not None else ""
        tag = ""
        if source:
            if source not in sources:
                sources.append(source)
            tag = f" [{sources.index(source) + 1}]"
        mod = ", modified" if link.changed else ""
        alpha = params.fibre.attenuation_db_per_km
        label = (
            f"{kind.name}: {link.preset}{tag}{mod}\n"
            f"    {_si(uses, 'Hz')} {kind.rate_unit.removeprefix('bit/')}s, {alpha:.3g} dB/km"
        )
        ax.semilogy(d, rate, "-", color=colour, lw=1.8, label=label)
        if marks.any():
            ax.semilogy(d[marks], rate[marks], "o", color=colour, ms=3.5)
        shown.append(rate[np.isfinite(rate)])
        key = (uses, alpha)
        if key not in plobs:
            plobs[key] = colour
            bound = _fibre_plob(link, d) * uses
            ax.semilogy(d, bound, "--", color=colour, lw=0.9, alpha=0.8,
                        label=f"PLOB bound, {_si(uses, 'Hz')}, {alpha:.3g} dB/km")  # fmt: skip
        cross = crossing_km(link, max_km)
        if math.isfinite(cross):
            y = float(kind.rate_bps(params, np.array([cross]))[0])
            ax.semilogy([cross], [y], "*", color=colour, ms=11, mec="k", mew=0.6, zorder=5)
            ax.annotate(f"{kind.name} beats PLOB\nfrom {cross:.0f} km", (cross, y),
                        textcoords="offset points", xytext=(8, 8), fontsize="small",
                        color=colour)  # fmt: skip
    kind_rates = [r for r in shown if r.size]
    top = max((float(r.max()) for r in kind_rates), default=1.0)
    low = min((float(r.min()) for r in kind_rates), default=top * 1e-8)
    ax.set_ylim(bottom=max(low, top * 1e-10), top=10.0 * top)
    ax.set_xlim(0.0, max_km)
    ax.set_xlabel("link length (km)")
    ax.set_ylabel("secret key rate (bit/s)")
    ax.grid(True, which="major", alpha=0.3)
    ax.set_title(
        "Asymptotic secret key rate by link kind (solid) and the repeaterless PLOB bound "
        "(dashed, fibre only)",
        fontsize="medium",
    )
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
    notes = [f"[{i + 1}] {s}" for i, s in enumerate(sources)]
    notes.append("star: where a kind first beats PLOB")
    if marks.any():
        notes.append("dots: the table's distances")
    ax.text(1.015, 0.0, "\n".join(notes), transform=ax.transAxes, fontsize="x-small",
            va="bottom", ha="left", wrap=False)  # fmt: skip
    try:
        fig.savefig(path, dpi=150)
    except OSError as exc:
        raise ParameterError("--plot", str(path), f"a writable PNG path ({exc.strerror})") from None
    return fig


def is_bb84(kind: LinkKind) -> bool:
    """Whether the kind takes a :class:`qkd.params.QKDSystem` (the decoy-BB84 family)."""
    return kind.params_type is QKDSystem


def lookup(name: str) -> LinkKind:
    """:func:`qkd.kinds.get_kind`, its error naming ``--protocol`` and listing the
    decoy-BB84 protocols (:data:`qkd.rates.PROTOCOLS`) and the kinds."""
    try:
        return get_kind(name)
    except UnknownNameError:
        choices = [*PROTOCOLS, *(k for k in sorted(KINDS) if k not in PROTOCOLS)]
        raise UnknownNameError("--protocol", name, choices) from None
