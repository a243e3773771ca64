"""Transfers: the analytic timing, hop-by-hop key, chunking, ciphers, conservation, errors."""

from __future__ import annotations

import itertools
import math

import pytest
import simpy
from hypothesis import given, settings
from hypothesis import strategies as st

from network import (
    AesGcm,
    KeyNeverSuffices,
    LinkSpec,
    NoCipher,
    NodeNotFound,
    NodeSpec,
    NoPath,
    OneTimePad,
    QKDNetwork,
    TopologySpec,
)
from qkd.errors import ParameterError, UnknownNameError


@pytest.mark.parametrize("n_bytes", [1, 125, 4096])
@pytest.mark.parametrize(("rate", "bw", "lat"), [(1000.0, 1e6, 0.01), (37.0, 9600.0, 0.3)])
def test_single_link_analytic_time(env, n_bytes, rate, bw, lat, line) -> None:
    """Empty pool, OTP: n bits finish at exactly n/r + n/bandwidth + latency."""
    net = QKDNetwork(env, line("AB", rate=rate, bw=bw, latency=lat), OneTimePad(auth_bits=0))
    rec = env.run(net.transfer("A", "B", n_bytes))
    n = 8 * n_bytes
    assert rec.status == "delivered"
    assert rec.t_end == pytest.approx(n / rate + n / bw + lat, rel=1e-12)
    assert rec.key_wait_s == pytest.approx(n / rate, rel=1e-12)
    assert rec.transmit_s == pytest.approx(n / bw, rel=1e-12)
    assert rec.propagation_s == lat
    assert rec.key_bits == (("A-B", n),)


def test_single_link_with_authentication_key(env, line) -> None:
    net = QKDNetwork(env, line("AB", rate=500.0), OneTimePad())  # 256-bit Poly1305 key
    rec = env.run(net.transfer("A", "B", 100))
    assert rec.t_end == pytest.approx((800 + 256) / 500.0 + 800 / 1e6 + 0.01)
    assert rec.key_bits_total == 1056


def test_three_hop_relay_consumes_key_on_every_hop(env, line) -> None:
    net = QKDNetwork(env, line("ABCD", rate=1000.0, initial=5000.0), OneTimePad(auth_bits=0))
    rec = env.run(net.transfer("A", "D", 250))
    assert rec.path == ("A", "B", "C", "D")
    assert dict(rec.key_bits) == {"A-B": 2000, "B-C": 2000, "C-D": 2000}
    for link in net.links.values():
        assert link.pool.consumed_bits == 2000
    # key was there: no wait; store-and-forward: 3 x (tx + latency)
    assert rec.key_wait_s == 0.0
    assert rec.t_end == pytest.approx(3 * (2000 / 1e6 + 0.01))


def test_relay_waits_for_slowest_hop(env) -> None:
    nodes = tuple(NodeSpec(n) for n in "ABC")
    links = (
        LinkSpec("A", "B", 1.0, skr_bps=100.0, latency_s=0.0, bandwidth_bps=1e9),
        LinkSpec("B", "C", 1.0, skr_bps=10.0, latency_s=0.0, bandwidth_bps=1e9),
    )
    net = QKDNetwork(env, TopologySpec(nodes, links), OneTimePad(auth_bits=0))
    rec = env.run(net.transfer("A", "C", 10))
    assert rec.key_wait_s == pytest.approx(8.0)  # 80 bits at 10 b/s, both hops in parallel
    assert net.link("A", "B").pool.level == pytest.approx(800 - 80)


def test_otp_larger_than_pool_streams_in_chunks(env, line) -> None:
    cap = 10_000.0
    net = QKDNetwork(
        env, line("AB", rate=1000.0, capacity=cap, latency=0.0, bw=1e9), OneTimePad(auth_bits=0)
    )
    assert net.chunk_bytes == 1250
    n_bytes = 5000  # 40 000 bits = 4 pools
    rec = env.run(net.transfer("A", "B", n_bytes))
    assert rec.status == "delivered" and rec.chunks == 4
    assert rec.key_bits_total == 40_000
    # key is the bottleneck: ends after the last chunk's key plus its transmission
    assert rec.t_end == pytest.approx(40.0 + 10_000 / 1e9, rel=1e-9)


def test_otp_chunks_pay_authentication_each(env, line) -> None:
    net = QKDNetwork(env, line("AB", rate=1e4, capacity=2056.0), OneTimePad(auth_bits=256))
    assert net.chunk_bytes == 225
    rec = env.run(net.transfer("A", "B", 450))
    assert rec.chunks == 2 and rec.key_bits_total == 2 * (1800 + 256)


def test_aes_rekey_by_bytes_and_time(env, line) -> None:
    aes = AesGcm(rekey_bytes=1000, rekey_s=60.0)
    net = QKDNetwork(env, line("ABC", rate=1e4, initial=1e5), aes)
    r1 = env.run(net.transfer("A", "C", 2500))  # 3 keys on each hop
    assert dict(r1.key_bits) == {"A-B": 768, "B-C": 768}
    r2 = env.run(net.transfer("A", "C", 400))  # fits in the 500 bytes left: no key
    assert dict(r2.key_bits) == {}
    env.run(until=env.now + 61)
    r3 = env.run(net.transfer("A", "C", 10))  # key expired: one new key per hop
    assert dict(r3.key_bits) == {"A-B": 256, "B-C": 256}


def test_no_cipher_uses_no_key(env, line) -> None:
    net = QKDNetwork(env, line("ABC", rate=0.0), NoCipher())
    rec = env.run(net.transfer("A", "C", 1000))
    assert rec.key_bits == () and rec.status == "delivered"


def test_channel_queueing_fifo(env, line) -> None:
    net = QKDNetwork(env, line("AB", rate=1.0, bw=8000.0, latency=0.5, initial=1e5), NoCipher())
    p1 = net.transfer("A", "B", 1000)  # 1 s on the wire
    p2 = net.transfer("A", "B", 1000)
    p3 = net.transfer("B", "A", 1000)  # other direction: full duplex, no queue
    env.run()
    assert p1.value.t_end == pytest.approx(1.5)
    assert p2.value.t_end == pytest.approx(2.5) and p2.value.queued_s == pytest.approx(1.0)
    assert p3.value.t_end == pytest.approx(1.5) and p3.value.queued_s == 0.0


def test_fifo_between_transfers_on_a_pool(env, line) -> None:
    net = QKDNetwork(env, line("AB", rate=100.0, latency=0.0, bw=1e12), OneTimePad(auth_bits=0))
    procs = [net.transfer("A", "B", n, tag=str(i)) for i, n in enumerate([100, 1, 50])]
    env.run()
    ends = [p.value.t_end for p in procs]
    assert ends == sorted(ends)
    assert ends[0] == pytest.approx(8.0) and ends[1] == pytest.approx(8.08)
    assert ends[2] == pytest.approx(12.08)


def test_key_aware_routing_avoids_empty_pool(env, diamond) -> None:
    topo = diamond(rate=100.0)
    # the short route's pools are empty; the long route's pools are full
    links = tuple(
        LinkSpec(
            lk.a,
            lk.b,
            lk.length_km,
            skr_bps=100.0,
            latency_s=lk.latency_s,
            initial_bits=1e5 if "D" in (lk.a, lk.b) else 0.0,
            capacity_bits=1e6,
        )
        for lk in topo.links
    )
    topo = TopologySpec(topo.nodes, links)
    lat = QKDNetwork(env, topo, routing="latency")
    assert lat.route("A", "C", 1000) == ["A", "B", "C"]
    ka = QKDNetwork(env, topo, routing="key-aware")
    rec = env.run(ka.transfer("A", "C", 1000))
    assert rec.path == ("A", "D", "C") and rec.key_wait_s == 0.0


def test_conservation_overall(env, diamond) -> None:
    net = QKDNetwork(env, diamond(rate=5000.0), OneTimePad())
    procs = [
        net.transfer(s, d, 300 + 17 * i)
        for i, (s, d) in enumerate([("A", "C"), ("C", "A"), ("B", "D"), ("D", "B"), ("A", "C")] * 4)
    ]
    env.run()
    assert all(p.value.status == "delivered" for p in procs)
    for s in net.link_summaries():
        assert s.initial_bits + s.generated_bits == pytest.approx(
            s.consumed_bits + s.wasted_bits + s.wiped_bits + s.level_bits
        )
    used = sum(p.value.key_bits_total + p.value.discarded_bits for p in procs)
    assert used == pytest.approx(sum(s.consumed_bits for s in net.link_summaries()))


@settings(max_examples=25, deadline=None)
@given(
    rates=st.lists(st.floats(10.0, 1e4), min_size=3, max_size=3),
    jobs=st.lists(
        st.tuples(st.integers(0, 3), st.integers(0, 3), st.integers(1, 3000), st.floats(0.0, 20.0)),
        min_size=1,
        max_size=15,
    ),
    auth=st.sampled_from([0, 256]),
)
def test_transfer_property(rates, jobs, auth) -> None:
    """Every transfer is delivered; key per hop = 8n + auth per chunk; conservation per link;
    nothing finishes before its own key could have been produced."""
    env = simpy.Environment()
    names = "ABCD"
    nodes = tuple(NodeSpec(n) for n in names)
    links = tuple(
        LinkSpec(a, b, 5.0, skr_bps=r, capacity_bits=5e4, bandwidth_bps=1e7)
        for (a, b), r in zip(itertools.pairwise(names), rates, strict=True)
    )
    net = QKDNetwork(env, TopologySpec(nodes, links), OneTimePad(auth_bits=auth))
    procs = []

    def start(s, d, n, t):
        yield env.timeout(t)
        procs.append(net.transfer(names[s], names[d], n))

    for s, d, n, t in jobs:
        env.process(start(s, d, n, t))
    env.run()
    assert len(procs) == len(jobs)
    for p in procs:
        rec = p.value
        assert rec.status == "delivered"
        hops = len(rec.path) - 1
        assert len(rec.key_bits) == hops
        per_hop = 8 * rec.n_bytes + auth * rec.chunks
        for _, bits in rec.key_bits:
            assert bits == per_hop
        assert rec.total_s == pytest.approx(
            rec.key_wait_s + rec.queued_s + rec.transmit_s + rec.propagation_s + rec.blocked_s
        )
    for s in net.link_summaries():
        assert s.initial_bits + s.generated_bits == pytest.approx(
            s.consumed_bits + s.wasted_bits + s.wiped_bits + s.level_bits, rel=1e-9
        )
        assert s.consumed_bits == pytest.approx(
            sum(dict(p.value.key_bits).get(s.link, 0.0) for p in procs)
        )
        # causality: no link hands out more key than it has produced by the last use
        ends = [p.value.t_end for p in procs if s.link in dict(p.value.key_bits)]
        if ends:
            assert s.consumed_bits <= s.rate_bps * max(ends) * (1 + 1e-9) + 1e-6


# -- bad input ------------------------------------------------------------------------------


def test_unknown_nodes(env, line) -> None:
    net = QKDNetwork(env, line("ABC"))
    with pytest.raises(NodeNotFound, match=r"transfer.dst: node 'Z' is not in the topology"):
        net.transfer("A", "Z", 10)
    with pytest.raises(NodeNotFound, match="'Y'"):
        net.node_down("Y")
    with pytest.raises(NodeNotFound, match=r"path\[1\]: node 'Q'"):
        net.transfer("A", "C", 10, path=["A", "Q", "C"])


def test_unreachable_destination(env) -> None:
    nodes = tuple(NodeSpec(n) for n in "ABCD")
    links = (LinkSpec("A", "B", 1.0, skr_bps=1.0), LinkSpec("C", "D", 1.0, skr_bps=1.0))
    net = QKDNetwork(env, TopologySpec(nodes, links))
    with pytest.raises(NoPath, match=r"no path from 'A' to 'D' in the topology"):
        net.transfer("A", "D", 10)


def test_zero_rate_empty_pool_raises_instead_of_hanging(env) -> None:
    nodes = tuple(NodeSpec(n) for n in "ABC")
    links = (LinkSpec("A", "B", 1.0, skr_bps=1e3), LinkSpec("B", "C", 1.0, skr_bps=0.0))
    net = QKDNetwork(env, TopologySpec(nodes, links), OneTimePad())
    with pytest.raises(KeyNeverSuffices, match=r"link B-C produces no key \(rate 0\) and holds 0"):
        net.transfer("A", "C", 10)
    ka = QKDNetwork(env, TopologySpec(nodes, links), OneTimePad(), routing="key-aware")
    with pytest.raises(KeyNeverSuffices, match="link B-C"):
        ka.transfer("A", "C", 10)


def test_zero_rate_link_with_enough_key_works_once(env) -> None:
    nodes = tuple(NodeSpec(n) for n in "AB")
    links = (LinkSpec("A", "B", 1.0, skr_bps=0.0, initial_bits=1000.0),)
    net = QKDNetwork(env, TopologySpec(nodes, links), OneTimePad(auth_bits=0))
    assert env.run(net.transfer("A", "B", 100)).status == "delivered"
    with pytest.raises(KeyNeverSuffices, match="holds 200 of the 800"):
        net.transfer("A", "B", 100)


def test_bad_transfer_arguments(env, line) -> None:
    net = QKDNetwork(env, line("AB"))
    with pytest.raises(ParameterError, match=r"transfer.n_bytes: must be an integer >= 1"):
        net.transfer("A", "B", 0)
    with pytest.raises(ParameterError, match=r"transfer.n_bytes"):
        net.transfer("A", "B", 2.5)  # type: ignore[arg-type]
    with pytest.raises(UnknownNameError, match="on_fault"):
        net.transfer("A", "B", 1, on_fault="retry")  # type: ignore[arg-type]
    with pytest.raises(UnknownNameError, match="routing"):
        QKDNetwork(env, line("AB"), routing="fastest")
    with pytest.raises(ParameterError, match=r"transfer.payload"):
        net.transfer("A", "B", 1, payload=b"x")


def test_cipher_too_big_for_pool(env, line) -> None:
    with pytest.raises(ParameterError, match=r"link A-B: capacity_bits: must be large enough"):
        QKDNetwork(env, line("AB", capacity=200.0), OneTimePad(auth_bits=256))


def test_self_transfer_is_immediate(env, line) -> None:
    net = QKDNetwork(env, line("AB"))
    rec = env.run(net.transfer("A", "A", 10))
    assert rec.status == "delivered" and rec.total_s == 0.0 and rec.key_bits == ()


def test_fixed_path(env, diamond) -> None:
    net = QKDNetwork(env, diamond(), OneTimePad(auth_bits=0))
    rec = env.run(net.transfer("A", "C", 10, path=["A", "D", "C"]))
    assert rec.path == ("A", "D", "C")
    with pytest.raises(NoPath, match="no link A-C"):
        net.transfer("A", "C", 10, path=["A", "C"])
    assert math.isfinite(rec.t_end)
