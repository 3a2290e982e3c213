"""/api/v1 runs, scorecards and cost trends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response, StreamingResponse

from app.confidence import Comparison, PeriodComparison
from app.deps import (
    AdminDep,
    Cursor,
    EditorDep,
    Limit,
    LocationFilter,
    NowDep,
    ReaderDep,
    RowId,
    SessionDep,
    offset_of,
)
from app.errors import NotFound, ValidationFailed
from app.schemas import (
    ChangePointRead,
    ComparePage,
    CostTrends,
    EndpointScorecard,
    ErrorBody,
    Page,
    RunAccepted,
    RunCreate,
    RunListItem,
    SampleRead,
    ScorecardPage,
    next_offset_cursor,
)
from app.services import changes, comparisons, endpoints, pages, runs, samples, scorecards, trends
from app.summary import RunSummary

MAX_CARDS = 50  # a card with its 30-day trend is ~8 KB: a page stays well under 500 KB

router = APIRouter(tags=["runs"], responses={401: {"model": ErrorBody}, 404: {"model": ErrorBody}})


@router.post("/endpoints/{endpoint_id}/runs", status_code=202, responses={403: {"model": ErrorBody}})
async def start_run(
    endpoint_id: RowId, body: RunCreate, request: Request, session: SessionDep, now: NowDep, user: EditorDep
) -> RunAccepted:
    """Queue a probe of `profile` against the endpoint; it runs in the background."""
    run = await runs.start(
        session, endpoint_id=endpoint_id, profile_name=body.profile, by=user.user_id, trigger="api", now=now,
        location=body.location,
    )  # fmt: skip
    return RunAccepted(run_id=run.id, status=run.status, url=request.url_for("api_run", run_id=run.id).path)


@router.get("/runs")
async def list_runs(
    session: SessionDep,
    _: ReaderDep,
    endpoint_id: RowId | None = None,
    profile: str | None = None,
    status: str | None = None,
    limit: Limit = 50,
    cursor: Cursor = None,
    location: LocationFilter = None,
) -> Page[RunListItem]:
    """Runs, newest first, keyset-paged: follow `next` until it is null."""
    rows, following, total = await runs.list_page(
        session, endpoint_id=endpoint_id, profile=profile, status=status, limit=limit, cursor=cursor,
        location=location,
    )  # fmt: skip
    waiting = await runs.waiting_reasons(session, [run for run, _ in rows])
    return Page[RunListItem](
        items=[runs.list_item(run, name, waiting.get(run.id)) for run, name in rows],
        limit=limit,
        next=following,
        total=total,
    )


@router.get("/runs/{run_id}", name="api_run")
async def read_run(run_id: RowId, session: SessionDep, _: ReaderDep) -> RunSummary:
    """The run summary of DESIGN.md, with its scorecard and live progress."""
    return await runs.summary(session, run_id=run_id)


@router.post(
    "/runs/{run_id}/cancel", status_code=202, responses={403: {"model": ErrorBody}, 409: {"model": ErrorBody}}
)
async def cancel_run(
    run_id: RowId, request: Request, session: SessionDep, now: NowDep, _: EditorDep
) -> RunAccepted:
    """Cancel a run: a queued one at once; a running one stops after its probe keeps what it
    measured (status `cancelled` within a few seconds)."""
    run = await runs.request_cancel(session, run_id=run_id, now=now)
    return RunAccepted(run_id=run.id, status=run.status, url=request.url_for("api_run", run_id=run.id).path)


@router.delete(
    "/runs/{run_id}", status_code=204, responses={403: {"model": ErrorBody}, 404: {"model": ErrorBody},
                                                  409: {"model": ErrorBody}},
)  # fmt: skip
async def delete_run(run_id: RowId, session: SessionDep, _: AdminDep) -> Response:
    """Delete a finished run with its steps, samples and the alerts judged on it (admins). The
    scorecard, trends and alerts then rest on the runs that remain. A queued or running run: 409."""
    await runs.delete(session, run_id=run_id)
    return Response(status_code=204)


@router.get("/runs/{run_id}/comparison", responses={404: {"model": ErrorBody}, 422: {"model": ErrorBody}})
async def run_comparison(
    run_id: RowId,
    session: SessionDep,
    _: ReaderDep,
    against: Annotated[
        RowId | None, Query(description="the run to compare against (A); default: the one before")
    ] = None,
) -> Comparison:
    """This run (B) against another (A; by default the endpoint's run of the same profile before
    it): TTFT and TPOT at the median and the SLO's percentile at one load level both measured,
    each change with its interval and whether it is significant, from the requests' samples."""
    found = await comparisons.against(session, run_id, against)
    if found is None:
        raise NotFound(f"run {run_id} has no earlier run of its endpoint and profile to compare against")
    return found


@router.get("/runs/{run_id}/samples", response_model=Page[SampleRead])
async def read_samples(
    run_id: RowId,
    request: Request,
    session: SessionDep,
    _: ReaderDep,
    format: Annotated[str, Query(pattern="^(json|csv)$")] = "json",
    limit: Annotated[int, Query(ge=1, le=10_000, description="Page size")] = 1000,
    cursor: Cursor = None,
) -> StreamingResponse | Page[SampleRead]:
    if format == "csv":
        await runs.get(session, run_id)
        return StreamingResponse(
            samples.samples_csv(request.app.state.sessionmaker, run_id=run_id),
            media_type="text/csv",
            headers={"Content-Disposition": f'attachment; filename="run-{run_id}-samples.csv"'},
        )
    offset = offset_of(cursor)
    items, total = await samples.samples_page(session, run_id=run_id, limit=limit, offset=offset)
    return Page[SampleRead](
        items=items, next=next_offset_cursor(offset, limit, total), limit=limit, total=total
    )


@router.get("/endpoints/{endpoint_id}/scorecard")
async def endpoint_scorecard(
    endpoint_id: RowId, session: SessionDep, now: NowDep, _: ReaderDep, profile: str | None = None
) -> Page[EndpointScorecard]:
    """One scorecard per profile measured (or the one asked for), with its 30-day trend: one
    page (an endpoint has a card per profile)."""
    cards = await scorecards.for_endpoint(session, endpoint_id=endpoint_id, now=now, profile=profile)
    return Page[EndpointScorecard](items=cards)


@router.get("/endpoints/{endpoint_id}/change-points", name="api_change_points")
async def change_points(
    endpoint_id: RowId, session: SessionDep, _: ReaderDep, profile: str | None = None
) -> Page[ChangePointRead]:
    """Where the endpoint's history stepped to another level, per profile and figure (TTFT and
    TPOT at the operating step, throughput and cost at the SLO), oldest first: found as runs land
    (PELT, each step kept where Welch's t-test says p < 0.01), with the medians on each side."""
    await endpoints.get(session, endpoint_id)
    return Page[ChangePointRead](
        items=await changes.listing(session, endpoint_id=endpoint_id, profile=profile)
    )


@router.get(
    "/endpoints/{endpoint_id}/period-comparison",
    name="api_period_comparison",
    responses={404: {"model": ErrorBody}, 422: {"model": ErrorBody}},
)
async def period_comparison(
    endpoint_id: RowId,
    session: SessionDep,
    now: NowDep,
    _: ReaderDep,
    profile: Annotated[str, Query(min_length=1, description="the profile whose runs are compared")],
    a_since: Annotated[datetime | None, Query(description="period A's start; default two weeks ago")] = None,
    a_until: Annotated[datetime | None, Query(description="period A's end; default a week ago")] = None,
    b_since: Annotated[datetime | None, Query(description="period B's start; default a week ago")] = None,
    b_until: Annotated[datetime | None, Query(description="period B's end; default now")] = None,
) -> PeriodComparison:
    """Period B against period A on this endpoint and profile: each measured run is one value of
    each headline figure, the medians over the two periods' runs compared with a bootstrap over
    runs (at least five a side), whether the difference is significant and by how much."""
    await endpoints.get(session, endpoint_id)
    week = timedelta(days=comparisons.PERIOD_DAYS)
    a = (_aware(a_since) or now - 2 * week, _aware(a_until) or now - week)
    b = (_aware(b_since) or now - week, _aware(b_until) or now)
    for name, (since, until) in (("A", a), ("B", b)):
        if since >= until:
            raise ValidationFailed(
                f"period {name} ends before it starts ({since.isoformat()} to {until.isoformat()})"
            )
    return await comparisons.compare_periods(session, endpoint_id=endpoint_id, profile=profile, a=a, b=b)


def _aware(at: datetime | None) -> datetime | None:
    return at.replace(tzinfo=UTC) if at is not None and at.tzinfo is None else at


@router.get("/scorecards", name="api_scorecards")
async def all_scorecards(
    session: SessionDep,
    now: NowDep,
    _: ReaderDep,
    profile: str | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_CARDS, description="Page size")] = 25,
    cursor: Cursor = None,
) -> ScorecardPage:
    """Every endpoint's card on the profile (default: the overview's), by endpoint name."""
    chosen = profile or await scorecards.default_profile(session)
    offset = offset_of(cursor)
    cards, total = await scorecards.overview_page(
        session, profile=chosen, now=now, limit=limit, offset=offset
    )
    return ScorecardPage(profile=chosen, items=cards, next=next_offset_cursor(offset, limit, total), limit=limit,
                         total=total)  # fmt: skip


@router.get("/compare", name="api_compare")
async def compare(
    session: SessionDep,
    now: NowDep,
    _: ReaderDep,
    profile: str | None = None,
    endpoint: Annotated[list[RowId] | None, Query(description="endpoint ids, 2 to 6")] = None,
    location: LocationFilter = None,
    by_location: Annotated[
        bool, Query(description="each endpoint's latest run from each location, side by side")
    ] = False,
) -> ComparePage:
    """The compare page as JSON: scorecards side by side and each latest measured run's steps
    (the trade-off curves); without `endpoint`, the endpoints measured on the profile; with
    `location`, their latest runs from there (else wherever each was measured last)."""
    return await pages.compare_page(
        session,
        profile=profile,
        endpoint_ids=endpoint or [],
        now=now,
        location=location,
        by_location=by_location,
    )


@router.get("/trends/cost", name="cost_trends_api")
async def cost_trends(
    session: SessionDep,
    now: NowDep,
    _: ReaderDep,
    days: Annotated[int, Query(ge=1, le=3650)] = 30,
    profile: str | None = None,
    endpoint: Annotated[list[RowId] | None, Query(description="endpoint ids to draw, up to 10")] = None,
    location: LocationFilter = None,
) -> CostTrends:
    """Cost per million tokens at the SLO operating point, per endpoint, over time: one profile
    (default: the overview's), raw runs while they fit, else hour/day/week buckets with the
    median and the p10-p90 band; markers where prices or the serving stack changed."""
    chosen = profile or await scorecards.default_profile(session)
    return await trends.cost_trends(
        session, profile=chosen, since=now - timedelta(days=days), until=now, endpoint_ids=endpoint,
        location=location,
    )  # fmt: skip
