"""Tunnels: a sandbox's ports (and a function container's, with forward()) reached from outside
through the server, TLS and plain TCP, with the clients a user would use (httpx trusting the
server's CA, raw sockets); the certificate trusted in containers and sandboxes, and on a user's
machine by the path `firebox token set` saves it at."""

import asyncio
import contextlib
import os
import shutil
import socket
import ssl
import threading
import time
import urllib.error
import urllib.request

import httpx
import pytest
from helpers import eventually
from other_workspace import run_cli

import firebox as modal
from firebox.exception import InvalidError

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not (shutil.which("ip") and shutil.which("nft")),
    reason="needs root, iproute2 and nftables",
)

ECHO = (
    "import socket\n"
    "s = socket.socket()\n"
    "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "s.bind(('0.0.0.0', 9000))\n"
    "s.listen()\n"
    "while True:\n"
    "    c, _ = s.accept()\n"
    "    data = b''\n"
    "    while not data.endswith(b'\\n') and (chunk := c.recv(65536)):\n"
    "        data += chunk\n"
    "    c.sendall(b'echo:' + data)\n"
    "    c.close()\n"
)


@pytest.fixture(scope="module")
def app(server):
    return modal.App.lookup("sandbox-tunnels", create_if_missing=True)


def fetch(url: str, ca: str) -> httpx.Response | None:
    try:
        return httpx.get(url, verify=ssl.create_default_context(cafile=ca), timeout=5)
    except httpx.HTTPError:
        return None


def echo(address: tuple[str, int], payload: bytes) -> bytes:
    """Send payload, half-close, read the reply to the end."""
    with socket.create_connection(address, timeout=10) as conn:
        conn.sendall(payload)
        conn.shutdown(socket.SHUT_WR)
        out = b""
        while chunk := conn.recv(65536):
            out += chunk
        return out


def echo_tls(address: tuple[str, int], line: bytes, ca: str) -> bytes:
    tls = ssl.create_default_context(cafile=ca)
    with socket.create_connection(address, timeout=10) as raw, \
            tls.wrap_socket(raw, server_hostname=address[0]) as conn:
        conn.sendall(line)
        out = b""
        while chunk := conn.recv(65536):
            out += chunk
        return out


@pytest.fixture(scope="module")
def served(app):
    """A sandbox serving HTTP on its encrypted port 8000 and an echo on its unencrypted 9000;
    test_encrypted_and_unencrypted_ports, last, ends it."""
    sb = modal.Sandbox.create(app=app, encrypted_ports=[8000], unencrypted_ports=[9000])
    sb.filesystem.make_directory("/srv/www", parents=True)
    sb.filesystem.write_text("/srv/www/index.html", "served from inside the sandbox")
    sb.exec("python3", "-m", "http.server", "8000", "--bind", "0.0.0.0", "--directory", "/srv/www")
    sb.exec("python3", "-c", ECHO)
    yield sb
    sb.terminate()


# A TLS client in the sandbox that speaks over its stdin and stdout, a line of hex each way: the
# test relays the bytes to the tunnel, so the sandbox (which has no network of its own with
# tunnels) checks the tunnel's certificate with Python's default trust, as urlopen does.
TLS_OVER_STDIO = """
import ssl, sys
incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
tls = ssl.create_default_context().wrap_bio(incoming, outgoing, server_hostname=sys.argv[1])
def pump():
    print('>' + outgoing.read().hex(), flush=True)
    line = sys.stdin.readline().strip()
    incoming.write(bytes.fromhex(line)) if line else incoming.write_eof()
def step(op):
    while True:
        try:
            return op()
        except ssl.SSLWantReadError:
            pump()
try:
    step(tls.do_handshake)
except ssl.SSLError as exc:
    print('refused', exc.reason, flush=True)
    sys.exit()
step(lambda: tls.write(b'GET /index.html HTTP/1.0\\r\\n\\r\\n'))
body = b''
try:
    while chunk := step(lambda: tls.read(65536)):
        body += chunk
except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
    pass
print('got', body.split(b'\\r\\n\\r\\n', 1)[1].decode(), flush=True)
"""


def test_containers_and_sandboxes_trust_the_tunnels_certificate(served, server):
    from apps import forwarding

    web = served.tunnels()[8000]
    with forwarding.app.run(show_logs=False):
        walled = forwarding.trust.spawn()
        assert eventually(lambda: fetch(web.url, str(server.state_dir / "tls" / "ca.pem")),
                          timeout=30)
        # From a function container: a plain urlopen of the tunnel's https URL.
        fetched = forwarding.fetch.spawn(web.url + "/index.html")

        # From a sandbox: Python's default context verifies the tunnel, no cafile= given.
        client = served.exec("python3", "-c", TLS_OVER_STDIO, web.host)
        with socket.create_connection((web.host, web.port), timeout=10) as conn:
            for line in client.stdout:
                if not line.startswith(">"):
                    break
                conn.sendall(bytes.fromhex(line[1:].strip()))
                client.stdin.write((conn.recv(65536).hex() + "\n").encode())
                client.stdin.drain()
        assert line.strip() == "got served from inside the sandbox", line
        env = served.exec("sh", "-c", "echo $SSL_CERT_FILE $REQUESTS_CA_BUNDLE $CURL_CA_BUNDLE "
                          "$NODE_EXTRA_CA_CERTS; grep -c 'BEGIN CERT' $SSL_CERT_FILE")
        seen = env.stdout.read().split()
        assert seen[:4] == ["/.firebox/ca-bundle.pem"] * 4 and int(seen[4]) > 1

        assert fetched.get(timeout=60) == "served from inside the sandbox"
        # A walled container trusts the system's certificates and firebox's; where the user
        # sets one of the variables, theirs wins.
        ours = "/.firebox/ca-bundle.pem"
        assert walled.get(timeout=60) == {
            "env": {"SSL_CERT_FILE": ours, "REQUESTS_CA_BUNDLE": "/theirs.pem",
                    "CURL_CA_BUNDLE": ours, "NODE_EXTRA_CA_CERTS": ours},
            "firebox": True, "system": True}


@contextlib.contextmanager
def tls_front(server):
    """The server's API over HTTPS, as an operator's proxy would serve it, with the certificate
    its tunnels are served under."""
    from firebox.server.core.tunnels import relay

    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(server.state_dir / "tls" / "cert.pem", server.state_dir / "tls" / "key.pem")
    loop = asyncio.new_event_loop()
    front = loop.run_until_complete(asyncio.start_server(
        lambda r, w: relay(r, w, lambda: asyncio.open_connection("127.0.0.1", server.port)),
        "127.0.0.1", 0, ssl=tls))
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{front.sockets[0].getsockname()[1]}"
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        front.close()


def test_a_users_machine_trusts_the_certificate_token_set_saves(served, server, tmp_path,
                                                                 monkeypatch):
    laptop = {k: v for k, v in os.environ.items() if not k.startswith("FIREBOX_")}
    laptop["FIREBOX_CONFIG_DIR"] = str(tmp_path / "laptop")
    saved = run_cli(laptop, "token", "set", "--server", server.url, "--token", server.token)
    assert saved.returncode == 0, saved.stderr
    ca = tmp_path / "laptop" / "tls" / "main.pem"  # the profile is the workspace's name
    assert f"SSL_CERT_FILE={ca}" in saved.stdout
    assert ca.read_bytes() == (server.config_dir / "tls" / "default.pem").read_bytes()

    url = served.tunnels()[8000].url + "/index.html"
    assert eventually(lambda: fetch(url, str(ca)), timeout=30)
    monkeypatch.setenv("SSL_CERT_FILE", str(ca))
    with urllib.request.urlopen(url, timeout=10) as answer:
        assert answer.read() == b"served from inside the sandbox"
    monkeypatch.delenv("SSL_CERT_FILE")
    with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
        urllib.request.urlopen(url, timeout=10)

    # The firebox client trusts it too, for a server it reaches over HTTPS.
    with tls_front(server) as https_url:
        laptop["FIREBOX_SERVER_URL"] = https_url
        info = run_cli(laptop, "token", "info")
        assert info.returncode == 0, info.stderr
        assert f"tls:       its tunnels' certificate is in {ca}" in info.stdout
        ca.unlink()
        refused = run_cli(laptop, "token", "info")
        assert refused.returncode == 1, refused.stderr
        # At once, not after retrying for minutes: no retry makes a certificate trusted.
        assert refused.stderr == (
            f"Error: The server at {https_url} (set in FIREBOX_SERVER_URL) has a certificate "
            "this machine does not trust (self-signed certificate in certificate chain); "
            f"`firebox token set --server {https_url} --token TOKEN` saves the server's, or set "
            "SSL_CERT_FILE to a file that holds it.\n")


def test_encrypted_and_unencrypted_ports(served, server):
    sb = served
    ca = str(server.state_dir / "tls" / "ca.pem")
    try:
        tunnels = sb.tunnels()
        assert set(tunnels) == {8000, 9000}
        web, raw = tunnels[8000], tunnels[9000]
        assert web.url == f"https://{web.host}:{web.port}"
        with pytest.raises(InvalidError, match="unencrypted_ports"):
            web.tcp_socket  # noqa: B018

        got = eventually(lambda: fetch(web.url + "/index.html", ca), timeout=30)
        assert got is not None and got.status_code == 200
        assert got.text == "served from inside the sandbox"
        # The certificate is checked: a client that does not trust the server's CA is refused.
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            httpx.get(web.url, timeout=5)

        # Plain TCP both ways, half-close included, and a large payload in one connection.
        payload = os.urandom(3 * 1024 * 1024).replace(b"\n", b"")
        assert eventually(lambda: _try_echo(raw.tcp_socket, b"ping"), timeout=30) == b"echo:ping"
        assert echo(raw.tcp_socket, payload) == b"echo:" + payload
        # An unencrypted port is reachable over TLS too, as on Modal.
        assert echo_tls(raw.tls_socket, b"over tls\n", ca) == b"echo:over tls\n"

        # Egress stays closed: a sandbox with tunnels is not on the host's network.
        probe = sb.exec("python3", "-c", "import socket\n"
                        "try:\n"
                        f"    socket.create_connection(('{web.host}', {web.port}), timeout=3)\n"
                        "    print('reached')\n"
                        "except OSError:\n"
                        "    print('blocked')\n")
        assert probe.stdout.read().strip() == "blocked"
    finally:
        sb.terminate()
    # Once the sandbox ends, so do its tunnels.
    with pytest.raises(OSError):
        socket.create_connection(web.tls_socket, timeout=3).close()


def _try_echo(address: tuple[str, int], payload: bytes) -> bytes | None:
    try:
        return echo(address, payload) or None
    except OSError:
        return None


def test_tunnel_to_a_port_nothing_listens_on_closes_the_connection(app):
    sb = modal.Sandbox.create(app=app, unencrypted_ports=[7777])
    try:
        with socket.create_connection(sb.tunnels()[7777].tcp_socket, timeout=15) as conn:
            assert conn.recv(100) == b""
    finally:
        sb.terminate()


def test_bad_port_requests_are_refused(app):
    with pytest.raises(InvalidError, match="block_network"):
        modal.Sandbox.create(app=app, encrypted_ports=[8000], block_network=True)
    with pytest.raises(InvalidError, match="twice"):
        modal.Sandbox.create(app=app, encrypted_ports=[8000], unencrypted_ports=[8000])
    with pytest.raises(InvalidError, match="port number"):
        modal.Sandbox.create(app=app, encrypted_ports=[70000])


def test_forward_from_a_function_container(server):
    from apps import forwarding

    rendezvous = f"forwarding-{os.getpid()}-{time.monotonic_ns()}"
    with forwarding.app.run(show_logs=False):
        call = forwarding.serve.spawn(rendezvous)
        board = modal.Dict.from_name(rendezvous, create_if_missing=True)
        published = eventually(lambda: board.get("tunnel"), timeout=60)
        assert published, "the function never published its tunnel"
        ca = ssl.create_default_context(cafile=str(server.state_dir / "tls" / "ca.pem"))
        got = httpx.get(published["url"] + "/outside", verify=ca, timeout=10)
        # The container's server listens on its own loopback, inside its network namespace.
        assert got.text == "hello from the container, path /outside"
        tcp_host, tcp_port = published["tcp"]
        with socket.create_connection((tcp_host, tcp_port), timeout=10) as plain:
            plain.sendall(b"GET /plain HTTP/1.0\r\n\r\n")
            answer = b"".join(iter(lambda: plain.recv(4096), b""))
            assert b"hello from the container, path /plain" in answer
        board["stop"] = True
        result = call.get(timeout=60)
        assert result["again"] == "refused"
    # The block ended, so the tunnel is closed.
    host, port = published["url"].removeprefix("https://").split(":")
    with pytest.raises(OSError):
        socket.create_connection((host, int(port)), timeout=3).close()


def test_forward_outside_a_container_says_where_it_works():
    with pytest.raises(InvalidError, match="inside a firebox container"):
        with modal.forward(8000):
            pass


def test_operator_certificate_is_served_and_a_broken_one_is_named(tmp_path, monkeypatch):
    from conftest import ServerProcess

    from firebox.server.core.tunnels import self_signed

    chain, key = self_signed(tmp_path / "operator", "127.0.0.1")  # stands for the operator's
    combined = tmp_path / "operator" / "combined.pem"  # the key in the chain's file too
    combined.write_bytes(chain.read_bytes() + key.read_bytes())
    (tmp_path / "srv").mkdir()
    (tmp_path / "broken").mkdir()
    srv = ServerProcess(tmp_path / "srv", extra_env={
        "FIREBOX_TLS_CERT": str(combined), "FIREBOX_TLS_KEY": str(key),
        "FIREBOX_SANDBOX_POOL": "0"})
    srv.start()
    try:
        # Containers trust the operator's chain, and get none of its key.
        bundle = (srv.state_dir / "ca-bundle.pem").read_bytes()
        assert bundle.endswith(chain.read_bytes()) and b"PRIVATE KEY" not in bundle
        monkeypatch.setenv("FIREBOX_SERVER_URL", srv.url)
        monkeypatch.setenv("FIREBOX_TOKEN", srv.token)
        app = modal.App.lookup("operator-cert", create_if_missing=True)
        sb = modal.Sandbox.create(app=app, encrypted_ports=[8000])
        try:
            sb.exec("python3", "-m", "http.server", "8000", "--bind", "0.0.0.0",
                    "--directory", "/etc")
            url = sb.tunnels()[8000].url + "/hostname"
            got = eventually(lambda: fetch(url, str(tmp_path / "operator" / "ca.pem")),
                             timeout=30)
            assert got is not None and got.status_code == 200
            assert not (srv.state_dir / "tls").exists()  # the server made none of its own
        finally:
            sb.terminate()
    finally:
        srv.stop()

    broken = ServerProcess(tmp_path / "broken", extra_env={
        "FIREBOX_TLS_CERT": str(tmp_path / "missing.pem"), "FIREBOX_TLS_KEY": str(key),
        "FIREBOX_SANDBOX_POOL": "0"})
    broken.start()
    try:
        monkeypatch.setenv("FIREBOX_SERVER_URL", broken.url)
        monkeypatch.setenv("FIREBOX_TOKEN", broken.token)
        app = modal.App.lookup("operator-cert", create_if_missing=True)
        with pytest.raises(modal.exception.Error, match="FIREBOX_TLS_CERT"):
            modal.Sandbox.create(app=app, encrypted_ports=[8000])
    finally:
        broken.stop()

