"""Issue #18, finding 1: a run nothing could remove. An admin deletes a finished run (API,
page, CLI) with its steps, samples and the alerts judged on it; the scorecard, the trends and
the alerts then rest on the runs that remain. Editors cannot; a queued or running run is a 409.
(48cab14 had no way short of deleting the endpoint: DELETE /api/v1/runs/{id} answered 405.)"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import httpx
from sqlalchemy import func, select

from app.config import Settings
from app.db import unit_of_work
from app.models import Alert, RequestSample, Run
from tests.conftest import bearer, csrf_from, login

FIXTURES = Path(__file__).parents[1] / "fixtures" / "imports"
VLLM = sorted((FIXTURES / "vllm-0.33.0").glob("*.json"))


async def _import(
    client: httpx.AsyncClient, auth: dict[str, str], endpoint_id: int, files: list[Path]
) -> int:
    done = await client.post(
        "/api/v1/imports", data={"endpoint_id": str(endpoint_id), "profile": "chat"},
        files=[("files", (p.name, p.read_bytes())) for p in files], headers=auth,
    )  # fmt: skip
    assert done.status_code == 201, done.text
    return int(done.json()["run_id"])


async def test_an_admin_deletes_a_run_and_the_scorecard_falls_back(app, client, people) -> None:  # type: ignore[no-untyped-def]
    admin, editor = await bearer(client, "admin"), await bearer(client, "editor")
    made = await client.post("/api/v1/endpoints", json={"name": "h100", "base_url": "http://127.0.0.1:9/v1",
                             "model": "sim", "gpu_count": 1, "price_per_gpu_hour": 2.0}, headers=editor)  # fmt: skip
    endpoint_id = made.json()["id"]
    older = await _import(client, editor, endpoint_id, VLLM)
    newer = await _import(client, editor, endpoint_id, VLLM[:1])
    card = (
        await client.get(f"/api/v1/endpoints/{endpoint_id}/scorecard?profile=chat", headers=admin)
    ).json()["items"][0]
    assert card["run_id"] == newer
    async with unit_of_work(app.state.sessionmaker) as session:
        session.add(Alert(endpoint_id=endpoint_id, run_id=newer, kind="regression", profile_name="chat",
                          metric="ttft_ms", message="ttft regressed", created_at=datetime.now(UTC)))  # fmt: skip
    assert len((await client.get("/api/v1/alerts", headers=admin)).json()["items"]) == 1
    refused = await client.delete(f"/api/v1/runs/{newer}", headers=editor)
    assert refused.status_code == 403
    gone = await client.delete(f"/api/v1/runs/{newer}", headers=admin)
    assert gone.status_code == 204, gone.text
    assert (await client.get(f"/api/v1/runs/{newer}", headers=admin)).status_code == 404
    card = (
        await client.get(f"/api/v1/endpoints/{endpoint_id}/scorecard?profile=chat", headers=admin)
    ).json()["items"][0]
    assert card["run_id"] == older  # the scorecard rests on the run that remains
    assert (await client.get("/api/v1/alerts", headers=admin)).json()["items"] == []
    trend = (await client.get("/api/v1/trends/cost?profile=chat&days=30", headers=admin)).json()
    assert [p["runs"] for s in trend["series"] for p in s["points"]] == [1]
    async with unit_of_work(app.state.sessionmaker) as session:
        left = await session.scalar(
            select(func.count()).select_from(RequestSample).where(RequestSample.run_id == newer)
        )
        assert left == 0  # samples went with it
        queued = Run(endpoint_id=endpoint_id, profile_name="chat", profile_snapshot={}, cost_snapshot={},
                     endpoint_snapshot={}, status="running", trigger="manual", progress={})  # fmt: skip
        session.add(queued)
        await session.flush()
        running_id = queued.id
    busy = await client.delete(f"/api/v1/runs/{running_id}", headers=admin)
    assert busy.status_code == 409 and "cancel it first" in busy.json()["error"]["message"]
    await login(client, "admin")
    page = await client.get(f"/runs/{older}")
    assert 'id="delete-run"' in page.text
    done = await client.post(f"/runs/{older}/delete", data={"csrf_token": csrf_from(page.text)})
    assert done.status_code == 303 and done.headers["location"] == f"/endpoints/{endpoint_id}"
    cards = (
        await client.get(f"/api/v1/endpoints/{endpoint_id}/scorecard?profile=chat", headers=admin)
    ).json()
    assert [card["run_id"] for card in cards["items"]] == [None]  # no run left to rest on
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as other:
        await login(other, "editor")
        page = await other.get(f"/runs/{running_id}")
        assert page.status_code == 200 and 'id="delete-run"' not in page.text


async def test_the_cli_deletes_a_run(app, client, people, settings: Settings) -> None:  # type: ignore[no-untyped-def]
    editor = await bearer(client, "editor")
    made = await client.post("/api/v1/endpoints", json={"name": "h100", "base_url": "http://127.0.0.1:9/v1",
                             "model": "sim", "gpu_count": 1, "price_per_gpu_hour": 2.0}, headers=editor)  # fmt: skip
    run_id = await _import(client, editor, made.json()["id"], VLLM)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMARTBENCH_")}
    env["SMARTBENCH_DATA_DIR"] = str(settings.data_dir)
    if settings.database.url:
        env["SMARTBENCH_DATABASE_URL"] = settings.database.url
    exe = str(Path(sys.executable).parent / "smartbench")
    done = subprocess.run(
        [exe, "runs", "delete", str(run_id), "--yes"], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0 and f"deleted run {run_id}" in done.stdout, done.stdout + done.stderr
    assert (await client.get(f"/api/v1/runs/{run_id}", headers=editor)).status_code == 404
    again = subprocess.run(
        [exe, "runs", "delete", str(run_id), "--yes"], env=env, capture_output=True, text=True, timeout=120
    )
    assert again.returncode != 0 and "does not exist" in again.stdout + again.stderr
