"""One start-up for every process that opens the database: `serve` (app/main.py's lifespan),
`worker` and the CLI's commands. It opens the engine and the session factory, makes sure the
built-in profiles exist, builds the executor the same way everywhere, and closes what it opened."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.config import Settings
from app.db import create_engine, create_sessionmaker, unit_of_work
from app.security import keyring
from app.security.crypto import SecretBox
from app.services import datasets, profiles
from app.services.executor import Executor


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    box: SecretBox

    def executor(
        self, clock: Callable[[], datetime], *, max_parallel: int | None = None, hears_agents: bool = True
    ) -> Executor:
        return Executor.from_settings(
            self.settings,
            self.sessionmaker,
            self.box,
            clock,
            max_parallel=max_parallel,
            hears_agents=hears_agents,
        )


@asynccontextmanager
async def runtime(settings: Settings, box: SecretBox | None = None) -> AsyncIterator[Runtime]:
    """The database opened (built-in profiles in place) for the duration of the block."""
    engine = create_engine(settings)
    try:
        sessionmaker = create_sessionmaker(engine)
        async with unit_of_work(sessionmaker) as session:
            await datasets.ensure_builtins(session)
            await profiles.ensure_builtins(session)
        yield Runtime(settings, engine, sessionmaker, box or SecretBox(keyring.encryption_keyring(settings)))
    finally:
        await engine.dispose()
