"""Site settings an admin changes on the settings page: the outbound policy and the limits on
what a profile may ask of the probe. Each starts from the environment's value
(SMARTBENCH_OUTBOUND_MODE, ...) and a value saved here overrides it, in every process."""

from __future__ import annotations

from dataclasses import dataclass

import anyio
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.errors import ValidationFailed
from app.models import AppSetting
from app.schemas import AlertSettings, SiteSettingsRead, SiteSettingsUpdate
from app.security.outbound import OutboundPolicy

KEYS = ("outbound_mode", "outbound_allow", "max_profile_concurrency", "max_requests_per_step",
        "webhook_outbound_mode", "webhook_outbound_allow", "min_schedule_interval_s")  # fmt: skip
ALERT_KEYS = ("baseline_runs", "regression_threshold_pct", "regression_error_points", "down_after_failures",
              "down_locations", "change_point_alerts")  # fmt: skip


@dataclass(frozen=True)
class Site:
    outbound: OutboundPolicy  # endpoint and metrics URLs
    max_profile_concurrency: int
    max_requests_per_step: int
    alerting: AlertSettings
    webhook_outbound: OutboundPolicy  # webhook deliveries
    min_schedule_interval_s: int

    def read(self) -> SiteSettingsRead:
        return SiteSettingsRead(
            outbound_mode=self.outbound.mode,
            outbound_allow=self.outbound.entries,
            max_profile_concurrency=self.max_profile_concurrency,
            max_requests_per_step=self.max_requests_per_step,
            webhook_outbound_mode=self.webhook_outbound.mode,
            webhook_outbound_allow=self.webhook_outbound.entries,
            min_schedule_interval_s=self.min_schedule_interval_s,
            **self.alerting.model_dump(),
        )


def _split(raw: str | list[str]) -> list[str]:
    items = raw if isinstance(raw, list) else raw.replace("\n", ",").split(",")
    return [item.strip() for item in items if item.strip()]


async def load(session: AsyncSession, settings: Settings) -> Site:
    values: dict[str, object] = {
        **settings.alerting.model_dump(),
        "outbound_mode": settings.outbound.mode,
        "outbound_allow": _split(settings.outbound.allow),
        "max_profile_concurrency": settings.limits.max_profile_concurrency,
        "max_requests_per_step": settings.limits.max_requests_per_step,
        "webhook_outbound_mode": settings.outbound.webhook_mode,
        "webhook_outbound_allow": _split(settings.outbound.webhook_allow),
        "min_schedule_interval_s": settings.limits.min_schedule_interval_s,
    }
    for row in (await session.scalars(select(AppSetting).where(AppSetting.key.in_(KEYS + ALERT_KEYS)))).all():
        values[row.key] = row.value
    return Site(
        _policy(values["outbound_mode"], values["outbound_allow"]),
        int(str(values["max_profile_concurrency"])),
        int(str(values["max_requests_per_step"])),
        AlertSettings.model_validate({key: values[key] for key in ALERT_KEYS}),
        _policy(values["webhook_outbound_mode"], values["webhook_outbound_allow"]),
        int(str(values["min_schedule_interval_s"])),
    )


def _policy(mode: object, allow: object) -> OutboundPolicy:
    try:
        return OutboundPolicy.parse(str(mode), _split(allow if isinstance(allow, list) else ""))
    except ValueError:  # a bad environment value: refuse everything rather than allow it
        return OutboundPolicy("allowlist")


async def save(session: AsyncSession, settings: Settings, data: SiteSettingsUpdate, *, by: str) -> Site:
    changes = data.model_dump(exclude_unset=True)
    current = await load(session, settings)
    for prefix, policy, what in (
        ("", current.outbound, "endpoint"),
        ("webhook_", current.webhook_outbound, "webhook"),
    ):
        if f"{prefix}outbound_allow" not in changes and f"{prefix}outbound_mode" not in changes:
            continue
        mode = changes.get(f"{prefix}outbound_mode", policy.mode)
        entries = changes.get(f"{prefix}outbound_allow", policy.entries)
        field = f"{prefix}outbound_allow"
        try:
            OutboundPolicy.parse(mode, entries)
        except ValueError as exc:
            raise ValidationFailed("the outbound policy is not valid", fields={field: str(exc)}) from exc
        if mode == "allowlist" and not entries:
            raise ValidationFailed(
                f"an empty allowlist refuses every {what}",
                fields={field: "list at least one network or host name"},
            )
    for key, value in changes.items():
        row = await session.get(AppSetting, key)
        if row is None:
            session.add(AppSetting(key=key, value=value, updated_by=by))
        else:
            row.value = value
            row.updated_by = by
    await session.flush()
    return await load(session, settings)


async def url_problem(policy: OutboundPolicy, url: str) -> str | None:
    """The policy's judgement of a URL being saved; DNS resolution runs in a worker thread."""
    return await anyio.to_thread.run_sync(policy.url_problem, url)


async def check_urls(
    session: AsyncSession, settings: Settings, urls: dict[str, str | None], *, webhook: bool = False
) -> None:
    """Refuse URLs the outbound policy refuses (the webhooks' own for a webhook), naming the field."""
    loaded = await load(session, settings)
    policy = loaded.webhook_outbound if webhook else loaded.outbound
    problems = {}
    for field, url in urls.items():
        if url and (problem := await url_problem(policy, url)) is not None:
            problems[field] = f"refused by the outbound policy: {problem}"
    if problems:
        raise ValidationFailed("the outbound policy refuses this address", fields=problems)
