"""The `smartbench` command."""

from __future__ import annotations

import asyncio
import getpass
import logging
import sys
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console

from app import __version__
from app.config import ConfigError, Settings

T = TypeVar("T")

cli = typer.Typer(
    name="smartbench",
    help="Probe LLM inference endpoints and keep their SMART scorecards and cost history.",
    no_args_is_help=True,
    add_completion=False,
)
db_cli = typer.Typer(help="Database schema.", no_args_is_help=True)
user_cli = typer.Typer(help="Users.", no_args_is_help=True)
token_cli = typer.Typer(help="API tokens.", no_args_is_help=True)
keys_cli = typer.Typer(help="Encryption keys for stored endpoint API keys.", no_args_is_help=True)
cli.add_typer(db_cli, name="db")
cli.add_typer(user_cli, name="user")
cli.add_typer(token_cli, name="token")
cli.add_typer(keys_cli, name="keys")

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


def _settings() -> Settings:
    try:
        return Settings()
    except (ValidationError, ConfigError) as exc:
        err.print(f"[red]smartbench: configuration error:[/red] {exc}")
        raise typer.Exit(2) from None


def _fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[red]smartbench:[/red] {message}")
    return typer.Exit(code)


async def _with_session(settings: Settings, work: Callable[..., Awaitable[T]]) -> T:
    from app.db import create_engine, create_sessionmaker, unit_of_work

    engine = create_engine(settings)
    try:
        async with unit_of_work(create_sessionmaker(engine)) as session:
            return await work(session)
    finally:
        await engine.dispose()


def _upgrade(settings: Settings) -> None:
    from app.db import upgrade

    try:
        upgrade(settings)
    except Exception as exc:
        raise _fail(f"cannot upgrade the database schema ({type(exc).__name__}: {exc})") from None


def _where(settings: Settings) -> str:
    from sqlalchemy.engine import make_url

    return make_url(settings.db_url).render_as_string(hide_password=True)


@cli.command()
def version() -> None:
    """Print the version."""
    out.print(f"smartbench {__version__}")


@cli.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on")] = None,
) -> None:
    """Dashboard + REST API; upgrades the schema first."""
    import uvicorn

    from app.main import create_app
    from app.services import users

    settings = _settings()
    host = host or settings.host
    port = port or settings.port
    _upgrade(settings)

    async def first_admin(session):
        pw = settings.admin_password.get_secret_value() if settings.admin_password else None
        return await users.ensure_first_admin(session, username=settings.admin_user, password=pw)

    try:
        created = asyncio.run(_with_session(settings, first_admin))
    except Exception as exc:
        raise _fail(str(exc)) from None

    shown_host = "127.0.0.1" if host in ("0.0.0.0", "::") else host  # noqa: S104
    url = f"http://{shown_host}:{port}/"
    out.print(f"[bold green]smartbench {__version__}[/] database: {_where(settings)}")
    out.print(f"Dashboard: [bold]{url}[/]   API docs: {url}docs")
    if created is not None and created.password is not None:
        out.print(
            f"First start: log in as [bold]{created.username}[/] with the one-time password "
            f"[bold yellow]{created.password}[/] (you will be asked to change it). It is not shown again."
        )
    elif created is not None:
        out.print(f"First start: log in as [bold]{created.username}[/] with SMARTBENCH_ADMIN_PASSWORD.")
    else:
        out.print("Log in with your smartbench user (new users: `smartbench user create`).")
    if settings.public_read:
        out.print("Reads are public (SMARTBENCH_PUBLIC_READ); every write needs a login or a token.")
    sys.stdout.flush()
    uvicorn.run(create_app(settings), host=host, port=port, log_level=settings.log_level, proxy_headers=False)


@db_cli.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument(help="Target revision")] = "head") -> None:
    """Apply migrations up to REVISION (default: the newest)."""
    from app.db import upgrade

    settings = _settings()
    upgrade(settings, revision)
    out.print(f"database {_where(settings)} is at {revision}")


@db_cli.command("downgrade")
def db_downgrade(revision: Annotated[str, typer.Argument(help="Target revision, e.g. -1 or base")]) -> None:
    """Revert migrations down to REVISION."""
    from app.db import downgrade

    settings = _settings()
    downgrade(settings, revision)
    out.print(f"database {_where(settings)} downgraded to {revision}")


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
        raise _fail("role must be viewer, editor or admin", 2)
    if password is None:
        password = getpass.getpass("Password: ") if sys.stdin.isatty() else sys.stdin.readline().rstrip("\n")
    settings = _settings()
    _upgrade(settings)

    async def work(session):
        return await users.create(session, username=username, password=password, role=Role(role))

    try:
        asyncio.run(_with_session(settings, work))
    except AppError as exc:
        detail = "; ".join(f"{k}: {v}" for k, v in exc.fields.items()) or exc.message
        raise _fail(detail) from None
    out.print(f"user {username} created ({role})")


@token_cli.command("create")
def token_create(
    name: Annotated[str, typer.Option(help="What the token is for")],
    read_only: Annotated[bool, typer.Option("--read-only", help="The token can only read")] = False,
    user: Annotated[str | None, typer.Option(help="Owner (default: the first admin)")] = None,
) -> None:
    """Create an API token and print it once (only its hash is stored)."""
    from datetime import UTC, datetime

    from sqlalchemy import select

    from app.errors import AppError
    from app.models import Role, User
    from app.services import auth, users

    settings = _settings()
    _upgrade(settings)

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
            session, user_id=owner.id, name=name, read_only=read_only, now=datetime.now(UTC)
        )
        return owner.username, token

    try:
        owner_name, token = asyncio.run(_with_session(settings, work))
    except AppError as exc:
        raise _fail(exc.message) from None
    err.print(
        f"token {name!r} for {owner_name} ({'read-only' if read_only else 'read and write'}); shown once:"
    )
    print(token)


@keys_cli.command("rotate")
def keys_rotate() -> None:
    """Make a new encryption key active (data-directory keys) and re-encrypt every stored API key."""
    settings = _settings()
    try:
        kid = settings.rotate_file_key()
    except ConfigError as exc:
        raise _fail(str(exc)) from None
    out.print(f"new active key {kid}")
    _reencrypt(settings)


@keys_cli.command("reencrypt")
def keys_reencrypt() -> None:
    """Re-encrypt every stored API key with the active (first) key."""
    _reencrypt(_settings())


def _reencrypt(settings: Settings) -> None:
    from app.security.crypto import DecryptionError, SecretBox
    from app.services import endpoints

    _upgrade(settings)
    box = SecretBox(settings.encryption_keyring())

    async def work(session):
        return await endpoints.reencrypt_keys(session, box=box)

    try:
        changed = asyncio.run(_with_session(settings, work))
    except DecryptionError as exc:
        raise _fail(f"{exc}; nothing was changed") from None
    out.print(f"re-encrypted {changed} API key(s) with key {box.active_key_id}")


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    cli()


if __name__ == "__main__":
    main()
