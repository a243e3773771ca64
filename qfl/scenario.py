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
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from network.cipher import GCM_MAX_KEY_BYTES
from network.topology import (
    DEFAULT_BANDWIDTH_BPS,
    DEFAULT_FLOPS_PER_S,
    DEFAULT_POOL_BITS,
    DEFAULT_SYSTEM,
)
from qkd.errors import QflError

__all__ = [
    "CipherSpec",
    "FaultSpec",
    "LearningSpec",
    "LinkSpec",
    "NodeSpec",
    "OutputSpec",
    "QKDSpec",
    "Scenario",
    "ScenarioError",
    "TopologySpec",
    "apply_overrides",
    "check_folder_name",
    "load_scenario",
    "load_yaml",
    "parse_scenario",
    "read_text",
    "scenario_json_schema",
]

Positive = Annotated[float, Field(gt=0)]
Protocol = Literal["decoy-bb84", "decoy-vacuum-weak", "decoy-1", "bb84-no-decoy", "single-photon"]
NonNegative = Annotated[float, Field(ge=0)]


class ScenarioError(QflError, ValueError):
    """A scenario file (or an override) is invalid.

    Parameters
    ----------
    path : str
        The YAML path of the bad field (``topology.links[3].length_km``), or the file.
    message : str
        What is wrong: the value and what is allowed.
    """

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        self.message = message
        super().__init__(f"{path}: {message}" if path else message)

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuilt from (path, message) when pickled: worker processes, Ray, SimPy.
        return (type(self), (self.path, self.message))


_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")


def check_folder_name(name: str, where: str) -> str:
    """Check that ``name`` can name a folder under an output directory: one path component
    of letters, digits, ``_``, ``.`` and ``-``, not starting with a dot (so not ``.`` or
    ``..``, which would write outside the output directory).

    Raises
    ------
    ScenarioError
        On ``where`` (the YAML path or option that carried the name).

    Examples
    --------
    >>> check_folder_name("metro-2", "name")
    'metro-2'
    >>> check_folder_name("..", "name")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    qfl.scenario.ScenarioError: name: must be one folder name (...), got '..'
    """
    if not isinstance(name, str) or not _NAME.match(name) or len(name) > 200:
        shown = repr(name) if len(str(name)) <= 80 else repr(str(name)[:77] + "...")
        raise ScenarioError(
            where,
            "must be one folder name (letters, digits, '_', '.', '-', not starting with '.'), "
            f"got {shown}",
        )
    return name


class _Frozen(BaseModel):
    model_config = ConfigDict(
        frozen=True, extra="forbid", validate_default=True, allow_inf_nan=False
    )


class NodeSpec(_Frozen):
    """A node of the topology."""

    name: str = Field(min_length=1, description="Unique node name.")
    role: Literal["client", "server", "relay"] = Field(
        "client", description="client (learns), server (aggregates) or trusted relay."
    )
    flops_per_s: Positive | None = Field(
        None, description="Compute speed for local training (FLOP/s); default from compute."
    )
    latitude: float | None = Field(
        None,
        ge=-90,
        le=90,
        description="Degrees north, in [-90, 90]: with longitude, gives link lengths and map "
        "positions.",
    )
    longitude: float | None = Field(
        None,
        ge=-180,
        le=180,
        description="Degrees east, in [-180, 180].",
    )


class LinkSpec(_Frozen):
    """A fibre link between two nodes, with its QKD system."""

    a: str = Field(description="One end (a node name).", min_length=1)
    b: str = Field(description="The other end (a node name).", min_length=1)
    length_km: NonNegative | None = Field(
        None, description="Fibre length; default: great-circle distance x routing factor."
    )
    attenuation_db_per_km: NonNegative | None = Field(
        None,
        description="Fibre loss, dB/km; default: the system's (0.2 dB/km for standard fibre "
        "presets).",
    )
    preset: str | None = Field(None, description="QKD system preset; default qkd.preset.")
    protocol: Protocol | None = Field(
        None, description="Key-rate model of this link's system; default qkd.protocol."
    )
    skr_bps: NonNegative | None = Field(
        None, description="Measured secret key rate (bit/s); overrides the physical model."
    )
    pool_capacity_bits: Positive | None = Field(
        None,
        description="This link's key store, bits; default qkd.pool_capacity_bits.",
    )
    initial_fill_bits: NonNegative | None = Field(
        None,
        description="Key in this link's store at t = 0, bits; default qkd.initial_fill_bits.",
    )
    bandwidth_bps: Positive | None = Field(
        None,
        description="This link's classical bandwidth, bit/s; default qkd.bandwidth_bps.",
    )
    latency_s: NonNegative | None = Field(None, description="Overrides length x group index / c.")
    label: str | None = Field(
        None,
        description="A name for tables and plots (e.g. the published system).",
    )


class TopologySpec(_Frozen):
    """Nodes and links, inline or from a GraphML/GML file (Internet Topology Zoo)."""

    nodes: tuple[NodeSpec, ...] = Field((), description="The nodes (inline topology).")
    links: tuple[LinkSpec, ...] = Field(
        (),
        description="The fibre links (inline topology); undirected, one per pair.",
    )
    file: str | None = Field(None, description="GraphML or GML file, relative to the scenario.")
    routing_factor: Annotated[float, Field(ge=1)] = Field(
        1.3,
        description="Fibre length over great-circle distance (>= 1) where a link's length comes "
        "from "
        "coordinates.",
    )
    relays: tuple[str, ...] = Field((), description="With `file`: nodes that are trusted relays.")
    servers: tuple[str, ...] = Field((), description="With `file`: nodes that are servers.")

    @model_validator(mode="after")
    def _inline_or_file(self) -> TopologySpec:
        if self.file is None and not self.nodes:
            raise ValueError("give either `nodes` (and `links`) or `file`")
        if self.file is not None and (self.nodes or self.links):
            raise ValueError("give either inline `nodes`/`links` or `file`, not both")
        return self


class QKDSpec(_Frozen):
    """QKD defaults for every link; links may override them."""

    preset: str = Field(DEFAULT_SYSTEM, description="QKD system preset (qkd.params.PRESETS).")
    protocol: Protocol = Field(
        "decoy-bb84",
        description="Key-rate model of the links' systems. With key_model finite-blocks: "
        "decoy-bb84 is the three-intensity finite-key bound of Lim et al. 2014 (weakest "
        "intensity 2e-4), decoy-vacuum-weak the same with a true vacuum, decoy-1 the one-decoy "
        "bound of Rusca et al. 2018. With asymptotic-fluid: "
        "decoy-bb84 (infinitely many decoys), decoy-vacuum-weak (vacuum + one weak decoy), "
        "bb84-no-decoy (GLLP), single-photon (Ma et al. 2005).",
    )
    key_model: Literal["finite-blocks", "asymptotic-fluid"] = Field(
        "finite-blocks",
        description="finite-blocks: a link collects block_size pulses, post-processes them for "
        "postprocess_s, then the block's finite-key length lands in its pool at once (minus "
        "auth_bits_per_block); asymptotic-fluid: key flows in continuously at the asymptotic "
        "rate (the small-block limit, optimistic).",
    )
    block_size: Positive | None = Field(
        None,
        description="Pulses per post-processing block N (finite-blocks); default: the "
        "preset's, else 1e10.",
    )
    eps_sec: Annotated[float, Field(gt=0, lt=1)] = Field(
        1e-10, description="Secrecy parameter of each block (finite-blocks)."
    )
    eps_cor: Annotated[float, Field(gt=0, lt=1)] = Field(
        1e-15, description="Correctness parameter of each block (finite-blocks)."
    )
    postprocess_s: NonNegative | None = Field(
        None,
        description="Seconds from the end of a block's collection until its key lands "
        "(sifting, estimation, error correction, privacy amplification); default: one block "
        "time (the next block is collected while this one is processed).",
    )
    auth_bits_per_block: NonNegative = Field(
        1024.0,
        description="Key bits QKD's own classical channel spends per block to authenticate "
        "its post-processing messages (a few Wegman-Carter tags per block; finite-blocks).",
    )
    rate_scale: NonNegative = Field(1.0, description="Multiplies every link's secret key rate.")
    pool_capacity_bits: Positive = Field(DEFAULT_POOL_BITS, description="Key store per link.")
    initial_fill_bits: NonNegative = Field(0.0, description="Key in each store at t = 0.")
    bandwidth_bps: Positive = Field(DEFAULT_BANDWIDTH_BPS, description="Classical bandwidth.")
    misalignment: Annotated[float, Field(ge=0, le=0.5)] | None = Field(
        None,
        description="Overrides the preset's optical misalignment error e_d, in [0, 0.5].",
    )
    detector_efficiency: Annotated[float, Field(gt=0, le=1)] | None = Field(
        None,
        description="Overrides the preset's Bob efficiency eta_Bob, in (0, 1].",
    )
    dark_count_prob: Annotated[float, Field(ge=0, lt=1)] | None = Field(
        None,
        description="Overrides the preset's dark-count probability per gate Y0, in [0, 1).",
    )
    attenuation_db_per_km: NonNegative | None = Field(
        None,
        description="Overrides every link's fibre loss, dB/km.",
    )


class CipherSpec(_Frozen):
    """How model transfers are encrypted, hence how much key they take."""

    policy: Literal["otp", "aes-256-gcm", "none"] = Field(
        "aes-256-gcm",
        description="otp (one key bit per payload bit, information-theoretic), aes-256-gcm (256 "
        "key bits "
        "per re-key) or none.",
    )
    rekey_bytes: Positive | None = Field(1e6, description="AES: a new 256-bit key every N bytes.")
    rekey_seconds: Positive | None = Field(None, description="AES: and/or every T seconds.")

    @field_validator("rekey_bytes")
    @classmethod
    def _key_bytes(cls, v: float | None) -> float | None:
        """A whole number of bytes within AES-GCM's limit per key (NIST SP 800-38D)."""
        allowed = f"a whole number of bytes in [1, {GCM_MAX_KEY_BYTES}] (GCM's limit per key)"
        if v is None:  # no limit but GCM's (infinite values are refused as not finite)
            return v
        if v != int(v) or not 1 <= int(v) <= GCM_MAX_KEY_BYTES:
            raise ValueError(f"must be {allowed}")
        return v


class FaultSpec(_Frozen):
    """A scheduled fault."""

    kind: Literal["link-cut", "node-down", "eavesdropper"] = Field(
        description="link-cut, node-down or eavesdropper.",
    )
    at_s: NonNegative = Field(description="Simulated time the fault starts, s.")
    until_s: NonNegative | None = Field(None, description="Repair time; None = permanent.")
    link: tuple[str, str] | None = Field(
        None,
        description="link-cut and eavesdropper: the link's two ends.",
    )
    node: str | None = Field(None, description="node-down: the node.")
    qber: Annotated[float, Field(gt=0, le=0.5)] = Field(
        0.25,
        description="eavesdropper: the QBER it causes; above the abort threshold (11 %) the link "
        "makes no"
        " key.",
    )
    wipe_pool: bool = Field(
        False,
        description="Also empty the link's key store when the fault starts.",
    )

    @model_validator(mode="after")
    def _target(self) -> FaultSpec:
        if self.kind in ("link-cut", "eavesdropper") and self.link is None:
            raise ValueError(f"a {self.kind} fault needs `link: [a, b]`")
        if self.kind == "node-down" and self.node is None:
            raise ValueError("a node-down fault needs `node`")
        if self.until_s is not None and self.until_s < self.at_s:
            raise ValueError(f"until_s ({self.until_s}) must be >= at_s ({self.at_s})")
        return self


Method = Literal["def-fd", "def-kt", "gossip-avg", "fedavg", "fedavg-multiexit", "ssl-backbone"]
Dataset = Literal["fashion-mnist", "unimib-shar", "synthetic-har", "flowers102+intel"]


class LearningSpec(_Frozen):
    """The learning job: method, data, model and hyperparameters."""

    method: Method = Field(
        description="def-fd, def-kt, gossip-avg (decentralized), fedavg, fedavg-multiexit, "
        "ssl-backbone "
        "(with a server); see qfl.cosim.methods.",
    )
    dataset: Dataset = Field(
        description="fashion-mnist (decentralized and FedAvg), synthetic-har or unimib-shar "
        "(FedAvg: the "
        "LSTM), flowers102+intel (ssl-backbone).",
    )
    model: Literal["cnn", "resnet-me", "lstm-me", "resnet18", "resnet50"] | None = Field(
        None,
        description="Must match the method and dataset: cnn (Def-FD family), resnet-me / lstm-me "
        "(FedAvg "
        "on images / HAR), resnet18 / resnet50 (SSL encoder); default: the method's.",
    )
    clients: tuple[str, ...] = Field((), description="Client nodes; default: every client node.")
    server: str | None = Field(None, description="FedAvg / SSL aggregator node.")
    partition: Literal["classes", "dirichlet"] | None = Field(
        None,
        description="How client data are split: classes (Def-FD family: classes_per_client "
        "classes each) or dirichlet (FedAvg family: label skew Dirichlet(alpha)); each method "
        "implements one, which this field may name.",
    )
    classes_per_client: Annotated[int, Field(ge=1)] = Field(
        8,
        description="Def-FD family: classes each client holds (the paper: 8 of 10).",
    )
    alpha: Positive = Field(
        0.2,
        description="FedAvg family: Dirichlet concentration of the label skew (the paper: 0.2; "
        "smaller is"
        " more skewed).",
    )
    holdout_fraction: Annotated[float, Field(gt=0, lt=1)] = Field(
        0.2,
        description="Share of each client's data held out for its local (personalized) accuracy.",
    )
    samples_per_client: Annotated[int, Field(ge=1)] | None = Field(
        None, description="Keep at most this many samples per client (None: all)."
    )
    test_samples: Annotated[int, Field(ge=1)] | None = Field(
        None, description="Global accuracy on the first N test samples (None: all)."
    )
    senders_per_round: Annotated[int, Field(ge=1)] | None = Field(
        None, description="Decentralized methods: senders per round (None: half the clients)."
    )
    rounds: Annotated[int, Field(ge=1, le=100_000)] = Field(
        20,
        description="Rounds to run (at most 100000); the horizon may stop earlier.",
    )
    local_epochs: Annotated[int, Field(ge=1)] = Field(
        1,
        description="Epochs of a client's local update per round.",
    )
    fusion_epochs: Annotated[int, Field(ge=1)] = Field(
        1,
        description="Def-FD family: epochs of fusing a received model.",
    )
    batch_size: Annotated[int, Field(ge=1)] = Field(32, description="Samples per training step.")
    lr: Positive = Field(0.01, description="Learning rate (SGD; Adam for SSL pretraining).")
    momentum: Annotated[float, Field(ge=0, lt=1)] = Field(
        0.9,
        description="SGD momentum, in [0, 1).",
    )
    weight_decay: NonNegative = Field(0.0, description="L2 weight decay.")
    gamma: NonNegative = Field(0.03, description="Def-FD feature-loss weight.")
    feature_loss: Literal["l2", "cos", "mse"] = Field(
        "mse",
        description="Def-FD feature-map loss: l2, cos or mse.",
    )
    temperature: Positive | Literal["adaptive"] = Field(
        3.0,
        description="Distillation temperature; 'adaptive' (multi-exit) follows Phuong & Lampert.",
    )
    width: Annotated[int, Field(ge=1)] = Field(
        16, description="Model base width (multi-exit, SSL)."
    )
    round_budget_s: Positive | None = Field(
        None,
        description="Multi-exit: a client trains the deepest exit whose local update fits this "
        "many simulated seconds (None: every client trains all exits).",
    )
    distill_c: NonNegative = Field(0.5, description="Multi-exit distillation weight C.")
    image_size: Annotated[int, Field(ge=8)] = Field(
        32,
        description="SSL: side of the square images, pixels.",
    )
    target_accuracy: Annotated[float, Field(gt=0, le=1)] = Field(
        0.75,
        description="Accuracy whose first crossing gives the summary's rounds and time to target.",
    )
    eval_every: Annotated[int, Field(ge=1)] = Field(
        1,
        description="Evaluate every N rounds (and after the last).",
    )
    engine: Literal["auto", "batched", "sequential"] = Field(
        "auto",
        description="Training engine: clients vectorized (batched) or one after another; "
        "auto = batched on a GPU, and on a CPU where every model has a stacked CPU route (the "
        "Def-FD CNN's fused kernels, the multi-exit ResNet and LSTM); sequential otherwise "
        "(faster there, see benchmarks/README.md).",
    )


class ComputeSpec(_Frozen):
    """How learning steps take simulated time."""

    default_flops_per_s: Positive = Field(
        DEFAULT_FLOPS_PER_S, description="Node speed when a node sets none."
    )
    backward_factor: Annotated[float, Field(ge=1)] = Field(
        3.0, description="A training step costs this many forward passes."
    )


class OutputSpec(_Frozen):
    """Where and what to write."""

    dir: str = Field("runs", description="Parent folder of run folders (relative to cwd).")
    plots: bool = Field(True, description="Draw the PNG plots.")


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


_UNION_TAGS = {"float", "int", "str", "bool", "none", "list", "tuple", "dict"}


def _clean_loc(loc: tuple[int | str, ...]) -> tuple[int | str, ...]:
    """``loc`` without pydantic's union-member and validator tags (``constrained-float``)."""
    return tuple(
        p
        for p in loc
        if isinstance(p, int) or (str(p).isidentifier() and str(p) not in _UNION_TAGS)
    )


def _loc_to_path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in _clean_loc(loc):
        out += f"[{part}]" if isinstance(part, int) else ("." if out else "") + str(part)
    return out


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _allowed_keys(loc: tuple[int | str, ...]) -> list[str]:
    """The field names of the model that holds the (unknown) key at ``loc``."""
    model: type[BaseModel] | None = Scenario
    for part in loc[:-1]:
        if isinstance(part, int) or model is None:
            continue
        info = model.model_fields.get(str(part))
        model = None if info is None else _model_in(info.annotation)
    return list(model.model_fields) if model is not None else []


def _description(loc: tuple[int | str, ...]) -> str:
    """The schema's description of the field at ``loc`` ('' if none)."""
    model: type[BaseModel] | None = Scenario
    for part in loc[:-1]:
        if isinstance(part, int) or model is None:
            continue
        info = model.model_fields.get(str(part))
        model = None if info is None else _model_in(info.annotation)
    info = model.model_fields.get(str(loc[-1])) if model is not None and loc else None
    return " ".join((info.description or "").split()) if info is not None else ""


# pydantic error types -> what is allowed, phrased to follow the path
_TYPE_MESSAGES = {
    "int_parsing": "must be an integer",
    "int_type": "must be an integer",
    "int_from_float": "must be a whole number",
    "float_parsing": "must be a number",
    "float_type": "must be a number",
    "finite_number": "must be finite",
    "bool_parsing": "must be true or false",
    "bool_type": "must be true or false",
    "string_type": "must be a string",
    "tuple_type": "must be a list",
    "list_type": "must be a list",
    "dict_type": "must be a mapping",
    "model_type": "must be a mapping",
    "model_attributes_type": "must be a mapping",
}


def _short(value: Any, limit: int = 80) -> str:
    """``repr(value)``, cut to ``limit`` characters (a bad 1 MB list is not echoed whole)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 5] + " ...]"[:5]


def _format_error(err: Mapping[str, Any]) -> tuple[str, str]:
    loc = _clean_loc(tuple(err.get("loc", ())))
    path = _loc_to_path(loc)
    typ = str(err.get("type", ""))
    value = err.get("input")
    ctx = err.get("ctx") or {}
    if typ == "extra_forbidden":
        key = str(loc[-1]) if loc else "?"
        allowed = _allowed_keys(loc)
        close = difflib.get_close_matches(key, allowed, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return path, f"unknown key {key!r}{hint}; allowed keys: {', '.join(allowed)}"
    if typ == "missing":
        if loc and isinstance(loc[-1], int):  # a tuple with too few items
            return _loc_to_path(loc[:-1]), f"must have {loc[-1] + 1} items, got {_short(value)}"
        about = _description(loc)
        return path, "missing; this field is required" + (f" ({about})" if about else "")
    if typ in _TYPE_MESSAGES:
        msg = _TYPE_MESSAGES[typ]
        if typ == "model_type" and ctx.get("class_name"):
            keys = list(_model_fields(str(ctx["class_name"])))
            if keys:
                msg += f" with keys {', '.join(keys)}"
        return path, f"{msg}, got {_short(value)}"
    if typ == "string_pattern_mismatch":
        return path, f"must match the pattern {ctx.get('pattern')}, got {_short(value)}"
    msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
    msg = msg.replace("Input should be", "must be").replace("input should be", "must be")
    msg = msg.replace("String should", "must").replace("Tuple should", "must")
    for words, sym in _COMPARISONS:
        msg = msg.replace(words, sym)
    if msg:
        msg = msg[0].lower() + msg[1:]
    if not isinstance(value, dict | list):
        msg = f"{msg}, got {_short(value)}" if msg else f"got {_short(value)}"
    elif typ == "too_long" or typ == "too_short":
        msg = f"{msg.split(' after validation')[0]}, got {_short(value)}"
    return path, msg


def _model_fields(class_name: str) -> list[str]:
    stack: list[type[BaseModel]] = [Scenario]
    seen: set[type[BaseModel]] = set()
    while stack:
        model = stack.pop()
        if model in seen:
            continue
        seen.add(model)
        if model.__name__ == class_name:
            return list(model.model_fields)
        for info in model.model_fields.values():
            sub = _model_in(info.annotation)
            if sub is not None:
                stack.append(sub)
    return []


_COMPARISONS = (
    ("greater than or equal to", ">="),
    ("less than or equal to", "<="),
    ("greater than", ">"),
    ("less than", "<"),
)


def _from_validation_error(exc: ValidationError) -> ScenarioError:
    errors = exc.errors()
    path, msg = _format_error(errors[0])
    same = [_format_error(e)[1] for e in errors[1:] if _format_error(e)[0] == path]
    if same:  # the members of a union (``3.0`` or ``"adaptive"``): one line for all
        got = msg.rpartition(", got ")[2]
        options = [m.rpartition(", got ")[0].removeprefix("must be ") for m in [msg, *same]]
        msg = f"must be {' or '.join(options)}, got {got}"
    more = len(errors) - 1 - len(same)
    if more:
        msg += f" (and {more} more error{'s' if more > 1 else ''})"
    return ScenarioError(path, msg)


def _check_method(sc: Scenario) -> None:
    """The dataset and model against the method's registry entry (:mod:`qfl.cosim.methods`)."""
    from qfl.cosim.methods import get_method

    lr = sc.learning
    spec = get_method(lr.method)
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
        return  # names are checked once the file is read
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
    check_node_refs(sc, seen)
    check_fault_links(sc, set(pairs))


def _check_presets(sc: Scenario) -> None:
    from qkd.params import PRESETS

    known = ", ".join(repr(k) for k in sorted(PRESETS))
    if sc.qkd.preset not in PRESETS:
        raise ScenarioError("qkd.preset", f"must be one of {known}, got {sc.qkd.preset!r}")
    for i, link in enumerate(sc.topology.links):
        if link.preset is not None and link.preset not in PRESETS:
            raise ScenarioError(
                f"topology.links[{i}].preset", f"must be one of {known}, got {link.preset!r}"
            )


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
        raise _from_validation_error(exc) from None
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


MAX_FILE_BYTES = 1 << 20
"""Largest scenario or sweep file read (1 MiB; the shipped ones are a few KiB)."""
MAX_YAML_VALUES = 100_000
"""Most values a YAML document may expand to, aliases counted at every use."""


def load_yaml(text: str, source: str) -> Any:
    r"""Parse one YAML document safely: plain data only (the C loader where present), at most
    :data:`MAX_FILE_BYTES`, and at most :data:`MAX_YAML_VALUES` values once aliases are
    expanded (an "alias bomb" of a few lines would otherwise expand to gigabytes).

    Raises
    ------
    ScenarioError
        On ``source``: malformed YAML (with its line and column), too large, too many values.

    Examples
    --------
    >>> load_yaml("a: &x [1, 2]\nb: *x", "doc")
    {'a': [1, 2], 'b': [1, 2]}
    >>> bomb = "a: &a [x, x]\n" + "".join(f"{c}: &{c} [*{p}, *{p}]\n"
    ...     for p, c in zip("abcdefghijklmnopqrst", "bcdefghijklmnopqrstu"))
    >>> load_yaml(bomb, "doc")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    qfl.scenario.ScenarioError: doc: the YAML expands to more than 100000 values ...
    """
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_FILE_BYTES:
        raise ScenarioError(source, f"{size} bytes; a scenario or sweep file may hold at most "
                            f"{MAX_FILE_BYTES} bytes")  # fmt: skip
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded_values(node) > MAX_YAML_VALUES:
            raise ScenarioError(
                source,
                f"the YAML expands to more than {MAX_YAML_VALUES} values (anchors and aliases "
                "repeated inside each other); write the values out",
            )
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "?"
        problem = getattr(exc, "problem", None) or "malformed YAML"
        raise ScenarioError(source, f"malformed YAML at {where}: {problem}") from None
    finally:
        loader.dispose()


def _expanded_values(root: yaml.Node) -> int:
    """How many values the node graph holds with every alias expanded (a recursive alias:
    infinitely many). Linear in the number of distinct nodes."""
    size: dict[int, int] = {}
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        children: list[yaml.Node] = []
        if isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        if done:
            size[id(node)] = min(1 + sum(size[id(c)] for c in children), MAX_YAML_VALUES + 1)
            continue
        if id(node) in size:
            continue
        if any(size.get(id(c)) == -1 for c in children) or size.get(id(node)) == -1:
            return MAX_YAML_VALUES + 1  # an alias to an enclosing node: a recursive document
        size[id(node)] = -1  # in progress
        stack.append((node, True))
        stack.extend((c, False) for c in children if id(c) not in size)
    return size[id(root)]


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file; a ``topology.file`` is resolved against it."""
    p = Path(path)
    sc = parse_scenario(read_text(p), source=str(p))
    if sc.topology.file is not None and not Path(sc.topology.file).is_absolute():
        topo = sc.topology.model_copy(update={"file": str(p.parent / sc.topology.file)})
        sc = sc.model_copy(update={"topology": topo})
    return sc


def read_text(path: Path) -> str:
    """A scenario or sweep file's text; a missing, unreadable, too large or non-UTF-8 file
    is a :class:`ScenarioError` on the file."""
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise ScenarioError(str(path), f"{path.stat().st_size} bytes; a scenario or sweep "
                                f"file may hold at most {MAX_FILE_BYTES} bytes")  # fmt: skip
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(str(path), f"cannot read the file ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise ScenarioError(str(path), "not a text file (it is not UTF-8)") from None


def _parse_scalar(text: str) -> Any:
    """A command-line value as YAML (``0.3`` -> 0.3, ``[a, b]`` -> list); unlike YAML 1.1,
    ``1e3`` and ``1e-3`` are numbers."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, str):
        try:
            return float(value) if value.strip().lower() not in _NOT_NUMBERS else value
        except ValueError:
            return value
    return value


_NOT_NUMBERS = {"nan", "inf", "+inf", "-inf", "infinity", "+infinity", "-infinity"}


def apply_overrides(sc: Scenario, overrides: Mapping[str, Any]) -> Scenario:
    """Return a new scenario with dotted-path fields replaced, validated again.

    Parameters
    ----------
    sc : Scenario
        The base scenario.
    overrides : mapping
        ``{"qkd.rate_scale": 0.3, "learning.gamma": 0.01, "topology.links[2].skr_bps": 1e3}``;
        string values are parsed as YAML scalars (``"0.3"`` -> 0.3).

    Raises
    ------
    ScenarioError
        For a path that names no field, or a value that fails validation.

    Examples
    --------
    >>> sc = parse_scenario('''
    ... name: t
    ... topology: {nodes: [{name: a}, {name: b}], links: [{a: a, b: b, length_km: 1}]}
    ... learning: {method: fedavg, dataset: fashion-mnist}
    ... ''')
    >>> apply_overrides(sc, {"qkd.rate_scale": "0.5"}).qkd.rate_scale
    0.5
    """
    data = sc.model_dump(mode="python", exclude_none=False)
    for dotted, raw in overrides.items():
        value = _parse_scalar(raw) if isinstance(raw, str) else raw
        _set_path(data, dotted, value)
    return _from_mapping(data)


def _split_path(dotted: str) -> list[str | int]:
    parts: list[str | int] = []
    for chunk in dotted.split("."):
        name, _, rest = chunk.partition("[")
        if name:
            parts.append(name)
        while rest:
            idx, _, rest = rest.partition("]")
            if not idx.lstrip("-").isdigit():
                raise ScenarioError(dotted, "an index must be an integer, like links[3]")
            parts.append(int(idx))
            rest = rest.lstrip("[")
    if not parts:
        raise ScenarioError(dotted, "an empty field path")
    return parts


def _set_path(data: Any, dotted: str, value: Any) -> None:
    parts = _split_path(dotted)
    node = data
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        here = _dotted(parts[: depth + 1])
        if isinstance(part, int):
            if not isinstance(node, list | tuple):
                raise ScenarioError(dotted, f"{_dotted(parts[:depth])!r} is not a list")
            if not -len(node) <= part < len(node):
                raise ScenarioError(
                    dotted,
                    f"no item {part}: {_dotted(parts[:depth])!r} has {len(node)} items"
                    + (f" (0-{len(node) - 1})" if node else ""),
                )
            if isinstance(node, tuple):
                raise ScenarioError(dotted, "internal: tuple container")
            if last:
                node[part] = value
            else:
                node[part] = _thaw(node[part])
                node = node[part]
        else:
            if not isinstance(node, dict) or part not in node:
                where = _dotted(parts[:depth])
                if not isinstance(node, dict):
                    raise ScenarioError(dotted, f"{where!r} has no fields (it is a value)")
                close = difflib.get_close_matches(str(part), list(node), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ScenarioError(
                    dotted,
                    f"unknown field {here!r}{hint}; fields "
                    + (f"of {where!r} " if where else "")
                    + f"are {', '.join(node)}",
                )
            if last:
                node[part] = value
            else:
                node[part] = _thaw(node[part])
                node = node[part]


def _dotted(parts: list[str | int]) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else ("." if out else "") + p
    return out


def _thaw(v: Any) -> Any:
    if isinstance(v, tuple):
        return [_thaw(x) for x in v]
    if isinstance(v, list):
        return [_thaw(x) for x in v]
    if isinstance(v, dict):
        return {k: _thaw(x) for k, x in v.items()}
    return v


def scenario_json_schema() -> dict[str, Any]:
    """The JSON Schema of scenario files (for editor completion)."""
    return Scenario.model_json_schema()


def _type_text(ann: Any) -> str:
    """A field's type as a reader wants it: the allowed values, the number's range."""
    origin, args = get_origin(ann), get_args(ann)
    if origin is Annotated:
        bounds = []
        for meta in args[1:]:
            for m in getattr(meta, "metadata", [meta]):
                for op, sym in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<=")):
                    if getattr(m, op, None) is not None:
                        bounds.append(f"{sym} {getattr(m, op):g}")
        return _type_text(args[0]) + (f" ({', '.join(bounds)})" if bounds else "")
    if origin is Literal:
        return " / ".join(f"`{v}`" for v in args)
    if origin in (Union, UnionType):
        parts = [_type_text(a) for a in args if a is not type(None)]
        return " or ".join(parts) + (" or null" if type(None) in args else "")
    if origin is tuple:
        return f"list of {_type_text(args[0])}"
    if origin is dict:
        return "mapping"
    names = {float: "number", int: "integer", str: "text", bool: "true / false"}
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return "section"
    return names.get(ann, getattr(ann, "__name__", str(ann)))


def _default_text(info: Any) -> str:
    if info.is_required():
        return "required"
    d = info.get_default(call_default_factory=True)
    if isinstance(d, BaseModel) or d in ((), {}):
        return "—"
    if d == "":
        return "(empty)"
    return f"`{d}`" if d is not None else "null"


def scenario_reference() -> str:
    """``scenarios/REFERENCE.md``: every scenario field with its type or allowed values, its
    default and what it changes (from the schema's descriptions; a test keeps the file in
    sync: ``qfl schema --markdown -o scenarios/REFERENCE.md``)."""
    lines = [
        "# Scenario file reference",
        "",
        "Generated from the schema (`qfl schema --markdown`); every field of a scenario YAML "
        "file, by section. Unknown keys are refused.",
    ]
    sections: list[tuple[str, type[BaseModel]]] = [("(top level)", Scenario)]
    done: set[type[BaseModel]] = set()
    while sections:
        title, model = sections.pop(0)
        if model in done:
            continue
        done.add(model)
        lines += ["", f"## {title}", "", "| field | type / allowed | default | what it does |"]
        lines.append("|---|---|---|---|")
        for name, info in model.model_fields.items():
            desc = " ".join((info.description or "").split())
            typ = _type_text(Annotated[info.annotation, *info.metadata] if info.metadata
                             else info.annotation).replace("|", "or")  # fmt: skip
            lines.append(f"| `{name}` | {typ} | {_default_text(info)} | {desc} |")
            sub = _model_in(info.annotation)
            if sub is not None:
                sections.append((f"{title.replace('(top level)', '').strip('.')}.{name}".strip("."),
                                 sub))  # fmt: skip
    return "\n".join(lines) + "\n"


DEFAULT_QUICK: dict[str, int] = {
    "learning.rounds": 3,
    "learning.samples_per_client": 300,
    "learning.test_samples": 2000,
}
"""``--quick`` on a scenario without a ``quick:`` section: at most these values."""


def apply_quick(sc: Scenario) -> tuple[Scenario, list[str]]:
    """The reduced scenario of ``--quick`` and what was reduced (``field: old -> new``).

    The scenario's own ``quick:`` overrides, or, without them, :data:`DEFAULT_QUICK` (each a
    cap: a value already smaller stays), so ``--quick`` is never silently a full run.

    Examples
    --------
    >>> sc = parse_scenario('''
    ... name: t
    ... topology: {nodes: [{name: a}, {name: b}], links: [{a: a, b: b, length_km: 1}]}
    ... learning: {method: def-fd, dataset: fashion-mnist, rounds: 50}
    ... ''')
    >>> for change in apply_quick(sc)[1]:
    ...     print(change)
    learning.rounds: 50 -> 3
    learning.samples_per_client: None -> 300
    learning.test_samples: None -> 2000
    """
    if sc.quick:
        overrides = dict(sc.quick)
    else:
        overrides = {}
        for path, cap in DEFAULT_QUICK.items():
            current = getattr(sc.learning, path.split(".")[1])
            if current is None or current > cap:
                overrides[path] = cap
    before = sc.model_dump(mode="json")
    out = apply_overrides(sc, overrides) if overrides else sc
    after = out.model_dump(mode="json")
    changes = []
    for path in overrides:
        old: Any = before
        new: Any = after
        for part in path.split("."):
            old = old.get(part) if isinstance(old, dict) else None
            new = new.get(part) if isinstance(new, dict) else None
        if old != new:
            changes.append(f"{path}: {old} -> {new}")
    return out, changes
