"""The whole document: :class:`Scenario`, its cross-field checks, parsing and loading."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, field_validator

from qfl.scenario.base import Positive, ScenarioError, _Frozen, check_folder_name
from qfl.scenario.cipher import CipherSpec
from qfl.scenario.faults import FaultSpec
from qfl.scenario.learning import ComputeSpec, LearningSpec
from qfl.scenario.messages import _from_validation_error
from qfl.scenario.outputs import OutputSpec
from qfl.scenario.qkd import QKDSpec
from qfl.scenario.satellites import SatelliteSpec
from qfl.scenario.topology import TopologySpec
from qfl.scenario.yamlfile import load_yaml, read_text

__all__ = ["Scenario", "check_fault_links", "check_node_refs", "load_scenario", "parse_scenario"]


class Scenario(_Frozen):
    """A complete scenario: network, QKD, cipher, learning, time and outputs."""

    name: str = Field(
        min_length=1,
        description="Names the run folder (outputs.dir/NAME): letters, digits, '_', '.', '-', "
        "not starting with '.'.",
    )
    description: str = Field("", description="Free text shown in summaries.")
    seed: Annotated[int, Field(ge=0)] = Field(
        0,
        description="Seed of every random stream (data split, initialisation, schedule); same "
        "seed, same "
        "numbers.",
    )
    topology: TopologySpec = Field(description="Nodes and links (inline) or a GraphML/GML file.")
    qkd: QKDSpec = Field(QKDSpec(), description="QKD system and key-store defaults for every link.")
    cipher: CipherSpec = Field(
        CipherSpec(),
        description="How model transfers are encrypted, hence how much key they take.",
    )
    compute: ComputeSpec = Field(
        ComputeSpec(),
        description="How learning steps take simulated time.",
    )
    learning: LearningSpec = Field(
        description="The learning method, its data, model and hyperparameters.",
    )
    satellites: dict[str, SatelliteSpec] = Field(
        default_factory=dict,
        description="Satellites by name: trusted nodes (not in topology.nodes) whose links to "
        "ground nodes make key only during passes.",
    )
    horizon_s: Positive | None = Field(None, description="Stop at this simulated time.")
    routing: Literal["latency", "key-aware"] | None = Field(
        None,
        description="How transfers choose their path: latency (shortest propagation delay) or "
        "key-aware (latency plus the expected wait for key; links that can never supply the "
        "key are avoided). Default: key-aware when some link produces no key, else latency.",
    )
    faults: tuple[FaultSpec, ...] = Field(
        (),
        description="Scheduled link cuts, node outages and eavesdroppers.",
    )
    outputs: OutputSpec = Field(OutputSpec(), description="Where and what to write.")
    quick: dict[str, Any] = Field(
        default_factory=dict,
        description="Overrides applied by --quick, as dotted paths (learning.rounds: 2).",
    )

    @field_validator("name")
    @classmethod
    def _folder_name(cls, v: str) -> str:
        try:
            return check_folder_name(v, "")
        except ScenarioError as exc:
            raise ValueError(exc.message.rpartition(", got ")[0]) from None


def _check_method(sc: Scenario) -> None:
    """The dataset and model against the method's registry entry (:mod:`qfl.cosim.methods`)."""
    from qfl.cosim.methods import METHODS, get_method
    from qkd.errors import UnknownNameError

    lr = sc.learning
    try:
        spec = get_method(lr.method)
    except UnknownNameError:
        known = ", ".join(repr(m) for m in METHODS)
        raise ScenarioError(
            "learning.method",
            f"must be {known} (or a method registered with qfl.register_method), got {lr.method!r}",
        ) from None
    for other in METHODS.values():
        for f in other.own_fields:
            v = getattr(lr, f)
            if f not in spec.own_fields and v is not None and v != {}:
                raise ScenarioError(
                    f"learning.{f}",
                    f"only method {other.name!r} uses it; leave it out for method "
                    f"{lr.method!r}, got {v!r}",
                )
    if spec.check is not None:  # a method that brings its own data and models
        spec.validate(sc)
        return
    if lr.dataset is None:
        about = LearningSpec.model_fields["dataset"].description
        raise ScenarioError("learning.dataset", f"missing; this field is required ({about})")
    if _check_own(sc, spec):
        return
    if lr.dataset not in spec.datasets:
        raise ScenarioError(
            "learning.dataset",
            f"must be one of {', '.join(repr(d) for d in spec.datasets)} for method "
            f"{lr.method!r}, got {lr.dataset!r}",
        )
    if lr.partition is not None and lr.partition not in spec.partitions:
        allowed = " or ".join(repr(x) for x in spec.partitions) or "null"
        raise ScenarioError(
            "learning.partition",
            f"must be {allowed} for method {lr.method!r} (the partition it implements), "
            f"got {lr.partition!r}",
        )
    models = spec.models_for(lr.dataset)
    if lr.model is not None and lr.model not in models:
        raise ScenarioError(
            "learning.model",
            f"must be one of {', '.join(repr(m) for m in models)} for method {lr.method!r} "
            f"on {lr.dataset!r}, got {lr.model!r}",
        )


def _check_own(sc: Scenario, spec: Any) -> bool:
    """A model or dataset of the user's own (:mod:`qfl.registry`): the method takes them,
    the names are known and the import paths import to callables. False when the scenario
    names only built-ins."""
    from qfl.registry import DATASETS, MODELS

    lr = sc.learning
    assert lr.dataset is not None  # checked by the caller
    own_data, own_model = (
        DATASETS.is_own(lr.dataset),
        lr.model is not None and MODELS.is_own(lr.model),
    )
    if not (own_data or own_model):
        return False
    if not spec.own_models:
        return False  # the built-in checks say what the method takes
    if own_data:
        DATASETS.lookup(lr.dataset)
        if lr.model is None or not own_model:
            got = "missing" if lr.model is None else f"got built-in {lr.model!r}"
            raise ScenarioError(
                "learning.model",
                f"{got}; a dataset of your own needs a model of your own: give "
                "'package.module:attr' of a model factory or a registered model name",
            )
    elif lr.dataset not in spec.datasets:
        raise ScenarioError(
            "learning.dataset",
            f"must be one of {', '.join(repr(d) for d in spec.datasets)} or a dataset of "
            f"your own for method {lr.method!r}, got {lr.dataset!r}",
        )
    MODELS.lookup(lr.model)  # type: ignore[arg-type]
    if lr.partition is not None and lr.partition not in spec.partitions:
        allowed = " or ".join(repr(x) for x in spec.partitions) or "null"
        raise ScenarioError(
            "learning.partition",
            f"must be {allowed} for method {lr.method!r} (the partition it implements), "
            f"got {lr.partition!r}",
        )
    return True


def _check_references(sc: Scenario) -> None:
    _check_method(sc)
    _check_presets(sc)
    names = [n.name for n in sc.topology.nodes]
    seen: set[str] = set()
    for i, n in enumerate(names):
        if n in seen:
            raise ScenarioError(f"topology.nodes[{i}].name", f"duplicate node name {n!r}")
        seen.add(n)
    if sc.topology.file is not None:
        _check_link_kinds(sc)
        return  # names are checked once the file is read
    seen |= set(sc.satellites)
    pairs: dict[frozenset[str], int] = {}
    for i, link in enumerate(sc.topology.links):
        for end in ("a", "b"):
            v = getattr(link, end)
            if v not in seen:
                raise ScenarioError(
                    f"topology.links[{i}].{end}",
                    f"unknown node {v!r}; nodes are {', '.join(sorted(seen))}",
                )
        if link.a == link.b:
            raise ScenarioError(f"topology.links[{i}]", f"a link from {link.a!r} to itself")
        key = frozenset((link.a, link.b))
        if key in pairs:
            raise ScenarioError(
                f"topology.links[{i}]",
                f"duplicate link {link.a}-{link.b}: topology.links[{pairs[key]}] already joins "
                "them (links are undirected; give each pair once)",
            )
        pairs[key] = i
    _check_link_kinds(sc)
    check_node_refs(sc, seen)
    check_fault_links(sc, set(pairs))


def _check_link_kinds(sc: Scenario) -> None:
    from qfl.scenario.linkkinds import check_link_kinds

    check_link_kinds(sc)


def _check_presets(sc: Scenario) -> None:
    from qfl.scenario.qkd import _check_systems

    _check_systems(sc.qkd, sc.topology.links)


def check_fault_links(sc: Scenario, links: set[frozenset[str]]) -> None:
    """Check that every link-cut and eavesdropper fault names a link of the topology.

    Raises
    ------
    ScenarioError
        Naming ``faults[i].link`` of the first fault on a pair of nodes with no link.
    """
    for i, f in enumerate(sc.faults):
        if f.link is not None and frozenset(f.link) not in links:
            a, b = f.link
            raise ScenarioError(
                f"faults[{i}].link",
                f"no link joins {a!r} and {b!r}; a {f.kind} fault must name the two ends of "
                "a link of the topology",
            )


def check_node_refs(sc: Scenario, nodes: set[str]) -> None:
    """Check that every node named by the learning job and the faults exists.

    Raises
    ------
    ScenarioError
        Naming the YAML path of the first unknown node.
    """
    known = ", ".join(sorted(nodes))
    for i, c in enumerate(sc.learning.clients):
        if c not in nodes:
            raise ScenarioError(f"learning.clients[{i}]", f"unknown node {c!r}; nodes are {known}")
    if sc.learning.server is not None and sc.learning.server not in nodes:
        raise ScenarioError(
            "learning.server", f"unknown node {sc.learning.server!r}; nodes are {known}"
        )
    for i, f in enumerate(sc.faults):
        for j, v in enumerate(f.link or ()):
            if v not in nodes:
                raise ScenarioError(
                    f"faults[{i}].link[{j}]", f"unknown node {v!r}; nodes are {known}"
                )
        if f.node is not None and f.node not in nodes:
            raise ScenarioError(f"faults[{i}].node", f"unknown node {f.node!r}; nodes are {known}")


def _from_mapping(data: Any, source: str = "") -> Scenario:
    if not isinstance(data, dict):
        raise ScenarioError(source, f"a scenario must be a mapping, got {type(data).__name__}")
    try:
        sc = Scenario.model_validate(data)
    except ValidationError as exc:
        raise _from_validation_error(exc, Scenario) from None
    _check_references(sc)
    return sc


def parse_scenario(text: str, *, source: str = "") -> Scenario:
    """Parse and validate a scenario from YAML text.

    Parameters
    ----------
    text : str
        The YAML document.
    source : str, optional
        Where it came from, for error messages.

    Raises
    ------
    ScenarioError
        For malformed YAML or any invalid field, naming the YAML path.
    """
    return _from_mapping(load_yaml(text, source or "<yaml>"), source)


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file; a ``topology.file`` is resolved against it."""
    p = Path(path)
    sc = parse_scenario(read_text(p), source=str(p))
    if sc.topology.file is not None and not Path(sc.topology.file).is_absolute():
        topo = sc.topology.model_copy(update={"file": str(p.parent / sc.topology.file)})
        sc = sc.model_copy(update={"topology": topo})
    return sc
