"""Tunnels: ports of sandboxes (and of containers, by forward()) reached from outside, through
listeners of the control plane.

For each port a sandbox asks for, the server listens on a port of its own, on the interface its
API listens on, and relays each connection to that port at the sandbox's address on its own
network, which the backend reports (SandboxProcess.address): the sandbox's server must listen on
0.0.0.0, as on a real host. A container's port is dialled by the backend (Backend.connect).
`encrypted_ports` get a TLS listener; `unencrypted_ports` get a plain TCP listener too.

TLS uses the operator's certificate (FIREBOX_TLS_CERT and FIREBOX_TLS_KEY, PEM files) or else a
certificate signed by an authority the server makes once in <state>/tls/ (an embedded server in
the client config's tls/embedded/, so that it stays the same from run to run); clients trust
that authority's ca.pem, which `firebox token set` saves (config.ca_file). FIREBOX_TUNNEL_HOST
sets the host name tunnels are advertised under (default: the host of the server's URL).
Containers and sandboxes trust it without being told: trust_bundle() is the host's system
certificates and that authority (or the operator's chain), which the backend binds into each.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import fcntl
import ipaddress
import logging
import re
import ssl
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...wire import settings
from .errors import ApiError

log = logging.getLogger("firebox.tunnels")

CHUNK = 65536
CONNECT_TIMEOUT = 10.0
MAX_PORTS = 16  # tunnels one sandbox may ask for
PEM_CERTIFICATE = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)

# How a relay reaches the port it serves: an address, or a function that connects to a port.
Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]
Target = str | Callable[[int], Awaitable[Streams]]


@dataclass
class Endpoint:
    """What a client needs for one port: Modal's Tunnel fields."""

    host: str
    port: int  # the TLS listener
    unencrypted_host: str = ""
    unencrypted_port: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"host": self.host, "port": self.port, "unencrypted_host": self.unencrypted_host,
                "unencrypted_port": self.unencrypted_port}


@dataclass
class Open:
    """One sandbox's listeners and the connections relayed through them."""

    servers: list[asyncio.Server] = field(default_factory=list)
    relays: set[asyncio.Task[None]] = field(default_factory=set)
    endpoints: dict[int, Endpoint] = field(default_factory=dict)


def check_ports(encrypted: Any, unencrypted: Any) -> dict[int, bool]:
    """The ports asked for, each mapped to whether it is TLS only; ValueError says what is
    wrong."""
    out: dict[int, bool] = {}
    for ports, tls_only in ((encrypted, True), (unencrypted, False)):
        if not isinstance(ports, list | tuple):
            raise ValueError("encrypted_ports= and unencrypted_ports= take lists of port numbers.")
        for p in ports:
            if not isinstance(p, int) or isinstance(p, bool) or not 1 <= p <= 65535:
                raise ValueError(f"{p!r} is not a port number (1-65535).")
            if p in out:
                raise ValueError(f"Port {p} is asked for twice; list each port once, in "
                                 "encrypted_ports= or in unencrypted_ports=.")
            out[p] = tls_only
    if len(out) > MAX_PORTS:
        raise ValueError(f"A sandbox may open at most {MAX_PORTS} tunnels.")
    return out


class Tunnels:
    def __init__(self, tls_dir: Path, bind_host: str, advertised_host: str) -> None:
        self.tls_dir = tls_dir  # the server's own authority and certificate (self_signed)
        self.bind_host = bind_host
        self.host = settings.TUNNEL_HOST.get() or advertised_host
        self.open_: dict[str, Open] = {}
        self._tls: ssl.SSLContext | None = None

    def tls(self) -> ssl.SSLContext:
        if self._tls is None:
            cert_env, key = settings.TLS_CERT.get(), settings.TLS_KEY.get()
            if cert_env and key:
                cert, keyfile = Path(cert_env), Path(key)
            else:
                cert, keyfile = self_signed(self.tls_dir, self.host)
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            try:
                ctx.load_cert_chain(cert, keyfile)
            except (OSError, ssl.SSLError) as exc:
                raise ApiError(500, "RemoteError", (
                    f"The server cannot load its TLS certificate {cert} and key {keyfile} for "
                    f"tunnels ({exc}); fix FIREBOX_TLS_CERT and FIREBOX_TLS_KEY, or unset both "
                    "for a certificate of the server's own.")) from None
            self._tls = ctx
        return self._tls

    async def open(self, owner: str, target: Target,
                   ports: dict[int, bool]) -> dict[int, Endpoint]:
        """Listen for each port and relay to it at target; undone by close(owner)."""
        state = self.open_.setdefault(owner, Open())
        try:
            for port, tls_only in sorted(ports.items()):
                dial = _dialer(target, port)
                tls_server = await self._listen(state, dial, self.tls())
                end = Endpoint(self.host, _port(tls_server))
                if not tls_only:
                    plain = await self._listen(state, dial, None)
                    end.unencrypted_host, end.unencrypted_port = self.host, _port(plain)
                state.endpoints[port] = end
        except BaseException:
            await self.close(owner)
            raise
        return state.endpoints

    def ca(self) -> bytes:
        """What clients trust for tunnels (served_ca), PEM."""
        return served_ca(self.tls_dir)

    def endpoints(self, owner: str) -> dict[int, Endpoint]:
        state = self.open_.get(owner)
        return dict(state.endpoints) if state else {}

    async def close(self, owner: str) -> None:
        state = self.open_.pop(owner, None)
        if state is None:
            return
        for server in state.servers:
            server.close()
        for task in list(state.relays):
            task.cancel()
        await asyncio.gather(*state.relays, return_exceptions=True)
        for server in state.servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 5)

    def owned_by(self, prefix: str) -> bool:
        return any(owner.startswith(prefix) for owner in self.open_)

    async def close_all(self, prefix: str = "") -> None:
        """Close every owner's tunnels, or those of owners whose name starts with prefix."""
        for owner in [o for o in self.open_ if o.startswith(prefix)]:
            await self.close(owner)

    async def _listen(self, state: Open, dial: Callable[[], Awaitable[Streams]],
                      tls: ssl.SSLContext | None) -> asyncio.Server:
        def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.ensure_future(relay(reader, writer, dial))
            state.relays.add(task)
            task.add_done_callback(state.relays.discard)

        server = await asyncio.start_server(accepted, self.bind_host, 0, ssl=tls,
                                            ssl_handshake_timeout=10 if tls else None)
        state.servers.append(server)
        return server


def _port(server: asyncio.Server) -> int:
    return int(server.sockets[0].getsockname()[1])


def _dialer(target: Target, port: int) -> Callable[[], Awaitable[Streams]]:
    if isinstance(target, str):
        return lambda: asyncio.open_connection(target, port)
    return lambda: target(port)


async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                dial: Callable[[], Awaitable[Streams]]) -> None:
    """Copy bytes both ways between a client and the sandbox's port until both sides end."""
    try:
        try:
            up_reader, up_writer = await asyncio.wait_for(dial(), CONNECT_TIMEOUT)
        except (OSError, TimeoutError):
            return  # nothing listens on that port in the sandbox (yet): the client sees a close
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            up_writer.close()
    finally:
        writer.close()


async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
    try:
        while data := await src.read(CHUNK):
            dst.write(data)
            await dst.drain()
        if dst.can_write_eof():
            dst.write_eof()
        else:  # TLS has no half-close: the other side learns the end by the close
            dst.close()
    except (ConnectionError, ssl.SSLError, OSError):
        dst.close()


def served_ca(tls_dir: Path) -> bytes:
    """The certificates a client must trust for tunnels, PEM: those of the operator's chain
    (FIREBOX_TLS_CERT; only its certificates, should its key be in the same file), else the
    authority of the server's own (made here once)."""
    cert = settings.TLS_CERT.get()
    if cert and settings.TLS_KEY.get():
        try:
            chain = Path(cert).read_bytes()
        except OSError:
            return b""  # Tunnels.tls() says what is wrong when a tunnel is asked for
        return b"".join(m.group(0) + b"\n" for m in PEM_CERTIFICATE.finditer(chain))
    return own_ca(tls_dir).read_bytes()


def trust_bundle(state_dir: Path, tls_dir: Path) -> Path:
    """<state>/ca-bundle.pem: this host's system certificates and served_ca(), written on each
    start, for containers' and sandboxes' SSL_CERT_FILE."""
    paths = ssl.get_default_verify_paths()
    system = b""
    for candidate in (paths.cafile, paths.openssl_cafile):
        if candidate and Path(candidate).is_file():
            system = Path(candidate).read_bytes()
            break
    bundle = state_dir / "ca-bundle.pem"
    tmp = bundle.with_suffix(".tmp")
    tmp.write_bytes(system.rstrip(b"\n") + b"\n" + served_ca(tls_dir))
    tmp.chmod(0o644)
    tmp.rename(bundle)
    return bundle


def own_ca(directory: Path) -> Path:
    """The server's own certificate authority (ca.pem, its key beside it), made once."""
    ca_path, ca_key_path = directory / "ca.pem", directory / "ca-key.pem"
    if ca_path.exists() and ca_key_path.exists():
        return ca_path
    with _locked(directory):
        if not (ca_path.exists() and ca_key_path.exists()):
            _make_ca(ca_path, ca_key_path)
    return ca_path


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """Embedded servers side by side share their directory: one at a time makes its files."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(directory / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _make_ca(ca_path: Path, ca_key_path: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "firebox tunnels CA")])
    ca = (_builder(name, name, key.public_key())
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(
              digital_signature=True, key_cert_sign=True, crl_sign=True,
              content_commitment=False, key_encipherment=False, data_encipherment=False,
              key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .sign(key, hashes.SHA256()))
    _key_file(ca_key_path, key)
    tmp = ca_path.with_suffix(".tmp")
    tmp.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    tmp.rename(ca_path)


def _key_file(path: Path, key: Any) -> None:
    from cryptography.hazmat.primitives import serialization

    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
    tmp.chmod(0o600)
    tmp.rename(path)


def _builder(subject: Any, issuer: Any, public: Any) -> Any:
    from cryptography import x509

    now = datetime.datetime.now(datetime.UTC)
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
            .public_key(public).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False))


def self_signed(directory: Path, host: str) -> tuple[Path, Path]:
    """A certificate for host (and localhost) signed by a certificate authority of this server,
    both made once and kept (ca.pem is what clients trust); a new leaf when the advertised host
    changed. Returns the certificate chain and the key."""
    ca_path = own_ca(directory)
    with _locked(directory):
        return _leaf(directory, ca_path, host)


def _leaf(directory: Path, ca_path: Path, host: str) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    chain_path, key_path = directory / "cert.pem", directory / "key.pem"
    names: list[x509.GeneralName] = [x509.DNSName("localhost"),
                                     x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    try:
        names.append(x509.IPAddress(ipaddress.ip_address(host)))
    except ValueError:
        names.append(x509.DNSName(host))
    if chain_path.exists() and key_path.exists():
        leaf = x509.load_pem_x509_certificate(chain_path.read_bytes())
        have = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        if all(n in have for n in names):
            return chain_path, key_path
    ca = x509.load_pem_x509_certificate(ca_path.read_bytes())
    ca_key = serialization.load_pem_private_key((directory / "ca-key.pem").read_bytes(), None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    leaf = (_builder(subject, ca.subject, key.public_key())
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    _key_file(key_path, key)
    pem = serialization.Encoding.PEM
    tmp = chain_path.with_suffix(".tmp")
    tmp.write_bytes(leaf.public_bytes(pem) + ca.public_bytes(pem))
    tmp.rename(chain_path)
    return chain_path, key_path
