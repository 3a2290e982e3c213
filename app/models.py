"""SQLAlchemy ORM tables: the data model of the whole product.

Endpoint → (Profile, Schedule) → Run → RunStep (summary statistics as real columns)
                                      → RequestSample (one row per request; the source of truth)
User → WebSession, ApiToken.

Timestamps are timezone-aware UTC. Relationships are ``lazy="raise"``: under AsyncSession an
implicit load must fail loudly, not issue a hidden query.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any, TypeVar

from pydantic import BaseModel
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    and_,
    false,
    literal_column,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, validates
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.types import TypeDecorator

from app.datasets import DatasetStats
from app.domain import DEFAULT_PERCENTILE, RunSource
from app.environment import RunEnvironment, RunProgress
from app.scoring.regression import AlertDetail
from app.security.redact import VISIBLE
from app.snapshot import CostInputs, EndpointSnapshot, ProfileSnapshot
from app.summary import Scorecard, StepSummary
from app.workloads import WorkloadSpec

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


M = TypeVar("M", bound=BaseModel)


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware datetimes on every backend (SQLite stores naive text; we restore UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given where UTC is required")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Typed(TypeDecorator[M]):
    """A JSON column read and written as one of the domain's types: the one mapping between a
    run's stored JSON and its model. A dict given for it is validated into the model first, so
    what is stored always has the model's shape; what is read is validated the same way, so a
    run stored by an older version reads with the defaults of the keys it lacks. `empty_as_none`:
    SQL NULL and `{}` both read as None, and None is stored as `{}` (a run not judged yet)."""

    impl = JSON
    cache_ok = True

    def __init__(self, model: type[M], *, empty_as_none: bool = False) -> None:
        super().__init__()
        self.model = model
        self.empty_as_none = empty_as_none

    def coerce(self, value: Any) -> M | None:
        """`value` as the model: a dict validated; None, or `{}` where empty reads as None, None."""
        if value is None or isinstance(value, self.model):
            return value
        if self.empty_as_none and value == {}:
            return None
        return self.model.model_validate(value)

    def process_bind_param(self, value: Any, dialect: Any) -> Any:
        model = self.coerce(value)
        if model is None:
            return {} if self.empty_as_none else None
        return model.model_dump(
            mode="json", context=VISIBLE
        )  # stored whole: readers' rights apply on the way out

    def process_result_value(self, value: Any, dialect: Any) -> M | None:
        if value is None or (self.empty_as_none and not value):
            return None
        return self.model.model_validate(value)


def typed(table: type[Base], key: str, value: Any) -> Any:
    """`value` as the model of the Typed column `key` of `table` (a dict validated, `{}` None
    where the column reads empty as None)."""
    kind = table.__table__.c[key].type
    assert isinstance(kind, Typed)
    return kind.coerce(value)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime, list[str]: JSON}


LOCAL = "local"  # the location of runs probed by this dashboard's own executor and workers
ANY_LOCATION = "*"  # a scheduled run that any location of its schedule may claim


class Role(enum.StrEnum):
    viewer = "viewer"
    editor = "editor"
    admin = "admin"

    @property
    def rank(self) -> int:
        return {"viewer": 0, "editor": 1, "admin": 2}[self.value]


class ApiFlavor(enum.StrEnum):
    chat = "chat"
    completions = "completions"


class RunStatus(enum.StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    interrupted = "interrupted"
    cancelled = "cancelled"
    skipped_overlap = "skipped_overlap"


# ---------------------------------------------------------------------------------------------
# People and credentials
# ---------------------------------------------------------------------------------------------


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16), default=Role.viewer.value)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    must_change_password: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_login_at: Mapped[datetime | None]


class WebSession(Base):
    """A server-side browser session. The cookie holds a random token; we keep its SHA-256."""

    __tablename__ = "web_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 hex of the cookie token
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None]
    user_agent: Mapped[str | None] = mapped_column(String(255))

    user: Mapped[User] = relationship(lazy="raise")


class ApiToken(Base):
    """A bearer token for automation. Stored as SHA-256 (tokens are 256-bit random)."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    read_only: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]
    expires_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]

    user: Mapped[User] = relationship(lazy="raise")


class AgentToken(Base):
    """A token an agent presents: minted by an admin for one location, good only for the agent
    API (register, claim and report that location's runs). Stored as SHA-256."""

    __tablename__ = "agent_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    location: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class Agent(Base):
    """A probe host that connects out to the dashboard (`smartbench agent`): its location,
    labels and host, its last heartbeat and the run it is on."""

    __tablename__ = "agents"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_id: Mapped[int] = mapped_column(ForeignKey("agent_tokens.id", ondelete="CASCADE"), index=True)
    location: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str] = mapped_column(String(200))  # its host name and process
    labels: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    version: Mapped[str] = mapped_column(String(40), default="")
    cores: Mapped[int | None] = mapped_column(Integer)
    client_rate: Mapped[float | None] = mapped_column(
        Float
    )  # responses/s its probe parses before client-bound
    registered_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime | None] = mapped_column(index=True)
    current_run_id: Mapped[int | None] = mapped_column(Integer)
    offline_since: Mapped[datetime | None]  # no heartbeat for the offline period (alerted once)
    left_at: Mapped[datetime | None]  # it stopped and said so (a restart, a deploy): never "offline"


class LoginThrottle(Base):
    """Failed logins per account ("account:<name>") and per client address ("address:<ip>"):
    the back-off they earn, shared by every process that serves the site."""

    __tablename__ = "login_throttle"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    last_failure_at: Mapped[datetime]
    blocked_until: Mapped[datetime | None]


class AppSetting(Base):
    """Settings an admin changes on the settings page (they override the environment's)."""

    __tablename__ = "app_settings"

    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[Any] = mapped_column(JSON, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    updated_by: Mapped[str | None] = mapped_column(String(64))


# ---------------------------------------------------------------------------------------------
# What is measured
# ---------------------------------------------------------------------------------------------


class Endpoint(Base):
    __tablename__ = "endpoints"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    base_url: Mapped[str] = mapped_column(String(500))
    model: Mapped[str] = mapped_column(String(200))
    api_flavor: Mapped[str] = mapped_column(String(16), default=ApiFlavor.chat.value)
    # "sb1:<kid>:<base64 nonce+ciphertext>"; never leaves the server.
    api_key_encrypted: Mapped[str | None] = mapped_column(Text)
    api_key_last4: Mapped[str | None] = mapped_column(String(4))

    # Self-hosted cost and power inputs.
    gpu_model: Mapped[str | None] = mapped_column(String(100))
    gpu_count: Mapped[int | None] = mapped_column(Integer)
    price_per_gpu_hour: Mapped[float | None] = mapped_column(Float)
    overhead_per_hour: Mapped[float | None] = mapped_column(Float)
    watts_per_gpu: Mapped[float | None] = mapped_column(Float)
    # Hosted, per-token priced APIs.
    input_price_per_million: Mapped[float | None] = mapped_column(Float)
    output_price_per_million: Mapped[float | None] = mapped_column(Float)
    electricity_price_per_kwh: Mapped[float | None] = mapped_column(Float)  # adds energy to self-hosted cost

    # Declared (and later detected) serving stack.
    engine: Mapped[str | None] = mapped_column(String(50))
    engine_version: Mapped[str | None] = mapped_column(String(50))
    quantization: Mapped[str | None] = mapped_column(String(50))
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    metrics_url: Mapped[str | None] = mapped_column(String(500))  # Prometheus/DCGM scrape target
    # An on-demand inspection holds the endpoint from here (claimed by a conditional UPDATE).
    inspecting_since: Mapped[datetime | None]
    tokenizer: Mapped[str | None] = mapped_column(String(500))  # local HF tokenizer path or tiktoken name
    description: Mapped[str | None] = mapped_column(Text)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)

    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))


class Profile(Base):
    """A workload profile: token lengths, load pattern, bounds, warm-up and SLO."""

    __tablename__ = "profiles"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    title: Mapped[str] = mapped_column(String(200), default="")
    description: Mapped[str | None] = mapped_column(Text)
    builtin: Mapped[bool] = mapped_column(Boolean, default=False)

    input_tokens_mean: Mapped[int] = mapped_column(Integer)
    input_tokens_spread: Mapped[float] = mapped_column(Float, default=0.0)  # relative std-dev
    output_tokens_mean: Mapped[int] = mapped_column(Integer)
    output_tokens_spread: Mapped[float] = mapped_column(Float, default=0.0)

    load_mode: Mapped[str] = mapped_column(String(16), default="concurrency")  # concurrency | rate
    load_levels: Mapped[list[float]] = mapped_column(JSON)
    arrival: Mapped[str] = mapped_column(String(16), default="poisson")  # poisson | constant
    max_concurrency: Mapped[int | None] = mapped_column(Integer)
    requests_per_step: Mapped[int | None] = mapped_column(Integer)
    duration_per_step_s: Mapped[float | None] = mapped_column(Float)
    warmup_requests: Mapped[int] = mapped_column(Integer, default=0)
    # SLO search (app/probe/search.py): instead of every level, find the heaviest load that meets
    # the SLO between the lowest level (the start) and the highest (the ceiling).
    search: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    search_max_steps: Mapped[int] = mapped_column(Integer, default=10, server_default=text("10"))
    search_budget_s: Mapped[float] = mapped_column(Float, default=900.0, server_default=text("900"))
    # Repeat trials: each step measured this many times, with a pause between (confidence.py).
    trials: Mapped[int] = mapped_column(Integer, default=1, server_default=text("1"))
    trial_cooldown_s: Mapped[float] = mapped_column(Float, default=0.0, server_default=text("0"))

    slo_ttft_ms: Mapped[float | None] = mapped_column(Float)
    slo_tpot_ms: Mapped[float | None] = mapped_column(Float)
    slo_e2e_ms: Mapped[float | None] = mapped_column(Float)
    slo_percentile: Mapped[float] = mapped_column(Float, default=DEFAULT_PERCENTILE)
    target_price_per_million: Mapped[float | None] = mapped_column(Float)
    # The traffic (app/workloads.py); NULL: synthetic, from the lengths above.
    workload: Mapped[WorkloadSpec | None] = mapped_column(Typed(WorkloadSpec))

    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    @validates("workload")
    def _typed(self, key: str, value: Any) -> Any:
        return typed(Profile, key, value)


class Dataset(Base):
    """A trace or a set of conversations a workload replays (app/datasets.py): validated on the
    way in, kept whole (compressed, normalised) with its content hash and statistics. A profile
    names it; a run keeps the hash it used."""

    __tablename__ = "datasets"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    description: Mapped[str | None] = mapped_column(Text)
    format: Mapped[str] = mapped_column(String(16))  # mooncake | azure | sharegpt | messages
    sha256: Mapped[str] = mapped_column(String(64))  # of the file as uploaded
    size_bytes: Mapped[int] = mapped_column(Integer)
    records: Mapped[int] = mapped_column(Integer)
    content: Mapped[bytes] = mapped_column(LargeBinary)  # DatasetContent.pack()
    stats: Mapped[DatasetStats] = mapped_column(Typed(DatasetStats))
    builtin: Mapped[bool] = mapped_column(Boolean, default=False)
    generated: Mapped[bool] = mapped_column(Boolean, default=False)  # made by smartbench, not recorded
    source: Mapped[str | None] = mapped_column(Text)  # where it (or the statistics it follows) came from
    created_by: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    @validates("stats")
    def _typed(self, key: str, value: Any) -> Any:
        return typed(Dataset, key, value)


class Schedule(Base):
    __tablename__ = "schedules"
    __table_args__ = (UniqueConstraint("endpoint_id", "profile_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    endpoint_id: Mapped[int] = mapped_column(ForeignKey("endpoints.id", ondelete="CASCADE"))
    profile_id: Mapped[int] = mapped_column(ForeignKey("profiles.id", ondelete="CASCADE"), index=True)
    interval_s: Mapped[int] = mapped_column(Integer)  # cron schedules: the gap of their first two firings
    cron: Mapped[str | None] = mapped_column(String(100))  # "0 2 * * *": fires on the cron instead
    timezone: Mapped[str | None] = mapped_column(String(64))  # the cron's zone (IANA name), default UTC
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    offset_s: Mapped[float] = mapped_column(Float, default=0.0)  # stable per-endpoint spread
    catchup_window_s: Mapped[int | None] = mapped_column(Integer)
    # Where each firing runs: [] is here (LOCAL); else agents' locations, all of them each firing,
    # in turn (round_robin) or whichever location's agent claims first (any).
    locations: Mapped[list[str]] = mapped_column(JSON, default=list, server_default="[]")
    location_mode: Mapped[str] = mapped_column(String(16), default="all", server_default="all")
    location_turn: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    next_run_at: Mapped[datetime | None] = mapped_column(index=True)
    last_run_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    endpoint: Mapped[Endpoint] = relationship(lazy="raise")
    profile: Mapped[Profile] = relationship(lazy="raise")


TREND_INDEX = ("endpoint_id", "profile_name", "status", "created_at", "source", "cost_per_million_tokens_at_slo",
               "output_tokens_per_s_at_slo", "quality_degraded", "price_key", "stack_key", "id")  # fmt: skip
# Runs a scorecard may rest on: the partial index's predicate, and `measured()` states it with
# the same literals (a bound parameter would keep PostgreSQL's planner from the index).
MEASURED_SQL = f"status = '{RunStatus.succeeded.value}' AND source <> '{RunSource.synthetic.value}'"


class Run(Base):
    """One probe of one endpoint with one profile, with the inputs snapshotted at run time."""

    __tablename__ = "runs"
    __table_args__ = (
        Index("ix_runs_endpoint_id_created_at", "endpoint_id", "created_at"),
        Index("ix_runs_status_created_at", "status", "created_at"),
        Index("ix_runs_created_at_id", "created_at", "id"),  # the run list's keyset
        # Trends: one endpoint's runs of one profile over time, covering what a trend reads (its
        # buckets, counts and change markers come from the index alone).
        Index("ix_runs_trend", *TREND_INDEX),
        # Scorecards: an endpoint's latest measured run of a profile, one probe of this index
        # (the id last: the order's tie-break, so nothing is sorted).
        Index(
            "ix_runs_measured",
            "endpoint_id",
            "profile_name",
            "created_at",
            "id",
            sqlite_where=text(MEASURED_SQL),
            postgresql_where=text(MEASURED_SQL),
        ),
        # A schedule slot runs at most once in each location.
        UniqueConstraint("schedule_id", "scheduled_for", "location", name="uq_runs_schedule_slot_location"),
        # At most one running probe per endpoint: two would disturb each other's numbers.
        Index(
            "uq_runs_one_running_per_endpoint",
            "endpoint_id",
            unique=True,
            sqlite_where=text("status = 'running'"),
            postgresql_where=text("status = 'running'"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    endpoint_id: Mapped[int] = mapped_column(ForeignKey("endpoints.id", ondelete="CASCADE"))
    profile_id: Mapped[int | None] = mapped_column(ForeignKey("profiles.id", ondelete="SET NULL"))
    schedule_id: Mapped[int | None] = mapped_column(ForeignKey("schedules.id", ondelete="SET NULL"))
    profile_name: Mapped[str] = mapped_column(String(64))
    profile_snapshot: Mapped[ProfileSnapshot] = mapped_column(Typed(ProfileSnapshot))
    cost_snapshot: Mapped[CostInputs] = mapped_column(Typed(CostInputs))
    endpoint_snapshot: Mapped[EndpointSnapshot] = mapped_column(
        Typed(EndpointSnapshot), default=EndpointSnapshot
    )
    environment: Mapped[RunEnvironment] = mapped_column(Typed(RunEnvironment), default=RunEnvironment)

    status: Mapped[str] = mapped_column(String(20), default=RunStatus.queued.value)
    trigger: Mapped[str] = mapped_column(String(16), default="manual")  # manual|api|schedule|demo|seed
    source: Mapped[str] = mapped_column(String(32), default=RunSource.smartbench.value)  # domain.RunSource
    scheduled_for: Mapped[datetime | None]
    skipped_slots: Mapped[int | None] = mapped_column(Integer)  # skipped_overlap: slots merged into this row
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    heartbeat_at: Mapped[datetime | None]
    worker_id: Mapped[str | None] = mapped_column(String(100))
    error: Mapped[str | None] = mapped_column(Text)
    progress: Mapped[RunProgress | None] = mapped_column(
        Typed(RunProgress, empty_as_none=True), default=None, nullable=False
    )  # None is stored as {}
    # Judged at completion (app/scoring) and kept for fast trend queries; recomputable.
    scorecard: Mapped[Scorecard | None] = mapped_column(
        Typed(Scorecard, empty_as_none=True), default=dict, nullable=False
    )
    cost_per_million_tokens_at_slo: Mapped[float | None] = mapped_column(Float)
    output_tokens_per_s_at_slo: Mapped[float | None] = mapped_column(Float)
    # The scorecard rests on a step measured with a degraded client (client-bound, output length off).
    quality_degraded: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    operating_step: Mapped[int | None]  # the scorecard's operating step (latency history joins it)
    # Digests of the prices and of the serving stack the run ran with (app/domain.snapshot_key):
    # where they change between two runs, a trend draws a marker.
    price_key: Mapped[str | None] = mapped_column(String(16))
    stack_key: Mapped[str | None] = mapped_column(String(16))
    cancel_requested_at: Mapped[datetime | None]  # a user asked to cancel; the executing worker stops it
    # A figure of this run regressed against its baseline: it stays out of later baselines.
    regressed: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    requested_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    # Where the probe runs: LOCAL (this dashboard's executor and its workers) or an agent's location.
    location: Mapped[str] = mapped_column(String(64), default=LOCAL, server_default=LOCAL, index=True)
    # Claims of this run: an agent's uploads name the attempt they belong to, a stale one is refused.
    attempt: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"))

    endpoint: Mapped[Endpoint] = relationship(lazy="raise")
    steps: Mapped[list[RunStep]] = relationship(
        lazy="raise", order_by="RunStep.step_index", cascade="all, delete-orphan", passive_deletes=True
    )

    @validates(
        "profile_snapshot", "cost_snapshot", "endpoint_snapshot", "scorecard", "environment", "progress"
    )
    def _typed(self, key: str, value: Any) -> Any:
        """A dict set on a typed column becomes its model at once, not only once stored."""
        return typed(Run, key, value)


class RunStep(Base):
    """One load level of a run. Summary statistics are real columns for fast trend queries;
    they are derived from the step's RequestSample rows and can be recomputed."""

    __tablename__ = "run_steps"
    __table_args__ = (UniqueConstraint("run_id", "step_index"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    step_index: Mapped[int] = mapped_column(Integer)
    concurrency: Mapped[int | None] = mapped_column(Integer)
    request_rate: Mapped[float | None] = mapped_column(Float)
    duration_s: Mapped[float | None] = mapped_column(Float)

    requests_sent: Mapped[int] = mapped_column(Integer, default=0)
    requests_completed: Mapped[int] = mapped_column(Integer, default=0)
    requests_failed: Mapped[int] = mapped_column(Integer, default=0)
    errors: Mapped[dict[str, int]] = mapped_column(JSON, default=dict)  # error kind -> requests

    ttft_ms_mean: Mapped[float | None] = mapped_column(Float)
    ttft_ms_p50: Mapped[float | None] = mapped_column(Float)
    ttft_ms_p90: Mapped[float | None] = mapped_column(Float)
    ttft_ms_p95: Mapped[float | None] = mapped_column(Float)
    ttft_ms_p99: Mapped[float | None] = mapped_column(Float)
    ttft_ms_min: Mapped[float | None] = mapped_column(Float)
    ttft_ms_max: Mapped[float | None] = mapped_column(Float)
    ttfat_ms_mean: Mapped[float | None] = mapped_column(Float)
    ttfat_ms_p50: Mapped[float | None] = mapped_column(Float)
    ttfat_ms_p90: Mapped[float | None] = mapped_column(Float)
    ttfat_ms_p95: Mapped[float | None] = mapped_column(Float)
    ttfat_ms_p99: Mapped[float | None] = mapped_column(Float)
    ttfat_ms_min: Mapped[float | None] = mapped_column(Float)
    ttfat_ms_max: Mapped[float | None] = mapped_column(Float)
    itl_ms_mean: Mapped[float | None] = mapped_column(Float)
    itl_ms_p50: Mapped[float | None] = mapped_column(Float)
    itl_ms_p90: Mapped[float | None] = mapped_column(Float)
    itl_ms_p95: Mapped[float | None] = mapped_column(Float)
    itl_ms_p99: Mapped[float | None] = mapped_column(Float)
    itl_ms_min: Mapped[float | None] = mapped_column(Float)
    itl_ms_max: Mapped[float | None] = mapped_column(Float)
    tpot_ms_mean: Mapped[float | None] = mapped_column(Float)
    tpot_ms_p50: Mapped[float | None] = mapped_column(Float)
    tpot_ms_p90: Mapped[float | None] = mapped_column(Float)
    tpot_ms_p95: Mapped[float | None] = mapped_column(Float)
    tpot_ms_p99: Mapped[float | None] = mapped_column(Float)
    tpot_ms_min: Mapped[float | None] = mapped_column(Float)
    tpot_ms_max: Mapped[float | None] = mapped_column(Float)
    e2e_ms_mean: Mapped[float | None] = mapped_column(Float)
    e2e_ms_p50: Mapped[float | None] = mapped_column(Float)
    e2e_ms_p90: Mapped[float | None] = mapped_column(Float)
    e2e_ms_p95: Mapped[float | None] = mapped_column(Float)
    e2e_ms_p99: Mapped[float | None] = mapped_column(Float)
    e2e_ms_min: Mapped[float | None] = mapped_column(Float)
    e2e_ms_max: Mapped[float | None] = mapped_column(Float)

    input_tokens_mean: Mapped[float | None] = mapped_column(Float)
    output_tokens_mean: Mapped[float | None] = mapped_column(Float)
    input_tokens_per_s: Mapped[float | None] = mapped_column(Float)
    output_tokens_per_s: Mapped[float | None] = mapped_column(Float)
    total_tokens_per_s: Mapped[float | None] = mapped_column(Float)
    requests_per_s: Mapped[float | None] = mapped_column(Float)
    tokens_per_s_per_user_p50: Mapped[float | None] = mapped_column(Float)
    goodput_requests_per_s: Mapped[float | None] = mapped_column(Float)
    good_tokens_per_s: Mapped[float | None] = mapped_column(Float)
    slo_attainment: Mapped[float | None] = mapped_column(Float)

    token_count_source: Mapped[str | None] = mapped_column(String(16))  # usage | tokenizer | estimated
    itl_basis: Mapped[str | None] = mapped_column(String(8))  # token | chunk
    client_bound: Mapped[bool] = mapped_column(Boolean, default=False)
    osl_mismatch_pct: Mapped[float | None] = mapped_column(Float)
    usage_tokenizer_diff_pct: Mapped[float | None] = mapped_column(Float)

    cost_per_million_output_tokens: Mapped[float | None] = mapped_column(Float)
    cost_per_million_tokens: Mapped[float | None] = mapped_column(Float)
    cost_per_million_good_tokens: Mapped[float | None] = mapped_column(Float)
    cost_per_million_tokens_blended: Mapped[float | None] = mapped_column(Float)
    tokens_per_joule: Mapped[float | None] = mapped_column(Float)
    energy_joules: Mapped[float | None] = mapped_column(Float)
    energy_source: Mapped[str | None] = mapped_column(String(16))  # measured | declared

    # The full summary object of DESIGN's run-summary JSON, as computed.
    summary: Mapped[StepSummary] = mapped_column(Typed(StepSummary), default=StepSummary)

    @validates("summary")
    def _typed(self, key: str, value: Any) -> Any:
        return typed(RunStep, key, value)


class StepPart(Base):
    """One part of a step an agent uploads in parts (its samples are stored as the part arrives):
    stored once per run, step and part; removed when the step is stored whole, or with the samples
    of a step never completed when its run ends or is handed back."""

    __tablename__ = "step_parts"
    __table_args__ = (UniqueConstraint("run_id", "step_index", "part"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    step_index: Mapped[int] = mapped_column(Integer)
    part: Mapped[int] = mapped_column(Integer)
    attempt: Mapped[int] = mapped_column(Integer)
    samples: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class RequestSample(Base):
    """One request as the probe saw it. Offsets are milliseconds from the step's first send;
    per-chunk arrival offsets and token counts are packed arrays (little-endian float32 / uint16)."""

    __tablename__ = "request_samples"
    __table_args__ = (
        # Idempotent writes: a retried batch cannot duplicate a sample.
        UniqueConstraint("run_id", "seq"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    step_index: Mapped[int] = mapped_column(Integer)
    seq: Mapped[int] = mapped_column(Integer)
    warmup: Mapped[bool] = mapped_column(Boolean, default=False)

    sent_offset_ms: Mapped[float] = mapped_column(Float)
    ttft_ms: Mapped[float | None] = mapped_column(Float)
    ttfat_ms: Mapped[float | None] = mapped_column(Float)
    e2e_ms: Mapped[float | None] = mapped_column(Float)
    end_ms: Mapped[float | None] = mapped_column(Float)  # the request's end (stream closed) after send
    input_tokens: Mapped[int | None] = mapped_column(Integer)
    output_tokens: Mapped[int | None] = mapped_column(Integer)
    reasoning_tokens: Mapped[int | None] = mapped_column(Integer)
    requested_output_tokens: Mapped[int | None] = mapped_column(Integer)
    tokenizer_output_tokens: Mapped[int | None] = mapped_column(Integer)
    chunk_count: Mapped[int] = mapped_column(Integer, default=0)
    chunk_offsets: Mapped[bytes | None] = mapped_column(LargeBinary)
    chunk_tokens: Mapped[bytes | None] = mapped_column(LargeBinary)

    # What the workload made of it, and the server's cached prompt tokens.
    requested_input_tokens: Mapped[int | None] = mapped_column(Integer)
    cached_tokens: Mapped[int | None] = mapped_column(Integer)
    expected_cached_tokens: Mapped[int | None] = mapped_column(Integer)
    session: Mapped[int | None] = mapped_column(Integer)
    turn: Mapped[int | None] = mapped_column(Integer)
    dispatch_lag_ms: Mapped[float | None] = mapped_column(Float)  # late against its schedule
    trial: Mapped[int | None] = mapped_column(Integer)  # which of the step's repeat trials (0-based)

    finish_reason: Mapped[str | None] = mapped_column(String(32))
    error_kind: Mapped[str | None] = mapped_column(String(32))
    error_detail: Mapped[str | None] = mapped_column(String(500))
    http_status: Mapped[int | None] = mapped_column(Integer)
    retry_after_s: Mapped[float | None] = mapped_column(Float)


class Inspection(Base):
    """What an endpoint turned out to be (engine detection) and how much of the OpenAI API it
    honoured (the conformance checklist), after a run or on demand. Kept, so a regression after
    an upgrade shows."""

    __tablename__ = "inspections"
    __table_args__ = (Index("ix_inspections_endpoint_created", "endpoint_id", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    endpoint_id: Mapped[int] = mapped_column(ForeignKey("endpoints.id", ondelete="CASCADE"))
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    engine: Mapped[str] = mapped_column(String(50))
    engine_version: Mapped[str | None] = mapped_column(String(100))
    declared_engine: Mapped[str | None] = mapped_column(String(50))
    checklist_version: Mapped[str] = mapped_column(String(20))
    evidence: Mapped[list[Any]] = mapped_column(JSON, default=list)
    checks: Mapped[list[Any]] = mapped_column(JSON, default=list)
    metrics_exposed: Mapped[bool] = mapped_column(Boolean, default=False)
    duration_s: Mapped[float | None] = mapped_column(Float)
    error: Mapped[str | None] = mapped_column(Text)
    checks_at: Mapped[datetime | None]  # the checklist was carried over from the inspection at this time


# ---------------------------------------------------------------------------------------------
# Alerts: regressions and recoveries against a baseline, endpoints down and back up, and their
# deliveries to webhooks
# ---------------------------------------------------------------------------------------------


class AlertKind(enum.StrEnum):
    regression = "regression"
    recovery = "recovery"
    down = "down"
    up = "up"
    agent_offline = "agent_offline"  # an agent stopped heart-beating (no endpoint)
    agent_online = "agent_online"  # it came back


class Alert(Base):
    """Something that changed about an endpoint: a figure regressed against its baseline (or
    recovered), or the endpoint went down (N failed runs in a row) or came back up. Kept."""

    __tablename__ = "alerts"
    __table_args__ = (
        Index("ix_alerts_endpoint_created", "endpoint_id", "created_at"),
        Index("ix_alerts_state", "endpoint_id", "profile_name", "metric", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # None for an agent's alerts (agent_offline, agent_online): they are about the agent.
    endpoint_id: Mapped[int | None] = mapped_column(ForeignKey("endpoints.id", ondelete="CASCADE"))
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"))
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"))
    kind: Mapped[str] = mapped_column(String(16))  # AlertKind
    profile_name: Mapped[str | None] = mapped_column(String(64))  # None for down and up
    metric: Mapped[str | None] = mapped_column(String(40))  # scoring.regression FIGURES key
    baseline: Mapped[float | None] = mapped_column(Float)
    value: Mapped[float | None] = mapped_column(Float)
    change_pct: Mapped[float | None] = mapped_column(Float)
    detail: Mapped[AlertDetail] = mapped_column(Typed(AlertDetail), default=AlertDetail)
    message: Mapped[str] = mapped_column(Text)
    degraded: Mapped[bool] = mapped_column(Boolean, default=False)  # rests on a degraded run
    # Regressions and recoveries are judged per location (its own baseline); down and up over all.
    location: Mapped[str] = mapped_column(String(64), default=LOCAL, server_default=LOCAL)

    @validates("detail")
    def _typed(self, key: str, value: Any) -> Any:
        return typed(Alert, key, value)

    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ChangePoint(Base):
    """Where one figure of an endpoint's history on one profile stepped to another level
    (app/changepoints.py), found when runs land; derived, replaced at each scan."""

    __tablename__ = "change_points"
    __table_args__ = (Index("ix_change_points_endpoint_profile", "endpoint_id", "profile_name", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    endpoint_id: Mapped[int] = mapped_column(ForeignKey("endpoints.id", ondelete="CASCADE"))
    profile_name: Mapped[str] = mapped_column(String(64))
    metric: Mapped[str] = mapped_column(String(40))  # services/changes.SERIES key
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"))  # first after
    at: Mapped[datetime]  # when that run finished
    before: Mapped[float] = mapped_column(Float)  # medians of the segments on each side
    after: Mapped[float] = mapped_column(Float)
    change_pct: Mapped[float] = mapped_column(Float)
    p_value: Mapped[float] = mapped_column(Float)
    synthetic: Mapped[bool] = mapped_column(Boolean, default=False)  # found in generated history
    found_at: Mapped[datetime] = mapped_column(default=utcnow)
    location: Mapped[str] = mapped_column(
        String(64), default=LOCAL, server_default=LOCAL
    )  # its series' location


class Webhook(Base):
    """Where alerts go: a generic JSON receiver (HMAC-SHA256 signed) or a Slack-compatible
    incoming webhook. The URL (a Slack URL is itself a credential) and the signing secret are
    sealed like endpoint keys and never shown again."""

    __tablename__ = "webhooks"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    kind: Mapped[str] = mapped_column(String(16))  # json | slack
    url_encrypted: Mapped[str] = mapped_column(Text)
    url_hint: Mapped[str] = mapped_column(String(200))  # scheme://host/…last4
    secret_encrypted: Mapped[str | None] = mapped_column(Text)
    events: Mapped[list[str]] = mapped_column(JSON, default=list)  # AlertKind values
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str | None] = mapped_column(String(64))


class Delivery(Base):
    """One alert to one webhook: retried with back-off until delivered or given up."""

    __tablename__ = "deliveries"
    __table_args__ = (
        Index("ix_deliveries_due", "status", "next_attempt_at"),
        UniqueConstraint("alert_id", "webhook_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id", ondelete="CASCADE"))
    webhook_id: Mapped[int] = mapped_column(ForeignKey("webhooks.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending | delivered | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None]
    last_attempt_at: Mapped[datetime | None]
    response_status: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(String(500))
    delivered_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


def measured() -> ColumnElement[bool]:
    """Runs a scorecard may rest on, in the literal words of the partial index ix_runs_measured."""
    return and_(
        Run.status == literal_column(f"'{RunStatus.succeeded.value}'"),
        Run.source != literal_column(f"'{RunSource.synthetic.value}'"),
    )
