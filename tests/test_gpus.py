"""GPU scheduling against a fake inventory: FIREBOX_FAKE_GPUS="H100:2,A100-80GB:1"."""

from __future__ import annotations

import json

import pytest
from apps import isolation_gpu_never, isolation_gpus
from conftest import ServerProcess

from firebox.backends import gpus
from firebox.exception import InvalidError
from firebox.sdk.gpu import gpu_spec
from firebox.wire import settings

FAKE = "H100:2,A100-80GB:1"  # indices 0 and 1 are H100s, 2 is the A100


class GpuServer(ServerProcess):
    def env(self) -> dict[str, str]:
        return super().env() | {settings.FAKE_GPUS.name: FAKE}


@pytest.fixture(scope="module")
def gpu_server(tmp_path_factory):
    srv = GpuServer(tmp_path_factory.mktemp("gpu-server"))
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def on_gpu_server(gpu_server, monkeypatch):
    monkeypatch.setenv("FIREBOX_SERVER_URL", gpu_server.url)
    monkeypatch.setenv("FIREBOX_TOKEN", gpu_server.token)
    return gpu_server


def test_exact_fit_gets_both_h100s(on_gpu_server):
    with isolation_gpus.app.run():
        assert isolation_gpus.two_h100.remote()["devices"] == "0,1"


def test_concurrent_containers_get_distinct_devices(on_gpu_server):
    with isolation_gpus.app.run():
        results = list(isolation_gpus.one_h100.map([1.5, 1.5]))
    assert sorted(r["devices"] for r in results) == ["0", "1"]
    assert len({r["container_id"] for r in results}) == 2


def test_oversubscription_waits_instead_of_failing(on_gpu_server):
    with isolation_gpus.app.run():
        results = list(isolation_gpus.one_h100.map([0.5] * 6))
    assert len(results) == 6 and all(r["devices"] in ("0", "1") for r in results)
    # Never two inputs on one GPU at once: per device, the inputs ran one after another.
    for device in ("0", "1"):
        spans = sorted((r["start"], r["end"]) for r in results if r["devices"] == device)
        assert all(a_end <= b_start for (_, a_end), (b_start, _) in zip(spans, spans[1:]))


def test_list_of_types_takes_the_first_that_exists(on_gpu_server):
    with isolation_gpus.app.run():
        assert isolation_gpus.b200_or_a100.remote()["devices"] == "2"
        assert isolation_gpus.no_gpu.remote() == ""  # no GPU asked for: none visible


def test_a_gpu_no_node_has_waits_while_the_rest_of_the_app_serves(on_gpu_server, capfd):
    app = isolation_gpu_never.app
    with app.run(show_logs=False):
        assert ("Note: Function 'too_many' cannot start yet: gpu=A100-80GB:2 is more than this "
                "machine has (2 x H100, 1 x A100-80GB). Its calls wait") in capfd.readouterr().err
        assert isolation_gpu_never.cpu_only.remote() == "served"
        call = isolation_gpu_never.too_many.spawn()
        with pytest.raises(TimeoutError):
            call.get(timeout=1)
        out = on_gpu_server.cli("app", "stats", app.app_id, "--json")
        events = next(f for f in json.loads(out.stdout)["functions"]
                      if f["function"] == "too_many")["events"]
        waiting = ("waiting: gpu=A100-80GB:2 is more than this machine has (2 x H100, "
                   "1 x A100-80GB); its inputs wait until a node with it joins")
        assert waiting in [e["text"] for e in events]
        logs = on_gpu_server.cli("app", "logs", app.app_id)
        assert waiting in logs.stdout + logs.stderr  # system lines go to stderr
        call.cancel()


def test_gpu_option_parsing():
    assert gpu_spec("a100-80gb:2") == [{"type": "A100-80GB", "count": 2}]
    assert gpu_spec(["H100", "any"]) == [{"type": "H100", "count": 1}, {"type": "ANY", "count": 1}]
    with pytest.raises(InvalidError):
        gpu_spec("H100:0")
    assert gpus.short_type("NVIDIA A100-SXM4-80GB") == "A100-80GB"
    assert gpus.short_type("NVIDIA H100 80GB HBM3") == "H100"
    inventory = gpus.parse_fake(FAKE)
    assert gpus.pick(inventory, gpu_spec("any:3")) == (0, 1, 2)
    assert gpus.pick(inventory, gpu_spec("A100")) == (2,)
    assert gpus.pick(inventory[:2], gpu_spec("A100")) is None
