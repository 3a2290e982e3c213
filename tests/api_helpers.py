"""Waiting for background work through the API, bounded in time."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

FINAL = {"succeeded", "failed", "interrupted", "cancelled", "skipped_overlap"}


async def wait_for_run(
    client: httpx.AsyncClient, run_id: int, headers: dict[str, str], timeout: float = 90.0
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        summary: dict[str, Any] = (await client.get(f"/api/v1/runs/{run_id}", headers=headers)).json()
        if summary["status"] in FINAL:
            return summary
        if time.monotonic() > deadline:
            raise AssertionError(
                f"run {run_id} still {summary['status']} after {timeout} s: {summary.get('progress')}"
            )
        await asyncio.sleep(0.2)
