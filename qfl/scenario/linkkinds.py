"""Which kind of QKD link each link is, with its parameters, and its supply schedule.

A link's kind is, in this order: its own ``protocol``; the kind of the ``qkd.systems`` entry
its ``system`` names; the kind of the network's system (``qkd.system``) when the link names
none; ``qkd.protocol``. A BB84 model (``decoy-bb84``, ``decoy-1``, ...) runs the link's
``system`` (qkd.params) as before. Any other registered kind (:mod:`qkd.kinds`: MDI,
twin-field, CV-QKD) takes its parameters from the link's ``system`` when that names one of
the kind's presets or a ``qkd.systems`` entry of that kind (``base`` a preset of the kind,
``params`` the values to override), else from ``qkd.system`` / ``qkd.preset`` when they do,
else from the kind's default preset; the link's (or ``qkd``'s) ``attenuation_db_per_km``
overrides the fibre loss. A link with a satellite (``satellites``) at one end is a satellite
downlink: its key comes from the satellite's passes over the other end.

Nothing here names a kind by string: kinds come from the registry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from qfl.scenario.base import ScenarioError
from qfl.scenario.qkd import BB84_PROTOCOLS
from qkd.errors import ParameterError, QflError

if TYPE_CHECKING:
    from network.schedule import Schedule

Scenario = Any  # qfl.scenario.document.Scenario (not imported: document imports this module)

__all__ = [
    "SATELLITE_KIND",
    "LinkKindChoice",
    "check_link_kinds",
    "link_kind",
    "link_schedule",
]

SATELLITE_KIND = "satellite-downlink"
"""The kind written for a satellite's links (their model is :mod:`qkd.satellite`)."""


@dataclass(frozen=True)
class LinkKindChoice:
    """A link's kind as resolved from the scenario.

    Attributes
    ----------
    kind : str
        A BB84 model, a registered kind or :data:`SATELLITE_KIND`.
    path : str
        The YAML path that chose it.
    params : object, optional
        The kind's parameters (kinds other than the BB84 models).
    satellite : str, optional
        The satellite of a satellite downlink.
    """

    kind: str
    path: str
    params: Any = None
    satellite: str | None = None

    @property
    def other_kind(self) -> bool:
        """A registered kind other than the BB84 models (rate from :mod:`qkd.kinds`)."""
        return self.satellite is None and self.kind not in BB84_PROTOCOLS

    @property
    def rate_unit(self) -> str:
        """The unit of the kind's rate per channel use (``bit/pulse``, ``bit/symbol``...)."""
        from qkd.kinds import KINDS

        entry = KINDS.get(self.kind)
        return entry.rate_unit if entry is not None else "bit/pulse"

    @property
    def untrusted_middle(self) -> bool:
        """Whether the link has an untrusted station in its middle (MDI, twin-field)."""
        from qkd.kinds import KINDS

        entry = KINDS.get(self.kind)
        return bool(entry is not None and entry.untrusted_middle)

    @property
    def uses_per_second(self) -> float | None:
        """Clock or symbol rate of another kind's system (None otherwise)."""
        from qkd.kinds import get_kind

        return get_kind(self.kind).uses_per_second(self.params) if self.other_kind else None


def _kind_params(sc: Scenario, kind: str, i: int) -> Any:
    """Another kind's parameters for link ``i`` (``-1``: a link read from topology.file)."""
    from qkd.kinds import get_kind

    q = sc.qkd
    entry = get_kind(kind)
    lk = sc.topology.links[i] if i >= 0 else None
    own = (lk.system or lk.preset) if lk is not None else None
    own_path = f"topology.links[{i}].{'system' if lk is not None and lk.system else 'preset'}"
    mapping: dict[str, Any] = {}
    where = "qkd.protocol"
    for name, path, strict in ((own, own_path, True), (q.system, "qkd.system", False),
                               (q.preset, "qkd.preset", False)):  # fmt: skip
        if name is None:
            continue
        d = q.systems.get(name)
        if d is not None and d.other_kind:
            if d.kind != kind:
                if strict:
                    raise ScenarioError(
                        path, f"system {name!r} is of kind {d.kind!r}, but this link runs "
                        f"{kind!r}; name a system of kind {kind!r}",
                    )  # fmt: skip
                continue
            mapping = dict(d.params) | ({"preset": d.base} if d.base else {})
            where = f"qkd.systems.{name}"
            break
        if name in entry.presets:
            mapping, where = {"preset": name}, path
            break
        if strict:
            presets = ", ".join(repr(p) for p in sorted(entry.presets))
            raise ScenarioError(
                path,
                f"must be a system of kind {kind!r} (one of its presets {presets}, or a "
                f"qkd.systems entry with kind: {kind}), got {name!r}",
            )
    loss = lk.attenuation_db_per_km if lk is not None else None
    loss = q.attenuation_db_per_km if loss is None else loss
    try:
        params = entry.from_mapping(mapping)
        return params if loss is None else _with_loss(params, loss)
    except QflError as exc:
        key = str(getattr(exc, "name", ""))
        field = "base" if key == "preset" else f"params.{key}"
        path = f"{where}.{field}" if where.startswith("qkd.systems.") else where
        raise ScenarioError(path, str(exc).partition(": ")[2] or str(exc)) from None


def _with_loss(params: Any, loss: float) -> Any:
    from dataclasses import replace

    return replace(params, fibre=replace(params.fibre, attenuation_db_per_km=float(loss)))


def link_kind(sc: Scenario, i: int) -> LinkKindChoice:
    """The kind of ``topology.links[i]`` (``i = -1``: a link of ``topology.file``).

    Raises
    ------
    ScenarioError
        A kind that contradicts the link's system, a system of the wrong kind, a bad
        parameter, a protocol on a satellite link, naming the YAML path.
    """
    q = sc.qkd
    lk = sc.topology.links[i] if i >= 0 else None
    if lk is not None:
        sats = [e for e in (lk.a, lk.b) if e in sc.satellites]
        if sats:
            if len(sats) == 2:
                raise ScenarioError(
                    f"topology.links[{i}]",
                    f"joins two satellites ({lk.a}, {lk.b}); a satellite link goes to a "
                    "ground node with latitude and longitude",
                )
            if lk.protocol is not None:
                raise ScenarioError(
                    f"topology.links[{i}].protocol",
                    f"must be unset on a satellite link (its key comes from "
                    f"satellites.{sats[0]}'s downlink), got {lk.protocol!r}",
                )
            if lk.schedule is not None:
                raise ScenarioError(
                    f"topology.links[{i}].schedule",
                    f"must be unset on a satellite link (its schedule is the passes of "
                    f"satellites.{sats[0]})",
                )
            return LinkKindChoice(SATELLITE_KIND, f"satellites.{sats[0]}", satellite=sats[0])
    own = (lk.system or lk.preset) if lk is not None else None
    d = q.systems.get(own) if own else None
    net = q.systems.get(q.network_system)
    if lk is not None and lk.protocol is not None:
        kind, path = lk.protocol, f"topology.links[{i}].protocol"
    elif d is not None and d.other_kind:
        kind, path = str(d.kind), f"qkd.systems.{own}.kind"
    elif own is None and net is not None and net.other_kind:
        kind, path = str(net.kind), f"qkd.systems.{q.network_system}.kind"
    else:
        kind, path = q.protocol, "qkd.protocol"
    if kind in BB84_PROTOCOLS:
        if d is not None and d.other_kind:
            raise ScenarioError(
                f"topology.links[{i}].system",
                f"system {own!r} is of kind {d.kind!r}, but this link runs {kind!r} ({path})",
            )
        return LinkKindChoice(kind, path)
    return LinkKindChoice(kind, path, params=_kind_params(sc, kind, i))


def link_schedule(sc: Scenario, i: int) -> Schedule | None:
    """The supply schedule of ``topology.links[i]`` (None without one).

    Raises
    ------
    ScenarioError
        A window that ends before it starts, overlaps the previous one or ends after
        ``horizon_s``, naming ``topology.links[i].schedule.windows[j]``.
    """
    from network.schedule import Schedule, Window

    lk = sc.topology.links[i]
    if lk.schedule is None:
        return None
    where = f"topology.links[{i}].schedule"
    try:
        wins = [Window(w.start_s, w.end_s, w.factor, w.label) for w in lk.schedule.windows]
        return Schedule(tuple(wins), lk.schedule.default, sc.horizon_s, where=where)
    except ParameterError as exc:
        raise ScenarioError(str(exc.name), str(exc).partition(": ")[2]) from None


def check_link_kinds(sc: Scenario) -> None:
    """Check every link's kind, parameters and schedule, the ``qkd.systems`` of other kinds
    and the satellites' names and ground nodes.

    Raises
    ------
    ScenarioError
        Naming the YAML path of the first problem.
    """
    from qkd.kinds import get_kind

    q = sc.qkd
    for name, d in q.systems.items():
        if not d.other_kind:
            if d.params:
                raise ScenarioError(
                    f"qkd.systems.{name}.params",
                    "only with `kind` (a kind other than BB84); a BB84 system takes the "
                    "fields clock_hz, detector, source, ...",
                )
            continue
        given = sorted(d.values())
        if given:
            raise ScenarioError(
                f"qkd.systems.{name}.{given[0]}",
                f"not a field of kind {d.kind!r}: give its parameters under `params`",
            )
        entry = get_kind(str(d.kind))
        try:
            entry.from_mapping(dict(d.params) | ({"preset": d.base} if d.base else {}))
        except QflError as exc:
            key = str(getattr(exc, "name", ""))
            field = "base" if key == "preset" else f"params.{key}"
            msg = str(exc).partition(": ")[2] or str(exc)
            raise ScenarioError(f"qkd.systems.{name}.{field}", msg) from None
    nodes = {n.name: n for n in sc.topology.nodes}
    for name in sc.satellites:
        if name in nodes:
            raise ScenarioError(
                f"satellites.{name}", "a node of topology.nodes has this name; rename one"
            )
    if sc.topology.file is not None:
        if sc.satellites:
            raise ScenarioError(
                f"satellites.{next(iter(sc.satellites))}",
                "needs inline topology.links (a link from the satellite to a ground node); "
                "a topology.file has no satellite links",
            )
        if q.protocol not in BB84_PROTOCOLS:
            link_kind(sc, -1)
        return
    for i, lk in enumerate(sc.topology.links):
        choice = link_kind(sc, i)
        link_schedule(sc, i)
        if choice.satellite is not None:
            ground = lk.b if lk.a == choice.satellite else lk.a
            end = "b" if lk.a == choice.satellite else "a"
            node = nodes.get(ground)
            if node is not None and (node.latitude is None or node.longitude is None):
                raise ScenarioError(
                    f"topology.links[{i}].{end}",
                    f"ground node {ground!r} of a satellite link needs latitude and longitude "
                    "(the passes depend on where it is)",
                )
