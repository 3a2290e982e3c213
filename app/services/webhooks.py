"""Webhooks: where alerts go, and their delivery.

Two kinds: `json` (the alert as JSON, signed with HMAC-SHA256, app/security/signing.py) and
`slack` (a Slack-compatible incoming webhook: `{"text": ...}`; Mattermost and others take the
same). The URL and the secret are sealed at rest; the URL shows only as a hint.

Delivery is apart from runs: alerts queue rows in `deliveries`, and the executor's loop sends
the due ones in a task of its own (`deliver_due`), so a slow or dead receiver never holds a run
or the claiming of the next one. A delivery is claimed with a conditional UPDATE (several
workers never send one twice), sent with a 10 s limit through the outbound policy, and retried
with back-off (30 s doubling, at most an hour apart) until delivered or 8 attempts failed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast
from urllib.parse import unquote, urlsplit

import aiohttp
import orjson
import yarl
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.db import unit_of_work
from app.errors import Conflict, NotFound, ValidationFailed
from app.models import Alert, Delivery, Endpoint, Webhook
from app.schemas import (
    AlertKindName,
    DeliveryRead,
    WebhookCreate,
    WebhookCreated,
    WebhookEndpoint,
    WebhookPayload,
    WebhookRead,
    WebhookUpdate,
)
from app.security import signing
from app.security.crypto import DecryptionError, SecretBox
from app.security.outbound import OutboundPolicy
from app.security.redact import Redactor
from app.security.resolver import PolicyResolver
from app.services import site

TIMEOUT_S = 10.0
LEASE = timedelta(seconds=60)  # a claimed delivery is not claimed again meanwhile
FIRST_RETRY_S = 30.0
MAX_RETRY_S = 3600.0
MAX_ATTEMPTS = 8
USER_AGENT = "smartbench-webhooks/1"
UNSEALED = (
    "the webhook's URL or secret does not decrypt with the configured keys (was a key dropped "
    "before `smartbench keys reencrypt`?); save the webhook's URL again"
)

log = logging.getLogger("smartbench.webhooks")


def backoff(attempts: int) -> timedelta:
    """The wait after the n-th failed attempt: 30 s, 60 s, 120 s, ... at most an hour."""
    return timedelta(seconds=min(FIRST_RETRY_S * 2 ** (attempts - 1), MAX_RETRY_S))


def url_hint(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or ''}/…{url[-4:]}"


def to_read(hook: Webhook) -> WebhookRead:
    return WebhookRead(
        id=hook.id,
        name=hook.name,
        kind=hook.kind,
        url_hint=hook.url_hint,
        events=list(hook.events),
        enabled=hook.enabled,
        signed=hook.secret_encrypted is not None,
        created_at=hook.created_at,
        created_by=hook.created_by,
    )


async def list_all(session: AsyncSession) -> list[Webhook]:
    return list((await session.scalars(select(Webhook).order_by(Webhook.name))).all())


async def get(session: AsyncSession, webhook_id: int) -> Webhook:
    hook = await session.get(Webhook, webhook_id)
    if hook is None:
        raise NotFound(f"webhook {webhook_id} does not exist")
    return hook


def _taken(name: str) -> Conflict:
    return Conflict(f"a webhook named {name!r} exists", fields={"name": "already taken"})


async def _name_free(session: AsyncSession, name: str) -> None:
    """Checked before writing, so the usual case answers without a failed INSERT."""
    if await session.scalar(select(Webhook.id).where(Webhook.name == name)) is not None:
        raise _taken(name)


async def _saved(session: AsyncSession, name: str, write: Callable[[], None]) -> None:
    """Make the change inside a savepoint: a writer that took the name meanwhile undoes this
    change only, and the request's transaction goes on (its page still renders)."""
    try:
        async with session.begin_nested():
            write()
    except IntegrityError as exc:
        raise _taken(name) from exc


async def _check_url(session: AsyncSession, settings: Settings, url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValidationFailed("the webhook URL is not valid", fields={"url": "an http:// or https:// URL"})
    await site.check_urls(session, settings, {"url": url}, webhook=True)


async def create(
    session: AsyncSession, settings: Settings, box: SecretBox, data: WebhookCreate, *, by: str, now: datetime
) -> WebhookCreated:
    await _check_url(session, settings, data.url)
    await _name_free(session, data.name)
    secret = (data.secret or signing.new_secret()) if data.kind == "json" else None
    hook = Webhook(
        name=data.name, kind=data.kind, url_encrypted=box.encrypt(data.url), url_hint=url_hint(data.url),
        secret_encrypted=box.encrypt(secret) if secret else None, events=list(dict.fromkeys(data.events)),
        enabled=data.enabled, created_at=now, created_by=by,
    )  # fmt: skip
    await _saved(session, data.name, lambda: session.add(hook))
    return WebhookCreated(**to_read(hook).model_dump(), secret=secret)


async def update_one(
    session: AsyncSession, settings: Settings, box: SecretBox, webhook_id: int, data: WebhookUpdate
) -> Webhook:
    hook = await get(session, webhook_id)
    changes = data.model_dump(exclude_unset=True)
    if "name" in changes and changes["name"] != hook.name:
        await _name_free(session, changes["name"])
    if "url" in changes:
        await _check_url(session, settings, changes["url"])

    def write() -> None:
        if "name" in changes:
            hook.name = changes["name"]
        if "enabled" in changes:
            hook.enabled = changes["enabled"]
        if "url" in changes:
            hook.url_encrypted, hook.url_hint = box.encrypt(changes["url"]), url_hint(changes["url"])
        if "events" in changes:
            hook.events = list(dict.fromkeys(changes["events"]))

    await _saved(session, changes.get("name", hook.name), write)
    return hook


async def delete(session: AsyncSession, webhook_id: int) -> None:
    await session.delete(await get(session, webhook_id))
    await session.flush()


async def deliveries(
    session: AsyncSession, *, webhook_id: int | None = None, limit: int = 50, before: int | None = None
) -> list[DeliveryRead]:
    query = (
        select(Delivery, Webhook.name, Alert.kind)
        .join(Webhook, Webhook.id == Delivery.webhook_id)
        .join(Alert, Alert.id == Delivery.alert_id)
        .order_by(Delivery.id.desc())
        .limit(limit)
    )
    if webhook_id is not None:
        query = query.where(Delivery.webhook_id == webhook_id)
    if before is not None:
        query = query.where(Delivery.id < before)
    return [
        DeliveryRead(
            id=d.id,
            alert_id=d.alert_id,
            webhook_id=d.webhook_id,
            webhook=name,
            event=kind,
            status=d.status,
            attempts=d.attempts,
            next_attempt_at=d.next_attempt_at,
            last_attempt_at=d.last_attempt_at,
            response_status=d.response_status,
            error=d.error,
            delivered_at=d.delivered_at,
            created_at=d.created_at,
        )
        for d, name, kind in (await session.execute(query)).all()
    ]


# -- sending ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    delivery_id: int
    attempts: int
    kind: str
    url: str
    hint: str
    secret: str | None
    event: str
    body: bytes


def payload(alert: Alert, endpoint: str, delivery_id: int, public_url: str | None) -> WebhookPayload:
    run_url = f"{public_url.rstrip('/')}/runs/{alert.run_id}" if public_url and alert.run_id else None
    return WebhookPayload(
        delivery=delivery_id,
        event=cast(AlertKindName, alert.kind),
        alert_id=alert.id,
        at=alert.created_at.isoformat(),
        endpoint=WebhookEndpoint(id=alert.endpoint_id, name=endpoint)
        if alert.endpoint_id is not None
        else None,
        profile=alert.profile_name,
        metric=alert.metric,
        baseline=alert.baseline,
        value=alert.value,
        change_pct=alert.change_pct,
        degraded=alert.degraded,
        detail=alert.detail,
        message=alert.message,
        run_id=alert.run_id,
        run_url=run_url,
    )


def slack_escape(text: str) -> str:
    """Slack's own escaping: &, < and > are its markup (a message with "<!channel>" or a link of
    its own would otherwise notify a channel or show a link smartbench never wrote)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def scrub(text: str, url: str) -> str:
    """Error text without the webhook's URL in any form a client library may print it (as given,
    normalised, percent-encoded or decoded, its path and query alone, its password): a Slack or
    Teams URL is a credential, and its token lives in the path."""
    parsed = yarl.URL(url)
    forms = {url, unquote(url), str(parsed), parsed.human_repr(), parsed.raw_path_qs, parsed.path_qs,
             parsed.raw_path, parsed.path, parsed.raw_query_string, parsed.query_string}  # fmt: skip
    forms |= {form.replace("/", "\\/") for form in list(forms)}  # JSON that escapes its slashes
    forms |= {segment for segment in parsed.raw_path.split("/") if len(segment) >= 8}  # tokens alone
    if parsed.password:
        forms.add(parsed.password)
    return Redactor(*forms).text(text)


def slack_body(data: WebhookPayload) -> dict[str, str]:
    mark = {
        "regression": ":warning:",
        "recovery": ":white_check_mark:",
        "down": ":red_circle:",
        "up": ":large_green_circle:",
        "agent_offline": ":satellite_antenna:",
        "agent_online": ":satellite_antenna:",
    }
    text = f"{mark.get(data.event, '')} smartbench {data.event}: {slack_escape(data.message)}"
    if data.degraded:
        text += " (measured with a degraded client)"
    if data.run_url:
        text += f" <{slack_escape(data.run_url)}|run {data.run_id}>"
    return {"text": text}


async def _claim(
    session: AsyncSession, box: SecretBox, settings: Settings, now: datetime, limit: int
) -> list[Job]:
    due = (
        await session.scalars(
            select(Delivery.id)
            .where(Delivery.status == "pending", Delivery.next_attempt_at <= now)
            .order_by(Delivery.next_attempt_at, Delivery.id)
            .limit(limit)
        )
    ).all()
    jobs = []
    for delivery_id in due:
        taken = await session.execute(
            update(Delivery)
            .where(Delivery.id == delivery_id, Delivery.status == "pending", Delivery.next_attempt_at <= now)
            .values(next_attempt_at=now + LEASE)
        )
        if getattr(taken, "rowcount", 0) != 1:
            continue  # another worker took it
        delivery = await session.get(Delivery, delivery_id)
        alert = await session.get(Alert, delivery.alert_id) if delivery else None
        hook = await session.get(Webhook, delivery.webhook_id) if delivery else None
        if delivery is None or alert is None or hook is None:
            continue
        try:
            url = box.decrypt(hook.url_encrypted)
            secret = box.decrypt(hook.secret_encrypted) if hook.secret_encrypted else None
        except DecryptionError as exc:
            # It will not decrypt on a later try either: fail it now, visibly, and go on to the
            # next delivery instead of rolling back the claim of all of them.
            log.warning("webhook %s: delivery %s failed: %s", hook.name, delivery.id, exc)
            delivery.status, delivery.next_attempt_at = "failed", None
            delivery.attempts, delivery.last_attempt_at = delivery.attempts + 1, now
            delivery.error = f"{UNSEALED}: {exc}"
            continue
        endpoint = await session.scalar(select(Endpoint.name).where(Endpoint.id == alert.endpoint_id)) or "?"
        data = payload(alert, endpoint, delivery.id, settings.access.public_url)
        body = (
            orjson.dumps(slack_body(data))
            if hook.kind == "slack"
            else orjson.dumps(data.model_dump(mode="json"))
        )
        jobs.append(
            Job(delivery.id, delivery.attempts, hook.kind, url, hook.url_hint, secret, alert.kind, body)
        )
    return jobs


async def _send(client: aiohttp.ClientSession, job: Job) -> tuple[int | None, str | None]:
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT,
               "X-Smartbench-Event": job.event, "X-Smartbench-Delivery": str(job.delivery_id)}  # fmt: skip
    if job.secret:
        stamp = int(time.time())
        headers[signing.TIMESTAMP_HEADER] = str(stamp)
        headers[signing.SIGNATURE_HEADER] = signing.sign(job.secret, stamp, job.body)
    try:
        async with client.post(job.url, data=job.body, headers=headers, allow_redirects=False) as response:
            await response.content.read(4096)
            if 200 <= response.status < 300:
                return response.status, None
            return response.status, f"answered {response.status}"
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        detail = scrub(str(exc), job.url)[:200]  # a Slack URL is a credential
        return None, f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__


async def deliver_due(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    box: SecretBox,
    settings: Settings,
    clock: Callable[[], datetime],
    limit: int = 20,
) -> int:
    """Send the deliveries that are due (at most `limit`); returns how many were attempted."""
    now = clock()
    async with unit_of_work(sessionmaker) as session:
        jobs = await _claim(session, box, settings, now, limit)
        policy = (await site.load(session, settings)).webhook_outbound
    if not jobs:
        return 0
    results = await _post_all(jobs, policy)
    done = clock()
    async with unit_of_work(sessionmaker) as session:
        for job, (status, error) in zip(jobs, results, strict=True):
            delivery = await session.get(Delivery, job.delivery_id)
            if delivery is None:
                continue
            delivery.attempts = job.attempts + 1
            delivery.last_attempt_at = done
            delivery.response_status = status
            delivery.error = error
            if error is None:
                delivery.status, delivery.delivered_at, delivery.next_attempt_at = "delivered", done, None
            elif delivery.attempts >= MAX_ATTEMPTS:
                delivery.status, delivery.next_attempt_at = "failed", None
            else:
                delivery.next_attempt_at = done + backoff(delivery.attempts)
    return len(jobs)


async def _post_all(jobs: list[Job], policy: OutboundPolicy) -> list[tuple[int | None, str | None]]:
    connector = aiohttp.TCPConnector(resolver=PolicyResolver(policy), limit=8)
    timeout = aiohttp.ClientTimeout(total=TIMEOUT_S)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as client:

        async def one(job: Job) -> tuple[int | None, str | None]:
            host = urlsplit(job.url).hostname or ""
            if (problem := policy.host_problem(host)) is not None:  # a literal address skips the resolver
                return None, f"refused by the outbound policy: {problem}"
            return await _send(client, job)

        return list(await asyncio.gather(*(one(job) for job in jobs)))
