"""Stored datasets and traces (app/datasets.py): added from a file (validated whole before
anything is kept), listed with their statistics, read by the runs that replay them, deleted only
when no profile names them. Two built-ins, generated to follow published statistics, are added
at start-up and labelled generated."""

from __future__ import annotations

import asyncio
import functools
import re

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.datasets import (
    LMSYS_SOURCE,
    MOONCAKE_SOURCE,
    DatasetContent,
    DatasetError,
    DatasetStats,
    generated_conversations,
    generated_trace,
    parse,
    sha256,
    stats,
    to_file,
)
from app.errors import NotFound, ValidationFailed
from app.models import Dataset, Profile

MAX_BYTES = 64 * 1024 * 1024  # an upload's size limit: a day of a busy trace fits
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

BUILTINS: tuple[tuple[str, str, str], ...] = (
    ("mooncake-sample", "A generated trace in Mooncake's format: 2,000 requests, about five minutes.", MOONCAKE_SOURCE),
    ("chat-conversations", "500 generated multi-turn conversations in ShareGPT's format.", LMSYS_SOURCE),
)  # fmt: skip


@functools.cache
def _builtin(name: str) -> tuple[DatasetContent, bytes, bytes, DatasetStats]:
    """A built-in's content, its file, packed form and statistics: made once per process."""
    content = generated_trace() if name == "mooncake-sample" else generated_conversations()
    return content, to_file(content), content.pack(), stats(content)


async def ensure_builtins(session: AsyncSession) -> int:
    """Add the built-in datasets that are missing (generated here, the same bytes every time)."""
    existing = set((await session.scalars(select(Dataset.name))).all())
    added = 0
    for name, description, source in BUILTINS:
        if name in existing:
            continue
        content, data, packed, summary = await asyncio.to_thread(_builtin, name)
        try:
            async with session.begin_nested():  # processes starting together: the first one adds it
                session.add(
                    Dataset(
                        name=name, description=description, format=content.format, sha256=sha256(data),
                        size_bytes=len(data), records=content.count, content=packed, stats=summary,
                        builtin=True, generated=True, source=source,
                    )
                )  # fmt: skip
                await session.flush()
        except IntegrityError:
            continue
        added += 1
    return added


def check_name(name: str) -> None:
    if not NAME.match(name or ""):
        raise ValidationFailed(
            "bad dataset name",
            fields={"name": "1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"},
        )


async def add(
    session: AsyncSession,
    *,
    name: str,
    data: bytes,
    filename: str,
    fmt: str | None = None,
    description: str | None = None,
    by: str | None = None,
) -> Dataset:
    """Validate the whole file, then keep it; a bad record refuses the file (ValidationFailed
    naming the file, line and field) and nothing is stored."""
    check_name(name)
    if len(data) > MAX_BYTES:
        raise ValidationFailed(
            "the file is too large", fields={"file": f"{filename}: {len(data)} bytes; at most {MAX_BYTES}"}
        )
    if await session.scalar(select(Dataset.id).where(func.lower(Dataset.name) == name.lower())):
        raise ValidationFailed("that dataset exists", fields={"name": f"{name!r} already exists"})
    try:
        content = await asyncio.to_thread(parse, data, filename, fmt)
    except DatasetError as exc:
        raise ValidationFailed(f"the file was refused: {exc}", fields={"file": str(exc)}) from None
    summary = await asyncio.to_thread(stats, content)
    packed = await asyncio.to_thread(content.pack)
    dataset = Dataset(
        name=name, description=description, format=content.format, sha256=sha256(data), size_bytes=len(data),
        records=content.count, content=packed, stats=summary, builtin=False, generated=False, created_by=by,
    )  # fmt: skip
    session.add(dataset)
    await session.flush()
    return dataset


async def list_all(session: AsyncSession) -> list[Dataset]:
    return list(
        (
            await session.scalars(
                select(Dataset)
                .order_by(Dataset.builtin.desc(), Dataset.name)
                .execution_options(populate_existing=True)
            )
        ).all()
    )


async def get_by_name(session: AsyncSession, name: str) -> Dataset:
    dataset = await session.scalar(select(Dataset).where(Dataset.name == name))
    if dataset is None:
        raise NotFound(f"no dataset is named {name!r}")
    return dataset


async def users_of(session: AsyncSession, name: str) -> list[str]:
    """The profiles whose workload names the dataset."""
    profiles = (await session.scalars(select(Profile))).all()
    return sorted(p.name for p in profiles if p.workload is not None and p.workload.dataset == name)


async def delete(session: AsyncSession, *, name: str) -> None:
    dataset = await get_by_name(session, name)
    users = await users_of(session, name)
    if users:
        raise ValidationFailed(
            "the dataset is in use",
            fields={"name": f"profiles use it: {', '.join(users)}; change them first"},
        )
    await session.delete(dataset)
    await session.flush()


async def content_of(session: AsyncSession, name: str, expected_sha256: str | None) -> DatasetContent:
    """A run's dataset, as it was when the run was queued; ValueError (fit to show) when it is
    gone or was replaced since."""
    dataset = await session.scalar(select(Dataset).where(Dataset.name == name))
    if dataset is None:
        raise ValueError(f"the dataset {name!r} is gone")
    if expected_sha256 is not None and dataset.sha256 != expected_sha256:
        raise ValueError(f"the dataset {name!r} changed since the run was queued (its content hash differs)")
    return await asyncio.to_thread(DatasetContent.unpack, dataset.content)
