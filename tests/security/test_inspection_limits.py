"""Issue #18, finding 5: inspections had no limit. About 20 parallel inspections of an endpoint
that never answers each held a database session for up to 60 s and exhausted the pool; one could
run during a live measurement; a server's own words in the detection evidence (a model path, a
build string) reached viewers. Now: one inspection per endpoint at a time and a cool-down
(429 with Retry-After), none while a run measures the endpoint (409), no connection held while
the endpoint is asked, and the evidence masked like every excerpt. Each failed on 48cab14's code."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import httpx
import pytest

from app.db import unit_of_work
from app.models import Endpoint, Run
from app.services import inspections, runs
from tests.conftest import bearer
from tests.simproc import simulator


@asynccontextmanager
async def silent_server() -> AsyncIterator[str]:
    """Accepts connections and never answers (bounded: closed when the test ends)."""
    held: list[asyncio.StreamWriter] = []

    async def handle(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        for writer in held:
            writer.close()
        server.close()


async def test_twenty_inspections_of_a_silent_endpoint_hold_nothing(
    idle_app, people, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    app = idle_app
    monkeypatch.setattr(inspections, "RUN_BOUND_S", 3.0)
    async with (
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as client,
        silent_server() as url,
    ):
        editor = await bearer(client, "editor")
        made = await client.post("/api/v1/endpoints", json={"name": "mute", "base_url": url, "model": "m"},
                                 headers=editor)  # fmt: skip
        endpoint_id = made.json()["id"]
        asks = [
            client.post(f"/api/v1/endpoints/{endpoint_id}/inspections", headers=editor) for _ in range(20)
        ]
        tasks = [asyncio.ensure_future(a) for a in asks]
        await asyncio.sleep(1.0)  # the one that runs is waiting on the silent endpoint now
        assert app.state.engine.pool.checkedout() == 0  # no connection held during its network I/O
        started = asyncio.get_running_loop().time()
        health = await client.get("/healthz")
        assert health.status_code == 200 and asyncio.get_running_loop().time() - started < 1.0
        answers = await asyncio.gather(*tasks)
        codes = sorted(a.status_code for a in answers)
        assert codes == [201] + [429] * 19, codes
        refused = next(a for a in answers if a.status_code == 429)
        assert int(refused.headers["retry-after"]) >= 1 and "under way" in refused.json()["error"]["message"]
        done = next(a for a in answers if a.status_code == 201).json()
        assert done["error"]  # the silent endpoint is an inspection with its error, not a hang
        async with unit_of_work(app.state.sessionmaker) as session:
            endpoint = await session.get(Endpoint, endpoint_id)
            assert endpoint is not None and endpoint.inspecting_since is None  # released
        soon = await client.post(f"/api/v1/endpoints/{endpoint_id}/inspections", headers=editor)
        assert soon.status_code == 429 and "inspected" in soon.json()["error"]["message"]  # the cool-down


async def test_no_inspection_while_a_run_measures_and_no_run_while_one_inspects(idle_app, people) -> None:  # type: ignore[no-untyped-def]
    app = idle_app
    now = datetime.now(UTC)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as client:
        editor = await bearer(client, "editor")
        made = await client.post("/api/v1/endpoints", json={"name": "e", "base_url": "http://127.0.0.1:9/v1",
                                 "model": "m"}, headers=editor)  # fmt: skip
        endpoint_id = made.json()["id"]
        async with unit_of_work(app.state.sessionmaker) as session:
            live = Run(endpoint_id=endpoint_id, profile_name="smoke", profile_snapshot={}, cost_snapshot={},
                       endpoint_snapshot={}, status="running", trigger="manual", progress={}, started_at=now)  # fmt: skip
            session.add(live)
        busy = await client.post(f"/api/v1/endpoints/{endpoint_id}/inspections", headers=editor)
        assert busy.status_code == 409 and "is measuring this endpoint" in busy.json()["error"]["message"]
    async with unit_of_work(app.state.sessionmaker) as session:
        running = await session.get(Run, live.id)
        assert running is not None
        running.status = "succeeded"
        queued = Run(endpoint_id=endpoint_id, profile_name="smoke", profile_snapshot={}, cost_snapshot={},
                     endpoint_snapshot={}, status="queued", trigger="manual", progress={}, created_at=now)  # fmt: skip
        session.add(queued)
        endpoint = await session.get(Endpoint, endpoint_id)
        assert endpoint is not None
        endpoint.inspecting_since = now  # an inspection is asking the endpoint
    async with unit_of_work(app.state.sessionmaker) as session:
        assert await runs.claim(session, now=now) is None  # the run waits for the inspection
        endpoint = await session.get(Endpoint, endpoint_id)
        assert endpoint is not None
        endpoint.inspecting_since = None
    async with unit_of_work(app.state.sessionmaker) as session:
        claimed = await runs.claim(session, now=now)
        assert claimed is not None and claimed.id == queued.id


async def test_detection_evidence_is_masked_for_viewers(idle_app, people) -> None:  # type: ignore[no-untyped-def]
    app = idle_app
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as client:
        editor, viewer = await bearer(client, "editor"), await bearer(client, "viewer")
        with simulator("--preset", "fixed", "--ttft-ms", "5", "--itl-ms", "1", "--engine", "sglang") as url:
            made = await client.post("/api/v1/endpoints", json={"name": "s", "base_url": url, "model": "sim"},
                                     headers=editor)  # fmt: skip
            endpoint_id = made.json()["id"]
            assert (
                await client.post(f"/api/v1/endpoints/{endpoint_id}/inspections", headers=editor)
            ).status_code == 201
        seen = (await client.get(f"/api/v1/endpoints/{endpoint_id}/inspections", headers=editor)).json()[
            "items"
        ][0]
        path = next(e["saw"] for e in seen["evidence"] if e["source"] == "GET /get_model_info")
        assert path.startswith("model_path «") and "…" not in path  # editors see what the server said
        masked = (await client.get(f"/api/v1/endpoints/{endpoint_id}/inspections", headers=viewer)).json()[
            "items"
        ][0]
        assert (
            next(e["saw"] for e in masked["evidence"] if e["source"] == "GET /get_model_info")
            == "model_path «…»"
        )
        page = (await client.get(f"/endpoints/{endpoint_id}", headers=viewer)).text
        assert "model_path «…»" in page and path not in page
