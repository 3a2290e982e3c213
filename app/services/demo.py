"""`smartbench demo`: the simulated fleet it registers and probes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Endpoint
from app.schemas import EndpointCreate, EndpointUpdate
from app.security.crypto import SecretBox
from app.services import endpoints, runs, schedules

DEMO_PROFILE = "chat"


@dataclass(frozen=True)
class DemoEndpoint:
    name: str
    preset: str
    fields: dict[str, Any]


FLEET = [
    DemoEndpoint(
        "h100-llama70b-fp8",
        "h100-fp8-70b",
        {"gpu_model": "H100 SXM", "gpu_count": 8, "price_per_gpu_hour": 2.50, "watts_per_gpu": 700,
         "engine": "vllm", "quantization": "fp8", "tags": ["demo", "self-hosted"]},
    ),
    DemoEndpoint(
        "b200-llama70b-nvfp4",
        "b200-nvfp4-70b",
        {"gpu_model": "B200", "gpu_count": 8, "price_per_gpu_hour": 4.00, "watts_per_gpu": 1000,
         "engine": "tensorrt-llm", "quantization": "nvfp4", "tags": ["demo", "self-hosted"]},
    ),
    DemoEndpoint(
        "hosted-llama70b-api",
        "h100-fp8-70b",
        {"input_price_per_million": 0.60, "output_price_per_million": 0.80, "engine": "hosted-api",
         "tags": ["demo", "hosted"]},
    ),
]  # fmt: skip


async def register(
    session: AsyncSession, *, urls: dict[str, str], model: str, box: SecretBox, by: int | None, now: datetime
) -> list[int]:
    """Register (or re-point) the demo endpoints and queue a first run of each."""
    queued = []
    for item in FLEET:
        existing = await session.scalar(select(Endpoint).where(Endpoint.name == item.name))
        if existing is None:
            data = EndpointCreate(name=item.name, base_url=urls[item.name], model=model, **item.fields)
            endpoint = await endpoints.create(session, data=data, box=box, by=by)
        else:
            update = EndpointUpdate(base_url=urls[item.name], model=model)
            endpoint = await endpoints.update(session, endpoint_id=existing.id, data=update, box=box)
        run = await runs.start(
            session, endpoint_id=endpoint.id, profile_name=DEMO_PROFILE, by=by, trigger="demo", now=now
        )
        queued.append(run.id)
        # Keep probing while the demo runs, so the trends grow: a smoke canary every minute and
        # the chat sweep every ten (a busy endpoint records the slot as skipped_overlap).
        scheduled = {
            (s.endpoint_id, p) for s, _, p in await schedules.list_all(session, endpoint_id=endpoint.id)
        }
        for profile, interval in (("smoke", 60), (DEMO_PROFILE, 600)):
            if (endpoint.id, profile) not in scheduled:
                await schedules.create(
                    session,
                    endpoint_id=endpoint.id,
                    profile_name=profile,
                    interval_s=interval,
                    enabled=True,
                    now=now,
                )
    return queued
