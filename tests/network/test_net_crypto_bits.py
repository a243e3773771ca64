"""Bit-exact mode: checks on the key bits and nonces that the encryptions actually used.

Every link logs its encryptions (:attr:`network.link.Link.encryptions`: the key bits and the
nonce of each). :func:`check_bits` reads those logs, not the planning state, and asserts that
no (AES key, nonce) pair repeats, no key bit serves in two keys or pads, no pad encrypts two
messages, no AES key protects more than ``rekey_bytes`` bytes, and the key bits that the
transfer records charge on each link are the bits its encryptions used. The last tests plant
each fault (nonce reuse, a cipher that never re-keys, one-time-pad reuse) and check that the
checker reports it.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections import defaultdict
from collections.abc import Iterator

import numpy as np
import pytest
import simpy
from hypothesis import given, settings
from hypothesis import strategies as st

import network.cipher as cipher_mod
from network import AesGcm, LinkSpec, NodeSpec, OneTimePad, QKDNetwork, TopologySpec
from network.cipher import (
    GCM_MAX_INVOCATION_BYTES,
    GCM_MAX_KEY_BYTES,
    AesSession,
    BitStore,
    CipherPolicy,
    Encryption,
    Hop,
    random_key_source,
)
from qkd.errors import ParameterError
from qkd.keypool import KeyMaterial, KeySlice

# -- the checker -------------------------------------------------------------------------


def _bits(key: tuple[KeySlice, ...]) -> Iterator[tuple[str, int, int]]:
    for s in key:
        yield s.key_id, s.offset, s.offset + s.length


def violations(log: list[Encryption], charged: float, rekey_bytes: int | None) -> list[str]:
    """What is wrong with one link's encryptions, given the key bits its records charge."""
    out: list[str] = []
    by_key: dict[tuple[KeySlice, ...], list[Encryption]] = defaultdict(list)
    for enc in log:
        by_key[enc.key].append(enc)
    spans = sorted(span for key in by_key for span in _bits(key))
    for (id1, _, end1), (id2, start2, _) in itertools.pairwise(spans):
        if id1 == id2 and start2 < end1:
            out.append(f"key bit {id1}[{start2}] serves in two keys or pads")
    for key, uses in by_key.items():
        if uses[0].nonce == b"" and len(uses) > 1:
            out.append(
                f"one-time pad {key[0].key_id}[{key[0].offset}] encrypts {len(uses)} messages"
            )
        nonces = [u.nonce for u in uses if u.nonce]
        if len(set(nonces)) < len(nonces):
            out.append(f"(key, nonce) repeats under key {key[0].key_id}[{key[0].offset}]")
        n_bytes = sum(u.n_bytes for u in uses)
        if nonces and rekey_bytes is not None and n_bytes > rekey_bytes:
            out.append(f"{n_bytes} bytes under one key > rekey_bytes={rekey_bytes}")
    used = sum(end - start for key in by_key for _, start, end in _bits(key))
    if used != charged:
        out.append(f"records charge {charged:g} key bits, the encryptions used {used}")
    return out


def check_bits(net: QKDNetwork) -> None:
    """Raise AssertionError listing every violation on every link of a bit-exact network."""
    charged: dict[str, float] = defaultdict(float)
    for rec in net.records:
        for name, bits in rec.key_bits:
            charged[name] += bits
    rekey = getattr(net.cipher, "rekey_bytes", None)
    problems = [
        f"link {link.name}: {v}"
        for link in net.links.values()
        for v in violations(link.encryptions, charged[link.name], rekey)
    ]
    assert not problems, "; ".join(problems)


# -- a network with concurrent transfers ---------------------------------------------------


def _ring() -> TopologySpec:
    """A ring A-B-C-D-E with a chord B-E; modest key rates, so transfers wait for key."""
    nodes = tuple(NodeSpec(n, role="relay") for n in "ABCDE")
    pairs = ("AB", "BC", "CD", "DE", "EA", "BE")
    links = tuple(
        LinkSpec(a, b, 10.0, skr_bps=4e3, capacity_bits=2e4, latency_s=0.002, bandwidth_bps=1e6)
        for a, b in pairs
    )
    return TopologySpec(nodes, links)


Job = tuple[str, str, int, float]  # src, dst, n_bytes, start time


def _jobs(seed: int, n: int = 24) -> list[Job]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        src, dst = rng.choice(list("ABCDE"), size=2, replace=False)
        out.append((str(src), str(dst), int(rng.integers(200, 6000)), float(rng.uniform(0, 2))))
    return out


def run_jobs(cipher: CipherPolicy, jobs: list[Job], seed: int = 0) -> QKDNetwork:
    """Start every job at its time on a bit-exact ring; run to the end."""
    env = simpy.Environment()
    net = QKDNetwork(env, _ring(), cipher, seed=seed, bit_exact=True, key_source="random")

    def start(job: Job) -> Iterator[simpy.Event]:
        yield env.timeout(job[3])
        net.transfer(job[0], job[1], job[2])

    for job in jobs:
        env.process(start(job))
    env.run()
    assert len(net.records) == len(jobs)
    for rec in net.records:
        assert rec.status == "delivered" and rec.verified is True, rec
        assert rec.discarded_bits == 0
    return net


def _out_of_order(net: QKDNetwork) -> bool:
    """Did some link use its AES keys out of the order in which they were planned?"""
    for link in net.links.values():
        index = {km.slices: i for i, (_, km) in link.session.keys.items()}
        order = [index[e.key] for e in link.encryptions]
        if any(b < a for a, b in itertools.pairwise(order)):
            return True
    return False


CIPHERS = [AesGcm(rekey_bytes=3000), AesGcm(rekey_bytes=2048, invocation_bytes=700), OneTimePad()]


@pytest.mark.parametrize("cipher", CIPHERS, ids=["aes", "aes-split", "otp"])
def test_concurrent_transfers_use_each_key_bit_rightly(cipher) -> None:
    net = run_jobs(cipher, _jobs(seed=1))
    check_bits(net)
    if isinstance(cipher, AesGcm):
        assert _out_of_order(net), "the scenario should send messages out of planning order"
        assert max(e.n_bytes for lk in net.links.values() for e in lk.encryptions) <= (
            cipher.invocation_bytes if cipher.invocation_bytes < 3000 else 3000
        )
    # every key bit the stores handed out was used by some encryption
    drawn = sum(km.n_bits for lk in net.links.values() for km in lk.bits.issued)
    assert drawn == sum(rec.key_bits_total for rec in net.records)


@settings(max_examples=15, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 5000), min_size=2, max_size=10),
    data=st.data(),
    rekey=st.integers(64, 4000),
    step=st.integers(16, 4000),
)
def test_property_random_sizes_and_interleavings(sizes, data, rekey, step) -> None:
    ends = st.sampled_from(list("ABCDE"))
    jobs = []
    for n in sizes:
        src = data.draw(ends)
        dst = data.draw(ends.filter(lambda x, s=src: x != s))
        jobs.append((src, dst, n, data.draw(st.floats(0, 0.5))))
    check_bits(run_jobs(AesGcm(rekey_bytes=rekey, invocation_bytes=step), jobs))


# -- the original fault, in isolation ------------------------------------------------------


def test_messages_sent_out_of_order_use_their_planned_keys() -> None:
    """Three messages planned in turn on one link, sent in the reverse order."""
    aes = AesGcm(rekey_bytes=1000)
    state = aes.init()
    plans = []
    for n in (600, 700, 500):  # key 0: 600 + 400; key 1: 300 + 500
        plan = aes.plan(state, n, 0.0)
        plans.append((plan, bytes(range(n % 256)) * (n // 256) + bytes(n % 256)))
        state = plan.state
    store = BitStore(random_key_source(1), seed=1)
    session, log = AesSession(), []
    hop = Hop(0, b"A-B", lambda ct: ct, log)
    for plan, data in reversed(plans):
        assert aes.carry(session, store, plan, data, hop=hop) == data
    assert not violations(log, sum(p.bits for p, _ in plans), 1000)
    assert sum(km.n_bits for km in store.issued) == 512  # the two keys charged, no more


# -- limits ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kw",
    [
        {"rekey_bytes": 0},
        {"rekey_bytes": 1.5},
        {"rekey_bytes": math.inf},
        {"rekey_bytes": GCM_MAX_KEY_BYTES + 1},
        {"invocation_bytes": 0},
        {"invocation_bytes": GCM_MAX_INVOCATION_BYTES + 1},
    ],
)
def test_aes_limits_are_checked(kw) -> None:
    name = next(iter(kw))
    with pytest.raises(ParameterError, match=rf"aes\.{name}: must be an integer in \[1, \d+\]"):
        AesGcm(**kw)


def test_aes_limits_at_the_edge() -> None:
    assert GCM_MAX_INVOCATION_BYTES * 8 == 2**39 - 256
    assert AesGcm(rekey_bytes=GCM_MAX_KEY_BYTES).rekey_bytes == 2**32 * (2**36 - 32)
    huge = AesGcm(rekey_bytes=None).plan(AesGcm().init(), 3 * GCM_MAX_INVOCATION_BYTES, 0.0)
    assert [s.nonce for s in huge.segments] == [0] and huge.bits == 256
    assert huge.state.nonces == 3  # one message, three GCM invocations


def test_rekey_after_max_invocations(monkeypatch) -> None:
    monkeypatch.setattr(cipher_mod, "GCM_MAX_INVOCATIONS", 3)
    aes = AesGcm(rekey_bytes=10**6, invocation_bytes=10)
    plan = aes.plan(aes.init(), 45, 0.0)  # five invocations: three on key 0, two on key 1
    assert [(s.n_bytes, s.key, s.nonce) for s in plan.segments] == [(30, 0, 0), (15, 1, 0)]
    assert plan.bits == 512
    again = aes.plan(plan.state, 5, 0.0)
    assert [(s.n_bytes, s.key, s.nonce) for s in again.segments] == [(5, 1, 2)]
    assert again.bits == 0


def test_a_chunk_crossing_a_link_twice_plans_it_again() -> None:
    """A-B-C is cut while the chunk crosses B-C; it goes back over A-B (B to A) and round by
    D: the second crossing of A-B must not reuse the first one's key bytes."""
    env = simpy.Environment()
    nodes = tuple(NodeSpec(n, role="relay") for n in "ABCD")
    kw = dict(skr_bps=1e4, capacity_bits=1e5, initial_bits=1e5, bandwidth_bps=1e4)
    links = (
        LinkSpec("A", "B", 1.0, latency_s=0.001, **kw),
        LinkSpec("B", "C", 1.0, latency_s=0.001, **kw),
        LinkSpec("A", "D", 1.0, latency_s=0.01, **kw),
        LinkSpec("D", "C", 1.0, latency_s=0.01, **kw),
    )
    net = QKDNetwork(
        env, TopologySpec(nodes, links), AesGcm(rekey_bytes=1000), bit_exact=True,
        key_source="random",
    )  # fmt: skip
    proc = net.transfer("A", "C", 1000)

    def cut() -> Iterator[simpy.Event]:
        yield env.timeout(1.0)  # A-B is crossed at 0.801 s; B-C would end at 1.602 s
        net.cut_link("B", "C")

    env.process(cut())
    rec = env.run(proc)
    assert rec.status == "delivered" and rec.path == ("A", "B", "A", "D", "C")
    check_bits(net)
    assert len(net.link("A", "B").session.keys) == 2


# -- planted faults: each must be caught -----------------------------------------------------


def _prefix(km: KeyMaterial, n: int) -> KeyMaterial:
    slices, left = [], n
    for s in km.slices:
        take = min(left, s.length)
        slices.append(KeySlice(s.key_id, s.offset, take))
        left -= take
        if not left:
            break
    return KeyMaterial(tuple(slices), None if km.bits is None else km.bits[:n])


def _plant_pad_reuse(monkeypatch) -> None:
    """The store's pad pointer never advances: every message gets its first bits again."""
    take, first = BitStore.take, {}

    def reuse(self, n_bits):
        got = first.get(id(self))
        if got is None or got[1].n_bits < n_bits:
            got = first[id(self)] = take(self, max(n_bits, 1 << 16))
        return got[0][:n_bits], _prefix(got[1], n_bits)

    monkeypatch.setattr(BitStore, "take", reuse)


def _plant_nonce_reuse(monkeypatch) -> None:
    monkeypatch.setattr(cipher_mod, "gcm_nonce", lambda direction, counter: bytes(12))


def _plant_stale_key(monkeypatch) -> None:
    """The session encrypts everything under the link's first key (never re-keys)."""
    key = AesSession.key
    monkeypatch.setattr(AesSession, "key", lambda self, index, store: key(self, 0, store))


def _plant_no_rekey_plan(monkeypatch) -> None:
    """The policy plans as if there were no byte limit (and charges accordingly)."""
    plan = AesGcm.plan

    def lax(self, state, n, now):
        return plan(dataclasses.replace(self, rekey_bytes=None), state, n, now)

    monkeypatch.setattr(AesGcm, "plan", lax)


def _plant_send_time_keys(monkeypatch) -> None:
    """The original fault: the link's live key is replaced when a message that planned a new
    key is *sent*, so messages sent out of planning order use other keys than planned."""

    def carry(self, session, store, plan, data, *, hop):
        out, pos = bytearray(), 0
        for seg in plan.segments:
            if seg.new_key or -1 not in session.keys:
                bits, km = store.take(256)
                session.keys[-1] = (cipher_mod.key_bytes(bits), km)
                session.counter = 0
            key, km = session.keys[-1]
            session.counter += 1
            nonce = cipher_mod.gcm_nonce(hop.direction, session.counter)
            piece = data[pos : pos + seg.n_bytes]
            hop.record(km, nonce, len(piece))
            out += cipher_mod.aes_decrypt(
                key, nonce, cipher_mod.aes_encrypt(key, nonce, piece, hop.aad), hop.aad
            )
            pos += seg.n_bytes
        return bytes(out)

    monkeypatch.setattr(AesGcm, "carry", carry)


@pytest.mark.parametrize(
    ("plant", "cipher", "caught"),
    [
        (_plant_send_time_keys, AesGcm(rekey_bytes=3000), r"bytes under one key > rekey|charge"),
        (_plant_nonce_reuse, AesGcm(rekey_bytes=3000), r"\(key, nonce\) repeats"),
        (_plant_stale_key, AesGcm(rekey_bytes=3000), r"bytes under one key > rekey_bytes=3000"),
        (_plant_stale_key, AesGcm(rekey_bytes=3000), r"records charge \d+ key bits, the enc"),
        (_plant_no_rekey_plan, AesGcm(rekey_bytes=3000), r"bytes under one key > rekey_bytes"),
        (_plant_pad_reuse, OneTimePad(), r"serves in two keys or pads"),
    ],
    ids=[
        "send-time-keys",
        "nonce-reuse",
        "stale-key-bytes",
        "stale-key-charge",
        "never-rekey",
        "pad-reuse",
    ],
)
def test_planted_fault_is_caught(monkeypatch, plant, cipher, caught) -> None:
    plant(monkeypatch)
    net = run_jobs(cipher, _jobs(seed=1))  # the payloads still arrive intact
    with pytest.raises(AssertionError, match=caught):
        check_bits(net)
