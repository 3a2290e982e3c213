"""Domain errors: raised once by services and dependencies, rendered twice (JSON under /api/,
an HTML page elsewhere). Every API error has one shape:

    {"error": {"code": "not_found", "message": "...", "fields": {"base_url": "..."}}}
"""

from __future__ import annotations


class AppError(Exception):
    status_code = 400
    code = "bad_request"

    def __init__(self, message: str, *, fields: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields or {}

    def body(self) -> dict[str, object]:
        error: dict[str, object] = {"code": self.code, "message": self.message}
        if self.fields:
            error["fields"] = self.fields
        return {"error": error}


class NotFound(AppError):
    status_code = 404
    code = "not_found"


class Conflict(AppError):
    status_code = 409
    code = "conflict"


class Unauthorized(AppError):
    status_code = 401
    code = "unauthorized"


class Forbidden(AppError):
    status_code = 403
    code = "forbidden"


class CsrfFailed(Forbidden):
    code = "csrf_failed"


class PasswordChangeRequired(Forbidden):
    code = "password_change_required"


class ValidationFailed(AppError):
    status_code = 422
    code = "validation_failed"


class TooSoon(AppError):
    """429: the same thing was asked a moment ago or is still under way; `retry_after` seconds."""

    status_code = 429
    code = "too_soon"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = max(1, retry_after)


class Unavailable(AppError):
    status_code = 503
    code = "unavailable"
