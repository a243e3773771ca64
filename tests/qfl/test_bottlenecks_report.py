"""Bottlenecks of a run: each round's critical path split by cause, each link's key and load.

The property test runs the network half alone (no learning job: a compute profile and a
round plan on a small QKD network with random key rates, bandwidths, latencies and a cut),
and checks the accounting: a round's parts add up to its duration, its critical step is a
real step of the run, a link's figures agree with the transfers that crossed it.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import simpy
from hypothesis import given, settings
from hypothesis import strategies as st
from matplotlib.figure import Figure
from rich.console import Console

from network import LinkSpec, NoCipher, NodeSpec, OneTimePad, QKDNetwork, TopologySpec
from qfl.commands.simulate import summary_table
from qfl.cosim import run_scenario, simulate_network
from qfl.cosim.bottlenecks import (
    COMPONENTS,
    describe_step,
    key_wait_by_link,
    link_report,
    round_report,
)
from qfl.cosim.plan import decentralized_round, server_round
from qfl.cosim.plots import BOTTLENECK_COLOURS, plot_bottlenecks, redraw
from qfl.cosim.run import summarize_run
from qfl.cosim.schedule import ComputeProfile, Segment, Timeline, run_plan, run_schedule
from qfl.scenario import Scenario

Tiny = Callable[..., dict[str, Any]]

ROUND_KEYS = ["round", "start_s", "end_s", "duration_s", *COMPONENTS, "critical"]
LINK_KEYS = ["link", "skr_bps", "key_generated_bits", "key_consumed_bits", "key_wasted_bits",
             "key_wait_s", "utilisation", "bytes_sent"]  # fmt: skip


def _names(net: QKDNetwork) -> dict[frozenset[str], str]:
    return {pair: lk.name for pair, lk in net.links.items()}


def _network_run(
    n_clients: int,
    rates: list[float],
    bandwidth: float,
    latency: float,
    server: bool,
    otp: bool,
    rounds: int,
    cut: tuple[float, float] | None,
) -> tuple[QKDNetwork, Timeline]:
    """Clients around a relay ``r`` joined to a server ``s``; ``rates[i]`` is the key rate of
    client ``i``'s link, ``rates[-1]`` that of ``r-s``; ``cut`` cuts ``c0-r`` for a while."""
    env = simpy.Environment()
    clients = tuple(f"c{i}" for i in range(n_clients))
    nodes = (NodeSpec("s", role="server"), NodeSpec("r", role="relay"), *map(NodeSpec, clients))
    pairs = [(c, "r") for c in clients] + [("r", "s")]
    links = tuple(
        LinkSpec(a, b, 5.0, skr_bps=rate, bandwidth_bps=bandwidth, latency_s=latency)
        for (a, b), rate in zip(pairs, rates, strict=True)
    )
    net = QKDNetwork(
        env, TopologySpec(nodes=nodes, links=links), OneTimePad() if otp else NoCipher()
    )
    if cut is not None:
        at, length = cut

        def fault() -> Any:
            yield env.timeout(at)
            net.cut_link("c0", "r")
            yield env.timeout(length)
            net.repair_link("c0", "r")

        env.process(fault())
    profile = ComputeProfile(
        clients=clients,
        train_sizes=(100,) * n_clients,
        flops_per_s=tuple(1e6 * (i + 1) for i in range(n_clients)),
        train_flops_per_sample=(1e3,) * n_clients,
        fuse_flops_per_sample=(5e2,) * n_clients,
        upload_bytes=(2000,) * n_clients,
        download_bytes=(3000,) * n_clients,
    )
    tl = Timeline()
    if server:
        plan = run_plan(
            env, net, profile, lambda r: server_round(r, n_clients), rounds, tl, server="s"
        )
    else:
        ring = tuple((i, (i + 1) % n_clients) for i in range(n_clients))

        def plan_of(r: int) -> Any:
            return decentralized_round(r, range(n_clients), ring)

        plan = run_plan(env, net, profile, plan_of, rounds, tl)
    run_schedule(env, plan, None, tl)
    return net, tl


@settings(max_examples=40, deadline=None)
@given(
    n_clients=st.integers(2, 3),
    rates=st.lists(st.floats(1e3, 1e7), min_size=4, max_size=4),
    bandwidth=st.floats(1e5, 1e9),
    latency=st.floats(0.0, 0.01),
    server=st.booleans(),
    otp=st.booleans(),
    rounds=st.integers(1, 3),
    cut=st.none() | st.tuples(st.floats(0.0, 0.3), st.floats(0.01, 0.5)),
)
def test_round_and_link_figures_add_up(
    n_clients: int,
    rates: list[float],
    bandwidth: float,
    latency: float,
    server: bool,
    otp: bool,
    rounds: int,
    cut: tuple[float, float] | None,
) -> None:
    rates = [*rates[:n_clients], rates[-1]]
    net, tl = _network_run(n_clients, rates, bandwidth, latency, server, otp, rounds, cut)
    names = _names(net)
    report = round_report(tl, names)
    assert len(report) == tl.rounds_done == rounds
    for r, row in enumerate(report):
        assert list(row) == ROUND_KEYS and row["round"] == r + 1
        assert row["end_s"] - row["start_s"] == pytest.approx(row["duration_s"], abs=1e-12)
        assert all(row[c] >= 0 for c in COMPONENTS)
        split = sum(row[c] for c in COMPONENTS)
        assert split == pytest.approx(row["duration_s"], rel=1e-9, abs=1e-12)
        _check_names_a_real_step(net, tl, r, row["critical"])
    records = [*net.records, *net.in_progress()]
    waits = key_wait_by_link(records)
    summary = net.summary()
    links = link_report(net.links.values(), summary.links, waits, summary.time)
    assert [lk["link"] for lk in links] == [s.name for s in net.topology.links]
    for lk in links:
        assert list(lk) == LINK_KEYS
        assert 0.0 <= lk["utilisation"] <= 1.0
        assert lk["key_generated_bits"] >= lk["key_consumed_bits"] - 1e-6  # pools start empty
        assert lk["key_wait_s"] >= 0 and lk["bytes_sent"] >= 0
    total_wait = sum(s for rec in records for _, s in rec.key_wait_by_link)
    assert sum(lk["key_wait_s"] for lk in links) == pytest.approx(total_wait)
    if cut is None:  # every frame crossed once: a link carried each transfer through it
        sent = dict.fromkeys(names.values(), 0)
        for rec in net.records:
            for u, v in itertools.pairwise(rec.path):
                sent[names[frozenset((u, v))]] += rec.n_bytes
        assert {lk["link"]: lk["bytes_sent"] for lk in links} == sent


def _check_names_a_real_step(net: QKDNetwork, tl: Timeline, r: int, text: str) -> None:
    """``text`` describes the step that ended round ``r``: a transfer of the run that ended
    then, along the links it names, or an operation of the run that ended then."""
    end = tl.round_end_s[r]
    send = re.fullmatch(r"send (\S+)->(\S+)(?: \(links? ([^)]*)\))?(?: .*)?", text)
    if send is not None:
        src, dst, hops = send.groups()
        recs = [x for x in net.records if (x.src, x.dst, x.t_end) == (src, dst, end)]
        assert recs, text
        path_links = [_names(net)[frozenset(p)] for p in itertools.pairwise(recs[0].path)]
        assert hops is not None and hops.split(", ") == path_links
        return
    compute = re.fullmatch(
        r"compute (local update|fuse) at (\S+)(?:, after send (\S+)->(\S+))?", text
    )
    assert compute is not None, text
    op, node, src, dst = compute.groups()
    ops = [o for o in tl.ops if o["round"] == r and o["node"] == node and o["end_s"] == end]
    assert [o["op"] for o in ops] == [op.replace(" ", "-")]
    if src is not None:
        assert node == dst and any((x.src, x.dst) == (src, dst) for x in net.records)


# ------------------------------------------------------------------------------ units


def test_critical_step_of_each_kind() -> None:
    net, tl = _network_run(2, [1e6] * 3, 1e8, 0.001, True, True, 1, None)
    (row,) = round_report(tl, _names(net))
    # a server round ends with the last upload; the relay hop is named as the topology does
    assert re.fullmatch(r"send c[01]->s \(links c[01]-r, r-s\)", row["critical"])
    net, tl = _network_run(2, [1e6] * 3, 1e8, 0.001, False, True, 1, None)
    (row,) = round_report(tl, _names(net))
    assert re.fullmatch(r"compute fuse at c([01]), after send c[01]->c\1", row["critical"])
    # a send the network refused at once has no record: the operation says where and why
    ops = [{"round": 0, "node": "a", "op": "send:model->b (failed: link a-b produces no key)",
            "start_s": 1.0, "end_s": 1.0}]  # fmt: skip
    refused = Segment("send", "a", 1.0, 1.0)
    text = describe_step(Timeline(ops=ops), 0, refused)
    assert text == "send a->b refused (link a-b produces no key)"
    tl = Timeline(rounds_done=1, round_end_s=[1.0], round_start_s=[0.0], critical=[()])
    assert round_report(tl)[0]["critical"] == "no step"


def test_a_cut_shows_as_blocked_time() -> None:
    net, tl = _network_run(2, [1e7] * 3, 1e8, 0.001, True, False, 1, (0.05, 2.0))
    (row,) = round_report(tl, _names(net))
    assert row["blocked"] > 1.0  # the upload from c0 waited for the repair
    assert "c0->s" in row["critical"]


def test_utilisation_is_the_busier_direction() -> None:
    env = simpy.Environment()
    topo = TopologySpec(
        nodes=(NodeSpec("A"), NodeSpec("B", role="server")),
        links=(LinkSpec("A", "B", 10.0, skr_bps=1e9, latency_s=0.0, bandwidth_bps=8e3),),
    )
    net = QKDNetwork(env, topo, NoCipher())
    env.run(net.transfer("A", "B", 1000))  # 1 s on the channel A -> B
    env.run(net.transfer("B", "A", 500))  # 0.5 s back
    env.run(env.timeout(2.5))
    s = net.summary()
    (lk,) = link_report(net.links.values(), s.links, {}, s.time)
    assert s.time == pytest.approx(4.0)
    assert lk["utilisation"] == pytest.approx(1.0 / 4.0)
    assert lk["bytes_sent"] == 1500 and lk["key_wait_s"] == 0.0 and lk["skr_bps"] == 1e9


# ------------------------------------------------------------------------------ a run


def test_summary_report_and_plot_of_a_run(
    tiny: Tiny, fmnist: Path, tmp_path: Path, png_pixels: Any
) -> None:
    sc = Scenario.model_validate(tiny({"cipher": {"policy": "otp"}, "qkd": {"rate_scale": 0.01}}))
    res = run_scenario(sc, tmp_path / "run", plots=True)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["round_breakdown"] == res.summary["round_breakdown"]
    (row,) = summary["round_breakdown"]
    assert list(row) == ROUND_KEYS
    assert row["end_s"] == summary["sim_time_end_s"]
    assert row["key"] > 0  # the one-time pad at 1 % of the key rate waits for key
    links = summary["links"]
    assert [lk["link"] for lk in links] == ["a-r", "b-r", "c-r", "a-b"]
    waits = {lk["link"]: lk["key_wait_s"] for lk in links if lk["key_wait_s"] > 0}
    assert waits == pytest.approx(summary["key_wait_by_link_s"])
    for k in ("key_generated_bits", "key_consumed_bits", "key_wasted_bits"):
        assert sum(lk[k] for lk in links) == pytest.approx(summary[k])
    png_pixels(tmp_path / "run" / "bottlenecks.png", coloured=True)
    (tmp_path / "run" / "bottlenecks.png").unlink()
    assert tmp_path / "run" / "bottlenecks.png" in redraw(tmp_path / "run")  # qfl plot
    text = _table_text(sc, summary)
    assert "slowest round" in text and "links waited on most for key" in text


def _table_text(sc: Scenario, summary: dict[str, Any]) -> str:
    console = Console(width=200, record=True)
    console.print(summary_table(sc, summary))
    return console.export_text()


def test_summarize_run_keeps_round_count(tiny: Tiny, fmnist: Path) -> None:
    sc = Scenario.model_validate(tiny({"learning": {"rounds": 3}}))
    nrun = simulate_network(sc)
    s = summarize_run(nrun, [], status="complete", wall={})
    assert [r["round"] for r in s["round_breakdown"]] == [1, 2, 3]
    starts = [r["start_s"] for r in s["round_breakdown"]]
    assert starts[1:] == [r["end_s"] for r in s["round_breakdown"]][:-1]


# ------------------------------------------------------------------------------ the plot


@pytest.fixture
def drawn(monkeypatch: pytest.MonkeyPatch) -> list[Figure]:
    figures: list[Figure] = []
    real = Figure.savefig

    def savefig(self: Figure, *args: Any, **kwargs: Any) -> None:
        figures.append(self)
        real(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", savefig)
    return figures


def _summary(n_rounds: int, n_links: int) -> dict[str, Any]:
    rounds = [
        {"round": r, "start_s": 10.0 * (r - 1), "end_s": 10.0 * r, "duration_s": 10.0,
         "compute": 4.0, "key": 5.0 - r / 10, "bandwidth": 0.5, "propagation": 0.5 + r / 10,
         "blocked": 0.0, "critical": f"send c{r}->s (links c{r}-r, r-s)"}
        for r in range(1, n_rounds + 1)
    ]  # fmt: skip
    links = [
        {"link": f"l{i:02d}", "skr_bps": 1e4, "key_generated_bits": 1e5,
         "key_consumed_bits": 5e4, "key_wasted_bits": 0.0, "key_wait_s": float(i),
         "utilisation": 0.01 * i, "bytes_sent": 1000 * i}
        for i in range(n_links)
    ]  # fmt: skip
    return {"scenario": "toy", "round_breakdown": rounds, "links": links,
            "time_share": {"compute": 0.4, "key": 0.5, "bandwidth": 0.05,
                           "propagation": 0.05, "blocked": 0.0}}  # fmt: skip


def test_plot_bottlenecks_draws_the_summary(
    tmp_path: Path, drawn: list[Figure], png_pixels: Any
) -> None:
    out = plot_bottlenecks(_summary(4, 20), tmp_path / "b.png", max_links=6)
    png_pixels(out, coloured=True)
    ax, ax_w, ax_u = drawn[0].axes
    bars = [p for p in ax.patches if p.get_height() > 0]
    keyed = [p for p in bars if p.get_facecolor()[:3] == _rgb(BOTTLENECK_COLOURS["key"])]
    assert [round(p.get_height(), 9) for p in keyed] == [4.9, 4.8, 4.7, 4.6]
    for x in range(1, 5):  # a round's stacked parts reach its duration
        top = max(p.get_y() + p.get_height() for p in bars if abs(p.get_x() + 0.4 - x) < 1e-9)
        assert top == pytest.approx(10.0)
    # the six links waited on most, most at the top
    assert [t.get_text() for t in ax_w.get_yticklabels()] == [f"l{i}" for i in range(19, 13, -1)]
    assert [p.get_width() for p in ax_w.patches] == [19.0, 18.0, 17.0, 16.0, 15.0, 14.0]
    assert [p.get_width() for p in ax_u.patches] == pytest.approx([19, 18, 17, 16, 15, 14])
    assert "top 6 of 20 links" in ax_w.get_title()
    assert "ended by send c1->s" in ax.get_title()  # the longest (first) round's last step
    assert ax.get_ylabel() == "round time on its critical path (s)"


def test_plot_bottlenecks_without_rounds_or_traffic(tmp_path: Path, png_pixels: Any) -> None:
    summary = _summary(0, 2)
    for lk in summary["links"]:
        lk["key_wait_s"] = lk["utilisation"] = 0.0
    png_pixels(plot_bottlenecks(summary, tmp_path / "b.png"))
    png_pixels(plot_bottlenecks({"round_breakdown": [], "links": []}, tmp_path / "c.png"))


def _rgb(colour: str) -> tuple[float, ...]:
    from matplotlib.colors import to_rgb

    return to_rgb(colour)
