"""Misbehaving servers over real sockets: every failure becomes a classified sample within its
deadline (+1 s), never a crash or a hang."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest

from app.probe.client import headers_for, make_session, stream_request, warm
from app.probe.prompts import BodyOptions, request_body
from app.probe.types import Limits, Sample, Target, Timeouts

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
TIMEOUTS = Timeouts(connect=1.0, ttft=1.0, idle=0.6, total=2.0)
OK_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"
TOKEN = b'data: {"choices":[{"index":0,"delta":{"content":" hi"},"finish_reason":null}]}\n\n'


async def _read_request(reader: asyncio.StreamReader) -> None:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        (
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length")
        ),
        0,
    )
    await reader.readexactly(length)


async def run_against(
    handler: Handler, *, timeouts: Timeouts = TIMEOUTS, limits: Limits = Limits()
) -> tuple[Sample, float]:
    async def wrapped(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await _read_request(reader)
            await handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(wrapped, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        return await probe_once(f"http://127.0.0.1:{port}/v1", timeouts=timeouts, limits=limits)
    finally:
        server.close()


async def probe_once(
    base_url: str, *, timeouts: Timeouts = TIMEOUTS, limits: Limits = Limits()
) -> tuple[Sample, float]:
    target = Target(base_url, "sim")
    body = request_body("chat", "sim", "hello", 8, BodyOptions())
    started = time.monotonic()
    async with make_session(1, timeouts) as session:
        sample = await stream_request(session, target, body, Sample(seq=0), timeouts=timeouts, limits=limits)
    return sample, time.monotonic() - started


def answer(raw: bytes) -> Handler:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(raw)
        await writer.drain()

    return handler


def http(status: str, body: bytes, ctype: bytes = b"application/json", extra: bytes = b"") -> bytes:
    return (
        b"HTTP/1.1 " + status.encode() + b"\r\nContent-Type: " + ctype + b"\r\nContent-Length: %d\r\n" % len(body)
        + extra + b"Connection: close\r\n\r\n" + body
    )  # fmt: skip


@pytest.mark.parametrize(
    ("raw", "kind"),
    [
        (http("401 Unauthorized", b'{"error":{"message":"bad key"}}'), "auth_error"),
        (http("500 Internal Server Error", b'{"error":{"message":"boom"}}'), "http_500"),
        (http("302 Found", b"", extra=b"Location: http://127.0.0.1:1/\r\n"), "http_302"),
        (http("200 OK", b"<html>login</html>", b"text/html"), "protocol_error"),
        (http("200 OK", b'{"error":{"message":"nope"}}'), "protocol_error"),
        (OK_HEAD + b"data: {not json\n\n", "protocol_error"),
        (OK_HEAD + TOKEN + b'data: {"error":{"message":"overloaded"}}\n\n', "protocol_error"),
        (OK_HEAD + TOKEN + TOKEN, "truncated"),
    ],
)
async def test_bad_answers_are_classified(raw: bytes, kind: str) -> None:
    sample, _ = await run_against(answer(raw))
    assert sample.error_kind == kind, sample.error_detail


async def test_429_records_retry_after() -> None:
    sample, _ = await run_against(answer(http("429 Too Many Requests", b"{}", extra=b"Retry-After: 7\r\n")))
    assert sample.error_kind == "http_429" and sample.retry_after_s == 7.0


async def test_connection_refused() -> None:
    from tests.browser import free_port

    sample, _ = await probe_once(f"http://127.0.0.1:{free_port()}/v1")
    assert sample.error_kind == "connect_error"


async def test_hang_before_first_token_is_cut_at_ttft() -> None:
    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(OK_HEAD)
        await asyncio.sleep(10)

    sample, took = await run_against(hang)
    assert sample.error_kind == "timeout_ttft" and took < TIMEOUTS.ttft + 1


async def test_stall_after_first_token_is_cut_at_idle() -> None:
    async def stall(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(OK_HEAD + TOKEN)
        await asyncio.sleep(10)

    sample, took = await run_against(stall)
    assert sample.error_kind == "timeout_idle" and took < TIMEOUTS.ttft + TIMEOUTS.idle + 1
    assert sample.first_content_ns is not None


async def test_drip_is_cut_at_the_total_deadline() -> None:
    async def drip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(OK_HEAD + TOKEN)
        for _ in range(100):
            await asyncio.sleep(0.3)
            writer.write(b": keep-alive\n")
            await writer.drain()

    sample, took = await run_against(drip)
    assert sample.error_kind == "timeout_total" and took < TIMEOUTS.total + 1


async def test_reset_mid_stream_is_truncated() -> None:
    async def reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        writer.write(b"%x\r\n%s\r\n" % (len(TOKEN), TOKEN))
        await writer.drain()
        writer.transport.abort()

    sample, _ = await run_against(reset)
    assert sample.error_kind == "truncated"


async def test_huge_body_is_cut_and_memory_stays_bounded() -> None:
    async def flood(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(OK_HEAD + TOKEN)
        block = TOKEN * 4096  # ~330 KB of valid events per write, up to 1 GiB
        for _ in range((1 << 30) // len(block)):
            writer.write(block)
            await writer.drain()

    limits = Limits(max_body_bytes=8 * 1024 * 1024)
    sample, took = await run_against(
        flood, timeouts=Timeouts(connect=1, ttft=2, idle=2, total=20), limits=limits
    )
    assert sample.error_kind == "too_large" and took < 21


async def test_endless_line_is_cut() -> None:
    async def long_line(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(OK_HEAD + b"data: " + b"x" * (2 * 1024 * 1024))
        await writer.drain()
        await asyncio.sleep(5)

    sample, _ = await run_against(long_line, limits=Limits(max_line_bytes=1024 * 1024))
    assert sample.error_kind == "too_large"


async def test_every_step_failing_still_yields_a_summary() -> None:
    from app.probe.stats import summarize_step

    samples = [Sample(seq=i, error_kind="connect_error", sent_ns=i, end_ns=i + 10) for i in range(5)]
    summary = summarize_step(samples, concurrency=4).model_dump(mode="json")
    assert summary["requests"] == {"sent": 5, "completed": 0, "failed": 5, "errors": {"connect_error": 5}}
    assert summary["ttft_ms"]["p50"] is None and summary["quality"]["error_rate"] == 1.0


async def test_connect_that_never_completes_is_timeout_connect() -> None:
    import socket

    # A listener that never accepts, its backlog already full: new SYNs go unanswered.
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    filler = socket.create_connection(("127.0.0.1", port), timeout=1)
    try:
        sample, took = await probe_once(
            f"http://127.0.0.1:{port}/v1", timeouts=Timeouts(connect=0.5, ttft=5, idle=5, total=10)
        )
    finally:
        filler.close()
        server.close()
    assert sample.error_kind == "timeout_connect", sample.error_detail
    assert took < 0.5 + 1


async def test_memory_stays_bounded_against_a_flood() -> None:
    import tracemalloc

    async def flood(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(OK_HEAD + TOKEN)
        block = TOKEN * 4096
        for _ in range((1 << 30) // len(block)):
            writer.write(block)
            await writer.drain()

    tracemalloc.start()
    try:
        # The flood is cut by size, whatever the machine's speed: the total deadline is far away
        # (parsing 16 MiB of events under tracemalloc takes seconds on a busy core).
        limits = Limits(max_body_bytes=16 << 20)
        sample, _ = await run_against(
            flood, timeouts=Timeouts(connect=1, ttft=5, idle=5, total=300), limits=limits
        )
        grown_mib = tracemalloc.get_traced_memory()[1] / (1 << 20)
    finally:
        tracemalloc.stop()
    print(f"peak Python memory while cutting a flood at 16 MiB: {grown_mib:.0f} MiB")
    assert sample.error_kind == "too_large", sample.error_detail
    assert grown_mib < 64


async def test_a_schedule_opens_its_connections_before_its_clock() -> None:
    """warm(): one keep-alive connection per count, each left open in the pool for the first
    scheduled requests; a refused or failing endpoint is no error (the run's requests say so)."""
    accepted: list[int] = []
    models = b'{"object":"list","data":[{"id":"sim"}]}'

    async def keep_alive(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(1)
        try:
            while True:
                await _read_request(reader)
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                    % len(models)
                    + models
                )
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(keep_alive, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    target = Target(f"http://127.0.0.1:{port}/v1", "sim")
    try:
        async with make_session(8, TIMEOUTS) as session:
            await warm(session, target, headers_for(target), 4)
            assert len(accepted) == 4
            body = request_body("chat", "sim", "hello", 8, BodyOptions())
            await stream_request(session, target, body, Sample(seq=0), timeouts=TIMEOUTS)
            assert len(accepted) == 4  # the request found a warm connection
    finally:
        server.close()
    async with make_session(2, TIMEOUTS) as session:  # nobody listening: no error
        await warm(session, Target("http://127.0.0.1:9/v1", "sim"), {}, 2)
