"""Web functions through the ingress, with real HTTP against a real server."""

from __future__ import annotations

import concurrent.futures
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.parse

import httpx
import pytest
from apps import web, web_urls
from conftest import REPO
from helpers import eventually
from other_workspace import other_workspace_env, run_cli

import firebox
from firebox.exception import InvalidError


@pytest.fixture(scope="module")
def running(server):
    with web.app.run(show_logs=False):
        yield web


def _containers(server, app_id: str) -> int:
    apps = httpx.get(f"{server.url}/v1/apps", headers={"Authorization": f"Bearer {server.token}"})
    return next(a["containers"] for a in apps.json()["apps"] if a["app_id"] == app_id)


def test_requests_held_while_scaling_from_zero(server, running):
    assert _containers(server, running.app.app_id) == 0
    url = running.hello.get_web_url()
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        replies = list(pool.map(
            lambda i: httpx.get(url, params={"name": f"n{i}", "times": 2}, timeout=120),
            range(4),
        ))
    assert [r.status_code for r in replies] == [200] * 4
    assert replies[3].json()["greeting"] == "hello n3 hello n3"


def test_fastapi_json_body_pydantic_and_docs(running):
    url = running.order.get_web_url()
    reply = httpx.post(url, json={"name": "bolt", "qty": 4}, timeout=120)
    assert reply.json() == {"name": "BOLT", "total": 12}
    assert httpx.post(url, json={"qty": "many"}, timeout=60).status_code == 422
    assert httpx.get(url, timeout=60).status_code == 405
    docs = httpx.get(url + "/docs", timeout=60)
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    assert httpx.get(running.hello.get_web_url() + "/docs", timeout=60).status_code == 404


def test_web_functions_are_not_called_with_remote(server, running):
    with pytest.raises(InvalidError, match="web function"):
        running.hello.remote()
    with pytest.raises(InvalidError, match="web function"):
        running.hello.spawn()
    with pytest.raises(InvalidError, match="web function"):
        list(running.hello.map([1]))
    assert running.not_web.get_web_url() is None
    assert running.hello.get_web_url() == f"http://main--test-web-hello-dev.localhost:{server.port}"


def test_asgi_app_sees_its_path_and_root(running):
    base = running.api.get_web_url()
    reply = httpx.post(base + "/echo", content=b"x" * 100_000, timeout=120)
    assert reply.json() == {"size": 100_000, "path": "/echo", "root": ""}
    assert httpx.get(base + "/nowhere", timeout=60).status_code == 404


def _on_host(server, url: str, path: str = "/", **kwargs) -> httpx.Response:
    """GET path on a web URL's host through 127.0.0.1, naming the host only in the Host header
    (no resolver asked: Python's may not know *.localhost where browsers and curl do)."""
    host = urllib.parse.urlsplit(url).netloc
    return httpx.get(f"{server.url}{path}", headers={"host": host}, timeout=120, **kwargs)


def test_an_app_at_the_root_of_its_own_host(server, running):
    url = running.site.get_web_url()
    assert url == f"http://main--test-web-site-dev.localhost:{server.port}"
    start = _on_host(server, url)
    assert start.status_code == 307 and start.headers["location"] == "/result"
    result = _on_host(server, url, start.headers["location"])
    assert result.json() == {"path": "/result", "root": "", "url": f"{url}/result",
                             "asset": f"{url}/static/x.js"}
    asset = _on_host(server, url, "/static/x.js")
    assert asset.text == "// x.js" and asset.headers["content-type"].startswith("text/javascript")
    # Two endpoints, two hosts, one port.
    hello = _on_host(server, running.hello.get_web_url(), "/?name=host")
    assert hello.json()["greeting"] == "hello host"


def test_the_path_form_gives_the_app_its_prefix_as_root_path(server, running):
    prefix = "/web/main/test-web-site-dev"
    result = httpx.get(f"{server.url}{prefix}/result", timeout=120).json()
    assert result == {"path": f"{prefix}/result", "root": prefix,
                      "url": f"{server.url}{prefix}/result",
                      "asset": f"{server.url}{prefix}/static/x.js"}


def test_an_unknown_host_under_the_domain_is_404(server):
    unknown = f"main--no-such-endpoint.localhost:{server.port}"
    for path in ("/", "/v1/apps"):  # an endpoint's host never reaches the API
        reply = _on_host(server, f"http://{unknown}", path)
        assert reply.status_code == 404
        assert reply.text == (f"No web function is served at {unknown}{path}; "
                              "`firebox deploy` or `firebox serve` prints the URLs.\n")


def test_streaming_chunks_arrive_before_the_response_ends(running):
    key = f"go-{secrets.token_hex(4)}"
    url = running.api.get_web_url() + f"/stream/{key}"
    with httpx.stream("GET", url, timeout=120) as reply:
        lines = reply.iter_lines()
        assert next(lines) == "first"
        # The app holds the rest of its response until this key is set: the first chunk came
        # through on its own.
        running.signals[key] = True
        assert next(lines) == "second"


def test_pool_scales_with_concurrent_requests(running):
    key = f"barrier-{secrets.token_hex(4)}"
    url = running.api.get_web_url() + f"/barrier/{key}/4"
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        replies = list(pool.map(lambda _: httpx.get(url, timeout=120), range(4)))
    containers = [r.json()["container"] for r in replies]
    assert "gave up" not in containers
    assert len(set(containers)) >= 2  # max_inputs=2: four at once needed a second container


def test_container_dying_mid_request_gives_502(running):
    base = running.api.get_web_url()
    reply = httpx.get(base + "/crash", timeout=120)
    assert reply.status_code == 502
    assert "exited with code 3" in reply.text
    with pytest.raises(httpx.HTTPError):
        with httpx.stream("GET", base + "/crash-mid-stream", timeout=120) as streamed:
            assert streamed.status_code == 200
            streamed.read()
    assert httpx.post(base + "/echo", content=b"ok", timeout=120).json()["size"] == 2


def test_body_over_the_limit_gets_413(running):
    parsed = urllib.parse.urlsplit(running.api.get_web_url())
    with socket.create_connection((parsed.hostname, parsed.port), timeout=60) as sock:
        sock.sendall(
            f"POST {parsed.path}/echo HTTP/1.1\r\nHost: {parsed.hostname}\r\n"
            f"Content-Length: {64 * 1024 * 1024}\r\n\r\n".encode()
        )
        head = sock.recv(4096).decode()
    assert head.startswith("HTTP/1.1 413"), head


def test_proxy_auth(server, running):
    url = running.secret.get_web_url()
    assert url.startswith("http://main--test-web-secret-dev.localhost:")
    refused = httpx.post(url, json={"a": 1}, timeout=60)
    assert refused.status_code == 401 and "Modal-Key" in refused.text
    created = server.cli("token", "proxy", "create")
    assert created.returncode == 0, created.stderr
    fields = dict(line.split(": ", 1) for line in created.stdout.splitlines())
    headers = {"Modal-Key": fields["Modal-Key"], "Modal-Secret": fields["Modal-Secret"]}
    assert httpx.post(url, json={"a": 1}, headers=headers, timeout=120).json() == {
        "seen": {"a": 1}
    }
    wrong = {**headers, "Modal-Secret": "ws-wrong"}
    assert httpx.post(url, json={"a": 1}, headers=wrong, timeout=60).status_code == 401
    # Other endpoints are public.
    assert httpx.get(running.hello.get_web_url(), timeout=60).status_code == 200
    deleted = server.cli("token", "proxy", "delete", fields["Modal-Key"])
    assert deleted.returncode == 0, deleted.stderr
    assert httpx.post(url, json={"a": 1}, headers=headers, timeout=60).status_code == 401


def test_wsgi_app_and_web_server(running):
    reply = httpx.get(running.flask_like.get_web_url() + "/x?a=1", timeout=120)
    assert reply.text == "wsgi GET a=1"
    served = httpx.get(running.server.get_web_url() + "/web.py", timeout=120)
    assert served.status_code == 200 and "Web functions the ingress tests" in served.text


def test_the_old_web_endpoint_name_still_serves(running):
    reply = httpx.get(running.legacy.get_web_url() + "?x=21", timeout=120)
    assert reply.status_code == 200 and reply.json() == {"doubled": 42}
    with pytest.warns(DeprecationWarning, match="renamed to @fastapi_endpoint"):
        firebox.web_endpoint(method="POST")


def test_unknown_url_is_404(server):
    assert httpx.get(f"{server.url}/web/main/no-such-endpoint", timeout=30).status_code == 404


def test_deploy_prints_stable_urls(server):
    first = server.cli("deploy", "tests/apps/web_deployed.py", timeout=120)
    assert first.returncode == 0, first.stderr
    url = f"http://main--test-web-deployed-greet.localhost:{server.port}"
    assert f"greet => {url}" in first.stdout
    assert httpx.get(url, timeout=120).json() == "deployed hi"
    again = server.cli("deploy", "tests/apps/web_deployed.py", timeout=120)
    assert f"greet => {url}" in again.stdout
    assert firebox.Function.from_name("test-web-deployed", "greet").get_web_url() == url
    assert httpx.get(url, params={"who": "again"}, timeout=120).json() == "deployed again"
    assert server.cli("app", "stop", "test-web-deployed").returncode == 0
    assert httpx.get(url, timeout=30).status_code == 404


def test_serve_reloads_when_the_file_changes(server, tmp_path):
    source = (REPO / "tests/apps/web_deployed.py").read_text()
    app_file = tmp_path / "served.py"
    app_file.write_text(source.replace("test-web-deployed", "test-web-served"))
    proc = _serve(server, app_file)
    try:
        url = f"http://main--test-web-served-greet-dev.localhost:{server.port}"
        assert f"greet => {url}" in _read_until(proc, url)
        assert httpx.get(url, timeout=120).json() == "deployed hi"
        app_file.write_text(source.replace("test-web-deployed", "test-web-served")
                            .replace('f"deployed {who}"', 'f"reloaded {who}"'))
        _read_until(proc, "Reloaded")
        assert eventually(lambda: httpx.get(url, timeout=120).json() == "reloaded hi",
                          timeout=60)
    finally:
        proc.send_signal(signal.SIGINT)  # stops the app as Ctrl-C would
        proc.wait(30)


def test_serve_reloads_when_a_module_the_app_imports_changes(server, tmp_path):
    """The app's own local imports are watched; another file in the same folder is not."""
    source = (REPO / "tests/apps/web_deployed.py").read_text()
    app_file = tmp_path / "served_import.py"
    app_file.write_text(source.replace("test-web-deployed", "test-web-served-import")
                        .replace("import firebox\n", "import firebox\nimport wording\n")
                        .replace('f"deployed {who}"', 'f"{wording.WORD} {who}"'))
    (tmp_path / "wording.py").write_text('WORD = "deployed"\n')
    unrelated = tmp_path / "notes.py"
    unrelated.write_text("NOTE = 1\n")
    proc = _serve(server, app_file)
    try:
        url = f"http://main--test-web-served-import-greet-dev.localhost:{server.port}"
        seen = _read_until(proc, url)
        assert httpx.get(url, timeout=120).json() == "deployed hi"
        unrelated.write_text("NOTE = 2\n")
        time.sleep(4)  # past watchfiles' debounce, so a reload for it would be one of its own
        (tmp_path / "wording.py").write_text('WORD = "reloaded"\n')
        seen += _read_until(proc, "Reloaded")
        assert eventually(lambda: httpx.get(url, timeout=120).json() == "reloaded hi",
                          timeout=60)
    finally:
        proc.send_signal(signal.SIGINT)  # stops the app as Ctrl-C would
        rest, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, seen + rest
    assert (seen + rest).count("Reloaded") == 1, seen + rest
    assert "Traceback" not in seen + rest


def _serve(server, app_file) -> subprocess.Popen:
    """`firebox serve app_file` against server, its output (stdout and stderr) in one pipe."""
    env = {**server.env(), "FIREBOX_SERVER_URL": server.url, "FIREBOX_TOKEN": server.token}
    return subprocess.Popen(
        [sys.executable, "-m", "firebox.cli.main", "serve", str(app_file), "--timeout", "90"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO,
    )


def _read_until(proc: subprocess.Popen, text: str) -> str:
    seen = ""
    while text not in seen:
        line = proc.stdout.readline()
        if not line:
            raise AssertionError(f"`firebox serve` ended before printing {text!r}:\n{seen}")
        seen += line
    return seen


TAKEN = '''
import firebox

app = firebox.App("test-web-taken")


@app.function(scaledown_window=2)
@firebox.fastapi_endpoint()
def who():
    return "WHO"
'''


def test_a_host_another_workspace_holds_stays_its_own(server, tmp_path):
    """Workspace other's environment taken and workspace other-taken ask for one host: the
    first keeps it, the second is given its path form."""
    first = other_workspace_env(server)
    made = subprocess.run(
        [sys.executable, "-m", "firebox.cli.main", "token", "create", "--workspace",
         "other-taken", "--state-dir", str(server.state_dir)],
        capture_output=True, text=True, env=server.env(), check=True)
    second = first | {"FIREBOX_TOKEN": made.stdout.strip().splitlines()[-1]}
    assert run_cli(first, "environment", "create", "taken").returncode == 0
    for env, who, extra in ((first, "first", ["-e", "taken"]), (second, "second", [])):
        app_file = tmp_path / f"{who}.py"
        app_file.write_text(TAKEN.replace("WHO", who))
        deployed = run_cli(env, "deploy", str(app_file), *extra)
        assert deployed.returncode == 0, deployed.stderr
        who_url = next(line.split("=> ")[1] for line in deployed.stdout.splitlines()
                       if "who =>" in line)
        if who == "first":
            host_url = who_url
    assert host_url == f"http://other-taken--test-web-taken-who.localhost:{server.port}"
    assert who_url == f"{server.url}/web/other-taken/test-web-taken-who"
    assert _on_host(server, host_url).json() == "first"
    assert httpx.get(who_url, timeout=120).json() == "second"


def test_a_container_gets_and_fetches_a_sibling_endpoints_url(server):
    """Inside a container (own network namespace), the URL is the one the client sees, and it
    answers there: the runtime relays the server's loopback port to its unix socket."""
    with web_urls.app.run(show_logs=False):
        outside = web_urls.pong.get_web_url()
        assert outside == f"http://main--test-web-urls-pong-dev.localhost:{server.port}"
        assert web_urls.pong.web_url == outside
        assert web_urls.own_urls.remote() == (outside, outside, '{"said":"ping"}')
        assert web_urls.plain_url.remote() is None
