"""The server's memory stays bounded whatever users send: request bodies are capped, and blob
uploads stream to disk."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import ServerProcess

MB = 1024 * 1024


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no {field} for {pid}")


def reset_peak(pid: int) -> float:
    """Start the process's peak resident set (VmHWM) again from its current size."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")
    return rss_mb(pid)


def peak_growth(pid: int, before: float) -> float:
    return rss_mb(pid, "VmHWM") - before


@pytest.fixture
def small_server(tmp_path: Path) -> Iterator[ServerProcess]:
    srv = ServerProcess(tmp_path, extra_env={"FIREBOX_MAX_BLOB_MB": "48"})
    srv.start()
    yield srv
    srv.stop()


def auth(srv: ServerProcess, content_type: str = "application/json") -> dict[str, str]:
    return {"authorization": f"Bearer {srv.token}", "content-type": content_type}


def pieces(data: bytes, size: int = MB) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i:i + size]


def test_a_json_body_over_its_cap_is_refused_without_being_held(small_server):
    body = b'{"name": "' + b"a" * (64 * MB) + b'"}'
    pid = small_server.proc.pid
    before = reset_peak(pid)
    declared = httpx.post(small_server.url + "/v1/apps", content=body,
                          headers=auth(small_server), timeout=60)
    chunked = httpx.post(small_server.url + "/v1/apps", content=pieces(body),
                         headers=auth(small_server), timeout=60)
    for response in (declared, chunked):
        assert response.status_code == 413
        assert response.json()["type"] == "InvalidError"
        assert "FIREBOX_MAX_JSON_MB" in response.json()["error"]
    # The 16 MiB cap, and no more of it, could be read before the refusal.
    assert peak_growth(pid, before) < 40
    assert httpx.get(small_server.url + "/health", timeout=10).status_code == 200


def test_a_msgpack_body_may_carry_a_payload_but_not_more(small_server):
    limit = 64 * MB + MB  # FIREBOX_MAX_PAYLOAD_MB's default and the envelope
    response = httpx.post(small_server.url + "/v1/calls", content=pieces(b"\0" * (limit + 1)),
                          headers=auth(small_server, "application/x-msgpack"), timeout=60)
    assert response.status_code == 413
    assert "FIREBOX_MAX_PAYLOAD_MB" in response.json()["error"]


def test_a_blob_streams_to_disk_and_a_wrong_or_oversized_one_leaves_nothing(small_server):
    data = hashlib.sha256(b"blob").digest() * (40 * MB // 32)
    digest = hashlib.sha256(data).hexdigest()
    pid = small_server.proc.pid
    before = reset_peak(pid)
    response = httpx.put(f"{small_server.url}/v1/blobs/{digest}", content=pieces(data),
                         headers=auth(small_server, "application/octet-stream"), timeout=60)
    assert response.status_code == 200, response.text
    assert response.json() == {"sha256": digest, "size": len(data)}
    assert peak_growth(pid, before) < 20  # 40 MiB went through, a MiB at a time
    stored = small_server.state_dir / "blobs" / digest[:2] / digest
    assert stored.read_bytes() == data

    wrong = httpx.put(f"{small_server.url}/v1/blobs/{'0' * 64}", content=pieces(data),
                      headers=auth(small_server, "application/octet-stream"), timeout=60)
    assert wrong.status_code == 400 and "does not match" in wrong.json()["error"]
    big = data + data
    too_big = httpx.put(f"{small_server.url}/v1/blobs/{hashlib.sha256(big).hexdigest()}",
                        content=pieces(big),
                        headers=auth(small_server, "application/octet-stream"), timeout=60)
    assert too_big.status_code == 413 and "FIREBOX_MAX_BLOB_MB" in too_big.json()["error"]
    files = [p for p in (small_server.state_dir / "blobs").rglob("*") if p.is_file()]
    assert files == [stored], "a refused upload left a file behind"
