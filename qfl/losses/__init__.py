"""Losses of the learning methods, as pure functions over tensors.

- :mod:`~qfl.losses.distill`: cross-entropy, logit distillation and the feature-map losses
  of Def-FD (L2, cosine, MSE);
- :mod:`~qfl.losses.multiexit`: the multi-exit loss (CE over exits + self-distillation from
  the deepest exit) and its adaptive temperature;
- :mod:`~qfl.losses.ssl`: SimCLR's NT-Xent.
"""

from qfl.losses.distill import (
    FEATURE_LOSSES,
    DefFDLoss,
    cross_entropy,
    deffd_loss,
    feature_loss,
    kd_loss,
)
from qfl.losses.multiexit import (
    AdaptiveTemperature,
    mean_max_probability,
    multi_exit_loss,
    paper_temperature_step,
)
from qfl.losses.ssl import nt_xent

__all__ = [
    "FEATURE_LOSSES",
    "AdaptiveTemperature",
    "DefFDLoss",
    "cross_entropy",
    "deffd_loss",
    "feature_loss",
    "kd_loss",
    "mean_max_probability",
    "multi_exit_loss",
    "nt_xent",
    "paper_temperature_step",
]
