"""One workspace never reaches into another, and what a tenant sends cannot break the server.

The main workspace's token is the operator's (the server writes it on its own machine); the
"other" workspace is a tenant with a plain token, as `firebox token create` makes them.
"""

from __future__ import annotations

import asyncio
import json
import math
import sqlite3
import time

import httpx
import msgpack
import pytest
from other_workspace import other_workspace_env, run_cli, run_python

from firebox import wire

ARGS = wire.serialize(((), {}), "arguments")

A_APP = """
import firebox, json, time
app = firebox.App("tenant-a")
@app.function(serialized=True)
def secret_value(x):
    time.sleep(x)
    return "a's result"
app.deploy()
done = secret_value.spawn(0)
assert done.get(timeout=60) == "a's result"
pending = secret_value.spawn(4)
d = firebox.Dict.from_name("tenant-a-dict", create_if_missing=True); d["k"] = "a's value"
q = firebox.Queue.from_name("tenant-a-queue", create_if_missing=True); q.put("a's item")
v = firebox.Volume.from_name("tenant-a-vol", create_if_missing=True)
with v.batch_upload() as b:
    import io
    b.put_file(io.BytesIO(b"a's file"), "f.txt")
from firebox import _sync
s = firebox.Secret.from_dict({"A_TOKEN": "a's secret"}); sid = _sync.run(s._resolve())
print(json.dumps({"done": done.object_id, "pending": pending.object_id,
                  "function": secret_value.object_id, "app": app.app_id, "dict": d.object_id,
                  "queue": q.object_id, "volume": v.object_id, "secret": sid}))
"""

B_APP = """
import firebox, json
app = firebox.App("tenant-b")
@app.function(serialized=True)
def inject():
    return "b's bytes"
app.deploy()
print(json.dumps({"function": inject.object_id, "app": app.app_id}))
"""


def _json_out(proc) -> dict:
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def tenants(server):
    a_env = server.env() | {"FIREBOX_SERVER_URL": server.url, "FIREBOX_TOKEN": server.token}
    b_env = other_workspace_env(server)
    a = _json_out(run_python(a_env, A_APP))
    b = _json_out(run_python(b_env, B_APP))
    return server, a_env, b_env, a, b


def _post(server, token: str, path: str, body: dict | None = None, **kw) -> httpx.Response:
    return httpx.post(server.url + path, content=msgpack.packb(body or {}, use_bin_type=True),
                      headers={"Authorization": f"Bearer {token}",
                               "content-type": "application/x-msgpack"}, timeout=60, **kw)


def _outputs(resp: httpx.Response) -> list:
    return msgpack.unpackb(resp.content, raw=False).get("outputs") or []


# ---- calls -------------------------------------------------------------------------------


def test_a_call_id_is_only_usable_by_the_workspace_that_made_it(tenants):
    server, a_env, b_env, a, b = tenants
    btoken = b_env["FIREBOX_TOKEN"]
    for kind in ("spawn", "remote", "map"):
        # Reading A's finished call by sending inputs under its id, with B's own function.
        resp = _post(server, btoken, "/v1/calls", {
            "call_id": a["done"], "function_id": b["function"], "kind": kind,
            "inputs": [[0, ARGS]], "wait": 2})
        assert resp.status_code == 404, (kind, resp.text)
        assert b"a's result" not in resp.content
        # Putting B's input (and so B's output) into A's pending call.
        resp = _post(server, btoken, "/v1/calls", {
            "call_id": a["pending"], "function_id": b["function"], "kind": kind,
            "inputs": [[1, ARGS]], "wait": 0})
        assert resp.status_code == 404, (kind, resp.text)
    assert _post(server, btoken, f"/v1/calls/{a['done']}/outputs", {"wait": 0}).status_code == 404
    assert _post(server, btoken, f"/v1/calls/{a['pending']}/cancel").status_code == 404
    got = run_python(a_env, f"""
import firebox
call = firebox.FunctionCall.from_id({a['pending']!r})
print(repr(call.get(timeout=60)))
""")
    assert got.returncode == 0, got.stderr
    assert got.stdout.strip() == repr("a's result")


def test_a_call_of_one_function_cannot_take_inputs_for_another(tenants):
    server, a_env, b_env, a, b = tenants
    other = run_python(b_env, """
import firebox
app = firebox.App("tenant-b-second")
@app.function(serialized=True)
def other():
    return 1
app.deploy()
call = firebox.Function.from_name("tenant-b", "inject").spawn()
call.get(timeout=60)
print(other.object_id, call.object_id)
""")
    assert other.returncode == 0, other.stderr
    fid, call_id = other.stdout.split()
    resp = _post(server, b_env["FIREBOX_TOKEN"], "/v1/calls", {
        "call_id": call_id, "function_id": fid, "kind": "spawn", "inputs": [[1, ARGS]]})
    assert resp.status_code == 400 and "another function" in resp.json()["error"]


def test_a_remote_call_tagged_by_another_key_is_not_run_at_once(tenants):
    """A call id tagged with B's key for A's id space: the server checks who owns it."""
    server, _a_env, b_env, a, b = tenants
    lookup = httpx.get(server.url + "/v1/functions/lookup",
                       params={"app": "tenant-b", "name": "inject"},
                       headers={"Authorization": f"Bearer {b_env['FIREBOX_TOKEN']}"}).json()
    forged = wire.new_call_id(lookup["call_key"])  # B's own, valid for B's function
    resp = _post(server, b_env["FIREBOX_TOKEN"], "/v1/calls", {
        "call_id": forged, "function_id": b["function"], "kind": "remote",
        "inputs": [[0, ARGS]], "wait": 30})
    assert resp.status_code == 200
    assert [o[2] for o in _outputs(resp)] == [wire.SUCCESS]
    # A's function's key is never given to B.
    resp = httpx.get(server.url + "/v1/functions/lookup",
                     params={"app": "tenant-a", "name": "secret_value"},
                     headers={"Authorization": f"Bearer {b_env['FIREBOX_TOKEN']}"})
    assert resp.status_code == 404 and "call_key" not in resp.text


def test_a_replayed_remote_call_id_breaks_nobody_elses_outputs(own_server):
    """A client sending a finished remote call's id again as new, after a restart made the
    server forget it, costs only that call: the commit it shares with a map's outputs holds."""
    env = own_server.env() | {"FIREBOX_SERVER_URL": own_server.url,
                              "FIREBOX_TOKEN": own_server.token}
    deploy = run_python(env, B_APP)
    assert deploy.returncode == 0, deploy.stderr
    first = run_python(env, """
import firebox
from firebox import _sync, client, wire
f = firebox.Function.from_name("tenant-b", "inject")
f.remote()
c = client.current()
call_id = wire.new_call_id(c.call_keys[f.object_id])
body = {"call_id": call_id, "function_id": f.object_id, "kind": "remote",
        "inputs": [[0, wire.serialize(((), {}))]], "wait": 30}
print(wire.pack(body).hex())
assert _sync.run(c.request("POST", "/v1/calls", packed=body))["outputs"]
""")
    assert first.returncode == 0, first.stderr
    own_server.stop()
    own_server.start()
    out = run_python(env, f"""
import asyncio, firebox
from firebox import _sync, client, wire
body = wire.unpack(bytes.fromhex({first.stdout.split()[0]!r}))
app = firebox.App("mapper")
@app.function(serialized=True)
def double(x):
    return 2 * x
async def replay():
    c = client.current()
    for _ in range(20):
        await c.request("POST", "/v1/calls", packed=body)
        await asyncio.sleep(0.02)
with app.run(show_logs=False):
    replays = asyncio.run_coroutine_threadsafe(replay(), _sync.loop())
    assert sum(double.map(range(300))) == 2 * sum(range(300))
    replays.result(timeout=60)
print("ok")
""")
    assert out.returncode == 0, out.stderr
    assert "ok" in out.stdout


# ---- other objects by id -----------------------------------------------------------------


def test_every_object_of_another_workspace_is_not_found(tenants):
    server, _a_env, b_env, a, _b = tenants
    token = b_env["FIREBOX_TOKEN"]
    h = {"Authorization": f"Bearer {token}"}
    checks = [
        ("GET", f"/v1/dicts/{a['dict']}"), ("POST", f"/v1/dicts/{a['dict']}/len"),
        ("POST", f"/v1/dicts/{a['dict']}/entries"), ("DELETE", f"/v1/dicts/{a['dict']}"),
        ("GET", f"/v1/queues/{a['queue']}"), ("POST", f"/v1/queues/{a['queue']}/len"),
        ("POST", f"/v1/queues/{a['queue']}/clear"), ("DELETE", f"/v1/queues/{a['queue']}"),
        ("GET", f"/v1/volumes/{a['volume']}"), ("GET", f"/v1/volumes/{a['volume']}/manifest"),
        ("GET", f"/v1/volumes/{a['volume']}/file?path=f.txt"),
        ("DELETE", f"/v1/volumes/{a['volume']}"),
        ("GET", "/v1/secrets/" + "tenant-a-none"),
        ("GET", f"/v1/apps/{a['app']}/history"), ("GET", f"/v1/apps/{a['app']}/logs"),
        ("GET", f"/v1/apps/{a['app']}/stats"), ("POST", f"/v1/apps/{a['app']}/heartbeat"),
        ("POST", f"/v1/apps/{a['app']}/stop"),
        ("GET", "/v1/functions/lookup?app=tenant-a&name=secret_value"),
        ("GET", f"/v1/functions/lookup?app_id={a['app']}&name=secret_value"),
        ("POST", f"/v1/calls/{a['done']}/cancel"),
    ]
    for method, path in checks:
        resp = (_post(server, token, path) if method == "POST"
                else httpx.request(method, server.url + path, headers=h, timeout=30))
        assert resp.status_code == 404, (method, path, resp.status_code, resp.text)
        assert b"a's" not in resp.content
    posts = [
        (f"/v1/dicts/{a['dict']}/get", {"key": wire.serialize("k")}),
        (f"/v1/dicts/{a['dict']}/put", {"items": [[wire.serialize("k"), ARGS]]}),
        (f"/v1/queues/{a['queue']}/get", {"n": 1, "wait": 0}),
        (f"/v1/queues/{a['queue']}/put", {"values": [ARGS]}),
        (f"/v1/volumes/{a['volume']}/list", {"path": ""}),
        (f"/v1/volumes/{a['volume']}/commit", {"delete": ["f.txt"]}),
        (f"/v1/apps/{a['app']}/functions", None),
    ]
    for path, body in posts:
        if body is None:
            resp = httpx.post(server.url + path, headers=h, json={"functions": [
                {"name": "x", "spec": {"qualname": "x", "serialized": "0" * 64}}]})
        else:
            resp = _post(server, token, path, body)
        assert resp.status_code == 404, (path, resp.status_code, resp.text)
    for path, body in ((f"/v1/functions/{a['function']}/variants", {"options": {"cpu": 1}}),
                       (f"/v1/functions/{a['function']}/autoscaler", {"min_containers": 1})):
        resp = httpx.post(server.url + path, headers=h, json=body)
        assert resp.status_code == 404, (path, resp.status_code, resp.text)


def test_a_function_cannot_name_another_workspaces_secret_volume_or_code(tenants):
    server, a_env, b_env, a, b = tenants
    spec = json.loads(run_python(a_env, f"""
import json, sqlite3
print(json.dumps(json.loads(sqlite3.connect({str(server.state_dir / 'firebox.db')!r})
      .execute("select spec from functions where id = ?", ({a['function']!r},))
      .fetchone()[0])))
""").stdout)
    h = {"Authorization": f"Bearer {b_env['FIREBOX_TOKEN']}"}
    own = {"qualname": "inject", "serialized": None, "module": "m"}
    cases = [
        ({**own, "secrets": [a["secret"]]}, 404, "secret"),
        ({**own, "volumes": {"/data": a["volume"]}}, 404, "volume"),
        ({**own, "serialized": spec["serialized"], "module": None}, 400, "not uploaded"),
    ]
    for bad, status, word in cases:
        resp = httpx.post(server.url + f"/v1/apps/{b['app']}/functions", headers=h,
                          json={"functions": [{"name": "steal", "spec": bad}]})
        assert resp.status_code == status, (bad, resp.text)
        assert word in resp.json()["error"]


# ---- isolation is the operator's ---------------------------------------------------------


def test_a_tenant_cannot_lower_isolation_below_the_servers(tenants):
    server, a_env, b_env, _a, _b = tenants
    out = run_python(b_env, """
import firebox
app = firebox.App("tenant-b-process")
@app.function(serialized=True, isolation="process")
def read_key():
    return open("secrets.key").read()
with app.run(show_logs=False):
    read_key.remote()
""")
    assert out.returncode != 0
    assert "AuthError" in out.stderr and "floor ('namespaces')" in out.stderr
    assert "firebox token create --admin" in out.stderr
    shown = run_cli(b_env, "workspace", "set", "--isolation", "process")
    assert shown.returncode != 0 and "floor" in shown.stderr
    # Asking for more is anyone's right; the operator may ask for less.
    assert run_cli(b_env, "workspace", "set", "--isolation", "namespaces").returncode == 0
    assert run_cli(b_env, "workspace", "set", "--isolation", "default").returncode == 0
    out = run_python(a_env, """
import firebox
app = firebox.App("operator-process")
@app.function(serialized=True, isolation="process")
def mode():
    import os
    return os.environ["FIREBOX_ISOLATION"]
with app.run(show_logs=False):
    print(mode.remote())
""")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "process"


def test_a_raised_floor_applies_to_functions_registered_below_it(tmp_path):
    from conftest import ServerProcess

    srv = ServerProcess(tmp_path, extra_env={"FIREBOX_ISOLATION": "process"})
    srv.start()
    try:
        env = other_workspace_env(srv)
        deployed = run_python(env, """
import firebox
app = firebox.App("weak")
@app.function(serialized=True, isolation="process")
def f():
    return 1
app.deploy()
print(f.remote())
""")
        assert deployed.returncode == 0, deployed.stderr
        srv.stop()
        srv.extra_env = {"FIREBOX_ISOLATION": "namespaces"}
        srv.start()
        out = run_python(other_workspace_env(srv), """
import firebox
firebox.Function.from_name("weak", "f").remote()
""")
        assert out.returncode != 0
        assert "floor ('namespaces')" in out.stderr
    finally:
        srv.stop()


# ---- a bad spec never poisons the database -----------------------------------------------

BAD_SPECS = [
    {"schedule": "every day"}, {"schedule": ["0 9 * * *"]}, {"schedule": {"cron": "nope"}},
    {"web": "fastapi"}, {"web": ["asgi"]}, {"web": {"type": "web_server"}},
    {"secrets": 5}, {"min_containers": "two"}, {"timeout": math.nan}, {"cpu": -1},
    {"methods": ["a"]}, {"gpu": "H100"}, {"retries": {"max_retries": 99}},
    {"scaledown_window": 1e9}, {"memory": 1 << 40}, {"isolation": "chroot"},
]


def test_bad_specs_are_refused_and_never_stored(own_server):
    env = own_server.env() | {"FIREBOX_SERVER_URL": own_server.url,
                              "FIREBOX_TOKEN": own_server.token}
    made = _json_out(run_python(env, B_APP))
    h = {"Authorization": f"Bearer {own_server.token}"}
    good = {"kind": "function", "qualname": "inject", "module": "m"}
    for bad in BAD_SPECS:
        resp = httpx.post(own_server.url + f"/v1/apps/{made['app']}/functions", headers=h,
                          content=json.dumps({"functions": [{"name": "bad",
                                                             "spec": good | bad}]}),
                          timeout=30)
        assert resp.status_code == 422, (bad, resp.status_code, resp.text)
        error = resp.json()["error"]
        assert "The spec of function 'bad' is not valid" in error
        assert next(iter(bad)) in error, (bad, error)
    own_server.stop()
    rows = sqlite3.connect(own_server.state_dir / "firebox.db").execute(
        "select name from functions").fetchall()
    assert rows == [("inject",)]
    own_server.start()  # and it starts again
    out = run_python(env, "import firebox; print(firebox.Function.from_name('tenant-b', "
                          "'inject').remote())")
    assert out.returncode == 0 and "b's bytes" in out.stdout, out.stderr


def test_a_bad_stored_row_stops_only_its_app(own_server):
    env = own_server.env() | {"FIREBOX_SERVER_URL": own_server.url,
                              "FIREBOX_TOKEN": own_server.token}
    _json_out(run_python(env, B_APP))
    broken = _json_out(run_python(env, B_APP.replace("tenant-b", "tenant-broken")))
    own_server.stop()
    db = sqlite3.connect(own_server.state_dir / "firebox.db")
    spec = json.loads(db.execute("select spec from functions where id = ?",
                                 (broken["function"],)).fetchone()[0])
    spec["schedule"] = "every day"
    spec["web"] = ["x"]
    db.execute("update functions set spec = ? where id = ?",
               (json.dumps(spec), broken["function"]))
    db.commit()
    db.close()
    own_server.start()
    out = run_python(env, "import firebox; print(firebox.Function.from_name('tenant-b', "
                          "'inject').remote())")
    assert out.returncode == 0 and "b's bytes" in out.stdout, out.stderr
    listed = own_server.cli("app", "list")
    assert listed.returncode == 0
    line = next(x for x in listed.stdout.splitlines() if "tenant-broken" in x)
    assert "stopped" in line
    history = own_server.cli("app", "history", "tenant-broken", "--events")
    assert "failed" in history.stdout and "schedule" in history.stdout
    assert "Application startup failed" not in own_server.log.read_text()


# ---- durations are numbers ---------------------------------------------------------------


def test_nan_infinite_and_negative_durations_are_refused(tenants):
    server, a_env, b_env, a, b = tenants
    token = b_env["FIREBOX_TOKEN"]
    queue = run_python(b_env, """
import firebox
q = firebox.Queue.from_name("tenant-b-queue", create_if_missing=True)
print(q.object_id)
""")
    assert queue.returncode == 0, queue.stderr
    qid = queue.stdout.strip()
    requests = [
        (f"/v1/queues/{qid}/get", {"wait": math.nan}),
        (f"/v1/queues/{qid}/put", {"values": [ARGS], "wait": math.inf}),
        (f"/v1/queues/{qid}/items", {"wait": -1.0}),
        (f"/v1/calls/{a['done']}/outputs", {"wait": math.nan}),
        ("/v1/calls", {"call_id": "fc-abcdefghijkl", "function_id": b["function"],
                       "kind": "spawn", "inputs": [[0, ARGS]], "wait": math.nan}),
        ("/v1/sandboxes/sb-none/wait", {"timeout": math.nan}),
    ]

    async def flood() -> list[int]:
        async with httpx.AsyncClient(base_url=server.url, timeout=20,
                                     headers={"Authorization": f"Bearer {token}",
                                              "content-type": "application/x-msgpack"}) as c:
            sent = [c.post(path, content=msgpack.packb(body, use_bin_type=True))
                    for path, body in requests for _ in range(20)]
            return [r.status_code for r in await asyncio.gather(*sent)]

    started = time.monotonic()
    statuses = asyncio.run(flood())
    assert set(statuses) == {422}, statuses
    assert time.monotonic() - started < 10
    resp = httpx.post(server.url + f"/v1/functions/{b['function']}/autoscaler",
                      headers={"Authorization": f"Bearer {token}",
                               "content-type": "application/json"},
                      content=b'{"scaledown_window": NaN}')
    assert resp.status_code == 422
    # Everyone's timers still keep time.
    timed = run_python(a_env, """
import queue, time, firebox
q = firebox.Queue.from_name("tenant-a-timers", create_if_missing=True)
t = time.monotonic()
try:
    q.get(timeout=2)
except queue.Empty:
    pass
print(time.monotonic() - t)
""")
    assert timed.returncode == 0, timed.stderr
    assert 1.9 < float(timed.stdout) < 5
