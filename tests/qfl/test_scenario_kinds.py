"""Link kinds, schedules and satellites in scenarios: parsing, the network builder's rates,
bad input (exit 2, one line), and key over a schedule equal to the rate's integral."""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import pytest
import simpy
import yaml
from clihelp import run_bad
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from network import NoCipher, QKDNetwork
from qfl.cosim.netbuild import build_topology, link_kinds
from qfl.scenario import parse_scenario
from qfl.scenario.base import ScenarioError
from qfl.scenario.linkkinds import SATELLITE_KIND
from qkd.kinds import get_kind, kind_names

REPO = Path(__file__).resolve().parents[2]

BASE: dict[str, Any] = {
    "name": "kinds",
    "topology": {
        "nodes": [
            {"name": "a", "latitude": 40.3958, "longitude": 117.5775},
            {"name": "b"},
            {"name": "c"},
        ],
        "links": [
            {"a": "a", "b": "b", "length_km": 20.0, "protocol": "cv-gg02"},
            {"a": "b", "b": "c", "length_km": 250.0, "system": "long"},
            {"a": "a", "b": "c", "length_km": 30.0},
        ],
    },
    "qkd": {
        "key_model": "asymptotic-fluid",
        "pool_capacity_bits": 1e12,
        "systems": {"long": {"kind": "tf-sns", "params": {"detector.efficiency": 0.3}}},
    },
    "learning": {"method": "def-fd", "dataset": "fashion-mnist"},
}


def scenario(edit: Any = None) -> dict[str, Any]:
    d = copy.deepcopy(BASE)
    if edit is not None:
        edit(d)
    return d


def parse(d: dict[str, Any]) -> Any:
    return parse_scenario(yaml.safe_dump(d))


def test_each_link_runs_its_kind_with_the_registry_model() -> None:
    sc = parse(scenario())
    kinds = link_kinds(sc)
    assert [k.kind for k in kinds] == ["cv-gg02", "tf-sns", "decoy-bb84"]
    assert [k.path for k in kinds] == [
        "topology.links[0].protocol",
        "qkd.systems.long.kind",
        "qkd.protocol",
    ]
    assert kinds[1].untrusted_middle and not kinds[0].untrusted_middle
    assert kinds[0].rate_unit == get_kind("cv-gg02").rate_unit
    topo = build_topology(sc)
    cv = get_kind("cv-gg02")
    assert topo.links[0].skr_bps == pytest.approx(float(cv.rate_bps(cv.preset(), [20.0])[0]))
    tf = get_kind("tf-sns")
    params = tf.from_mapping({"detector.efficiency": 0.3})
    assert topo.links[1].skr_bps == pytest.approx(float(tf.rate_bps(params, [250.0])[0]))
    assert topo.links[1].skr_bps > tf.rate_bps(tf.preset(), [250.0])[0]  # 0.3 > 0.145


def test_qkd_protocol_sets_the_default_kind_and_a_link_its_preset() -> None:
    def edit(d: dict[str, Any]) -> None:
        d["qkd"]["protocol"] = "mdi"
        d["qkd"]["attenuation_db_per_km"] = 0.16
        d["topology"]["links"] = [
            {"a": "a", "b": "b", "length_km": 50.0},
            {"a": "b", "b": "c", "length_km": 50.0, "system": "lcq-2012"},
        ]

    sc = parse(scenario(edit))
    kinds = link_kinds(sc)
    assert {k.kind for k in kinds} == {"mdi"}
    assert kinds[1].params.fibre.attenuation_db_per_km == 0.16
    mdi = get_kind("mdi")
    topo = build_topology(sc)
    assert topo.links[0].skr_bps == pytest.approx(topo.links[1].skr_bps)
    assert topo.links[0].skr_bps > float(mdi.rate_bps(mdi.preset(), [50.0])[0])  # 0.16 < 0.2


def test_finite_blocks_deliver_another_kinds_asymptotic_rate_in_blocks() -> None:
    def edit(d: dict[str, Any]) -> None:
        d["qkd"]["key_model"] = "finite-blocks"
        d["qkd"]["block_size"] = 1e9

    sc = parse(scenario(edit))
    topo = build_topology(sc)
    fluid = build_topology(parse(scenario()))
    cv = get_kind("cv-gg02")
    block_s = 1e9 / cv.uses_per_second(cv.preset())
    assert topo.links[0].skr_bps == pytest.approx(fluid.links[0].skr_bps)
    assert topo.links[0].block_bits == pytest.approx(fluid.links[0].skr_bps * block_s)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    cuts=st.lists(st.floats(1.0, 999.0), min_size=2, max_size=8, unique=True),
    factors=st.lists(st.floats(0.0, 2.0), min_size=4, max_size=4),
    default=st.sampled_from([0.0, 0.5, 1.0]),
    until=st.floats(10.0, 1200.0),
)
def test_key_over_a_schedule_is_the_integral_of_the_rate(
    cuts: list[float], factors: list[float], default: float, until: float
) -> None:
    """Scenario -> network builder -> QKDNetwork: a scheduled link's generated key equals its
    rate times the schedule's integral (fluid pools, none full)."""
    edges = sorted(cuts)
    wins = [
        {"start_s": s, "end_s": e, "factor": factors[i % 4], "label": f"w{i}"}
        for i, (s, e) in enumerate(zip(edges[::2], edges[1::2], strict=False))
    ]

    def edit(d: dict[str, Any]) -> None:
        d["topology"]["links"][2]["schedule"] = {"default": default, "windows": wins}

    sc = parse(scenario(edit))
    topo = build_topology(sc)
    env = simpy.Environment()
    net = QKDNetwork(env, topo, NoCipher())
    env.run(until=until)
    got = {s.link: s.generated_bits for s in net.link_summaries()}
    spec = topo.links[2]
    assert spec.schedule is not None
    want = spec.skr_bps * spec.schedule.integral(0.0, until)
    assert got[spec.name] == pytest.approx(want, rel=1e-9, abs=1e-6)
    assert got[topo.links[0].name] == pytest.approx(topo.links[0].skr_bps * until, rel=1e-9)


def test_a_satellite_link_makes_key_only_in_its_passes() -> None:
    def edit(d: dict[str, Any]) -> None:
        d["satellites"] = {"sat": {"min_elevation_deg": 20, "max_passes": 2}}
        d["topology"]["links"].append({"a": "sat", "b": "a"})
        d["horizon_s"] = 86400.0

    sc = parse(scenario(edit))
    kinds = link_kinds(sc)
    assert kinds[3].kind == SATELLITE_KIND and kinds[3].satellite == "sat"
    topo = build_topology(sc)
    assert "sat" in {n.name for n in topo.nodes}
    sat = topo.links[3]
    assert sat.schedule is not None and sat.schedule.default == 0.0
    labels = {w.label for w in sat.schedule.windows}
    assert labels == {"pass 0", "pass 1"}  # max_passes
    assert sat.block_bits is None  # fluid: a pass's key as it comes


BAD = [
    (
        lambda d: d["topology"]["links"][0].update(protocol="satellite"),
        "topology.links[0].protocol: must be one of 'decoy-bb84', ",
    ),
    (
        lambda d: d["qkd"]["systems"]["long"]["params"].update({"detector.efficiency": 1.5}),
        "qkd.systems.long.params.detector.efficiency: must be in (0, 1], got 1.5",
    ),
    (
        lambda d: d["qkd"]["systems"]["long"].update(kind="warp"),
        "qkd.systems.long.kind: must be one of ",
    ),
    (
        lambda d: d["topology"]["links"][1].update(system="gys-2004", protocol="tf-sns"),
        "topology.links[1].system: must be a system of kind 'tf-sns'",
    ),
    (
        lambda d: d["topology"]["links"][2].update(
            schedule={"windows": [{"start_s": 50, "end_s": 20}]}
        ),
        "topology.links[2].schedule.windows[0].end_s: must be > start_s (50.0)",
    ),
    (
        lambda d: d["topology"]["links"][2].update(
            schedule={"windows": [{"start_s": 50, "end_s": 200, "factor": -1}]}
        ),
        "topology.links[2].schedule.windows[0].factor: must be >= 0, got -1",
    ),
    (
        lambda d: (
            d.update(horizon_s=100.0),
            d["topology"]["links"][2].update(schedule={"windows": [{"start_s": 50, "end_s": 200}]}),
        ),
        "topology.links[2].schedule.windows[0].end_s: must be <= the horizon (100 s), got 200",
    ),
    (
        lambda d: (
            d.update(satellites={"sat": {"min_elevation_deg": 95}}),
            d["topology"]["links"].append({"a": "sat", "b": "a"}),
        ),
        "satellites.sat.min_elevation_deg: must be < 90, got 95",
    ),
    (
        lambda d: (
            d.update(satellites={"sat": {}}),
            d["topology"]["links"].append({"a": "sat", "b": "b"}),
        ),
        "topology.links[3].b: ground node 'b' of a satellite link needs latitude and longitude",
    ),
    (
        lambda d: (
            d.update(satellites={"sat": {}}),
            d["topology"]["links"].append({"a": "sat", "b": "a", "protocol": "mdi"}),
        ),
        "topology.links[3].protocol: must be unset on a satellite link",
    ),
]


@pytest.mark.parametrize("edit,message", BAD, ids=range(len(BAD)))
def test_bad_kinds_and_schedules_exit_2_with_one_line(
    edit: Any, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(scenario(edit)))
    got = run_bad(capsys, ["validate", str(path)]).removeprefix(f"{path}: ")
    assert got.startswith(message), got


def test_an_unknown_kind_lists_every_registered_kind() -> None:
    with pytest.raises(ScenarioError) as err:
        parse(scenario(lambda d: d["topology"]["links"][0].update(protocol="warp")))
    assert all(repr(k) in str(err.value) for k in kind_names())


def test_topology_json_names_kinds_and_the_plot_draws_them(tmp_path: Path) -> None:
    from qfl.cosim.plots import plot_topology

    sc = parse(scenario())
    topo = build_topology(sc)
    kinds = link_kinds(sc)
    links = [
        {"a": lk.a, "b": lk.b, "skr_bps": lk.skr_bps, "kind": k.kind,
         "untrusted_middle": k.untrusted_middle, "satellite": k.satellite}
        for lk, k in zip(topo.links, kinds, strict=True)
    ]  # fmt: skip
    nodes = [{"name": n.name, "role": n.role} for n in topo.nodes]
    out = plot_topology(nodes, links, tmp_path / "t.png")
    assert out.stat().st_size > 1000
    assert math.isfinite(sum(lk["skr_bps"] for lk in links))
