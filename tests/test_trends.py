"""History at scale: SQL buckets against a hand computation, markers, synthetic history that is
shown but never scored, and the run list's keyset under concurrent inserts. On SQLite and
PostgreSQL alike (the `app` fixture is parametrised by backend)."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta

import httpx
import numpy as np
import pytest
from sqlalchemy import func, select

from app.db import unit_of_work
from app.models import Endpoint, Run, RunStep
from app.security import keyring
from app.security.crypto import SecretBox
from app.services import history, scorecards, trends
from app.snapshot import PRICE_FIELDS, STACK_FIELDS, CostInputs, EndpointSnapshot
from tests.conftest import bearer

NOW = datetime(2026, 11, 25, 18, 0, tzinfo=UTC)  # a Wednesday


async def _endpoint(session, name: str) -> Endpoint:  # type: ignore[no-untyped-def]
    endpoint = Endpoint(name=name, base_url="http://127.0.0.1:9/v1", model="m", tags=[], gpu_count=8,
                        price_per_gpu_hour=2.0)  # fmt: skip
    session.add(endpoint)
    await session.flush()
    return endpoint


def _run(endpoint_id: int, at: datetime, cost: float | None, *, price: float = 2.0, version: str = "1",
         source: str = "smartbench", degraded: bool = False) -> Run:  # fmt: skip
    cost_snapshot = CostInputs(gpu_count=8, price_per_gpu_hour=price)
    stack = EndpointSnapshot(engine="vllm", engine_version=version, gpu_count=8)
    return Run(
        endpoint_id=endpoint_id, profile_name="chat", profile_snapshot={}, cost_snapshot=cost_snapshot,
        endpoint_snapshot=stack, status="succeeded", source=source, created_at=at, finished_at=at,
        cost_per_million_tokens_at_slo=cost, output_tokens_per_s_at_slo=None if cost is None else 100.0 / cost,
        quality_degraded=degraded, scorecard={}, price_key=cost_snapshot.key(PRICE_FIELDS),
        stack_key=stack.key(STACK_FIELDS),
    )  # fmt: skip


async def _seed(app, session, *, days: float, now: datetime) -> history.SeedReport:  # type: ignore[no-untyped-def]
    """Two synthetic endpoints with `days` of chat history, 4 runs a day."""
    box = SecretBox(keyring.encryption_keyring(app.state.settings))
    return await history.seed(
        session, endpoints=2, days=days, runs_per_day=4, profile_name="chat", now=now, box=box,
        settings=app.state.settings,
    )  # fmt: skip


def test_grain_follows_the_range() -> None:
    assert trends.grain_for(timedelta(days=7)) == ("hour", 3600)
    assert trends.grain_for(timedelta(days=30)) == ("day", 86400)
    assert trends.grain_for(timedelta(days=365)) == ("week", 604800)
    # Weeks start on Mondays at 00:00 UTC.
    assert trends.bucket_start(0, 604800).weekday() == 0


async def test_buckets_match_a_hand_computation(app) -> None:  # type: ignore[no-untyped-def]
    rng = random.Random(7)
    days: dict[datetime, list[float]] = {}
    async with unit_of_work(app.state.sessionmaker) as session:
        endpoint = await _endpoint(session, "bucketed")
        for day in range(12):
            start = datetime(2026, 11, 13, tzinfo=UTC) + timedelta(days=day)
            n = 1 + day % 5  # 1 to 5 runs a day: the interpolation's edge cases
            for k in range(n):
                cost = round(rng.uniform(0.2, 2.0), 4)
                days.setdefault(start, []).append(cost)
                session.add(_run(endpoint.id, start + timedelta(hours=1 + 4 * k, minutes=k), cost,
                                 degraded=(day == 3 and k == 0)))  # fmt: skip
        # An unpriced run counts as a run but stays out of the quantiles.
        session.add(_run(endpoint.id, datetime(2026, 11, 14, 23, 30, tzinfo=UTC), None))
        await session.flush()
        grain, series = await trends.cost_series(
            session, profile="chat", since=NOW - timedelta(days=30), until=NOW,
            endpoints=[(endpoint.id, endpoint.name)], grain="day",
        )  # fmt: skip
    assert grain == "day" and len(series) == 1
    got = {p.at: p for p in series[0].points}
    assert set(got) == set(days)
    for start, costs in days.items():
        point = got[start]
        unpriced = 1 if start == datetime(2026, 11, 14, tzinfo=UTC) else 0
        assert point.runs == len(costs) + unpriced
        assert point.cost_per_million_tokens == pytest.approx(float(np.percentile(costs, 50)), rel=1e-9)
        assert point.cost_p10 == pytest.approx(float(np.percentile(costs, 10)), rel=1e-9)
        assert point.cost_p90 == pytest.approx(float(np.percentile(costs, 90)), rel=1e-9)
        assert point.degraded == (start == datetime(2026, 11, 16, tzinfo=UTC))
        assert (point.run_id is not None) == (point.runs == 1)


async def test_raw_points_while_they_fit_then_buckets_and_markers(
    app, client: httpx.AsyncClient, people
) -> None:  # type: ignore[no-untyped-def]
    now = app.state.clock()  # what the API's `days` counts back from
    async with unit_of_work(app.state.sessionmaker) as session:
        endpoint = await _endpoint(session, "marked")
        for i in range(trends.RAW_LIMIT + 10):  # one run every 2 h: 210 runs over 17.5 days
            at = now - timedelta(hours=2 * i + 1)
            price = 2.0 if i < 50 else 2.5  # the price fell 100 h ago
            version = "2" if i < 120 else "1"  # the stack was upgraded 240 h ago
            session.add(_run(endpoint.id, at, 1.0 + i / 1000, price=price, version=version))
    auth = await bearer(client, "viewer")
    raw = (await client.get("/api/v1/trends/cost?days=5&profile=chat", headers=auth)).json()
    assert raw["grain"] == "run" and len(raw["series"][0]["points"]) == 60
    assert [m["kind"] for m in raw["markers"]] == ["price"]
    assert raw["markers"][0]["label"] == "price per gpu hour 2.5 → 2"
    year = (await client.get("/api/v1/trends/cost?days=30&profile=chat", headers=auth)).json()
    assert year["grain"] == "day"
    assert sum(p["runs"] for p in year["series"][0]["points"]) == trends.RAW_LIMIT + 10
    assert {m["kind"] for m in year["markers"]} == {"price", "stack"}
    stack = next(m for m in year["markers"] if m["kind"] == "stack")
    assert stack["label"] == "engine version 1 → 2"
    page = await client.get("/trends?days=30&profile=chat", headers=auth)
    assert page.status_code == 200 and "Daily medians" in page.text and "engine version 1 → 2" in page.text


async def test_synthetic_history_is_shown_but_never_scored(app, client: httpx.AsyncClient, people) -> None:  # type: ignore[no-untyped-def]
    async with unit_of_work(app.state.sessionmaker) as session:
        report = await _seed(app, session, days=10, now=NOW)
        assert report.runs == 80 and report.steps == 320
        assert await session.scalar(select(func.count()).select_from(RunStep)) == 320
        first = await session.scalar(select(Endpoint).where(Endpoint.name == report.names[0]))
        assert first is not None
        card = await scorecards.endpoint_scorecard(session, endpoint=first, profile="chat", now=NOW)
        # No measured run: no letters, no cost, though the trend shows the synthetic history.
        assert card.run_id is None and card.cost_per_million_tokens_at_slo is None
        assert all(letter.score is None for letter in card.letters)
        assert card.trend and all(p.synthetic for p in card.trend)
        # A measured run, older than the newest synthetic ones, is what the card rests on.
        measured = _run(first.id, NOW - timedelta(days=2), 0.75)
        measured.scorecard = {
            "letters": [],
            "operating_point": {
                "step_index": 0,
                "load": 8.0,
                "load_kind": "concurrency",
                "output_tokens_per_s": 100.0,
            },
        }
        session.add(measured)
        await session.flush()
        card = await scorecards.endpoint_scorecard(session, endpoint=first, profile="chat", now=NOW)
        assert card.run_id == measured.id and card.cost_per_million_tokens_at_slo == 0.75
        cards = await scorecards.overview(session, profile="chat", now=NOW)
        assert [c.run_id for c in cards] == [measured.id, None]
    auth = await bearer(client, "viewer")
    data = (
        await client.get(f"/api/v1/trends/cost?days=30&profile=chat&endpoint={first.id}", headers=auth)
    ).json()
    kinds = sorted(s["synthetic"] for s in data["series"])
    assert kinds == [False, True]  # measured and synthetic: two series, never one
    # The synthetic costs follow the model: a price change two thirds through moves them.
    synthetic = next(s for s in data["series"] if s["synthetic"])["points"]
    assert synthetic[0]["cost_per_million_tokens"] > synthetic[-1]["cost_per_million_tokens"] * 1.15
    assert {m["kind"] for m in data["markers"]} == {"price", "stack"}
    run_page = await client.get(f"/runs/{synthetic[0]['run_id']}", headers=auth)
    assert run_page.status_code == 200 and "synthetic" in run_page.text


async def test_keyset_pages_hold_under_concurrent_inserts(app, client: httpx.AsyncClient, people) -> None:  # type: ignore[no-untyped-def]
    """Walking the run list while runs are being added: every run that existed when the walk
    began is seen exactly once, in order; new runs never shift a page."""
    async with unit_of_work(app.state.sessionmaker) as session:
        endpoint = await _endpoint(session, "paged")
        same = NOW - timedelta(hours=3)
        for i in range(57):  # ties on created_at: the id breaks them
            session.add(_run(endpoint.id, same if i % 3 == 0 else NOW - timedelta(minutes=i), 1.0))
    async with unit_of_work(app.state.sessionmaker) as session:
        before = set((await session.scalars(select(Run.id))).all())
    auth = await bearer(client, "viewer")

    async def insert_more() -> None:
        for k in range(20):
            async with unit_of_work(app.state.sessionmaker) as session:
                session.add(_run(endpoint.id, NOW + timedelta(seconds=k), 1.0))
            await asyncio.sleep(0)

    seen: list[tuple[str, int]] = []
    writer = asyncio.create_task(insert_more())
    url = "/api/v1/runs?limit=10"
    while url:
        body = (await client.get(url, headers=auth)).json()
        seen.extend((item["created_at"], item["id"]) for item in body["items"])
        url = f"/api/v1/runs?limit=10&cursor={body['next']}" if body["next"] else ""
        await asyncio.sleep(0)
    await writer
    ids = [run_id for _, run_id in seen]
    assert len(ids) == len(set(ids)), "a run appeared on two pages"
    assert before <= set(ids), "a run that existed before the walk was skipped"
    keys = [(datetime.fromisoformat(at), run_id) for at, run_id in seen]
    assert keys == sorted(keys, reverse=True)


async def test_endpoint_and_compare_pages_have_json_twins(app, client: httpx.AsyncClient, people) -> None:  # type: ignore[no-untyped-def]
    now = app.state.clock()
    async with unit_of_work(app.state.sessionmaker) as session:
        report = await _seed(app, session, days=3, now=now)
        ids = [
            e.id
            for e in (await session.scalars(select(Endpoint).where(Endpoint.name.in_(report.names)))).all()
        ]
        for endpoint_id, cost in zip(ids, (0.5, 0.8), strict=True):
            run = _run(endpoint_id, now - timedelta(hours=1), cost)
            run.scorecard = {
                "letters": [], "slo": {"tpot_ms": 50.0, "percentile": 99.0}, "capacity": 8.0,
                "capacity_at_least": cost == 0.5,
                "operating_point": {"step_index": 0, "load": 8.0, "load_kind": "concurrency", "interpolated": False,
                                    "output_tokens_per_s": 99.0},
            }  # fmt: skip
            session.add(run)
            await session.flush()
            session.add(
                RunStep(run_id=run.id, step_index=0, summary={"concurrency": 8, "output_tokens_per_s": 99.0})
            )
    auth = await bearer(client, "viewer")
    twin = (await client.get(f"/api/v1/endpoints/{ids[0]}/overview", headers=auth)).json()
    assert twin["endpoint"]["id"] == ids[0] and [p["profile"] for p in twin["profiles"]] == ["chat"]
    chat = twin["profiles"][0]
    assert chat["scorecard"]["cost_per_million_tokens_at_slo"] == 0.5
    assert {s["synthetic"] for s in chat["cost"]} == {True, False} and chat["percentile"] == "p99"
    assert (
        sum(1 for point in chat["latency"] if point["synthetic"]) == 12
    )  # 3 days x 4, operating steps joined
    assert len(twin["recent_runs"]) == 13 and twin["recent_runs"][0]["id"] == chat["scorecard"]["run_id"]
    page = await client.get(f"/endpoints/{ids[0]}", headers=auth)
    assert page.status_code == 200 and f"/api/v1/endpoints/{ids[0]}/overview" in page.text
    assert 'data-chart="cost-chat"' in page.text and 'data-chart="latency-chat"' in page.text
    # Compare opens on the measured endpoints; the JSON twin says the same.
    compare = (await client.get("/api/v1/compare?profile=chat", headers=auth)).json()
    assert compare["picked"] == sorted(ids) and [c["run_id"] for c in compare["curves"]] == [
        c["run_id"] for c in compare["cards"]
    ]
    assert compare["slo_tpot_ms"] == 50.0
    html = (await client.get("/compare?profile=chat", headers=auth)).text
    assert html.count('name="endpoint" value=') == 2 and html.count("checked") == 2
    # The first endpoint's SLO never broke: its capacity is a lower bound, the other's is not.
    assert html.count(">at least 8.0</span>") == 1
    assert [c["capacity_at_least"] for c in compare["cards"]] == [True, False]
