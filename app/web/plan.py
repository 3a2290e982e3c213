"""/plan: the capacity planner's page (the same service as /api/v1/plan)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from app.deps import NowDep, ReaderDep, SessionDep
from app.services import plan as planner
from app.services import profiles, scorecards
from app.web.templating import render

router = APIRouter()


@router.get("/plan", name="plan")
async def plan_page(
    request: Request,
    session: SessionDep,
    now: NowDep,
    _: ReaderDep,
    profile: Annotated[str | None, Query(max_length=64)] = None,
    demand: Annotated[float, Query(gt=0, le=1e9)] = 100.0,
    unit: Literal["users", "rps"] = "users",
    headroom: Annotated[float, Query(ge=0, le=1000)] = 20.0,
    sort: str = "dollars_per_hour",
) -> HTMLResponse:
    chosen = profile or await scorecards.default_profile(session)
    sort = sort if sort in planner.SORTS else "dollars_per_hour"
    rows = planner.sort_rows(
        await planner.plan(
            session, profile=chosen, demand=demand, unit=unit, headroom=headroom / 100.0, now=now
        ),
        sort,
    )
    return render(
        request,
        "plan.html",
        {"rows": rows, "profile": chosen, "profiles": [p.name for p in await profiles.list_all(session)],
         "demand": demand, "unit": unit, "headroom": headroom, "sort": sort},
    )  # fmt: skip
