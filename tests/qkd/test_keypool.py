"""Key accounting: conservation, no reuse, capacity, expiry, reproducible IDs."""

from __future__ import annotations

import uuid

import numpy as np
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from qkd.errors import ParameterError, QflError
from qkd.keypool import InsufficientKeyError, KeyMaterial, KeyPool, KeySlice


class KeyPoolMachine(RuleBasedStateMachine):
    """Random sequences of add / take / expire against a simple model of the pool."""

    def __init__(self) -> None:
        super().__init__()
        self.pool = KeyPool(500, seed=7, ttl=10.0)
        self.now = 0.0
        self.block_bits: dict[str, np.ndarray | None] = {}
        self.handed_out: set[tuple[str, int]] = set()
        self.taken_total = 0

    @rule(n=st.integers(0, 300), with_bits=st.booleans(), dt=st.floats(0, 4))
    def add(self, n: int, with_bits: bool, dt: float) -> None:
        self.now += dt
        level = self.pool.level
        if with_bits:
            bits = np.random.default_rng(n).integers(0, 2, n, dtype=np.uint8)
            key_id = self.pool.add(bits, time=self.now)
        else:
            bits = None
            key_id = self.pool.add(n, time=self.now)
        stored = min(n, 500 - level)
        assert self.pool.level == level + stored
        assert (key_id is None) == (stored == 0)
        if key_id is not None:
            assert key_id not in self.block_bits
            self.block_bits[key_id] = None if bits is None else bits[:stored]

    @precondition(lambda self: self.pool.level > 0)
    @rule(data=st.data())
    def take(self, data: st.DataObject) -> None:
        n = data.draw(st.integers(0, self.pool.level))
        km = self.pool.take(n)
        assert km.n_bits == n
        self.taken_total += n
        for s in km.slices:
            assert s.length > 0
            for j in range(s.offset, s.offset + s.length):
                assert (s.key_id, j) not in self.handed_out  # never handed out twice
                self.handed_out.add((s.key_id, j))
        sources = [self.block_bits[s.key_id] for s in km.slices]
        if any(src is None for src in sources):
            assert km.bits is None
        else:
            expected = [
                src[s.offset : s.offset + s.length]
                for s, src in zip(km.slices, sources, strict=True)
                if src is not None
            ]
            assert km.bits is not None
            np.testing.assert_array_equal(
                km.bits, np.concatenate(expected) if expected else np.zeros(0)
            )

    @rule(extra=st.integers(1, 100))
    def take_too_much(self, extra: int) -> None:
        level = self.pool.level
        with pytest.raises(InsufficientKeyError, match="take: requested"):
            self.pool.take(level + extra)
        assert self.pool.level == level

    @rule(dt=st.floats(0, 15))
    def expire(self, dt: float) -> None:
        self.now += dt
        level = self.pool.level
        dropped = self.pool.expire(self.now)
        assert self.pool.level == level - dropped

    @invariant()
    def conservation(self) -> None:
        p = self.pool
        assert p.generated == p.taken + p.level + p.discarded + p.expired
        assert p.taken == self.taken_total

    @invariant()
    def bounded(self) -> None:
        assert 0 <= self.pool.level <= self.pool.capacity


TestKeyPoolMachine = KeyPoolMachine.TestCase
TestKeyPoolMachine.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)


def test_fifo_splitting_and_slices() -> None:
    pool = KeyPool(10_000, seed=1)
    a = pool.add(np.ones(100, dtype=np.uint8))
    b = pool.add(np.zeros(50, dtype=np.uint8))
    first = pool.take(60)
    assert first.slices == (KeySlice(a, 0, 60),)
    second = pool.take(70)
    assert second.slices == (KeySlice(a, 60, 40), KeySlice(b, 0, 30))
    assert second.bits is not None
    assert second.bits.tolist() == [1] * 40 + [0] * 30
    assert second.key_ids == (a, b)
    assert pool.key_ids == (b,)
    assert pool.level == 20
    with pytest.raises(ValueError, match="read-only"):
        second.bits[0] = 0


def test_capacity_discards_the_excess() -> None:
    pool = KeyPool(100, seed=2)
    pool.add(80)
    assert pool.add(50) is not None
    assert pool.add(10) is None  # full
    assert (pool.level, pool.generated, pool.discarded) == (100, 140, 40)
    assert pool.take(100).bits is None  # fluid blocks carry no bits


def test_ids_are_reproducible_uuids() -> None:
    def ids(seed: int) -> list[str | None]:
        pool = KeyPool(1000, seed=seed)
        return [pool.add(10) for _ in range(5)]

    first = ids(3)
    assert first == ids(3)
    assert first != ids(4)
    assert len(set(first)) == 5
    for key_id in first:
        assert key_id is not None
        assert uuid.UUID(key_id).version == 4


def test_expiry_drops_old_blocks_including_partly_used_ones() -> None:
    pool = KeyPool(1000, seed=4, ttl=5.0)
    pool.add(100, time=0.0)
    pool.add(100, time=3.0)
    pool.take(30)
    assert pool.expire(4.9) == 0
    assert pool.expire(5.0) == 70  # the rest of the first block
    assert pool.expire(8.0) == 100
    assert (pool.level, pool.expired, pool.taken) == (0, 170, 30)


def test_no_ttl_means_no_expiry() -> None:
    pool = KeyPool(1000, seed=5)
    pool.add(100)
    assert pool.expire(1e12) == 0
    assert pool.level == 100


def test_take_zero_and_insufficient_key_message() -> None:
    pool = KeyPool(100, seed=6)
    pool.add(np.ones(10, dtype=np.uint8))
    empty = pool.take(0)
    assert empty == KeyMaterial((), empty.bits) and empty.n_bits == 0
    with pytest.raises(QflError, match="requested 11 key bits but only 10 are stored"):
        pool.take(11)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: KeyPool(-1, seed=0), "capacity_bits: must be an integer >= 0, got -1"),
        (lambda: KeyPool(10, seed=0, ttl=0), "ttl: must be > 0 and finite, or None, got 0"),
        (lambda: KeyPool(10, seed=0).add(-3), "bits: must be a bit array or a count >= 0"),
        (lambda: KeyPool(10, seed=0).add(np.array([0, 2])), "bits: must be 0/1 bits"),
        (lambda: KeyPool(10, seed=0).add(np.zeros((2, 2))), "bits: must be 1-D"),
        (lambda: KeyPool(10, seed=0, ttl=1.0).add(5), "time: must be given when the pool"),
        (lambda: KeyPool(10, seed=0).take(-1), "n_bits: must be an integer >= 0, got -1"),
        (lambda: KeyPool(10, seed=0).take(1.5), "n_bits: must be an integer >= 0, got 1.5"),
        (lambda: KeyPool(10, seed=0).expire(float("nan")), "now: must be a finite number"),
    ],
)
def test_rejects_bad_input(call, match: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ParameterError, match=match):
        call()
