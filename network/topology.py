"""Topology: typed node and link specifications, the NetworkX graph, GraphML/GML import.

A topology is a :class:`TopologySpec` of :class:`NodeSpec` and :class:`LinkSpec` (frozen,
validated on construction). :func:`build_graph` turns it into an undirected
:class:`networkx.Graph` whose nodes carry ``spec`` (the :class:`NodeSpec`) and whose edges
carry ``spec`` (the :class:`LinkSpec`) and ``length_km``. :func:`read_topology` reads the
Internet Topology Zoo's GraphML/GML files.

Link lengths in files: an edge attribute ``length_km`` (or ``LinkLength``/``length``, in km)
is used when present; otherwise the length is the great-circle distance between the two
nodes' ``Latitude``/``Longitude`` times a routing factor, **1.3 by default**, because
installed fibre follows roads and ducts rather than the geodesic.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from os import PathLike
from pathlib import Path
from typing import Any, Literal, get_args

import networkx as nx

from network.errors import DuplicateLink, NodeNotFound
from network.schedule import Schedule
from qkd.errors import ParameterError, UnknownNameError
from qkd.params import QKDSystem

__all__ = [
    "EARTH_RADIUS_KM",
    "GROUP_INDEX",
    "ROUTING_FACTOR",
    "SPEED_OF_LIGHT_KM_S",
    "LinkSpec",
    "NodeSpec",
    "Role",
    "TopologySpec",
    "build_graph",
    "great_circle_km",
    "read_topology",
]

Role = Literal["client", "server", "relay"]
_ROLES: tuple[str, ...] = get_args(Role)

SPEED_OF_LIGHT_KM_S = 299_792.458
"""Speed of light in vacuum, km/s."""
GROUP_INDEX = 1.468
"""Default group index of standard single-mode fibre at 1550 nm (about 4.9 µs/km)."""
ROUTING_FACTOR = 1.3
"""Default ratio of fibre length to great-circle distance for links read from files."""
EARTH_RADIUS_KM = 6371.0088
"""Mean Earth radius (IUGG), km."""


def _finite(name: str, value: Any, ok: Callable[[float], bool], allowed: str) -> None:
    """Raise ParameterError unless ``value`` is a finite real number with ``ok(value)``."""
    if not _num(value) or not ok(value):
        raise ParameterError(name, value, allowed)


DEFAULT_FLOPS_PER_S = 5e11
"""A node's compute speed when none is given (FLOP/s): a workstation-class edge node."""
DEFAULT_POOL_BITS = 1e9
"""A link's key-pool capacity when none is given (bits)."""
DEFAULT_BANDWIDTH_BPS = 1e9
"""A link's classical bandwidth when none is given (bit/s): 1 Gb/s Ethernet."""
DEFAULT_SYSTEM = "toshiba-2018"
"""A link's QKD system preset when none is given."""


@dataclass(frozen=True)
class NodeSpec:
    """A node of the network.

    Parameters
    ----------
    name : str
        Unique, non-empty name.
    role : {"client", "server", "relay"}
        A learning client, a server (aggregator) or a trusted relay that only forwards.
    flops_per_s : float
        Compute speed for the learning side, FLOP/s (``> 0``).
    lat, lon : float, optional
        Latitude and longitude in degrees, for lengths from coordinates and for maps.
    """

    name: str
    role: Role = "client"
    flops_per_s: float = DEFAULT_FLOPS_PER_S
    lat: float | None = None
    lon: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ParameterError("node.name", self.name, "a non-empty string")
        if self.role not in _ROLES:
            raise UnknownNameError(f"node {self.name!r}: role", self.role, _ROLES)
        f = self.flops_per_s
        _finite(f"node {self.name!r}: flops_per_s", f, lambda v: v > 0, "> 0")
        if self.lat is not None:
            lat = self.lat
            _finite(f"node {self.name!r}: lat", lat, lambda v: -90 <= v <= 90, "in [-90, 90]")
        if self.lon is not None:
            lon = self.lon
            _finite(f"node {self.name!r}: lon", lon, lambda v: -180 <= v <= 180, "in [-180, 180]")


def _num(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


@dataclass(frozen=True)
class LinkSpec:
    """A fibre link between two nodes, carrying QKD and classical traffic (full duplex).

    Parameters
    ----------
    a, b : str
        The end nodes (order does not matter).
    length_km : float
        Fibre length (``>= 0``).
    attenuation_db_per_km : float, optional
        Overrides the QKD system's fibre attenuation.
    system : str or QKDSystem
        A preset name from :data:`qkd.params.PRESETS` or explicit parameters; the secret key
        rate then comes from :func:`qkd.rates.key_rate_bps` at ``length_km``.
    skr_bps : float, optional
        A measured secret key rate in bit/s (``>= 0``) that overrides the model, as published
        networks report them.
    capacity_bits : float
        Key-pool capacity in bits (``> 0``); key that arrives while the pool is full is wasted.
    initial_bits : float
        Initial fill of the pool (``0 <= initial_bits <= capacity_bits``).
    bandwidth_bps : float
        Classical bandwidth in bit/s in each direction (``> 0``).
    latency_s : float, optional
        One-way propagation latency; default ``length_km * group_index / c``.
    group_index : float
        Group index of the fibre (``>= 1``; 1.468 for SMF-28, about 4.9 µs/km).
    block_bits : float, optional
        If given, key arrives in blocks instead of continuously: the key bits l(N) one
        completed block yields (``0 < block_bits <= capacity_bits``); a block is collected
        every ``block_bits / rate`` seconds (N pulses over the repetition rate), ``rate``
        being ``skr_bps`` or the model's rate, before authentication.
    block_latency_s : float
        Post-processing time, seconds, from the end of a block's collection until its key
        lands in the pool (``>= 0``; block mode only). Blocks may overlap in post-processing.
    block_auth_bits : float
        Key bits QKD's own classical channel consumes per block to authenticate its
        post-processing, taken from the block before it lands
        (``0 <= block_auth_bits < block_bits``; block mode only). The pool's net rate is
        ``rate * (1 - block_auth_bits / block_bits)``; a link whose blocks cannot pay for
        their authentication makes no key: give it ``skr_bps=0``.
    schedule : Schedule, optional
        Key supply that changes over time (:mod:`network.schedule`): the link's key rate is
        its nominal rate (``skr_bps`` or the model's) times the schedule's factor, windows
        in simulated seconds from the network's start. A maintenance window or day/night
        cycle on a fibre (default factor 1), a satellite downlink that makes key only during
        its passes (default factor 0, one window per pass step:
        :func:`network.satellite.satellite_schedule`). None: the nominal rate at all times.
        The classical channel is not scheduled: it carries traffic at any time (a satellite
        relay's key is announced over ground networks).

    A drop of the key rate to 0 (cut, end node down, eavesdropper above the abort threshold)
    discards the block being collected; blocks in post-processing still land (see
    :mod:`network.keypool`).
    """

    a: str
    b: str
    length_km: float
    attenuation_db_per_km: float | None = None
    system: str | QKDSystem = DEFAULT_SYSTEM
    skr_bps: float | None = None
    capacity_bits: float = DEFAULT_POOL_BITS
    initial_bits: float = 0.0
    bandwidth_bps: float = DEFAULT_BANDWIDTH_BPS
    latency_s: float | None = None
    group_index: float = GROUP_INDEX
    block_bits: float | None = None
    block_latency_s: float = 0.0
    block_auth_bits: float = 0.0
    schedule: Schedule | None = None

    def __post_init__(self) -> None:
        for end in ("a", "b"):
            v = getattr(self, end)
            if not isinstance(v, str) or not v:
                raise ParameterError(f"link.{end}", v, "a non-empty node name")
        n = f"link {self.a}-{self.b}"
        if self.a == self.b:
            raise ParameterError(f"{n}: b", self.b, f"a node other than a ({self.a!r})")
        L = self.length_km
        _finite(f"{n}: length_km", L, lambda v: v >= 0, ">= 0")
        if self.attenuation_db_per_km is not None:
            x = self.attenuation_db_per_km
            _finite(f"{n}: attenuation_db_per_km", x, lambda v: v >= 0, ">= 0")
        if not isinstance(self.system, str | QKDSystem):
            raise ParameterError(f"{n}: system", self.system, "a preset name or a QKDSystem")
        if self.skr_bps is not None:
            r = self.skr_bps
            _finite(f"{n}: skr_bps", r, lambda v: v >= 0, ">= 0")
        c = self.capacity_bits
        _finite(f"{n}: capacity_bits", c, lambda v: v > 0, "> 0")
        i = self.initial_bits
        _finite(f"{n}: initial_bits", i, lambda v: 0 <= v <= c, f"in [0, capacity_bits={c}]")
        bw = self.bandwidth_bps
        _finite(f"{n}: bandwidth_bps", bw, lambda v: v > 0, "> 0")
        if self.latency_s is not None:
            t = self.latency_s
            _finite(f"{n}: latency_s", t, lambda v: v >= 0, ">= 0")
        g = self.group_index
        _finite(f"{n}: group_index", g, lambda v: v >= 1, ">= 1")
        self._check_blocks(n)
        if self.schedule is not None and not isinstance(self.schedule, Schedule):
            raise ParameterError(f"{n}: schedule", self.schedule, "a Schedule or None")

    def _check_blocks(self, n: str) -> None:
        lat, auth, B = self.block_latency_s, self.block_auth_bits, self.block_bits
        _finite(f"{n}: block_latency_s", lat, lambda v: v >= 0, ">= 0")
        _finite(f"{n}: block_auth_bits", auth, lambda v: v >= 0, ">= 0")
        if B is None:
            for field, v in (("block_latency_s", lat), ("block_auth_bits", auth)):
                if v != 0:
                    raise ParameterError(f"{n}: {field}", v, "0 unless block_bits is given")
            return
        c = self.capacity_bits
        _finite(f"{n}: block_bits", B, lambda v: 0 < v <= c, f"in (0, capacity_bits={c}]")
        if auth >= B:
            raise ParameterError(
                f"{n}: block_auth_bits",
                auth,
                f"< block_bits={B:g} (a block must yield more key than its authentication "
                "consumes; a link that makes no net key is skr_bps=0)",
            )

    @property
    def name(self) -> str:
        """``"a-b"``, the name used in records."""
        return f"{self.a}-{self.b}"

    @property
    def propagation_s(self) -> float:
        """One-way latency: the override, or ``length_km * group_index / c``."""
        if self.latency_s is not None:
            return float(self.latency_s)
        return self.length_km * self.group_index / SPEED_OF_LIGHT_KM_S


@dataclass(frozen=True)
class TopologySpec:
    """Nodes and links of a network; validated as a whole on construction.

    Raises
    ------
    ParameterError
        Two nodes with the same name.
    NodeNotFound
        A link names a node that is not among ``nodes`` (the message gives the link's index).
    DuplicateLink
        Two links join the same pair of nodes.
    """

    nodes: tuple[NodeSpec, ...]
    links: tuple[LinkSpec, ...] = field(default=())

    def __post_init__(self) -> None:
        object.__setattr__(self, "nodes", tuple(self.nodes))
        object.__setattr__(self, "links", tuple(self.links))
        names: set[str] = set()
        for i, node in enumerate(self.nodes):
            if not isinstance(node, NodeSpec):
                raise ParameterError(f"nodes[{i}]", node, "a NodeSpec")
            if node.name in names:
                raise ParameterError(f"nodes[{i}].name", node.name, "unique among nodes")
            names.add(node.name)
        pairs: set[frozenset[str]] = set()
        for i, link in enumerate(self.links):
            if not isinstance(link, LinkSpec):
                raise ParameterError(f"links[{i}]", link, "a LinkSpec")
            for end in ("a", "b"):
                if getattr(link, end) not in names:
                    raise NodeNotFound(getattr(link, end), where=f"links[{i}].{end}")
            pair = frozenset((link.a, link.b))
            if pair in pairs:
                raise DuplicateLink(link.a, link.b, where=f"links[{i}]")
            pairs.add(pair)

    def node(self, name: str) -> NodeSpec:
        """The node called ``name`` (raises :class:`NodeNotFound`)."""
        for n in self.nodes:
            if n.name == name:
                return n
        raise NodeNotFound(name)


def build_graph(spec: TopologySpec) -> nx.Graph:
    """Build the undirected NetworkX graph of a topology.

    Nodes carry ``spec`` (:class:`NodeSpec`) and ``role``; edges carry ``spec``
    (:class:`LinkSpec`), ``length_km`` and ``latency_s``.

    Examples
    --------
    >>> spec = TopologySpec(
    ...     nodes=(NodeSpec("A"), NodeSpec("B", role="server")),
    ...     links=(LinkSpec("A", "B", length_km=10.0, skr_bps=1e3),),
    ... )
    >>> g = build_graph(spec)
    >>> g.edges["A", "B"]["length_km"], g.nodes["B"]["role"]
    (10.0, 'server')
    """
    g = nx.Graph()
    for node in spec.nodes:
        g.add_node(node.name, spec=node, role=node.role)
    for link in spec.links:
        g.add_edge(
            link.a, link.b, spec=link, length_km=link.length_km, latency_s=link.propagation_s
        )
    return g


def great_circle_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance between two points (haversine formula), in km.

    Examples
    --------
    >>> round(great_circle_km(51.5072, -0.1276, 48.8566, 2.3522))  # London-Paris
    344
    """
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


_LENGTH_KEYS = ("length_km", "LinkLength", "length")


def read_topology(
    path: str | PathLike[str],
    *,
    link_defaults: LinkSpec | None = None,
    roles: Mapping[str, Role] | None = None,
    default_role: Role = "client",
    routing_factor: float = ROUTING_FACTOR,
    default_flops_per_s: float = DEFAULT_FLOPS_PER_S,
) -> TopologySpec:
    """Read a GraphML (``.graphml``) or GML (``.gml``) topology, e.g. from the Topology Zoo.

    Node names are the ``label`` attribute when labels are unique, else the file's node ids.
    Coordinates come from ``Latitude``/``Longitude``. A link's length is its ``length_km``
    (or ``LinkLength``/``length``) attribute in km if present, otherwise the great-circle
    distance between its ends times ``routing_factor`` (1.3 by default: fibre follows roads
    and ducts). Parallel edges of a multigraph become one link (the shortest); self-loops are
    dropped.

    Parameters
    ----------
    path
        The file.
    link_defaults : LinkSpec, optional
        Template for every link's other fields (system, pool, bandwidth...); its ``a``, ``b``
        and ``length_km`` are replaced.
    roles : mapping, optional
        Role per node name; others get ``default_role`` (or their ``role`` attribute).
    routing_factor : float
        Fibre length over great-circle distance (``>= 1``).
    default_flops_per_s : float
        Compute speed of a node without a ``flops_per_s`` attribute.

    Raises
    ------
    ParameterError
        Unknown suffix, or a link with no length attribute whose ends lack coordinates.
    """
    p = Path(path)
    _finite("routing_factor", routing_factor, lambda v: v >= 1, ">= 1")
    suffix = p.suffix.lower()
    if suffix == ".graphml":
        raw = nx.read_graphml(p)
    elif suffix == ".gml":
        raw = nx.read_gml(p, label="id")
    else:
        raise UnknownNameError("topology file suffix", suffix, (".gml", ".graphml"))
    labels = {n: str(d.get("label", n)) for n, d in raw.nodes(data=True)}
    if len(set(labels.values())) != len(labels):
        labels = {n: str(n) for n in raw.nodes}
    roles = dict(roles or {})
    nodes: list[NodeSpec] = []
    coords: dict[str, tuple[float, float] | None] = {}
    for n, d in raw.nodes(data=True):
        name = labels[n]
        lat, lon = d.get("Latitude"), d.get("Longitude")
        ok = lat is not None and lon is not None
        coords[name] = (float(lat), float(lon)) if ok else None
        role = roles.get(name, d.get("role", default_role))
        kw: dict[str, Any] = {"role": role}
        kw["flops_per_s"] = float(d.get("flops_per_s", default_flops_per_s))
        if ok:
            kw["lat"], kw["lon"] = float(lat), float(lon)
        nodes.append(NodeSpec(name, **kw))
    template = link_defaults or LinkSpec("_a", "_b", 0.0)
    best: dict[frozenset[str], LinkSpec] = {}
    edges: Iterable[tuple[Any, Any, dict[str, Any]]] = raw.edges(data=True)
    for u, v, d in edges:
        a, b = labels[u], labels[v]
        if a == b:
            continue
        length = next((float(d[k]) for k in _LENGTH_KEYS if k in d), None)
        if length is None:
            ca, cb = coords[a], coords[b]
            if ca is None or cb is None:
                missing = a if ca is None else b
                raise ParameterError(
                    f"{p.name}: link {a}-{b}: length",
                    None,
                    f"given (length_km) or computable from Latitude/Longitude of {missing!r}",
                )
            length = great_circle_km(*ca, *cb) * routing_factor
        link = replace(template, a=a, b=b, length_km=length)
        key = frozenset((a, b))
        if key not in best or link.length_km < best[key].length_km:
            best[key] = link
    return TopologySpec(nodes=tuple(nodes), links=tuple(best.values()))
