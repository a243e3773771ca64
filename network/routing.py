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

import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import networkx as nx

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


class LatencyRouter:
    """Lowest-latency routing with cached shortest-path trees.

    A tree rooted at a transfer's destination (or source) serves every later transfer that
    ends (or starts) there; a new tree is rooted at the server end when there is one, so a
    workload between clients and a few servers costs a few Dijkstra runs until the next
    fault. Latencies are symmetric, so a tree rooted at ``dst`` gives ``at -> dst``.
    """

    def __init__(self) -> None:
        self._trees: dict[str, dict[str, str]] = {}
        self.dijkstra_runs = 0

    def invalidate(self) -> None:
        self._trees.clear()

    def _tree(self, graph: nx.Graph, root: str) -> dict[str, str]:
        tree = self._trees.get(root)
        if tree is None:
            pred, _ = nx.dijkstra_predecessor_and_distance(graph, root, weight=latency_weight)
            tree = {n: p[0] for n, p in pred.items() if p}
            self._trees[root] = tree
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
        use_dst = dst in self._trees
        if not use_dst and src not in self._trees:
            # neither end has a tree yet: root it at a server if one end is (fewer trees)
            roles = graph.nodes
            use_dst = not (roles[src].get("role") == "server" != roles[dst].get("role"))
        if use_dst:
            tree = self._tree(graph, dst)
            if src not in tree:
                return None
            path = [src]
            while path[-1] != dst:
                path.append(tree[path[-1]])
            return path
        tree = self._tree(graph, src)
        if dst not in tree:
            return None
        rev = [dst]
        while rev[-1] != src:
            rev.append(tree[rev[-1]])
        rev.reverse()
        return rev


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
