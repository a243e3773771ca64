"""Routing: plain functions over the network graph, whose edges carry the ``link`` object.

Weights follow NetworkX: a callable ``weight(u, v, data)`` that returns ``None`` hides the
edge. :func:`latency_weight` hides links that are cut, have an end down or raise an
eavesdropping alarm; :func:`key_aware_weight` also adds the expected wait for key and hides
links whose key can never come.

A *router* is a callable ``router(graph, src, dst, key_bits) -> list of nodes or None``
(None: no path now). :class:`LatencyRouter` caches shortest-path trees between changes of
the network; :func:`key_aware_path` is recomputed each time since pool levels change.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import networkx as nx
import numpy as np

from network.errors import NodeNotFound, NoPath
from network.link import Link, expected_wait_s
from qkd.errors import UnknownNameError

__all__ = [
    "ROUTERS",
    "KeyAwareRouter",
    "LatencyRouter",
    "Router",
    "check_path",
    "get_router",
    "key_aware_path",
    "key_aware_weight",
    "latency_weight",
    "lowest_latency_path",
]

Weight = Callable[[Any, Any, dict[str, Any]], float | None]


class Router(Protocol):
    """Chooses a path; ``invalidate()`` is called whenever the network's state changes."""

    def __call__(
        self, graph: nx.Graph, src: str, dst: str, key_bits: float
    ) -> list[str] | None: ...

    def invalidate(self) -> None: ...


def latency_weight(u: Any, v: Any, data: dict[str, Any]) -> float | None:
    """Propagation latency of a routable link; None (hidden) if it is not routable."""
    link: Link = data["link"]
    if link.cut or link.nodes_down or link.under_attack:  # not routable (inlined: hot path)
        return None
    return link.latency_s


def key_aware_weight(key_bits: float | Callable[[Link], float]) -> Weight:
    """A weight: latency plus the expected wait for ``key_bits`` behind the pool's waiters.

    Links that are not routable, or whose key will never suffice (rate 0 and too little key
    in the pool), are hidden.

    Parameters
    ----------
    key_bits : float or callable
        Key the transfer needs on each link, or a function of the link.
    """

    def weight(u: Any, v: Any, data: dict[str, Any]) -> float | None:
        link: Link = data["link"]
        if not link.routable:
            return None
        bits = key_bits(link) if callable(key_bits) else key_bits
        wait = expected_wait_s(link, bits)
        if wait == math.inf:
            return None
        return link.latency_s + wait

    return weight


def _path(graph: nx.Graph, src: str, dst: str, weight: Weight) -> list[str] | None:
    for n in (src, dst):
        if n not in graph:
            raise NodeNotFound(n)
    try:
        path: list[str] = nx.dijkstra_path(graph, src, dst, weight=weight)
    except nx.NetworkXNoPath:
        return None
    return path


def lowest_latency_path(
    graph: nx.Graph, src: str, dst: str, key_bits: float = 0.0
) -> list[str] | None:
    """The path of least propagation latency over routable links, or None.

    Examples
    --------
    >>> from network import LinkSpec, NodeSpec, QKDNetwork, TopologySpec
    >>> import simpy
    >>> topo = TopologySpec(
    ...     nodes=tuple(NodeSpec(n) for n in "ABC"),
    ...     links=(LinkSpec("A", "B", 10.0, skr_bps=1e3), LinkSpec("B", "C", 10.0, skr_bps=1e3),
    ...            LinkSpec("A", "C", 15.0, skr_bps=1e3)),
    ... )
    >>> net = QKDNetwork(simpy.Environment(), topo)
    >>> lowest_latency_path(net.graph, "A", "C")
    ['A', 'C']
    """
    return _path(graph, src, dst, latency_weight)


def key_aware_path(graph: nx.Graph, src: str, dst: str, key_bits: float) -> list[str] | None:
    """The path of least latency plus expected key wait (:func:`key_aware_weight`), or None."""
    return _path(graph, src, dst, key_aware_weight(key_bits))


def check_path(graph: nx.Graph, path: Sequence[str]) -> list[str]:
    """Validate a fixed path: known nodes, consecutive nodes joined by links.

    Raises
    ------
    NodeNotFound, NoPath
    """
    nodes = list(path)
    if len(nodes) < 1:
        raise NoPath("?", "?", "the fixed path is empty")
    for i, n in enumerate(nodes):
        if n not in graph:
            raise NodeNotFound(n, where=f"path[{i}]")
    for u, v in itertools.pairwise(nodes):
        if not graph.has_edge(u, v):
            raise NoPath(nodes[0], nodes[-1], f"the fixed path has no link {u}-{v}")
    return nodes


class _Index:
    """The network graph as integer adjacency lists, for the routers' Dijkstra.

    ``adj[i]`` lists ``(j, link)`` in the graph's adjacency order (NetworkX's, so ties are
    broken alike); ``latency[i]`` lists ``(j, latency_s)`` of the links routable when
    :meth:`refresh` last ran, and ``csr`` holds them as a sparse matrix for SciPy (None when
    a routable link has zero latency: those trees are left to the exact Python search).
    """

    __slots__ = ("adj", "csr", "edges", "graph", "index", "latency", "names", "roles")

    def __init__(self, graph: nx.Graph) -> None:
        self.graph = graph
        self.names: list[str] = list(graph)
        self.index: dict[str, int] = {n: i for i, n in enumerate(self.names)}
        idx = self.index
        self.roles: list[Any] = [d.get("role") for _, d in graph.nodes(data=True)]
        self.adj: list[list[tuple[int, Link]]] = [
            [(idx[v], d["link"]) for v, d in graph._adj[u].items()] for u in self.names
        ]
        self.latency: list[list[tuple[int, float]]] = []
        self.csr: Any = None
        self.edges: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self.refresh()

    def refresh(self) -> None:
        """Read the links' state again (which are routable, :func:`latency_weight`)."""
        self.latency = [
            [
                (j, link.latency_s)
                for j, link in row
                if not (link.cut or link.nodes_down or link.under_attack)
            ]
            for row in self.adj
        ]
        self.csr = self.edges = None
        n = len(self.names)
        counts = np.fromiter(map(len, self.latency), dtype=np.int64, count=n)
        src = np.repeat(np.arange(n, dtype=np.int32), counts)
        dst = np.fromiter((j for row in self.latency for j, _ in row), np.int32, len(src))
        w = np.fromiter((x for row in self.latency for _, x in row), np.float64, len(src))
        if len(w) and not (w > 0).all():
            return  # zero latency: only the exact Python search (_shortest_tree_py)
        from scipy.sparse import csr_array

        self.csr = csr_array((w, (src, dst)), shape=(n, n))
        self.edges = (src, dst, w)

    def fits(self, graph: nx.Graph) -> bool:
        """Still describes ``graph``: the same object with as many nodes (a network's graph
        keeps its nodes and links; their state changes, see :meth:`refresh`)."""
        return graph is self.graph and len(graph) == len(self.names)


def _shortest_tree_py(latency: list[list[tuple[int, float]]], root: int) -> np.ndarray:
    """Dijkstra from ``root``: each node's predecessor (-1: the root or unreachable).

    The predecessor is the one NetworkX's Dijkstra lists first (the first node popped that
    gives the node its final distance), so paths are NetworkX's to the tie.
    """
    n = len(latency)
    pred = [-1] * n
    seen = [math.inf] * n
    done = bytearray(n)
    seen[root] = 0.0
    c = itertools.count()
    fringe: list[tuple[float, int, int]] = [(0, next(c), root)]
    pop, push = heapq.heappop, heapq.heappush
    while fringe:
        d, _, v = pop(fringe)
        if done[v]:
            continue
        done[v] = 1
        for u, w in latency[v]:
            if done[u]:
                continue  # (an equal path found later never changes the first predecessor)
            vu = d + w
            if vu < seen[u]:
                seen[u] = vu
                push(fringe, (vu, next(c), u))
                pred[u] = v
    return np.array(pred, dtype=np.int32)


def _shortest_tree(ix: _Index, root: int) -> np.ndarray:
    """:func:`_shortest_tree_py`'s tree, by SciPy's Dijkstra where that gives the same.

    Distances are the same sums of the same latencies in any Dijkstra. NetworkX's
    predecessor of ``u`` is the first node popped among those ``v`` with
    ``dist[v] + latency(v, u) == dist[u]``: with positive latencies, the one of least
    ``dist[v]``. Only when two such ``v`` tie on distance does the order they were popped
    in decide; then (and with zero latencies) the exact Python search runs instead.
    """
    if ix.csr is None or ix.edges is None:
        return _shortest_tree_py(ix.latency, root)
    from scipy.sparse.csgraph import dijkstra

    dist = dijkstra(ix.csr, directed=True, indices=root)
    src, dst, w = ix.edges
    dv, du = dist[src], dist[dst]
    on = (dv + w == du) & np.isfinite(du)
    cs, cd, cdist = src[on], dst[on], dv[on]
    order = np.lexsort((cdist, cd))  # by node, then by the predecessor's distance
    cs, cd, cdist = cs[order], cd[order], cdist[order]
    first = np.ones(len(cd), dtype=bool)
    first[1:] = cd[1:] != cd[:-1]
    if (~first[1:] & first[:-1] & (cdist[1:] == cdist[:-1])).any():
        return _shortest_tree_py(ix.latency, root)  # a tie at the least distance
    pred = np.full(len(ix.names), -1, dtype=np.int32)
    pred[cd[first]] = cs[first]
    return pred


class LatencyRouter:
    """Lowest-latency routing with cached shortest-path trees.

    A tree rooted at a transfer's destination (or source) serves every later transfer that
    ends (or starts) there; a new tree is rooted at the server end when there is one, so a
    workload between clients and a few servers costs a few Dijkstra runs until the next
    fault. Latencies are symmetric, so a tree rooted at ``dst`` gives ``at -> dst``.

    The trees are Dijkstra runs over integer adjacency lists of the routable links, built
    once per state of the network (:meth:`invalidate` drops them with the trees); each tree
    is one array of predecessors (4 bytes a node). Paths are those of
    ``nx.dijkstra_predecessor_and_distance`` with :func:`latency_weight`, ties included.
    """

    def __init__(self) -> None:
        self._trees: dict[int, np.ndarray] = {}
        self._index: _Index | None = None
        self._stale = False
        self.dijkstra_runs = 0

    def invalidate(self) -> None:
        self._trees.clear()
        self._stale = True

    def _indexed(self, graph: nx.Graph) -> _Index:
        ix = self._index
        if ix is None or not ix.fits(graph):
            self._trees.clear()
            ix = self._index = _Index(graph)
        elif self._stale:
            ix.refresh()
        self._stale = False
        return ix

    def _tree(self, ix: _Index, root: int) -> np.ndarray:
        tree = self._trees.get(root)
        if tree is None:
            tree = self._trees[root] = _shortest_tree(ix, root)
            self.dijkstra_runs += 1
        return tree

    def __call__(
        self, graph: nx.Graph, src: str, dst: str, key_bits: float = 0.0
    ) -> list[str] | None:
        if src == dst:
            return [src]
        for n in (src, dst):
            if n not in graph:
                raise NodeNotFound(n)
        ix = self._indexed(graph)
        s, t = ix.index[src], ix.index[dst]
        use_dst = t in self._trees
        if not use_dst and s not in self._trees:
            # neither end has a tree yet: root it at a server if one end is (fewer trees)
            roles = ix.roles
            use_dst = not (roles[s] == "server" != roles[t])
        names = ix.names
        if use_dst:
            tree = self._tree(ix, t)
            if tree[s] < 0:
                return None
            path = [s]
            while path[-1] != t:
                path.append(int(tree[path[-1]]))
            return [names[i] for i in path]
        tree = self._tree(ix, s)
        if tree[t] < 0:
            return None
        rev = [t]
        while rev[-1] != s:
            rev.append(int(tree[rev[-1]]))
        return [names[i] for i in reversed(rev)]


class KeyAwareRouter:
    """Least latency plus expected key wait (:func:`key_aware_path`); never cached."""

    def invalidate(self) -> None:
        return None

    def __call__(
        self, graph: nx.Graph, src: str, dst: str, key_bits: float = 0.0
    ) -> list[str] | None:
        if src == dst:
            return [src]
        return key_aware_path(graph, src, dst, key_bits)


ROUTERS: dict[str, Callable[[], Router]] = {
    "key-aware": KeyAwareRouter,
    "latency": LatencyRouter,
}


def get_router(name: str) -> Router:
    """A fresh router by name: ``"latency"`` or ``"key-aware"``."""
    if name not in ROUTERS:
        raise UnknownNameError("routing", name, sorted(ROUTERS))
    return ROUTERS[name]()
