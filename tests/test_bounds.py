"""The server's memory stays bounded whatever users send: request bodies are capped, blob
uploads stream to disk, and container output waits for its commit in a bounded buffer (the
printer is slowed down, no line is lost) with followers that catch up from the database."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from apps import bounds
from conftest import ServerProcess
from helpers import use_server

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


def test_a_body_of_many_small_values_is_refused_before_it_is_unpacked(small_server):
    """A byte of msgpack or a few of JSON can become 56 bytes of Python (an empty list): a body
    with more than a million values is refused before any of them exists."""
    import struct

    # 2,000 arrays of 20,000 empty arrays each, written out directly: 40 MB of msgpack.
    inner = b"\xdc" + struct.pack(">H", 20_000) + b"\x90" * 20_000
    empties = b"\xdd" + struct.pack(">I", 2_000) + inner * 2_000
    pid = small_server.proc.pid
    before = reset_peak(pid)
    response = httpx.post(small_server.url + "/v1/calls", content=empties,
                          headers=auth(small_server, "application/x-msgpack"), timeout=60)
    assert response.status_code == 413 and "1,000,000 items" in response.json()["error"]
    as_json = b"[" + b"[]," * (5 * MB) + b"[]]"  # 15 MiB, under the JSON cap
    response = httpx.post(small_server.url + "/v1/apps", content=as_json,
                          headers=auth(small_server), timeout=60)
    assert response.status_code == 413 and "1,000,000 items" in response.json()["error"]
    # The bodies themselves (BODY_COPIES of each), never the 2.2 GB they would unpack to.
    assert peak_growth(pid, before) < 150


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
    before = reset_peak(pid)
    with httpx.stream("GET", f"{small_server.url}/v1/blobs/{digest}", headers=auth(small_server),
                      timeout=60) as download:
        assert b"".join(download.iter_bytes()) == data
    assert peak_growth(pid, before) < 20  # read from the file as it is sent

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


def test_a_websocket_message_over_the_cap_is_refused_unread(small_server):
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    pid = small_server.proc.pid
    before = reset_peak(pid)
    url = small_server.url.replace("http", "ws") + "/v1/calls/ws"
    # Uncompressed: a deflated message is inflated only up to the cap, then refused.
    with connect(url, additional_headers={"authorization": f"Bearer {small_server.token}"},
                 max_size=None, compression=None) as ws:
        with pytest.raises(ConnectionClosed) as closed:
            ws.send(b"\0" * (80 * MB))  # over the 64 MiB payload cap and its envelope
            ws.recv(timeout=30)
    # The server says 1009 and hangs up; a client still sending may only see the hang-up.
    assert closed.value.rcvd is None or closed.value.rcvd.code == 1009
    assert peak_growth(pid, before) < 20
    assert httpx.get(small_server.url + "/health", timeout=10).status_code == 200


def test_large_results_and_bodies_still_leave_containers_in_pieces(server):
    """Containers split what they send into messages the server takes: results that finish
    together, and a web response body sent in one piece by the app."""
    n = 30 * MB
    with bounds.app.run(show_logs=False):
        assert [len(x) for x in bounds.sized.map([n] * 4)] == [n] * 4
        reply = httpx.get(bounds.body.get_web_url(), params={"n": 3 * n}, timeout=120)
    assert reply.status_code == 200 and len(reply.content) == 3 * n


def read_logs(srv: ServerProcess, app_id: str, follow: bool = False,
              stall: float = 0.0) -> list[dict[str, object]]:
    """Every line of an app's logs; with stall, the follower reads nothing for that long."""
    lines = []
    params = {"follow": "1"} if follow else {}
    with httpx.stream("GET", f"{srv.url}/v1/apps/{app_id}/logs", params=params,
                      headers=auth(srv), timeout=120) as response:
        time.sleep(stall)
        for raw in response.iter_lines():
            if raw.strip():
                lines.append(json.loads(raw))
    return lines


def test_a_log_flood_keeps_the_server_small_and_loses_no_line(own_server, monkeypatch):
    use_server(monkeypatch, own_server)
    n = 200_000  # 20 MB of output: the server grew by some 370 MB under it before
    pid = own_server.proc.pid
    followed: list[list[dict[str, object]]] = []
    with bounds.app.run(show_logs=False):
        app_id = str(bounds.app.app_id)
        assert bounds.flood.remote(10) == 10  # a container is up, the app's first lines in
        before = reset_peak(pid)
        # A follower that reads nothing for a while: its buffer overflows, and it catches up
        # from the database.
        follower = threading.Thread(target=lambda: followed.append(
            read_logs(own_server, app_id, follow=True, stall=5.0)), daemon=True)
        follower.start()
        time.sleep(0.5)
        assert bounds.flood.remote(n) == n
        growth = peak_growth(pid, before)
    follower.join(120)
    assert not follower.is_alive(), "the follower did not end with the app"
    stored = read_logs(own_server, app_id)
    printed = [line for line in stored if line["stream"] == "stdout"]
    assert len(printed) == n + 10
    ids = [line["id"] for line in followed[0]]
    assert ids == sorted(set(ids)), "the follower saw lines twice or out of order"
    assert len([line for line in followed[0] if line["stream"] == "stdout"]) == n + 10
    assert growth < 40, f"the server grew by {growth:.0f} MB under 20 MB of output"


def test_a_slow_follower_catches_up_from_the_database_in_order(tmp_path, monkeypatch):
    """In the server: a follower whose buffer overflowed gets the lines it missed from the
    database, then the live ones, each once and in order; a printer waits while the lines
    waiting for their commit fill the hub's buffer."""
    import asyncio

    from firebox.server.core import logs
    from firebox.store.db import Database

    monkeypatch.setattr(logs, "FOLLOWER_BYTES", 20 * 1024)
    monkeypatch.setattr(logs, "MAX_PENDING_BYTES", 200 * 1024)

    async def run() -> None:
        db = Database(f"sqlite:///{tmp_path / 'firebox.db'}")
        await db.migrate()
        db.start()
        hub = logs.LogHub(db)
        await hub.open()
        hub.register("ta-1", "ap-1", "f")
        follower = hub.follow("ap-1")
        waited = 0
        for i in range(5000):
            room = hub.container_output("ta-1", "stdout", f"line {i}")
            if room is not None:
                waited += 1
                await room
        hub.close_app("ap-1")
        seen = []
        while (line := await follower.get()) is not None:
            seen.append(line.text)
        assert seen == [f"line {i}" for i in range(5000)]
        assert waited > 0, "the printer never waited for the buffer to drain"
        await hub.stored()
        await db.close()

    asyncio.run(run())


def send_at_once(url: str, bodies: int, body: bytes, headers: dict[str, str]) -> list[int]:
    """POST the same body from many clients at the same moment; their answers' statuses."""
    statuses: list[int] = []
    go = threading.Barrier(bodies)

    def send() -> None:
        with httpx.Client(timeout=120) as http:
            go.wait()
            statuses.append(http.post(url, content=body, headers=headers).status_code)

    threads = [threading.Thread(target=send) for _ in range(bodies)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return statuses


def test_many_bodies_at_once_wait_for_room_instead_of_adding_up(tmp_path):
    srv = ServerProcess(tmp_path, extra_env={"FIREBOX_MAX_BODIES_MB": "64"})
    srv.start()
    try:
        body = b'{"name": "big", "pad": "' + b"a" * (15 * MB) + b'"}'
        pid = srv.proc.pid
        before = reset_peak(pid)
        statuses = send_at_once(srv.url + "/v1/apps", 30, body, auth(srv))
        growth = peak_growth(pid, before)
    finally:
        srv.stop()
    assert statuses == [422] * 30  # every one was read in its turn (pad is not a field)
    # 30 bodies of 15 MiB at once took the server up by 363 MB before the budget.
    assert growth < 150, f"the server grew by {growth:.0f} MB under 30 bodies at once"


def test_call_channel_frames_share_the_budget(tmp_path):
    """A client that sends large frames faster than they are answered is held back by the
    socket: the server does not read ahead of its budget."""
    import msgpack
    import websockets.sync.client as ws_client

    srv = ServerProcess(tmp_path, extra_env={"FIREBOX_MAX_BODIES_MB": "64"})
    srv.start()
    try:
        frame = msgpack.packb({"id": 1, "op": "call", "body": {
            "call_id": "fc-abcdefghijklmnop", "function_id": "fu-none", "kind": "spawn",
            "inputs": [[0, b"\0" * (20 * MB)]]}}, use_bin_type=True)
        pid = srv.proc.pid
        before = reset_peak(pid)
        url = srv.url.replace("http://", "ws://") + "/v1/calls/ws"
        with ws_client.connect(url, additional_headers={"Authorization": f"Bearer {srv.token}"},
                               max_size=None) as ws:
            def send() -> None:
                for _ in range(30):
                    ws.send(frame)

            sender = threading.Thread(target=send)
            sender.start()
            replies = [msgpack.unpackb(ws.recv(timeout=60)) for _ in range(30)]
            sender.join()
        growth = peak_growth(pid, before)
    finally:
        srv.stop()
    assert [r["status"] for r in replies] == [404] * 30
    # 30 frames of 20 MiB: 555 MB read ahead without the budget. With it: the 64 MiB budget, the
    # two frames uvicorn reads ahead, and the copies of the frame being read (the socket's buffer,
    # the assembled message, its unpacked bytes): under 200 MB alone, 261 MB in one CI run,
    # 340 MB beside another worker's tests (the slower it reads, the more frames are in flight).
    assert growth < 420, f"the server grew by {growth:.0f} MB under 30 frames"


def test_a_body_that_finds_no_room_in_time_is_answered_503_unread(monkeypatch):
    """In the server's middleware: a request whose body does not fit waits its turn, and is
    told to come back (503, Retry-After) when it waits too long; its body is never read."""
    import asyncio

    from firebox.server.api import limits

    monkeypatch.setattr(limits, "BODY_WAIT", 0.3)
    release = asyncio.Event()
    read: list[int] = []

    async def reader(scope, receive, send) -> None:
        size, more = 0, True
        while more:
            message = await receive()
            size += len(message.get("body", b""))
            more = message.get("more_body", False)
        read.append(size)
        if scope["path"] == "/hold":
            await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def run() -> None:
        budget = limits.Budget(10 * MB)
        asgi = limits.BodyBudget(reader, budget, limits.api_body_share)
        transport = httpx.ASGITransport(app=asgi)
        async with httpx.AsyncClient(transport=transport, base_url="http://firebox") as http:
            holder = asyncio.create_task(http.post("/hold", content=b"x" * (4 * MB)))
            while not read:
                await asyncio.sleep(0.01)
            assert budget.used == 8 * MB  # twice its body: the bytes and what they become
            busy = await http.post("/next", content=b"y" * (2 * MB))
            assert busy.status_code == 503
            assert busy.headers["retry-after"] == "1"
            assert "FIREBOX_MAX_BODIES_MB" in busy.json()["error"]
            assert read == [4 * MB], "the refused body was read"
            waiting = asyncio.create_task(http.post("/next", content=b"y" * (2 * MB)))
            await asyncio.sleep(0.05)
            release.set()  # the first is answered, its share comes back: the second goes
            assert (await holder).status_code == 200
            assert (await waiting).status_code == 200
            assert read == [4 * MB, 2 * MB] and budget.used == 0
            small = await http.post("/next", content=b"z" * 10)
            assert small.status_code == 200

    asyncio.run(run())


def test_queued_inputs_keep_their_arguments_in_the_database_past_the_window(tmp_path,
                                                                            monkeypatch):
    srv = ServerProcess(tmp_path, extra_env={"FIREBOX_MAX_QUEUED_MB": "4"})
    srv.start()
    use_server(monkeypatch, srv)
    release = tmp_path / "release"
    try:
        with bounds.app.run(show_logs=False):
            pid = srv.proc.pid
            before = reset_peak(pid)
            # 80 MB of arguments wait behind one busy container.
            bounds.digest.spawn_map([b"q" * 4096] * 20_000, kwargs={"release": str(release)})
            growth = peak_growth(pid, before)
            release.touch()
        # Inputs past the window run with their own arguments, read back from the database.
        release.unlink()
        with bounds.app.run(show_logs=False):
            data = [i.to_bytes(4, "big") * 2048 for i in range(2000)]  # 16 MB, 8 KiB each
            results: list[list[str]] = []
            mapper = threading.Thread(target=lambda: results.append(list(
                bounds.digest.map(data, kwargs={"release": str(release)}))))
            mapper.start()
            time.sleep(3)  # the map is accepted and queued, most of it past the window
            release.touch()
            mapper.join(120)
        assert results == [[hashlib.sha256(d).hexdigest() for d in data]]
    finally:
        srv.stop()
    # All 80 MB stayed in memory before (growth 95-100 MB).
    assert growth < 45, f"the server grew by {growth:.0f} MB with 80 MB of queued arguments"


def test_a_large_code_blob_reaches_its_container_a_chunk_at_a_time(own_server, monkeypatch):
    import firebox

    use_server(monkeypatch, own_server)
    app = firebox.App("test-bounds-code")
    big = hashlib.sha256(b"code").digest() * (48 * MB // 32)

    @app.function(serialized=True, scaledown_window=5)
    def measure() -> str:  # its pickled definition, a code blob of 48 MiB, carries `big`
        return hashlib.sha256(big).hexdigest()

    pid = own_server.proc.pid
    with app.run(show_logs=False):
        before = reset_peak(pid)
        assert measure.remote() == hashlib.sha256(big).hexdigest()
        growth = peak_growth(pid, before)
    # The blob was read whole and packed into one message before: the server grew by 240 MB.
    assert growth < 25, f"the server grew by {growth:.0f} MB starting a container"


def test_a_sandbox_volume_is_committed_and_checked_out_a_chunk_at_a_time(own_server,
                                                                         monkeypatch):
    import firebox

    use_server(monkeypatch, own_server)
    app = firebox.App.lookup("test-bounds-sandbox", create_if_missing=True)
    pid = own_server.proc.pid
    expected = hashlib.sha256(b"\0" * (64 * MB)).hexdigest()
    with firebox.Volume.ephemeral() as vol:
        sb = firebox.Sandbox.create(app=app, volumes={"/data": vol})
        try:
            assert sb.exec("sh", "-c", "head -c 67108864 /dev/zero > /data/big").wait() == 0
            before = reset_peak(pid)
        finally:
            sb.terminate()  # its copy of the volume is committed
        committed = peak_growth(pid, before)
        before = reset_peak(pid)
        sb = firebox.Sandbox.create(app=app, volumes={"/data": vol})
        try:
            checked_out = peak_growth(pid, before)
            out = sb.exec("sha256sum", "/data/big").stdout.read()
        finally:
            sb.terminate()
        assert out.split()[0] == expected
        assert [(e.path, e.size) for e in vol.listdir("/")] == [("big", 64 * MB)]
    # The commit read the 64 MiB file whole, and the checkout its blob: +64 MB each before.
    assert committed < 20 and checked_out < 20, (committed, checked_out)


def test_a_line_longer_than_a_piece_arrives_whole_in_several_lines(own_server, monkeypatch):
    use_server(monkeypatch, own_server)
    chars = 150_000  # 300 KB of output in one line; a character is cut at each piece's end
    with bounds.app.run(show_logs=False):
        app_id = str(bounds.app.app_id)
        assert bounds.long_line.remote(chars) == chars
    printed = [line["text"] for line in read_logs(own_server, app_id)
               if line["stream"] == "stdout"]
    assert printed[-1] == "after"
    pieces = printed[:-1]
    assert "".join(pieces) == "é" * chars  # before, only its first 64 KiB came through
    assert len(pieces) == 5 and all(len(p.encode()) <= 64 * 1024 for p in pieces)


def test_batch_upload_streams_files_from_disk(server, tmp_path):
    """The client's side: a large file is hashed and sent a chunk at a time, not read whole."""
    import os

    import firebox

    path = tmp_path / "big.bin"
    block = hashlib.sha256(b"upload").digest() * (MB // 32)
    with open(path, "wb") as f:
        for _ in range(96):
            f.write(block)
    expected = hashlib.sha256(path.read_bytes()).hexdigest()
    with firebox.Volume.ephemeral() as vol:
        before = reset_peak(os.getpid())
        with vol.batch_upload() as batch:
            batch.put_file(path, "big.bin")
        growth = peak_growth(os.getpid(), before)
        got = hashlib.sha256()
        for chunk in vol.read_file("big.bin"):
            got.update(chunk)
    assert got.hexdigest() == expected
    # The 96 MiB file was read whole, and held as it was sent: this process grew by 280 MB.
    assert growth < 30, f"the client grew by {growth:.0f} MB uploading 96 MiB"
