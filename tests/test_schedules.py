"""Scheduling with an injected clock: no sleeping. Cadence, offset bounds, catch-up after
downtime, overlap recorded as skipped_overlap, and the REST twin."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import select

from app.db import unit_of_work
from app.models import Endpoint, Run, RunStatus
from app.services import schedules
from tests.conftest import bearer

T0 = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)


async def _endpoint(app, name: str = "e") -> int:  # type: ignore[no-untyped-def]
    async with unit_of_work(app.state.sessionmaker) as session:
        endpoint = Endpoint(name=name, base_url="http://127.0.0.1:9/v1", model="m", tags=[])
        session.add(endpoint)
        await session.flush()
        return endpoint.id


async def _tick_all(app, now: datetime) -> int:  # type: ignore[no-untyped-def]
    fired = 0
    while True:
        async with unit_of_work(app.state.sessionmaker) as session:
            if not await schedules.tick(session, now=now):
                return fired
        fired += 1


async def _runs(app) -> list[Run]:  # type: ignore[no-untyped-def]
    async with unit_of_work(app.state.sessionmaker) as session:
        return list((await session.scalars(select(Run).order_by(Run.scheduled_for))).all())


async def _finish_all(app) -> None:  # type: ignore[no-untyped-def]
    async with unit_of_work(app.state.sessionmaker) as session:
        for run in (await session.scalars(select(Run).where(Run.status == RunStatus.queued.value))).all():
            run.status = RunStatus.succeeded.value


async def test_cadence_and_offset(app) -> None:
    await app.state.executor.stop()
    endpoint_id = await _endpoint(app)
    async with unit_of_work(app.state.sessionmaker) as session:
        schedule = await schedules.create(
            session, endpoint_id=endpoint_id, profile_name="smoke", interval_s=60, enabled=True, now=T0
        )
        offset = schedule.offset_s
    assert 0 <= offset < 15  # min(interval / 4, 60 s)
    now = T0
    for _ in range(5):
        now += timedelta(seconds=60)
        assert await _tick_all(app, now) == 1
        assert await _tick_all(app, now) == 0  # the same slot never fires twice
        await _finish_all(app)
    runs = await _runs(app)
    assert len(runs) == 5 and all(r.trigger == "schedule" for r in runs)
    slots = [r.scheduled_for for r in runs]
    assert all((b - a).total_seconds() == 60 for a, b in itertools.pairwise(slots))
    for slot in slots:
        assert slot is not None and abs((slot.timestamp() % 60) - offset) < 1e-6


async def test_offsets_spread_endpoints_and_are_stable() -> None:
    offsets = [schedules.stable_offset(i, 600) for i in range(1, 50)]
    assert len({round(o, 3) for o in offsets}) > 40 and all(0 <= o < 60 for o in offsets)
    assert schedules.stable_offset(7, 600) == schedules.stable_offset(7, 600)


async def test_one_catch_up_run_after_an_hour_of_downtime(app) -> None:
    await app.state.executor.stop()
    endpoint_id = await _endpoint(app)
    async with unit_of_work(app.state.sessionmaker) as session:
        await schedules.create(
            session, endpoint_id=endpoint_id, profile_name="smoke", interval_s=300, enabled=True, now=T0
        )
    later = T0 + timedelta(hours=1, seconds=30)
    assert await _tick_all(app, later) == 1
    runs = await _runs(app)
    assert len(runs) == 1  # not twelve
    assert runs[0].scheduled_for is not None and later - runs[0].scheduled_for < timedelta(seconds=300)


async def test_catch_up_too_late_is_skipped(app) -> None:
    await app.state.executor.stop()
    endpoint_id = await _endpoint(app)
    async with unit_of_work(app.state.sessionmaker) as session:
        await schedules.create(
            session,
            endpoint_id=endpoint_id,
            profile_name="smoke",
            interval_s=3600,
            enabled=True,
            now=T0,
            catchup_window_s=60,
        )
    # Down for a day: the latest missed slot is more than a minute old -> nothing runs now.
    now = T0 + timedelta(days=1, minutes=30)
    await _tick_all(app, now)
    assert await _runs(app) == []


async def test_overlap_is_recorded_as_skipped(app) -> None:
    await app.state.executor.stop()
    endpoint_id = await _endpoint(app)
    async with unit_of_work(app.state.sessionmaker) as session:
        await schedules.create(
            session,
            endpoint_id=endpoint_id,
            profile_name="smoke",
            interval_s=10,
            enabled=True,
            now=T0,
            min_interval_s=1,
        )
    await _tick_all(app, T0 + timedelta(seconds=10))  # queued, never finished: the endpoint is busy
    await _tick_all(app, T0 + timedelta(seconds=20))
    statuses = [r.status for r in await _runs(app)]
    assert statuses == ["queued", "skipped_overlap"]


async def test_schedules_api(app, client: httpx.AsyncClient, people) -> None:
    await app.state.executor.stop()
    auth = await bearer(client, "editor")
    viewer = await bearer(client, "viewer")
    endpoint = await client.post(
        "/api/v1/endpoints",
        json={"name": "s", "base_url": "http://127.0.0.1:9/v1", "model": "m"},
        headers=auth,
    )
    body = {"endpoint_id": endpoint.json()["id"], "profile": "smoke", "interval_s": 60}
    assert (await client.post("/api/v1/schedules", json=body, headers=viewer)).status_code == 403
    created = await client.post("/api/v1/schedules", json=body, headers=auth)
    assert created.status_code == 201, created.text
    assert created.json()["profile"] == "smoke" and created.json()["next_run_at"]
    again = await client.post("/api/v1/schedules", json=body, headers=auth)
    assert again.status_code == 422
    paused = await client.patch(
        f"/api/v1/schedules/{created.json()['id']}", json={"enabled": False}, headers=auth
    )
    assert paused.json()["enabled"] is False
    listed = await client.get(f"/api/v1/schedules?endpoint_id={endpoint.json()['id']}", headers=viewer)
    assert len(listed.json()["items"]) == 1
    assert (await client.delete(f"/api/v1/schedules/{created.json()['id']}", headers=auth)).status_code == 204


async def test_schedule_forms_on_the_endpoint_page(app, client: httpx.AsyncClient, people) -> None:
    from tests.conftest import login

    await app.state.executor.stop()
    csrf = await login(client, "editor")
    created = await client.post(
        "/endpoints/new",
        data={"name": "f", "base_url": "http://127.0.0.1:9/v1", "model": "m", "csrf_token": csrf},
    )
    path = created.headers["location"]
    added = await client.post(
        path + "/schedules", data={"profile": "smoke", "interval_s": "300", "csrf_token": csrf}
    )
    assert added.status_code == 303
    page = await client.get(path)
    assert 'id="schedules-table"' in page.text and "5 min" in page.text and "active" in page.text
    schedule_id = (await client.get("/api/v1/schedules")).json()["items"][0]["id"]
    await client.post(f"/schedules/{schedule_id}/toggle", data={"csrf_token": csrf})
    assert "paused" in (await client.get(path)).text
    await client.post(f"/schedules/{schedule_id}/delete", data={"csrf_token": csrf})
    assert (await client.get("/api/v1/schedules")).json()["items"] == []
    cron = await client.post(
        path + "/schedules",
        data={"profile": "smoke", "interval_s": "300", "cron": "0 2 * * *", "timezone": "Europe/Paris",
              "csrf_token": csrf},
    )  # fmt: skip
    assert cron.status_code == 303
    page = (await client.get(path)).text
    assert "<code>0 2 * * *</code>" in page and "Europe/Paris" in page and page.count('class="firing"') == 5


async def test_retention_prunes_samples_not_summaries(app, client: httpx.AsyncClient, people) -> None:
    import asyncio

    from sqlalchemy import func, insert

    from app.models import RequestSample, RunStep
    from app.services.executor import Executor

    await app.state.executor.stop()
    endpoint_id = await _endpoint(app, "old")
    now = datetime.now(UTC)
    async with unit_of_work(app.state.sessionmaker) as session:
        for age_days, n in ((40, 12_000), (1, 10)):
            run = Run(endpoint_id=endpoint_id, profile_name="chat", profile_snapshot={}, cost_snapshot={}, progress={},
                      scorecard={}, status="succeeded", created_at=now - timedelta(days=age_days),
                      finished_at=now - timedelta(days=age_days), cost_per_million_tokens_at_slo=1.5)  # fmt: skip
            session.add(run)
            await session.flush()
            session.add(RunStep(run_id=run.id, step_index=0, output_tokens_per_s=100.0, summary={"x": 1}))
            await session.execute(
                insert(RequestSample),
                [{"run_id": run.id, "step_index": 0, "seq": i, "sent_offset_ms": 0.0} for i in range(n)],
            )
    auth = await bearer(client, "viewer")
    before = (await client.get("/api/v1/trends/cost?days=60", headers=auth)).json()
    # Two workers pruning at once: both finish, nothing is deleted twice or left behind.
    one = Executor(app.state.sessionmaker, app.state.secret_box, app.state.clock, retention_days=30)
    two = Executor(app.state.sessionmaker, app.state.secret_box, app.state.clock, retention_days=30)
    deleted = await asyncio.gather(one.prune(), two.prune())
    assert 0 < sum(deleted) <= 12_000
    async with unit_of_work(app.state.sessionmaker) as session:
        assert await session.scalar(select(func.count(RequestSample.id))) == 10
        assert await session.scalar(select(func.count(RunStep.id))) == 2
    after = (await client.get("/api/v1/trends/cost?days=60", headers=auth)).json()
    assert after["series"] == before["series"]


async def test_a_cron_schedule_in_a_time_zone_fires_on_its_slots(app) -> None:
    """ "0 2 * * *" in Europe/Paris: 01:00 UTC in winter, 00:00 UTC in summer; the spring change
    makes one day 23 hours long; a slot fires once, then the next day's."""
    await app.state.executor.stop()
    endpoint_id = await _endpoint(app)
    start = datetime(2026, 3, 26, 12, 0, tzinfo=UTC)
    async with unit_of_work(app.state.sessionmaker) as session:
        schedule = await schedules.create(
            session, endpoint_id=endpoint_id, profile_name="smoke", interval_s=None, enabled=True, now=start,
            cron="0 2 * * *", timezone="Europe/Paris",
        )  # fmt: skip
        read = schedules.to_read(schedule, "e", "smoke")
    assert [at.strftime("%m-%d %H:%M") for at in read.next_firings] == [
        "03-27 01:00", "03-28 01:00", "03-29 01:00", "03-30 00:00", "03-31 00:00",
    ]  # fmt: skip
    assert read.cron == "0 2 * * *" and read.timezone == "Europe/Paris" and read.interval_s == 86400
    first = read.next_firings[0]
    assert await _tick_all(app, first - timedelta(seconds=1)) == 0
    assert await _tick_all(app, first) == 1
    assert await _tick_all(app, first + timedelta(minutes=30)) == 0
    runs = await _runs(app)
    assert [r.scheduled_for for r in runs] == [first]
    async with unit_of_work(app.state.sessionmaker) as session:
        again = await schedules.get(session, schedule.id)
        assert again.next_run_at == read.next_firings[1]


async def test_cron_through_the_api_and_its_errors(app, client: httpx.AsyncClient, people) -> None:
    await app.state.executor.stop()
    auth = await bearer(client, "editor")
    endpoint = await client.post(
        "/api/v1/endpoints",
        json={"name": "c", "base_url": "http://127.0.0.1:9/v1", "model": "m"},
        headers=auth,
    )
    body = {"endpoint_id": endpoint.json()["id"], "profile": "smoke"}
    for bad, field in (({"cron": "61 * * * *"}, "cron"), ({"cron": "0 2 * * *", "timezone": "Mars/Olympus"}, "timezone"),
                       ({"cron": "0 2 * * *", "interval_s": 60}, "cron"), ({}, "cron")):  # fmt: skip
        answer = await client.post("/api/v1/schedules", json={**body, **bad}, headers=auth)
        assert answer.status_code == 422 and field in answer.json()["error"]["fields"], answer.text
    made = await client.post("/api/v1/schedules", json={**body, "cron": "*/15 9-17 * * 1-5", "timezone": "UTC"},
                             headers=auth)  # fmt: skip
    assert made.status_code == 201, made.text
    firings = [datetime.fromisoformat(at) for at in made.json()["next_firings"]]
    assert len(firings) == 5 and all(
        at.minute % 15 == 0 and 9 <= at.hour <= 17 and at.weekday() < 5 for at in firings
    )
    moved = await client.patch(
        f"/api/v1/schedules/{made.json()['id']}", json={"interval_s": 300}, headers=auth
    )
    assert moved.json()["cron"] is None and moved.json()["interval_s"] == 300
