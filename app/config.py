"""Settings: one object, read from ``SMARTBENCH_*`` environment variables and ``.env``.

Pure values: reading them touches no file. Secrets are never given defaults; where the keys come
from when none is given (development) is app/security/keyring.py, and how many cores the probes
get is app/cores.py. In production the secrets must be given explicitly, or start-up fails:
several workers on several machines must share them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.domain import BaselineRuns, DownAfterFailures, RegressionErrorPoints, RegressionThresholdPct

SECRETS_FILE = "secrets.json"


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "smartbench"


class ConfigError(RuntimeError):
    """Settings that cannot be used; the message says which and why."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SMARTBENCH_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    env: Literal["development", "production", "test"] = "development"
    data_dir: Path = Field(default_factory=default_data_dir)
    database_url: str | None = None
    database_echo: bool = False

    # Sessions and CSRF tokens are HMAC'd with this key.
    secret_key: SecretStr | None = None
    # Endpoint API keys are encrypted with these: "kid:base64key,kid2:base64key"; the first encrypts.
    encryption_keys: SecretStr | None = None

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
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)  # larger request bodies answer 413
    max_import_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)  # result files uploaded for import
    # An import's requests (samples) at most, and the memory its files may take to parse
    # (judged from their structure before parsing; one import parses at a time per process).
    max_import_samples: int = Field(default=200_000, ge=1)
    max_import_memory_bytes: int = Field(default=1024 * 1024 * 1024, ge=1024 * 1024)
    # Endpoint tokenizers are files (or folders holding tokenizer.json) in this directory, named
    # by the endpoint; nothing else on the server is read. Default: <data_dir>/tokenizers.
    tokenizer_dir: Path | None = None
    # Outbound requests (endpoint and metrics URLs): "default" refuses link-local and cloud
    # metadata addresses; "allowlist" allows only outbound_allow (networks and host names,
    # comma-separated, "*.example.com" for a domain). The admin's settings page overrides both.
    outbound_mode: Literal["default", "allowlist"] = "default"
    outbound_allow: str = ""
    # Webhook deliveries have a policy of their own: "public" (the default) refuses loopback and
    # private addresses too; "default" and "allowlist" as above; the settings page overrides.
    webhook_outbound_mode: Literal["public", "default", "allowlist"] = "public"
    webhook_outbound_allow: str = ""
    # Schedules fire at most once a minute unless an admin lowers this (seconds between firings).
    min_schedule_interval_s: int = Field(default=60, ge=1)
    # What a profile may ask of the probe; an admin raises these on the settings page.
    max_profile_concurrency: int = Field(default=1024, ge=1)
    max_requests_per_step: int = Field(default=100_000, ge=1)
    # Regressions (app/scoring/regression.py): a run's figures against the median of the last
    # baseline_runs good runs of its endpoint and profile; a change counts beyond both the
    # threshold (percent; percentage points for the error rate) and 3x the baseline's noise.
    # An endpoint is down after down_after_failures failed runs in a row. The settings page
    # overrides these.
    baseline_runs: BaselineRuns = 5
    regression_threshold_pct: RegressionThresholdPct = 10.0
    regression_error_points: RegressionErrorPoints = 1.0
    down_after_failures: DownAfterFailures = 3

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
    sample_retention_days: int | None = 30  # per-request samples older than this are pruned
    host: str = "127.0.0.1"
    port: int = 8080
    log_level: str = "info"

    @field_validator("database_url")
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

    @field_validator("admin_user")
    @classmethod
    def _admin_user(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("SMARTBENCH_ADMIN_USER must not be empty")
        return value

    @model_validator(mode="after")
    def _refuse_missing_secrets_in_production(self) -> Settings:
        if self.env == "production":
            missing = [
                name
                for name, value in (
                    ("SMARTBENCH_SECRET_KEY", self.secret_key),
                    ("SMARTBENCH_ENCRYPTION_KEYS", self.encryption_keys),
                    ("SMARTBENCH_DATABASE_URL", self.database_url),
                )
                if not value
            ]
            if missing:
                raise ValueError(
                    "production settings need " + ", ".join(missing) + " (see README, 'Configuration')"
                )
            if self.secret_key is not None and len(self.secret_key.get_secret_value()) < 32:
                raise ValueError("SMARTBENCH_SECRET_KEY must be at least 32 characters")
        return self

    # -- derived values -------------------------------------------------------------------------

    @property
    def db_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{self.data_dir / 'smartbench.db'}"

    @property
    def https(self) -> bool:
        """Served over TLS as far as cookies and HSTS go (public URL https, or cookie_secure)."""
        if self.cookie_secure is not None:
            return self.cookie_secure
        return (self.public_url or "").lower().startswith("https://")

    @property
    def tokenizers(self) -> Path:
        return self.tokenizer_dir or self.data_dir / "tokenizers"

    def trusted_proxy_list(self) -> list[str]:
        return [part.strip() for part in self.trusted_proxies.split(",") if part.strip()]

    @property
    def is_sqlite(self) -> bool:
        return self.db_url.startswith("sqlite")
