"""Memory snapshots: the first call of a container of a function whose start-up is heavy
(numpy and scikit-learn imported, ~200 MB of random weights loaded from safetensors, a random
forest fitted) started cold, against one forked from its template (enable_memory_snapshot=True,
the work in @enter(snap=True)) under namespaces isolation, and under gVisor cold against one
restored from its stored snapshot (runsc checkpoint/restore); and a trivial function's first
call, plain (today's standby path) and with a snapshot. Every call is a new container
(single_use_containers=True), through a real `firebox server`.

    python benchmarks/snapshots.py --runs 10
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from images import row, start_server  # noqa: E402
from report import write_section  # noqa: E402

APP = textwrap.dedent('''
    import firebox

    WEIGHTS = "/opt/weights.safetensors"
    image = (
        firebox.Image.debian_slim()
        .pip_install("numpy==2.2.6", "scikit-learn==1.6.1", "safetensors==0.5.3")
        .run_commands(
            "python -c \\"import numpy as np; from safetensors.numpy import save_file; "
            "rng = np.random.default_rng(0); "
            "save_file({f'layer{i}': rng.standard_normal((1024, 1024), dtype=np.float32) "
            "for i in range(50)}, '/opt/weights.safetensors')\\""
        )
    )
    app = firebox.App("snapshot-bench")
    OPTIONS = dict(image=image, single_use_containers=True, cpu=1.0, memory=2048, timeout=120,
                   isolation="namespaces")


    def heavy_start():
        import numpy as np
        import sklearn.ensemble
        from safetensors.numpy import load_file

        weights = load_file(WEIGHTS)
        rng = np.random.default_rng(1)
        x = rng.random((2000, 20))
        model = sklearn.ensemble.RandomForestClassifier(n_estimators=30, n_jobs=1)
        return weights, model.fit(x, x[:, 0] > 0.5)


    class Heavy:  # the heavy start-up in @enter(): every container does it
        @firebox.enter()
        def load(self):
            self.weights, self.model = heavy_start()

        @firebox.method()
        def predict(self):
            return int(self.model.predict([[0.9] * 20])[0]) + len(self.weights)


    class HeavySnapshotted(Heavy):  # the same work in @enter(snap=True): once per snapshot
        @firebox.enter(snap=True)
        def load(self):
            self.weights, self.model = heavy_start()


    GVISOR = {**OPTIONS, "isolation": "gvisor", "block_network": True}


    @app.cls(**OPTIONS)
    class HeavyCold(Heavy):
        pass


    @app.cls(enable_memory_snapshot=True, **OPTIONS)
    class HeavySnap(HeavySnapshotted):
        pass


    @app.cls(**GVISOR)
    class HeavyGvisorCold(Heavy):
        pass


    @app.cls(enable_memory_snapshot=True, **GVISOR)
    class HeavyStored(HeavySnapshotted):
        pass


    @app.function(single_use_containers=True, isolation="namespaces")
    def trivial_plain():
        return 1


    @app.function(single_use_containers=True, isolation="namespaces",
                  enable_memory_snapshot=True)
    def trivial_snap():
        return 1
''')

CASES = {  # name -> what the row says
    "heavy_cold": "heavy, cold (no snapshot)",
    "heavy_snap_first": "heavy, first container (makes the template, then forks)",
    "heavy_snap": "heavy, forked from the template",
    "heavy_gvisor_cold": "heavy under gVisor, cold (no snapshot)",
    "heavy_stored_first": "heavy under gVisor, first container (checkpoint, then restore)",
    "heavy_stored": "heavy under gVisor, restored from the stored snapshot (its spare)",
    "heavy_stored_demand": "heavy under gVisor, right after another (its spare mid-restore)",
    "trivial_plain": "trivial `@app.function()`, cold (standby runtime)",
    "trivial_snap": "trivial, forked from the template",
}


def call(bench: object, name: str, variant: int = 0) -> float:
    start = time.perf_counter()
    if name == "heavy_cold":
        bench.HeavyCold().predict.remote()  # type: ignore[attr-defined]
    elif name == "heavy_snap":
        bench.HeavySnap().predict.remote()  # type: ignore[attr-defined]
    elif name in ("heavy_snap_first", "heavy_stored_first"):
        # A variant's spec is its own: a new template (or stored snapshot) each time.
        cls = bench.HeavySnap if name == "heavy_snap_first" else bench.HeavyStored  # type: ignore[attr-defined]
        cls.with_options(cpu=1.0 + variant / 1000)().predict.remote()
    elif name == "heavy_gvisor_cold":
        bench.HeavyGvisorCold().predict.remote()  # type: ignore[attr-defined]
    elif name == "heavy_stored":
        bench.HeavyStored().predict.remote()  # type: ignore[attr-defined]
    elif name == "heavy_stored_demand":
        # Right after another container took the ready spare: this one takes the next spare
        # while it is still being restored.
        time.sleep(3)  # the spare is ready
        bench.HeavyStored().predict.remote()  # type: ignore[attr-defined]
        start = time.perf_counter()
        bench.HeavyStored().predict.remote()  # type: ignore[attr-defined]
    else:
        getattr(bench, name).remote()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--no-write", action="store_true", help="print, don't update the doc")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="firebox-snapshot-bench-"))
    (scratch / "snapshot_bench_app.py").write_text(APP)
    sys.path.insert(0, str(scratch))
    server, url, token = start_server(scratch)
    os.environ["FIREBOX_SERVER_URL"], os.environ["FIREBOX_TOKEN"] = url, token
    times: dict[str, list[float]] = {n: [] for n in CASES}
    try:
        import snapshot_bench_app as bench

        with bench.app.run(show_logs=False):
            for name in ("heavy_cold", "heavy_snap", "heavy_gvisor_cold", "heavy_stored",
                         "trivial_plain", "trivial_snap"):
                call(bench, name)  # the page cache, the templates, the server's code paths
            for run in range(args.runs):
                for name in CASES:
                    time.sleep(0.3)  # let the previous single-use container go
                    times[name].append(call(bench, name, run + 1))
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(scratch, ignore_errors=True)
    cold = statistics.median(times["heavy_cold"])
    lines = ["| first call of a new container | runs | median | p90 | vs heavy cold |",
             "|---|---|---|---|---|"]
    for name, what in CASES.items():
        ratio = statistics.median(times[name]) / cold
        lines.append(row(what, times[name]).rsplit("|", 2)[0] + f"| {ratio:.3f}x |")
    forked = statistics.median(times["heavy_snap"]) / cold
    gvisor_cold = statistics.median(times["heavy_gvisor_cold"])
    restored = statistics.median(times["heavy_stored"]) / gvisor_cold
    demand = statistics.median(times["heavy_stored_demand"]) / gvisor_cold
    trivial = (statistics.median(times["trivial_snap"])
               / statistics.median(times["trivial_plain"]))
    body = "\n".join(lines) + textwrap.dedent(f"""

        Heavy start-up: numpy + scikit-learn imported, 200 MB of float32 weights loaded with
        safetensors, a 30-tree random forest fitted, in @enter (cold) or @enter(snap=True)
        (snapshot); cpu=1.0 for all of them, each first-container run a new variant
        (with_options) so a new template. Forked from the template: {forked:.1%} of the cold
        first call (goal: at most 10%). The trivial function forked from its template against
        today's standby path: {trivial:.2f}x. Under gVisor (block_network=True, which a stored
        snapshot needs with this runsc), restored from the stored snapshot (runsc restore of
        the checkpoint on disk): {restored:.1%} of the gVisor cold first call
        ({gvisor_cold:.2f} s) when the snapshot's spare sandbox (restored ahead, as a template
        keeps a fork ready) is there, {demand:.1%} right after another container, when it
        takes the next spare still being restored (goal: at most 10%); the ratios' column
        stays against the namespaces cold call.
        """)
    print(body)
    if not args.no_write:
        write_section("snapshots", "Memory snapshots: heavy start-ups",
                      f"python benchmarks/snapshots.py --runs {args.runs}", body)


if __name__ == "__main__":
    main()
