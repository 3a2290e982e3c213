"""Login, logout, password change and API tokens (settings page)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from app.deps import (
    LoggedInDep,
    NowDep,
    PrincipalDep,
    RowId,
    SessionDep,
    SessionWriterDep,
    SettingsDep,
    ViewerWriteDep,
    check_csrf,
)
from app.security.csrf import SESSION_COOKIE, cookie_name
from app.services import auth, users
from app.web.forms import form_str
from app.web.templating import read_cookie, render, safe_next, set_cookie

router = APIRouter()


@router.get("/login", name="login")
async def login_page(request: Request, principal: PrincipalDep, next: str = "/") -> Response:
    if principal is not None and principal.via == "session":
        return RedirectResponse(safe_next(next), status_code=303)
    return render(request, "login.html", {"next": safe_next(next), "username": "", "error": None})


@router.post("/login")
async def login(
    request: Request, session: SessionDep, settings: SettingsDep, now: NowDep, principal: PrincipalDep
) -> Response:
    await check_csrf(request, None if principal is None else principal, settings)
    form = await request.form()
    username, password, target = (
        form_str(form, "username"),
        form_str(form, "password"),
        form_str(form, "next"),
    )
    address = request.client.host if request.client else None
    result = await users.authenticate(session, username=username, password=password, address=address, now=now)
    if result.user is None:
        context = {"next": safe_next(target), "username": username, "error": "Wrong user name or password."}
        if result.throttled is not None:
            wait = result.throttled.retry_after_s
            context["error"] = f"Too many failed logins. Try again in {wait} s."
            page = render(request, "login.html", context, status_code=429)
            page.headers["Retry-After"] = str(wait)
            return page
        return render(request, "login.html", context, status_code=400)
    user = result.user
    old = read_cookie(request, SESSION_COOKIE)
    if old:
        await auth.end_session(session, token=old, now=now)
    token = await auth.start_session(
        session,
        user=user,
        now=now,
        max_age_s=settings.access.session_max_age_s,
        user_agent=request.headers.get("user-agent"),
    )
    response = RedirectResponse(
        "/account/password" if user.must_change_password else safe_next(target), status_code=303
    )
    set_cookie(response, request, SESSION_COOKIE, token, max_age=settings.access.session_max_age_s)
    return response


@router.post("/logout", name="logout")
async def logout(
    request: Request, session: SessionDep, now: NowDep, settings: SettingsDep, principal: PrincipalDep
) -> Response:
    await check_csrf(request, principal, settings)
    token = read_cookie(request, SESSION_COOKIE)
    if token:
        await auth.end_session(session, token=token, now=now)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(
        cookie_name(SESSION_COOKIE, settings.access.https), path="/", secure=settings.access.https
    )
    return response


@router.get("/account/password", name="password_page")
async def password_page(request: Request, user: LoggedInDep, session: SessionDep) -> HTMLResponse:
    account = await users.get(session, user.user_id)
    return render(request, "account/password.html", {"errors": {}, "forced": account.must_change_password})


@router.post("/account/password")
async def change_password(
    request: Request, user: ViewerWriteDep, session: SessionDep, now: NowDep
) -> Response:
    form = await request.form()
    errors = await users.change_password(
        session,
        user_id=user.user_id,
        current=form_str(form, "current"),
        new=form_str(form, "new"),
        again=form_str(form, "again"),
        now=now,
        keep_session=user.session_token,
    )
    if errors:
        return render(
            request,
            "account/password.html",
            {"errors": errors, "forced": user.must_change_password},
            status_code=400,
        )
    return render(request, "account/password.html", {"errors": {}, "forced": False, "changed": True})


@router.get("/settings/tokens", name="tokens_page")
async def tokens_page(request: Request, user: LoggedInDep, session: SessionDep) -> HTMLResponse:
    rows = await auth.list_tokens(session, user_id=user.user_id)
    return render(
        request, "settings/tokens.html", {"tokens": rows, "errors": {}, "created": None, "name": ""}
    )


@router.post("/settings/tokens")
async def create_token(
    request: Request, user: SessionWriterDep, session: SessionDep, now: NowDep
) -> HTMLResponse:
    form = await request.form()
    name = form_str(form, "name").strip()
    read_only = form.get("read_only") == "on"
    expiry = form_str(form, "expires_in_days").strip()
    errors: dict[str, str] = {}
    if not 1 <= len(name) <= 100:
        errors["name"] = "give the token a name of 1 to 100 characters"
    days = int(expiry) if expiry.isdigit() else None
    if expiry and (days is None or not 1 <= days <= auth.MAX_TOKEN_DAYS):
        errors["expires_in_days"] = (
            f"give a number of days from 1 to {auth.MAX_TOKEN_DAYS}, or leave it empty"
        )
    created = None
    if not errors:
        _, created = await auth.create_token(
            session, user_id=user.user_id, name=name, read_only=read_only, now=now, expires_in_days=days
        )
    rows = await auth.list_tokens(session, user_id=user.user_id)
    return render(
        request,
        "settings/tokens.html",
        {"tokens": rows, "errors": errors, "created": created, "name": "" if created else name},
        status_code=400 if errors else 201,
    )


@router.post("/settings/tokens/{token_id}/revoke", name="revoke_token")
async def revoke_token(
    token_id: RowId, user: ViewerWriteDep, session: SessionDep, now: NowDep
) -> RedirectResponse:
    await auth.revoke_token(session, token_id=token_id, principal=user, now=now)
    return RedirectResponse("/settings/tokens", status_code=303)
