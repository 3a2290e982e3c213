"""Argon2id password hashes (argon2-cffi, RFC 9106 low-memory profile) and the password policy.

Hashing takes about 50 ms of CPU and 64 MiB: the async wrappers run it in a worker thread
(argon2-cffi releases the GIL), at most HASH_CONCURRENCY at a time, so a burst of logins never
stalls the event loop that serves pages and runs probes."""

from __future__ import annotations

import functools
import string
from pathlib import Path

import anyio
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from argon2.profiles import RFC_9106_LOW_MEMORY

_hasher = PasswordHasher.from_parameters(RFC_9106_LOW_MEMORY)

MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 1024
HASH_CONCURRENCY = 4
COMMON_FILE = Path(__file__).with_name("common-passwords.txt")

# Verified against when the user does not exist, so that a wrong name costs as long as a wrong password.
_DUMMY_HASH = _hasher.hash("smartbench-timing-equaliser")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


@functools.cache
def _limiter() -> anyio.CapacityLimiter:
    return anyio.CapacityLimiter(HASH_CONCURRENCY)


async def hash_password_async(password: str) -> str:
    return await anyio.to_thread.run_sync(hash_password, password, limiter=_limiter())


async def verify_password_async(password_hash: str | None, password: str) -> bool:
    return await anyio.to_thread.run_sync(verify_password, password_hash, password, limiter=_limiter())


def needs_rehash(password_hash: str) -> bool:
    return _hasher.check_needs_rehash(password_hash)


@functools.cache
def common_passwords() -> frozenset[str]:
    lines = COMMON_FILE.read_text(encoding="utf-8").splitlines()
    return frozenset(line.strip().lower() for line in lines if line.strip() and not line.startswith("#"))


_EDGES = string.digits + string.punctuation + " "


def password_problem(password: str, *, username: str | None = None) -> str | None:
    """Why a new password is refused, or None: too short or long, a common password (also
    with digits or symbols around it), or the user's own name."""
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"use at least {MIN_PASSWORD_LENGTH} characters"
    if len(password) > MAX_PASSWORD_LENGTH:
        return f"use at most {MAX_PASSWORD_LENGTH} characters"
    lowered = password.lower()
    core = lowered.strip(_EDGES)
    common = common_passwords()
    if lowered in common or (len(core) >= 4 and core in common) or len(set(lowered)) < 4:
        return "this password is among the most common ones; choose another"
    if username and username.lower() in (lowered, core):
        return "do not use your user name as the password"
    if core in ("smartbench", "smartbenchadmin"):
        return "do not use the application's name as the password"
    return None
