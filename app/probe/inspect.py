"""What serves an endpoint, and how much of the OpenAI API it honours: `inspect()` runs the
engine detection (app/probe/detect.py) and the conformance checklist (app/probe/checklist.py)
with a few small requests through one client (app/probe/ask.py), never load, bounded in time,
and returns what it found as an Inspection."""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict, dataclass, field

from app.domain import CHECKLIST_VERSION
from app.probe.ask import CheckResult, Client, Evidence
from app.probe.checklist import run_checks
from app.probe.client import make_session, outbound_problem
from app.probe.detect import detect
from app.probe.types import Limits, Target, Timeouts

INSPECTION_TIMEOUT_S = 90.0


@dataclass
class Inspection:
    engine: str
    engine_version: str | None
    evidence: list[Evidence]
    checks: list[CheckResult] = field(default_factory=list)
    checklist_version: str = CHECKLIST_VERSION
    metrics_exposed: bool = False
    metrics_url: str | None = None
    duration_s: float = 0.0
    error: str | None = None
    checks_at: str | None = None  # set when the checklist's answers were carried over from then

    def as_dict(self, include: set[str] | None = None) -> dict[str, object]:
        found = asdict(self)
        return found if include is None else {key: found[key] for key in include}

    @property
    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for check in self.checks:
            out[check.status] = out.get(check.status, 0) + 1
        return out


async def inspect(
    target: Target,
    *,
    limits: Limits = Limits(),
    metrics_url: str | None = None,
    checks: bool = True,
    unless_still: tuple[str, str | None] | None = None,
    timeout_s: float = INSPECTION_TIMEOUT_S,
) -> Inspection:
    """Detect the engine and run the checklist (`checks`; with `unless_still`, only when the
    engine and version detected differ from it); never raises for what the server does."""
    started = time.monotonic()
    refused = outbound_problem(target.url, limits) or (
        outbound_problem(metrics_url, limits) if metrics_url else None
    )
    if refused is not None:
        return Inspection("unknown", None, [], error=refused)
    async with make_session(4, Timeouts(connect=5.0), limits) as session:
        client = Client(session, target)
        try:
            async with asyncio.timeout(timeout_s):
                engine, version, evidence, exposed, metrics_from = await detect(client, metrics_url)
                found = Inspection(
                    engine, version, evidence, metrics_exposed=exposed, metrics_url=metrics_from
                )
                if checks and (unless_still is None or (engine, version) != unless_still):
                    found.checks = await run_checks(client)
        except TimeoutError:
            return Inspection("unknown", None, [], error=f"the inspection passed its {timeout_s:g} s bound")
    found.duration_s = round(time.monotonic() - started, 2)
    return found
