"""Co-simulation of the server-based methods: multi-exit FedAvg and SSL-backbone FL."""

from __future__ import annotations

import math

import pytest

from qfl.cosim import run_scenario
from qfl.scenario import parse_scenario

FEDAVG = """
name: me-tiny
seed: 5
topology:
  nodes:
    - {name: srv, role: server, flops_per_s: 1.0e+11}
    - {name: a, role: client, flops_per_s: 1.0e+9}
    - {name: b, role: client, flops_per_s: 1.0e+10}
    - {name: c, role: client, flops_per_s: 1.0e+10}
  links:
    - {a: srv, b: a, length_km: 5}
    - {a: srv, b: b, length_km: 8}
    - {a: srv, b: c, length_km: 12}
cipher: {policy: otp}
learning:
  method: fedavg-multiexit
  dataset: synthetic-har
  partition: dirichlet
  alpha: 1.0
  samples_per_client: 40
  rounds: 2
  width: 8
  batch_size: 16
  engine: sequential
outputs: {plots: false}
"""


@pytest.fixture
def me_scenario():
    return parse_scenario(FEDAVG)


def test_multiexit_fedavg_runs_with_per_exit_metrics(me_scenario) -> None:
    res = run_scenario(me_scenario, None, plots=False)
    s = res.summary
    assert s["rounds_done"] == 2 and s["transfers_failed"] == 0
    assert len(s["final_exit_acc"]) == 3
    mean = [r for r in res.rows if r.node == "mean"]
    assert [r.round for r in mean] == [1, 2]
    # 3 downloads + 3 uploads per round, each through the key-gated network
    assert s["transfers_delivered"] == 12
    assert s["key_consumed_bits"] > 0


def test_round_budget_gives_slow_clients_shallow_exits_and_smaller_uploads(me_scenario) -> None:
    from qfl.cosim import simulate_network

    sc = me_scenario.model_copy(
        update={"learning": me_scenario.learning.model_copy(update={"round_budget_s": 0.015})}
    )
    nrun = simulate_network(sc)
    exits = nrun.job.exits  # type: ignore[attr-defined]
    assert exits == [1, 3, 3]  # client a computes 10x slower: only exit 1 fits 15 ms
    up = nrun.job.profile.upload_bytes
    assert up[0] < up[2]


def test_a_client_cut_off_sits_out_and_the_rest_learn(me_scenario) -> None:
    sc = parse_scenario(FEDAVG + "faults: [{kind: link-cut, link: [srv, a], at_s: 0}]\n")
    res = run_scenario(sc, None, plots=False)
    s = res.summary
    assert s["rounds_done"] == 2
    assert s["transfers_dropped"] >= 2  # a's download in each round
    assert not math.isnan(res.rows[-1].local_acc)


@pytest.mark.slow
def test_ssl_backbone_through_the_network() -> None:
    sc = parse_scenario(
        """
name: ssl-tiny
seed: 1
topology:
  nodes: [{name: f, role: client}, {name: i, role: client}, {name: h, role: server}]
  links: [{a: f, b: h, length_km: 3}, {a: i, b: h, length_km: 4}]
cipher: {policy: otp}
learning: {method: ssl-backbone, dataset: flowers102+intel, image_size: 16, width: 4,
           rounds: 1, batch_size: 32, engine: sequential}
outputs: {plots: false}
"""
    )
    res = run_scenario(sc, None, plots=False)
    assert res.summary["rounds_done"] == 1
    accs = [r.local_acc for r in res.rows if r.node in ("f", "i")]
    assert len(accs) == 2 and all(0 <= a <= 1 for a in accs)
