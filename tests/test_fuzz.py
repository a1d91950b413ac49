"""Malformed requests to every route of a real server get a 4xx, never a 500, a reset or a hang.

Hypothesis draws the requests: each route's method and path with ids of the caller's own
objects, of another workspace's and made up; query strings and JSON or msgpack bodies whose keys
are the fields the server's request models know, with values of every type (NaN and infinite
durations, huge numbers, wrong types, deep nesting) and bodies that are not JSON or msgpack at
all. The requests are sent together, so long polls that legitimately wait run side by side;
each must be answered within the longest poll the server holds, plus room.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import typing

import httpx
import msgpack
import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from other_workspace import other_workspace_env, run_python
from starlette.routing import Route, WebSocketRoute

from firebox.server.api import requests as rq

EXAMPLES = 3000
CONCURRENCY = 48
ANSWER_WITHIN = rq.MAX_WAIT + 15


def _routes() -> list[tuple[str, str]]:
    from firebox.server.api.app import API_ROUTES

    out = []
    for r in API_ROUTES:
        if isinstance(r, Route):
            out += [(m, r.path) for m in sorted(r.methods or ()) if m != "HEAD"]
        else:
            assert isinstance(r, WebSocketRoute)
    return out


def _field_names() -> list[str]:
    names: set[str] = set()
    for value in vars(rq).values():
        if isinstance(value, type) and issubclass(value, rq.BaseModel) and value is not rq.Body:
            names.update(value.model_fields)
    return sorted(names)


ROUTES = _routes()
FIELDS = _field_names()
PARAM = re.compile(r"\{(\w+)(?::\w+)?\}")

leaf = st.one_of(
    st.none(), st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.sampled_from([0, -1, 1, 2**31, 2**53 + 1]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([math.nan, math.inf, -math.inf, -0.0, 1e308, 1e-308]),
    st.text(max_size=40), st.binary(max_size=40),
    st.sampled_from(["", "x", "NaN", "fc-" + "a" * 21, "fc-x", "../../etc/passwd", "/",
                     "a" * 5000, "\x00", "0" * 64, "in-x-0"]),
)
value = st.recursive(leaf, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4),
), max_leaves=12)
known_map = st.dictionaries(st.sampled_from(FIELDS), value, max_size=6)
any_map = st.dictionaries(st.one_of(st.sampled_from(FIELDS), st.text(max_size=10)), value,
                          max_size=6)


raw_bodies = st.one_of(
    st.just(b""), st.binary(max_size=200), st.just(b"\xc1 not msgpack"),
    st.just(b"[" * 100_000 + b"]" * 100_000), st.just(b'{"a": ' * 5000 + b"1" + b"}" * 5000),
    st.just(b"NaN"), st.just(b'{"wait": NaN, "timeout": Infinity, "limit": -Infinity}'),
)


@st.composite
def bodies(draw: st.DrawFn) -> tuple[bytes, str]:
    kind = draw(st.sampled_from(["json", "msgpack", "msgpack", "raw", "deep"]))
    if kind == "raw":
        return draw(raw_bodies), draw(st.sampled_from(["application/json",
                                                       "application/x-msgpack", ""]))
    if kind == "deep":
        # arrays of one element inside each other, deeper than msgpack itself would pack
        return b"\x91" * draw(st.integers(100, 100_000)) + b"\xc0", "application/x-msgpack"
    body = draw(st.one_of(known_map, any_map, value))
    if kind == "json":
        return json.dumps(body, default=lambda b: b.hex()).encode(), "application/json"
    try:
        return msgpack.packb(body, use_bin_type=True), "application/x-msgpack"
    except (OverflowError, ValueError, TypeError):
        return b"\x80", "application/x-msgpack"


# Near-valid bodies: each route's own shape with some fields swapped for anything, so requests
# get past the first checks into the handlers. "$fn" and "$app" stand for the caller's ids.
PICKLED = b"\x80\x05\x95\x07\x00\x00\x00\x00\x00\x00\x00)}\x94\x86\x94."
SHAPES: dict[str, dict[str, typing.Any]] = {
    "/v1/calls": {"call_id": "fc-abcdefghijklmnop", "function_id": "$fn", "kind": "spawn",
                  "inputs": [[0, PICKLED]], "wait": 0.5},
    "/v1/calls/{call_id}/outputs": {"after": 0, "wait": 0.5},
    "/v1/queues/{ref}/put": {"values": [PICKLED], "partition": "p", "ttl": 60, "wait": 0.5},
    "/v1/queues/{ref}/get": {"n": 2, "partition": "p", "wait": 0.5},
    "/v1/queues/{ref}/items": {"after": 0, "wait": 0.5},
    "/v1/queues/{ref}/len": {"partition": "p", "total": False},
    "/v1/queues/{ref}/clear": {"all": True},
    "/v1/dicts/{ref}/put": {"items": [[PICKLED, PICKLED]], "skip_if_exists": False},
    "/v1/dicts/{ref}/get": {"key": PICKLED},
    "/v1/dicts/{ref}/entries": {"after": ""},
    "/v1/volumes/{ref}/commit": {"put": {"a/b": ["0" * 64, 1, 0o644, 1.0]}, "delete": ["c"]},
    "/v1/volumes/{ref}/list": {"path": "a", "recursive": True},
    "/v1/volumes/{ref}/remove": {"path": "a", "recursive": True},
    "/v1/volumes/{ref}/copy": {"src_paths": ["a"], "dst_path": "b", "recursive": True},
    "/v1/sandboxes": {"app_id": "$app", "args": ["true"], "timeout": 5, "cpu": 0.1,
                      "memory": 64, "tags": {"a": "b"}},
    "/v1/sandboxes/{sandbox_id}/wait": {"timeout": 0.5},
    "/v1/sandboxes/{sandbox_id}/exec": {"args": ["true"], "timeout": 5, "pty_size": [24, 80]},
    "/v1/sandboxes/{sandbox_id}/fs": {"op": "read", "path": "/etc/hostname"},
    "/v1/apps": {"name": "fuzz-made", "mode": "ephemeral"},
    "/v1/apps/{app_id}/functions": {"functions": [{"name": "g", "spec": {
        "kind": "function", "qualname": "g", "module": None, "serialized": "0" * 64,
        "cpu": 0.125, "memory": 128, "timeout": 10, "schedule": {"period": 60},
        "web": None, "secrets": [], "volumes": {}, "min_containers": 0}}]},
    "/v1/functions/{function_id}/variants": {"options": {"cpu": 0.25, "timeout": 5}},
    "/v1/functions/{function_id}/autoscaler": {"min_containers": 0, "scaledown_window": 10},
    "/v1/secrets": {"name": "fuzz-secret", "env": {"A": "b"}, "overwrite": True},
    "/v1/workspace": {"isolation": "gvisor"},
    "/v1/blobs/missing": {"digests": ["0" * 64]},
    "/v1/tunnels": {"port": 8000},
}


@st.composite
def near_valid(draw: st.DrawFn, template: str, ids: dict[str, str]) -> dict[str, typing.Any]:
    body = {k: (ids.get(v, v) if isinstance(v, str) else v)
            for k, v in SHAPES[template].items()}
    for key in draw(st.lists(st.sampled_from(sorted(body)), max_size=2, unique=True)):
        body[key] = draw(value)
    if draw(st.booleans()):
        body[draw(st.sampled_from(FIELDS))] = draw(value)
    return body


@st.composite
def fuzz_request(draw: st.DrawFn, ids: list[str], mine: dict[str, str]
                 ) -> dict[str, typing.Any]:
    method, template = draw(st.sampled_from(ROUTES))
    path = PARAM.sub(lambda m: draw(st.one_of(
        st.sampled_from(ids), st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_.%",
                                      min_size=1, max_size=30),
        st.just("0" * 64), st.just("65536"), st.just("-1"))), template)
    params = draw(st.dictionaries(
        st.sampled_from(["limit", "after", "follow", "name", "app", "app_id", "by", "since",
                         "path", "tag", "required_key", "x"]),
        st.one_of(st.text(max_size=12), st.sampled_from(["nan", "inf", "-5", "1e999", "abc",
                                                          "99999999999999999999"])),
        max_size=4))
    if template in SHAPES and method in ("POST", "PATCH") and draw(st.booleans()):
        body = draw(near_valid(template, mine))
        if template in ("/v1/apps", "/v1/apps/{app_id}/functions", "/v1/secrets",
                        "/v1/functions/{function_id}/variants", "/v1/workspace",
                        "/v1/functions/{function_id}/autoscaler", "/v1/blobs/missing"):
            content, ctype = json.dumps(body, default=lambda b: b.hex()).encode(), \
                "application/json"
        else:
            content, ctype = draw(bodies()) if not _packs(body) else (
                msgpack.packb(body, use_bin_type=True), "application/x-msgpack")
    elif method in ("POST", "PUT", "PATCH"):
        content, ctype = draw(bodies())
    else:
        content, ctype = b"", ""
    headers = {"content-type": ctype} if ctype else {}
    if draw(st.booleans()):
        headers["x-firebox-attempt"] = draw(st.sampled_from(["1", "x", "-1"]))
    return {"method": method, "url": path, "params": params, "content": content,
            "headers": headers}


def _packs(body: typing.Any) -> bool:
    try:
        msgpack.packb(body, use_bin_type=True)
    except (OverflowError, ValueError, TypeError):
        return False
    return True


def _collect(ids: list[str], mine: dict[str, str]) -> list[dict[str, typing.Any]]:
    drawn: list[dict[str, typing.Any]] = []

    @seed(20261203)
    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(fuzz_request(ids, mine))
    def draw(req: dict[str, typing.Any]) -> None:
        drawn.append(req)

    draw()
    return drawn


async def _send_all(url: str, token: str, reqs: list[dict[str, typing.Any]]
                    ) -> list[tuple[dict[str, typing.Any], int | str]]:
    limits = httpx.Limits(max_connections=CONCURRENCY)
    gate = asyncio.Semaphore(CONCURRENCY)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=ANSWER_WITHIN,
                                 headers={"Authorization": f"Bearer {token}"}) as client:
        async def one(req: dict[str, typing.Any]) -> tuple[dict[str, typing.Any], int | str]:
            async with gate:
                try:
                    response = await client.request(**req)
                    return req, response.status_code
                except httpx.TimeoutException:
                    return req, "no answer"
                except httpx.TransportError as exc:
                    return req, f"connection failed: {type(exc).__name__}"
        return await asyncio.gather(*(one(r) for r in reqs))


SETUP = """
import firebox
d = firebox.Dict.from_name("fuzz-dict", create_if_missing=True); d["k"] = 1
q = firebox.Queue.from_name("fuzz-queue", create_if_missing=True); q.put(1)
v = firebox.Volume.from_name("fuzz-vol", create_if_missing=True); v.listdir("/")
app = firebox.App("fuzz-app")
@app.function(serialized=True)
def f(x):
    return x
with app.run(show_logs=False):
    call = f.spawn(1)
    call.get(timeout=60)
    print(" ".join([d.object_id, q.object_id, v.object_id, app.app_id, f.object_id,
                    call.object_id]))
"""


@pytest.mark.timeout(600)
def test_malformed_requests_get_4xx_never_500_or_a_hang(server):
    own = server.env() | {"FIREBOX_SERVER_URL": server.url, "FIREBOX_TOKEN": server.token}
    made = run_python(own, SETUP)
    assert made.returncode == 0, made.stderr
    theirs = made.stdout.split()
    other = other_workspace_env(server)
    made = run_python(other, SETUP)
    assert made.returncode == 0, made.stderr
    mine = made.stdout.split()
    reqs = _collect(theirs + mine + ["fuzz-dict", "fuzz-queue", "fuzz-vol", "fuzz-app"],
                    {"$app": mine[3], "$fn": mine[4]})
    answers = asyncio.run(_send_all(server.url, other["FIREBOX_TOKEN"], reqs))
    bad = [(r["method"], r["url"], r["params"], r["content"][:200], status)
           for r, status in answers if not isinstance(status, int) or status >= 500]
    assert not bad, f"{len(bad)} of {len(reqs)} requests failed: {bad[:10]}"
    # The server still serves everyone, timers included.
    again = run_python(own, """
import queue, time, firebox
q = firebox.Queue.from_name("fuzz-after", create_if_missing=True)
t = time.monotonic()
try:
    q.get(timeout=1.0)
except queue.Empty:
    pass
waited = time.monotonic() - t
assert 0.9 < waited < 5, waited
print("ok")
""")
    assert again.returncode == 0 and "ok" in again.stdout, again.stderr


@st.composite
def channel_frame(draw: st.DrawFn, ids: list[str], mine: dict[str, str]) -> bytes:
    kind = draw(st.sampled_from(["raw", "map", "near"]))
    if kind == "raw":
        return draw(raw_bodies)
    frame = {"id": draw(value), "op": draw(st.sampled_from(["call", "outputs", "ping", "x"])),
             "call_id": draw(st.one_of(st.sampled_from(ids), value)),
             "retried": draw(value)}
    if kind == "near":
        frame["body"] = draw(near_valid(draw(st.sampled_from(
            ["/v1/calls", "/v1/calls/{call_id}/outputs"])), mine))
    else:
        frame["body"] = draw(st.one_of(known_map, value))
    return msgpack.packb(frame, use_bin_type=True) if _packs(frame) else b"\x80"


@pytest.mark.timeout(300)
def test_malformed_call_channel_frames_get_errors_never_500(server):
    import websockets.sync.client as ws_client

    other = other_workspace_env(server)
    made = run_python(other, SETUP)
    assert made.returncode == 0, made.stderr
    mine = made.stdout.split()
    frames: list[bytes] = []

    @seed(20261204)
    @settings(max_examples=600, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(channel_frame(mine, {"$app": mine[3], "$fn": mine[4]}))
    def draw(frame: bytes) -> None:
        frames.append(frame)

    draw()
    url = server.url.replace("http://", "ws://") + "/v1/calls/ws"
    with ws_client.connect(url, additional_headers={
            "Authorization": f"Bearer {other['FIREBOX_TOKEN']}"}, max_size=None) as ws:
        for frame in frames:
            ws.send(frame)
        ws.send(msgpack.packb({"id": "last", "op": "ping", "body": {}}))
        statuses = []  # replies come as they are ready: a long poll's after later ones
        while len(statuses) < len(frames) + 1:
            reply = msgpack.unpackb(ws.recv(timeout=ANSWER_WITHIN), raw=False)
            statuses.append(reply.get("status"))
    assert not [s for s in statuses if s is not None and s >= 500], statuses
