"""Agents: the admin's tokens and the agents list, and the API an agent speaks (`smartbench
agent`, app/agent.py) with its agent token: register, heartbeat, claim (a long poll), upload a
step (gzip allowed), end a run. An agent token opens nothing else; an API token opens none of
the agent API."""

from __future__ import annotations

import asyncio
import zlib
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal, TypeVar

import orjson
from fastapi import APIRouter, Depends, Path, Request, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from app.config import Settings
from app.db import unit_of_work
from app.deps import AdminDep, NowDep, ReaderDep, RowId, SessionDep, SettingsDep, get_box
from app.environment import RunEnvironment, RunProgress
from app.errors import Unauthorized, ValidationFailed
from app.models import Agent, AgentToken
from app.probe.types import Sample, StepResult
from app.schemas import ErrorBody, LocationName, Name, Page
from app.services import agents, locations
from app.services.agents import Beat
from app.summary import StepSummary

router = APIRouter(tags=["agents"], responses={401: {"model": ErrorBody}})

CLAIM_POLL_S = 0.5  # how often a waiting claim looks for a run
MAX_WAIT_S = 25.0  # the longest a claim waits


class AgentTokenCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    location: LocationName
    name: Name


class AgentTokenRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    location: str
    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class AgentTokenCreated(AgentTokenRead):
    token: str = Field(description="Shown once; only its hash is stored.")


class AgentRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    location: str
    name: str
    labels: dict[str, str]
    version: str
    cores: int | None
    client_rate: float | None = Field(description="responses/s its probe parses before it is client-bound")
    registered_at: datetime
    last_seen_at: datetime | None
    current_run_id: int | None
    left_at: datetime | None = Field(description="when it stopped and said so (a restart, a deploy)")
    online: bool = False
    steps_week: int = Field(default=0, description="steps it measured in the last 7 days")
    client_bound_share: float | None = Field(
        default=None, description="of those, the share flagged client-bound (its host too slow for the load)"
    )


class Registration(BaseModel):
    model_config = ConfigDict(extra="forbid")
    location: LocationName
    name: Annotated[str, Field(min_length=1, max_length=200)]
    labels: dict[Annotated[str, Field(max_length=64)], Annotated[str, Field(max_length=200)]] = Field(
        default_factory=dict, max_length=32
    )
    version: Annotated[str, Field(max_length=40)] = ""
    cores: int | None = Field(default=None, ge=1, le=100_000)
    client_rate: float | None = Field(default=None, ge=0)


class Registered(BaseModel):
    agent_id: int
    location: str
    offline_after_s: float
    beat_s: float


class Heartbeat(BaseModel):
    model_config = ConfigDict(extra="forbid")
    agent_id: int = Field(ge=1)
    run_id: int | None = Field(default=None, ge=1)
    attempt: int | None = Field(default=None, ge=1)
    progress: RunProgress | None = None


class ClaimAsk(BaseModel):
    model_config = ConfigDict(extra="forbid")
    agent_id: int = Field(ge=1)
    wait_s: float = Field(default=20.0, ge=0, le=MAX_WAIT_S)


class StepUpload(BaseModel):
    model_config = ConfigDict(extra="forbid")
    agent_id: int = Field(ge=1)
    attempt: int = Field(ge=1)
    index: int = Field(ge=0, le=10_000)
    concurrency: int | None = Field(default=None, ge=1)
    request_rate: float | None = None
    summary: StepSummary
    samples: list[dict[str, Any]] = Field(default_factory=list, max_length=2_000_000)
    parts: int | None = Field(
        default=None, ge=1, le=100_000,
        description="the step's samples were uploaded before in this many parts (it carries none itself)",
    )  # fmt: skip


class StepStored(BaseModel):
    stored: bool = Field(description="false: this step was stored before (a retry)")


class PartUpload(BaseModel):
    """One part of a step's samples (a large step goes in parts, each retried on its own)."""

    model_config = ConfigDict(extra="forbid")
    agent_id: int = Field(ge=1)
    attempt: int = Field(ge=1)
    part: int = Field(ge=0, lt=100_000)
    origin_ns: int = Field(
        description="the whole step's first send (ns, the agent's clock): offsets start there"
    )
    samples: list[dict[str, Any]] = Field(min_length=1, max_length=200_000)


Upload = TypeVar("Upload", StepUpload, PartUpload)


class PartStored(BaseModel):
    stored: bool = Field(description="false: this part (or the whole step) was stored before (a retry)")
    parts: list[int] = Field(
        description="the step's parts stored so far (empty once the step is stored whole)"
    )


class RunEnd(BaseModel):
    model_config = ConfigDict(extra="forbid")
    agent_id: int = Field(ge=1)
    attempt: int = Field(ge=1)
    status: Literal["succeeded", "failed", "cancelled"]
    error: Annotated[str, Field(max_length=2000)] | None = None
    environment: RunEnvironment | None = None


async def agent_token(request: Request, session: SessionDep, now: NowDep) -> AgentToken:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        raise Unauthorized("an agent token is needed (Authorization: Bearer sba_...)")
    return await agents.authenticate(session, value.strip(), now=now)


AgentDep = Annotated[AgentToken, Depends(agent_token)]


async def raw_agent_token(request: Request) -> str:
    """The agent token presented, checked in a transaction of its own (before the body is): for
    the long poll, which must not hold a session while it waits."""
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        raise Unauthorized("an agent token is needed (Authorization: Bearer sba_...)")
    async with unit_of_work(request.app.state.sessionmaker) as session:
        await agents.authenticate(session, value.strip(), now=request.app.state.clock())
    return value.strip()


RawAgentToken = Annotated[str, Depends(raw_agent_token)]


def to_read(
    agent: Agent, now: datetime, offline_after_s: float, shares: dict[int, tuple[int, int]] | None = None
) -> AgentRead:
    found = AgentRead.model_validate(agent)
    steps, bound = (shares or {}).get(agent.id, (0, 0))
    found.steps_week, found.client_bound_share = steps, (bound / steps if steps else None)
    found.online = (
        agent.offline_since is None
        and agent.left_at is None
        and agent.last_seen_at is not None
        and now - agent.last_seen_at <= timedelta(seconds=offline_after_s)
    )
    return found


# -- for admins and readers ---------------------------------------------------------------------------


@router.get("/agent-tokens")
async def list_agent_tokens(session: SessionDep, _: AdminDep) -> Page[AgentTokenRead]:
    """Every agent token (admins), one page."""
    return Page[AgentTokenRead](
        items=[AgentTokenRead.model_validate(t) for t in await agents.tokens(session)]
    )


@router.post(
    "/agent-tokens", status_code=201, responses={403: {"model": ErrorBody}, 422: {"model": ErrorBody}}
)
async def create_agent_token(
    body: AgentTokenCreate, session: SessionDep, now: NowDep, user: AdminDep
) -> AgentTokenCreated:
    """A token for the agents of one location (admins); shown once."""
    row, token = await agents.mint(session, location=body.location, name=body.name, by=user.user_id, now=now)
    return AgentTokenCreated.model_validate(
        {**AgentTokenRead.model_validate(row).model_dump(), "token": token}
    )


@router.delete("/agent-tokens/{token_id}", responses={404: {"model": ErrorBody}})
async def revoke_agent_token(
    token_id: RowId, session: SessionDep, now: NowDep, _: AdminDep
) -> AgentTokenRead:
    """Revoke (admins): its agents stop at their next call."""
    return AgentTokenRead.model_validate(await agents.revoke(session, token_id=token_id, now=now))


@router.get("/agents")
async def list_agents(
    session: SessionDep, now: NowDep, settings: SettingsDep, _: ReaderDep
) -> Page[AgentRead]:
    """Every agent that registered: location, labels, version, host cores, last heartbeat,
    current run, whether it is online."""
    offline = settings.runs.agent_offline_s
    shares = await locations.client_bound_shares(session, since=now - timedelta(days=7))
    return Page[AgentRead](items=[to_read(a, now, offline, shares) for a in await agents.listing(session)])


# -- for agents ---------------------------------------------------------------------------------------


@router.post("/agent/register", status_code=201, responses={403: {"model": ErrorBody}})
async def register(
    body: Registration, session: SessionDep, now: NowDep, settings: SettingsDep, token: AgentDep
) -> Registered:
    agent = await agents.register(
        session, token, location=body.location, name=body.name, labels=body.labels, version=body.version,
        cores=body.cores, client_rate=body.client_rate, now=now,
    )  # fmt: skip
    offline = settings.runs.agent_offline_s
    return Registered(
        agent_id=agent.id, location=agent.location, offline_after_s=offline, beat_s=max(1.0, offline / 6)
    )


class Leaving(BaseModel):
    model_config = ConfigDict(extra="forbid")
    agent_id: int = Field(ge=1)


@router.post("/agent/leave", status_code=204, responses={403: {"model": ErrorBody}})
async def leave(body: Leaving, session: SessionDep, now: NowDep, token: AgentDep) -> Response:
    """The agent stops (SIGTERM: a restart, a deploy): it is listed as left, not offline, and
    raises no alert; registering again under its name brings the same agent back."""
    await agents.leave(session, token, agent_id=body.agent_id, now=now)
    return Response(status_code=204)


@router.post("/agent/heartbeat", responses={403: {"model": ErrorBody}})
async def heartbeat(body: Heartbeat, session: SessionDep, now: NowDep, token: AgentDep) -> Beat:
    return await agents.heartbeat(
        session, token, agent_id=body.agent_id, run_id=body.run_id, attempt=body.attempt,
        progress=body.progress, now=now,
    )  # fmt: skip


@router.post(
    "/agent/claim", responses={204: {"description": "no run within the wait"}, 403: {"model": ErrorBody}}
)
async def claim(body: ClaimAsk, request: Request, settings: SettingsDep, raw: RawAgentToken) -> Any:
    """The oldest queued run of the agent's location, with its probe's spec (the endpoint's key
    in it); waits up to `wait_s` (at most half the offline period) for one, a long poll, else 204.
    Each look is a transaction of its own that reads the token again (one revoked meanwhile ends
    the poll with 401): a waiting agent holds no database connection."""
    sessionmaker = request.app.state.sessionmaker
    clock = request.app.state.clock
    box = get_box(request)
    loop = asyncio.get_running_loop()
    until = loop.time() + min(body.wait_s, settings.runs.agent_offline_s / 2)
    while True:
        async with unit_of_work(sessionmaker) as session:
            token = await agents.authenticate(session, raw, now=clock())
            found = await agents.claim(
                session, token, agent_id=body.agent_id, now=clock(), box=box, settings=settings
            )
        if found is not None:
            return found
        if loop.time() >= until or await request.is_disconnected():
            return Response(status_code=204)
        await asyncio.sleep(CLAIM_POLL_S)


@router.post(
    "/agent/runs/{run_id}/steps",
    responses={403: {"model": ErrorBody}, 409: {"model": ErrorBody}, 413: {"model": ErrorBody}},
)
async def upload_step(
    run_id: RowId, request: Request, session: SessionDep, now: NowDep, settings: SettingsDep, token: AgentDep
) -> StepStored:
    """One step of a run this agent holds, with its samples (JSON, gzip allowed), or (`parts`)
    after its samples came in parts: stored once (a retry answers stored: false); another
    location's run 403, a stale attempt 409."""
    upload = _decoded(await _body(request, settings), StepUpload, "step upload")
    step = StepResult(
        index=upload.index, concurrency=upload.concurrency, request_rate=upload.request_rate,
        samples=_samples(upload.samples), summary=upload.summary,
    )  # fmt: skip
    stored = await agents.store_step(
        session, token, agent_id=upload.agent_id, run_id=run_id, attempt=upload.attempt, step=step, now=now,
        parts=upload.parts,
    )  # fmt: skip
    return StepStored(stored=stored)


@router.post(
    "/agent/runs/{run_id}/steps/{step_index}/parts",
    responses={403: {"model": ErrorBody}, 409: {"model": ErrorBody}, 413: {"model": ErrorBody}},
)
async def upload_part(
    run_id: RowId,
    step_index: Annotated[int, Path(ge=0, le=10_000)],
    request: Request,
    session: SessionDep,
    now: NowDep,
    settings: SettingsDep,
    token: AgentDep,
) -> PartStored:
    """One part of a step's samples (JSON, gzip allowed), stored once per run, step and part; the
    step itself follows with `parts` once every part is stored. Parts of a step never completed
    are dropped when the run ends or is handed back."""
    upload = _decoded(await _body(request, settings), PartUpload, "part upload")
    stored, parts = await agents.store_part(
        session, token, agent_id=upload.agent_id, run_id=run_id, attempt=upload.attempt, step_index=step_index,
        part=upload.part, origin_ns=upload.origin_ns, samples=_samples(upload.samples), now=now,
    )  # fmt: skip
    return PartStored(stored=stored, parts=parts)


async def _body(request: Request, settings: Settings) -> bytes:
    body = await request.body()
    if request.headers.get("content-encoding", "").lower() == "gzip":
        body = _gunzip(body, limit=settings.limits.max_import_bytes * 8)
    return body


def _decoded(body: bytes, model: type[Upload], what: str) -> Upload:
    try:
        return model.model_validate(orjson.loads(body))
    except (orjson.JSONDecodeError, ValidationError) as exc:
        raise ValidationFailed(f"not a {what}: {str(exc).splitlines()[0][:200]}") from exc


def _samples(raw: list[dict[str, Any]]) -> list[Sample]:
    try:
        return [Sample(**s) for s in raw]
    except TypeError as exc:
        raise ValidationFailed(f"not a sample: {str(exc)[:200]}") from exc


def _gunzip(body: bytes, *, limit: int) -> bytes:
    inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = inflate.decompress(body, limit)
    except zlib.error as exc:
        raise ValidationFailed(f"not gzip: {exc}") from exc
    if inflate.unconsumed_tail:
        raise ValidationFailed(f"the step's body inflates past {limit} bytes")
    return out


@router.post("/agent/runs/{run_id}/end", responses={403: {"model": ErrorBody}, 409: {"model": ErrorBody}})
async def end_run(run_id: RowId, body: RunEnd, session: SessionDep, now: NowDep, token: AgentDep) -> Response:
    """The run's end (its steps uploaded before): the scorecard is judged here, as for any run."""
    await agents.end(
        session, token, agent_id=body.agent_id, run_id=run_id, attempt=body.attempt, status=body.status,
        error=body.error, environment=body.environment, now=now,
    )  # fmt: skip
    return Response(status_code=204)
