"""CSRF protection: an HMAC token bound to the browser's session (or, before login, to a random
pre-session cookie), required on every unsafe form post and cookie-authenticated API write, plus
a same-origin check on the Origin (or Referer) header."""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import urlsplit

CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
ANON_COOKIE = "smartbench_anon"
SESSION_COOKIE = "smartbench_session"


def cookie_name(base: str, https: bool) -> str:
    """Served over https, cookies take the __Host- prefix: browsers then accept them only when
    Secure, for path /, without a Domain, so no sibling subdomain can set or shadow them."""
    return "__Host-" + base if https else base


def csrf_token(secret: bytes, binding: str) -> str:
    return hmac.new(secret, b"csrf:" + binding.encode(), hashlib.sha256).hexdigest()


def csrf_valid(secret: bytes, binding: str | None, presented: str | None) -> bool:
    if not binding or not presented:
        return False
    return hmac.compare_digest(csrf_token(secret, binding), presented)


def same_origin(origin: str | None, referer: str | None, host: str | None, scheme: str) -> bool:
    """True when the request says it comes from this site, or says nothing (non-browser clients).

    Browsers send Origin on every cross-site POST, so a foreign Origin is refused outright; the
    CSRF token covers clients that send neither header."""
    source = origin if origin and origin != "null" else referer
    if origin == "null":
        return False
    if not source:
        return True
    parts = urlsplit(source)
    if not host:
        return False
    return parts.netloc.lower() == host.lower() and parts.scheme in (scheme, "http", "https")
