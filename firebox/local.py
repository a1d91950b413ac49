"""The embedded control plane: a private server in a thread of this process, for `firebox run`
and `with app.run():` when no server is configured. The SDK reaches the server only through here."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import threading
from pathlib import Path

# First: on a client's install (no `server` extra) it says so in a line, before uvicorn fails.
from . import server  # noqa: F401

# isort: split
import uvicorn

from . import config
from .server.core.plane import Settings
from .server.main import bind, bind_unix, bootstrap, lock_state_dir, name_holder, uvicorn_config


class EmbeddedServer:
    """A control plane on a private port and state directory, in a thread of this process."""

    def __init__(self) -> None:
        # A state directory of its own, held like a lasting server's: an embedded server never
        # meets another server's state, nor another embedded one's.
        self.state_dir = Path(tempfile.mkdtemp(prefix="firebox-embedded-"))
        self.lock = lock_state_dir(self.state_dir)
        self.sock = bind("127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        name_holder(self.lock, self.url)
        self.unix = bind_unix(self.state_dir / "server.sock")
        self.token = ""
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def start(self) -> EmbeddedServer:
        settings = Settings.for_state_dir(self.state_dir, self.url)
        settings.socket = self.state_dir / "server.sock"
        try:  # one authority for every run, so that its ca.pem is trusted once
            config.embedded_tls_dir().mkdir(parents=True, exist_ok=True, mode=0o700)
            settings.tls_dir = config.embedded_tls_dir()
        except OSError:
            pass  # a read-only home: this run's own, in its state directory
        started = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            try:
                self.token = loop.run_until_complete(bootstrap(settings))
                self._server = uvicorn.Server(uvicorn_config(settings))
                sockets = [self.sock, self.unix]
                task = loop.create_task(self._server.serve(sockets=sockets))

                async def wait_started() -> None:
                    while not self._server.started and not task.done():  # type: ignore[union-attr]
                        await asyncio.sleep(0.005)
                    started.set()

                loop.run_until_complete(wait_started())
                loop.run_until_complete(task)
            except BaseException as exc:  # reported to the starting thread
                self._error = exc
            finally:
                started.set()
                loop.close()

        self._thread = threading.Thread(target=run, name="firebox-embedded-server", daemon=True)
        self._thread.start()
        started.wait()
        if self._error is not None or not (self._server and self._server.started):
            self.stop()
            raise RuntimeError(f"The embedded firebox server failed to start: {self._error}")
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=15)
        self.sock.close()
        self.unix.close()
        if self.lock >= 0:
            os.close(self.lock)
            self.lock = -1
        shutil.rmtree(self.state_dir, ignore_errors=True)
