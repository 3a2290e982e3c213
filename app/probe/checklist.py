"""The conformance checklist (domain.CHECKLIST, version CHECKLIST_VERSION): one small request
per check; each answers passed, failed, not_supported (the server refused the feature clearly,
with a 4xx) or not_observed (nothing to judge, e.g. no 429 was met), with the request it sent
and an excerpt of the answer (the endpoint's key removed) as evidence."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from app.domain import CHECKLIST, TITLES
from app.probe.ask import EXCERPT, CheckResult, Client, Reply
from app.security.redact import excerpt

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
ANSWER_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "temperature": {"type": "number"}},
    "required": ["city", "temperature"],
    "additionalProperties": False,
}


def _events(body: bytes) -> list[dict[str, Any]]:
    out = []
    for block in body.split(b"\n\n"):
        for line in block.split(b"\n"):
            if line.startswith(b"data:") and line[5:].strip() != b"[DONE]":
                try:
                    obj = orjson.loads(line[5:].strip())
                except orjson.JSONDecodeError:
                    continue
                if isinstance(obj, dict):
                    out.append(obj)
    return out


def _openai_error(reply: Reply) -> bool:
    j = reply.json()
    return (
        isinstance(j, dict)
        and isinstance(j.get("error"), dict)
        and isinstance(j["error"].get("message"), str)
    )


def _refused(reply: Reply | None) -> bool:
    return reply is not None and 400 <= reply.status < 500 and reply.status != 429


STRUCTURED_TOKENS = 256  # enough to close {"city": ..., "temperature": ...} with room to spare


def _finish_reason(reply: Reply | None) -> str | None:
    j: Any = reply.json() if reply is not None else None
    try:
        return str(j["choices"][0]["finish_reason"])
    except (KeyError, IndexError, TypeError):
        return None


def _content(reply: Reply) -> str | None:
    j = reply.json()
    try:
        return str(j["choices"][0]["message"]["content"] or "")
    except (KeyError, IndexError, TypeError):
        return None


def _valid(value: Any, schema: dict[str, Any]) -> bool:
    """Enough of JSON Schema for ANSWER_SCHEMA: object, required keys, property types."""
    if schema.get("type") == "object":
        if not isinstance(value, dict) or any(k not in value for k in schema.get("required", [])):
            return False
        props = schema.get("properties", {})
        if schema.get("additionalProperties") is False and set(value) - set(props):
            return False
        return all(_valid(value[k], sub) for k, sub in props.items() if k in value)
    kinds: dict[str, type | tuple[type, ...]] = {"string": str, "number": (int, float), "integer": int,
                                                 "boolean": bool}  # fmt: skip
    kind = kinds.get(str(schema.get("type")))
    if kind is None:
        return True
    return isinstance(value, kind) and (kind is bool or not isinstance(value, bool))


Check = Callable[["Client", str], Awaitable[tuple[str, str, str]]]


def _msg(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


async def _chat(c: Client, model: str) -> tuple[str, str, str]:
    body = {"model": model, "messages": _msg("Say hello."), "max_tokens": 8}
    r = await c.post("/chat/completions", body)
    if r is not None and r.status == 200 and _content(r) is not None:
        return "passed", "POST /chat/completions max_tokens=8", c.excerpt(r)
    return ("not_supported" if _refused(r) else "failed"), "POST /chat/completions max_tokens=8", c.excerpt(r)


async def _completions(c: Client, model: str) -> tuple[str, str, str]:
    r = await c.post("/completions", {"model": model, "prompt": "Once upon a time", "max_tokens": 8})
    j = r.json() if r is not None else None
    ok = (
        r is not None
        and r.status == 200
        and isinstance(j, dict)
        and isinstance((j.get("choices") or [{}])[0].get("text"), str)
    )
    status = "passed" if ok else ("not_supported" if _refused(r) else "failed")
    return status, "POST /completions max_tokens=8", c.excerpt(r)


async def _stream(c: Client, model: str, **extra: Any) -> tuple[Reply | None, list[dict[str, Any]]]:
    body = {"model": model, "messages": _msg("Count to five."), "max_tokens": 8, "stream": True, **extra}
    r = await c.post("/chat/completions", body)
    return r, (_events(r.body) if r is not None and r.status == 200 else [])


async def _streaming(c: Client, model: str) -> tuple[str, str, str]:
    r, events = await _stream(c, model)
    sse = r is not None and r.headers.get("content-type", "").startswith("text/event-stream")
    deltas = [
        e for e in events if any((ch.get("delta") or {}).get("content") for ch in e.get("choices") or [])
    ]
    # OpenAI ends a stream with [DONE]; a final finish_reason ends it as clearly (the OpenAI
    # SDK stops at either), so a server that sends only the latter passes.
    finished = any(ch.get("finish_reason") for e in events for ch in e.get("choices") or [])
    ok = sse and bool(deltas) and r is not None and (b"[DONE]" in r.body or finished)
    return ("passed" if ok else "failed"), "POST /chat/completions stream=true", c.excerpt(r)


async def _usage_in_stream(c: Client, model: str) -> tuple[str, str, str]:
    r, events = await _stream(c, model, stream_options={"include_usage": True})
    if _refused(r):
        return "not_supported", "stream_options.include_usage=true", c.excerpt(r)
    last = [e["usage"] for e in events if isinstance(e.get("usage"), dict)]
    ok = bool(last) and isinstance(last[-1].get("completion_tokens"), int)
    return ("passed" if ok else "failed"), "stream_options.include_usage=true", c.excerpt(r)


async def _per_chunk_usage(c: Client, model: str) -> tuple[str, str, str]:
    r, events = await _stream(
        c, model, stream_options={"include_usage": True, "continuous_usage_stats": True}
    )
    request = "stream_options.continuous_usage_stats=true"
    if _refused(r):
        return "not_supported", request, c.excerpt(r)
    counts = [
        e["usage"].get("completion_tokens")
        for e in events
        if e.get("usage") and any((ch.get("delta") or {}).get("content") for ch in e.get("choices") or [])
    ]
    if not counts:
        return "not_supported", request, c.excerpt(r)
    ok = all(isinstance(n, int) for n in counts) and counts == sorted(counts) and counts[-1] > 0
    return ("passed" if ok else "failed"), request, c.excerpt(r)


async def _max_tokens(c: Client, model: str) -> tuple[str, str, str]:
    body = {"model": model, "messages": _msg("Write a long story about the sea."), "max_tokens": 5}
    r = await c.post("/chat/completions", body)
    j = r.json() if r is not None else None
    try:
        used = int(j["usage"]["completion_tokens"])  # type: ignore[index]
    except (KeyError, TypeError, ValueError):
        return "failed", "max_tokens=5", c.excerpt(r)
    ok = used <= 5  # reasoning tokens count within max_tokens, as in OpenAI's API
    return ("passed" if ok else "failed"), "max_tokens=5", c.excerpt(r)


async def _stop(c: Client, model: str) -> tuple[str, str, str]:
    base = {"model": model, "messages": _msg("List ten words."), "max_tokens": 12, "temperature": 0}
    first = await c.post("/chat/completions", base)
    words = (_content(first) or "").split() if first is not None and first.status == 200 else []
    if len(words) < 4:
        return "not_observed", "temperature=0, max_tokens=12", c.excerpt(first)
    stop_word = words[2]
    r = await c.post("/chat/completions", {**base, "stop": [stop_word]})
    if _refused(r):
        return "not_supported", f"stop=[{stop_word!r}]", c.excerpt(r)
    text = _content(r) if r is not None else None
    j = r.json() if r is not None else None
    reason = ((j or {}).get("choices") or [{}])[0].get("finish_reason") if isinstance(j, dict) else None
    ok = text is not None and stop_word not in text.split() and reason == "stop"
    return ("passed" if ok else "failed"), f"stop=[{stop_word!r}] after an unconstrained answer", c.excerpt(r)


async def _n(c: Client, model: str) -> tuple[str, str, str]:
    r = await c.post(
        "/chat/completions", {"model": model, "messages": _msg("Say hi."), "max_tokens": 4, "n": 2}
    )
    if _refused(r):
        return "not_supported", "n=2", c.excerpt(r)
    j = r.json() if r is not None else None
    ok = isinstance(j, dict) and len(j.get("choices") or []) == 2
    return ("passed" if ok else "failed"), "n=2", c.excerpt(r)


async def _logprobs(c: Client, model: str) -> tuple[str, str, str]:
    body = {"model": model, "messages": _msg("Say hi."), "max_tokens": 4, "logprobs": True, "top_logprobs": 2}
    r = await c.post("/chat/completions", body)
    if _refused(r):
        return "not_supported", "logprobs=true, top_logprobs=2", c.excerpt(r)
    j = r.json() if r is not None else None
    try:
        content = j["choices"][0]["logprobs"]["content"]  # type: ignore[index]
        ok = isinstance(content, list) and bool(content) and "logprob" in content[0]
    except (KeyError, IndexError, TypeError):
        ok = False
    return ("passed" if ok else "failed"), "logprobs=true, top_logprobs=2", c.excerpt(r)


async def _tool_calls(c: Client, model: str) -> tuple[str, str, str]:
    choice = {"type": "function", "function": {"name": "get_weather"}}
    r, events = await _stream(
        c,
        model,
        messages=_msg("What is the weather in Paris?"),
        tools=[WEATHER_TOOL],
        tool_choice=choice,
        max_tokens=64,
    )
    request = "stream=true, tools=[get_weather], tool_choice=get_weather"
    if _refused(r):
        return "not_supported", request, c.excerpt(r)
    name, args = None, ""
    for e in events:
        for ch in e.get("choices") or []:
            for call in (ch.get("delta") or {}).get("tool_calls") or []:
                fn = call.get("function") or {}
                name = fn.get("name") or name
                args += fn.get("arguments") or ""
    try:
        parsed = json.loads(args) if args else None
    except ValueError:
        parsed = None
    ok = name == "get_weather" and isinstance(parsed, dict)
    return ("passed" if ok else "failed"), request, c.excerpt(r)


async def _structured_output(c: Client, model: str) -> tuple[str, str, str]:
    fmt = {"type": "json_schema", "json_schema": {"name": "weather", "schema": ANSWER_SCHEMA, "strict": True}}
    body = {
        "model": model,
        "messages": _msg("The weather in Paris as JSON."),
        "max_tokens": STRUCTURED_TOKENS,
        "response_format": fmt,
    }
    request = f"response_format=json_schema (city, temperature), max_tokens={STRUCTURED_TOKENS}"
    r = await c.post("/chat/completions", body)
    if _refused(r):
        return "not_supported", request, c.excerpt(r)
    try:
        ok = _valid(json.loads(_content(r) or "") if r is not None else None, ANSWER_SCHEMA)
    except ValueError:
        ok = False
    if not ok and _finish_reason(r) == "length":
        # Still inside its JSON when max_tokens cut it (a small random model rambles within the
        # grammar): nothing says the schema was broken.
        return "inconclusive", request + " (cut by max_tokens)", c.excerpt(r)
    return ("passed" if ok else "failed"), request, c.excerpt(r)


async def _reasoning(c: Client, model: str) -> tuple[str, str, str]:
    r, events = await _stream(c, model, messages=_msg("Think, then answer: 2 + 2?"), max_tokens=64)
    thought = any(
        (ch.get("delta") or {}).get("reasoning_content") or (ch.get("delta") or {}).get("reasoning")
        for e in events
        for ch in e.get("choices") or []
    )
    text = "".join(
        str((ch.get("delta") or {}).get("content") or "") for e in events for ch in e.get("choices") or []
    )
    if "<think>" in text:
        return "failed", "stream=true (reasoning)", c.excerpt(r)
    return ("passed" if thought else "not_supported"), "stream=true (reasoning)", c.excerpt(r)


async def _seed(c: Client, model: str) -> tuple[str, str, str]:
    body = {
        "model": model,
        "messages": _msg("Name a color."),
        "max_tokens": 8,
        "seed": 1234,
        "temperature": 1.0,
    }
    a = await c.post("/chat/completions", body)
    if _refused(a):
        return "not_supported", "seed=1234 twice", c.excerpt(a)
    b = await c.post("/chat/completions", body)
    same = a is not None and b is not None and _content(a) is not None and _content(a) == _content(b)
    return ("passed" if same else "failed"), "seed=1234, temperature=1, twice", c.excerpt(b)


async def _models(c: Client, model: str) -> tuple[str, str, str]:
    r = await c.get(c.target.base_url.rstrip("/") + "/models")
    j = r.json() if r is not None and r.status == 200 else None
    ids = (
        [str(m.get("id")) for m in (j or {}).get("data") or [] if isinstance(m, dict)]
        if isinstance(j, dict)
        else []
    )
    return ("passed" if model in ids else "failed"), "GET /models", c.excerpt(r)


async def _error_bad_model(c: Client, model: str) -> tuple[str, str, str]:
    r = await c.post(
        "/chat/completions", {"model": "smartbench-no-such-model", "messages": _msg("hi"), "max_tokens": 2}
    )
    ok = r is not None and r.status == 404 and _openai_error(r)
    return ("passed" if ok else "failed"), "model=smartbench-no-such-model", c.excerpt(r)


async def _error_bad_request(c: Client, model: str) -> tuple[str, str, str]:
    r = await c.post("/chat/completions", {"model": model, "messages": "not a list", "max_tokens": -1})
    ok = r is not None and r.status in (400, 422) and _openai_error(r)
    return ("passed" if ok else "failed"), "messages as a string, max_tokens=-1", c.excerpt(r)


CHECKS: dict[str, Check] = {
    "chat": _chat, "completions": _completions, "streaming": _streaming, "usage_in_stream": _usage_in_stream,
    "per_chunk_usage": _per_chunk_usage, "max_tokens": _max_tokens, "stop": _stop, "n": _n, "logprobs": _logprobs,
    "tool_calls": _tool_calls, "structured_output": _structured_output, "reasoning": _reasoning, "seed": _seed,
    "models": _models, "error_bad_model": _error_bad_model, "error_bad_request": _error_bad_request,
}  # fmt: skip


async def run_checks(client: Client) -> list[CheckResult]:
    results = []
    for cid, title, _ in CHECKLIST:
        if cid == "rate_limit":
            continue
        try:
            status, request, evidence = await CHECKS[cid](client, client.target.model)
        except Exception as exc:  # a check that trips over a strange answer fails, never the inspection
            status, request, evidence = "failed", cid, f"{type(exc).__name__}: {excerpt(str(exc)[:EXCERPT])}"
        results.append(CheckResult(cid, title, status, request, client.redactor.text(evidence)))
    if client.retry_after:
        with_header = [v for v in client.retry_after if v]
        status = "passed" if len(with_header) == len(client.retry_after) else "failed"
        seen = f"{len(client.retry_after)} answers 429, {len(with_header)} with Retry-After"
    else:
        status, seen = "not_observed", "no 429 was met (smartbench never loads a server to provoke one)"
    results.append(CheckResult("rate_limit", TITLES["rate_limit"], status, "every request above", seen))
    return results
