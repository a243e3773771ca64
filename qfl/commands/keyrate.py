"""``qfl keyrate``: secret key rates of a QKD system over a list of link lengths.

Example::

    qfl keyrate --preset gys-2004 --protocol decoy-bb84 --distance 0 25 50 100 --json

``--distance`` takes one or more numbers after a single flag (it may also be repeated).
Bad values raise :class:`~qkd.errors.ParameterError` naming the option, which
:func:`qfl.cli.main` prints as one line on stderr with exit status 2.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from typing import Annotated, Any, TypeVar

import numpy as np
import typer
from rich.console import Console
from rich.table import Table
from typer.core import TyperCommand

from qkd.errors import ParameterError, UnknownNameError
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

__all__ = ["DEFAULT_DISTANCES_KM", "KeyrateCommand", "build_system", "keyrate", "keyrate_rows"]

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
    }
    try:
        return with_overrides(
            system, attenuation_db_per_km=attenuation, efficiency=efficiency,
            dark_count_prob=dark_count, clock_hz=clock_hz, decoy=decoy,
            misalignment=misalignment, f_ec=f_ec, sifting=sifting,
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
    for length in distances_km:
        if not (math.isfinite(length) and length >= 0):
            raise ParameterError("--distance", length, ">= 0 (km) and finite")
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
    protocol: Annotated[str, typer.Option(help="One of: " + ", ".join(PROTOCOLS) + ".")] = (
        "decoy-bb84"
    ),
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
    json_output: Annotated[
        bool, typer.Option("--json", help="Print a JSON list of records instead of a table.")
    ] = False,
) -> None:
    """Secret key rates of a QKD system (asymptotic; Ma, Qi, Zhao & Lo 2005) over distances."""
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
    )
    distances = list(distance) if distance else list(DEFAULT_DISTANCES_KM)
    rows = keyrate_rows(system, distances, protocol, mu)
    console = Console(highlight=False, soft_wrap=True, emoji=False)
    if json_output:
        records = [{k: _finite_or_none(v) for k, v in r.items()} for r in rows]
        console.out(json.dumps(records, indent=2, allow_nan=False), highlight=False)
        return
    l_max = max_distance(system, protocol, mu)
    console.print(_table(system, protocol, rows, l_max, mu is not None))
