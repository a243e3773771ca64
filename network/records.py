"""Typed records of a run: transfers, key-pool changes, faults, waits on supply windows; rows
for CSV; summary figures.

Every record converts to a flat ``dict`` of numbers and strings with :func:`to_rows`, ready
for :func:`write_csv` or a DataFrame.
"""

from __future__ import annotations

import csv
import math
from array import array
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, fields
from os import PathLike
from typing import Any, ClassVar, Literal

import numpy as np

__all__ = [
    "FaultRecord",
    "LinkSummary",
    "PoolLog",
    "PoolRecord",
    "Summary",
    "TransferRecord",
    "WindowWait",
    "summarize",
    "to_rows",
    "write_csv",
]

Status = Literal["delivered", "failed", "in_progress"]


@dataclass(frozen=True, slots=True)
class TransferRecord:
    """One transfer, from request to delivery (or failure).

    Times are simulated seconds. ``key_wait_s`` is time spent waiting for key,
    ``queued_s`` waiting for a busy channel, ``transmit_s`` serialising bits onto links,
    ``propagation_s`` in flight, ``blocked_s`` waiting for a fault to clear; summed over hops
    and chunks. ``key_bits`` maps each link name to the key used on it; ``discarded_bits`` is
    key taken for hops that a fault made useless. ``key_wait_by_link`` splits ``key_wait_s``
    over the links the transfer was waiting on (the key of every hop is requested at once and
    awaited in path order, so each second of waiting belongs to one link).
    """

    id: int
    tag: str
    src: str
    dst: str
    n_bytes: int
    status: Status
    reason: str
    t_request: float
    t_end: float
    path: tuple[str, ...]
    key_wait_s: float
    queued_s: float
    transmit_s: float
    propagation_s: float
    blocked_s: float
    key_bits: tuple[tuple[str, float], ...]
    discarded_bits: float
    chunks: int
    reroutes: int
    verified: bool | None = None
    key_wait_by_link: tuple[tuple[str, float], ...] = ()

    @property
    def total_s(self) -> float:
        """Time from request to delivery (or failure)."""
        return self.t_end - self.t_request

    @property
    def key_bits_total(self) -> float:
        """Key used on all links."""
        return sum(b for _, b in self.key_bits)

    def as_row(self) -> dict[str, Any]:
        row = asdict(self)
        row["path"] = ">".join(self.path)
        row["key_bits"] = ";".join(f"{k}:{v:.0f}" for k, v in self.key_bits)
        row["key_wait_by_link"] = ";".join(f"{k}:{v:.6g}" for k, v in self.key_wait_by_link)
        row["total_s"] = self.total_s
        row["key_bits_total"] = self.key_bits_total
        return row


@dataclass(frozen=True, slots=True)
class PoolRecord:
    """A change of a key pool: ``kind`` is ``take``, ``rate`` (``bits`` = the new rate),
    ``wipe`` or ``block`` (a block's key landing, ``bits`` after authentication); ``level`` is
    the level just after."""

    time: float
    link: str
    kind: str
    bits: float
    level: float

    def as_row(self) -> dict[str, Any]:
        return asdict(self)


class PoolLog:
    """Key-pool records kept column-wise (compact for millions of changes).

    Iterating yields :class:`PoolRecord` objects.
    """

    _KINDS = ("take", "rate", "wipe", "block")
    _KIND_INDEX: ClassVar[dict[str, int]] = {k: i for i, k in enumerate(_KINDS)}

    def __init__(self) -> None:
        self._t = array("d")
        self._bits = array("d")
        self._level = array("d")
        self._link = array("i")
        self._kind = array("b")
        self._names: list[str] = []
        self._index: dict[str, int] = {}

    def observer(self, env: Any, link: str) -> Any:
        """A :data:`network.keypool.PoolObserver` that appends to this log.

        The time of a record is the one the pool gives (a block's landing time, which may lie
        before ``env.now``); ``env`` is kept for callers. The records of one link are in time
        order; those of different links may interleave out of order after an idle stretch.
        """
        idx = self._index.setdefault(link, len(self._names))
        if idx == len(self._names):
            self._names.append(link)
        kinds = self._KIND_INDEX
        t, b, lv, lk, kd = self._t, self._bits, self._level, self._link, self._kind

        def observe(kind: str, bits: float, level: float, time: float) -> None:
            t.append(time)
            b.append(bits)
            lv.append(level)
            lk.append(idx)
            kd.append(kinds[kind])

        return observe

    def __len__(self) -> int:
        return len(self._t)

    def __iter__(self) -> Iterator[PoolRecord]:
        for i in range(len(self._t)):
            yield PoolRecord(
                self._t[i],
                self._names[self._link[i]],
                self._KINDS[self._kind[i]],
                self._bits[i],
                self._level[i],
            )

    def for_link(self, link: str) -> list[PoolRecord]:
        """The records of one link, in time order."""
        return [r for r in self if r.link == link]


@dataclass(frozen=True, slots=True)
class FaultRecord:
    """A fault starting or ending: ``kind`` is ``link_cut``, ``link_repair``, ``node_down``,
    ``node_up``, ``eavesdrop_start``, ``eavesdrop_end``, ``tamper_start``, ``tamper_end`` or
    ``pool_wipe``."""

    time: float
    kind: str
    target: str
    detail: str = ""

    def as_row(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class WindowWait:
    """Key requests waited on a link until a supply window raised its rate factor.

    Recorded by :func:`network.schedule.apply_schedule` at an edge of a link's supply
    schedule where the factor rises while requests wait, if the link made no key before it
    (``factor_before == 0``) or the edge ends a differently labelled stretch (a maintenance
    window at half rate); the steps inside one labelled window (the rising steps of a pass
    profile, all labelled ``"pass k"``) record nothing.

    ``time`` is when the factor rose (the window opened), ``waiting_since`` when the oldest
    waiting request was made (or the previous edge, if later), ``waited_s`` the difference;
    ``window`` is the index of the window that opened (None: the stretch outside every
    window), ``label`` its label and ``previous_label`` that of the stretch that ended,
    ``factor_before`` / ``factor_after`` the factors around the edge, ``waiters`` and
    ``pending_bits`` what was waiting. Times are simulated seconds, bits are key bits.
    """

    time: float
    link: str
    window: int | None
    label: str
    previous_label: str
    factor_before: float
    factor_after: float
    waiting_since: float
    waiters: int
    pending_bits: float

    @property
    def waited_s(self) -> float:
        """Seconds the oldest request had waited at the edge, within the last stretch."""
        return self.time - self.waiting_since

    @classmethod
    def columns(cls) -> list[str]:
        """The keys of :meth:`as_row`, in order (a CSV header even when there are no rows)."""
        return [
            "time",
            "link",
            "window",
            "label",
            "previous_label",
            "factor_before",
            "factor_after",
            "waiting_since",
            "waited_s",
            "waiters",
            "pending_bits",
        ]

    def as_row(self) -> dict[str, Any]:
        """A flat row; ``window`` is -1 for the stretch outside every window."""
        return {
            "time": self.time,
            "link": self.link,
            "window": -1 if self.window is None else self.window,
            "label": self.label,
            "previous_label": self.previous_label,
            "factor_before": self.factor_before,
            "factor_after": self.factor_after,
            "waiting_since": self.waiting_since,
            "waited_s": self.waited_s,
            "waiters": self.waiters,
            "pending_bits": self.pending_bits,
        }


@dataclass(frozen=True, slots=True)
class LinkSummary:
    """Key accounting of one link: ``initial + generated == consumed + wasted + wiped + level +
    auth`` (``auth_bits``: key consumed by QKD authentication of block post-processing)."""

    link: str
    rate_bps: float
    initial_bits: float
    generated_bits: float
    consumed_bits: float
    wasted_bits: float
    wiped_bits: float
    level_bits: float
    auth_bits: float = 0.0

    def as_row(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Summary:
    """Summary figures of a run (latencies over delivered transfers, in seconds;
    ``key_auth_bits``: key consumed by QKD authentication of block post-processing)."""

    time: float
    delivered: int
    failed: int
    in_progress: int
    latency_p50_s: float
    latency_p90_s: float
    latency_p99_s: float
    latency_max_s: float
    latency_mean_s: float
    key_wait_mean_s: float
    key_wait_total_s: float
    key_generated_bits: float
    key_consumed_bits: float
    key_wasted_bits: float
    links: tuple[LinkSummary, ...]
    key_auth_bits: float = 0.0

    def as_row(self) -> dict[str, Any]:
        """The network-wide figures (per-link rows: ``to_rows(summary.links)``)."""
        row = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "links"}
        return row


def summarize(
    time: float,
    transfers: Sequence[TransferRecord],
    in_progress: int,
    links: Sequence[LinkSummary],
) -> Summary:
    """Build the :class:`Summary` of a run from its records."""
    done = [r for r in transfers if r.status == "delivered"]
    lat = np.array([r.total_s for r in done], dtype=float)
    waits = np.array([r.key_wait_s for r in done], dtype=float)

    def pct(q: float) -> float:
        return float(np.percentile(lat, q)) if lat.size else math.nan

    return Summary(
        time=time,
        delivered=len(done),
        failed=sum(r.status == "failed" for r in transfers),
        in_progress=in_progress,
        latency_p50_s=pct(50),
        latency_p90_s=pct(90),
        latency_p99_s=pct(99),
        latency_max_s=float(lat.max()) if lat.size else math.nan,
        latency_mean_s=float(lat.mean()) if lat.size else math.nan,
        key_wait_mean_s=float(waits.mean()) if waits.size else math.nan,
        key_wait_total_s=float(waits.sum()),
        key_generated_bits=sum(s.generated_bits for s in links),
        key_consumed_bits=sum(s.consumed_bits for s in links),
        key_wasted_bits=sum(s.wasted_bits for s in links),
        links=tuple(links),
        key_auth_bits=sum(s.auth_bits for s in links),
    )


def to_rows(records: Iterable[Any]) -> list[dict[str, Any]]:
    """Each record's ``as_row()`` (works for every record type and :class:`PoolLog`)."""
    return [r.as_row() for r in records]


def write_csv(
    path: str | PathLike[str], records: Iterable[Any], columns: Sequence[str] | None = None
) -> int:
    """Write records as CSV with a header; returns the number of rows.

    Parameters
    ----------
    columns : sequence of str, optional
        The header (default: the first row's keys); given, an empty file still gets it, e.g.
        ``write_csv("window_waits.csv", net.window_waits, WindowWait.columns())``.
    """
    rows = to_rows(records)
    with open(path, "w", newline="") as fh:
        if not rows and columns is None:
            return 0
        w = csv.DictWriter(fh, fieldnames=list(columns if columns is not None else rows[0]))
        w.writeheader()
        w.writerows(rows)
    return len(rows)
