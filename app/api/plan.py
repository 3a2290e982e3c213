"""/api/v1/plan: the capacity planner (JSON, or CSV with format=csv)."""

from __future__ import annotations

import csv
import io
import re
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import Response

from app.deps import NowDep, ReaderDep, SessionDep
from app.schemas import ErrorBody, PlanRead, PlanRowRead
from app.services import plan as planner
from app.services.samples import csv_cell

router = APIRouter(prefix="/plan", tags=["plan"], responses={401: {"model": ErrorBody}})


@router.get("", response_model=None)
async def capacity_plan(
    session: SessionDep,
    now: NowDep,
    _: ReaderDep,
    profile: Annotated[str, Query(max_length=64, description="the profile: its SLO and token lengths")],
    demand: Annotated[float, Query(gt=0, le=1e9, description="concurrent users, or requests per second")],
    unit: Literal["users", "rps"] = "users",
    headroom: Annotated[
        float, Query(ge=0, le=10, description="0.2 plans for 20 % more than the demand")
    ] = 0.2,
    sort: Literal[planner.SORTS] = "dollars_per_hour",  # type: ignore[valid-type]
    format: Literal["json", "csv"] = "json",
) -> PlanRead | Response:
    """For each endpoint with a good run of the profile in the last 30 days: replicas and GPUs,
    $/hour and $/month, energy per month, cost per million tokens, and the run it rests on."""
    rows = planner.sort_rows(
        await planner.plan(session, profile=profile, demand=demand, unit=unit, headroom=headroom, now=now),
        sort,
    )
    read = PlanRead(profile=profile, demand=demand, unit=unit, headroom=headroom, sort=sort,
                    rows=[PlanRowRead.model_validate(row, from_attributes=True) for row in rows])  # fmt: skip
    if format == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf)
        fields = list(PlanRowRead.model_fields)
        writer.writerow(fields)
        for row in read.rows:
            data = row.model_dump(mode="json")
            writer.writerow([csv_cell(data[f]) for f in fields])
        # A header is latin-1: the profile's name goes in only as the characters a file name keeps.
        name = re.sub(r"[^A-Za-z0-9._-]", "_", profile)
        return Response(buf.getvalue(), media_type="text/csv",
                        headers={"Content-Disposition": f'attachment; filename="plan-{name}.csv"'})  # fmt: skip
    return read
