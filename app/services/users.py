"""Users: create, authenticate, and the first admin."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import NotFound, ValidationFailed
from app.models import Role, User
from app.security.passwords import (
    hash_password_async,
    needs_rehash,
    password_problem,
    verify_password_async,
)
from app.security.tokens import new_password
from app.services import auth, throttle

log = logging.getLogger("smartbench.users")

USERNAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-@")


@dataclass(frozen=True)
class FirstAdmin:
    username: str
    password: str | None  # the one-time password when we generated it; None when it came from settings


def username_problem(username: str) -> str | None:
    if not 1 <= len(username) <= 64 or not set(username) <= USERNAME_CHARS:
        return "use 1 to 64 letters, digits or . _ - @"
    return None


async def create(session: AsyncSession, *, username: str, password: str, role: Role) -> User:
    problems: dict[str, str] = {}
    if (msg := username_problem(username)) is not None:
        problems["username"] = msg
    if (msg := password_problem(password, username=username)) is not None:
        problems["password"] = msg
    if problems:
        raise ValidationFailed("cannot create this user", fields=problems)
    if await session.scalar(select(User.id).where(func.lower(User.username) == username.lower())):
        raise ValidationFailed("that user exists", fields={"username": f"{username!r} already exists"})
    user = User(username=username, password_hash=await hash_password_async(password), role=role.value)
    session.add(user)
    await session.flush()
    return user


async def get(session: AsyncSession, user_id: int) -> User:
    user = await session.get(User, user_id)
    if user is None:
        raise NotFound(f"user {user_id} does not exist")
    return user


async def get_by_name(session: AsyncSession, username: str) -> User:
    user = await session.scalar(select(User).where(func.lower(User.username) == username.lower()))
    if user is None:
        raise NotFound(f"no user is named {username!r}")
    return user


@dataclass(frozen=True)
class LoginResult:
    user: User | None
    throttled: throttle.Throttled | None = None


async def authenticate(
    session: AsyncSession, *, username: str, password: str, address: str | None, now: datetime
) -> LoginResult:
    """Check a login against the back-off first, then the password (in a worker thread). A
    failure counts against the name as typed and the client address, whether the user exists
    or not."""
    keys = [throttle.account_key(username), throttle.address_key(address)]
    if (waiting := await throttle.check(session, keys, now)) is not None:
        return LoginResult(None, waiting)
    user = await session.scalar(select(User).where(func.lower(User.username) == username.strip().lower()))
    ok = await verify_password_async(user.password_hash if user else None, password)
    if user is None or not ok or not user.is_active:
        await throttle.failed(session, keys, now)
        return LoginResult(None)
    await throttle.succeeded(session, username)
    if needs_rehash(user.password_hash):
        user.password_hash = await hash_password_async(password)
    user.last_login_at = now
    await session.flush()
    return LoginResult(user)


async def set_password(
    session: AsyncSession, *, user: User, password: str, now: datetime, keep_session: str | None = None
) -> None:
    """A new password: every session of the user ends but `keep_session` (the one that changed
    it, if any)."""
    if (msg := password_problem(password, username=user.username)) is not None:
        raise ValidationFailed("cannot use this password", fields={"password": msg})
    user.password_hash = await hash_password_async(password)
    user.must_change_password = False
    await auth.end_user_sessions(session, user_id=user.id, now=now, keep=keep_session)
    await session.flush()


async def change_password(
    session: AsyncSession,
    *,
    user_id: int,
    current: str,
    new: str,
    again: str,
    now: datetime,
    keep_session: str | None,
) -> dict[str, str]:
    """The password form: {field: problem}, empty when the password changed. A wrong current
    password counts against the account's login back-off."""
    account = await get(session, user_id)
    key = [throttle.account_key(account.username)]
    if (waiting := await throttle.check(session, key, now)) is not None:
        return {"current": f"too many wrong passwords; try again in {waiting.retry_after_s} s"}
    errors: dict[str, str] = {}
    if not await verify_password_async(account.password_hash, current):
        await throttle.failed(session, key, now)
        errors["current"] = "this is not your current password"
    if new != again:
        errors["again"] = "the two new passwords differ"
    if not errors:
        try:
            await set_password(session, user=account, password=new, now=now, keep_session=keep_session)
        except ValidationFailed as exc:
            errors["new"] = exc.fields.get("password", exc.message)
    return errors


async def ensure_first_admin(
    session: AsyncSession, *, username: str, password: str | None
) -> FirstAdmin | None:
    """Create the first admin when there are no users. Returns what to tell the operator, once."""
    if await session.scalar(select(func.count(User.id))):
        return None
    generated = password is None
    secret = password if password is not None else new_password()
    if (msg := password_problem(secret, username=username)) is not None:
        raise ValidationFailed(f"SMARTBENCH_ADMIN_PASSWORD is not acceptable: {msg}")
    user = await create(session, username=username, password=secret, role=Role.admin)
    user.must_change_password = generated
    await session.flush()
    return FirstAdmin(username=username, password=secret if generated else None)
