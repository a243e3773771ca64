"""NT-Xent, the contrastive loss of SimCLR (normalised temperature-scaled cross-entropy).

References
----------
.. [1] T. Chen, S. Kornblith, M. Norouzi, G. Hinton, "A simple framework for contrastive
   learning of visual representations", ICML 2020, eq. (1) and Algorithm 1.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from qkd.errors import ParameterError

__all__ = ["nt_xent"]


def nt_xent(
    z1: torch.Tensor,
    z2: torch.Tensor,
    temperature: float = 0.5,
) -> torch.Tensor:
    """NT-Xent loss of two views of a batch.

    With ``z = normalize([z1; z2])`` (``2N`` rows) and ``s_ij = z_i . z_j / T``, the loss of
    row ``i`` whose positive is ``j(i)`` (the other view of the same image) is
    ``-log(exp(s_ij) / sum_{k != i} exp(s_ik))``; the result is the mean over the ``2N``
    rows (both orderings of each positive pair), as in SimCLR's Algorithm 1.

    Parameters
    ----------
    z1, z2 : torch.Tensor
        Projections ``[N, D]`` of the first and second view; row ``n`` of both comes from
        image ``n``; ``N >= 2``.
    temperature : float
        ``T > 0`` (SimCLR: 0.5 for CIFAR-10 at batch 512 and below, 0.1 for large batches).

    Returns
    -------
    torch.Tensor
        Scalar loss.

    Examples
    --------
    >>> z = torch.eye(3)
    >>> round(float(nt_xent(z, z, 1.0)), 4)  # positives aligned, negatives orthogonal
    0.9048
    """
    if isinstance(temperature, bool) or not float(temperature) > 0.0:
        raise ParameterError("temperature", temperature, "> 0")
    if z1.ndim != 2 or z1.shape != z2.shape:
        raise ParameterError(
            "z1, z2 shapes", (tuple(z1.shape), tuple(z2.shape)), "two equal [N, D] shapes"
        )
    n = z1.shape[0]
    if n < 2:
        raise ParameterError("batch size", n, ">= 2 (each image needs a negative)")
    z = F.normalize(torch.cat((z1, z2), dim=0), dim=1)
    sim = (z @ z.T) / float(temperature)
    eye = torch.eye(2 * n, dtype=torch.bool, device=z.device)
    logits = sim.masked_fill(eye, float("-inf"))
    pair = (z[:n] * z[n:]).sum(dim=1) / float(temperature)  # s_ij of the positive pairs
    positive = torch.cat((pair, pair))
    return (torch.logsumexp(logits, dim=1) - positive).mean()
