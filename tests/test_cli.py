"""The `smartbench` command: users, tokens and the first admin, against both databases."""

from __future__ import annotations

import asyncio
import os
import sys

import httpx

from app.config import Settings
from app.db import unit_of_work
from app.services import users


async def smartbench(settings: Settings, *args: str, stdin: bytes = b"") -> tuple[int, str, str]:
    env = {**os.environ, "SMARTBENCH_DATA_DIR": str(settings.data_dir)}
    env.pop("SMARTBENCH_DATABASE_URL", None)
    if settings.database.url:
        env["SMARTBENCH_DATABASE_URL"] = settings.database.url
    pipe = asyncio.subprocess.PIPE
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "app.cli", *args, stdin=pipe, stdout=pipe, stderr=pipe, env=env
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin), timeout=60)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_user_and_token_create(settings: Settings, app, client: httpx.AsyncClient) -> None:
    code, out, err = await smartbench(
        settings, "user", "create", "bob", "--role", "editor", stdin=b"bob-password-123\n"
    )
    assert code == 0, err
    code, _, err = await smartbench(
        settings, "user", "create", "bob", "--role", "editor", stdin=b"bob-password-123\n"
    )
    assert code == 1 and "already exists" in err
    code, _, err = await smartbench(settings, "user", "create", "eve", stdin=b"short\n")
    assert code == 1 and "at least 10" in err

    code, out, err = await smartbench(settings, "token", "create", "--name", "ci", "--user", "bob")
    assert code == 0, err
    token = out.strip()
    assert token.startswith("sbt_") and "shown once" in err
    body = {"name": "from-cli", "base_url": "http://127.0.0.1:9/v1", "model": "m"}
    created = await client.post("/api/v1/endpoints", json=body, headers={"Authorization": f"Bearer {token}"})
    assert created.status_code == 201, created.text

    code, out, err = await smartbench(
        settings, "token", "create", "--name", "ro", "--read-only", "--user", "bob"
    )
    assert code == 0, err
    read_only = {"Authorization": f"Bearer {out.strip()}"}
    assert (await client.get("/api/v1/endpoints", headers=read_only)).status_code == 200
    assert (
        await client.post("/api/v1/endpoints", json={**body, "name": "x"}, headers=read_only)
    ).status_code == 403


async def test_token_create_without_admin_explains(settings: Settings, app) -> None:
    code, _, err = await smartbench(settings, "token", "create", "--name", "ci")
    assert code == 1 and "no admin exists yet" in err


async def test_first_admin_gets_a_one_time_password(settings: Settings, app) -> None:
    now = app.state.clock()
    async with unit_of_work(app.state.sessionmaker) as session:
        first = await users.ensure_first_admin(session, username="admin", password=None)
    assert first is not None and first.password and len(first.password) >= 20
    async with unit_of_work(app.state.sessionmaker) as session:
        assert await users.ensure_first_admin(session, username="admin", password=None) is None
        result = await users.authenticate(
            session, username="admin", password=first.password, address="127.0.0.1", now=now
        )
        user = result.user
        assert user is not None and user.role == "admin" and user.must_change_password


async def test_first_admin_from_settings(settings: Settings, app) -> None:
    async with unit_of_work(app.state.sessionmaker) as session:
        first = await users.ensure_first_admin(session, username="root-admin", password="from-the-env-123")
    assert first is not None and first.password is None
    async with unit_of_work(app.state.sessionmaker) as session:
        result = await users.authenticate(
            session, username="root-admin", password="from-the-env-123", address=None, now=app.state.clock()
        )
        assert result.user is not None and not result.user.must_change_password


async def test_keys_rotate_with_file_keys(settings: Settings, app, client: httpx.AsyncClient) -> None:
    async with unit_of_work(app.state.sessionmaker) as session:
        await users.create(session, username="ed", password="ed-password-12", role=users.Role.editor)
    code, out, err = await smartbench(settings, "token", "create", "--name", "k", "--user", "ed")
    auth = {"Authorization": f"Bearer {out.strip()}"}
    body = {
        "name": "keyed",
        "base_url": "http://127.0.0.1:9/v1",
        "model": "m",
        "api_key": "sk-rotate-me-0000001111",
    }
    assert (await client.post("/api/v1/endpoints", json=body, headers=auth)).status_code == 201
    code, out, err = await smartbench(settings, "keys", "rotate")
    assert code == 0, err
    assert "re-encrypted 1 sealed value(s)" in out and "1 endpoints.api_key_encrypted" in out
    # The new keyring (new key first, old key kept) still opens it.
    from sqlalchemy import select

    from app.models import Endpoint
    from app.security import keyring
    from app.security.crypto import SecretBox

    box = SecretBox(
        keyring.encryption_keyring(
            Settings(env="test", data_dir=settings.data_dir, database_url=settings.database.url)
        )
    )
    async with unit_of_work(app.state.sessionmaker) as session:
        row = await session.scalar(select(Endpoint))
        assert row is not None and row.api_key_encrypted is not None
        assert row.api_key_encrypted.split(":")[1] == box.active_key_id
        assert box.decrypt(row.api_key_encrypted) == "sk-rotate-me-0000001111"


async def test_runs_recompute_command(settings: Settings, app) -> None:
    code, out, err = await smartbench(settings, "runs", "recompute")
    assert code == 0, err
    assert "recomputed 0 step(s) of 0 run(s)" in out
    code, _, err = await smartbench(settings, "runs", "recompute", "--run", "999")
    assert code == 1 and "does not exist" in err
