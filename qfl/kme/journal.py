"""The KME's journal: every key handed to a master SAE is on disk before the answer leaves.

One JSON object per line, appended, flushed and ``fsync``-ed under the service's lock before
the HTTP response is written, so a server killed at any moment has recorded every key it
delivered: on restart (same ``--state`` folder) the keys a master SAE holds are still
retrievable by their slave SAE (once), served key IDs are never served again, and the link
pools are rebuilt by replaying the recorded debits at their simulated times.

Records: ``{"op": "enc", "t", "master", "slave", "path", "bits", "keys": [[id, b64], ...]}``
and ``{"op": "dec", "t", "ids": [...]}``. A torn last line (the process died while writing
it) was never acknowledged to a client, so it is skipped. The file holds key material: it is
created with mode 0600.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

__all__ = ["Journal", "read_journal"]


class Journal:
    """An append-only, fsync-ed JSON-lines file.

    Parameters
    ----------
    path : path-like
        The file (created 0600 if missing, appended to otherwise).
    sync : bool
        ``fsync`` after every record (the durability promise); ``False`` only flushes.
    """

    def __init__(self, path: str | Path, *, sync: bool = True) -> None:
        self.path = Path(path)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._fh: TextIO = os.fdopen(fd, "a", encoding="utf-8")
        self.sync = sync

    def write(self, record: dict[str, Any]) -> None:
        """Append one record and make it durable."""
        self._fh.write(json.dumps(record, separators=(",", ":")) + "\n")
        self._fh.flush()
        if self.sync:
            os.fsync(self._fh.fileno())

    def close(self) -> None:
        """Close the file."""
        self._fh.close()


def read_journal(path: str | Path) -> Iterator[dict[str, Any]]:
    """The records of a journal, in order; a torn (unparsable) last line is skipped."""
    p = Path(path)
    if not p.exists():
        return
    lines = p.read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            if i == len(lines) - 1:
                return  # torn by a kill mid-write: never acknowledged
            raise
        yield rec
