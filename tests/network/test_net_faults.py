"""Faults: link cuts, node outages, eavesdroppers, tampering, wipes; reroute / wait / fail."""

from __future__ import annotations

import pytest
import simpy

from network import (
    Eavesdropper,
    LinkCut,
    LinkSpec,
    NodeNotFound,
    NodeOutage,
    OneTimePad,
    PoolWipe,
    QKDNetwork,
    Tamper,
    TopologySpec,
    attack_rate_factor,
    schedule_faults,
)
from qkd.errors import ParameterError


def _with_initial(topo: TopologySpec, **initial: float) -> TopologySpec:
    links = tuple(
        LinkSpec(
            lk.a,
            lk.b,
            lk.length_km,
            skr_bps=lk.skr_bps,
            latency_s=lk.latency_s,
            bandwidth_bps=lk.bandwidth_bps,
            capacity_bits=lk.capacity_bits,
            initial_bits=initial.get(lk.name, 0.0),
        )
        for lk in topo.links
    )
    return TopologySpec(topo.nodes, links)


def test_reroute_around_cut_link(env, diamond) -> None:
    net = QKDNetwork(env, diamond(rate=1e4), OneTimePad(auth_bits=0))
    net.cut_link("B", "C")
    rec = env.run(net.transfer("A", "C", 100))
    assert rec.status == "delivered" and rec.path == ("A", "D", "C")
    assert net.link("B", "C").pool.rate_bps == 0.0
    assert [(f.kind, f.target) for f in net.fault_log] == [("link_cut", "B-C")]


def test_reroute_while_waiting_for_key_discards_held_key(env, diamond) -> None:
    topo = _with_initial(diamond(rate=100.0), **{"A-B": 1e4, "A-D": 1e4, "D-C": 1e4})
    net = QKDNetwork(env, topo, OneTimePad(auth_bits=0))
    proc = net.transfer("A", "C", 100)  # A-B key is there, B-C must wait 8 s
    schedule_faults(env, net, [LinkCut("B", "C", 1.0)])
    env.run()
    rec = proc.value
    assert rec.status == "delivered" and rec.reroutes == 1
    assert rec.path == ("A", "D", "C")
    assert rec.discarded_bits == 800  # A-B's key, no longer on the path
    assert dict(rec.key_bits) == {"A-D": 800, "D-C": 800}
    consumed = sum(s.consumed_bits for s in net.link_summaries())
    assert consumed == pytest.approx(rec.key_bits_total + rec.discarded_bits)
    assert net.link("B", "C").pool.waiters == 0  # its request was withdrawn
    assert rec.t_end == pytest.approx(1.0 + 2 * (800 / 1e6 + 0.05))


def test_wait_policy_resumes_after_repair(env, line) -> None:
    # 1000 bytes at 8 kb/s = 1 s on the wire; cut at 0.5 s, repaired at 3 s
    net = QKDNetwork(
        env,
        line("AB", rate=1.0, bw=8000.0, latency=0.1, initial=1e5),
        OneTimePad(auth_bits=0),
        on_fault="wait",
    )
    proc = net.transfer("A", "B", 1000)
    schedule_faults(env, net, [LinkCut("A", "B", 0.5, 3.0)])
    env.run()
    rec = proc.value
    assert rec.status == "delivered" and rec.reroutes == 0
    assert rec.t_end == pytest.approx(3.0 + 1.0 + 0.1)
    assert rec.blocked_s == pytest.approx(3.0)  # lost attempt + outage
    assert dict(rec.key_bits) == {"A-B": 8000}  # the chunk's key was kept, not paid twice


def test_fail_policy_records_reason(env, diamond) -> None:
    net = QKDNetwork(env, diamond(rate=100.0), OneTimePad(auth_bits=0), on_fault="fail")
    proc = net.transfer("A", "C", 100)
    schedule_faults(env, net, [LinkCut("A", "B", 2.0, 5.0)])
    env.run()
    rec = proc.value
    assert rec.status == "failed"
    assert "link A-B cut at t=2" in rec.reason
    assert rec in net.records
    assert net.summary().failed == 1


def test_no_route_waits_then_proceeds(env, line) -> None:
    net = QKDNetwork(env, line("ABC", rate=1e4, initial=1e5), OneTimePad(auth_bits=0))
    net.cut_link("B", "C")
    proc = net.transfer("A", "C", 10)  # reroute policy, but there is no other path
    schedule_faults(env, net, [LinkCut("B", "C", 0.0, 7.0)])
    env.run(until=5.0)
    assert net.summary().in_progress == 1 and not proc.triggered
    assert net.in_progress()[0].status == "in_progress"
    env.run()
    assert proc.value.status == "delivered"
    assert proc.value.t_end == pytest.approx(7.0 + 2 * (80 / 1e6 + 0.01))


def test_relay_node_down_reroutes_and_waits(env, diamond) -> None:
    net = QKDNetwork(env, diamond(rate=1e4), OneTimePad(auth_bits=0))
    schedule_faults(env, net, [NodeOutage("B", 0.0, 10.0)])
    env.run(until=1.0)
    rec = env.run(net.transfer("A", "C", 10))
    assert rec.path == ("A", "D", "C")
    waiter = QKDNetwork(
        simpy.Environment(), diamond(rate=1e4), OneTimePad(auth_bits=0), on_fault="wait"
    )
    wenv = waiter.env
    proc = waiter.transfer("A", "C", 10)  # via B; its key needs 8 ms
    schedule_faults(wenv, waiter, [NodeOutage("B", 0.001, 10.0)])
    rec = wenv.run(proc)
    assert rec.path == ("A", "B", "C") and rec.reroutes == 0
    assert rec.t_end == pytest.approx(10.0 + 0.007 + 2 * (80 / 1e6 + 0.01))
    kinds = [f.kind for f in waiter.fault_log]
    assert kinds == ["node_down", "node_up"]


def test_eavesdropper_stops_key_while_attack_lasts(env, line) -> None:
    net = QKDNetwork(
        env,
        line("AB", rate=100.0, latency=0.0, bw=1e12, initial=50.0),
        OneTimePad(auth_bits=0),
        on_fault="wait",
    )
    proc = net.transfer("A", "B", 100)  # 800 bits: 50 there, 750 at 100 b/s = 7.5 s
    schedule_faults(env, net, [Eavesdropper("A", "B", 2.0, 6.0, qber=0.25)])
    env.run(until=4.0)
    assert net.link("A", "B").pool.rate_bps == 0.0
    level = net.link("A", "B").pool.level
    env.run()
    assert level == pytest.approx(250.0)  # key made before the attack is kept
    assert proc.value.t_end == pytest.approx(7.5 + 4.0, rel=1e-9)
    assert [f.kind for f in net.fault_log] == ["eavesdrop_start", "eavesdrop_end"]


def test_eavesdropper_keeps_pool_and_reroute_avoids_link(env, diamond) -> None:
    topo = _with_initial(diamond(rate=10.0), **{"A-B": 5e3, "B-C": 100.0})
    net = QKDNetwork(env, topo, OneTimePad(auth_bits=0))
    proc = net.transfer("A", "C", 100)  # B-C must wait
    schedule_faults(env, net, [Eavesdropper("B", "C", 1.0, qber=0.3)])
    env.run()
    rec = proc.value
    assert rec.status == "delivered" and rec.path == ("A", "D", "C") and rec.reroutes == 1
    pool = net.link("B", "C").pool
    assert pool.rate_bps == 0.0
    assert pool.level == pytest.approx(110.0)  # 100 initial + 1 s of key, kept


def test_weak_eavesdropper_only_lowers_rate(env, line) -> None:
    net = QKDNetwork(env, line("AB", rate=1000.0))
    net.start_eavesdropper("A", "B", qber=0.05)
    factor = attack_rate_factor(0.05, baseline_qber=0.015, f_ec=1.1)
    assert 0 < factor < 1
    assert net.link("A", "B").pool.rate_bps == pytest.approx(1000.0 * factor)
    net.stop_eavesdropper("A", "B")
    assert net.link("A", "B").pool.rate_bps == 1000.0


def test_tamper_fails_transfer_with_integrity_reason(env, line) -> None:
    net = QKDNetwork(env, line("ABC", rate=1e4, initial=1e5), OneTimePad())
    schedule_faults(env, net, [Tamper("B", "C", 0.0, 1.0)])
    env.run(until=0.5)
    rec = env.run(net.transfer("A", "C", 10))
    assert rec.status == "failed" and "B-C" in rec.reason and "integrity" in rec.reason


def test_wipe_and_conservation(env, line) -> None:
    net = QKDNetwork(env, line("AB", rate=10.0, initial=500.0))
    schedule_faults(env, net, [PoolWipe("A", "B", 3.0)])
    env.run(until=5.0)
    s = net.link_summaries()[0]
    assert s.wiped_bits == pytest.approx(530.0) and s.level_bits == pytest.approx(20.0)
    assert s.initial_bits + s.generated_bits == pytest.approx(
        s.consumed_bits + s.wasted_bits + s.wiped_bits + s.level_bits
    )


def test_fault_spec_errors(env, line) -> None:
    net = QKDNetwork(env, line("AB"))
    with pytest.raises(NodeNotFound, match=r"fault.node: node 'Z'"):
        schedule_faults(env, net, [NodeOutage("Z", 1.0)])
    with pytest.raises(ParameterError, match=r"link_cut.end_s: must be > start_s"):
        LinkCut("A", "B", 5.0, 4.0)
    with pytest.raises(ParameterError, match=r"eavesdropper.qber: must be in"):
        Eavesdropper("A", "B", 0.0, qber=0.7)
    with pytest.raises(NodeNotFound, match="'Q'"):
        schedule_faults(env, net, [LinkCut("A", "Q", 1.0)])
