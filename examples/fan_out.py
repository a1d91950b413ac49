"""Fan-out: one function over many inputs in parallel containers.

    firebox run examples/fan_out.py --count 1000
"""

import hashlib

import firebox

app = firebox.App("fan-out")


@app.function(max_containers=4)
def digest(i: int) -> str:
    return hashlib.sha256(str(i).encode()).hexdigest()[:8]


@app.local_entrypoint()
def main(count: int = 1000):
    results = list(digest.map(range(count)))
    print(f"{len(results)} digests, first {results[0]}, last {results[-1]}")
    unordered = sorted(digest.map(range(10), order_outputs=False))
    print("unordered map of 10 gave", len(unordered), "results")
