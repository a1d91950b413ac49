"""Registry images: pull + unpack throughput of Image.from_registry against `skopeo copy` of the
same image to a directory (the download alone), and the cold start of a function in a pulled
image against one in debian_slim, under namespaces and gvisor, through a real `firebox server`
and a real registry on loopback (Debian's docker-registry; the image a static busybox plus the
server Python's standard library, about 100 MB unpacked).

    python benchmarks/registry_images.py --runs 5
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))
import oci_registry  # noqa: E402  (the tests' registry and image builder)
from images import cold_starts, row, start_server  # noqa: E402
from report import write_section  # noqa: E402

APP = textwrap.dedent('''
    import firebox

    pulled = firebox.Image.from_registry("{tag}")
    app = firebox.App("registry-bench")

    @app.function(isolation="namespaces", single_use_containers=True)
    def plain_namespaces():
        return 1

    @app.function(isolation="namespaces", single_use_containers=True, image=pulled)
    def image_namespaces():
        return 1

    @app.function(isolation="gvisor", single_use_containers=True)
    def plain_gvisor():
        return 1

    @app.function(isolation="gvisor", single_use_containers=True, image=pulled)
    def image_gvisor():
        return 1
''')


def stdlib_layer(rootfs: Path) -> None:
    """The server Python's standard library (no site-packages, no tests) under /opt/stdlib."""
    src = Path(sysconfig.get_paths()["stdlib"])
    shutil.copytree(src, rootfs / "opt" / "stdlib", symlinks=True,
                    ignore=shutil.ignore_patterns("site-packages", "test", "__pycache__"))


def du(path: Path) -> int:
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--no-write", action="store_true", help="print, don't update the doc")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="firebox-registry-bench-"))
    from firebox import _sync
    from firebox.image import Image
    from firebox.sdk.runner import build_image

    try:
        with oci_registry.start_registry(scratch / "registry") as reg:
            layout = scratch / "layout"
            oci_registry.build_busybox(layout)
            oci_registry.build_image(layout, "big", [stdlib_layer], base="busybox")
            oci_registry.push(layout, "big", reg.address, "big:1")
            tag = f"{reg.address}/big:1"
            stored = du(scratch / "registry" / "storage")
            (scratch / "registry_bench_app.py").write_text(APP.format(tag=tag))
            sys.path.insert(0, str(scratch))
            import registry_bench_app as bench

            copies, pulls = [], []
            for n in range(args.runs):  # the download alone, into a fresh directory each time
                dest = scratch / f"copy-{n}"
                start = time.perf_counter()
                subprocess.run(["skopeo", "copy", "--src-tls-verify=false", f"docker://{tag}",
                                f"dir:{dest}"], check=True, capture_output=True)
                copies.append(time.perf_counter() - start)
                shutil.rmtree(dest)
            server, url, token = start_server(scratch / "server", standby="0")
            state = scratch / "server" / "state" / "images"
            try:
                os.environ.update({"FIREBOX_SERVER_URL": url, "FIREBOX_TOKEN": token})
                for _ in range(args.runs):  # pull + unpack into an empty store each time
                    shutil.rmtree(state / "oci", ignore_errors=True)
                    for layer in (state / "layers").glob("*"):
                        shutil.rmtree(layer)
                    start = time.perf_counter()
                    _sync.run(build_image(Image.from_registry(tag, force_build=True)))
                    pulls.append(time.perf_counter() - start)
                unpacked = sum(du(p) for p in (state / "layers").glob("*"))
                _sync.run(build_image(bench.pulled))
                modes = ["namespaces"] + (["gvisor"] if shutil.which("runsc") else [])
                names = [f"{kind}_{m}" for m in modes for kind in ("plain", "image")]
                times = cold_starts(bench, names, args.runs)
            finally:
                server.terminate()
                server.wait(15)
        copy_med, pull_med = statistics.median(copies), statistics.median(pulls)
        lines = [
            f"Image: static busybox + the server Python's standard library, {stored / 1e6:.0f} MB "
            f"in the registry (gzip), {unpacked / 1e6:.0f} MB unpacked. Pull + unpack: "
            "Image.from_registry(force_build=True) built on a server whose blob store and "
            "layers were emptied first; the floor is `skopeo copy docker://... dir:` (download "
            "and digest checks, no unpack). Cold starts with FIREBOX_STANDBY=0 (every function "
            "starts cold).",
            "",
            "| what | runs | median | p90 | adds |",
            "|---|---|---|---|---|",
            row("skopeo copy to a directory (download only)", copies),
            row("firebox pull + unpack (from_registry build)", pulls, copy_med),
            "",
            f"Pull + unpack / skopeo copy: **{pull_med / copy_med:.2f}x**; unpack throughput "
            f"{unpacked / 1e6 / max(pull_med - copy_med, 1e-3):.0f} MB/s beyond the download.",
            "",
            "| what | runs | median | p90 | adds |",
            "|---|---|---|---|---|",
        ]
        for m in modes:
            base = statistics.median(times[f"plain_{m}"])
            lines.append(row(f"first call, {m}, debian_slim (no image)", times[f"plain_{m}"]))
            lines.append(row(f"first call, {m}, in the pulled image", times[f"image_{m}"],
                             base))
        body = "\n".join(lines)
        print(body)
        if not args.no_write:
            write_section("registry-images", "Registry images: pulls and cold starts",
                          f"python benchmarks/registry_images.py --runs {args.runs}", body)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
