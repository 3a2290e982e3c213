"""Failed logins earn a back-off, per account and per client address.

An account gets ACCOUNT_FREE wrong passwords; each further one doubles the wait before the next
try (1 s, 2 s, 4 s ... up to CAP). A client address gets ADDRESS_FREE, then the same. While a key
waits, a login answers 429 with Retry-After and no password is checked, the right one included.
The account key is the name as typed, so a name that does not exist earns the same back-off
(no user enumeration). A successful login clears its account's key; an address key fades a
day after its last failure. An admin lifts either on the settings page (or `smartbench user
unlock`). Rows live in the database, so every process serving the site sees the same counts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import LoginThrottle

ACCOUNT_FREE = 5
ADDRESS_FREE = 20
CAP = timedelta(minutes=15)
FADE = timedelta(days=1)  # a key whose last failure is older than this starts over


def account_key(username: str) -> str:
    return "account:" + username.strip().lower()[:150]


def address_key(address: str | None) -> str:
    return "address:" + (address or "unknown")[:150]


@dataclass(frozen=True)
class Throttled:
    retry_after_s: int


def _free(key: str) -> int:
    return ACCOUNT_FREE if key.startswith("account:") else ADDRESS_FREE


def backoff(key: str, failures: int) -> timedelta:
    """The wait after `failures` consecutive failures of this key."""
    over = failures - _free(key)
    if over < 0:
        return timedelta(0)
    return min(CAP, timedelta(seconds=2 ** min(over, 20)))


async def check(session: AsyncSession, keys: list[str], now: datetime) -> Throttled | None:
    """Whether a login for these keys must wait, and how long."""
    rows = (await session.scalars(select(LoginThrottle).where(LoginThrottle.key.in_(keys)))).all()
    wait = max(
        (
            (row.blocked_until - now).total_seconds()
            for row in rows
            if row.blocked_until is not None and now - row.last_failure_at < FADE
        ),
        default=0.0,
    )
    return Throttled(max(1, math.ceil(wait))) if wait > 0 else None


async def failed(session: AsyncSession, keys: list[str], now: datetime) -> None:
    for key in keys:
        row = await session.get(LoginThrottle, key)
        if row is None:
            try:
                async with session.begin_nested():
                    session.add(LoginThrottle(key=key, failures=0, last_failure_at=now))
            except IntegrityError:  # another process counted this key first
                pass
            row = await session.get(LoginThrottle, key, populate_existing=True)
            assert row is not None
        if now - row.last_failure_at >= FADE:
            row.failures = 0
        row.failures += 1
        row.last_failure_at = now
        wait = backoff(key, row.failures)
        row.blocked_until = now + wait if wait else None
    await session.flush()


async def succeeded(session: AsyncSession, username: str) -> None:
    await session.execute(delete(LoginThrottle).where(LoginThrottle.key == account_key(username)))


async def blocked(session: AsyncSession, now: datetime) -> list[LoginThrottle]:
    """Keys that are waiting now or have used up their free failures, most recent first."""
    rows = await session.scalars(
        select(LoginThrottle)
        .where(
            LoginThrottle.last_failure_at > now - FADE,
            or_(LoginThrottle.blocked_until > now, LoginThrottle.failures >= ACCOUNT_FREE),
        )
        .order_by(LoginThrottle.last_failure_at.desc())
        .limit(200)
    )
    return [row for row in rows.all() if row.failures >= _free(row.key) or row.blocked_until]


async def lift(session: AsyncSession, key: str) -> bool:
    result = await session.execute(delete(LoginThrottle).where(LoginThrottle.key == key))
    return bool(getattr(result, "rowcount", 0))
