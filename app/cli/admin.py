"""Administration: the schema (`db`), users, API tokens and the encryption keys."""

from __future__ import annotations

import asyncio
import getpass
import sys
from typing import Annotated

import typer

from app.cli.base import (
    db_cli,
    err,
    fail,
    keys_cli,
    load_settings,
    out,
    token_cli,
    upgrade_schema,
    user_cli,
    where,
    with_session,
)
from app.config import ConfigError, Settings
from app.security import keyring


@db_cli.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument(help="Target revision")] = "head") -> None:
    """Apply migrations up to REVISION (default: the newest)."""
    from app.db import upgrade

    settings = load_settings()
    upgrade(settings, revision)
    out.print(f"database {where(settings)} is at {revision}")


@db_cli.command("downgrade")
def db_downgrade(revision: Annotated[str, typer.Argument(help="Target revision, e.g. -1 or base")]) -> None:
    """Revert migrations down to REVISION."""
    from app.db import downgrade

    settings = load_settings()
    downgrade(settings, revision)
    out.print(f"database {where(settings)} downgraded to {revision}")


@user_cli.command("create")
def user_create(
    username: Annotated[str, typer.Argument(help="Login name")],
    role: Annotated[str, typer.Option(help="viewer, editor or admin")] = "viewer",
    password: Annotated[
        str | None, typer.Option(help="Password (default: ask, or read from stdin when piped)")
    ] = None,
) -> None:
    """Add a user."""
    from app.errors import AppError
    from app.models import Role
    from app.services import users

    if role not in Role.__members__:
        raise fail("role must be viewer, editor or admin", 2)
    if password is None:
        password = getpass.getpass("Password: ") if sys.stdin.isatty() else sys.stdin.readline().rstrip("\n")
    settings = load_settings()
    upgrade_schema(settings)

    async def work(session):
        return await users.create(session, username=username, password=password, role=Role(role))

    try:
        asyncio.run(with_session(settings, work))
    except AppError as exc:
        detail = "; ".join(f"{k}: {v}" for k, v in exc.fields.items()) or exc.message
        raise fail(detail) from None
    out.print(f"user {username} created ({role})")


@user_cli.command("unlock")
def user_unlock(
    username: Annotated[str, typer.Argument(help="The login name whose failed-login back-off to lift")],
) -> None:
    """Lift the back-off that failed logins put on an account."""
    from app.services import throttle

    settings = load_settings()
    upgrade_schema(settings)

    async def work(session):
        return await throttle.lift(session, throttle.account_key(username))

    lifted = asyncio.run(with_session(settings, work))
    out.print(f"{username}: back-off lifted" if lifted else f"{username}: no back-off to lift")


@token_cli.command("create")
def token_create(
    name: Annotated[str, typer.Option(help="What the token is for")],
    read_only: Annotated[bool, typer.Option("--read-only", help="The token can only read")] = False,
    user: Annotated[str | None, typer.Option(help="Owner (default: the first admin)")] = None,
    expires_in_days: Annotated[
        int | None, typer.Option(min=1, max=3650, help="Days until it stops working (default: never)")
    ] = None,
) -> None:
    """Create an API token and print it once (only its hash is stored)."""
    from datetime import UTC, datetime

    from sqlalchemy import select

    from app.errors import AppError
    from app.models import Role, User
    from app.services import auth, users

    settings = load_settings()
    upgrade_schema(settings)

    async def work(session):
        if user:
            owner = await users.get_by_name(session, user)
        else:
            owner = await session.scalar(
                select(User).where(User.role == Role.admin.value, User.is_active.is_(True)).order_by(User.id)
            )
            if owner is None:
                raise AppError("no admin exists yet: start `smartbench serve` once or pass --user")
        _, token = await auth.create_token(
            session,
            user_id=owner.id,
            name=name,
            read_only=read_only,
            now=datetime.now(UTC),
            expires_in_days=expires_in_days,
        )
        return owner.username, token

    try:
        owner_name, token = asyncio.run(with_session(settings, work))
    except AppError as exc:
        raise fail(exc.message) from None
    err.print(
        f"token {name!r} for {owner_name} ({'read-only' if read_only else 'read and write'}); shown once:"
    )
    print(token)


@keys_cli.command("rotate")
def keys_rotate() -> None:
    """Make a new encryption key active (data-directory keys) and re-encrypt every sealed value
    (endpoint API keys, webhook URLs and secrets)."""
    settings = load_settings()
    try:
        kid = keyring.rotate_file_key(settings)
    except ConfigError as exc:
        raise fail(str(exc)) from None
    out.print(f"new active key {kid}")
    _reencrypt(settings)


@keys_cli.command("reencrypt")
def keys_reencrypt() -> None:
    """Re-encrypt every sealed value (endpoint API keys, webhook URLs and secrets) with the active
    (first) key."""
    _reencrypt(load_settings())


def _reencrypt(settings: Settings) -> None:
    from app.security.crypto import DecryptionError, SecretBox
    from app.services import keys

    upgrade_schema(settings)
    box = SecretBox(keyring.encryption_keyring(settings))

    async def work(session):
        return await keys.reencrypt_keys(session, box=box)

    try:
        changed = asyncio.run(with_session(settings, work))
    except DecryptionError as exc:
        raise fail(f"{exc}; nothing was changed") from None
    each = ", ".join(f"{count} {column}" for column, count in changed.items())
    out.print(f"re-encrypted {sum(changed.values())} sealed value(s) with key {box.active_key_id} ({each})")


@token_cli.command("agent")
def token_agent(
    location: Annotated[str, typer.Option(help="The location its agents probe from, e.g. eu-west")],
    name: Annotated[str, typer.Option(help="What the token is for")] = "agents",
) -> None:
    """Create an agent token for one location and print it once (`smartbench agent` uses it)."""
    from datetime import UTC, datetime

    from pydantic import ValidationError

    from app.api.agents import AgentTokenCreate
    from app.errors import AppError
    from app.services import agents

    settings = load_settings()
    upgrade_schema(settings)
    try:
        body = AgentTokenCreate(location=location, name=name)
    except ValidationError as exc:
        raise fail(f"not a location name: {location!r} (letters, digits, . _ : -)") from exc

    async def work(session):
        _, token = await agents.mint(
            session, location=body.location, name=body.name, by=None, now=datetime.now(UTC)
        )
        return token

    try:
        token = asyncio.run(with_session(settings, work))
    except AppError as exc:
        raise fail(exc.message) from None
    err.print(f"agent token {name!r} for location {body.location!r}; shown once:")
    print(token)
