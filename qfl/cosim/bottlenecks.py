"""Where a run's time goes: key, bandwidth, propagation or compute, per round and per link.

A synchronous round ends when its last chain ends (the server's aggregation waits for every
client; a decentralized round for every pair), so the round's time is the time of that
*critical* chain (:attr:`qfl.cosim.schedule.Timeline.critical`). Its steps split it exactly:
a local update or fusion is ``compute``; a send is its transfer's key wait (``key``),
queueing and serialisation (``bandwidth``), time in flight (``propagation``) and time held by
a fault (``blocked``). Summed over the completed rounds, the shares say what binds the run:
a planner reads "key: 80 %" as "more key rate buys time", "compute: 80 %" as "it does not".
Per link, the seconds transfers spent waiting for that link's key say *where* key binds.

Examples
--------
>>> from qfl.cosim.schedule import Segment, Timeline
>>> tl = Timeline(rounds_done=1, round_end_s=[3.0], round_start_s=[0.0],
...               critical=[(Segment("compute", "a", 0.0, 2.0), Segment("send", "a", 2.0, 3.0))])
>>> time_shares(tl)["compute"]
0.6666666666666666
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from qfl.cosim.schedule import Timeline

__all__ = ["COMPONENTS", "binding", "key_wait_by_link", "round_breakdown", "time_shares"]

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


def binding(shares: dict[str, float], waits: dict[str, float]) -> str:
    """One sentence: what the round time went to most, and the link whose key was waited
    for most (when key is a part of it)."""
    if not any(shares.values()):
        return "no round completed"
    top = max(COMPONENTS, key=lambda c: shares[c])
    text = f"{top} ({100 * shares[top]:.0f} % of round time)"
    if shares["key"] > 0 and waits:
        link, s = next(iter(waits.items()))
        text += f"; key binds most on link {link} ({s:.3g} s of waiting)"
    return text
