"""Jinja2 rendering with what every page needs: the principal, a CSRF token, navigation."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from jinja2 import pass_context

from app import __version__
from app.config import Settings
from app.domain import RunSource
from app.paths import resource_dir
from app.security import keyring
from app.security.csrf import ANON_COOKIE, cookie_name, csrf_token
from app.security.redact import shown
from app.security.tokens import new_session_token

templates = Jinja2Templates(directory=str(resource_dir("templates")))
templates.env.globals["version"] = __version__


@pass_context
def _url_for(context: Any, name: str, /, **path_params: Any) -> str:
    """Site-relative links: correct behind any proxy, whatever Host the request carried.

    A page of a hundred rows asks for hundreds of links, and resolving a name walks every route;
    so each (name, parameter names) is resolved once per app, with placeholders, and the values
    are filled in as the router would (`str(value)`)."""
    request: Request = context["request"]
    key = (name, tuple(sorted(path_params)))
    if key not in _PATHS:
        try:
            _PATHS[key] = request.app.url_path_for(name, **{p: f"\x00{p}\x00" for p in path_params})
        except Exception:  # a convertor that refuses the placeholder: resolve each time
            _PATHS[key] = None
    template = _PATHS[key]
    if template is None:
        return request.url_for(name, **path_params).path
    for param, value in path_params.items():
        template = template.replace(f"\x00{param}\x00", str(value))
    return request.scope.get("root_path", "") + template


_PATHS: dict[tuple[str, tuple[str, ...]], str | None] = {}  # the routes are the code's: one table


templates.env.globals["url_for"] = _url_for
templates.env.filters["shown"] = shown  # a target's excerpt only for those who may see it


def _synthetic(source: object) -> bool:
    """`{% if run.source is synthetic %}`: generated history, never a measurement."""
    return source == RunSource.synthetic


def _imported(source: object) -> bool:
    """`{% if run.source is imported %}`: measured by another tool (an unknown source too)."""
    if not source:
        return False
    try:
        return RunSource(str(source)).is_imported
    except ValueError:
        return True


templates.env.tests["synthetic"] = _synthetic
templates.env.tests["imported"] = _imported


def cookie_secure(request: Request, settings: Settings) -> bool:
    if settings.access.cookie_secure is not None or settings.access.https:
        return settings.access.https
    return request.url.scheme == "https"


def set_cookie(
    response: Response, request: Request, base: str, value: str, *, max_age: int | None = None
) -> None:
    """Our cookies: HttpOnly, SameSite=Lax, path /, Secure (and __Host-) when served over https."""
    settings: Settings = request.app.state.settings
    response.set_cookie(
        cookie_name(base, settings.access.https),
        value,
        max_age=max_age,
        httponly=True,
        samesite="lax",
        secure=cookie_secure(request, settings),
        path="/",
    )


def read_cookie(request: Request, base: str) -> str | None:
    settings: Settings = request.app.state.settings
    return request.cookies.get(cookie_name(base, settings.access.https))


def render(
    request: Request, template: str, context: Mapping[str, object] | None = None, *, status_code: int = 200
) -> HTMLResponse:
    settings: Settings = request.app.state.settings
    principal = getattr(request.state, "principal", None)
    new_anon: str | None = None
    if principal is not None and principal.session_token:
        binding = principal.session_token
    else:
        binding = read_cookie(request, ANON_COOKIE) or ""
        if not binding:
            binding = new_anon = new_session_token()
    ctx = {
        "principal": principal,
        "can_edit": principal is not None and principal.may_edit,
        "can_admin": principal is not None and principal.may_administer,
        "csrf_token": csrf_token(keyring.session_secret(settings), binding),
        "public_read": settings.access.public_read,
        **(context or {}),
    }
    response = templates.TemplateResponse(request, template, ctx, status_code=status_code)
    if new_anon:
        set_cookie(response, request, ANON_COOKIE, new_anon)
    response.headers.setdefault("cache-control", "no-store")
    return response


def render_error(
    request: Request, status_code: int, message: str, *, login_redirect: bool = False
) -> Response:
    if login_redirect and request.method == "GET":
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)
    titles = {
        401: "Log in needed",
        403: "Not allowed",
        404: "Not found",
        405: "Method not allowed",
        409: "Conflict",
        422: "Invalid request",
        429: "Too soon",
        500: "Server error",
        503: "Unavailable",
    }
    return render(
        request,
        "error.html",
        {"status_code": status_code, "title": titles.get(status_code, "Error"), "message": message},
        status_code=status_code,
    )


def safe_next(target: str | None) -> str:
    """Only same-site relative paths: never an open redirect."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target
