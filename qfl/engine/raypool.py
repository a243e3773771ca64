"""Train a round's clients on Ray workers, which may be other machines of a Ray cluster.

:class:`RayTrainerPool` has :class:`qfl.engine.workers.TrainerPool`'s interface (``start``,
``train``, ``close``, ``cpu_seconds``) with Ray actors in place of local processes: each
actor receives the trainer settings and every client's data once, when it starts (one
object in Ray's store, fetched once per worker), and a round sends each actor only the
stacked parameters of its share of the sampled clients (balanced by samples,
:func:`~qfl.engine.workers.balanced_shares`) and gets them back trained. A client's batches
and dropout come from its own seed, so the result equals the single-process run up to the
float rounding of the grouped kernels.

Ray is imported only here, when a pool starts. ``address`` is a Ray cluster's address
(``ray start --head`` prints it), ``"local"`` (or ``None`` with no cluster running) starts
one on this machine with ``workers`` CPUs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from qfl.data import TensorDataset
from qfl.engine.workers import gather_trained, share_calls, train_members, trainer_spec
from qkd.errors import ParameterError

__all__ = ["RayTrainerPool"]


class _Worker:
    """One Ray actor: the trainer settings and every client's data, set once."""

    def __init__(self, threads: int, spec: dict[str, Any]) -> None:
        torch.set_num_threads(threads)
        self.spec = spec
        self.trainers: dict[Any, Any] = {}

    def ready(self) -> int:
        """The worker's process id (it has its data)."""
        import os

        return os.getpid()

    def train(
        self,
        key: Any,
        members: list[int],
        params: dict[str, torch.Tensor],
        param_mask: dict[str, torch.Tensor],
        seeds: list[Any],
        epochs: int,
    ) -> tuple[dict[str, torch.Tensor], float]:
        """Train ``members`` from the stacked ``params``; the trained ones, CPU seconds."""
        return train_members(
            self.spec, self.trainers, key, members, params, param_mask, seeds, epochs
        )


class RayTrainerPool:
    """Ray actors that train shares of the clients with the same trainer settings.

    Parameters
    ----------
    workers : int
        Actors (>= 1), each with ``threads`` intra-op threads and one CPU of the cluster.
    models, loss_fn, optimizer, datasets, engine
        As for :class:`~qfl.engine.workers.TrainerPool` (``loss_fn`` must pickle).
    threads : int
        Torch threads per actor (default 1).
    address : str, optional
        Ray cluster address; ``None`` or ``"local"``: a local cluster with ``workers`` CPUs
        (when Ray is not initialised yet in this process).
    **trainer_kwargs
        Other trainer arguments (``batch_size``, ``chunk_size``).
    """

    def __init__(
        self,
        workers: int,
        models: Mapping[Any, nn.Module],
        loss_fn: Any,
        optimizer: Any,
        datasets: Sequence[TensorDataset],
        *,
        engine: str = "batched",
        threads: int = 1,
        address: str | None = None,
        **trainer_kwargs: Any,
    ) -> None:
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ParameterError("workers", workers, "an integer >= 1")
        self.workers = workers
        self.threads = max(1, int(threads))
        self.address = address
        self.sizes = [len(d) for d in datasets]
        self._spec = trainer_spec(models, loss_fn, optimizer, datasets, engine, trainer_kwargs)
        self._actors: list[Any] = []
        self._started_ray = False
        self.cpu_seconds = 0.0

    def start(self) -> None:
        """Connect to (or start) Ray and start the actors, which receive the data once."""
        if self._actors:
            return
        import ray

        if not ray.is_initialized():
            if self.address in (None, "local"):
                ray.init(num_cpus=self.workers, include_dashboard=False, log_to_driver=False)
            else:
                ray.init(address=self.address, log_to_driver=False)
            self._started_ray = True
        spec = ray.put(self._spec)  # one copy in the object store, fetched once per worker
        actor = ray.remote(num_cpus=1)(_Worker)
        self._actors = [actor.remote(self.threads, spec) for _ in range(self.workers)]
        ray.get([a.ready.remote() for a in self._actors])

    def train(
        self,
        key: Any,
        members: Sequence[int],
        params: Mapping[str, torch.Tensor],
        param_mask: Mapping[str, torch.Tensor],
        seeds: Sequence[Any],
        epochs: int,
    ) -> dict[str, torch.Tensor]:
        """Train clients ``members`` (stacked ``params`` in that order) across the actors;
        the trained stacked parameters, rows in the order of ``members``."""
        import ray

        self.start()
        shares, calls = share_calls(
            self.sizes, self.workers, key, members, params, param_mask, seeds, epochs
        )
        refs = [actor.train.remote(*call) for actor, call in zip(self._actors, calls, strict=False)]
        out, cpu = gather_trained(params, shares, ray.get(refs))
        self.cpu_seconds += cpu
        return out

    def close(self) -> None:
        """Stop the actors (and Ray, if this pool started it)."""
        if not self._actors:
            return
        import ray

        for a in self._actors:
            ray.kill(a)
        self._actors = []
        if self._started_ray:
            ray.shutdown()
            self._started_ray = False
