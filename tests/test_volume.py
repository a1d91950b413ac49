"""Volumes: file operations, commit/reload between containers, path safety, CLI, durability
and workspaces."""

import io
import time

import pytest
from apps import objects
from other_workspace import other_workspace_env, run_cli, run_python

import firebox as modal
from firebox.sdk.volume import FileEntryType


def read(vol, path):
    return b"".join(vol.read_file(path))


def eventually_read(vol, path, within=60.0):
    deadline = time.monotonic() + within
    while True:
        try:
            return read(vol, path)
        except FileNotFoundError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_file_operations(server, tmp_path):
    (tmp_path / "tree" / "sub").mkdir(parents=True)
    (tmp_path / "tree" / "a.txt").write_text("A")
    (tmp_path / "tree" / "sub" / "b.txt").write_text("B")
    (tmp_path / "one.bin").write_bytes(b"\x00\x01" * 1000)
    with modal.Volume.ephemeral() as vol:
        with vol.batch_upload() as batch:
            batch.put_directory(tmp_path / "tree", "/tree")
            batch.put_file(tmp_path / "one.bin", "/one.bin")
            batch.put_file(io.BytesIO(b"from a file object"), "notes/readme.md")
        assert read(vol, "/one.bin") == b"\x00\x01" * 1000
        assert read(vol, "notes/readme.md") == b"from a file object"
        top = {e.path: e.type for e in vol.listdir("/")}
        assert top == {"tree": FileEntryType.DIRECTORY, "one.bin": FileEntryType.FILE,
                       "notes": FileEntryType.DIRECTORY}
        assert sorted(e.path for e in vol.listdir("tree", recursive=True)) == [
            "tree/a.txt", "tree/sub", "tree/sub/b.txt"]
        assert [e.path for e in vol.iterdir("tree/sub")] == ["tree/sub/b.txt"]
        with pytest.raises(FileExistsError):
            with vol.batch_upload() as batch:
                batch.put_file(io.BytesIO(b"again"), "/one.bin")
        with vol.batch_upload(force=True) as batch:
            batch.put_file(io.BytesIO(b"again"), "/one.bin")
        assert read(vol, "one.bin") == b"again"
        vol.copy_files(["one.bin"], "copy.bin")
        vol.copy_files(["tree"], "tree2", recursive=True)
        assert read(vol, "copy.bin") == b"again" and read(vol, "tree2/sub/b.txt") == b"B"
        with pytest.raises(IsADirectoryError):
            vol.remove_file("tree2")
        vol.remove_file("tree2", recursive=True)
        vol.remove_file("copy.bin")
        with pytest.raises(FileNotFoundError):
            read(vol, "copy.bin")
        with pytest.raises(FileNotFoundError):
            vol.listdir("tree2")
        with pytest.raises(FileNotFoundError):
            vol.remove_file("nothing-here")


def test_paths_that_escape_are_rejected(server):
    with modal.Volume.ephemeral() as vol:
        for bad in ("../etc/passwd", "a/../../b", "./x"):
            with pytest.raises(modal.exception.InvalidError):
                with vol.batch_upload() as batch:
                    batch.put_file(io.BytesIO(b"x"), bad)
            with pytest.raises(modal.exception.InvalidError):
                read(vol, bad)
        with pytest.raises(modal.exception.InvalidError):
            vol.copy_files(["x"], "../out")


def test_commit_and_reload_between_containers(server):
    vol = objects.vol
    with objects.app.run(show_logs=False):
        objects.write_volume.remote("shared.txt", "v1")
        assert read(vol, "shared.txt") == b"v1"
        assert objects.read_volume.remote("shared.txt") == "v1"
        # An uncommitted write is invisible elsewhere until its container commits (at exit).
        objects.write_volume.remote("draft.txt", "draft", commit=False)
        with pytest.raises(FileNotFoundError):
            read(vol, "draft.txt")
        objects.write_volume.remote("shared.txt", "v2")  # last writer wins
        assert objects.read_volume.remote("shared.txt", reload=True) == "v2"
        with pytest.raises(modal.exception.InvalidError, match="symlink"):
            objects.write_symlink.remote()
    assert eventually_read(vol, "draft.txt") == b"draft"  # committed as its container stopped
    with pytest.raises(FileNotFoundError):
        read(vol, "link")


def test_volume_appears_at_its_mount_path_under_namespaces(server):
    with objects.app.run(show_logs=False):
        assert objects.write_at_mount_path.remote("at-path.txt", "here") == "1"
        assert read(objects.vol, "at-path.txt") == b"here"
        assert objects.read_volume.remote("at-path.txt", reload=True) == "here"


def test_cli_verbs(server, tmp_path):
    src = tmp_path / "hello.txt"
    src.write_text("hi there")
    name = "t-cli-volume"
    server.cli("volume", "delete", name)
    assert server.cli("volume", "create", name).returncode == 0
    assert server.cli("volume", "create", name).returncode != 0
    assert server.cli("volume", "put", name, str(src), "/dir/").returncode == 0
    assert "dir/hello.txt" in server.cli("volume", "ls", name, "/", "-r").stdout
    assert server.cli("volume", "get", name, "/dir/hello.txt").stdout == "hi there"
    assert server.cli("volume", "cp", name, "dir/hello.txt", "copy.txt").returncode == 0
    out = tmp_path / "out.txt"
    assert server.cli("volume", "get", name, "copy.txt", str(out)).returncode == 0
    assert out.read_text() == "hi there"
    assert server.cli("volume", "rm", name, "copy.txt").returncode == 0
    assert "copy.txt" not in server.cli("volume", "ls", name).stdout
    assert name in server.cli("volume", "list").stdout
    assert server.cli("volume", "rename", name, name + "-2").returncode == 0
    assert server.cli("volume", "delete", name + "-2").returncode == 0
    assert name not in server.cli("volume", "list").stdout


def test_other_workspace_cannot_see_it(server):
    vol = modal.Volume.from_name("t-private-volume", create_if_missing=True)
    with vol.batch_upload(force=True) as batch:
        batch.put_file(io.BytesIO(b"private"), "f.txt")
    env = other_workspace_env(server)
    assert "t-private-volume" not in run_cli(env, "volume", "list").stdout
    out = run_python(env, (
        "import firebox as m\n"
        f"mine = m.Volume(None, object_id={vol.object_id!r})\n"
        "for v in (m.Volume.from_name('t-private-volume'), mine):\n"
        "    try:\n        v.listdir('/')\n    except m.exception.NotFoundError:\n"
        "        print('denied')\n"
    ))
    assert out.stdout.split() == ["denied", "denied"], out.stderr


def test_durable_across_a_restart(own_server, monkeypatch):
    monkeypatch.setenv("FIREBOX_SERVER_URL", own_server.url)
    monkeypatch.setenv("FIREBOX_TOKEN", own_server.token)
    vol = modal.Volume.from_name("t-durable-volume", create_if_missing=True)
    with vol.batch_upload() as batch:
        batch.put_file(io.BytesIO(b"kept"), "k.txt")
    own_server.kill()
    own_server.start()
    monkeypatch.setenv("FIREBOX_TOKEN", own_server.token)
    assert read(modal.Volume.from_name("t-durable-volume"), "k.txt") == b"kept"
