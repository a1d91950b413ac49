"""What happens to inputs when functions time out, fail, retry, crash their container or fail
in @enter, and when the caller's app is stopped or its token is wrong."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from apps import durable, faults
from helpers import Recorder, eventually, runtime_pids
from test_durability import query

import firebox


def one_sentence(message: str) -> bool:
    text = message.strip()
    return text.endswith(".") and ". " not in text[:-1] and "\n" not in text


@pytest.fixture(scope="module")
def running(server):
    with faults.app.run(show_logs=False):
        yield faults.app


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    rec = Recorder()
    yield rec
    rec.close()


def test_timeout_raises_and_stops_the_container(running, recorder):
    with pytest.raises(firebox.exception.FunctionTimeoutError) as info:
        faults.overrun.remote(recorder.topic("started"))
    assert "timeout of 1 s" in str(info.value)
    assert one_sentence(str(info.value))
    [container] = recorder.texts("started")
    gone = eventually(lambda: not runtime_pids(FIREBOX_CONTAINER_ID=container), timeout=10)
    assert gone, "the timed-out container lives on"


def test_retries_until_success(running, recorder, server):
    topic = recorder.topic("attempts")
    assert faults.fails_twice.remote(topic) == 3
    assert len(recorder.texts("attempts")) == 3

    def stored_attempts() -> list[tuple[object, ...]]:  # the input row counts its retries
        return query(server, "SELECT inputs.attempts, inputs.state FROM inputs JOIN functions "
                             "ON functions.id = (SELECT function_id FROM calls WHERE "
                             "calls.id = inputs.call_id) WHERE functions.name = 'fails_twice'")

    assert eventually(lambda: stored_attempts() == [(2, "done")])


def test_retries_give_up_with_the_last_error_and_back_off(running, recorder):
    with pytest.raises(ValueError, match="always"):
        faults.always_fails.remote(recorder.topic("attempts"))
    times = recorder.times("attempts")
    assert len(times) == 4  # the first attempt and max_retries=3 more
    gaps = [b - a for a, b in zip(times, times[1:])]
    # Delays of 0.3, 0.6 and 1.2 s: each retry waits at least its delay.
    for gap, delay in zip(gaps, [0.3, 0.6, 1.2]):
        assert gap >= delay * 0.9, (gaps, delay)


def test_container_exit_code_is_the_error(running):
    with pytest.raises(firebox.exception.RemoteError, match="exited with code 3"):
        faults.exit_with.remote(3)


def test_container_killed_by_signal_is_the_error(running):
    with pytest.raises(firebox.exception.RemoteError, match="killed by signal SIGKILL"):
        faults.kill_self.remote()


def test_dead_container_is_retried_on_a_new_one(running, recorder):
    container = faults.dies_once.remote(recorder.topic("containers"))
    first, second = recorder.texts("containers")
    assert container == second != first


def test_enter_failure_fails_inputs_with_its_exception(running):
    with pytest.raises(faults.EnterError, match="the model file is missing"):
        faults.BrokenEnter().predict.remote(1)
    results = list(faults.BrokenEnter().predict.map(range(3), return_exceptions=True))
    assert len(results) == 3
    assert all(isinstance(r, faults.EnterError) for r in results)


def test_calling_a_stopped_app_says_so(server):
    with durable.app.run(show_logs=False):
        assert durable.wait_then_echo.remote("before", 0) == "before"
        result = server.cli("app", "stop", durable.app.app_id)
        assert result.returncode == 0, result.stderr
        with pytest.raises(firebox.exception.InvalidError) as info:
            durable.wait_then_echo.remote("after", 0)
    assert "stopped" in str(info.value)
    assert one_sentence(str(info.value))


def test_wrong_token_is_refused(server, monkeypatch):
    monkeypatch.setenv("FIREBOX_TOKEN", "fb-not-a-real-token")
    with pytest.raises(firebox.exception.AuthError) as info:
        firebox.Function.from_name("test-faults", "exit_with").remote(0)
    assert "token" in str(info.value)
    assert one_sentence(str(info.value))
    with pytest.raises(firebox.exception.AuthError):
        with faults.app.run(show_logs=False):
            pass
