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
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from qfl.data.base import ChecksumMismatch, DatasetNotFound
from qkd.errors import UnknownNameError

__all__ = [
    "FOLDERS",
    "RemoteFile",
    "cache_dir",
    "data_root",
    "ensure_files",
    "extract",
    "fetch",
    "md5sum",
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


def md5sum(path: str | os.PathLike[str]) -> str:
    """md5 hex digest of a file, read in chunks."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


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
        ``directory``.
    """

    def default_present(d: Path) -> bool:
        return all((d / rel).exists() for rel in needed)

    check = present or default_present
    if check(directory):
        return directory
    if not remotes:
        reason = "it cannot be downloaded automatically"
    elif not download:
        reason = "downloading is disabled (download=False)"
    else:
        try:
            for remote in remotes:
                if not (directory / remote.filename).exists():
                    fetch(remote, directory)
            if after_download is not None:
                after_download(directory)
        except DatasetNotFound as exc:
            reason = str(exc)
        else:
            reason = "the downloaded files are incomplete"
        if check(directory):
            return directory
    names = ", ".join(needed)
    env = os.environ.get("QFL_DATA_DIR")
    where = f"QFL_DATA_DIR={env}" if env else "QFL_DATA_DIR is not set"
    message = (
        f"{dataset} not found in {directory} ({where}) and {reason}. "
        f"Put {names} in {directory}, or in $QFL_DATA_DIR/{dataset}, "
        "or pass root=<folder holding them>."
    )
    if manual:
        message += " " + manual
    raise DatasetNotFound(message)
