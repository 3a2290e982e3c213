"""Runs stored by earlier versions read back through the typed domain (app/models.Typed) and
render with the figures they were stored with: the run page, its JSON twin and the scorecard."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import sqlalchemy as sa

from app.db import unit_of_work
from app.models import Endpoint, Run, RunStep
from app.services import records
from app.summary import StepSummary
from tests.conftest import bearer, login

NOW = datetime.now(UTC) - timedelta(hours=1)

# The JSON as an earlier version wrote it: the scorecard before letters carried `degraded` and
# before the card had `quality`; a profile snapshot before the SLO search; a step summary
# before TTFAT, telemetry and energy.
OLD_SCORECARD = {
    "operating_point": {"load": 8, "load_kind": "concurrency", "output_tokens_per_s": 700.0,
                        "total_tokens_per_s": 1400.0, "tokens_per_s_per_user": 80.0, "step_index": 0,
                        "interpolated": False, "next_step_index": None, "cost_per_million_output_tokens": 7.9365,
                        "cost_per_million_tokens": 3.9683, "cost_per_million_good_tokens": 3.9683,
                        "cost_per_million_tokens_blended": 3.9683, "tokens_per_joule": 0.125},
    "capacity": 8,
    "slo": {"ttft_ms": 500.0, "tpot_ms": 50.0, "e2e_ms": None, "percentile": 90.0},
    "letters": [
        {"letter": "S", "name": "Scale and complexity", "score": 66.6, "status": "scored",
         "evidence": [{"label": "capacity (highest concurrency meeting the SLO)", "value": 8, "unit": "users"}],
         "how": "by hand"},
        {"letter": "R", "name": "Return on investment", "score": 25.3, "status": "scored",
         "evidence": [{"label": "cost per million tokens at the operating point", "value": 3.9683, "unit": "$"}],
         "how": "by hand"},
    ],
}  # fmt: skip
OLD_PROFILE = {"id": 1, "name": "chat", "title": "Chat", "description": None, "builtin": True,
               "input_tokens_mean": 512, "input_tokens_spread": 0.0, "output_tokens_mean": 256,
               "output_tokens_spread": 0.0, "load_mode": "concurrency", "load_levels": [8], "arrival": "poisson",
               "max_concurrency": None, "requests_per_step": 100, "duration_per_step_s": None,
               "warmup_requests": 0, "slo_ttft_ms": 500.0, "slo_tpot_ms": 50.0, "slo_e2e_ms": None,
               "slo_percentile": 90.0, "target_price_per_million": 2.0}  # fmt: skip
OLD_COST = {"gpu_count": 8, "price_per_gpu_hour": 2.5, "overhead_per_hour": None, "watts_per_gpu": 700,
            "input_price_per_million": None, "output_price_per_million": None}  # fmt: skip
OLD_STACK = {"name": "old-h100", "base_url": "http://127.0.0.1:9/v1", "model": "m", "api_flavor": "chat",
             "engine": "vllm", "engine_version": "0.6.0", "quantization": None, "gpu_model": "H100", "gpu_count": 8}  # fmt: skip
OLD_STEP = {
    "concurrency": 8, "request_rate": None, "duration_s": 20.0,
    "requests": {"sent": 100, "completed": 100, "failed": 0, "errors": {}},
    "ttft_ms": {"mean": 240.0, "p50": 230.0, "p90": 245.0, "p95": 248.0, "p99": 250.0},
    "tpot_ms": {"mean": 24.0, "p50": 23.5, "p90": 24.5, "p95": 24.8, "p99": 25.0},
    "itl_ms": {"mean": 24.0, "p50": 23.5, "p90": 24.5, "p95": 24.8, "p99": 25.0},
    "e2e_ms": {"mean": 6300.0, "p50": 6250.0, "p90": 6400.0, "p95": 6450.0, "p99": 6500.0},
    "output_tokens_per_s": 700.0, "input_tokens_per_s": 700.0, "total_tokens_per_s": 1400.0,
    "requests_per_s": 2.73, "cost_per_million_tokens": 3.9683, "slo_attainment": 1.0,
    "quality": {"client_bound": False},
}  # fmt: skip
# The runs table with its JSON columns as plain JSON: rows written as the earlier version did.
RAW_RUNS = sa.table(
    "runs",
    sa.column("id"),
    *(
        sa.column(name, sa.JSON)
        for name in ("scorecard", "profile_snapshot", "cost_snapshot", "endpoint_snapshot")
    ),
)
RAW_STEPS = sa.table("run_steps", sa.column("run_id"), sa.column("step_index"), sa.column("summary", sa.JSON))


async def test_a_run_stored_in_the_old_format_renders_with_its_figures(
    app, client: httpx.AsyncClient, people
) -> None:
    async with unit_of_work(app.state.sessionmaker) as session:
        endpoint = Endpoint(name="old-h100", base_url="http://127.0.0.1:9/v1", model="m", tags=[], gpu_count=8,
                            gpu_model="H100", price_per_gpu_hour=2.5)  # fmt: skip
        session.add(endpoint)
        await session.flush()
        run = Run(endpoint_id=endpoint.id, profile_name="chat", profile_snapshot={}, cost_snapshot={},
                  status="succeeded", created_at=NOW, started_at=NOW, finished_at=NOW, progress={},
                  cost_per_million_tokens_at_slo=3.9683, output_tokens_per_s_at_slo=700.0, operating_step=0)  # fmt: skip
        session.add(run)
        await session.flush()
        run_id, endpoint_id = run.id, endpoint.id
        await session.execute(
            sa.update(RAW_RUNS).where(RAW_RUNS.c.id == run_id).values(
                scorecard=OLD_SCORECARD, profile_snapshot=OLD_PROFILE, cost_snapshot=OLD_COST,
                endpoint_snapshot=OLD_STACK)
        )  # fmt: skip
        summary = StepSummary.model_validate(OLD_STEP)
        session.add(RunStep(run_id=run_id, step_index=0, **records.step_columns(summary), summary=summary))
        await session.flush()
        await session.execute(
            sa.update(RAW_STEPS).where(RAW_STEPS.c.run_id == run_id).values(summary=OLD_STEP)
        )
    auth = await bearer(client, "viewer")

    summary = (await client.get(f"/api/v1/runs/{run_id}", headers=auth)).json()
    card = summary["scorecard"]
    assert card["operating_point"]["cost_per_million_tokens"] == 3.9683 and card["capacity"] == 8
    assert card["quality"] == {"degraded": False, "reasons": []}  # absent then: a clean measurement
    assert [(e["letter"], e["score"], e["degraded"]) for e in card["letters"]] == [
        ("S", 66.6, []),
        ("R", 25.3, []),
    ]
    assert card["letters"][0]["evidence"][0] == OLD_SCORECARD["letters"][0]["evidence"][0]  # type: ignore[index]
    assert summary["profile"]["search"] is False and summary["profile"]["slo_ttft_ms"] == 500.0
    assert (
        summary["cost_inputs"]["price_per_gpu_hour"] == 2.5
        and summary["endpoint"]["engine_version"] == "0.6.0"
    )
    step = summary["steps"][0]
    assert step["ttft_ms"]["p99"] == 250.0 and step["cost_per_million_tokens"] == 3.9683 and step["load"] == 8

    await login(client, "viewer")
    page = await client.get(f"/runs/{run_id}")
    assert page.status_code == 200
    assert "Scorecard of this run" in page.text and "$3.968" in page.text and "66" in page.text
    # The step table shows the profile's percentile (p90 here), not a fixed p99.
    assert '<th class="num">TTFT p90</th>' in page.text and ">245.0<" in page.text

    cards = (await client.get(f"/api/v1/endpoints/{endpoint_id}/scorecard?profile=chat", headers=auth)).json()
    (only,) = cards["items"]
    assert only["run_id"] == run_id and only["cost_per_million_tokens_at_slo"] == 3.9683
    assert only["operating_point"]["load"] == 8 and only["pricing"] == "gpu_hour"
    endpoint_page = await client.get(f"/endpoints/{endpoint_id}")
    assert endpoint_page.status_code == 200 and "$3.968" in endpoint_page.text
