"""Modal's getting-started, container-building, scaling-out, scheduling and advanced examples."""

from __future__ import annotations

from modal_examples.example import Example

CASES = [
    Example(
        path="01_getting_started/get_started.py",
        commit="eae60fd6e593e4cb31b4d2ca38188a7ca751669c",
        sha256="4cb8c7c0ce527168e18ca95defab2cb7172d442250517781ec1b664a8dc17694",
        expect=(r"^the square is 1764$",),
    ),
    Example(
        path="01_getting_started/hello_world.py",
        commit="86cc496ed2804ccef2c60ad89f1c104d0aa7a8d2",
        sha256="8d9e9535facdad191e0d913265c1fe0c3ea160256e85ba50b53c4e7f60bbb57e",
        # f.local(1000), f.remote(1000), then the sum of squares of 0..199
        expect=(r"^hello 1000$", r"^1000000$", r"^2646700$"),
    ),
    Example(
        path="01_getting_started/generators.py",
        commit="ee53c184848f9200424d478f5d0f5fcb3f02a1b7",
        sha256="f982520c634b30e7131727b8559c10dd2dbb5e20d1e5bcbfa51f9f026c1be80d",
        expect=(r"^0\n1\n2\n3\n4\n5\n6\n7\n8\n9$",),
    ),
    Example(
        path="02_building_containers/import_sklearn.py",
        commit="caf5661a3ce27c0650ba5ad8bb13efe76b6b129e",
        sha256="a3578b007ced5504d06034d72dee04fb56a435c817d82328b154fb79b34de7e6",
        expect=(r"^\[fit\] Inside run!$",),
        timeout=600,
        why="it has no local_entrypoint: `modal run` calls its one function, fit",
    ),
    Example(
        path="03_scaling_out/basic_grid_search.py",
        commit="20fae2bd49ea24cd8239bbd654f6624301d92d34",
        sha256="9682c13da57886ca30a5b7e67d757f6c85870b13735e718b6b9fa29d879751df",
        # k=1 scores best on the digits split with random_state=42
        expect=(r"^\[fit_knn\] k =   1, score = 0\.9\d{3}$", r"^Best k = +\d+, score = 0\.9\d{3}$"),
        timeout=600,
    ),
    Example(
        path="03_scaling_out/dynamic_batching.py",
        commit="3a94fef705069d0aa9594dba5651a4938b1394bc",
        sha256="f8aabf5baf4e3f5325ec56c28eb18342bac99f38f7cadd480bc466c28509527b",
        expect=(r"^Characters: \['!', '\"', '#', '\$', '%', '&'\]$",
                r"^ASCII codes: \[33, 34, 35, 36, 37, 38\]$"),
    ),
    Example(
        path="03_scaling_out/cls_with_options.py",
        commit="e1f68af42a683abe442afb7db481816337840ebb",
        sha256="2d225cd9f3677ed9a51b05b8abe0d32a84e6f24d9839279f9c28b83092e5addf",
        expect=(r"^Default worker result: 332833500$",
                r"^GPU worker result: +333333283333335000000$"),
    ),
    Example(
        path="05_scheduling/custom_retries.py",
        commit="e6e249f7e75086bf18347494c8651a8c1cba8b8d",
        sha256="82f01dc5edd3320f1556285837b1375ef9c047755b4fe68b8ff03d114d83e705",
        # firebox names the function a container's log line came from: "[flaky_task] Attempt 1"
        expect=(r"^\[flaky_task\] Attempt 1$", r"^\[flaky_task\] Attempt 2$",
                r"^\[flaky_task\] Attempt 3$",
                r"^Stopped with non-retryable error: MemoryError\('CUDA out of memory'\)$"),
    ),
    Example(
        path="08_advanced/generators_async.py",
        commit="34b3bd2b334301f2107362d618c2463928cf7a75",
        sha256="d3f8fdf71d1c89a0c79b1f278576448c9ffcd9d8e2960ff7059d0daa0e68ac59",
        expect=(r"^0\n1\n2\n3\n4\n5\n6\n7\n8\n9$",),
    ),
    Example(
        path="08_advanced/hello_world_async.py",
        commit="2f2f8a91fe8d3ad01d5643746adbd2abc0ef9928",
        sha256="282de333392c1b7482011d8daaf70412ab613f440dff57bc6f3194c674a6ffa6",
        # f.remote.aio(1000), then the sum of squares of 0..19
        expect=(r"^1000000$", r"^2470$"),
    ),
    Example(
        path="08_advanced/parallel_execution.py",
        commit="c15fd12375bd04e2186cb1509a8a3bdb27bf84ce",
        sha256="4060e71fe703c5e30ce90d0e429e62a59348fdcbb303cb405a7f763aa8e6edc7",
        expect=(r"^foofoo$",),
    ),
]
