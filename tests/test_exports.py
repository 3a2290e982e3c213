"""Exports a spreadsheet opens safely: what a target sent never becomes a formula (issue #10.7)."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime

import httpx

from app.db import unit_of_work
from app.models import Endpoint, RequestSample, Run
from app.services.samples import csv_cell
from tests.conftest import bearer


def test_formula_starts_are_neutralised_and_numbers_kept() -> None:
    for hostile in ('=HYPERLINK("http://x","y")', "+1+2", "-2+3", "@SUM(A1)", "\tx", "\rx"):
        assert csv_cell(hostile) == "'" + hostile
    assert csv_cell("stop") == "stop" and csv_cell(None) == ""
    assert csv_cell(-1.5) == -1.5 and csv_cell(0) == 0


async def test_samples_csv_from_a_hostile_target(app, client: httpx.AsyncClient, people) -> None:  # type: ignore[no-untyped-def]
    now = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
    async with unit_of_work(app.state.sessionmaker) as session:
        endpoint = Endpoint(name="hostile", base_url="http://127.0.0.1:9/v1", model="m", tags=[])
        session.add(endpoint)
        await session.flush()
        run = Run(endpoint_id=endpoint.id, profile_name="smoke", profile_snapshot={}, cost_snapshot={},
                  status="failed", created_at=now, scorecard={})  # fmt: skip
        session.add(run)
        await session.flush()
        session.add(
            RequestSample(
                run_id=run.id,
                step_index=0,
                seq=0,
                sent_offset_ms=-0.5,
                finish_reason="=HYPERLINK(1)",
                error_kind="protocol_error",
                error_detail="@cmd|' /C calc'!A0",
            )
        )
        run_id = run.id
    auth = await bearer(client, "viewer")
    text = (await client.get(f"/api/v1/runs/{run_id}/samples?format=csv", headers=auth)).text
    rows = list(csv.DictReader(io.StringIO(text)))
    assert rows[0]["finish_reason"] == "'=HYPERLINK(1)"
    assert rows[0]["error_detail"] == "'@cmd|' /C calc'!A0"
    assert rows[0]["sent_offset_ms"] == "-0.5"  # a number, left as it is
