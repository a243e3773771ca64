"""``qfl validate FILE`` and ``qfl schema``: check scenario files, print their JSON Schema."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from qfl.scenario import load_scenario, scenario_json_schema

__all__ = ["schema", "validate"]


def validate(
    files: Annotated[list[Path], typer.Argument(help="Scenario YAML files to check.")],
) -> None:
    """Check scenario files; exit status 2 and one line naming the bad field if one is not valid."""
    from qfl.cosim.netbuild import check_network

    out = Console(highlight=False, soft_wrap=True)
    for f in files:
        sc = load_scenario(f)
        topo = check_network(sc)  # the network half must accept it too (reachability...)
        out.print(
            f"{f}: ok ({sc.name}: {len(topo.nodes)} nodes, {len(topo.links)} links, "
            f"{sc.learning.method} on {sc.learning.dataset})",
            markup=False,
        )


def schema(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to this file instead of stdout.")
    ] = None,
) -> None:
    """Print the JSON Schema of scenario files (for editor completion)."""
    text = json.dumps(scenario_json_schema(), indent=2)
    if output is None:
        typer.echo(text)
    else:
        output.write_text(text + "\n", encoding="utf-8")
