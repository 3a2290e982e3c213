"""Webhook signatures: HMAC-SHA256 over "<timestamp>.<body>" (the scheme Stripe and Slack use
for their own webhooks), so a receiver can tell smartbench's deliveries from anyone else's and
refuse a replay of an old one.

Headers: `X-Smartbench-Timestamp: <unix seconds>` and
`X-Smartbench-Signature: sha256=<hex digest>`. A receiver recomputes the digest with the shared
secret, compares in constant time, and refuses timestamps older than a few minutes.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

SIGNATURE_HEADER = "X-Smartbench-Signature"
TIMESTAMP_HEADER = "X-Smartbench-Timestamp"
TOLERANCE_S = 300


def new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def sign(secret: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify(secret: str, timestamp: str, body: bytes, signature: str, *, now: float) -> bool:
    """What a receiver does (smartbench's tests use it as one)."""
    try:
        stamp = int(timestamp)
    except ValueError:
        return False
    if abs(now - stamp) > TOLERANCE_S:
        return False
    return hmac.compare_digest(sign(secret, stamp, body), signature)
