"""Random secrets for sessions and API tokens, stored only as SHA-256."""

from __future__ import annotations

import hashlib
import secrets

API_TOKEN_PREFIX = "sbt_"


def new_session_token() -> str:
    return secrets.token_urlsafe(32)


def new_api_token() -> str:
    return API_TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    """Tokens carry 256 random bits, so a fast hash suffices: nothing to brute-force."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_password() -> str:
    """A one-time password for the first admin: 20 characters, about 119 bits."""
    return secrets.token_urlsafe(15)
