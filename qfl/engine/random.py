"""Counter-based random numbers from integer keys, usable inside ``torch.func.vmap``.

Why not ``torch.Generator``? Under ``vmap(..., randomness="different")`` torch draws from
the *global* generator, so a batched run would be reproducible only after
``torch.manual_seed`` (global state, forbidden in library code) and would never match the
per-client loop draw for draw. Instead, every client and every optimizer step gets an
integer **key** (an int64 tensor holding a value in ``[0, 2**32)``), and random numbers are a
pure function of ``(key, position)``: a 32-bit integer hash evaluated with ordinary tensor
ops. The same key gives the same numbers batched or not, on CPU or CUDA, inside or outside
``vmap`` (where the key is a per-client 0-d tensor).

The trainers derive the keys from the ``seed`` (see :class:`qfl.engine.ClientBatcher`) and

- replace every ``torch.nn.Dropout`` (and ``Dropout1d/2d/3d``) of the model by a
  :class:`KeyedDropout` with the same ``p``, whose key is set for each step, so model code
  keeps using plain ``nn.Dropout``;
- pass the step key to a custom ``loss_of(params, buffers, batch, key)`` (e.g. for SimCLR's
  augmentations), which draws with :func:`uniform`, :func:`normal`, :func:`randint` after
  :func:`fold_in` to separate its uses.

The hash is the "lowbias32" integer hash of C. Wellons (2018); multiplications are split in
16-bit halves so that no int64 product overflows. It is a simulation RNG, not a
cryptographic one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from qfl.engine import kernels
from qkd.errors import ParameterError, QflError

__all__ = [
    "KeyedDropout",
    "dropout_linear",
    "fold_in",
    "keyed_dropout",
    "keyed_dropout_names",
    "normal",
    "randint",
    "replace_dropout",
    "uniform",
]

_MASK32 = 0xFFFFFFFF
_GOLDEN = 0x9E3779B9


def _mul32(x: torch.Tensor, c: int) -> torch.Tensor:
    """``(x * c) mod 2**32`` for ``0 <= x < 2**32`` without int64 overflow."""
    lo, hi = c & 0xFFFF, c >> 16
    return (x * lo + (((x * hi) & 0xFFFF) << 16)) & _MASK32


def _hash32(x: torch.Tensor) -> torch.Tensor:
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def _as_key(key: torch.Tensor | int) -> torch.Tensor:
    if isinstance(key, int):
        return torch.tensor(key & _MASK32, dtype=torch.int64)
    if key.dtype != torch.int64:
        raise ParameterError("key.dtype", key.dtype, "torch.int64")
    return key


def fold_in(key: torch.Tensor | int, data: torch.Tensor | int) -> torch.Tensor:
    """Derive a new key from ``key`` and an integer ``data`` (a counter, a use tag).

    Parameters
    ----------
    key : torch.Tensor or int
        int64 key(s) in ``[0, 2**32)``; any shape (broadcast with ``data``).
    data : torch.Tensor or int
        Non-negative integer(s) mixed into the key.

    Returns
    -------
    torch.Tensor
        int64 key(s) in ``[0, 2**32)``.

    Examples
    --------
    >>> int(fold_in(7, 0)) != int(fold_in(7, 1))
    True
    """
    k = _as_key(key)
    d = _as_key(data) if isinstance(data, int) else data.to(torch.int64) & _MASK32
    d = d.to(k.device)
    return _hash32(k ^ _hash32((d + _GOLDEN) & _MASK32))


def _bits(key: torch.Tensor | int, n: int) -> torch.Tensor:
    """``n`` random 32-bit words per key: ``[*key.shape, n]``."""
    k = _as_key(key)
    s1 = _hash32(k)[..., None]
    s2 = _hash32(k ^ _GOLDEN)[..., None]
    i = torch.arange(n, dtype=torch.int64, device=k.device)
    return _hash32(_hash32((i + s1) & _MASK32) ^ s2)


def uniform(
    key: torch.Tensor | int, shape: Sequence[int], *, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Uniform numbers in ``[0, 1)`` (24 random bits each), a pure function of the key.

    Parameters
    ----------
    key : torch.Tensor or int
        A 0-d int64 key (a per-client key inside ``vmap``), or keys ``[*batch]``: then
        ``[*batch, *shape]``, entry ``i`` being what key ``i`` alone gives.
    shape : sequence of int
        Shape of the result.
    dtype : torch.dtype
        Floating dtype of the result.

    Returns
    -------
    torch.Tensor
        ``shape`` (after the keys' shape), on the key's device.

    Examples
    --------
    >>> a = uniform(3, (2, 2))
    >>> bool(((a >= 0) & (a < 1)).all()), bool((a == uniform(3, (2, 2))).all())
    (True, True)
    """
    n = math.prod(shape)
    bits = _bits(key, n) >> 8
    return (bits.to(dtype) * (2.0**-24)).reshape(bits.shape[:-1] + tuple(shape))


def normal(
    key: torch.Tensor | int, shape: Sequence[int], *, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Standard normal numbers by the Box-Muller transform of two :func:`uniform` draws.

    Parameters
    ----------
    key : torch.Tensor or int
        A 0-d int64 key.
    shape : sequence of int
        Shape of the result.
    dtype : torch.dtype
        Floating dtype of the result.

    Returns
    -------
    torch.Tensor
        ``shape``, on the key's device.
    """
    k = _as_key(key)
    u1 = uniform(fold_in(k, 0), shape, dtype=dtype)
    u2 = uniform(fold_in(k, 1), shape, dtype=dtype)
    return torch.sqrt(-2.0 * torch.log1p(-u1)) * torch.cos((2.0 * math.pi) * u2)


def randint(key: torch.Tensor | int, high: int, shape: Sequence[int]) -> torch.Tensor:
    """Integers uniform in ``[0, high)`` (``high <= 2**24``), as int64.

    Parameters
    ----------
    key : torch.Tensor or int
        A 0-d int64 key.
    high : int
        Exclusive upper bound, ``1 <= high <= 2**24``.
    shape : sequence of int
        Shape of the result.

    Returns
    -------
    torch.Tensor
        int64 ``shape``.
    """
    if isinstance(high, bool) or not isinstance(high, int) or not 1 <= high <= 2**24:
        raise ParameterError("high", high, "an integer in [1, 2**24]")
    n = math.prod(shape)
    bits = _bits(key, n) >> 8
    return ((bits * high) >> 24).reshape(bits.shape[:-1] + tuple(shape))


def keyed_dropout(x: torch.Tensor, p: float, keys: torch.Tensor) -> torch.Tensor:
    """:class:`KeyedDropout` (training mode) of many inputs at once, each with its own key.

    Parameters
    ----------
    x : torch.Tensor
        ``[K, ...]``: ``x[i]`` is the input of a dropout module whose key is ``keys[i]``.
    p : float
        Drop probability in ``[0, 1)``.
    keys : torch.Tensor
        int64 ``[K]``.

    Returns
    -------
    torch.Tensor
        ``x`` with entry ``i`` equal, bit for bit, to what the module gives for ``x[i]``.
        Element-wise masks only (``channelwise=False``). On a CPU with the kernels of
        :mod:`qfl.engine.kernels` loaded, the float32 masks come from a compiled kernel.

    Examples
    --------
    >>> x, keys = torch.ones(2, 3, 4), torch.tensor([5, 6])
    >>> m = KeyedDropout(0.5).train()
    >>> m.key = keys[1]
    >>> torch.equal(keyed_dropout(x, 0.5, keys)[1], m(x[1]))
    True
    """
    if p == 0.0:
        return x
    scale = 1.0 / (1.0 - p)
    if x.dtype == torch.float32 and x.device.type == "cpu" and kernels.ready():
        n = math.prod(x.shape[1:])
        return x * kernels.keyed_keep(keys.cpu(), n, p, scale).view(x.shape)
    keep = uniform(keys, tuple(x.shape[1:]), dtype=x.dtype) >= p
    return x * keep.to(x.dtype) * scale


class KeyedDropout(nn.Module):
    """Dropout whose mask is a pure function of the buffer ``key``.

    Parameters
    ----------
    p : float
        Probability of zeroing an element (or a channel), in ``[0, 1)``.
    channelwise : bool
        ``False``: element-wise like ``nn.Dropout``; ``True``: whole channels (dimension 1
        of a batched input) like ``nn.Dropout1d/2d/3d``.

    Notes
    -----
    Kept elements are scaled by ``1 / (1 - p)``, as in ``nn.Dropout``. In eval mode, or with
    ``p == 0``, the module is the identity. The trainers set ``key`` before every step (in
    the batched trainer through the ``buffers`` of ``functional_call``). The masks are not
    the ones ``nn.Dropout`` would draw, but they follow the same law.
    """

    key: torch.Tensor

    def __init__(self, p: float = 0.5, *, channelwise: bool = False) -> None:
        super().__init__()
        if not 0.0 <= float(p) < 1.0:
            raise ParameterError("p", p, "in [0, 1)")
        self.p = float(p)
        self.channelwise = channelwise
        self.register_buffer("key", torch.zeros((), dtype=torch.int64), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Drop with probability ``p`` in training mode; identity in eval mode."""
        if not self.training or self.p == 0.0:
            return x
        shape = tuple(x.shape[:2]) + (1,) * (x.ndim - 2) if self.channelwise else tuple(x.shape)
        keep = uniform(self.key, shape, dtype=x.dtype) >= self.p
        return x * keep.to(x.dtype) * (1.0 / (1.0 - self.p))

    def extra_repr(self) -> str:
        return f"p={self.p}, channelwise={self.channelwise}"


_CHANNELWISE = (nn.Dropout1d, nn.Dropout2d, nn.Dropout3d)


def replace_dropout(model: nn.Module) -> nn.Module:
    """Replace, in place, each ``nn.Dropout*`` submodule by a :class:`KeyedDropout`.

    Parameters
    ----------
    model : torch.nn.Module
        Typically a private copy made by a trainer.

    Returns
    -------
    torch.nn.Module
        ``model`` itself.

    Raises
    ------
    QflError
        For ``AlphaDropout`` / ``FeatureAlphaDropout``, which have no keyed version.
    """
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            full = f"{name}.{child_name}" if name else child_name
            if isinstance(child, nn.AlphaDropout | nn.FeatureAlphaDropout):
                raise QflError(
                    f"{full}: {type(child).__name__} has no keyed version; use nn.Dropout"
                )
            if isinstance(child, nn.Dropout | nn.Dropout1d | nn.Dropout2d | nn.Dropout3d):
                keyed = KeyedDropout(child.p, channelwise=isinstance(child, _CHANNELWISE))
                keyed.train(child.training)
                setattr(module, child_name, keyed)
    return model


def dropout_linear(
    x: torch.Tensor,
    p: float,
    keys: torch.Tensor | None,
    weight: torch.Tensor,
    bias: torch.Tensor,
    *,
    training: bool = True,
) -> torch.Tensor:
    """Every client's ``dropout(p) -> linear`` (an exit head of the stacked routes).

    ``x [C, N, F]``, ``keys [C]`` (the clients' dropout keys; ``None`` or ``training=False``:
    no dropout), ``weight [C, out, F]``, ``bias [C, out]``; returns ``[C, N, out]``.
    """
    if training and keys is not None:
        x = keyed_dropout(x, p, keys)
    return torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))


def keyed_dropout_names(model: nn.Module) -> tuple[str, ...]:
    """Names of the :class:`KeyedDropout` submodules, in ``named_modules`` order."""
    return tuple(n for n, m in model.named_modules() if isinstance(m, KeyedDropout))
