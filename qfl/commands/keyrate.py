"""``qfl keyrate``: secret key rates of a QKD system over a list of link lengths.

Example::

    qfl keyrate --protocol mdi,tf-sns,tf-pm,cv-gg02 --distance 0 50 100 --plot kinds.png
    qfl keyrate --protocol tf-pm --preset fang-2020 --param misalignment=0.02 --json
    qfl keyrate --params mine.yaml --param cv-gg02:detector.detection=homodyne
    qfl keyrate --preset gys-2004 --protocol decoy-bb84 --distance 0 25 50 100 --json
    qfl keyrate --preset toshiba-2018 --finite-key --block-size 1e10 --protocol decoy-1
    qfl keyrate --finite-key --block-size 1e10 1e12 --distance 0 50 100 --plot rates.png
    qfl keyrate --systems scenario.yaml --system vendor-x --param clock_hz=2e9 --finite-key

``--finite-key`` gives optimised finite-key rates (:func:`qkd.finite.finite_key`; protocols
``decoy-2``, the default, and ``decoy-1``) for blocks of ``--block-size`` pulses (default:
the preset's published block, else 1e10; several values give one table per block).

``--plot FILE.png`` draws what the table holds, and the table (or ``--json``) is still
printed. Without ``--finite-key`` it draws the asymptotic rate of ``--protocol``; with it,
the finite-key rates of each ``--block-size`` (default: 1e8, 1e10, 1e12, 1e14 and the
system's block) and their ``N -> infinity`` limits. Those limits use the finite-key
convention: the key-basis probability is optimised and tends to 1. They are upper bounds of
the finite-key curves. ``--distance`` sets the x-axis range (0 to the longest distance) and
its values are marked on the curves.

``--system NAME`` picks a preset or a system defined in ``--systems FILE.yaml`` (a scenario's
``qkd.systems`` or a file with just ``systems:``, read by :func:`qfl.scenario.read_systems`,
the same definitions a scenario's links use); ``--param KEY=VALUE`` (repeatable) sets one
parameter of it (keys: :data:`qkd.params.SYSTEM_FIELDS`, e.g. ``clock_hz=2e9``,
``detector.dark_count_prob=8e-8``), and the single options (``--efficiency``...) apply last.

``--protocol`` with a link kind other than decoy-BB84 (:mod:`qkd.kinds`), or with several
kinds separated by commas, gives each kind's asymptotic rate per channel use and in bit/s
beside the fibre's PLOB bound (:mod:`qfl.commands.kindrates`: how ``--preset KIND:NAME``,
``--param KIND:KEY=VALUE`` and ``--params FILE.yaml`` build each kind's parameters); every
record names the unit of each of its rates (``units``), and ``--plot`` draws the kinds on one
chart. One decoy-BB84 protocol alone keeps the table, the finite-key rates and the plot
described above.

``--distance`` and ``--block-size`` take one or more numbers after a single flag (they may
also be repeated). Bad values raise :class:`~qkd.errors.ParameterError` naming the option,
which :func:`qfl.cli.main` prints as one line on stderr with exit status 2.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Annotated, Any, TypeVar

import numpy as np
import typer
from numpy.typing import NDArray
from rich.console import Console
from rich.table import Table
from typer.core import TyperCommand

from qfl.commands import kindrates
from qfl.commands.kindrates import KindLink
from qfl.commands.tables import print_table
from qfl.scenario.qkd import read_systems
from qkd.errors import ParameterError, UnknownNameError
from qkd.finite import (
    FINITE_PROTOCOLS,
    asymptotic_key,
    asymptotic_limit,
    finite_key,
    finite_max_distance,
)
from qkd.kinds import KINDS
from qkd.params import (
    PRESETS,
    SYSTEM_FIELDS,
    QKDSystem,
    SystemRegistry,
    define_system,
    with_overrides,
)
from qkd.rates import (
    PROTOCOLS,
    gain_and_qber,
    key_rate_and_mu,
    max_distance,
    plob_bound,
    single_photon_gain_and_qber,
    tgw_bound,
)

__all__ = [
    "DEFAULT_DISTANCES_KM",
    "DEFAULT_PLOT_BLOCKS",
    "Curve",
    "KeyrateCommand",
    "build_system",
    "finite_rows",
    "keyrate",
    "keyrate_rows",
    "parse_params",
    "plot_rates",
    "rate_curves",
]

DEFAULT_DISTANCES_KM: tuple[float, ...] = (0.0, 25.0, 50.0, 75.0, 100.0, 125.0, 150.0)
"""Distances used when no ``--distance`` is given."""

_T = TypeVar("_T")


class KeyrateCommand(TyperCommand):
    """A command whose ``--distance`` and ``--block-size`` take several values after one flag.

    Click options take one value per flag; before parsing, ``--distance 0 25 50`` is
    rewritten to ``--distance 0 --distance 25 --distance 50``. Every token after the flag
    that reads as a number (negative ones included, so that they reach validation) is taken;
    the first token after the flag is always taken, so that a bad value is reported.
    """

    multi_value_options: tuple[str, ...] = ("--distance", "-d", "--block-size")

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        return super().parse_args(ctx, expand_multi_value(args, self.multi_value_options))


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def expand_multi_value(args: list[str], flags: tuple[str, ...]) -> list[str]:
    """Repeat a flag before each of the numbers that follow it.

    Examples
    --------
    >>> expand_multi_value(["--distance", "0", "25", "--json"], ("--distance",))
    ['--distance', '0', '--distance', '25', '--json']
    >>> expand_multi_value(["--distance=5", "-1"], ("--distance",))
    ['--distance=5', '--distance', '-1']
    """
    out: list[str] = []
    i = 0
    while i < len(args):
        token = args[i]
        i += 1
        if token == "--":
            out.extend(args[i - 1 :])
            break
        flag = next((f for f in flags if token == f or token.startswith(f + "=")), None)
        if flag is None:
            out.append(token)
            continue
        if token == flag:
            if i >= len(args):
                out.append(token)  # let click report the missing value
                continue
            out += [flag, args[i]]
            i += 1
        else:
            out.append(token)
        while i < len(args) and _is_number(args[i]):
            out += [flag, args[i]]
            i += 1
    return out


def _renamed(exc: ParameterError, names: Mapping[str, str]) -> ParameterError:
    """The same error, named after the command-line option that carried the value."""
    option = names.get(exc.name)
    if option is None:
        return exc
    label = option if option.lstrip("-").replace("-", "_") == exc.name else f"{option} ({exc.name})"
    if isinstance(exc, UnknownNameError):
        return UnknownNameError(label, exc.value, exc.choices)
    return ParameterError(label, exc.value, exc.allowed)


def _with_option(option: str, build: Callable[[], _T]) -> _T:
    try:
        return build()
    except ParameterError as exc:
        raise _renamed(exc, {exc.name: option}) from None


def parse_params(items: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """``--param KEY=VALUE`` options as system parameters (:data:`qkd.params.SYSTEM_FIELDS`).

    Values are numbers, except ``source.decoys`` (comma-separated numbers) and ``reference``.

    Examples
    --------
    >>> parse_params(["detector.dark_count_prob=8e-8", "source.decoys=0.1,0"])
    {'detector.dark_count_prob': 8e-08, 'source.decoys': (0.1, 0.0)}
    """
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ParameterError("--param", item, "KEY=VALUE (detector.dark_count_prob=8e-8)")
        if key not in SYSTEM_FIELDS:
            raise UnknownNameError(f"--param {key}", item, list(SYSTEM_FIELDS))
        if key == "reference":
            out[key] = text
            continue
        try:
            numbers = tuple(float(x) for x in text.split(","))
        except ValueError:
            raise ParameterError(f"--param {key}", text, "a number") from None
        if key != "source.decoys" and len(numbers) != 1:
            raise ParameterError(f"--param {key}", text, "one number")
        out[key] = numbers if key == "source.decoys" else numbers[0]
    return out


def build_system(
    preset: str,
    *,
    registry: Mapping[str, QKDSystem] | None = None,
    params: Mapping[str, Any] | None = None,
    option: str = "--preset",
    clock_hz: float | None = None,
    efficiency: float | None = None,
    dark_count: float | None = None,
    attenuation: float | None = None,
    misalignment: float | None = None,
    f_ec: float | None = None,
    sifting: float | None = None,
    decoy: float | None = None,
    dead_time: float | None = None,
    afterpulse: float | None = None,
) -> QKDSystem:
    """A named system (a preset, or one of ``registry``, the presets extended by the user's
    definitions) with ``params`` (parameter path -> value) and then the single-parameter
    options applied; errors name the command-line option (``option`` for the name).

    Examples
    --------
    >>> build_system("gys-2004", efficiency=0.1).detector.efficiency
    0.1
    >>> build_system("gys-2004", params={"clock_hz": 1e9}).source.clock_hz
    1000000000.0
    """
    reg = SystemRegistry(registry) if registry is not None else SystemRegistry()
    system = _with_option(option, lambda: reg.get_system(preset, field_name=option.lstrip("-")))
    if params:
        try:
            system = define_system(system.name, params, base=system)
        except ParameterError as exc:
            raise ParameterError(f"--param {exc.name}", exc.value, exc.allowed) from None
    options = {
        "fibre.attenuation_db_per_km": "--attenuation",
        "detector.efficiency": "--efficiency",
        "detector.dark_count_prob": "--dark-count",
        "source.clock_hz": "--clock-hz",
        "source.decoys[0]": "--decoy",
        "misalignment": "--misalignment",
        "f_ec": "--f-ec",
        "sifting": "--sifting",
        "detector.dead_time_s": "--dead-time",
        "detector.afterpulse_prob": "--afterpulse",
    }
    try:
        return with_overrides(
            system, attenuation_db_per_km=attenuation, efficiency=efficiency,
            dark_count_prob=dark_count, clock_hz=clock_hz, decoy=decoy,
            misalignment=misalignment, f_ec=f_ec, sifting=sifting,
            dead_time_s=dead_time, afterpulse_prob=afterpulse,
        )  # fmt: skip
    except ParameterError as exc:
        raise _renamed(exc, options) from None


def keyrate_rows(
    system: QKDSystem, distances_km: list[float], protocol: str, mu: float | None
) -> list[dict[str, Any]]:
    """One record per distance: rates, the intensity used, gain, QBER and the bounds.

    With ``mu=None`` the intensity is optimised per distance. Where that leaves no key there
    is no optimal intensity: ``mu`` is ``None`` and ``gain`` and ``qber`` are those of pulses
    of the system's signal intensity ``source.mu`` (``qber_mu`` says which intensity the
    QBER is of; ``no_key`` why there is none).
    """
    _check_distances(distances_km)
    if protocol not in PROTOCOLS:
        raise UnknownNameError("--protocol", protocol, PROTOCOLS)
    d = np.asarray(distances_km, dtype=float)
    try:
        rate, mu_used = key_rate_and_mu(system, d, protocol, mu)
    except ParameterError as exc:
        raise _renamed(exc, {"mu": "--mu", "source.decoys[0]": "--decoy"}) from None
    if protocol == "single-photon":
        gain, qber = single_photon_gain_and_qber(system, d)
    else:
        gain, qber = gain_and_qber(system, d, mu_used)
    nominal_gain, nominal_qber = gain_and_qber(system, d, system.source.mu)
    eta = system.transmittance(d)
    plob, tgw = plob_bound(eta), tgw_bound(eta)
    rows = []
    for i in range(d.size):
        blank = rate[i] == 0 and mu is None and protocol != "single-photon"
        rows.append(
            {
                "distance_km": float(d[i]),
                "protocol": protocol,
                "mu": None if blank else float(mu_used[i]),
                "gain": float(nominal_gain[i] if blank else gain[i]),
                "qber": float(nominal_qber[i] if blank else qber[i]),
                "qber_mu": system.source.mu if blank else float(mu_used[i]),
                "no_key": "QBER and loss too high for this protocol" if rate[i] == 0 else None,
                "transmittance": float(eta[i]),
                "rate_per_pulse": float(rate[i]),
                "rate_bps": float(rate[i] * system.source.clock_hz),
                "plob_per_use": float(plob[i]),
                "tgw_per_use": float(tgw[i]),
                "rate_unit": "bit/pulse",
                "kind": protocol if protocol in KINDS else None,
                "system": system.name,
                "rate_per_use": float(rate[i]),
                "uses_per_second": system.source.clock_hz,
                "untrusted_middle": False,  # every protocol of qkd.rates: prepare and measure
                "units": _BB84_UNITS,
            }
        )
    return rows


_BB84_UNITS: Mapping[str, str] = {
    "rate_per_pulse": "bit/pulse",
    "rate_bps": "bit/s",
    "plob_per_use": "bit/pulse",
    "tgw_per_use": "bit/pulse",
    "distance_km": "km",
    "rate_per_use": "bit/pulse",
    "uses_per_second": "pulses/s",
}

_FINITE_UNITS: Mapping[str, str] = {
    **{
        k: v
        for k, v in _BB84_UNITS.items()
        if k not in ("tgw_per_use", "rate_per_use", "uses_per_second")
    },
    "key_per_block": "bit",
    "limit_rate_bps": "bit/s",
}

_FINITE_OPTIONS = {
    "block_size": "--block-size",
    "eps_sec": "--eps-sec",
    "eps_cor": "--eps-cor",
    "weakest": "--weakest",
    "protocol": "--protocol",
}


def _check_distances(distances_km: list[float]) -> None:
    for length in distances_km:
        if not (math.isfinite(length) and length >= 0):
            raise ParameterError("--distance", length, ">= 0 (km) and finite")


def finite_rows(
    system: QKDSystem,
    distances_km: list[float],
    protocol: str,
    block_size: float,
    *,
    eps_sec: float = 1e-10,
    eps_cor: float = 1e-15,
    weakest: float = 2e-4,
) -> list[dict[str, Any]]:
    """One record per distance: the optimised finite key, its parameters and the bounds.

    ``mu`` is the strongest intensity. ``limit_rate_bps`` is the ``N -> infinity`` limit of
    the same bound (:func:`qkd.finite.asymptotic_key`: the same intensities, the key-basis
    probability optimised, no statistical terms), an upper bound of ``rate_bps``. Where
    there is no key the intensities, probabilities, ``q_x`` and phase error are ``None``,
    ``qber`` is that of pulses of the system's signal intensity ``source.mu``
    (:func:`qkd.finite.signal_qber`, ``qber_mu``), and ``no_key`` says why: the block is too
    small (the limit is positive) or the link is beyond the protocol's reach.
    """
    _check_distances(distances_km)
    d = np.asarray(distances_km, dtype=float)
    try:
        fk = finite_key(
            system, d, block_size, protocol=protocol, eps_sec=eps_sec, eps_cor=eps_cor,
            weakest=weakest,
        )  # fmt: skip
    except ParameterError as exc:
        raise _renamed(exc, _FINITE_OPTIONS) from None
    limit = asymptotic_key(system, d, protocol=protocol, weakest=weakest)
    eta = system.transmittance(d)
    plob = plob_bound(eta)
    rows = []
    for i in range(d.size):
        has_key = fk.key_per_block[i] > 0
        if has_key:
            why = None
        elif limit[i] > 0:
            why = "block too small (the same bound gives a key as N -> infinity)"
        else:
            why = "beyond the protocol's reach even for N -> infinity"
        rows.append(
            {
                "distance_km": float(d[i]),
                "protocol": protocol,
                "mu": _num(fk.intensities[i, 0]),
                "intensities": [_num(x) for x in fk.intensities[i]],
                "probabilities": [_num(x) for x in fk.probabilities[i]],
                "key_basis_prob": _num(fk.key_basis_prob[i]),
                "qber": float(fk.qber[i]),
                "qber_mu": None if has_key else system.source.mu,
                "phase_error": _num(fk.phase_error[i]),
                "no_key": why,
                "transmittance": float(eta[i]),
                "block_size": fk.block_size,
                "block_time_s": fk.block_time_s,
                "key_per_block": float(fk.key_per_block[i]),
                "rate_per_pulse": float(fk.rate_per_pulse[i]),
                "rate_bps": float(fk.rate_bps[i]),
                "limit_rate_bps": float(limit[i] * system.source.clock_hz),
                "plob_per_use": float(plob[i]),
                "eps_sec": eps_sec,
                "eps_cor": eps_cor,
                "rate_unit": "bit/pulse",
                "units": _FINITE_UNITS,
            }
        )
    return rows


def _num(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


def _finite_table(system: QKDSystem, rows: list[dict[str, Any]], l_max: float) -> Table:
    first = rows[0]
    notes = [
        f"blocks of {first['block_size']:.3g} pulses ({first['block_time_s']:.3g} s)",
        f"maximum distance {l_max:.1f} km",
        "intensities, their probabilities and q_x optimised",
        "N->inf: the same bound without statistical terms (q_x -> 1), an upper bound",
    ]
    if any(r["no_key"] for r in rows):
        notes.append(
            f"* no key: QBER of pulses at the system's signal intensity mu = {system.source.mu:g}"
        )
    table = Table(title=f"{system.name}: finite key, {first['protocol']}", caption="; ".join(notes))
    headers = ("L (km)", "intensities", "q_x", "QBER", "key/block", "bit/s", "N->inf bit/s")
    for header in headers:
        table.add_column(header, justify="right", min_width=16 if header == "intensities" else None)
    for r in rows:
        no_key = r["no_key"] is not None
        reason = "N too small" if no_key and r["limit_rate_bps"] > 0 else "beyond reach"
        table.add_row(
            f"{r['distance_km']:g}",
            reason if no_key else "/".join(f"{m:.2g}" for m in r["intensities"]),
            "-" if no_key else f"{r['key_basis_prob']:.3f}",
            f"{r['qber']:.4f}" + ("*" if no_key else ""),
            f"{r['key_per_block']:.4g}",
            f"{r['rate_bps']:.4g}",
            f"{r['limit_rate_bps']:.4g}",
        )
    return table


DEFAULT_PLOT_BLOCKS: tuple[float, ...] = (1e8, 1e10, 1e12, 1e14)
"""Block sizes drawn by ``--plot --finite-key`` when no ``--block-size`` is given (with the
system's own block)."""


@dataclass(frozen=True)
class Curve:
    """One curve of a key-rate plot: its label, line style and rates in bit/s."""

    label: str
    style: str
    rate_bps: NDArray[np.float64]
    bound: bool = False


def rate_curves(
    system: QKDSystem,
    distances_km: NDArray[np.float64],
    *,
    finite: bool,
    protocol: str,
    block_sizes: tuple[float, ...] = DEFAULT_PLOT_BLOCKS,
    mu: float | None = None,
    eps_sec: float = 1e-10,
    eps_cor: float = 1e-15,
    weakest: float = 2e-4,
) -> list[Curve]:
    """The curves of ``qfl keyrate --plot``, in bit/s at ``distances_km``.

    With ``finite``: one finite-key curve per block size (:func:`qkd.finite.finite_key`),
    the ``N -> infinity`` limit of the same bound (:func:`qkd.finite.asymptotic_key`), the
    limit with infinitely many decoys (:func:`qkd.finite.asymptotic_limit`) and PLOB, each an
    upper bound of the ones before. Every curve shares the finite-key convention: the
    key-basis probability is optimised, so as ``N`` grows it tends to 1 and no pulse is lost
    to sifting. Without ``finite``: the asymptotic rate of ``protocol`` with the system's
    sifting factor (:func:`qkd.rates.key_rate_and_mu`) and PLOB.
    """
    clock = system.source.clock_hz
    eta = system.transmittance(distances_km)
    plob = Curve("PLOB bound (repeaterless capacity)", "k--", plob_bound(eta) * clock, True)
    if not finite:
        rate = key_rate_and_mu(system, distances_km, protocol, mu)[0] * clock
        how = "mu optimised" if mu is None else f"mu = {mu:g}"
        label = f"{protocol}, asymptotic ({how}; sifting q = {system.sifting:g})"
        return [Curve(label, "C0-", rate), plob]
    curves = []
    for n in sorted(block_sizes):
        fk = finite_key(system, distances_km, n, protocol=protocol, eps_sec=eps_sec,
                        eps_cor=eps_cor, weakest=weakest)  # fmt: skip
        label = f"finite key, N = {_power(n)} pulses ({_duration(fk.block_time_s)} per block)"
        curves.append(Curve(label, "-", fk.rate_bps))
    same = asymptotic_key(system, distances_km, protocol=protocol, weakest=weakest) * clock
    curves.append(Curve(f"N → ∞, the same {protocol} bound (q_x → 1)", "k-", same, True))
    ideal = asymptotic_limit(system, distances_km) * clock
    curves.append(Curve("N → ∞, infinitely many decoys (q_x → 1)", "k:", ideal, True))
    curves.append(plob)
    return curves


def _power(n: float) -> str:
    """``1e+10`` as ``1e10`` (and ``2e9`` as ``2e9``)."""
    mantissa, _, exponent = f"{n:.1e}".partition("e")
    return f"{float(mantissa):g}e{int(exponent)}"


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86400.0), ("h", 3600.0), ("min", 60.0), ("s", 1.0)):
        if seconds >= size:
            return f"{seconds / size:.3g} {unit}"
    return f"{seconds:.3g} s"


def plot_rates(
    system: QKDSystem,
    path: Path,
    *,
    finite: bool = True,
    protocol: str = "decoy-2",
    block_sizes: tuple[float, ...] = DEFAULT_PLOT_BLOCKS,
    marked_km: tuple[float, ...] = (),
    max_km: float | None = None,
    mu: float | None = None,
    eps_sec: float = 1e-10,
    eps_cor: float = 1e-15,
    weakest: float = 2e-4,
) -> None:
    """Save a PNG of key rate (bit/s) against distance, log scale: the curves of
    :func:`rate_curves` from 0 to ``max_km`` (default: 10% beyond the reach), with the
    distances ``marked_km`` marked on each key-rate curve."""
    from matplotlib.figure import Figure

    if max_km is None or max_km <= 0:
        top = max_distance(system, "decoy-bb84")
        max_km = 300.0 if not math.isfinite(top) else 1.1 * top
    d = np.union1d(np.linspace(0.0, max_km, 161), [m for m in marked_km if m <= max_km])
    curves = rate_curves(system, d, finite=finite, protocol=protocol, block_sizes=block_sizes,
                         mu=mu, eps_sec=eps_sec, eps_cor=eps_cor, weakest=weakest)  # fmt: skip
    marks = np.isin(d, marked_km)
    fig = Figure(figsize=(9.5, 5.0), layout="constrained")
    ax = fig.add_subplot()
    positive = []
    for c in curves:
        rate = np.where(c.rate_bps > 0, c.rate_bps, np.nan)
        (line,) = ax.semilogy(d, rate, c.style, label=c.label, lw=1.0 if c.bound else 1.6)
        if not c.bound and marks.any():
            ax.semilogy(d[marks], rate[marks], "o", color=line.get_color(), ms=4, clip_on=False)
        positive.append(rate[np.isfinite(rate)])
    values = np.concatenate(positive)
    top_rate = float(values.max()) if values.size else 1.0
    low = float(values.min()) if values.size else 1e-3
    ax.set_ylim(bottom=max(low, top_rate * 1e-9, 1e-6), top=2.0 * top_rate)
    ax.set_xlim(0.0, max_km)
    ax.set_xlabel("link length (km)")
    ax.set_ylabel("secret key rate (bit/s)")
    ax.grid(True, which="major", alpha=0.3)
    kind = f"{protocol} finite-key rates" if finite else f"{protocol} asymptotic rate"
    ax.set_title(
        f"{system.name}: {kind} ({system.fibre.attenuation_db_per_km:g} dB/km, "
        f"{system.source.clock_hz:.3g} pulses/s)",
        fontsize="medium",
    )
    notes = ["dots: the table's distances"] if marks.any() else []
    if finite:
        notes += ["intensities, their probabilities and the", "key-basis probability q_x optimised",
                  f"per length; eps_sec = {eps_sec:g}, eps_cor = {eps_cor:g}"]  # fmt: skip
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small",
              title="\n".join(notes) or None, title_fontsize="small", alignment="left")  # fmt: skip
    fig.savefig(path, dpi=150)


def _check_finite_protocol(protocol: str | None) -> None:
    if protocol is not None and protocol not in FINITE_PROTOCOLS:
        raise UnknownNameError("--protocol", protocol, FINITE_PROTOCOLS)


def _finite_or_none(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _table(
    system: QKDSystem, protocol: str, rows: list[dict[str, Any]], l_max: float, mu_fixed: bool
) -> Table:
    notes = [f"maximum distance {l_max:.1f} km", "PLOB = -log2(1 - eta) per channel use"]
    if not mu_fixed:
        notes.append("mu optimised")
    if any(r["mu"] is None for r in rows):
        notes.append(f"* no key: gain and QBER of pulses at the system's mu = {system.source.mu:g}")
    table = Table(title=f"{system.name}: {protocol}", caption="; ".join(notes))
    for header in ("L (km)", "mu", "gain", "QBER", "bits/pulse", "bit/s", "PLOB/use"):
        table.add_column(header, justify="right")
    for r in rows:
        star = "*" if r["mu"] is None else ""
        table.add_row(
            f"{r['distance_km']:g}",
            "- no key" if r["mu"] is None else f"{r['mu']:.3f}",
            f"{r['gain']:.3e}{star}",
            f"{r['qber']:.4f}{star}",
            f"{r['rate_per_pulse']:.3e}",
            f"{r['rate_bps']:.4g}",
            f"{r['plob_per_use']:.3e}",
        )
    return table


def keyrate(
    distance: Annotated[
        list[float] | None,
        typer.Option(
            "--distance",
            "-d",
            help="Link lengths in km, several after one flag: --distance 0 25 50.",
            show_default=False,
        ),
    ] = None,
    system_name: Annotated[
        str | None,
        typer.Option(
            "--system",
            help="QKD system: a preset (" + ", ".join(sorted(PRESETS)) + ") or a name "
            "defined in --systems (default gys-2004).",
            show_default=False,
        ),
    ] = None,
    preset: Annotated[
        list[str] | None,
        typer.Option(
            help="The preset of each kind in --protocol (the older name of --system for "
            "decoy-BB84): NAME for every kind, or KIND:NAME for one (repeatable); the kinds' "
            "presets are listed under --protocol, * the default.",
            show_default=False,
        ),
    ] = None,
    params_file: Annotated[
        Path | None,
        typer.Option(
            "--params",
            help="YAML file mapping kind names to their parameters (a preset: and any field, "
            "nested or dotted: `mdi: {preset: tang-2014, detector: {efficiency: 0.6}}`); "
            "without --protocol, every kind in the file is computed.",
        ),
    ] = None,
    systems_file: Annotated[
        Path | None,
        typer.Option(
            "--systems",
            help="YAML file defining systems: a scenario (its qkd.systems) or a file with just "
            "`systems:`, as in 'Your own QKD system' of the README.",
        ),
    ] = None,
    param: Annotated[
        list[str] | None,
        typer.Option(
            help="Set one parameter, repeatable: KEY=VALUE, or KIND:KEY=VALUE for one of "
            "several kinds (detector.dark_count_prob=8e-8, mdi:relay_fraction=0.3, "
            "cv-gg02:detector.detection=homodyne, modulation_variance=null to optimise). "
            "Keys: the fields of the kind's parameters, nested with '.'; for decoy-BB84 "
            + ", ".join(SYSTEM_FIELDS)
            + ".",
            show_default=False,
        ),
    ] = None,
    protocol: Annotated[
        str | None,
        typer.Option(
            help="One link kind or several, comma-separated; the kinds (their presets, * the "
            "default): "
            + kindrates.kinds_help()
            + "), or one decoy-BB84 protocol: "
            + ", ".join(PROTOCOLS)
            + " (default decoy-bb84); with --finite-key one of: "
            + ", ".join(FINITE_PROTOCOLS)
            + " (default decoy-2).",
            show_default=False,
        ),
    ] = None,
    mu: Annotated[
        float | None, typer.Option(help="Signal mean photon number (default: optimised).")
    ] = None,
    clock_hz: Annotated[float | None, typer.Option(help="Pulse rate in Hz.")] = None,
    efficiency: Annotated[
        float | None, typer.Option(help="Bob's total efficiency eta_Bob, in (0, 1].")
    ] = None,
    dark_count: Annotated[
        float | None, typer.Option(help="Background yield Y0 per gate, in [0, 1).")
    ] = None,
    attenuation: Annotated[float | None, typer.Option(help="Fibre loss in dB/km.")] = None,
    misalignment: Annotated[
        float | None, typer.Option(help="Misalignment error e_d, in [0, 0.5].")
    ] = None,
    f_ec: Annotated[
        float | None, typer.Option("--f-ec", help="Error-correction inefficiency f >= 1.")
    ] = None,
    sifting: Annotated[float | None, typer.Option(help="Sifting factor q, in (0, 1].")] = None,
    decoy: Annotated[
        float | None, typer.Option(help="Weak decoy intensity nu (decoy-vacuum-weak).")
    ] = None,
    dead_time: Annotated[
        float | None, typer.Option(help="Detector dead time in seconds, >= 0.")
    ] = None,
    afterpulse: Annotated[
        float | None, typer.Option(help="After-pulse probability per click, in [0, 1).")
    ] = None,
    finite: Annotated[
        bool,
        typer.Option("--finite-key", help="Finite-key rates (Lim et al. 2014; Rusca et al. 2018)."),
    ] = False,
    block_size: Annotated[
        list[float] | None,
        typer.Option(
            help="Pulses per block, one or more after one flag; the table and the plot show "
            "each (default: the system's block, else 1e10; the plot then also draws 1e8, 1e10, "
            "1e12 and 1e14).",
            show_default=False,
        ),
    ] = None,
    eps_sec: Annotated[float, typer.Option(help="Secrecy parameter per block, in (0, 1).")] = 1e-10,
    eps_cor: Annotated[float, typer.Option(help="Correctness parameter, in (0, 1).")] = 1e-15,
    weakest: Annotated[
        float, typer.Option(help="Weakest intensity mu3 of decoy-2, in [0, 0.1].")
    ] = 2e-4,
    plot: Annotated[
        Path | None,
        typer.Option(
            help="Also save a PNG of rate vs distance here: the asymptotic rate, or with "
            "--finite-key each block size and their N -> infinity limits; the --distance "
            "values set the x range and are marked."
        ),
    ] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print a JSON list of records instead of a table.")
    ] = False,
) -> None:
    """Secret key rates over distances of one or several link kinds (MDI, twin-field, CV-QKD,
    decoy-BB84...), asymptotic; or of a decoy-BB84 system, asymptotic (Ma, Qi, Zhao & Lo
    2005) or, with --finite-key, for blocks of a given size."""
    file_sections = kindrates.read_params_file(params_file) if params_file else {}
    names = [n.strip() for n in protocol.split(",")] if protocol else list(file_sections)
    single = {
        "--attenuation": attenuation, "--efficiency": efficiency, "--dark-count": dark_count,
        "--clock-hz": clock_hz, "--misalignment": misalignment, "--f-ec": f_ec,
        "--sifting": sifting, "--dead-time": dead_time, "--afterpulse": afterpulse,
    }  # fmt: skip
    if not finite and (len(names) > 1 or (names and names[0] not in PROTOCOLS)):
        if mu is not None:
            raise ParameterError("--mu", mu, "left out with link kinds (their intensities are "
                                 "optimised; fix one with --param, e.g. mdi:mu_a=0.3)")  # fmt: skip
        links = _kind_links(
            names, file_sections, str(params_file), preset or [], param or [],
            {k: v for k, v in single.items() if v is not None},
            system_name=system_name, systems_file=systems_file, decoy=decoy,
        )  # fmt: skip
        _keyrate_kinds(links, distance=distance, plot=plot, json_output=json_output)
        return
    if finite and len(names) > 1:
        raise ParameterError("--protocol", protocol, f"one of {list(FINITE_PROTOCOLS)} with "
                             "--finite-key (decoy-BB84 only)")  # fmt: skip
    protocol = names[0] if names else None
    bb84_section = next(
        (file_sections[k] for k in file_sections if kindrates.is_bb84(KINDS[k])), None
    )
    preset_name = _one_preset(preset or [])
    if system_name is not None and preset_name is not None:
        raise ParameterError(
            "--preset", preset_name, "left out when --system is given (same option)"
        )
    option = "--preset" if preset_name is not None else "--system"
    registry = read_systems(systems_file) if systems_file is not None else None
    file_params = dict(kindrates._flat(bb84_section or {}))
    file_preset = file_params.pop("preset", None)
    system = _bb84_system(
        system_name or preset_name or file_preset or "gys-2004", file_params, param or [],
        registry=registry, option=option, file=params_file, single=single, decoy=decoy,
    )  # fmt: skip
    distances = list(distance) if distance else list(DEFAULT_DISTANCES_KM)
    _check_distances(distances)
    console = Console(highlight=False, soft_wrap=True, emoji=False)
    if finite:
        _check_finite_protocol(protocol)
        protocol = protocol or "decoy-2"
        blocks = list(block_size) if block_size else [system.block_size or 1e10]
        kw = {"eps_sec": eps_sec, "eps_cor": eps_cor, "weakest": weakest}
        rows = [finite_rows(system, distances, protocol, block, **kw) for block in blocks]
        plot_blocks = tuple(blocks) if block_size else (*DEFAULT_PLOT_BLOCKS, blocks[0])
    else:
        protocol = protocol or "decoy-bb84"
        rows = [keyrate_rows(system, distances, protocol, mu)]
        plot_blocks = ()
    if plot is not None:
        _save_plot(system, plot, finite, protocol, tuple(sorted(set(plot_blocks))), distance,
                   mu=mu, eps_sec=eps_sec, eps_cor=eps_cor, weakest=weakest)  # fmt: skip
    if json_output:
        records = [{k: _finite_or_none(v) for k, v in r.items()} for group in rows for r in group]
        console.out(json.dumps(records, indent=2, allow_nan=False), highlight=False)
    elif finite:
        for group in rows:
            l_max = finite_max_distance(
                system, group[0]["block_size"], protocol=protocol, eps_sec=eps_sec,
                eps_cor=eps_cor, weakest=weakest,
            )  # fmt: skip
            print_table(console, _finite_table(system, group, l_max))
    else:
        l_max = max_distance(system, protocol, mu)
        print_table(console, _table(system, protocol, rows[0], l_max, mu is not None))
    if plot is not None:
        Console(stderr=json_output, highlight=False, soft_wrap=True).print(f"wrote {plot}")


def _save_plot(
    system: QKDSystem,
    path: Path,
    finite: bool,
    protocol: str,
    blocks: tuple[float, ...],
    distance: list[float] | None,
    **kwargs: Any,
) -> None:
    """:func:`plot_rates` with the command's options; errors name the option."""
    marked = tuple(distance) if distance else DEFAULT_DISTANCES_KM
    max_km = max(distance) if distance else None
    try:
        plot_rates(system, path, finite=finite, protocol=protocol, block_sizes=blocks,
                   marked_km=marked, max_km=max_km, **kwargs)  # fmt: skip
    except ParameterError as exc:
        raise _renamed(exc, _FINITE_OPTIONS) from None
    except OSError as exc:
        raise ParameterError("--plot", str(path), f"a writable PNG path ({exc.strerror})") from None


def _one_preset(items: list[str]) -> str | None:
    """The one ``--preset`` of the decoy-BB84 path (a ``KIND:`` prefix of that kind allowed)."""
    values = [
        rest if sep and head in KINDS and kindrates.is_bb84(KINDS[head]) else item
        for item in items
        for head, sep, rest in [item.partition(":")]
    ]
    if len(values) > 1:
        raise ParameterError("--preset", values[1], "given once for one decoy-BB84 system")
    return values[0] if values else None


def _with_file(path: Path | None, build: Callable[[], _T]) -> _T:
    """``build()``, a bad value named after the ``--params`` file."""
    try:
        return build()
    except ParameterError as exc:
        name = exc.name.removeprefix("--param ")
        raise ParameterError(f"{path}: {name}", exc.value, exc.allowed) from None


def _bb84_system(
    base: str,
    file_params: Mapping[str, Any],
    items: list[str],
    *,
    registry: Mapping[str, QKDSystem] | None,
    option: str,
    file: Path | None,
    single: Mapping[str, float | None],
    decoy: float | None,
) -> QKDSystem:
    """The decoy-BB84 system ``base`` with a ``--params`` file's section (``file_params``,
    checked on its own first so a bad value names the file), then ``--param`` ``items`` and the
    single-parameter options (``single``: option -> value) applied."""
    if file_params:
        _with_file(file, partial(
            build_system, base, registry=registry, params=file_params, option=option))  # fmt: skip
    return build_system(
        base, registry=registry, params={**file_params, **parse_params(items)}, option=option,
        clock_hz=single.get("--clock-hz"), efficiency=single.get("--efficiency"),
        dark_count=single.get("--dark-count"), attenuation=single.get("--attenuation"),
        misalignment=single.get("--misalignment"), f_ec=single.get("--f-ec"),
        sifting=single.get("--sifting"), decoy=decoy,
        dead_time=single.get("--dead-time"), afterpulse=single.get("--afterpulse"),
    )  # fmt: skip


def _kind_links(
    names: list[str],
    file_sections: Mapping[str, Mapping[str, Any]],
    file_label: str,
    presets: list[str],
    params: list[str],
    single: Mapping[str, float],
    *,
    system_name: str | None,
    systems_file: Path | None,
    decoy: float | None,
) -> list[KindLink]:
    """The parameters of each kind named by ``--protocol`` (see :mod:`.kindrates`)."""
    kinds = [kindrates.lookup(n) for n in names]
    if len(set(names)) != len(names):
        raise ParameterError("--protocol", ",".join(names), "each kind once")
    by_preset = kindrates.scoped(presets, "--preset", names)
    by_param = kindrates.scoped(params, "--param", names)
    if len(by_preset.get(None, [])) > 1:
        raise ParameterError("--preset", by_preset[None][1], "one NAME for every kind, or "
                             "KIND:NAME per kind")  # fmt: skip
    has_bb84 = any(kindrates.is_bb84(k) for k in kinds)
    for option, value in (("--decoy", decoy), ("--system", system_name),
                          ("--systems", systems_file)):  # fmt: skip
        if value is not None and not has_bb84:
            raise ParameterError(option, value if not isinstance(value, Path) else str(value),
                                 "left out: a decoy-BB84 option (other kinds: --param, "
                                 "--params)")  # fmt: skip
    links = []
    for kind in kinds:
        own = by_preset.get(kind.name, [])
        if len(own) > 1:
            raise ParameterError("--preset", f"{kind.name}:{own[1]}", "once per kind")
        shared = by_preset.get(None, [])
        preset = own[0] if own else (shared[0] if shared else None)
        items = [*by_param.get(None, []), *by_param.get(kind.name, [])]
        section = file_sections.get(kind.name)
        if kindrates.is_bb84(kind):
            flat = dict(kindrates._flat(section or {}))
            base = system_name or preset or flat.pop("preset", None) or kind.default_preset
            flat.pop("preset", None)
            registry = read_systems(systems_file) if systems_file is not None else None
            opt = "--system" if system_name else "--preset"
            system = _bb84_system(
                base, flat, items, registry=registry, option=opt, file=Path(file_label),
                single=single, decoy=decoy,
            )  # fmt: skip
            changed = [*flat, *(i.partition("=")[0].strip() for i in items)]
            changed += [kindrates.SINGLE_OPTION_FIELDS[o] for o in single]
            if decoy is not None:
                changed.append("source.decoys")
            links.append(KindLink(kind, base, system, tuple(dict.fromkeys(changed))))
            continue
        links.append(
            kindrates.build_kind(
                kind,
                preset=preset,
                file_section=section,
                file_label=file_label,
                params=items,
                options=single,
                several=len(kinds) > 1,
            )
        )
    return links


def _keyrate_kinds(
    links: list[KindLink],
    *,
    distance: list[float] | None,
    plot: Path | None,
    json_output: bool,
) -> None:
    """``qfl keyrate --protocol KIND[,KIND...]``: records, tables and the plot of each kind."""
    distances = list(distance) if distance else list(DEFAULT_DISTANCES_KM)
    _check_distances(distances)
    rows = [kindrates.kind_rows(link, distances) for link in links]
    console = Console(highlight=False, soft_wrap=True, emoji=False)
    if plot is not None:
        kindrates.plot_kinds(links, plot, max_km=max(distance) if distance else None,
                             marked_km=distances)  # fmt: skip
    if json_output:
        records = [{k: _finite_or_none(v) for k, v in r.items()} for group in rows for r in group]
        console.out(json.dumps(records, indent=2, allow_nan=False), highlight=False)
    else:
        for link, group in zip(links, rows, strict=True):
            print_table(console, _kind_table(link, group))
    if plot is not None:
        Console(stderr=json_output, highlight=False, soft_wrap=True).print(f"wrote {plot}")


def _kind_table(link: KindLink, rows: list[dict[str, Any]]) -> Table:
    kind = link.kind
    reach = kindrates.reach_km(link)
    cross = kindrates.crossing_km(link, reach if math.isfinite(reach) else 1000.0)
    uses = rows[0]["uses_per_second"]
    notes = [f"{uses:.4g} {kindrates.uses_unit(kind)}", f"maximum distance {reach:.1f} km"]
    if math.isfinite(cross):
        notes.append(f"beats PLOB from {cross:.1f} km")
    if kind.untrusted_middle:
        notes.append("untrusted station in the middle")
    notes.append("PLOB = -log2(1 - eta_fibre) per channel use")
    if link.changed:
        notes.append("changed: " + ", ".join(link.changed))
    source = kind.presets[link.preset].source if link.preset in kind.presets else ""
    if source:
        notes.append(kindrates.short_source(source))
    title = f"{kind.name}: {link.preset} ({kind.title})"
    table = Table(title=title, caption="; ".join(notes))
    unit = kind.rate_unit
    for header in ("L (km)", unit, "bit/s", f"PLOB ({unit})", "rate / PLOB"):
        table.add_column(header, justify="right")
    for r in rows:
        ratio = r["rate_per_use"] / r["plob_per_use"] if r["plob_per_use"] > 0 else math.nan
        table.add_row(
            f"{r['distance_km']:g}",
            f"{r['rate_per_use']:.3e}" if r["rate_per_use"] > 0 else "0 (no key)",
            f"{r['rate_bps']:.4g}",
            f"{r['plob_per_use']:.3e}",
            f"{ratio:.3g}",
        )
    return table
