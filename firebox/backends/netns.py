"""Network namespaces for containers and sandboxes: each one that may reach out gets a namespace
of its own, a veth pair into it from the host, a /30 of 10.213.0.0/16 (the host's end .1 is its
default route, its own end .2) and egress masqueraded behind the host. Its loopback is its own,
so the host's loopback services, the control plane's TCP port among them, are never reachable.

What firebox changes on the host, and nothing else:

- IPv4 forwarding per interface (`net.ipv4.conf.<if>.forwarding=1`, never `ip_forward` or
  `conf.all`). The kernel checks forwarding on the interface a packet comes in on: on each of
  firebox's own veths (`fbc*` for function containers, `fbx*` for sandboxes; they go with their
  container) for the packets going out, and on the host's other interfaces for the replies
  coming back. Those of them that had it off are listed in the set `uplinks` of the nftables
  table `inet firebox`, whose rules let them forward nothing but replies to firebox's
  containers. The last firebox server to stop turns their forwarding off again and deletes the
  table; a server starting after a crash sweeps what dead servers left.
- The table `inet firebox`: function containers reach nothing on the host itself, no
  link-local address (cloud metadata), no other container, nothing over IPv6; nothing outside
  opens a connection to a container or a sandbox. Each server's own table `inet
  firebox_server_<pid>` holds its sandboxes' allowlists (backends/sandbox_net.py).
- Namespaces `firebox-<server pid>-<tag>` under /var/run/netns, one per container.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import ipaddress
import json
import logging
import os
import secrets
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("firebox.backends.netns")

SUBNETS = ipaddress.ip_network("10.213.0.0/16")
NETNS_DIR = Path("/var/run/netns")
CONF = Path("/proc/sys/net/ipv4/conf")
SHARED = "firebox"  # the table every firebox server on this host shares
TABLE = f"firebox_server_{os.getpid()}"  # this server's own
CONTAINER_IF = "fbc"  # host-side veths of function containers: fbc + 8 hex digits
SANDBOX_IF = "fbx"  # ... of sandboxes
LOCK = Path("/run/firebox-network.lock")  # servers side by side change the shared table in turn
CLONE_NEWNET = 0x40000000

_lock = threading.Lock()
_used: set[int] = set()


class NetworkUnavailable(RuntimeError):
    pass


@dataclass
class Link:
    netns: str  # its name under /var/run/netns
    host_if: str
    host_ip: str
    inner_ip: str  # the container's address
    index: int

    @property
    def path(self) -> str:
        return str(NETNS_DIR / self.netns)


def available() -> bool:
    """Whether containers can have namespaces with egress here: root, iproute2 and nftables."""
    return os.geteuid() == 0 and bool(shutil.which("ip") and shutil.which("nft"))


def run(*argv: str, stdin: str | None = None) -> str:
    done = subprocess.run(argv, input=stdin, capture_output=True, text=True)
    if done.returncode != 0:
        raise NetworkUnavailable(f"{' '.join(argv[:4])} failed: {done.stderr.strip()}")
    return done.stdout


@contextlib.contextmanager
def _host_lock() -> Iterator[None]:
    with open(LOCK, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


SHARED_RULES = f"""
table inet {SHARED} {{
    set uplinks {{ type ifname; }}
    chain forward {{
        type filter hook forward priority -20; policy accept;
        iifname "{CONTAINER_IF}*" meta nfproto ipv6 drop
        iifname "{CONTAINER_IF}*" ip daddr {{ {SUBNETS}, 0.0.0.0/8, 127.0.0.0/8, 169.254.0.0/16,
                                              224.0.0.0/3 }} drop
        oifname "{CONTAINER_IF}*" ct state new drop
        oifname "{SANDBOX_IF}*" ct state new drop
        iifname @uplinks oifname != "{CONTAINER_IF}*" oifname != "{SANDBOX_IF}*" drop
    }}
    chain input {{
        type filter hook input priority -20; policy accept;
        iifname "{CONTAINER_IF}*" ct state established,related accept
        iifname "{CONTAINER_IF}*" drop
    }}
    chain postrouting {{
        type nat hook postrouting priority 100; policy accept;
        ip saddr {SUBNETS} ip daddr != {SUBNETS} masquerade
    }}
}}
"""

SERVER_RULES = f"""
table inet {TABLE} {{
    map egress {{ type ifname : verdict; }}
    chain forward {{
        type filter hook forward priority -10; policy accept;
        iifname "{SANDBOX_IF}*" ct state established,related accept
        iifname vmap @egress
    }}
    chain input {{
        type filter hook input priority -10; policy accept;
        iifname "{SANDBOX_IF}*" ct state established,related accept
        iifname vmap @egress
    }}
}}
"""


def start() -> None:
    """Sweep what dead servers left, then make the shared table (if no other server has) and
    this server's own, which also tells other servers this one is alive."""
    with _host_lock():
        _sweep()
        if subprocess.run(["nft", "list", "table", "inet", SHARED],
                          capture_output=True).returncode != 0:
            run("nft", "-f", "-", stdin=SHARED_RULES)
        run("nft", "-f", "-", stdin=SERVER_RULES)


def shutdown() -> None:
    """Remove this server's table and namespaces; the last server out also puts the host's
    forwarding back as it was and deletes the shared table."""
    with _host_lock():
        subprocess.run(["nft", "delete", "table", "inet", TABLE], capture_output=True)
        for name in _namespaces(os.getpid()):
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
        _sweep()


def _server_tables() -> dict[str, int]:
    listed = subprocess.run(["nft", "list", "tables", "inet"], capture_output=True, text=True)
    out = {}
    for line in listed.stdout.splitlines():
        name = line.split()[-1]
        pid = name.removeprefix("firebox_server_")
        if pid != name and pid.isdigit():
            out[name] = int(pid)
    return out


def _namespaces(pid: int | None = None) -> list[str]:
    """Our namespaces under /var/run/netns, those of one server's if pid is given."""
    try:
        names = os.listdir(NETNS_DIR)
    except FileNotFoundError:
        return []
    out = []
    for name in names:
        parts = name.split("-")
        if len(parts) == 3 and parts[0] == "firebox" and parts[1].isdigit():
            if pid is None or int(parts[1]) == pid:
                out.append(name)
    return out


def _alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def _sweep() -> None:
    """Delete dead servers' tables and namespaces; with no server left (this one's table is not
    there yet, or no longer), undo the host changes. Called with the host lock held."""
    live = False
    for name, pid in _server_tables().items():
        if _alive(pid):
            live = True
        else:
            subprocess.run(["nft", "delete", "table", "inet", name], capture_output=True)
    for name in _namespaces():
        if not _alive(int(name.split("-")[1])):
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
    if not live:
        _restore_uplinks()


def _restore_uplinks() -> None:
    listed = subprocess.run(["nft", "-j", "list", "set", "inet", SHARED, "uplinks"],
                            capture_output=True, text=True)
    if listed.returncode != 0:
        return
    for item in json.loads(listed.stdout).get("nftables", []):
        for name in (item.get("set") or {}).get("elem", []):
            with contextlib.suppress(OSError):
                (CONF / str(name) / "forwarding").write_text("0")
    subprocess.run(["nft", "delete", "table", "inet", SHARED], capture_output=True)


def _open_uplinks() -> None:
    """Turn forwarding on for the host's interfaces that have it off, so replies to containers
    route back in; each is put in the guard set first, so it forwards nothing else."""
    closed = []
    for name in os.listdir(CONF):
        if name in ("all", "default", "lo") or name.startswith((CONTAINER_IF, SANDBOX_IF)):
            continue
        with contextlib.suppress(OSError):
            if (CONF / name / "forwarding").read_text().strip() == "0":
                closed.append(name)
    if not closed:
        return
    with _host_lock():
        names = ", ".join(f'"{n}"' for n in closed)
        run("nft", "add", "element", "inet", SHARED, "uplinks", f"{{ {names} }}")
        for name in closed:
            with contextlib.suppress(OSError):
                (CONF / name / "forwarding").write_text("1")


def _free_subnet() -> int:
    """A /30 no interface of this machine has (other servers' containers use some)."""
    shown = subprocess.run(["ip", "-o", "-4", "addr", "show"], capture_output=True, text=True)
    taken = set(_used)
    for word in shown.stdout.split():
        if "/" in word:
            with contextlib.suppress(ValueError):
                addr = ipaddress.ip_interface(word).ip
                if addr in SUBNETS:
                    taken.add((int(addr) - int(SUBNETS.network_address)) // 4)
    count = SUBNETS.num_addresses // 4
    for _ in range(64):
        pick = secrets.randbelow(count - 1) + 1
        if pick not in taken:
            return pick
    raise NetworkUnavailable("No free address range for a container network; too many "
                             "containers and sandboxes with a network run on this machine.")


def create(prefix: str) -> Link:
    """A namespace with a veth from the host, addressed and routed, forwarding on where the
    kernel needs it; undone by remove()."""
    with _lock:
        index = _free_subnet()
        _used.add(index)
    base = SUBNETS.network_address + index * 4
    tag = secrets.token_hex(4)
    link = Link(netns=f"firebox-{os.getpid()}-{tag}", host_if=f"{prefix}{tag}",
                host_ip=str(base + 1), inner_ip=str(base + 2), index=index)
    try:
        run("ip", "-batch", "-", stdin=(
            f"netns add {link.netns}\n"
            f"link add {link.host_if} type veth peer name eth0 netns {link.netns}\n"
            f"addr add {link.host_ip}/30 dev {link.host_if}\n"
            f"link set {link.host_if} up\n"))
        # No IPv6 inside: no link-local address is made (and the rules drop it anyway).
        run("ip", "-n", link.netns, "-batch", "-", stdin=(
            "link set eth0 addrgenmode none\n"
            f"addr add {link.inner_ip}/30 dev eth0\n"
            "link set eth0 up\nlink set lo up\n"
            f"route add default via {link.host_ip}\n"))
        # Packets whose source is not the container's own address are dropped at the veth.
        (CONF / link.host_if / "rp_filter").write_text("1")
        Path(f"/proc/sys/net/ipv6/conf/{link.host_if}/disable_ipv6").write_text("1")
        _open_uplinks()
        (CONF / link.host_if / "forwarding").write_text("1")
    except BaseException:
        remove(link)
        raise
    return link


def refresh(link: Link) -> None:
    """Before a container made ahead starts using its namespace: forwarding on for an interface
    that came up since, and on its veth again (writing ip_forward resets every interface's)."""
    _open_uplinks()
    (CONF / link.host_if / "forwarding").write_text("1")


def remove(link: Link) -> None:
    # The veth goes with the namespace, once the last process in it is gone.
    subprocess.run(["ip", "netns", "del", link.netns], capture_output=True)
    subprocess.run(["ip", "link", "del", link.host_if], capture_output=True)
    with _lock:
        _used.discard(link.index)


class Pool:
    """Namespaces for function containers made ahead, so a cold start does not wait ~8 ms for
    one; take() makes one on the spot when none is ready."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.ready: list[Link] = []
        self._lock = threading.Lock()

    def take(self) -> Link:
        with self._lock:
            link = self.ready.pop() if self.ready else None
        if link is None:
            return create(CONTAINER_IF)
        refresh(link)
        return link

    def fill(self) -> None:
        while True:
            with self._lock:
                if len(self.ready) >= self.size:
                    return
            link = create(CONTAINER_IF)
            with self._lock:
                self.ready.append(link)

    def close(self) -> None:
        with self._lock:
            links, self.ready = self.ready, []
        for link in links:
            remove(link)


def connect_inside(netns_path: str, port: int, timeout: float) -> socket.socket:
    """A TCP connection to 127.0.0.1:port as seen inside a network namespace: the socket is made
    in a thread that entered the namespace and is gone after, so nothing else changes
    namespace."""
    result: list[socket.socket | BaseException] = []

    def dial() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = os.open(netns_path, os.O_RDONLY)
            try:
                if libc.setns(fd, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), f"setns {netns_path}")
            finally:
                os.close(fd)
            result.append(socket.create_connection(("127.0.0.1", port), timeout=timeout))
        except BaseException as exc:
            result.append(exc)

    thread = threading.Thread(target=dial, name="netns-dial")
    thread.start()
    thread.join()
    if isinstance(result[0], BaseException):
        raise result[0]
    return result[0]
