"""Links that make no key (:mod:`qfl.cosim.keypaths`): which learners they cut off, what
``qfl validate`` says about them, and what a run's "what binds" says."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from clihelp import run_bad

from network.topology import LinkSpec, NodeSpec, TopologySpec
from qfl.cli import main
from qfl.cosim.bottlenecks import binding
from qfl.cosim.keypaths import check_key_paths, key_path_findings
from qfl.cosim.netbuild import build_topology
from qfl.scenario import Scenario, ScenarioError

Tiny = Callable[..., dict[str, Any]]


def topo(*links: tuple[str, str, float]) -> TopologySpec:
    names = sorted({n for a, b, _ in links for n in (a, b)})
    nodes = tuple(NodeSpec(n, "relay" if n.startswith("r") else "client") for n in names)
    return TopologySpec(
        nodes=nodes, links=tuple(LinkSpec(a, b, 10.0, skr_bps=r) for a, b, r in links)
    )


def test_a_leaf_without_key_is_isolated() -> None:
    t = topo(("a", "r", 1e3), ("b", "r", 1e3), ("c", "r", 0.0))
    (f,) = key_path_findings(t, ["a", "b", "c"])
    assert f.link == "c-r" and f.isolated == ("c",) and f.others == ("a", "b") and f.error


def test_a_redundant_link_without_key_is_a_warning() -> None:
    t = topo(("a", "r", 1e3), ("b", "r", 1e3), ("c", "r", 1e3), ("a", "b", 0.0))
    (f,) = key_path_findings(t, ["a", "b", "c"])
    assert f.isolated == () and not f.error
    assert "still have a path with key" in f.line()


def test_a_chain_of_dead_links_isolates_the_sites_behind_it() -> None:
    # c and d sit behind r2; both links out of r2 make no key: both name c and d
    t = topo(("a", "r1", 1e3), ("b", "r1", 1e3), ("r1", "r2", 0.0), ("r2", "r3", 0.0),
             ("c", "r2", 1e3), ("d", "r2", 1e3))  # fmt: skip
    found = {f.link: f for f in key_path_findings(t, ["a", "b", "c", "d"])}
    assert found["r1-r2"].isolated == ("c", "d") and found["r1-r2"].others == ("a", "b")
    assert found["r2-r3"].isolated == ("c", "d")  # r3 holds no learner, r2's side does
    assert key_path_findings(topo(("a", "b", 1e3)), ["a", "b"]) == []


def test_initial_key_makes_it_a_warning() -> None:
    t = TopologySpec(
        nodes=(NodeSpec("a", "client"), NodeSpec("b", "client")),
        links=(LinkSpec("a", "b", 10.0, skr_bps=0.0, initial_bits=1e6),),
    )
    (f,) = key_path_findings(t, ["a", "b"])
    assert f.isolated == ("b",) and not f.error and "after its initial" in f.line()


def far_leaf(tiny: Tiny, km: float = 400.0, **extra: Any) -> dict[str, Any]:
    d = tiny(extra)
    d["topology"]["links"][2]["length_km"] = km  # c-r: c's only link
    return d


def test_scenario_check_names_field_rate_and_site(tiny: Tiny) -> None:
    sc = Scenario.model_validate(far_leaf(tiny))
    t = build_topology(sc)
    assert t.links[2].skr_bps == 0.0
    with pytest.raises(ScenarioError) as exc:
        check_key_paths(sc, t)
    assert exc.value.path == "topology.links[2].length_km"
    assert "makes 0 bit/s of key" in exc.value.message and "isolates c " in exc.value.message
    nokey = Scenario.model_validate(far_leaf(tiny, cipher={"policy": "none"}))
    assert check_key_paths(nokey, build_topology(nokey)) == []


def test_validate_refuses_an_isolating_link(
    capsys: pytest.CaptureFixture[str], tiny: Tiny, tmp_path: Path
) -> None:
    path = tmp_path / "far.yaml"
    path.write_text(yaml.safe_dump(far_leaf(tiny)), encoding="utf-8")
    msg = run_bad(capsys, ["validate", str(path)])
    assert msg.startswith(f"{path}: topology.links[2].length_km: link c-r (400 km) makes 0 bit/s")
    assert "isolates c from the other learners (a, b)" in msg
    ok = tiny()
    ok["topology"]["links"][3]["length_km"] = 400.0  # a-b: a and b still meet through r
    path.write_text(yaml.safe_dump(ok), encoding="utf-8")
    assert main(["validate", str(path)]) == 0
    err = capsys.readouterr().err
    assert "qfl: warning:" in err and "topology.links[3].length_km: link a-b (400 km)" in err


def test_binding_names_a_missing_key_path() -> None:
    t = topo(("a", "r", 1e3), ("b", "r", 1e3), ("c", "r", 0.0))
    found = key_path_findings(t, ["a", "b", "c"])
    shares = {"compute": 0.61, "key": 0.39, "bandwidth": 0.0, "propagation": 0.0, "blocked": 0.0}
    text = binding(shares, {"a-r": 2.0}, found, never_received=4)
    assert text.startswith("key: no key path (link c-r makes 0 bit/s and isolates c, 4 model")
    assert "the completed rounds: compute (61 % of round time)" in text
    assert binding(shares, {}) == "compute (61 % of round time)"
    assert binding(dict.fromkeys(shares, 0.0), {}, found).endswith("; no round completed")


def test_a_run_over_a_dead_link_says_so(tiny: Tiny, fmnist: Path) -> None:
    from qfl.cosim import run_scenario

    d = far_leaf(tiny, horizon_s=30.0)
    res = run_scenario(Scenario.model_validate(d), None, plots=False)
    s = res.summary
    assert s["binds"].startswith("key: no key path (link c-r makes 0 bit/s and isolates c")
    assert s["no_key_path"][0].startswith("topology.links[2].length_km: link c-r (400 km)")


def test_a_dead_end_without_learners_is_no_finding() -> None:
    # r2 is a relay at the end of a spur (SECOQC's St. Poelten): no model crosses r-r2
    t = topo(("a", "r", 1e3), ("b", "r", 1e3), ("r", "r2", 0.0))
    assert key_path_findings(t, ["a", "b"]) == []
