"""Migrations go upgrade → downgrade → upgrade on both databases, and match the models."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from app.config import Settings
from app.db import create_engine, downgrade, upgrade
from app.models import Base
from tests.conftest import REQUIRE_PG, create_pg_database, drop_pg_database, pg_available


def _tables_and_diff(settings: Settings) -> tuple[set[str], list[object]]:
    async def inspect_db() -> tuple[set[str], list[object]]:
        engine = create_engine(settings)
        try:
            async with engine.connect() as conn:

                def sync(connection):  # type: ignore[no-untyped-def]
                    tables = set(inspect(connection).get_table_names())
                    diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
                    return tables, diff

                return await conn.run_sync(sync)
        finally:
            await engine.dispose()

    return asyncio.run(inspect_db())


def _round_trip(settings: Settings) -> None:
    upgrade(settings)
    tables, diff = _tables_and_diff(settings)
    assert {
        "endpoints",
        "runs",
        "run_steps",
        "request_samples",
        "users",
        "api_tokens",
        "web_sessions",
    } <= tables
    assert diff == [], f"models and migrations disagree: {diff}"
    downgrade(settings, "base")
    tables, _ = _tables_and_diff(settings)
    assert tables <= {"alembic_version"}
    upgrade(settings)
    tables, diff = _tables_and_diff(settings)
    assert "request_samples" in tables and diff == []


def test_round_trip_sqlite(tmp_path: Path) -> None:
    _round_trip(Settings(env="test", data_dir=tmp_path))


def test_round_trip_postgresql(tmp_path: Path) -> None:
    reason = pg_available()
    if reason is not None:
        if REQUIRE_PG:
            pytest.fail(reason)
        pytest.skip(reason)
    url = create_pg_database("smartbench_migr")
    try:
        _round_trip(Settings(env="test", data_dir=tmp_path, database_url=url))
    finally:
        drop_pg_database(url)


def test_constraint_names_follow_the_convention() -> None:
    for table in Base.metadata.sorted_tables:
        for constraint in table.constraints:
            assert constraint.name, f"unnamed constraint on {table.name}"
        for index in table.indexes:
            assert index.name and (index.name.startswith(("ix_", "uq_"))), index.name
