"""The run executor (in `serve`, `demo` and each `worker`, built alike from the settings): a loop
of small ticks. Each cycle fires due schedule slots (queueing runs), claims at most one queued
run when a probe slot is free and starts it (its load runs in a probe process of its own, see
app/probe/process.py; this loop only orchestrates), reaps runs whose worker died, and now and
then prunes old samples. A host runs at most `probe_slots` probe processes at once (cores less
one by default); one endpoint is never probed twice at once. Probes never run inside a request."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app import cores
from app.config import Settings
from app.db import unit_of_work
from app.models import LOCAL, RequestSample, Run, RunStatus
from app.security.crypto import SecretBox
from app.services import agents, alerts, execution, runs, schedules, webhooks

log = logging.getLogger("smartbench.executor")

REAP_EVERY_S = 5.0
DELIVER_EVERY_S = 2.0
PRUNE_EVERY_S = 600.0
PRUNE_BATCH = 5000


def keep_off_probe_cores(own_cores: list[int]) -> None:
    """This process, and what it starts from now on, keeps to the cores probes do not use
    (`serve`, `worker` and `demo` call it at start; an app embedded elsewhere is left alone)."""
    if own_cores and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, set(own_cores))


class Executor:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        box: SecretBox,
        clock: Callable[[], datetime],
        *,
        max_parallel: int = 1,
        idle_s: float = 0.5,
        stale_after_s: float = 30.0,
        retention_days: int | None = 30,
        scheduler: bool = True,
        run_deadline_s: float | None = None,
        probe_cores: list[int] | None = None,
        settings: Settings | None = None,
        hears_agents: bool = True,
    ) -> None:
        # The tokenizer directory and the outbound policy's defaults (plain defaults when built bare).
        self.settings = settings or Settings.model_construct()
        self.run_deadline_s = run_deadline_s
        self.probe_cores = list(probe_cores or [])  # one per probe slot, when pinning
        self.cores_in_use: dict[asyncio.Task[str], int] = {}
        self.stale_after = timedelta(seconds=stale_after_s)
        self.retention_days = retention_days
        self.scheduler = scheduler
        self.sessionmaker = sessionmaker
        self.box = box
        self.clock = clock
        # Agents are judged silent only by the process they talk to (serve, not a worker), and
        # only over time it was up to hear them: a dashboard restart is not every agent's silence.
        self.hears_agents = hears_agents
        self.up_since = clock()
        self.max_parallel = max_parallel
        self.idle_s = idle_s
        self.active: set[asyncio.Task[str]] = set()
        # Runs this executor claimed whose execution has not recorded an end yet: a stop that
        # lands between a claim and its execution's first step must not leave them `running`.
        self.claimed: set[int] = set()
        self._loop: asyncio.Task[None] | None = None
        self._delivering: asyncio.Task[int] | None = None

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        sessionmaker: async_sessionmaker[AsyncSession],
        box: SecretBox,
        clock: Callable[[], datetime],
        *,
        max_parallel: int | None = None,
        hears_agents: bool = True,
    ) -> Executor:
        """The one way `serve`, `demo` and `worker` build their executor (a worker's hears no agents)."""
        settings = settings.but(max_parallel_runs=max_parallel or settings.runs.max_parallel_runs)
        _, probes = cores.core_plan(settings)
        return cls(
            sessionmaker,
            box,
            clock,
            max_parallel=max_parallel or cores.probe_slots(settings),
            stale_after_s=settings.runs.heartbeat_timeout_s,
            retention_days=settings.runs.sample_retention_days,
            scheduler=settings.runs.scheduler,
            run_deadline_s=settings.runs.run_deadline_s,
            probe_cores=probes,
            settings=settings,
            hears_agents=hears_agents,
        )

    async def reap(self) -> int:
        """Runs left `running` by a process that died (no heartbeat for the stale period) become
        `interrupted`; agents silent for the offline period (while this dashboard was up) go
        offline, their runs handed back or failed (services/agents.py)."""
        now = self.clock()
        silent_s = self.settings.runs.agent_offline_s
        gone = []
        if self.hears_agents and now - self.up_since >= timedelta(seconds=silent_s):
            async with unit_of_work(self.sessionmaker) as session:
                gone = await agents.reap(session, now=now, offline_after_s=silent_s)
                for agent in gone:
                    await alerts.agent_changed(session, agent=agent, online=False, now=now, silent_s=silent_s)
        for agent in gone:
            log.warning(
                "agent %s (%s) is offline: no heartbeat for %.0f s", agent.name, agent.location, silent_s
            )
        async with unit_of_work(self.sessionmaker) as session:
            result = await session.execute(
                update(Run)
                .where(
                    Run.status == RunStatus.running.value,
                    Run.location == LOCAL,
                    Run.heartbeat_at < now - self.stale_after,
                )
                .values(
                    status=RunStatus.interrupted.value,
                    finished_at=now,
                    error="the worker stopped heart-beating",
                )
            )
        return int(getattr(result, "rowcount", 0) or 0)

    async def schedule_tick(self, limit: int = 50) -> int:
        """Fire due schedule slots (at most `limit` per call); returns how many were due."""
        fired = 0
        while fired < limit:
            async with unit_of_work(self.sessionmaker) as session:
                if not await schedules.tick(session, now=self.clock()):
                    break
            fired += 1
        return fired

    async def prune(self) -> int:
        """Delete the samples of runs older than the retention, in bounded batches. Summaries
        and trends live on steps and runs and are untouched. Safe on several workers at once."""
        if not self.retention_days:
            return 0
        cutoff = self.clock() - timedelta(days=self.retention_days)
        total = 0
        while True:
            async with unit_of_work(self.sessionmaker) as session:
                old_runs = select(Run.id).where(Run.finished_at < cutoff)
                batch = select(RequestSample.id).where(RequestSample.run_id.in_(old_runs)).limit(PRUNE_BATCH)
                ids = list((await session.scalars(batch)).all())
                if ids:
                    result = await session.execute(delete(RequestSample).where(RequestSample.id.in_(ids)))
                    total += int(getattr(result, "rowcount", 0) or 0)
            if len(ids) < PRUNE_BATCH:
                return total

    async def deliver_tick(self) -> int:
        """Send the webhook deliveries that are due; returns how many were attempted."""
        return await webhooks.deliver_due(
            self.sessionmaker, box=self.box, settings=self.settings, clock=self.clock
        )

    def _deliver_in_background(self) -> None:
        """Deliveries run in a task of their own: a slow receiver never holds the loop."""
        previous = self._delivering
        if previous is not None and not previous.done():
            return
        if previous is not None and not previous.cancelled() and (exc := previous.exception()) is not None:
            log.warning("webhook deliveries failed (%s)", execution.db_reason(exc))
        self._delivering = asyncio.get_running_loop().create_task(self.deliver_tick(), name="webhooks")

    async def _claim(self) -> int | None:
        async with unit_of_work(self.sessionmaker) as session:
            run = await runs.claim(session, now=self.clock())
            return run.id if run is not None else None

    async def tick(self) -> bool:
        """Claim one queued run and start it. True when there was one."""
        if len(self.active) >= self.max_parallel:
            return False
        claiming = asyncio.ensure_future(self._claim())
        try:
            run_id = await asyncio.shield(claiming)  # a stop during the claim's commit waits for it
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                if (found := await claiming) is not None:
                    self.claimed.add(found)
            raise
        if run_id is None:
            return False
        self.claimed.add(run_id)
        free = [c for c in self.probe_cores if c not in self.cores_in_use.values()]
        cpu = free[0] if free else None
        task = asyncio.get_running_loop().create_task(self._execute(run_id, cpu), name=f"run-{run_id}")
        self.active.add(task)
        if cpu is not None:
            self.cores_in_use[task] = cpu
        task.add_done_callback(self._done)
        return True

    async def _forever(self) -> None:
        loop = asyncio.get_running_loop()
        last_reap = last_prune = last_deliver = -1e9
        backoff = self.idle_s
        while True:
            try:
                now = loop.time()
                if now - last_reap >= REAP_EVERY_S:
                    await self.reap()
                    last_reap = now
                if now - last_deliver >= DELIVER_EVERY_S:
                    self._deliver_in_background()
                    last_deliver = now
                if now - last_prune >= PRUNE_EVERY_S:
                    await self.prune()
                    last_prune = now
                fired = await self.schedule_tick() if self.scheduler else 0
                worked = await self.tick() or fired > 0
                backoff = self.idle_s
            except Exception as exc:  # the database may be restarting: wait, with back-off, go on
                wait = backoff * random.uniform(0.5, 1.5)  # noqa: S311 - jitter, not a secret
                log.warning("executor cycle failed (%s); retrying in %.1f s", execution.db_reason(exc), wait)
                worked = False
                await asyncio.sleep(wait)
                backoff = min(backoff * 2, 10.0)
                continue
            if not worked:
                await asyncio.sleep(self.idle_s)

    async def _execute(self, run_id: int, cpu: int | None) -> str:
        try:
            return await execution.execute(
                self.sessionmaker,
                run_id,
                box=self.box,
                clock=self.clock,
                settings=self.settings,
                deadline_s=self.run_deadline_s,
                cpu=cpu,
            )
        finally:
            self.claimed.discard(run_id)

    async def _release_claimed(self) -> None:
        """Runs claimed as this executor stopped, before their execution began: cancelled, with
        the reason (their execution would have recorded the same)."""
        if not self.claimed:
            return
        leftover, self.claimed = sorted(self.claimed), set()
        with contextlib.suppress(Exception):  # the database is away: the reaper marks them later
            async with unit_of_work(self.sessionmaker) as session:
                await session.execute(
                    update(Run)
                    .where(Run.id.in_(leftover), Run.status == RunStatus.running.value)
                    .values(
                        status=RunStatus.cancelled.value,
                        finished_at=self.clock(),
                        error="cancelled: the worker was stopped before the run began",
                    )
                )

    def _done(self, task: asyncio.Task[str]) -> None:
        self.active.discard(task)
        self.cores_in_use.pop(task, None)

    def start(self) -> None:
        self._loop = asyncio.get_running_loop().create_task(self._forever(), name="run-executor")

    async def stop(self) -> None:
        tasks = [t for t in (self._loop, self._delivering, *self.active) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._release_claimed()

    async def drain(self, grace_s: float) -> None:
        """Stop claiming, give running probes `grace_s` to finish; stop() cancels the rest
        (each records itself `cancelled`)."""
        if self._loop is not None:
            self._loop.cancel()
            await asyncio.gather(self._loop, return_exceptions=True)
            self._loop = None
        if self.active:
            await asyncio.wait(list(self.active), timeout=grace_s)
