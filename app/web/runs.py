"""Run pages: start a run from the endpoint page, watch it live, read its result."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from app.deps import AdminDep, EditorDep, NowDep, ReaderDep, RowId, SessionDep
from app.services import comparisons, runs, scorecards
from app.services import samples as sample_service
from app.snapshot import ProfileSnapshot
from app.summary import RunEndpoint
from app.web import figures
from app.web.forms import form_str
from app.web.templating import render

router = APIRouter()


@router.post("/endpoints/{endpoint_id}/runs", name="run_now")
async def run_now(
    request: Request, endpoint_id: RowId, session: SessionDep, now: NowDep, user: EditorDep
) -> RedirectResponse:
    form = await request.form()
    run = await runs.start(
        session,
        endpoint_id=endpoint_id,
        profile_name=form_str(form, "profile") or "smoke",
        by=user.user_id,
        trigger="manual",
        now=now,
    )
    return RedirectResponse(request.url_for("run_page", run_id=run.id).path, status_code=303)


@router.post("/runs/{run_id}/cancel", name="run_cancel")
async def cancel(
    request: Request, run_id: RowId, session: SessionDep, now: NowDep, _: EditorDep
) -> RedirectResponse:
    await runs.request_cancel(session, run_id=run_id, now=now)
    return RedirectResponse(request.url_for("run_page", run_id=run_id).path, status_code=303)


@router.post("/runs/{run_id}/delete", name="run_delete")
async def delete(request: Request, run_id: RowId, session: SessionDep, _: AdminDep) -> RedirectResponse:
    endpoint_id = await runs.delete(session, run_id=run_id)
    return RedirectResponse(request.url_for("endpoint_detail", endpoint_id=endpoint_id).path, status_code=303)


@router.get("/runs/{run_id}", name="run_page")
async def run_page(request: Request, run_id: RowId, session: SessionDep, _: ReaderDep) -> HTMLResponse:
    summary = await runs.summary(session, run_id=run_id)
    charts: dict[str, str] = {}
    if summary.steps:
        samples = await sample_service.samples_for_charts(session, run_id=run_id)
        steps = summary.steps
        load_label = "concurrency" if summary.steps[0].load_kind == "concurrency" else "requests/s"
        endpoint = summary.endpoint if isinstance(summary.endpoint, RunEndpoint) else RunEndpoint()
        profile = summary.profile if isinstance(summary.profile, ProfileSnapshot) else ProfileSnapshot()

        def build() -> dict[str, str]:
            out = figures.distributions(samples)
            out.update(figures.sweep(steps, load_label))
            out.update(figures.telemetry(steps, load_label))
            out.update(figures.workload(steps, load_label))
            if (drawn := figures.timeline(samples, steps, load_label)) is not None:
                out["timeline"] = drawn
            out["tradeoff"] = figures.tradeoff(
                [(endpoint.name or "", steps, endpoint.gpu_count)], profile.slo_tpot_ms
            )
            return out

        charts = await asyncio.to_thread(build)
    return render(
        request,
        "runs/detail.html",
        {"run": summary, "card": scorecards.of_run(summary), "charts": charts,
         "waiting_for": await runs.waiting_for(session, run_id=run_id),
         "comparison": await comparisons.against(session, run_id) if summary.steps else None},
    )  # fmt: skip


@router.get("/runs/{run_id}/progress", name="run_progress")
async def run_progress(request: Request, run_id: RowId, session: SessionDep, _: ReaderDep) -> HTMLResponse:
    """The live-progress partial; the run page includes it and refreshes it until the run ends."""
    summary = await runs.summary(session, run_id=run_id)
    return render(
        request,
        "runs/_progress.html",
        {"run": summary, "waiting_for": await runs.waiting_for(session, run_id=run_id)},
    )
