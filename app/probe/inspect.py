"""What serves an endpoint, and how much of the OpenAI API it honours.

`inspect()` does two things with a few small requests (never load; each bounded in time):

1. **Engine detection** from what the server exposes: `/version`, `/v1/version` and
   `/v1/metadata` (NIM), `/info` (TGI), `/props` (llama.cpp), `/api/version` (Ollama),
   `/get_model_info` (SGLang), `/openapi.json` (FastAPI servers), the `/v1/models` card
   (`owned_by`, `root`, `max_model_len`), the health routes, the `Server` header, and the metric
   names on its Prometheus endpoint. Each rule that matches adds weight to one engine and is kept
   as evidence; the heaviest engine wins when its weight reaches DETECTION_THRESHOLD, else
   "unknown". Sources for each rule are in app/simulator/personas.py and the fixtures.
2. **The conformance checklist** (CHECKLIST, version CHECKLIST_VERSION): each check answers
   passed, failed, not_supported (the server refused the feature clearly, with a 4xx) or
   not_observed (nothing to judge, e.g. no 429 was met), with the request it sent and an excerpt
   of the answer (the endpoint's key removed) as evidence.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import orjson

from app.domain import CHECKLIST, CHECKLIST_VERSION, TITLES
from app.probe.client import headers_for, make_session, outbound_problem, read_all
from app.probe.types import Limits, Target, Timeouts
from app.security.redact import Redactor, excerpt

DETECTION_THRESHOLD = 5
REQUEST_TIMEOUT_S = 15.0
INSPECTION_TIMEOUT_S = 90.0
EXCERPT = 300
ENGINES = ("vllm", "sglang", "tensorrt-llm", "nim", "dynamo", "tgi", "llama.cpp", "ollama", "transformers",
           "smartbench-simulator")  # fmt: skip

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


@dataclass
class Evidence:
    engine: str
    weight: int
    source: str
    saw: str


@dataclass
class CheckResult:
    id: str
    title: str
    status: str  # passed | failed | not_supported | not_observed
    request: str
    evidence: str


@dataclass
class Inspection:
    engine: str
    engine_version: str | None
    evidence: list[Evidence]
    checks: list[CheckResult] = field(default_factory=list)
    checklist_version: str = CHECKLIST_VERSION
    metrics_exposed: bool = False
    metrics_url: str | None = None
    duration_s: float = 0.0
    error: str | None = None
    checks_at: str | None = None  # set when the checklist's answers were carried over from then

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for check in self.checks:
            out[check.status] = out.get(check.status, 0) + 1
        return out


@dataclass
class _Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        try:
            return orjson.loads(self.body)
        except orjson.JSONDecodeError:
            return None


def root_of(base_url: str) -> str:
    """The server's root: the base URL without its trailing /v1."""
    parts = urlsplit(base_url.rstrip("/"))
    path = parts.path[: -len("/v1")] if parts.path.endswith("/v1") else parts.path
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


class _Client:
    def __init__(self, session: aiohttp.ClientSession, target: Target) -> None:
        self.session = session
        self.target = target
        self.redactor = Redactor(target.api_key)
        self.headers = {**headers_for(target), "Accept": "*/*"}
        self.retry_after: list[str | None] = []  # the Retry-After of every 429 met

    def excerpt(self, reply: _Reply | None) -> str:
        if reply is None:
            return "(no answer)"
        text = self.redactor.bytes(reply.body[:4096]).decode("utf-8", "replace")
        return f"HTTP {reply.status}: {excerpt(text[:EXCERPT])}"

    async def get(self, url: str) -> _Reply | None:
        try:
            timeout = aiohttp.ClientTimeout(total=5.0)
            async with self.session.get(
                url, headers=self.headers, allow_redirects=False, timeout=timeout
            ) as r:
                return _Reply(
                    r.status, {k.lower(): v for k, v in r.headers.items()}, await read_all(r, 65536)
                )
        except (aiohttp.ClientError, TimeoutError, OSError):
            return None

    async def post(self, path: str, body: dict[str, Any]) -> _Reply | None:
        url = self.target.base_url.rstrip("/") + path
        for attempt in range(2):
            try:
                timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
                async with self.session.post(
                    url, data=orjson.dumps(body), headers=self.headers, allow_redirects=False, timeout=timeout
                ) as r:
                    reply = _Reply(
                        r.status, {k.lower(): v for k, v in r.headers.items()}, await read_all(r, 1 << 20)
                    )
            except (aiohttp.ClientError, TimeoutError, OSError):
                return None
            if reply.status != 429 or attempt:
                return reply
            wait = reply.headers.get("retry-after")
            self.retry_after.append(wait)
            try:
                delay = min(2.0, max(0.1, float(wait))) if wait else 1.0
            except ValueError:
                delay = 1.0
            await asyncio.sleep(delay)
        return None


# -- detection ---------------------------------------------------------------------------------------


async def detect(
    client: _Client, metrics_url: str | None
) -> tuple[str, str | None, list[Evidence], bool, str | None]:
    root = root_of(client.target.base_url)
    base = client.target.base_url.rstrip("/")
    paths = {
        "version": root + "/version", "v1_version": base + "/version", "metadata": base + "/metadata",
        "ready": base + "/health/ready", "health": root + "/health", "info": root + "/info",
        "props": root + "/props", "ollama": root + "/api/version", "root": root + "/",
        "sglang": root + "/get_model_info", "sglang_server": root + "/get_server_info",
        "openapi": root + "/openapi.json", "models": base + "/models",
        "metrics": metrics_url or root + "/metrics", "trt_metrics": root + "/prometheus/metrics",
        "nim_metrics": base + "/metrics",
    }  # fmt: skip
    replies = dict(zip(paths, await asyncio.gather(*(client.get(u) for u in paths.values())), strict=True))
    ev: list[Evidence] = []
    versions: dict[str, str] = {}

    def ok(key: str) -> _Reply | None:
        reply = replies.get(key)
        return reply if reply is not None and reply.status == 200 else None

    def add(engine: str, weight: int, source: str, saw: str) -> None:
        ev.append(Evidence(engine, weight, source, saw[:200]))

    if (r := ok("v1_version")) and isinstance(j := r.json(), dict) and "release" in j:
        add("nim", 10, "GET /v1/version", f"release {j['release']}, api {j.get('api')}")
        versions["nim"] = str(j["release"])
    if ok("ready"):
        add("nim", 3, "GET /v1/health/ready", "200 (NIM's readiness route)")
    if (r := ok("metadata")) and isinstance(j := r.json(), dict) and "modelInfo" in j:
        add("nim", 5, "GET /v1/metadata", "modelInfo present")
    if (r := ok("info")) and isinstance(j := r.json(), dict) and j.get("router") == "text-generation-router":
        add("tgi", 10, "GET /info", f"router text-generation-router, version {j.get('version')}")
        versions["tgi"] = str(j.get("version"))
    if (r := ok("props")) and isinstance(j := r.json(), dict) and "build_info" in j:
        add("llama.cpp", 10, "GET /props", f"build_info {j['build_info']}")
        versions["llama.cpp"] = str(j["build_info"])
    if (r := ok("ollama")) and isinstance(j := r.json(), dict) and "version" in j:
        add("ollama", 8, "GET /api/version", f"version {j['version']}")
        versions["ollama"] = str(j["version"])
    if (r := ok("root")) and b"Ollama is running" in r.body:
        add("ollama", 4, "GET /", "Ollama is running")
    if (r := ok("sglang")) and isinstance(j := r.json(), dict) and "model_path" in j:
        add("sglang", 6, "GET /get_model_info", f"model_path {j['model_path']}")
    if (r := ok("sglang_server")) and isinstance(j := r.json(), dict) and j.get("version"):
        versions["sglang"] = str(j["version"])
    if (r := ok("openapi")) and isinstance(j := r.json(), dict):
        routes = set((j.get("paths") or {}).keys())
        if {"/load_model", "/v1/responses"} <= routes:
            add(
                "transformers",
                10,
                "GET /openapi.json",
                "routes /load_model and /v1/responses (transformers serve)",
            )
        elif {"/tokenize", "/version"} <= routes:
            add("vllm", 4, "GET /openapi.json", "routes /tokenize and /version (vLLM's OpenAI server)")
    if (
        (r := ok("models"))
        and isinstance(j := r.json(), dict)
        and isinstance(j.get("data"), list)
        and j["data"]
    ):
        card = j["data"][0] if isinstance(j["data"][0], dict) else {}
        owner = str(card.get("owned_by"))
        owners = {"vllm": "vllm", "sglang": "sglang", "tensorrt_llm": "tensorrt-llm", "llamacpp": "llama.cpp",
                  "library": "ollama"}  # fmt: skip
        if owner in owners:
            add(owners[owner], 6 if owner != "library" else 3, "GET /v1/models", f"owned_by {owner}")
        if "max_model_len" in card:
            add("vllm", 1, "GET /v1/models", f"max_model_len {card['max_model_len']} (vLLM-family card)")
    metrics_text = ""
    metrics_from = None
    for key in ("metrics", "nim_metrics", "trt_metrics"):
        if (r := ok(key)) and (b"# TYPE" in r.body or b"# HELP" in r.body):
            metrics_text = r.body.decode("utf-8", "replace")
            metrics_from = paths[key]
            break
    for prefix, engine, weight in (("dynamo_frontend_", "dynamo", 12), ("sglang:", "sglang", 8),
                                   ("trtllm_", "tensorrt-llm", 8), ("tgi_", "tgi", 6), ("llamacpp:", "llama.cpp", 6),
                                   ("vllm:", "vllm", 6)):  # fmt: skip
        if f"\n{prefix}" in "\n" + metrics_text or f"# TYPE {prefix}" in metrics_text:
            add(
                engine,
                weight,
                f"GET {urlsplit(metrics_from or '').path or '/metrics'}",
                f"metric names {prefix}*",
            )
    server = next(
        (r.headers.get("server") for r in replies.values() if r is not None and r.headers.get("server")), None
    )
    if server and server.startswith("smartbench-simulator"):
        add("smartbench-simulator", 10, "Server header", server)
        versions["smartbench-simulator"] = server.partition("/")[2] or ""
    if (r := ok("version")) and isinstance(j := r.json(), dict) and "version" in j:
        for engine in ("vllm", "tensorrt-llm", "smartbench-simulator"):
            versions.setdefault(engine, str(j["version"]))
    totals: dict[str, int] = {}
    for item in ev:
        totals[item.engine] = totals.get(item.engine, 0) + item.weight
    engine = max(totals, key=lambda e: totals[e]) if totals else "unknown"
    if totals.get(engine, 0) < DETECTION_THRESHOLD:
        engine = "unknown"
    return engine, versions.get(engine), ev, bool(metrics_text), metrics_from


# -- the checklist ------------------------------------------------------------------------------------


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


def _openai_error(reply: _Reply) -> bool:
    j = reply.json()
    return (
        isinstance(j, dict)
        and isinstance(j.get("error"), dict)
        and isinstance(j["error"].get("message"), str)
    )


def _refused(reply: _Reply | None) -> bool:
    return reply is not None and 400 <= reply.status < 500 and reply.status != 429


def _content(reply: _Reply) -> str | None:
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


Check = Callable[["_Client", str], Awaitable[tuple[str, str, str]]]


def _msg(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


async def _chat(c: _Client, model: str) -> tuple[str, str, str]:
    body = {"model": model, "messages": _msg("Say hello."), "max_tokens": 8}
    r = await c.post("/chat/completions", body)
    if r is not None and r.status == 200 and _content(r) is not None:
        return "passed", "POST /chat/completions max_tokens=8", c.excerpt(r)
    return ("not_supported" if _refused(r) else "failed"), "POST /chat/completions max_tokens=8", c.excerpt(r)


async def _completions(c: _Client, model: str) -> tuple[str, str, str]:
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


async def _stream(c: _Client, model: str, **extra: Any) -> tuple[_Reply | None, list[dict[str, Any]]]:
    body = {"model": model, "messages": _msg("Count to five."), "max_tokens": 8, "stream": True, **extra}
    r = await c.post("/chat/completions", body)
    return r, (_events(r.body) if r is not None and r.status == 200 else [])


async def _streaming(c: _Client, model: str) -> tuple[str, str, str]:
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


async def _usage_in_stream(c: _Client, model: str) -> tuple[str, str, str]:
    r, events = await _stream(c, model, stream_options={"include_usage": True})
    if _refused(r):
        return "not_supported", "stream_options.include_usage=true", c.excerpt(r)
    last = [e["usage"] for e in events if isinstance(e.get("usage"), dict)]
    ok = bool(last) and isinstance(last[-1].get("completion_tokens"), int)
    return ("passed" if ok else "failed"), "stream_options.include_usage=true", c.excerpt(r)


async def _per_chunk_usage(c: _Client, model: str) -> tuple[str, str, str]:
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


async def _max_tokens(c: _Client, model: str) -> tuple[str, str, str]:
    body = {"model": model, "messages": _msg("Write a long story about the sea."), "max_tokens": 5}
    r = await c.post("/chat/completions", body)
    j = r.json() if r is not None else None
    try:
        used = int(j["usage"]["completion_tokens"])  # type: ignore[index]
    except (KeyError, TypeError, ValueError):
        return "failed", "max_tokens=5", c.excerpt(r)
    ok = used <= 5  # reasoning tokens count within max_tokens, as in OpenAI's API
    return ("passed" if ok else "failed"), "max_tokens=5", c.excerpt(r)


async def _stop(c: _Client, model: str) -> tuple[str, str, str]:
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


async def _n(c: _Client, model: str) -> tuple[str, str, str]:
    r = await c.post(
        "/chat/completions", {"model": model, "messages": _msg("Say hi."), "max_tokens": 4, "n": 2}
    )
    if _refused(r):
        return "not_supported", "n=2", c.excerpt(r)
    j = r.json() if r is not None else None
    ok = isinstance(j, dict) and len(j.get("choices") or []) == 2
    return ("passed" if ok else "failed"), "n=2", c.excerpt(r)


async def _logprobs(c: _Client, model: str) -> tuple[str, str, str]:
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


async def _tool_calls(c: _Client, model: str) -> tuple[str, str, str]:
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


async def _structured_output(c: _Client, model: str) -> tuple[str, str, str]:
    fmt = {"type": "json_schema", "json_schema": {"name": "weather", "schema": ANSWER_SCHEMA, "strict": True}}
    body = {
        "model": model,
        "messages": _msg("The weather in Paris as JSON."),
        "max_tokens": 64,
        "response_format": fmt,
    }
    r = await c.post("/chat/completions", body)
    if _refused(r):
        return "not_supported", "response_format=json_schema", c.excerpt(r)
    try:
        ok = _valid(json.loads(_content(r) or "") if r is not None else None, ANSWER_SCHEMA)
    except ValueError:
        ok = False
    return ("passed" if ok else "failed"), "response_format=json_schema (city, temperature)", c.excerpt(r)


async def _reasoning(c: _Client, model: str) -> tuple[str, str, str]:
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


async def _seed(c: _Client, model: str) -> tuple[str, str, str]:
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


async def _models(c: _Client, model: str) -> tuple[str, str, str]:
    r = await c.get(c.target.base_url.rstrip("/") + "/models")
    j = r.json() if r is not None and r.status == 200 else None
    ids = (
        [str(m.get("id")) for m in (j or {}).get("data") or [] if isinstance(m, dict)]
        if isinstance(j, dict)
        else []
    )
    return ("passed" if model in ids else "failed"), "GET /models", c.excerpt(r)


async def _error_bad_model(c: _Client, model: str) -> tuple[str, str, str]:
    r = await c.post(
        "/chat/completions", {"model": "smartbench-no-such-model", "messages": _msg("hi"), "max_tokens": 2}
    )
    ok = r is not None and r.status == 404 and _openai_error(r)
    return ("passed" if ok else "failed"), "model=smartbench-no-such-model", c.excerpt(r)


async def _error_bad_request(c: _Client, model: str) -> tuple[str, str, str]:
    r = await c.post("/chat/completions", {"model": model, "messages": "not a list", "max_tokens": -1})
    ok = r is not None and r.status in (400, 422) and _openai_error(r)
    return ("passed" if ok else "failed"), "messages as a string, max_tokens=-1", c.excerpt(r)


CHECKS: dict[str, Check] = {
    "chat": _chat, "completions": _completions, "streaming": _streaming, "usage_in_stream": _usage_in_stream,
    "per_chunk_usage": _per_chunk_usage, "max_tokens": _max_tokens, "stop": _stop, "n": _n, "logprobs": _logprobs,
    "tool_calls": _tool_calls, "structured_output": _structured_output, "reasoning": _reasoning, "seed": _seed,
    "models": _models, "error_bad_model": _error_bad_model, "error_bad_request": _error_bad_request,
}  # fmt: skip


async def run_checks(client: _Client) -> list[CheckResult]:
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


async def inspect(
    target: Target,
    *,
    limits: Limits = Limits(),
    metrics_url: str | None = None,
    checks: bool = True,
    unless_still: tuple[str, str | None] | None = None,
    timeout_s: float = INSPECTION_TIMEOUT_S,
) -> Inspection:
    """Detect the engine and run the checklist (`checks`; with `unless_still`, only when the
    engine and version detected differ from it); never raises for what the server does."""
    started = time.monotonic()
    refused = outbound_problem(target.url, limits) or (
        outbound_problem(metrics_url, limits) if metrics_url else None
    )
    if refused is not None:
        return Inspection("unknown", None, [], error=refused)
    async with make_session(4, Timeouts(connect=5.0), limits) as session:
        client = _Client(session, target)
        try:
            async with asyncio.timeout(timeout_s):
                engine, version, evidence, exposed, metrics_from = await detect(client, metrics_url)
                found = Inspection(
                    engine, version, evidence, metrics_exposed=exposed, metrics_url=metrics_from
                )
                if checks and (unless_still is None or (engine, version) != unless_still):
                    found.checks = await run_checks(client)
        except TimeoutError:
            return Inspection("unknown", None, [], error=f"the inspection passed its {timeout_s:g} s bound")
    found.duration_s = round(time.monotonic() - started, 2)
    return found
