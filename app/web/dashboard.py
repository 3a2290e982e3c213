"""Overview, trends and compare pages: rendered from the same builders as their JSON twins."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from app.deps import LocationFilter, NowDep, ReaderDep, RowId, SessionDep
from app.services import alerts, pages, profiles, scorecards, trends
from app.services import endpoints as endpoint_service
from app.web import figures
from app.web.templating import render

router = APIRouter()


@router.get("/", name="overview")
async def overview(
    request: Request,
    session: SessionDep,
    now: NowDep,
    _: ReaderDep,
    profile: str | None = None,
    sort: str = "name",
) -> HTMLResponse:
    chosen = profile or await scorecards.default_profile(session)
    sort = sort if sort in scorecards.SORTS else "name"
    cards = await scorecards.overview(session, profile=chosen, now=now, sort=sort)
    sparks = {card.endpoint_id: figures.sparkline(card.trend) for card in cards}
    all_profiles = [p.name for p in await profiles.list_all(session)]
    recent_alerts, open_alerts = await alerts.listing(session, limit=10)
    return render(
        request,
        "overview.html",
        {"cards": cards, "profile": chosen, "profiles": all_profiles, "sort": sort, "sparks": sparks,
         "recent_alerts": recent_alerts, "open_alerts": open_alerts},
    )  # fmt: skip


@router.get("/trends", name="trends")
async def trends_page(
    request: Request,
    session: SessionDep,
    now: NowDep,
    _: ReaderDep,
    days: int = Query(30, ge=1, le=3650),
    profile: str | None = None,
    endpoint: list[RowId] = Query(default_factory=list),
    location: LocationFilter = None,
) -> HTMLResponse:
    chosen = profile or await scorecards.default_profile(session)
    data = await trends.cost_trends(
        session, profile=chosen, since=now - timedelta(days=days), until=now, endpoint_ids=endpoint,
        location=location or None,
    )  # fmt: skip
    figure = await asyncio.to_thread(
        figures.cost_trend, data.series, markers=data.markers, changes=data.change_points
    )
    all_profiles = [p.name for p in await profiles.list_all(session)]
    all_endpoints, _total = await endpoint_service.list_page(session, limit=500)
    return render(
        request,
        "trends.html",
        {"data": data, "figure": figure, "days": days, "profile": chosen, "profiles": all_profiles,
         "endpoints": all_endpoints, "picked": [s.endpoint_id for s in data.series]},
    )  # fmt: skip


@router.get("/compare", name="compare")
async def compare(
    request: Request,
    session: SessionDep,
    now: NowDep,
    _: ReaderDep,
    profile: str | None = None,
    endpoint: list[RowId] = Query(default_factory=list),
    location: LocationFilter = None,
    by_location: bool = False,
) -> HTMLResponse:
    data = await pages.compare_page(
        session,
        profile=profile,
        endpoint_ids=endpoint,
        now=now,
        location=location or None,
        by_location=by_location,
    )
    located = data.by_location or bool(data.mixed_locations)
    curves = [
        (f"{c.endpoint} from {c.location}" if located else c.endpoint, c.steps, c.gpu_count)
        for c in data.curves
    ]
    figure = await asyncio.to_thread(figures.tradeoff, curves, data.slo_tpot_ms) if curves else None
    all_profiles = [p.name for p in await profiles.list_all(session)]
    all_endpoints, _total = await endpoint_service.list_page(session, limit=500)
    return render(
        request,
        "compare.html",
        {"page": data, "cards": data.cards, "profile": data.profile, "profiles": all_profiles,
         "endpoints": all_endpoints, "picked": data.picked, "figure": figure},
    )  # fmt: skip
