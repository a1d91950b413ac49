"""Egress for sandboxes given cidr_allowlist=: a network namespace of its own (backends/netns.py)
and nftables rules that drop everything from it except the allowlisted ranges.

This server's table `inet firebox_server_<pid>` holds, per sandbox, a chain of its allowed
ranges ending in drop, reached through a verdict map keyed by the host-side interface (so
servers side by side leave each other's sandboxes alone), for packets the host would forward
(egress, masqueraded behind the host) and packets addressed to the host itself (its own
addresses are never open unless allowlisted). Replies to connections made from outside pass.
The sandbox's loopback is its own, so the host's loopback services are never reachable,
allowlisted or not. IPv6 is off inside (no address) and dropped at the veth.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence

from . import netns

Link = netns.Link
NetworkUnavailable = netns.NetworkUnavailable


def available() -> bool:
    return netns.available()


def shutdown() -> None:
    netns.shutdown()


def create(allowlist: Sequence[str]) -> Link:
    """Make the namespace, the veth and the allowlist's rules; undone by remove()."""
    link = netns.create(netns.SANDBOX_IF)
    chain = _chain(link)
    rules = "".join(f"add rule inet {netns.TABLE} {chain} ip daddr {cidr} accept\n"
                    for cidr in allowlist)
    try:
        netns.run("nft", "-f", "-", stdin=(
            f"add chain inet {netns.TABLE} {chain}\n{rules}"
            f"add rule inet {netns.TABLE} {chain} drop\n"
            f'add element inet {netns.TABLE} egress {{ "{link.host_if}" : jump {chain} }}\n'))
    except BaseException:
        remove(link)
        raise
    return link


def _chain(link: Link) -> str:
    return f"sb_{link.host_if.removeprefix(netns.SANDBOX_IF)}"


def remove(link: Link) -> None:
    subprocess.run(["nft", "-f", "-"], input=(
        f'delete element inet {netns.TABLE} egress {{ "{link.host_if}" }}\n'),
        capture_output=True, text=True)
    subprocess.run(["nft", "delete", "chain", "inet", netns.TABLE, _chain(link)],
                   capture_output=True)
    netns.remove(link)
