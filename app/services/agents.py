"""Agents: probe hosts that connect out to the dashboard over HTTPS (`smartbench agent`, app/agent.py).

An admin mints an agent token for one location. With it an agent registers, heart-beats,
claims the queued runs of its location (and of schedules that run in "any" of their locations),
runs each in a probe process of its own on its host and uploads the steps and the end. The
endpoint's key reaches the agent only with a run it claimed. Every claim is an attempt of its
run: an upload names its attempt, and one that is not the run's current attempt by this agent is
refused, so a run handed back and claimed again is never written by two agents. An agent that
stops heart-beating for the offline period is marked offline; its run is handed back to the queue
(once, if no step was stored yet) or failed with the reason, never left running."""

from __future__ import annotations

import logging
import secrets
from datetime import datetime, timedelta

import orjson
from pydantic import BaseModel, Field
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.environment import RunEnvironment, RunProgress
from app.errors import Conflict, Forbidden, NotFound, Unauthorized, ValidationFailed
from app.models import (
    ANY_LOCATION,
    LOCAL,
    Agent,
    AgentToken,
    Endpoint,
    RequestSample,
    Run,
    RunStatus,
    RunStep,
    Schedule,
    StepPart,
)
from app.probe.types import Sample, StepResult
from app.security.crypto import SecretBox
from app.security.tokens import token_hash
from app.services import alerts
from app.services.execution import probe_spec
from app.services.records import sample_row
from app.services.results import SAMPLE_BATCH, finish, store_steps
from app.services.runs import INSPECTION_CLAIM

log = logging.getLogger("smartbench.agents")

AGENT_TOKEN_PREFIX = "sba_"
HANDBACKS = 1  # a run is handed back to the queue at most this many times, then failed


class ClaimedRun(BaseModel):
    """What an agent gets with a run it claimed: the probe's spec, the endpoint's key in it."""

    run_id: int
    attempt: int
    endpoint: str
    profile: str
    spec: dict[str, object] = Field(description="the probe's spec (app/probe/process.py ProbeSpec)")
    deadline_s: float | None = None


class Beat(BaseModel):
    """The dashboard's answer to a heartbeat."""

    cancel: bool = Field(default=False, description="the run's cancellation was asked for: stop it")
    abandon: bool = Field(default=False, description="the run is no longer this agent's: drop it")


def new_agent_token() -> str:
    return AGENT_TOKEN_PREFIX + secrets.token_urlsafe(32)


async def mint(
    session: AsyncSession, *, location: str, name: str, by: int | None, now: datetime
) -> tuple[AgentToken, str]:
    """A token for one location, shown once (only its hash is stored)."""
    if location in (LOCAL, ANY_LOCATION):
        raise ValidationFailed(f"'{location}' is reserved: the dashboard's own runs")
    token = new_agent_token()
    row = AgentToken(
        location=location, name=name, token_hash=token_hash(token), prefix=token[:8],
        created_by_id=by, created_at=now,
    )  # fmt: skip
    session.add(row)
    await session.flush()
    return row, token


async def revoke(session: AsyncSession, *, token_id: int, now: datetime) -> AgentToken:
    row = await session.get(AgentToken, token_id)
    if row is None:
        raise NotFound(f"agent token {token_id} not found")
    if row.revoked_at is None:
        row.revoked_at = now
    await session.flush()
    return row


async def tokens(session: AsyncSession) -> list[AgentToken]:
    return list((await session.scalars(select(AgentToken).order_by(AgentToken.id))).all())


async def listing(session: AsyncSession) -> list[Agent]:
    return list((await session.scalars(select(Agent).order_by(Agent.location, Agent.id))).all())


async def authenticate(session: AsyncSession, raw: str | None, *, now: datetime) -> AgentToken:
    """The agent token presented, unrevoked; 401 otherwise (an API token is not one)."""
    if not raw or not raw.startswith(AGENT_TOKEN_PREFIX):
        raise Unauthorized("an agent token is needed (Authorization: Bearer sba_...)")
    row = await session.scalar(select(AgentToken).where(AgentToken.token_hash == token_hash(raw)))
    if row is None or row.revoked_at is not None:
        raise Unauthorized("this agent token is unknown or revoked")
    if row.last_used_at is None or now - row.last_used_at > timedelta(seconds=60):
        row.last_used_at = now
    return row


async def _agent(session: AsyncSession, token: AgentToken, agent_id: int) -> Agent:
    agent = await session.get(Agent, agent_id)
    if agent is None or agent.token_id != token.id:
        raise Forbidden(f"agent {agent_id} is not registered with this token")
    return agent


async def register(
    session: AsyncSession,
    token: AgentToken,
    *,
    location: str,
    name: str,
    labels: dict[str, str],
    version: str,
    cores: int | None,
    client_rate: float | None,
    now: datetime,
) -> Agent:
    """The agent registered: a new one, or (the same token and name) that agent back, so a
    restart keeps one row and closes its offline alert, even a restart quicker than the offline
    period after a crash (the run the crashed process held is the reaper's, by its own silence).
    Two processes are two agents only under two names."""
    if location != token.location:
        raise Forbidden(f"this token is for location '{token.location}', not '{location}'")
    back = await session.scalar(
        select(Agent).where(Agent.token_id == token.id, Agent.name == name).order_by(Agent.id.desc()).limit(1)
    )
    if back is None:
        agent = Agent(token_id=token.id, location=token.location, name=name, registered_at=now)
        session.add(agent)
    else:
        agent = back
        await _seen(session, agent, now)
    agent.labels, agent.version, agent.cores, agent.client_rate = labels, version, cores, client_rate
    agent.last_seen_at, agent.left_at, agent.current_run_id = now, None, None
    await session.flush()
    return agent


async def leave(session: AsyncSession, token: AgentToken, *, agent_id: int, now: datetime) -> None:
    """The agent stopped and said so (SIGTERM: a restart, a deploy): it is not "offline", and
    raises no alert. Its run, if it still held one, is ended by the reaper as any silent run."""
    agent = await _agent(session, token, agent_id)
    agent.left_at = now
    agent.last_seen_at = now
    agent.current_run_id = None


async def _seen(session: AsyncSession, agent: Agent, now: datetime) -> None:
    """The agent was heard from: an agent that was offline is back (its alert)."""
    agent.last_seen_at = now
    agent.left_at = None
    if agent.offline_since is not None:
        agent.offline_since = None
        await alerts.agent_changed(session, agent=agent, online=True, now=now, silent_s=0.0)


async def heartbeat(
    session: AsyncSession,
    token: AgentToken,
    *,
    agent_id: int,
    run_id: int | None,
    attempt: int | None,
    progress: RunProgress | None,
    now: datetime,
) -> Beat:
    agent = await _agent(session, token, agent_id)
    await _seen(session, agent, now)
    agent.current_run_id = run_id
    if run_id is None:
        return Beat()
    run = await session.get(Run, run_id)
    if run is None or not _holds(run, agent, attempt):
        return Beat(abandon=True)
    run.heartbeat_at = now
    if progress is not None:
        run.progress = progress
    return Beat(cancel=run.cancel_requested_at is not None)


def _holds(run: Run, agent: Agent, attempt: int | None) -> bool:
    return (
        run.status == RunStatus.running.value
        and run.agent_id == agent.id
        and run.location == agent.location
        and attempt == run.attempt
    )


async def claim(
    session: AsyncSession,
    token: AgentToken,
    *,
    agent_id: int,
    now: datetime,
    box: SecretBox,
    settings: Settings,
) -> ClaimedRun | None:
    """The oldest queued run of the agent's location (or of a schedule that runs in any of its
    locations, this one among them) whose endpoint is free; None when there is none. A long poll
    asks again and again: the agent's heartbeat is written at most every sixth of the offline
    period, not at every look."""
    agent = await _agent(session, token, agent_id)
    if agent.last_seen_at is None or now - agent.last_seen_at >= timedelta(
        seconds=settings.runs.agent_offline_s / 6
    ):
        await _seen(session, agent, now)
    busy = select(Run.endpoint_id).where(Run.status == RunStatus.running.value)
    inspected = select(Endpoint.id).where(Endpoint.inspecting_since > now - INSPECTION_CLAIM)
    free = (
        Run.status == RunStatus.queued.value,
        Run.endpoint_id.not_in(busy),
        Run.endpoint_id.not_in(inspected),
    )
    # Its own location's oldest run, locking that row only (agents claiming at once each take
    # another); else runs any location of their schedule may take, checked one by one.
    own = select(Run).where(*free, Run.location == agent.location).order_by(Run.created_at, Run.id).limit(1)
    anywhere = (
        select(Run).where(*free, Run.location == ANY_LOCATION).order_by(Run.created_at, Run.id).limit(20)
    )
    if session.bind is not None and session.bind.dialect.name == "postgresql":
        own, anywhere = own.with_for_update(skip_locked=True), anywhere.with_for_update(skip_locked=True)
    candidates = list((await session.scalars(own)).all())
    if not candidates:
        candidates = list((await session.scalars(anywhere)).all())
    for run in candidates:
        if run.location == ANY_LOCATION and not await _may_take(session, run, agent.location):
            continue
        try:
            async with session.begin_nested():  # losing the endpoint's race undoes this claim only
                run.status = RunStatus.running.value
                run.location = agent.location
                run.agent_id = agent.id
                run.attempt = run.attempt + 1
                run.started_at = run.heartbeat_at = now
                run.worker_id = f"agent:{agent.id}:{agent.name}"[:100]
        except IntegrityError:
            await session.refresh(run)
            continue
        agent.current_run_id = run.id
        try:
            spec = await probe_spec(session, run, box=box, settings=settings)
        except ValueError as exc:
            await finish(
                session,
                run_id=run.id,
                status=RunStatus.failed.value,
                error=str(exc),
                environment=None,
                now=now,
            )
            agent.current_run_id = None
            continue
        return ClaimedRun(
            run_id=run.id,
            attempt=run.attempt,
            endpoint=run.endpoint_snapshot.name or str(run.endpoint_id),
            profile=run.profile_name,
            spec=orjson.loads(spec.to_json()),
            deadline_s=settings.runs.run_deadline_s,
        )
    return None


async def _may_take(session: AsyncSession, run: Run, location: str) -> bool:
    if run.schedule_id is None:
        return True
    schedule = await session.get(Schedule, run.schedule_id)
    return schedule is None or not schedule.locations or location in schedule.locations


async def _held(
    session: AsyncSession, token: AgentToken, agent_id: int, run_id: int, attempt: int, now: datetime
) -> tuple[Run, Agent]:
    """The run this agent holds at this attempt, and the agent; 403 for another location's run, 409 for a run
    that is no longer its (handed back, claimed again, cancelled or ended)."""
    agent = await _agent(session, token, agent_id)
    await _seen(session, agent, now)
    run = await session.get(Run, run_id)
    if run is None:
        raise NotFound(f"run {run_id} not found")
    if run.location != token.location:
        raise Forbidden(f"run {run_id} is not a run of location '{token.location}'")
    if not _holds(run, agent, attempt):
        raise Conflict(f"run {run_id} attempt {attempt} is no longer this agent's (it is {run.status})")
    return run, agent


async def store_step(
    session: AsyncSession,
    token: AgentToken,
    *,
    agent_id: int,
    run_id: int,
    attempt: int,
    step: StepResult,
    now: datetime,
    parts: int | None = None,
) -> bool:
    """Store one uploaded step once: True when stored now, False when it was already (a retry).
    With `parts`, its samples came before in that many parts (store_part), all of which must be
    there; the step carries none itself."""
    run, _ = await _held(session, token, agent_id, run_id, attempt, now)
    run.heartbeat_at = now
    if await _step_stored(session, run_id, step.index):
        return False
    if parts is not None:
        if step.samples:
            raise ValidationFailed("a step uploaded in parts carries its samples in the parts, not itself")
        have = await _parts_of(session, run_id, step.index)
        if have != set(range(parts)):
            missing = sorted(set(range(parts)) - have)
            raise ValidationFailed(
                f"step {step.index} of run {run_id} was announced in {parts} parts; parts stored: "
                f"{sorted(have)}" + (f", missing: {missing}" if missing else "")
            )
        await session.execute(
            delete(StepPart).where(StepPart.run_id == run_id, StepPart.step_index == step.index)
        )
    try:
        async with session.begin_nested():  # a refused upload leaves the transaction usable
            await store_steps(session, run_id=run_id, steps=[step])
    except IntegrityError as exc:
        if await _step_stored(session, run_id, step.index):  # a retry that raced its first try
            return False
        raise _repeated(step.index, run_id) from exc
    return True


async def store_part(
    session: AsyncSession,
    token: AgentToken,
    *,
    agent_id: int,
    run_id: int,
    attempt: int,
    step_index: int,
    part: int,
    origin_ns: int,
    samples: list[Sample],
    now: datetime,
) -> tuple[bool, list[int]]:
    """Store one part of a step's samples once (`origin_ns`: the whole step's first send, from
    which each sample's offset is measured). Returns whether it was stored now (False: stored
    before, or the step is stored whole already) and the parts of the step stored so far."""
    run, _ = await _held(session, token, agent_id, run_id, attempt, now)
    run.heartbeat_at = now
    if await _step_stored(session, run_id, step_index):
        return False, []
    have = await _parts_of(session, run_id, step_index)
    if part in have:
        return False, sorted(have)
    if any(s.sent_ns < origin_ns for s in samples):
        raise ValidationFailed(f"part {part} has requests sent before its step's origin ({origin_ns} ns)")
    rows = [sample_row(run_id, step_index, s, origin_ns) for s in samples]
    try:
        async with session.begin_nested():
            session.add(
                StepPart(
                    run_id=run_id, step_index=step_index, part=part, attempt=attempt, samples=len(samples)
                )
            )
            await session.flush()
            for i in range(0, len(rows), SAMPLE_BATCH):
                await session.execute(insert(RequestSample), rows[i : i + SAMPLE_BATCH])
    except IntegrityError as exc:
        have = await _parts_of(session, run_id, step_index)
        if part in have:  # a retry that raced its first try
            return False, sorted(have)
        raise _repeated(step_index, run_id) from exc
    return True, sorted(have | {part})


async def drop_partial(session: AsyncSession, *, run_id: int) -> int:
    """Remove the samples of the run's steps that were uploaded in parts but never stored whole
    (their run ended or was handed back midway): a step is shown whole or not at all. Returns
    the count of such steps."""
    partial = (
        await session.scalars(select(StepPart.step_index).where(StepPart.run_id == run_id).distinct())
    ).all()
    if partial:
        await session.execute(
            delete(RequestSample).where(RequestSample.run_id == run_id, RequestSample.step_index.in_(partial))
        )
        await session.execute(delete(StepPart).where(StepPart.run_id == run_id))
    return len(partial)


async def _step_stored(session: AsyncSession, run_id: int, step_index: int) -> bool:
    found = await session.scalar(
        select(RunStep.id).where(RunStep.run_id == run_id, RunStep.step_index == step_index).limit(1)
    )
    return found is not None


async def _parts_of(session: AsyncSession, run_id: int, step_index: int) -> set[int]:
    found = await session.scalars(
        select(StepPart.part).where(StepPart.run_id == run_id, StepPart.step_index == step_index)
    )
    return set(found.all())


def _repeated(step_index: int, run_id: int) -> ValidationFailed:
    return ValidationFailed(
        f"step {step_index} repeats request sequence numbers already stored for run {run_id}"
    )


async def end(
    session: AsyncSession,
    token: AgentToken,
    *,
    agent_id: int,
    run_id: int,
    attempt: int,
    status: str,
    error: str | None,
    environment: RunEnvironment | None,
    now: datetime,
) -> None:
    if status not in {RunStatus.succeeded.value, RunStatus.failed.value, RunStatus.cancelled.value}:
        raise ValidationFailed(f"a run ends succeeded, failed or cancelled, not '{status}'")
    _, agent = await _held(session, token, agent_id, run_id, attempt, now)
    agent.current_run_id = None
    await drop_partial(session, run_id=run_id)
    await finish(session, run_id=run_id, status=status, error=error, environment=environment, now=now)


async def reap(session: AsyncSession, *, now: datetime, offline_after_s: float) -> list[Agent]:
    """Agents silent for the offline period become offline (returned, once, for the alert); the
    runs of silent agents (or whose heartbeat stopped) are handed back to the queue where no step
    was stored and they were not handed back before, else failed with the reason."""
    cutoff = now - timedelta(seconds=offline_after_s)
    gone = list(
        (
            await session.scalars(
                select(Agent).where(
                    Agent.last_seen_at < cutoff, Agent.offline_since.is_(None), Agent.left_at.is_(None)
                )
            )
        ).all()
    )
    for agent in gone:
        agent.offline_since = now
        agent.current_run_id = None
    stale = (
        await session.scalars(
            select(Run).where(
                Run.status == RunStatus.running.value,
                Run.location != LOCAL,
                Run.heartbeat_at < cutoff,
            )
        )
    ).all()
    for run in stale:
        held_by = await session.get(Agent, run.agent_id) if run.agent_id is not None else None
        who = f"agent {held_by.name} ({held_by.location})" if held_by is not None else "its agent"
        await drop_partial(session, run_id=run.id)
        steps = await session.scalar(
            select(func.count()).select_from(RunStep).where(RunStep.run_id == run.id)
        )
        if not steps and run.attempt <= HANDBACKS:
            await session.execute(
                update(Run)
                .where(Run.id == run.id, Run.status == RunStatus.running.value)
                .values(
                    status=RunStatus.queued.value, agent_id=None, started_at=None, worker_id=None,
                    error=f"handed back to the queue: {who} stopped heart-beating (attempt {run.attempt})",
                )
            )  # fmt: skip
            log.warning("run %s handed back: %s stopped heart-beating", run.id, who)
        else:
            await finish(
                session, run_id=run.id, status=RunStatus.failed.value,
                error=f"{who} stopped heart-beating mid-run (attempt {run.attempt}, {steps or 0} steps stored)",
                environment=None, now=now,
            )  # fmt: skip
            log.warning("run %s failed: %s stopped heart-beating", run.id, who)
    await session.flush()
    return gone
