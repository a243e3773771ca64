"""A send over a link that makes no key fails at once, however large the key stores are
(the check used to plan a whole chunk of AES re-keys: 4e10 bytes in 1 kB re-keys for a
1e10-bit store, minutes and gigabytes before the error)."""

from __future__ import annotations

import time

import pytest
import simpy

from network import AesGcm, KeyNeverSuffices, LinkSpec, NodeSpec, QKDNetwork, TopologySpec


def test_a_dead_link_fails_fast_with_a_huge_store_and_short_rekeys() -> None:
    topo = TopologySpec(
        nodes=(NodeSpec("a"), NodeSpec("r", role="relay"), NodeSpec("b")),
        links=(
            LinkSpec("a", "r", 10.0, skr_bps=1e6, capacity_bits=1e10),
            LinkSpec("r", "b", 10.0, skr_bps=0.0, capacity_bits=1e10),
        ),
    )
    net = QKDNetwork(simpy.Environment(), topo, AesGcm(rekey_bytes=1000))
    t0 = time.perf_counter()
    with pytest.raises(KeyNeverSuffices, match="link r-b produces no key"):
        net.transfer("a", "b", 116_000)
    assert time.perf_counter() - t0 < 2.0
