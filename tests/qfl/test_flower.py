"""Flower strategies and clients on the QKD clock (``learning.method: flower``)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import yaml

pytest.importorskip("flwr")

from clihelp import run_bad
from flwr.common import parameters_to_ndarrays
from flwr.server import Server
from flwr.server.client_manager import SimpleClientManager
from flwr.server.strategy import FedAvg

from network.cipher import POLY1305_KEY_BITS
from qfl.cosim import run_scenario
from qfl.cosim.run import simulate_network
from qfl.flower.loading import build_clients
from qfl.flower.messages import proxy_class
from qfl.scenario import ScenarioError, parse_scenario

BASE = {
    "name": "fl-tiny",
    "seed": 3,
    "topology": {
        "nodes": [
            {"name": "srv", "role": "server"},
            {"name": "relay", "role": "relay"},
            {"name": "a", "role": "client", "flops_per_s": 1.0e9},
            {"name": "b", "role": "client", "flops_per_s": 2.0e9},
            {"name": "c", "role": "client", "flops_per_s": 1.0e9},
        ],
        "links": [
            {"a": "srv", "b": "relay", "length_km": 10},
            {"a": "relay", "b": "a", "length_km": 5},
            {"a": "relay", "b": "b", "length_km": 8},
            {"a": "srv", "b": "c", "length_km": 12},
        ],
    },
    "cipher": {"policy": "otp"},
    "learning": {
        "method": "flower",
        "strategy": "flowerkit:fedavg_all",
        "client_fn": "flowerkit:client_fn",
        "rounds": 3,
    },
    "outputs": {"plots": False},
}


def scenario(**learning):
    data = yaml.safe_load(yaml.safe_dump(BASE))
    topo = learning.pop("topology", None)
    if topo is not None:
        data["topology"] = topo
    qkd = learning.pop("qkd", None)
    if qkd is not None:
        data["qkd"] = qkd
    data["learning"].update(learning)
    return parse_scenario(yaml.safe_dump(data))


def unlimited_topology():
    """Every link with a full, huge key store and no latency (the network changes nothing)."""
    topo = yaml.safe_load(yaml.safe_dump(BASE["topology"]))
    for lk in topo["links"]:
        lk.update(latency_s=0.0, pool_capacity_bits=1e12, initial_fill_bits=1e12)
    return topo


def drive(job, nrun):
    """The learning half of a run, returning the driver (its parameters and history)."""
    driver = job.start()
    for r in range(nrun.timeline.rounds_done):
        driver.round(r + 1, job._arrivals(nrun.timeline, r))
    return driver


def arrays(parameters):
    return parameters_to_ndarrays(parameters)


def test_fedavg_matches_flowers_own_server_loop():
    """Unlimited key, no latency: the adapter's FedAvg gives Flower's Server.fit parameters."""
    sc = scenario(topology=unlimited_topology(), strategy="flwr.server.strategy:FedAvg",
                  flower={"fraction_fit": 1.0, "fraction_evaluate": 1.0})  # fmt: skip
    nrun = simulate_network(sc)
    assert nrun.timeline.rounds_done == 3
    assert not nrun.timeline.dropped
    ours = drive(nrun.job, nrun)

    names = ["a", "b", "c"]
    clients = build_clients("flowerkit:client_fn", names, sc.seed)
    proxies = [proxy_class()(str(i), c, i) for i, c in enumerate(clients)]
    cm = SimpleClientManager()
    for p in proxies:
        cm.register(p)
    strategy = FedAvg(fraction_fit=1.0, fraction_evaluate=1.0)  # Flower asks a client
    server = Server(client_manager=cm, strategy=strategy)
    server.fit(num_rounds=3, timeout=None)

    got, want = arrays(ours.parameters), arrays(server.parameters)
    assert [a.shape for a in got] == [w.shape for w in want]
    for a, w in zip(got, want, strict=True):
        np.testing.assert_allclose(a, w, rtol=1e-5, atol=1e-6)
    init = arrays(nrun.job.initial)
    assert max(float(np.abs(a - i).max()) for a, i in zip(got, init, strict=True)) > 1e-3


def test_otp_takes_eight_key_bits_per_serialized_byte_on_every_hop():
    sc = scenario(client_fn="flowerkit:client_fn_plain", rounds=2)
    nrun = simulate_network(sc)
    records = [r for r in nrun.net.records if r.status == "delivered"]
    assert len(records) == 2 * 3 * 4  # rounds x clients x (fit-ins, fit-res, eval-ins, eval-res)
    for rec in records:
        hops = len(rec.path) - 1
        assert hops == (1 if "c" in (rec.src, rec.dst) else 2)
        assert len(rec.key_bits) == hops
        for _link, bits in rec.key_bits:  # the pad, and the per-message authenticator key
            assert bits == 8 * rec.n_bytes + POLY1305_KEY_BITS
    # ... and those are the sizes of the messages Flower serializes when the clients run
    driver = drive(nrun.job, nrun)
    sent = {}
    for rr in driver.history:
        for i, kind, n in rr.wire_bytes:
            sent[(rr.round - 1, "abc"[i], kind.replace("_", "-"))] = n
    for rec in records:
        r, tag = rec.tag.split("/")
        who = rec.dst if rec.src == "srv" else rec.src
        assert sent[(int(r[1:]), who, tag)] == rec.n_bytes, rec.tag
    total = sum((8 * r.n_bytes + POLY1305_KEY_BITS) * (len(r.path) - 1) for r in records)
    assert nrun.net.summary().key_consumed_bits == pytest.approx(total)


def starved(accept: bool):
    """Client b's link makes 2 kbit/s of key and starts empty (the others start full); a
    round's phases allow 2 s each."""
    topo = unlimited_topology()
    topo["links"][2].update(skr_bps=2000.0, initial_fill_bits=0.0)
    return scenario(
        topology=topo,
        round_timeout_s=2.0,
        strategy="flwr.server.strategy:FedAvg",
        flower={"fraction_fit": 1.0, "fraction_evaluate": 1.0, "accept_failures": accept},
    )


def test_key_starvation_makes_failures_that_fedavg_accepts():
    nrun = simulate_network(starved(True))
    tl = nrun.timeline
    assert tl.rounds_done == 3
    assert all(p == (0, 2) for p in tl.participants)  # b (client 1) misses every round
    driver = drive(nrun.job, nrun)
    for rec in driver.history:
        assert set(rec.fit_failures) == {1}
        assert "did not reach" in rec.fit_failures[1]
        assert rec.aggregated
    for r, end in enumerate(tl.round_end_s):
        assert end - tl.round_start_s[r] == pytest.approx(4.0)  # two phases, each cut at 2 s


def test_key_starvation_without_accept_failures_aggregates_nothing():
    nrun = simulate_network(starved(False))
    driver = drive(nrun.job, nrun)
    assert all(not rec.aggregated and rec.fit_failures for rec in driver.history)
    for got, init in zip(arrays(driver.parameters), arrays(nrun.job.initial), strict=True):
        np.testing.assert_array_equal(got, init)


def test_min_fit_clients_above_the_client_count_trains_nothing():
    sc = scenario(strategy="flwr.server.strategy:FedAvg", flower={"min_fit_clients": 4})
    nrun = simulate_network(sc)
    assert nrun.timeline.participants == [(), (), ()]
    driver = drive(nrun.job, nrun)
    assert all(rec.fit_clients == [] and not rec.aggregated for rec in driver.history)


def test_a_client_that_raises_is_a_failure_not_a_crash():
    res = run_scenario(scenario(client_fn="flowerkit:client_fn_flaky"), None)
    assert res.summary["status"] == "complete"
    assert res.summary["rounds_done"] == 3
    nrun = simulate_network(scenario(client_fn="flowerkit:client_fn_flaky"))
    driver = drive(nrun.job, nrun)
    assert all("GPU fell off the bus" in rec.fit_failures[1] for rec in driver.history)
    assert all(rec.aggregated for rec in driver.history)


@pytest.mark.parametrize(
    ("strategy", "flower"),
    [
        ("flwr.server.strategy:FedProx", {"proximal_mu": 0.5, "fraction_evaluate": 1.0}),
        ("flwr.server.strategy:FedAdam", {"eta": 0.05, "fraction_evaluate": 1.0}),
        ("flwr.server.strategy:FedYogi", {"eta": 0.05, "fraction_evaluate": 1.0}),
    ],
)
def test_fedprox_fedadam_fedyogi_run(strategy, flower):
    res = run_scenario(scenario(strategy=strategy, flower=flower, rounds=4), None)
    s = res.summary
    assert s["status"] == "complete" and s["rounds_done"] == 4
    means = [r.local_acc for r in res.rows if r.node == "mean"]
    assert len(means) == 4 and all(0.0 <= m <= 1.0 for m in means)
    assert means[-1] > 0.5  # three separable classes: it learns


def test_fedprox_sends_its_proximal_term_to_the_clients():
    nrun = simulate_network(
        scenario(strategy="flwr.server.strategy:FedProx", flower={"proximal_mu": 0.5}, rounds=1)
    )
    plain = simulate_network(scenario(rounds=1))
    # the FitIns carries the config {"proximal_mu": 0.5}: a few bytes more
    assert nrun.job.phase(0, "fit").down_bytes[0] > plain.job.phase(0, "fit").down_bytes[0]


def test_sampling_is_seeded_and_shared_by_both_halves():
    sc = scenario(strategy="flwr.server.strategy:FedAvg", flower={"fraction_fit": 0.5,
                  "min_fit_clients": 1, "fraction_evaluate": 0.0}, rounds=4)  # fmt: skip
    nrun = simulate_network(sc)
    picks = [nrun.job.phase(r, "fit").clients for r in range(4)]
    assert all(len(p) == 1 for p in picks)
    driver = drive(nrun.job, nrun)
    assert [tuple(rec.fit_clients) for rec in driver.history] == picks
    again = simulate_network(sc)
    assert [again.job.phase(r, "fit").clients for r in range(4)] == picks


def test_compute_time_is_counted_from_the_torch_model():
    nrun = simulate_network(scenario(rounds=1))
    job = nrun.job
    w = job.work[0]
    assert w.source == "flops" and w.train_samples == 64 and w.eval_samples == 32
    fwd = 2 * (8 * 16 + 16 * 3)  # two linear layers, a multiply-add is two FLOPs
    assert w.train_s_per_sample == pytest.approx(3 * fwd / 1e9)
    stated = simulate_network(scenario(rounds=1, seconds_per_sample=0.01)).job
    assert stated.work[1].train_s_per_sample == 0.01
    ops = [o for o in simulate_network(scenario(rounds=1, seconds_per_sample=0.01)).timeline.ops
           if o["op"] == "local-update"]  # fmt: skip
    assert all(o["end_s"] - o["start_s"] == pytest.approx(0.64) for o in ops)


@pytest.mark.parametrize(
    ("field", "value", "path", "match"),
    [
        ("strategy", "no_such_module_xyz:Strategy", "learning.strategy", "cannot import"),
        ("strategy", "flowerkit:NOT_A_STRATEGY", "learning.strategy", "must be a Flower"),
        ("strategy", "collections:OrderedDict", "learning.strategy", "Strategy"),
        ("strategy", "flowerkit", "learning.strategy", "package.module:attr"),
        ("client_fn", "flowerkit:nope", "learning.client_fn", "no attribute"),
        ("flower", {"no_such_argument": 1}, "learning.flower", "rejects these arguments"),
        ("dataset", "fashion-mnist", "learning.dataset", "leave dataset out"),
    ],
)
def test_validation_errors_name_the_field(field, value, path, match):
    with pytest.raises(ScenarioError, match=match) as info:
        scenario(**{field: value, **({"strategy": "flwr.server.strategy:FedAvg"}
                                     if field == "flower" else {})})  # fmt: skip
    assert info.value.path == path


@pytest.mark.parametrize(
    ("client_fn", "match"),
    [
        ("flowerkit:client_fn_raises", "raised FileNotFoundError building client 0"),
        ("flowerkit:not_a_client", "must return a flwr NumPyClient or Client, got int"),
    ],
)
def test_client_fn_errors_when_the_job_is_built(client_fn, match):
    sc = scenario(client_fn=client_fn)
    with pytest.raises(ScenarioError, match=match) as info:
        simulate_network(sc)
    assert info.value.path == "learning.client_fn"


def test_wrong_shapes_is_an_error_of_the_client_fn():
    sc = scenario(client_fn="flowerkit:client_fn_wrong_shapes")
    with pytest.raises(ScenarioError, match=r"returned parameters of shapes \[\(3,\)\]"):
        run_scenario(sc, None)


def write(tmp_path: Path, **learning) -> Path:
    data = yaml.safe_load(yaml.safe_dump(BASE))
    data["learning"].update(learning)
    data["outputs"]["dir"] = str(tmp_path / "runs")
    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump(data))
    return f


@pytest.mark.parametrize(
    ("learning", "cmd", "expect"),
    [
        ({"strategy": "no_such_module_xyz:S"}, "validate", "learning.strategy: cannot import"),
        ({"strategy": "flowerkit:NOT_A_STRATEGY"}, "validate", "learning.strategy: "),
        ({"client_fn": "flowerkit:client_fn_raises"}, "simulate", "learning.client_fn: "),
        ({"client_fn": "flowerkit:client_fn_wrong_shapes"}, "simulate", "learning.client_fn: "),
    ],
)
def test_cli_bad_input_is_exit_2_and_one_line(tmp_path, capsys, learning, cmd, expect):
    f = write(tmp_path, **learning)
    msg = run_bad(capsys, [cmd, str(f)])
    assert expect in msg


def test_cli_simulate_and_validate(tmp_path, capsys):
    from qfl.cli import main

    f = write(tmp_path, rounds=2)
    assert main(["validate", str(f)]) == 0
    assert "flower on flowerkit:fedavg_all" in capsys.readouterr().out
    assert main(["simulate", str(f), "--no-plots"]) == 0
    import json

    summary = json.loads((tmp_path / "runs" / "fl-tiny" / "summary.json").read_text())
    assert summary["status"] == "complete" and summary["method"] == "flower"
    assert not math.isnan(summary["final_local_acc"])
    assert summary["round_breakdown"][0]["duration_s"] > 0


def key_bound(**learning):
    """Every link makes 20 kbit/s of key (fluid), starting empty: OTP binds each round."""
    topo = yaml.safe_load(yaml.safe_dump(BASE["topology"]))
    for lk in topo["links"]:
        lk.update(skr_bps=20000.0, initial_fill_bits=0.0)
    return scenario(topology=topo, qkd={"key_model": "asymptotic-fluid"}, **learning)


@pytest.mark.slow  # about a minute: the study, then a grid of full runs
def test_plan_threshold_on_a_flower_scenario_agrees_with_a_fine_grid(tmp_path):
    from qfl.cosim.studies import threshold
    from qfl.scenario import apply_overrides

    sc = key_bound(rounds=6)
    target, within = 0.73, 20.0
    res = threshold(sc, tmp_path / "t", vary="qkd.rate_scale", target=target, within_s=within)
    br = res.meta["bracket"]
    assert br["fails_at"] < br["holds_at"] <= 1.0
    assert res.meta["learning_executions"] == 1  # the points' rounds are prefixes of one run

    def holds(scale):
        point = apply_overrides(sc, {"qkd.rate_scale": scale, "horizon_s": within,
                                     "learning.target_accuracy": target})  # fmt: skip
        t = run_scenario(point, None).summary["time_to_target_s"]
        return t is not None and t <= within

    grid = [round(0.4 + 0.02 * k, 2) for k in range(31)]  # 0.40 .. 1.00
    first = next(v for v in grid if holds(v))
    assert br["fails_at"] < first <= br["holds_at"] * 1.02 + 1e-9
    assert not holds(br["fails_at"]) and holds(br["holds_at"])


EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "flower_fedprox"


def test_the_fedprox_example_validates(monkeypatch, capsys):
    from qfl.cli import main

    monkeypatch.chdir(EXAMPLE)
    assert main(["validate", "metro.yaml"]) == 0
    assert "flower on flower_fedprox.server_app:strategy" in capsys.readouterr().out


@pytest.mark.slow  # trains a CNN on six Fashion-MNIST shards
def test_the_fedprox_example_runs_on_the_metro_network(monkeypatch, fmnist):
    from qfl.scenario import apply_overrides, load_scenario

    monkeypatch.chdir(EXAMPLE)
    monkeypatch.setenv("FMNIST_DIR", str(fmnist / "fashion-mnist"))
    sc = apply_overrides(load_scenario("metro.yaml"), {"learning.rounds": 2})
    res = run_scenario(sc, None)
    s = res.summary
    assert s["status"] == "complete" and s["rounds_done"] == 2 and s["cipher"] == "otp"
    assert s["transfers_delivered"] == 2 * 6 * 4
    assert s["final_local_acc"] > 0.5


def test_a_sweep_of_a_flower_scenario_shares_one_learning_execution(tmp_path, monkeypatch):
    """Key rate varies; the learning inputs do not: the points' rounds are prefixes of one
    learning execution, run in a worker process that imports the user's modules itself."""
    import json

    from qfl.cli import main

    topo = yaml.safe_load(yaml.safe_dump(BASE["topology"]))
    for lk in topo["links"]:
        lk.update(skr_bps=20000.0, initial_fill_bits=0.0)
    data = yaml.safe_load(yaml.safe_dump(BASE))
    data.update(topology=topo, qkd={"key_model": "asymptotic-fluid"}, horizon_s=10.0)
    data["learning"]["rounds"] = 6
    data["outputs"]["dir"] = str(tmp_path / "runs")
    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump(data))
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1]))  # flowerkit
    out = tmp_path / "sweep"
    args = ["sweep", str(f), "--set", "qkd.rate_scale=0.5,1,2", "--out", str(out), "--no-plots"]
    assert main([*args, "--executor", "local", "--jobs", "1"]) == 0
    points = [json.loads(p.read_text()) for p in sorted(out.glob("points/*/summary.json"))]
    assert sorted(p["rounds_done"] for p in points) == [1, 3, 6]
    assert all(p["status"] == "complete" and p["method"] == "flower" for p in points)
    assert json.loads((out / "sweep.json").read_text())["learning_jobs"] == 1
