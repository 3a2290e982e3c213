"""Synthetic history: `smartbench seed` (a benchmark-sized database) and the demo's back-fill.

Runs are generated from the simulator's own performance model (app/simulator/engine.py,
`expected_closed_loop`) with run-to-run noise, and stored as runs would be (steps with their
summaries, the operating point and its cost through the scoring's own functions), marked
`source = "synthetic"` and `trigger = "seed"`. They draw on the trends, dotted and labelled;
no scorecard ever rests on one (app/services/scorecards.MEASURED).

An endpoint's history may pass through changes (a price change, a serving-stack upgrade that
makes each decode step faster): each moves the cost per million tokens, and the trends mark
it where the run's price or stack key changes, exactly as for measured runs."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.domain import RunSource
from app.environment import RunEnvironment
from app.models import Endpoint, Profile, Run, RunStatus, RunStep
from app.scoring.cost import step_costs
from app.scoring.smart import operating_point
from app.security.crypto import SecretBox
from app.services import changes
from app.services import profiles as profile_service
from app.services.records import step_columns
from app.simulator.engine import expected_closed_loop
from app.simulator.presets import SimConfig, preset
from app.snapshot import PRICE_FIELDS, STACK_FIELDS, CostInputs, EndpointSnapshot, ProfileSnapshot
from app.summary import Scorecard, StepSLO, StepSummary

NOTE = "synthetic: the simulator's performance model, not a measurement"
NOISE = 0.04  # run-to-run spread of the step time (lognormal sigma)
BATCH = 2_000  # runs per INSERT round


@dataclass(frozen=True)
class Change:
    """From `at` on, the endpoint's fields change (prices, engine version) and, for an upgrade,
    each decode step takes `step_factor` of its former time."""

    at: datetime
    fields: Mapping[str, object]  # endpoint columns
    step_factor: float = 1.0


@dataclass(frozen=True)
class Plan:
    """One endpoint's history: its fields before any change, the model, and the changes."""

    fields: Mapping[str, object]  # endpoint columns
    config: SimConfig
    changes: Sequence[Change] = field(default_factory=tuple)


Calibration = Mapping[int, Mapping[str, float]]  # by concurrency: figure -> measured / model


def calibration_of(
    measured: Sequence[StepSummary], model: Sequence[StepSummary]
) -> dict[int, dict[str, float]]:
    """How the probe's steps read the model (measured / model, per load level and figure): a
    short step measures its ramp-up and drain, which the steady-state model has not. Applied to
    the model, it makes generated history continue into measured runs within their noise."""
    found: dict[int, dict[str, float]] = {}
    by_level = {s.concurrency: s for s in model}
    for step in measured:
        base = by_level.get(step.concurrency)
        if base is None or step.concurrency is None or step.stopped is not None:
            continue
        ratios: dict[str, float] = {}
        for metric in CALIBRATED:
            for stat in ("p50", "p90", "p95", "p99"):
                got, want = step.at(metric, stat), base.at(metric, stat)
                if got and want:
                    ratios[f"{metric}.{stat}"] = got / want
        for rate in ("output_tokens_per_s", "input_tokens_per_s"):
            got, want = getattr(step, rate), getattr(base, rate)
            if got and want:
                ratios[rate] = got / want
        found[step.concurrency] = ratios
    return found


CALIBRATED = ("ttft_ms", "tpot_ms", "e2e_ms")


def model_steps(
    config: SimConfig,
    profile: ProfileSnapshot,
    step_factor: float,
    noise: float,
    calibration: Calibration | None = None,
) -> list[StepSummary]:
    """Step summaries for the profile's load levels, per the batching model (concurrency only),
    read as the probe reads it where a calibration says how (calibration_of)."""
    isl = int(profile.input_tokens_mean or 0)
    osl = int(profile.output_tokens_mean or 0)
    duration = float(profile.duration_per_step_s or 10.0)
    slo = profile.slo
    steps = []
    for level in profile.load_levels or []:
        concurrency = max(1, int(level))
        e = expected_closed_loop(config, concurrency, isl, osl)
        step_ms = e.step_ms * step_factor * noise
        ttft = e.ttft_ms * step_factor * noise
        out_tps = e.output_tokens_per_s / (step_factor * noise)
        req_s = out_tps / osl
        done = max(1, round(req_s * duration))
        e2e = ttft + step_ms * (osl - 1)
        ttft_d = _dist(ttft, 1.2, 1.3, 1.5)
        tpot_d = _dist(step_ms, 1.03, 1.05, 1.08)
        e2e_d = _dist(e2e, 1.05, 1.08, 1.15)
        in_tps = req_s * isl
        ratios = (calibration or {}).get(concurrency, {})
        if ratios:
            for name, dist in (("ttft_ms", ttft_d), ("tpot_ms", tpot_d), ("e2e_ms", e2e_d)):
                for stat in ("p50", "p90", "p95", "p99"):
                    dist[stat] = _r(dist[stat] * ratios.get(f"{name}.{stat}", 1.0))
                dist["mean"] = _r(dist["p50"] * 1.02)
            out_tps *= ratios.get("output_tokens_per_s", 1.0)
            in_tps *= ratios.get("input_tokens_per_s", 1.0)
            req_s = out_tps / osl
            done = max(1, round(req_s * duration))
        summary: dict[str, object] = {
            "concurrency": concurrency, "duration_s": duration,
            "requests": {"sent": done, "completed": done, "failed": 0, "errors": {}},
            "ttft_ms": ttft_d, "ttfat_ms": ttft_d, "itl_ms": tpot_d, "tpot_ms": tpot_d,
            "e2e_ms": e2e_d,
            "input_tokens": {"mean": isl, "p50": isl}, "output_tokens": {"mean": osl, "p50": osl},
            "input_tokens_per_s": _r(in_tps), "output_tokens_per_s": _r(out_tps),
            "total_tokens_per_s": _r(in_tps + out_tps), "requests_per_s": _r(req_s),
            "tokens_per_s_per_user": {"p50": _r(1000.0 / step_ms), "mean": _r(1000.0 / step_ms)},
            "token_count_source": "model", "itl_basis": "token",
            "quality": {"client_bound": False, "client_notes": [NOTE]},
        }  # fmt: skip
        step = StepSummary.model_validate(summary)
        met = step.meets(slo)
        steps.append(
            step.model_copy(
                update={
                    "slo": StepSLO(**slo.as_dict(), met=met, good_requests=done if met else 0),
                    "slo_attainment": 1.0 if met else 0.0,
                    "goodput_requests_per_s": step.requests_per_s if met else 0.0,
                    "good_tokens_per_s": step.total_tokens_per_s if met else 0.0,
                    "good_output_tokens_per_s": step.output_tokens_per_s if met else 0.0,
                }
            )
        )
    return steps


def _dist(p50: float, p90: float, p95: float, p99: float) -> dict[str, float]:
    return {"mean": _r(p50 * 1.02), "p50": _r(p50), "p90": _r(p50 * p90), "p95": _r(p50 * p95),
            "p99": _r(p50 * p99)}  # fmt: skip


def _r(value: float) -> float:
    """Four significant digits: a model's figures claim no more, and the rows stay small."""
    return float(f"{value:.4g}")


async def backfill(
    session: AsyncSession,
    *,
    endpoint: Endpoint,
    profile: Profile,
    plan: Plan,
    start: datetime,
    end: datetime,
    runs_per_day: float,
    rng: random.Random,
    calibration: Calibration | None = None,
) -> int:
    """Write the endpoint's synthetic runs of the profile, evenly spaced in [start, end)."""
    if plan.config.mode != "batching":
        raise ValueError(f"synthetic history needs a batching preset, not {plan.config.name!r}")
    snapshot = profile_service.snapshot(profile)
    slo = snapshot.slo
    count = int((end - start).total_seconds() / 86_400 * runs_per_day)
    if count <= 0:
        return 0
    spacing = (end - start) / count
    epochs = _epochs(endpoint, plan)
    pending: list[tuple[dict[str, object], list[StepSummary]]] = []
    written = 0
    for i in range(count):
        at = start + spacing * i + spacing * rng.random() * 0.2
        fields, factor = next((f, s) for t, f, s in reversed(epochs) if at >= t)
        cost = CostInputs.of(fields)
        stack = EndpointSnapshot.of(fields)
        steps = [
            step.model_copy(
                update={
                    k: _r(v) if isinstance(v, float) else v
                    for k, v in step_costs(step, cost).model_dump().items()
                }
            )
            for step in model_steps(
                plan.config, snapshot, factor, math.exp(rng.gauss(0.0, NOISE)), calibration
            )
        ]
        op = operating_point(steps, slo, cost)
        finished = at + timedelta(seconds=sum(s.duration_s for s in steps) + 5)
        pending.append(
            (
                {
                    "endpoint_id": endpoint.id, "profile_id": profile.id, "profile_name": profile.name,
                    "profile_snapshot": snapshot, "cost_snapshot": cost, "endpoint_snapshot": stack,
                    "environment": RunEnvironment(synthetic=NOTE), "status": RunStatus.succeeded.value,
                    "trigger": "seed", "source": RunSource.synthetic.value, "created_at": at, "started_at": at,
                    "finished_at": finished, "heartbeat_at": finished, "progress": None,
                    "scorecard": Scorecard(operating_point=op),
                    "cost_per_million_tokens_at_slo": op.cost_per_million_tokens if op else None,
                    "output_tokens_per_s_at_slo": op.output_tokens_per_s if op else None,
                    "quality_degraded": False, "operating_step": op.step_index if op else None,
                    "price_key": cost.key(PRICE_FIELDS), "stack_key": stack.key(STACK_FIELDS),
                },
                steps,
            )
        )  # fmt: skip
        if len(pending) >= BATCH:
            written += await _write(session, pending)
            pending = []
    if pending:
        written += await _write(session, pending)
    await changes.rescan(session, endpoint_id=endpoint.id, profile=profile.name, now=end)
    return written


def _epochs(endpoint: Endpoint, plan: Plan) -> list[tuple[datetime, dict[str, object], float]]:
    """(from, fields, step factor) for each period of the plan, oldest first."""
    fields: dict[str, object] = {
        **CostInputs.of(endpoint).model_dump(),
        **EndpointSnapshot.of(endpoint).model_dump(),
        **plan.fields,
    }
    factor = 1.0
    out = [(datetime.min.replace(tzinfo=UTC), dict(fields), factor)]
    for change in sorted(plan.changes, key=lambda c: c.at):
        fields = {**fields, **change.fields}
        factor *= change.step_factor
        out.append((change.at, dict(fields), factor))
    # The step factors are relative to the model as it stands today (after every change).
    return [(t, f, s / factor) for t, f, s in out]


async def _write(session: AsyncSession, pending: list[tuple[dict[str, object], list[StepSummary]]]) -> int:
    ids = (
        await session.scalars(
            insert(Run).returning(Run.id, sort_by_parameter_order=True), [row for row, _ in pending]
        )
    ).all()
    step_rows = []
    for run_id, (_, steps) in zip(ids, pending, strict=True):
        for index, step in enumerate(steps):
            step_rows.append({"run_id": run_id, "step_index": index, **step_columns(step), "summary": step})
    await session.execute(insert(RunStep), step_rows)
    return len(ids)


# -- smartbench seed --------------------------------------------------------------------------------


@dataclass(frozen=True)
class FleetPreset:
    """One kind of seeded endpoint: the simulator's preset, the stack declared today, and the
    engine version before the upgrade in its history."""

    preset: str
    gpu_model: str
    gpu_count: int
    price_per_gpu_hour: float
    engine: str
    engine_version: str
    quantization: str
    watts_per_gpu: float
    previous_version: str

    def declared(self, **more: object) -> dict[str, object]:
        """The EndpointCreate fields (the engine version is detected by runs, not declared)."""
        return {"gpu_model": self.gpu_model, "gpu_count": self.gpu_count, "engine": self.engine,
                "quantization": self.quantization, "watts_per_gpu": self.watts_per_gpu,
                "price_per_gpu_hour": self.price_per_gpu_hour, **more}  # fmt: skip


FLEET_PRESETS = (
    FleetPreset("h100-fp8-70b", "H100 SXM", 8, 2.50, "vllm", "0.11.0", "fp8", 700, "0.10.2"),
    FleetPreset("b200-nvfp4-70b", "B200", 8, 4.00, "tensorrt-llm", "1.0.0", "nvfp4", 1000, "0.21.0"),
    FleetPreset("l4-8b", "L4", 1, 0.80, "vllm", "0.11.0", "fp8", 72, "0.10.2"),
)


@dataclass
class SeedReport:
    endpoints: int = 0
    runs: int = 0
    steps: int = 0
    seconds: float = 0.0
    profile: str = ""
    names: list[str] = field(default_factory=list)


async def seed(
    session: AsyncSession,
    *,
    endpoints: int,
    days: float,
    runs_per_day: float,
    profile_name: str,
    now: datetime,
    box: SecretBox,
    settings: Settings,
    prefix: str = "seed",
    rng_seed: int = 0,
) -> SeedReport:
    """Register `endpoints` synthetic endpoints (never probed: no schedules, a discard address)
    and give each `days` of history. Each endpoint's price drops 20 % two thirds of the way
    through and its stack is upgraded (8 % faster decode steps) at one third."""
    from app.schemas import EndpointCreate
    from app.services import endpoints as endpoint_service

    started = time.perf_counter()
    rng = random.Random(rng_seed)  # noqa: S311 - noise for synthetic history, not a secret
    await profile_service.ensure_builtins(session)
    profile = await profile_service.get_by_name(session, profile_name)
    report = SeedReport(profile=profile.name)
    start = now - timedelta(days=days)
    taken = set((await session.scalars(select(Endpoint.name))).all())
    for i in range(endpoints):
        kind = FLEET_PRESETS[i % len(FLEET_PRESETS)]
        name = f"{prefix}-{i + 1:04d}-{kind.preset}"
        if name in taken:
            raise ValueError(f"an endpoint named {name!r} exists already: seed another prefix")
        price = round(kind.price_per_gpu_hour * rng.uniform(0.8, 1.2), 2)
        data = EndpointCreate.model_validate(
            kind.declared(name=name, base_url="http://127.0.0.1:9/v1", model="synthetic", price_per_gpu_hour=price,
                          tags=["synthetic"])
        )  # fmt: skip
        endpoint = await endpoint_service.create(session, data=data, box=box, by=None, settings=settings)
        endpoint.engine_version = kind.engine_version  # as a run would have detected it
        plan = Plan(
            fields={"price_per_gpu_hour": round(price * 1.25, 2), "engine_version": kind.previous_version},
            config=preset(kind.preset),
            changes=(
                Change(start + (now - start) / 3, {"engine_version": kind.engine_version}, step_factor=0.92),
                Change(start + (now - start) * 2 / 3, {"price_per_gpu_hour": price}),
            ),
        )  # fmt: skip
        written = await backfill(
            session, endpoint=endpoint, profile=profile, plan=plan, start=start, end=now,
            runs_per_day=runs_per_day, rng=rng,
        )  # fmt: skip
        report.endpoints += 1
        report.runs += written
        report.steps += written * len(profile.load_levels)
        report.names.append(name)
        await session.commit()  # one endpoint at a time: a bounded transaction (and WAL)
    report.seconds = time.perf_counter() - started
    return report


__all__ = ["Change", "Plan", "SeedReport", "backfill", "model_steps", "seed"]
