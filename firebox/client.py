"""The typed client of the control plane. It lives on firebox's event loop (see _sync.py).

Every request that changes state is idempotent (the client names calls and numbers inputs), so
the client retries through connection failures: a server restart pauses callers, it does not
fail them.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import ssl
import sys
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import call_channel, config, wire
from . import exception as exceptions
from .wire import settings

if TYPE_CHECKING:  # httpx is imported on first use: containers that never call out skip it
    import httpx

LONG_POLL = 50.0
# Calls whose arguments are larger than this go by HTTP, so they do not hold up the smaller
# frames behind them on the call channel.
CHANNEL_MAX_ARGS = 1 << 20
FILE_CHUNK = 1 << 20  # bytes of a file sent at a time
# How long a refused connection to this machine is retried when this process never reached the
# server there: nothing listens, and waiting the reconnect timeout out would only hide that. Once
# reached, a refusal is a restart, retried as long as the reconnect timeout allows.
NEVER_REACHED_GRACE = 3.0
_reached: set[str] = set()  # the servers this process had an answer from


def reconnect_timeout() -> float:
    return settings.RECONNECT_TIMEOUT.get()


_ERRORS: dict[str, type[Exception]] = {
    "InvalidError": exceptions.InvalidError,
    "NotFoundError": exceptions.NotFoundError,
    "AuthError": exceptions.AuthError,
    "AlreadyExistsError": exceptions.AlreadyExistsError,
    "OutputExpiredError": exceptions.OutputExpiredError,
    "FileNotFoundError": FileNotFoundError,
    "FileExistsError": FileExistsError,
    "IsADirectoryError": IsADirectoryError,
    "NotADirectoryError": NotADirectoryError,
    "PermissionError": PermissionError,
    "OSError": OSError,
    "SandboxTerminatedError": exceptions.SandboxTerminatedError,
}


ENVIRONMENT_HEADER = "x-firebox-environment"


class Client:
    def __init__(self, server_url: str, token: str, source: str = "",
                 environment: str | None = None, ca_file: str | None = None) -> None:
        self.server_url = server_url.rstrip("/")
        self.token = token
        self.ca_file = ca_file  # trusted besides the system's over HTTPS (config.ca_file)
        self.source = source  # where the URL was set, named in the errors about reaching it
        # The workspace's environment every request names (None: the server's default, "main",
        # or inside a container its app's); a request may name another.
        self.environment = environment and _environment(environment)
        self._http: httpx.AsyncClient | None = None
        self._by_socket = False  # a container's own server, reached by its unix socket
        self._retrying = False  # a retry was announced and no answer has come since
        # Each function's call key, as the server gave it: call ids tagged with it run at once.
        self.call_keys: dict[str, str] = {}
        self.channel = call_channel.CallChannel(self.server_url, token)

    @property
    def http(self) -> httpx.AsyncClient:
        if self._http is None:
            import httpx

            limits = httpx.Limits(max_connections=64, max_keepalive_connections=32)
            transport = None
            socket_path = settings.SERVER_SOCKET.get()
            own_server = (settings.SERVER_URL.get() or "").rstrip("/")
            if socket_path and self.server_url == own_server:
                # Inside a container: its own server by the unix socket it was given, which
                # works with no network (block_network).
                transport = httpx.AsyncHTTPTransport(uds=socket_path, limits=limits)
                self._by_socket = True
            headers = {"Authorization": f"Bearer {self.token}"}
            if self.environment:
                headers[ENVIRONMENT_HEADER] = self.environment
            verify: ssl.SSLContext | bool = True
            if self.ca_file and self.server_url.startswith("https:"):
                verify = ssl.create_default_context()
                verify.load_verify_locations(self.ca_file)
            self._http = httpx.AsyncClient(
                base_url=self.server_url,
                headers=headers,
                timeout=httpx.Timeout(LONG_POLL + 30, connect=10),
                limits=limits,
                transport=transport,
                verify=verify,
            )
        return self._http

    async def close(self) -> None:
        await self.channel.close()
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        packed: Any = None,
        content: bytes | Path | None = None,
        params: dict[str, Any] | None = None,
        attempt: int = 0,
        environment: str | None = None,
    ) -> Any:
        """Send a request, retrying through connection failures and 503s until the reconnect
        timeout; `attempt` > 0 tells the server the request may have reached it before. A
        Path's content is read from the file as it is sent (again for a retry). environment
        names the workspace's environment for this request, over the client's."""
        headers = {ENVIRONMENT_HEADER: _environment(environment)} if environment else {}
        data: bytes | Path | None = content
        if body is not None:
            data = json.dumps(body).encode()
            headers["content-type"] = "application/json"
        elif packed is not None:
            data = wire.pack(packed)
            headers["content-type"] = wire.MSGPACK
        start = time.monotonic()
        deadline = start + reconnect_timeout()
        delay = 0.05
        while True:
            if attempt:  # lets the server tell a retry from a first sight
                headers["x-firebox-attempt"] = str(attempt)
            attempt += 1
            body: Any = data
            if isinstance(data, Path):
                headers["content-length"] = str(data.stat().st_size)
                body = _file_chunks(data)
            try:
                response = await self.http.request(
                    method, path, content=body, headers=headers, params=params
                )
            except _transport_errors() as exc:
                if untrusted := _certificate_refused(exc):  # no retry makes it trusted
                    raise self._untrusted(untrusted) from None
                nobody_listens = self.server_url not in _reached and self._refused_here(exc)
                give_up_at = min(deadline, start + NEVER_REACHED_GRACE) if nobody_listens \
                    else deadline
                if time.monotonic() > give_up_at:
                    self._retrying = False
                    raise self._unreachable(exc, time.monotonic() - start) from None
                self._announce_retry(exc, give_up_at - start, nobody_listens)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
                continue
            self._answered()
            if response.status_code == 503 and time.monotonic() < deadline:
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
                continue
            return _decode(response)

    def _refused_here(self, exc: Exception) -> bool:
        """Whether exc is a connection to this machine refused: nothing listens at the port."""
        if self._by_socket:
            return False
        host = self.http.base_url.host
        try:
            local = host == "localhost" or ipaddress.ip_address(host).is_loopback
        except ValueError:
            local = False
        return local and _refused(exc)

    def _announce_retry(self, exc: Exception, seconds: float, nobody_listens: bool) -> None:
        if not self._retrying:
            self._retrying = True
            knob = "" if nobody_listens else f" ({settings.RECONNECT_TIMEOUT.name})"
            print(f"firebox: no answer from the server at {self.server_url} ({_reason(exc)}); "
                  f"retrying for up to {seconds:.0f}s{knob}.", file=sys.stderr, flush=True)

    def _answered(self) -> None:
        _reached.add(self.server_url)
        self._retrying = False

    def _unreachable(self, exc: Exception, waited: float = 0) -> exceptions.ConnectionError:
        where = f" (set in {self.source})" if self.source else ""
        if self.server_url not in _reached and self._refused_here(exc):
            return exceptions.ConnectionError(
                f"Nothing is listening at {self.server_url}{where}; start the server with "
                "`firebox server`."
            )
        during = f" for {waited:.0f}s" if waited else ""
        return exceptions.ConnectionError(
            f"Could not reach the firebox server at {self.server_url}{where}{during} "
            f"({_reason(exc)}); check that it runs and that the URL is right."
        )

    def _untrusted(self, exc: ssl.SSLCertVerificationError) -> exceptions.ConnectionError:
        where = f" (set in {self.source})" if self.source else ""
        return exceptions.ConnectionError(
            f"The server at {self.server_url}{where} has a certificate this machine does not "
            f"trust ({exc.verify_message}); `firebox token set --server {self.server_url} "
            "--token TOKEN` saves the server's, or set SSL_CERT_FILE to a file that holds it.")

    async def call(self, op: str, path: str, body: Mapping[str, Any], call_id: str | None = None
                   ) -> Any:
        """One of a call's requests (`call`: inputs in; `outputs`: outputs out) by the call
        channel, or by HTTP (POST to `path`) where the channel cannot carry it."""
        retried = False
        if sum(len(args) for _idx, args in body.get("inputs") or ()) <= CHANNEL_MAX_ARGS:
            try:
                reply = await self.channel.request(op, body, call_id)
            except call_channel.Unavailable:
                pass
            except call_channel.Lost:
                retried = True
            else:
                self._answered()
                status = reply.get("status")
                if status is None:
                    return reply["ok"]
                if status != 503:
                    raise _error(reply.get("type", ""), reply.get("error", ""))
                retried = True  # a server starting up: HTTP waits it out
        return await self.request("POST", path, packed=body, attempt=int(retried))

    async def stream_lines(
        self, path: str, params: dict[str, Any] | None = None, *, method: str = "GET",
        body: Any = None,
    ) -> AsyncIterator[dict[str, Any]]:
        try:
            async with self.http.stream(method, path, params=params, json=body,
                                        timeout=None) as response:
                self._answered()
                if response.status_code >= 400:
                    await response.aread()
                    _decode(response)
                async for line in response.aiter_lines():
                    if line.strip():
                        yield json.loads(line)
        except _transport_errors() as exc:
            raise self._unreachable(exc) from None


def _environment(name: str) -> str:
    """name, where it can be sent as a header; an environment no server could have is refused
    here, in a line, rather than by httpx's encoder."""
    if not (name.isascii() and name.isprintable()):
        raise exceptions.InvalidError(
            f"'{name}' is not an environment name (they are letters, digits, '.', '-' and "
            "'_'); `firebox environment list` shows the workspace's.")
    return name


async def _file_chunks(path: Path) -> AsyncIterator[bytes]:
    with open(path, "rb") as f:
        while data := await asyncio.to_thread(f.read, FILE_CHUNK):
            yield data


def _refused(exc: BaseException) -> bool:
    cause: BaseException | None = exc
    while cause is not None and not isinstance(cause, ConnectionRefusedError):
        cause = cause.__cause__ or cause.__context__
    return cause is not None


def _certificate_refused(exc: BaseException) -> ssl.SSLCertVerificationError | None:
    cause: BaseException | None = exc
    while cause is not None and not isinstance(cause, ssl.SSLCertVerificationError):
        cause = cause.__cause__ or cause.__context__
    return cause


def _reason(exc: Exception) -> str:
    """What went wrong reaching a server, in words: httpx's message or its exception's name."""
    return "connection refused" if _refused(exc) else str(exc) or type(exc).__name__


def _transport_errors() -> tuple[type[Exception], ...]:
    import httpx

    return (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError,
            httpx.ConnectTimeout)


def _decode(response: httpx.Response) -> Any:
    if response.status_code >= 400:
        try:
            err = response.json()
        except ValueError:
            err = None
        if isinstance(err, dict) and "error" in err:
            raise _error(err.get("type", ""), err["error"])
        # Not an answer of firebox's API: another program at that port, or a proxy.
        origin = f"{response.url.scheme}://{response.url.netloc.decode()}"
        raise exceptions.RemoteError(
            f"{origin} answered {response.status_code} {response.reason_phrase}, not as a "
            "firebox server would; check the URL."
        )
    if response.headers.get("content-type", "").startswith(wire.MSGPACK):
        return wire.unpack(response.content)
    if response.headers.get("content-type", "").startswith("application/json"):
        return response.json()
    return response.content


def _error(kind: str, message: str) -> Exception:
    return _ERRORS.get(kind, exceptions.RemoteError)(message)


_client: Client | None = None
_override: Client | None = None


def use(client: Client | None) -> None:
    """Point the SDK at a given server (the embedded one while `app.run()` lasts)."""
    global _override
    _override = client


async def forget() -> None:
    """Close the configured server's client and drop it (run on firebox's loop): the next
    current() makes a new one."""
    global _client
    old, _client = _client, None
    if old is not None:
        await old.close()


def current() -> Client:
    """The client for the configured server; raises when none is configured."""
    global _client
    if _override is not None:
        return _override
    cfg = config.load()
    if cfg is None:
        raise exceptions.ConnectionError(
            "No firebox server is configured; run the app with `firebox run` (it starts one for "
            "the command), start `firebox server`, or set FIREBOX_SERVER_URL and FIREBOX_TOKEN."
        )
    if _client is None or (_client.server_url, _client.token, _client.environment) != (
            cfg.server_url, cfg.token, cfg.environment):
        _client = Client(cfg.server_url, cfg.token, cfg.source, cfg.environment, cfg.ca_file)
    return _client
