"""`smartbench worker`: a separate process claims and executes queued runs, and stops cleanly."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time

import httpx

from app.config import Settings
from tests.api_helpers import wait_for_run
from tests.conftest import bearer
from tests.simproc import simulator


async def test_worker_executes_queued_runs_and_stops_on_sigterm(
    settings: Settings, app, client: httpx.AsyncClient, people
) -> None:
    await app.state.executor.stop()  # only the worker process may execute runs here
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMARTBENCH_")}
    env["SMARTBENCH_DATA_DIR"] = str(settings.data_dir)
    if settings.database.url:
        env["SMARTBENCH_DATABASE_URL"] = settings.database.url
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "app.cli", "worker", "--grace", "5",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=env,
    )  # fmt: skip
    try:
        auth = await bearer(client, "editor")
        with simulator("--preset", "fixed", "--ttft-ms", "10", "--itl-ms", "1") as url:
            endpoint = await client.post(
                "/api/v1/endpoints", json={"name": "w", "base_url": url, "model": "sim"}, headers=auth
            )
            run = await client.post(
                f"/api/v1/endpoints/{endpoint.json()['id']}/runs", json={"profile": "smoke"}, headers=auth
            )
            summary = await wait_for_run(client, run.json()["run_id"], auth, timeout=60)
        assert summary["status"] == "succeeded", summary
        assert summary["steps"][0]["requests"]["completed"] == 5
    finally:
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        output, _ = await asyncio.wait_for(proc.communicate(), timeout=20)
    assert proc.returncode == 0, output.decode()
    assert time.monotonic() - started < 5 + 5
    assert b"waiting for queued runs" in output
