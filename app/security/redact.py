"""Secrets never leave, and what a target said is shown only to those who may see it.

- `Redactor` removes an endpoint's API key from text and bytes, in the forms a target may echo
  it back (as sent, URL-encoded, JSON-escaped), before anything is truncated, stored or shown.
- Text a target sent (an error body, a redirect's Location, a malformed line) is wrapped as an
  *excerpt* between « and ». Editors and admins see excerpts; viewers and anonymous readers see
  «…» in their place: a target's answer can hold internal details (a reverse proxy's page, a
  stack trace). Who may see them is passed explicitly: `model_dump(context=VISIBLE)` (the CLI's
  JSON, the operator's own terminal), else the request's right, which the principal dependency
  sets for each request. With neither, excerpts are hidden.
"""

from __future__ import annotations

import contextvars
import re
from urllib.parse import quote

import orjson

REDACTED = "[redacted]"
MIN_SECRET = 4  # shorter values are not secrets worth mangling every text for
OPEN, CLOSE = "«", "»"
_EXCERPT_RE = re.compile(f"{OPEN}[^{CLOSE}]*(?:{CLOSE}|$)")
MASK = f"{OPEN}…{CLOSE}"

excerpts_visible: contextvars.ContextVar[bool] = contextvars.ContextVar("excerpts_visible", default=False)
VISIBLE = {"excerpts": True}  # a serialisation context for whoever may see excerpts (the operator)


class Redactor:
    def __init__(self, *secrets: str | None) -> None:
        forms: set[str] = set()
        for secret in secrets:
            if not secret or len(secret) < MIN_SECRET:
                continue
            forms |= {secret, quote(secret, safe=""), orjson.dumps(secret).decode()[1:-1]}
        self.forms = sorted(forms, key=len, reverse=True)  # longest first: no half-replaced secret
        self.byte_forms = [f.encode() for f in self.forms]

    def __bool__(self) -> bool:
        return bool(self.forms)

    def text(self, value: str) -> str:
        for form in self.forms:
            value = value.replace(form, REDACTED)
        return value

    def bytes(self, value: bytes) -> bytes:
        for form in self.byte_forms:
            value = value.replace(form, REDACTED.encode())
        return value


def excerpt(text: str) -> str:
    """Mark text that a target sent; its own « » cannot close the mark early."""
    return OPEN + text.replace(OPEN, "‹").replace(CLOSE, "›") + CLOSE


def mask(text: str) -> str:
    return _EXCERPT_RE.sub(MASK, text)


def shown(text: str | None, context: object = None) -> str | None:
    """The text as its reader may see it: the serialisation `context`'s right when it says
    (`{"excerpts": bool}`), else this request's; hidden by default."""
    said = context.get("excerpts") if isinstance(context, dict) else None
    visible = excerpts_visible.get() if said is None else bool(said)
    if text is None or visible:
        return text
    return mask(text)
