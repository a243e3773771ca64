"""Co-simulation semantics: transfer timing, faults, horizon, key-rate scaling, Ctrl-C.

Most tests run only the network half (:func:`simulate_network`: no training); the few that
train use three clients, 50 samples each and one or two rounds on the sequential engine.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import simpy
import yaml

from network import LinkSpec, NodeSpec, OneTimePad, QKDNetwork, TopologySpec
from qfl.cosim import ReplayTransport, run_scenario, simulate_network
from qfl.cosim.netbuild import build_topology, check_network
from qfl.cosim.outputs import write_network_outputs
from qfl.cosim.plan import server_round
from qfl.cosim.run import execute_learning, summarize_run
from qfl.cosim.schedule import ComputeProfile, Timeline, run_plan, run_schedule
from qfl.scenario import Scenario, ScenarioError

Tiny = Callable[..., dict[str, Any]]
C_KM_S = 299_792.458


def scenario(d: dict[str, Any]) -> Scenario:
    return Scenario.model_validate(d)


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def two_clients(tiny: Tiny, link: dict[str, Any], **patch: Any) -> Scenario:
    """Clients a and b joined by one link; one OTP model transfer per round."""
    d = tiny(
        {
            "topology": {
                "nodes": [{"name": "a", "flops_per_s": 1e9}, {"name": "b", "flops_per_s": 2e9}],
                "links": [{"a": "a", "b": "b", **link}],
            },
            "cipher": {"policy": "otp"},
            **patch,
        }
    )
    return scenario(d)


# ------------------------------------------------------------------------------ physics


def test_otp_transfer_time_is_key_wait_plus_transmit_plus_latency(
    tiny: Tiny, fmnist: Path, tmp_path: Path
) -> None:
    skr, bw, latency = 2.0e5, 1.0e8, 0.004
    sc = two_clients(
        tiny, {"length_km": 30, "skr_bps": skr, "bandwidth_bps": bw, "latency_s": latency}
    )
    nrun = simulate_network(sc)
    write_network_outputs(nrun, tmp_path)
    rows = read_rows(tmp_path / "transfers.csv")
    assert len(rows) == 1  # 2 clients: one sender per round, one round
    row = rows[0]
    prof = nrun.job.profile
    src = prof.clients.index(row["src"])
    dst = prof.clients.index(row["dst"])
    n_bytes = prof.upload_bytes[src]
    assert int(row["n_bytes"]) == n_bytes and row["status"] == "delivered"
    # The sender trains, then asks for key: the pool (empty at t=0) has filled for t_request.
    t_request = prof.train_s(src)
    key_bits = 8 * n_bytes + 256  # one-time pad + a 256-bit one-time MAC key
    wait = key_bits / skr - t_request
    transmit = 8 * n_bytes / bw
    assert float(row["t_request"]) == pytest.approx(t_request, rel=1e-9)
    assert float(row["key_wait_s"]) == pytest.approx(wait, rel=1e-9)
    assert float(row["transmit_s"]) == pytest.approx(transmit, rel=1e-9)
    assert float(row["propagation_s"]) == pytest.approx(latency, rel=1e-9)
    assert float(row["t_end"]) - float(row["t_request"]) == pytest.approx(
        wait + transmit + latency, rel=1e-9
    )
    assert float(row["key_bits_total"]) == pytest.approx(key_bits)
    # The receiver fuses after the delivery; that ends the round.
    assert nrun.timeline.round_end_s == [pytest.approx(float(row["t_end"]) + prof.fuse_s(dst))]
    assert nrun.net.summary().key_consumed_bits == pytest.approx(key_bits)


def test_latency_defaults_to_fibre_length(tiny: Tiny, fmnist: Path) -> None:
    sc = two_clients(tiny, {"length_km": 30, "skr_bps": 1e9})
    rec = simulate_network(sc).net.records[0]
    assert rec.propagation_s == pytest.approx(30 * 1.468 / C_KM_S, rel=1e-6)


def test_rate_scale_scales_every_link(tiny: Tiny, fmnist: Path, tmp_path: Path) -> None:
    d = tiny()
    d["topology"]["links"][0]["skr_bps"] = 1234.0  # a measured rate is scaled too
    rates = {}
    for scale in (1.0, 0.25):
        d["qkd"]["rate_scale"] = scale
        nrun = simulate_network(scenario(d))
        write_network_outputs(nrun, tmp_path / str(scale))
        topo = json.loads((tmp_path / str(scale) / "topology.json").read_text())
        rates[scale] = {(lk["a"], lk["b"]): lk["skr_bps"] for lk in topo["links"]}
    assert rates[1.0][("a", "r")] == pytest.approx(1234.0)
    assert set(rates[1.0]) == set(rates[0.25]) and len(rates[1.0]) == 4
    for pair, r in rates[1.0].items():
        assert r > 0
        assert rates[0.25][pair] == pytest.approx(0.25 * r, rel=1e-12)
    # longer fibre, less key (same preset)
    assert rates[1.0][("a", "r")] != rates[1.0][("b", "r")]
    assert rates[1.0][("b", "r")] > rates[1.0][("c", "r")] > rates[1.0][("a", "b")]


def test_horizon_cuts_rounds(tiny: Tiny, fmnist: Path) -> None:
    links = [{"a": "a", "b": "r", "length_km": 5, "skr_bps": 1e5}]
    links += [{"a": n, "b": "r", "length_km": 5, "skr_bps": 1e5} for n in ("b", "c")]
    d = tiny({"cipher": {"policy": "otp"}, "learning": {"rounds": 5}})
    d["topology"]["links"] = links
    full = simulate_network(scenario(d)).timeline
    assert full.rounds_done == 5
    horizon = (full.round_end_s[1] + full.round_end_s[2]) / 2
    d["horizon_s"] = horizon
    nrun = simulate_network(scenario(d))
    cut = nrun.timeline
    assert cut.rounds_done == 2
    assert cut.round_end_s == pytest.approx(full.round_end_s[:2])
    assert nrun.net.env.now == pytest.approx(horizon)
    # the third round's transfer was under way at the horizon
    assert [r.status for r in nrun.net.in_progress()] == ["in_progress"]


# ------------------------------------------------------------------------------- faults


def test_permanent_link_cut_fails_the_transfer_and_the_learner_drops_it(
    tiny: Tiny, fmnist: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The only link is cut for good while the sender trains: its model can never arrive.
    sc = two_clients(
        tiny,
        {"length_km": 10, "skr_bps": 1e7},
        faults=[{"kind": "link-cut", "at_s": 0.01, "link": ["a", "b"]}],
    )
    nrun = simulate_network(sc)
    tl = nrun.timeline
    assert tl.rounds_done == 1  # no hang: the blocked transfer is given up
    assert len(tl.dropped) == 1
    (r, src, dst, tag) = next(iter(tl.dropped))
    assert (r, tag) == (0, "model") and {src, dst} == {"a", "b"}
    ops = [o["op"] for o in tl.ops]
    assert any(op.startswith(f"send:model->{dst} (failed:") for op in ops)
    assert "fuse" not in ops
    write_network_outputs(nrun, tmp_path)
    transfers = read_rows(tmp_path / "transfers.csv")
    assert [t["status"] for t in transfers] == ["in_progress"]
    faults = read_rows(tmp_path / "faults.csv")
    assert len(faults) == 1 and "cut" in faults[0]["kind"]
    summary = summarize_run(nrun, [], status="complete", wall={})
    assert (summary["transfers_dropped"], summary["transfers_in_progress"]) == (1, 1)

    transports: list[ReplayTransport] = []

    class Spy(ReplayTransport):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            transports.append(self)

    monkeypatch.setattr("qfl.cosim.jobs.ReplayTransport", Spy)
    evals: list[int] = []
    execute_learning(nrun, lambda rnd, rows: evals.append(rnd))
    assert evals == [1]
    assert sum(t.n_dropped for t in transports) == 1  # the learner never got the model


def test_temporary_link_cut_delays_the_transfer(tiny: Tiny, fmnist: Path) -> None:
    sc = two_clients(
        tiny,
        {"length_km": 10, "skr_bps": 1e7},
        faults=[{"kind": "link-cut", "at_s": 0.01, "until_s": 50.0, "link": ["a", "b"]}],
    )
    nrun = simulate_network(sc)
    assert nrun.timeline.dropped == set()
    (rec,) = nrun.net.records
    assert rec.status == "delivered"
    assert rec.t_end > 50.0  # it waited for the repair


def test_link_without_key_drops_transfers_instead_of_hanging(tiny: Tiny, fmnist: Path) -> None:
    sc = two_clients(tiny, {"length_km": 10, "skr_bps": 0.0}, learning={"rounds": 2})
    nrun = simulate_network(sc)
    tl = nrun.timeline
    assert tl.rounds_done == 2
    assert {d[0] for d in tl.dropped} == {0, 1}
    failed = [o["op"] for o in tl.ops if "(failed:" in o["op"]]
    assert len(failed) == 2 and all("produces no key" in op for op in failed)
    summary = summarize_run(nrun, [], status="complete", wall={})
    assert summary["transfers_dropped"] == 2 and summary["key_consumed_bits"] == 0


def test_server_schedule_with_a_client_cut_off() -> None:
    # Network half only: a server s and two clients; c2's link is cut for good at t=1.5,
    # while c2 trains in round 1 (a round: ~8 ms of key, 1 s of training, ~8 ms of key).
    env = simpy.Environment()
    links = (
        LinkSpec("s", "c1", 1.0, skr_bps=1e6, latency_s=0.001, bandwidth_bps=1e9),
        LinkSpec("s", "c2", 1.0, skr_bps=1e6, latency_s=0.001, bandwidth_bps=1e9),
    )
    topo = TopologySpec(
        nodes=(NodeSpec("s", role="server"), NodeSpec("c1"), NodeSpec("c2")), links=links
    )
    net = QKDNetwork(env, topo, OneTimePad())
    profile = ComputeProfile(
        clients=("c1", "c2"),
        train_sizes=(10, 10),
        flops_per_s=(1e6, 1e6),
        train_flops_per_sample=(1e5, 1e5),
        fuse_flops_per_sample=(0.0, 0.0),
        upload_bytes=(1000, 1000),
        download_bytes=(1000, 1000),
    )

    def cut() -> Any:
        yield env.timeout(1.5)
        net.cut_link("s", "c2")

    env.process(cut())
    tl = Timeline()
    plan = run_plan(env, net, profile, lambda r: server_round(r, 2), 2, tl, server="s")
    run_schedule(env, plan, None, tl)
    assert tl.rounds_done == 2
    # round 0: both updates arrive; round 1: c2's upload cannot (the server goes on)
    assert tl.participants == [(0, 1), (0,)]
    assert tl.dropped == {(1, "c2", "s", "update")}
    key_bits = 8 * 1000 + 256
    down = key_bits / 1e6 + 8000 / 1e9 + 0.001  # key, transmit, latency
    assert tl.round_end_s[0] == pytest.approx(down + profile.train_s(0) + 8000 / 1e9 + 0.001)


def test_replay_transport_drops_only_the_failed_round() -> None:
    t = ReplayTransport(2, dropped=[(1, 0, 1)])
    t.at(0).send(0, 1, "r0", n_bytes=1, tag="model")
    r1 = t.at(1)
    r1.send(0, 1, "r1", n_bytes=1, tag="model")
    r1.send(1, 0, "back", n_bytes=1, tag="model")
    assert [m.payload for m in r1.receive(1)] == ["r0"]
    assert [m.payload for m in r1.receive(0)] == ["back"]
    assert t.n_dropped == 1


def test_isolated_client_is_a_clear_error(tiny: Tiny) -> None:
    d = tiny()
    d["topology"]["nodes"].append({"name": "island"})
    with pytest.raises(ScenarioError, match=r"topology.links: node 'island' cannot reach"):
        check_network(scenario(d))


def test_build_topology_resolves_nodes_and_links(tiny: Tiny) -> None:
    topo = build_topology(scenario(tiny()))
    assert [lk.name for lk in topo.links] == ["a-r", "b-r", "c-r", "a-b"]
    assert [n.role for n in topo.nodes] == ["client", "client", "client", "relay"]
    assert topo.nodes[3].flops_per_s == 5e11  # compute.default_flops_per_s


@pytest.mark.parametrize("method", ["def-kt", "gossip-avg"])
def test_other_decentralized_methods_run(method: str, tiny: Tiny, fmnist: Path) -> None:
    sc = scenario(tiny({"learning": {"method": method}}))
    result = run_scenario(sc, None, plots=False)
    s = result.summary
    assert s["status"] == "complete" and s["method"] == method and s["rounds_done"] == 1
    assert [r.node for r in result.rows] == ["a", "b", "c", "mean"]
    acc = {r.node: r.global_acc for r in result.rows}
    # each client's accuracy is a share of the 200 test images; the summary is their mean
    assert all(200 * acc[n] == pytest.approx(round(200 * acc[n])) for n in "abc")
    assert s["final_global_acc"] == acc["mean"] == pytest.approx(sum(acc[n] for n in "abc") / 3)
    # The method changes only the model of the client that fused (b sends to a in round 1):
    # the others' models are those of Def-FD with the same seed, bit for bit.
    fused = {o["node"] for o in simulate_network(sc).timeline.ops if o["op"] == "fuse"}
    deffd = {r.node: r.global_acc for r in run_scenario(scenario(tiny()), None, plots=False).rows}
    assert {n for n in "abc" if acc[n] != deffd[n]} == fused == {"a"}
    assert s["transfers_delivered"] >= 1 and s["key_consumed_bits"] > 0


# ------------------------------------------------------------------------------- Ctrl-C


def test_ctrl_c_leaves_a_consistent_run_folder(
    tiny: Tiny, fmnist: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, png_pixels: Any
) -> None:
    # Ctrl-C in the middle of training: right after round 1 was evaluated and written,
    # inside the job's round loop, with round 2 still to train.
    import qfl.cosim.run
    from qfl.cli import main

    real = qfl.cosim.run.execute_learning
    seen: list[int] = []

    def interrupted(nrun: Any, on_eval: Any, **kw: Any) -> None:
        def once(r: int, rows: list[Any]) -> None:
            on_eval(r, rows)
            seen.append(r)
            raise KeyboardInterrupt

        real(nrun, once, **kw)

    monkeypatch.setattr(qfl.cosim.run, "execute_learning", interrupted)
    d = tiny({"learning": {"rounds": 2, "eval_every": 1}, "outputs": {"plots": True}})
    scen = tmp_path / "s.yaml"
    scen.write_text(yaml.safe_dump(d))
    folder = tmp_path / "run"
    assert main(["simulate", str(scen), "--out", str(folder)]) == 130
    assert seen == [1]
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["status"] == "interrupted"
    assert summary["rounds_done"] == 2 and summary["rounds_evaluated"] == 1
    metrics = read_rows(folder / "metrics.csv")
    assert len(metrics) == 4  # three clients and their mean, round 1 only
    assert {m["round"] for m in metrics} == {"1"}
    assert summary["final_global_acc"] == pytest.approx(
        float(next(m["global_acc"] for m in metrics if m["node"] == "mean")), abs=1e-6
    )
    for name in ("transfers.csv", "keypools.csv", "ops.csv", "faults.csv"):
        read_rows(folder / name)  # parseable
    assert json.loads((folder / "topology.json").read_text())["links"]
    # drawn from what was computed: the mean of round 1 (a point and its legend, in colour)
    png_pixels(folder / "accuracy.png", coloured=True)
    assert not list(folder.rglob("*.tmp"))


def test_graphml_node_speed_is_kept_and_the_default_fills_the_rest(
    tiny: Tiny, tmp_path: Path
) -> None:
    import networkx as nx

    g = nx.Graph()
    g.add_node("a", flops_per_s=3.0e9)
    g.add_node("b")
    g.add_edge("a", "b", length_km=10.0)
    nx.write_graphml(g, tmp_path / "net.graphml")
    d = tiny()
    d["topology"] = {"file": str(tmp_path / "net.graphml")}
    d["compute"] = {"default_flops_per_s": 7.0e9}
    topo = build_topology(scenario(d))
    assert {n.name: n.flops_per_s for n in topo.nodes} == {"a": 3.0e9, "b": 7.0e9}


def test_check_network_builds_no_network(tiny: Tiny, monkeypatch: pytest.MonkeyPatch) -> None:
    # A pure check: the network is built once per run, by simulate_network only.
    def fail(*_a: Any, **_k: Any) -> None:
        raise AssertionError("check_network built a QKDNetwork")

    monkeypatch.setattr("network.QKDNetwork.__init__", fail)
    check_network(scenario(tiny()))
    too_small = tiny({"qkd": {"pool_capacity_bits": 100.0}, "cipher": {"policy": "otp"}})
    with pytest.raises(ScenarioError, match=r"^qkd.pool_capacity_bits: link .*capacity_bits"):
        check_network(scenario(too_small))


@pytest.mark.parametrize(
    ("routing", "delivered"), [(None, True), ("key-aware", True), ("latency", False)]
)
def test_routing_around_a_link_without_key(
    tiny: Tiny, fmnist: Path, routing: str | None, delivered: bool
) -> None:
    # a-b directly (1 km, no key) or through the relay r (2 + 2 km, key): latency routing
    # takes the keyless link and the model is lost; key-aware (the default here) goes round.
    d = tiny(
        {
            "topology": {
                "nodes": [{"name": "a"}, {"name": "b"}, {"name": "r", "role": "relay"}],
                "links": [
                    {"a": "a", "b": "b", "length_km": 1.0, "skr_bps": 0.0},
                    {"a": "a", "b": "r", "length_km": 2.0, "skr_bps": 1e6},
                    {"a": "r", "b": "b", "length_km": 2.0, "skr_bps": 1e6},
                ],
            },
            "cipher": {"policy": "otp"},
            "routing": routing,
        }
    )
    nrun = simulate_network(scenario(d))
    assert (not nrun.timeline.dropped) is delivered
    summary = summarize_run(nrun, [], status="complete", wall={})
    assert summary["routing"] == (routing or "key-aware")
    if not delivered:
        (op,) = [o["op"] for o in nrun.timeline.ops if "failed" in o["op"]]
        assert "produces no key" in op and "routing: key-aware routes around it" in op


def test_round_time_splits_into_compute_key_bandwidth_propagation(tiny: Tiny, fmnist: Path) -> None:
    from qfl.cosim.bottlenecks import binding, key_wait_by_link, round_breakdown, time_shares

    sc = two_clients(tiny, {"length_km": 10, "skr_bps": 2e4}, learning={"rounds": 2})
    nrun = simulate_network(sc)
    tl = nrun.timeline
    for r, parts in enumerate(round_breakdown(tl)):
        split = sum(parts[c] for c in ("compute", "key", "bandwidth", "propagation", "blocked"))
        assert split == pytest.approx(parts["duration_s"], rel=1e-12)
        (rec,) = [s.record for s in tl.critical[r] if s.kind == "send"]
        assert parts["key"] == rec.key_wait_s > 0
        assert parts["propagation"] == pytest.approx(10 * 1.468 / C_KM_S)
    shares = time_shares(tl)
    assert shares["key"] > 0.5 and sum(shares.values()) == pytest.approx(1.0)
    waits = key_wait_by_link(nrun.net.records)
    assert list(waits) == ["a-b"]
    assert waits["a-b"] == pytest.approx(sum(r.key_wait_s for r in nrun.net.records))
    assert binding(shares, waits).startswith("key (")
    summary = summarize_run(nrun, [], status="complete", wall={})
    assert summary["time_share"] == shares and "link a-b" in summary["binds"]
    fast = two_clients(tiny, {"length_km": 10, "skr_bps": 1e12}, learning={"rounds": 1})
    assert time_shares(simulate_network(fast).timeline)["compute"] > 0.99


def test_progress_inside_a_round(tiny: Tiny, fmnist: Path) -> None:
    seen: list[tuple[int, str]] = []
    sc = scenario(tiny({"learning": {"rounds": 2}}))
    run_scenario(sc, None, on_progress=lambda r, text: seen.append((r, text)))
    assert [r for r, _ in seen] == sorted(r for r, _ in seen)  # in round order
    texts = [t for _, t in seen]
    assert texts.count("evaluating") == 2
    assert any(t.startswith("training ") for t in texts)
    assert any("clients trained, fusing" in t for t in texts)
