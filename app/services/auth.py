"""Who is asking: browser sessions and API tokens, resolved to a Principal."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import NotFound
from app.models import ApiToken, Role, User, WebSession
from app.security.tokens import new_api_token, new_session_token, token_hash

SEEN_RESOLUTION = timedelta(minutes=1)  # write last_seen/last_used at most this often


@dataclass(frozen=True)
class Principal:
    user_id: int
    username: str
    role: Role
    via: str  # "session" | "token"
    read_only: bool = False
    session_token: str | None = None  # binds the CSRF token for browser sessions
    must_change_password: bool = False

    def can(self, role: Role) -> bool:
        """May write what needs `role` (a read-only token writes nothing past a viewer's)."""
        if self.read_only and role is not Role.viewer:
            return False
        return self.role.rank >= role.rank

    @property
    def may_edit(self) -> bool:
        """The one rule for "may change endpoints, runs and profiles" (pages show the buttons)."""
        return self.can(Role.editor)

    @property
    def may_administer(self) -> bool:
        return self.can(Role.admin)

    @property
    def sees_excerpts(self) -> bool:
        """What a target said is for editors and admins, read-only tokens of theirs included."""
        return self.role.rank >= Role.editor.rank


async def start_session(
    session: AsyncSession, *, user: User, now: datetime, max_age_s: int, user_agent: str | None
) -> str:
    token = new_session_token()
    session.add(
        WebSession(
            id=token_hash(token),
            user_id=user.id,
            created_at=now,
            last_seen_at=now,
            expires_at=now + timedelta(seconds=max_age_s),
            user_agent=(user_agent or "")[:255] or None,
        )
    )
    await session.flush()
    return token


async def end_session(session: AsyncSession, *, token: str, now: datetime) -> None:
    await session.execute(
        update(WebSession)
        .where(WebSession.id == token_hash(token), WebSession.revoked_at.is_(None))
        .values(revoked_at=now)
    )


async def end_user_sessions(
    session: AsyncSession, *, user_id: int, now: datetime, keep: str | None = None
) -> None:
    """End every session of a user (after a password change), except the one holding `keep`."""
    query = update(WebSession).where(WebSession.user_id == user_id, WebSession.revoked_at.is_(None))
    if keep is not None:
        query = query.where(WebSession.id != token_hash(keep))
    await session.execute(query.values(revoked_at=now))


async def resolve_session(session: AsyncSession, *, token: str, now: datetime) -> Principal | None:
    row = (
        await session.execute(
            select(WebSession, User)
            .join(User, User.id == WebSession.user_id)
            .where(WebSession.id == token_hash(token))
        )
    ).one_or_none()
    if row is None:
        return None
    web_session, user = row
    if web_session.revoked_at is not None or web_session.expires_at <= now or not user.is_active:
        return None
    if now - web_session.last_seen_at > SEEN_RESOLUTION:
        web_session.last_seen_at = now
    return Principal(
        user.id,
        user.username,
        Role(user.role),
        "session",
        session_token=token,
        must_change_password=user.must_change_password,
    )


MAX_TOKEN_DAYS = 3650


async def create_token(
    session: AsyncSession,
    *,
    user_id: int,
    name: str,
    read_only: bool,
    now: datetime,
    expires_in_days: int | None = None,
) -> tuple[ApiToken, str]:
    token = new_api_token()
    row = ApiToken(
        user_id=user_id,
        name=name,
        token_hash=token_hash(token),
        prefix=token[:10],
        read_only=read_only,
        created_at=now,
        expires_at=None if expires_in_days is None else now + timedelta(days=expires_in_days),
    )
    session.add(row)
    await session.flush()
    return row, token


async def list_tokens(session: AsyncSession, *, user_id: int | None = None) -> list[ApiToken]:
    query = select(ApiToken).order_by(ApiToken.created_at.desc(), ApiToken.id.desc())
    if user_id is not None:
        query = query.where(ApiToken.user_id == user_id)
    return list((await session.scalars(query)).all())


async def revoke_token(
    session: AsyncSession, *, token_id: int, principal: Principal, now: datetime
) -> ApiToken:
    row = await session.get(ApiToken, token_id)
    if row is None or (row.user_id != principal.user_id and principal.role is not Role.admin):
        raise NotFound(f"token {token_id} does not exist")
    if row.revoked_at is None:
        row.revoked_at = now
    await session.flush()
    return row


async def resolve_token(session: AsyncSession, *, token: str, now: datetime) -> Principal | None:
    row = (
        await session.execute(
            select(ApiToken, User)
            .join(User, User.id == ApiToken.user_id)
            .where(ApiToken.token_hash == token_hash(token))
        )
    ).one_or_none()
    if row is None:
        return None
    api_token, user = row
    if api_token.revoked_at is not None or not user.is_active:
        return None
    if api_token.expires_at is not None and api_token.expires_at <= now:
        return None
    if api_token.last_used_at is None or now - api_token.last_used_at > SEEN_RESOLUTION:
        api_token.last_used_at = now
    return Principal(
        user.id,
        user.username,
        Role(user.role),
        "token",
        read_only=api_token.read_only,
        must_change_password=user.must_change_password,
    )
