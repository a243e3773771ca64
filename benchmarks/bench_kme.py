"""ETSI GS QKD 014 KMEs under load and faults: ``qfl kme serve`` on the metro network.

N concurrent SAE pairs (default 50; masters and slaves spread over metro's seven client
nodes, so most keys are relayed through trusted nodes) fetch keys for D seconds over mutual
TLS: the master asks ``enc_keys`` (alternating GET with a query and POST with a Key
request), the slave fetches the same key by ID at ``dec_keys``. Halfway, every pair takes
one more key and holds it, the server is killed with SIGKILL and restarted on the same
``--state`` folder, and every slave fetches its held key from the new process. A further
thread sends bad requests throughout (malformed JSON, a huge ``number``, a negative size,
an unknown SAE, path traversal, a 2 MiB body), each of which must get 400.

Checked: no key ID is served twice; every key from ``dec_keys`` equals the one from
``enc_keys``; no key delivered to a master before the kill is lost; every bad request got
400 and the service kept serving; on every link the bits the KMEs took never exceed the
bits its pool generated (the server's accounting.json). Reported: requests/s (200 answers
and 503 "not enough key" answers apart), p50/p99 latency, and the load average.

Usage::

    python benchmarks/bench_kme.py                 # 50 pairs, 60 s, real time
    python benchmarks/bench_kme.py --smoke         # 3 pairs, ~2 s, clock x60 (the test)

Servers listen on 127.0.0.1 only. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[1]
METRO = ROOT / "scenarios" / "metro.yaml"
CLIENT_NODES = ["hospital", "university", "bank", "datacentre", "lab", "clinic", "telco"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pairs(n: int) -> list[tuple[str, str]]:
    """``n`` (master, slave) SAE names on distinct client nodes (``m3-hospital``...)."""
    out = []
    k = len(CLIENT_NODES)
    for i in range(n):
        a = CLIENT_NODES[i % k]
        b = CLIENT_NODES[(i + 1 + (i // k) % (k - 1)) % k]
        if a == b:
            b = CLIENT_NODES[(i + 2) % k]
        out.append((f"m{i}-{a}", f"s{i}-{b}"))
    return out


def _sae_args(pairs: list[tuple[str, str]]) -> list[str]:
    args = []
    for m, s in pairs:
        for name in (m, s):
            args += ["--sae", f"{name}={name.split('-', 1)[1]}"]
    return args


class Server:
    """``qfl kme serve`` in a child process."""

    def __init__(self, args: list[str], log: Path) -> None:
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        self.log = log.open("a")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "qfl.cli", "kme", "serve", *args],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
        )
        assert self.proc.stdout is not None
        t0 = time.monotonic()
        line = self.proc.stdout.readline()
        if "serving" not in line:
            self.proc.kill()
            raise RuntimeError(f"server did not start: {line!r}; see {log}")
        self.start_s = time.monotonic() - t0
        self.banner = line.strip()
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.log.write(line)
            self.log.flush()

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=60)


class Stats:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.latency: dict[str, list[float]] = {"enc": [], "dec": []}
        self.codes: dict[int, int] = {}
        self.enc_ids: set[str] = set()
        self.dec_ids: set[str] = set()
        self.duplicates = 0
        self.mismatches = 0
        self.errors: list[str] = []
        self.bad_ok = 0
        self.bad_failed: list[str] = []

    def record(self, kind: str, code: int, dt: float) -> None:
        with self.lock:
            self.codes[code] = self.codes.get(code, 0) + 1
            if code == 200:
                self.latency[kind].append(dt)


def _session(certs: Path, sae: str) -> requests.Session:
    s = requests.Session()
    s.trust_env = False  # REQUESTS_CA_BUNDLE would override verify
    s.cert = (str(certs / f"{sae}.pem"), str(certs / f"{sae}.key"))
    s.verify = str(certs / "ca.pem")
    return s


class Pair:
    def __init__(self, i: int, master: str, slave: str, certs: Path, url: str) -> None:
        self.i, self.master, self.slave = i, master, slave
        self.certs, self.url = certs, url
        self.m = _session(certs, master)
        self.s = _session(certs, slave)
        self.held: tuple[str, str] | None = None

    def reconnect(self) -> None:
        self.m.close()
        self.s.close()
        self.m = _session(self.certs, self.master)
        self.s = _session(self.certs, self.slave)

    def enc(self, stats: Stats, n: int) -> list[tuple[str, str]] | None:
        t = time.perf_counter()
        if n % 2:
            r = self.m.get(f"{self.url}/{self.slave}/enc_keys", params={"number": 1}, timeout=30)
        else:
            r = self.m.post(f"{self.url}/{self.slave}/enc_keys", json={"number": 1}, timeout=30)
        stats.record("enc", r.status_code, time.perf_counter() - t)
        if r.status_code != 200:
            if r.status_code != 503:
                stats.errors.append(f"enc {r.status_code} {r.text[:100]}")
            return None
        keys = [(k["key_ID"], k["key"]) for k in r.json()["keys"]]
        with stats.lock:
            for kid, _ in keys:
                if kid in stats.enc_ids:
                    stats.duplicates += 1
                stats.enc_ids.add(kid)
        return keys

    def dec(self, stats: Stats, keys: list[tuple[str, str]], n: int) -> None:
        t = time.perf_counter()
        if n % 2 and len(keys) == 1:
            r = self.s.get(
                f"{self.url}/{self.master}/dec_keys", params={"key_ID": keys[0][0]}, timeout=30
            )
        else:
            body = {"key_IDs": [{"key_ID": k} for k, _ in keys]}
            r = self.s.post(f"{self.url}/{self.master}/dec_keys", json=body, timeout=30)
        stats.record("dec", r.status_code, time.perf_counter() - t)
        if r.status_code != 200:
            stats.errors.append(f"dec {r.status_code} {r.text[:100]}")
            return
        got = {k["key_ID"]: k["key"] for k in r.json()["keys"]}
        with stats.lock:
            for kid, key in keys:
                if kid in stats.dec_ids:
                    stats.duplicates += 1
                stats.dec_ids.add(kid)
                if got.get(kid) != key or len(base64.b64decode(key)) != 32:
                    stats.mismatches += 1

    def load(self, stats: Stats, until: float) -> None:
        n = self.i
        while time.monotonic() < until:
            n += 1
            try:
                keys = self.enc(stats, n)
                if keys is None:
                    time.sleep(0.05)
                    continue
                self.dec(stats, keys, n)
            except requests.RequestException as exc:
                stats.errors.append(f"{type(exc).__name__}: {str(exc)[:100]}")
                time.sleep(0.1)


BAD = [
    ("post", "enc_keys", {"data": b"{not json"}),
    ("post", "enc_keys", {"json": {"number": 10**12}}),
    ("get", "enc_keys?size=-256", {}),
    ("post", "enc_keys", {"json": {"size": -8}}),
    ("unknown", "status", {}),
    ("traversal", "status", {}),
    ("get", "dec_keys?key_ID=..%2F..%2Fjournal.jsonl", {}),
    ("post", "enc_keys", {"data": b"x" * (2 << 20)}),
    ("post", "dec_keys", {"json": {"key_IDs": "all"}}),
]


def bad_requests(pair: Pair, stats: Stats, until: float) -> None:
    k = 0
    while time.monotonic() < until:
        method, op, kw = BAD[k % len(BAD)]
        k += 1
        if method == "unknown":
            url, method = f"{pair.url}/no-such-sae/{op}", "get"
        elif method == "traversal":
            url, method = f"{pair.url}/..%2F..%2Fetc%2Fpasswd/{op}", "get"
        else:
            url = f"{pair.url}/{pair.slave}/{op}"
        try:
            r = getattr(pair.m, method)(url, timeout=30, **kw)
            ok = r.status_code == 400 and "message" in r.json()
        except (requests.RequestException, ValueError) as exc:
            ok = False
            r = exc  # type: ignore[assignment]
        with stats.lock:
            if ok:
                stats.bad_ok += 1
            else:
                stats.bad_failed.append(f"{method} {op}: {getattr(r, 'status_code', r)}")
        time.sleep(0.2)


def _run_load(pairs: list[Pair], stats: Stats, seconds: float) -> float:
    until = time.monotonic() + seconds
    threads = [threading.Thread(target=p.load, args=(stats, until)) for p in pairs]
    threads.append(threading.Thread(target=bad_requests, args=(pairs[0], stats, until)))
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.monotonic() - t0


def _wait_for_key(pair: Pair, timeout: float) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            r = pair.m.get(f"{pair.url}/{pair.slave}/status", timeout=30)
            if r.status_code == 200 and r.json()["stored_key_count"] > 0:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise RuntimeError("no key in the pools after the warm-up")


def _pct(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pairs", type=int, default=50)
    ap.add_argument("--duration", type=float, default=60.0, help="seconds of load in all")
    ap.add_argument("--speed", type=float, default=1.0, help="service clock factor")
    ap.add_argument(
        "--rate-scale", type=float, default=1.0, help="qkd.rate_scale: < 1 makes key scarce"
    )
    ap.add_argument("--smoke", action="store_true", help="3 pairs, 2 s, clock x60")
    ap.add_argument("--out", type=Path, default=None, help="work folder (default: a temp one)")
    args = ap.parse_args(argv)
    if args.smoke:
        args.pairs, args.duration, args.speed = 3, 2.0, 60.0
    if not 1 <= args.pairs <= 200 or not 0 < args.duration <= 600:
        ap.error("--pairs must be in [1, 200] and --duration in (0, 600]")
    work = args.out or Path(tempfile.mkdtemp(prefix="bench_kme_"))
    work.mkdir(parents=True, exist_ok=True)
    certs, state, log = work / "certs", work / "state", work / "server.log"
    names = _pairs(args.pairs)
    sae_args = _sae_args(names)
    # what `qfl kme certs metro.yaml --sae ...` writes, made in this process (one start less)
    sys.path.insert(0, str(ROOT))
    from qfl.kme.certs import write_certs

    write_certs(certs, [n for pair in names for n in pair])
    port = _free_port()
    serve = [str(METRO), "--certs", str(certs), "--port", str(port), "--state", str(state),
             "--speed", str(args.speed), "--set", f"qkd.rate_scale={args.rate_scale}",
             *sae_args]  # fmt: skip
    server = Server(serve, log)
    starts = [server.start_s]
    url = f"https://127.0.0.1:{port}/api/v1/keys"
    pairs = [Pair(i, m, s, certs, url) for i, (m, s) in enumerate(names)]
    _wait_for_key(pairs[0], 120)
    stats = Stats()
    load0 = os.getloadavg()
    wall = _run_load(pairs, stats, args.duration / 2)
    # kill -9 with one key per pair delivered to its master and not yet to its slave
    held_lost = 0
    for p in pairs:
        for _ in range(100):
            keys = p.enc(stats, 0)
            if keys:
                p.held = keys[0]
                break
            time.sleep(0.05)
    held = [p for p in pairs if p.held]
    server.kill()
    server = Server(serve, log)
    starts.append(server.start_s)
    for p in pairs:
        p.reconnect()
    for p in held:
        assert p.held is not None
        before = stats.mismatches + len(stats.errors)
        p.dec(stats, [p.held], 0)
        held_lost += (stats.mismatches + len(stats.errors)) - before
    wall += _run_load(pairs, stats, args.duration / 2)
    load1 = os.getloadavg()
    server.stop()
    acc = json.loads((state / "accounting.json").read_text())
    over = {
        name: v
        for name, v in acc["links"].items()
        if v["kme_bits"] > v["net_generated_bits"] * (1 + 1e-9) + 1e-6
    }
    ok = stats.codes.get(200, 0)
    enc_lat, dec_lat = stats.latency["enc"], stats.latency["dec"]
    both = enc_lat + dec_lat
    result = {
        "pairs": args.pairs,
        "load_seconds": round(wall, 2),
        "speed": args.speed,
        "rate_scale": args.rate_scale,
        "requests_per_s": round(sum(stats.codes.values()) / wall, 1),
        "ok_per_s": round(ok / wall, 1),
        "keys_per_s": round(len(stats.dec_ids) / wall, 1),
        "codes": {str(k): v for k, v in sorted(stats.codes.items())},
        "p50_ms": round(1e3 * _pct(both, 0.5), 2),
        "p99_ms": round(1e3 * _pct(both, 0.99), 2),
        "enc_p50_ms": round(1e3 * _pct(enc_lat, 0.5), 2),
        "enc_p99_ms": round(1e3 * _pct(enc_lat, 0.99), 2),
        "dec_p50_ms": round(1e3 * _pct(dec_lat, 0.5), 2),
        "dec_p99_ms": round(1e3 * _pct(dec_lat, 0.99), 2),
        "keys_issued": len(stats.enc_ids),
        "keys_delivered": len(stats.dec_ids),
        "duplicate_key_ids": stats.duplicates,
        "key_mismatches": stats.mismatches,
        "held_over_kill": len(held),
        "held_lost": held_lost,
        "bad_requests_400": stats.bad_ok,
        "bad_requests_other": stats.bad_failed[:5],
        "client_errors": stats.errors[:5],
        "server_keys_issued": acc["keys_issued"],
        "links_over_generated": sorted(over),
        "tightest_link": max(
            (
                {
                    "link": n,
                    "kme_share_of_generated": round(v["kme_bits"] / v["net_generated_bits"], 4),
                }
                for n, v in acc["links"].items()
                if v["net_generated_bits"] > 0
            ),
            key=lambda d: d["kme_share_of_generated"],
            default=None,
        ),
        "kme_bits_total": sum(v["kme_bits"] for v in acc["links"].values()),
        "generated_bits_total": sum(v["net_generated_bits"] for v in acc["links"].values()),
        "server_start_s": [round(s, 2) for s in starts],
        "loadavg_before": [round(x, 2) for x in load0],
        "loadavg_after": [round(x, 2) for x in load1],
        "cpus": os.cpu_count(),
    }
    result["ok"] = bool(
        stats.duplicates == 0
        and stats.mismatches == 0
        and held_lost == 0
        and len(held) == len(pairs)
        and not stats.bad_failed
        and not stats.errors
        and not over
        and len(stats.enc_ids) == acc["keys_issued"]
        and len(stats.dec_ids) == len(stats.enc_ids)
        and ok > 0
    )
    print(
        f"{args.pairs} pairs, {wall:.1f} s of load, clock x{args.speed:g}: "
        f"{result['requests_per_s']} req/s ({result['ok_per_s']} answered 200), "
        f"{result['keys_per_s']} keys/s delivered; p50 {result['p50_ms']} ms, "
        f"p99 {result['p99_ms']} ms; load average {load0[0]:.2f} -> {load1[0]:.2f} on "
        f"{os.cpu_count()} CPUs"
    )
    print(
        f"invariants: {result['duplicate_key_ids']} duplicate IDs, {result['key_mismatches']} "
        f"mismatched keys, {held_lost} of {len(held)} held keys lost over kill -9, "
        f"{stats.bad_ok} bad requests -> 400 ({len(stats.bad_failed)} otherwise), links over "
        f"generated: {result['links_over_generated'] or 'none'}; ok={result['ok']}"
    )
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    sys.exit(0 if main()["ok"] else 1)
