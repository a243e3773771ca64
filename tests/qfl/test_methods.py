"""The method registry: the scenario schema, validation and the jobs agree with it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, get_args

import pytest

from qfl.cosim.jobs import JOBS
from qfl.cosim.methods import METHODS, get_method
from qfl.cosim.netbuild import check_network
from qfl.cosim.plan import SERVER, Aggregate, Fuse, Send, Train, decentralized_round, server_round
from qfl.scenario import Dataset, Method, Model, ScenarioError, parse_scenario
from qkd.errors import UnknownNameError

Tiny = Callable[..., dict[str, Any]]


def test_schema_and_registry_name_the_same_methods_datasets_and_models() -> None:
    assert set(get_args(Method)) == set(METHODS)
    models = set(get_args(Model))
    for spec in METHODS.values():
        assert set(spec.datasets) <= set(get_args(Dataset)), spec.name
        for ds in spec.datasets:
            assert set(spec.models_for(ds)) <= models, (spec.name, ds)
        assert spec.job in JOBS, spec.name
    with pytest.raises(UnknownNameError, match=r"learning\.method: must be one of 'def-fd'"):
        get_method("fedprox")


def test_validation_checks_the_model_against_the_method_and_dataset(tiny: Tiny) -> None:
    import yaml

    ok = tiny({"learning": {"model": "cnn"}})
    assert parse_scenario(yaml.safe_dump(ok)).learning.model == "cnn"
    bad = tiny({"learning": {"model": "resnet50"}})
    with pytest.raises(ScenarioError, match=r"^learning.model: must be one of 'cnn' for method"):
        parse_scenario(yaml.safe_dump(bad))


@pytest.mark.parametrize(
    ("learning", "match"),
    [
        ({"method": "fedavg", "dataset": "fashion-mnist"}, r"^learning.server: method 'fedavg'"),
        (
            {"method": "ssl-backbone", "dataset": "flowers102+intel"},
            r"^learning.clients: method 'ssl-backbone' needs exactly 2 clients, got 3",
        ),
    ],
)
def test_client_count_and_server_come_from_the_registry(
    tiny: Tiny, learning: dict[str, Any], match: str
) -> None:
    import yaml

    sc = parse_scenario(yaml.safe_dump(tiny({"learning": learning})))
    with pytest.raises(ScenarioError, match=match):
        check_network(sc)


def test_round_plans() -> None:
    dec = decentralized_round(4, senders=(1, 3), transfers=((3, 0),))
    assert dec.chains == ((Train(1),), (Train(3), Send(3, 0, "model"), Fuse(0, 3)))
    assert dec.trains == (1, 3) and dec.end == ()
    srv = server_round(0, 2, down="encoder")
    assert srv.sends == (
        Send(SERVER, 0, "encoder"),
        Send(0, SERVER, "update"),
        Send(SERVER, 1, "encoder"),
        Send(1, SERVER, "update"),
    )
    assert srv.end == (Aggregate(),) and srv.trains == (0, 1)


def test_every_field_is_described_and_the_reference_is_in_sync() -> None:
    from pathlib import Path

    from qfl.scenario import scenario_reference

    text = scenario_reference()
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    assert len(rows) > 80
    undescribed = [r.split("|")[1].strip() for r in rows if r.split("|")[4].strip() == ""]
    assert not undescribed
    ref = Path(__file__).resolve().parents[2] / "scenarios" / "REFERENCE.md"
    assert ref.read_text(encoding="utf-8") == text, (
        "scenarios/REFERENCE.md is stale: qfl schema --markdown -o scenarios/REFERENCE.md"
    )
