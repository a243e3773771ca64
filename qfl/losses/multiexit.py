"""Distillation-based training of multi-exit networks (Phuong & Lampert, ICCV 2019).

The loss of one batch, with exits ``1 .. K`` (shallow to deep), labels ``y``, balance
``C >= 0`` and temperature ``T``::

    L = sum_{k=1..K} CE(z_k, y)
        + C * T^2 * sum_{k=1..K-1} KL( softmax(z_K / T) || softmax(z_k / T) )

Every exit learns from the labels; every exit but the deepest also learns to mimic the
deepest exit's softened prediction. The teacher ``z_K`` is detached (no gradient flows into
the deepest exit through the distillation term). ``T^2`` keeps the distillation gradients'
scale independent of ``T`` (Hinton et al. 2015). With one exit the loss is exactly the
cross-entropy (the single-exit baseline); ``C = 0`` is the plain sum of per-exit
cross-entropies.

Relation to the authors' parametrisation: their reference code computes
``(1 - c) * sum_k CE_k + c * T^2 * sum_{k<K} CE(p_K^T, p_k^T)`` with ``c in [0, 1]``
(``c = 0.5`` in their experiments). Their cross-entropy against the teacher differs from the
KL divergence by the teacher's entropy, a constant for the student, so the gradients agree;
and ``(1 - c) * [sum CE + c / (1 - c) * T^2 * sum KL]`` is our loss with ``C = c / (1 - c)``
times the constant ``1 - c`` (a learning-rate rescaling under SGD). So the authors'
``c = 0.5`` is ``C = 1`` here, the default. We keep the cross-entropy weight at 1 so that the
single-exit baseline and the multi-exit model train their deepest exit at the same scale.

**Temperature.** A constant ``T`` (a float), or the authors' adaptive schedule: ``T`` starts
at 1 and is multiplied by 1.05 after every step in which the teacher's softened prediction
is, on average over the batch, more confident than a target (``mean_i max_c
softmax(z_K / T)_ic > q``, ``q = 0.5``); it never decreases. So ``T`` rises until the
softened teacher's mean top probability is about ``q``, i.e. the teacher is kept "soft" as it
becomes confident. Two implementations are given:

- :func:`paper_temperature_step`: the authors' stateful rule, one call per step (for a
  sequential loop that carries ``T``);
- :class:`AdaptiveTemperature`: a stateless version that fits a vmapped engine. For each
  batch it finds, by bisection on ``log T``, the smallest ``T >= t_min`` with mean top
  probability ``<= q``. That is the value the authors' schedule settles at for the current
  teacher (to within the 5 % step) when the teacher's confidence grows, which is the regime
  the schedule is built for; unlike the stateful rule it can go down again if the teacher
  becomes less confident (e.g. after a FedAvg round averages clients' models).

References
----------
.. [1] M. Phuong and C. H. Lampert, "Distillation-based training for multi-exit
   architectures", ICCV 2019, pp. 1355-1364. doi:10.1109/ICCV.2019.00144
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch.nn import functional as F

from qkd.errors import ParameterError

__all__ = [
    "AdaptiveTemperature",
    "mean_max_probability",
    "multi_exit_loss",
    "paper_temperature_step",
]


def mean_max_probability(logits: torch.Tensor, temperature: float | torch.Tensor) -> torch.Tensor:
    """Mean over the batch of the top class probability of ``softmax(logits / T)``.

    Examples
    --------
    >>> float(mean_max_probability(torch.tensor([[0.0, 0.0]]), 1.0))
    0.5
    """
    return F.softmax(logits / temperature, dim=-1).amax(dim=-1).mean()


@dataclass(frozen=True)
class AdaptiveTemperature:
    """Per-batch temperature so that the softened teacher's mean top probability is ``<= q``.

    ``T(z) = min { T >= t_min : mean_i max_c softmax(z_i / T)_c <= q }``, found by bisection
    on ``log T`` in ``[log t_min, log t_max]`` with a fixed number of steps (no data-dependent
    control flow, so it runs under ``torch.func.vmap``); the result is detached. See the
    module docstring for how it relates to the authors' schedule.

    Parameters
    ----------
    target_maxprob : float
        ``q`` in ``(0, 1)`` (the authors use 0.5). It must exceed ``1 / num_classes`` to be
        reachable; otherwise ``t_max`` is returned.
    t_min, t_max : float
        Range of ``T`` (the authors start at 1, and ``T`` never falls below that).
    steps : int
        Bisection steps (24 gives a relative precision of about ``(t_max/t_min)^(2^-24)``).

    Examples
    --------
    >>> sched = AdaptiveTemperature(target_maxprob=0.5)
    >>> z = torch.tensor([[4.0, 0.0, 0.0], [0.0, 4.0, 0.0]])
    >>> t = sched(z)  # exact: 4 / ln 2
    >>> round(float(t), 3), round(4 / math.log(2), 3)
    (5.771, 5.771)
    >>> float(sched(torch.zeros(3, 3)))  # already soft enough: stays at t_min
    1.0
    """

    target_maxprob: float = 0.5
    t_min: float = 1.0
    t_max: float = 1000.0
    steps: int = 24

    def __post_init__(self) -> None:
        if not 0.0 < self.target_maxprob < 1.0:
            raise ParameterError("target_maxprob", self.target_maxprob, "in (0, 1)")
        if not 0.0 < self.t_min < self.t_max:
            raise ParameterError("t_max", self.t_max, f"> t_min = {self.t_min} > 0")
        if int(self.steps) != self.steps or self.steps < 1:
            raise ParameterError("steps", self.steps, "an integer >= 1")

    def __call__(self, teacher_logits: torch.Tensor) -> torch.Tensor:
        """The temperature (a detached 0-d tensor) for this batch of teacher logits."""
        z = teacher_logits.detach()
        lo = torch.full((), math.log(self.t_min), dtype=z.dtype, device=z.device)
        hi = torch.full((), math.log(self.t_max), dtype=z.dtype, device=z.device)
        # The top probability decreases monotonically in T, so bisection on log T applies.
        ok_at_min = mean_max_probability(z, lo.exp()) <= self.target_maxprob
        for _ in range(self.steps):
            mid = 0.5 * (lo + hi)
            too_confident = mean_max_probability(z, mid.exp()) > self.target_maxprob
            lo = torch.where(too_confident, mid, lo)
            hi = torch.where(too_confident, hi, mid)
        return torch.where(ok_at_min, torch.full_like(hi, self.t_min), hi.exp())


def paper_temperature_step(
    temperature: float,
    teacher_logits: torch.Tensor,
    *,
    target_maxprob: float = 0.5,
    factor: float = 1.05,
) -> float:
    """The authors' adaptive-temperature rule for one training step.

    Returns ``factor * T`` if the teacher's softened prediction at the current ``T`` is, on
    average, more confident than ``target_maxprob``, else ``T`` unchanged.

    Examples
    --------
    >>> paper_temperature_step(1.0, torch.tensor([[5.0, 0.0]]))
    1.05
    >>> paper_temperature_step(1.0, torch.tensor([[0.0, 0.0]]))
    1.0
    """
    if not temperature > 0:
        raise ParameterError("temperature", temperature, "> 0")
    if not factor >= 1.0:
        raise ParameterError("factor", factor, ">= 1")
    if float(mean_max_probability(teacher_logits.detach(), temperature)) > target_maxprob:
        return temperature * factor
    return temperature


def multi_exit_loss(
    exit_logits: Sequence[torch.Tensor],
    y: torch.Tensor,
    *,
    C: float = 1.0,
    temperature: float | torch.Tensor | AdaptiveTemperature = 1.0,
) -> torch.Tensor:
    """Distillation-based multi-exit loss (Phuong & Lampert 2019); see the module docstring.

    ``L = sum_k CE(z_k, y) + C * T^2 * sum_{k<K} KL(softmax(z_K / T) || softmax(z_k / T))``
    with the teacher ``z_K`` (the deepest exit given) detached and the batch mean taken in
    each term.

    Parameters
    ----------
    exit_logits : sequence of tensors [N, classes]
        Logits of the exits, shallow to deep (a model truncated at exit ``k`` passes ``k``
        of them; its deepest exit is then the teacher).
    y : tensor [N]
        Integer labels.
    C : float
        Weight ``>= 0`` of the distillation terms (1 = the authors' setting, see above).
    temperature : float, 0-d tensor or AdaptiveTemperature
        Distillation temperature, or a rule computing it from the teacher's logits.

    Returns
    -------
    torch.Tensor
        Scalar loss.

    Examples
    --------
    >>> z = (torch.tensor([[1.0, 0.0]]), torch.tensor([[2.0, 0.0]]))
    >>> y = torch.tensor([0])
    >>> ce = sum(F.cross_entropy(l, y) for l in z)
    >>> bool(torch.isclose(multi_exit_loss(z, y, C=0.0), ce))
    True
    >>> bool(multi_exit_loss(z, y, C=1.0) > ce)  # exit 1 disagrees with exit 2
    True
    """
    if not C >= 0.0:
        raise ParameterError("C", C, ">= 0")
    logits = tuple(exit_logits)
    if not logits:
        raise ParameterError("exit_logits", logits, "at least one exit")
    ce = torch.stack([F.cross_entropy(z, y) for z in logits]).sum()
    if len(logits) == 1 or C == 0.0:
        return ce
    teacher = logits[-1].detach()
    if isinstance(temperature, AdaptiveTemperature):
        t: float | torch.Tensor = temperature(teacher)
    else:
        t = temperature
        # A tensor temperature is not checked: that would need data-dependent control flow,
        # which vmap forbids.
        if isinstance(t, float | int) and not t > 0:
            raise ParameterError("temperature", temperature, "> 0")
    log_p_teacher = F.log_softmax(teacher / t, dim=-1)
    p_teacher = log_p_teacher.exp()
    # KL(teacher || exit), batch mean: F.kl_div(..., log_target=True)'s own formula, written
    # out because aten::kl_div has no vmap batching rule (the stacked engine maps this loss
    # over clients, and the fallback loops over them).
    kd = torch.stack(
        [
            (p_teacher * (log_p_teacher - F.log_softmax(z / t, dim=-1))).sum() / z.shape[0]
            for z in logits[:-1]
        ]
    ).sum()
    return ce + C * (t * t) * kd
