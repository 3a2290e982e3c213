"""A stall of the probe's event loop is judged by the stamps it touched (probe/lag.py)."""

from __future__ import annotations

from app.probe.lag import STALL_SPILL_NS, LagMonitor
from app.probe.types import Sample

MS = 1_000_000


def _stream(seq: int, first_ms: int, tokens: int, itl_ms: int = 10) -> Sample:
    chunks = [(first_ms + i * itl_ms) * MS for i in range(tokens)]
    return Sample(seq=seq, first_content_ns=chunks[0], last_content_ns=chunks[-1], chunk_ns=chunks)


def _monitor(start_ms: int, end_ms: int) -> LagMonitor:
    monitor = LagMonitor()
    monitor.lags_ms = [0.0] * 99 + [float(end_ms - start_ms)]
    monitor.stalls = [(start_ms * MS, end_ms * MS + STALL_SPILL_NS, 31.0)]
    return monitor


def test_a_stall_between_first_and_last_tokens_leaves_the_step_clean() -> None:
    # 40 streams of 256 tokens, first tokens at 0..390 ms, last ~2.9 s later; a 33 ms stall at
    # 1000 ms catches 4 chunks per stream (the window runs on 5 ms past its end): 150 of 10,240, above 0.5 % ...
    samples = [_stream(i, i * 10, 256) for i in range(40)]
    touched, note = _monitor(1000, 1033).stall_note(samples)
    assert touched and note is not None and "0 first/last tokens" in note
    # ... while one stream's 4 chunks of 10,240 in the stall move no statistic.
    one = [_stream(0, 0, 256)] + [_stream(i, 5000 + i * 3000, 256) for i in range(1, 40)]
    touched, note = _monitor(1000, 1033).stall_note(one)
    assert not touched
    assert note is not None and "stalled once, at worst 33.0 ms" in note
    assert "4 of 10240 chunks" in note and "for 31 ms" in note


def test_a_stall_on_a_first_token_marks_the_step() -> None:
    samples = [_stream(0, 0, 64), _stream(1, 1010, 64)]
    touched, note = _monitor(1000, 1033).stall_note(samples)
    assert touched and note is not None and "1 first/last tokens" in note


def test_a_stall_on_a_warm_up_request_does_not_count() -> None:
    warm = _stream(0, 1010, 1)
    warm.warmup = True
    touched, _ = _monitor(1000, 1033).stall_note([warm, _stream(1, 0, 64)])
    assert not touched


def test_no_stall_no_note() -> None:
    assert LagMonitor().stall_note([_stream(0, 0, 8)]) == (False, None)
