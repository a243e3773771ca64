"""Train a round's clients in several processes (one share of the clients each).

On a CPU with few cores, one process training all clients with ``t`` intra-op threads spends
part of every operation waiting at the threads' barrier; the stacked routes' operations are
small (a few milliseconds), so that wait is a large share. :class:`TrainerPool` runs
``workers`` spawned processes instead, each with ``threads // workers`` threads, and gives
each a share of the clients balanced by samples (longest first). A client's batches and
dropout keys come from its own seed, so which process trains it does not change its
arithmetic: the result equals one process's at the workers' thread count, up to the float
rounding of the grouped kernels (tests hold it to 1e-5).

The pool is started on first use and holds every client's data from then on (sent once);
a round sends only the stacked parameters of each share and gets them back trained. The
loss function must be picklable (a module-level function or a ``functools.partial`` of
one, not a closure).
"""

from __future__ import annotations

import heapq
import multiprocessing
import pickle
import time
import weakref
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import torch
from torch import nn

from qfl.data import TensorDataset
from qfl.engine.select import make_trainer
from qkd.errors import ParameterError

__all__ = [
    "TrainerPool",
    "balanced_shares",
    "cached_trainer",
    "gather_trained",
    "share_calls",
    "train_members",
    "trainer_spec",
]

# Per worker process: what the initializer received, and the trainers built from it.
_WORKER: dict[str, Any] = {}


def balanced_shares(sizes: Sequence[int], n: int) -> list[list[int]]:
    """Split item indices into at most ``n`` shares of nearly equal total size.

    Longest-processing-time first: items by decreasing size, each to the currently lightest
    share; every share keeps its indices in increasing order; empty shares are dropped.

    Examples
    --------
    >>> balanced_shares([5, 1, 4, 2, 3], 2)
    [[0, 1, 3], [2, 4]]
    >>> balanced_shares([1, 1], 4)
    [[0], [1]]
    """
    if isinstance(n, bool) or n < 1:
        raise ParameterError("n", n, "an integer >= 1")
    heap = [(0, j) for j in range(n)]
    shares: list[list[int]] = [[] for _ in range(n)]
    for i in sorted(range(len(sizes)), key=lambda i: (-sizes[i], i)):
        load, j = heapq.heappop(heap)
        shares[j].append(i)
        heapq.heappush(heap, (load + sizes[i], j))
    return [sorted(s) for s in shares if s]


def _init_worker(threads: int, spec: dict[str, Any]) -> None:
    """Set the threads and train one step per model on one batch, so that the first round
    does not pay for first calls (the trainers load their kernels themselves)."""
    torch.set_num_threads(threads)
    from qfl.engine import stack_models

    _WORKER.clear()
    _WORKER.update(spec, trainers={})
    first = _WORKER["datasets"][0]
    batch = first.subset(range(min(len(first), _WORKER["trainer_kwargs"].get("batch_size", 1))))
    for key, model in _WORKER["models"].items():
        trainer = cached_trainer(_WORKER, _WORKER["trainers"], key)
        params, _ = stack_models([model])
        trainer.train_epochs(params, trainer.init_state(params), [batch], 1, seed=0)


def _train_share(*call: Any) -> tuple[dict[str, torch.Tensor], float]:
    """:func:`train_members` in a worker process, on what :func:`_init_worker` received."""
    return train_members(_WORKER, _WORKER["trainers"], *call)


# ---------------------------------------------------------------------------------------------
# shared by the process pool here and the Ray pool (qfl.engine.raypool)


def trainer_spec(
    models: Mapping[Any, nn.Module],
    loss_fn: Any,
    optimizer: Any,
    datasets: Sequence[TensorDataset],
    engine: str,
    trainer_kwargs: Mapping[str, Any],
) -> dict[str, Any]:
    """What a worker receives once: the trainer settings and every client's data."""
    return {
        "models": dict(models),
        "loss_fn": loss_fn,
        "optimizer": optimizer,
        "datasets": list(datasets),
        "engine": engine,
        "trainer_kwargs": dict(trainer_kwargs),
    }


def cached_trainer(spec: Mapping[str, Any], trainers: dict[Any, Any], key: Any) -> Any:
    """The trainer of ``key`` built from ``spec`` (a :func:`trainer_spec`), kept in ``trainers``."""
    if key not in trainers:
        trainers[key] = make_trainer(
            spec["engine"],
            spec["models"][key],
            spec["loss_fn"],
            spec["optimizer"],
            **spec["trainer_kwargs"],
        )
    return trainers[key]


def train_members(
    spec: Mapping[str, Any],
    trainers: dict[Any, Any],
    key: Any,
    members: list[int],
    params: dict[str, torch.Tensor],
    param_mask: dict[str, torch.Tensor],
    seeds: list[Any],
    epochs: int,
) -> tuple[dict[str, torch.Tensor], float]:
    """Train clients ``members`` from the stacked ``params``: the trained ones, CPU seconds."""
    cpu0 = time.process_time()
    trainer = cached_trainer(spec, trainers, key)
    trained, _, _ = trainer.train_epochs(
        params,
        trainer.init_state(params),
        [spec["datasets"][i] for i in members],
        epochs,
        seed=seeds,
        param_mask=param_mask,
    )
    out = {name: t.detach().contiguous() for name, t in trained.items()}
    return out, time.process_time() - cpu0


def share_calls(
    sizes: Sequence[int],
    workers: int,
    key: Any,
    members: Sequence[int],
    params: Mapping[str, torch.Tensor],
    param_mask: Mapping[str, torch.Tensor],
    seeds: Sequence[Any],
    epochs: int,
) -> tuple[list[list[int]], list[tuple[Any, ...]]]:
    """Split ``members`` into shares balanced by ``sizes``: the shares (positions in
    ``members``) and, for each, the arguments of :func:`train_members` after ``trainers``."""
    shares = balanced_shares([sizes[i] for i in members], workers)
    calls = [
        (
            key,
            [members[j] for j in share],
            {name: t[share] for name, t in params.items()},
            {name: m[share] for name, m in param_mask.items()},
            [seeds[j] for j in share],
            epochs,
        )
        for share in shares
    ]
    return shares, calls


def gather_trained(
    params: Mapping[str, torch.Tensor],
    shares: Sequence[Sequence[int]],
    results: Iterable[tuple[dict[str, torch.Tensor], float]],
) -> tuple[dict[str, torch.Tensor], float]:
    """The shares' trained parameters stacked back in the order of ``params``'s rows, and
    the CPU seconds summed over the shares."""
    out = {name: torch.empty_like(t) for name, t in params.items()}
    cpu_seconds = 0.0
    for share, (trained, cpu) in zip(shares, results, strict=True):
        rows = torch.tensor(share)
        cpu_seconds += cpu
        for name, t in trained.items():
            out[name][rows] = t
    return out, cpu_seconds


class TrainerPool:
    """Worker processes that train shares of the clients with the same trainer settings.

    Parameters
    ----------
    workers : int
        Processes (>= 2; each gets ``threads // workers`` intra-op threads, at least 1).
    models : mapping
        Key (e.g. an exit depth) -> the architecture trained under that key.
    loss_fn, optimizer
        As for :func:`qfl.engine.select.make_trainer`; both must pickle.
    datasets : sequence of TensorDataset
        Every client's training data (index = client).
    engine : {"batched", "sequential"}
        Trainer in each worker.
    threads : int, optional
        Threads to divide (default: this process's ``torch.get_num_threads()``).
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
        threads: int | None = None,
        **trainer_kwargs: Any,
    ) -> None:
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 2:
            raise ParameterError("workers", workers, "an integer >= 2")
        try:
            pickle.dumps(loss_fn)
        except (pickle.PicklingError, AttributeError, TypeError) as exc:
            raise ParameterError(
                "workers",
                workers,
                f"1 for this loss function, which cannot be sent to a process ({exc})",
            ) from None
        self.workers = workers
        self.threads = max(1, (threads or torch.get_num_threads()) // workers)
        self.sizes = [len(d) for d in datasets]
        self._spec = trainer_spec(models, loss_fn, optimizer, datasets, engine, trainer_kwargs)
        self._pool: ProcessPoolExecutor | None = None
        self.cpu_seconds = 0.0  # the workers' CPU time in training calls, summed

    def start(self) -> None:
        """Start the processes now (else on the first :meth:`train`); they load the data."""
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                self.workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_worker,
                initargs=(self.threads, self._spec),
            )
            weakref.finalize(self, self._pool.shutdown, wait=False, cancel_futures=True)
            # Every worker is started (and warmed up) before the first round.
            list(self._pool.map(_noop, range(self.workers)))

    def train(
        self,
        key: Any,
        members: Sequence[int],
        params: Mapping[str, torch.Tensor],
        param_mask: Mapping[str, torch.Tensor],
        seeds: Sequence[Any],
        epochs: int,
    ) -> dict[str, torch.Tensor]:
        """Train clients ``members`` (stacked ``params`` in that order) across the workers.

        Returns the trained stacked parameters, rows in the order of ``members``.
        """
        self.start()
        assert self._pool is not None
        shares, calls = share_calls(
            self.sizes, self.workers, key, members, params, param_mask, seeds, epochs
        )
        futures = [self._pool.submit(_train_share, *call) for call in calls]
        out, cpu = gather_trained(params, shares, (f.result() for f in futures))
        self.cpu_seconds += cpu
        return out

    def close(self) -> None:
        """Stop the processes (a later :meth:`train` starts new ones)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def _noop(_: int) -> None:
    return None
