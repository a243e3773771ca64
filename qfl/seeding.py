"""Explicit random streams derived from one seed.

Every stochastic operation of the learning layer takes its randomness from a child of the
run's seed, keyed by what it is for (operation, round, client...), so a result does not
depend on the order in which streams are asked for, nor on which clients are batched
together.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np

from qkd.errors import ParameterError

__all__ = [
    "DefFDKey",
    "ExperimentKey",
    "FedAvgKey",
    "MultiExitKey",
    "SSLKey",
    "Seed",
    "derive_seed",
    "int_seed",
]

Seed = int | np.random.SeedSequence


def derive_seed(seed: Seed, *key: int) -> np.random.SeedSequence:
    """The child seed sequence of ``seed`` for ``key``.

    Parameters
    ----------
    seed : int or numpy.random.SeedSequence
        The parent (an int ``>= 0``, or a sequence whose own key is extended).
    *key : int
        What the stream is for.

    Raises
    ------
    ParameterError
        If ``seed`` is neither an int ``>= 0`` nor a ``SeedSequence``.

    Examples
    --------
    >>> a = derive_seed(7, 1, 2).generate_state(1)
    >>> b = derive_seed(derive_seed(7, 1), 2).generate_state(1)
    >>> bool((a == b).all())
    True
    """
    if isinstance(seed, np.random.SeedSequence):
        return np.random.SeedSequence(seed.entropy, spawn_key=(*seed.spawn_key, *key))
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ParameterError("seed", seed, "an int >= 0 or a numpy SeedSequence")
    return np.random.SeedSequence(int(seed), spawn_key=key)


def int_seed(seq: np.random.SeedSequence) -> int:
    """A 32-bit integer drawn from ``seq`` (for ``torch.Generator.manual_seed``)."""
    return int(seq.generate_state(1, dtype=np.uint32)[0])


class DefFDKey(IntEnum):
    """Streams of a decentralized run (Def-FD, Def-KT, gossip)."""

    PLAN = 0
    INIT = 1
    LOCAL = 2
    FUSE = 3


class FedAvgKey(IntEnum):
    """Streams of FedAvg's client training."""

    LOCAL = 0
    FINETUNE = 1


class SSLKey(IntEnum):
    """Streams of the SSL-backbone algorithms (below an experiment's own key)."""

    PRETRAIN = 0
    HEADS = 1
    CENTRAL = 2
    HEAD_INIT = 3


class ExperimentKey(IntEnum):
    """Streams of an SSL-backbone experiment or co-simulation, from the scenario's seed."""

    SPLIT = 0
    INIT = 1
    PRETRAIN = 2
    HEADS = 3
    CENTRAL = 4


class MultiExitKey(IntEnum):
    """Streams of a multi-exit experiment or co-simulation, from the scenario's seed."""

    PARTITION = 0
    HOLDOUT = 1
    SUBSAMPLE = 2
    INIT = 3
    TRAIN = 4
    SYNTH = 5
