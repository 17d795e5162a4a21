"""The HTTP side of the fakes (fake_kfp, fake_gce, ...): a server on 127.0.0.1 that records
requests.

A fake is an object with ``url``, ``requests`` and ``handle(method, path,
query, headers, body) -> (status, payload[, headers])``; this serves it. A
payload is JSON, text when it is a ``str``, nothing when it is None.
"""

from __future__ import annotations

import json
import ssl
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Protocol, TypeVar
from urllib.parse import parse_qs, urlsplit


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


def requests_text(requests: list[Request]) -> str:
    """Every request a fake was sent, headers and body as text: where tests search for secrets."""
    return "\n".join(
        f"{r.method} {r.path} {json.dumps(r.headers)} {r.body.decode('utf-8', 'replace')}"
        for r in requests
    )


#: What a fake answers: a status and a JSON payload (or text), and any more headers.
Answer = tuple[int, Any] | tuple[int, Any, dict[str, str]]


class _Fake(Protocol):
    url: str
    requests: list[Request]

    def handle(
        self,
        method: str,
        path: str,
        query: Mapping[str, list[str]],
        headers: Mapping[str, str],
        body: bytes,
    ) -> Answer: ...


Fake = TypeVar("Fake", bound=_Fake)


def serve(fake: Fake, tls: tuple[Path, Path] | None = None) -> Iterator[Fake]:
    """Serve ``fake`` on 127.0.0.1 for the duration of a ``with``/fixture; over TLS with
    ``tls`` (a certificate and its key), for clients that refuse plain HTTP."""

    class Handler(BaseHTTPRequestHandler):
        if tls is not None:  # keep-alive, as the clients that insist on TLS expect
            protocol_version = "HTTP/1.1"

        def _answer(self) -> None:
            parts = urlsplit(self.path)
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            headers = {k.lower(): v for k, v in self.headers.items()}
            fake.requests.append(Request(self.command, self.path, headers, body))
            status, payload, *more = fake.handle(
                self.command, parts.path, parse_qs(parts.query), headers, body
            )
            text = isinstance(payload, str)
            data = b"" if payload is None else (payload if text else json.dumps(payload)).encode()
            self.send_response(status)
            kind = "text/plain" if text else "application/json"
            for name, value in {"content-type": kind, **(more[0] if more else {})}.items():
                self.send_header(name, value)
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_DELETE = do_PUT = do_PATCH = _answer

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    if tls is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*tls)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    fake.url = f"{'https' if tls else 'http'}://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
