"""Users: create, authenticate, and the first admin."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import NotFound, ValidationFailed
from app.models import Role, User
from app.security.passwords import hash_password, needs_rehash, password_problem, verify_password
from app.security.tokens import new_password

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
    if (msg := password_problem(password)) is not None:
        problems["password"] = msg
    if problems:
        raise ValidationFailed("cannot create this user", fields=problems)
    if await session.scalar(select(User.id).where(func.lower(User.username) == username.lower())):
        raise ValidationFailed("that user exists", fields={"username": f"{username!r} already exists"})
    user = User(username=username, password_hash=hash_password(password), role=role.value)
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


async def authenticate(session: AsyncSession, *, username: str, password: str, now: datetime) -> User | None:
    user = await session.scalar(select(User).where(func.lower(User.username) == username.strip().lower()))
    ok = verify_password(user.password_hash if user else None, password)
    if user is None or not ok or not user.is_active:
        return None
    if needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    user.last_login_at = now
    await session.flush()
    return user


async def set_password(session: AsyncSession, *, user: User, password: str) -> None:
    if (msg := password_problem(password)) is not None:
        raise ValidationFailed("cannot use this password", fields={"password": msg})
    user.password_hash = hash_password(password)
    user.must_change_password = False
    await session.flush()


async def ensure_first_admin(
    session: AsyncSession, *, username: str, password: str | None
) -> FirstAdmin | None:
    """Create the first admin when there are no users. Returns what to tell the operator, once."""
    if await session.scalar(select(func.count(User.id))):
        return None
    generated = password is None
    secret = password if password is not None else new_password()
    if (msg := password_problem(secret)) is not None:
        raise ValidationFailed(f"SMARTBENCH_ADMIN_PASSWORD is not acceptable: {msg}")
    user = await create(session, username=username, password=secret, role=Role.admin)
    user.must_change_password = generated
    await session.flush()
    return FirstAdmin(username=username, password=secret if generated else None)
