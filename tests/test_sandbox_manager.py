"""The control plane's side of sandboxes (server/core/sandboxes.py) against a backend that boots
nothing: the test plays each sandbox's agent through the Backend's sandbox contract, so the
records, exit codes, timeouts and errors are checked in milliseconds, without processes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import sqlalchemy as sa

from firebox.backends.base import (
    SANDBOX_MEMORY_MB,
    SandboxEvents,
    SandboxFailed,
    SandboxFileError,
    SandboxGone,
    SandboxLaunch,
)
from firebox.server.core.errors import ApiError
from firebox.server.core.sandboxes import KILLED, MAIN, Sandbox, SandboxManager, Spec
from firebox.server.core.tunnels import Tunnels
from firebox.store import schema as s
from firebox.store.db import Database

Reply = asyncio.Future[tuple[Any, bytes]]


class FakeSandbox:
    """A booted sandbox that runs nothing: what it was asked, and the agent's side for the test."""

    def __init__(self, launch: SandboxLaunch) -> None:
        self.id, self.isolation, self.launch = launch.sandbox_id, launch.isolation, launch
        self.events: SandboxEvents | None = None
        self.address: str | None = None
        self.asked: list[tuple[Any, ...]] = []
        self.files: list[tuple[str, str, Reply]] = []  # (op, path, its reply, for the test)
        self.killed = self.removed = False

    def _ask(self, *what: Any) -> None:
        if self.removed:
            raise SandboxGone(self.id)
        self.asked.append(what)

    def exec(self, exec_id: str, args: list[str], env: dict[str, str], cwd: str | None,
             pty: bool, size: list[int] | None) -> None:
        self._ask("exec", exec_id, args, env, cwd)

    def stdin(self, exec_id: str, data: bytes, eof: bool) -> None:
        self._ask("stdin", exec_id, data, eof)

    def signal(self, exec_id: str, sig: int) -> None:
        self._ask("signal", exec_id, sig)

    def file_op(self, op: str, path: str, data: bytes, options: dict[str, Any]) -> Reply:
        self._ask("fs", op, path)
        reply: Reply = asyncio.get_running_loop().create_future()
        if op == "sync":
            reply.set_result((None, b""))
        self.files.append((op, path, reply))
        return reply

    async def snapshot(self, layer_id: str) -> None:
        self.asked.append(("snapshot", layer_id))

    async def kill(self) -> None:
        self.killed = True

    async def remove(self) -> None:
        self.removed = True
        for _, _, reply in self.files:
            if not reply.done():
                reply.set_exception(SandboxGone(self.id))


class FakeLauncher:
    """Backend.sandboxes for the test: boots at once (or as told), and hands out warm ones."""

    def __init__(self) -> None:
        self.booted: list[FakeSandbox] = []
        self.warm: list[FakeSandbox] = []
        self.fail: BaseException | None = None  # the next boot raises it
        self.hold: asyncio.Event | None = None  # boots wait for it

    def isolation(self) -> str:
        return "gvisor"

    def networks(self) -> bool:
        return False

    def start(self) -> None:
        pass

    async def start_sandbox(self, launch: SandboxLaunch, events: SandboxEvents) -> FakeSandbox:
        sb = FakeSandbox(launch)
        sb.events = events
        self.booted.append(sb)
        if self.hold is not None:
            await self.hold.wait()
        if self.fail is not None:
            exc, self.fail = self.fail, None
            raise exc
        return sb

    def take_warm(self) -> FakeSandbox | None:
        return self.warm.pop(0) if self.warm else None

    async def close(self) -> None:
        pass


def spec(**kw: Any) -> Spec:
    fields: dict[str, Any] = dict(args=[], env={}, workdir=None, timeout=300.0,
                                  idle_timeout=None, cpu=None, memory_mb=None, layers=[])
    return Spec(**(fields | kw))


@asynccontextmanager
async def manager(tmp_path: Path) -> AsyncIterator[tuple[SandboxManager, FakeLauncher]]:
    db = Database(f"sqlite:///{tmp_path / 'firebox.db'}")
    await db.migrate()
    db.start()
    launcher = FakeLauncher()
    plane = SimpleNamespace(db=db, backend=SimpleNamespace(sandboxes=launcher),
                            settings=SimpleNamespace(state_dir=tmp_path),
                            tunnels=Tunnels(tmp_path, "127.0.0.1", "127.0.0.1"))
    m = SandboxManager(plane)  # type: ignore[arg-type]
    await m.start()
    try:
        yield m, launcher
    finally:
        await m.close()
        await db.close()


async def row(m: SandboxManager, sb: Sandbox) -> Any:
    rows = await m.cp.db.read(sa.select(s.sandboxes).where(s.sandboxes.c.id == sb.id))
    return rows[0]


async def ended(sb: Sandbox) -> None:
    await asyncio.wait_for(sb.done.wait(), 2)


def run(test: Callable[[Path], Coroutine[Any, Any, None]], tmp_path: Path) -> None:
    asyncio.run(test(tmp_path))


async def raises(kind: str, status: int, awaitable: Awaitable[Any]) -> ApiError:
    with pytest.raises(ApiError) as caught:
        await awaitable
    assert (caught.value.kind, caught.value.status) == (kind, status)
    return caught.value


def test_the_main_command_runs_with_the_sandbox_env_and_its_exit_ends_the_sandbox(tmp_path):
    async def main(tmp_path: Path) -> None:
        async with manager(tmp_path) as (m, launcher):
            sb = await m.create("ws-1", "ap-1", "one", {"k": "v"},
                                spec(args=["echo", "hi"], env={"A": "1"}, workdir="/w"))
            agent = launcher.booted[0]
            assert agent.asked == [("exec", MAIN, ["echo", "hi"], {"A": "1"}, "/w")]
            assert agent.launch.env == {"A": "1"}
            assert agent.events is not None
            agent.events.exec_output(MAIN, 1, b"hi\n")
            agent.events.exec_exited(MAIN, 3)
            await ended(sb)
            assert sb.execs[MAIN].chunks == [(1, b"hi\n")] and sb.execs[MAIN].code == 3
            r = await row(m, sb)
            assert (r.status, r.returncode, r.isolation) == ("finished", 3, "gvisor")
            assert agent.removed
    run(main, tmp_path)


def test_a_sandbox_whose_processes_end_by_themselves_failed_or_was_killed_for_memory(tmp_path):
    async def main(tmp_path: Path) -> None:
        async with manager(tmp_path) as (m, launcher):
            for oom, status in ((False, "failed"), (True, "terminated")):
                sb = await m.create("ws-1", "ap-1", None, {}, spec())
                e = m.exec(sb, ["sleep", "60"], {}, None, None)
                agent = launcher.booted[-1]
                assert agent.events is not None
                agent.events.sandbox_ended(oom)
                await ended(sb)
                assert e.code == -9
                r = await row(m, sb)
                assert (r.status, r.returncode) == (status, KILLED)
                assert agent.removed
    run(main, tmp_path)


def test_terminate_kills_its_commands_and_nothing_more_can_be_asked(tmp_path):
    async def main(tmp_path: Path) -> None:
        async with manager(tmp_path) as (m, launcher):
            sb = await m.create("ws-1", "ap-1", None, {}, spec())
            e = m.exec(sb, ["sleep", "60"], {}, None, None)
            await m.terminate(sb, "terminated")
            agent = launcher.booted[0]
            assert agent.killed and agent.removed and e.code == -9
            r = await row(m, sb)
            assert (r.status, r.returncode) == ("terminated", KILLED)
            with pytest.raises(ApiError) as caught:
                m.exec(sb, ["true"], {}, None, None)
            assert (caught.value.status, caught.value.kind) == (409, "SandboxTerminatedError")
    run(main, tmp_path)


def test_a_default_sandbox_is_a_warm_one_and_a_sized_one_boots(tmp_path):
    async def main(tmp_path: Path) -> None:
        async with manager(tmp_path) as (m, launcher):
            warm = FakeSandbox(SandboxLaunch("sb-warm", "gvisor"))
            launcher.warm.append(warm)
            sb = await m.create("ws-1", "ap-1", None, {}, spec(env={"A": "1"}))
            assert sb.id == "sb-warm" and sb.process is warm and not launcher.booted
            assert launcher.warm == [] and warm.events is not None
            m.exec(sb, ["env"], {"B": "2"}, None, None)  # booted without it, it gets the env now
            assert warm.asked[-1][3] == {"A": "1", "B": "2"}
            sized = await m.create("ws-1", "ap-1", None, {}, spec(cpu=2.0))
            launch = launcher.booted[0].launch
            assert sized.id == launch.sandbox_id != "sb-warm"
            assert (launch.cpu, launch.memory_mb) == (2.0, SANDBOX_MEMORY_MB)
            assert (await row(m, sb)).status == (await row(m, sized)).status == "running"
    run(main, tmp_path)


def test_a_sandbox_that_did_not_boot_says_why_and_is_recorded_failed(tmp_path):
    async def main(tmp_path: Path) -> None:
        async with manager(tmp_path) as (m, launcher):
            launcher.fail = SandboxFailed("Sandbox sb-x did not start within 60 s.")
            err = await raises("RemoteError", 500, m.create("ws-1", "ap-1", None, {}, spec()))
            assert err.message == "Sandbox sb-x did not start within 60 s."
            launcher.fail = OSError("no room")
            err = await raises("RemoteError", 500, m.create("ws-1", "ap-1", None, {}, spec()))
            sid = launcher.booted[1].id
            assert err.message == f"Sandbox {sid} failed to start: no room"
            assert (await row(m, m.running[sid])).status == "failed"
    run(main, tmp_path)


def test_a_sandbox_terminated_while_it_boots_is_removed_once_booted(tmp_path):
    async def main(tmp_path: Path) -> None:
        async with manager(tmp_path) as (m, launcher):
            launcher.hold = asyncio.Event()
            creating = asyncio.create_task(m.create("ws-1", "ap-1", None, {}, spec()))
            while not launcher.booted:
                await asyncio.sleep(0.001)
            await m.terminate(m.running[launcher.booted[0].id], "terminated")
            launcher.hold.set()
            await raises("SandboxTerminatedError", 409, creating)
            assert launcher.booted[0].killed and launcher.booted[0].removed
    run(main, tmp_path)


def test_file_operations_answer_with_the_sandbox_and_fail_as_it_ends(tmp_path):
    async def main(tmp_path: Path) -> None:
        async with manager(tmp_path) as (m, launcher):
            sb = await m.create("ws-1", "ap-1", None, {}, spec())
            agent = launcher.booted[0]
            await raises("InvalidError", 400, m.file_op(sb, "read", "relative"))
            reading = asyncio.create_task(m.file_op(sb, "read", "/a"))
            await asyncio.sleep(0)
            agent.files[-1][2].set_result(("r", b"data"))
            assert await reading == ("r", b"data")
            missing = asyncio.create_task(m.file_op(sb, "read", "/gone"))
            await asyncio.sleep(0)
            agent.files[-1][2].set_exception(SandboxFileError("FileNotFoundError", "no /gone"))
            err = await raises("FileNotFoundError", 404, missing)
            assert err.message == "no /gone"
            pending = asyncio.create_task(m.file_op(sb, "read", "/slow"))
            await asyncio.sleep(0)
            await m.terminate(sb, "terminated")
            err = await raises("SandboxTerminatedError", 409, pending)
            assert err.message == f"Sandbox {sb.id} ended (terminated)."
            await raises("SandboxTerminatedError", 409, m.file_op(sb, "read", "/a"))
    run(main, tmp_path)


def test_an_idle_sandbox_times_out_but_not_while_a_command_runs(tmp_path):
    async def main(tmp_path: Path) -> None:
        async with manager(tmp_path) as (m, launcher):
            busy = await m.create("ws-1", "ap-1", None, {}, spec(idle_timeout=0.1))
            idle = await m.create("ws-1", "ap-1", None, {}, spec(idle_timeout=0.1))
            m.exec(busy, ["sleep", "60"], {}, None, None)
            await ended(idle)
            assert (await row(m, idle)).status == "timeout"
            assert busy.status == "running"
    run(main, tmp_path)
