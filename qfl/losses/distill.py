"""Loss functions of the learning layer, as pure functions over tensors.

All of them work on one batch (sample axis first) and are compatible with
``torch.func.vmap`` over an extra leading client axis and with ``torch.func.grad``.
Hyperparameters are validated eagerly (they are plain Python numbers, never vmapped).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from qkd.errors import ParameterError, UnknownNameError

__all__ = [
    "FEATURE_LOSSES",
    "DefFDLoss",
    "cross_entropy",
    "deffd_loss",
    "feature_loss",
    "kd_loss",
]

#: Names accepted by :func:`feature_loss`.
FEATURE_LOSSES: tuple[str, ...] = ("l2", "cos", "mse")

ModelOutput = tuple[torch.Tensor, Sequence[torch.Tensor]]


def _nonnegative(name: str, value: float) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not (math.isfinite(value) and value >= 0)
    ):
        raise ParameterError(name, value, "a finite number >= 0")
    return float(value)


def _temperature(value: float) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not (math.isfinite(value) and value > 0)
    ):
        raise ParameterError("temperature", value, "a finite number > 0")
    return float(value)


def _kind(kind: str) -> str:
    if kind not in FEATURE_LOSSES:
        raise UnknownNameError("kind", kind, FEATURE_LOSSES)
    return kind


def cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of ``logits [B, C]`` against class indices ``y [B]``.

    Examples
    --------
    >>> round(float(cross_entropy(torch.zeros(2, 4), torch.tensor([0, 3]))), 4)  # log 4
    1.3863
    """
    return F.cross_entropy(logits, y)


def kd_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float
) -> torch.Tensor:
    """Logit distillation: ``T^2 * KL(softmax(t / T) || softmax(s / T))``, averaged over the batch.

    The teacher is detached (no gradient flows into it). The ``T^2`` factor keeps the
    gradient scale independent of ``T`` (Hinton, Vinyals & Dean 2015).

    Parameters
    ----------
    student_logits, teacher_logits : torch.Tensor
        ``[B, C]`` logits.
    temperature : float
        ``T > 0``.

    Returns
    -------
    torch.Tensor
        Scalar.

    References
    ----------
    G. Hinton, O. Vinyals, J. Dean, "Distilling the Knowledge in a Neural Network",
    arXiv:1503.02531 (2015).

    Examples
    --------
    >>> float(kd_loss(torch.tensor([[1.0, 2.0]]), torch.tensor([[1.0, 2.0]]), 2.0))
    0.0
    """
    t = _temperature(temperature)
    log_p_student = F.log_softmax(student_logits / t, dim=-1)
    log_p_teacher = F.log_softmax(teacher_logits.detach() / t, dim=-1)
    kl = (log_p_teacher.exp() * (log_p_teacher - log_p_student)).sum(dim=-1)
    return kl.mean() * (t * t)


def _one_feature_loss(s: torch.Tensor, t: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "mse":
        return F.mse_loss(s, t)
    s_flat = s.flatten(1)
    t_flat = t.flatten(1)
    if kind == "l2":
        return torch.linalg.vector_norm(s_flat - t_flat, dim=1).mean()
    return (1.0 - F.cosine_similarity(s_flat, t_flat, dim=1, eps=1e-8)).mean()


def feature_loss(
    student_feats: Sequence[torch.Tensor], teacher_feats: Sequence[torch.Tensor], kind: str
) -> torch.Tensor:
    """Feature-map distillation loss, summed over the maps.

    For each pair of maps ``s, t`` of shape ``[B, ...]`` (the teacher's detached):

    - ``"l2"``: L2 norm of the difference of the flattened maps, per sample, averaged over
      the batch: ``mean_b ||s_b - t_b||_2``;
    - ``"cos"``: ``mean_b (1 - cos(s_b, t_b))`` on the flattened maps;
    - ``"mse"``: mean squared difference over all elements.

    Parameters
    ----------
    student_feats, teacher_feats : sequence of torch.Tensor
        Matching maps (e.g. the three block outputs of :class:`qfl.models.FeatureCNN`).
    kind : str
        One of :data:`FEATURE_LOSSES`.

    Returns
    -------
    torch.Tensor
        Scalar.

    Examples
    --------
    >>> s, t = [torch.tensor([[3.0, 0.0]])], [torch.tensor([[0.0, 4.0]])]
    >>> [float(feature_loss(s, t, k)) for k in FEATURE_LOSSES]
    [5.0, 1.0, 12.5]
    """
    kind = _kind(kind)
    if len(student_feats) != len(teacher_feats) or not student_feats:
        raise ParameterError(
            "teacher_feats",
            f"{len(teacher_feats)} maps",
            f"as many maps as student_feats ({len(student_feats)}), at least one",
        )
    total = torch.zeros((), dtype=student_feats[0].dtype, device=student_feats[0].device)
    for s, t in zip(student_feats, teacher_feats, strict=True):
        if s.shape != t.shape:
            raise ParameterError("teacher_feats shape", tuple(t.shape), f"{tuple(s.shape)}")
        total = total + _one_feature_loss(s, t.detach(), kind)
    return total


def deffd_loss(
    student_out: ModelOutput,
    y: torch.Tensor,
    teacher_out: ModelOutput | None,
    *,
    gamma: float,
    kind: str,
    temperature: float,
    ce_weight: float = 1.0,
    kd_weight: float = 1.0,
) -> torch.Tensor:
    """Def-FD fusion loss: ``ce_weight * CE + kd_weight * KD_T + gamma * feature_loss``.

    Parameters
    ----------
    student_out, teacher_out : (logits, feats)
        Outputs of :class:`qfl.models.FeatureCNN` for the receiver (student) and the received
        model (teacher). ``teacher_out=None`` means no teacher (plain local training): only
        the cross-entropy term is returned.
    y : torch.Tensor
        Class indices ``[B]``.
    gamma : float
        Weight of the feature-map loss, >= 0.
    kind : str
        Feature loss, one of :data:`FEATURE_LOSSES`.
    temperature : float
        Distillation temperature, > 0.
    ce_weight, kd_weight : float
        Weights of the cross-entropy and logit-distillation terms, >= 0.

    Returns
    -------
    torch.Tensor
        Scalar.
    """
    gamma = _nonnegative("gamma", gamma)
    ce_weight = _nonnegative("ce_weight", ce_weight)
    kd_weight = _nonnegative("kd_weight", kd_weight)
    temperature = _temperature(temperature)
    kind = _kind(kind)
    logits, feats = student_out
    loss = ce_weight * cross_entropy(logits, y)
    if teacher_out is None:
        return loss
    teacher_logits, teacher_feats = teacher_out
    loss = loss + kd_weight * kd_loss(logits, teacher_logits, temperature)
    if gamma > 0:
        loss = loss + gamma * feature_loss(feats, teacher_feats, kind)
    return loss


@dataclass(frozen=True)
class DefFDLoss:
    """:func:`deffd_loss` with its hyperparameters bound and validated on construction.

    Instances are ``loss_fn(outputs, y, teacher_outputs) -> scalar`` callables, the form
    the training engine takes.

    Examples
    --------
    >>> DefFDLoss(gamma=-1.0, kind="mse", temperature=1.0)
    Traceback (most recent call last):
    ...
    qkd.errors.ParameterError: gamma: must be a finite number >= 0, got -1.0
    """

    gamma: float
    kind: str
    temperature: float
    ce_weight: float = 1.0
    kd_weight: float = 1.0

    def __post_init__(self) -> None:
        _nonnegative("gamma", self.gamma)
        _nonnegative("ce_weight", self.ce_weight)
        _nonnegative("kd_weight", self.kd_weight)
        _temperature(self.temperature)
        _kind(self.kind)

    def __call__(
        self, outputs: ModelOutput, y: torch.Tensor, teacher_outputs: Any = None
    ) -> torch.Tensor:
        return deffd_loss(
            outputs,
            y,
            teacher_outputs,
            gamma=self.gamma,
            kind=self.kind,
            temperature=self.temperature,
            ce_weight=self.ce_weight,
            kd_weight=self.kd_weight,
        )
