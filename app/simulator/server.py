"""An OpenAI-compatible simulated inference server on a plain asyncio protocol.

A framework's request stack costs tens of microseconds per request and per write; this server
writes preformatted SSE chunks straight to the transport so that it is never the bottleneck of a
measurement (see bench/loadgen.py for its figures).

Endpoints: GET /v1/models, POST /v1/chat/completions, POST /v1/completions, GET /version,
GET /health, GET /metrics (Prometheus text in vLLM's metric names, plus a DCGM-style power gauge).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import orjson

from app.simulator import features
from app.simulator.engine import BatchEngine, Generation
from app.simulator.openai import parse_request, refusal, render_metrics
from app.simulator.presets import SimConfig
from app.simulator.state import SimulatorState
from app.vocab import WORDS

MAX_HEADER = 64 * 1024
MAX_BODY = 16 * 1024 * 1024

VOCAB = WORDS
VOCAB_BYTES = [(" " + w).encode() for w in VOCAB]
VOCAB_SIZE = len(VOCAB_BYTES)


def account_latency(state: SimulatorState, gen: Generation, first_ns: int) -> None:
    """The server-side TTFT (arrival to first token) and time per output token after it."""
    if not first_ns:
        return
    m = state.metrics
    m.ttft_sum_s += (first_ns - gen.arrived_ns) / 1e9
    m.ttft_count += 1
    if gen.output_tokens > 1:
        m.itl_sum_s += (time.perf_counter_ns() - first_ns) / 1e9
        m.itl_count += gen.output_tokens - 1


class StreamSink:
    """Formats tokens as SSE chunks on one HTTP response (chunked transfer encoding)."""

    __slots__ = (
        "chat",
        "closed",
        "conn",
        "continuous",
        "first_ns",
        "gen",
        "include_usage",
        "prefix",
        "reasoning",
        "state",
    )

    def __init__(
        self,
        conn: HTTPConnection,
        state: SimulatorState,
        chat: bool,
        include_usage: bool,
        continuous: bool,
        reasoning: int,
    ) -> None:
        self.conn = conn
        self.state = state
        self.chat = chat
        self.include_usage = include_usage
        self.continuous = continuous
        self.reasoning = reasoning
        self.first_ns = 0
        self.closed = False
        self.gen: Generation | None = None
        obj = "chat.completion.chunk" if chat else "text_completion"
        self.prefix = (
            b'data: {"id":"' + state.next_id().encode() + b'","object":"' + obj.encode() + b'","created":'
            + str(state.created).encode() + b',"model":' + orjson.dumps(state.config.model) + b',"choices":[{"index":0,'
        )  # fmt: skip

    def start(self) -> None:
        role = b""
        if self.chat:  # OpenAI sends the role first, with no content
            event = self.prefix + b'"delta":{"role":"assistant","content":""},"finish_reason":null}]}\n\n'
            role = b"%x\r\n%s\r\n" % (len(event), event)
        self.conn.write_head(200, b"text/event-stream", chunked=True, tail=role)

    def _usage(self, produced: int) -> bytes:
        assert self.gen is not None
        p = self.gen.input_tokens
        details = b',"completion_tokens_details":{"reasoning_tokens":%d}' % min(produced, self.reasoning)
        if self.state.cache.enabled:  # as vLLM with --enable-prompt-tokens-details
            details += b',"prompt_tokens_details":{"cached_tokens":%d}' % self.gen.cached_tokens
        return b'"usage":{"prompt_tokens":%d,"completion_tokens":%d,"total_tokens":%d%s}' % (
            p,
            produced,
            p + produced,
            details,
        )

    def event_bytes(self, start: int, count: int) -> bytes:
        """One chunk carrying tokens [start, start + count)."""
        parts: list[bytes] = []
        r = self.reasoning
        if start < r:  # reasoning part of this chunk
            n = min(count, r - start)
            parts.append(self._delta(start, n, reasoning=True))
            start, count = start + n, count - n
        if count:
            parts.append(self._delta(start, count, reasoning=False))
        return b"".join(parts)

    def _delta(self, start: int, count: int, reasoning: bool) -> bytes:
        text = b"".join(VOCAB_BYTES[i % VOCAB_SIZE] for i in range(start, start + count))
        if self.chat:
            body = (
                (b'"delta":{"reasoning_content":"' if reasoning else b'"delta":{"content":"') + text + b'"}'
            )
        else:
            body = b'"text":"' + text + b'"'
        usage = (b"," + self._usage(start + count)) if self.continuous else b""
        return self.prefix + body + b',"finish_reason":null}]' + usage + b"}\n\n"

    def on_tokens(self, start: int, count: int) -> None:
        if not self.first_ns:
            self.first_ns = time.perf_counter_ns()
        if not self.closed:
            self.conn.write_chunk(self.event_bytes(start, count))

    def finish_bytes(self, reason: str) -> bytes:
        assert self.gen is not None
        delta = b'"delta":{},' if self.chat else b'"text":"",'
        out = self.prefix + delta + b'"finish_reason":"' + reason.encode() + b'"}]}\n\n'
        if self.include_usage:
            usage = self._usage(self.gen.output_tokens)
            out += self.prefix[: self.prefix.index(b'"choices"')] + b'"choices":[],' + usage + b"}\n\n"
        return out + b"data: [DONE]\n\n"

    def on_finish(self, reason: str) -> None:
        if self.closed:
            return
        data = self.finish_bytes(reason)
        self.conn.end_chunked(b"%x\r\n%s\r\n" % (len(data), data))  # last event and terminator: one write
        self._account()
        self.state.power_tick()

    def _account(self) -> None:
        assert self.gen is not None
        m = self.state.metrics
        m.success_total += 1
        m.prompt_tokens_total += self.gen.input_tokens
        m.generation_tokens_total += self.gen.output_tokens
        account_latency(self.state, self.gen, self.first_ns)


class JsonSink:
    """Collects a non-streaming completion and answers once it is done."""

    def __init__(self, conn: HTTPConnection, state: SimulatorState, chat: bool, reasoning: int) -> None:
        self.conn = conn
        self.state = state
        self.chat = chat
        self.reasoning = reasoning
        self.closed = False
        self.gen: Generation | None = None
        self.first_ns = 0

    def on_tokens(self, start: int, count: int) -> None:
        if not self.first_ns:
            self.first_ns = time.perf_counter_ns()

    def on_finish(self, reason: str) -> None:
        if self.closed:
            return
        assert self.gen is not None
        n, r = self.gen.output_tokens, min(self.reasoning, self.gen.output_tokens)
        answer = "".join(" " + VOCAB[i % VOCAB_SIZE] for i in range(r, n))
        usage = {
            "prompt_tokens": self.gen.input_tokens,
            "completion_tokens": n,
            "total_tokens": self.gen.input_tokens + n,
            "completion_tokens_details": {"reasoning_tokens": r},
        }
        if self.state.cache.enabled:
            usage["prompt_tokens_details"] = {"cached_tokens": self.gen.cached_tokens}
        choice: dict[str, object]
        if self.chat:
            message: dict[str, object] = {"role": "assistant", "content": answer}
            if r:
                message["reasoning_content"] = "".join(" " + VOCAB[i % VOCAB_SIZE] for i in range(r))
            choice = {"index": 0, "message": message, "finish_reason": reason}
        else:
            choice = {"index": 0, "text": answer, "finish_reason": reason}
        body = {
            "id": self.state.next_id(),
            "object": "chat.completion" if self.chat else "text_completion",
            "created": self.state.created,
            "model": self.state.config.model,
            "choices": [choice],
            "usage": usage,
        }
        self.conn.respond_json(200, body)
        m = self.state.metrics
        m.success_total += 1
        m.prompt_tokens_total += self.gen.input_tokens
        m.generation_tokens_total += n
        account_latency(self.state, self.gen, self.first_ns)
        self.state.power_tick()


class HTTPConnection(asyncio.Protocol):
    """HTTP/1.1 with keep-alive; one request at a time per connection."""

    def __init__(self, state: SimulatorState) -> None:
        self.state = state
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.busy = False
        self.keep_alive = True
        self.sink: StreamSink | JsonSink | None = None
        self.received_ns = 0
        self.batch: list[bytes] | None = None

    # -- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # asyncio's or uvloop's TCP transport
        self.state.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.sink is not None:
            self.sink.closed = True
        self.transport = None
        self.state.connections.discard(self)

    def data_received(self, data: bytes) -> None:
        if not self.buffer:
            self.received_ns = time.perf_counter_ns()  # a request's clock starts at its first byte
        self.buffer += data
        if len(self.buffer) > MAX_HEADER + MAX_BODY:
            self.respond_error(413, "request too large", "invalid_request_error", close=True)
            return
        self._process()

    # -- parsing --------------------------------------------------------------------------------

    def _process(self) -> None:
        while not self.busy and self.transport is not None:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buffer) > MAX_HEADER:
                    self.respond_error(431, "headers too large", "invalid_request_error", close=True)
                return
            head = bytes(self.buffer[:end]).decode("latin-1")
            lines = head.split("\r\n")
            try:
                method, target, version = lines[0].split(" ", 2)
            except ValueError:
                self.respond_error(400, "malformed request line", "invalid_request_error", close=True)
                return
            headers: dict[str, str] = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            if "chunked" in headers.get("transfer-encoding", "").lower():
                self.respond_error(411, "send a Content-Length", "invalid_request_error", close=True)
                return
            try:
                length = int(headers.get("content-length", "0"))
            except ValueError:
                self.respond_error(400, "bad Content-Length", "invalid_request_error", close=True)
                return
            if length > MAX_BODY:
                self.respond_error(413, "request body too large", "invalid_request_error", close=True)
                return
            if len(self.buffer) < end + 4 + length:
                return
            body = bytes(self.buffer[end + 4 : end + 4 + length])
            del self.buffer[: end + 4 + length]
            conn_header = headers.get("connection", "").lower()
            self.keep_alive = conn_header != "close" and (
                version == "HTTP/1.1" or conn_header == "keep-alive"
            )
            self.busy = True
            self._dispatch(method, target.split("?", 1)[0], headers, body)

    # -- writing --------------------------------------------------------------------------------

    def write_head(
        self, status: int, content_type: bytes, *, chunked: bool = False, length: int = 0, tail: bytes = b""
    ) -> None:
        if self.transport is None:
            return
        reason = _REASONS.get(status, b"Unknown")
        framing = b"Transfer-Encoding: chunked\r\n" if chunked else b"Content-Length: %d\r\n" % length
        conn = b"keep-alive" if self.keep_alive else b"close"
        self.transport.write(
            b"HTTP/1.1 %d %s\r\n%sContent-Type: %s\r\n%sConnection: %s\r\nCache-Control: no-cache\r\n\r\n%s"
            % (status, reason, self.state.head, content_type, framing, conn, tail)
        )

    def write_chunk(self, data: bytes) -> None:
        if self.transport is not None and data:
            framed = b"%x\r\n%s\r\n" % (len(data), data)
            if self.batch is not None:
                self.batch.append(framed)
            else:
                self.transport.write(framed)

    def end_chunked(self, framed_tail: bytes = b"") -> None:
        if self.transport is not None:
            if self.batch is not None:
                self.batch.append(framed_tail)
                framed_tail = b"".join(self.batch)
                self.batch = None
            self.transport.write(framed_tail + b"0\r\n\r\n")
        self._done()

    def respond(self, status: int, content_type: bytes, body: bytes, extra_headers: bytes = b"") -> None:
        if self.transport is None:
            return
        reason = _REASONS.get(status, b"Unknown")
        conn = b"keep-alive" if self.keep_alive else b"close"
        self.transport.write(
            b"HTTP/1.1 %d %s\r\n%sContent-Type: %s\r\nContent-Length: %d\r\nConnection: %s\r\n%s\r\n%s"
            % (status, reason, self.state.head, content_type, len(body), conn, extra_headers, body)
        )
        self._done()

    def respond_json(self, status: int, obj: object, extra_headers: bytes = b"") -> None:
        self.respond(status, b"application/json", orjson.dumps(obj), extra_headers)

    def respond_error(
        self,
        status: int,
        message: str,
        kind: str,
        *,
        param: str | None = None,
        close: bool = False,
        extra: bytes = b"",
    ) -> None:
        self.state.metrics.errors_total += 1
        if close:
            self.keep_alive = False
        style = self.state.persona.error_style
        body: object
        if style == "tgi":  # text-generation-inference's own shape
            body = {"error": message, "error_type": "validation" if status < 500 else "generation"}
        elif style == "fastapi" and status in (400, 404, 422):  # FastAPI's HTTPException
            body = {"detail": message}
        else:
            body = {"error": {"message": message, "type": kind, "param": param, "code": status}}
        self.respond_json(status, body, extra)

    def _done(self) -> None:
        self.busy = False
        self.sink = None
        if not self.keep_alive:
            if self.transport is not None:
                self.transport.close()
            return
        if self.buffer:
            self._process()

    # -- routing --------------------------------------------------------------------------------

    def _dispatch(self, method: str, path: str, headers: dict[str, str], body: bytes) -> None:
        who = self.state.persona
        fixed = who.routes.get((method, path))
        if fixed is not None:
            status, ctype, text = fixed
            text = text.replace("{version}", self.state.config.engine_version).replace(
                "{model}", self.state.config.model
            )
            self.respond(status, ctype.encode(), text.encode())
            return
        if method == "GET" and who.metrics_path is not None and path == who.metrics_path:
            self.metrics(headers, body)
            return
        route = _ROUTES.get((method, path))
        if route is None:
            if any(p == path for _, p in _ROUTES):
                self.respond_error(405, f"{method} is not allowed on {path}", "invalid_request_error")
            else:
                self.respond_error(404, f"no route {path}", "invalid_request_error")
            return
        if path.startswith("/v1/") and self.state.config.api_key is not None:
            auth = headers.get("authorization", "")
            if auth != f"Bearer {self.state.config.api_key}":
                self.respond_error(401, "Incorrect API key provided.", "authentication_error")
                return
        route(self, headers, body)

    def models(self, headers: dict[str, str], body: bytes) -> None:
        config, who = self.state.config, self.state.persona
        name = "other-model" if "models" in config.broken else config.model
        model: dict[str, object] = {
            "id": name,
            "object": "model",
            "created": self.state.created,
            "owned_by": who.owned_by.replace("{model}", name),
        }
        for key, value in who.model_card_extra.items():
            model[key] = value.replace("{model}", name) if isinstance(value, str) else value
        self.respond_json(200, {"object": "list", "data": [model]})

    def metrics(self, headers: dict[str, str], body: bytes) -> None:
        self.respond(200, b"text/plain; version=0.0.4", render_metrics(self.state).encode())

    def chat(self, headers: dict[str, str], body: bytes) -> None:
        self._complete(body, chat=True)

    def completions(self, headers: dict[str, str], body: bytes) -> None:
        self._complete(body, chat=False)

    def _complete(self, raw: bytes, *, chat: bool) -> None:
        state = self.state
        config = state.config
        state.metrics.requests_total += 1
        try:
            req = orjson.loads(raw)
        except orjson.JSONDecodeError:
            self.respond_error(400, "the body is not valid JSON", "invalid_request_error")
            return
        if not isinstance(req, dict):
            self.respond_error(400, "the body must be a JSON object", "invalid_request_error")
            return
        if req.get("model") != config.model:
            if "error_bad_model" in config.broken:
                self.respond(404, b"text/html", b"<html><body>Not Found</body></html>")
                return
            self.respond_error(
                404, f"The model `{req.get('model')}` does not exist.", "invalid_request_error", param="model"
            )
            return
        state.completions_seen += 1
        if config.limit_every and state.completions_seen % config.limit_every == 0:
            retry = b"" if "rate_limit" in config.broken else b"Retry-After: 1\r\n"
            self.respond_error(429, "rate limit reached, slow down", "rate_limit_error", extra=retry)
            return
        if config.strict is not None and (refused := refusal(req, config.strict)) is not None:
            self.respond_json(*refused)
            return
        parsed = parse_request(req, chat=chat)
        if isinstance(parsed, str):
            if "error_bad_request" in config.broken:
                self.respond(400, b"text/plain", parsed.encode())
                return
            self.respond_error(400, parsed, "invalid_request_error")
            return
        prompt_tokens, max_tokens, min_tokens = parsed.prompt_tokens, parsed.max_tokens, parsed.min_tokens
        stream, include_usage, stops = parsed.stream, parsed.include_usage, parsed.stops
        continuous = parsed.continuous
        if features.wants_feature_path(req, config.broken):
            said = features.answer(
                req, chat=chat, model=config.model, broken=config.broken, reasoning=config.reasoning_tokens,
                counter=state.completions_seen, prompt_tokens=prompt_tokens, max_tokens=max_tokens, stops=stops,
                stream=stream, include_usage=include_usage,
                continuous=continuous and config.chunk_usage and state.persona.chunk_usage,
                created=state.created, request_id=state.next_id(),
            )  # fmt: skip
            state.metrics.success_total += 1
            self.respond(said.status, said.content_type, said.body, said.extra)
            return
        if config.error_rate and state.rng.random() < config.error_rate:
            self.respond_error(500, "simulated internal error", "server_error")
            return
        engine = state.engine
        if isinstance(engine, BatchEngine) and engine.queue_full:
            self.respond_error(
                429, "the server is over its queue limit", "rate_limit_error", extra=b"Retry-After: 1\r\n"
            )
            return

        n = max_tokens
        reason = "length"
        ignore_eos = parsed.ignore_eos
        if not ignore_eos and config.natural_output_tokens is not None and config.natural_output_tokens < n:
            n = max(config.natural_output_tokens, min_tokens)
            reason = "stop" if n < max_tokens else "length"
        if stops:
            for i in range(min_tokens, n):
                if VOCAB[i % VOCAB_SIZE] in stops:
                    n, reason = i, "stop"
                    break
        reasoning = min(config.reasoning_tokens, n) if chat else 0

        state.remember(parsed.messages)
        cached = state.cache.admit(parsed.tokens)
        sink: StreamSink | JsonSink
        if stream:
            sink = StreamSink(
                self,
                state,
                chat,
                include_usage,
                continuous and config.chunk_usage and state.persona.chunk_usage,
                reasoning,
            )
        else:
            sink = JsonSink(self, state, chat, reasoning)
        gen = Generation(
            input_tokens=prompt_tokens,
            output_tokens=n,
            finish_reason=reason,
            sink=sink,
            arrived_ns=self.received_ns,
            cached_tokens=cached,
        )
        sink.gen = gen
        self.sink = sink

        if engine is None:  # zero-delay mode: every chunk at once
            if isinstance(sink, StreamSink):
                sink.start()
                k = max(1, config.tokens_per_chunk)
                self.batch = []  # each event keeps its own HTTP chunk; the socket gets one write
                if n:
                    sink.on_tokens(0, 1)
                for i in range(1, n, k):
                    sink.on_tokens(i, min(k, n - i))
                sink.on_finish(reason)
            else:
                sink.on_finish(reason)
            return
        if isinstance(sink, StreamSink):
            sink.start()
        engine.submit(gen)
        state.power_tick()


_ROUTES: dict[tuple[str, str], Callable[[HTTPConnection, dict[str, str], bytes], None]] = {
    ("GET", "/v1/models"): HTTPConnection.models,
    ("POST", "/v1/chat/completions"): HTTPConnection.chat,
    ("POST", "/v1/completions"): HTTPConnection.completions,
}

_REASONS = {
    200: b"OK",
    400: b"Bad Request",
    401: b"Unauthorized",
    404: b"Not Found",
    405: b"Method Not Allowed",
    411: b"Length Required",
    413: b"Payload Too Large",
    422: b"Unprocessable Entity",
    429: b"Too Many Requests",
    431: b"Request Header Fields Too Large",
    500: b"Internal Server Error",
}


class Simulator:
    """A running simulator: `async with Simulator(config) as sim: sim.base_url`."""

    def __init__(self, config: SimConfig, host: str = "127.0.0.1", port: int = 0) -> None:
        self.config = config
        self.host = host
        self.port = port
        self.state = SimulatorState(config)
        self.server: asyncio.Server | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    async def start(self) -> Simulator:
        loop = asyncio.get_running_loop()
        self.state.timeline.start()
        self.server = await loop.create_server(
            lambda: HTTPConnection(self.state), self.host, self.port, backlog=4096, reuse_address=True
        )
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            for conn in list(self.state.connections):
                if conn.transport is not None:
                    conn.transport.close()
            await self.server.wait_closed()
        await self.state.timeline.stop()

    async def __aenter__(self) -> Simulator:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


async def serve_forever(
    config: SimConfig, host: str, port: int, ready: Callable[[Simulator], None] | None = None
) -> None:
    sim = await Simulator(config, host, port).start()
    if ready is not None:
        ready(sim)
    try:
        await asyncio.Event().wait()
    finally:
        await sim.stop()
