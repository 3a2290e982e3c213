"""Pure ASGI middleware around the whole application (no buffering of streamed responses).

SecurityHeaders  the security headers on every response, HSTS when the public URL is https.
Guard            a request body size limit (413 before anything parses the body) and the one
                 place a server error is logged and answered: one line, no SQL parameters, an
                 error id the operator can find in the log.
"""

from __future__ import annotations

import logging
import re
import secrets
import traceback
from collections.abc import Callable

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("smartbench")

# Plotly sets inline styles on the charts it draws; scripts stay same-origin only.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
)
HSTS = b"max-age=31536000"


class SecurityHeaders:
    def __init__(self, app: ASGIApp, *, hsts: bool = False) -> None:
        self.app = app
        self.fixed: list[tuple[bytes, bytes]] = [
            (b"content-security-policy", CSP.encode()),
            (b"x-content-type-options", b"nosniff"),
            (b"x-frame-options", b"DENY"),
            (b"referrer-policy", b"same-origin"),
            (b"cross-origin-opener-policy", b"same-origin"),
        ]
        if hsts:
            self.fixed.append((b"strict-transport-security", HSTS))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        api = scope.get("path", "").startswith("/api/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers += [(name, value) for name, value in self.fixed if name not in present]
                if api and b"cache-control" not in present:
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


class BodyTooLarge(HTTPException):
    """Raised while the body is read: an HTTPException, so a framework that catches errors of
    body parsing passes it on as the 413 it is."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is larger than {limit} bytes")


ErrorPage = Callable[[Request, int, str], Response]


class Guard:
    """Refuses bodies over `max_body_bytes` (by Content-Length at once, or while a chunked body
    is read) and turns an unhandled exception into one log line and a 500 in the error shape."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        error_page: ErrorPage | None = None,
        uploads: re.Pattern[str] | None = None,
        max_upload_bytes: int | None = None,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.error_page = error_page
        # Paths that take files (result imports) have a limit of their own.
        self.uploads, self.max_upload_bytes = uploads, max_upload_bytes or max_body_bytes

    def is_upload(self, path: str) -> bool:
        return self.uploads is not None and self.uploads.fullmatch(path) is not None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        upload = self.is_upload(scope.get("path", ""))
        limit = self.max_upload_bytes if upload else self.max_body_bytes
        declared_length = 2**63  # a chunked body: its length is unknown
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared < 0 or declared > limit:
                    await self._answer(scope, receive, send, 413, self._too_large(limit))
                    return
                declared_length = declared
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        async def watching_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if upload and message["status"] >= 400 and received < declared_length:
                    # A refused upload: close instead of draining the rest of its body.
                    message["headers"] = [*message.get("headers", []), (b"connection", b"close")]
            await send(message)

        try:
            await self.app(scope, counting_receive, watching_send)
        except BodyTooLarge:
            if not started:
                await self._answer(scope, receive, send, 413, self._too_large(limit))
        except Exception as exc:
            error_id = secrets.token_hex(4)
            log.error(
                "server error %s on %s %s: %s at %s",
                error_id,
                scope.get("method"),
                scope.get("path"),
                type(exc).__name__,
                _where(exc),
            )
            if log.isEnabledFor(logging.DEBUG):
                log.debug(
                    "server error %s traceback:\n%s", error_id, "".join(traceback.format_exception(exc))
                )
            if not started:
                message = f"internal error (id {error_id} in the server log)"
                await self._answer(scope, receive, send, 500, message)

    @staticmethod
    def _too_large(limit: int) -> str:
        return f"the request body is larger than {limit} bytes"

    async def _answer(self, scope: Scope, receive: Receive, send: Send, status: int, message: str) -> None:
        path: str = scope.get("path", "")
        code = {413: "too_large", 500: "internal"}[status]
        response: Response
        if path.startswith("/api/") or path in ("/healthz", "/metrics") or self.error_page is None:
            response = JSONResponse({"error": {"code": code, "message": message}}, status_code=status)
        else:
            try:
                response = self.error_page(Request(scope), status, message)
            except Exception:  # the page itself failed: still answer
                response = PlainTextResponse(message, status_code=status)
        if status == 413:
            response.headers["connection"] = "close"
        await response(scope, receive, send)


def _where(exc: BaseException) -> str:
    """The innermost frame of smartbench's own code that the exception passed through."""
    frames = traceback.extract_tb(exc.__traceback__)
    own = [f for f in frames if "/app/" in f.filename]
    if not (own or frames):
        return "?"
    frame = (own or frames)[-1]
    return f"{frame.filename.rsplit('/app/', 1)[-1]}:{frame.lineno} in {frame.name}"
