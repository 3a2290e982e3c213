"""smartbench's own Prometheus exposition at /metrics: the service (runs by status, endpoints,
schedules, runs executing here) and, per endpoint and profile, what its latest measured run
found: the letters, cost per million tokens and throughput at the SLO, latency percentiles at
the operating step, run outcomes and the time of the last successful run; open regressions
and endpoints down.

Label sets are bounded: `endpoint` and `profile` (names, at most MAX_SERIES pairs), `letter`
(S, M, A, R, T), `status` (the run statuses), `metric` and `stat` (fixed lists)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import func, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from app.domain import RunSource
from app.models import Alert, Endpoint, Run, RunStatus, RunStep, Schedule, measured
from app.services import alerts
from app.summary import Scorecard

MAX_SERIES = 2000  # endpoint x profile pairs exported at most
LATENCY = (("ttft", "ttft_ms"), ("tpot", "tpot_ms"), ("itl", "itl_ms"), ("e2e", "e2e_ms"))
STATS = ("p50", "p90", "p99")


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _family(name: str, kind: str, help_text: str, samples: Iterable[tuple[dict[str, str], Any]]) -> list[str]:
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
    for labels, value in samples:
        if value is None:
            continue
        text = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
        lines.append(f"{name}{{{text}}} {float(value):.6g}" if text else f"{name} {float(value):.6g}")
    return lines


async def prometheus_text(session: AsyncSession, *, active_here: int) -> str:
    by_status = dict(
        (await session.execute(select(Run.status, func.count(Run.id)).group_by(Run.status))).all()
    )
    endpoints = await session.scalar(select(func.count(Endpoint.id))) or 0
    enabled = await session.scalar(select(func.count(Schedule.id)).where(Schedule.enabled.is_(True))) or 0
    lines = [
        *_family("smartbench_runs", "gauge", "Runs in the database by status.",
                 (({"status": s}, n) for s, n in sorted(by_status.items()))),
        *_family("smartbench_endpoints", "gauge", "Registered endpoints.", [({}, endpoints)]),
        *_family("smartbench_schedules_enabled", "gauge", "Enabled schedules.", [({}, enabled)]),
        *_family("smartbench_runs_executing_here", "gauge", "Runs this process is executing now.",
                 [({}, active_here)]),
    ]  # fmt: skip
    lines += await _endpoint_families(session)
    lines += await _alert_families(session)
    return "\n".join(lines) + "\n"


async def _alert_families(session: AsyncSession) -> list[str]:
    """Open regressions (per endpoint and figure) and endpoints down: 1 while open."""
    standing = await alerts.open_ids(session)
    rows = (
        (await session.execute(
            select(Endpoint.name, Alert.kind, Alert.profile_name, Alert.metric)
            .join(Endpoint, Endpoint.id == Alert.endpoint_id)
            .where(Alert.id.in_(standing))
        )).all()
        if standing
        else []
    )  # fmt: skip
    regressions = [
        ({"endpoint": e, "profile": p or "", "metric": m or ""}, 1)
        for e, k, p, m in rows
        if k == "regression"
    ]
    down = [({"endpoint": e}, 1) for e, k, _, _ in rows if k == "down"]
    return [
        *_family("smartbench_regression_open", "gauge",
                 "1 while a figure's regression against its baseline is not recovered.", regressions),
        *_family("smartbench_endpoint_down", "gauge", "1 while an endpoint is down (failed runs in a row).", down),
    ]  # fmt: skip


async def _endpoint_families(session: AsyncSession) -> list[str]:
    names = dict((await session.execute(select(Endpoint.id, Endpoint.name))).all())
    # The latest measured run of each (endpoint, profile, location): one grouped query, then the rows.
    latest_ids = (
        await session.execute(
            select(func.max(Run.id))
            .where(measured(), Run.endpoint_id.in_(list(names)))
            .group_by(Run.endpoint_id, Run.profile_name, Run.location)
            .limit(MAX_SERIES)
        )
    ).scalars()
    runs = list((await session.scalars(select(Run).where(Run.id.in_(list(latest_ids))))).all())
    runs.sort(key=lambda r: (names.get(r.endpoint_id, ""), r.profile_name, r.location))
    op_steps: dict[int, int] = {}
    for run in runs:
        point = run.scorecard.operating_point if run.scorecard is not None else None
        if point is not None:
            op_steps[run.id] = point.step_index
    steps: dict[int, RunStep] = {}
    if op_steps:
        rows = await session.scalars(
            select(RunStep).where(tuple_(RunStep.run_id, RunStep.step_index).in_(list(op_steps.items())))
        )
        steps = {row.run_id: row for row in rows.all()}

    def labels(run: Run, **more: str) -> dict[str, str]:
        return {
            "endpoint": names.get(run.endpoint_id, str(run.endpoint_id)),
            "profile": run.profile_name,
            "location": run.location,
            **more,
        }

    letters, cost, tput, latency, tpj = [], [], [], [], []
    for run in runs:
        card = run.scorecard or Scorecard()
        for entry in card.letters:
            letters.append((labels(run, letter=entry.letter), entry.score))
        cost.append((labels(run), run.cost_per_million_tokens_at_slo))
        tput.append((labels(run), run.output_tokens_per_s_at_slo))
        tpj.append((labels(run), card.operating_point.tokens_per_joule if card.operating_point else None))
        step = steps.get(run.id)
        if step is not None:
            for metric, column in LATENCY:
                for stat in STATS:
                    latency.append((labels(run, metric=metric, stat=stat), getattr(step, f"{column}_{stat}")))
    outcomes = (
        await session.execute(
            select(Run.endpoint_id, Run.location, Run.status, func.count(Run.id))
            .where(Run.endpoint_id.in_(list(names)), Run.source != RunSource.synthetic.value)
            .group_by(Run.endpoint_id, Run.location, Run.status)
        )
    ).all()
    last_ok = (
        await session.execute(
            select(Run.endpoint_id, func.max(Run.finished_at))
            .where(measured(), Run.status == RunStatus.succeeded.value)
            .group_by(Run.endpoint_id)
        )
    ).all()
    return [
        *_family("smartbench_letter_score", "gauge", "SMART letter (0-100) of the latest measured run.", letters),
        *_family("smartbench_cost_per_million_tokens", "gauge",
                 "Cost per million tokens at the SLO operating point, dollars.", cost),
        *_family("smartbench_output_tokens_per_second", "gauge",
                 "Output tokens per second at the SLO operating point.", tput),
        *_family("smartbench_latency_ms", "gauge", "Latency at the operating step, milliseconds.", latency),
        *_family("smartbench_tokens_per_joule", "gauge", "Output tokens per joule at the operating point.", tpj),
        *_family("smartbench_endpoint_runs", "gauge", "Runs per endpoint by outcome (synthetic history left out).",
                 (({"endpoint": names.get(e, str(e)), "location": loc, "status": s}, n) for e, loc, s, n in outcomes)),
        *_family("smartbench_last_success_timestamp_seconds", "gauge",
                 "When the endpoint's latest successful run finished (Unix seconds).",
                 (({"endpoint": names.get(e, str(e))}, at.timestamp()) for e, at in last_ok if at is not None)),
    ]  # fmt: skip
