"""Sandboxes: exec streams, stdin, files, lifetimes, lookups, tags, snapshots, CLI."""

import asyncio
import fcntl
import io
import os
import pty
import select
import shutil
import struct
import subprocess
import sys
import termios
import time

import pytest

import firebox as modal
from firebox.exception import InvalidError, SandboxTerminatedError, SandboxTimeoutError


@pytest.fixture(scope="module")
def app(server):
    return modal.App.lookup("sandbox-tests", create_if_missing=True)


@pytest.fixture(scope="module")
def sb(app):
    sandbox = modal.Sandbox.create(app=app, env={"GREETING": "hi"}, workdir="/tmp")
    yield sandbox
    sandbox.terminate()


def test_runs_under_gvisor_where_runsc_is_installed(sb):
    expected = "gvisor" if shutil.which("runsc") else "namespaces"
    assert sb.isolation == expected
    kernel = sb.exec("uname", "-r").stdout.read().strip()
    if expected == "gvisor":  # gVisor's kernel says 4.4.0, whatever the host runs
        assert kernel == "4.4.0"
    # `python`, not only python3, as on Modal's default image (Debian's python3 makes none).
    assert sb.exec("python", "-c", "print(6 * 7)").stdout.read() == "42\n"


def test_exec_streams_stdout_stderr_stdin_and_exit_code(sb):
    p = sb.exec("sh", "-c", 'echo "$GREETING $PWD"; echo oops >&2; read x; echo "got $x"; exit 5')
    p.stdin.write(b"hello\n")
    p.stdin.write_eof()
    p.stdin.drain()
    assert p.stdout.read() == "hi /tmp\ngot hello\n"
    assert p.stderr.read() == "oops\n"
    assert p.wait() == 5
    assert p.poll() == 5 and p.returncode == 5


def test_stdin_sent_right_after_exec_is_not_lost(sb):
    # The agent once dropped stdin that reached it before the command's task had started.
    for i in range(10):
        p = sb.exec("cat")
        p.stdin.write(f"line {i}")
        p.stdin.write_eof()
        p.stdin.drain()
        assert p.stdout.read() == f"line {i}"
        assert p.wait() == 0


PTY_PROBE = (
    "import os, sys\n"
    "print(os.isatty(0), os.isatty(1), os.isatty(2), os.get_terminal_size(0).columns)\n"
    "print('to stderr', file=sys.stderr)\n"
    "print('hello', input('name? '))\n"
    "print('ctty', os.tcgetpgrp(0) == os.getpgrp())\n"
)


def test_pty_exec_runs_on_a_terminal(sb):
    p = sb.exec("python3", "-c", PTY_PROBE, pty=True)
    p.stdin.write(b"ada\n")
    p.stdin.drain()
    out = p.stdout.read()
    assert p.wait() == 0
    lines = out.replace("\r\n", "\n").splitlines()
    assert "True True True 80" in lines
    assert "to stderr" in lines  # stderr comes with stdout on a terminal
    # The terminal echoes what was typed, when it was typed: before or after the prompt.
    assert out.count("ada") == 2 and "name? " in out
    assert "hello ada\n" in out.replace("\r\n", "\n") and "ctty True" in lines
    assert p.stderr.read() == ""
    if sb.isolation == "gvisor":
        return  # runsc 20221219's terminals ignore ^D (VEOF): see docs/sandboxes.md
    # End of input on a terminal: cat stops at ^D.
    cat = sb.exec("cat", pty=True)
    cat.stdin.write(b"typed\n")
    cat.stdin.write_eof()
    cat.stdin.drain()
    assert cat.wait() == 0
    assert cat.stdout.read().replace("\r\n", "\n") == "typed\ntyped\n"


def test_command_sandbox_with_pty(app):
    sb = modal.Sandbox.create("sh", "-c", "tty; test -t 1", app=app, pty=True)
    assert sb.stdout.read().strip().startswith("/dev/pts/")
    sb.wait()
    assert sb.returncode == 0


def test_exec_options_lines_and_bytes(sb):
    p = sb.exec("sh", "-c", 'for i in 1 2 3; do echo "$X$i"; done; pwd', env={"X": "n"},
                workdir="/usr", secrets=[modal.Secret.from_dict({"S": "s"})])
    assert list(p.stdout) == ["n1\n", "n2\n", "n3\n", "/usr\n"]
    raw = sb.exec("printf", r"\x00\xff", text=False).stdout.read()
    assert raw == b"\x00\xff"
    missing = sb.exec("no-such-command-here")
    assert missing.wait() == 127
    assert "no-such-command-here" in missing.stderr.read()


def test_async_faces(sb):
    async def main():
        p = await sb.exec.aio("sh", "-c", "echo a; echo b")
        lines = [line async for line in p.stdout]
        return lines, await p.wait.aio()

    assert asyncio.run(main()) == (["a\n", "b\n"], 0)


def test_exec_timeout_kills_the_command(sb):
    p = sb.exec("sleep", "60", timeout=1)
    assert p.wait() == -9
    assert sb.exec("true").wait() == 0  # the sandbox carries on


def test_filesystem(sb, tmp_path):
    fs = sb.filesystem
    fs.make_directory("/work-dir/a/b", parents=True)
    fs.write_text("/work-dir/a/b/note.txt", "hello")
    fs.write_bytes("/work-dir/bin.dat", b"\x00\x01")
    assert fs.read_text("/work-dir/a/b/note.txt") == "hello"
    assert fs.read_bytes("/work-dir/bin.dat") == b"\x00\x01"
    assert sorted(fs.list_files("/work-dir")) == ["a", "bin.dat"]
    assert fs.stat("/work-dir/a/b/note.txt")["size"] == 5
    assert fs.stat("/work-dir/a")["type"] == "directory"
    # What the file API writes, commands in the sandbox see.
    assert sb.exec("cat", "/work-dir/a/b/note.txt").stdout.read() == "hello"
    local = tmp_path / "in.txt"
    local.write_text("from the host")
    fs.copy_from_local(local, "/work-dir/copied.txt")
    fs.copy_to_local("/work-dir/copied.txt", tmp_path / "out.txt")
    assert (tmp_path / "out.txt").read_text() == "from the host"
    fs.remove("/work-dir/bin.dat")
    with pytest.raises(FileNotFoundError):
        fs.read_bytes("/work-dir/bin.dat")
    with pytest.raises(OSError):
        fs.remove("/work-dir/a")
    fs.remove("/work-dir/a", recursive=True)
    assert sorted(fs.list_files("/work-dir")) == ["copied.txt"]


def test_command_sandbox_ends_with_its_command(app):
    sb = modal.Sandbox.create("sh", "-c", "echo main; read x; echo $x >&2; exit 3", app=app)
    sb.stdin.write("in\n")
    sb.stdin.drain()
    assert sb.stdout.read() == "main\n"
    assert sb.stderr.read() == "in\n"
    sb.wait()
    assert sb.returncode == 3 and sb.poll() == 3


def test_env_secrets_and_workdir_reach_every_command(app):
    # Whether it came booted from the warm pool or cold, a sandbox's env, secrets and workdir
    # hold for its own command and for each exec.
    for _ in range(3):
        sb = modal.Sandbox.create("sh", "-c", 'echo "$A $S $PWD"', app=app, env={"A": "1"},
                                  secrets=[modal.Secret.from_dict({"S": "s"})], workdir="/tmp")
        assert sb.stdout.read() == "1 s /tmp\n"
        sb.wait()
        sb = modal.Sandbox.create(app=app, env={"A": "2"}, workdir="/usr")
        try:
            assert sb.exec("sh", "-c", 'echo "$A $PWD"').stdout.read() == "2 /usr\n"
            assert sb.exec("sh", "-c", 'echo "$A"', env={"A": "3"}).stdout.read() == "3\n"
        finally:
            sb.terminate()


def test_timeout_and_idle_timeout(app):
    sb = modal.Sandbox.create(app=app, timeout=2)
    with pytest.raises(SandboxTimeoutError):
        sb.wait()
    idle = modal.Sandbox.create(app=app, idle_timeout=1)
    assert idle.exec("sleep", "2").wait() == 0  # a running command is not idleness
    with pytest.raises(SandboxTimeoutError):
        idle.wait()


def test_terminate(app):
    sb = modal.Sandbox.create(app=app)
    p = sb.exec("sleep", "60")
    sb.terminate()
    assert p.wait() == -9
    sb.wait(raise_on_termination=False)
    assert sb.returncode == 137
    with pytest.raises(SandboxTerminatedError):
        sb.wait()
    with pytest.raises(SandboxTerminatedError):
        sb.exec("true")


def test_from_id_from_name_list_and_tags(app):
    sb = modal.Sandbox.create(app=app, name="named-one")
    try:
        assert modal.Sandbox.from_id(sb.object_id).object_id == sb.object_id
        assert modal.Sandbox.from_name("sandbox-tests", "named-one").object_id == sb.object_id
        with pytest.raises(modal.exception.AlreadyExistsError):
            modal.Sandbox.create(app=app, name="named-one")
        sb.set_tags({"team": "a", "kind": "x"})
        assert sb.get_tags() == {"team": "a", "kind": "x"}
        ids = [s.object_id for s in modal.Sandbox.list(app_id=app.app_id, tags={"team": "a"})]
        assert ids == [sb.object_id]
        assert modal.Sandbox.list(tags={"team": "b"}) == []
    finally:
        sb.terminate()
    assert sb.object_id not in [s.object_id for s in modal.Sandbox.list()]
    with pytest.raises(modal.exception.NotFoundError):
        modal.Sandbox.from_name("sandbox-tests", "named-one")


def test_snapshot_filesystem_seeds_a_new_sandbox(app):
    sb = modal.Sandbox.create(app=app)
    sb.exec("sh", "-c", "echo v1 > /etc/app.conf && mkdir /data && echo d > /data/f && "
            "rm /etc/hostname").wait()
    image = sb.snapshot_filesystem()
    sb.terminate()
    seeded = modal.Sandbox.create(app=app, image=image)
    try:
        assert seeded.filesystem.read_text("/etc/app.conf") == "v1\n"
        assert seeded.filesystem.read_text("/data/f") == "d\n"
        with pytest.raises(FileNotFoundError):  # deletions are part of the snapshot too
            seeded.filesystem.read_text("/etc/hostname")
    finally:
        seeded.terminate()
    fresh = modal.Sandbox.create(app=app)
    try:
        with pytest.raises(FileNotFoundError):
            fresh.filesystem.read_text("/etc/app.conf")
    finally:
        fresh.terminate()


def test_volume_is_a_working_copy_committed_when_the_sandbox_ends(app):
    with modal.Volume.ephemeral() as vol:
        with vol.batch_upload() as batch:
            batch.put_file(io.BytesIO(b"seed"), "seed.txt")
        sb = modal.Sandbox.create(app=app, volumes={"/data": vol})
        try:
            assert sb.isolation  # a volume makes it boot cold, with the copy bound at /data
            assert sb.exec("cat", "/data/seed.txt").stdout.read() == "seed"
            script = ("echo new > /data/new.txt && rm /data/seed.txt && mkdir -p /data/d && "
                      "echo x > /data/d/x && ln -s /etc/passwd /data/link")
            assert sb.exec("sh", "-c", script).wait() == 0
            # The volume itself changes only at the commit.
            assert [e.path for e in vol.listdir("/")] == ["seed.txt"]
        finally:
            sb.terminate()
        files = sorted(e.path for e in vol.listdir("/", recursive=True))
        assert files == ["d", "d/x", "new.txt"]  # the symlink is not taken
        assert b"".join(vol.read_file("new.txt")) == b"new\n"
        assert b"".join(vol.read_file("d/x")) == b"x\n"


def test_unsupported_options_say_so(app):
    with pytest.raises(modal.exception.NotSupportedYet, match="h2_ports"):
        modal.Sandbox.create(app=app, h2_ports=[8000])
    with pytest.raises(InvalidError, match="app="):
        modal.Sandbox.create()


def test_cli(server, app):
    sb = modal.Sandbox.create(app=app)
    listed = server.cli("sandbox", "list")
    assert sb.object_id in listed.stdout, listed.stderr
    ran = server.cli("sandbox", "exec", sb.object_id, "sh", "-c", "cat; exit 4", input="piped")
    assert ran.returncode == 4 and ran.stdout == "piped", ran.stderr
    done = server.cli("sandbox", "terminate", sb.object_id)
    assert done.returncode == 0, done.stderr
    assert sb.object_id not in server.cli("sandbox", "list").stdout


def _cli_env(server) -> dict[str, str]:
    return server.env() | {"FIREBOX_SERVER_URL": server.url, "FIREBOX_TOKEN": server.token}


def test_cli_exec_streams_output_as_it_comes(server, sb):
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "firebox.cli.main", "sandbox", "exec", sb.object_id,
         "sh", "-c", "echo first; sleep 4; echo second >&2; exit 4"],
        env=_cli_env(server), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE)
    assert proc.stdout.readline() == b"first\n"
    assert time.monotonic() - started < 3.5  # before the command ended
    assert proc.wait(30) == 4
    assert proc.stderr.read() == b"second\n"
    # A signal's death reads as a shell says it: 128 + the signal's number.
    killed = server.cli("sandbox", "exec", sb.object_id, "sh", "-c", "kill -9 $$")
    assert killed.returncode == 137
    # Without a terminal on stdin, --pty says what to do.
    refused = server.cli("sandbox", "exec", "--pty", sb.object_id, "sh", input="")
    assert refused.returncode == 2 and "needs a terminal" in refused.stderr


def test_cli_exec_pty_connects_a_terminal(server, sb):
    pid, fd = pty.fork()
    if pid == 0:  # the child: the CLI, on the terminal pty.fork made
        os.execve(sys.executable, [sys.executable, "-m", "firebox.cli.main", "sandbox", "exec",
                                   "--pty", sb.object_id, "sh"], _cli_env(server))
    seen = bytearray()

    def read_until(marker: bytes, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while marker not in seen and time.monotonic() < deadline:
            if select.select([fd], [], [], 0.1)[0]:
                try:
                    seen.extend(os.read(fd, 4096))
                except OSError:
                    return

    try:
        read_until(b"# ")  # the remote shell's prompt
        os.write(fd, b"echo sum-$((40+2)); tty\r")
        read_until(b"/dev/pts/")
        # The remote terminal follows this one's size (the CLI looks a few times a second).
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 17, 91, 0, 0))
        deadline = time.monotonic() + 10
        while b"\r\n17 91\r\n" not in seen and time.monotonic() < deadline:
            os.write(fd, b"stty size\r")
            read_until(b"\r\n17 91\r\n", timeout=0.5)
        os.write(fd, b"exit 3\r")
        read_until(b"\x00", timeout=10)  # until the CLI closes the terminal
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(fd)
    assert b"sum-42\r\n" in seen and b"/dev/pts/" in seen, bytes(seen)
    assert b"\r\n17 91\r\n" in seen, bytes(seen)
    assert os.waitstatus_to_exitcode(status) == 3
