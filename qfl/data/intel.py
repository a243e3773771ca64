"""Intel Image Classification (Kaggle ``puneet6060/intel-image-classification``).

The release needs a Kaggle account and has no published checksum, so this loader only reads
a local folder in the Kaggle layout::

    <root>/seg_train/seg_train/<class>/*.jpg
    <root>/seg_test/seg_test/<class>/*.jpg

(the un-nested ``<root>/seg_train/<class>/`` is accepted as well). Classes are the folder
names sorted alphabetically: buildings, forest, glacier, mountain, sea, street.

Since there is no published checksum, a folder is only verified when it carries its own list:
a ``SHA256SUMS`` (else ``MD5SUMS``) file in ``<root>``, as the ``intel-mini`` copy does; every
file it lists must then be present and match (:func:`qfl.data.download.verify_files`).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from qfl.data.base import DatasetNotFound, TensorDataset
from qfl.data.download import data_root, ensure_files
from qfl.data.images import check_image_size, load_images, to_tensor

__all__ = ["load_intel_scenes"]

_SUFFIXES = {".jpg", ".jpeg", ".png"}
_MANUAL = (
    "Download the archive from "
    "https://www.kaggle.com/datasets/puneet6060/intel-image-classification (Kaggle account "
    "needed) and unpack it there."
)


def _split_dir(directory: Path, split: str) -> Path | None:
    for candidate in (directory / split / split, directory / split):
        if candidate.is_dir() and any(p.is_dir() for p in candidate.iterdir()):
            return candidate
    return None


def _present(directory: Path) -> bool:
    return _split_dir(directory, "seg_train") is not None and (
        _split_dir(directory, "seg_test") is not None
    )


def _require(directory: Path, split: str) -> Path:
    found = _split_dir(directory, split)
    if found is None:
        raise DatasetNotFound(f"intel: no {split}/{split}/<class>/ folders in {directory}")
    return found


def _read_split(
    folder: Path, classes: tuple[str, ...], size: int, normalize: bool, name: str
) -> TensorDataset:
    paths: list[Path] = []
    labels: list[int] = []
    for label, cls in enumerate(classes):
        class_dir = folder / cls
        if not class_dir.is_dir():
            continue
        files = sorted(p for p in class_dir.iterdir() if p.suffix.lower() in _SUFFIXES)
        paths.extend(files)
        labels.extend([label] * len(files))
    if paths:
        x = to_tensor(load_images(paths, size), normalize=normalize)
    else:
        x = torch.empty((0, 3, size, size), dtype=torch.float32)
    return TensorDataset(x, torch.as_tensor(np.asarray(labels, dtype=np.int64)), classes, name)


def load_intel_scenes(
    root: str | os.PathLike[str] | None = None,
    *,
    image_size: int = 64,
    normalize: bool = True,
) -> tuple[TensorDataset, TensorDataset]:
    """Load the Intel scene images from a local Kaggle-layout folder.

    Parameters
    ----------
    root : path-like, optional
        Folder holding ``seg_train`` and ``seg_test``; by default ``$QFL_DATA_DIR/intel`` (or
        ``intel-mini``), then the user cache folder ``intel``.
    image_size : int
        Side of the square output (center-crop to a square, then resize; the originals are
        mostly 150 x 150).
    normalize : bool
        Standardise with the ImageNet channel statistics; if ``False`` pixels stay in [0, 1].

    Returns
    -------
    (TensorDataset, TensorDataset)
        Train and test; ``x`` float32 ``[N, 3, S, S]``, ``y`` in 0..5, files ordered by class
        then file name.
    """
    image_size = check_image_size(image_size)
    directory = data_root("intel", root)
    ensure_files(
        "intel",
        directory,
        ["seg_train/seg_train/<class>/*.jpg", "seg_test/seg_test/<class>/*.jpg"],
        (),
        download=False,
        present=_present,
        manual=_MANUAL,
    )
    train_dir = _require(directory, "seg_train")
    test_dir = _require(directory, "seg_test")
    classes = tuple(sorted(p.name for p in train_dir.iterdir() if p.is_dir()))
    train = _read_split(train_dir, classes, image_size, normalize, "intel/train")
    test = _read_split(test_dir, classes, image_size, normalize, "intel/test")
    if len(train) == 0:
        raise DatasetNotFound(f"intel: no images under {train_dir}/<class>/")
    return train, test
