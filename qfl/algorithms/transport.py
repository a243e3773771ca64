"""The narrow interface between learning algorithms and the network.

A decentralized learning method only ever asks three things of the network: *send this
payload to that node*, *what has arrived at this node*, and *who are this node's
neighbours*. :class:`Transport` is that interface; :class:`InMemoryTransport` implements it
with instant delivery for unit tests and for runs without a network model. In a
co-simulation the network half runs first, on the SimPy clock (key pools, latency,
bandwidth: :mod:`qfl.cosim.schedule`), and the learning half's transport
(:class:`qfl.cosim.replay.ReplayTransport`) replays its outcome: it delivers at once, except
the sends that failed on the network. So the algorithms never change.

This module imports neither torch nor the network layer: payloads are opaque objects.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, cast, runtime_checkable

from qkd.errors import ParameterError, UnknownNameError

__all__ = ["InMemoryTransport", "Message", "Transport", "complete_adjacency"]


@dataclass(frozen=True)
class Message:
    """One delivered payload.

    Attributes
    ----------
    src, dst : Hashable
        Sending and receiving node.
    payload : object
        What was sent (opaque to the transport; a model snapshot for the learning methods).
    n_bytes : int
        Size the sender declared; a network-backed transport charges key and bandwidth for it.
    tag : str
        Free label chosen by the sender (for example ``"model"``).
    seq : int
        Sequence number, unique per transport, in order of sending.
    """

    src: Hashable
    dst: Hashable
    payload: Any = field(repr=False)
    n_bytes: int
    tag: str
    seq: int


@runtime_checkable
class Transport(Protocol):
    """What a decentralized learning method may ask of the network."""

    def send(self, src: Hashable, dst: Hashable, payload: Any, *, n_bytes: int, tag: str) -> None:
        """Hand ``payload`` to the network for delivery from ``src`` to ``dst``."""
        ...

    def receive(self, node: Hashable) -> list[Message]:
        """Return (and remove) the messages that have arrived at ``node``, oldest first."""
        ...

    def neighbours(self, node: Hashable) -> list[Hashable]:
        """Return the nodes that ``node`` may send to directly, in a fixed order."""
        ...


def complete_adjacency(nodes: int | Iterable[Hashable]) -> dict[Hashable, list[Hashable]]:
    """Adjacency of the complete graph on ``nodes`` (an int ``n`` means ``0 .. n-1``).

    Examples
    --------
    >>> complete_adjacency(3)
    {0: [1, 2], 1: [0, 2], 2: [0, 1]}
    """
    if isinstance(nodes, int):
        if nodes < 1:
            raise ParameterError("nodes", nodes, ">= 1")
        node_list: list[Hashable] = list(range(nodes))
    else:
        node_list = list(nodes)
    if len(set(node_list)) != len(node_list):
        raise ParameterError("nodes", node_list, "distinct")
    return {n: [m for m in node_list if m != n] for n in node_list}


def _adjacency_of(graph: Any) -> dict[Hashable, list[Hashable]]:
    """Adjacency lists from a NetworkX-like graph (``.adj``), a mapping, or a node count."""
    if isinstance(graph, int):
        return complete_adjacency(graph)
    adj = getattr(graph, "adj", None)
    source: Mapping[Hashable, Iterable[Hashable]]
    if adj is not None and hasattr(graph, "nodes"):
        source = {n: list(adj[n]) for n in graph.nodes}
    elif isinstance(graph, Mapping):
        source = graph
    else:
        raise ParameterError(
            "graph", type(graph).__name__, "a node count, a mapping node -> neighbours or a graph"
        )
    out: dict[Hashable, list[Hashable]] = {}
    for node, nbrs in source.items():
        lst = [m for m in nbrs if m != node]
        if len(set(lst)) != len(lst):
            raise ParameterError(f"graph[{node!r}]", lst, "a list of distinct neighbours")
        out[node] = lst
    for node, nbrs in out.items():
        for m in nbrs:
            if m not in out:
                raise ParameterError(f"graph[{node!r}]", m, "a node of the graph")
    if not out:
        raise ParameterError("graph", graph, "a graph with at least one node")
    return out


class InMemoryTransport:
    """Instant, lossless delivery over a fixed topology.

    Parameters
    ----------
    graph : int, mapping or graph
        The topology: a node count ``n`` (complete graph on ``0 .. n-1``), a mapping
        ``node -> neighbours`` (directed: ``dst`` must appear in ``graph[src]``), or any
        NetworkX-like graph with ``.nodes`` and ``.adj``.

    Attributes
    ----------
    log : list of Message
        Every message sent, in order, with its payload dropped (``None``) so that the log
        does not keep model snapshots alive.

    Examples
    --------
    >>> t = InMemoryTransport(3)
    >>> t.send(0, 2, "hello", n_bytes=5, tag="note")
    >>> [(m.src, m.payload) for m in t.receive(2)]
    [(0, 'hello')]
    >>> t.receive(2)
    []
    """

    def __init__(self, graph: Any) -> None:
        self._adj = _adjacency_of(graph)
        self._inbox: dict[Hashable, list[Message]] = {n: [] for n in self._adj}
        self._seq = 0
        self.log: list[Message] = []

    @property
    def nodes(self) -> list[Hashable]:
        """The nodes, in the order the topology listed them."""
        return list(self._adj)

    @property
    def bytes_sent(self) -> int:
        """Total declared size of every message sent so far."""
        return sum(m.n_bytes for m in self.log)

    def _check_node(self, name: str, node: Hashable) -> None:
        if node not in self._adj:
            raise UnknownNameError(name, node, cast(Any, tuple(self._adj)))

    def neighbours(self, node: Hashable) -> list[Hashable]:
        """Nodes adjacent to ``node`` (a copy of the adjacency list)."""
        self._check_node("node", node)
        return list(self._adj[node])

    def send(self, src: Hashable, dst: Hashable, payload: Any, *, n_bytes: int, tag: str) -> None:
        """Deliver ``payload`` to ``dst``'s inbox at once.

        Raises
        ------
        UnknownNameError
            ``src`` or ``dst`` is not a node.
        ParameterError
            ``dst`` is not a neighbour of ``src``, or ``n_bytes < 0``.
        """
        self._check_node("src", src)
        self._check_node("dst", dst)
        if dst not in self._adj[src]:
            raise ParameterError("dst", dst, f"a neighbour of {src!r}")
        if int(n_bytes) != n_bytes or n_bytes < 0:
            raise ParameterError("n_bytes", n_bytes, "an integer >= 0")
        msg = Message(
            src=src, dst=dst, payload=payload, n_bytes=int(n_bytes), tag=tag, seq=self._seq
        )
        self._seq += 1
        self.log.append(replace(msg, payload=None))
        self._inbox[dst].append(msg)

    def receive(self, node: Hashable) -> list[Message]:
        """Messages that arrived at ``node`` since the last call, oldest first."""
        self._check_node("node", node)
        out, self._inbox[node] = self._inbox[node], []
        return out
