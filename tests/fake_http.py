"""The HTTP side of the fakes (fake_kfp, fake_gce): a server on 127.0.0.1 that records requests.

A fake is an object with ``url``, ``requests`` and ``handle(method, path,
query, headers, body) -> (status, JSON payload)``; this serves it.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
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
    ) -> tuple[int, dict[str, Any]]: ...


Fake = TypeVar("Fake", bound=_Fake)


def serve(fake: Fake) -> Iterator[Fake]:
    """Serve ``fake`` on 127.0.0.1 for the duration of a ``with``/fixture."""

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            parts = urlsplit(self.path)
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            headers = {k.lower(): v for k, v in self.headers.items()}
            fake.requests.append(Request(self.command, self.path, headers, body))
            status, payload = fake.handle(
                self.command, parts.path, parse_qs(parts.query), headers, body
            )
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_DELETE = do_PUT = _answer

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
