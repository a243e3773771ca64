"""The in-memory dataset type shared by every loader, and the data errors."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from qkd.errors import ParameterError, QflError

__all__ = ["ChecksumMismatch", "DatasetCorrupt", "DatasetNotFound", "TensorDataset"]


class DatasetNotFound(QflError, FileNotFoundError):
    """The files of a dataset are neither on disk nor downloadable.

    The message says which files are missing, where they were looked for and where to put
    them.
    """


class ChecksumMismatch(QflError):
    """A dataset file does not have its published (or its folder's listed) checksum.

    Raised for a download (whose bytes are then deleted) and for a file already on disk
    (left in place: the message names it, gives the expected and actual digests, shortened,
    and says whether to delete it so that it is downloaded again or to replace the copy).
    """


class DatasetCorrupt(QflError, ValueError):
    """A dataset file cannot be read: truncated, not the expected format, or missing from
    the checksum list of its folder.

    The message names the file and says what to do (delete it so that it is downloaded
    again, or replace the copy in ``QFL_DATA_DIR``).
    """


Indices = np.ndarray | torch.Tensor | Sequence[int]


@dataclass(frozen=True, eq=False)
class TensorDataset:
    """A whole dataset held as two tensors.

    Parameters
    ----------
    x : torch.Tensor
        float32 inputs with the sample axis first: images ``[N, C, H, W]`` (normalised),
        time series ``[N, T, F]``.
    y : torch.Tensor
        int64 class indices ``[N]`` in ``0 .. len(classes) - 1``.
    classes : tuple of str
        Class names, index ``i`` naming label ``i``.
    name : str
        Dataset name with its split, e.g. ``"fashion-mnist/train"``.
    groups : torch.Tensor or None
        Optional int64 ``[N]`` group of each sample (the subject for UniMiB-SHAR), for
        group-wise splits.

    Examples
    --------
    >>> ds = TensorDataset(torch.zeros(4, 2), torch.tensor([0, 1, 1, 0]), ("a", "b"), "toy")
    >>> len(ds.subset([1, 2])), ds.num_classes
    (2, 2)
    """

    x: torch.Tensor
    y: torch.Tensor
    classes: tuple[str, ...]
    name: str
    groups: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.x.dtype != torch.float32:
            raise ParameterError(f"{self.name}.x.dtype", self.x.dtype, "torch.float32")
        if self.y.dtype != torch.int64 or self.y.ndim != 1:
            raise ParameterError(
                f"{self.name}.y", f"{self.y.dtype} {tuple(self.y.shape)}", "a 1-D int64 tensor"
            )
        if self.x.ndim < 1 or self.x.shape[0] != self.y.shape[0]:
            raise ParameterError(
                f"{self.name}.x.shape",
                tuple(self.x.shape),
                f"[{self.y.shape[0]}, ...] (one row per label)",
            )
        if self.groups is not None and tuple(self.groups.shape) != tuple(self.y.shape):
            raise ParameterError(
                f"{self.name}.groups.shape", tuple(self.groups.shape), f"({self.y.shape[0]},)"
            )
        if len(self.y) and (int(self.y.min()) < 0 or int(self.y.max()) >= len(self.classes)):
            raise ParameterError(
                f"{self.name}.y",
                f"labels in [{int(self.y.min())}, {int(self.y.max())}]",
                f"in [0, {len(self.classes) - 1}] (one class name per label)",
            )

    def __len__(self) -> int:
        return int(self.y.shape[0])

    @property
    def num_classes(self) -> int:
        """Number of classes (``len(classes)``), whether or not each one occurs."""
        return len(self.classes)

    def subset(self, indices: Indices) -> TensorDataset:
        """The samples at ``indices`` (in that order), as a new dataset.

        Parameters
        ----------
        indices : array-like of int
            Positions into this dataset, e.g. one client's partition.

        Returns
        -------
        TensorDataset
            Same classes and name; ``x``, ``y`` and ``groups`` indexed.
        """
        idx = torch.as_tensor(np.asarray(indices, dtype=np.int64).reshape(-1))
        if len(idx) and (int(idx.min()) < -len(self) or int(idx.max()) >= len(self)):
            raise ParameterError(
                "indices", f"values in [{int(idx.min())}, {int(idx.max())}]", f"< {len(self)}"
            )
        groups = None if self.groups is None else self.groups[idx]
        return TensorDataset(self.x[idx], self.y[idx], self.classes, self.name, groups)
