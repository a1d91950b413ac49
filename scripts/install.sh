#!/usr/bin/env bash
# Installs everything firebox needs on a fresh Debian machine with Python 3.11: the Debian
# packages (as root, only those missing), a virtual environment in .venv, and firebox with its
# server and test extras at the exact versions uv.lock holds. Safe to run again: it skips what
# is already there, and installs again when pyproject.toml or uv.lock changes.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3

need=()
command -v bwrap >/dev/null 2>&1 || need+=(bubblewrap)
command -v runsc >/dev/null 2>&1 || need+=(runsc)
# Containers' own network namespaces with egress, and sandboxes' cidr_allowlist=.
command -v nft >/dev/null 2>&1 || need+=(nftables)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
# gVisor sandboxes' statx shim (docs/sandboxes.md): built once per server with the C compiler.
command -v cc >/dev/null 2>&1 || need+=(gcc)
ls /usr/include/*/sys/stat.h >/dev/null 2>&1 || need+=(libc6-dev)
ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || need+=(postgresql)
# Web endpoints live at http://<workspace>--<app>-<fn>.localhost:PORT; glibc resolves names under
# .localhost to loopback only with nss-myhostname (browsers and curl do it themselves).
getent hosts firebox-check.localhost >/dev/null 2>&1 || need+=(libnss-myhostname)
# Image.from_registry pulls with skopeo.
command -v skopeo >/dev/null 2>&1 || need+=(skopeo)
if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
        echo "install: apt-get install ${need[*]}"
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    else
        echo "install: not root; skipping Debian packages: ${need[*]}" >&2
    fi
fi

if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
stamp=.venv/.firebox-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ uv.lock -nt "$stamp" ]; then
    # uv installs from the lock; the uv that does it is the one the lock names.
    uv_version=$(.venv/bin/python -c 'import tomllib
print(next(p["version"] for p in tomllib.load(open("uv.lock", "rb"))["package"] if p["name"] == "uv"))')
    if [ "$(.venv/bin/uv --version 2>/dev/null)" != "uv $uv_version" ]; then
        .venv/bin/python -m pip install -q "uv==$uv_version"
    fi
    # --locked: a uv.lock that no longer matches pyproject.toml is an error (`uv lock` mends it),
    # not a silent install of other versions. --inexact: what a developer added to .venv by hand
    # (pip, ray for benchmarks/) stays.
    UV_PYTHON_DOWNLOADS=never .venv/bin/uv sync -q --locked --inexact --extra server --extra test
    touch "$stamp"
fi
