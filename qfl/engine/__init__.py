"""The batched learning engine: many clients' models trained as one vectorized computation.

- :mod:`~qfl.engine.optim`: functional SGD / Adam over stacked parameter trees;
- :mod:`~qfl.engine.stack`: stack models into trees with a client axis, and back;
- :mod:`~qfl.engine.batcher`: per-client shuffled batches, grouped by batch size;
- :mod:`~qfl.engine.random`: keyed (counter-based) randomness that works under ``vmap``;
- :class:`BatchedTrainer` (``torch.func`` + ``vmap``) and :class:`SequentialTrainer` (the
  per-client ``torch.optim`` reference) with the same interface;
- :mod:`~qfl.engine.stacked`: the batched trainer's stacked CPU routes (all clients in one
  layout, plain autograd, no ``vmap``): :mod:`~qfl.engine.stacked_cnn` with the C++ kernels of
  :mod:`~qfl.engine.kernels` for the Def-FD CNN, :mod:`~qfl.engine.stacked_resnet` (grouped
  convolutions, per-client GroupNorm) and :mod:`~qfl.engine.stacked_lstm` (batched matrix
  products) for the multi-exit models;
- :func:`evaluate`: accuracy of many clients' models at once.

Typical use::

    params, _ = stack_models(models)
    trainer = BatchedTrainer(models[0], loss_fn, sgd(0.01, momentum=0.9), batch_size=32)
    state = trainer.init_state(params)
    params, state, stats = trainer.train_epochs(params, state, datasets, 1, seed=seed)
    acc = evaluate(models[0], params, test_set)
"""

from qfl.engine.base import LossFn, LossOf, TrainStats
from qfl.engine.batched import BatchedTrainer
from qfl.engine.batcher import ClientBatcher, ClientGroup, Step, client_seed_sequences
from qfl.engine.evaluate import default_logits, evaluate
from qfl.engine.optim import SGD, Adam, FunctionalOptimizer, adam, sgd
from qfl.engine.random import KeyedDropout
from qfl.engine.sequential import SequentialTrainer
from qfl.engine.stack import load_into, stack_models, stack_trees, unstack

__all__ = [
    "SGD",
    "Adam",
    "BatchedTrainer",
    "ClientBatcher",
    "ClientGroup",
    "FunctionalOptimizer",
    "KeyedDropout",
    "LossFn",
    "LossOf",
    "SequentialTrainer",
    "Step",
    "TrainStats",
    "adam",
    "client_seed_sequences",
    "default_logits",
    "evaluate",
    "load_into",
    "sgd",
    "stack_models",
    "stack_trees",
    "unstack",
]
