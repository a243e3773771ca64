"""``qfl keyrate``: secret key rates of a QKD system over a list of link lengths.

Example::

    qfl keyrate --preset gys-2004 --protocol decoy-bb84 --distance 0 25 50 100 --json
    qfl keyrate --preset toshiba-2018 --finite-key --block-size 1e10 --protocol decoy-1
    qfl keyrate --preset toshiba-2018 --plot rates.png

``--finite-key`` gives optimised finite-key rates (:func:`qkd.finite.finite_key`; protocols
``decoy-2``, the default, and ``decoy-1``) for blocks of ``--block-size`` pulses (default:
the preset's published block, else 1e10). ``--plot`` draws rate against distance for
several block sizes with the asymptotic rate and the PLOB bound.

``--distance`` takes one or more numbers after a single flag (it may also be repeated).
Bad values raise :class:`~qkd.errors.ParameterError` naming the option, which
:func:`qfl.cli.main` prints as one line on stderr with exit status 2.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, TypeVar

import numpy as np
import typer
from rich.console import Console
from rich.table import Table
from typer.core import TyperCommand

from qfl.commands.tables import print_table
from qkd.errors import ParameterError, UnknownNameError
from qkd.finite import FINITE_PROTOCOLS, finite_key, finite_max_distance
from qkd.params import PRESETS, QKDSystem, get_preset, with_overrides
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
    "KeyrateCommand",
    "build_system",
    "finite_rows",
    "keyrate",
    "keyrate_rows",
    "plot_rates",
]

DEFAULT_DISTANCES_KM: tuple[float, ...] = (0.0, 25.0, 50.0, 75.0, 100.0, 125.0, 150.0)
"""Distances used when no ``--distance`` is given."""

_T = TypeVar("_T")


class KeyrateCommand(TyperCommand):
    """A command whose ``--distance`` option takes several values after one flag.

    Click options take one value per flag; before parsing, ``--distance 0 25 50`` is
    rewritten to ``--distance 0 --distance 25 --distance 50``. Every token after the flag
    that reads as a number (negative ones included, so that they reach validation) is taken;
    the first token after the flag is always taken, so that a bad value is reported.
    """

    multi_value_options: tuple[str, ...] = ("--distance", "-d")

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


def build_system(
    preset: str,
    *,
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
    """A preset with some parameters overridden; errors name the command-line option.

    Examples
    --------
    >>> build_system("gys-2004", efficiency=0.1).detector.efficiency
    0.1
    """
    system = _with_option("--preset", lambda: get_preset(preset))
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

    With ``mu=None`` the intensity is optimised per distance; where no key is possible the
    reported ``mu`` maximises the (negative) unclipped rate and means nothing.
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
    eta = system.transmittance(d)
    plob, tgw = plob_bound(eta), tgw_bound(eta)
    rows = []
    for i in range(d.size):
        rows.append(
            {
                "distance_km": float(d[i]),
                "protocol": protocol,
                "mu": float(mu_used[i]),
                "gain": float(gain[i]),
                "qber": float(qber[i]),
                "transmittance": float(eta[i]),
                "rate_per_pulse": float(rate[i]),
                "rate_bps": float(rate[i] * system.source.clock_hz),
                "plob_per_use": float(plob[i]),
                "tgw_per_use": float(tgw[i]),
            }
        )
    return rows


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

    ``mu`` is the strongest intensity; ``asymptotic_rate_bps`` the infinite-decoy rate of
    :func:`qkd.rates.key_rate_bps` for comparison.
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
    asym, _ = key_rate_and_mu(system, d, "decoy-bb84", None)
    eta = system.transmittance(d)
    plob = plob_bound(eta)
    rows = []
    for i in range(d.size):
        rows.append(
            {
                "distance_km": float(d[i]),
                "protocol": protocol,
                "mu": float(fk.intensities[i, 0]),
                "intensities": [float(x) for x in fk.intensities[i]],
                "probabilities": [float(x) for x in fk.probabilities[i]],
                "key_basis_prob": float(fk.key_basis_prob[i]),
                "qber": float(fk.qber[i]),
                "phase_error": float(fk.phase_error[i]),
                "transmittance": float(eta[i]),
                "block_size": fk.block_size,
                "block_time_s": fk.block_time_s,
                "key_per_block": float(fk.key_per_block[i]),
                "rate_per_pulse": float(fk.rate_per_pulse[i]),
                "rate_bps": float(fk.rate_bps[i]),
                "asymptotic_rate_bps": float(asym[i] * system.source.clock_hz),
                "plob_per_use": float(plob[i]),
                "eps_sec": eps_sec,
                "eps_cor": eps_cor,
            }
        )
    return rows


def _finite_table(system: QKDSystem, rows: list[dict[str, Any]], l_max: float) -> Table:
    first = rows[0]
    table = Table(
        title=f"{system.name}: finite key, {first['protocol']}",
        caption=f"blocks of {first['block_size']:.3g} pulses ({first['block_time_s']:.3g} s); "
        f"maximum distance {l_max:.1f} km; intensities, their probabilities and q_x optimised",
    )
    headers = ("L (km)", "intensities", "q_x", "QBER", "key/block", "bit/s", "asympt. bit/s")
    for header in headers:
        table.add_column(header, justify="right")
    for r in rows:
        no_key = r["key_per_block"] == 0
        table.add_row(
            f"{r['distance_km']:g}",
            "-" if no_key else "/".join(f"{m:.3g}" for m in r["intensities"]),
            "-" if no_key else f"{r['key_basis_prob']:.3f}",
            f"{r['qber']:.4f}",
            f"{r['key_per_block']:.4g}",
            f"{r['rate_bps']:.4g}",
            f"{r['asymptotic_rate_bps']:.4g}",
        )
    return table


def plot_rates(
    system: QKDSystem,
    path: Path,
    *,
    protocol: str = "decoy-2",
    block_sizes: tuple[float, ...] = (1e8, 1e10, 1e12, 1e14),
    eps_sec: float = 1e-10,
    eps_cor: float = 1e-15,
) -> None:
    """Save a PNG of key rate (bit/s) against distance for several block sizes, with the
    asymptotic infinite-decoy rate and the PLOB bound, on a log scale."""
    from matplotlib.figure import Figure

    top = max_distance(system, "decoy-bb84")
    top = 300.0 if not math.isfinite(top) else 1.1 * top
    d = np.linspace(0.0, top, 160)
    clock = system.source.clock_hz
    fig = Figure(figsize=(8.5, 4.8), layout="constrained")
    ax = fig.add_subplot()
    ax.semilogy(d, plob_bound(system.transmittance(d)) * clock, "k--", label="PLOB bound")
    asym = key_rate_and_mu(system, d, "decoy-bb84", None)[0] * clock
    ax.semilogy(d, np.where(asym > 0, asym, np.nan), "k-", label="asymptotic, infinite decoys")
    for n in block_sizes:
        fk = finite_key(system, d, n, protocol=protocol, eps_sec=eps_sec, eps_cor=eps_cor)
        rate = np.where(fk.rate_bps > 0, fk.rate_bps, np.nan)
        ax.semilogy(d, rate, label=f"finite key, N = {n:.0e} pulses ({fk.block_time_s:.3g} s)")
    ax.set_xlabel("link length (km)")
    ax.set_ylabel("secret key rate (bit/s)")
    low = np.nanmin(np.where(asym > 0, asym, np.nan))
    ax.set_ylim(
        bottom=max(low, 1e-3), top=2.0 * float(plob_bound(system.transmittance(0.0))) * clock
    )
    ax.set_xlim(0.0, top)
    ax.grid(True, which="major", alpha=0.3)
    ax.set_title(
        f"{system.name}: {protocol} finite-key rates "
        f"({system.fibre.attenuation_db_per_km:g} dB/km, {clock:.3g} Hz)"
    )
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
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
    table = Table(
        title=f"{system.name}: {protocol}",
        caption=f"maximum distance {l_max:.1f} km; PLOB = -log2(1 - eta) per channel use"
        + ("" if mu_fixed else "; mu optimised (- where no key)"),
    )
    for header in ("L (km)", "mu", "gain", "QBER", "bits/pulse", "bit/s", "PLOB/use"):
        table.add_column(header, justify="right")
    for r in rows:
        table.add_row(
            f"{r['distance_km']:g}",
            "-" if r["rate_per_pulse"] == 0 and not mu_fixed else f"{r['mu']:.3f}",
            f"{r['gain']:.3e}",
            f"{r['qber']:.4f}",
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
    preset: Annotated[
        str, typer.Option(help="QKD system preset: " + ", ".join(sorted(PRESETS)) + ".")
    ] = "gys-2004",
    protocol: Annotated[
        str | None,
        typer.Option(
            help="One of: " + ", ".join(PROTOCOLS) + " (default decoy-bb84); with --finite-key "
            "one of: " + ", ".join(FINITE_PROTOCOLS) + " (default decoy-2).",
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
        float | None,
        typer.Option(help="Pulses per block (default: the preset's block, else 1e10)."),
    ] = None,
    eps_sec: Annotated[float, typer.Option(help="Secrecy parameter per block, in (0, 1).")] = 1e-10,
    eps_cor: Annotated[float, typer.Option(help="Correctness parameter, in (0, 1).")] = 1e-15,
    weakest: Annotated[
        float, typer.Option(help="Weakest intensity mu3 of decoy-2, in [0, 0.1].")
    ] = 2e-4,
    plot: Annotated[
        Path | None,
        typer.Option(help="Save a PNG of rate vs distance for several block sizes here."),
    ] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print a JSON list of records instead of a table.")
    ] = False,
) -> None:
    """Secret key rates of a QKD system over distances: asymptotic (Ma, Qi, Zhao & Lo 2005)
    or, with --finite-key, for blocks of a given size."""
    system = build_system(
        preset,
        clock_hz=clock_hz,
        efficiency=efficiency,
        dark_count=dark_count,
        attenuation=attenuation,
        misalignment=misalignment,
        f_ec=f_ec,
        sifting=sifting,
        decoy=decoy,
        dead_time=dead_time,
        afterpulse=afterpulse,
    )
    distances = list(distance) if distance else list(DEFAULT_DISTANCES_KM)
    console = Console(highlight=False, soft_wrap=True, emoji=False)
    if finite or plot is not None:
        _check_finite_protocol(protocol)
    if plot is not None:
        _check_distances(distances)
        try:
            plot_rates(
                system, plot, protocol=protocol or "decoy-2", eps_sec=eps_sec, eps_cor=eps_cor
            )
        except ParameterError as exc:
            raise _renamed(exc, _FINITE_OPTIONS) from None
        except OSError as exc:
            raise ParameterError(
                "--plot", str(plot), f"a writable PNG path ({exc.strerror})"
            ) from None
        if not finite:
            console.print(f"wrote {plot}")
            return
    if finite:
        block = block_size if block_size is not None else (system.block_size or 1e10)
        rows = finite_rows(
            system, distances, protocol or "decoy-2", block, eps_sec=eps_sec, eps_cor=eps_cor,
            weakest=weakest,
        )  # fmt: skip
        if json_output:
            records = [{k: _finite_or_none(v) for k, v in r.items()} for r in rows]
            console.out(json.dumps(records, indent=2, allow_nan=False), highlight=False)
            return
        l_max = finite_max_distance(
            system, block, protocol=protocol or "decoy-2", eps_sec=eps_sec, eps_cor=eps_cor,
            weakest=weakest,
        )  # fmt: skip
        print_table(console, _finite_table(system, rows, l_max))
        return
    protocol = protocol or "decoy-bb84"
    rows = keyrate_rows(system, distances, protocol, mu)
    if json_output:
        records = [{k: _finite_or_none(v) for k, v in r.items()} for r in rows]
        console.out(json.dumps(records, indent=2, allow_nan=False), highlight=False)
        return
    l_max = max_distance(system, protocol, mu)
    print_table(console, _table(system, protocol, rows, l_max, mu is not None))
