"""The `smartbench` command: the Typer application, its command groups, and what the commands
share (settings, errors, a database session, the schema upgrade, the first admin)."""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypedDict, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console

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
runs_cli = typer.Typer(help="Stored runs.", no_args_is_help=True)
dataset_cli = typer.Typer(help="Traces and conversation sets that workloads replay.", no_args_is_help=True)
cli.add_typer(db_cli, name="db")
cli.add_typer(user_cli, name="user")
cli.add_typer(token_cli, name="token")
cli.add_typer(keys_cli, name="keys")
cli.add_typer(runs_cli, name="runs")
cli.add_typer(dataset_cli, name="dataset")

# A terminal sets its own width; piped output (CI logs, files) gets room for the result table.
out = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, soft_wrap=True, width=None if sys.stderr.isatty() else 160)


def load_settings() -> Settings:
    try:
        return Settings()
    except (ValidationError, ConfigError) as exc:
        err.print(f"[red]smartbench: configuration error:[/red] {exc}")
        raise typer.Exit(2) from None


def fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[red]smartbench:[/red] {message}")
    return typer.Exit(code)


async def with_session(settings: Settings, work: Callable[..., Awaitable[T]]) -> T:
    from app.bootstrap import runtime
    from app.db import unit_of_work

    async with runtime(settings) as opened, unit_of_work(opened.sessionmaker) as session:
        return await work(session)


def freeze_heap() -> None:
    """Before serving: what is loaded by now (modules, routes, templates) lives as long as the
    process, so the collector need not scan it again: full collections, and their pauses in the
    middle of a request, stay short."""
    import gc

    gc.collect()
    gc.freeze()


def upgrade_schema(settings: Settings) -> None:
    from app.db import upgrade

    try:
        upgrade(settings)
    except Exception as exc:
        raise fail(f"cannot upgrade the database schema ({type(exc).__name__}: {exc})") from None


def where(settings: Settings) -> str:
    from sqlalchemy.engine import make_url

    return make_url(settings.db_url).render_as_string(hide_password=True)


class ProxyOptions(TypedDict, total=False):
    """uvicorn.run's options for the reverse proxies in front of smartbench."""

    proxy_headers: bool
    forwarded_allow_ips: str


def proxy_options(settings: Settings) -> ProxyOptions:
    """X-Forwarded-For/-Proto are believed only from SMARTBENCH_TRUSTED_PROXIES (none by default)."""
    trusted = settings.access.trusted_proxy_list()
    if not trusted:
        return {"proxy_headers": False}
    return {"proxy_headers": True, "forwarded_allow_ips": ",".join(trusted)}


async def ensure_first_admin(session, settings: Settings):
    """The first admin, created on a database that has none (its one-time password, if made)."""
    from app.services import users

    pw = settings.access.admin_password.get_secret_value() if settings.access.admin_password else None
    return await users.ensure_first_admin(session, username=settings.access.admin_user, password=pw)


def first_admin_line(created: Any, settings: Settings, *, again: str | None = None) -> str:
    """How to log in, said once by `serve` and `demo` alike (a one-time password only now)."""
    if created is not None and created.password is not None:
        return (
            f"log in as [bold]{created.username}[/] with the one-time password [bold yellow]{created.password}[/] "
            "(you will be asked to change it). It is not shown again."
        )
    if created is not None:
        return f"log in as [bold]{created.username}[/] with SMARTBENCH_ADMIN_PASSWORD."
    if again:
        return f"log in as {settings.access.admin_user} (password from {again})."
    return "log in with your smartbench user (new users: `smartbench user create`)."
