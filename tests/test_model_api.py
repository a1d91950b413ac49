"""The model gateway: OpenAI's official client against firebox's /v1, served by tinylm engines
(tests/engines/tinylm.py, a real if tiny model) running as web_server processes in firebox
containers: routing by model, streams, tools, JSON mode, n and logprobs passed through, tokens
metered and priced, adapters routed to the replica that holds them, shared prefixes kept on one
replica, limits answered with 429, scale from zero."""

from __future__ import annotations

import concurrent.futures
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest
from apps import model_api
from conftest import ServerProcess, current

ENGINE = Path(__file__).parent / "engines" / "tinylm.py"
PRICES = """
[models."tiny-chat"]
input = 2.0
output = 10.0
"""


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    """A server of the module's own (its price table names the test models), with the app
    running and two adapters in its adapters volume."""
    root = tmp_path_factory.mktemp("gateway")
    (root / "prices.toml").write_text(PRICES)
    srv = ServerProcess(root, extra_env={"FIREBOX_PRICES": str(root / "prices.toml")})
    srv.start()
    try:
        with current(srv):
            assert srv.cli("volume", "create", "test-model-adapters").returncode == 0
            for name, seed in (("ad-one", 1), ("ad-two", 2)):
                subprocess.run([sys.executable, str(ENGINE), "adapter", str(root / name),
                                "--seed", str(seed)], check=True)
                put = srv.cli("volume", "put", "test-model-adapters", str(root / name),
                              f"/{name}")
                assert put.returncode == 0, put.stderr
            with model_api.app.run(show_logs=False):
                yield srv
    finally:
        srv.stop()


def client(srv: ServerProcess, key: str | None = None) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{srv.url}/v1", api_key=key or srv.token, max_retries=0,
                         timeout=120)


def _usage_rows(srv: ServerProcess) -> dict[str, dict]:
    r = httpx.get(f"{srv.url}/v1/usage", params={"by": "model"},
                  headers={"authorization": f"Bearer {srv.token}"})
    assert r.status_code == 200, r.text
    return {row["key"]: row for row in r.json()["rows"]}


def test_the_official_client_lists_chats_streams_and_embeds(gateway):
    c = client(gateway)
    ids = {m.id for m in c.models.list().data}
    assert {"tiny-chat", "tiny-embed", "tiny-chat:ad-one", "tiny-chat:ad-two"} <= ids
    assert c.models.retrieve("tiny-embed").id == "tiny-embed"

    before = _usage_rows(gateway).get("tiny-chat", {})
    reply = c.chat.completions.create(model="tiny-chat", max_tokens=7,
                                      messages=[{"role": "user", "content": "Say something."}])
    assert reply.model == "tiny-chat" and reply.choices[0].finish_reason in ("length", "stop")
    assert reply.usage.completion_tokens == len(reply.choices[0].message.content) <= 7
    assert reply.usage.prompt_tokens > 0

    chunks = list(c.chat.completions.create(model="tiny-chat", max_tokens=5, stream=True,
                                            messages=[{"role": "user", "content": "Stream."}]))
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert len(text) == 5
    assert all(ch.choices for ch in chunks), "the usage chunk the client did not ask for"
    asked = list(c.chat.completions.create(model="tiny-chat", max_tokens=5, stream=True,
                                           stream_options={"include_usage": True},
                                           messages=[{"role": "user", "content": "Stream."}]))
    assert asked[-1].usage.completion_tokens == 5 and not asked[-1].choices

    done = c.completions.create(model="tiny-chat", prompt="Once upon", max_tokens=4,
                                logprobs=2, n=2, temperature=1.0, seed=3)
    assert len(done.choices) == 2 and len(done.choices[0].logprobs.tokens) == 4
    assert len(done.choices[0].logprobs.top_logprobs[0]) == 2

    emb = c.embeddings.create(model="tiny-embed", input=["one", "two three"])
    assert len(emb.data) == 2 and len(emb.data[0].embedding) == 32
    assert emb.usage.prompt_tokens == len("one") + len("two three") + 2

    after = _usage_rows(gateway)["tiny-chat"]
    prompt = after["prompt_tokens"] - before.get("prompt_tokens", 0)
    completion = after["completion_tokens"] - before.get("completion_tokens", 0)
    assert completion == 7 + 5 + 5 + 8
    assert prompt == reply.usage.prompt_tokens + asked[-1].usage.prompt_tokens * 2 + \
        done.usage.prompt_tokens
    spent = after["token_cost_usd"] - before.get("token_cost_usd", 0)
    assert spent == pytest.approx((prompt * 2.0 + completion * 10.0) / 1e6)
    assert after["container_seconds"] > 0
    assert _usage_rows(gateway)["tiny-embed"]["token_cost_usd"] == 0  # no price for it

    table = gateway.cli("usage", "--by", "model")
    assert table.returncode == 0 and "tiny-chat" in table.stdout and "tiny-embed" in table.stdout


def test_tools_json_mode_and_engine_errors_pass_through(gateway):
    c = client(gateway)
    tools = [{"type": "function", "function": {
        "name": "get_weather", "parameters": {"type": "object",
                                              "properties": {"city": {"type": "string"}}}}}]
    reply = c.chat.completions.create(
        model="tiny-chat", max_tokens=4, tools=tools,
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        messages=[{"role": "user", "content": "Weather in Paris?"}])
    call = reply.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather" and "text" in json.loads(call.function.arguments)
    assert reply.choices[0].finish_reason == "tool_calls"
    streamed = list(c.chat.completions.create(
        model="tiny-chat", max_tokens=4, tools=tools, stream=True,
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        messages=[{"role": "user", "content": "Weather in Paris?"}]))
    calls = [tc for ch in streamed if ch.choices for tc in ch.choices[0].delta.tool_calls or []]
    assert calls and calls[0].function.name == "get_weather"

    shaped = c.chat.completions.create(model="tiny-chat", max_tokens=4,
                                       response_format={"type": "json_object"},
                                       messages=[{"role": "user", "content": "JSON please"}])
    assert set(json.loads(shaped.choices[0].message.content)) == {"text"}

    with pytest.raises(openai.BadRequestError) as bad:  # the engine's own 400
        c.chat.completions.create(model="tiny-chat", max_tokens=0,
                                  messages=[{"role": "user", "content": "x"}])
    assert "max_tokens" in bad.value.message
    with pytest.raises(openai.NotFoundError) as missing:
        c.chat.completions.create(model="no-such-model", messages=[])
    assert missing.value.code == "model_not_found"
    with pytest.raises(openai.NotFoundError):
        c.chat.completions.create(model="tiny-chat:no-such-adapter", messages=[])
    raw = httpx.post(f"{gateway.url}/v1/chat/completions", content=b"{not json",
                     headers={"authorization": f"Bearer {gateway.token}"})
    assert raw.status_code == 400 and raw.json()["error"]["type"] == "invalid_request_error"
    no_token = httpx.get(f"{gateway.url}/v1/models")
    assert no_token.status_code == 401


def test_adapters_go_to_the_replica_that_loaded_them_and_prefixes_stay_together(gateway):
    c = client(gateway)
    plain = {c.chat.completions.create(model="tiny-chat", max_tokens=2, messages=[
        {"role": "user", "content": f"short {i}"}]).system_fingerprint for i in range(6)}
    assert len(plain) == 2, "both replicas serve"

    seen = {}
    for name in ("tiny-chat:ad-one", "ad-two"):  # by BASE:ADAPTER and by its own name
        answers = [c.chat.completions.create(model=name, max_tokens=6, messages=[
            {"role": "user", "content": f"adapter {i}"}]) for i in range(4)]
        assert len({a.system_fingerprint for a in answers}) == 1, answers
        seen[name] = answers[0]
    base = c.chat.completions.create(model="tiny-chat", max_tokens=6, messages=[
        {"role": "user", "content": "adapter 0"}])
    assert seen["tiny-chat:ad-one"].choices[0].message.content != base.choices[0].message.content

    system = "You are a careful assistant. " * 40  # ~1,200 characters shared
    answers = [c.chat.completions.create(model="tiny-chat", max_tokens=2, messages=[
        {"role": "system", "content": system},
        {"role": "user", "content": f"question {i}"}]) for i in range(6)]
    assert len({a.system_fingerprint for a in answers}) == 1
    assert all(a.usage.prompt_tokens_details.cached_tokens >= 1024 for a in answers[1:])


def test_scoped_keys_and_limits_answer_with_openai_429(gateway):
    made = gateway.cli("model-api", "key", "create", "--name", "ci", "--model", "tiny-chat",
                       "--rpm", "2")
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip().splitlines()[0]
    c = client(gateway, key)
    assert [m.id for m in c.models.list().data if not m.id.startswith("tiny-chat")] == []
    for _ in range(2):
        c.chat.completions.create(model="tiny-chat", max_tokens=1,
                                  messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.RateLimitError) as limited:
        c.chat.completions.create(model="tiny-chat", max_tokens=1,
                                  messages=[{"role": "user", "content": "hi"}])
    assert int(limited.value.response.headers["retry-after"]) >= 1
    assert "2 requests per minute" in limited.value.message
    with pytest.raises(openai.NotFoundError):  # outside the key's scope
        c.embeddings.create(model="tiny-embed", input="x")
    other = httpx.get(f"{gateway.url}/v1/apps", headers={"authorization": f"Bearer {key}"})
    assert other.status_code == 403 and "model API" in other.json()["error"]
    key_id = key.split("-")[1]
    assert gateway.cli("model-api", "key", "delete", key_id).returncode == 0
    with pytest.raises(openai.AuthenticationError):
        c.models.list()
    # A workspace's own limits are an operator's (the server's admin token): a user token
    # cannot lift them.
    admin = {"authorization": f"Bearer {gateway.token}"}
    assert gateway.cli("model-api", "limits", "--tpm", "1").returncode == 0
    try:
        c = client(gateway)
        with pytest.raises(openai.RateLimitError) as tokens:  # the first once any were used
            for _ in range(2):
                c.chat.completions.create(model="tiny-chat", max_tokens=3,
                                          messages=[{"role": "user", "content": "hi"}])
        assert "tokens per minute" in tokens.value.message
        user = httpx.post(f"{gateway.url}/v1/tokens", headers=admin).json()["token"]
        refused = httpx.put(f"{gateway.url}/v1/model-api/limits", json={"limits": {}},
                            headers={"authorization": f"Bearer {user}"})
        assert refused.status_code == 403 and "operator" in refused.json()["error"]
    finally:
        assert gateway.cli("model-api", "limits", "--clear").returncode == 0


def test_a_gvisor_engine_is_reached_through_its_container(gateway):
    c = client(gateway)
    reply = c.chat.completions.create(model="tiny-gvisor", max_tokens=3,
                                      messages=[{"role": "user", "content": "hi"}])
    assert reply.usage.completion_tokens == 3
    streamed = list(c.chat.completions.create(model="tiny-gvisor", max_tokens=3, stream=True,
                                              messages=[{"role": "user", "content": "hi"}]))
    assert "".join(ch.choices[0].delta.content or "" for ch in streamed if ch.choices)
    adapted = c.chat.completions.create(model="tiny-gvisor:ad-one", max_tokens=6,
                                        messages=[{"role": "user", "content": "adapter 0"}])
    plain = c.chat.completions.create(model="tiny-gvisor", max_tokens=6,
                                      messages=[{"role": "user", "content": "adapter 0"}])
    assert adapted.choices[0].message.content != plain.choices[0].message.content


def test_tokens_are_counted_where_an_engine_reports_none(gateway):
    c = client(gateway)
    reply = c.chat.completions.create(model="tiny-uncounted", max_tokens=6,
                                      messages=[{"role": "user", "content": "x" * 40}])
    assert reply.usage is None and len(reply.choices[0].message.content) == 6
    chunks = list(c.chat.completions.create(model="tiny-uncounted", max_tokens=5, stream=True,
                                            messages=[{"role": "user", "content": "y" * 40}]))
    assert sum(1 for ch in chunks if ch.choices and ch.choices[0].delta.content) == 5
    row = _usage_rows(gateway)["tiny-uncounted"]
    assert row["counted_requests"] == row["requests"] == 2
    # A streamed chunk is a token; a whole answer and a prompt, about four characters a token.
    assert row["completion_tokens"] == math.ceil(6 / 4) + 5
    assert row["prompt_tokens"] > 2 * 40 / 4


def test_requests_in_flight_scale_a_model_out_and_stats_show_it(gateway):
    c = client(gateway)

    def ask(i: int) -> str:
        return c.chat.completions.create(model="tiny-embed", max_tokens=6, messages=[
            {"role": "user", "content": f"slow {i}"}]).system_fingerprint

    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        engines = set(pool.map(ask, range(6)))
    assert engines
    stats = json.loads(gateway.cli("app", "stats", "test-model-api", "--json").stdout)
    embed = next(f for f in stats["functions"] if f["function"] == "embed_engine")
    assert sum(embed["containers"].values()) >= 2, "6 requests at 2 per replica scaled out"
    stream = c.chat.completions.create(model="tiny-embed", max_tokens=4, stream=True,
                                       messages=[{"role": "user", "content": "ttft"}])
    assert len("".join(ch.choices[0].delta.content or "" for ch in stream if ch.choices)) == 4
    stats = gateway.cli("app", "stats", "test-model-api")
    assert stats.returncode == 0, stats.stderr
    assert "TTFT" in stats.stdout and "tiny-embed" in stats.stdout


def test_a_model_that_is_not_ready_in_time_answers_503_with_retry_after(tmp_path):
    srv = ServerProcess(tmp_path, extra_env={"FIREBOX_MODEL_START_WAIT_S": "1"})
    srv.start()
    app = tmp_path / "slow_model.py"
    app.write_text(
        "import firebox, time\n"
        "app = firebox.App('slow-model')\n"
        "@app.function()\n"
        "@firebox.model_api(models='slow')\n"
        "@firebox.web_server(8000, startup_timeout=60)\n"
        "def serve():\n"
        "    time.sleep(60)\n")
    try:
        deployed = srv.cli("deploy", str(app))
        assert deployed.returncode == 0, deployed.stderr
        started = time.monotonic()
        with pytest.raises(openai.InternalServerError) as waited:
            client(srv).chat.completions.create(model="slow", messages=[])
        assert waited.value.status_code == 503 and 1 <= time.monotonic() - started < 10
        assert waited.value.response.headers["retry-after"] == "10"
        assert "starting" in waited.value.message
    finally:
        srv.stop()
