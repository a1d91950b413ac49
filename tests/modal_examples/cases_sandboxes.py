"""Sandbox examples (13_sandboxes and the queue, integration and notebook apps that run
offline on a CPU): scripts that look up an app and drive sandboxes run as `python app.py`."""

from __future__ import annotations

import re
import time

from modal_examples.example import Example, Runner


def _gathered_every_job(runner: Runner) -> None:
    # main() only spawns and returns (the app runs on, detached): the gather step of each of the
    # 100 jobs prints its two parts to the app's logs once both workers are done.
    gathered: set[str] = set()
    deadline = time.monotonic() + 100
    while len(gathered) < 100 and time.monotonic() < deadline:
        time.sleep(3)
        logs = runner.firebox("app", "logs", "example-scatter-gather", timeout=60).stdout
        gathered = set(re.findall(r"^(?:\[gather\] )?[0-9a-f]{32}: \[\"part-0 of 'inference "
                                  r"data (\d+)'\", \"part-1 of 'inference data \1'\"\]$", logs,
                                  re.MULTILINE))
    runner.firebox("app", "stop", "example-scatter-gather", timeout=60)
    assert len(gathered) == 100, f"{len(gathered)} of 100 jobs gathered:\n{logs}"


CASES = [
    Example(
        path="13_sandboxes/simple_code_interpreter.py",
        commit="4728f5c0bb4e23d56bf4fa03a82264041748899c",
        sha256="3ff7d57b28ccb5abe85a23264b4e6c24901e9ab1d0bed1e4bb73309cb52941d7",
        command="python",
        # State kept between runs (x + y), and an error reported in red on stdout.
        expect=(r"^hello, world!$", r"The result is: 15$",
                r"Attempting to divide by zero\.\.\.$", r"Execution Error: division by zero"),
    ),
    Example(
        path="09_job_queues/scatter_gather.py",
        commit="7de64d0158694c2e3c532efd20e9502c62ba60a0",
        sha256="ac80ff418b938552d11c8494a78806aca93371baefb48a7e314bbf18c0521b2e",
        flags=("--detach",),
        why="the app's front matter runs it with --detach: main() only spawns the jobs",
        check=_gathered_every_job,
    ),
]
