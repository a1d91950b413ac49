"""Inside a container: a small JSON-over-HTTP server on 127.0.0.1, in threads of its own, that
a foreign server or worker the container runs (a RunPod worker, Cog's server) calls back."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Callable
from typing import Any

# (verb, path with its query, headers, body) -> (status, JSON payload, or None for no body)
Handle = Callable[[str, str, Any, bytes], tuple[int, Any]]


class Loopback:
    def __init__(self, handle: Handle, name: str) -> None:
        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # the callers keep their connections open

            def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
                self._serve("GET")

            def do_POST(self) -> None:  # noqa: N802
                self._serve("POST")

            def _serve(self, verb: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                status, payload = handle(verb, self.path, self.headers, body)
                data = b"" if payload is None else json.dumps(payload).encode()
                self.send_response(status)
                if payload is not None:
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # the caller's own log says what it asked for

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.httpd.serve_forever, name=name, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def json_body(body: bytes) -> Any:
    """A body that should be JSON text; a dict saying what was wrong if it is not."""
    try:
        return json.loads(body or b"{}")
    except ValueError:
        return {"error": f"the body posted is not JSON: {body[:200]!r}"}
