"""The keys smartbench signs sessions and CSRF tokens with and encrypts endpoint API keys with.

From the settings when they give them (SMARTBENCH_SECRET_KEY, SMARTBENCH_ENCRYPTION_KEYS; always
in production). Otherwise (development) they are generated once and kept in
``<data_dir>/secrets.json`` (mode 0600), so the embedded default needs no set-up; that keyring is
the one `smartbench keys rotate` adds to. The file is read again only when it has changed (a
stat per use), so a key another process rotated in is seen by the next Settings that asks."""

from __future__ import annotations

import base64
import functools
import json
import os
import secrets
from pathlib import Path

from app.config import ConfigError, Settings

SECRETS_FILE = "secrets.json"


def session_secret(settings: Settings) -> bytes:
    if settings.secrets.secret_key is not None:
        return settings.secrets.secret_key.get_secret_value().encode()
    return _generated(settings.data_dir)["secret_key"].encode()


def encryption_keyring(settings: Settings) -> list[tuple[str, bytes]]:
    """The encryption keys, active key first, as (key id, 32-byte key)."""
    if settings.secrets.encryption_keys is not None:
        return parse_keyring(settings.secrets.encryption_keys.get_secret_value())
    return parse_keyring(_generated(settings.data_dir)["encryption_keys"])


def keys_from_file(settings: Settings) -> bool:
    return settings.secrets.encryption_keys is None


def rotate_file_key(settings: Settings) -> str:
    """Add a new active key to the data-directory keyring; returns its id."""
    if not keys_from_file(settings):
        raise ConfigError(
            "encryption keys come from SMARTBENCH_ENCRYPTION_KEYS: put a new key first in that "
            "variable, restart, then run `smartbench keys reencrypt`"
        )
    data = dict(_generated(settings.data_dir))
    entry = new_encryption_key_entry()
    data["encryption_keys"] = entry + "," + data["encryption_keys"]
    write_secrets_file(settings.data_dir / SECRETS_FILE, data)
    return entry.split(":", 1)[0]


def _generated(data_dir: Path) -> dict[str, str]:
    """The secrets kept in the data directory, generated and written the first time."""
    path = data_dir / SECRETS_FILE
    try:
        stamp: int | None = path.stat().st_mtime_ns
    except FileNotFoundError:
        stamp = None
    return _read(path, stamp)


@functools.lru_cache(maxsize=16)
def _read(path: Path, stamp: int | None) -> dict[str, str]:
    data: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    missing = {
        key: make()
        for key, make in (
            ("secret_key", lambda: secrets.token_urlsafe(48)),
            ("encryption_keys", new_encryption_key_entry),
        )
        if key not in data
    }
    if missing:
        data = {**data, **missing}
        write_secrets_file(path, data)
    return data


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
