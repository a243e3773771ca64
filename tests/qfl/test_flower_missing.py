"""Without Flower installed, a flower scenario is one line saying how to install it."""

from __future__ import annotations

import importlib.util

import pytest

from qfl.scenario import ScenarioError, parse_scenario

TEXT = """
name: fl
topology:
  nodes: [{name: s, role: server}, {name: a, role: client}]
  links: [{a: s, b: a, length_km: 1}]
learning: {method: flower, strategy: "flwr.server.strategy:FedAvg", client_fn: "x:y"}
"""


@pytest.mark.skipif(importlib.util.find_spec("flwr") is not None, reason="Flower is installed")
def test_a_flower_scenario_without_flower_says_how_to_install_it() -> None:
    with pytest.raises(ScenarioError, match=r"pip install 'qfl\[flower\]'") as info:
        parse_scenario(TEXT)
    assert info.value.path == "learning.method"


def test_a_flower_scenario_needs_a_strategy_and_a_client_fn() -> None:
    with pytest.raises(ScenarioError, match="required by method 'flower'") as info:
        parse_scenario(TEXT.replace(', client_fn: "x:y"', ""))
    assert info.value.path == "learning.client_fn"


def test_other_methods_refuse_the_flower_fields() -> None:
    text = TEXT.replace(
        'learning: {method: flower, strategy: "flwr.server.strategy:FedAvg", client_fn: "x:y"}',
        "learning: {method: fedavg, dataset: synthetic-har, round_timeout_s: 5}",
    )
    with pytest.raises(ScenarioError, match="only method 'flower' uses it") as info:
        parse_scenario(text)
    assert info.value.path == "learning.round_timeout_s"
