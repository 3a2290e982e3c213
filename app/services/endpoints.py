"""The endpoint registry: create, read, list, update, delete; API keys sealed at rest."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

from sqlalchemy import Text, cast, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from app.config import Settings
from app.errors import Conflict, NotFound, ValidationFailed
from app.models import Endpoint
from app.schemas import EndpointCreate, EndpointRead, EndpointUpdate
from app.security.crypto import SecretBox
from app.services import site
from app.services.tokenizers import tokenizer_problem
from app.snapshot import CostInputs


def to_read(endpoint: Endpoint) -> EndpointRead:
    return EndpointRead.model_validate(
        {
            **{col: getattr(endpoint, col) for col in EndpointRead.model_fields if hasattr(endpoint, col)},
            "api_key_set": endpoint.api_key_encrypted is not None,
            "tags": list(endpoint.tags or []),
            "pricing": CostInputs.of(endpoint).pricing,
        }
    )


async def get(session: AsyncSession, endpoint_id: int) -> Endpoint:
    endpoint = await session.get(Endpoint, endpoint_id)
    if endpoint is None:
        raise NotFound(f"endpoint {endpoint_id} does not exist")
    return endpoint


async def get_by_name(session: AsyncSession, name: str) -> Endpoint:
    endpoint = await session.scalar(select(Endpoint).where(Endpoint.name == name))
    if endpoint is None:
        raise NotFound(f"no endpoint is named {name!r}")
    return endpoint


async def list_page(
    session: AsyncSession, *, limit: int = 50, offset: int = 0, tag: str | None = None, q: str | None = None
) -> tuple[list[Endpoint], int]:
    """A page of endpoints by name, and how many match: both in SQL."""
    conditions: list[ColumnElement[bool]] = []
    if q:
        like = f"%{_escape_like(q.lower())}%"
        conditions.append(
            func.lower(Endpoint.name).like(like, escape="\\")
            | func.lower(Endpoint.model).like(like, escape="\\")
        )
    if tag:
        # Tags are a JSON list stored as text on both backends: match the quoted element.
        conditions.append(cast(Endpoint.tags, Text).like(f"%{_escape_like(json.dumps(tag))}%", escape="\\"))
    total = await session.scalar(select(func.count()).select_from(Endpoint).where(*conditions)) or 0
    rows = await session.scalars(
        select(Endpoint).where(*conditions).order_by(Endpoint.name, Endpoint.id).limit(limit).offset(offset)
    )
    return list(rows.all()), int(total)


async def by_ids(session: AsyncSession, ids: list[int], *, limit: int) -> list[Endpoint]:
    """These endpoints (those that exist), by name, at most `limit`."""
    rows = await session.scalars(
        select(Endpoint).where(Endpoint.id.in_(ids)).order_by(Endpoint.name, Endpoint.id).limit(limit)
    )
    return list(rows.all())


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


async def _ensure_unique_name(session: AsyncSession, name: str, exclude_id: int | None = None) -> None:
    query = select(Endpoint.id).where(func.lower(Endpoint.name) == name.lower())
    if exclude_id is not None:
        query = query.where(Endpoint.id != exclude_id)
    if await session.scalar(query) is not None:
        raise ValidationFailed(
            "an endpoint with this name already exists", fields={"name": f"{name!r} is already registered"}
        )


def _set_key(endpoint: Endpoint, box: SecretBox, key: str | None) -> None:
    if key:
        endpoint.api_key_encrypted = box.encrypt(key)
        endpoint.api_key_last4 = key[-4:] if len(key) >= 12 else None
    else:
        endpoint.api_key_encrypted = None
        endpoint.api_key_last4 = None


async def create(
    session: AsyncSession, *, data: EndpointCreate, box: SecretBox, by: int | None, settings: Settings
) -> Endpoint:
    values = data.model_dump(exclude={"api_key"})
    problems = CostInputs.of(values).problems()
    if problems:
        raise ValidationFailed("the cost inputs are incomplete", fields=problems)
    await _ensure_unique_name(session, data.name)
    await site.check_urls(session, settings, {"base_url": data.base_url, "metrics_url": data.metrics_url})
    if data.tokenizer is not None:
        tokenizer_problem(settings, data.tokenizer)
    endpoint = Endpoint(**{k: v for k, v in values.items() if v is not None}, created_by_id=by)
    endpoint.tags = values.get("tags") or []
    _set_key(endpoint, box, data.api_key.get_secret_value() if data.api_key else None)
    session.add(endpoint)
    try:
        await session.flush()
    except IntegrityError as exc:  # a concurrent insert of the same name
        raise Conflict(f"an endpoint named {data.name!r} already exists") from exc
    return endpoint


async def update(
    session: AsyncSession, *, endpoint_id: int, data: EndpointUpdate, box: SecretBox, settings: Settings
) -> Endpoint:
    endpoint = await get(session, endpoint_id)
    changes = data.model_dump(exclude_unset=True, exclude={"api_key"})
    for required in ("name", "base_url", "model", "api_flavor"):
        if required in changes and changes[required] is None:
            raise ValidationFailed("required field cleared", fields={required: "this field is required"})
    merged = {col: getattr(endpoint, col) for col in EndpointCreate.model_fields if hasattr(endpoint, col)}
    merged.update(changes)
    problems = CostInputs.of(merged).problems()
    if problems:
        raise ValidationFailed("the cost inputs are incomplete", fields=problems)
    if "name" in changes:
        await _ensure_unique_name(session, changes["name"], exclude_id=endpoint.id)
    await site.check_urls(
        session, settings, {f: changes[f] for f in ("base_url", "metrics_url") if changes.get(f)}
    )
    if changes.get("tokenizer"):
        tokenizer_problem(settings, changes["tokenizer"])

    old_origin, old_path = _origin(endpoint.base_url), urlsplit(endpoint.base_url).path
    new_url = changes.get("base_url", endpoint.base_url)
    keep_key = endpoint.api_key_encrypted is not None and "api_key" not in data.model_fields_set
    if keep_key and _origin(new_url) == old_origin and urlsplit(new_url).path != old_path:
        # Same server, another path (another service behind one proxy): ask, never assume.
        raise ValidationFailed(
            "the URL path changed: give the API key again",
            fields={"api_key": "the URL path changed: give the API key again, or remove it"},
        )
    for field, value in changes.items():
        if field == "tags":
            value = value or []
        setattr(endpoint, field, value)

    if "api_key" in data.model_fields_set:
        _set_key(endpoint, box, data.api_key.get_secret_value() if data.api_key else None)
    elif keep_key and _origin(endpoint.base_url) != old_origin:
        # A key is never sent to a scheme, host or port it was not given for.
        _set_key(endpoint, box, None)
    try:
        await session.flush()
    except IntegrityError as exc:
        raise Conflict("an endpoint with this name already exists") from exc
    return endpoint


async def delete(session: AsyncSession, *, endpoint_id: int) -> None:
    endpoint = await get(session, endpoint_id)
    await session.delete(endpoint)
    await session.flush()


def decrypt_key(endpoint: Endpoint, box: SecretBox) -> str | None:
    """For the probe only: the plaintext key, never to be rendered or logged."""
    if endpoint.api_key_encrypted is None:
        return None
    return box.decrypt(endpoint.api_key_encrypted)


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    return (parts.scheme, (parts.hostname or "").lower(), port)
