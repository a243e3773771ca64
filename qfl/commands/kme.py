"""``qfl kme serve|certs``: ETSI GS QKD 014 key delivery over a scenario's simulated network."""

from __future__ import annotations

import json
import math
import sys
import threading
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from qkd.errors import ParameterError

__all__ = ["app", "certs", "serve"]

app = typer.Typer(
    name="kme",
    help="Keys for applications: ETSI GS QKD 014 KMEs over a scenario's simulated network.",
    no_args_is_help=True,
    add_completion=False,
)

_out = Console(highlight=False, soft_wrap=True)
_err = Console(stderr=True, highlight=False, soft_wrap=True)

SaeOption = Annotated[
    list[str] | None,
    typer.Option(
        "--sae",
        help="Add an SAE: NAME=NODE (repeatable). Default: one SAE per client node, named "
        "after it.",
    ),
]


def _saes(sc: object, extra: list[str] | None) -> dict[str, str]:
    from qfl.cosim.netbuild import build_topology
    from qfl.kme.build import default_saes, parse_sae_options

    nodes = [n.name for n in build_topology(sc).nodes]  # type: ignore[arg-type]
    saes = default_saes(sc)  # type: ignore[arg-type]
    more = parse_sae_options(extra or [], nodes)
    clash = sorted(set(more) & set(saes))
    if clash and any(more[n] != saes[n] for n in clash):
        raise ParameterError("--sae", clash[0], "a NAME other than a default SAE's")
    return saes | more


def _load(file: Path, replay: bool, sets: list[str] | None) -> tuple[object, object]:
    from qfl.commands.simulate import resolve_scenario
    from qfl.kme.build import load_replay

    if replay:
        if not file.is_dir():
            raise ParameterError("FILE", str(file), "a finished run folder with --replay")
        if sets:
            raise ParameterError("--set", sets[0], "not given with --replay (the run's own)")
        return load_replay(file)
    if file.is_dir():
        raise ParameterError("FILE", str(file), "a scenario YAML file (a run folder: add --replay)")
    return resolve_scenario(file, False, sets), None


@app.command("serve")
def serve(
    file: Annotated[Path, typer.Argument(help="Scenario YAML (with --replay: a run folder).")],
    host: Annotated[str, typer.Option(help="Address of the listener.")] = "127.0.0.1",
    port: Annotated[
        int, typer.Option(min=0, max=65535, help="Port of the listener serving every KME.")
    ] = 8443,
    port_per_kme: Annotated[
        bool,
        typer.Option(
            "--port-per-kme",
            help="One listener per KME instead: the i-th node's KME on PORT + i.",
        ),
    ] = False,
    certs_dir: Annotated[
        Path | None,
        typer.Option("--certs", help="Folder with ca.pem, kme.pem, kme.key (see `qfl kme certs`)."),
    ] = None,
    insecure: Annotated[
        bool,
        typer.Option(
            "--insecure",
            help="Plain HTTP, no authentication: the caller names its SAE in an X-SAE-ID "
            "header. For testing only.",
        ),
    ] = False,
    speed: Annotated[
        float, typer.Option(help="Simulated seconds of key generation per wall second.")
    ] = 1.0,
    replay: Annotated[
        bool,
        typer.Option(
            "--replay",
            help="FILE is a finished run's folder: its network, faults and key takes replayed.",
        ),
    ] = False,
    sae: SaeOption = None,
    sets: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="Override a scenario field, as in qfl simulate (qkd.rate_scale=0.01).",
        ),
    ] = None,
    key_size: Annotated[int, typer.Option(help="Default key size, bits.")] = 256,
    state: Annotated[
        Path | None,
        typer.Option(
            help="Folder for the journal (every delivered key, fsync-ed before the answer) "
            "and accounting.json; a restart resumes from it. Default: volatile state.",
        ),
    ] = None,
    duration: Annotated[
        float | None, typer.Option(help="Stop after this many wall seconds (default: never).")
    ] = None,
) -> None:
    """Serve one ETSI GS QKD 014 KME per node of FILE's network.

    One listener (HOST:PORT) serves every KME: the caller's client certificate names its
    SAE, and the SAE's node its KME. Keys come from the simulated link pools, relayed hop
    by hop through trusted nodes; a pool too short gives 503.
    """
    from qfl.kme import Limits, RealClock, build_service, server_tls_context, start_servers

    if not insecure and certs_dir is None:
        raise ParameterError("--certs", "missing", "a folder of certificates, or --insecure")
    if insecure and certs_dir is not None:
        raise ParameterError("--insecure", "with --certs", "one of the two")
    if not math.isfinite(speed) or speed <= 0:
        raise ParameterError("--speed", speed, "a finite number > 0")
    if duration is not None and not (math.isfinite(duration) and duration > 0):
        raise ParameterError("--duration", duration, "a finite number of seconds > 0")
    if port_per_kme and port == 0:
        raise ParameterError("--port", port, "> 0 with --port-per-kme")
    try:
        limits = Limits(key_size=key_size, min_key_size=min(64, key_size))
    except ParameterError:
        raise ParameterError("--key-size", key_size, "a multiple of 8 in [8, 8192]") from None
    tls = None
    if certs_dir is not None:
        files = [certs_dir / n for n in ("ca.pem", "kme.pem", "kme.key")]
        missing = [f.name for f in files if not f.is_file()]
        if missing:
            raise ParameterError("--certs", str(certs_dir), f"a folder with {', '.join(missing)}")
        try:
            tls = server_tls_context(*files)
        except (OSError, ValueError) as exc:
            raise ParameterError("--certs", str(certs_dir), f"valid PEM files ({exc})") from None
    sc, feed = _load(file, replay, sets)
    saes = _saes(sc, sae)
    journal = None
    if state is not None:
        state.mkdir(parents=True, exist_ok=True)
        journal = state / "journal.jsonl"
    clock = RealClock(speed)
    service = build_service(
        sc,  # type: ignore[arg-type]
        clock,
        saes=saes,
        limits=limits,
        journal=journal,
        replay=feed,  # type: ignore[arg-type]
    )
    try:
        servers = start_servers(service, host=host, port=port, tls=tls, port_per_kme=port_per_kme)
    except OSError as exc:
        raise ParameterError(
            "--host/--port", f"{host}:{port}", f"free to listen on ({exc.strerror})"
        ) from None
    scheme = "http" if tls is None else "https"
    where = ", ".join(f"{kme}={scheme}://{host}:{p}" for kme, p in servers.ports.items())
    name = getattr(sc, "name", "scenario")
    _out.print(
        f"qfl kme: serving {service.net.graph.number_of_nodes()} KMEs of {name} for "
        f"{len(saes)} SAEs ({', '.join(saes)}) on {where}; clock x{speed:g}"
        + (f", replaying {file}" if replay else "")
        + (f", resumed at t={service.env.now:.3f} s" if service.env.now > 0 else ""),
        markup=False,
    )
    if tls is None:
        _out.print(
            "qfl kme: WARNING --insecure: plain HTTP, no authentication; callers name their "
            "SAE in an X-SAE-ID header. For testing only.",
            markup=False,
        )
    else:
        _out.print(
            "qfl kme: mutual TLS; the caller's SAE ID is its client certificate's common name",
            markup=False,
        )
    sys.stdout.flush()
    stop = threading.Event()
    try:
        stop.wait(duration)
    except KeyboardInterrupt:
        pass
    finally:
        servers.close()
        acc = service.accounting()
        if service.journal is not None:
            service.journal.close()
        if state is not None:
            (state / "accounting.json").write_text(json.dumps(acc, indent=2))
        _out.print(
            f"qfl kme: stopped at t={acc['sim_time_s']:.3f} s: {acc['keys_issued']} keys issued, "
            f"{acc['keys_delivered']} delivered to slaves, {acc['keys_pending']} pending",
            markup=False,
        )


@app.command("certs")
def certs(
    file: Annotated[Path, typer.Argument(help="Scenario YAML: its SAEs get a certificate.")],
    out: Annotated[Path, typer.Option("--out", help="Folder to write the PEM files into.")],
    sae: SaeOption = None,
    host: Annotated[
        list[str] | None,
        typer.Option("--host", help="Names the server certificate is valid for (repeatable)."),
    ] = None,
) -> None:
    """Make a test CA, a KME server certificate and one client certificate per SAE.

    For testing: the keys are written unencrypted (mode 0600).
    """
    from qfl.kme.certs import write_certs
    from qfl.scenario import load_scenario

    saes = _saes(load_scenario(file), sae)
    if out.exists() and not out.is_dir():
        raise ParameterError("--out", str(out), "a folder (or a path to create one)")
    files = write_certs(out, list(saes), hosts=host or ["127.0.0.1", "localhost"])
    _out.print(
        f"qfl kme certs: CA, KME server and {len(saes)} SAE certificates "
        f"({', '.join(saes)}) in {out} ({len(files)} files)",
        markup=False,
    )
