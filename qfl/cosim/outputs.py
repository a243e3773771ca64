"""The run folder: one writer for ``qfl simulate`` and every point of ``qfl sweep``.

``scenario.yaml``
    the resolved scenario (with ``--quick`` and ``--set`` applied);
``topology.json``
    nodes and links with their secret key rates, each link's kind (``kind``: a BB84 model,
    a registered kind or ``satellite-downlink``), the unit of that kind's rate per channel
    use (``rate_unit``), whether it has an untrusted middle station and a supply schedule
    (for the topology plot);
``transfers.csv``, ``keypools.csv``, ``faults.csv``, ``ops.csv``, ``window_waits.csv``
    every transfer, key-pool change, fault and learning operation, in simulated time
    (``keypools.csv`` between a ``start`` and an ``end`` row per link: see ``_pool_rows``),
    and every time key waited on a link until a schedule window (a satellite pass) opened
    (``window_waits.csv``, :class:`network.records.WindowWait`);
``metrics.csv``
    one row per evaluation and client (and ``node = mean``), appended as training runs;
``summary.json``
    final accuracy, time and rounds to the target accuracy, key generated / consumed /
    wasted, time stalled on key, status; each round's time by cause and the step that ended
    it (``round_breakdown``), each link's key, key wait and utilisation (``links``). Of the
    accuracies, ``final_global_acc`` is on the common test set (each client's model, or the
    global model at the client's exit), ``final_local_acc`` on each client's own held-out
    data, and (multi-exit) ``final_exit_acc`` the local held-out accuracy at each exit; all
    three are means over clients;
``accuracy.png``, ``keypools.png``, ``topology.png``, ``bottlenecks.png``
    the plots (:func:`qfl.cosim.plots.redraw` draws them all from the files above).
``error.log``
    only after an unexpected error: its traceback (written by the command line,
    :mod:`qfl.commands.crash`).

Every file but ``metrics.csv`` is written whole through a temporary file and renamed, and
``metrics.csv`` is flushed after each evaluation, so an interrupted run leaves a consistent
folder.
"""

from __future__ import annotations

import csv
import json
import math
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from network.records import WindowWait, to_rows
from qfl.cosim.jobs import EvalRow
from qfl.cosim.netbuild import link_kinds
from qfl.scenario import Scenario, ScenarioError, check_folder_name

if TYPE_CHECKING:
    from network import QKDNetwork
    from qfl.cosim.netrun import NetworkRun

__all__ = [
    "METRIC_COLUMNS",
    "RunFolder",
    "check_folder_name",
    "claim_folder",
    "metric_row",
    "new_folder",
    "write_network_outputs",
]

METRIC_COLUMNS = ("sim_time_s", "round", "node", "global_acc", "local_acc", "exit_acc")


def _mkdir(path: Path, what: str, **kw: bool) -> None:
    try:
        path.mkdir(**kw)
    except FileExistsError:
        raise
    except OSError as exc:
        raise ScenarioError(what, f"cannot create {str(path)!r} ({exc.strerror})") from None


def _writable(folder: Path, what: str) -> None:
    """Probe ``folder`` with a file (``os.access`` says yes to root on a read-only mount)."""
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".qfl-probe-"):
            pass
    except OSError as exc:
        raise ScenarioError(
            what, f"folder {str(folder)!r} is not writable ({exc.strerror})"
        ) from None


def _check_parent(parent: Path, what: str) -> None:
    if parent.exists() and not parent.is_dir():
        raise ScenarioError(what, f"{str(parent)!r} is a file, not a folder")
    _mkdir(parent, what, parents=True, exist_ok=True)
    _writable(parent, what)


def new_folder(parent: Path, name: str, *, what: str = "outputs.dir") -> Path:
    """Create ``parent/name``, or ``name-2``, ``-3``... if taken, atomically: two runs
    started at once get two folders, and nothing is overwritten."""
    _check_parent(parent, what)
    k = 1
    while True:
        candidate = parent / (name if k == 1 else f"{name}-{k}")
        try:
            _mkdir(candidate, what)
        except FileExistsError:
            k += 1
            continue
        return candidate


def claim_folder(folder: Path, *, what: str = "--out", existing_ok: bool = False) -> Path:
    """Make ``folder`` ready to write into, before any work: not a file, writable, and
    empty unless ``existing_ok`` (a resumed sweep)."""
    if folder.exists() and not folder.is_dir():
        raise ScenarioError(what, f"{str(folder)!r} is a file, not a folder")
    _check_parent(folder.parent, what)
    _mkdir(folder, what, exist_ok=True)
    _writable(folder, what)
    if not existing_ok and any(folder.iterdir()):
        raise ScenarioError(what, f"folder {str(folder)!r} exists and is not empty")
    return folder


def _write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def _write_rows_atomic(path: Path, rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(columns), extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    tmp.replace(path)


def _records_rows(records: Sequence[Any]) -> tuple[list[dict[str, Any]], list[str]]:
    rows = to_rows(records)
    cols = list(rows[0]) if rows else []
    return rows, cols


def _pool_rows(net: QKDNetwork) -> list[dict[str, Any]]:
    """``keypools.csv``: a ``start`` row per link (time 0, ``bits`` its key rate, its initial
    fill), every change of the pool log (``take``, ``block``, ``rate``, ``wipe``), and an
    ``end`` row per link (now, its rate and level): with these the level is known at every
    time (``qfl.cosim.plots.keypool_series``), also on links that no transfer used."""
    links = list(net.links.values())
    rows: list[dict[str, Any]] = [
        {
            "sim_time_s": 0.0,
            "link": lk.name,
            "event": "start",
            "bits": lk.nominal_rate_bps,
            "level_bits": lk.pool.initial_bits,
        }
        for lk in links
    ]
    rows += [
        {
            "sim_time_s": r.time,
            "link": r.link,
            "event": r.kind,
            "bits": r.bits,
            "level_bits": r.level,
        }
        for r in net.pool_log
    ]
    now = float(net.env.now)
    rows += [
        {
            "sim_time_s": now,
            "link": lk.name,
            "event": "end",
            "bits": lk.pool.rate_bps,
            "level_bits": lk.pool.level,
        }
        for lk in links
    ]
    return rows


def write_scenario(folder: Path, sc: Scenario) -> None:
    """The resolved scenario as ``scenario.yaml``."""
    doc = yaml.safe_dump(sc.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
    _write_text_atomic(folder / "scenario.yaml", doc)


def write_unsimulated(folder: Path, sc: Scenario, summary: dict[str, Any]) -> None:
    """The folder of a run whose network half did not finish: its scenario and summary."""
    folder.mkdir(parents=True, exist_ok=True)
    write_scenario(folder, sc)
    _write_text_atomic(folder / "summary.json", json.dumps(summary, indent=2, default=str))


def write_network_outputs(nrun: NetworkRun, folder: Path) -> None:
    """Write the resolved scenario, topology, transfers, key pools, faults and operations."""
    folder.mkdir(parents=True, exist_ok=True)
    write_scenario(folder, nrun.scenario)
    topo = nrun.topology
    kinds = link_kinds(nrun.scenario, len(topo.links))
    topo_json = {
        "nodes": [
            {
                "name": n.name,
                "role": n.role,
                "flops_per_s": n.flops_per_s,
                "latitude": n.lat,
                "longitude": n.lon,
            }
            for n in topo.nodes
        ],
        "links": [
            {
                "a": lk.a,
                "b": lk.b,
                "length_km": lk.length_km,
                "skr_bps": lk.skr_bps,
                "system": None if kind.other_kind else getattr(lk.system, "name", lk.system),
                "kind": kind.kind,
                "rate_unit": kind.rate_unit,
                "untrusted_middle": kind.untrusted_middle,
                "kind_params": getattr(kind.params, "name", None),
                "satellite": kind.satellite,
                "scheduled": lk.schedule is not None,
            }
            for lk, kind in zip(topo.links, kinds, strict=True)
        ],
    }
    _write_text_atomic(folder / "topology.json", json.dumps(topo_json, indent=2))
    net = nrun.net
    net.link_summaries()  # reads every pool: block landings up to now reach the pool log
    rows, cols = _records_rows([*net.records, *net.in_progress()])
    _write_rows_atomic(folder / "transfers.csv", rows, cols or ["id"])
    _write_rows_atomic(
        folder / "keypools.csv",
        _pool_rows(net),
        ["sim_time_s", "link", "event", "bits", "level_bits"],
    )
    frows, fcols = _records_rows(net.fault_log)
    _write_rows_atomic(folder / "faults.csv", frows, fcols or ["time", "kind", "target", "detail"])
    _write_rows_atomic(
        folder / "ops.csv", nrun.timeline.ops, ["round", "node", "op", "start_s", "end_s"]
    )
    _write_rows_atomic(
        folder / "window_waits.csv",
        [w.as_row() for w in net.window_waits],
        WindowWait.columns(),
    )


def metric_row(row: EvalRow, t: float) -> dict[str, Any]:
    """One ``metrics.csv`` row: an evaluation at simulated time ``t`` (blank where n/a)."""
    return {
        "sim_time_s": t,
        "round": row.round,
        "node": row.node,
        "global_acc": "" if math.isnan(row.global_acc) else f"{row.global_acc:.6f}",
        "local_acc": "" if math.isnan(row.local_acc) else f"{row.local_acc:.6f}",
        "exit_acc": ";".join(f"{a:.6f}" for a in row.exit_acc),
    }


class RunFolder:
    """A run folder being written: network outputs first, then evaluations, then the end.

    Parameters
    ----------
    folder : Path
        Created if missing.
    nrun : NetworkRun
        The network half of the run (its outputs are written at once).
    """

    def __init__(self, folder: Path, nrun: NetworkRun) -> None:
        self.folder = folder
        self._round_end = nrun.timeline.round_end_s
        write_network_outputs(nrun, folder)
        self._fh = open(folder / "metrics.csv", "w", newline="", encoding="utf-8")
        self._writer = csv.DictWriter(self._fh, fieldnames=list(METRIC_COLUMNS))
        self._writer.writeheader()
        self._fh.flush()

    def add(self, rows: Sequence[EvalRow]) -> None:
        """Append evaluations (each at the simulated end of its round) and flush."""
        self._writer.writerows(metric_row(x, self._round_end[x.round - 1]) for x in rows)
        self._fh.flush()

    def close(self, summary: dict[str, Any] | None = None, *, plots: bool = False) -> None:
        """Close ``metrics.csv``; write ``summary.json`` and draw the plots if asked."""
        if not self._fh.closed:
            self._fh.close()
        if summary is not None:
            _write_text_atomic(self.folder / "summary.json", json.dumps(summary, indent=2))
        if plots:
            from qfl.cosim.plots import redraw

            redraw(self.folder)
