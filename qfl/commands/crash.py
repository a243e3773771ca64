"""Unexpected errors: one line on the terminal, the traceback in a log file.

Bad input is a :class:`~qkd.errors.QflError` and is reported by :mod:`qfl.cli` as one line
(exit status 2). Anything else that escapes a command is a bug or an environment problem (a
numerical overflow, a full disk, a CUDA error): the terminal gets one line naming the
exception and the log that holds its traceback, and the exit status is 1, as for a failed run
(``summary.json`` of the run says ``failed``). ``qfl --debug`` prints the traceback as well.

Where the log goes: ``error.log`` inside the run, sweep or study folder when the command had
claimed one (:func:`logs_into`), else a new file under ``$XDG_CACHE_HOME/qfl/logs/`` (by
default ``~/.cache/qfl/logs/``), else under the system's temporary folder.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import sys
import tempfile
import traceback
from collections.abc import Iterator, Sequence
from pathlib import Path

from qkd.errors import QflError

__all__ = ["LOG_NAME", "cache_log_dir", "logs_into", "one_line_report", "write_log"]

LOG_NAME = "error.log"
"""The traceback log's name inside a run, sweep or study folder (appended to)."""

_FOLDER_ATTR = "_qfl_log_folder"


@contextlib.contextmanager
def logs_into(folder: Path) -> Iterator[None]:
    """An unexpected exception raised inside gets its traceback logged in ``folder``.

    Commands wrap their work in it once their output folder is claimed, so the log sits next
    to what was computed. The exception still propagates (the command line reports it).
    """
    try:
        yield
    except Exception as exc:
        if not isinstance(exc, QflError) and getattr(exc, _FOLDER_ATTR, None) is None:
            with contextlib.suppress(AttributeError, TypeError):
                setattr(exc, _FOLDER_ATTR, Path(folder))
        raise


def cache_log_dir() -> Path:
    """``$XDG_CACHE_HOME/qfl/logs`` (default ``~/.cache/qfl/logs``): logs of commands that
    failed before they had an output folder."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "qfl" / "logs"


def _stamp(now: datetime.datetime) -> str:
    return now.strftime("%Y%m%dT%H%M%S") + f"{now.microsecond // 1000:03d}Z"


def write_log(exc: BaseException, argv: Sequence[str]) -> tuple[Path | None, str]:
    """Write the traceback of ``exc`` (with the command line and the time) to its log.

    Returns
    -------
    path : Path or None
        The file written; None if no place could be written.
    why : str
        When ``path`` is None, why the last place failed.
    """
    now = datetime.datetime.now(datetime.UTC)  # wall clock: when the command failed
    from qfl import __version__

    header = (
        f"==== {now.isoformat(timespec='seconds')} qfl {__version__} "
        f"(Python {sys.version.split()[0]}): qfl {' '.join(argv)}\n"
    )
    text = header + "".join(traceback.format_exception(exc)) + "\n"
    stamp = f"qfl-{_stamp(now)}-{os.getpid()}.log"
    places: list[Path] = []
    folder = getattr(exc, _FOLDER_ATTR, None)
    if isinstance(folder, Path):
        places.append(folder / LOG_NAME)
    places += [cache_log_dir() / stamp, Path(tempfile.gettempdir()) / "qfl-logs" / stamp]
    why = ""
    for path in places:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "a", encoding="utf-8") as fh:
                fh.write(text)
        except OSError as err:
            why = f"{path}: {err.strerror or err}"
            continue
        return path, ""
    return None, why


def one_line_report(exc: BaseException, log: Path | None, why: str = "") -> str:
    """``RuntimeError: what it says (traceback in PATH)``: one line, at most ~400 chars."""
    text = " ".join(str(exc).split())
    if len(text) > 300:
        text = text[:297] + "..."
    name = type(exc).__name__
    line = f"{name}: {text}" if text else name
    if log is not None:
        return f"{line} (traceback in {log})"
    return f"{line} (traceback not saved: {why}; rerun with --debug to see it)"
