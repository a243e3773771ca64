"""Where a run's time goes: key, bandwidth, propagation or compute, per round and per link.

A synchronous round ends when its last chain ends (the server's aggregation waits for every
client; a decentralized round for every pair), so the round's time is the time of that
*critical* chain (:attr:`qfl.cosim.schedule.Timeline.critical`). Its steps split it exactly:
a local update or fusion is ``compute``; a send is its transfer's key wait (``key``),
queueing and serialisation (``bandwidth``), time in flight (``propagation``) and time held by
a fault (``blocked``). Summed over the completed rounds, the shares say what binds the run:
a planner reads "key: 80 %" as "more key rate buys time", "compute: 80 %" as "it does not".
Per link, the seconds transfers spent waiting for that link's key say *where* key binds,
and on a link with a supply schedule (a satellite's passes, a maintenance window),
:func:`window_report` says which window key waited for: "key on sat-remote waited 41 min for
pass 2".

:func:`round_report` gives each round's split with the step that ended it (its ``critical``
description), :func:`link_report` each link's key wait, channel utilisation and key
accounting: the ``round_breakdown`` and ``links`` of ``summary.json``, drawn in
``bottlenecks.png`` (:func:`qfl.cosim.plots.plot_bottlenecks`).

Examples
--------
>>> from qfl.cosim.schedule import Segment, Timeline
>>> tl = Timeline(rounds_done=1, round_end_s=[3.0], round_start_s=[0.0],
...               critical=[(Segment("compute", "a", 0.0, 2.0), Segment("send", "a", 2.0, 3.0))])
>>> time_shares(tl)["compute"]
0.6666666666666666
"""

from __future__ import annotations

import itertools
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from qfl.cosim.schedule import Segment, Timeline

if TYPE_CHECKING:
    from network import Link, LinkSummary
    from qfl.cosim.keypaths import KeyPathFinding

__all__ = [
    "COMPONENTS",
    "binding",
    "describe_step",
    "key_wait_by_link",
    "link_report",
    "round_breakdown",
    "round_report",
    "time_shares",
    "window_report",
]

COMPONENTS = ("compute", "key", "bandwidth", "propagation", "blocked")


def round_breakdown(tl: Timeline) -> list[dict[str, float]]:
    """Per completed round, the seconds of its critical chain in each component (and
    ``duration_s``). A send refused at once (no record) counts as ``blocked``."""
    out = []
    for r in range(tl.rounds_done):
        parts = dict.fromkeys(COMPONENTS, 0.0)
        for seg in tl.critical[r] if r < len(tl.critical) else ():
            span = seg.end_s - seg.start_s
            rec = seg.record
            if seg.kind == "compute":
                parts["compute"] += span
            elif rec is None:
                parts["blocked"] += span
            else:
                parts["key"] += rec.key_wait_s
                parts["bandwidth"] += rec.queued_s + rec.transmit_s
                parts["propagation"] += rec.propagation_s
                rest = span - rec.key_wait_s - rec.queued_s - rec.transmit_s - rec.propagation_s
                parts["blocked"] += rest if rest > 1e-9 * span else 0.0  # not float residue
        start = tl.round_start_s[r] if r < len(tl.round_start_s) else 0.0
        parts["duration_s"] = tl.round_end_s[r] - start
        out.append(parts)
    return out


def time_shares(tl: Timeline) -> dict[str, float]:
    """Each component's share of the completed rounds' time (0 when no time passed)."""
    rounds = round_breakdown(tl)
    total = sum(p["duration_s"] for p in rounds)
    if total <= 0:
        return dict.fromkeys(COMPONENTS, 0.0)
    return {c: sum(p[c] for p in rounds) / total for c in COMPONENTS}


def key_wait_by_link(records: Iterable[Any]) -> dict[str, float]:
    """Seconds transfers waited for each link's key, largest first (links without wait are
    left out)."""
    waits: dict[str, float] = {}
    for rec in records:
        for link, s in rec.key_wait_by_link:
            waits[link] = waits.get(link, 0.0) + s
    return dict(sorted(waits.items(), key=lambda kv: (-kv[1], kv[0])))


def binding(
    shares: dict[str, float],
    waits: dict[str, float],
    no_key: Sequence[KeyPathFinding] = (),
    *,
    never_received: int = 0,
) -> str:
    """One sentence: what the round time went to most, and the link whose key was waited
    for most (when key is a part of it).

    ``no_key`` are the links that make no key and cut learners off
    (:func:`qfl.cosim.keypaths.scenario_findings`): their transfers never complete, so the
    completed rounds' shares cannot show them; the sentence then starts with ``key: no key
    path``, naming each link and the sites it isolates (and ``never_received``, the model
    exchanges the learners never received).

    Examples
    --------
    >>> binding({"compute": 0.6, "key": 0.4, "bandwidth": 0, "propagation": 0,
    ...          "blocked": 0}, {"a-r": 3.0})
    'compute (60 % of round time); key binds most on link a-r (3 s of waiting)'
    """
    head = ""
    if no_key:
        cut = "; ".join(
            f"link {f.link} makes {f.rate_bps:g} bit/s and isolates {', '.join(f.isolated)}"
            for f in no_key
        )
        lost = f", {never_received} model exchanges never received" if never_received else ""
        head = f"key: no key path ({cut}{lost})"
    if not any(shares.values()):
        return f"{head}; no round completed" if head else "no round completed"
    top = max(COMPONENTS, key=lambda c: shares[c])
    text = f"{top} ({100 * shares[top]:.0f} % of round time)"
    if shares["key"] > 0 and waits:
        link, s = next(iter(waits.items()))
        text += f"; key binds most on link {link} ({s:.3g} s of waiting)"
    return f"{head}; the completed rounds: {text}" if head else text


LinkNames = Mapping[frozenset[str], str]
"""A link's name by its pair of ends (``QKDNetwork.links`` gives the link objects so)."""


def _link_name(u: str, v: str, names: LinkNames | None) -> str:
    if names is not None:
        name = names.get(frozenset((u, v)))
        if name is not None:
            return name
    return f"{u}-{v}"


OpIndex = dict[tuple[int, str, float, float], list[str]]


def _ops_index(tl: Timeline) -> OpIndex:
    """The operations of ``tl.ops`` by (round, node, start, end)."""
    index: OpIndex = {}
    for op in tl.ops:
        key = (op["round"], op["node"], op["start_s"], op["end_s"])
        index.setdefault(key, []).append(str(op["op"]))
    return index


def describe_step(tl: Timeline, r: int, seg: Segment, names: LinkNames | None = None) -> str:
    """A short description of one step of round ``r`` (0-based): ``compute fuse at c2``,
    ``send c3->server (links c3-r1, r1-server)``, with ``failed: why`` when a send failed.

    Parameters
    ----------
    tl : Timeline
        The run's timeline (its ``ops`` name compute steps and refused sends).
    r : int
        The round, 0-based.
    seg : Segment
        The step.
    names : mapping, optional
        Link names by their pair of ends (default ``a-b`` in path order).

    Examples
    --------
    >>> tl = Timeline(ops=[{"round": 0, "node": "c2", "op": "fuse", "start_s": 1.0,
    ...                     "end_s": 2.0}])
    >>> describe_step(tl, 0, Segment("compute", "c2", 1.0, 2.0))
    'compute fuse at c2'
    """
    return _describe(_ops_index(tl), r, seg, names)


def _describe(index: OpIndex, r: int, seg: Segment, names: LinkNames | None) -> str:
    ops = index.get((r, seg.node, seg.start_s, seg.end_s), [])
    sends = [op for op in ops if op.startswith("send:")]
    if seg.kind == "compute":
        what = next((op for op in ops if op not in sends and op != "aggregate"), "step")
        return f"compute {what.replace('-', ' ')} at {seg.node}"
    rec = seg.record
    if rec is None:  # refused at once: the operation says to whom and why
        head, _, why = (sends[0] if sends else "").partition(" (failed: ")
        dst = head.rpartition("->")[2] or "?"
        why = textwrap.shorten(why.removesuffix(")"), _REASON_CHARS, placeholder="...")
        return f"send {seg.node}->{dst} refused ({why or 'no route'})"
    text = f"send {rec.src}->{rec.dst}"
    if len(rec.path) > 1:
        hops = [_link_name(u, v, names) for u, v in itertools.pairwise(rec.path)]
        text += f" ({'link' if len(hops) == 1 else 'links'} {', '.join(hops)})"
    if rec.status != "delivered":
        text += " " + rec.status.replace("_", " ")
        if rec.reason:
            text += ": " + textwrap.shorten(rec.reason, _REASON_CHARS, placeholder="...")
    return text


_REASON_CHARS = 100
"""A failed send's reason is shortened to this many characters in a step's description."""


def _ending(index: OpIndex, r: int, chain: tuple[Segment, ...], names: LinkNames | None) -> str:
    """The last step of a critical chain; a compute step says which send it followed."""
    if not chain:
        return "no step"
    text = _describe(index, r, chain[-1], names)
    if chain[-1].kind == "compute":
        rec = next((s.record for s in reversed(chain) if s.record is not None), None)
        if rec is not None:
            text += f", after send {rec.src}->{rec.dst}"
    return text


def round_report(tl: Timeline, names: LinkNames | None = None) -> list[dict[str, Any]]:
    """Per completed round: when it ran, its split (:func:`round_breakdown`) and the step
    that ended it (the last step of its critical chain, :func:`describe_step`).

    Returns
    -------
    list of dict
        ``round`` (1-based), ``start_s``, ``end_s``, ``duration_s``, the seconds of each of
        :data:`COMPONENTS` (they sum to ``duration_s``) and ``critical``: the step that
        ended the round, e.g. ``send c3->server (links c3-r1, r1-server)`` or ``compute
        fuse at c2, after send c1->c2`` (``"no step"`` for a round without one).
    """
    out = []
    index = _ops_index(tl)
    for r, parts in enumerate(round_breakdown(tl)):
        start = tl.round_start_s[r] if r < len(tl.round_start_s) else 0.0
        chain = tl.critical[r] if r < len(tl.critical) else ()
        row: dict[str, Any] = {
            "round": r + 1,
            "start_s": start,
            "end_s": tl.round_end_s[r],
            "duration_s": parts["duration_s"],
        }
        row.update((c, parts[c]) for c in COMPONENTS)
        row["critical"] = _ending(index, r, chain, names)
        out.append(row)
    return out


def link_report(
    links: Iterable[Link],
    summaries: Iterable[LinkSummary],
    waits: Mapping[str, float],
    time_s: float,
) -> list[dict[str, Any]]:
    """Per link: key rate, key generated / consumed / wasted, key wait, utilisation.

    Parameters
    ----------
    links : iterable of Link
        The network's links (``QKDNetwork.links.values()``), in the order to report.
    summaries : iterable of LinkSummary
        Their key accounting (``QKDNetwork.link_summaries()``).
    waits : mapping
        Seconds transfers waited for each link's key (:func:`key_wait_by_link`).
    time_s : float
        The run's simulated time.

    Returns
    -------
    list of dict
        ``link``, ``skr_bps``, ``key_generated_bits``, ``key_consumed_bits``,
        ``key_wasted_bits``, ``key_wait_s``, ``utilisation`` (the fraction of ``time_s``
        the busier direction of the link's classical channel spent serialising frames that
        crossed it, in [0, 1]) and ``bytes_sent`` (both directions).
    """
    acc = {s.link: s for s in summaries}
    out = []
    for lk in links:
        s = acc[lk.name]
        busy = max(lk.busy_s.values(), default=0.0)
        out.append(
            {
                "link": lk.name,
                "skr_bps": lk.nominal_rate_bps,
                "key_generated_bits": s.generated_bits,
                "key_consumed_bits": s.consumed_bits,
                "key_wasted_bits": s.wasted_bits,
                "key_wait_s": float(waits.get(lk.name, 0.0)),
                "utilisation": min(1.0, busy / time_s) if time_s > 0 else 0.0,
                "bytes_sent": lk.bytes_sent,
            }
        )
    return out


def _span(seconds: float) -> str:
    """A duration for a sentence: ``41 min``, ``2.5 h``, ``12 s``."""
    if seconds >= 2 * 3600:
        return f"{seconds / 3600:.3g} h"
    if seconds >= 120:
        return f"{seconds / 60:.3g} min"
    return f"{seconds:.3g} s"


def window_report(waits: Iterable[Any]) -> list[dict[str, Any]]:
    """When key waited on a link until a window of its schedule opened, one sentence each.

    Parameters
    ----------
    waits : iterable of WindowWait
        ``QKDNetwork.window_waits`` (:class:`network.records.WindowWait`).

    Returns
    -------
    list of dict
        In time order: ``link``, ``window`` (its label), ``opened_s``, ``waited_s``,
        ``pending_bits`` and ``sentence``, e.g. ``key on sat-remote waited 41 min for pass
        2``.

    Examples
    --------
    >>> from network.records import WindowWait
    >>> w = WindowWait(3000.0, "sat-remote", 7, "pass 2", "", 0.0, 0.4, 540.0, 1, 8e4)
    >>> window_report([w])[0]["sentence"]
    'key on sat-remote waited 41 min for pass 2 (opened at 50 min)'
    """
    out = []
    for w in sorted(waits, key=lambda w: w.time):
        label = w.label or (f"window {w.window}" if w.window is not None else "its nominal rate")
        sentence = (
            f"key on {w.link} waited {_span(w.waited_s)} for {label} (opened at {_span(w.time)})"
        )
        out.append(
            {
                "link": w.link,
                "window": label,
                "opened_s": w.time,
                "waited_s": w.waited_s,
                "pending_bits": w.pending_bits,
                "sentence": sentence,
            }
        )
    return out
