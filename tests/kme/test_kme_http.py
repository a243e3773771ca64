"""The KME's REST API, driven by clients nobody here wrote: the published
``etsi-qkd-014-client`` package, and plain ``requests`` (GET and POST variants, empty bodies,
query strings, bad input). Certificates from ``trustme``."""

from __future__ import annotations

import base64
import json
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("trustme")
requests = pytest.importorskip("requests")
etsi = pytest.importorskip("etsi_qkd_014_client")

from qfl.kme import ManualClock, build_service, server_tls_context, start_servers  # noqa: E402
from qfl.scenario import load_scenario  # noqa: E402


class Kme:
    """A running service on 127.0.0.1 with a hand-moved clock."""

    def __init__(self, scenario: Path, pki: Any, *, tls: bool = True, **kw: Any) -> None:
        self.clock = ManualClock()
        self.service = build_service(load_scenario(scenario), self.clock)
        self.pki = pki
        ctx = (
            server_tls_context(pki.ca_pem, pki.folder / "kme.pem", pki.folder / "kme.key")
            if tls
            else None
        )
        self.servers = start_servers(self.service, port=kw.pop("port", 0), tls=ctx, **kw)
        self.port = next(iter(self.servers.ports.values()))
        self.scheme = "https" if tls else "http"

    def url(self, tail: str, port: int | None = None) -> str:
        return f"{self.scheme}://127.0.0.1:{port or self.port}/api/v1/keys/{tail}"

    def client(self, sae: str) -> Any:
        cert, key = self.pki.client(sae)
        return etsi.QKD014Client(f"127.0.0.1:{self.port}", cert, key, str(self.pki.ca_pem))

    def session(self, sae: str) -> Any:
        s = requests.Session()
        s.trust_env = False  # else REQUESTS_CA_BUNDLE overrides s.verify
        s.cert = self.pki.client(sae)
        s.verify = str(self.pki.ca_pem)
        return s


@pytest.fixture
def kme(kme_scenario, pki) -> Iterator[Kme]:
    k = Kme(kme_scenario(), pki)
    k.clock.advance(10.0)  # a-r 10 kbit, b-r 20 kbit, c-r 5 kbit
    yield k
    k.servers.close()


@pytest.fixture(scope="module")
def shared_kme(kme_scenario, pki) -> Iterator[Kme]:
    """One service for the bad-request tests (which take no key)."""
    k = Kme(kme_scenario(), pki)
    k.clock.advance(10.0)
    yield k
    k.servers.close()


def _error(r: Any, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["Content-Type"] == "application/json"
    body = r.json()
    assert isinstance(body["message"], str) and body["message"]
    return body


def test_published_client_status_keys_and_key_ids(kme: Kme) -> None:
    master, slave = kme.client("a"), kme.client("b")
    code, status = master.get_status("b")
    assert code == 200
    assert (status.source_kme_id, status.target_kme_id) == ("KME-a", "KME-b")
    assert (status.key_size, status.stored_key_count, status.max_sae_id_count) == (256, 39, 0)
    code, plain = master.get_key("b")  # the simplified GET: defaults
    assert code == 200 and len(plain.keys) == 1
    code, container = master.get_key("b", number=3, size=512)  # a POST with a Key request
    assert code == 200 and len(container.keys) == 3
    keys = {k.key_id: k.key for k in [*plain.keys, *container.keys]}
    assert all(len(base64.b64decode(v)) in (32, 64) for v in keys.values())
    code, got = slave.get_key_with_key_IDs("a", list(keys))
    assert code == 200
    assert {k.key_id: k.key for k in got.keys} == keys
    code, err = slave.get_key_with_key_IDs("a", list(keys)[:1])  # once only
    assert code == 400 and "already delivered" in err.message
    code, err = kme.client("c").get_key_with_key_IDs("a", list(keys)[:1])
    assert code in (400, 401)


def test_requests_get_and_post_variants(kme: Kme) -> None:
    m, s = kme.session("a"), kme.session("b")
    r = m.get(kme.url("b/enc_keys"), params={"number": 2, "size": 128})
    assert r.status_code == 200 and len(r.json()["keys"]) == 2
    ids = [k["key_ID"] for k in r.json()["keys"]]
    assert all(len(base64.b64decode(k["key"])) == 16 for k in r.json()["keys"])
    r = m.post(kme.url("b/enc_keys"))  # an empty body: the defaults
    assert r.status_code == 200 and len(base64.b64decode(r.json()["keys"][0]["key"])) == 32
    ids.append(r.json()["keys"][0]["key_ID"])
    r = m.post(kme.url("b/enc_keys"), json={})
    assert r.status_code == 200
    r = s.get(kme.url("a/dec_keys"), params={"key_ID": ids[0]})
    assert r.status_code == 200 and r.json()["keys"][0]["key_ID"] == ids[0]
    r = s.post(kme.url("a/dec_keys"), json={"key_IDs": [{"key_ID": k} for k in ids[1:]]})
    assert r.status_code == 200 and [k["key_ID"] for k in r.json()["keys"]] == ids[1:]


@pytest.mark.parametrize(
    ("method", "tail", "kw", "fragment"),
    [
        ("post", "b/enc_keys", {"data": b"{not json"}, "malformed JSON"),
        ("post", "b/enc_keys", {"json": {"number": 10**9}}, "number must be in [1, 128]"),
        ("get", "b/enc_keys?number=99999999999999", {}, "number must be in"),
        ("post", "b/enc_keys", {"json": {"size": -256}}, "size must be a multiple of 8"),
        ("post", "b/enc_keys", {"json": {"size": 100}}, "multiple of 8"),
        ("post", "b/enc_keys", {"json": {"size": 16384}}, "[64, 8192]"),
        ("post", "b/enc_keys", {"json": {"number": "2"}}, "number must be an integer"),
        ("post", "b/enc_keys", {"json": [1, 2]}, "JSON object"),
        ("post", "b/enc_keys", {"json": {"colour": "red"}}, "unknown field"),
        ("post", "b/enc_keys", {"json": {"extension_mandatory": [{"x": 1}]}}, "are supported"),
        ("post", "b/enc_keys", {"json": {"additional_slave_SAE_IDs": ["c"]}}, "multicast"),
        ("get", "b/enc_keys?size=abc", {}, "must be an integer"),
        ("get", "b/enc_keys?bogus=1", {}, "unknown query parameter"),
        ("get", "nobody/status", {}, "unknown SAE ID"),
        ("get", "..%2F..%2Fetc/status", {}, "malformed SAE ID"),
        ("get", "b/../../../etc/passwd", {}, ""),
        ("get", "b/dec_keys?key_ID=../../x", {}, "UUID"),
        ("get", "b/dec_keys", {}, "key_ID is required"),
        ("post", "b/dec_keys", {"json": {"key_IDs": []}}, "non-empty"),
        ("get", "b/rm_keys", {}, "unknown operation"),
        ("post", "b/enc_keys", {"data": b"[" * 100000}, "malformed JSON"),
        ("post", "b/enc_keys", {"data": b"x" * (2 << 20)}, "larger than 1048576"),
    ],
)
def test_bad_requests_get_400_json_and_service_goes_on(
    shared_kme: Kme, method: str, tail: str, kw: dict[str, Any], fragment: str
) -> None:
    kme = shared_kme
    s = kme.session("a")
    url = kme.url(tail)
    if "../" in tail and "%2F" not in tail and "key_ID" not in tail:
        req = requests.Request(method.upper(), url).prepare()
        req.url = url  # as typed: no client-side normalisation
        r = s.send(req)
    else:
        r = getattr(s, method)(url, **kw)
    body = _error(r, 400)
    assert fragment in body["message"]
    assert kme.session("a").get(kme.url("b/status")).status_code == 200


def _read_all(sock: Any) -> str:
    """What the server sends until it closes the connection."""
    chunks = []
    while chunk := sock.recv(4096):
        chunks.append(chunk)
    return b"".join(chunks).decode()


def test_huge_content_length_is_refused_without_reading(kme: Kme) -> None:
    ctx = ssl.create_default_context(cafile=str(kme.pki.ca_pem))
    ctx.load_cert_chain(*kme.pki.client("a"))
    with socket.create_connection(("127.0.0.1", kme.port)) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            tls.sendall(
                b"POST /api/v1/keys/b/enc_keys HTTP/1.1\r\nHost: x\r\n"
                b"Content-Length: 1000000000\r\n\r\n{"
            )
            head = _read_all(tls)
    assert head.startswith("HTTP/1.1 400")
    assert '"message"' in head and "<html" not in head.lower()
    assert kme.session("a").get(kme.url("b/status")).status_code == 200


def test_malformed_request_line_is_json(kme: Kme) -> None:
    ctx = ssl.create_default_context(cafile=str(kme.pki.ca_pem))
    ctx.load_cert_chain(*kme.pki.client("a"))
    with socket.create_connection(("127.0.0.1", kme.port)) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            tls.sendall(b"GARBAGE\r\n\r\n")
            head = _read_all(tls)
    assert " 400 " in head.splitlines()[0]
    assert json.loads(head.split("\r\n\r\n", 1)[1])["message"]


def test_503_when_the_pool_is_short(kme: Kme) -> None:
    r = kme.session("a").post(kme.url("b/enc_keys"), json={"number": 50, "size": 256})
    body = _error(r, 503)  # 12.8 kbit on every hop; a-r holds 10 kbit
    assert "not enough key" in body["message"]
    assert body["details"][0]["link"] == "a-r"


def test_certificate_names_the_sae(kme: Kme, pki: Any) -> None:
    import trustme

    ok = kme.session("a").get(kme.url("b/enc_keys")).json()["keys"][0]["key_ID"]
    # c's certificate cannot take a key issued for b, even naming a as its master
    r = kme.session("c").get(kme.url("a/dec_keys"), params={"key_ID": ok})
    _error(r, 401)
    # a certificate for a name that is no SAE of the network
    _error(kme.session("mallory").get(kme.url("b/status")), 401)
    # a certificate from another CA: the handshake fails
    other = trustme.CA()
    s = requests.Session()
    s.trust_env = False
    s.cert = pki.client("a", ca=other)
    s.verify = str(pki.ca_pem)
    with pytest.raises(requests.exceptions.RequestException):
        s.get(kme.url("b/status"))
    # no client certificate at all
    with pytest.raises(requests.exceptions.RequestException):
        requests.get(kme.url("b/status"), verify=str(pki.ca_pem))
    # the X-SAE-ID header means nothing under TLS
    r = kme.session("c").get(kme.url("a/dec_keys"), params={"key_ID": ok},
                             headers={"X-SAE-ID": "b"})  # fmt: skip
    _error(r, 401)


def test_insecure_mode_takes_the_header(kme_scenario, pki) -> None:
    k = Kme(kme_scenario(), pki, tls=False)
    try:
        k.clock.advance(1.0)
        r = requests.get(k.url("b/enc_keys"), headers={"X-SAE-ID": "a"})
        assert r.status_code == 200
        kid = r.json()["keys"][0]["key_ID"]
        _error(requests.get(k.url("b/status")), 401)  # no header
        r = requests.get(k.url("a/dec_keys"), params={"key_ID": kid}, headers={"X-SAE-ID": "b"})
        assert r.status_code == 200
    finally:
        k.servers.close()


def test_port_per_kme(kme_scenario, pki) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        base = probe.getsockname()[1]
    k = Kme(kme_scenario(), pki, port=base, port_per_kme=True)
    try:
        k.clock.advance(1.0)
        ports = k.servers.ports
        assert set(ports) == {"a", "b", "c", "r"} and ports["a"] == base
        s = k.session("a")
        assert s.get(k.url("b/status", ports["a"])).status_code == 200
        body = _error(s.get(k.url("b/status", ports["b"])), 401)
        assert "KME-a" in body["message"]
    finally:
        k.servers.close()
