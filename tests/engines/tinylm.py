"""tinylm: a tiny language model engine with an OpenAI-compatible server, for tests and
benchmarks of the model gateway where no real model can be downloaded.

The model is real, if small and random: a byte-level decoder-only transformer (two layers,
one attention head, 32 dimensions) whose weights come from a seed, run with numpy. What the
gateway needs of an engine is real too: tokens counted from the tokenizer, greedy or sampled
decoding, a KV cache reused across requests by prefix blocks (so prefix-aware routing shows
up as `usage.prompt_tokens_details.cached_tokens`), LoRA adapters (a low-rank delta on the
output head, from a directory) loaded while it runs through vLLM's `/v1/load_lora_adapter`,
and OpenAI's endpoints: /v1/models, /v1/chat/completions (stream, n, logprobs, tools with a
named tool_choice, response_format json_object), /v1/completions and /v1/embeddings.

    python tinylm.py serve --port 8000 --served-model-name tiny [--token-delay-ms 5] [--no-usage]
    python tinylm.py adapter OUT_DIR --seed 7
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
import uuid
from collections import OrderedDict
from typing import Any

import numpy as np

VOCAB = 258  # bytes, then BOS and EOS
BOS, EOS = 256, 257
DIM, LAYERS = 32, 2
BLOCK = 16  # tokens per KV cache block
CACHE_BLOCKS = 4096
FINGERPRINT = "tinylm-" + uuid.uuid4().hex[:12]  # which engine process answered
PRINTABLE = np.array([b for b in range(32, 127)] + [EOS])


def weights(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    w = {"embed": rng.normal(0, 0.5, (VOCAB, DIM)), "pos": rng.normal(0, 0.1, (4096, DIM))}
    for i in range(LAYERS):
        for name in ("q", "k", "v", "o"):
            w[f"{i}.{name}"] = rng.normal(0, DIM ** -0.5, (DIM, DIM))
        w[f"{i}.up"] = rng.normal(0, DIM ** -0.5, (DIM, 4 * DIM))
        w[f"{i}.down"] = rng.normal(0, (4 * DIM) ** -0.5, (4 * DIM, DIM))
    return w


def write_adapter(path: str, seed: int, rank: int = 4) -> None:
    rng = np.random.default_rng(seed)
    os.makedirs(path, exist_ok=True)
    np.savez(os.path.join(path, "adapter.npz"), a=rng.normal(0, 1, (DIM, rank)),
             b=rng.normal(0, 1, (rank, VOCAB)))
    with open(os.path.join(path, "adapter_config.json"), "w") as f:
        json.dump({"r": rank, "lora_alpha": 8, "target_modules": ["lm_head"]}, f)


def _norm(x: np.ndarray) -> np.ndarray:
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + 1e-5)


class Model:
    def __init__(self, seed: int) -> None:
        self.w = weights(seed)
        self.cache: OrderedDict[tuple[int, ...], list[tuple[np.ndarray, np.ndarray]]] = \
            OrderedDict()  # whole-block token prefix -> each layer's K and V of its last block
        self.hits = self.queries = 0

    def forward(self, tokens: list[int], past: list[list[np.ndarray]], start: int
                ) -> tuple[np.ndarray, list[list[np.ndarray]]]:
        """Hidden states of tokens at positions start.., attending to past K/V per layer."""
        w = self.w
        x = w["embed"][tokens] + w["pos"][start:start + len(tokens)]
        new = []
        for i in range(LAYERS):
            h = _norm(x)
            q, k, v = h @ w[f"{i}.q"], h @ w[f"{i}.k"], h @ w[f"{i}.v"]
            ks = np.concatenate([past[i][0], k]) if past else k
            vs = np.concatenate([past[i][1], v]) if past else v
            scores = q @ ks.T / np.sqrt(DIM)
            n, total = len(tokens), len(ks)
            mask = np.arange(total)[None, :] > (np.arange(n)[:, None] + total - n)
            scores = np.where(mask, -1e9, scores)
            att = np.exp(scores - scores.max(-1, keepdims=True))
            att /= att.sum(-1, keepdims=True)
            x = x + (att @ vs) @ w[f"{i}.o"]
            x = x + np.maximum(_norm(x) @ w[f"{i}.up"], 0) @ w[f"{i}.down"]
            new.append([ks, vs])
        return _norm(x), new

    def prefill(self, tokens: list[int]) -> tuple[np.ndarray, list[list[np.ndarray]], int]:
        """Run the prompt, reusing cached blocks of its prefix: (last hidden state, K/V,
        tokens taken from the cache)."""
        past: list[list[np.ndarray]] = []
        cached = 0
        self.queries += len(tokens)
        whole = (len(tokens) - 1) // BLOCK  # keep at least one token to compute
        for b in range(whole):
            key = tuple(tokens[:(b + 1) * BLOCK])
            block = self.cache.get(key)
            if block is None:
                break
            self.cache.move_to_end(key)
            past = [[np.concatenate([past[i][0], block[i][0]]) if past else block[i][0],
                     np.concatenate([past[i][1], block[i][1]]) if past else block[i][1]]
                    for i in range(LAYERS)]
            cached = (b + 1) * BLOCK
        self.hits += cached
        hidden, kv = self.forward(tokens[cached:], past, cached)
        for b in range(cached // BLOCK, whole):
            lo, hi = b * BLOCK, (b + 1) * BLOCK
            self.cache[tuple(tokens[:hi])] = [(kv[i][0][lo:hi], kv[i][1][lo:hi])
                                              for i in range(LAYERS)]
        while len(self.cache) > CACHE_BLOCKS:
            self.cache.popitem(last=False)
        return hidden[-1], kv, cached

    def logits(self, hidden: np.ndarray, adapter: dict[str, np.ndarray] | None) -> np.ndarray:
        out = hidden @ self.w["embed"].T
        if adapter is not None:
            out = out + (hidden @ adapter["a"]) @ adapter["b"] * adapter["scale"]
        return out

    def embed(self, tokens: list[int]) -> list[float]:
        hidden, _ = self.forward(tokens, [], 0)
        v = hidden.mean(0)
        return (v / np.linalg.norm(v)).tolist()


def encode(text: str) -> list[int]:
    return [BOS, *text.encode()]


def chat_prompt(messages: list[dict[str, Any]]) -> str:
    parts = []
    for m in messages:
        content = m.get("content") or ""
        if isinstance(content, list):
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        parts.append(f"<|{m.get('role', 'user')}|>{content}\n")
    return "".join(parts) + "<|assistant|>"


class Engine:
    def __init__(self, name: str, seed: int, delay: float) -> None:
        self.name = name
        self.model = Model(seed)
        self.delay = delay
        self.adapters: dict[str, dict[str, np.ndarray]] = {}
        self.created = int(time.time())
        self.fingerprint = FINGERPRINT
        self.reports_usage = True

    def adapter(self, model: str) -> tuple[bool, dict[str, np.ndarray] | None]:
        if model == self.name:
            return True, None
        if model in self.adapters:
            return True, self.adapters[model]
        return False, None

    async def generate(self, tokens: list[int], max_tokens: int, temperature: float,
                       seed: int | None, adapter: Any, top_logprobs: int | None):
        """Yield (token, text, logprob, top) per generated token; the last yield is
        ("end", cached prompt tokens, finish reason)."""
        hidden, kv, cached = self.model.prefill(tokens)
        rng = np.random.default_rng(seed)
        position = len(tokens)
        reason = "length"
        for _ in range(max_tokens):
            logits = self.model.logits(hidden, adapter)[PRINTABLE]
            probs = np.exp((logits - logits.max()) / max(temperature, 1e-3))
            probs /= probs.sum()
            pick = int(np.argmax(probs)) if temperature == 0 else int(rng.choice(len(probs),
                                                                                p=probs))
            token = int(PRINTABLE[pick])
            logprob = float(np.log(probs[pick] + 1e-12))
            top = None
            if top_logprobs:
                order = np.argsort(-probs)[:top_logprobs]
                top = [(_text(int(PRINTABLE[j])), float(np.log(probs[j] + 1e-12))) for j in order]
            if token == EOS:
                reason = "stop"
                break
            yield token, _text(token), logprob, top
            if self.delay:
                await asyncio.sleep(self.delay)
            hidden_all, kv = self.model.forward([token], kv, position)
            hidden = hidden_all[-1]
            position += 1
        yield "end", cached, reason


def _text(token: int) -> str:
    return "" if token >= 256 else bytes([token]).decode("latin-1")


def build_app(engine: Engine) -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse
    from starlette.routing import Route

    def error(status: int, message: str, code: str | None = None,
              kind: str = "invalid_request_error") -> JSONResponse:
        return JSONResponse({"error": {"message": message, "type": kind, "param": None,
                                       "code": code}}, status_code=status)

    async def models(request: Request) -> JSONResponse:
        data = [{"id": engine.name, "object": "model", "created": engine.created,
                 "owned_by": "tinylm"}]
        data += [{"id": a, "object": "model", "created": engine.created, "owned_by": "tinylm",
                  "parent": engine.name} for a in engine.adapters]
        return JSONResponse({"object": "list", "data": data})

    async def load_adapter(request: Request) -> Any:
        body = await request.json()
        name, path = body.get("lora_name"), body.get("lora_path")
        if name in engine.adapters:
            return error(400, f"The lora adapter '{name}' has already been loaded.")
        try:
            data = np.load(os.path.join(path, "adapter.npz"))
            with open(os.path.join(path, "adapter_config.json")) as f:
                config = json.load(f)
        except OSError as exc:
            return error(404, f"No adapter at {path}: {exc}", "adapter_not_found")
        engine.adapters[name] = {"a": data["a"], "b": data["b"],
                                 "scale": config["lora_alpha"] / config["r"]}
        return PlainTextResponse(f"Success: LoRA adapter '{name}' added successfully.")

    async def unload_adapter(request: Request) -> Any:
        body = await request.json()
        if engine.adapters.pop(body.get("lora_name"), None) is None:
            return error(404, f"The lora adapter '{body.get('lora_name')}' is not loaded.")
        return PlainTextResponse("Success")

    async def metrics(request: Request) -> PlainTextResponse:
        m = engine.model
        return PlainTextResponse(f"tinylm:prefix_cache_queries_total {m.queries}\n"
                                 f"tinylm:prefix_cache_hits_total {m.hits}\n")

    def parse(body: Any) -> tuple[Any, str | None]:
        if not isinstance(body, dict):
            return None, "The body must be a JSON object."
        known, adapter = engine.adapter(body.get("model", ""))
        if not known:
            return None, "model"
        max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
        max_tokens = 16 if max_tokens is None else max_tokens
        if not isinstance(max_tokens, int) or max_tokens < 1:
            return None, "max_tokens must be a positive integer."
        return (adapter, max_tokens), None

    async def generation(request: Request) -> Any:
        body = await request.json()
        parsed, problem = parse(body)
        if problem == "model":
            return error(404, f"The model `{body.get('model')}` does not exist.",
                         "model_not_found", "NotFoundError")
        if problem:
            return error(400, problem)
        adapter, max_tokens = parsed
        if request.url.path.endswith("/chat/completions"):
            tool = _named_tool(body)
            json_mode = (body.get("response_format") or {}).get("type") == "json_object"
            prompt = chat_prompt(body.get("messages") or [])
            return await respond(body, encode(prompt), adapter, max_tokens, "chat", tool,
                                 json_mode)
        prompt = body.get("prompt") or ""
        if isinstance(prompt, list):
            prompt = "".join(map(str, prompt))
        return await respond(body, encode(prompt), adapter, max_tokens, "text", None, False)

    async def embeddings(request: Request) -> Any:
        body = await request.json()
        if body.get("model") != engine.name:
            return error(404, f"The model `{body.get('model')}` does not exist.",
                         "model_not_found", "NotFoundError")
        inputs = body.get("input")
        inputs = [inputs] if isinstance(inputs, str) else inputs
        if not isinstance(inputs, list) or not inputs:
            return error(400, "input must be a string or a list of strings.")
        data, used = [], 0
        for i, text in enumerate(inputs):
            tokens = encode(str(text))
            used += len(tokens)
            data.append({"object": "embedding", "index": i,
                         "embedding": engine.model.embed(tokens)})
        return JSONResponse({"object": "list", "data": data, "model": body["model"],
                             "usage": {"prompt_tokens": used, "total_tokens": used}})

    async def respond(body: dict[str, Any], tokens: list[int], adapter: Any, max_tokens: int,
                      kind: str, tool: str | None, json_mode: bool) -> Any:
        n = int(body.get("n") or 1)
        temperature = float(body.get("temperature", 1.0 if n > 1 else 0.0))
        top = body.get("top_logprobs") if kind == "chat" else body.get("logprobs")
        want_logprobs = bool(body.get("logprobs")) if kind == "chat" else top is not None
        rid = ("chatcmpl-" if kind == "chat" else "cmpl-") + uuid.uuid4().hex[:24]
        created, model = int(time.time()), body["model"]
        obj = "chat.completion" if kind == "chat" else "text_completion"
        seed = body.get("seed")

        def runs():
            return [engine.generate(tokens, max_tokens, temperature,
                                    None if seed is None else seed + i, adapter,
                                    int(top or 0) or (1 if want_logprobs else None))
                    for i in range(n)]

        if body.get("stream"):
            usage_wanted = (body.get("stream_options") or {}).get("include_usage") \
                and engine.reports_usage

            async def events():
                completion, cached = 0, 0
                for index, run in enumerate(runs()):
                    if kind == "chat":
                        yield _sse(rid, obj, created, model, [{"index": index, "delta": {
                            "role": "assistant", "content": ""}, "finish_reason": None}],
                            usage_wanted)
                    text = []
                    async for step in run:
                        if step[0] == "end":
                            cached, reason = step[1], step[2]
                            break
                        completion += 1
                        text.append(step[1])
                        if tool or json_mode:
                            continue  # sent whole at the end, as a constrained decoder would
                        choice = ({"index": index, "delta": {"content": step[1]}}
                                  if kind == "chat" else {"index": index, "text": step[1]})
                        if want_logprobs:
                            choice["logprobs"] = _logprobs(kind, [step])
                        choice["finish_reason"] = None
                        yield _sse(rid, obj, created, model, [choice], usage_wanted)
                    final: dict[str, Any] = {"index": index, "finish_reason": reason}
                    if tool:
                        final["delta"] = {"tool_calls": [_tool_call(tool, "".join(text), 0)]}
                        final["finish_reason"] = "tool_calls"
                    elif json_mode:
                        final["delta"] = {"content": json.dumps({"text": "".join(text)})}
                    elif kind == "chat":
                        final["delta"] = {}
                    else:
                        final["text"] = ""
                    yield _sse(rid, obj, created, model, [final], usage_wanted)
                if usage_wanted:
                    yield _sse(rid, obj, created, model, [], True,
                               _usage(len(tokens), completion, cached))
                yield "data: [DONE]\n\n"

            return StreamingResponse(events(), media_type="text/event-stream")
        choices, completion, cached = [], 0, 0
        for index, run in enumerate(runs()):
            steps = []
            async for step in run:
                if step[0] == "end":
                    cached, reason = step[1], step[2]
                    break
                steps.append(step)
            completion += len(steps)
            text = "".join(s[1] for s in steps)
            choice: dict[str, Any] = {"index": index, "finish_reason": reason}
            if kind == "chat":
                message: dict[str, Any] = {"role": "assistant", "content": text}
                if tool:
                    message = {"role": "assistant", "content": None,
                               "tool_calls": [_tool_call(tool, text, None)]}
                    choice["finish_reason"] = "tool_calls"
                elif json_mode:
                    message["content"] = json.dumps({"text": text})
                choice["message"] = message
            else:
                choice["text"] = text
            choice["logprobs"] = _logprobs(kind, steps) if want_logprobs else None
            choices.append(choice)
        answer = {"id": rid, "object": obj, "created": created, "model": model,
                  "system_fingerprint": engine.fingerprint, "choices": choices}
        if engine.reports_usage:
            answer["usage"] = _usage(len(tokens) * n, completion, cached)
        return JSONResponse(answer)

    return Starlette(routes=[
        Route("/v1/models", models), Route("/health", lambda r: PlainTextResponse("ok")),
        Route("/metrics", metrics),
        Route("/v1/chat/completions", generation, methods=["POST"]),
        Route("/v1/completions", generation, methods=["POST"]),
        Route("/v1/embeddings", embeddings, methods=["POST"]),
        Route("/v1/load_lora_adapter", load_adapter, methods=["POST"]),
        Route("/v1/unload_lora_adapter", unload_adapter, methods=["POST"]),
    ])


def _named_tool(body: dict[str, Any]) -> str | None:
    choice = body.get("tool_choice")
    if isinstance(choice, dict) and body.get("tools"):
        return (choice.get("function") or {}).get("name")
    return None


def _tool_call(name: str, text: str, index: int | None) -> dict[str, Any]:
    call = {"id": "call_" + uuid.uuid4().hex[:12], "type": "function",
            "function": {"name": name, "arguments": json.dumps({"text": text})}}
    if index is not None:
        call["index"] = index
    return call


def _logprobs(kind: str, steps: list[Any]) -> dict[str, Any]:
    if kind == "chat":
        return {"content": [{"token": s[1], "logprob": s[2], "bytes": list(s[1].encode()),
                             "top_logprobs": [{"token": t, "logprob": lp, "bytes": list(t.encode())}
                                              for t, lp in (s[3] or [])]} for s in steps]}
    return {"tokens": [s[1] for s in steps], "token_logprobs": [s[2] for s in steps],
            "top_logprobs": [dict(s[3] or []) for s in steps], "text_offset": []}


def _usage(prompt: int, completion: int, cached: int) -> dict[str, Any]:
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": cached}}


def _sse(rid: str, obj: str, created: int, model: str, choices: list[Any], usage_field: Any,
         usage: Any = None) -> str:
    doc: dict[str, Any] = {"id": rid, "object": f"{obj}.chunk" if obj.startswith("chat")
                           else obj, "created": created, "model": model, "choices": choices,
                           "system_fingerprint": FINGERPRINT}
    if usage_field:
        doc["usage"] = usage
    return f"data: {json.dumps(doc)}\n\n"


def main() -> None:
    parser = argparse.ArgumentParser(prog="tinylm")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--served-model-name", default="tinylm")
    serve.add_argument("--seed", type=int, default=0)
    serve.add_argument("--token-delay-ms", type=float, default=0.0)
    serve.add_argument("--no-usage", action="store_true",
                       help="Report no usage, like engines that count no tokens.")
    adapter = sub.add_parser("adapter")
    adapter.add_argument("out")
    adapter.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    if args.command == "adapter":
        write_adapter(args.out, args.seed)
        return
    import uvicorn

    engine = Engine(args.served_model_name, args.seed, args.token_delay_ms / 1000)
    engine.reports_usage = not args.no_usage
    uvicorn.run(build_app(engine), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
