"""The call channel: a call's inputs and outputs travel one WebSocket to the control plane, with
the same checks and errors as the HTTP routes, and the client goes by HTTP whenever the channel
cannot carry a request."""

from __future__ import annotations

import pytest
from apps import basic
from helpers import eventually, use_server
from other_workspace import other_workspace_env
from test_durability import remote_calls_stored
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from firebox import client as client_mod
from firebox import wire


def channel(server, token: str):
    url = "ws" + server.url.removeprefix("http") + "/v1/calls/ws"
    return connect(url, additional_headers={"Authorization": f"Bearer {token}"}, max_size=None)


def ask(ws, frame: bytes | dict) -> dict:
    ws.send(frame if isinstance(frame, bytes) else wire.pack(frame))
    return wire.unpack(ws.recv(timeout=30))


def test_remote_calls_go_by_the_channel_not_http(server, monkeypatch):
    use_server(monkeypatch, server)
    paths: list[str] = []
    original = client_mod.Client.request

    async def recording(self, method, path, **kwargs):
        paths.append(path)
        return await original(self, method, path, **kwargs)

    monkeypatch.setattr(client_mod.Client, "request", recording)
    with basic.app.run(show_logs=False):
        assert [basic.square.remote(i) for i in range(20)] == [i * i for i in range(20)]
        assert basic.square.spawn(7).get(timeout=30) == 49
        with pytest.raises(basic.CustomError, match="boom"):
            basic.fail.remote("boom")
    assert not [p for p in paths if p.startswith("/v1/calls")], paths
    # Their rows, written with their outputs in the background, are all stored and done.
    before = remote_calls_stored(server)[0]
    with basic.app.run(show_logs=False):
        for i in range(5):
            basic.square.remote(i)
    assert eventually(lambda: remote_calls_stored(server)[0] >= before + 5
                      and remote_calls_stored(server)[1] == 0)


def test_the_channel_answers_bad_frames_with_errors_and_stays_open(server):
    with channel(server, server.token) as ws:
        reply = ask(ws, b"\xc1 not msgpack")
        assert reply["status"] == 400 and reply["type"] == "InvalidError"
        reply = ask(ws, {"id": 1, "op": "launch", "body": {}})
        assert reply["id"] == 1 and reply["status"] == 400 and reply["type"] == "InvalidError"
        assert reply["error"] == ("Unknown call channel op 'launch'; "
                                  "use 'call', 'outputs' or 'ping'.")
        assert ask(ws, {"id": 4, "op": "ping", "body": {}}) == {"id": 4, "ok": {}}
        reply = ask(ws, {"id": 2, "op": "call", "body": {"call_id": "nope"}})
        assert reply["status"] == 422 and "call_id: call_id must look like" in reply["error"]
        reply = ask(ws, {"id": 3, "op": "call", "body": {"call_id": "fc-x", "function_id": "fu-x",
                                                        "kind": "remote", "inputs": []}})
        assert reply["status"] == 404 and reply["type"] == "NotFoundError"


def test_the_channel_keeps_workspaces_apart(server, monkeypatch):
    use_server(monkeypatch, server)
    with basic.app.run(show_logs=False):
        call = basic.square.spawn(3)
        assert call.get(timeout=30) == 9
        fid = basic.square._function_id
    other = other_workspace_env(server)["FIREBOX_TOKEN"]
    with channel(server, other) as ws:
        reply = ask(ws, {"id": 1, "op": "outputs", "call_id": call.object_id,
                         "body": {"after": 0, "wait": 0}})
        assert reply["status"] == 404 and reply["type"] == "NotFoundError"
        reply = ask(ws, {"id": 2, "op": "call", "body": {
            "call_id": "fc-other1", "function_id": fid, "kind": "remote",
            "inputs": [[0, wire.serialize(((2,), {}), "arguments")]]}})
        assert reply["status"] == 404 and reply["type"] == "NotFoundError"


def test_a_refused_token_is_refused_at_the_handshake(server):
    with pytest.raises(InvalidStatus):
        with channel(server, "not-a-token"):
            pass
