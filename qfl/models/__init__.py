"""Models of the learning layer: plain PyTorch modules that work with ``torch.func``.

Each model lives in its own module; this package re-exports the public names.
"""

from qfl.models.cnn import FeatureCNN
from qfl.models.flops import count_flops

__all__ = [
    "FeatureCNN",
    "count_flops",
]
