"""Pure key accounting: a store of key blocks with IDs, capacity, expiry and no reuse.

A :class:`KeyPool` holds blocks of secret key bits in the order they were produced, each
with a UUID in the spirit of the key containers of ETSI GS QKD 014 (``key_ID``). Taking key
hands out the oldest unused bits, as a :class:`KeyMaterial` that lists the
``(key_id, offset, length)`` slices it came from; a partly used block keeps its remainder
for the next request. Every bit is handed out at most once.

The pool is plain bookkeeping with no notion of waiting: asking for more than is stored
raises :class:`InsufficientKeyError` (the SimPy layer waits for the level instead).
Blocks may carry real bits (the bit-exact mode) or only a length (fluid accounting), in
which case the key material carries no bits either.

Accounting identity, at every moment::

    generated == taken + level + discarded + expired

``generated`` counts every bit offered to :meth:`KeyPool.add`; ``discarded`` the bits that
did not fit under the capacity; ``expired`` the bits dropped by :meth:`KeyPool.expire`.
"""

from __future__ import annotations

import math
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

from qkd.errors import ParameterError, QflError

__all__ = ["InsufficientKeyError", "KeyMaterial", "KeyPool", "KeySlice"]

Seed = int | np.random.SeedSequence | np.random.Generator


class InsufficientKeyError(QflError):
    """More key bits were requested than the pool holds.

    Attributes
    ----------
    requested, available : int
        The request and the pool's level at the time.
    """

    def __init__(self, requested: int, available: int) -> None:
        self.requested = requested
        self.available = available
        super().__init__(
            f"take: requested {requested} key bits but only {available} are stored; "
            "wait until the pool holds enough (the network layer's get() does) or ask for less"
        )


class KeySlice(NamedTuple):
    """Bits ``[offset, offset + length)`` of the key block ``key_id``."""

    key_id: str
    offset: int
    length: int


@dataclass(frozen=True)
class KeyMaterial:
    """Key bits handed out by :meth:`KeyPool.take`.

    Attributes
    ----------
    slices : tuple of KeySlice
        Where the bits came from, in order.
    bits : numpy.ndarray of uint8 or None
        The key bits (read-only), concatenated in slice order; ``None`` when any source
        block carried only a length (fluid accounting).
    """

    slices: tuple[KeySlice, ...]
    bits: NDArray[np.uint8] | None = field(default=None, repr=False)

    @property
    def n_bits(self) -> int:
        """Total number of bits."""
        return sum(s.length for s in self.slices)

    @property
    def key_ids(self) -> tuple[str, ...]:
        """IDs of the blocks used, in order, without repeats."""
        return tuple(dict.fromkeys(s.key_id for s in self.slices))


@dataclass(eq=False)
class _Block:
    key_id: str
    length: int
    bits: NDArray[np.uint8] | None
    time: float | None
    used: int = 0  # bits [0, used) have been handed out

    @property
    def remaining(self) -> int:
        return self.length - self.used


class KeyPool:
    """A bounded store of key blocks with IDs, FIFO hand-out and optional expiry.

    Parameters
    ----------
    capacity_bits : int
        Most bits the pool stores (``>= 0``); bits added beyond it are discarded and
        counted in :attr:`discarded`.
    seed : int, SeedSequence or Generator
        Source of the block UUIDs (version-4 layout), so that runs are reproducible.
    ttl : float, optional
        Lifetime of a block (``> 0``, same unit as the ``time`` given to :meth:`add`);
        :meth:`expire` drops blocks whose ``time + ttl <= now``. ``None``: keys never
        expire.

    Examples
    --------
    >>> pool = KeyPool(1000, seed=1)
    >>> kid = pool.add(np.ones(600, dtype=np.uint8))
    >>> pool.add(600) is not None  # only 400 of these 600 bits fit
    True
    >>> pool.level, pool.discarded
    (1000, 200)
    >>> km = pool.take(700)
    >>> [(s.key_id == kid, s.offset, s.length) for s in km.slices]
    [(True, 0, 600), (False, 0, 100)]
    >>> km.bits is None  # the second block carried no bits
    True
    >>> pool.level, pool.taken
    (300, 700)
    """

    def __init__(self, capacity_bits: int, *, seed: Seed, ttl: float | None = None) -> None:
        if not _is_int(capacity_bits) or capacity_bits < 0:
            raise ParameterError("capacity_bits", capacity_bits, "an integer >= 0")
        if ttl is not None and not (
            isinstance(ttl, int | float)
            and not isinstance(ttl, bool)
            and math.isfinite(ttl)
            and ttl > 0
        ):
            raise ParameterError("ttl", ttl, "> 0 and finite, or None")
        self._capacity = int(capacity_bits)
        self._ttl = ttl
        self._rng = np.random.default_rng(seed)
        self._blocks: deque[_Block] = deque()
        self._level = 0
        self._generated = 0
        self._taken = 0
        self._discarded = 0
        self._expired = 0

    # -- state -------------------------------------------------------------------------

    @property
    def capacity(self) -> int:
        """Most bits the pool stores."""
        return self._capacity

    @property
    def ttl(self) -> float | None:
        """Lifetime of a block, or ``None``."""
        return self._ttl

    @property
    def level(self) -> int:
        """Bits stored and not yet handed out."""
        return self._level

    @property
    def generated(self) -> int:
        """All bits offered to :meth:`add`."""
        return self._generated

    @property
    def taken(self) -> int:
        """Bits handed out by :meth:`take`."""
        return self._taken

    @property
    def discarded(self) -> int:
        """Bits that did not fit under the capacity."""
        return self._discarded

    @property
    def expired(self) -> int:
        """Bits dropped by :meth:`expire`."""
        return self._expired

    @property
    def key_ids(self) -> tuple[str, ...]:
        """IDs of the blocks that still hold unused bits, oldest first."""
        return tuple(b.key_id for b in self._blocks)

    def __repr__(self) -> str:
        return (
            f"KeyPool(level={self._level}, capacity={self._capacity}, "
            f"blocks={len(self._blocks)}, ttl={self._ttl})"
        )

    # -- operations --------------------------------------------------------------------

    def _new_id(self) -> str:
        return str(uuid.UUID(bytes=self._rng.bytes(16), version=4))

    def add(self, bits: ArrayLike | int, *, time: float | None = None) -> str | None:
        """Store a new block of key, up to the capacity.

        Parameters
        ----------
        bits : array_like of 0/1, or int
            The key bits (1-D), or just their number (fluid accounting, ``>= 0``).
        time : float, optional
            When the block was produced; required when the pool has a ``ttl``.

        Returns
        -------
        str or None
            The new block's ID, or ``None`` when nothing was stored (no bits, or the pool
            was full). Bits beyond the free space are discarded (the block keeps its first
            bits) and counted in :attr:`discarded`.
        """
        if _is_int(bits):
            n = int(bits)  # type: ignore[arg-type]
            if n < 0:
                raise ParameterError("bits", n, "a bit array or a count >= 0")
            arr = None
        else:
            arr = np.asarray(bits)
            if arr.ndim != 1:
                raise ParameterError("bits", f"array of shape {arr.shape}", "1-D")
            if arr.size and (arr.dtype.kind not in "biu" or arr.min() < 0 or arr.max() > 1):
                raise ParameterError("bits", f"values {np.unique(arr)[:4]}", "0/1 bits")
            n = arr.size
        if time is not None and not (
            isinstance(time, int | float) and not isinstance(time, bool) and math.isfinite(time)
        ):
            raise ParameterError("time", time, "a finite number or None")
        if self._ttl is not None and time is None:
            raise ParameterError("time", time, "given when the pool has a ttl")
        stored = min(n, self._capacity - self._level)
        self._generated += n
        self._discarded += n - stored
        if stored == 0:
            return None
        block_bits = None
        if arr is not None:
            block_bits = arr[:stored].astype(np.uint8)
            block_bits.setflags(write=False)
        block = _Block(self._new_id(), stored, block_bits, None if time is None else float(time))
        self._blocks.append(block)
        self._level += stored
        return block.key_id

    def take(self, n_bits: int) -> KeyMaterial:
        """Hand out the ``n_bits`` oldest unused bits.

        Raises
        ------
        InsufficientKeyError
            If ``n_bits`` exceeds :attr:`level`; the pool is left unchanged.
        """
        if not _is_int(n_bits) or n_bits < 0:
            raise ParameterError("n_bits", n_bits, "an integer >= 0")
        n_bits = int(n_bits)
        if n_bits > self._level:
            raise InsufficientKeyError(n_bits, self._level)
        slices: list[KeySlice] = []
        parts: list[NDArray[np.uint8]] = []
        with_bits = True
        need = n_bits
        while need:
            block = self._blocks[0]
            length = min(need, block.remaining)
            slices.append(KeySlice(block.key_id, block.used, length))
            if block.bits is None:
                with_bits = False
            else:
                parts.append(block.bits[block.used : block.used + length])
            block.used += length
            need -= length
            if block.remaining == 0:
                self._blocks.popleft()
        self._level -= n_bits
        self._taken += n_bits
        bits: NDArray[np.uint8] | None = None
        if with_bits:
            bits = np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint8)
            bits.setflags(write=False)
        return KeyMaterial(tuple(slices), bits)

    def expire(self, now: float) -> int:
        """Drop the unused bits of every block with ``time + ttl <= now``.

        Blocks added without a time never expire; with no ``ttl`` nothing does.

        Returns
        -------
        int
            Number of bits dropped (also added to :attr:`expired`).
        """
        if not (isinstance(now, int | float) and not isinstance(now, bool) and math.isfinite(now)):
            raise ParameterError("now", now, "a finite number")
        if self._ttl is None:
            return 0
        dropped = 0
        kept: deque[_Block] = deque()
        for block in self._blocks:
            if block.time is not None and block.time + self._ttl <= now:
                dropped += block.remaining
            else:
                kept.append(block)
        self._blocks = kept
        self._level -= dropped
        self._expired += dropped
        return dropped


def _is_int(value: object) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)
