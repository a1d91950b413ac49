"""Trusses deployed unchanged (`firebox deploy DIR`): Truss's server API at the class's web URL
(JSON and msgpack, streaming, errors in Truss's shape, readiness), and Baseten's predict path on
the control plane with `Authorization: Api-Key`. The packages in tests/packages/truss/ are
written like basetenlabs/truss's own test data (CPU, offline)."""

from __future__ import annotations

import re
import threading
from pathlib import Path

import httpx
import msgpack
import openai
import pytest
from conftest import proxy_headers
from other_workspace import other_workspace_env

PACKAGES = Path(__file__).parent / "packages" / "truss"
MODELS = ("basic", "async_model", "streaming", "async_streaming", "annotated", "error",
          "request_and_secrets", "concurrency", "openai")
pytestmark = pytest.mark.timeout(900)


class Deployed:
    def __init__(self, server) -> None:
        self.server = server
        self.urls: dict[str, str] = {}
        self.proxy = proxy_headers(server)

    def deploy(self, package: str, *extra: str) -> None:
        done = self.server.cli("deploy", str(PACKAGES / package), "--name", f"tr-{package}",
                               *extra, timeout=600)
        assert done.returncode == 0, done.stderr
        self.urls[package] = re.search(r"TrussModel\.http => (\S+)", done.stdout).group(1)

    def web(self, package: str, path: str, method: str = "POST", **kwargs) -> httpx.Response:
        return httpx.request(method, self.urls[package] + path,
                             headers={**self.proxy, **kwargs.pop("headers", {})}, timeout=120,
                             **kwargs)

    def baseten(self, package: str, body: object, path: str = "production/predict",
                token: str | None = None) -> httpx.Response:
        return httpx.post(f"{self.server.url}/model/tr-{package}/{path}", json=body,
                          headers={"Authorization": f"Api-Key {token or self.server.token}"},
                          timeout=120)


@pytest.fixture(scope="module")
def truss(server) -> Deployed:
    deployed = Deployed(server)
    for package in MODELS:
        deployed.deploy(package)
    return deployed


def test_truss_server_api_at_the_web_url(truss) -> None:
    assert truss.web("basic", "/v1/models/basic", "GET").json() == {}
    assert truss.web("basic", "/", "GET").json() is True
    out = truss.web("basic", "/v1/models/basic:predict", json={"inputs": [1, 2]})
    assert out.status_code == 200 and out.json() == {"predictions": [2, 4], "name": "basic"}
    # msgpack in and out with application/octet-stream; the name in the path is not checked
    packed = truss.web("basic", "/v1/models/anything:predict",
                       content=msgpack.packb({"inputs": [3]}),
                       headers={"Content-Type": "application/octet-stream"})
    assert msgpack.unpackb(packed.content) == {"predictions": [6], "name": "basic"}
    bad = truss.web("basic", "/v1/models/basic:predict", content=b"{not json")
    assert bad.status_code == 400 and "error" in bad.json()
    assert httpx.get(truss.urls["basic"] + "/v1/models/basic", timeout=60).status_code == 401


def test_async_methods_and_pre_and_postprocess(truss) -> None:
    out = truss.web("async_model", "/v1/models/m:predict", json={"values": [1, 2]}).json()
    assert out == {"sum": 5, "state": "loaded"}


def test_generators_stream(truss) -> None:
    with httpx.stream("POST", truss.urls["streaming"] + "/v1/models/m:predict",
                      json={"n": 3}, headers=truss.proxy, timeout=120) as reply:
        chunks = [c for c in reply.iter_text() if c]
    assert "".join(chunks) == "chunk0 chunk1 chunk2 "
    out = truss.web("async_streaming", "/v1/models/m:predict", json={"prompt": "a b"})
    assert out.text == "A\nB\n"


def test_annotated_inputs_are_validated(truss) -> None:
    out = truss.web("annotated", "/v1/models/m:predict",
                    json={"prompt": "a b c d e", "max_tokens": 2})
    assert out.json() == {"words": ["a", "b"], "truncated": True}
    bad = truss.web("annotated", "/v1/models/m:predict", json={"max_tokens": 99})
    assert bad.status_code == 400
    assert "prompt" in bad.json()["error"] and "less than or equal to 16" in bad.json()["error"]


def test_a_model_error_is_a_500_in_truss_shape(truss) -> None:
    out = truss.web("error", "/v1/models/m:predict", json={"fail": True})
    assert out.status_code == 500
    assert out.json() == {"error": "ValueError: the model could not handle this input"}
    assert truss.web("error", "/v1/models/m:predict", json={}).json() == {"ok": True}


def test_what_a_model_is_given(truss) -> None:
    out = truss.web("request_and_secrets", "/v1/models/m:predict", json={}).json()
    assert out == {"weights": "data file contents", "helper": "from a bundled package",
                   "tabulate": "0.9.0", "greeting": "hello from config.yaml", "token": None,
                   "unused": "the-default", "built": "built", "path": "/v1/models/m:predict"}
    teapot = truss.web("request_and_secrets", "/v1/models/m:predict", json={"teapot": True})
    assert teapot.status_code == 418 and teapot.text == "short and stout"


def test_secrets_come_from_firebox_secrets(server, truss) -> None:
    made = server.cli("secret", "create", "truss-hf", "hf_access_token=hf-secret-value")
    assert made.returncode == 0, made.stderr
    truss.deploy("request_and_secrets", "--secret", "truss-hf")
    out = truss.web("request_and_secrets", "/v1/models/m:predict", json={}).json()
    assert out["token"] == "hf-secret-value"


def test_readiness_follows_is_healthy(truss) -> None:
    truss.deploy("request_and_secrets", "--max-containers", "1")
    assert truss.web("request_and_secrets", "/v1/models/m", "GET").status_code == 200
    truss.web("request_and_secrets", "/v1/models/m:predict", json={"sick": True})
    sick = truss.web("request_and_secrets", "/v1/models/m", "GET")
    assert sick.status_code == 503 and sick.json() == {"error": "Model is not ready."}


def test_predict_concurrency(truss) -> None:
    found: list[dict] = []
    threads = [threading.Thread(target=lambda: found.append(truss.web(
        "concurrency", "/v1/models/m:predict", json={"seconds": 2}).json())) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert len({f["pid"] for f in found}) == 1
    assert max(f["started"] for f in found) < min(f["ended"] for f in found)


def test_openai_shaped_methods(truss) -> None:
    chat = truss.web("openai", "/v1/chat/completions",
                     json={"messages": [{"role": "user", "content": "abc"}]}).json()
    assert chat["choices"][0]["message"]["content"] == "cba"
    done = truss.web("openai", "/v1/completions", json={"prompt": "hi"}).json()
    assert done["choices"][0]["text"] == "HI"
    missing = truss.web("openai", "/v1/embeddings", json={})
    assert missing.status_code == 404


def test_openai_methods_are_served_by_the_model_gateway(server, truss) -> None:
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=server.token, max_retries=0)
    assert "tr-openai" in {m.id for m in client.models.list().data}
    assert "tr-basic" not in {m.id for m in client.models.list().data}  # no OpenAI methods
    chat = client.chat.completions.create(model="tr-openai",
                                          messages=[{"role": "user", "content": "abc"}])
    assert chat.choices[0].message.content == "cba"
    assert client.completions.create(model="tr-openai", prompt="hi").choices[0].text == "HI"


def test_the_baseten_predict_path(server, truss) -> None:
    out = truss.baseten("basic", {"inputs": [5]})
    assert out.status_code == 200 and out.json() == {"predictions": [10], "name": "basic"}
    assert truss.baseten("basic", {"inputs": [1]}, "deployment/1/predict").json()[
        "predictions"] == [2]
    assert truss.baseten("streaming", {"n": 2}).text == "chunk0 chunk1 "
    failed = truss.baseten("error", {"fail": True})
    assert failed.status_code == 500 and "could not handle" in failed.json()["error"]
    assert truss.baseten("annotated", {}).status_code == 400
    other = other_workspace_env(server)["FIREBOX_TOKEN"]
    assert truss.baseten("basic", {"inputs": [1]}, token=other).status_code == 404
    assert httpx.post(f"{server.url}/model/tr-basic/production/predict",
                      json={}).status_code == 401


def test_deploy_refuses_what_it_cannot_serve(server, tmp_path) -> None:
    def package(name: str, config: str, model: bool = True) -> str:
        folder = tmp_path / name
        (folder / "model").mkdir(parents=True)
        (folder / "config.yaml").write_text(config)
        if model:
            (folder / "model" / "model.py").write_text("class Model:\n    pass\n")
        return str(folder)

    cases = {
        package("nomodel", "model_name: x\n", model=False): "has no model/model.py",
        package("python", "python_version: py38\n"): "python_version is py38",
        package("unknown", "modle_name: x\n"): "the key(s) modle_name",
        package("docker", "docker_server:\n  start_command: x\n"): "docker_server is not",
        package("memory", "resources:\n  memory: lots\n"): "resources.memory is 'lots'",
    }
    for path, message in cases.items():
        out = server.cli("deploy", path)
        assert out.returncode != 0 and message in out.stderr, out.stderr
        assert "Traceback" not in out.stderr
