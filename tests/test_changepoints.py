"""Change points in history (app/changepoints.py, services/changes.py): precision and recall on
generated series with known steps, and the stored points through the API, the endpoint page,
the trends page and the demo's generated history."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import httpx
import numpy as np
from sqlalchemy import select

from app.changepoints import find
from app.db import unit_of_work
from app.models import Endpoint, Run, RunStep
from app.services import changes
from tests.conftest import bearer


def _series(rng: np.random.Generator, n: int = 60) -> tuple[list[float], list[int]]:
    """1-3 steps of 5-30 % (up or down) at least 8 runs apart, 3 % noise."""
    count = int(rng.integers(1, 4))
    while True:
        cuts = sorted(int(c) for c in rng.choice(np.arange(8, n - 7), count, replace=False))
        if all(b - a >= 8 for a, b in itertools.pairwise(cuts)):
            break
    level, values, prev = 100.0, np.empty(n), 0
    for cut in [*cuts, n]:
        values[prev:cut] = level
        prev = cut
        level *= 1 + rng.choice([-1, 1]) * rng.uniform(0.05, 0.30)
    return list(values * (1 + rng.normal(0, 0.03, n))), cuts


def test_steps_are_found_with_precision_and_recall_above_0_9() -> None:
    rng = np.random.default_rng(2026)
    hits = misses = false = 0
    for _ in range(200):
        values, cuts = _series(rng)
        matched: set[int] = set()
        for shift in find(values):
            near = [c for c in cuts if abs(c - shift.index) <= 2 and c not in matched]
            if near:
                matched.add(near[0])
                hits += 1
                assert shift.p_value < 0.01 and abs(shift.change_pct) >= 1.0
            else:
                false += 1
        misses += len(cuts) - len(matched)
    precision, recall = hits / (hits + false), hits / (hits + misses)
    print(
        f"change points: precision {precision:.3f}, recall {recall:.3f} over 200 series ({hits} steps found)"
    )
    assert precision >= 0.9 and recall >= 0.9


def test_a_flat_or_short_series_has_none_and_a_step_says_its_size() -> None:
    rng = np.random.default_rng(7)
    assert find(list(100 * (1 + rng.normal(0, 0.03, 80)))) == []
    assert find([1.0, 2.0, 3.0]) == []
    [shift] = find([10.0] * 20 + [12.0] * 20)
    assert shift.index == 20 and shift.before == 10.0 and shift.after == 12.0
    assert abs(shift.change_pct - 20.0) < 1e-9 and shift.p_value == 0.0


async def test_stored_change_points_reach_the_api_and_the_pages(
    app, client: httpx.AsyncClient, people
) -> None:  # type: ignore[no-untyped-def]
    start = datetime(2026, 10, 1, tzinfo=UTC)
    rng = np.random.default_rng(3)
    async with unit_of_work(app.state.sessionmaker) as session:
        endpoint = Endpoint(name="stepper", base_url="http://127.0.0.1:9/v1", model="m", tags=[])
        session.add(endpoint)
        await session.flush()
        for i in range(30):  # the cost steps down 25 % at run 15; TTFT up 20 % at run 20
            at = start + timedelta(hours=6 * i)
            cost = (0.8 if i < 15 else 0.6) * (1 + rng.normal(0, 0.02))
            ttft = (100.0 if i < 20 else 120.0) * (1 + rng.normal(0, 0.02))
            run = Run(endpoint_id=endpoint.id, profile_name="chat", profile_snapshot={"slo_percentile": 99},
                      cost_snapshot={}, status="succeeded", trigger="schedule", created_at=at, finished_at=at,
                      scorecard={"letters": []}, cost_per_million_tokens_at_slo=cost, output_tokens_per_s_at_slo=1000.0,
                      operating_step=0)  # fmt: skip
            session.add(run)
            await session.flush()
            session.add(RunStep(run_id=run.id, step_index=0, summary={"concurrency": 8}, ttft_ms_p99=ttft))
        await session.flush()
        new = await changes.rescan(session, endpoint_id=endpoint.id, profile="chat", now=start)
        assert {c.metric for c in new} == {"cost_per_million_tokens_at_slo", "ttft_ms"}
        again = await changes.rescan(session, endpoint_id=endpoint.id, profile="chat", now=start)
        assert again == []  # a rescan finds them again: nothing new
        endpoint_id = endpoint.id
    auth = await bearer(client, "viewer")
    listed = (await client.get(f"/api/v1/endpoints/{endpoint_id}/change-points", headers=auth)).json()[
        "items"
    ]
    by_metric = {c["metric"]: c for c in listed}
    cost = by_metric["cost_per_million_tokens_at_slo"]
    assert cost["direction"] == "better" and -28 < cost["change_pct"] < -22 and cost["p_value"] < 0.01
    assert cost["at"].startswith((start + timedelta(hours=6 * 15)).date().isoformat())
    ttft = by_metric["ttft_ms"]
    assert ttft["direction"] == "worse" and 15 < ttft["change_pct"] < 25
    missing = await client.get("/api/v1/endpoints/999999/change-points", headers=auth)
    assert missing.status_code == 404
    page = (await client.get(f"/endpoints/{endpoint_id}", headers=auth)).text
    assert 'data-metric="ttft_ms" data-direction="worse"' in page and "change-points" in page
    trends = (
        await client.get(f"/api/v1/trends/cost?profile=chat&days=3650&endpoint={endpoint_id}", headers=auth)
    ).json()
    assert [c["metric"] for c in trends["change_points"]] == ["cost_per_million_tokens_at_slo"]


async def test_the_demo_history_shows_its_price_change_and_stack_upgrade(app) -> None:  # type: ignore[no-untyped-def]
    """The demo's first endpoint: repriced 20 days ago ($3.00 -> $2.50 per GPU-hour), its stack
    upgraded 55 days ago (decode steps 10 % faster): both appear as change points of its cost."""
    from app.services import demo

    now = app.state.clock()
    urls = {item.name: "http://127.0.0.1:9/v1" for item in demo.FLEET}
    async with unit_of_work(app.state.sessionmaker) as session:
        await demo.register(
            session,
            urls=urls,
            model="sim",
            box=app.state.secret_box,
            by=None,
            now=now,
            settings=app.state.settings,
        )
        first = demo.FLEET[0]
        endpoint = (await session.scalars(select(Endpoint).where(Endpoint.name == first.name))).one()
        found = await changes.listing(session, endpoint_id=endpoint.id, profile=demo.DEMO_PROFILE)
    costs = [c for c in found if c.metric == "cost_per_million_tokens_at_slo"]
    days_ago = sorted(round((now - c.at).total_seconds() / 86_400) for c in costs)
    assert first.repriced_days_ago is not None and first.upgraded_days_ago is not None
    assert any(abs(d - first.repriced_days_ago) <= 2 for d in days_ago), days_ago
    assert any(abs(d - first.upgraded_days_ago) <= 2 for d in days_ago), days_ago
    assert all(c.synthetic for c in costs)


async def test_a_change_point_that_makes_a_figure_worse_can_raise_a_regression(app) -> None:  # type: ignore[no-untyped-def]
    """With the rule on (site settings), the run that reveals a change point raises one
    regression for its figure, said as a change point; with it off, none."""
    from app.schemas import AlertSettings
    from app.services import alerts

    start = datetime(2026, 11, 1, tzinfo=UTC)
    rng = np.random.default_rng(11)
    for enabled in (True, False):
        rules = AlertSettings(baseline_runs=5, regression_threshold_pct=900.0, regression_error_points=100.0,
                              down_after_failures=3, change_point_alerts=enabled)  # fmt: skip
        messages: list[str] = []
        async with unit_of_work(app.state.sessionmaker) as session:
            endpoint = Endpoint(name=f"rule-{enabled}", base_url="http://127.0.0.1:9/v1", model="m", tags=[])
            session.add(endpoint)
            await session.flush()
            for i in range(16):  # TTFT up 30 % from run 8
                at = start + timedelta(hours=i)
                run = Run(endpoint_id=endpoint.id, profile_name="chat", profile_snapshot={"slo_percentile": 99},
                          cost_snapshot={}, status="succeeded", trigger="schedule", created_at=at, finished_at=at,
                          scorecard={"letters": []}, operating_step=0)  # fmt: skip
                session.add(run)
                await session.flush()
                ttft = (100.0 if i < 8 else 130.0) * (1 + rng.normal(0, 0.02))
                session.add(RunStep(run_id=run.id, step_index=0, ttft_ms_p99=ttft,
                                    summary={"concurrency": 8, "requests": {"sent": 10, "completed": 10}}))  # fmt: skip
                await session.flush()
                raised = await alerts.after_run(session, run_id=run.id, rules=rules, now=at)
                messages += [a.message for a in raised if a.kind == "regression"]
        if enabled:
            assert len(messages) == 1 and "TTFT changed +" in messages[0] and "change point" in messages[0], (
                messages
            )
        else:
            assert messages == []
