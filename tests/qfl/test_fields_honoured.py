"""Every scenario field has an effect: no field is parsed and then ignored.

The test walks the schema: for every leaf field it changes the value and checks that the
change is refused by validation, or changes what the network half is built from (topology
with key rates, cipher, faults, routing, horizon, rounds, the learning job's compute
profile and round plans), or changes what the learning half is built from (the job's
:meth:`~qfl.cosim.jobs.Job.learning_inputs`, also the sweeps' reuse key), on a scenario of
some method that uses it. Fields that only name or shape outputs are listed, with why.
"""

from __future__ import annotations

import copy
import types
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from qfl.cosim.netbuild import build_cipher, build_faults, check_network
from qfl.cosim.run import build_job, routing_of
from qfl.scenario import Scenario, ScenarioError

Tiny = Callable[..., dict[str, Any]]

OUTPUT_ONLY = {
    "name": "names the run folder",
    "description": "free text",
    "outputs.dir": "where run folders go",
    "outputs.plots": "whether PNGs are drawn",
    "quick": "the overrides --quick applies (validated by qfl validate)",
    "learning.eval_every": "when accuracy is measured (metrics rows), not what is learned",
    "learning.target_accuracy": "the summary's time to target",
    "topology.links[].label": "a name for tables",
}
NOT_VARIED = {  # fields whose other values need other nodes; checked by their own tests
    "learning.clients": "test_cosim / test_methods",
    "learning.server": "test_methods",
    "topology.relays": "GraphML tests",
    "topology.servers": "GraphML tests",
    "topology.file": "GraphML tests (test_cosim, test_cli_errors)",
    "topology.nodes[].name": "renames a node: every reference must change with it",
    "topology.links[].a": "test_cli_scenarios (unknown node)",
    "topology.links[].b": "test_cli_scenarios (unknown node)",
    "faults[].link": "test_cosim (fault on a link)",
    "faults[].node": "test_cosim (node outage)",
    "faults[].kind": "the kinds need different targets (test_cosim)",
    # a schedule or a satellite needs windows or ground nodes with coordinates:
    # tests/qfl/test_scenario_kinds.py, tests/test_cli_mixed_kinds.py
    "topology.links[].schedule.default": "test_scenario_kinds (key = rate x integral)",
    "topology.links[].schedule.windows[].start_s": "test_scenario_kinds",
    "topology.links[].schedule.windows[].end_s": "test_scenario_kinds",
    "topology.links[].schedule.windows[].factor": "test_scenario_kinds",
    "topology.links[].schedule.windows[].label": "test_scenario_kinds (window_waits)",
    "satellites": "test_scenario_kinds, test_cli_plan_kinds (elevation mask threshold)",
}
SPECIAL = {
    "qkd.preset": "gys-2004",
    "topology.links[].preset": "gys-2004",
    "topology.links[].protocol": "bb84-no-decoy",
    "learning.temperature": 5.0,
    "learning.senders_per_round": 1,
    "learning.test_samples": 100,
    "learning.samples_per_client": 40,
    "learning.round_budget_s": 1e-6,
}


def _leaves(model: type[BaseModel], prefix: str = "") -> Iterator[tuple[str, Any, Any]]:
    for name, info in model.model_fields.items():
        path = f"{prefix}{name}"
        ann = info.annotation
        union = typing.get_origin(ann) in (typing.Union, types.UnionType)
        inner = [a for a in typing.get_args(ann) if a is not type(None)] if union else [ann]
        sub = next((a for a in inner if isinstance(a, type) and issubclass(a, BaseModel)), None)
        item = next(
            (typing.get_args(a)[0] for a in inner if typing.get_origin(a) is tuple
             and typing.get_args(a) and isinstance(typing.get_args(a)[0], type)
             and issubclass(typing.get_args(a)[0], BaseModel)), None,
        )  # fmt: skip
        if sub is not None:
            yield from _leaves(sub, f"{path}.")
        elif item is not None:
            yield from _leaves(item, f"{path}[].")
        else:
            yield path, ann, info.default


def _literals(ann: Any) -> list[Any]:
    out: list[Any] = []
    for a in typing.get_args(ann) or ():
        if typing.get_origin(a) is Literal:
            out.extend(typing.get_args(a))
        elif typing.get_origin(a) in (typing.Union, types.UnionType):
            out.extend(_literals(a))
    if typing.get_origin(ann) is Literal:
        out.extend(typing.get_args(ann))
    return out


def _get(d: dict[str, Any], path: str) -> tuple[dict[str, Any], str]:
    *parts, last = path.replace("[]", ".0").split(".")
    for p in parts:
        d = d[int(p)] if p.isdigit() else d.setdefault(p, {})  # type: ignore[assignment]
    return d, last


def _other(path: str, ann: Any, current: Any) -> Any:
    if path in SPECIAL:
        return SPECIAL[path]
    lits = [v for v in _literals(ann) if v != current]
    if lits:
        return lits[0]
    if current is True or current is False:
        return not current
    if isinstance(current, int):
        return current + 1
    if isinstance(current, float):
        return current * 0.5 if current else 0.3
    kinds = {a for a in typing.get_args(ann)} | {ann}
    if int in kinds or any("int" in str(k) for k in kinds):
        return 2
    return 0.3  # a float field left unset


def _net_input(sc: Scenario, job: Any) -> str:
    topo = check_network(sc)
    plans = [job.plan(r) for r in range(2)]
    parts = (topo, build_cipher(sc), build_faults(sc), routing_of(sc, topo), sc.horizon_s,
             sc.learning.rounds, job.profile, plans)  # fmt: skip
    return repr(parts)


def _inputs(d: dict[str, Any]) -> tuple[str, str] | None:
    try:
        sc = Scenario.model_validate(d)
        from qfl.scenario import _check_references

        _check_references(sc)
        job = build_job(sc, check_network(sc))
    except (ScenarioError, ValueError):
        return None  # refused: the field is checked, not ignored
    return _net_input(sc, job), job.identity()


def _bases(tiny: Tiny) -> list[dict[str, Any]]:
    fault = {"kind": "eavesdropper", "at_s": 0.5, "until_s": 5.0, "link": ["a", "r"],
             "qber": 0.05}  # fmt: skip
    dec = tiny({"faults": [fault], "horizon_s": 100.0, "routing": "latency"})
    dec["learning"].update(engine="sequential", rounds=2)
    dec["qkd"]["key_model"] = "finite-blocks"  # the default (the fixture's is the fluid one)
    dec["qkd"]["pool_capacity_bits"] = 1e9
    srv = copy.deepcopy(dec)
    srv["topology"]["nodes"][3]["role"] = "server"
    srv["learning"] = {"method": "fedavg-multiexit", "dataset": "synthetic-har", "rounds": 2,
                       "samples_per_client": 40, "engine": "sequential"}  # fmt: skip
    ssl = copy.deepcopy(srv)  # two clients (Flowers102, Intel) and the server
    ssl["topology"]["nodes"][2]["role"] = "relay"
    ssl["learning"] = {"method": "ssl-backbone", "dataset": "flowers102+intel", "rounds": 1,
                       "image_size": 16, "width": 4, "engine": "sequential"}  # fmt: skip
    return [dec, srv, ssl]


def test_every_field_changes_the_network_or_the_learning(tiny: Tiny, fmnist: Path) -> None:
    bases = _bases(tiny)
    reference = [_inputs(b) for b in bases]
    assert all(r is not None for r in reference)
    ignored = []
    for path, ann, default in _leaves(Scenario):
        top = path.split(".")[0].split("[")[0]
        if path in OUTPUT_ONLY or path in NOT_VARIED or top in OUTPUT_ONLY:
            continue
        for base, ref in zip(bases, reference, strict=True):
            d = copy.deepcopy(base)
            holder, key = _get(d, path)
            holder[key] = _other(path, ann, holder.get(key, default))
            got = _inputs(d)
            if got is None or got[0] != ref[0] or got[1] != ref[1]:  # type: ignore[index]
                break
        else:
            ignored.append(path)
    assert not ignored, f"fields parsed and then ignored: {ignored}"


def test_the_reuse_key_leaves_out_what_learning_does_not_use(tiny: Tiny, fmnist: Path) -> None:
    base = _bases(tiny)[0]
    ref = _inputs(base)
    assert ref is not None
    for path, value in [("learning.target_accuracy", 0.5), ("learning.eval_every", 2),
                        ("learning.rounds", 5), ("qkd.rate_scale", 0.1)]:  # fmt: skip
        d = copy.deepcopy(base)
        holder, key = _get(d, path)
        holder[key] = value
        got = _inputs(d)
        assert got is not None and got[1] == ref[1], path
