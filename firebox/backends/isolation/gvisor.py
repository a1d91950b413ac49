"""The gVisor launch: the OCI bundle runsc runs, for a container (its file view over an empty
read-only root, as its user) and for a sandbox (its own writable root, as gVisor's root)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from .view import CA_BUNDLE, Mount, Walls, file_view

# runsc 20221219 takes a network namespace with /proc/sys/net/core/rmem_default for the host's
# own and refuses it; since Linux 6.x every namespace has that file. Hidden from runsc only, in
# the private mount namespace it starts in.
PRELOAD_AT = "/.firebox/statx.so"  # where a gVisor function container sees the statx shim
HIDE_RMEM = "mount -t tmpfs -o size=4k,ro firebox-netns /proc/sys/net/core"

# Capabilities of root inside a gVisor sandbox: they act on gVisor's kernel, never the host's.
GVISOR_CAPS = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
               "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT",
               "CAP_MKNOD", "CAP_AUDIT_WRITE", "CAP_SETFCAP"]


def _system_mounts() -> list[dict[str, object]]:
    """What every gVisor container and sandbox has of its own, before its /tmp and the rest."""
    return [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs"},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts"},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["mode=1777"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["ro"]},
    ]


def _bind(dest: str, src: str, mode: str) -> dict[str, object]:
    return {"destination": dest, "type": "bind", "source": src, "options": ["rbind", mode]}


def _tmpfs(dest: str, mode: str | None = None) -> dict[str, object]:
    mount: dict[str, object] = {"destination": dest, "type": "tmpfs", "source": "tmpfs"}
    if mode is not None:
        mount["options"] = [f"mode={mode}"]
    return mount


def _spec_mount(m: Mount) -> dict[str, object]:
    """A step of the file view (not a symlink) as an OCI spec mount."""
    if m.kind == "tmpfs":
        return _tmpfs(m.dest, m.mode)
    return _bind(m.dest, m.src, "ro" if m.kind in ("ro", "file") else "rw")


def _runsc(walls: Walls, process: dict[str, object], root: dict[str, object],
           mounts: list[dict[str, object]], cgroup: str | None, netns: str | None,
           host_uds: bool) -> list[str]:
    """Write the bundle's config.json under walls.scratch; the command that runs it. In a
    network namespace (netns) gVisor's netstack takes over the veth there, address and
    routes; without one it has loopback only."""
    assert walls.scratch is not None and walls.runsc_root is not None
    namespaces: list[dict[str, str]] = [{"type": t} for t in ("pid", "ipc", "uts", "mount")]
    namespaces.append({"type": "network", "path": netns} if netns else {"type": "network"})
    linux: dict[str, object] = {"namespaces": namespaces}
    if cgroup:
        # runsc moves its sandbox and gofer processes out of the cgroup they start in unless
        # the spec names one: without this no memory or process limit would hold.
        linux["cgroupsPath"] = cgroup
    spec = {"ociVersion": "1.0.2",
            "process": {"terminal": False, **process, "noNewPrivileges": True},
            "root": root, "hostname": walls.container_id, "mounts": mounts, "linux": linux}
    (walls.scratch / "config.json").write_text(json.dumps(spec))
    start = (["restore", "--image-path", str(walls.restore_image)] if walls.restore_image
             else ["run"])
    return ["runsc", "--root", str(walls.runsc_root),
            "--network=sandbox" if netns else "--network=none",
            *(["--host-uds=open"] if host_uds else []),
            *start, "--bundle", str(walls.scratch), walls.container_id]


def gvisor_argv(argv: Sequence[str], walls: Walls, env: dict[str, str]) -> list[str]:
    """Write an OCI bundle for runsc and return the command that runs it: the same file view as
    bubblewrap's over an empty read-only root, the container's user, and its network namespace
    (gVisor's own netstack on the veth) or none (loopback only). The control plane is reached
    over its unix socket (runsc --host-uds=open)."""
    assert walls.scratch is not None
    if walls.image_root is not None:
        return _image_root_argv(argv, walls, env)
    skeleton = walls.scratch / "rootfs"
    skeleton.mkdir(parents=True, exist_ok=True)
    mounts = [*_system_mounts(), _tmpfs("/tmp", "1777")]
    for m in file_view(walls):
        # A read-only root takes no new mount points: each is made in the skeleton first,
        # its parents passable by the container's user.
        target = skeleton / m.dest.lstrip("/")
        for parent in reversed([target, *target.parents]):
            if parent == target and m.kind not in ("tmpfs",) and not Path(m.src).is_dir():
                break
            if parent.is_relative_to(skeleton) and not parent.exists():
                parent.mkdir()
                parent.chmod(0o755)
        if m.kind == "symlink":
            if not target.is_symlink():
                target.symlink_to(m.src)
            continue
        if not target.exists():
            target.touch()
        mounts.append(_spec_mount(m))
    for d in ("proc", "dev", "sys", "tmp"):
        (skeleton / d).mkdir(exist_ok=True)
    if walls.preload is not None:  # the statx shim: `ls DIR` and `stat` work (sandbox_root.py)
        (skeleton / PRELOAD_AT.lstrip("/")).parent.mkdir(mode=0o755, exist_ok=True)
        (skeleton / PRELOAD_AT.lstrip("/")).touch()
        mounts.append(_bind(PRELOAD_AT, str(walls.preload), "ro"))
        env = {**env, "LD_PRELOAD": " ".join(filter(None, [PRELOAD_AT, env.get("LD_PRELOAD")]))}
    return _runsc(walls, _process(argv, walls, env), {"path": str(skeleton), "readonly": True},
                  mounts, walls.cgroup, walls.netns, host_uds=True)


def _process(argv: Sequence[str], walls: Walls, env: dict[str, str]) -> dict[str, object]:
    return {
        "user": {"uid": 0 if walls.uid is None else walls.uid,
                 "gid": 0 if walls.gid is None else walls.gid,
                 **({"additionalGids": list(walls.groups)} if walls.groups else {})},
        "args": list(argv),
        "env": [f"{k}={v}" for k, v in env.items() if k != "FIREBOX_PARENT_PID"],
        "cwd": walls.inside(),
        "capabilities": {k: [] for k in ("bounding", "effective", "permitted", "inheritable")},
    }


def _image_root_argv(argv: Sequence[str], walls: Walls, env: dict[str, str]) -> list[str]:
    """A registry image's root (its overlay, writable, the writes the container's own) with the
    file view's mounts over it; the mount points are made in its upper directory."""
    assert walls.scratch is not None
    walls.scratch.mkdir(parents=True, exist_ok=True)
    mounts = [*_system_mounts(), _tmpfs("/tmp", "1777")]
    mounts += [_spec_mount(m) for m in file_view(walls) if m.kind != "symlink"]
    return _runsc(walls, _process(argv, walls, env),
                  {"path": str(walls.image_root), "readonly": False}, mounts, walls.cgroup,
                  walls.netns, host_uds=True)


def sandbox_gvisor_argv(agent: Sequence[str], walls: Walls, rootfs: Path, env: dict[str, str],
                        hidden: Sequence[Path], runtime: Sequence[Path], cgroup: str | None,
                        netns: str | None, host: Sequence[tuple[str, str]] = ()) -> list[str]:
    """A sandbox's root is its own overlay (rootfs), writable, with its /tmp; hidden paths
    masked, the agent's interpreter (runtime) and its volumes bound in."""
    assert walls.scratch is not None
    walls.scratch.mkdir(parents=True, exist_ok=True)
    # runsc puts a tmpfs of its own on /tmp unless the spec mounts something there.
    mounts = [*_system_mounts(), _bind("/tmp", str(rootfs / "tmp"), "rw")]
    mounts += [_tmpfs(str(p)) for p in hidden]
    mounts += [_bind(str(p), str(p), "ro") for p in runtime]
    mounts += [_bind(dest, src, "ro") for src, dest in host]
    mounts += [_bind(path, str(local), "rw") for path, local in walls.volumes.items()]
    if walls.ca_bundle is not None:
        mounts.append(_bind(CA_BUNDLE, str(walls.ca_bundle), "ro"))
    process = {
        "user": {"uid": 0, "gid": 0}, "args": list(agent),
        "env": [f"{k}={v}" for k, v in env.items()], "cwd": "/",
        "capabilities": {k: GVISOR_CAPS for k in ("bounding", "effective", "permitted")},
    }
    return _runsc(walls, process, {"path": str(rootfs), "readonly": False}, mounts, cgroup, netns,
                  host_uds=False)
