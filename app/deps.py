"""FastAPI dependencies shared by the REST and HTML routers: the unit of work, the clock, the
secret box, and who is asking (with the role and CSRF checks that every write passes)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated

import annotated_types
from fastapi import Depends, Query, Request
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.errors import CsrfFailed, Forbidden, PasswordChangeRequired, Unauthorized, ValidationFailed
from app.models import Role
from app.security import keyring
from app.security.crypto import SecretBox
from app.security.csrf import (
    ANON_COOKIE,
    CSRF_FIELD,
    CSRF_HEADER,
    SESSION_COOKIE,
    cookie_name,
    csrf_valid,
    same_origin,
)
from app.security.redact import excerpts_visible
from app.services import auth

Clock = Callable[[], datetime]

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def system_clock() -> datetime:
    return datetime.now(UTC)


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One unit of work per request: commit after the handler, roll back on error. Used with
    scope="function" so the commit happens before the response is sent and its failure is seen."""
    async with request.app.state.sessionmaker() as session:
        try:
            yield session
            await session.commit()
        except BaseException:
            await session.rollback()
            raise


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_clock(request: Request) -> datetime:
    clock: Clock = request.app.state.clock
    return clock()


def get_box(request: Request) -> SecretBox:
    box: SecretBox = request.app.state.secret_box
    return box


# A row id from a path or a query: the id columns are 32-bit signed integers on PostgreSQL; one
# past the range is refused with a 422 (in the API's error shape) before a driver overflows on it.
RowId = Annotated[int, annotated_types.Interval(ge=1, le=2**31 - 1)]
# Every list's paging (schemas.Page): a page size, and the `next` of the previous page.
Limit = Annotated[int, Query(ge=1, le=500, description="Page size")]
Cursor = Annotated[str | None, Query(max_length=200, description="`next` of the previous page")]
# One location's runs (a page's "every location" choice sends an empty value: read it as none).
LocationFilter = Annotated[str | None, Query(max_length=64, description="only the runs of this location")]


def offset_of(cursor: str | None) -> int:
    """An offset-paged list's position from its cursor; a cursor it never gave: 422."""
    from app.schemas import offset_cursor

    try:
        return offset_cursor(cursor)
    except ValueError as exc:
        raise ValidationFailed(str(exc), fields={"cursor": str(exc)}) from None


SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
SettingsDep = Annotated[Settings, Depends(get_settings)]
NowDep = Annotated[datetime, Depends(get_clock)]
BoxDep = Annotated[SecretBox, Depends(get_box)]


async def get_principal(request: Request, session: SessionDep, now: NowDep) -> auth.Principal | None:
    """The user behind a Bearer token or a session cookie, or None."""
    if hasattr(request.state, "principal"):
        principal: auth.Principal | None = request.state.principal
        return principal
    principal = None
    header = request.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise Unauthorized("use 'Authorization: Bearer <token>'")
        principal = await auth.resolve_token(session, token=value.strip(), now=now)
        if principal is None:
            raise Unauthorized("this API token is unknown, revoked or expired")
    else:
        settings: Settings = request.app.state.settings
        cookie = request.cookies.get(cookie_name(SESSION_COOKIE, settings.access.https))
        if cookie:
            principal = await auth.resolve_session(session, token=cookie, now=now)
    request.state.principal = principal
    # What a target said (errors' excerpts) is for editors and admins only.
    excerpts_visible.set(principal is not None and principal.sees_excerpts)
    if principal is not None and principal.must_change_password and request.url.path not in PASSWORD_PATHS:
        raise PasswordChangeRequired("change your password first (it was set for you)")
    return principal


# What a user who must change their password may still reach.
PASSWORD_PATHS = frozenset({"/account/password", "/logout", "/login"})


PrincipalDep = Annotated[auth.Principal | None, Depends(get_principal)]


async def check_csrf(request: Request, principal: auth.Principal | None, settings: Settings) -> None:
    """Refuse a cross-site or token-less unsafe request that rides on a browser cookie."""
    if request.method not in UNSAFE_METHODS:
        return
    if principal is not None and principal.via == "token":
        return  # a bearer token is not sent by browsers on their own: no CSRF exposure
    if not same_origin(
        request.headers.get("origin"),
        request.headers.get("referer"),
        request.headers.get("host"),
        request.url.scheme,
    ):
        raise CsrfFailed("cross-site request refused")
    anon = request.cookies.get(cookie_name(ANON_COOKIE, settings.access.https))
    binding = principal.session_token if principal is not None else anon
    presented = request.headers.get(CSRF_HEADER)
    if presented is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        value = (await request.form()).get(CSRF_FIELD)
        presented = value if isinstance(value, str) else None
    if not csrf_valid(keyring.session_secret(settings), binding, presented):
        raise CsrfFailed("the form expired or did not come from this site; reload the page and try again")


async def require_reader(
    request: Request, principal: PrincipalDep, settings: SettingsDep
) -> auth.Principal | None:
    if principal is None and not settings.access.public_read:
        raise Unauthorized("log in to see this")
    return principal


def _require(role: Role) -> Callable[..., Awaitable[auth.Principal]]:
    async def dependency(request: Request, principal: PrincipalDep, settings: SettingsDep) -> auth.Principal:
        if principal is None:
            raise Unauthorized("log in or send an API token to change anything")
        # Who may write is settled from the headers first: the CSRF check may read a form's
        # body (an upload of 64 MiB), which only a caller with the role gets to send.
        if principal.read_only:
            raise Forbidden("this API token is read-only")
        if not principal.can(role):
            raise Forbidden(f"this needs the {role.value} role; you are {principal.role.value}")
        await check_csrf(request, principal, settings)
        return principal

    return dependency


async def require_session_writer(
    request: Request, principal: PrincipalDep, settings: SettingsDep
) -> auth.Principal:
    """Minting API tokens: a browser session (or the CLI), never a token, so a leaked token
    cannot outlive its own revocation through tokens it minted."""
    writer = await _require(Role.viewer)(request, principal, settings)
    if writer.via == "token":
        raise Forbidden(
            "API tokens are created from a logged-in browser session or `smartbench token create`, "
            "never with another token"
        )
    return writer


async def require_login(principal: PrincipalDep) -> auth.Principal:
    if principal is None:
        raise Unauthorized("log in or send an API token")
    return principal


async def require_admin_reader(principal: PrincipalDep) -> auth.Principal:
    """Reading what only admins see (site settings, lockouts); read-only tokens may."""
    if principal is None:
        raise Unauthorized("log in or send an API token")
    if principal.role is not Role.admin:
        raise Forbidden(f"this needs the admin role; you are {principal.role.value}")
    return principal


LoggedInDep = Annotated[auth.Principal, Depends(require_login)]
AdminReaderDep = Annotated[auth.Principal, Depends(require_admin_reader)]
SessionWriterDep = Annotated[auth.Principal, Depends(require_session_writer)]
ReaderDep = Annotated[auth.Principal | None, Depends(require_reader)]
ViewerWriteDep = Annotated[
    auth.Principal, Depends(_require(Role.viewer))
]  # any role; never a read-only token
EditorDep = Annotated[auth.Principal, Depends(_require(Role.editor))]
AdminDep = Annotated[auth.Principal, Depends(_require(Role.admin))]
