"""Topology specs, graph building and GraphML/GML import."""

from __future__ import annotations

import math

import networkx as nx
import pytest

from network import (
    DuplicateLink,
    LinkSpec,
    NodeNotFound,
    NodeSpec,
    TopologySpec,
    build_graph,
    link_rates_bps,
    read_topology,
)
from network.topology import great_circle_km
from qkd.errors import ParameterError, UnknownNameError


def test_link_defaults_and_latency() -> None:
    spec = LinkSpec("A", "B", 100.0, skr_bps=1.0)
    assert spec.propagation_s == pytest.approx(100.0 * 1.468 / 299_792.458)
    assert spec.propagation_s == pytest.approx(4.897e-4, rel=1e-3)  # ~4.9 us/km
    assert LinkSpec("A", "B", 100.0, latency_s=0.002).propagation_s == 0.002


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"length_km": -5.0}, r"link A-B: length_km: must be >= 0, got -5.0"),
        ({"skr_bps": -1.0}, r"link A-B: skr_bps: must be >= 0, got -1.0"),
        ({"capacity_bits": 0.0}, r"capacity_bits: must be > 0"),
        ({"initial_bits": 5.0, "capacity_bits": 4.0}, r"initial_bits: must be in \[0, "),
        ({"bandwidth_bps": 0}, r"bandwidth_bps: must be > 0"),
        ({"latency_s": -1.0}, r"latency_s: must be >= 0"),
        ({"group_index": 0.5}, r"group_index: must be >= 1"),
        ({"length_km": math.nan}, r"length_km: must be >= 0"),
        ({"system": 3}, r"system: must be a preset name or a QKDSystem"),
    ],
)
def test_link_spec_rejects_bad_values(kw: dict, match: str) -> None:
    args = {"length_km": 1.0, **kw}
    with pytest.raises(ParameterError, match=match):
        LinkSpec("A", "B", **args)


def test_self_loop_and_node_errors() -> None:
    with pytest.raises(ParameterError, match="a node other than a"):
        LinkSpec("A", "A", 1.0)
    with pytest.raises(UnknownNameError, match=r"role: must be one of 'client', 'server'"):
        NodeSpec("A", role="boss")  # type: ignore[arg-type]
    with pytest.raises(ParameterError, match=r"node 'A': flops_per_s: must be > 0"):
        NodeSpec("A", flops_per_s=0)
    with pytest.raises(ParameterError, match=r"lat: must be in \[-90, 90\]"):
        NodeSpec("A", lat=91.0)


def test_topology_errors_name_the_item() -> None:
    a, b = NodeSpec("A"), NodeSpec("B")
    with pytest.raises(NodeNotFound, match=r"links\[1\]\.b: node 'Z' is not in the topology"):
        TopologySpec((a, b), (LinkSpec("A", "B", 1.0), LinkSpec("A", "Z", 1.0)))
    with pytest.raises(DuplicateLink, match=r"links\[1\]: duplicate link 'B'-'A'"):
        TopologySpec((a, b), (LinkSpec("A", "B", 1.0), LinkSpec("B", "A", 2.0)))
    with pytest.raises(ParameterError, match=r"nodes\[1\]\.name: must be unique"):
        TopologySpec((a, NodeSpec("A")), ())


def test_build_graph_attributes() -> None:
    spec = TopologySpec(
        (NodeSpec("A", role="server", flops_per_s=2e9), NodeSpec("B")),
        (LinkSpec("A", "B", 20.0, skr_bps=7.0),),
    )
    g = build_graph(spec)
    assert g.nodes["A"]["spec"].flops_per_s == 2e9
    assert g.edges["B", "A"]["length_km"] == 20.0
    assert g.edges["A", "B"]["spec"].skr_bps == 7.0


def test_rates_from_model_and_override() -> None:
    from qkd.params import get_preset
    from qkd.rates import key_rate_bps

    specs = [
        LinkSpec("A", "B", 20.0, system="gys-2004"),
        LinkSpec("B", "C", 20.0, system="gys-2004", skr_bps=123.0),
        LinkSpec("C", "D", 20.0, system="gys-2004", attenuation_db_per_km=0.3),
    ]
    r = link_rates_bps(specs)
    assert r[0] == pytest.approx(float(key_rate_bps(get_preset("gys-2004"), 20.0)))
    assert r[1] == 123.0
    assert 0 < r[2] < r[0]  # more loss, less key


def test_great_circle_known_distance() -> None:
    # London - Paris is about 344 km along the great circle.
    assert great_circle_km(51.5072, -0.1276, 48.8566, 2.3522) == pytest.approx(343.5, abs=1.0)
    assert great_circle_km(10.0, 20.0, 10.0, 20.0) == 0.0


def _zoo_graph() -> nx.Graph:
    g = nx.Graph()
    g.add_node("0", label="London", Latitude=51.5072, Longitude=-0.1276)
    g.add_node("1", label="Paris", Latitude=48.8566, Longitude=2.3522)
    g.add_node("2", label="Lille", Latitude=50.6292, Longitude=3.0573)
    g.add_edge("0", "1")
    g.add_edge("1", "2", LinkLength=230.0)
    return g


ZOO_GML = """graph [
  multigraph 1
  node [ id 0 label "London" Latitude 51.5072 Longitude -0.1276 ]
  node [ id 1 label "Paris" Latitude 48.8566 Longitude 2.3522 ]
  node [ id 2 label "Lille" Latitude 50.6292 Longitude 3.0573 ]
  edge [ source 0 target 1 ]
  edge [ source 0 target 1 LinkLength 900.0 ]
  edge [ source 1 target 2 LinkLength 230.0 ]
]
"""


@pytest.mark.parametrize("suffix", [".graphml", ".gml"])
def test_read_topology_zoo_file(tmp_path, suffix: str) -> None:
    path = tmp_path / f"zoo{suffix}"
    if suffix == ".graphml":
        nx.write_graphml(_zoo_graph(), path)
    else:
        path.write_text(ZOO_GML)
    topo = read_topology(
        path, roles={"Paris": "server"}, link_defaults=LinkSpec("_", "-", 0.0, skr_bps=10.0)
    )
    names = [n.name for n in topo.nodes]
    assert names == ["London", "Paris", "Lille"]
    assert topo.node("Paris").role == "server"
    assert topo.node("London").role == "client"
    lengths = {frozenset((lk.a, lk.b)): lk for lk in topo.links}
    lp = lengths[frozenset(("London", "Paris"))]
    gc = great_circle_km(51.5072, -0.1276, 48.8566, 2.3522)
    assert lp.length_km == pytest.approx(1.3 * gc)  # documented routing factor
    assert lp.skr_bps == 10.0  # template applied
    assert lengths[frozenset(("Paris", "Lille"))].length_km == 230.0
    topo2 = read_topology(path, routing_factor=1.0)
    assert max(lk.length_km for lk in topo2.links) == pytest.approx(gc)


def test_read_topology_errors(tmp_path) -> None:
    g = nx.Graph()
    g.add_node("a")
    g.add_node("b", Latitude=1.0, Longitude=1.0)
    g.add_edge("a", "b")
    path = tmp_path / "bad.graphml"
    nx.write_graphml(g, path)
    with pytest.raises(ParameterError, match=r"link a-b: length.*Latitude/Longitude of 'a'"):
        read_topology(path)
    with pytest.raises(UnknownNameError, match="topology file suffix"):
        read_topology(tmp_path / "x.json")
    with pytest.raises(ParameterError, match="routing_factor: must be >= 1"):
        read_topology(path, routing_factor=0.5)
