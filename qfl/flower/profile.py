"""How long a Flower client's local work takes on the simulated clock.

A Flower client is the user's code, so qfl learns its cost before any training in one of
two ways, per client:

- **measured FLOPs** (the default): the client holds a ``torch.nn.Module`` attribute (its
  model: ``net``, ``model``, or any module attribute) and a ``DataLoader`` of its training
  data (``trainloader``, ``train_loader``, ...; evaluation data likewise: ``valloader``,
  ``testloader``, ...). One forward pass of one sample is counted with
  :func:`qfl.models.count_flops`; a training step costs ``compute.backward_factor`` times
  that, and the node's ``flops_per_s`` turns FLOPs into seconds.
- **stated** (``learning.seconds_per_sample``): seconds of training per sample and epoch;
  evaluation costs one ``backward_factor``-th of it per sample. The sample counts still
  come from the client's loaders (or are 0 where it has none).

Examples
--------
>>> import torch
>>> from torch.utils.data import DataLoader, TensorDataset
>>> class C:
...     def __init__(self):
...         self.net = torch.nn.Linear(4, 3)
...         self.trainloader = DataLoader(TensorDataset(torch.zeros(10, 4), torch.zeros(10)))
>>> w = client_work(C(), flops_per_s=1e3, backward_factor=3.0, seconds_per_sample=None)
>>> w.train_samples, w.train_s_per_sample, w.eval_samples
(10, 0.072, 0)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["ClientWork", "client_work", "user_object"]

_TRAIN = ("trainloader", "train_loader", "trainset", "train_set", "train_data")
_EVAL = ("valloader", "val_loader", "testloader", "test_loader", "evalloader", "eval_loader")


@dataclass(frozen=True)
class ClientWork:
    """One client's local work: samples and simulated seconds per sample.

    Attributes
    ----------
    train_samples, eval_samples : int
        Samples of its training and evaluation data.
    train_s_per_sample : float
        Simulated seconds of training per sample and epoch.
    eval_s_per_sample : float
        Simulated seconds of evaluation per sample.
    source : str
        ``flops`` (counted from its torch model) or ``stated``.
    """

    train_samples: int
    eval_samples: int
    train_s_per_sample: float
    eval_s_per_sample: float
    source: str


def user_object(client: Any) -> Any:
    """The user's object behind a Flower ``Client`` (the ``NumPyClient`` it wraps)."""
    return getattr(client, "numpy_client", client)


def _attrs(obj: Any) -> dict[str, Any]:
    try:
        return dict(vars(obj))
    except TypeError:
        return {}


def _loader_len(value: Any) -> int | None:
    data = getattr(value, "dataset", value)
    try:
        return len(data)
    except TypeError:
        return None


def _find_loader(attrs: dict[str, Any], names: tuple[str, ...]) -> Any:
    for name in names:
        if name in attrs and _loader_len(attrs[name]) is not None:
            return attrs[name]
    return None


def _find_model(attrs: dict[str, Any]) -> Any:
    import torch

    mods = {k: v for k, v in attrs.items() if isinstance(v, torch.nn.Module)}
    for name in ("net", "model"):
        if name in mods:
            return mods[name]
    return next(iter(mods.values()), None)


def _sample_shape(loader: Any) -> tuple[int, ...] | None:
    import torch

    data = getattr(loader, "dataset", loader)
    try:
        item = data[0]
    except Exception:
        return None
    if isinstance(item, dict):
        item = next((v for v in item.values() if isinstance(v, torch.Tensor) and v.ndim), None)
    elif isinstance(item, tuple | list):
        item = item[0] if item else None
    if isinstance(item, torch.Tensor) and item.ndim >= 1:
        return tuple(int(d) for d in item.shape)
    return None


def client_work(
    client: Any,
    *,
    flops_per_s: float,
    backward_factor: float,
    seconds_per_sample: float | None,
) -> ClientWork:
    """The local work of one client (see the module's description).

    Raises
    ------
    ValueError
        When neither way works (no torch model, no training data, or no sample shape, and
        no ``seconds_per_sample``): the message says what is missing.
    """
    obj = user_object(client)
    attrs = _attrs(obj)
    train = _find_loader(attrs, _TRAIN)
    evl = _find_loader(attrs, _EVAL)
    n_train = _loader_len(train) or 0 if train is not None else 0
    n_eval = _loader_len(evl) or 0 if evl is not None else 0
    if seconds_per_sample is not None:
        s = float(seconds_per_sample)
        return ClientWork(n_train, n_eval, s, s / backward_factor, "stated")
    model = _find_model(attrs)
    shape = _sample_shape(train) if train is not None else None
    missing = [
        what
        for what, ok in (
            ("a torch.nn.Module attribute (net / model)", model is not None),
            (f"a training DataLoader attribute ({' / '.join(_TRAIN[:2])})", train is not None),
            ("a sample shape readable from its dataset", train is None or shape is not None),
        )
        if not ok
    ]
    if missing:
        raise ValueError(
            f"{type(obj).__name__} has no {' and no '.join(missing)} to count FLOPs from; "
            "set learning.seconds_per_sample"
        )
    from qfl.models import count_flops

    fwd = float(count_flops(model, shape))  # type: ignore[arg-type]
    return ClientWork(
        n_train, n_eval, fwd * backward_factor / flops_per_s, fwd / flops_per_s, "flops"
    )
