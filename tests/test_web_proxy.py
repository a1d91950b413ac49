"""Web endpoints behind a TLS-terminating proxy: the app sees the scheme and host the user typed."""

from __future__ import annotations

import urllib.parse

import httpx
import pytest
from apps import web_proxy
from conftest import ServerProcess
from helpers import use_server


@pytest.fixture(scope="module")
def running(server):
    with web_proxy.app.run(show_logs=False):
        yield web_proxy


def _get(server, url: str, path: str, **headers: str) -> httpx.Response:
    host = urllib.parse.urlsplit(url).netloc
    return httpx.get(f"{server.url}{path}", headers={"host": host, **headers}, timeout=120)


def test_a_proxy_on_loopback_sets_the_scheme_the_user_sees(server, running):
    url = running.where.get_web_url()
    host = urllib.parse.urlsplit(url).netloc
    plain = _get(server, url, "/seen")
    assert plain.json()["scheme"] == "http"
    proxied = _get(server, url, "/", **{"x-forwarded-proto": "https",
                                        "x-forwarded-for": "203.0.113.7"})
    assert proxied.status_code == 307
    assert proxied.headers["location"] == f"https://{host}/seen"
    seen = _get(server, url, "/seen", **{"x-forwarded-proto": "https",
                                         "x-forwarded-for": "203.0.113.7"})
    assert seen.json() == {"scheme": "https", "url": f"https://{host}/seen",
                           "client": "203.0.113.7"}


def test_headers_from_an_address_that_is_not_a_trusted_proxy_are_ignored(tmp_path, monkeypatch):
    srv = ServerProcess(tmp_path, extra_env={"FIREBOX_TRUSTED_PROXIES": "192.0.2.1"})
    srv.start()
    try:
        use_server(monkeypatch, srv)
        with web_proxy.app.run(show_logs=False):
            url = web_proxy.where.get_web_url()
            seen = _get(srv, url, "/seen", **{"x-forwarded-proto": "https",
                                              "x-forwarded-for": "203.0.113.7"})
    finally:
        srv.stop()
    assert seen.json()["scheme"] == "http" and seen.json()["client"] == "127.0.0.1"
