"""The agents page: every agent (location, labels, version, host cores, last heartbeat, current
run, online), and for admins the agent tokens: mint one for a location (shown once), revoke."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from app.api.agents import AgentTokenCreate, AgentTokenRead, to_read
from app.deps import AdminDep, NowDep, ReaderDep, RowId, SessionDep, SettingsDep
from app.errors import AppError
from app.schemas import field_errors
from app.services import agents, locations
from app.web.forms import form_str
from app.web.templating import render

router = APIRouter(prefix="/agents")


async def _page(
    request: Request, session: SessionDep, settings: SettingsDep, now: NowDep, *, admin: bool,
    values: dict[str, str] | None = None, errors: dict[str, str] | None = None, created: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:  # fmt: skip
    offline = settings.runs.agent_offline_s
    shares = await locations.client_bound_shares(session, since=now - timedelta(days=7))
    listed = [to_read(agent, now, offline, shares) for agent in await agents.listing(session)]
    tokens = [AgentTokenRead.model_validate(t) for t in await agents.tokens(session)] if admin else []
    return render(
        request,
        "agents.html",
        {"agents": listed, "tokens": tokens, "values": values or {"location": "", "name": ""},
         "errors": errors or {}, "created": created, "offline_after_s": offline},
        status_code=status_code,
    )  # fmt: skip


@router.get("", name="agents_page")
async def agents_page(
    request: Request, session: SessionDep, settings: SettingsDep, now: NowDep, user: ReaderDep
) -> HTMLResponse:
    admin = user is not None and user.may_administer
    return await _page(request, session, settings, now, admin=admin)


@router.post("/tokens", name="agent_token_create")
async def create_token(
    request: Request, session: SessionDep, settings: SettingsDep, now: NowDep, user: AdminDep
) -> Response:
    form = await request.form()
    values = {"location": form_str(form, "location").strip(), "name": form_str(form, "name").strip()}
    try:
        body = AgentTokenCreate.model_validate(values)
        _, token = await agents.mint(
            session, location=body.location, name=body.name, by=user.user_id, now=now
        )
    except ValidationError as exc:
        return await _page(request, session, settings, now, admin=True, values=values,
                           errors=field_errors(exc), status_code=400)  # fmt: skip
    except AppError as exc:
        return await _page(request, session, settings, now, admin=True, values=values,
                           errors=exc.fields or {"location": exc.message}, status_code=400)  # fmt: skip
    return await _page(request, session, settings, now, admin=True, created=token)


@router.post("/tokens/{token_id}/revoke", name="agent_token_revoke")
async def revoke_token(
    request: Request, token_id: RowId, session: SessionDep, now: NowDep, _: AdminDep
) -> Response:
    await agents.revoke(session, token_id=token_id, now=now)
    return RedirectResponse(request.url_for("agents_page").path, status_code=303)
