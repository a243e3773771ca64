"""Oxford Flowers102 (Nilsback & Zisserman 2008): ``jpg/`` + ``imagelabels.mat`` + ``setid.mat``.

References
----------
M.-E. Nilsback, A. Zisserman, "Automated flower classification over a large number of
classes", ICVGIP 2008.

Checksums: ``imagelabels.mat`` and ``setid.mat`` are checked against their published md5
wherever they are found; the ``102flowers.tgz`` archive on download. The unpacked images have
no published checksum, so they are verified only when the folder carries its own list, a
``SHA256SUMS`` (else ``MD5SUMS``) file, as the ``flowers102-mini`` copy does: every image it
lists must then be present and match (:func:`qfl.data.download.verify_files`).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import scipy.io
import torch

from qfl.data.base import DatasetNotFound, TensorDataset
from qfl.data.download import RemoteFile, data_root, ensure_files, extract
from qfl.data.images import check_image_size, load_images, to_tensor

__all__ = ["CLASSES", "FILES", "load_flowers102"]

_URL = "https://www.robots.ox.ac.uk/~vgg/data/flowers/102/"
#: The official files, md5 as published with torchvision's loader.
FILES: tuple[RemoteFile, ...] = (
    RemoteFile("102flowers.tgz", (_URL + "102flowers.tgz",), "52808999861908f626f3c1f4e79d11fa"),
    RemoteFile("imagelabels.mat", (_URL + "imagelabels.mat",), "e0620be6f572b9609742df49c70aed4d"),
    RemoteFile("setid.mat", (_URL + "setid.mat",), "a5357ecc9cb78c4bef273ce3793fc85c"),
)
#: The release names classes only by number: ``"001"`` is label 1 of ``imagelabels.mat``.
CLASSES: tuple[str, ...] = tuple(f"{i:03d}" for i in range(1, 103))


def _present(directory: Path) -> bool:
    jpg = directory / "jpg"
    return (
        (directory / "imagelabels.mat").is_file()
        and (directory / "setid.mat").is_file()
        and jpg.is_dir()
        and any(jpg.glob("image_*.jpg"))
    )


def _unpack(directory: Path) -> None:
    archive = directory / "102flowers.tgz"
    if archive.exists():
        extract(archive, directory)
        archive.unlink()


def _split(
    directory: Path, ids: np.ndarray, labels: np.ndarray, size: int, normalize: bool, name: str
) -> TensorDataset:
    jpg = directory / "jpg"
    ids = np.sort(ids.astype(np.int64))
    paths = [jpg / f"image_{i:05d}.jpg" for i in ids]
    keep = [p.is_file() for p in paths]
    paths = [p for p, k in zip(paths, keep, strict=True) if k]
    kept_ids = ids[np.asarray(keep, dtype=bool)]
    if len(paths):
        x = to_tensor(load_images(paths, size), normalize=normalize)
    else:
        x = torch.empty((0, 3, size, size), dtype=torch.float32)
    y = torch.from_numpy(labels[kept_ids - 1].astype(np.int64) - 1)
    return TensorDataset(x, y, CLASSES, name)


def load_flowers102(
    root: str | os.PathLike[str] | None = None,
    *,
    image_size: int = 64,
    normalize: bool = True,
    download: bool = True,
) -> tuple[TensorDataset, TensorDataset]:
    """Load Flowers102, skipping images listed in ``setid.mat`` that are not on disk.

    Parameters
    ----------
    root : path-like, optional
        Folder with ``jpg/``, ``imagelabels.mat`` and ``setid.mat``; by default
        ``$QFL_DATA_DIR/flowers102`` (or ``flowers102-mini``), then the user cache.
    image_size : int
        Side of the square output: each image is center-cropped to a square, then resized.
    normalize : bool
        Standardise with the ImageNet channel statistics; if ``False`` pixels stay in [0, 1]
        (for augmentations that need raw pixels, then :func:`qfl.data.images.normalize_images`).
    download : bool
        Download the official files (328 MB archive) when missing.

    Returns
    -------
    (TensorDataset, TensorDataset)
        ``train`` = ``trnid`` + ``valid``, ``test`` = ``tstid``, each sorted by image
        number; ``x`` float32 ``[N, 3, S, S]``, ``y`` in 0..101 (official label - 1).
    """
    image_size = check_image_size(image_size)
    directory = data_root("flowers102", root)
    ensure_files(
        "flowers102",
        directory,
        ["jpg/image_*.jpg", "imagelabels.mat", "setid.mat"],
        FILES,
        download=download,
        present=_present,
        after_download=_unpack,
    )
    labels = scipy.io.loadmat(directory / "imagelabels.mat")["labels"].reshape(-1)
    setid = scipy.io.loadmat(directory / "setid.mat")
    train_ids = np.concatenate([setid["trnid"].reshape(-1), setid["valid"].reshape(-1)])
    test_ids = setid["tstid"].reshape(-1)
    train = _split(directory, train_ids, labels, image_size, normalize, "flowers102/train")
    test = _split(directory, test_ids, labels, image_size, normalize, "flowers102/test")
    if len(train) == 0 and len(test) == 0:
        raise DatasetNotFound(
            f"flowers102: none of the images listed in setid.mat is in {directory / 'jpg'}"
        )
    return train, test
