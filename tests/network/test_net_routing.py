"""The latency router's cached trees give NetworkX's paths, ties included, and follow faults."""

from __future__ import annotations

import random

import networkx as nx
import pytest
import simpy

from network import LinkSpec, NodeSpec, QKDNetwork, TopologySpec
from network.routing import LatencyRouter, _Index, _shortest_tree, _shortest_tree_py, latency_weight


class _Link:
    """What routing reads of a link."""

    def __init__(self, latency_s: float) -> None:
        self.latency_s = latency_s
        self.cut = False
        self.nodes_down: set[str] = set()
        self.under_attack = False

    @property
    def routable(self) -> bool:
        return not (self.cut or self.nodes_down or self.under_attack)


def _reference_path(g: nx.Graph, src: str, dst: str, root: str) -> list[str] | None:
    """The path the router gave before its trees were arrays (NetworkX's predecessors)."""
    pred, _ = nx.dijkstra_predecessor_and_distance(g, root, weight=latency_weight)
    tree = {n: p[0] for n, p in pred.items() if p}
    start, end = (src, dst) if root == dst else (dst, src)
    if start not in tree:
        return None
    path = [start]
    while path[-1] != end:
        path.append(tree[path[-1]])
    return path if root == dst else path[::-1]


def _graphs() -> list[nx.Graph]:
    rng = random.Random(5)
    out = []
    geo = nx.random_geometric_graph(400, 0.09, seed=2)  # distinct latencies: SciPy's search
    for u, v in geo.edges:
        geo.edges[u, v]["link"] = _Link(rng.uniform(1e-5, 1e-4))
    out.append(geo)
    for w in (1e-4, 0.0):  # equal latencies (ties everywhere), and zero latencies
        grid = nx.grid_2d_graph(9, 9)
        for u, v in grid.edges:
            grid.edges[u, v]["link"] = _Link(w if rng.random() < 0.8 else 3e-4)
        for u, v in rng.sample(list(grid.edges), 8):
            grid.edges[u, v]["link"].cut = True
        out.append(grid)
    ring = nx.cycle_graph(10)  # a ring of equal links: every opposite node is a tie
    for u, v in ring.edges:
        ring.edges[u, v]["link"] = _Link(18 * 1.468 / 299_792.458)
    out.append(ring)
    return [nx.relabel_nodes(g, lambda n: f"n{n}") for g in out]


@pytest.mark.parametrize("g", _graphs(), ids=["geometric", "grid-ties", "grid-zero", "ring"])
def test_trees_are_networkx_trees(g: nx.Graph) -> None:
    ix = _Index(g)
    roots = list(g)[:: max(1, len(g) // 25)]
    for root in roots:
        r = ix.index[root]
        fast, exact = _shortest_tree(ix, r), _shortest_tree_py(ix.latency, r)
        assert fast.tolist() == exact.tolist()
        pred, _ = nx.dijkstra_predecessor_and_distance(g, root, weight=latency_weight)
        want = {n: p[0] for n, p in pred.items() if p and n != root}
        assert {ix.names[i]: ix.names[p] for i, p in enumerate(exact) if p >= 0} == want


@pytest.mark.parametrize("g", _graphs(), ids=["geometric", "grid-ties", "grid-zero", "ring"])
def test_router_paths_are_the_reference_paths(g: nx.Graph) -> None:
    rng = random.Random(1)
    router = LatencyRouter()
    nodes = list(g)
    rooted: set[str] = set()
    for _ in range(120):  # the root choice depends on the trees already there: replay it
        src, dst = rng.sample(nodes, 2)
        root = dst if dst in rooted or src not in rooted else src  # no servers here
        rooted.add(root)
        assert router(g, src, dst) == _reference_path(g, src, dst, root), (src, dst, root)
    assert router.dijkstra_runs == len(rooted)


def test_router_follows_faults_and_counts_trees() -> None:
    env = simpy.Environment()
    nodes = tuple(NodeSpec(n, role="relay") for n in "ABCD")
    links = (
        LinkSpec("A", "B", 10.0, skr_bps=1e3),
        LinkSpec("B", "C", 10.0, skr_bps=1e3),
        LinkSpec("A", "D", 20.0, skr_bps=1e3),
        LinkSpec("D", "C", 20.0, skr_bps=1e3),
    )
    net = QKDNetwork(env, TopologySpec(nodes, links))
    router = net.router
    assert isinstance(router, LatencyRouter)
    assert net.route("A", "C") == ["A", "B", "C"]
    assert net.route("B", "C") == ["B", "C"] and router.dijkstra_runs == 1  # C's tree again
    net.cut_link("A", "B")
    assert net.route("A", "C") == ["A", "D", "C"] and router.dijkstra_runs == 2
    net.node_down("D")
    assert net.route("A", "C") is None
    net.node_up("D")
    net.repair_link("A", "B")
    assert net.route("C", "A") == ["C", "B", "A"]


def test_server_end_roots_the_tree() -> None:
    env = simpy.Environment()
    nodes = (NodeSpec("S", role="server"), *(NodeSpec(f"c{i}") for i in range(5)))
    links = tuple(LinkSpec("S", f"c{i}", 5.0 + i, skr_bps=1e3) for i in range(5))
    net = QKDNetwork(env, TopologySpec(nodes, links))
    for i in range(5):
        assert net.route("S", f"c{i}") == ["S", f"c{i}"]
        assert net.route(f"c{i}", "S") == [f"c{i}", "S"]
    assert net.router.dijkstra_runs == 1  # type: ignore[attr-defined]
