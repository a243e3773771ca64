"""From a scenario to the network layer's objects: topology, cipher policy and faults.

This module imports no torch: ``qfl validate`` and the network half of a sweep use it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import networkx as nx
import numpy as np

from network import (
    AesGcm,
    CipherPolicy,
    Eavesdropper,
    LinkCut,
    LinkSpec,
    NoCipher,
    NodeOutage,
    NodeSpec,
    OneTimePad,
    PoolWipe,
    TopologySpec,
    max_chunk_bytes,
    read_topology,
)
from network.faults import Fault
from network.topology import DEFAULT_SYSTEM
from qfl.scenario import Scenario, ScenarioError, check_fault_links, check_node_refs
from qfl.scenario.linkkinds import LinkKindChoice, link_kind, link_schedule
from qfl.scenario.qkd import system_registry
from qkd.errors import QflError, UnknownNameError
from qkd.params import QKDSystem, with_overrides

__all__ = [
    "build_cipher",
    "build_faults",
    "build_topology",
    "check_method_nodes",
    "check_network",
    "learning_clients",
    "learning_server",
    "link_kinds",
    "qkd_system",
]


def qkd_system(sc: Scenario, name: str | None = None, *, where: str = "") -> QKDSystem:
    """The QKD system of a link: the named system (a preset or one of ``qkd.systems``;
    default the network's ``qkd.system`` / ``qkd.preset``) with the scenario's network-wide
    ``qkd`` overrides.

    ``where`` is the YAML path of the link's ``system`` (for the error message).
    """
    q = sc.qkd
    registry = system_registry(q)
    try:
        system = registry.get_system(name or q.network_system)
    except UnknownNameError as exc:
        path = q.network_system_path if name is None else (where or "topology.links[].system")
        allowed = ", ".join(repr(c) for c in exc.choices)
        raise ScenarioError(path, f"must be one of {allowed}, got {exc.value!r}") from None
    return with_overrides(
        system,
        misalignment=q.misalignment,
        efficiency=q.detector_efficiency,
        dark_count_prob=q.dark_count_prob,
        attenuation_db_per_km=q.attenuation_db_per_km,
    )


def link_kinds(sc: Scenario, n_links: int | None = None) -> list[LinkKindChoice]:
    """Each link's kind (:func:`qfl.scenario.linkkinds.link_kind`), in the order of the
    built topology's links: the inline links, or ``n_links`` links of ``topology.file`` (all
    of the network's kind)."""
    if sc.topology.file is None:
        return [link_kind(sc, i) for i in range(len(sc.topology.links))]
    return [link_kind(sc, -1)] * int(n_links or 0)


def _link_spec(sc: Scenario, i: int, a: str, b: str, length_km: float) -> LinkSpec:
    q = sc.qkd
    lk = sc.topology.links[i] if i >= 0 else None
    name = (lk.system or lk.preset) if lk is not None else None
    field = "system" if lk is not None and lk.system else "preset"
    other = link_kind(sc, i).other_kind
    try:
        return LinkSpec(
            a=a,
            b=b,
            length_km=float(length_km),
            attenuation_db_per_km=lk.attenuation_db_per_km if lk is not None else None,
            # another kind's rate is set by link_rates; the BB84 system stands in for an
            # eavesdropper's effect on the link (its QBER abort threshold)
            system=DEFAULT_SYSTEM
            if other
            else qkd_system(sc, name, where=f"topology.links[{i}].{field}"),
            skr_bps=lk.skr_bps if lk is not None else None,
            capacity_bits=float(
                lk.pool_capacity_bits if lk and lk.pool_capacity_bits else q.pool_capacity_bits
            ),
            initial_bits=float(
                lk.initial_fill_bits
                if lk and lk.initial_fill_bits is not None
                else q.initial_fill_bits
            ),
            bandwidth_bps=float(lk.bandwidth_bps if lk and lk.bandwidth_bps else q.bandwidth_bps),
            latency_s=lk.latency_s if lk is not None else None,
            schedule=link_schedule(sc, i) if i >= 0 else None,
        )
    except ScenarioError:
        raise
    except QflError as exc:
        raise ScenarioError(_value_path(sc, i, exc), str(exc)) from None


# network LinkSpec field -> (the scenario link's field, the qkd section's field)
_FIELD_PATHS = {
    "capacity_bits": ("pool_capacity_bits", "pool_capacity_bits"),
    "initial_bits": ("initial_fill_bits", "initial_fill_bits"),
    "bandwidth_bps": ("bandwidth_bps", "bandwidth_bps"),
    "block_bits": (None, "block_size"),
    "block_latency_s": (None, "postprocess_s"),
    "block_auth_bits": (None, "auth_bits_per_block"),
    "length_km": ("length_km", None),
    "latency_s": ("latency_s", None),
    "skr_bps": ("skr_bps", None),
    "attenuation_db_per_km": ("attenuation_db_per_km", "attenuation_db_per_km"),
}


def _value_path(sc: Scenario, i: int, exc: QflError) -> str:
    """The YAML path of the value a link rejected: the link's own field where the link sets
    it, else the ``qkd`` default it took (not ``topology.links[i]`` for a ``qkd.*`` value)."""
    field = str(getattr(exc, "name", "")).rpartition(": ")[2]
    own, default = _FIELD_PATHS.get(field, (None, None))
    lk = sc.topology.links[i] if i >= 0 else None
    if own is not None and lk is not None and getattr(lk, own, None) is not None:
        return f"topology.links[{i}].{own}"
    if default is not None:
        return f"qkd.{default}"
    return f"topology.links[{i}]" if i >= 0 else "topology.file"


def _read_file(sc: Scenario) -> TopologySpec:
    """The scenario's GraphML/GML file as read (one-line errors on ``topology.file``)."""
    topo = sc.topology
    file = str(topo.file)
    roles = {n: "relay" for n in topo.relays} | {n: "server" for n in topo.servers}
    try:
        return read_topology(
            file,
            roles=roles,  # type: ignore[arg-type]
            routing_factor=topo.routing_factor,
            default_flops_per_s=sc.compute.default_flops_per_s,
        )
    except FileNotFoundError:
        raise ScenarioError("topology.file", f"no such file {file!r}") from None
    except QflError as exc:
        raise ScenarioError("topology.file", str(exc)) from None
    except (OSError, ValueError, TypeError, KeyError, SyntaxError, nx.NetworkXError) as exc:
        # malformed XML/GML (ElementTree's ParseError is a SyntaxError), a folder, an
        # empty file, a coordinate that is not a number...
        why = " ".join(str(exc).split())[:160] or type(exc).__name__
        raise ScenarioError(
            "topology.file", f"cannot read {file!r} as GraphML/GML: {why}"
        ) from None


def _from_file(sc: Scenario) -> tuple[tuple[NodeSpec, ...], tuple[LinkSpec, ...]]:
    topo = sc.topology
    raw = _read_file(sc)
    names = {n.name for n in raw.nodes}
    for field_name, listed in (
        ("topology.relays", topo.relays),
        ("topology.servers", topo.servers),
    ):
        for j, n in enumerate(listed):
            if n not in names:
                raise ScenarioError(f"{field_name}[{j}]", f"unknown node {n!r} in {topo.file}")
    check_node_refs(sc, names)
    check_fault_links(sc, {frozenset((lk.a, lk.b)) for lk in raw.links})
    links = tuple(_link_spec(sc, -1, lk.a, lk.b, lk.length_km) for lk in raw.links)
    return raw.nodes, links  # a node's own flops_per_s attribute is kept


def _inline(sc: Scenario) -> tuple[tuple[NodeSpec, ...], tuple[LinkSpec, ...]]:
    from network.topology import great_circle_km

    topo = sc.topology
    nodes = tuple(
        NodeSpec(
            name=n.name,
            role=n.role,
            flops_per_s=n.flops_per_s or sc.compute.default_flops_per_s,
            lat=n.latitude,
            lon=n.longitude,
        )
        for n in topo.nodes
    )
    coords = {n.name: (n.latitude, n.longitude) for n in topo.nodes}
    nodes += tuple(
        NodeSpec(name=name, role="relay", flops_per_s=sc.compute.default_flops_per_s)
        for name in sc.satellites
    )
    links = []
    for i, lk in enumerate(topo.links):
        if lk.a in sc.satellites or lk.b in sc.satellites:
            links.append(_satellite_link(sc, i, coords))
            continue
        length = lk.length_km
        if length is None:
            (la, oa), (lb, ob) = coords[lk.a], coords[lk.b]
            if la is None or oa is None or lb is None or ob is None:
                raise ScenarioError(
                    f"topology.links[{i}].length_km",
                    "missing, and the ends have no latitude/longitude to derive it from",
                )
            length = great_circle_km(la, oa, lb, ob) * topo.routing_factor
        links.append(_link_spec(sc, i, lk.a, lk.b, length))
    return nodes, tuple(links)


def satellite_horizon_s(sc: Scenario, name: str) -> float:
    """Seconds of passes a satellite's links cover: ``horizon_s``, else its ``span_s``."""
    return float(sc.horizon_s or sc.satellites[name].span_s)


def _satellite_link(
    sc: Scenario, i: int, coords: dict[str, tuple[float | None, float | None]]
) -> LinkSpec:
    """A satellite downlink: the passes of ``satellites.<name>`` over the ground node as its
    schedule, the zenith rate as its nominal rate (key flows in as the passes deliver it:
    fluid, asymptotic, as :mod:`qkd.satellite` models a pass)."""
    from network.satellite import satellite_schedule
    from qkd.satellite import GroundStation

    q = sc.qkd
    lk = sc.topology.links[i]
    sat = lk.a if lk.a in sc.satellites else lk.b
    ground = lk.b if sat == lk.a else lk.a
    spec = sc.satellites[sat]
    lat, lon = coords[ground]
    where = f"satellites.{sat}"
    try:
        station = GroundStation(ground, float(lat or 0.0), float(lon or 0.0))
        sched = satellite_schedule(
            spec.downlink(),
            spec.orbit(),
            station,
            satellite_horizon_s(sc, sat),
            step_s=spec.step_s,
            start_s=spec.start_s,
            max_passes=spec.max_passes,
            where=where,
        )
        return sched.link_spec(
            lk.a,
            lk.b,
            capacity_bits=float(lk.pool_capacity_bits or q.pool_capacity_bits),
            initial_bits=float(
                lk.initial_fill_bits if lk.initial_fill_bits is not None else q.initial_fill_bits
            ),
            bandwidth_bps=float(lk.bandwidth_bps or q.bandwidth_bps),
            **({"latency_s": lk.latency_s} if lk.latency_s is not None else {}),
            # a measured zenith rate scales every pass (the schedule's factors are fractions)
            **({"skr_bps": lk.skr_bps} if lk.skr_bps is not None else {}),
        )
    except QflError as exc:
        key = str(getattr(exc, "name", ""))
        path = key if key.startswith(where) else where
        raise ScenarioError(path, str(exc).partition(": ")[2] or str(exc)) from None


# scenario protocol -> (finite-key bound, its weakest intensity): Lim et al.'s three
# intensities with a weakest of 2e-4 as in their simulations, or with a true vacuum (the
# vacuum + weak decoy protocol), or Rusca et al.'s one decoy
_FINITE = {"decoy-bb84": ("decoy-2", 2e-4), "decoy-vacuum-weak": ("decoy-2", 0.0),
           "decoy-1": ("decoy-1", 2e-4)}  # fmt: skip


def _block_size(sc: Scenario, system: Any) -> float:
    return float(sc.qkd.block_size or getattr(system, "block_size", None) or 1e10)


def _blocks(
    sc: Scenario,
    links: Sequence[LinkSpec],
    rates: list[float],
    kinds: Sequence[LinkKindChoice],
) -> list[LinkSpec]:
    """finite-blocks: each link delivers ``rate x N / clock`` bits per block of N pulses
    (channel uses: pulses, pulse pairs or symbols of its kind), ``postprocess_s`` after the
    block's collection ends, less the authentication bits. Satellite links stay fluid."""
    out = []
    for spec, rate, kind in zip(links, rates, kinds, strict=True):
        if kind.satellite is not None:
            out.append(replace(spec, skr_bps=rate))
            continue
        if kind.other_kind:
            block_s = float(sc.qkd.block_size or 1e10) / float(kind.uses_per_second or 1.0)
        else:
            system = with_overrides(spec.system, attenuation_db_per_km=spec.attenuation_db_per_km)
            block_s = _block_size(sc, system) / system.source.clock_hz
        bits = rate * block_s
        if bits <= sc.qkd.auth_bits_per_block:  # the block cannot pay its own authentication
            out.append(replace(spec, skr_bps=0.0))
            continue
        latency = block_s if sc.qkd.postprocess_s is None else sc.qkd.postprocess_s
        try:
            out.append(replace(spec, skr_bps=rate, block_bits=bits, block_latency_s=latency,
                               block_auth_bits=sc.qkd.auth_bits_per_block))  # fmt: skip
        except QflError as exc:  # e.g. a block larger than the key store
            raise ScenarioError("qkd.block_size", f"{exc} (a block of N pulses on this "
                                "link yields more key than its store holds)") from None  # fmt: skip
    return out


def link_rates(
    sc: Scenario, links: Sequence[LinkSpec], kinds: Sequence[LinkKindChoice] | None = None
) -> list[float]:
    """Each link's secret key rate (bit/s, before ``qkd.rate_scale``): its measured
    ``skr_bps``, else its system's rate at its length under its protocol (the link's
    ``protocol``, else ``qkd.protocol``) and ``qkd.key_model``: the finite-key rate of a
    block of ``block_size`` pulses (:func:`qkd.finite.finite_key`), or the asymptotic rate.
    Links sharing a system and protocol are computed in one vectorized call. A link of
    another kind (MDI, twin-field, CV-QKD: ``kinds``) gets its kind's asymptotic rate
    (:meth:`qkd.kinds.LinkKind.rate_bps`): these kinds have no finite-key model here, so
    under finite-blocks their asymptotic rate is delivered in blocks.

    Raises
    ------
    ScenarioError
        A protocol without a finite-key model under ``finite-blocks``.
    """
    from qkd.finite import asymptotic_key, finite_key
    from qkd.kinds import get_kind
    from qkd.rates import key_rate_bps

    q = sc.qkd
    kinds = link_kinds(sc, len(links)) if kinds is None else kinds
    rates = [0.0] * len(links)
    groups: dict[tuple[Any, str], list[int]] = {}
    for i, spec in enumerate(links):
        if spec.skr_bps is not None:
            rates[i] = float(spec.skr_bps)
            continue
        if kinds[i].other_kind:
            got = get_kind(kinds[i].kind).rate_bps(kinds[i].params, [spec.length_km])
            rates[i] = float(got[0])
            continue
        protocol, where = kinds[i].kind, kinds[i].path
        if q.key_model == "finite-blocks" and protocol not in _FINITE:
            raise ScenarioError(
                where,
                f"must be one of {', '.join(_FINITE)} with qkd.key_model finite-blocks (no "
                f"finite-key model here), got {protocol!r}; or set qkd.key_model: "
                "asymptotic-fluid",
            )
        system = with_overrides(spec.system, attenuation_db_per_km=spec.attenuation_db_per_km)
        groups.setdefault((system, protocol), []).append(i)
    for (system, protocol), idx in groups.items():
        lengths = np.array([links[i].length_km for i in idx])
        if q.key_model == "finite-blocks":
            bound, weakest = _FINITE[protocol]
            fk = finite_key(system, lengths, _block_size(sc, system), protocol=bound,
                            eps_sec=q.eps_sec, eps_cor=q.eps_cor, weakest=weakest)  # fmt: skip
            got = fk.rate_bps
        elif protocol == "decoy-1":
            got = asymptotic_key(system, lengths, protocol="decoy-1") * system.source.clock_hz
        else:
            got = key_rate_bps(system, lengths, protocol)
        for i, r in zip(idx, np.atleast_1d(got), strict=True):
            rates[i] = float(r)
    return rates


def build_topology(sc: Scenario) -> TopologySpec:
    """The network topology of a scenario, with every link's key rate resolved.

    Each link's secret key rate is its measured ``skr_bps`` if given, else the model of its
    kind at its length (:func:`link_kinds`: a BB84 model of its system, or a registered
    kind's asymptotic rate, delivered in blocks of ``qkd.block_size`` channel uses under
    finite-blocks); either is multiplied by ``qkd.rate_scale`` and written into the link as
    ``skr_bps``, so the network uses exactly that rate. A link's ``schedule`` becomes its
    supply schedule; a link to a satellite (``satellites``) gets the passes over its ground
    node as schedule and the zenith rate as nominal rate (fluid: a pass's key as it comes).

    Raises
    ------
    ScenarioError
        Naming the YAML path of a link or node the network layer rejects.
    """
    nodes, links = _from_file(sc) if sc.topology.file is not None else _inline(sc)
    kinds = link_kinds(sc, len(links))
    rates = link_rates(sc, links, kinds)
    rates = [float(r) for r in np.asarray(rates, dtype=float) * sc.qkd.rate_scale]
    if sc.qkd.key_model == "finite-blocks":
        links = tuple(_blocks(sc, links, rates, kinds))
    else:
        links = tuple(replace(lk, skr_bps=r) for lk, r in zip(links, rates, strict=True))
    try:
        return TopologySpec(nodes=nodes, links=links)
    except QflError as exc:
        raise ScenarioError("topology", str(exc)) from None


def build_cipher(sc: Scenario) -> CipherPolicy:
    """The cipher policy of a scenario."""
    c = sc.cipher
    if c.policy == "otp":
        return OneTimePad()
    if c.policy == "none":
        return NoCipher()
    return AesGcm(
        rekey_bytes=None if c.rekey_bytes is None else int(c.rekey_bytes),
        rekey_s=c.rekey_seconds,
    )


def build_faults(sc: Scenario) -> list[Fault]:
    """The scheduled faults of a scenario, as network fault objects."""
    out: list[Fault] = []
    for f in sc.faults:
        if f.kind == "link-cut":
            a, b = f.link  # type: ignore[misc]
            out.append(LinkCut(a, b, f.at_s, f.until_s))
        elif f.kind == "eavesdropper":
            a, b = f.link  # type: ignore[misc]
            out.append(Eavesdropper(a, b, f.at_s, f.until_s, qber=f.qber))
        else:
            out.append(NodeOutage(f.node, f.at_s, f.until_s))  # type: ignore[arg-type]
        if f.wipe_pool and f.link is not None:
            out.append(PoolWipe(f.link[0], f.link[1], f.at_s))
    return out


def learning_clients(sc: Scenario, topo: TopologySpec) -> list[str]:
    """The learning clients: ``learning.clients`` or every node with role ``client``."""
    if sc.learning.clients:
        return list(sc.learning.clients)
    return [n.name for n in topo.nodes if n.role == "client"]


def learning_server(sc: Scenario, topo: TopologySpec) -> str | None:
    """The aggregator: ``learning.server`` or the first node with role ``server``."""
    if sc.learning.server:
        return sc.learning.server
    servers: Sequence[str] = [n.name for n in topo.nodes if n.role == "server"]
    return servers[0] if servers else None


def check_method_nodes(sc: Scenario, clients: Sequence[str], server: str | None) -> None:
    """Check the client count and the server against the method's registry entry.

    Raises
    ------
    ScenarioError
        On ``learning.clients`` or ``learning.server``.
    """
    from qfl.cosim.methods import get_method

    spec = get_method(sc.learning.method)
    n, lo, hi = len(clients), spec.min_clients, spec.max_clients
    if n < lo or (hi is not None and n > hi):
        need = f"exactly {lo}" if lo == hi else f"at least {lo}" if n < lo else f"at most {hi}"
        raise ScenarioError(
            "learning.clients",
            f"method {spec.name!r} needs {need} clients, got {n}: {', '.join(clients)}",
        )
    if spec.needs_server and server is None:
        raise ScenarioError(
            "learning.server",
            f"method {spec.name!r} needs a server: name one or give a node role: server",
        )


def check_network(sc: Scenario, topo: TopologySpec | None = None) -> TopologySpec:
    """Check what the network half needs, without simulating or training anything.

    The topology builds (presets, lengths, key rates), the network accepts it with the
    scenario's cipher (every pool holds one message's key), there are learning clients
    (at least two for the decentralized methods), and every learning node can reach every
    other over the links (an isolated client could never exchange a model).

    Returns
    -------
    TopologySpec
        The built topology (``topo`` if given).

    Raises
    ------
    ScenarioError
        Naming the YAML path of the problem.
    """
    import networkx as nx

    if topo is None:
        topo = build_topology(sc)
    clients = learning_clients(sc, topo)
    if not clients:
        raise ScenarioError("learning.clients", "no client nodes (give some nodes role: client)")
    check_method_nodes(sc, clients, learning_server(sc, topo))
    server = learning_server(sc, topo)
    involved = [*clients, *([server] if server is not None else [])]
    graph = nx.Graph()
    graph.add_nodes_from(n.name for n in topo.nodes)
    graph.add_edges_from((lk.a, lk.b) for lk in topo.links)
    home = nx.node_connected_component(graph, involved[0])
    for name in involved[1:]:
        if name not in home:
            raise ScenarioError(
                "topology.links",
                f"node {name!r} cannot reach {involved[0]!r}: no chain of links joins them, "
                "so they could never exchange a model; link every learning node into one network",
            )
    try:
        max_chunk_bytes(build_cipher(sc), {lk.name: lk.capacity_bits for lk in topo.links})
    except QflError as exc:
        name = str(getattr(exc, "name", "")).removeprefix("link ").partition(":")[0]
        i = next((j for j, lk in enumerate(sc.topology.links) if f"{lk.a}-{lk.b}" == name), -1)
        path = _value_path(sc, i, exc) if i >= 0 else "qkd.pool_capacity_bits"
        raise ScenarioError(path, str(exc)) from None
    return topo
