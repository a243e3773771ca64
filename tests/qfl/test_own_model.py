"""A model and a dataset of one's own for FedAvg and the Def-FD family (issue 22, part 3):
by ``package.module:attr`` in the scenario and by registration in the API; FLOPs from the
model; the engine chosen and stated; bad input as one line naming the field."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

import qfl
from qfl.cli import main
from qfl.registry import DATASETS, MODELS
from qfl.scenario import ScenarioError

KIT = Path(__file__).resolve().parents[1]  # tests/, where ownkit.py lives

STAR: dict[str, Any] = {
    "name": "own",
    "seed": 5,
    "topology": {
        "nodes": [
            {"name": "s", "role": "server"},
            {"name": "a", "flops_per_s": 1e6},
            {"name": "b", "flops_per_s": 2e6},
            {"name": "c", "flops_per_s": 1e6},
        ],
        "links": [
            {"a": "s", "b": "a", "length_km": 10},
            {"a": "s", "b": "b", "length_km": 20},
            {"a": "s", "b": "c", "length_km": 30},
        ],
    },
    "qkd": {"key_model": "asymptotic-fluid"},
    "learning": {
        "method": "fedavg",
        "dataset": "ownkit:blobs",
        "model": "ownkit:mlp",
        "rounds": 3,
        "lr": 0.05,
        "engine": "sequential",
    },
    "outputs": {"plots": False},
}


@pytest.fixture(autouse=True)
def _kit(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.syspath_prepend(str(KIT))
    yield
    for name in ("t-blobs", "t-mlp"):
        DATASETS.unregister(name)
        MODELS.unregister(name)


def star(**learning: Any) -> dict[str, Any]:
    return {**STAR, "learning": {**STAR["learning"], **learning}}


def _run(data: dict[str, Any]) -> Any:
    return qfl.run(qfl.build_scenario(data), threads=1)


def test_fedavg_by_import_path_learns_counts_flops_and_states_the_engine() -> None:
    import ownkit

    from qfl.cosim.netbuild import check_network
    from qfl.cosim.run import build_job

    sc = qfl.build_scenario(star())
    job = build_job(sc, check_network(sc))
    # FLOPs from the model: 2 per multiply-add of its two linear layers, times the
    # backward factor (3 by default)
    fwd = 2 * (ownkit.IN * ownkit.HIDDEN + ownkit.HIDDEN * ownkit.CLASSES)
    assert job.profile.train_flops_per_sample == (3.0 * fwd,) * 3
    # the whole model goes up and down: its float32 parameters
    n_params = sum(p.numel() for p in job.model.parameters())
    assert job.profile.upload_bytes == (4 * n_params,) * 3
    res = qfl.run(sc, threads=1)
    s = res.summary
    assert s["status"] == "complete" and s["rounds_done"] == 3
    assert s["final_global_acc"] > 0.8  # four separable blobs; chance is 0.25
    assert s["model"] == "ownkit:mlp" and s["dataset"] == "ownkit:blobs"
    assert s["engine"] == {"engine": "sequential", "reason": "learning.engine: sequential"}


def test_registered_objects_give_the_numbers_the_import_paths_give() -> None:
    import ownkit

    by_path = _run(star()).summary
    qfl.register_dataset("t-blobs", ownkit.blobs)
    qfl.register_model("t-mlp", ownkit.mlp)
    by_name = _run(star(dataset="t-blobs", model="t-mlp")).summary
    for key in ("final_global_acc", "final_local_acc", "sim_time_end_s"):
        assert by_name[key] == by_path[key], key


@pytest.mark.parametrize("dataset", ["ownkit:blobs_split", "ownkit:blobs_tensors"])
def test_a_dataset_factory_may_return_train_and_test_or_tensors(dataset: str) -> None:
    s = _run(star(dataset=dataset, rounds=2)).summary
    assert s["status"] == "complete" and s["final_global_acc"] > 0.5


def test_the_batched_engine_runs_where_the_model_allows_it_and_agrees() -> None:
    seq = _run(star(rounds=2)).summary
    bat = _run(star(rounds=2, engine="batched")).summary
    assert bat["engine"]["engine"] == "batched"
    assert bat["final_global_acc"] == pytest.approx(seq["final_global_acc"], abs=0.02)
    fallback = _run(star(rounds=1, engine="batched", model="ownkit:Branchy")).summary
    assert fallback["status"] == "complete"
    assert fallback["engine"]["engine"] == "sequential"
    assert "vmap" in fallback["engine"]["reason"]


@pytest.mark.parametrize(
    ("method", "model"),
    [("def-fd", "ownkit:FeatureMLP"), ("def-kt", "ownkit:mlp"), ("gossip-avg", "ownkit:mlp")],
)
def test_the_decentralized_methods_take_a_model_and_dataset_of_ones_own(
    method: str, model: str
) -> None:
    data = star(method=method, model=model, classes_per_client=3, rounds=2)
    data["topology"] = {**STAR["topology"], "nodes": STAR["topology"]["nodes"][1:]}
    data["topology"]["links"] = [
        {"a": "a", "b": "b", "length_km": 10},
        {"a": "b", "b": "c", "length_km": 10},
    ]
    s = _run(data).summary
    assert s["status"] == "complete" and s["rounds_done"] == 2
    assert s["final_local_acc"] > 0.5


def test_a_sweep_of_registered_objects_runs_in_this_process(tmp_path: Path) -> None:
    import ownkit

    qfl.register_dataset("t-blobs", ownkit.blobs)
    qfl.register_model("t-mlp", ownkit.mlp)
    sc = qfl.build_scenario(star(dataset="t-blobs", model="t-mlp", rounds=1))
    rows = qfl.sweep(sc, {"qkd.rate_scale": [0.5, 1.0]}, tmp_path / "sw", plots=False)
    assert [r["status"] for r in rows] == ["complete", "complete"]


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    with contextlib.redirect_stdout(io.StringIO()):
        status = main(args)
    return status, capsys.readouterr().err


BAD: list[tuple[dict[str, Any], str]] = [
    ({"model": "nosuchpkg.models:mlp"}, r"learning\.model: cannot import 'nosuchpkg\.models'"),
    ({"model": "ownkit:nope"}, r"learning\.model: module 'ownkit' has no attribute 'nope'"),
    ({"model": "ownkit:NOT_CALLABLE"}, r"learning\.model: ownkit:NOT_CALLABLE must name a"),
    ({"model": "ownkit:not_a_module"}, r"learning\.model: .* returned int, not a torch\.nn\.Mod"),
    ({"model": "ownkit:wrong_logits"}, r"learning\.model: .*shape \(2, 5\).*\(2, 4\)"),
    ({"model": "unknown-name"}, r"learning\.model: unknown name 'unknown-name'; give one of"),
    ({"dataset": "ownkit:mismatched"}, r"learning\.dataset: .*do not fit: .*must be \[9, \.\.\.\]"),
    ({"dataset": "ownkit:raises"}, r"learning\.dataset: ownkit:raises raised OSError: the data"),
    ({"model": "cnn"}, r"learning\.model: got built-in 'cnn'; a dataset of your own needs"),
    ({"model": None}, r"learning\.model: missing; a dataset of your own needs a model"),
    (
        {"method": "def-fd", "classes_per_client": 2},
        r"learning\.model: ownkit:mlp: method 'def-fd' needs a forward returning \(logits,",
    ),
    (
        {"method": "ssl-backbone"},
        r"learning\.dataset: must be one of 'flowers102\+intel' for method 'ssl-backbone'",
    ),
]


@pytest.mark.parametrize(("patch", "match"), BAD)
def test_bad_input_is_one_line_naming_the_field_with_status_2(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    patch: dict[str, Any],
    match: str,
) -> None:
    import re

    data = star(**patch)
    data["learning"] = {k: v for k, v in data["learning"].items() if v is not None}
    if data["learning"]["method"] == "def-fd":
        data["topology"] = {**STAR["topology"], "nodes": STAR["topology"]["nodes"][1:],
                            "links": [{"a": "a", "b": "b", "length_km": 10},
                                      {"a": "b", "b": "c", "length_km": 10}]}  # fmt: skip
    path = tmp_path / "sc.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    status, err = run_cli(["simulate", str(path), "--out", str(tmp_path / "run")], capsys)
    assert status == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and re.search(match, lines[0]), err


def test_registries_are_open_and_refuse_clashes() -> None:
    import ownkit

    from qfl.cosim.methods import METHODS, MethodSpec

    qfl.register_model("t-mlp", ownkit.mlp)
    assert "t-mlp" in MODELS.names() and MODELS.lookup("t-mlp") is ownkit.mlp
    with pytest.raises(ScenarioError, match="already registered; pass replace=True"):
        qfl.register_model("t-mlp", ownkit.mlp)
    with pytest.raises(ScenarioError, match="'cnn' is a built-in name"):
        qfl.register_model("cnn", ownkit.mlp)
    spec = MethodSpec("t-fedavg", "server", {}, "fedavg", own_models=True)
    try:
        qfl.register_method(spec)
        s = _run(star(method="t-fedavg", rounds=1)).summary
        assert s["method"] == "t-fedavg" and s["status"] == "complete"
    finally:
        METHODS.pop("t-fedavg", None)
    unknown = r"^learning\.method: must be 'def-fd', 'def-kt'.* \(or a method registered"
    with pytest.raises(ScenarioError, match=unknown):
        qfl.build_scenario(star(method="t-fedavg"))


def test_the_public_api_is_small_sorted_and_documented() -> None:
    assert qfl.__all__ == sorted(qfl.__all__)
    for name in qfl.__all__:
        if name != "__version__":
            doc = getattr(qfl, name).__doc__
            assert doc and "Examples" in doc and "Parameters" in doc, name


def test_the_example_runs_in_reduced_form(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    example = Path(__file__).resolve().parents[2] / "examples" / "own_mlp"
    monkeypatch.chdir(example)
    monkeypatch.syspath_prepend(str(example))
    sc = qfl.load_scenario("metro.yaml", {"learning.rounds": 2})
    s = qfl.run(sc, tmp_path / "run", threads=1).summary
    assert s["status"] == "complete" and s["final_global_acc"] > 0.3  # 8 classes
    assert (tmp_path / "run" / "summary.json").is_file()


@pytest.mark.parametrize("method", ["fedavg", "def-kt"])
def test_a_model_of_ones_own_on_a_built_in_dataset(fmnist: Path, method: str) -> None:
    data = star(
        method=method,
        dataset="fashion-mnist",
        model="ownkit:mlp",
        rounds=1,
        samples_per_client=60,
        test_samples=200,
    )
    if method == "def-kt":
        data["topology"] = {**STAR["topology"], "nodes": STAR["topology"]["nodes"][1:],
                            "links": [{"a": "a", "b": "b", "length_km": 10},
                                      {"a": "b", "b": "c", "length_km": 10}]}  # fmt: skip
    s = _run(data).summary
    assert s["status"] == "complete" and s["model"] == "ownkit:mlp"
    assert s["final_global_acc"] is not None and s["final_global_acc"] > 0.1
