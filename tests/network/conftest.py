"""Fixtures of the network tests: an environment and small topology builders."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest
import simpy

from network import LinkSpec, NodeSpec, TopologySpec


def _line(
    names: str,
    *,
    rate: float = 1000.0,
    bw: float = 1e6,
    latency: float = 0.01,
    capacity: float = 1e6,
    initial: float = 0.0,
) -> TopologySpec:
    """A chain of nodes ``names[0] - names[1] - ...`` with identical links."""
    nodes = tuple(NodeSpec(n, role="relay") for n in names)
    links = tuple(
        LinkSpec(
            a,
            b,
            10.0,
            skr_bps=rate,
            bandwidth_bps=bw,
            latency_s=latency,
            capacity_bits=capacity,
            initial_bits=initial,
        )
        for a, b in itertools.pairwise(names)
    )
    return TopologySpec(nodes, links)


def _diamond(rate: float = 1000.0) -> TopologySpec:
    """A-B-C (short) and A-D-C (long): two routes from A to C."""
    nodes = tuple(NodeSpec(n, role="relay") for n in "ABCD")
    kw = dict(skr_bps=rate, bandwidth_bps=1e6, capacity_bits=1e6)
    links = (
        LinkSpec("A", "B", 10.0, latency_s=0.01, **kw),
        LinkSpec("B", "C", 10.0, latency_s=0.01, **kw),
        LinkSpec("A", "D", 10.0, latency_s=0.05, **kw),
        LinkSpec("D", "C", 10.0, latency_s=0.05, **kw),
    )
    return TopologySpec(nodes, links)


@pytest.fixture
def env() -> simpy.Environment:
    return simpy.Environment()


@pytest.fixture
def line() -> Callable[..., TopologySpec]:
    """``line("ABC", rate=..., bw=..., latency=..., capacity=..., initial=...)``."""
    return _line


@pytest.fixture
def diamond() -> Callable[..., TopologySpec]:
    """``diamond(rate)``: A-B-C (short) and A-D-C (long)."""
    return _diamond
