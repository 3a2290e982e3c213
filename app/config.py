"""Settings: one object, read from ``SMARTBENCH_*`` environment variables and ``.env``.

Grouped by what they govern (`settings.database.url`, `settings.access.public_read`,
`settings.runs.max_parallel_runs`, ...), while each keeps its one flat environment name
(SMARTBENCH_DATABASE_URL, SMARTBENCH_PUBLIC_READ, SMARTBENCH_MAX_PARALLEL_RUNS): `FLAT` maps
the names to the groups, for the environment, `.env` and keyword arguments alike.

Pure values: reading them touches no file. Secrets are never given defaults; where the keys come
from when none is given (development) is app/security/keyring.py, and how many cores the probes
get is app/cores.py. In production the secrets must be given explicitly, or start-up fails:
several workers on several machines must share them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from dotenv import dotenv_values
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from app.domain import (
    BaselineRuns,
    DownAfterFailures,
    DownLocations,
    RegressionErrorPoints,
    RegressionThresholdPct,
)

PREFIX = "SMARTBENCH_"


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "smartbench"


class ConfigError(RuntimeError):
    """Settings that cannot be used; the message says which and why."""


class _Group(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class DatabaseSettings(_Group):
    url: str | None = None  # SMARTBENCH_DATABASE_URL; None: SQLite in the data directory
    echo: bool = False

    @field_validator("url")
    @classmethod
    def _normalise_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        # Accept the URLs people paste; always drive PostgreSQL through psycopg 3.
        for prefix in ("postgres://", "postgresql://"):
            if value.startswith(prefix):
                return "postgresql+psycopg://" + value[len(prefix) :]
        if value.startswith("sqlite:///"):
            return "sqlite+aiosqlite:///" + value[len("sqlite:///") :]
        return value


class SecretSettings(_Group):
    # Sessions and CSRF tokens are HMAC'd with this key.
    secret_key: SecretStr | None = None
    # Endpoint API keys are encrypted with these: "kid:base64key,kid2:base64key"; the first encrypts.
    encryption_keys: SecretStr | None = None


class AccessSettings(_Group):
    admin_user: str = "admin"
    admin_password: SecretStr | None = None
    public_read: bool = False
    session_max_age_s: int = 14 * 24 * 3600
    # The address people open, e.g. https://bench.example.com. When it is https, cookies are
    # Secure with the __Host- prefix and every answer carries HSTS.
    public_url: str | None = None
    cookie_secure: bool | None = None  # None: from public_url, else from the request's scheme
    # Reverse proxies whose X-Forwarded-For/-Proto are believed: IPs or networks, comma-separated.
    # Empty (the default): none, the client address is the socket's.
    trusted_proxies: str = ""

    @field_validator("admin_user")
    @classmethod
    def _admin_user(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("SMARTBENCH_ADMIN_USER must not be empty")
        return value

    @property
    def https(self) -> bool:
        """Served over TLS as far as cookies and HSTS go (public URL https, or cookie_secure)."""
        if self.cookie_secure is not None:
            return self.cookie_secure
        return (self.public_url or "").lower().startswith("https://")

    def trusted_proxy_list(self) -> list[str]:
        return [part.strip() for part in self.trusted_proxies.split(",") if part.strip()]


class LimitSettings(_Group):
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)  # larger request bodies answer 413
    max_import_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)  # result files uploaded for import
    # An import's requests (samples) at most, and the memory its files may take to parse
    # (judged from their structure before parsing; one import parses at a time per process).
    max_import_samples: int = Field(default=200_000, ge=1)
    max_import_memory_bytes: int = Field(default=1024 * 1024 * 1024, ge=1024 * 1024)
    # Schedules fire at most once a minute unless an admin lowers this (seconds between firings).
    min_schedule_interval_s: int = Field(default=60, ge=1)
    # What a profile may ask of the probe; an admin raises these on the settings page.
    max_profile_concurrency: int = Field(default=1024, ge=1)
    max_requests_per_step: int = Field(default=100_000, ge=1)


class OutboundSettings(_Group):
    # Endpoint and metrics URLs: "default" refuses link-local and cloud metadata addresses;
    # "allowlist" allows only `allow` (networks and host names, comma-separated, "*.example.com"
    # for a domain). The admin's settings page overrides both.
    mode: Literal["default", "allowlist"] = "default"  # SMARTBENCH_OUTBOUND_MODE
    allow: str = ""  # SMARTBENCH_OUTBOUND_ALLOW
    # Webhook deliveries have a policy of their own: "public" (the default) refuses loopback and
    # private addresses too; "default" and "allowlist" as above; the settings page overrides.
    webhook_mode: Literal["public", "default", "allowlist"] = "public"  # SMARTBENCH_WEBHOOK_OUTBOUND_MODE
    webhook_allow: str = ""  # SMARTBENCH_WEBHOOK_OUTBOUND_ALLOW


class AlertingSettings(_Group):
    # Regressions (app/scoring/regression.py): a run's figures against the median of the last
    # baseline_runs good runs of its endpoint and profile; a change counts beyond both the
    # threshold (percent; percentage points for the error rate) and 3x the baseline's noise.
    # An endpoint is down after down_after_failures failed runs in a row. The settings page
    # overrides these.
    baseline_runs: BaselineRuns = 5
    regression_threshold_pct: RegressionThresholdPct = 10.0
    regression_error_points: RegressionErrorPoints = 1.0
    down_after_failures: DownAfterFailures = 3
    # ... in at least this many of the locations that probe it (all of them where fewer do).
    down_locations: DownLocations = 1
    # Besides the median-and-MAD rule: a new change point in the history that makes a figure
    # worse raises a regression (app/changepoints.py).
    change_point_alerts: bool = False


class RunSettings(_Group):
    run_executor: bool = True  # execute queued runs in this process
    # Probe processes at once on this host (each takes a core while it measures). None: the
    # cores this process may use, less one for the web server and the database, at least 1.
    max_parallel_runs: int | None = Field(default=None, ge=1)
    run_deadline_s: float = Field(default=4 * 3600.0, gt=0)  # a run still going then is stopped
    # Linux: each probe process gets a core of its own, and the process that executes runs (the
    # web server in `serve` and `demo`, the worker) keeps to the cores left over.
    pin_probes: bool = True
    scheduler: bool = True  # fire schedule slots in this process (serve and worker)
    heartbeat_timeout_s: float = 30.0  # silent this long: interrupted (reaped within 30 + 5 + 1 s < 45 s)
    # An agent silent this long is offline: its run is handed back to the queue or failed.
    agent_offline_s: float = Field(default=30.0, gt=0)
    sample_retention_days: int | None = 30  # per-request samples older than this are pruned
    # Endpoint tokenizers are files (or folders holding tokenizer.json) in this directory, named
    # by the endpoint; nothing else on the server is read. Default: <data_dir>/tokenizers.
    tokenizer_dir: Path | None = None


class ServerSettings(_Group):
    host: str = "127.0.0.1"
    port: int = 8080
    log_level: str = "info"


# Where a group's setting is not named by its own field: flat name -> (group, field).
_RENAMED = {
    "database_url": ("database", "url"),
    "database_echo": ("database", "echo"),
    "outbound_mode": ("outbound", "mode"),
    "outbound_allow": ("outbound", "allow"),
    "webhook_outbound_mode": ("outbound", "webhook_mode"),
    "webhook_outbound_allow": ("outbound", "webhook_allow"),
}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=PREFIX, env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    env: Literal["development", "production", "test"] = "development"
    data_dir: Path = Field(default_factory=default_data_dir)
    database: DatabaseSettings = DatabaseSettings()
    secrets: SecretSettings = SecretSettings()
    access: AccessSettings = AccessSettings()
    limits: LimitSettings = LimitSettings()
    outbound: OutboundSettings = OutboundSettings()
    alerting: AlertingSettings = AlertingSettings()
    runs: RunSettings = RunSettings()
    server: ServerSettings = ServerSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Keyword arguments first, then the environment, then `.env`, each by its flat name."""
        return init_settings, _FlatSource(settings_cls)

    @model_validator(mode="before")
    @classmethod
    def _nest(cls, data: Any) -> Any:
        """Flat names (the environment's, or keyword arguments) into their groups."""
        return nest(data) if isinstance(data, Mapping) else data

    @model_validator(mode="after")
    def _refuse_missing_secrets_in_production(self) -> Settings:
        if self.env == "production":
            missing = [
                name
                for name, value in (
                    ("SMARTBENCH_SECRET_KEY", self.secrets.secret_key),
                    ("SMARTBENCH_ENCRYPTION_KEYS", self.secrets.encryption_keys),
                    ("SMARTBENCH_DATABASE_URL", self.database.url),
                )
                if not value
            ]
            if missing:
                raise ValueError(
                    "production settings need " + ", ".join(missing) + " (see README, 'Configuration')"
                )
            key = self.secrets.secret_key
            if key is not None and len(key.get_secret_value()) < 32:
                raise ValueError("SMARTBENCH_SECRET_KEY must be at least 32 characters")
        return self

    def but(self, **flat: object) -> Settings:
        """A copy with these settings changed, by their flat names (validated like the rest)."""
        return type(self).model_validate({**self.model_dump(), **flat})

    # -- derived values -------------------------------------------------------------------------

    @property
    def db_url(self) -> str:
        if self.database.url:
            return self.database.url
        return f"sqlite+aiosqlite:///{self.data_dir / 'smartbench.db'}"

    @property
    def is_sqlite(self) -> bool:
        return self.db_url.startswith("sqlite")

    @property
    def tokenizers(self) -> Path:
        return self.runs.tokenizer_dir or self.data_dir / "tokenizers"


def _groups() -> dict[str, type[BaseModel]]:
    out: dict[str, type[BaseModel]] = {}
    for name, info in Settings.model_fields.items():
        kind = info.annotation
        if isinstance(kind, type) and issubclass(kind, _Group):
            out[name] = kind
    return out


def flat_names() -> dict[str, tuple[str | None, str]]:
    """Every setting's flat name (SMARTBENCH_ less its prefix, lower case) -> (group, field);
    group None for the top-level ones."""
    renamed = {place: flat for flat, place in _RENAMED.items()}
    out: dict[str, tuple[str | None, str]] = {
        name: (None, name) for name in Settings.model_fields if name not in _groups()
    }
    for group, model in _groups().items():
        for name in model.model_fields:
            out[renamed.get((group, name), name)] = (group, name)
    return out


def nest(data: Mapping[str, Any]) -> dict[str, Any]:
    """Flat keys moved into their groups, over what the groups themselves say; unknown keys kept."""
    groups, places = _groups(), flat_names()
    out: dict[str, Any] = {}
    for key, value in data.items():  # the groups first: a flat key given with them wins
        if key in groups:
            given = value.model_dump() if isinstance(value, BaseModel) else value
            out[key] = dict(given) if isinstance(given, Mapping) else given
    for key, value in data.items():
        if key in groups:
            continue
        group, name = places.get(key, (None, key))
        if group is None:
            out[key] = value
        elif isinstance(out.setdefault(group, {}), dict):
            out[group][name] = value
    return out


class _FlatSource(PydanticBaseSettingsSource):
    """SMARTBENCH_<NAME> from the environment, else from `.env`, for every flat name."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ reads every name at once

    def __call__(self) -> dict[str, Any]:
        env_file = self.config.get("env_file")
        found: dict[str, str | None] = {}
        if isinstance(env_file, str | Path) and Path(env_file).is_file():
            found.update({k.lower(): v for k, v in dotenv_values(env_file).items()})
        found.update({k.lower(): v for k, v in os.environ.items()})
        prefix = PREFIX.lower()
        return {name: found[prefix + name] for name in flat_names() if found.get(prefix + name) is not None}
