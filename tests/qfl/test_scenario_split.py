"""The schema is a package split by section; ``qfl.scenario`` still offers every public name."""

from __future__ import annotations

import importlib
import inspect
import pickle
import pkgutil

import pytest
from pydantic import BaseModel

import qfl.scenario

# Every public name the single-module qfl/scenario.py defined (before the split).
PUBLIC = [
    "DEFAULT_QUICK",
    "MAX_FILE_BYTES",
    "MAX_YAML_VALUES",
    "CipherSpec",
    "ComputeSpec",
    "Dataset",
    "FaultSpec",
    "SystemDef",
    "read_systems",
    "system_registry",
    "LearningSpec",
    "LinkSpec",
    "Method",
    "Model",
    "NodeSpec",
    "NonNegative",
    "OutputSpec",
    "Positive",
    "Protocol",
    "QKDSpec",
    "Scenario",
    "ScenarioError",
    "TopologySpec",
    "apply_overrides",
    "apply_quick",
    "check_fault_links",
    "check_folder_name",
    "check_node_refs",
    "load_scenario",
    "load_yaml",
    "parse_scenario",
    "read_text",
    "scenario_json_schema",
    "scenario_reference",
    # link kinds, schedules and satellites
    "BB84_PROTOCOLS",
    "SATELLITE_KIND",
    "SATELLITE_PRESETS",
    "LinkKindChoice",
    "SatelliteSpec",
    "ScheduleDef",
    "WindowDef",
    "check_link_kinds",
    "link_kind",
    "link_schedule",
    "protocol_names",
]
# Private helpers imported from qfl.scenario elsewhere (qfl.cosim.sweep, tests, benchmarks).
PRIVATE_USED_ELSEWHERE = ["_check_references", "_from_mapping", "_parse_scalar"]

# Where each section's model lives: a reader looks for a field's definition there.
SECTIONS = {
    "topology": ["NodeSpec", "LinkSpec", "TopologySpec"],
    "qkd": ["QKDSpec", "Protocol"],
    "cipher": ["CipherSpec"],
    "learning": ["LearningSpec", "ComputeSpec", "Method", "Dataset"],
    "faults": ["FaultSpec"],
    "outputs": ["OutputSpec"],
    "document": ["Scenario", "parse_scenario", "load_scenario"],
}


def _submodules() -> list[str]:
    return [m.name for m in pkgutil.iter_modules(qfl.scenario.__path__, "qfl.scenario.")]


@pytest.mark.parametrize("name", PUBLIC + PRIVATE_USED_ELSEWHERE)
def test_name_importable_from_the_package(name: str) -> None:
    ns: dict[str, object] = {}
    exec(f"from qfl.scenario import {name}", ns)  # the import statement importers use
    assert ns[name] is getattr(qfl.scenario, name)


def test_all_lists_every_public_name_once() -> None:
    assert sorted(qfl.scenario.__all__) == sorted(PUBLIC)
    assert len(set(qfl.scenario.__all__)) == len(qfl.scenario.__all__)


def test_every_submodule_public_name_is_reexported() -> None:
    missing = []
    for modname in _submodules():
        mod = importlib.import_module(modname)
        for name in getattr(mod, "__all__", []):
            if getattr(qfl.scenario, name, None) is not getattr(mod, name):
                missing.append(f"{modname}.{name}")
    assert not missing, f"not re-exported by qfl.scenario: {missing}"


@pytest.mark.parametrize("section", sorted(SECTIONS))
def test_a_section_is_defined_in_its_module(section: str) -> None:
    mod = importlib.import_module(f"qfl.scenario.{section}")
    for name in SECTIONS[section]:
        obj = getattr(qfl.scenario, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert obj.__module__ == mod.__name__, (name, obj.__module__)
        else:  # a type alias (Literal[...]): defined there, the same object
            assert getattr(mod, name) is obj


def test_every_section_model_of_the_scenario_lives_in_a_section_module() -> None:
    sections = {f"qfl.scenario.{s}" for s in SECTIONS if s != "document"}
    seen = set()
    for field, info in qfl.scenario.Scenario.model_fields.items():
        model = info.annotation
        args = getattr(model, "__args__", ())
        model = next((a for a in (model, *args) if inspect.isclass(a)), None)
        if inspect.isclass(model) and issubclass(model, BaseModel):
            seen.add(field)
            own = f"qfl.scenario.{field}"  # a section with a module of its own is defined there
            assert model.__module__ == own if own in sections else model.__module__ in sections, (
                field,
                model.__module__,
            )
    assert {"topology", "qkd", "cipher", "learning", "faults", "outputs"} <= seen


def test_scenario_error_keeps_its_public_name_and_pickles() -> None:
    err = qfl.scenario.ScenarioError("learning.lr", "must be > 0, got -1")
    assert f"{type(err).__module__}.{type(err).__qualname__}" == "qfl.scenario.ScenarioError"
    back = pickle.loads(pickle.dumps(err))
    assert (back.path, back.message, str(back)) == (err.path, err.message, str(err))
