"""Engine and session handling, and the schema upgrade that `serve` and `db upgrade` run."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
from alembic import command
from alembic.config import Config
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from app.config import Settings
from app.paths import resource_dir


def create_engine(settings: Settings) -> AsyncEngine:
    url = make_url(settings.db_url)
    # Errors never carry the statement's parameters (they would land in logs and pages).
    kwargs: dict[str, object] = {
        "echo": settings.database.echo,
        "hide_parameters": True,
        "json_deserializer": _loads,
    }
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            private_file(Path(url.database), data_dir=settings.data_dir)
        kwargs["connect_args"] = {"timeout": 30}
    else:
        kwargs.update(pool_pre_ping=True, pool_size=10, max_overflow=10)
    engine = create_async_engine(url, **kwargs)
    if url.get_backend_name() == "sqlite":
        _configure_sqlite(engine)
    return engine


def _loads(text: str | bytes) -> object:
    """JSON columns read with orjson (a year of scorecards is a lot of JSON), falling back to the
    standard library for what it refuses (NaN, which Python's json writes)."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def private_file(path: Path, *, data_dir: Path) -> None:
    """The SQLite file (API keys sealed, but also users and history) readable by its owner only:
    its folder is created 0700 and the file 0600 (the -wal and -shm files take the file's mode);
    the data directory, which smartbench owns, is kept 0700."""
    if not path.parent.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not path.exists():
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    else:
        os.chmod(path, 0o600)
    if path.parent.resolve() == data_dir.resolve() and path.parent.stat().st_mode & 0o077:
        os.chmod(path.parent, 0o700)


def _configure_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


@asynccontextmanager
async def unit_of_work(sessionmaker: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """One transaction: commit when the block ends, roll back when it raises."""
    async with sessionmaker() as session:
        try:
            yield session
            await session.commit()
        except BaseException:
            await session.rollback()
            raise


# -- migrations ------------------------------------------------------------------------------------


def alembic_config(settings: Settings) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(resource_dir("migrations")))
    cfg.attributes["settings"] = settings
    return cfg


def upgrade(settings: Settings, revision: str = "head") -> None:
    """Bring the schema to `revision`. Runs Alembic in a worker thread when a loop is running."""
    command.upgrade(alembic_config(settings), revision)


def downgrade(settings: Settings, revision: str) -> None:
    command.downgrade(alembic_config(settings), revision)


async def upgrade_async(settings: Settings, revision: str = "head") -> None:
    await asyncio.to_thread(upgrade, settings, revision)


async def refresh_statistics(engine: AsyncEngine) -> None:
    """After a bulk load: planner statistics, and on PostgreSQL the visibility map too (so the
    covering indexes answer trend queries without visiting the table). Autovacuum gets there on
    its own within minutes; a benchmark or a seeded demo should not wait for it."""
    if engine.dialect.name == "postgresql":
        async with engine.connect() as conn:
            auto = await conn.execution_options(isolation_level="AUTOCOMMIT")
            await auto.exec_driver_sql("VACUUM (ANALYZE) runs, run_steps, endpoints")
    else:
        async with engine.begin() as conn:
            await conn.exec_driver_sql("ANALYZE")
