"""cidr_allowlist: egress is denied by default and opens only to the allowlisted ranges. The
destination is a test host of our own: a network namespace behind a veth, serving TCP."""

import os
import shutil
import socket

import pytest
from helpers import TEST_HOST_PORT, greeter, outside_host

import firebox as modal

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not (shutil.which("ip") and shutil.which("nft")),
    reason="needs root, iproute2 and nftables",
)

PROBE = (
    "import socket, sys\n"
    "for host in sys.argv[1:]:\n"
    "    try:\n"
    "        with socket.create_connection((host, 8765), timeout=3) as c:\n"
    "            print('connected', host, c.recv(100).decode())\n"
    "    except OSError as e:\n"
    "        print('refused', host, type(e).__name__)\n"
)


@pytest.fixture(scope="module")
def app(server):
    return modal.App.lookup("sandbox-network", create_if_missing=True)


@pytest.fixture(scope="module")
def test_host():
    """(the test host's address, the host's own address on that link), both in a /24 of
    10.250/16; a TCP service on port 8765 at both."""
    with outside_host("10.250") as (there, here):
        # The host's own address on the link serves too: a sandbox must not reach it.
        listener = greeter(here, TEST_HOST_PORT, b"hello from the host")
        try:
            yield there, here
        finally:
            listener.close()


def probe(app, hosts, **options):
    sb = modal.Sandbox.create(app=app, **options)
    try:
        out = sb.exec("python3", "-c", PROBE, *hosts).stdout.read()
    finally:
        sb.terminate()
    return {line.split()[1]: line for line in out.splitlines()}


def test_the_test_host_serves_from_this_machine(test_host):
    there, here = test_host
    for addr in (there, here):
        with socket.create_connection((addr, 8765), timeout=3) as c:
            assert c.recv(100).startswith(b"hello")


def test_allowlisted_range_is_reachable_and_nothing_else(app, test_host):
    there, here = test_host
    net = there.rsplit(".", 1)[0]
    seen = probe(app, [there, "169.254.169.254", "127.0.0.1", "10.213.0.1"],
                 cidr_allowlist=[f"{there}/32"])
    assert seen[there].startswith("connected") and "hello from the test host" in seen[there]
    for addr in ("169.254.169.254", "127.0.0.1", "10.213.0.1"):
        assert seen[addr].startswith("refused"), seen
    # The host's own address on that link is not in the allowlist: closed.
    assert probe(app, [here], cidr_allowlist=[f"{there}/32"])[here].startswith("refused")
    # A whole range allowlisted opens the host's address in it too: explicit, so allowed.
    assert probe(app, [here], cidr_allowlist=[f"{net}.0/24"])[here].startswith("connected")


def test_other_ranges_and_no_allowlist_are_closed(app, test_host):
    there, _ = test_host
    assert probe(app, [there], cidr_allowlist=["10.251.0.0/16"])[there].startswith("refused")
    assert probe(app, [there])[there].startswith("refused")


def test_block_network_always_holds(app, test_host):
    there, _ = test_host
    assert probe(app, [there], block_network=True)[there].startswith("refused")
    with pytest.raises(modal.exception.InvalidError, match="block_network"):
        modal.Sandbox.create(app=app, block_network=True, cidr_allowlist=[f"{there}/32"])
    with pytest.raises(modal.exception.InvalidError, match="CIDR"):
        modal.Sandbox.create(app=app, cidr_allowlist=["not-a-range"])
