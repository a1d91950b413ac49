#!/usr/bin/env bash
# Install, then run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
# Debian packages tests need: tests/test_cgroups_v2_vm.py boots Debian's kernel in qemu to test
# cgroup v2 on a v1 host.
vm=()
command -v qemu-system-x86_64 >/dev/null 2>&1 || vm+=(qemu-system-x86)
ls /boot/vmlinuz-* >/dev/null 2>&1 || vm+=(linux-image-amd64)
# A static busybox, asked for by name: the busybox package's /bin/busybox needs glibc.
[ "$(dpkg-query -W -f='${db:Status-Status}' busybox-static 2>/dev/null)" = installed ] || vm+=(busybox-static)
# Image.from_registry's tests (tests/oci_registry.py): a registry on loopback, and images of that
# busybox built with umoci.
command -v docker-registry >/dev/null 2>&1 || vm+=(docker-registry)
command -v umoci >/dev/null 2>&1 || vm+=(umoci)
# tests/test_shell.py types into `firebox shell` on a terminal that tmux draws.
command -v tmux >/dev/null 2>&1 || vm+=(tmux)
if [ ${#vm[@]} -gt 0 ] && [ "$(id -u)" = 0 ]; then
    echo "test: apt-get install ${vm[*]}"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${vm[@]}" >/dev/null
fi
.venv/bin/ruff check firebox tests
# Two workers, each taking whole test files: most of a test is waiting on servers and
# containers, so two at once take little more than one (-n 0 runs them one by one).
exec .venv/bin/python -m pytest -q -n 2 --dist loadfile "$@"
