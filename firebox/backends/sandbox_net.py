"""Egress for sandboxes given cidr_allowlist=: a network namespace per sandbox, a veth pair into
it from the host, and nftables rules that drop everything from it except the allowlisted ranges.

Each such sandbox gets 10.213.X.Y/30: the host end of the veth is .1 (its default route), the
sandbox's end .2. Each server's table `inet firebox_sandbox_<pid>` holds, per sandbox, a chain of
its allowed ranges ending in drop, reached through a verdict map keyed by the host-side
interface (so servers side by side leave each other's sandboxes alone), for
packets the host would forward (egress, masqueraded behind the host) and packets addressed to
the host itself (its own addresses are never open unless allowlisted). Replies to connections
made from outside pass. The sandbox's loopback is its own, so the host's loopback services are
never reachable, allowlisted or not. IPv6 is switched off inside and dropped at the veth.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import secrets
import shutil
import subprocess
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

TABLE = f"firebox_sandbox_{os.getpid()}"
PREFIX = "fbx"  # host-side interface names: fbx + 8 hex digits
SUBNETS = ipaddress.ip_network("10.213.0.0/16")
NETNS_DIR = Path("/var/run/netns")

_lock = threading.Lock()
_used: set[int] = set()
_table_ready = False


class NetworkUnavailable(RuntimeError):
    pass


def parse_allowlist(cidrs: Sequence[str]) -> list[str]:
    """The allowlist as normalised IPv4 networks; ValueError says which entry is wrong."""
    out = []
    for cidr in cidrs:
        try:
            net = ipaddress.ip_network(str(cidr), strict=False)
        except ValueError:
            raise ValueError(f"{cidr!r} in cidr_allowlist is not a CIDR range like "
                             "'10.0.0.0/8'.") from None
        if net.version != 4:
            raise ValueError(f"{cidr!r}: sandboxes have IPv4 only; allowlist IPv4 ranges.")
        out.append(str(net))
    return out


@dataclass
class Link:
    netns: str  # its name under /var/run/netns
    host_if: str
    host_ip: str
    sandbox_ip: str
    index: int

    @property
    def path(self) -> str:
        return str(NETNS_DIR / self.netns)


def _run(*argv: str, stdin: str | None = None) -> None:
    done = subprocess.run(argv, input=stdin, capture_output=True, text=True)
    if done.returncode != 0:
        raise NetworkUnavailable(f"{' '.join(argv[:4])} failed: {done.stderr.strip()}")


def _ensure_table() -> None:
    global _table_ready
    if _table_ready:
        return
    _run("nft", "-f", "-", stdin=f"""
table inet {TABLE} {{
    map egress {{ type ifname : verdict; }}
    chain forward {{
        type filter hook forward priority -10; policy accept;
        iifname "{PREFIX}*" ct state established,related accept
        iifname vmap @egress
    }}
    chain input {{
        type filter hook input priority -10; policy accept;
        iifname "{PREFIX}*" ct state established,related accept
        iifname vmap @egress
    }}
    chain postrouting {{
        type nat hook postrouting priority 100; policy accept;
        ip saddr {SUBNETS} oifname != "{PREFIX}*" masquerade
    }}
}}
""")
    _table_ready = True


def shutdown() -> None:
    """Drop this server's table (its sandboxes are gone), and those of servers that died."""
    global _table_ready
    listed = subprocess.run(["nft", "list", "tables", "inet"], capture_output=True, text=True)
    for line in listed.stdout.splitlines():
        name = line.split()[-1]
        pid = name.removeprefix("firebox_sandbox_")
        if pid != name and pid.isdigit() and (name == TABLE or not Path(f"/proc/{pid}").exists()):
            subprocess.run(["nft", "delete", "table", "inet", name], capture_output=True)
    _table_ready = False


def available() -> bool:
    return bool(shutil.which("nft") and shutil.which("ip"))


def _free_subnet() -> int:
    """A /30 no interface of this machine has (other servers' sandboxes use some)."""
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
    raise NetworkUnavailable("No free address range for a sandbox network; too many sandboxes "
                             "with cidr_allowlist run on this machine.")


def create(allowlist: Sequence[str]) -> Link:
    """Make the namespace, the veth and the rules; undone by remove()."""
    with _lock:
        _ensure_table()
        free = _free_subnet()
        _used.add(free)
    base = SUBNETS.network_address + free * 4
    tag = secrets.token_hex(4)
    link = Link(netns=f"firebox-{tag}", host_if=f"{PREFIX}{tag}", host_ip=str(base + 1),
                sandbox_ip=str(base + 2), index=free)
    peer = f"fbp{tag}"
    try:
        _run("ip", "netns", "add", link.netns)
        _run("ip", "link", "add", link.host_if, "type", "veth", "peer", "name", peer)
        _run("ip", "link", "set", peer, "netns", link.netns)
        _run("ip", "addr", "add", f"{link.host_ip}/30", "dev", link.host_if)
        _run("ip", "link", "set", link.host_if, "up")
        # Packets whose source is not the sandbox's own address are dropped at the veth.
        _run("sysctl", "-qw", f"net.ipv4.conf.{link.host_if}.rp_filter=1")
        _run("ip", "netns", "exec", link.netns, "sh", "-c",
             "sysctl -qw net.ipv6.conf.all.disable_ipv6=1 && "
             f"ip link set {peer} name eth0 && ip addr add {link.sandbox_ip}/30 dev eth0 && "
             f"ip link set eth0 up && ip link set lo up && "
             f"ip route add default via {link.host_ip}")
        chain = f"sb_{tag}"
        rules = "".join(f"add rule inet {TABLE} {chain} ip daddr {cidr} accept\n"
                        for cidr in allowlist)
        _run("nft", "-f", "-", stdin=(
            f"add chain inet {TABLE} {chain}\n{rules}"
            f"add rule inet {TABLE} {chain} drop\n"
            f'add element inet {TABLE} egress {{ "{link.host_if}" : jump {chain} }}\n'))
    except BaseException:
        remove(link)
        raise
    return link


def remove(link: Link) -> None:
    tag = link.host_if.removeprefix(PREFIX)
    chain = f"sb_{tag}"
    subprocess.run(["nft", "-f", "-"], input=(
        f'delete element inet {TABLE} egress {{ "{link.host_if}" }}\n'), capture_output=True,
        text=True)
    subprocess.run(["nft", "delete", "chain", "inet", TABLE, chain], capture_output=True)
    subprocess.run(["ip", "link", "del", link.host_if], capture_output=True)
    subprocess.run(["ip", "netns", "del", link.netns], capture_output=True)
    with _lock:
        _used.discard(link.index)
