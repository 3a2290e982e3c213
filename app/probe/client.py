"""One streaming request, timed per DESIGN, every failure classified.

Hot path: aiohttp's stream reader, a bytes-level SSE parse, orjson, and per read one
perf_counter_ns() and a list append. Deadlines (first token, idle gap, total) use a single
timer per request that re-arms itself only when it fires early, not one timer per read."""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import functools
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson
from aiohttp.client_proto import ResponseHandler

from app.probe.sse import LineTooLong, SSEParser
from app.probe.types import ErrorKind, Limits, Sample, Target, Timeouts
from app.security.redact import Redactor, excerpt
from app.security.resolver import PolicyResolver

perf_ns = time.perf_counter_ns


class _Deadline(Exception):
    def __init__(self, kind: str) -> None:
        self.kind = kind


WARM_TIMEOUT_S = 5.0  # each connection warm-up request, at most
SPIN_S = 0.0015  # sleep until this long before a moment, then yield until it comes


async def until(due: float, *, exact: bool = True) -> None:
    """Wait until `due` on the perf_counter clock (the one sends are stamped with; an event
    loop's own clock may be cached per iteration and in whole milliseconds, as uvloop's is).
    `exact`: asleep until just before (timers fire up to a millisecond late), then yielding to
    I/O until it comes; else asleep only (up to a millisecond late, no CPU spent)."""
    delay = due - time.perf_counter()
    if not exact:
        if delay > 0:
            await asyncio.sleep(delay)
        return
    if delay > SPIN_S:
        await asyncio.sleep(delay - SPIN_S)
    while time.perf_counter() < due:  # noqa: ASYNC110 - a yield, not a wait for an event
        await asyncio.sleep(0)


async def _stamp_sent(_session: object, ctx: Any, _params: object) -> None:
    """TTFT counts from the moment the request leaves: aiohttp calls this just before it writes
    the body (headers go out with it). Stamping earlier would charge the client's own queueing
    (coroutines of a burst waiting for their turn) to the server. A scheduled request (open
    loop, trace replay) is started a little ahead and held here until its time, so aiohttp's
    own set-up does not make it leave late."""
    sample = ctx.trace_request_ctx
    if sample is not None:
        due = sample.hold_until_ns
        if due is not None:
            sample.hold_until_ns = None
            await until(due / 1e9)
        sample.sent_ns = perf_ns()


def _tracing() -> aiohttp.TraceConfig:
    trace = aiohttp.TraceConfig()
    trace.on_request_chunk_sent.append(_stamp_sent)
    return trace


class _StampedHandler(ResponseHandler):
    """aiohttp's connection protocol, noting when bytes came off the socket. A burst of streams
    that become readable together is handed to their tasks one after another; the task-side
    clock would charge that queueing to the server, this one does not."""

    last_data_ns = 0

    def data_received(self, data: bytes) -> None:
        self.last_data_ns = perf_ns()
        super().data_received(data)


def outbound_problem(url: str, limits: Limits) -> str | None:
    """A literal address in the URL never reaches the resolver: judge it before connecting."""
    if limits.outbound is None:
        return None
    host = urlsplit(url).hostname or ""
    problem = limits.outbound.host_problem(host)
    return None if problem is None else f"outbound policy: {problem}"


def make_session(concurrency: int, timeouts: Timeouts, limits: Limits | None = None) -> aiohttp.ClientSession:
    """A client whose connection pool is sized to the load: no request waits for a socket."""
    policy = None if limits is None else limits.outbound
    connector = aiohttp.TCPConnector(
        limit=max(1, concurrency),
        limit_per_host=max(1, concurrency),
        ttl_dns_cache=300,  # what is cached passed the policy when it was resolved
        resolver=None if policy is None else PolicyResolver(policy),
        enable_cleanup_closed=True,
    )
    if isinstance(getattr(connector, "_factory", None), functools.partial):
        connector._factory = functools.partial(_StampedHandler, loop=asyncio.get_running_loop())  # type: ignore[assignment]
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=timeouts.connect),
        auto_decompress=False,
        skip_auto_headers=("User-Agent",),
        raise_for_status=False,
        trace_configs=[_tracing()],
    )


async def read_all(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """The whole body (a stream included, to its end), at most `limit` bytes."""
    parts: list[bytes] = []
    size = 0
    while size < limit and (chunk := await response.content.read(limit - size)):
        parts.append(chunk)
        size += len(chunk)
    return b"".join(parts)


async def warm(session: aiohttp.ClientSession, target: Target, headers: dict[str, str], count: int) -> None:
    """Open `count` connections before a schedule's clock starts (a GET of the model list on
    each, its answer read and dropped, a failure ignored): the first requests of a trace or an
    open loop then leave on time instead of waiting for their connections and aiohttp's first
    pass through its own code."""

    async def one() -> None:
        with contextlib.suppress(aiohttp.ClientError, TimeoutError, OSError):
            async with session.get(
                target.base_url.rstrip("/") + "/models",
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=WARM_TIMEOUT_S),
            ) as response:
                await read_all(response, 1 << 20)

    await asyncio.gather(*(one() for _ in range(max(0, count))))


def headers_for(target: Target) -> dict[str, str]:
    headers = {
        "Content-Type": "application/json",
        "Accept": "text/event-stream",
        "Accept-Encoding": "identity",
        "User-Agent": "smartbench-probe",
    }
    if target.api_key:
        headers["Authorization"] = f"Bearer {target.api_key}"
    return headers


def parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def error_message(body: bytes, secret: str | None = None) -> str:
    """What a target's error body says, as an excerpt (see app.security.redact), with the
    endpoint's key removed before anything is cut."""
    redactor = Redactor(secret)
    body = redactor.bytes(body)
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError:
        text = body[:200].decode("utf-8", "replace").strip()
        return excerpt(text) if text else "(empty body)"
    if isinstance(obj, dict):
        err = obj.get("error", obj)
        text = str(err.get("message") or err) if isinstance(err, dict) else str(err)
    else:
        text = str(obj)
    return excerpt(redactor.text(text)[:200])


def said(text: str, secret: str | None) -> str:
    """Other text from the target (a header, a malformed line, a parser's message)."""
    return excerpt(Redactor(secret).text(text)[:200])


async def stream_request(
    session: aiohttp.ClientSession,
    target: Target,
    body: bytes,
    sample: Sample,
    *,
    timeouts: Timeouts,
    limits: Limits = Limits(),
    headers: dict[str, str] | None = None,
    keep_text: bool = False,
    keep_answer: bool = False,
) -> Sample:
    """Send one request and fill `sample`. Never raises for a server's misbehaviour; re-raises
    only a real cancellation (after recording it as `cancelled`). `keep_answer`: keep the
    answer's text (a multi-turn session sends it back with the next turn)."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    fired: list[str] = []
    state = _Reading()
    handle: asyncio.TimerHandle | None = None

    sample.sent_ns = sent = perf_ns()
    ttft_limit = sent + int(min(timeouts.ttft, timeouts.total) * 1e9)
    total_limit = sent + int(timeouts.total * 1e9)
    idle_ns = int(timeouts.idle * 1e9)

    def check() -> None:
        nonlocal handle
        now = perf_ns()
        if not state.content:
            limit, kind = (
                ttft_limit,
                (ErrorKind.timeout_ttft if timeouts.ttft < timeouts.total else ErrorKind.timeout_total),
            )
        else:
            idle_limit = state.last_read + idle_ns
            limit, kind = (
                (idle_limit, ErrorKind.timeout_idle)
                if idle_limit < total_limit
                else (total_limit, ErrorKind.timeout_total)
            )
        if now >= limit:
            fired.append(kind.value)
            task.cancel()
        else:
            handle = loop.call_later((limit - now) / 1e9, check)

    handle = loop.call_later(min(timeouts.ttft, timeouts.total), check)
    response_started = False
    try:
        async with session.post(
            target.url,
            data=body,
            headers=headers or headers_for(target),
            allow_redirects=False,
            trace_request_ctx=sample,
        ) as resp:
            response_started = True
            sample.http_status = resp.status
            if resp.status != 200:
                await _record_http_error(resp, sample, limits, target.api_key)
                return sample
            ctype = resp.headers.get("Content-Type", "")
            if not ctype.startswith("text/event-stream"):
                raw = await resp.content.read(limits.max_error_body_bytes)
                kind = "JSON" if "json" in ctype else (ctype.split(";")[0] or "a body without a content type")
                kind = said(kind, target.api_key) if kind != "JSON" else kind
                sample.error_kind = ErrorKind.protocol_error
                sample.error_detail = (
                    f"{kind} where a stream was asked for: {error_message(raw, target.api_key)}"[:500]
                )
                return sample
            await _read_stream(resp, sample, state, limits, keep_text, target.api_key, keep_answer)
    except asyncio.CancelledError:
        if fired and task.uncancel() == 0:
            _fail(sample, fired[0], "deadline reached")
        else:
            _fail(sample, ErrorKind.cancelled, "the probe was cancelled")
            raise
    except _Deadline as exc:
        _fail(sample, exc.kind, f"the body exceeded {limits.max_body_bytes} bytes")
    except _ProtocolError:
        _fail(sample, ErrorKind.protocol_error, "protocol error")
    except _Truncated:
        _fail(sample, ErrorKind.truncated, "the stream ended before a finish_reason or [DONE]")
    except LineTooLong as exc:
        _fail(sample, ErrorKind.too_large, str(exc))
    except aiohttp.ConnectionTimeoutError:
        _fail(sample, ErrorKind.timeout_connect, f"no connection within {timeouts.connect:g} s")
    except aiohttp.ClientConnectorError as exc:
        _fail(sample, ErrorKind.connect_error, f"cannot connect: {exc.os_error.strerror or exc.os_error}")
    except (
        aiohttp.ClientPayloadError,
        aiohttp.ServerDisconnectedError,
        aiohttp.ClientOSError,
        ConnectionError,
    ) as exc:
        if response_started or sample.chunk_ns:
            _fail(sample, ErrorKind.truncated, f"the stream broke: {type(exc).__name__}")
        else:
            _fail(sample, ErrorKind.connect_error, f"the connection failed: {type(exc).__name__}")
    except aiohttp.ClientResponseError as exc:
        _fail(
            sample, ErrorKind.protocol_error, f"malformed HTTP response: {said(exc.message, target.api_key)}"
        )
    except aiohttp.ClientError as exc:
        _fail(sample, ErrorKind.protocol_error, f"{type(exc).__name__}: {said(str(exc), target.api_key)}")
    finally:
        if handle is not None:
            handle.cancel()
        sample.end_ns = perf_ns()
    return sample


def _fail(sample: Sample, kind: str, detail: str) -> None:
    if sample.error_kind is None:
        sample.error_kind = kind
        sample.error_detail = detail[:500]


async def _record_http_error(
    resp: aiohttp.ClientResponse, sample: Sample, limits: Limits, secret: str | None
) -> None:
    status = resp.status
    try:
        raw = await resp.content.read(limits.max_error_body_bytes)
    except aiohttp.ClientError:
        raw = b""
    if status in (401, 403):
        sample.error_kind = ErrorKind.auth_error
    else:
        sample.error_kind = f"http_{status}"
    if status == 429:
        sample.retry_after_s = parse_retry_after(resp.headers.get("Retry-After"))
    detail = error_message(raw, secret)
    if 300 <= status < 400:
        detail = f"redirect to {said(resp.headers.get('Location', '?'), secret)} (not followed)"
    sample.error_detail = f"HTTP {status}: {detail}"[:500]


@dataclass(slots=True)
class _Reading:
    """What the timeout watchdog reads of a stream being read: when data last came, and
    whether content has started (before it, the TTFT limit applies; after it, the idle one)."""

    last_read: int = 0  # perf_ns
    content: bool = False


async def _read_stream(
    resp: aiohttp.ClientResponse,
    sample: Sample,
    state: _Reading,
    limits: Limits,
    keep_text: bool,
    secret: str | None,
    keep_answer: bool = False,
) -> None:
    parser = SSEParser(limits.max_line_bytes)
    feed = parser.feed
    readany = resp.content.readany
    loads = orjson.loads
    chunk_ns = sample.chunk_ns
    chunk_events: list[int] = []
    chunk_usage: list[int] = []
    texts: list[str] = []  # this read's content, when a tokenizer will count it afterwards
    chunk_texts: list[str] = []
    answers: list[str] | None = [] if keep_answer else None
    received = 0
    max_body = limits.max_body_bytes
    done = False
    usage_seen: int | None = None  # completion_tokens of the latest usage
    prev_usage = 0
    finish: str | None = None
    connection = resp.connection
    protocol = connection.protocol if connection is not None else None
    stamped = isinstance(protocol, _StampedHandler)
    while True:
        data = await readany()
        now = protocol.last_data_ns if stamped else perf_ns()  # type: ignore[union-attr]
        if not data:
            events = parser.close()
            if not events:
                break
        else:
            state.last_read = now
            received += len(data)
            if received > max_body:
                # Decide the kind now: closing the flooded connection may raise something else.
                _fail(sample, ErrorKind.too_large, f"the body exceeded {max_body} bytes")
                raise _Deadline(ErrorKind.too_large)
            try:
                events = feed(data)
            except LineTooLong as exc:
                _fail(sample, ErrorKind.too_large, str(exc))
                raise
        n_content = 0
        usage_tokens = 0
        for payload in events:
            if payload == b"[DONE]":
                done = True
                continue
            try:
                obj = loads(payload)
            except orjson.JSONDecodeError:
                _fail(
                    sample,
                    ErrorKind.protocol_error,
                    "invalid JSON in a data line: " + said(payload.decode("utf-8", "replace")[:400], secret),
                )
                raise _ProtocolError() from None
            if not isinstance(obj, dict):
                _fail(sample, ErrorKind.protocol_error, "a data line is not a JSON object")
                raise _ProtocolError()
            if "error" in obj:
                _fail(
                    sample,
                    ErrorKind.protocol_error,
                    "error inside a 200 stream: " + error_message(payload, secret),
                )
                raise _ProtocolError()
            usage = obj.get("usage")
            if usage:
                ct = usage.get("completion_tokens")
                if isinstance(ct, int):
                    usage_seen = ct
                pt = usage.get("prompt_tokens")
                if isinstance(pt, int):
                    sample.input_tokens = pt
                details = usage.get("completion_tokens_details")
                if isinstance(details, dict) and isinstance(details.get("reasoning_tokens"), int):
                    sample.reasoning_tokens = details["reasoning_tokens"]
                prompt_details = usage.get("prompt_tokens_details")
                if isinstance(prompt_details, dict) and isinstance(prompt_details.get("cached_tokens"), int):
                    sample.cached_tokens = prompt_details["cached_tokens"]
            choices = obj.get("choices")
            if not choices:
                continue
            choice = choices[0]
            delta = choice.get("delta")
            if delta is not None:
                answer = delta.get("content")
                reasoning = delta.get("reasoning_content") or delta.get("reasoning")
                tools = delta.get("tool_calls")
            else:
                answer = choice.get("text")
                reasoning = tools = None
            if answer or reasoning or tools:
                n_content += 1
                if sample.first_content_ns is None:
                    sample.first_content_ns = now
                    state.content = True
                if answer and sample.first_answer_ns is None:
                    sample.first_answer_ns = now
                if answer and answers is not None:
                    answers.append(answer)
                if keep_text:
                    texts.append((reasoning or "") + (answer or ""))
                if usage_seen is not None and usage:
                    usage_tokens += usage_seen - prev_usage
                    prev_usage = usage_seen
            reason = choice.get("finish_reason")
            if reason:
                finish = reason
        if n_content:
            if keep_text:
                chunk_texts.append("".join(texts))
                texts.clear()
            chunk_ns.append(now)
            chunk_events.append(n_content)
            chunk_usage.append(usage_tokens)
            sample.last_content_ns = now
        if not data:
            break
    sample.finish_reason = finish
    if keep_text:
        sample.chunk_texts = chunk_texts
    if answers is not None:
        sample.answer_text = "".join(answers)
    _resolve_tokens(sample, chunk_events, chunk_usage, usage_seen)
    if not done and finish is None:
        raise _Truncated()


class _ProtocolError(Exception):
    pass


class _Truncated(Exception):
    pass


def _resolve_tokens(
    sample: Sample, events: list[int], usage_per_chunk: list[int], usage_total: int | None
) -> None:
    """Output tokens and tokens per chunk, from the best source available."""
    total_events = sum(events)
    if usage_total is not None:
        sample.output_tokens = usage_total
        sample.token_source = "usage"
        if sum(usage_per_chunk) == usage_total and usage_total > 0 and all(u > 0 for u in usage_per_chunk):
            sample.chunk_tokens = usage_per_chunk  # continuous usage: exact tokens per chunk
        elif usage_total == total_events:
            sample.chunk_tokens = events  # one token per SSE event
    else:
        # No usage: assume one token per SSE event until a tokenizer says otherwise.
        sample.output_tokens = total_events
        sample.token_source = "estimated"
