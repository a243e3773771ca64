"""The in-memory transport: delivery, topology and bad input."""

from __future__ import annotations

import networkx as nx
import pytest

from qfl.algorithms.transport import InMemoryTransport, Message, Transport, complete_adjacency
from qkd.errors import ParameterError, UnknownNameError


def test_complete_graph_from_count() -> None:
    t = InMemoryTransport(4)
    assert t.nodes == [0, 1, 2, 3]
    assert t.neighbours(2) == [0, 1, 3]
    assert isinstance(t, Transport)


def test_messages_arrive_in_order_and_inbox_empties() -> None:
    t = InMemoryTransport(3)
    t.send(0, 2, "a", n_bytes=10, tag="model")
    t.send(1, 2, "b", n_bytes=20, tag="model")
    t.send(2, 0, "c", n_bytes=1, tag="ack")
    got = t.receive(2)
    assert [(m.src, m.dst, m.payload, m.n_bytes, m.tag) for m in got] == [
        (0, 2, "a", 10, "model"),
        (1, 2, "b", 20, "model"),
    ]
    assert got[0].seq < got[1].seq
    assert t.receive(2) == []
    assert [m.payload for m in t.receive(0)] == ["c"]
    assert t.receive(1) == []
    assert t.bytes_sent == 31
    assert [m.seq for m in t.log] == [0, 1, 2]
    assert all(m.payload is None for m in t.log)  # the log keeps no payloads alive


def test_networkx_graph_and_mapping_topologies() -> None:
    g = nx.path_graph(["a", "b", "c"])
    t = InMemoryTransport(g)
    assert t.neighbours("b") == ["a", "c"]
    assert t.neighbours("a") == ["b"]
    with pytest.raises(ParameterError, match=r"dst: must be a neighbour of 'a', got 'c'"):
        t.send("a", "c", None, n_bytes=1, tag="model")
    directed = InMemoryTransport({0: [1], 1: []})
    directed.send(0, 1, "x", n_bytes=0, tag="t")
    with pytest.raises(ParameterError, match="dst: must be a neighbour of 1, got 0"):
        directed.send(1, 0, "x", n_bytes=0, tag="t")


def test_bad_input_names_the_value() -> None:
    t = InMemoryTransport(2)
    with pytest.raises(UnknownNameError, match="dst: must be one of 0, 1, got 7"):
        t.send(0, 7, None, n_bytes=1, tag="model")
    with pytest.raises(UnknownNameError, match="node: must be one of 0, 1, got 5"):
        t.receive(5)
    with pytest.raises(ParameterError, match=r"n_bytes: must be an integer >= 0, got -1"):
        t.send(0, 1, None, n_bytes=-1, tag="model")
    with pytest.raises(ParameterError, match="graph\\[0\\]: must be a node of the graph, got 9"):
        InMemoryTransport({0: [9]})
    with pytest.raises(ParameterError, match="nodes: must be >= 1, got 0"):
        complete_adjacency(0)
    with pytest.raises(ParameterError, match="graph: must be a node count"):
        InMemoryTransport(3.5)


def test_message_is_frozen() -> None:
    m = Message(src=0, dst=1, payload=None, n_bytes=1, tag="t", seq=0)
    with pytest.raises(AttributeError):
        m.src = 2  # type: ignore[misc]
