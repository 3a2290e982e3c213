"""Issue #18, finding 6: schedules could fire every second. cronsim reads a sixth field
(seconds), so `* * * * * *` fired each second while the check reported 60 s, and interval_s could
be 1; each slot that found the endpoint busy wrote a row (about 86,000 a day). Now: five-field
cron only, at least 60 s between firings unless an admin lowers it, and skipped slots in a row
are one row with a count. Each failed on 48cab14's code."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import select

from app.db import unit_of_work
from app.models import Endpoint, Run
from app.services import schedules
from tests.conftest import bearer

T0 = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


async def test_cron_takes_five_fields_and_schedules_fire_at_most_once_a_minute(idle_app, people) -> None:  # type: ignore[no-untyped-def]
    app = idle_app
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as client:
        editor, admin = await bearer(client, "editor"), await bearer(client, "admin")
        made = await client.post("/api/v1/endpoints", json={"name": "e", "base_url": "http://127.0.0.1:9/v1",
                                 "model": "m"}, headers=editor)  # fmt: skip
        endpoint_id = made.json()["id"]

        async def schedule(**body: object) -> httpx.Response:
            return await client.post("/api/v1/schedules", json={"endpoint_id": endpoint_id, "profile": "smoke", **body},
                                     headers=editor)  # fmt: skip

        every_second = await schedule(cron="* * * * * *")
        assert (
            every_second.status_code == 422
            and "five fields" in every_second.json()["error"]["fields"]["cron"]
        )
        assert (await schedule(interval_s=1)).status_code == 422
        assert (
            (await schedule(interval_s=59)).json()["error"]["fields"]["interval_s"].startswith("at least 60")
        )
        minute = await schedule(cron="*/1 * * * *")
        assert minute.status_code == 201, minute.text
        sid = minute.json()["id"]
        gaps = [(b - a).total_seconds() for a, b in zip(*(lambda f: (f, f[1:]))(
            [datetime.fromisoformat(t) for t in minute.json()["next_firings"]]), strict=False)]  # fmt: skip
        assert min(gaps) == 60
        slower = await client.patch(
            "/api/v1/settings/site", json={"min_schedule_interval_s": 300}, headers=admin
        )
        assert slower.status_code == 200
        refused = await client.patch(f"/api/v1/schedules/{sid}", json={"cron": "0,1 * * * *"}, headers=editor)
        assert refused.status_code == 422 and "60 s apart" in refused.json()["error"]["fields"]["cron"]
        lowered = await client.patch(
            "/api/v1/settings/site", json={"min_schedule_interval_s": 10}, headers=admin
        )
        assert lowered.status_code == 200
        assert (
            await client.patch(f"/api/v1/schedules/{sid}", json={"interval_s": 10}, headers=editor)
        ).status_code == 200
        assert (await client.patch("/api/v1/settings/site", json={"min_schedule_interval_s": 10},
                                   headers=editor)).status_code == 403  # fmt: skip


async def test_skipped_slots_in_a_row_are_one_row_with_a_count(idle_app) -> None:  # type: ignore[no-untyped-def]
    app = idle_app
    async with unit_of_work(app.state.sessionmaker) as session:
        endpoint = Endpoint(name="e", base_url="http://127.0.0.1:9/v1", model="m", tags=[])
        session.add(endpoint)
        await session.flush()
        await schedules.create(session, endpoint_id=endpoint.id, profile_name="smoke", interval_s=60,
                               enabled=True, now=T0)  # fmt: skip

    async def tick(at: datetime) -> None:
        async with unit_of_work(app.state.sessionmaker) as session:
            while await schedules.tick(session, now=at):
                pass

    for minute in range(1, 62):  # the first slot queues a run that never ends: an hour of busy slots
        await tick(T0 + timedelta(minutes=minute))
    async with unit_of_work(app.state.sessionmaker) as session:
        rows = list((await session.scalars(select(Run).order_by(Run.id))).all())
    assert [r.status for r in rows] == ["queued", "skipped_overlap"]
    skipped = rows[1]
    assert skipped.skipped_slots == 60 and "60 slots since" in (skipped.error or "")
    assert skipped.scheduled_for is not None and skipped.scheduled_for > T0 + timedelta(
        minutes=59
    )  # the latest slot
    async with unit_of_work(app.state.sessionmaker) as session:
        first = await session.get(Run, rows[0].id)
        assert first is not None
        first.status, first.finished_at = "succeeded", T0 + timedelta(minutes=62)
    await tick(T0 + timedelta(minutes=63))  # free again: a run is queued
    await tick(T0 + timedelta(minutes=64))  # busy: a new skip row, not the old one's count
    async with unit_of_work(app.state.sessionmaker) as session:
        statuses = [
            (r.status, r.skipped_slots) for r in (await session.scalars(select(Run).order_by(Run.id))).all()
        ]
    assert statuses == [
        ("succeeded", None),
        ("skipped_overlap", 60),
        ("queued", None),
        ("skipped_overlap", 1),
    ]
