"""The scenario file: one YAML document describing a network and a learning job.

The file is parsed once, at the edge, into frozen pydantic models that reject unknown keys.
Every error names the YAML path of the bad field, the value and what is allowed, e.g.
``topology.links[3].length_km: must be >= 0, got -5``.

Examples
--------
>>> text = '''
... name: tiny
... topology:
...   nodes: [{name: a}, {name: b}]
...   links: [{a: a, b: b, length_km: 10}]
... learning: {method: def-fd, dataset: fashion-mnist}
... '''
>>> sc = parse_scenario(text)
>>> sc.topology.links[0].length_km, sc.learning.method
(10.0, 'def-fd')

The schema lives by section, one module each, so a field's definition is found where its
section lives:

=====================================  ==================================================
:mod:`qfl.scenario.topology`           ``topology``: nodes and links
:mod:`qfl.scenario.qkd`                ``qkd``: QKD system and key-store defaults
:mod:`qfl.scenario.cipher`             ``cipher``: how transfers are encrypted
:mod:`qfl.scenario.learning`           ``learning`` and ``compute``
:mod:`qfl.scenario.faults`             ``faults``: link cuts, outages, eavesdroppers
:mod:`qfl.scenario.outputs`            ``outputs``: where and what to write
:mod:`qfl.scenario.document`           the top level (:class:`Scenario`), cross-field checks,
                                       :func:`parse_scenario`, :func:`load_scenario`
:mod:`qfl.scenario.base`               :class:`ScenarioError`, the frozen base model, number types
:mod:`qfl.scenario.messages`           pydantic's errors as one line naming the YAML path
:mod:`qfl.scenario.yamlfile`           bounded, safe reading of YAML files
:mod:`qfl.scenario.overrides`          ``--set`` overrides and ``--quick``
:mod:`qfl.scenario.reference`          JSON Schema and the Markdown field reference
=====================================  ==================================================

Every public name is importable from ``qfl.scenario`` itself.
"""

from __future__ import annotations

from qfl.scenario.base import NonNegative, Positive, ScenarioError, check_folder_name
from qfl.scenario.cipher import CipherSpec
from qfl.scenario.document import (
    Scenario,
    _check_references,
    _from_mapping,
    check_fault_links,
    check_node_refs,
    load_scenario,
    parse_scenario,
)
from qfl.scenario.faults import FaultSpec
from qfl.scenario.learning import ComputeSpec, Dataset, LearningSpec, Method, Model
from qfl.scenario.linkkinds import (
    SATELLITE_KIND,
    LinkKindChoice,
    check_link_kinds,
    link_kind,
    link_schedule,
)
from qfl.scenario.outputs import OutputSpec
from qfl.scenario.overrides import DEFAULT_QUICK, _parse_scalar, apply_overrides, apply_quick
from qfl.scenario.qkd import (
    BB84_PROTOCOLS,
    Protocol,
    QKDSpec,
    SystemDef,
    protocol_names,
    read_systems,
    system_registry,
)
from qfl.scenario.reference import scenario_json_schema, scenario_reference
from qfl.scenario.satellites import SATELLITE_PRESETS, SatelliteSpec, ScheduleDef, WindowDef
from qfl.scenario.topology import LinkSpec, NodeSpec, TopologySpec
from qfl.scenario.yamlfile import MAX_FILE_BYTES, MAX_YAML_VALUES, load_yaml, read_text

__all__ = [
    "BB84_PROTOCOLS",
    "DEFAULT_QUICK",
    "MAX_FILE_BYTES",
    "MAX_YAML_VALUES",
    "SATELLITE_KIND",
    "SATELLITE_PRESETS",
    "CipherSpec",
    "ComputeSpec",
    "Dataset",
    "FaultSpec",
    "LearningSpec",
    "LinkKindChoice",
    "LinkSpec",
    "Method",
    "Model",
    "NodeSpec",
    "NonNegative",
    "OutputSpec",
    "Positive",
    "Protocol",
    "QKDSpec",
    "SatelliteSpec",
    "Scenario",
    "ScenarioError",
    "ScheduleDef",
    "SystemDef",
    "TopologySpec",
    "WindowDef",
    "apply_overrides",
    "apply_quick",
    "check_fault_links",
    "check_folder_name",
    "check_link_kinds",
    "check_node_refs",
    "link_kind",
    "link_schedule",
    "load_scenario",
    "load_yaml",
    "parse_scenario",
    "protocol_names",
    "read_systems",
    "read_text",
    "scenario_json_schema",
    "scenario_reference",
    "system_registry",
]

# Private helpers other modules use (qfl.cosim.sweep, a test, a benchmark).
_PRIVATE_REEXPORTS = (_check_references, _from_mapping, _parse_scalar)
