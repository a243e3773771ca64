"""The ``qkd`` section: the QKD system and key-store defaults of every link, and the
user's own systems (``qkd.systems``), which extend the presets of :mod:`qkd.params`.

Examples
--------
>>> q = QKDSpec.model_validate({"system": "mine", "systems": {"mine": {
...     "base": "gys-2004", "clock_hz": 1e8, "detector": {"dark_count_prob": 8e-8}}}})
>>> s = system_registry(q)["mine"]
>>> s.source.clock_hz, s.detector.dark_count_prob, s.detector.efficiency
(100000000.0, 8e-08, 0.045)
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field

from network.topology import DEFAULT_BANDWIDTH_BPS, DEFAULT_POOL_BITS, DEFAULT_SYSTEM
from qfl.scenario.base import NonNegative, Positive, ScenarioError, _Frozen
from qkd.errors import ParameterError
from qkd.params import SystemRegistry

__all__ = [
    "BB84_PROTOCOLS",
    "Protocol",
    "QKDSpec",
    "SystemDef",
    "protocol_names",
    "read_systems",
    "system_registry",
]

BB84_PROTOCOLS = ("decoy-bb84", "decoy-vacuum-weak", "decoy-1", "bb84-no-decoy", "single-photon")
"""The prepare-and-measure BB84 key-rate models a link's ``system`` (qkd.params) runs."""


def protocol_names() -> tuple[str, ...]:
    """What ``protocol:`` accepts: the BB84 models, then every other registered link kind
    (:mod:`qkd.kinds`: MDI, twin-field, CV-QKD, ...)."""
    from qkd.kinds import kind_names

    return BB84_PROTOCOLS + tuple(k for k in kind_names() if k not in BB84_PROTOCOLS)


def _protocol(value: str) -> str:
    allowed = protocol_names()
    if value not in allowed:
        raise ValueError(f"must be one of {', '.join(repr(a) for a in allowed)}")
    return value


Protocol = Annotated[str, AfterValidator(_protocol)]
"""A link's kind: a BB84 model or a registered link kind (checked against the registry)."""


class DetectorDef(_Frozen):
    """Bob's detection system (``qkd.params.Detector``); unset values come from the base."""

    efficiency: float | None = Field(
        None, description="eta_Bob in (0, 1]: detector efficiency x Bob's optics transmittance."
    )
    dark_count_prob: float | None = Field(
        None, description="Background yield Y0 per gate (all detectors), in [0, 1)."
    )
    dead_time_s: float | None = Field(None, description="Dead time per click, s, in [0, 1).")
    afterpulse_prob: float | None = Field(
        None, description="After-pulse probability per click, in [0, 1)."
    )


class SourceDef(_Frozen):
    """Alice's weak-coherent source (``qkd.params.Source``; the clock is ``clock_hz``)."""

    mu: float | None = Field(
        None,
        description="Signal mean photon number (> 0): the asymptotic models' intensity unless "
        "optimised; the finite-key models optimise their own.",
    )
    decoys: tuple[float, ...] | None = Field(
        None, description="Decoy intensities, weakest last, each >= 0 and < mu."
    )


class FibreDef(_Frozen):
    """The fibre (``qkd.params.Fibre``)."""

    attenuation_db_per_km: float | None = Field(None, description="Loss, dB/km, >= 0.")


class SystemDef(_Frozen):
    """A named QKD system: every parameter of ``qkd.params.QKDSystem``, with a clock rate.
    Unset values come from ``base``; without a base, clock_hz, detector.efficiency and
    detector.dark_count_prob are required and the rest take the library defaults."""

    base: str | None = Field(
        None, description="A preset or another system of qkd.systems to start from."
    )
    clock_hz: float | None = Field(
        None,
        description="Pulses per second (> 0): turns rates per pulse into bit/s and blocks of "
        "pulses into seconds.",
    )
    detector: DetectorDef = Field(DetectorDef(), description="Bob's detection system.")
    source: SourceDef = Field(SourceDef(), description="Alice's source.")
    fibre: FibreDef = Field(FibreDef(), description="The fibre.")
    misalignment: float | None = Field(None, description="Optical error e_d, in [0, 0.5].")
    f_ec: float | None = Field(None, description="Error-correction inefficiency f, >= 1.")
    sifting: float | None = Field(
        None, description="Fraction of detections kept by sifting (asymptotic models), (0, 1]."
    )
    block_size: float | None = Field(
        None, description="Post-processing block, pulses (>= 1): the default of qkd.block_size."
    )
    reference: str | None = Field(None, description="Where the numbers come from (datasheet).")
    kind: Protocol | None = Field(
        None,
        description="The link kind this system is (qkd.kinds: mdi, tf-sns, tf-pm, cv-gg02); "
        "unset: a BB84 system given by the fields above. A system of another kind takes its "
        "`base` from that kind's presets and its values from `params`; links naming it run "
        "that kind.",
    )
    params: dict[str, Any] = Field(
        default_factory=dict,
        description="With `kind`: the kind's parameters to override, as dotted keys or nested "
        "mappings (fibre.attenuation_db_per_km, detector.efficiency, clock_hz, ...; see "
        "`qfl keyrate --kind KIND --help`).",
    )

    @property
    def other_kind(self) -> bool:
        """Whether this is a system of a kind other than the BB84 models."""
        return self.kind is not None and self.kind not in BB84_PROTOCOLS

    def values(self) -> dict[str, Any]:
        """The parameters given, by the paths of ``qkd.params.SYSTEM_FIELDS``."""
        out: dict[str, Any] = {}
        for key, value in self.model_dump(exclude={"base", "kind", "params"}).items():
            if isinstance(value, dict):
                out.update({f"{key}.{k}": v for k, v in value.items() if v is not None})
            elif value is not None:
                out[key] = value
        return out


class QKDSpec(_Frozen):
    """QKD defaults for every link; links may override them."""

    preset: str = Field(
        DEFAULT_SYSTEM,
        description="The links' QKD system: a preset (qkd.params.PRESETS) or a name from "
        "qkd.systems (the older name of `system`).",
    )
    protocol: Protocol = Field(
        "decoy-bb84",
        description="Key-rate model of the links' systems. With key_model finite-blocks: "
        "decoy-bb84 is the three-intensity finite-key bound of Lim et al. 2014 (weakest "
        "intensity 2e-4), decoy-vacuum-weak the same with a true vacuum, decoy-1 the one-decoy "
        "bound of Rusca et al. 2018. With asymptotic-fluid: "
        "decoy-bb84 (infinitely many decoys), decoy-vacuum-weak (vacuum + one weak decoy), "
        "bb84-no-decoy (GLLP), single-photon (Ma et al. 2005). Or another registered link "
        "kind (qkd.kinds: mdi, tf-sns, tf-pm, cv-gg02), rated by its asymptotic model: under "
        "finite-blocks that rate lands in blocks of block_size channel uses (pulses, pulse "
        "pairs or symbols); its parameters from qkd.systems entries with that kind, or its "
        "presets.",
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
        description="Overrides every link system's optical misalignment error e_d, in [0, 0.5].",
    )
    detector_efficiency: Annotated[float, Field(gt=0, le=1)] | None = Field(
        None,
        description="Overrides every link system's Bob efficiency eta_Bob, in (0, 1].",
    )
    dark_count_prob: Annotated[float, Field(ge=0, lt=1)] | None = Field(
        None,
        description="Overrides every link system's dark-count probability per gate Y0, in [0, 1).",
    )
    attenuation_db_per_km: NonNegative | None = Field(
        None,
        description="Overrides every link's fibre loss, dB/km.",
    )

    system: str | None = Field(
        None,
        description="The links' QKD system: a preset or a name from qkd.systems; wins over "
        "qkd.preset (default). A link's own `system` wins over both.",
    )
    systems: dict[str, SystemDef] = Field(
        default_factory=dict,
        description="Your own QKD systems by name (a vendor's datasheet): each extends a "
        "preset or is given in full; links pick one with `system`.",
    )

    @property
    def network_system(self) -> str:
        """The name of the links' default system (``system``, else ``preset``)."""
        return self.system or self.preset

    @property
    def network_system_path(self) -> str:
        """The YAML path that named :attr:`network_system`."""
        return "qkd.system" if self.system else "qkd.preset"


def _system_definitions(
    systems: dict[str, SystemDef],
) -> dict[str, tuple[str | None, dict[str, Any]]]:
    """``qkd.systems`` as :meth:`qkd.params.SystemRegistry.extended` takes them (the BB84
    systems; those of other kinds are read by :mod:`qfl.scenario.linkkinds`)."""
    return {name: (d.base, d.values()) for name, d in systems.items() if not d.other_kind}


def system_registry(q: QKDSpec, *, prefix: str = "qkd.systems") -> SystemRegistry:
    """The presets extended by ``qkd.systems``.

    Raises
    ------
    ScenarioError
        On ``qkd.systems.<name>.<field>`` for a bad value, an unknown or cyclic base, a
        missing required parameter or a name that a preset has.
    """
    try:
        return SystemRegistry().extended(_system_definitions(q.systems))
    except ParameterError as exc:
        name, _, field = exc.name.partition(".")
        path = f"{prefix}.{name}" + (f".{field}" if field else "")
        raise ScenarioError(path, str(exc).partition(": ")[2]) from None


def _check_systems(q: QKDSpec, links: Any = ()) -> SystemRegistry:
    """Check ``qkd.systems``, the network's system and every link's; return the registry.

    ``links`` are the inline ``topology.links`` (each with ``system`` and ``preset``).

    Raises
    ------
    ScenarioError
        Naming the YAML path; an unknown system name lists the allowed ones.
    """
    reg = system_registry(q)
    kinded = {name for name, d in q.systems.items() if d.other_kind}
    known = ", ".join(repr(k) for k in sorted({*reg, *kinded}))
    if q.network_system not in reg and q.network_system not in kinded:
        raise ScenarioError(
            q.network_system_path, f"must be one of {known}, got {q.network_system!r}"
        )
    for i, link in enumerate(links):
        if getattr(link, "system", None) and getattr(link, "preset", None):
            raise ScenarioError(
                f"topology.links[{i}].preset", "give system or preset (its older name), not both"
            )
        own = getattr(link, "protocol", None)
        if (own or q.protocol) not in BB84_PROTOCOLS:
            continue  # a link of another kind: its system is checked by qfl.scenario.linkkinds
        for field in ("system", "preset"):
            name = getattr(link, field, None)
            if name is not None and name not in reg and name not in kinded:
                raise ScenarioError(
                    f"topology.links[{i}].{field}", f"must be one of {known}, got {name!r}"
                )
    return reg


def read_systems(path: str | Path) -> SystemRegistry:
    """The systems defined in a YAML file: a scenario (its ``qkd.systems``) or a file with
    just ``systems:``, added to the presets (what ``qfl keyrate --systems`` reads).

    Raises
    ------
    ScenarioError
        Naming the file and the YAML path of the bad field (``FILE: systems.mine.clock_hz:
        must be > 0, got -1.0``).
    """
    from pydantic import ValidationError

    from qfl.scenario.messages import _from_validation_error
    from qfl.scenario.yamlfile import load_yaml, read_text

    p = Path(path)
    if not p.is_file():
        raise ScenarioError(str(p), "no such file (a scenario or a YAML file with `systems:`)")
    data = load_yaml(read_text(p), str(p))
    if isinstance(data, dict) and isinstance(data.get("qkd"), dict):
        section, prefix = data["qkd"].get("systems", {}), "qkd.systems"
    elif isinstance(data, dict) and set(data) == {"systems"}:
        section, prefix = data["systems"], "systems"
    else:
        raise ScenarioError(
            str(p), "must be a scenario (with qkd.systems) or a mapping with just `systems:`"
        )
    try:
        q = QKDSpec.model_validate({"systems": section})
    except ValidationError as exc:
        err = _from_validation_error(exc, QKDSpec)
        raise ScenarioError(
            f"{p}: {prefix}{err.path.removeprefix('systems')}", err.message
        ) from None
    try:
        return system_registry(q, prefix=prefix)
    except ScenarioError as exc:
        raise ScenarioError(f"{p}: {exc.path}", exc.message) from None
