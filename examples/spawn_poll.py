"""Spawn a slow job, go on working, then poll for its result.

    firebox run examples/spawn_poll.py
"""

import time

import firebox

app = firebox.App("spawn-poll")


@app.function(timeout=120)
def slow_sum(n: int, seconds: float) -> int:
    time.sleep(seconds)
    return sum(range(n))


@app.local_entrypoint()
def main(seconds: float = 2.0):
    call = slow_sum.spawn(1_000_000, seconds)
    print("spawned", call.object_id)
    while True:
        try:
            print("result:", call.get(timeout=0.5))
            break
        except TimeoutError:
            print("still running...")
    again = firebox.FunctionCall.from_id(call.object_id)
    print("fetched again by id:", again.get())
