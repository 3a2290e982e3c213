"""Re-sealing what is sealed at rest when the encryption key rotates (`smartbench keys rotate`,
`smartbench keys reencrypt`)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from app.models import Endpoint, Webhook
from app.security.crypto import SecretBox

# Every column sealed with the SecretBox: key rotation re-seals them all, or a value left on a
# retired key stops what needs it (a webhook whose URL no longer decrypts delivers nothing).
SEALED: tuple[InstrumentedAttribute[Any], ...] = (
    Endpoint.api_key_encrypted,
    Webhook.url_encrypted,
    Webhook.secret_encrypted,
)


async def reencrypt_keys(session: AsyncSession, *, box: SecretBox) -> dict[str, int]:
    """Re-seal every sealed value with the active key; how many changed, per column. A value
    that does not decrypt stops it all (DecryptionError) before anything is written."""
    changed: dict[str, int] = {}
    for column in SEALED:
        table = column.class_
        rows = (await session.scalars(select(table).where(column.is_not(None)))).all()
        name = f"{table.__tablename__}.{column.key}"
        changed[name] = 0
        for row in rows:
            sealed = getattr(row, column.key)
            if box.needs_reencrypt(sealed):
                setattr(row, column.key, box.encrypt(box.decrypt(sealed)))
                changed[name] += 1
    await session.flush()
    return changed
