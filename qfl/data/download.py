"""Where dataset files live, and how they get there.

Resolution order for a dataset folder (:func:`data_root`):

1. an explicit ``root`` given by the caller;
2. ``$QFL_DATA_DIR/<folder>`` when that folder exists (each dataset has a canonical folder
   name and may accept aliases such as ``flowers102-mini``);
3. the user cache, ``$XDG_CACHE_HOME/qfl/<folder>`` or ``~/.cache/qfl/<folder>``.

Loaders then check that the files they need are present. Missing files are downloaded from
the official URLs into the resolved folder when ``download=True`` and verified against the
published md5 (a mismatch deletes the file and raises :class:`ChecksumMismatch`). Without
files and without network the loader raises :class:`DatasetNotFound`, saying which files to
put where.

Files already on disk are verified as well (:func:`verify_files`), wherever they are: those
with a published checksum against it, and any file listed in a ``SHA256SUMS`` (else
``MD5SUMS``) file of the dataset folder against that list. A damaged file is left in place
and reported (:class:`ChecksumMismatch`, :class:`DatasetCorrupt`) with what to do. Digests are
remembered in ``<cache_dir()>/verified.json`` keyed by path, size, modification and change
time, so a file is hashed once, not on every run; when that file cannot be written the files
are simply hashed again next time.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tarfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from qfl.data.base import ChecksumMismatch, DatasetCorrupt, DatasetNotFound
from qkd.errors import UnknownNameError

__all__ = [
    "FOLDERS",
    "RemoteFile",
    "cache_dir",
    "data_root",
    "ensure_files",
    "extract",
    "fetch",
    "file_digest",
    "md5sum",
    "repair_hint",
    "verify_files",
]

#: Canonical folder name of each dataset -> accepted folder names, in lookup order.
FOLDERS: dict[str, tuple[str, ...]] = {
    "fashion-mnist": ("fashion-mnist",),
    "flowers102": ("flowers102", "flowers102-mini"),
    "intel": ("intel", "intel-mini"),
    "unimib-shar": ("unimib-shar",),
}

_CHUNK = 1 << 20
_TIMEOUT_S = 30.0
#: Checksum lists a dataset folder may document itself with, in order of preference.
_SUMS_FILES = (("SHA256SUMS", "sha256"), ("MD5SUMS", "md5"))
_SUMS_LINE = re.compile(r"^([0-9a-fA-F]{32}|[0-9a-fA-F]{64})\s+\*?(.+)$")
_VERIFIED = "verified.json"
_SHORT = 12


def _urlopen(url: str, timeout: float = _TIMEOUT_S) -> IO[bytes]:
    """Open ``url`` for reading (module-level so tests can replace it)."""
    response: IO[bytes] = urllib.request.urlopen(url, timeout=timeout)
    return response


@dataclass(frozen=True)
class RemoteFile:
    """A file of a dataset's official release.

    Parameters
    ----------
    filename : str
        Name of the file in the dataset folder.
    urls : tuple of str
        Official URL first, then mirrors; tried in order.
    md5 : str or None
        Published md5 hex digest; ``None`` where the publisher gives none.
    """

    filename: str
    urls: tuple[str, ...]
    md5: str | None = None


def cache_dir() -> Path:
    """The user cache folder of the toolkit: ``$XDG_CACHE_HOME/qfl`` or ``~/.cache/qfl``."""
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "qfl"


def data_root(name: str, root: str | os.PathLike[str] | None = None) -> Path:
    """The folder that holds (or will hold) the files of dataset ``name``.

    Parameters
    ----------
    name : str
        Canonical folder name, one of :data:`FOLDERS`.
    root : path-like, optional
        Explicit folder; returned as is when given.

    Returns
    -------
    pathlib.Path
        ``root``; else the first existing ``$QFL_DATA_DIR/<alias>``; else
        ``<cache_dir()>/<name>`` (which may not exist yet).

    Examples
    --------
    >>> data_root("fashion-mnist", "/tmp/fm").as_posix()
    '/tmp/fm'
    """
    if name not in FOLDERS:
        raise UnknownNameError("dataset", name, sorted(FOLDERS))
    if root is not None:
        return Path(root)
    env = os.environ.get("QFL_DATA_DIR")
    if env:
        for alias in FOLDERS[name]:
            candidate = Path(env) / alias
            if candidate.is_dir():
                return candidate
    return cache_dir() / name


def file_digest(path: str | os.PathLike[str], algorithm: str = "md5") -> str:
    """Hex digest of a file, read in chunks.

    Parameters
    ----------
    path : path-like
        The file.
    algorithm : str
        A :mod:`hashlib` name: ``"md5"`` or ``"sha256"``.

    Returns
    -------
    str
        Lower-case hex digest.
    """
    digest = hashlib.new(algorithm, usedforsecurity=False)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def md5sum(path: str | os.PathLike[str]) -> str:
    """md5 hex digest of a file, read in chunks."""
    return file_digest(path, "md5")


def fetch(remote: RemoteFile, directory: str | os.PathLike[str]) -> Path:
    """Download ``remote`` into ``directory`` and verify its md5.

    Each URL is tried in order; the file is written to a ``.part`` file and renamed once
    complete and verified.

    Returns
    -------
    pathlib.Path
        The downloaded file.

    Raises
    ------
    ChecksumMismatch
        The downloaded bytes do not have the published md5 (nothing is left on disk).
    DatasetNotFound
        No URL could be read (offline, moved file...).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / remote.filename
    part = target.with_name(target.name + ".part")
    errors: list[str] = []
    for url in remote.urls:
        try:
            with _urlopen(url) as response, open(part, "wb") as out:
                shutil.copyfileobj(response, out, _CHUNK)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            part.unlink(missing_ok=True)
            errors.append(f"{url}: {exc}")
            continue
        got = None
        if remote.md5 is not None:
            got = md5sum(part)
            if got != remote.md5:
                part.unlink(missing_ok=True)
                raise ChecksumMismatch(
                    f"{remote.filename} from {url}: md5 {got} differs from the published "
                    f"{remote.md5}; the file was deleted. Download it again or place a "
                    f"verified copy in {directory}"
                )
        part.replace(target)
        if got is not None:
            _remember({target: ("md5", got)})
        return target
    raise DatasetNotFound(
        f"could not download {remote.filename} into {directory}: " + "; ".join(errors)
    )


def extract(archive: str | os.PathLike[str], directory: str | os.PathLike[str]) -> None:
    """Unpack a ``.tgz``/``.tar.gz``/``.zip`` archive into ``directory`` (paths sanitised)."""
    archive = Path(archive)
    if archive.suffix == ".zip":
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(directory)
    else:
        with tarfile.open(archive) as tf:
            tf.extractall(directory, filter="data")


def ensure_files(
    dataset: str,
    directory: Path,
    needed: Sequence[str],
    remotes: Sequence[RemoteFile],
    *,
    download: bool,
    present: Callable[[Path], bool] | None = None,
    after_download: Callable[[Path], None] | None = None,
    manual: str = "",
) -> Path:
    """Make sure the files of a dataset are in ``directory``, downloading them if allowed.

    Parameters
    ----------
    dataset : str
        Canonical folder name (a key of :data:`FOLDERS`), for messages.
    directory : pathlib.Path
        Resolved dataset folder (see :func:`data_root`).
    needed : sequence of str
        Relative paths that must exist (used for messages and for the default check).
    remotes : sequence of RemoteFile
        What to download when they are missing (may be empty: no download exists).
    download : bool
        Whether downloading is allowed.
    present : callable, optional
        ``present(directory) -> bool``; defaults to "every path in ``needed`` exists".
    after_download : callable, optional
        Called with ``directory`` after the remotes were fetched (e.g. to unpack archives).
    manual : str
        Extra instructions appended to the error (e.g. where to obtain the files by hand).

    Returns
    -------
    pathlib.Path
        ``directory``, its files verified by :func:`verify_files`.

    Raises
    ------
    DatasetNotFound
        The files are missing and could not be downloaded.
    ChecksumMismatch, DatasetCorrupt
        A file present (found or downloaded) fails its check (see :func:`verify_files`).
    """

    def default_present(d: Path) -> bool:
        return all((d / rel).exists() for rel in needed)

    check = present or default_present
    if not check(directory):
        reason = _obtain(directory, remotes, download=download, after_download=after_download)
        if not check(directory):
            raise DatasetNotFound(_not_found(dataset, directory, needed, reason, manual))
    verify_files(dataset, directory, remotes)
    return directory


def _obtain(
    directory: Path,
    remotes: Sequence[RemoteFile],
    *,
    download: bool,
    after_download: Callable[[Path], None] | None,
) -> str:
    """Download the missing ``remotes``; return why the files may still be missing."""
    if not remotes:
        return "it cannot be downloaded automatically"
    if not download:
        return "downloading is disabled (download=False)"
    try:
        for remote in remotes:
            if not (directory / remote.filename).exists():
                fetch(remote, directory)
        if after_download is not None:
            after_download(directory)
    except DatasetNotFound as exc:
        return str(exc)
    return "the downloaded files are incomplete"


def _not_found(
    dataset: str, directory: Path, needed: Sequence[str], reason: str, manual: str
) -> str:
    names = ", ".join(needed)
    env = os.environ.get("QFL_DATA_DIR")
    where = f"QFL_DATA_DIR={env}" if env else "QFL_DATA_DIR is not set"
    message = (
        f"{dataset} not found in {directory} ({where}) and {reason}. "
        f"Put {names} in {directory}, or in $QFL_DATA_DIR/{dataset}, "
        "or pass root=<folder holding them>."
    )
    return message + " " + manual if manual else message


# --------------------------------------------------------------------------- verification


def repair_hint(path: str | os.PathLike[str], downloadable: bool = True) -> str:
    """What to do about a damaged dataset file, phrased to follow a semicolon.

    Parameters
    ----------
    path : path-like
        The damaged file.
    downloadable : bool
        Whether the loader downloads the file again once it is deleted.

    Returns
    -------
    str
        E.g. ``"delete /x/f.gz so that it is downloaded again, or replace it with an intact
        copy of the official file"``.

    Examples
    --------
    >>> repair_hint("/d/a.jpg", downloadable=False)
    'replace /d/a.jpg with an intact copy of the original file'
    """
    if downloadable:
        return (
            f"delete {path} so that it is downloaded again, or replace it with an intact "
            "copy of the official file"
        )
    return f"replace {path} with an intact copy of the original file"


def _listed(directory: Path) -> tuple[Path | None, str, list[tuple[Path, str]]]:
    """The checksum list a dataset folder documents itself with, if any.

    Returns ``(list file or None, algorithm, [(file, digest), ...])``; lines that are not
    ``<hex digest>  <relative path>`` (or point outside the folder) are ignored.
    """
    for name, algorithm in _SUMS_FILES:
        sums = directory / name
        if not sums.is_file():
            continue
        width = hashlib.new(algorithm, usedforsecurity=False).digest_size * 2
        entries: list[tuple[Path, str]] = []
        for line in sums.read_text(encoding="utf-8", errors="replace").splitlines():
            match = _SUMS_LINE.match(line.strip())
            if match is None or len(match.group(1)) != width:
                continue
            rel = Path(match.group(2).strip())
            if rel.is_absolute() or ".." in rel.parts:
                continue
            entries.append((directory / rel, match.group(1).lower()))
        return sums, algorithm, entries
    return None, "", []


def verify_files(dataset: str, directory: Path, remotes: Sequence[RemoteFile] = ()) -> None:
    """Check the files of a dataset folder against their published or listed checksums.

    Every file of ``remotes`` that has a published md5 and is present is checked against
    it; every other file listed in the folder's own ``SHA256SUMS`` (else ``MD5SUMS``) is
    checked against that list, and must be present. Digests are remembered by path, size,
    modification and change time (see the module notes), so unchanged files are not hashed
    again.

    Parameters
    ----------
    dataset : str
        Dataset name, for messages.
    directory : pathlib.Path
        The dataset folder.
    remotes : sequence of RemoteFile
        The official files, with their published md5 (``None``: nothing to check).

    Raises
    ------
    ChecksumMismatch
        A file does not have its checksum; the message names it, gives both digests
        (shortened) and says what to do. The file is left in place.
    DatasetCorrupt
        A file listed in the folder's checksum list is missing or cannot be read.
    """
    expected: dict[Path, tuple[str, str, str, bool]] = {}
    for remote in remotes:
        path = directory / remote.filename
        if remote.md5 is not None and path.is_file():
            expected[path] = ("md5", remote.md5.lower(), "its published md5", True)
    sums, algorithm, entries = _listed(directory)
    for path, digest in entries:
        if path in expected:
            continue  # the published checksum takes precedence
        if not path.is_file():
            raise DatasetCorrupt(
                f"{dataset}: {path} is listed in {sums} but missing; restore it, or delete "
                f"its line from {sums} if it was removed on purpose"
            )
        expected[path] = (algorithm, digest, f"the {algorithm} listed in {sums}", False)
    if not expected:
        return
    got = _digests(dataset, {path: spec[0] for path, spec in expected.items()})
    for path, (_algorithm, want, source, downloadable) in expected.items():
        if got[path] != want:
            raise ChecksumMismatch(
                f"{dataset}: {path} does not match {source} (expected "
                f"{want[:_SHORT]}..., got {got[path][:_SHORT]}...): the file is damaged or "
                f"not the original one; {repair_hint(path, downloadable)}"
            )


def _stat_key(path: Path) -> dict[str, int]:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns}


def _load_verified() -> dict[str, dict[str, Any]]:
    """The remembered digests (empty when the file is missing or unreadable)."""
    try:
        data = json.loads((cache_dir() / _VERIFIED).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    files = data.get("files") if isinstance(data, dict) and data.get("version") == 1 else None
    return files if isinstance(files, dict) else {}


def _save_verified(updates: dict[str, dict[str, Any]]) -> None:
    """Merge ``updates`` into the remembered digests; silently skipped when unwritable."""
    target = cache_dir() / _VERIFIED
    tmp = target.with_name(f".{_VERIFIED}.{os.getpid()}.tmp")
    try:
        files = _load_verified()
        files.update(updates)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps({"version": 1, "files": files}), encoding="utf-8")
        tmp.replace(target)
    except OSError:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass


def _remember(digests: dict[Path, tuple[str, str]]) -> None:
    """Record freshly verified digests ``{path: (algorithm, hex)}`` (after a download)."""
    updates: dict[str, dict[str, Any]] = {}
    for path, (algorithm, digest) in digests.items():
        try:
            updates[os.path.abspath(path)] = {**_stat_key(path), algorithm: digest}
        except OSError:
            continue
    if updates:
        _save_verified(updates)


def _digests(dataset: str, wanted: dict[Path, str]) -> dict[Path, str]:
    """Digest ``{path: algorithm}`` of each file, from the remembered ones where unchanged."""
    known = _load_verified()
    updates: dict[str, dict[str, Any]] = {}
    out: dict[Path, str] = {}
    for path, algorithm in wanted.items():
        key = os.path.abspath(path)
        try:
            stat = _stat_key(path)
            entry = known.get(key)
            if not isinstance(entry, dict) or any(entry.get(k) != v for k, v in stat.items()):
                entry = dict(stat)
            if not isinstance(entry.get(algorithm), str):
                entry[algorithm] = file_digest(path, algorithm)
                updates[key] = entry
        except OSError as exc:
            raise DatasetCorrupt(
                f"{dataset}: {path} cannot be read ({exc}); {repair_hint(path, False)}"
            ) from exc
        out[path] = entry[algorithm]
    if updates:
        _save_verified(updates)
    return out
