"""Client sampling for the server methods: a few of many clients take part in each round.

Cross-device federated learning has thousands of clients of which a few dozen train in a
round (Flower's ``fraction_train``, FedScale's traces). ``learning.clients_per_round`` (a
count) or ``learning.client_fraction`` (a share of the clients, Flower's rule
``max(1, int(fraction * n))``) sets how many; which ones is drawn from the scenario's seed
and the round number only (:func:`sample_clients`), never from learned values or the
network's state, so both halves of a co-simulation, sweeps and learning reuse see the same
clients (the round plan, :func:`qfl.cosim.plan.server_round`, holds only the sampled ones).

**Availability.** The draw does not look at the network: a sampled client whose path to the
server has no key, or which is down, is *sampled and fails* — its transfer fails in the
network half and it sits the round out (it is not replaced), exactly as an unsampled one.
The summary's dropped transfers count such clients. This keeps the plan a pure function of
``(seed, round)``, which learning reuse across sweep points needs.

Examples
--------
>>> sample_clients(7, 0, 10, 3) == sample_clients(7, 0, 10, 3)
True
>>> len(sample_clients(7, 1, 10, 3)), sample_clients(7, 1, 10, 10)
(3, (0, 1, 2, 3, 4, 5, 6, 7, 8, 9))
>>> per_round_count(500, fraction=0.02)
10
"""

from __future__ import annotations

import numpy as np

from qfl.seeding import derive_seed
from qkd.errors import ParameterError

__all__ = ["SAMPLING_STREAM", "per_round_count", "sample_clients"]

SAMPLING_STREAM = 0x53414D50
"""Key of the sampling stream below the scenario's seed (apart from every other stream)."""


def per_round_count(
    n_clients: int, *, count: int | None = None, fraction: float | None = None
) -> int:
    """How many of ``n_clients`` clients train per round.

    Parameters
    ----------
    n_clients : int
        Clients that exist (``>= 1``).
    count : int, optional
        Clients per round, ``1 <= count <= n_clients``.
    fraction : float, optional
        Share of the clients per round, in ``(0, 1]``: ``max(1, int(fraction * n))``.
        At most one of ``count`` and ``fraction``; neither: every client.

    Raises
    ------
    ParameterError
        Naming ``clients_per_round`` or ``client_fraction``, the value and what is allowed.
    """
    if count is not None and fraction is not None:
        raise ParameterError(
            "clients_per_round", count, "unset when client_fraction is set (give one of them)"
        )
    if count is not None:
        if isinstance(count, bool) or not isinstance(count, int | np.integer) or count < 1:
            raise ParameterError("clients_per_round", count, "an integer >= 1")
        if count > n_clients:
            raise ParameterError(
                "clients_per_round", count, f"<= {n_clients} (the clients that exist)"
            )
        return int(count)
    if fraction is not None:
        if not 0 < fraction <= 1:
            raise ParameterError("client_fraction", fraction, "in (0, 1]")
        return max(1, int(fraction * n_clients))
    return n_clients


def sample_clients(seed: int, round_: int, n_clients: int, k: int) -> tuple[int, ...]:
    """The ``k`` clients (indices, sorted) that take part in round ``round_`` (0-based).

    Drawn without replacement from the stream ``(seed, SAMPLING_STREAM, round_)``: the same
    seed and round give the same clients whatever else happens; ``k == n_clients`` gives
    every client without drawing.
    """
    if not 1 <= k <= n_clients:
        raise ParameterError("clients_per_round", k, f"in [1, {n_clients}]")
    if k == n_clients:
        return tuple(range(n_clients))
    rng = np.random.default_rng(derive_seed(seed, SAMPLING_STREAM, round_))
    return tuple(int(i) for i in np.sort(rng.choice(n_clients, size=k, replace=False)))
