"""Fixtures for the security suite: an app without the executor, built with chosen settings
and a clock the test moves."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from app.config import Settings
from app.db import unit_of_work
from app.main import create_app
from app.models import Role
from app.services import users
from tests.conftest import PASSWORDS


class FakeClock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


AppMaker = Callable[..., Any]


@pytest.fixture
def make_app(settings: Settings) -> AppMaker:
    """`async with make_app(public_url=...) as (app, client, clock)`: the app with these settings,
    no executor, the three people of PASSWORDS, an ASGI client, and its clock."""

    @asynccontextmanager
    async def build(
        *, base_url: str = "http://testserver", **overrides: Any
    ) -> AsyncIterator[tuple[Any, httpx.AsyncClient, FakeClock]]:
        clock = FakeClock()
        app = create_app(settings.but(run_executor=False, **overrides), clock=clock)
        async with app.router.lifespan_context(app):
            async with unit_of_work(app.state.sessionmaker) as session:
                for name, password in PASSWORDS.items():
                    await users.create(session, username=name, password=password, role=Role(name))
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url=base_url) as client:
                yield app, client, clock

    return build
