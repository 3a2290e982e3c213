"""`smartbench demo`: the simulated fleet it registers and probes."""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.domain import RunSource
from app.models import Endpoint, Run, RunStatus, RunStep
from app.schemas import EndpointCreate, EndpointUpdate
from app.security.crypto import SecretBox
from app.services import endpoints, history, profiles, runs, schedules
from app.simulator.presets import preset

DEMO_PROFILE = "chat"


HISTORY_DAYS = 90
HISTORY_RUNS_PER_DAY = 4


@dataclass(frozen=True)
class DemoEndpoint:
    name: str
    preset: str
    fields: Mapping[str, object]  # EndpointCreate fields
    engine_version: str | None = None
    # Its synthetic history: the fields it had before, and when they changed (days ago).
    before: Mapping[str, object] = field(default_factory=dict)
    upgraded_days_ago: float | None = None  # the serving stack: engine_version, decode steps 10 % faster
    repriced_days_ago: float | None = None
    simulator_args: tuple[str, ...] = ()  # which engine the simulator plays, and how
    metrics_path: str | None = None  # where its Prometheus text is (telemetry and measured energy)


FLEET = [
    DemoEndpoint(
        "h100-llama70b-fp8",
        "h100-fp8-70b",
        {"gpu_model": "H100 SXM", "gpu_count": 8, "price_per_gpu_hour": 2.50, "watts_per_gpu": 700,
         "engine": "vllm", "quantization": "fp8", "tags": ["demo", "self-hosted"]},
        engine_version="0.11.0",
        before={"price_per_gpu_hour": 3.00, "engine_version": "0.10.2"},
        upgraded_days_ago=55, repriced_days_ago=20,
        simulator_args=("--engine", "vllm", "--engine-version", "0.11.0"),
        metrics_path="/metrics",
    ),
    DemoEndpoint(
        "b200-llama70b-nvfp4",
        "b200-nvfp4-70b",
        {"gpu_model": "B200", "gpu_count": 8, "price_per_gpu_hour": 4.00, "watts_per_gpu": 1000,
         "engine": "tensorrt-llm", "quantization": "nvfp4", "tags": ["demo", "self-hosted"]},
        engine_version="1.0.0",
        before={"engine_version": "0.21.0"},
        upgraded_days_ago=35,
        # trtllm-serve: no per-chunk usage; this build's structured output and n > 1 misbehave.
        simulator_args=("--engine", "tensorrt-llm", "--engine-version", "1.0.0", "--no-chunk-usage",
                        "--break", "structured_output,n"),
        metrics_path="/prometheus/metrics",
    ),
    DemoEndpoint(
        "hosted-llama70b-api",
        "h100-fp8-70b",
        {"input_price_per_million": 0.60, "output_price_per_million": 0.80, "engine": "hosted-api",
         "tags": ["demo", "hosted"]},
        before={"input_price_per_million": 0.75, "output_price_per_million": 0.99},
        repriced_days_ago=45,
        # A hosted API shows nothing of its engine and no metrics; it rate-limits now and then.
        simulator_args=("--engine", "hosted", "--break", "logprobs"),
    ),
]  # fmt: skip


def history_plan(item: DemoEndpoint, now: datetime) -> history.Plan:
    """The demo endpoint's 90 days: the simulator's model of its preset, through its changes."""
    changes = []
    if item.upgraded_days_ago is not None:
        changes.append(
            history.Change(now - timedelta(days=item.upgraded_days_ago), {"engine_version": item.engine_version},
                           step_factor=0.9)
        )  # fmt: skip
    if item.repriced_days_ago is not None:
        prices = {key: item.fields.get(key) for key in item.before if key != "engine_version"}
        changes.append(history.Change(now - timedelta(days=item.repriced_days_ago), prices))
    return history.Plan(fields=item.before, config=preset(item.preset), changes=tuple(changes))


async def register(
    session: AsyncSession,
    *,
    urls: dict[str, str],
    model: str,
    box: SecretBox,
    by: int | None,
    now: datetime,
    settings: Settings,
) -> list[int]:
    """Register (or re-point) the demo endpoints and queue a first run of each."""
    queued = []
    for item in FLEET:
        existing = await session.scalar(select(Endpoint).where(Endpoint.name == item.name))
        metrics = urls[item.name].removesuffix("/v1") + item.metrics_path if item.metrics_path else None
        if existing is None:
            data = EndpointCreate.model_validate(
                {
                    "name": item.name,
                    "base_url": urls[item.name],
                    "model": model,
                    "metrics_url": metrics,
                    **item.fields,
                }
            )
            endpoint = await endpoints.create(session, data=data, box=box, by=by, settings=settings)
            endpoint.engine_version = item.engine_version
            await session.flush()
            # Open on trends: 90 days of synthetic history that today's measured runs continue.
            await history.backfill(
                session, endpoint=endpoint, profile=await profiles.get_by_name(session, DEMO_PROFILE),
                plan=history_plan(item, now), start=now - timedelta(days=HISTORY_DAYS),
                end=now - timedelta(minutes=30), runs_per_day=HISTORY_RUNS_PER_DAY,
                rng=random.Random(f"{item.name}"),  # noqa: S311 - noise, not a secret
            )  # fmt: skip
        else:
            update = EndpointUpdate(base_url=urls[item.name], model=model, metrics_url=metrics)
            endpoint = await endpoints.update(
                session, endpoint_id=existing.id, data=update, box=box, settings=settings
            )
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


async def calibrate(session: AsyncSession, *, run_id: int) -> int:
    """After a demo endpoint's first measured run (trigger "demo"): its generated history again,
    read as that run's steps read the model (history.calibration_of), so the measured points
    continue the lines within their noise; the history generated at registration is replaced.
    Returns the runs written (0: not a demo run, or it did not succeed)."""
    run = await session.get(Run, run_id)
    if run is None or run.trigger != "demo" or run.status != RunStatus.succeeded.value:
        return 0
    endpoint = await session.get(Endpoint, run.endpoint_id)
    item = next((i for i in FLEET if endpoint is not None and i.name == endpoint.name), None)
    if endpoint is None or item is None:
        return 0
    profile = await profiles.get_by_name(session, run.profile_name)
    measured = [s.summary for s in (await session.scalars(
        select(RunStep).where(RunStep.run_id == run.id).order_by(RunStep.step_index))).all()]  # fmt: skip
    now = run.created_at
    plan = history_plan(item, now)
    model = history.model_steps(plan.config, profiles.snapshot(profile), 1.0, 1.0)
    calibration = history.calibration_of(measured, model)
    await session.execute(
        delete(Run).where(
            Run.endpoint_id == endpoint.id, Run.profile_name == profile.name,
            Run.source == RunSource.synthetic.value,
        )
    )  # fmt: skip
    return await history.backfill(
        session, endpoint=endpoint, profile=profile, plan=plan, start=now - timedelta(days=HISTORY_DAYS),
        end=now - timedelta(minutes=30), runs_per_day=HISTORY_RUNS_PER_DAY,
        rng=random.Random(f"{item.name}"),  # noqa: S311 - noise, not a secret
        calibration=calibration,
    )  # fmt: skip
