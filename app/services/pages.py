"""Page assembly: what the endpoint and compare pages show, as typed models. The pages render
them (with their figures) and the API returns them, so a page and its JSON twin cannot drift."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from app.domain import percentile_key
from app.models import LOCAL, Endpoint, Run
from app.schemas import (
    CompareCurve,
    CompareDifference,
    ComparePage,
    EndpointPage,
    EndpointScorecard,
    ProfileHistory,
)
from app.services import (
    alerts,
    changes,
    comparisons,
    inspections,
    locations,
    results,
    runs,
    schedules,
    scorecards,
    trends,
)
from app.services import endpoints as endpoint_service

COMPARE_MAX = 6


async def endpoint_page(session: AsyncSession, *, endpoint_id: int, now: datetime) -> EndpointPage:
    endpoint = await endpoint_service.get(session, endpoint_id)
    since = now - timedelta(days=scorecards.TREND_DAYS)
    histories = []
    for card in await scorecards.for_endpoint(session, endpoint_id=endpoint_id, now=now):
        grain, cost = await trends.cost_series(
            session, profile=card.profile, since=since, until=now, endpoints=[(endpoint.id, endpoint.name)]
        )
        pct = percentile_key(card.slo.percentile if card.slo else None)
        latency = await scorecards.latency_history(
            session, endpoint_id=endpoint_id, profile=card.profile, since=since, until=now, pct=pct
        )
        histories.append(
            ProfileHistory(
                profile=card.profile, scorecard=card, grain=grain, cost=cost, percentile=pct, latency=latency,
                change_points=await changes.listing(session, endpoint_id=endpoint_id, profile=card.profile),
                period=await comparisons.last_week(session, endpoint_id=endpoint_id, profile=card.profile, now=now),
            )
        )  # fmt: skip
    recent = await scorecards.recent_runs(session, endpoint_id=endpoint_id)
    waiting = await runs.waiting_reasons(session, recent)
    inspected = await inspections.latest(session, endpoint_id=endpoint_id)
    recent_alerts, open_alerts = await alerts.listing(session, endpoint_id=endpoint_id, limit=20)
    return EndpointPage(
        endpoint=endpoint_service.to_read(endpoint),
        since=since,
        profiles=histories,
        schedules=[
            schedules.to_read(*row) for row in await schedules.list_all(session, endpoint_id=endpoint_id)
        ],
        recent_runs=[runs.list_item(run, endpoint.name, waiting.get(run.id)) for run in recent],
        inspection=inspections.to_read(inspected, declared=endpoint.engine)
        if inspected is not None
        else None,
        alerts=recent_alerts,
        open_alerts=open_alerts,
        locations=await locations.by_location(session, endpoint_id=endpoint_id),
    )


async def compare_page(
    session: AsyncSession,
    *,
    profile: str | None,
    endpoint_ids: list[int],
    now: datetime,
    location: str | None = None,
    by_location: bool = False,
) -> ComparePage:
    """The picked endpoints' latest measured runs side by side: from one location, wherever each
    was measured last, or (`by_location`) each endpoint's latest run from each location."""
    chosen = profile or await scorecards.default_profile(session)
    where = None if by_location else location
    if endpoint_ids:
        picked = await endpoint_service.by_ids(session, endpoint_ids, limit=COMPARE_MAX)
    else:  # open on what can be compared: the endpoints measured on this profile (from there)
        picked = await scorecards.measured_endpoints(
            session, profile=chosen, limit=COMPARE_MAX, location=where
        )
    places = await trends.locations(session, profile=chosen)
    if by_location:
        cards = await _cards_by_location(session, picked, profile=chosen, now=now, places=places)
    else:
        cards = await scorecards.cards_for(session, endpoints=picked, profile=chosen, now=now, location=where)
    gpus = {e.id: e.gpu_count for e in picked}
    steps = await results.steps_of(session, run_ids=[c.run_id for c in cards if c.run_id is not None])
    curves = []
    slo_tpot = None
    for card in cards:
        if card.run_id is not None:
            curves.append(CompareCurve(endpoint_id=card.endpoint_id, endpoint=card.endpoint,
                                       location=card.location or LOCAL, gpu_count=gpus.get(card.endpoint_id),
                                       run_id=card.run_id, steps=steps[card.run_id]))  # fmt: skip
            slo_tpot = (card.slo.tpot_ms if card.slo else None) or slo_tpot
    measured_from = sorted({c.location for c in cards if c.run_id is not None and c.location is not None})
    return ComparePage(
        profile=chosen, picked=[e.id for e in picked], location=where, by_location=by_location, locations=places,
        cards=cards, curves=curves, slo_tpot_ms=slo_tpot, differences=await _differences(session, cards),
        mixed_locations=measured_from if len(measured_from) > 1 else [],
    )  # fmt: skip


async def _cards_by_location(
    session: AsyncSession, picked: list[Endpoint], *, profile: str, now: datetime, places: list[str]
) -> list[EndpointScorecard]:
    """Each picked endpoint's card from each location it was measured from (up to COMPARE_MAX),
    by endpoint in the order picked, then by location."""
    found: dict[tuple[int, str], EndpointScorecard] = {}
    for place in places:
        for card in await scorecards.cards_for(
            session, endpoints=picked, profile=profile, now=now, location=place
        ):
            if card.run_id is not None:
                found[card.endpoint_id, place] = card
    return [found[e.id, place] for e in picked for place in places if (e.id, place) in found][:COMPARE_MAX]


async def _differences(session: AsyncSession, cards: list[EndpointScorecard]) -> list[CompareDifference]:
    """Each measured card after the first against the first, from the requests' samples."""
    measured = [c for c in cards if c.run_id is not None]
    if len(measured) < 2:
        return []
    first, rest = measured[0], measured[1:]
    base = await session.get(Run, first.run_id)
    found = []
    for card in rest:
        other = await session.get(Run, card.run_id)
        if base is None or other is None:
            continue
        pct = percentile_key(first.slo.percentile if first.slo else None)
        found.append(
            CompareDifference(
                endpoint_id=card.endpoint_id, endpoint=card.endpoint, location=other.location,
                against_endpoint_id=first.endpoint_id, against=first.endpoint, against_location=base.location,
                comparison=await comparisons.compare_runs(session, base, other, percentile=pct),
            )
        )  # fmt: skip
    return found
