"""Endpoint API keys at rest: AES-256-GCM with a key id in the ciphertext.

Format: ``sb1:<kid>:<urlsafe-base64(12-byte nonce || ciphertext+tag)>``. The key id names the key
that encrypted the value, so keys can be rotated: put a new key first in the keyring (it encrypts
from then on), run ``smartbench keys reencrypt``, then drop the old key. The GCM tag
authenticates each value, so a tampered or mis-keyed value fails loudly instead of decrypting
to garbage.
"""

from __future__ import annotations

import base64
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

VERSION = "sb1"


class DecryptionError(Exception):
    """The value cannot be decrypted with the configured keys (the message holds no secret)."""


class SecretBox:
    def __init__(self, keyring: list[tuple[str, bytes]]) -> None:
        if not keyring:
            raise ValueError("a keyring needs at least one key")
        self._active_kid = keyring[0][0]
        self._keys = {kid: AESGCM(key) for kid, key in keyring}

    @property
    def active_key_id(self) -> str:
        return self._active_kid

    def encrypt(self, plaintext: str) -> str:
        nonce = os.urandom(12)
        sealed = self._keys[self._active_kid].encrypt(nonce, plaintext.encode(), VERSION.encode())
        return f"{VERSION}:{self._active_kid}:{base64.urlsafe_b64encode(nonce + sealed).decode()}"

    def decrypt(self, token: str) -> str:
        version, kid = key_id_of(token)
        cipher = self._keys.get(kid)
        if cipher is None:
            raise DecryptionError(f"the key {kid!r} that encrypted this value is not configured")
        raw = base64.urlsafe_b64decode(token.split(":", 2)[2])
        try:
            return cipher.decrypt(raw[:12], raw[12:], version.encode()).decode()
        except InvalidTag as exc:
            raise DecryptionError(f"value encrypted with key {kid!r} failed authentication") from exc

    def needs_reencrypt(self, token: str) -> bool:
        return key_id_of(token)[1] != self._active_kid


def key_id_of(token: str) -> tuple[str, str]:
    parts = token.split(":", 2)
    if len(parts) != 3 or parts[0] != VERSION:
        raise DecryptionError("not a smartbench-encrypted value")
    return parts[0], parts[1]
