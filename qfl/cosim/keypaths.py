"""Key paths: which learning sites a link that makes no key cuts off from the others.

A link whose secret key rate is 0 (too long or too lossy for its QKD system, a measured
``skr_bps: 0``, a finite block that cannot pay its own authentication) never refills its key
store: once its initial fill is spent, no transfer that needs key crosses it. Where such links
are the only way out of a part of the network, the learners in that part can never exchange a
model with the others: the scenario is wrong, not slow. :func:`key_path_findings` says which
links make no key and which learners they isolate; ``qfl validate`` refuses a scenario where a
learner is cut off so (exit 2, one line naming the link, its field, its rate and the site), and
a run's "what binds" (:func:`qfl.cosim.bottlenecks.binding`) names the link and the site.

A zero-rate link on a redundant path (every learner still has a path of links that make key)
is a *warning*, not an error: key-aware routing goes around it, while latency routing may
still send traffic over it and stall there. A zero-rate link out to a dead end without
learners (a relay at the end of a spur) carries no model and is no finding at all.

Nothing is a finding when the cipher needs no key (``cipher.policy: none``).

Examples
--------
>>> from network.topology import LinkSpec, NodeSpec, TopologySpec
>>> topo = TopologySpec(
...     nodes=(NodeSpec("a", "client"), NodeSpec("r", "relay"), NodeSpec("b", "client"),
...            NodeSpec("c", "client")),
...     links=(LinkSpec("a", "r", 5.0, skr_bps=1e3), LinkSpec("b", "r", 5.0, skr_bps=1e3),
...            LinkSpec("c", "r", 150.0, skr_bps=0.0)))
>>> [f.line() for f in key_path_findings(topo, ["a", "b", "c"])]
['link c-r (150 km) makes 0 bit/s of key: it isolates c from the other learners (a, b)']
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from network.topology import LinkSpec, TopologySpec
    from qfl.scenario import Scenario

__all__ = ["KeyPathFinding", "check_key_paths", "key_path_findings", "scenario_findings"]


@dataclass(frozen=True)
class KeyPathFinding:
    """One link that makes no key, and the learning sites it cuts off (if any).

    Attributes
    ----------
    link : str
        The link's name (``a-b``).
    field : str
        The YAML path of the value that makes its rate 0 (``topology.links[9].length_km``),
        or the link's name when there is none (a topology file).
    length_km : float
        Its fibre length.
    rate_bps : float
        Its secret key rate (0).
    isolated : tuple of str
        The learners (clients, server) that only links without key join to the others;
        empty for a zero-rate link on a redundant path.
    others : tuple of str
        The learners on the other side.
    initial_bits : float
        Key in its store at t = 0 (spent once, never refilled).
    """

    link: str
    field: str
    length_km: float
    rate_bps: float
    isolated: tuple[str, ...] = ()
    others: tuple[str, ...] = ()
    initial_bits: float = 0.0

    @property
    def error(self) -> bool:
        """Whether it cuts a learner off for good (no initial key to spend either)."""
        return bool(self.isolated) and self.initial_bits <= 0

    def line(self) -> str:
        """The finding in one line (without the field path)."""
        head = f"link {self.link} ({self.length_km:g} km) makes {self.rate_bps:g} bit/s of key"
        if self.initial_bits > 0:
            head += f" after its initial {self.initial_bits:.3g} bits"
        if not self.isolated:
            return (
                f"{head}: the learners still have a path with key, but traffic routed over it "
                "waits forever (routing: key-aware goes around it)"
            )
        sites = ", ".join(self.isolated)
        verb = "isolates" if len(self.isolated) == 1 else "isolate"
        return f"{head}: it {verb} {sites} from the other learners ({', '.join(self.others)})"


def key_path_findings(
    topo: TopologySpec,
    learners: Sequence[str],
    fields: Sequence[str] | None = None,
) -> list[KeyPathFinding]:
    """The links of ``topo`` that make no key, each with the learners it cuts off.

    Parameters
    ----------
    topo : TopologySpec
        A built topology (every link's ``skr_bps`` resolved, e.g.
        :func:`qfl.cosim.netbuild.build_topology`).
    learners : sequence of str
        The learning nodes (clients, and the server if any), in order: the side holding
        most of them (the first one's, on a tie) is "the others".
    fields : sequence of str, optional
        The YAML path to name for each link (default: its name).

    Returns
    -------
    list of KeyPathFinding
        One per zero-rate link that could carry models, in link order (a link out to a
        dead end without learners is left out). A link on the border of a cut-off part
        names that part's learners in ``isolated``.
    """
    import networkx as nx

    dead = [i for i, lk in enumerate(topo.links) if not (lk.skr_bps or 0.0) > 0]
    if not dead:
        return []
    keyed = nx.Graph()
    keyed.add_nodes_from(n.name for n in topo.nodes)
    keyed.add_edges_from((lk.a, lk.b) for lk in topo.links if (lk.skr_bps or 0.0) > 0)
    parts = [c for c in nx.connected_components(keyed) if any(n in c for n in learners)]
    order = {n: i for i, n in enumerate(learners)}

    def weight(c: set[str]) -> tuple[int, int]:
        inside = [order[n] for n in learners if n in c]
        return (len(inside), -min(inside))

    main = max(parts, key=weight) if parts else set()
    others = tuple(n for n in learners if n in main)
    comp = {n: i for i, c in enumerate(nx.connected_components(keyed)) for n in c}
    members: dict[int, tuple[str, ...]] = {}
    for n in learners:
        if n not in main and n in comp:
            members.setdefault(comp[n], ())
            members[comp[n]] += (n,)
    full = nx.Graph()
    full.add_nodes_from(n.name for n in topo.nodes)
    full.add_edges_from((lk.a, lk.b) for lk in topo.links)
    out = []
    for i in dead:
        lk = topo.links[i]
        cut: tuple[str, ...] = ()
        for end in (lk.a, lk.b):
            if end not in main:
                cut += tuple(n for n in members.get(comp[end], ()) if n not in cut)
        if not cut and not _between_learners(full, lk.a, lk.b, learners):
            continue  # it leads only to nodes without learners: no model crosses it
        out.append(
            KeyPathFinding(
                link=lk.name,
                field=fields[i] if fields is not None else lk.name,
                length_km=lk.length_km,
                rate_bps=float(lk.skr_bps or 0.0),
                isolated=cut,
                others=others,
                initial_bits=lk.initial_bits,
            )
        )
    return out


def _between_learners(graph: Any, a: str, b: str, learners: Sequence[str]) -> bool:
    """Whether link ``a-b`` can carry traffic between learners: without it, each of its ends
    still reaches a learner (a link out to a dead end without learners cannot)."""
    g = graph.copy()
    g.remove_edge(a, b)
    import networkx as nx

    return all(any(n in learners for n in nx.node_connected_component(g, end)) for end in (a, b))


def _field(sc: Scenario, i: int, lk: LinkSpec) -> str:
    """The YAML path of what makes link ``i``'s rate 0."""
    if sc.qkd.rate_scale == 0:
        return "qkd.rate_scale"
    if sc.topology.file is not None or i >= len(sc.topology.links):
        return f"topology.file link {lk.name}"
    if sc.topology.links[i].skr_bps is not None:
        return f"topology.links[{i}].skr_bps"
    return f"topology.links[{i}].length_km"


def scenario_findings(sc: Scenario, topo: TopologySpec) -> list[KeyPathFinding]:
    """:func:`key_path_findings` for scenario ``sc`` on its built topology ``topo``: its
    learners, and each link's field path (nothing when the cipher needs no key)."""
    from qfl.cosim.netbuild import learning_clients, learning_server

    if sc.cipher.policy == "none":
        return []
    server = learning_server(sc, topo)
    learners = [*learning_clients(sc, topo), *([server] if server else [])]
    fields = [_field(sc, i, lk) for i, lk in enumerate(topo.links)]
    return key_path_findings(topo, learners, fields)


def check_key_paths(sc: Scenario, topo: TopologySpec) -> list[str]:
    """Refuse a scenario where a link without key cuts a learner off; return the warnings
    (zero-rate links on redundant paths, or ones with an initial fill to spend).

    Raises
    ------
    ScenarioError
        For the first link that isolates a learner: its field, rate and the site.
    """
    from qfl.scenario import ScenarioError

    warnings = []
    for f in scenario_findings(sc, topo):
        if f.error:
            raise ScenarioError(
                f.field,
                f"{f.line()}; shorten the link, give it a QKD system that reaches, or add "
                "another link",
            )
        warnings.append(f"{f.field}: {f.line()}")
    return warnings
