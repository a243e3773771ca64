"""UniMiB-SHAR accelerometer windows (Micucci, Mobilio & Napoletano 2017), 151-sample release.

Layout of the release (folder ``data/`` of ``UniMiB-SHAR.zip``), as read here:

- ``acc_data.mat``, variable ``acc_data``: ``N x 453`` doubles (N = 11771), one row per
  window of 151 samples (50 Hz, ~3 s). Columns ``0..150`` are the x axis over time, ``151..301``
  the y axis, ``302..452`` the z axis (acceleration in m/s^2). So the row is reshaped to
  ``[3, 151]`` (axis-major) and transposed to ``[151, 3]``.
- ``acc_labels.mat``, variable ``acc_labels``: ``N x 3`` -- class 1..17, subject 1..30,
  trial number.

References
----------
D. Micucci, M. Mobilio, P. Napoletano, "UniMiB SHAR: A Dataset for Human Activity
Recognition Using Acceleration Data from Smartphones", Applied Sciences 7(10):1101, 2017.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import scipy.io
import torch

from qfl.data.base import DatasetCorrupt, DatasetNotFound, TensorDataset
from qfl.data.download import RemoteFile, data_root, ensure_files, extract

__all__ = ["CLASSES", "FILES", "load_unimib_shar"]

#: The 17 classes in label order 1..17: 9 activities of daily living, then 8 kinds of fall.
CLASSES: tuple[str, ...] = (
    "StandingUpFS",
    "StandingUpFL",
    "Walking",
    "Running",
    "GoingUpS",
    "Jumping",
    "GoingDownS",
    "LyingDownFS",
    "SittingDown",
    "FallingForw",
    "FallingRight",
    "FallingBack",
    "HittingObstacle",
    "FallingWithPS",
    "FallingBackSC",
    "Syncope",
    "FallingLeft",
)
#: The archive linked from http://www.sal.disco.unimib.it/technologies/unimib-shar/. No
#: checksum is published: the arrays' shapes are checked instead.
FILES: tuple[RemoteFile, ...] = (
    RemoteFile(
        "UniMiB-SHAR.zip",
        ("https://www.dropbox.com/s/x2fpfqj0bpf8ep6/UniMiB-SHAR.zip?dl=1",),
        None,
    ),
)
_NEEDED = ("acc_data.mat", "acc_labels.mat")


class UnimibFormatError(DatasetCorrupt):
    """``acc_data.mat`` / ``acc_labels.mat`` are unreadable or lack the release's layout."""


def _find(directory: Path) -> Path | None:
    for candidate in (directory, directory / "data", directory / "UniMiB-SHAR" / "data"):
        if all((candidate / name).is_file() for name in _NEEDED):
            return candidate
    return None


def _unpack(directory: Path) -> None:
    archive = directory / FILES[0].filename
    if archive.exists():
        extract(archive, directory)
        archive.unlink()


def _load_var(path: Path, name: str) -> np.ndarray:
    try:
        mat = scipy.io.loadmat(path)
    except (OSError, ValueError, TypeError, EOFError, scipy.io.matlab.MatReadError) as exc:
        raise UnimibFormatError(
            f"{path} cannot be read as a MATLAB file ({exc}); it is truncated or damaged: "
            "replace it with an intact copy of the release"
        ) from exc
    if name not in mat:
        found = sorted(k for k in mat if not k.startswith("__"))
        raise UnimibFormatError(f"{path}: no variable {name!r} (found {found})")
    return np.asarray(mat[name])


def load_unimib_shar(
    root: str | os.PathLike[str] | None = None,
    *,
    standardize: bool = True,
    download: bool = True,
) -> TensorDataset:
    """Load the UniMiB-SHAR ``acc`` windows (17 classes: 9 ADL + 8 falls).

    Parameters
    ----------
    root : path-like, optional
        Folder with ``acc_data.mat`` and ``acc_labels.mat`` (directly, or under ``data/`` or
        ``UniMiB-SHAR/data/``); by default ``$QFL_DATA_DIR/unimib-shar``, then the user cache.
    standardize : bool
        Subtract each axis' mean and divide by its standard deviation, both taken over all
        windows and time steps of the file (so statistics include every subject).
    download : bool
        Download and unpack the release archive when missing (no published checksum; the
        array shapes are verified).

    Notes
    -----
    The publisher gives no checksum, neither for the archive nor for the ``.mat`` files, so
    none is checked: only the layout (shapes, class range) is. A folder that carries its own
    ``SHA256SUMS`` (or ``MD5SUMS``) list is checked against it.

    Returns
    -------
    TensorDataset
        ``x`` float32 ``[N, T, 3]`` (T = 151; axes x, y, z), ``y`` int64 in 0..16
        (official class - 1), ``groups`` int64 subject ids (1..30) for subject-wise splits.
    """
    directory = data_root("unimib-shar", root)
    ensure_files(
        "unimib-shar",
        directory,
        _NEEDED,
        FILES,
        download=download,
        present=lambda d: _find(d) is not None,
        after_download=_unpack,
        manual="The release is linked from http://www.sal.disco.unimib.it/technologies/unimib-shar/.",
    )
    folder = _find(directory)
    if folder is None:  # present() said yes, so only a race could get here
        raise DatasetNotFound(f"unimib-shar: {', '.join(_NEEDED)} vanished from {directory}")
    data = _load_var(folder / "acc_data.mat", "acc_data")
    labels = _load_var(folder / "acc_labels.mat", "acc_labels")
    if data.ndim != 2 or data.shape[1] % 3 or data.shape[1] == 0:
        raise UnimibFormatError(
            f"{folder / 'acc_data.mat'}: acc_data has shape {data.shape}, expected N x 3T "
            "(453 = 151 steps x 3 axes)"
        )
    if labels.ndim != 2 or labels.shape[0] != data.shape[0] or labels.shape[1] < 2:
        raise UnimibFormatError(
            f"{folder / 'acc_labels.mat'}: acc_labels has shape {labels.shape}, expected "
            f"{data.shape[0]} x 3 (class, subject, trial)"
        )
    classes = labels[:, 0].astype(np.int64)
    if classes.min() < 1 or classes.max() > len(CLASSES):
        raise UnimibFormatError(
            f"acc_labels classes span {classes.min()}..{classes.max()}, expected 1..17"
        )
    steps = data.shape[1] // 3
    x = data.astype(np.float32).reshape(-1, 3, steps).transpose(0, 2, 1)
    if standardize:
        mean = x.mean(axis=(0, 1), dtype=np.float64)
        std = x.std(axis=(0, 1), dtype=np.float64)
        x = ((x - mean) / np.where(std > 0, std, 1.0)).astype(np.float32)
    return TensorDataset(
        torch.from_numpy(np.ascontiguousarray(x)),
        torch.from_numpy(classes - 1),
        CLASSES,
        "unimib-shar",
        groups=torch.from_numpy(labels[:, 1].astype(np.int64)),
    )
