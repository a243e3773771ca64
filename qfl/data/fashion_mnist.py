"""Fashion-MNIST (Xiao, Rasul & Vollgraf 2017) from the official IDX ``.gz`` files.

References
----------
H. Xiao, K. Rasul, R. Vollgraf, "Fashion-MNIST: a Novel Image Dataset for Benchmarking
Machine Learning Algorithms", arXiv:1708.07747 (2017).
"""

from __future__ import annotations

import gzip
import math
import os
import zlib
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from qfl.data.base import DatasetCorrupt, TensorDataset
from qfl.data.download import RemoteFile, data_root, ensure_files, repair_hint

__all__ = ["CLASSES", "FILES", "MEAN", "STD", "load_fashion_mnist", "read_idx"]

CLASSES: tuple[str, ...] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
#: Mean and standard deviation of the training pixels scaled to [0, 1].
MEAN = 0.2860
STD = 0.3530

_MIRRORS = (
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
)
_MD5 = {
    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
}
#: The four official files, with their URLs and published md5.
FILES: tuple[RemoteFile, ...] = tuple(
    RemoteFile(name, tuple(m + name for m in _MIRRORS), md5) for name, md5 in _MD5.items()
)


class IdxFormatError(DatasetCorrupt):
    """A file is not a valid IDX file of unsigned bytes (or not a readable gzip file)."""


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Parse an IDX file (optionally gzip-compressed) of unsigned bytes.

    Parameters
    ----------
    path : path-like
        ``*.gz`` files are decompressed first.

    Returns
    -------
    numpy.ndarray
        uint8 array with the shape stored in the header (read-only view of the bytes).

    Raises
    ------
    IdxFormatError
        The file is truncated, not gzip data, or not an IDX file of unsigned bytes; the
        message names it and says what to do.
    """
    path = Path(path)
    raw = path.read_bytes()
    if path.suffix == ".gz":
        try:
            raw = gzip.decompress(raw)
        except EOFError as exc:  # click would turn an EOFError into "interrupted"
            raise IdxFormatError(
                f"{path} is truncated (the gzip stream ends early); {repair_hint(path)}"
            ) from exc
        except (OSError, zlib.error) as exc:
            raise IdxFormatError(
                f"{path} is not a valid gzip file ({exc}); {repair_hint(path)}"
            ) from exc
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise IdxFormatError(
            f"{path}: not an IDX file of unsigned bytes (magic {raw[:4]!r}); {repair_hint(path)}"
        )
    ndim = raw[3]
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    offset = 4 + 4 * ndim
    expected = math.prod(dims)
    if len(raw) - offset != expected:
        raise IdxFormatError(
            f"{path}: header says {dims} = {expected} bytes, file has {len(raw) - offset}; "
            + repair_hint(path)
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=offset).reshape(dims)


def _key(path: Path) -> tuple[str, int, int]:
    # Keyed by modification time and size as well, so a replaced file is parsed again.
    st = path.stat()
    return str(path.resolve()), st.st_mtime_ns, st.st_size


@lru_cache(maxsize=4)
def _split_cached(
    images_key: tuple[str, int, int], labels_key: tuple[str, int, int], split: str
) -> TensorDataset:
    images = read_idx(images_key[0])
    labels = read_idx(labels_key[0])
    if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        raise IdxFormatError(
            f"{images_key[0]}: images {images.shape} and labels {labels.shape} do not match"
        )
    x = torch.from_numpy(images.astype(np.float32)).unsqueeze(1)
    x = x.mul_(1.0 / 255.0).sub_(MEAN).div_(STD)
    y = torch.from_numpy(labels.astype(np.int64))
    return TensorDataset(x, y, CLASSES, f"fashion-mnist/{split}")


def _split(directory: Path, prefix: str, split: str) -> TensorDataset:
    return _split_cached(
        _key(directory / f"{prefix}-images-idx3-ubyte.gz"),
        _key(directory / f"{prefix}-labels-idx1-ubyte.gz"),
        split,
    )


def load_fashion_mnist(
    root: str | os.PathLike[str] | None = None, *, download: bool = True
) -> tuple[TensorDataset, TensorDataset]:
    """Load Fashion-MNIST, downloading and verifying the official files if needed.

    Parameters
    ----------
    root : path-like, optional
        Folder holding the four ``*-ubyte.gz`` files; by default resolved by
        :func:`qfl.data.data_root` (``$QFL_DATA_DIR/fashion-mnist``, then the user cache).
    download : bool
        Download missing files from the official URLs (md5-verified).

    Notes
    -----
    The four files are checked against their published md5 wherever they are found (an
    explicit ``root``, ``$QFL_DATA_DIR`` or the user cache); the result is remembered by
    path, size and modification time, so only the first load pays for hashing (see
    :func:`qfl.data.download.verify_files`).

    Returns
    -------
    (TensorDataset, TensorDataset)
        Train (60000) and test (10000) sets; ``x`` float32 ``[N, 1, 28, 28]`` with pixels
        scaled to [0, 1] then standardised with ``MEAN = 0.2860``, ``STD = 0.3530``; ``y``
        in 0..9. The datasets are cached in-process (keyed by path, size and modification
        time), so loading again is free; the same tensors are returned each time, so do not
        modify them in place.

    Raises
    ------
    ChecksumMismatch
        A file does not have its published md5 (damaged, or not the official file).
    IdxFormatError
        A file cannot be decoded (a :class:`~qfl.data.base.DatasetCorrupt`).
    DatasetNotFound
        Files missing and not downloadable.
    """
    directory = data_root("fashion-mnist", root)
    ensure_files("fashion-mnist", directory, [f.filename for f in FILES], FILES, download=download)
    return _split(directory, "train", "train"), _split(directory, "t10k", "test")
