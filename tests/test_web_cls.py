"""Web endpoints on class methods and ASGI lifespans, with real HTTP against a real server."""

from __future__ import annotations

import concurrent.futures
import secrets

import httpx
import pytest
from apps import web_cls
from helpers import eventually
from websockets.sync.client import connect

import firebox
from firebox.exception import InvalidError


@pytest.fixture(scope="module")
def running(server):
    with web_cls.app.run(show_logs=False):
        yield web_cls


def _containers(server, app_id: str) -> int:
    apps = httpx.get(f"{server.url}/v1/apps", headers={"Authorization": f"Bearer {server.token}"})
    return next(a["containers"] for a in apps.json()["apps"] if a["app_id"] == app_id)


def test_web_methods_are_served_by_the_class_containers(server, running):
    assert _containers(server, running.app.app_id) == 0
    model = running.Model()
    url = model.predict.get_web_url()
    assert url == f"http://main--test-web-cls-model-predict-dev.localhost:{server.port}"
    replies = [httpx.post(url, json={"x": i}, timeout=120) for i in range(3)]
    assert [r.json()["y"] for r in replies] == [0, 30, 60]  # weights set up by @enter
    about = httpx.get(model.about.get_web_url(), params={"who": "me"}, timeout=120).json()
    assert model.about.get_web_url().startswith("http://main--test-web-cls-about-dev.localhost:")
    assert about["hello"] == "me" and about["scale"] == 3
    # The web methods and the remote method share the class's containers, and each container
    # ran its enter hook once.
    embedded = model.embed.remote(2)
    assert embedded["y"] == 60
    for seen in [r.json() for r in replies] + [about, embedded]:
        assert seen["loads"] == 1, seen
    assert model.embed.get_web_url() is None


def test_default_instance_serves_web_methods_and_remote_calls_in_one_pool(running):
    key = f"hold-{secrets.token_hex(4)}"
    url = running.Solo().hold.get_web_url()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        held = pool.submit(httpx.get, url, params={"key": key}, timeout=180)
        container = eventually(lambda: running.signals.get(key), timeout=120)
        assert container
        try:
            where = running.Solo(name="solo").where.remote()
        finally:
            running.signals[f"{key}-done"] = True
        # max_containers=1: the remote call shares the held container only in the same pool.
        assert where == container
        assert held.result().json() == container


def test_web_methods_are_not_called_with_remote(running):
    with pytest.raises(InvalidError, match="web function"):
        running.Model().predict.remote({"x": 1})
    with pytest.raises(InvalidError, match="needs an instance"):
        running.Model.predict.get_web_url()


def test_each_web_method_has_its_own_settings(running):
    refused = httpx.get(running.Model().private.get_web_url(), timeout=60)
    assert refused.status_code == 401 and "Modal-Key" in refused.text
    assert httpx.get(running.Model().about.get_web_url(), timeout=120).status_code == 200


def test_pool_scales_with_concurrent_requests_on_the_class(running):
    key = f"barrier-{secrets.token_hex(4)}"
    url = running.Model().barrier.get_web_url()
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        replies = list(pool.map(
            lambda _: httpx.get(url, params={"key": key, "n": 4}, timeout=120), range(4)
        ))
    containers = [r.json()["container"] for r in replies]
    assert "gave up" not in containers
    assert len(set(containers)) >= 2  # max_inputs=2 on the class: four at once needed two


def test_asgi_lifespan_runs_at_container_start_and_stop(running):
    url = running.Servers().api.get_web_url()
    reply = httpx.get(url + "/state", timeout=120).json()
    # The state the lifespan startup yielded reached the request.
    assert reply["started_in"] == reply["container"]
    # The container stops once idle (scaledown_window=2), running the lifespan shutdown.
    assert eventually(lambda: running.signals.get(f"shutdown-{reply['container']}"),
                      timeout=60)


def test_websocket_to_a_web_method(running):
    url = "ws" + running.Servers().api.get_web_url().removeprefix("http") + "/echo"
    with connect(url, open_timeout=120, close_timeout=10) as ws:
        ws.send("hi")
        assert ws.recv(timeout=60) == "echo hi"


def test_wsgi_and_web_server_methods(running):
    servers = running.Servers()
    assert httpx.get(servers.legacy.get_web_url() + "/x?a=1", timeout=120).text == "wsgi GET a=1"
    served = httpx.get(servers.files.get_web_url() + "/web_cls.py", timeout=120)
    assert served.status_code == 200 and "Web endpoints on class methods" in served.text


def test_failing_lifespan_startup_fails_the_container_with_its_reason(running):
    reply = httpx.get(running.broken.get_web_url(), timeout=120)
    assert reply.status_code == 502
    assert "lifespan startup failed" in reply.text
    assert "the model file is missing" in reply.text


def test_container_dying_mid_request_says_to_send_it_again(running):
    reply = httpx.get(running.Model().crash.get_web_url(), timeout=120)
    assert reply.status_code == 502
    assert "exited with code 3" in reply.text
    assert "send the request again" in reply.text
    assert "retries" not in reply.text


def test_deployed_class_web_method_by_name(server):
    deployed = server.cli("deploy", "tests/apps/web_cls_deployed.py", timeout=120)
    assert deployed.returncode == 0, deployed.stderr
    url = f"http://main--test-web-cls-deployed-greeter-greet.localhost:{server.port}"
    assert f"Greeter.greet => {url}" in deployed.stdout
    greeter = firebox.Cls.from_name("test-web-cls-deployed", "Greeter")()
    assert greeter.greet.get_web_url() == url
    assert httpx.get(url, params={"who": "there"}, timeout=120).json() == "deployed there"
    assert server.cli("app", "stop", "test-web-cls-deployed").returncode == 0
    assert httpx.get(url, timeout=30).status_code == 404


def test_deployed_web_methods_are_served_after_a_restart(own_server):
    deployed = own_server.cli("deploy", "tests/apps/web_cls_deployed.py", timeout=120)
    assert deployed.returncode == 0, deployed.stderr
    url = f"http://main--test-web-cls-deployed-greeter-greet.localhost:{own_server.port}"
    own_server.kill()
    own_server.start()
    assert httpx.get(url, params={"who": "again"}, timeout=120).json() == "deployed again"


def _define(body):
    app = firebox.App("test-web-cls-invalid")
    return app.cls(**body.pop("options", {}))(type("Bad", (), body))


def test_class_web_methods_refuse_what_they_cannot_do():
    serve = firebox.fastapi_endpoint()
    with pytest.raises(InvalidError, match="parameter 'k' needs a default"):
        _define({"__annotations__": {"k": int}, "k": firebox.parameter(),
                 "go": serve(lambda self: 1)})
    with pytest.raises(InvalidError, match="cannot be retried"):
        _define({"options": {"retries": 2}, "go": serve(lambda self: 1)})
    with pytest.raises(InvalidError, match="cannot also be @method"):
        _define({"go": serve(firebox.method()(lambda self: 1))})

    def stream(self):
        yield 1

    with pytest.raises(InvalidError, match="cannot be a generator"):
        _define({"go": serve(stream)})
