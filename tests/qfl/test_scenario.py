"""The scenario schema: parsing, error messages, overrides, topology files, JSON Schema."""

from __future__ import annotations

import doctest
import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import networkx as nx
import pydantic
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

import qfl.cosim.replay
import qfl.cosim.sweep
import qfl.scenario
from qfl.commands.simulate import resolve_scenario
from qfl.cosim.netbuild import build_faults, build_topology, check_network
from qfl.scenario import (
    Scenario,
    ScenarioError,
    apply_overrides,
    load_scenario,
    parse_scenario,
    scenario_json_schema,
)

Tiny = Callable[..., dict[str, Any]]


def parse(d: dict[str, Any]) -> Scenario:
    return parse_scenario(yaml.safe_dump(d, sort_keys=False))


SCENARIO_MODULES_WITH_EXAMPLES = ["base", "overrides", "yamlfile"]


@pytest.mark.parametrize(
    "module",
    [
        qfl.scenario,
        *(importlib.import_module(f"qfl.scenario.{m}") for m in SCENARIO_MODULES_WITH_EXAMPLES),
        qfl.cosim.sweep,
        qfl.cosim.replay,
    ],
    ids=lambda m: m.__name__,
)
def test_doctests(module: Any) -> None:
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_defaults_and_frozen(tiny: Tiny) -> None:
    sc = parse(tiny())
    assert sc.qkd.rate_scale == 1.0 and sc.cipher.policy == "aes-256-gcm"
    assert sc.topology.routing_factor == 1.3 and sc.horizon_s is None
    assert isinstance(sc.topology.links, tuple)
    with pytest.raises(pydantic.ValidationError):
        sc.seed = 4  # type: ignore[misc]


def test_reference_checks_run_after_the_schema(tiny: Tiny) -> None:
    d = tiny()
    d["topology"]["links"][0]["b"] = "a"
    with pytest.raises(ScenarioError, match=r"^topology\.links\[0\]: a link from 'a' to itself$"):
        parse(d)


def test_several_errors_are_counted(tiny: Tiny) -> None:
    d = tiny({"seed": -1, "learning": {"rounds": 0, "lr": -1}})
    with pytest.raises(ScenarioError) as info:
        parse(d)
    assert str(info.value) == "seed: must be >= 0, got -1 (and 2 more errors)"
    assert "\n" not in str(info.value)


@settings(max_examples=25, deadline=None)
@given(
    length=st.floats(max_value=-1e-9, allow_nan=False, allow_infinity=False), i=st.integers(0, 3)
)
def test_negative_length_names_path_and_value(length: float, i: int, tiny: Tiny) -> None:
    d = tiny()
    d["topology"]["links"][i]["length_km"] = length
    with pytest.raises(ScenarioError) as info:
        parse(d)
    err = info.value
    assert err.path == f"topology.links[{i}].length_km"
    assert err.message == f"must be >= 0, got {length!r}"


@settings(max_examples=25, deadline=None)
@given(scale=st.floats(min_value=0, max_value=1e6, allow_nan=False))
def test_overrides_replace_one_field_and_leave_the_original(scale: float, tiny: Tiny) -> None:
    sc = parse(tiny())
    new = apply_overrides(sc, {"qkd.rate_scale": scale})
    assert new.qkd.rate_scale == scale
    assert sc.qkd.rate_scale == 1.0
    assert new.model_copy(update={"qkd": sc.qkd}) == sc


def test_overrides_by_index_and_from_strings(tiny: Tiny) -> None:
    sc = parse(tiny())
    new = apply_overrides(
        sc,
        {
            "topology.links[1].skr_bps": "1e3",
            "learning.clients": "[a, b]",
            "cipher.policy": "otp",
            "horizon_s": "60",
            "learning.samples_per_client": "1e2",
        },
    )
    assert new.topology.links[1].skr_bps == 1000.0
    assert new.topology.links[0] == sc.topology.links[0]
    assert new.learning.clients == ("a", "b")
    assert new.cipher.policy == "otp" and new.horizon_s == 60.0
    assert new.learning.samples_per_client == 100


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("learning.qqq", r"unknown field 'learning\.qqq'; fields of 'learning' are method, "),
        ("learning.roundz", r"\(did you mean 'rounds'\?\)"),
        ("topology.links[7].skr_bps", r"no item 7: 'topology\.links' has 4 items \(0-3\)"),
        ("topology.links[x]", r"an index must be an integer, like links\[3\]"),
        ("seed.value", r"'seed' has no fields"),
        ("", r"an empty field path"),
    ],
)
def test_override_paths_that_name_no_field(path: str, message: str, tiny: Tiny) -> None:
    with pytest.raises(ScenarioError, match=message) as info:
        apply_overrides(parse(tiny()), {path: 1})
    assert info.value.path == path


def test_override_values_are_validated(tiny: Tiny) -> None:
    sc = parse(tiny())
    with pytest.raises(ScenarioError, match=r"^learning\.clients\[1\]: unknown node 'zz'"):
        apply_overrides(sc, {"learning.clients": ["a", "zz"]})
    with pytest.raises(ScenarioError, match=r"^learning\.dataset: must be one of"):
        apply_overrides(sc, {"learning.dataset": "unimib-shar"})


def test_quick_overrides(tmp_path: Path, tiny: Tiny) -> None:
    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump(tiny({"quick": {"learning.rounds": 7, "qkd.rate_scale": 2}})))
    assert resolve_scenario(f, False, None).learning.rounds == 1
    quick = resolve_scenario(f, True, ["learning.rounds=3"])
    assert (quick.learning.rounds, quick.qkd.rate_scale) == (3, 2.0)  # --set wins
    f.write_text(yaml.safe_dump(tiny({"quick": {"learning.rouns": 7}})))
    with pytest.raises(ScenarioError, match=r"unknown field 'learning\.rouns'"):
        resolve_scenario(f, True, None)


def test_topology_from_a_gml_file(tmp_path: Path, tiny: Tiny) -> None:
    g = nx.Graph()
    for name, lat, lon in (("A", 51.5, -0.1), ("B", 51.75, -1.25), ("C", 52.2, 0.12)):
        g.add_node(name, label=name, Latitude=lat, Longitude=lon)
    g.add_edge("A", "B")
    g.add_edge("B", "C", length_km=80.0)
    (tmp_path / "net").mkdir()
    nx.write_gml(g, tmp_path / "net" / "three.gml")
    d = tiny({"topology": {"file": "three.gml", "relays": ["B"]}})
    d["topology"].pop("nodes")
    d["topology"].pop("links")
    f = tmp_path / "net" / "s.yaml"
    f.write_text(yaml.safe_dump(d))
    sc = load_scenario(f)
    assert Path(sc.topology.file or "") == tmp_path / "net" / "three.gml"  # resolved
    topo = check_network(sc)
    roles = {n.name: n.role for n in topo.nodes}
    assert roles == {"A": "client", "B": "relay", "C": "client"}
    lengths = {lk.name: lk.length_km for lk in topo.links}
    assert lengths["B-C"] == 80.0
    assert 1.3 * 70 < lengths["A-B"] < 1.3 * 95  # great circle London-Oxford x 1.3
    for bad, message in (
        ({"relays": ["Z"]}, r"^topology\.relays\[0\]: unknown node 'Z'"),
        ({"file": "nope.gml"}, r"^topology\.file: no such file"),
    ):
        f.write_text(yaml.safe_dump({**d, "topology": {**d["topology"], **bad}}))
        with pytest.raises(ScenarioError, match=message):
            build_topology(load_scenario(f))
    f.write_text(
        yaml.safe_dump({**d, "faults": [{"kind": "link-cut", "at_s": 1, "link": ["A", "C"]}]})
    )
    with pytest.raises(ScenarioError, match=r"^faults\[0\]\.link: no link joins 'A' and 'C'"):
        build_topology(load_scenario(f))


def test_inline_topology_and_file_are_exclusive(tiny: Tiny) -> None:
    d = tiny({"topology": {"file": "x.gml"}})
    with pytest.raises(ScenarioError, match=r"^topology: give either inline"):
        parse(d)


def test_faults_become_network_faults(tiny: Tiny) -> None:
    sc = parse(
        tiny(
            {
                "faults": [
                    {"kind": "link-cut", "at_s": 1, "until_s": 2, "link": ["a", "r"]},
                    {"kind": "eavesdropper", "at_s": 3, "link": ["b", "r"], "wipe_pool": True},
                    {"kind": "node-down", "at_s": 4, "node": "c"},
                ]
            }
        )
    )
    kinds = [type(f).__name__ for f in build_faults(sc)]
    assert kinds == ["LinkCut", "Eavesdropper", "PoolWipe", "NodeOutage"]


def test_qkd_overrides_reach_the_link_rates(tiny: Tiny) -> None:
    base = build_topology(parse(tiny()))
    worse = build_topology(parse(tiny({"qkd": {"detector_efficiency": 0.05}})))
    for a, b in zip(base.links, worse.links, strict=True):
        assert 0 < b.skr_bps < a.skr_bps
    gys = build_topology(parse(tiny({"qkd": {"preset": "gys-2004"}})))
    assert all(g.skr_bps != a.skr_bps for g, a in zip(gys.links, base.links, strict=True))


def test_json_schema() -> None:
    schema = scenario_json_schema()
    props = schema["properties"]
    assert props["topology"]["$ref"].endswith("TopologySpec")
    link = schema["$defs"]["LinkSpec"]
    assert link["additionalProperties"] is False
    assert "Measured secret key rate" in link["properties"]["skr_bps"]["description"]
    method = schema["$defs"]["LearningSpec"]["properties"]["method"]
    assert set(method["enum"]) >= {"def-fd", "fedavg", "ssl-backbone"}


def test_horizon_must_be_finite_and_positive(tiny: Tiny) -> None:
    with pytest.raises(ScenarioError, match=r"^horizon_s: must be > 0, got 0"):
        parse(tiny({"horizon_s": 0}))
    assert parse(tiny({"horizon_s": 1e6})).horizon_s == 1e6
