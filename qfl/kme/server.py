"""The HTTP(S) front of the KMEs: stdlib ``http.server`` + ``ssl``, mutual TLS by default.

Why the standard library: the handler must read the TLS peer certificate of the connection
it serves (the caller's SAE ID is its certificate's common name), which ``ssl.SSLSocket
.getpeercert()`` gives directly, with no dependency; a thread per connection with HTTP/1.1
keep-alive is ample for a simulator's loads (the service's lock serializes the pools anyway).

One listener serves every KME: the caller's certificate names its SAE, the SAE's node names
its KME, so ``https://host:port/api/v1/keys/{SAE}/...`` reaches the caller's own KME. With
one port per KME (``kme_node`` set), a caller whose SAE is attached elsewhere gets 401.

Every answer is JSON: the spec's Status / Key container, or its Error ``{message,
details}`` with 400, 401 or 503 (and 404/405/500 in the same shape for what the spec does
not cover), never an HTML page, also for malformed request lines and oversized bodies.
"""

from __future__ import annotations

import json
import logging
import ssl
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from qfl.kme.service import KeyService, kme_id
from qfl.kme.spec import (
    KmeError,
    error_body,
    key_container,
    parse_dec_query,
    parse_enc_query,
    parse_key_ids,
    parse_key_request,
)

__all__ = ["MAX_BODY_BYTES", "KmeServer", "Servers", "server_tls_context", "start_servers"]

log = logging.getLogger("qfl.kme")

MAX_BODY_BYTES = 1 << 20
"""Largest request body read (1 MiB); larger ones are refused with 400."""
_DRAIN_BYTES = 16 << 20  # bodies up to this size are read and dropped, so the 400 is read
_SAE_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


def server_tls_context(ca: str | Path, cert: str | Path, key: str | Path) -> ssl.SSLContext:
    """A server context that requires a client certificate signed by ``ca`` (TLS >= 1.2)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(cert), str(key))
    ctx.load_verify_locations(cafile=str(ca))
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def _common_name(cert: dict[str, Any] | None) -> str | None:
    if not cert:
        return None
    for rdn in cert.get("subject", ()):
        for k, v in rdn:
            if k == "commonName":
                return str(v)
    for kind, v in cert.get("subjectAltName", ()):
        if kind == "DNS":
            return str(v)
    return None


class KmeServer(ThreadingHTTPServer):
    """A listener for the KMEs of ``service`` (all of them, or the one of ``kme_node``)."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128
    max_connections = 1024
    """Connections served at once (a thread each); more are closed at once."""

    def __init__(
        self,
        address: tuple[str, int],
        service: KeyService,
        *,
        tls: ssl.SSLContext | None,
        kme_node: str | None = None,
    ) -> None:
        self.service = service
        self.tls = tls
        self.kme_node = kme_node
        self._slots = threading.BoundedSemaphore(self.max_connections)
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        """A thread per connection, up to :attr:`max_connections`."""
        if not self._slots.acquire(blocking=False):
            log.warning("refused %s: %d connections open", client_address, self.max_connections)
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def finish_request(self, request: Any, client_address: Any) -> None:
        """The TLS handshake happens here, in the connection's own thread."""
        if self.tls is not None:
            request.settimeout(10.0)
            try:
                request = self.tls.wrap_socket(request, server_side=True)
            except (ssl.SSLError, OSError) as exc:
                log.info("TLS handshake with %s failed: %s", client_address, exc)
                request.close()
                return
        super().finish_request(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    default_request_version = "HTTP/1.1"  # errors on a malformed request line get a status line
    server_version = "qfl-kme/1"
    sys_version = ""
    timeout = 60.0
    server: KmeServer

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    # -- answers -------------------------------------------------------------------------
    def _send_json(self, status: int, body: Any, *, close: bool = False) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own errors (a bad request line, headers too long) as JSON too."""
        status = 400 if code in (414, 431) else code
        body = {"message": message or self.responses.get(code, ("error",))[0]}
        if explain:
            body["details"] = [{"reason": explain}]  # type: ignore[assignment]
        try:
            self._send_json(status, body, close=True)
        except OSError:
            self.close_connection = True

    # -- methods -------------------------------------------------------------------------
    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _not_allowed(self) -> None:
        self._discard_body()
        self._send_json(405, {"message": f"method {self.command} not allowed; use GET or POST"})

    do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _not_allowed

    def _dispatch(self, method: str) -> None:
        try:
            if method == "POST":
                body = self._read_body()
            else:
                body = None
                self._discard_body()  # a GET with a body: keep the connection in step
            status, payload = 200, self._answer(method, body)
        except KmeError as exc:
            status, payload = exc.status, error_body(exc)
        except Exception:  # a bug: answered in the spec's shape, logged, service goes on
            log.exception("internal error on %s %s", method, self.path[:200])
            status, payload = 500, {"message": "internal error of the KME"}
        try:
            self._send_json(status, payload, close=self.close_connection)
        except OSError:
            self.close_connection = True

    def _discard_body(self) -> None:
        n = self.headers.get("Content-Length")
        if n and n.isdigit() and int(n) <= _DRAIN_BYTES:
            self.rfile.read(int(n))
        elif n:
            self.close_connection = True

    def _read_body(self) -> Any:
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            raise KmeError(400, "chunked request bodies are not accepted; send Content-Length")
        raw = self.headers.get("Content-Length")
        if raw is None:
            return None
        if not raw.strip().isdigit():
            self.close_connection = True
            raise KmeError(400, f"bad Content-Length {raw[:40]!r}")
        n = int(raw)
        if n > MAX_BODY_BYTES:
            if n <= _DRAIN_BYTES:
                self.rfile.read(n)
            else:
                self.close_connection = True
            raise KmeError(
                400,
                f"request body of {n} bytes is larger than {MAX_BODY_BYTES} bytes",
                [{"Content-Length": n}],
            )
        data = self.rfile.read(n)
        if not data.strip():
            return None
        try:
            return json.loads(data)
        except (ValueError, RecursionError) as exc:
            raise KmeError(400, f"malformed JSON body: {str(exc)[:120]}") from None

    # -- identity and routing -----------------------------------------------------------
    def _caller(self) -> str:
        if self.server.tls is not None:
            conn = self.connection
            cert = conn.getpeercert() if isinstance(conn, ssl.SSLSocket) else None
            sae = _common_name(cert)
            if sae is None:
                raise KmeError(401, "no SAE ID in the client certificate's common name")
        else:
            sae = self.headers.get("X-SAE-ID")
            if not sae:
                raise KmeError(401, "insecure mode: name the calling SAE in an X-SAE-ID header")
        service = self.server.service
        node = service.node_of(sae, caller=True)
        own = self.server.kme_node
        if own is not None and node != own:
            raise KmeError(
                401,
                f"this is {kme_id(own)}; SAE {sae!r} is attached to {kme_id(node)}",
            )
        return sae

    def _answer(self, method: str, body: Any) -> Any:
        url = urlsplit(self.path)
        parts = url.path.split("/")
        if len(parts) != 6 or parts[:4] != ["", "api", "v1", "keys"]:
            raise KmeError(
                400,
                "unknown resource; use /api/v1/keys/{SAE_ID}/status|enc_keys|dec_keys",
                [{"path": url.path[:200]}],
            )
        other, op = unquote(parts[4]), parts[5]
        if not other or len(other) > 64 or not set(other) <= _SAE_CHARS or other in (".", ".."):
            raise KmeError(400, "malformed SAE ID in the path", [{"SAE_ID": other[:64]}])
        if op not in ("status", "enc_keys", "dec_keys"):
            raise KmeError(400, f"unknown operation {op[:40]!r}; use status, enc_keys, dec_keys")
        caller = self._caller()
        service = self.server.service
        limits = service.limits
        query = parse_qs(url.query, keep_blank_values=True, max_num_fields=16) if url.query else {}
        if op == "status":
            if method != "GET" or query:
                raise KmeError(400, "status is a GET without parameters")
            return service.status(caller, other)
        if op == "enc_keys":
            if method == "GET":
                req = parse_enc_query(query, limits)
            else:
                if query:
                    raise KmeError(400, "POST enc_keys takes its parameters in the JSON body")
                req = parse_key_request(body, limits)
            return key_container(service.enc_keys(caller, other, req))
        if method == "GET":
            ids = parse_dec_query(query, limits)
        else:
            if query:
                raise KmeError(400, "POST dec_keys takes its key_IDs in the JSON body")
            ids = parse_key_ids(body, limits)
        return key_container(service.dec_keys(caller, other, ids))


@dataclass
class Servers:
    """Running listeners: ``urls[node or "*"]``; :meth:`close` stops them."""

    servers: list[KmeServer]
    threads: list[threading.Thread] = field(default_factory=list)

    @property
    def ports(self) -> dict[str, int]:
        """Port of each listener, by KME node (``"*"``: the one serving every KME)."""
        return {s.kme_node or "*": s.server_address[1] for s in self.servers}

    def close(self) -> None:
        """Stop accepting, close the sockets."""
        for s in self.servers:
            s.shutdown()
            s.server_close()
        for t in self.threads:
            t.join(timeout=5)


def start_servers(
    service: KeyService,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    tls: ssl.SSLContext | None,
    port_per_kme: bool = False,
) -> Servers:
    """Start the listener(s) in background threads.

    Parameters
    ----------
    port : int
        The port (0: any free one). With ``port_per_kme``, the KME of the ``i``-th node (in
        the network's node order) listens on ``port + i`` (``port`` must then be > 0).
    tls : ssl.SSLContext or None
        ``None`` is plain HTTP (the ``--insecure`` testing mode).
    """
    nodes: Sequence[str | None] = list(service.net.graph.nodes) if port_per_kme else [None]
    servers = []
    try:
        for i, node in enumerate(nodes):
            p = port + i if port_per_kme else port
            servers.append(KmeServer((host, p), service, tls=tls, kme_node=node))
    except OSError:
        for s in servers:
            s.server_close()
        raise
    handle = Servers(servers)
    for s in servers:
        t = threading.Thread(
            target=s.serve_forever, args=(0.05,), name=f"kme-{s.kme_node or 'all'}", daemon=True
        )
        t.start()
        handle.threads.append(t)
    return handle
