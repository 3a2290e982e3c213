from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from app.config import ConfigError, Settings
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
