"""The one gate every imported run passes before it reaches a column or a score.

A result file is the user's, not the tool's: it may be edited by hand, cut, or written to break
things. `check` refuses what no measurement can be (a non-finite, negative or out-of-range
figure, a request whose stamps lie before its send or a week after it, a count past the integer
columns, a run that starts in the future, text longer than its column) naming the file and the
field. `bound` refuses, before any parse, files whose JSON would take more memory than the
import may use, judged from their structure (a 64 MiB file of `[],` would expand twenty-fold).
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel

from app.importers.base import MAX_FIGURE, MAX_INT, MAX_TEXT, ImportedRun, ImportProblem
from app.probe.types import Sample

MAX_SPAN_NS = 86_400 * 10**9 * 7  # a request's stamps lie within a week of its send
FUTURE_SLACK = timedelta(minutes=5)  # clocks differ a little between the tool's host and this one
# What parsing costs in memory, per JSON value, measured on CPython 3.11: an empty list or object
# is 56-64 bytes plus its slot in its parent; a number or short string 32-60 bytes.
CONTAINER_BYTES = 72
VALUE_BYTES = 56


def memory_estimate(raw: bytes) -> int:
    """An upper bound of what parsing `raw` as JSON (or JSON lines) takes, from its structure:
    the bytes and their text, every bracket or brace a container, every comma or colon one more
    value, every string its header (those inside strings count too, so it errs high: 1.1 to 2.6
    times what tracemalloc measured on the tools' files and on files made to expand)."""
    containers = raw.count(b"[") + raw.count(b"{")
    values = raw.count(b",") + raw.count(b":") + raw.count(b"\n")
    strings = raw.count(b'"') // 2
    return 2 * len(raw) + containers * CONTAINER_BYTES + values * VALUE_BYTES + strings * 16


def bound(files: list[tuple[str, bytes]], *, max_memory: int) -> None:
    """Refuse the import when its files would take more than `max_memory` bytes to parse."""
    total = 0
    for name, raw in files:
        total += memory_estimate(raw)
        if total > max_memory:
            raise ImportProblem(
                name,
                f"holds too many values to import at once (about {total // 2**20} MiB to parse, "
                f"the limit is {max_memory // 2**20} MiB); import its steps in several files",
            )


def check(run: ImportedRun, *, now: datetime, max_samples: int) -> None:
    where = run.files[0] if len(run.files) == 1 else ", ".join(run.files[:4])
    for name, limit in MAX_TEXT.items():
        value = getattr(run, name)
        if value is not None and len(value) > limit:
            raise ImportProblem(where, f"longer than {limit} characters", field=name)
    for name in ("started_at", "finished_at"):
        when: datetime | None = getattr(run, name)
        if when is not None and when > now + FUTURE_SLACK:
            raise ImportProblem(
                where, f"the run is dated {when.isoformat()}, in the future: refused", field=name
            )
    total = sum(len(step.samples or ()) for step in run.steps)
    if total > max_samples:
        raise ImportProblem(
            where,
            f"{total:,} requests; an import takes at most {max_samples:,} (SMARTBENCH_MAX_IMPORT_SAMPLES): "
            "import its steps in several files",
        )
    for index, step in enumerate(run.steps, start=1):
        label = f"step {index}"
        if step.concurrency is not None and not 1 <= step.concurrency <= MAX_INT:
            raise ImportProblem(
                where, f"{label}: concurrency {step.concurrency} out of range", field="concurrency"
            )
        if step.request_rate is not None and not (
            math.isfinite(step.request_rate) and 0 < step.request_rate <= MAX_FIGURE
        ):
            raise ImportProblem(where, f"{label}: request rate out of range", field="request_rate")
        for i, sample in enumerate(step.samples or (), start=1):
            _sample(where, f"{label}, request {i}", sample)
        for key, value in step.aggregates.items():
            _figure(where, label, key, value)


def _sample(where: str, label: str, sample: Sample) -> None:
    stamps = [sample.first_content_ns, sample.first_answer_ns, sample.last_content_ns, sample.end_ns]
    for t in [*stamps, *sample.chunk_ns]:
        if t is not None and not 0 <= t - sample.sent_ns < MAX_SPAN_NS:
            problem = "before it was sent" if t < sample.sent_ns else "more than a week after it was sent"
            raise ImportProblem(where, f"{label}: a time {problem}")
    for name in ("input_tokens", "output_tokens", "requested_output_tokens", "reasoning_tokens"):
        count = getattr(sample, name)
        if count is not None and not 0 <= count <= MAX_INT:
            raise ImportProblem(where, f"{label}: {count} tokens is out of range", field=name)
    if sample.http_status is not None and not 100 <= sample.http_status <= 599:
        raise ImportProblem(where, f"{label}: status {sample.http_status} is not an HTTP status")
    if sample.error_detail is not None:
        sample.error_detail = sample.error_detail[:200]


def _figure(where: str, label: str, key: str, value: Any) -> None:
    """Every number of a mapped aggregate: finite, not negative, within range."""
    if isinstance(value, BaseModel):
        for name, inner in value.model_dump().items():
            _figure(where, label, f"{key}.{name}", inner)
    elif isinstance(value, dict):
        for name, inner in value.items():
            _figure(where, label, f"{key}.{name}", inner)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        limit = MAX_INT if isinstance(value, int) else MAX_FIGURE
        if not (math.isfinite(value) and 0 <= value <= limit):
            raise ImportProblem(
                where, f"{label}: {value!r} is not a figure a measurement can have", field=key
            )
