"""The ``topology`` section: nodes and fibre links, inline or from a GraphML/GML file."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from qfl.scenario.base import NonNegative, Positive, _Frozen
from qfl.scenario.qkd import Protocol
from qfl.scenario.satellites import ScheduleDef

__all__ = ["LinkSpec", "NodeSpec", "TopologySpec"]


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
    preset: str | None = Field(
        None, description="The older name of `system` (a preset or a name from qkd.systems)."
    )
    system: str | None = Field(
        None,
        description="This link's QKD system: a preset or a name from qkd.systems; default "
        "qkd.system / qkd.preset.",
    )
    protocol: Protocol | None = Field(
        None,
        description="This link's kind: a BB84 model of its system or a registered link kind "
        "(mdi, tf-sns, tf-pm, cv-gg02); default: its system's kind, else qkd.protocol.",
    )
    schedule: ScheduleDef | None = Field(
        None,
        description="Key supply over time: rate factors over windows of simulated seconds "
        "(maintenance, day/night); default: the nominal rate at all times.",
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
