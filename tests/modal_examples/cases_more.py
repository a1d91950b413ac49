"""More of Modal's examples: web endpoints (deployed, then fetched as a browser would), schedules
(deployed, then read in the app's logs), queues, and sandbox scripts run as `python app.py`."""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import httpx

from modal_examples.example import Example, Runner

# A first request may wait for its container to start (the image's imports, the app's own).
HTTP = httpx.Client(timeout=60)


def _stop(runner: Runner, app: str) -> None:
    runner.firebox("app", "stop", app, timeout=60)


def _logs_until(runner: Runner, app: str, pattern: str, enough: Callable[[list[str]], bool],
                within: float) -> list[str]:
    """What `pattern` matches in the app's logs, read again until it is enough."""
    deadline = time.monotonic() + within
    found: list[str] = []
    while not enough(found) and time.monotonic() < deadline:
        time.sleep(3)
        logs = runner.firebox("app", "logs", app, timeout=60).stdout
        found = re.findall(pattern, logs, re.MULTILINE)
    return found


def _fastapi_app(runner: Runner) -> None:
    try:
        root = runner.web_url("example-fastapi-app", "fastapi_app")
        assert HTTP.get(root).json() == "Hello World"
        assert HTTP.post(f"{root}/foo", json={"name": "ada"}).json() == {"name": "ada"}
        f = runner.web_url("example-fastapi-app", "f")
        assert HTTP.post(f, json={"name": "ada"}).json() == "Hello ada"
    finally:
        _stop(runner, "example-fastapi-app")


def _flask_app(runner: Runner) -> None:
    try:
        root = runner.web_url("example-flask-app", "flask_app")
        assert HTTP.get(root).text == "Hello Flask World!"
        assert HTTP.post(f"{root}/foo", json={"a": [1, 2]}).json() == {"a": [1, 2]}
    finally:
        _stop(runner, "example-flask-app")


def _flask_streaming(runner: Runner) -> None:
    # The CSV generate_rows yields: row i holds (j + i) * i for j in 0..127, 10,000 rows. Its
    # /remote route calls the generator with .remote(), which Modal refuses as firebox does
    # (InvalidError: use .remote_gen), so only / is read.
    rows = "".join(",".join(str((j + i) * i) for j in range(128)) + "\n" for i in range(10_000))
    try:
        response = HTTP.get(runner.web_url("example-flask-streaming", "flask_app"), timeout=120)
        assert response.headers["content-type"].startswith("text/csv"), response.text
        assert response.text == rows, response.text[:200]
    finally:
        _stop(runner, "example-flask-streaming")


def _streamed(url: str) -> list[tuple[float, bytes]]:
    """Each chunk of a streamed response with the time it came, as a client that does not
    buffer sees it."""
    start, chunks = time.monotonic(), []
    with httpx.stream("GET", url, timeout=120) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        for chunk in response.iter_raw():
            chunks.append((time.monotonic() - start, chunk))
    return chunks


def _streaming(runner: Runner) -> None:
    app = "example-fastapi-streaming"
    try:
        chunks = _streamed(runner.web_url(app, "fastapi_app"))
        assert b"".join(c for _, c in chunks) == b"".join(
            f"frame {i}: hello world!".encode() for i in range(10))
        # A frame a second: the first arrives long before the last, not all at the end.
        assert chunks[-1][0] - chunks[0][0] > 5
        chunks = _streamed(runner.web_url(app, "hook"))
        assert b"".join(c for _, c in chunks) == b"".join(
            f"frame {i}: some data\n".encode() for i in range(10))
        assert chunks[-1][0] - chunks[0][0] > 5
        body = b"".join(c for _, c in _streamed(runner.web_url(app, "mapped")))
        assert body.decode() == "".join(f"hello from {i}\n" for i in range(10))
    finally:
        _stop(runner, app)


def _poll_delayed_result(runner: Runner) -> None:
    app = "example-poll-delayed-result"
    try:
        root = runner.web_url(app, "fastapi_app")
        assert 'action="/factors"' in HTTP.get(root).text
        # /factors spawns the call and redirects to the URL that polls it.
        response = HTTP.get(f"{root}/factors", params={"number": 1234567})
        assert response.status_code in (302, 303, 307), response.text
        poll = response.headers["location"]
        assert re.search(r"/result\?function_id=fc-\w+$", poll), poll
        deadline = time.monotonic() + 120
        result = HTTP.get(poll).json()
        while result == "not ready" and time.monotonic() < deadline:
            time.sleep(1)
            result = HTTP.get(poll).json()
        assert result == [127, 9721]
    finally:
        _stop(runner, app)


def _tqdm_bar(runner: Runner) -> None:
    # tqdm draws on the container's stderr, which `run` passes on as stderr.
    assert runner.last is not None
    assert re.search(r"^(?:\[f\] )?100%\|█{10}\| 100/100 ", runner.last.stderr, re.MULTILINE), (
        runner.last.stderr)


def _basic_web(runner: Runner) -> None:
    assert runner.last is not None
    # deploy lists each endpoint's URL: "  greet => http://...", the Cls method's as WebApp.web.
    urls = dict(re.findall(r"^ +([\w.]+) => (\S+)$", runner.last.stdout, re.MULTILINE))
    try:
        assert HTTP.get(urls["hello"]).json() == "Hello world!"
        assert HTTP.get(f"{urls['hello']}/docs").status_code == 200  # docs=True
        assert HTTP.get(urls["greet"], params={"user": "ada"}).json() == "Hello ada!"
        assert HTTP.get(urls["greet"]).status_code == 422  # the missing query parameter
        assert HTTP.post(urls["goodbye"], json={"name": "ada"}).json() == "Goodbye ada!"
        assert HTTP.get(urls["goodbye"]).status_code == 405
        # @enter ran once: the container's start time stays while each request's time moves.
        first, second = HTTP.get(urls["WebApp.web"]).json(), HTTP.get(urls["WebApp.web"]).json()
        assert first["start_time"] == second["start_time"] <= first["current_time"]
        assert second["current_time"] > first["current_time"]
        # requires_proxy_auth: refused without a proxy auth token, before any container runs.
        assert HTTP.get(urls["expensive_secret"]).status_code == 401
    finally:
        _stop(runner, "example-basic-web")


def _say_hello_cron(runner: Runner) -> None:
    # One invocation prints Message #0 to #9, 1.5 s apart; the Period starts one every 10 s, so
    # two invocations' lines interleave.
    messages = {str(i) for i in range(10)}
    try:
        found = _logs_until(runner, "example-say-hello-cron",
                            r"^(?:\[say_hello\] )?Message #(\d) from invocation at "
                            r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+\+00:00$",
                            lambda found: set(found) >= messages, 90)
    finally:
        _stop(runner, "example-say-hello-cron")
    assert set(found) == messages, found


CASES = [
    Example(
        path="07_web_endpoints/basic_web.py",
        commit="2ff876d56b7aaef0f22ca38c5126e40cea321ff0",
        sha256="9c74a0532da3e59f9f99686014c6bc538cd3657e2dd4e3ffa6e585250d113828",
        command="deploy",
        why="served in its front matter: deployed, then each endpoint called as its comments say",
        check=_basic_web,
    ),
    Example(
        path="07_web_endpoints/fastapi_app.py",
        commit="2b8b248fe64bb2544e8ae8010df62a0bd9efad33",
        sha256="b6b2938e8772d39e6b38e798f9a942c7c45e509af3b2f3a71299fabb2cb23930",
        command="deploy",
        why="its front matter serves it; deploy gives the same endpoints a URL that outlives "
            "the command, which the check then fetches",
        check=_fastapi_app,
    ),
    Example(
        path="07_web_endpoints/flask_app.py",
        commit="c15fd12375bd04e2186cb1509a8a3bdb27bf84ce",
        sha256="6c3a73014fcf5f6a8f3283eeb27eabe859670ccb271ebad80694c8a791865ad0",
        command="deploy",
        why="served in its front matter: deployed, then fetched",
        check=_flask_app,
    ),
    Example(
        path="07_web_endpoints/flask_streaming.py",
        commit="2ff876d56b7aaef0f22ca38c5126e40cea321ff0",
        sha256="0c306c308b392f42c33292f678ccf99e34db9ab4530a208542f35c408e952eef",
        command="deploy",
        why="served in its front matter: deployed, then both CSV routes fetched in full",
        check=_flask_streaming,
    ),
    Example(
        path="07_web_endpoints/streaming.py",
        commit="aed1974d6cee487a3c195044046172b60c2bdf6b",
        sha256="95c82d0952df30df4446e78a624ad4062be093d8821478761ca6764500f2a52c",
        command="deploy",
        why="served in its front matter: deployed, then its three streams read as they come",
        check=_streaming,
    ),
    Example(
        path="08_advanced/poll_delayed_result.py",
        commit="c15fd12375bd04e2186cb1509a8a3bdb27bf84ce",
        sha256="0ff6f52199902d8a0f25248062a2919ea317014f4ed795848b1940f11a001bf4",
        command="deploy",
        why="served in its front matter: deployed, then a number factored through the form's "
            "redirect and polling URL",
        check=_poll_delayed_result,
    ),
    Example(
        path="05_scheduling/schedule_simple.py",
        commit="34b3bd2b334301f2107362d618c2463928cf7a75",
        sha256="900a69a6ef6941166c6c4c82c8b7892d86f2a7d39bfacf5ed48e4f8737ddbf0c",
        command="python",
        why="its front matter runs it as a script: app.run() for 60 s with output enabled",
        # Every 5 s for a minute; the every-minute cron need not fall inside that minute's logs.
        expect=(r"^(?:\[print_time_1\] )?Printing with period 5 seconds: "
                r"\d\d/\d\d/\d{4}, \d\d:\d\d:\d\d$",),
        timeout=180,
    ),
    Example(
        path="08_advanced/restricted_volumes.py",
        commit="c63bed9ef31c1c5fa369d2149deccb0750754fa2",
        sha256="c763f3d21e8a37a83578820082c20c7f5e409f1f0376c86bc0202efa7584a4e7",
        command="python",
        expect=(r"^Sandbox ID:  sb-\w+$", r"^Sandbox setup complete\.$",
                r"^drwx------ +\d+ user1 +user1 .* \.$",
                r"ls: cannot open directory '/data/user2': Permission denied$"),
        timeout=600,
    ),
    Example(
        path="08_advanced/code_interpreter.py",
        commit="1122396255c10b76d3054c098885d59d64aa93da",
        sha256="9b1d9fd86804d8af0908fc10ee65c15740457cd011215553ec5474d0499ff90f",
        command="python",
        # x = 1, then x += 10 in the sandbox's IPython (its display hook prints "Out[1]: 11"
        # after the driver's ">>> " prompt, the one line the client reads); then the file a
        # cell wrote, read by cat.
        expect=(r"^>>> Out\[1\]: 11$", r"^hello!$"),
        timeout=600,
    ),
    Example(
        path="13_sandboxes/safe_code_execution.py",
        commit="a382429206246fab75f701d5de37150a2632409b",
        sha256="61cd097fb4a9e0ffd88415f555be7631b3313cf54ad10055eaa1009748e82e60",
        command="python",
        expect=(r"^Sandbox ID: sb-\w+$",
                r"^hello from bash\nhello from python\nhello from nodejs\nhello from ruby\n"
                r"hello from php$",
                r"^The sum of the random numbers is: \d+$",
                "".join(rf"^Line {i}: \d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{{4}}\n"
                        for i in range(1, 10)) + r"^Line 10: "),
        timeout=600,
    ),
    Example(
        path="misc/queue_simple.py",
        commit="598a7b313fc0c8432d8a503b00975d2648f4524c",
        sha256="928554de7afffa3b0acadad3effe10c7108a56efb9c4d5ebf3deed21ea131bdf",
        command="python",
        # Its asserts check each get; the prints mark the 20 waiting getters being fed.
        expect=(r"^Creating getters\nPutting values$",),
    ),
    Example(
        path="misc/hello_shebang.py",
        commit="187b3631735b5e2156877798ce50eac3b4ea0306",
        sha256="d0f19c71007c64e00b2ef49339691134280d5e6ea4fdd2e80ff39566bb7d7fc5",
        # f.local(1000), f.remote(1002), then the sum of squares of 0..199
        expect=(r"^hello 1000$", r"^1000000$", r"^1004004$", r"^2646700$"),
    ),
    Example(
        path="misc/say_hello_cron.py",
        commit="fc5dc3bb860f524da66d8f6232246185bba5dca4",
        sha256="301fad87846b53323254a6ac8eda4a02392bc42a7c6c636bd5e68b234ee98ec4",
        command="deploy",
        why="a cron job is deployed; the check reads its app's logs, then stops it",
        check=_say_hello_cron,
        timeout=180,
    ),
    Example(
        path="misc/tqdm_progress_bar.py",
        commit="4ea18a17e208f07378a12ce6348d6db3b3fa5e30",
        sha256="7d52ee5652d52df3d16e93b75f79420fa3464205d8d3b2035bdc757d5a2716ff",
        why="run with `modal run` (its one function) so the bar in the container's logs shows: "
            "its __main__ block runs without output enabled",
        check=_tqdm_bar,
    ),
]
