"""Flower on the QKD clock: a user's Flower ``Strategy`` and clients as a qfl learning job.

``learning.method: flower`` runs the stable Flower 1.x strategy API
(``initialize_parameters``, ``configure_fit``, ``aggregate_fit``, ``configure_evaluate``,
``aggregate_evaluate``, ``evaluate``) with the user's ``NumPyClient`` / ``Client`` objects
from a ``client_fn``, in process, while qfl decides *when* every message moves: each
``FitIns`` / ``FitRes`` / ``EvaluateIns`` / ``EvaluateRes`` is a network transfer of its
serialized size that waits for key on every hop, and local training takes simulated time
from a compute profile. Clients whose messages miss the round's deadline or find no key in
time are the strategy's ``failures``.

=====================================  ==================================================
:mod:`qfl.flower.job`                  the learning job (network half and learning half)
:mod:`qfl.flower.adapter`              the server loop driving the strategy
:mod:`qfl.flower.messages`             serialized sizes, in-process proxies, seeded sampling
:mod:`qfl.flower.profile`              each client's simulated compute time
:mod:`qfl.flower.loading`              ``module:attr`` objects: strategy, clients
:mod:`qfl.flower.validate`             ``qfl validate``'s checks of a flower scenario
=====================================  ==================================================

Flower (``pip install 'qfl[flower]'``) is imported only inside these modules' functions.
"""

from __future__ import annotations

__all__: list[str] = []
