"""Test fixtures: every database test runs on SQLite and on PostgreSQL.

- SQLite: one migrated template file per session, copied for each test (full isolation).
- PostgreSQL: one migrated database per session (created on the server named by
  SMARTBENCH_TEST_POSTGRES_URL, default the local `test` database's server), truncated after each test.

When PostgreSQL is not reachable its tests are skipped with the reason, unless
SMARTBENCH_REQUIRE_POSTGRES=1 (CI sets it), in which case they fail.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from app.config import Settings
from app.db import create_engine, unit_of_work, upgrade
from app.main import create_app
from app.models import Base, Role
from app.services import users

PG_ADMIN_URL = os.environ.get(
    "SMARTBENCH_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REQUIRE_PG = os.environ.get("SMARTBENCH_REQUIRE_POSTGRES") == "1"

PASSWORDS = {"admin": "admin-password-1", "editor": "editor-password-1", "viewer": "viewer-password-1"}


def _libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def pg_available() -> str | None:
    """None when PostgreSQL answers, else why not."""
    try:
        with psycopg.connect(_libpq(PG_ADMIN_URL), connect_timeout=3):
            return None
    except psycopg.Error as exc:
        return f"PostgreSQL at {make_url(PG_ADMIN_URL).render_as_string()} unreachable: {exc}".splitlines()[0]


def create_pg_database(prefix: str = "smartbench_test") -> str:
    """A fresh, empty database on the test server; returns its SQLAlchemy URL."""
    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(_libpq(PG_ADMIN_URL), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')  # name is generated above, never user input
    return make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)


def drop_pg_database(url: str) -> None:
    name = make_url(url).database
    assert name and re.fullmatch(r"[a-z0-9_]+", name)
    with psycopg.connect(_libpq(PG_ADMIN_URL), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass
class Backend:
    name: str
    template: Path | None = None  # sqlite: migrated file to copy
    url: str | None = None  # postgresql: migrated database


@pytest.fixture(scope="session")
def sqlite_backend(tmp_path_factory: pytest.TempPathFactory) -> Backend:
    data_dir = tmp_path_factory.mktemp("sqlite-template")
    settings = Settings(env="test", data_dir=data_dir)
    upgrade(settings)
    return Backend("sqlite", template=data_dir / "smartbench.db")


@pytest.fixture(scope="session")
def postgresql_backend() -> Iterator[Backend]:
    reason = pg_available()
    if reason is not None:
        if REQUIRE_PG:
            pytest.fail(reason)
        pytest.skip(reason)
    url = create_pg_database()
    try:
        upgrade(Settings(env="test", database_url=url, data_dir=Path("/nonexistent")))
        yield Backend("postgresql", url=url)
    finally:
        drop_pg_database(url)


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> Backend:
    backend: Backend = request.getfixturevalue(f"{request.param}_backend")
    return backend


@pytest.fixture
async def settings(backend: Backend, tmp_path: Path) -> AsyncIterator[Settings]:
    if backend.name == "sqlite":
        assert backend.template is not None
        shutil.copy(backend.template, tmp_path / "smartbench.db")
        yield Settings(env="test", data_dir=tmp_path)
        return
    yield Settings(env="test", data_dir=tmp_path, database_url=backend.url)
    # Isolation on PostgreSQL: empty every table after the test.
    engine = create_engine(Settings(env="test", data_dir=tmp_path, database_url=backend.url))
    try:
        async with engine.begin() as conn:
            tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
            await conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    finally:
        await engine.dispose()


@pytest.fixture
async def app(settings: Settings):  # type: ignore[no-untyped-def]
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def idle_app(settings: Settings):  # type: ignore[no-untyped-def]
    """The app with no executor loop running: tests drive `app.state.executor.tick()` themselves."""
    application = create_app(settings.but(run_executor=False))
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def people(request: pytest.FixtureRequest) -> dict[str, int]:
    """An admin, an editor and a viewer, with the passwords in PASSWORDS (in the test's app:
    `idle_app` when the test uses it, else `app`)."""
    app = request.getfixturevalue("idle_app" if "idle_app" in request.fixturenames else "app")
    ids: dict[str, int] = {}
    async with unit_of_work(app.state.sessionmaker) as session:
        for name, password in PASSWORDS.items():
            user = await users.create(session, username=name, password=password, role=Role(name))
            ids[name] = user.id
    return ids


@pytest.fixture
async def client(app) -> AsyncIterator[httpx.AsyncClient]:  # type: ignore[no-untyped-def]
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


CSRF_RE = re.compile(r'name="csrf_token" value="([0-9a-f]+)"')


def csrf_from(html: str) -> str:
    match = CSRF_RE.search(html)
    assert match, "page has no CSRF token"
    return match.group(1)


async def login(client: httpx.AsyncClient, username: str) -> str:
    """Log in through the form; returns a CSRF token valid for the new session."""
    page = await client.get("/login")
    response = await client.post(
        "/login",
        data={
            "username": username,
            "password": PASSWORDS[username],
            "csrf_token": csrf_from(page.text),
            "next": "/",
        },
    )
    assert response.status_code == 303, response.text
    return csrf_from((await client.get("/endpoints")).text)


async def bearer(client: httpx.AsyncClient, username: str, *, read_only: bool = False) -> dict[str, str]:
    """An API token for `username`, made through the settings page."""
    csrf = await login(client, username)
    response = await client.post(
        "/settings/tokens",
        data={
            "name": f"t-{uuid.uuid4().hex[:6]}",
            "csrf_token": csrf,
            **({"read_only": "on"} if read_only else {}),
        },
    )
    assert response.status_code == 201, response.text
    token = re.search(r'id="new-token">(sbt_[A-Za-z0-9_\-]+)<', response.text)
    assert token
    client.cookies.clear()
    return {"Authorization": f"Bearer {token.group(1)}"}
