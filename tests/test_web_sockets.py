"""WebSockets through the ingress to web functions, with a real client against a real server."""

from __future__ import annotations

import json
import secrets
import urllib.parse

import httpx
import pytest
from apps import web_sockets
from helpers import eventually
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect


@pytest.fixture(scope="module")
def running(server):
    with web_sockets.app.run(show_logs=False):
        yield web_sockets


def _ws(url: str, path: str = "") -> str:
    return "ws" + url.removeprefix("http") + path


def _open(url: str, **kwargs):
    return connect(url, open_timeout=120, close_timeout=10, **kwargs)


def _containers(server, app_id: str) -> int:
    apps = httpx.get(f"{server.url}/v1/apps", headers={"Authorization": f"Bearer {server.token}"})
    return next(a["containers"] for a in apps.json()["apps"] if a["app_id"] == app_id)


def _closed_by(ws) -> tuple[int, str]:
    """The code and reason of the close the server sent, after reading until it came."""
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            ws.recv(timeout=120)
    assert closed.value.rcvd is not None, "the connection dropped without a close frame"
    return closed.value.rcvd.code, closed.value.rcvd.reason


def test_first_socket_waits_for_a_container_and_echoes_text_and_bytes(server, running):
    assert _containers(server, running.app.app_id) == 0
    base = running.chat.get_web_url()
    with _open(_ws(base, "/echo?room=7"), subprotocols=["chat.v1"]) as ws:
        assert ws.subprotocol == "chat.v1"
        hello = json.loads(ws.recv(timeout=120))
        assert hello["container"].startswith("ta-")
        assert hello["path"] == f"{urllib.parse.urlsplit(base).path}/echo"
        assert hello["query"] == "room=7"
        ws.send("hi")
        assert ws.recv(timeout=60) == "echo hi"
        ws.send(b"\x00\x01\x02abc")
        assert ws.recv(timeout=60) == b"cba\x02\x01\x00"
        ws.send("again")
        assert ws.recv(timeout=60) == "echo again"


def test_app_close_code_reaches_the_client(running):
    with _open(_ws(running.chat.get_web_url(), "/echo")) as ws:
        ws.recv(timeout=120)
        ws.send("close")
        assert _closed_by(ws) == (4001, "asked to close")


def test_client_going_away_reaches_the_app(running):
    key = f"gone-{secrets.token_hex(4)}"
    with _open(_ws(running.chat.get_web_url(), f"/watched/{key}")) as ws:
        ws.send("still here")
    assert eventually(lambda: running.seen.get(key), timeout=60) == "disconnected 1000"


def test_container_dying_mid_socket_closes_it_with_1011(running):
    base = running.chat.get_web_url()
    with _open(_ws(base, "/echo")) as ws:
        ws.recv(timeout=120)
        ws.send("crash")
        code, reason = _closed_by(ws)
    assert code == 1011
    assert "exited with code 5" in reason
    with _open(_ws(base, "/echo")) as ws:  # the next socket gets a new container
        ws.recv(timeout=120)
        ws.send("after")
        assert ws.recv(timeout=60) == "echo after"


def test_app_failing_before_accept_refuses_the_handshake(running):
    with pytest.raises(InvalidStatus) as refused:
        _open(_ws(running.chat.get_web_url(), "/refuse"))
    assert refused.value.response.status_code == 500
    assert b"no sockets for you" in refused.value.response.body


def test_message_over_the_limit_closes_with_1009(running):
    with _open(_ws(running.chat.get_web_url(), "/echo"), max_size=None) as ws:
        ws.recv(timeout=120)
        ws.send(b"x" * (16 * 1024 * 1024 + 1))  # the server's default limit is 16 MiB
        code, reason = _closed_by(ws)
    assert code == 1009 and "limited to" in reason


def test_unknown_url_refuses_the_handshake_with_404(server):
    with pytest.raises(InvalidStatus) as refused:
        _open(f"ws://127.0.0.1:{server.port}/web/main/no-such-socket")
    assert refused.value.response.status_code == 404


def test_web_server_socket_is_proxied_to_its_port(running):
    with _open(_ws(running.port_server.get_web_url(), "/room?x=1")) as ws:
        ws.send("hi")
        assert ws.recv(timeout=60) == "/room?x=1 hi"
        ws.send("bye")
        assert _closed_by(ws) == (4002, "the server says bye")
