"""Faults: link cuts, node outages, eavesdroppers, tampering, pool wipes.

The functions here (:func:`cut_link`, :func:`node_down`, ...) apply a fault to a network seen
through the narrow :class:`FaultTarget` interface (its graph, a fault log, a change signal);
the links make the state changes themselves. Faults are frozen specifications;
:func:`schedule_faults` turns each into a plain SimPy process that applies it at ``start_s``
and undoes it at ``end_s`` (if given).
"""

from __future__ import annotations

import math
from collections.abc import Generator, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import networkx as nx
import simpy

from network.errors import NodeNotFound
from network.link import Link, link_between
from qkd.errors import ParameterError
from qkd.rates import ABORT_QBER

__all__ = [
    "Eavesdropper",
    "Fault",
    "FaultTarget",
    "LinkCut",
    "NodeOutage",
    "PoolWipe",
    "Tamper",
    "cut_link",
    "node_down",
    "node_up",
    "repair_link",
    "schedule_faults",
    "start_eavesdropper",
    "start_tamper",
    "stop_eavesdropper",
    "stop_tamper",
    "wipe_pool",
]


class FaultTarget(Protocol):
    """What faults act on (a :class:`~network.qkdnetwork.QKDNetwork` is one).

    ``graph`` holds the links as the edge attribute ``link`` and, per node, ``down`` and
    ``transfers`` (to tell when it goes down); ``log_fault`` records a change and
    ``signal_change`` tells routing and blocked transfers that the network changed.
    """

    @property
    def env(self) -> simpy.Environment: ...

    @property
    def graph(self) -> nx.Graph: ...

    def log_fault(self, kind: str, target: str, detail: str = "") -> None: ...

    def signal_change(self) -> None: ...


def cut_link(net: FaultTarget, a: str, b: str) -> None:
    """Cut the fibre ``a-b``: no traffic and no key until :func:`repair_link`."""
    link = link_between(net.graph, a, b)
    if link.cut_fibre():
        net.log_fault("link_cut", link.name)
        net.signal_change()


def repair_link(net: FaultTarget, a: str, b: str) -> None:
    """Repair a cut link; its pool keeps the key it held."""
    link = link_between(net.graph, a, b)
    if link.repair():
        net.log_fault("link_repair", link.name)
        net.signal_change()


def _node(net: FaultTarget, node: str) -> dict[str, Any]:
    if node not in net.graph:
        raise NodeNotFound(node)
    state: dict[str, Any] = net.graph.nodes[node]
    return state


def _links_at(net: FaultTarget, node: str) -> list[Link]:
    return [net.graph.edges[node, nb]["link"] for nb in net.graph[node]]


def node_down(net: FaultTarget, node: str) -> None:
    """Take a node down: it sends, receives and relays nothing; its links make no key."""
    state = _node(net, node)
    if state["down"]:
        return
    state["down"] = True
    cause = f"node {node} down at t={net.env.now:g}"
    for link in _links_at(net, node):
        link.end_down(node, cause)
    for tr in list(state["transfers"]):
        tr.notify(cause, node=node)
    net.log_fault("node_down", node)
    net.signal_change()


def node_up(net: FaultTarget, node: str) -> None:
    """Bring a node back up."""
    state = _node(net, node)
    if not state["down"]:
        return
    state["down"] = False
    for link in _links_at(net, node):
        link.end_up(node)
    net.log_fault("node_up", node)
    net.signal_change()


def start_eavesdropper(
    net: FaultTarget, a: str, b: str, qber: float = 0.25, *, threshold: float = ABORT_QBER
) -> None:
    """An eavesdropper on ``a-b`` raises its QBER to ``qber`` (see :meth:`Link.start_attack`)."""
    link = link_between(net.graph, a, b)
    link.start_attack(qber, threshold)
    net.log_fault("eavesdrop_start", link.name, f"qber={qber:g}")
    net.signal_change()


def stop_eavesdropper(net: FaultTarget, a: str, b: str) -> None:
    """End the attack on ``a-b``: the link makes key at its nominal rate again."""
    link = link_between(net.graph, a, b)
    link.stop_attack()
    net.log_fault("eavesdrop_end", link.name)
    net.signal_change()


def start_tamper(net: FaultTarget, a: str, b: str) -> None:
    """An active attacker alters ciphertexts on ``a-b``: each chunk sent over it fails its
    integrity check at the receiver, and its transfer fails with that reason."""
    link = link_between(net.graph, a, b)
    link.set_tampered(True)
    net.log_fault("tamper_start", link.name)


def stop_tamper(net: FaultTarget, a: str, b: str) -> None:
    """End the tampering on ``a-b``."""
    link = link_between(net.graph, a, b)
    link.set_tampered(False)
    net.log_fault("tamper_end", link.name)


def wipe_pool(net: FaultTarget, a: str, b: str) -> float:
    """Empty the pool of ``a-b`` (a scenario decision); returns the bits removed."""
    link = link_between(net.graph, a, b)
    bits = link.wipe_pool()
    net.log_fault("pool_wipe", link.name, f"bits={bits:.0f}")
    return bits


def _window(kind: str, start: float, end: float | None) -> None:
    if (
        isinstance(start, bool)
        or not isinstance(start, int | float)
        or not (math.isfinite(start) and start >= 0)
    ):
        raise ParameterError(f"{kind}.start_s", start, ">= 0")
    if end is not None and (
        isinstance(end, bool) or not isinstance(end, int | float) or not end > start
    ):
        raise ParameterError(f"{kind}.end_s", end, f"> start_s ({start}) or None")


@dataclass(frozen=True)
class LinkCut:
    """The fibre ``a-b`` is cut from ``start_s`` until ``end_s`` (None: for good)."""

    a: str
    b: str
    start_s: float
    end_s: float | None = None

    def __post_init__(self) -> None:
        _window("link_cut", self.start_s, self.end_s)

    def begin(self, net: FaultTarget) -> None:
        cut_link(net, self.a, self.b)

    def end(self, net: FaultTarget) -> None:
        repair_link(net, self.a, self.b)


@dataclass(frozen=True)
class NodeOutage:
    """Node ``node`` is down from ``start_s`` until ``end_s``."""

    node: str
    start_s: float
    end_s: float | None = None

    def __post_init__(self) -> None:
        _window("node_outage", self.start_s, self.end_s)

    def begin(self, net: FaultTarget) -> None:
        node_down(net, self.node)

    def end(self, net: FaultTarget) -> None:
        node_up(net, self.node)


@dataclass(frozen=True)
class Eavesdropper:
    """An eavesdropper on ``a-b`` raising its QBER to ``qber`` (above ``threshold``, 11% by
    default, the link makes no key while the attack lasts)."""

    a: str
    b: str
    start_s: float
    end_s: float | None = None
    qber: float = 0.25
    threshold: float = ABORT_QBER

    def __post_init__(self) -> None:
        _window("eavesdropper", self.start_s, self.end_s)
        if not (isinstance(self.qber, int | float) and 0 <= self.qber <= 0.5):
            raise ParameterError("eavesdropper.qber", self.qber, "in [0, 0.5]")
        if not (isinstance(self.threshold, int | float) and 0 < self.threshold <= 0.5):
            raise ParameterError("eavesdropper.threshold", self.threshold, "in (0, 0.5]")

    def begin(self, net: FaultTarget) -> None:
        start_eavesdropper(net, self.a, self.b, self.qber, threshold=self.threshold)

    def end(self, net: FaultTarget) -> None:
        stop_eavesdropper(net, self.a, self.b)


@dataclass(frozen=True)
class Tamper:
    """An active attacker alters ciphertexts on ``a-b`` (detected by authentication)."""

    a: str
    b: str
    start_s: float
    end_s: float | None = None

    def __post_init__(self) -> None:
        _window("tamper", self.start_s, self.end_s)

    def begin(self, net: FaultTarget) -> None:
        start_tamper(net, self.a, self.b)

    def end(self, net: FaultTarget) -> None:
        stop_tamper(net, self.a, self.b)


@dataclass(frozen=True)
class PoolWipe:
    """The scenario empties the pool of ``a-b`` at ``start_s``."""

    a: str
    b: str
    start_s: float

    def __post_init__(self) -> None:
        _window("pool_wipe", self.start_s, None)

    @property
    def end_s(self) -> None:
        return None

    def begin(self, net: FaultTarget) -> None:
        wipe_pool(net, self.a, self.b)

    def end(self, net: FaultTarget) -> None:
        return None


Fault = LinkCut | NodeOutage | Eavesdropper | Tamper | PoolWipe


def _fault_process(
    env: simpy.Environment, net: FaultTarget, fault: Fault
) -> Generator[simpy.Event, Any, None]:
    if fault.start_s > env.now:
        yield env.timeout(fault.start_s - env.now)
    fault.begin(net)
    if fault.end_s is not None:
        yield env.timeout(fault.end_s - env.now)
        fault.end(net)


def schedule_faults(
    env: simpy.Environment, net: FaultTarget, faults: Iterable[Fault]
) -> list[simpy.Process]:
    """Start one process per fault; names are checked now (unknown node/link raises).

    Examples
    --------
    >>> from network import LinkSpec, NodeSpec, QKDNetwork, TopologySpec
    >>> env = simpy.Environment()
    >>> net = QKDNetwork(env, TopologySpec((NodeSpec("A"), NodeSpec("B")),
    ...                                    (LinkSpec("A", "B", 5.0, skr_bps=1e3),)))
    >>> _ = schedule_faults(env, net, [LinkCut("A", "B", 10.0, 20.0)])
    >>> env.run(until=30)
    >>> [(f.time, f.kind) for f in net.fault_log]
    [(10.0, 'link_cut'), (20.0, 'link_repair')]
    """
    procs = []
    for fault in faults:
        if isinstance(fault, NodeOutage):
            if fault.node not in net.graph:
                raise NodeNotFound(fault.node, where="fault.node")
        else:
            link_between(net.graph, fault.a, fault.b)
        procs.append(env.process(_fault_process(env, net, fault)))
    return procs
