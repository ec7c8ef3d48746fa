"""A small JSON HTTP API over a ``Retriever`` (standard library only; bind it to 127.0.0.1).

    GET /related_pins?pin_id=<id>&k=10     related pins in the PinSage space
    GET /user_pins?user_id=<id>&k=10       PinnerFormer user-to-pin, seen pins excluded
    GET /pinnersage?user_id=<id>&k=10      PinnerSage: 3 medoids, blended
    GET /health                            served versions, refusals, last reload error

Statuses: 200; 400 a bad parameter; 404 an unknown pin id; 409 a refused pairing of model versions;
503 nothing loaded. Every error body is ``{"error": "<message>"}``. Each request runs on its own thread
and reads one snapshot of the retriever, so a hot reload never fails a request in flight.
"""

from __future__ import annotations

import json
import logging
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from embeddings.retrieval.service import RetrievalError, Retriever

log = logging.getLogger(__name__)

ROUTES = {"/related_pins": ("related_pins", "pin_id"), "/user_pins": ("user_pins", "user_id"),
          "/pinnersage": ("pinnersage", "user_id")}


def make_server(retriever: Retriever, host: str = "127.0.0.1", port: int = 8765) -> ThreadingHTTPServer:
    """A threading HTTP server answering the routes above (``port=0`` picks a free port)."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, so load tests measure the service, not TCP set-up
        # Headers and body go out in two writes; with Nagle's algorithm the body then waits for the
        # client's delayed ACK (~40 ms on Linux) on every keep-alive response.
        disable_nagle_algorithm = True

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            url = urlparse(self.path)
            params = {k: v[-1] for k, v in parse_qs(url.query).items()}
            try:
                if url.path == "/health":
                    body = retriever.health()
                    self._send(200 if body["ok"] else 503, body)
                    return
                if url.path not in ROUTES:
                    self._send(404, {"error": f"no route {url.path}; try {sorted(ROUTES) + ['/health']}"})
                    return
                method, key = ROUTES[url.path]
                if key not in params:
                    raise ValueError(f"{url.path} needs the parameter {key}")
                try:
                    ident, k = int(params[key]), int(params.get("k", 10))
                except ValueError:
                    raise ValueError(f"{key} and k must be integers (got {params})") from None
                self._send(200, getattr(retriever, method)(ident, k))
            except RetrievalError as exc:
                self._send(exc.status, {"error": str(exc)})
            except ValueError as exc:
                self._send(400, {"error": str(exc)})
            except Exception as exc:  # a bug answers 500 and the server keeps going
                log.exception("request %s failed", self.path)
                self._send(500, {"error": f"{type(exc).__name__}: {exc}"})

        def _send(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, fmt: str, *args) -> None:  # access log at debug level, not stderr
            log.debug("%s " + fmt, self.address_string(), *args)

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    return server
