"""Run-wide cryptographic invariants of bit-exact mode, recorded at the primitives.

A bit-exact run with traffic in both directions over multi-hop paths (a five-node line with a
chord) records every AES-GCM encryption as it is made (the key *bytes*, the nonce, the bytes
protected, the link and the end that sent it), every one-time-pad encryption (payload, pad and
ciphertext) and every key-bit slice a link's store hands out. The invariants, over the whole
run and across links:

1. no (AES key, nonce) pair repeats;
2. the two ends of a link do not depend on a shared invocation counter: under every key, the
   nonces each end would use if it counted its own invocations from zero (as two separate
   machines must: SP 800-38D, 8.2.1, gives each encrypting device its own fixed field) are
   disjoint from the other end's;
3. no key bit is handed out twice (a pad bit is used once; a key bit is a pad or an AES key,
   never both), and no two pads carry the same bits;
4. every one-time-pad ciphertext is its payload XOR its pad;
5. no AES key protects more than ``rekey_bytes`` bytes.

Invariant 2 is the one that catches a nonce without its direction byte: the simulation plans
one counter per link for both directions, so the nonces of the run itself never repeat even
then (checked below), but two real ends counting on their own would reuse nonces under the
keys they share. The last tests plant six faults and check that each is reported.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import pytest
import simpy

import network.cipher as cipher_mod
import network.qkdnetwork as qkdnetwork
from network import AesGcm, LinkSpec, NodeSpec, OneTimePad, QKDNetwork, TopologySpec
from network.cipher import AesSession, BitStore, CipherPolicy, Hop

# -- the recorder --------------------------------------------------------------------------


@dataclass(frozen=True)
class AesUse:
    """One AES-GCM encryption: where, by which end, under which key bytes and nonce."""

    link: str
    direction: int
    key: bytes
    nonce: bytes
    n_bytes: int


@dataclass
class Recorder:
    """Everything the primitives did in one run (filled by :meth:`install`'s wrappers)."""

    aes: list[AesUse] = field(default_factory=list)
    otp_bad: list[str] = field(default_factory=list)  # pads that did not encrypt
    otp_count: int = 0
    pad_heads: list[bytes] = field(default_factory=list)  # each pad's first 128 bits
    takes: list[tuple[str, str, int, int]] = field(default_factory=list)  # link, id, lo, hi
    hop: list[Hop] = field(default_factory=list)  # the hop being carried (a stack)

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Wrap (whatever is installed now of) the carry methods, the two encryptions and
        the key store, so that the run records what they really did."""
        for cls in (AesGcm, OneTimePad):
            monkeypatch.setattr(cls, "carry", self._carry(cls.carry))
        aes_encrypt, otp_encrypt, take = (
            cipher_mod.aes_encrypt,
            cipher_mod.otp_encrypt,
            BitStore.take,
        )

        def aes(key: bytes, nonce: bytes, payload: bytes, aad: bytes = b"") -> bytes:
            hop = self.hop[-1]
            self.aes.append(AesUse(aad.decode(), hop.direction, key, nonce, len(payload)))
            return aes_encrypt(key, nonce, payload, aad)

        def otp(payload: bytes, key_bits: np.ndarray, auth_bits: int = 256) -> bytes:
            sealed = otp_encrypt(payload, key_bits, auth_bits)
            n = len(payload)
            pad = np.packbits(key_bits[: 8 * n]).tobytes()
            want = bytes(a ^ b for a, b in zip(payload, pad, strict=True))
            self.otp_count += 1
            self.pad_heads.append(np.packbits(key_bits[:128]).tobytes())
            if sealed[:n] != want:
                self.otp_bad.append(f"{n}-byte message on {self.hop[-1].aad.decode()}")
            return sealed

        def store_take(store: BitStore, n_bits: int):  # type: ignore[no-untyped-def]
            bits, km = take(store, n_bits)
            for s in km.slices:
                self.takes.append((store.name, s.key_id, s.offset, s.offset + s.length))
            return bits, km

        monkeypatch.setattr(cipher_mod, "aes_encrypt", aes)
        monkeypatch.setattr(cipher_mod, "otp_encrypt", otp)
        monkeypatch.setattr(BitStore, "take", store_take)

    def _carry(self, carry: Callable[..., bytes]) -> Callable[..., bytes]:
        def wrapped(policy, session, store, plan, data, *, hop):  # type: ignore[no-untyped-def]
            self.hop.append(hop)
            try:
                return carry(policy, session, store, plan, data, hop=hop)
            finally:
                self.hop.pop()

        return wrapped

    def keys_by_both_ends(self) -> int:
        """How many AES keys served both directions of their link (the case that matters)."""
        ends: dict[tuple[str, bytes], set[int]] = defaultdict(set)
        for u in self.aes:
            ends[u.link, u.key].add(u.direction)
        return sum(len(d) == 2 for d in ends.values())


# -- the invariants ------------------------------------------------------------------------


def violations(rec: Recorder, rekey_bytes: int | None) -> list[str]:
    """Every breach of the five invariants in one recorded run."""
    out: list[str] = []
    # 1. (key, nonce) unique over the whole run, across links
    pairs = Counter((u.key, u.nonce) for u in rec.aes)
    repeated = sum(n - 1 for n in pairs.values() if n > 1)
    if repeated:
        out.append(f"(key, nonce) repeats: {repeated} encryptions reuse a pair")
    # 2. each end's own count of invocations under a key gives nonces the other end never uses
    count: Counter[tuple[bytes, str, int]] = Counter((u.key, u.link, u.direction) for u in rec.aes)
    by_key: dict[bytes, dict[tuple[str, int], int]] = defaultdict(dict)
    for (key, link, direction), n in count.items():
        by_key[key][link, direction] = n
    shared = 0
    for ends in by_key.values():
        spaces = [
            {cipher_mod.gcm_nonce(d, i) for i in range(n)} for (_, d), n in sorted(ends.items())
        ]
        shared += sum(bool(a & b) for a, b in itertools.combinations(spaces, 2))
    if shared:
        out.append(f"the two ends' nonce spaces overlap under {shared} keys")
    # 3. no key bit handed out twice, on any link
    spans: dict[tuple[str, str], list[tuple[int, int]]] = defaultdict(list)
    for link, key_id, lo, hi in rec.takes:
        spans[link, key_id].append((lo, hi))
    reused = 0
    for s in spans.values():
        s.sort()
        reused += sum(b[0] < a[1] for a, b in itertools.pairwise(s))
    if reused:
        out.append(f"key bits handed out twice ({reused} overlapping slices)")
    # ... nor the same bits twice under other IDs (two links fed the same key stream): no two
    # pads begin with the same 128 bits (by chance: probability 2**-128 per pair)
    same_pads = len(rec.pad_heads) - len(set(rec.pad_heads))
    if same_pads:
        out.append(f"{same_pads} one-time pads repeat another pad's bits")
    # 4. the pad encrypts
    if rec.otp_bad:
        out.append(f"one-time pad did not encrypt: {rec.otp_bad[0]} ({len(rec.otp_bad)} in all)")
    # 5. bytes per AES key
    per_key = Counter[bytes]()
    for u in rec.aes:
        per_key[u.key] += u.n_bytes
    over = [n for n in per_key.values() if rekey_bytes is not None and n > rekey_bytes]
    if over:
        out.append(
            f"{len(over)} AES keys protect more than rekey_bytes={rekey_bytes} (max {max(over)})"
        )
    return out


# -- the run ---------------------------------------------------------------------------------


def _topology() -> TopologySpec:
    """A line A-B-C-D-E with a chord B-D: paths of one to three hops."""
    nodes = tuple(NodeSpec(n, role="relay") for n in "ABCDE")
    links = tuple(
        LinkSpec(a, b, 10.0, skr_bps=4e3, capacity_bits=2e4, latency_s=0.002, bandwidth_bps=1e6)
        for a, b in ("AB", "BC", "CD", "DE", "BD")
    )
    return TopologySpec(nodes, links)


# each pair both ways: A-E crosses three links, A-C and C-E two, B-D one
PAIRS = [("A", "E"), ("E", "A"), ("A", "C"), ("C", "A"),
         ("C", "E"), ("E", "C"), ("B", "D"), ("D", "B")]  # fmt: skip


def bit_exact_run(
    cipher: CipherPolicy, monkeypatch: pytest.MonkeyPatch
) -> tuple[Recorder, QKDNetwork]:
    """Forty transfers (200-6,000 bytes, overlapping in time) over every pair both ways."""
    rec = Recorder()
    rec.install(monkeypatch)
    env = simpy.Environment()
    net = QKDNetwork(env, _topology(), cipher, seed=5, bit_exact=True, key_source="random")
    rng = np.random.default_rng(11)

    def start(src: str, dst: str, n: int, t: float) -> Iterator[simpy.Event]:
        yield env.timeout(t)
        net.transfer(src, dst, n)

    for i in range(40):
        src, dst = PAIRS[i % len(PAIRS)]
        env.process(start(src, dst, int(rng.integers(200, 6000)), float(rng.uniform(0, 3))))
    env.run()
    return rec, net


AES = [AesGcm(rekey_bytes=3000), AesGcm(rekey_bytes=2048, invocation_bytes=700)]


@pytest.mark.parametrize("cipher", [*AES, OneTimePad()], ids=["aes", "aes-split", "otp"])
def test_run_wide_invariants_hold(cipher: CipherPolicy, monkeypatch: pytest.MonkeyPatch) -> None:
    rec, net = bit_exact_run(cipher, monkeypatch)
    assert violations(rec, getattr(cipher, "rekey_bytes", None)) == []
    assert len(net.records) == 40
    assert all(r.status == "delivered" and r.verified is True for r in net.records)
    # the run exercised what the invariants are about
    hops = {len(r.path) - 1 for r in net.records}
    assert hops >= {1, 2, 3}, hops
    if isinstance(cipher, AesGcm):
        assert len({u.key for u in rec.aes}) > len(net.links)  # re-keyed on every link
        assert rec.keys_by_both_ends() >= 5  # keys that both ends encrypt under
        assert len({u.link for u in rec.aes}) == len(net.links)
    else:
        assert rec.otp_count >= 80 and rec.aes == []


# -- planted faults --------------------------------------------------------------------------


def _no_direction(mp: pytest.MonkeyPatch) -> None:
    """gcm_nonce drops the direction byte: both ends of a link count in one nonce space."""
    nonce = cipher_mod.gcm_nonce
    mp.setattr(cipher_mod, "gcm_nonce", lambda direction, counter: nonce(0, counter))


def _frozen_counter(mp: pytest.MonkeyPatch) -> None:
    """gcm_nonce ignores the invocation counter."""
    nonce = cipher_mod.gcm_nonce
    mp.setattr(cipher_mod, "gcm_nonce", lambda direction, counter: nonce(direction, 0))


def _under_counted_rekey(mp: pytest.MonkeyPatch) -> None:
    """The plan counts half of each message's bytes against the key's limit."""
    plan = AesGcm.plan

    def lax(self, state, n, now):  # type: ignore[no-untyped-def]
        assert self.rekey_bytes is not None
        return plan(dataclasses.replace(self, rekey_bytes=2 * self.rekey_bytes), state, n, now)

    mp.setattr(AesGcm, "plan", lax)


def _key_reuse_across_indices(mp: pytest.MonkeyPatch) -> None:
    """Keys 2k and 2k + 1 of a link are the same key."""
    key = AesSession.key
    mp.setattr(AesSession, "key", lambda self, index, store: key(self, index // 2, store))


def _otp_does_not_encrypt(mp: pytest.MonkeyPatch) -> None:
    """The pad is drawn and the tag computed, but the payload goes out in clear."""

    def clear(payload: bytes, key_bits: np.ndarray, auth_bits: int = 256) -> bytes:
        n = 8 * len(payload)
        return payload + cipher_mod.Poly1305.generate_tag(
            np.packbits(key_bits[n:]).tobytes(), payload
        )

    mp.setattr(cipher_mod, "otp_encrypt", clear)


def _same_key_stream(mp: pytest.MonkeyPatch) -> None:
    """Every link's store draws the same key bits (one seed for all)."""
    source = qkdnetwork.random_key_source
    mp.setattr(qkdnetwork, "random_key_source", lambda seed: source(0))


@pytest.mark.parametrize(
    ("plant", "cipher", "caught"),
    [
        (_no_direction, AES[1], r"nonce spaces overlap"),
        (_frozen_counter, AES[1], r"\(key, nonce\) repeats"),
        (_under_counted_rekey, AES[0], r"protect more than rekey_bytes=3000"),
        (_key_reuse_across_indices, AES[0], r"\(key, nonce\) repeats"),
        (_otp_does_not_encrypt, OneTimePad(), r"one-time pad did not encrypt"),
        (_same_key_stream, AES[0], r"\(key, nonce\) repeats"),
        (_same_key_stream, OneTimePad(), r"one-time pads repeat another pad's bits"),
    ],
    ids=[
        "no-direction-byte",
        "frozen-counter",
        "under-counted-rekey",
        "key-reuse",
        "otp-clear",
        "same-stream-aes",
        "same-stream-otp",
    ],
)
def test_planted_fault_is_caught(
    plant: Callable[[pytest.MonkeyPatch], None],
    cipher: CipherPolicy,
    caught: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    plant(monkeypatch)
    rec, _ = bit_exact_run(cipher, monkeypatch)
    found = violations(rec, getattr(cipher, "rekey_bytes", None))
    assert any(re.search(caught, v) for v in found), found


def test_without_the_direction_byte_the_run_itself_repeats_no_nonce(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Why invariant 2 is needed: the simulation's shared per-link counter hides the fault."""
    _no_direction(monkeypatch)
    rec, _ = bit_exact_run(AES[1], monkeypatch)
    found = violations(rec, AES[1].rekey_bytes)
    assert len(found) == 1 and "nonce spaces overlap" in found[0], found  # no repeat in the run
