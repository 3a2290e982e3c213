"""Settings: one object, read from ``SMARTBENCH_*`` environment variables and ``.env``.

Secrets are never given defaults. In development (the default), a missing secret key or
encryption key is generated once and kept in ``<data_dir>/secrets.json`` (mode 0600), so the
embedded default needs no set-up. In production both must be given explicitly, or start-up
fails: several workers on several machines must share them.
"""

from __future__ import annotations

import base64
import functools
import json
import os
import secrets
from functools import cached_property
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
    def probe_slots(self) -> int:
        """How many probe processes this host runs at once."""
        return self.max_parallel_runs or max(1, available_cores() - 1)

    def core_plan(self) -> tuple[list[int], list[int]]:
        """(cores for this process, cores for probe processes). Without pinning, or with no core
        to spare, both are empty: the kernel places everything."""
        cores = list(starting_cores())
        slots = self.probe_slots
        if not self.pin_probes or len(cores) <= slots:
            return [], []
        return cores[:-slots], cores[-slots:]

    @property
    def is_sqlite(self) -> bool:
        return self.db_url.startswith("sqlite")

    @cached_property
    def _generated(self) -> dict[str, str]:
        """Secrets kept in the data directory when the environment gives none (development)."""
        path = self.data_dir / SECRETS_FILE
        if path.exists():
            data: dict[str, str] = json.loads(path.read_text())
        else:
            data = {}
        changed = False
        if "secret_key" not in data:
            data["secret_key"] = secrets.token_urlsafe(48)
            changed = True
        if "encryption_keys" not in data:
            data["encryption_keys"] = new_encryption_key_entry()
            changed = True
        if changed:
            write_secrets_file(path, data)
        return data

    def session_secret(self) -> bytes:
        if self.secret_key is not None:
            return self.secret_key.get_secret_value().encode()
        return self._generated["secret_key"].encode()

    def encryption_keyring(self) -> list[tuple[str, bytes]]:
        """The encryption keys, active key first, as (key id, 32-byte key)."""
        raw = (
            self.encryption_keys.get_secret_value()
            if self.encryption_keys is not None
            else self._generated["encryption_keys"]
        )
        return parse_keyring(raw)

    @property
    def keys_from_file(self) -> bool:
        return self.encryption_keys is None

    def rotate_file_key(self) -> str:
        """Add a new active key to the data-directory keyring; returns its id."""
        if not self.keys_from_file:
            raise ConfigError(
                "encryption keys come from SMARTBENCH_ENCRYPTION_KEYS: put a new key first in that "
                "variable, restart, then run `smartbench keys reencrypt`"
            )
        data = dict(self._generated)
        entry = new_encryption_key_entry()
        data["encryption_keys"] = entry + "," + data["encryption_keys"]
        write_secrets_file(self.data_dir / SECRETS_FILE, data)
        self.__dict__.pop("_generated", None)
        return entry.split(":", 1)[0]


def available_cores() -> int:
    """How many cores this process could run on when it started."""
    return len(starting_cores()) or os.cpu_count() or 1


@functools.cache
def starting_cores() -> tuple[int, ...]:
    """The cores this process could run on the first time anyone asked (its CPU affinity, as
    `taskset` or a container set it), before it kept itself off the probes' cores."""
    if not hasattr(os, "sched_getaffinity"):  # not on Linux
        return ()
    return tuple(sorted(os.sched_getaffinity(0)))


def new_encryption_key_entry() -> str:
    kid = secrets.token_hex(4)
    key = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
    return f"{kid}:{key}"


def parse_keyring(raw: str) -> list[tuple[str, bytes]]:
    ring: list[tuple[str, bytes]] = []
    for part in raw.split(","):
        part = part.strip()
        if not part:
            continue
        kid, sep, encoded = part.partition(":")
        if not sep or not kid or not kid.isalnum():
            raise ConfigError("encryption keys look like 'kid:base64key,kid2:base64key'")
        try:
            key = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        except ValueError as exc:
            raise ConfigError(f"encryption key {kid!r} is not valid base64") from exc
        if len(key) != 32:
            raise ConfigError(f"encryption key {kid!r} must decode to 32 bytes, not {len(key)}")
        ring.append((kid, key))
    if not ring:
        raise ConfigError("no encryption key configured")
    if len({kid for kid, _ in ring}) != len(ring):
        raise ConfigError("encryption key ids must be unique")
    return ring


def write_secrets_file(path: Path, data: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle, indent=2)
    os.replace(tmp, path)
