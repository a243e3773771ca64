"""Datasets (download + checksum + cache) and partitioners for the learning layer.

Loaders look for their files in an explicit ``root``, then ``$QFL_DATA_DIR/<folder>``, then
the user cache (``~/.cache/qfl/<folder>``), where they download and verify the official files.
"""

from qfl.data import partition
from qfl.data.base import ChecksumMismatch, DatasetCorrupt, DatasetNotFound, TensorDataset
from qfl.data.download import cache_dir, data_root
from qfl.data.fashion_mnist import load_fashion_mnist
from qfl.data.flowers import load_flowers102
from qfl.data.intel import load_intel_scenes
from qfl.data.unimib import load_unimib_shar

__all__ = [
    "ChecksumMismatch",
    "DatasetCorrupt",
    "DatasetNotFound",
    "TensorDataset",
    "cache_dir",
    "data_root",
    "load_fashion_mnist",
    "load_flowers102",
    "load_intel_scenes",
    "load_unimib_shar",
    "partition",
]
