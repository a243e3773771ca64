"""Models of the learning layer: plain PyTorch modules that work with ``torch.func``.

Each model lives in its own module; this package re-exports the public names.
"""

from qfl.models.cnn import FeatureCNN
from qfl.models.flops import count_flops
from qfl.models.multiexit import (
    MultiExitLSTM,
    MultiExitModel,
    MultiExitResNet,
    deepest_affordable_exit,
    exit_flops,
    exit_parameter_mask,
    reinitialize,
    truncated,
)
from qfl.models.resnet_ssl import (
    Classifier,
    ProjectionHead,
    ResNetEncoder,
    SimCLRNet,
    resnet18,
    resnet50,
)

__all__ = [
    "Classifier",
    "FeatureCNN",
    "MultiExitLSTM",
    "MultiExitModel",
    "MultiExitResNet",
    "ProjectionHead",
    "ResNetEncoder",
    "SimCLRNet",
    "count_flops",
    "deepest_affordable_exit",
    "exit_flops",
    "exit_parameter_mask",
    "reinitialize",
    "resnet18",
    "resnet50",
    "truncated",
]
