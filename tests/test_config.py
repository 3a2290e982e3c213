from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from app.config import ConfigError, Settings, flat_names
from app.security import keyring
from app.security.keyring import parse_keyring


def test_sqlite_is_the_default(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    assert settings.db_url == f"sqlite+aiosqlite:///{tmp_path / 'smartbench.db'}"
    assert settings.is_sqlite


def test_postgres_urls_are_driven_by_psycopg(tmp_path: Path) -> None:
    for raw in ("postgres://u@h/db", "postgresql://u@h/db"):
        assert Settings(data_dir=tmp_path, database_url=raw).db_url == "postgresql+psycopg://u@h/db"


def test_production_refuses_missing_secrets(tmp_path: Path) -> None:
    with pytest.raises(ValidationError) as excinfo:
        Settings(env="production", data_dir=tmp_path)
    message = str(excinfo.value)
    assert "SMARTBENCH_SECRET_KEY" in message and "SMARTBENCH_ENCRYPTION_KEYS" in message


def test_production_refuses_a_short_secret(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="at least 32"):
        Settings(
            env="production",
            data_dir=tmp_path,
            secret_key="short",
            encryption_keys="k1:" + "A" * 43 + "=",
            database_url="postgresql://x@y/z",
        )


def test_development_generates_secrets_once_with_private_permissions(tmp_path: Path) -> None:
    first = Settings(data_dir=tmp_path)
    key = keyring.session_secret(first)
    ring = keyring.encryption_keyring(first)
    assert (tmp_path / "secrets.json").stat().st_mode & 0o777 == 0o600
    keyring._read.cache_clear()  # as another process would: read from the file
    again = Settings(data_dir=tmp_path)
    assert keyring.session_secret(again) == key and keyring.encryption_keyring(again) == ring


def test_keyring_parsing_rejects_bad_keys() -> None:
    with pytest.raises(ConfigError):
        parse_keyring("nokey")
    with pytest.raises(ConfigError, match="32 bytes"):
        parse_keyring("k1:AAAA")
    with pytest.raises(ConfigError, match="unique"):
        key = "A" * 43 + "="
        parse_keyring(f"k1:{key},k1:{key}")


def test_settings_are_grouped_and_keep_their_flat_environment_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue #19: the groups change how the code reads settings, never how people set them:
    the environment over `.env`, keyword arguments and `but()` all take the flat names."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text(
        "SMARTBENCH_OUTBOUND_MODE=allowlist\nSMARTBENCH_OUTBOUND_ALLOW=10.0.0.0/8\nSMARTBENCH_PORT=9000\n"
        "SMARTBENCH_MAX_PARALLEL_RUNS=2\n"
    )
    monkeypatch.setenv("SMARTBENCH_PORT", "9100")  # the environment wins over .env
    monkeypatch.setenv("smartbench_public_read", "true")  # names are not case-sensitive
    monkeypatch.setenv("SMARTBENCH_WEBHOOK_OUTBOUND_MODE", "default")
    settings = Settings(data_dir=tmp_path, database_url="postgres://u@h/db")
    assert settings.outbound.mode == "allowlist" and settings.outbound.allow == "10.0.0.0/8"
    assert settings.outbound.webhook_mode == "default"
    assert settings.server.port == 9100 and settings.access.public_read is True
    assert settings.runs.max_parallel_runs == 2
    assert settings.database.url == "postgresql+psycopg://u@h/db"
    changed = settings.but(max_parallel_runs=5, database_url=None)
    assert changed.runs.max_parallel_runs == 5 and changed.is_sqlite
    assert changed.outbound == settings.outbound and settings.runs.max_parallel_runs == 2
    with pytest.raises(ValidationError, match="max_parallel_runs"):
        settings.but(max_parallel_runs=0)  # validated like the environment's values
    # Every setting has one flat name, and the README documents each of them.
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    missing = [name for name in flat_names() if f"SMARTBENCH_{name.upper()}" not in readme]
    assert not missing, missing
