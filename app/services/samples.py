"""A run's per-request samples as they are read back: the JSON page, the CSV export (cells a
spreadsheet would take for a formula kept as text) and the sample set the run page's charts draw."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.models import RequestSample
from app.probe.types import Sample
from app.schemas import SampleRead
from app.services.records import sample_from_row
from app.services.runs import get

SAMPLE_COLUMNS = ("seq", "step_index", "warmup", "sent_offset_ms", "ttft_ms", "ttfat_ms", "e2e_ms", "input_tokens",
                  "output_tokens", "reasoning_tokens", "requested_output_tokens", "chunk_count", "finish_reason",
                  "error_kind", "error_detail", "http_status", "retry_after_s", "requested_input_tokens",
                  "cached_tokens", "expected_cached_tokens", "session", "turn", "dispatch_lag_ms", "trial")  # fmt: skip


async def samples_page(
    session: AsyncSession, *, run_id: int, limit: int, offset: int
) -> tuple[list[SampleRead], int]:
    await get(session, run_id)
    rows = (
        await session.scalars(
            select(RequestSample)
            .where(RequestSample.run_id == run_id)
            .order_by(RequestSample.seq)
            .offset(offset)
            .limit(limit)
        )
    ).all()
    total = (
        await session.scalar(select(func.count(RequestSample.id)).where(RequestSample.run_id == run_id)) or 0
    )
    return [SampleRead.model_validate(r, from_attributes=True) for r in rows], int(total)


async def samples_csv(sessionmaker: async_sessionmaker[AsyncSession], *, run_id: int) -> AsyncIterator[str]:
    """All samples as CSV, streamed in batches; owns its session because it outlives the request's."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(SAMPLE_COLUMNS)
    yield buf.getvalue()
    async with sessionmaker() as session:
        result = await session.stream_scalars(
            select(RequestSample)
            .where(RequestSample.run_id == run_id)
            .order_by(RequestSample.seq)
            .execution_options(yield_per=2000)
        )
        async for row in result:
            buf.seek(0)
            buf.truncate()
            data = SampleRead.model_validate(row, from_attributes=True).model_dump(
                include=set(SAMPLE_COLUMNS)
            )
            writer.writerow([csv_cell(data[c]) for c in SAMPLE_COLUMNS])
            yield buf.getvalue()


FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> Any:
    """A value as a CSV cell that a spreadsheet shows as text: a string a target sent (an error,
    a finish_reason) that starts like a formula gets a leading apostrophe (OWASP's advice for
    CSV injection). Numbers stay numbers."""
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


async def samples_for_charts(session: AsyncSession, *, run_id: int, limit: int = 20000) -> list[Sample]:
    rows = (
        await session.scalars(
            select(RequestSample)
            .where(RequestSample.run_id == run_id, RequestSample.warmup.is_(False))
            .limit(limit)
        )
    ).all()
    return [sample_from_row(row, None) for row in rows]
