"""What images cost: building (cold, and the no-op rebuild of an unchanged image) and the cold
start of a function in an image (overlay mounts, Python layers) against one without, under
namespaces and gvisor, through a real `firebox server`.

    python benchmarks/images.py --runs 15
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import tomllib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from report import write_section  # noqa: E402

APP = textwrap.dedent('''
    import firebox

    image = (firebox.Image.debian_slim().pip_install("six==1.17.0").apt_install("figlet")
             .run_commands("mkdir -p /opt/bench && echo x > /opt/bench/x"))
    app = firebox.App("image-bench")

    @app.function(isolation="namespaces", single_use_containers=True)
    def plain_namespaces():
        return 1

    @app.function(isolation="namespaces", single_use_containers=True, image=image)
    def image_namespaces():
        import six  # noqa: F401
        return open("/opt/bench/x").read()

    @app.function(isolation="gvisor", single_use_containers=True)
    def plain_gvisor():
        return 1

    @app.function(isolation="gvisor", single_use_containers=True, image=image)
    def image_gvisor():
        import six  # noqa: F401
        return open("/opt/bench/x").read()
''')


def start_server(scratch: Path, standby: str | None = None
                 ) -> tuple[subprocess.Popen[bytes], str, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("FIREBOX_")}
    env["FIREBOX_CONFIG_DIR"] = str(scratch / "config")
    if standby is not None:
        env["FIREBOX_STANDBY"] = standby
    server = subprocess.Popen(
        [sys.executable, "-m", "firebox.cli.main", "server", "--port", str(port),
         "--state-dir", str(scratch / "state")],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    import httpx

    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.05)
    with open(scratch / "config" / "config.toml", "rb") as f:
        token = tomllib.load(f)["default"]["token"]  # the profile the server wrote
    return server, url, token


def row(name: str, values: list[float], base: float | None = None) -> str:
    values = sorted(values)
    med = statistics.median(values)
    p90 = values[min(len(values) - 1, len(values) * 9 // 10)]
    adds = f"{(med - base) * 1000:+.1f} ms" if base is not None else "-"
    return f"| {name} | {len(values)} | {med * 1000:.1f} ms | {p90 * 1000:.1f} ms | {adds} |"


def cold_starts(bench: object, names: list[str], runs: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {n: [] for n in names}
    with bench.app.run(show_logs=False):  # type: ignore[attr-defined]
        for n in names:  # warm the page cache and the server's code paths once
            getattr(bench, n).remote()
        for _ in range(runs):
            for n in names:
                time.sleep(0.3)  # let the previous single-use container go
                start = time.perf_counter()
                getattr(bench, n).remote()
                times[n].append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--no-write", action="store_true", help="print, don't update the doc")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="firebox-image-bench-"))
    (scratch / "image_bench_app.py").write_text(APP)
    sys.path.insert(0, str(scratch))
    import image_bench_app as bench

    from firebox import _sync
    from firebox.sdk.runner import build_image

    modes = ["namespaces"] + (["gvisor"] if shutil.which("runsc") else [])
    names = [f"{kind}_{m}" for m in modes for kind in ("plain", "image")]
    results: dict[str, dict[str, list[float]]] = {}
    try:
        for standby in ("2", "0"):
            server, url, token = start_server(scratch / f"standby-{standby}", standby)
            try:
                os.environ.update({"FIREBOX_SERVER_URL": url, "FIREBOX_TOKEN": token})
                if standby == "2":
                    start = time.perf_counter()
                    _sync.run(build_image(bench.image))
                    cold_build = time.perf_counter() - start
                    rebuilds = []
                    for _ in range(args.runs):
                        start = time.perf_counter()
                        _sync.run(build_image(bench.image))
                        rebuilds.append(time.perf_counter() - start)
                results[standby] = cold_starts(bench, names, args.runs)
            finally:
                server.terminate()
                server.wait(15)
        lines = [
            f"Image: pip_install six + apt_install figlet + run_commands (3 layers). Cold build "
            f"(uv, apt from the Debian mirror, build containers): {cold_build:.2f} s. A function "
            "with an image never takes a standby runtime, so with standby runtimes on (the "
            "default) it starts cold; with them off (FIREBOX_STANDBY=0) both start cold and "
            "the difference is the image's overlay mounts and Python layers.",
            "",
            "| what | runs | median | p90 | adds |",
            "|---|---|---|---|---|",
            row("rebuild of the unchanged image (request, hashes, cache hits)", rebuilds),
        ]
        for standby, label in (("2", "standby on"), ("0", "standby off")):
            times = results[standby]
            for m in modes:
                base = statistics.median(times[f"plain_{m}"])
                lines.append(row(f"first call, {m}, {label}, no image", times[f"plain_{m}"]))
                lines.append(row(f"first call, {m}, {label}, in the image",
                                 times[f"image_{m}"], base))
        body = "\n".join(lines)
        print(body)
        if not args.no_write:
            write_section("images", "Images: builds and cold starts",
                          f"python benchmarks/images.py --runs {args.runs}", body)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
