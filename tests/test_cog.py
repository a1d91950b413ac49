"""Cog packages deployed unchanged (`firebox deploy DIR`), served by Cog's own server in their
containers: called through Cog's HTTP API at the class's web URL, and through Replicate's API
with the official `replicate` client pointed at the firebox server. The packages are in
tests/packages/cog/, written like replicate/cog-examples (CPU, offline)."""

from __future__ import annotations

import base64
import re
import threading
import time
from pathlib import Path

import httpx
import pytest
import replicate
from conftest import proxy_headers
from other_workspace import other_workspace_env
from replicate.exceptions import ModelError, ReplicateError

PACKAGES = Path(__file__).parent / "packages" / "cog"
MODELS = ("hello", "constraints", "canary", "files", "function", "setup_fails", "concurrent",
          "structured", "build_section")
pytestmark = pytest.mark.timeout(900)


class Deployed:
    def __init__(self, server) -> None:
        self.server = server
        self.urls: dict[str, str] = {}
        self.proxy = proxy_headers(server)
        self.client = replicate.Client(api_token=server.token, base_url=server.url)

    def deploy(self, package: str, name: str | None = None) -> str:
        name = name or f"acme/{package}"
        done = self.server.cli("deploy", str(PACKAGES / package), "--name", name, timeout=600)
        assert done.returncode == 0, done.stderr
        self.urls[name] = re.search(r"CogPredictor\.http => (\S+)", done.stdout).group(1)
        return name

    def web(self, name: str, method: str, path: str, **kwargs) -> httpx.Response:
        headers = {**self.proxy, **kwargs.pop("headers", {})}
        return httpx.request(method, self.urls[name] + path, headers=headers, timeout=120,
                             **kwargs)


@pytest.fixture(scope="module")
def cog(server) -> Deployed:
    deployed = Deployed(server)
    for package in MODELS:
        deployed.deploy(package)
    return deployed


def test_cogs_http_api_at_the_class_web_url(cog) -> None:
    health = cog.web("acme/hello", "GET", "/health-check").json()
    assert health["status"] == "READY" and health["setup"]["status"] == "succeeded"
    root = cog.web("acme/hello", "GET", "/").json()
    assert root["predictions_url"] == "/predictions"
    schema = cog.web("acme/hello", "GET", "/openapi.json").json()
    text = schema["components"]["schemas"]["Input"]["properties"]["text"]
    assert text["description"] == "Text to prefix with 'hello '" and text["type"] == "string"

    done = cog.web("acme/hello", "POST", "/predictions", json={"input": {"text": "world"}})
    assert done.status_code == 200
    body = done.json()
    assert body["status"] == "succeeded" and body["output"] == "hello world"
    assert body["metrics"]["predict_time"] > 0 and body["id"]

    bad = cog.web("acme/hello", "POST", "/predictions", json={"input": {}})
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"] == ["body", "input", "text"]

    for _ in range(2):  # PUT with an id is idempotent
        put = cog.web("acme/hello", "PUT", "/predictions/mine-1", json={"input": {"text": "x"}})
        assert put.json()["id"] == "mine-1" and put.json()["output"] == "hello x"
    later = cog.web("acme/hello", "POST", "/predictions", json={"input": {"text": "x"}},
                    headers={"Prefer": "respond-async"})
    assert later.status_code == 202 and later.json()["status"] == "starting"

    # Its API is not open to anyone: it needs a proxy token of the workspace.
    assert httpx.get(cog.urls["acme/hello"] + "/health-check", timeout=60).status_code == 401


def test_the_replicate_client_runs_models_and_versions(cog) -> None:
    client = cog.client
    assert client.run("acme/hello", input={"text": "model"}) == "hello model"
    model = client.models.get("acme/hello")
    assert (model.owner, model.name) == ("acme", "hello")
    version = model.latest_version.id
    assert re.fullmatch(r"[0-9a-f]{64}", version)
    assert client.run(f"acme/hello:{version}", input={"text": "v"}) == "hello v"
    assert [v.id for v in model.versions.list()] == [version]
    schema = model.versions.get(version).openapi_schema
    assert schema["components"]["schemas"]["Input"]["required"] == ["text"]

    prediction = client.predictions.create(version=version, input={"text": "later"})
    assert prediction.status in ("starting", "processing", "succeeded")
    assert prediction.urls["get"].endswith(f"/v1/predictions/{prediction.id}")
    prediction.wait()
    assert prediction.status == "succeeded" and prediction.output == "hello later"
    again = client.predictions.get(prediction.id)
    assert again.output == "hello later" and again.version == version
    assert again.model == "acme/hello" and again.input == {"text": "later"}
    assert again.metrics["predict_time"] > 0 and again.created_at
    assert prediction.id in [p.id for p in client.predictions.list()]

    waited = client.models.predictions.create(model="acme/hello", input={"text": "w"},
                                              wait=True)
    assert waited.status == "succeeded" and waited.output == "hello w"

    with pytest.raises(ModelError, match="text: Field required"):
        client.run("acme/hello", input={})
    with pytest.raises(ReplicateError):
        client.run("acme/nothing-here", input={})


def test_every_input_constraint_is_checked(cog) -> None:
    out = cog.client.run("acme/constraints", input={"prompt": "hi", "loud": True,
                                                    "weights": [3], "api_key": "sekret"})
    assert out == {"text": "HI HI", "scale": 0.5, "color": "red", "code": "AB12",
                   "weights": [3], "note": None, "key_length": 6}
    with pytest.raises(ModelError) as failed:
        cog.client.run("acme/constraints", input={"prompt": "h", "steps": 9, "scale": 2,
                                                  "color": "pink", "code": "x"})
    error = str(failed.value)
    for part in ("prompt: \"h\" is shorter than 2", "steps: 9 is greater than the maximum of 5",
                 "scale: 2 is greater than the maximum of 1", "color: \"pink\" is not one of",
                 "code: \"x\" does not match"):
        assert part in error, error

    props = cog.web("acme/constraints", "GET", "/openapi.json").json()[
        "components"]["schemas"]["Input"]["properties"]
    assert props["prompt"]["minLength"] == 2 and props["prompt"]["maxLength"] == 20
    assert props["steps"] == {"type": "integer", "title": "Steps", "x-order": 1,
                              "description": "How many times", "default": 2, "minimum": 1,
                              "maximum": 5}
    assert props["color"]["enum"] == ["red", "green", "blue"]
    assert props["code"]["pattern"] == "^[A-Z]{2}[0-9]{2}$"
    assert props["note"]["nullable"] is True and props["api_key"]["format"] == "password"
    too_long = cog.web("acme/constraints", "POST", "/predictions",
                       json={"input": {"prompt": "x" * 21}})
    assert too_long.status_code == 422


def test_token_streams_and_logs(cog) -> None:
    assert "".join(cog.client.run("acme/canary", input={"prompt": "a b c"})) == "a b c "
    events = list(cog.client.stream("acme/canary", input={"prompt": "one two three"}))
    assert [str(e) for e in events if e.event.value == "output"] == ["one ", "two ", "three "]
    assert events[-1].event.value == "done"
    logs = "".join(e.data for e in events if e.event.value == "logs")
    assert "token one" in logs and "token three" in logs
    output = cog.web("acme/canary", "GET", "/openapi.json").json()[
        "components"]["schemas"]["Output"]
    assert output["x-cog-array-type"] == "iterator"
    assert output["x-cog-array-display"] == "concatenate"


def test_files_in_and_out(cog) -> None:
    document = "data:text/plain;base64," + base64.b64encode(b"hello file").decode()
    out = cog.client.run("acme/files", input={"document": document, "times": 2},
                         use_file_output=False)
    mime, _, data = out.partition(";base64,")
    assert mime == "data:text/plain" and base64.b64decode(data) == b"HELLO FILEHELLO FILE"
    direct = cog.web("acme/files", "POST", "/predictions", json={"input": {"document": document}})
    assert direct.json()["output"].startswith("data:text/plain;base64,")


def test_function_and_structured_predictors(cog) -> None:
    assert cog.client.run("acme/function", input={"a": 5}) == 15
    assert cog.client.run("acme/structured", input={"text": "a good day"}) == {
        "label": "positive", "score": 0.9, "alternatives": ["neutral"]}


def test_the_build_section_makes_the_image(cog) -> None:
    assert cog.client.run("acme/build_section", input={}) == {
        "weights": "weights-v1", "tabulate": "0.9.0", "idna": "3.10",
        "greeting": "hello from cog.yaml", "second": "second"}


def test_a_setup_that_fails_says_so_and_never_hangs(cog) -> None:
    health = cog.web("acme/setup_fails", "GET", "/health-check").json()
    assert health["status"] == "SETUP_FAILED"
    assert "the weights file is missing" in health["setup"]["logs"]
    with pytest.raises(ModelError, match="the weights file is missing"):
        cog.client.run("acme/setup_fails", input={"text": "x"})


def test_an_async_predictor_runs_concurrency_max_at_once(cog) -> None:
    found: list[dict] = []
    threads = [threading.Thread(target=lambda: found.append(cog.client.run(
        "acme/concurrent", input={"seconds": 2}))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert len(found) == 3 and len({f["pid"] for f in found}) == 1
    assert max(f["started"] for f in found) < min(f["ended"] for f in found)


def test_cancel_and_webhooks(cog, webhook) -> None:
    hook, got = webhook
    words = " ".join(f"w{i}" for i in range(100))  # ten seconds of tokens
    slow = cog.client.models.predictions.create(model="acme/canary", input={"prompt": words})
    deadline = time.monotonic() + 120
    while slow.status != "processing":
        assert time.monotonic() < deadline
        time.sleep(0.1)
        slow.reload()
    slow.cancel()
    slow.reload()
    assert slow.status == "canceled"

    done = cog.client.models.predictions.create(model="acme/hello", input={"text": "hook"},
                                                webhook=hook)
    while not got:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert got[0]["id"] == done.id and got[0]["status"] == "succeeded"
    assert got[0]["output"] == "hello hook"


def test_versions_are_kept_and_called_by_id(cog) -> None:
    cog.deploy("hello", "acme/versions")
    cog.deploy("function", "acme/versions")
    model = cog.client.models.get("acme/versions")
    first, second = sorted((v for v in model.versions.list()), key=lambda v: v.created_at)
    assert cog.client.run(f"acme/versions:{first.id}", input={"text": "v1"}) == "hello v1"
    assert cog.client.run("acme/versions", input={"a": 1, "b": 2}) == 3
    assert model.latest_version.id == second.id


def test_another_workspace_sees_nothing(server, cog) -> None:
    prediction = cog.client.predictions.create(
        version=cog.client.models.get("acme/hello").latest_version.id, input={"text": "mine"})
    other = replicate.Client(api_token=other_workspace_env(server)["FIREBOX_TOKEN"],
                             base_url=server.url)
    with pytest.raises(ReplicateError):
        other.predictions.get(prediction.id)
    with pytest.raises(ReplicateError):
        other.models.get("acme/hello")
    assert prediction.id not in [p.id for p in other.predictions.list()]
    assert httpx.get(f"{server.url}/v1/predictions/{prediction.id}").status_code == 401


def test_deploy_refuses_what_it_cannot_serve(server, tmp_path) -> None:
    def package(name: str, config: str, files: dict[str, str] | None = None) -> str:
        folder = tmp_path / name
        folder.mkdir()
        (folder / "cog.yaml").write_text(config)
        for file, text in (files or {"predict.py": "def predict() -> int:\n    return 1\n"}
                           ).items():
            (folder / file).write_text(text)
        return str(folder)

    cases = {
        package("nopredict", "build:\n  python_version: '3.11'\n"): "has no predict: key",
        package("missing", "predict: other.py:Predictor\n"): "names other.py",
        package("python", "build:\n  python_version: '3.8'\npredict: predict.py:predict\n"):
            "build.python_version is 3.8",
        package("unknown", "predict: predict.py:predict\nbuld: {}\n"): "the key(s) buld",
        package("badref", "predict: predict.py\n"): "should be 'file.py:Name'",
    }
    for path, message in cases.items():
        out = server.cli("deploy", path)
        assert out.returncode != 0 and message in out.stderr, out.stderr
        assert "Traceback" not in out.stderr
