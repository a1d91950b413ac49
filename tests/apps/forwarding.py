"""A function that serves HTTP in its container and forward()s the port while it waits; two that
fetch tunnels and tell what a container trusts."""

import http.server
import threading
import time

import firebox as modal

app = modal.App("forwarding")


class Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        body = f"hello from the container, path {self.path}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@app.function(timeout=120)
def serve(rendezvous: str) -> dict:
    """Serve, publish the tunnel in a Dict, and keep the port forwarded until told to stop."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hello)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    board = modal.Dict.from_name(rendezvous, create_if_missing=True)
    with modal.forward(port, unencrypted=True) as tunnel:
        board["tunnel"] = {"url": tunnel.url, "tcp": list(tunnel.tcp_socket)}
        deadline = time.monotonic() + 60
        while "stop" not in board and time.monotonic() < deadline:
            time.sleep(0.05)
        try:
            modal.forward(port).__enter__()
            again = "opened twice"
        except modal.exception.AlreadyExistsError:
            again = "refused"
    return {"again": again, "url": tunnel.url}


@app.function(isolation="process")  # on the host's network: the server's tunnels are reachable
def fetch(url: str) -> str:
    """What a plain urlopen of an HTTPS tunnel gets from a container, with no verify setting."""
    import urllib.request

    with urllib.request.urlopen(url, timeout=10) as answer:
        return answer.read().decode()


@app.function(secrets=[modal.Secret.from_dict({"REQUESTS_CA_BUNDLE": "/theirs.pem"})])
def trust() -> dict:
    """What a walled container's clients trust by default, with the user's own
    REQUESTS_CA_BUNDLE."""
    import os
    import ssl

    names = [v for cert in ssl.create_default_context().get_ca_certs()
             for rdn in cert["subject"] for k, v in rdn if k == "commonName"]
    return {"env": {k: os.environ.get(k) for k in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE",
                                                   "CURL_CA_BUNDLE", "NODE_EXTRA_CA_CERTS")},
            "firebox": "firebox tunnels CA" in names, "system": len(names) > 1}
