"""``qfl validate FILE`` and ``qfl schema``: check scenario files, print their JSON Schema."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from qfl.scenario import (
    ScenarioError,
    apply_overrides,
    load_scenario,
    scenario_json_schema,
    scenario_reference,
)
from qkd.errors import QflError

__all__ = ["schema", "validate"]


def validate(
    files: Annotated[list[Path], typer.Argument(help="Scenario or sweep YAML files to check.")],
) -> None:
    """Check scenario and sweep files (a sweep: every grid point; a scenario: also its
    ``quick`` overrides); one line per file, exit status 2 if any is not valid."""
    out = Console(highlight=False, soft_wrap=True)
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    bad = 0
    for f in files:
        try:
            line, warnings = _check_file(f)
        except QflError as exc:
            bad += 1
            where = str(exc) if str(exc).startswith(str(f)) else f"{f}: {exc}"
            err.print(f"qfl: error: {where}", markup=False)
        else:
            for w in warnings:
                err.print(f"qfl: warning: {f}: {w}", markup=False)
            out.print(f"{f}: ok ({line})", markup=False)
    if bad:
        raise typer.Exit(2)


def _check_file(f: Path) -> tuple[str, list[str]]:
    """What the file holds in a few words, and its warnings.

    A scenario is also checked for links that make no key (:mod:`qfl.cosim.keypaths`): one
    that cuts a learner off is an error, one on a redundant path a warning. A sweep's points
    are not: a grid may explore where the key runs out on purpose."""
    from qfl.commands.sweep import _is_sweep_file
    from qfl.cosim.keypaths import check_key_paths
    from qfl.cosim.netbuild import check_network
    from qfl.cosim.sweep import load_sweep_file, sweep_points

    if _is_sweep_file(f):
        spec = load_sweep_file(f)
        points = sweep_points(spec)
        for p in points:
            try:
                check_network(p.scenario)
            except ScenarioError as exc:
                raise ScenarioError(f"grid point {p.slug}: {exc.path}", exc.message) from None
        return f"sweep {spec.name}: {len(points)} points over {spec.base.name}", []
    sc = load_scenario(f)
    topo = check_network(sc)  # the network half must accept it too (reachability...)
    warnings = check_key_paths(sc, topo)  # and every learner must have a path with key
    if sc.quick:
        try:
            quick = apply_overrides(sc, sc.quick)
            check_key_paths(quick, check_network(quick))
        except ScenarioError as exc:
            raise ScenarioError(f"quick: {exc.path}", exc.message) from None
    line = (
        f"{sc.name}: {len(topo.nodes)} nodes, {len(topo.links)} links, "
        f"{sc.learning.method} on {sc.learning.dataset or sc.learning.strategy}"
    )
    return line, warnings


def schema(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to this file instead of stdout.")
    ] = None,
    markdown: Annotated[
        bool,
        typer.Option("--markdown", help="The field reference (scenarios/REFERENCE.md) instead."),
    ] = False,
) -> None:
    """Print the JSON Schema of scenario files (for editor completion), or with --markdown
    the reference of every field (type, allowed values, default, what it does)."""
    text = scenario_reference() if markdown else json.dumps(scenario_json_schema(), indent=2)
    if output is None:
        typer.echo(text.rstrip("\n"))
    else:
        output.write_text(text if markdown else text + "\n", encoding="utf-8")
