"""Alerts: after each run, its figures against the endpoint's baseline on the same profile
(regressions and recoveries, app/scoring/regression.py), and the endpoint's health (down after
N failed runs in a row, up at the next success). New alerts queue one delivery per webhook that
wants them (app/services/webhooks.py sends them, apart from any run)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.domain import PERCENTILE_KEYS, RunSource, load_label, load_of, percentile_key
from app.models import (
    LOCAL,
    Agent,
    Alert,
    AlertKind,
    ChangePoint,
    Delivery,
    Endpoint,
    Run,
    RunStatus,
    RunStep,
    Webhook,
)
from app.schemas import AlertRead, AlertSettings
from app.scoring import regression
from app.scoring.regression import AlertDetail
from app.security.redact import mask
from app.services import changes

# Runs that count towards an endpoint's health: ended by its probe, one way or the other.
HEALTH_STATUSES = (RunStatus.succeeded.value, RunStatus.failed.value, RunStatus.interrupted.value)


async def after_run(
    session: AsyncSession, *, run_id: int, rules: AlertSettings, now: datetime
) -> list[Alert]:
    """Judge a run that just ended; store and queue the alerts it raises. A run that succeeded
    also rescans its endpoint's history on its profile for change points (services/changes.py)."""
    run = await session.get(Run, run_id)
    found: list[ChangePoint] = []
    if run is not None and run.status == RunStatus.succeeded.value:
        found = await changes.rescan(session, endpoint_id=run.endpoint_id, profile=run.profile_name, now=now)
    if run is None or run.source != RunSource.smartbench:
        return []
    endpoint = await session.get(Endpoint, run.endpoint_id)
    if endpoint is None:
        return []
    raised: list[Alert] = []
    if run.status == RunStatus.succeeded.value:
        raised += await _regressions(session, run, endpoint, rules, now)
        if rules.change_point_alerts:
            raised += await _change_points(session, run, endpoint, found, {a.metric for a in raised}, now)
    raised += await _health(session, run, endpoint, rules, now)
    for alert in raised:
        session.add(alert)
    await session.flush()
    if raised:
        await queue(session, raised, now)
    return raised


# -- regressions ------------------------------------------------------------------------------------


async def _regressions(
    session: AsyncSession, run: Run, endpoint: Endpoint, rules: AlertSettings, now: datetime
) -> list[Alert]:
    baseline_runs = list(
        (
            await session.scalars(
                select(Run)
                .where(
                    Run.endpoint_id == run.endpoint_id,
                    Run.profile_name == run.profile_name,
                    Run.status == RunStatus.succeeded.value,
                    Run.source == RunSource.smartbench.value,
                    Run.regressed.is_(False),
                    Run.location == run.location,  # a location is judged against its own runs
                    Run.id != run.id,
                    Run.created_at <= run.created_at,
                )
                .order_by(Run.created_at.desc(), Run.id.desc())
                .limit(rules.baseline_runs)
            )
        ).all()
    )
    steps = await _steps(session, [run.id, *(r.id for r in baseline_runs)])
    pct = percentile_key(run.profile_snapshot.slo_percentile)
    operating = [_operating_load(steps.get(r.id, []), r.operating_step) for r in baseline_runs]
    own = steps.get(run.id, [])
    reference = regression.reference_load(operating, min((s.load for s in own), default=None))
    current = _figures(run, own, reference, pct)
    history = [_figures(r, steps.get(r.id, []), reference, pct) for r in baseline_runs]
    changes = regression.judge(
        current,
        history,
        threshold_pct=rules.regression_threshold_pct,
        error_points=rules.regression_error_points,
    )
    open_metrics = await _open_metrics(
        session, endpoint_id=run.endpoint_id, profile=run.profile_name, location=run.location
    )
    at_load = next((s.label for s in own if s.load == reference), None)
    alerts = []
    for change in changes:
        detail = AlertDetail.of(
            change, load=at_load, percentile=pct, baseline_run_ids=[r.id for r in baseline_runs]
        )
        text = regression.describe(change, at_load=at_load)
        who = (
            f"{endpoint.name} ({run.profile_name}{'' if run.location == LOCAL else f', from {run.location}'})"
        )
        if change.verdict == "regression" and change.metric not in open_metrics:
            kind, message = AlertKind.regression, f"{who}: {text}"
        elif change.verdict != "regression" and change.metric in open_metrics:
            kind, message = AlertKind.recovery, f"{who} recovered: {text}"
        else:
            continue
        alerts.append(
            Alert(
                endpoint_id=run.endpoint_id,
                run_id=run.id,
                kind=kind.value,
                profile_name=run.profile_name,
                metric=change.metric,
                baseline=change.baseline,
                value=change.value,
                change_pct=change.change_pct,
                detail=detail,
                message=message,
                degraded=run.quality_degraded,
                created_at=now,
                location=run.location,
            )
        )
    run.regressed = any(c.verdict == "regression" for c in changes)
    return alerts


async def _change_points(
    session: AsyncSession,
    run: Run,
    endpoint: Endpoint,
    found: list[ChangePoint],
    raised: set[str | None],
    now: datetime,
) -> list[Alert]:
    """A regression for each new change point that made a figure worse (one a figure, none where
    the median-and-noise rule raised it already or it stands open)."""
    open_metrics = await _open_metrics(
        session, endpoint_id=run.endpoint_id, profile=run.profile_name, location=run.location
    )
    alerts = []
    for point in found:
        read = changes.to_read(point)
        if read.direction != "worse" or point.metric in raised or point.metric in open_metrics:
            continue
        if point.location != run.location:  # another location's series: judged by its own runs
            continue
        raised.add(point.metric)
        text = (f"{read.label} changed {point.change_pct:+.1f} % ({point.before:.4g} -> {point.after:.4g}) "
                f"from run {point.run_id} on (change point, p = {point.p_value:.2g})")  # fmt: skip
        alerts.append(
            Alert(
                endpoint_id=run.endpoint_id, run_id=run.id, kind=AlertKind.regression.value,
                profile_name=run.profile_name, metric=point.metric, baseline=point.before, value=point.after,
                change_pct=point.change_pct,
                detail=AlertDetail(metric=point.metric, baseline=point.before, value=point.after,
                                   change_pct=point.change_pct, verdict="change point"),
                message=f"{endpoint.name} ({run.profile_name}): {text}", degraded=run.quality_degraded, location=run.location,
                created_at=now,
            )
        )  # fmt: skip
    return alerts


@dataclass(frozen=True)
class StepFigures:
    """What a comparison reads of one stored step (its own columns, not its JSON)."""

    step_index: int
    load: float
    label: str
    requests_sent: int
    requests_failed: int
    ttft_ms: dict[str, float | None]  # by percentile key: p50, p90, p95, p99
    tpot_ms: dict[str, float | None]


async def _steps(session: AsyncSession, run_ids: list[int]) -> dict[int, list[StepFigures]]:
    """The columns a comparison reads, per run, lightest step first."""
    rows = (
        await session.execute(
            select(
                RunStep.run_id,
                RunStep.step_index,
                RunStep.concurrency,
                RunStep.request_rate,
                RunStep.requests_sent,
                RunStep.requests_failed,
                *(getattr(RunStep, f"ttft_ms_{p}") for p in PERCENTILE_KEYS.values()),
                *(getattr(RunStep, f"tpot_ms_{p}") for p in PERCENTILE_KEYS.values()),
            )
            .where(RunStep.run_id.in_(run_ids))
            .order_by(RunStep.run_id, RunStep.step_index)
        )
    ).all()
    by_run: dict[int, list[StepFigures]] = {}
    for row in rows:
        by_run.setdefault(row.run_id, []).append(
            StepFigures(
                step_index=row.step_index,
                load=load_of(row.concurrency, row.request_rate),
                label=load_label(row.concurrency, row.request_rate),
                requests_sent=row.requests_sent or 0,
                requests_failed=row.requests_failed or 0,
                ttft_ms={p: getattr(row, f"ttft_ms_{p}") for p in PERCENTILE_KEYS.values()},
                tpot_ms={p: getattr(row, f"tpot_ms_{p}") for p in PERCENTILE_KEYS.values()},
            )
        )
    return by_run


def _operating_load(steps: list[StepFigures], operating_step: int | None) -> float | None:
    return next((s.load for s in steps if s.step_index == operating_step), None)


def _figures(
    run: Run, steps: list[StepFigures], reference: float | None, pct: str
) -> dict[str, float | None]:
    """A run's figures as the comparison reads them. Throughput at the SLO is 0 for a run whose
    steps all broke it; its cost there is unknown (not compared)."""
    at = next((s for s in steps if s.load == reference), None)
    sent = sum(s.requests_sent for s in steps)
    failed = sum(s.requests_failed for s in steps)
    throughput = run.output_tokens_per_s_at_slo
    return {
        "ttft_ms": at.ttft_ms[pct] if at else None,
        "tpot_ms": at.tpot_ms[pct] if at else None,
        "output_tokens_per_s_at_slo": throughput if throughput is not None else (0.0 if steps else None),
        "cost_per_million_tokens_at_slo": run.cost_per_million_tokens_at_slo,
        "error_rate": failed / sent if sent else None,
    }


async def _open_metrics(session: AsyncSession, *, endpoint_id: int, profile: str, location: str) -> set[str]:
    """The figures of this endpoint, profile and location whose regression stands (`open_ids` decides)."""
    standing = await open_ids(session, endpoint_id=endpoint_id)
    if not standing:
        return set()
    rows = await session.scalars(
        select(Alert.metric).where(
            Alert.id.in_(standing),
            Alert.profile_name == profile,
            Alert.location == location,
            Alert.kind == AlertKind.regression.value,
        )
    )
    return {metric for metric in rows.all() if metric}


# -- health -----------------------------------------------------------------------------------------


async def _health(
    session: AsyncSession, run: Run, endpoint: Endpoint, rules: AlertSettings, now: datetime
) -> list[Alert]:
    """Down when, in at least `down_locations` of the locations that probe the endpoint (all of
    them where fewer do), its last `down_after_failures` runs failed; up again when that no
    longer holds and a run succeeded. One location (the dashboard's own) is the rule as it was."""
    if run.status not in HEALTH_STATUSES:
        return []  # cancelled or skipped: says nothing of the endpoint
    down = await _is_down(session, endpoint.id)
    failing, probing = await _failing_locations(session, endpoint.id, rules.down_after_failures)
    needed = min(rules.down_locations, len(probing)) if probing else 1
    if run.status == RunStatus.succeeded.value:
        if not down or len(failing) >= needed:
            return []
        return [Alert(endpoint_id=endpoint.id, run_id=run.id, kind=AlertKind.up.value, detail=AlertDetail(),
                      message=f"{endpoint.name} is back up: run {run.id} succeeded", created_at=now)]  # fmt: skip
    if down or len(failing) < needed:
        return []
    error = mask(run.error or "no error recorded")  # what the target sent stays on the run's page
    where = ""
    if probing != [LOCAL]:
        where = f" at {', '.join(failing)} ({len(failing)} of {len(probing)} locations)"
    return [
        Alert(
            endpoint_id=endpoint.id,
            run_id=run.id,
            kind=AlertKind.down.value,
            detail=AlertDetail(
                failed_runs=rules.down_after_failures,
                error=error,
                failing_locations=failing,
                locations=len(probing),
            ),
            message=f"{endpoint.name} is down{where}: {rules.down_after_failures} failed runs in a row; the last: {error}",
            created_at=now,
        )
    ]


async def _failing_locations(
    session: AsyncSession, endpoint_id: int, runs_in_a_row: int
) -> tuple[list[str], list[str]]:
    """(the locations whose last `runs_in_a_row` runs of the endpoint all failed, every location
    that probes it), from the runs that say something of its health."""
    probing = sorted(
        (
            await session.scalars(
                select(Run.location)
                .where(
                    Run.endpoint_id == endpoint_id,
                    Run.status.in_(HEALTH_STATUSES),
                    Run.source == RunSource.smartbench.value,
                )
                .distinct()
            )
        ).all()
    )
    failing = []
    for location in probing:
        recent = (
            await session.scalars(
                select(Run.status)
                .where(
                    Run.endpoint_id == endpoint_id,
                    Run.location == location,
                    Run.status.in_(HEALTH_STATUSES),
                    Run.source == RunSource.smartbench.value,
                )
                .order_by(Run.created_at.desc(), Run.id.desc())
                .limit(runs_in_a_row)
            )
        ).all()
        if len(recent) >= runs_in_a_row and all(s != RunStatus.succeeded.value for s in recent):
            failing.append(location)
    return failing, probing


async def _is_down(session: AsyncSession, endpoint_id: int) -> bool:
    kind = await session.scalar(
        select(Alert.kind)
        .where(Alert.endpoint_id == endpoint_id, Alert.kind.in_((AlertKind.down.value, AlertKind.up.value)))
        .order_by(Alert.id.desc())
        .limit(1)
    )
    return kind == AlertKind.down.value


# -- agents -----------------------------------------------------------------------------------------


async def agent_changed(
    session: AsyncSession, *, agent: Agent, online: bool, now: datetime, silent_s: float
) -> Alert:
    """An agent went offline (no heartbeat for the offline period) or came back: an alert of its
    own (no endpoint), queued for the webhooks that take it."""
    if online:
        kind, message = AlertKind.agent_online, f"agent {agent.name} ({agent.location}) is back online"
    else:
        kind = AlertKind.agent_offline
        message = f"agent {agent.name} ({agent.location}) is offline: no heartbeat for {silent_s:.0f} s"
    alert = Alert(
        endpoint_id=None, agent_id=agent.id, kind=kind.value, detail=AlertDetail(), message=message,
        created_at=now, location=agent.location,
    )  # fmt: skip
    session.add(alert)
    await session.flush()
    await queue(session, [alert], now)
    return alert


# -- deliveries -------------------------------------------------------------------------------------


async def queue(session: AsyncSession, alerts: list[Alert], now: datetime) -> None:
    hooks = (await session.scalars(select(Webhook).where(Webhook.enabled.is_(True)))).all()
    for alert in alerts:
        for hook in hooks:
            if alert.kind in hook.events:
                session.add(Delivery(alert_id=alert.id, webhook_id=hook.id, status="pending",
                                     next_attempt_at=now, created_at=now))  # fmt: skip
    await session.flush()


# -- reading ----------------------------------------------------------------------------------------


async def open_ids(session: AsyncSession, *, endpoint_id: int | None = None) -> set[int]:
    """Alerts still standing: each figure's latest regression/recovery when it is a regression,
    each endpoint's latest down/up when it is down."""
    scope = [Alert.endpoint_id == endpoint_id] if endpoint_id is not None else []
    figures = (
        select(func.max(Alert.id))
        .where(*scope, Alert.kind.in_((AlertKind.regression.value, AlertKind.recovery.value)))
        .group_by(Alert.endpoint_id, Alert.profile_name, Alert.metric, Alert.location)
    )
    health = (
        select(func.max(Alert.id))
        .where(*scope, Alert.kind.in_((AlertKind.down.value, AlertKind.up.value)))
        .group_by(Alert.endpoint_id)
    )
    agents_state = (
        select(func.max(Alert.id))
        .where(Alert.kind.in_((AlertKind.agent_offline.value, AlertKind.agent_online.value)))
        .group_by(Alert.agent_id)
    )
    standing_kinds = (AlertKind.regression.value, AlertKind.down.value, AlertKind.agent_offline.value)
    rows = await session.scalars(
        select(Alert.id).where(
            Alert.id.in_(
                figures.union(health, agents_state) if endpoint_id is None else figures.union(health)
            ),
            Alert.kind.in_(standing_kinds),
        )
    )
    return set(rows.all())


async def listing(
    session: AsyncSession,
    *,
    endpoint_id: int | None = None,
    limit: int = 50,
    before: int | None = None,
    location: str | None = None,
) -> tuple[list[AlertRead], list[AlertRead]]:
    """The newest alerts (at most `limit`, older than alert `before` when given; of one location
    when given) and those still open, newest first."""
    scope = [Alert.endpoint_id == endpoint_id] if endpoint_id is not None else []
    located = [Alert.location == location] if location is not None else []
    scope.extend(located)
    if before is not None:
        scope.append(Alert.id < before)
    standing = await open_ids(session, endpoint_id=endpoint_id)
    query = (
        select(Alert, func.coalesce(Endpoint.name, Agent.name, ""))
        .outerjoin(Endpoint, Endpoint.id == Alert.endpoint_id)
        .outerjoin(Agent, Agent.id == Alert.agent_id)
    )
    recent = (await session.execute(query.where(*scope).order_by(Alert.id.desc()).limit(limit))).all()
    opened = (
        (await session.execute(query.where(Alert.id.in_(standing), *located).order_by(Alert.id.desc()))).all()
        if standing
        else []
    )
    return (
        [to_read(alert, name, alert.id in standing) for alert, name in recent],
        [to_read(alert, name, True) for alert, name in opened],
    )


def to_read(alert: Alert, endpoint: str, standing: bool) -> AlertRead:
    return AlertRead(
        id=alert.id,
        endpoint_id=alert.endpoint_id,
        endpoint=endpoint,
        agent_id=alert.agent_id,
        run_id=alert.run_id,
        kind=alert.kind,
        profile=alert.profile_name,
        metric=alert.metric,
        baseline=alert.baseline,
        value=alert.value,
        change_pct=alert.change_pct,
        message=alert.message,
        degraded=alert.degraded,
        location=alert.location,
        open=standing,
        detail=alert.detail,
        created_at=alert.created_at,
    )
