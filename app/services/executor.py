"""The in-process run executor: a loop of small tick()s, each claiming at most one queued run
and starting it as a background task (several endpoints probe in parallel, one probe per
endpoint at a time). Probes never run inside a request."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db import unit_of_work
from app.models import Run, RunStatus
from app.security.crypto import SecretBox
from app.services import runs

log = logging.getLogger("smartbench.executor")

STALE_AFTER = timedelta(seconds=45)


class Executor:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        box: SecretBox,
        clock: Callable[[], datetime],
        *,
        max_parallel: int = 4,
        idle_s: float = 0.5,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.box = box
        self.clock = clock
        self.max_parallel = max_parallel
        self.idle_s = idle_s
        self.active: set[asyncio.Task[str]] = set()
        self._loop: asyncio.Task[None] | None = None

    async def reap(self) -> int:
        """Runs left `running` by a process that died (no heartbeat for 45 s) become `interrupted`."""
        now = self.clock()
        async with unit_of_work(self.sessionmaker) as session:
            result = await session.execute(
                update(Run)
                .where(Run.status == RunStatus.running.value, Run.heartbeat_at < now - STALE_AFTER)
                .values(
                    status=RunStatus.interrupted.value,
                    finished_at=now,
                    error="the worker stopped heart-beating",
                )
            )
        return int(getattr(result, "rowcount", 0) or 0)

    async def tick(self) -> bool:
        """Claim one queued run and start it. True when there was one."""
        if len(self.active) >= self.max_parallel:
            return False
        async with unit_of_work(self.sessionmaker) as session:
            run = await runs.claim(session, now=self.clock())
            run_id = run.id if run is not None else None
        if run_id is None:
            return False
        task = asyncio.get_running_loop().create_task(
            runs.execute(self.sessionmaker, run_id, box=self.box, clock=self.clock), name=f"run-{run_id}"
        )
        self.active.add(task)
        task.add_done_callback(self.active.discard)
        return True

    async def _forever(self) -> None:
        await self.reap()
        while True:
            try:
                worked = await self.tick()
            except Exception:  # the database may be restarting: log, wait, go on
                log.exception("executor tick failed")
                worked = False
            if not worked:
                await asyncio.sleep(self.idle_s)

    def start(self) -> None:
        self._loop = asyncio.get_running_loop().create_task(self._forever(), name="run-executor")

    async def stop(self) -> None:
        tasks = [t for t in (self._loop, *self.active) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def drain(self, grace_s: float) -> None:
        """Stop claiming, give running probes `grace_s` to finish; stop() cancels the rest
        (each records itself `cancelled`)."""
        if self._loop is not None:
            self._loop.cancel()
            await asyncio.gather(self._loop, return_exceptions=True)
            self._loop = None
        if self.active:
            await asyncio.wait(list(self.active), timeout=grace_s)

    async def wait_idle(self) -> None:
        """Until no run is executing (tests and the demo)."""
        while self.active:
            await asyncio.gather(*list(self.active), return_exceptions=True)
