"""The Flower adapter runs a phase's clients in parallel (threads, or processes for a large
run), with the numbers of one client after another at one torch thread each."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

pytest.importorskip("flwr")

from qfl.cosim import run_scenario
from qfl.flower import job as flower_job
from qfl.scenario import parse_scenario
from qfl.threads import using_threads

KIT = Path(__file__).resolve().parents[1]  # tests/, where flowerkit.py lives

SCENARIO = {
    "name": "fl-par",
    "seed": 3,
    "topology": {
        "nodes": [
            {"name": "srv", "role": "server"},
            *({"name": n, "flops_per_s": 1e9} for n in ("a", "b", "c", "d")),
        ],
        "links": [{"a": "srv", "b": n, "length_km": 5} for n in ("a", "b", "c", "d")],
    },
    "cipher": {"policy": "none"},
    "learning": {
        "method": "flower",
        "strategy": "flowerkit:fedavg_all",
        "client_fn": "flowerkit:client_fn",
        "rounds": 2,
    },
    "outputs": {"plots": False},
}


def _rows(threads: int) -> list[Any]:
    sc = parse_scenario(yaml.safe_dump(SCENARIO))
    with using_threads(threads):
        res = run_scenario(sc, None)
    assert res.summary["status"] == "complete"
    return res.rows


def test_threads_and_processes_give_the_numbers_of_one_client_after_another(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.syspath_prepend(str(KIT))
    one_by_one = _rows(1)
    assert _rows(2) == one_by_one  # two clients at a time, on threads
    monkeypatch.setattr(flower_job, "PROCESS_MIN_SAMPLES", 0)
    assert _rows(2) == one_by_one  # in two client processes


def test_clients_sharing_a_model_run_one_after_another() -> None:
    import torch

    class C:
        def __init__(self, net: torch.nn.Module) -> None:
            self.net = net

    shared = torch.nn.Linear(2, 2)
    with using_threads(2):
        assert flower_job._parallel([C(shared), C(shared)]) == 1
        assert flower_job._parallel([C(torch.nn.Linear(2, 2)), C(shared)]) == 2
    with using_threads(1):
        assert flower_job._parallel([C(torch.nn.Linear(2, 2)), C(shared)]) == 1
