"""The executor orchestrates probe processes: at most `probe_slots` at once per host, the rest
queued with the reason in the run list; user cancellation keeps what was measured; a probe
process that dies leaves a failed run with the reason. Driven with `tick()`, on SQLite and
PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import signal

import httpx
import pytest
from sqlalchemy import func, select

from app.config import Settings
from app.cores import probe_slots
from app.db import unit_of_work
from app.main import create_app
from app.models import Run
from app.services import runs, samples
from app.services.executor import Executor
from tests.conftest import bearer
from tests.simproc import simulator

pytestmark = pytest.mark.slow

FAST = {"name": "fast", "input_tokens_mean": 16, "output_tokens_mean": 8, "load_levels": [1],
        "requests_per_step": 4, "slo_ttft_ms": 500, "slo_tpot_ms": 50}  # fmt: skip
LONG = {"name": "long", "input_tokens_mean": 16, "output_tokens_mean": 32, "load_levels": [2, 2],
        "requests_per_step": 400, "slo_ttft_ms": 500, "slo_tpot_ms": 50}  # fmt: skip


@pytest.mark.parametrize(("cores", "slots"), [(1, 1), (2, 1), (8, 7)])
def test_probe_slots_are_cores_less_one(monkeypatch: pytest.MonkeyPatch, cores: int, slots: int) -> None:
    monkeypatch.setattr("app.cores.available_cores", lambda: cores)
    assert probe_slots(Settings(env="test")) == slots
    assert probe_slots(Settings(env="test", max_parallel_runs=3)) == 3


async def test_serve_and_worker_build_the_same_executor(settings: Settings) -> None:
    settings = settings.but(max_parallel_runs=2, heartbeat_timeout_s=12.0, sample_retention_days=7, scheduler=False,
                            run_deadline_s=99.0, run_executor=False)  # fmt: skip
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        served = app.state.executor  # what `serve` and `demo` run
        worker = Executor.from_settings(
            settings, app.state.sessionmaker, app.state.secret_box, app.state.clock
        )
        for executor in (served, worker):  # `worker` builds its own the same way
            assert executor.max_parallel == 2 and executor.stale_after.total_seconds() == 12.0
            assert executor.retention_days == 7 and executor.scheduler is False
            assert executor.run_deadline_s == 99.0
        assert served.probe_cores == worker.probe_cores
        overridden = Executor.from_settings(
            settings, app.state.sessionmaker, app.state.secret_box, app.state.clock, max_parallel=1
        )
        assert overridden.max_parallel == 1  # `worker --max-parallel 1`


async def _setup(client: httpx.AsyncClient, auth: dict[str, str], urls: list[str]) -> list[int]:
    for profile in (FAST, LONG):
        assert (await client.post("/api/v1/profiles", json=profile, headers=auth)).status_code == 201
    ids = []
    for i, url in enumerate(urls):
        created = await client.post(
            "/api/v1/endpoints", json={"name": f"sim-{i}", "base_url": url, "model": "sim"}, headers=auth
        )
        ids.append(created.json()["id"])
    return ids


async def _queue(client: httpx.AsyncClient, auth: dict[str, str], endpoint_id: int, profile: str) -> int:
    accepted = await client.post(
        f"/api/v1/endpoints/{endpoint_id}/runs", json={"profile": profile}, headers=auth
    )
    assert accepted.status_code == 202, accepted.text
    return int(accepted.json()["run_id"])


async def _progress(app, run_id: int, at_least: int) -> dict:  # type: ignore[no-untyped-def]
    """The run's live progress once its probe reported `at_least` requests (bounded wait)."""
    for _ in range(300):
        async with unit_of_work(app.state.sessionmaker) as session:
            run = await session.get(Run, run_id)
            assert run is not None
            if run.progress is not None and run.progress.done >= at_least:
                return run.progress.model_dump()
        await asyncio.sleep(0.05)
    raise AssertionError(f"run {run_id} reported no progress in 15 s")


async def test_one_probe_per_slot_the_rest_wait_and_say_why(idle_app, people) -> None:  # type: ignore[no-untyped-def]
    app = idle_app
    executor = app.state.executor
    executor.max_parallel = 1
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as client:
        auth = await bearer(client, "editor")
        with simulator("--preset", "zero") as a, simulator("--preset", "zero") as b:
            first, second = await _setup(client, auth, [a, b])
            run_a = await _queue(client, auth, first, "fast")
            run_b = await _queue(client, auth, second, "fast")
            assert await executor.tick() is True
            assert await executor.tick() is False, "the only probe slot is taken"
            listed = {r["id"]: r for r in (await client.get("/api/v1/runs", headers=auth)).json()["items"]}
            assert listed[run_b]["status"] == "queued"
            assert listed[run_b]["waiting_for"].startswith("waits for a free probe slot (1 probe running")
            assert listed[run_a]["waiting_for"] is None
            await asyncio.gather(*executor.active)
            assert await executor.tick() is True
            await asyncio.gather(*executor.active)
            for run_id in (run_a, run_b):
                summary = (await client.get(f"/api/v1/runs/{run_id}", headers=auth)).json()
                assert summary["status"] == "succeeded", summary["error"]
                assert summary["steps"][0]["requests"]["completed"] == 4


async def test_a_user_cancels_a_queued_and_a_running_run(idle_app, people) -> None:  # type: ignore[no-untyped-def]
    app = idle_app
    executor = app.state.executor
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as client:
        auth = await bearer(client, "editor")
        viewer = await bearer(client, "viewer")
        with simulator("--preset", "fixed", "--ttft-ms", "20", "--itl-ms", "3") as url:
            (endpoint,) = await _setup(client, auth, [url])
            running = await _queue(client, auth, endpoint, "long")
            queued = await _queue(client, auth, endpoint, "fast")
            assert (await client.post(f"/api/v1/runs/{queued}/cancel", headers=viewer)).status_code == 403
            cancelled = await client.post(f"/api/v1/runs/{queued}/cancel", headers=auth)
            assert cancelled.status_code == 202 and cancelled.json()["status"] == "cancelled"
            again = await client.post(f"/api/v1/runs/{queued}/cancel", headers=auth)
            assert again.status_code == 409 and again.json()["error"]["code"] == "conflict"

            assert await executor.tick() is True
            progress = await _progress(app, running, 4)
            assert progress["pid"] != os.getpid(), "the load runs in a process of its own"
            answer = await client.post(f"/api/v1/runs/{running}/cancel", headers=auth)
            assert answer.status_code == 202 and answer.json()["status"] == "running"
            await asyncio.wait_for(asyncio.gather(*executor.active), timeout=20)
        summary = (await client.get(f"/api/v1/runs/{running}", headers=auth)).json()
    assert summary["status"] == "cancelled"
    assert len(summary["steps"]) == 1 and 4 <= summary["steps"][0]["requests"]["completed"] < 400
    async with unit_of_work(app.state.sessionmaker) as session:
        _, total = await samples.samples_page(session, run_id=running, limit=1, offset=0)
    assert total == summary["steps"][0]["requests"]["sent"], "the partial step's samples are stored"


async def test_a_probe_process_that_dies_leaves_a_failed_run(idle_app, people) -> None:  # type: ignore[no-untyped-def]
    app = idle_app
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as client:
        auth = await bearer(client, "editor")
        with simulator("--preset", "fixed", "--ttft-ms", "20", "--itl-ms", "3") as url:
            (endpoint,) = await _setup(client, auth, [url])
            run_id = await _queue(client, auth, endpoint, "long")
            assert await app.state.executor.tick() is True
            progress = await _progress(app, run_id, 1)
            os.kill(progress["pid"], signal.SIGKILL)
            await asyncio.wait_for(asyncio.gather(*app.state.executor.active), timeout=20)
        summary = (await client.get(f"/api/v1/runs/{run_id}", headers=auth)).json()
    assert summary["status"] == "failed"
    assert summary["error"] == "the probe process was killed by SIGKILL"


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)  # SQLite serialises writers: no race
async def test_a_lost_race_for_an_endpoint_undoes_only_the_claim(idle_app, people, backend) -> None:  # type: ignore[no-untyped-def]
    """Two claimers at once on PostgreSQL: the second takes the endpoint's other queued run, the
    unique index on its one running run refuses it once the first commits, and the second
    claimer's transaction goes on (the claim was a savepoint)."""
    from datetime import UTC, datetime

    from app.models import AppSetting

    app = idle_app
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as client:
        auth = await bearer(client, "editor")
        made = await client.post("/api/v1/endpoints", json={"name": "e", "base_url": "http://127.0.0.1:9/v1",
                                                            "model": "m"}, headers=auth)  # fmt: skip
        for _ in range(2):
            await client.post(
                f"/api/v1/endpoints/{made.json()['id']}/runs", json={"profile": "smoke"}, headers=auth
            )
    now = datetime.now(UTC)
    maker = app.state.sessionmaker
    async with maker() as first, maker() as second:
        taken = await runs.claim(first, now=now, worker="a")
        assert taken is not None
        second.add(AppSetting(key="written-before-the-claim", value=1))
        await second.flush()
        racing = asyncio.create_task(runs.claim(second, now=now, worker="b"))
        await asyncio.sleep(0.5)  # the second waits on the index entry the first holds
        await first.commit()
        assert await racing is None
        assert await second.scalar(select(func.count(Run.id))) == 2  # its transaction is alive
        await second.commit()
    async with maker() as check:
        assert await check.get(AppSetting, "written-before-the-claim") is not None  # and kept its work
