"""The dashboard (`smartbench serve` on PostgreSQL) and three `smartbench agent` processes in two
locations, each started as a user would (another working directory, no database setting, only
the dashboard's URL and a token): three simulator endpoints on a 10-second schedule in all
locations. Every firing gives one run per location, none twice, none lost; an agent killed with
SIGKILL mid-run has its run handed back (and run again) or failed with the reason; an agent
restarted carries on; the endpoints' key is in no agent's output."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select, update

from app.config import Settings
from app.db import create_engine, create_sessionmaker, unit_of_work
from app.models import Agent, Alert, Endpoint, Profile, Run, RunStatus, Schedule
from app.schemas import EndpointCreate
from app.security import keyring
from app.security.crypto import SecretBox
from app.services import agents, endpoints, profiles, schedules
from tests.browser import serve
from tests.simproc import simulator
from tests.test_workers_multiprocess import pg_url  # noqa: F401 - the fixture

pytestmark = pytest.mark.slow

KEY = "sk-multi-agent-secret-77aa88bb"
FINAL = {
    RunStatus.succeeded.value,
    RunStatus.failed.value,
    RunStatus.skipped_overlap.value,
    RunStatus.cancelled.value,
}


def _agent(url: str, token: str, location: str, name: str, home: Path) -> subprocess.Popen[bytes]:
    home.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMARTBENCH_")}
    env["SMARTBENCH_AGENT_TOKEN"] = token
    with (home / f"{name}.log").open("ab") as log:  # the child keeps its own copy
        return subprocess.Popen(
            [sys.executable, "-m", "app.cli", "agent", "--url", url, "--location", location, "--name", name,
             "--label", f"host={name}"],
            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=home,
        )  # fmt: skip


async def _until(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not await predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def test_agents_in_two_locations_share_a_schedule_and_survive_a_kill(
    pg_url: str,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> None:
    data = tmp_path / "dashboard"
    data.mkdir()
    extra = {"SMARTBENCH_AGENT_OFFLINE_S": "4", "SMARTBENCH_MIN_SCHEDULE_INTERVAL_S": "10"}
    settings = Settings(database_url=pg_url, data_dir=data)
    engine = create_engine(settings)
    maker = create_sessionmaker(engine)
    procs: dict[str, subprocess.Popen[bytes]] = {}
    homes = tmp_path / "agents"
    try:
        with (
            simulator("--preset", "fixed", "--ttft-ms", "20", "--itl-ms", "5") as sim,
            serve(data, pg_url, extra) as server,
        ):
            box = SecretBox(keyring.encryption_keyring(settings))  # the key file serve made
            now = datetime.now(UTC)
            async with unit_of_work(maker) as session:
                await profiles.ensure_builtins(session)
                session.add(Profile(name="tick", title="", input_tokens_mean=16, output_tokens_mean=16,
                                    load_levels=[1], requests_per_step=12))  # fmt: skip
                await session.flush()
                ids = []
                for i in range(3):
                    payload = EndpointCreate(name=f"ep{i}", base_url=sim, model="sim", api_key=KEY)
                    made = await endpoints.create(session, data=payload, box=box, by=None, settings=settings)
                    ids.append(made.id)
                for endpoint_id in ids:
                    await schedules.create(
                        session, endpoint_id=endpoint_id, profile_name="tick", interval_s=10, enabled=True,
                        now=now, min_interval_s=10, locations=["eu", "us"], location_mode="all",
                    )  # fmt: skip
                _, eu = await agents.mint(session, location="eu", name="eu", by=None, now=now)
                _, us = await agents.mint(session, location="us", name="us", by=None, now=now)
            url = server.url.rstrip("/")
            procs["eu-1"] = _agent(url, eu, "eu", "eu-1", homes / "eu-1")
            procs["eu-2"] = _agent(url, eu, "eu", "eu-2", homes / "eu-2")
            procs["us-1"] = _agent(url, us, "us", "us-1", homes / "us-1")
            started = time.monotonic()

            # Kill an eu agent with SIGKILL while it holds a running run.
            async def held() -> int | None:
                async with unit_of_work(maker) as session:
                    return await session.scalar(
                        select(Run.id)
                        .join(Agent, Agent.id == Run.agent_id)
                        .where(Run.status == RunStatus.running.value, Agent.name == "eu-1")
                    )

            killed_run: list[int] = []

            async def caught() -> bool:
                if (run_id := await held()) is not None:
                    procs["eu-1"].send_signal(signal.SIGKILL)
                    killed_run.append(run_id)
                    return True
                return False

            await _until(caught, 60, "eu-1 to run something")
            procs["eu-1"].wait(timeout=10)
            # Restart the us agent (SIGTERM, then a new process, as a rollout would).
            await asyncio.sleep(3)
            procs["us-1"].send_signal(signal.SIGTERM)
            assert procs["us-1"].wait(timeout=30) == 0
            procs["us-1"] = _agent(url, us, "us", "us-1", homes / "us-1")
            while time.monotonic() - started < 40:
                await asyncio.sleep(0.5)
            async with unit_of_work(maker) as session:
                await session.execute(update(Schedule).values(enabled=False))

            async def settled() -> bool:
                async with unit_of_work(maker) as session:
                    left = await session.scalar(
                        select(Run.id).where(
                            Run.status.in_((RunStatus.queued.value, RunStatus.running.value))
                        )
                    )
                return left is None

            await _until(settled, 60, "every run to end")

            async with unit_of_work(maker) as session:
                rows = (await session.scalars(select(Run).where(Run.schedule_id.is_not(None)))).all()
                endpoints_seen = {e.id for e in (await session.scalars(select(Endpoint))).all()}
            slots: dict[tuple[int, datetime], list[str]] = defaultdict(list)
            for run in rows:
                assert run.scheduled_for is not None
                slots[(run.schedule_id or 0, run.scheduled_for)].append(run.location)
                assert run.status in FINAL, (run.id, run.status, run.error)
            assert len(slots) >= 9, len(slots)  # three endpoints, at least three firings each
            for slot, locations in slots.items():
                assert sorted(locations) == ["eu", "us"], (slot, locations)  # one each, none twice, none lost
            assert set(ids) <= endpoints_seen
            by_id = {run.id: run for run in rows}
            [lost] = killed_run
            after = by_id[lost]
            handed_back = after.status == RunStatus.succeeded.value and after.attempt == 2
            failed = after.status == RunStatus.failed.value and "stopped heart-beating" in (after.error or "")
            assert handed_back or failed, (after.status, after.attempt, after.error)
            print(
                f"{len(slots)} slots x 2 locations, {len(rows)} runs, {len(succeeded_all := [r for r in rows if r.status == 'succeeded'])} "
                f"succeeded; the killed agent's run {lost}: {after.status}, attempt {after.attempt}, {after.error}"
            )
            assert succeeded_all
            succeeded = [r for r in rows if r.status == RunStatus.succeeded.value]
            assert len(succeeded) >= len(slots)  # most slots ran in both places
            assert {r.location for r in succeeded} == {"eu", "us"}
            us_after_restart = [
                r for r in succeeded if r.location == "us" and r.worker_id and "us-1" in r.worker_id
            ]
            assert us_after_restart
            async with unit_of_work(maker) as session:
                known = (await session.scalars(select(Agent).order_by(Agent.name))).all()
                offline = (await session.scalars(select(Alert).where(Alert.kind == "agent_offline"))).all()
            # The restarted agent said it left and came back as itself: one row, no alert; the
            # killed one went silent: offline, and the one agent_offline alert.
            assert [a.name for a in known] == ["eu-1", "eu-2", "us-1"]
            by_name = {a.name: a for a in known}
            assert by_name["eu-1"].offline_since is not None and by_name["us-1"].offline_since is None
            assert [a.agent_id for a in offline] == [by_name["eu-1"].id]
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
        await engine.dispose()
    for log in homes.rglob("*.log"):
        text = log.read_text()
        assert KEY not in text, log
    assert not [p for p in homes.rglob("*") if p.is_file() and p.suffix != ".log"]  # nothing else written
