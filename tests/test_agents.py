"""Agents (app/agent.py, services/agents.py, api/agents.py): an agent with a location's token
claims that location's runs, probes in a process of its own, uploads the steps and the end; its
token opens nothing else and nothing of another location; a revoked token stops it; a silent
agent's run is handed back or failed; a schedule fans out over its locations."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import func, select

from app.agent import Agent, AgentConfig, Refused, Revoked
from app.db import unit_of_work
from app.models import Agent as AgentRow
from app.models import RequestSample, Run, RunStatus, RunStep, Schedule, StepPart
from app.probe.stats import summarize_step
from app.probe.types import Sample, StepResult
from app.services import agents, schedules
from tests.conftest import bearer
from tests.simproc import simulator

KEY = "sk-agent-secret-0123456789"


async def _endpoint(client: httpx.AsyncClient, auth: dict[str, str], url: str, name: str = "sim-a") -> int:
    body = {"name": name, "base_url": url, "model": "sim", "api_key": KEY}
    response = await client.post("/api/v1/endpoints", json=body, headers=auth)
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


async def _mint(client: httpx.AsyncClient, auth: dict[str, str], location: str) -> tuple[int, str]:
    response = await client.post(
        "/api/v1/agent-tokens", json={"location": location, "name": location}, headers=auth
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["token"].startswith("sba_") and body["location"] == location
    return int(body["id"]), str(body["token"])


def _agent(app, token: str, location: str) -> Agent:  # type: ignore[no-untyped-def]
    config = AgentConfig(
        url="http://testserver", token=token, location=location, wait_s=0.5, labels={"zone": "a"}
    )
    return Agent(config, transport=httpx.ASGITransport(app=app))


async def _measured_run(
    app, endpoint_id: int, location: str, level_ms: float, at: datetime, requests: int
) -> int:  # type: ignore[no-untyped-def]
    """A succeeded smoke run at `location` whose TTFT is `level_ms` (±2 % across its requests),
    stored and judged as an agent's would be; its id."""
    from app.probe.stats import summarize_step
    from app.probe.types import Sample, StepResult
    from app.services import runs
    from app.services.results import finish, store_steps

    samples = []
    for i in range(requests):
        first = int(level_ms * (1 + 0.01 * (i % 5 - 2)) * 1e6)
        chunks = [first + k * 5_000_000 for k in range(8)]
        samples.append(Sample(seq=i, sent_ns=0, first_content_ns=first, first_answer_ns=first, last_content_ns=chunks[-1],
                              end_ns=chunks[-1], chunk_ns=chunks, output_tokens=8, input_tokens=32, token_source="usage"))  # fmt: skip
    step = StepResult(index=0, concurrency=1, request_rate=None, samples=samples,
                      summary=summarize_step(samples, concurrency=1))  # fmt: skip
    async with unit_of_work(app.state.sessionmaker) as session:
        run = await runs.start(session, endpoint_id=endpoint_id, profile_name="smoke", by=None,
                               trigger="api", now=at, location=location)  # fmt: skip
        await store_steps(session, run_id=run.id, steps=[step])
        await finish(session, run_id=run.id, status="succeeded", error=None, environment=None, now=at)
        return run.id


async def test_an_agent_runs_its_locations_runs_and_its_token_opens_nothing_else(
    app, client: httpx.AsyncClient, people, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    admin = await bearer(client, "admin")
    with simulator("--preset", "fixed", "--ttft-ms", "20", "--itl-ms", "2") as url:
        endpoint_id = await _endpoint(client, admin, url)
        _, eu = await _mint(client, admin, "eu-west")
        _, us = await _mint(client, admin, "us-east")
        queued = await client.post(
            f"/api/v1/endpoints/{endpoint_id}/runs",
            json={"profile": "smoke", "location": "eu-west"},
            headers=admin,
        )
        run_id = int(queued.json()["run_id"])

        # Another location's agent finds nothing to claim; the right one runs it.
        other = _agent(app, us, "us-east")
        await other.register()
        assert await other.claim() is None
        agent = _agent(app, eu, "eu-west")
        agent.config.part_samples = 2  # its steps (5 requests) go up in parts of 2
        await agent.serve(asyncio.Event(), max_runs=1)
        await agent.close()

        run = (await client.get(f"/api/v1/runs/{run_id}", headers=admin)).json()
        assert run["status"] == "succeeded", run
        assert run["location"] == "eu-west" and run["steps"] and run["steps"][0]["requests"]["completed"] > 0
        assert run["scorecard"] is not None
        listed = (await client.get("/api/v1/runs?location=eu-west", headers=admin)).json()["items"]
        assert [r["id"] for r in listed] == [run_id] and listed[0]["location"] == "eu-west"
        async with unit_of_work(app.state.sessionmaker) as session:
            samples = await session.scalar(
                select(func.count()).select_from(RequestSample).where(RequestSample.run_id == run_id)
            )
            assert samples and samples == sum(s["requests"]["completed"] for s in run["steps"])
        # The endpoint's figures by location: the connect time beside TTFT (the simulator's 20 ms).
        overview = (await client.get(f"/api/v1/endpoints/{endpoint_id}/overview", headers=admin)).json()
        [placed] = overview["locations"]
        assert placed["location"] == "eu-west" and placed["run_id"] == run_id
        assert placed["connect_ms"] is not None and 0 < placed["connect_ms"] < 20  # loopback
        assert 19.5 < placed["ttft_p50_ms"] < 30, placed
        page = (await client.get(f"/endpoints/{endpoint_id}", headers=admin)).text
        assert 'id="by-location"' in page and 'data-location="eu-west"' in page
        shown = (await client.get("/api/v1/agents", headers=admin)).json()["items"]
        mine = next(a for a in shown if a["id"] == agent.agent_id)
        assert mine["location"] == "eu-west" and mine["online"] and mine["labels"] == {"zone": "a"}
        assert mine["cores"] and mine["version"]
        assert mine["steps_week"] == len(run["steps"]) and mine["client_bound_share"] is not None

        # The token opens the agent API only, and only its location.
        token_only = {"Authorization": f"Bearer {eu}"}
        assert (await client.get("/api/v1/runs", headers=token_only)).status_code == 401
        assert (await client.get(f"/api/v1/runs/{run_id}", headers=token_only)).status_code == 401
        page = await client.get("/", headers=token_only)
        assert page.status_code in (401, 303) and KEY not in page.text
        wrong_place = await client.post(
            "/api/v1/agent/register", json={"location": "us-east", "name": "x"}, headers=token_only
        )
        assert wrong_place.status_code == 403 and "not 'us-east'" in wrong_place.json()["error"]["message"]
        user_token = await client.post("/api/v1/agent/claim", json={"agent_id": 1}, headers=admin)
        assert user_token.status_code == 401
        # Another location's agent cannot write into this run, nor this one a stale attempt.
        step = {"agent_id": other.agent_id, "attempt": 1, "index": 5, "summary": {}, "samples": []}
        into = await client.post(
            f"/api/v1/agent/runs/{run_id}/steps", json=step, headers={"Authorization": f"Bearer {us}"}
        )
        assert into.status_code == 403, into.text
        stale = {**step, "agent_id": agent.agent_id}
        ended = await client.post(f"/api/v1/agent/runs/{run_id}/steps", json=stale, headers=token_only)
        assert ended.status_code == 409 and "no longer this agent's" in ended.json()["error"]["message"]
        someone_elses = await client.post(
            "/api/v1/agent/heartbeat", json={"agent_id": other.agent_id}, headers=token_only
        )
        assert someone_elses.status_code == 403
        await other.close()
    assert KEY not in caplog.text


async def test_a_revoked_token_stops_the_agent_at_its_next_call(
    app, client: httpx.AsyncClient, people
) -> None:
    admin = await bearer(client, "admin")
    token_id, token = await _mint(client, admin, "lab")
    agent = _agent(app, token, "lab")
    await agent.register()
    assert await agent.claim() is None
    revoked = await client.delete(f"/api/v1/agent-tokens/{token_id}", headers=admin)
    assert revoked.status_code == 200 and revoked.json()["revoked_at"]
    with pytest.raises(Revoked):
        await agent.claim()
    with pytest.raises(Revoked):
        await agent.serve(asyncio.Event())
    await agent.close()
    local = await client.post("/api/v1/agent-tokens", json={"location": "local", "name": "x"}, headers=admin)
    assert local.status_code == 422


class _Flaky(httpx.AsyncBaseTransport):
    """The dashboard over ASGI, away for the calls `away` says (a connection refused, or 503)."""

    def __init__(self, app, away) -> None:  # type: ignore[no-untyped-def]
        self.inner = httpx.ASGITransport(app=app)
        self.away = away
        self.refused: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        how = self.away(request.url.path)
        if how:
            self.refused.append(request.url.path)
            if how == 503:
                return httpx.Response(503, json={"error": {"code": "unavailable", "message": "restarting"}})
            raise httpx.ConnectError("connection refused", request=request)
        return await self.inner.handle_async_request(request)


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)  # the agent's side: one database is enough
async def test_an_agent_waits_out_the_dashboard_being_away(
    app, client: httpx.AsyncClient, people, caplog: pytest.LogCaptureFixture
) -> None:
    """Away when the agent starts, away for its first uploads (a restart): the agent registers
    once it answers and the run's steps arrive whole. Uploads refused for longer than the
    agent's patience end the run failed with the reason, and the agent goes on. A token for
    another location is refused at registration (Refused: the command exits 2)."""
    caplog.set_level(logging.WARNING, logger="smartbench.agent")
    admin = await bearer(client, "admin")
    _, token = await _mint(client, admin, "lab")
    calls: dict[str, int] = {}

    def restarting(path: str) -> int | bool:
        kind = "register" if path.endswith("/register") else "steps" if "/steps" in path else "other"
        calls[kind] = calls.get(kind, 0) + 1
        if kind == "register":
            return calls[kind] <= 2  # refused twice
        return 503 if kind == "steps" and calls[kind] <= 3 else False  # three 503s, then stored

    with simulator("--preset", "fixed", "--ttft-ms", "20", "--itl-ms", "2") as url:
        endpoint_id = await _endpoint(client, admin, url)
        for _ in range(2):
            queued = await client.post(
                f"/api/v1/endpoints/{endpoint_id}/runs",
                json={"profile": "smoke", "location": "lab"},
                headers=admin,
            )
            assert queued.status_code == 202, queued.text
        first_run = int(queued.json()["run_id"]) - 1
        flaky = _Flaky(app, restarting)
        agent = Agent(
            AgentConfig(url="http://testserver", token=token, location="lab", wait_s=0.5, retry_s=0.1),
            transport=flaky,
        )
        await agent.serve(asyncio.Event(), max_runs=1)
        assert flaky.refused.count("/api/v1/agent/register") == 2 and calls["steps"] >= 4
        run = (await client.get(f"/api/v1/runs/{first_run}", headers=admin)).json()
        assert run["status"] == "succeeded" and run["steps"][0]["requests"]["completed"] == 5, run
        assert "retrying" in caplog.text

        # Away for good for uploads, past a patience of 1 s: the run ends failed, with the reason.
        flaky.away = lambda path: 503 if "/steps" in path else False
        agent.config.patience_s = 1.0
        await agent.serve(asyncio.Event(), max_runs=2)
        run = (await client.get(f"/api/v1/runs/{first_run + 1}", headers=admin)).json()
        assert run["status"] == "failed" and "could not upload the run's steps" in run["error"], run
        assert run["steps"] == []
        await agent.close()
    stranger = _agent(app, token, "elsewhere")
    with pytest.raises(Refused, match="403"):
        await stranger.serve(asyncio.Event())
    await stranger.close()


async def test_a_silent_agents_run_is_handed_back_once_then_failed(
    app, client: httpx.AsyncClient, people
) -> None:
    """The reaper (the executor's, each few seconds) with an injected clock: the first silence
    hands the run back to the queue (no step stored), the second fails it with the reason."""
    admin = await bearer(client, "admin")
    endpoint_id = await _endpoint(client, admin, "http://127.0.0.1:9/v1")
    _, token = await _mint(client, admin, "edge")
    queued = await client.post(
        f"/api/v1/endpoints/{endpoint_id}/runs", json={"profile": "smoke", "location": "edge"}, headers=admin
    )
    run_id = int(queued.json()["run_id"])
    first = _agent(app, token, "edge")
    await first.register()
    claimed = await first.claim()
    assert claimed is not None and claimed["run_id"] == run_id and claimed["attempt"] == 1
    assert claimed["spec"]["target"]["api_key"] == KEY  # the key travels with the claimed run only
    later = datetime.now(UTC) + timedelta(seconds=60)
    async with unit_of_work(app.state.sessionmaker) as session:
        gone = await agents.reap(session, now=later, offline_after_s=30)
        assert [a.id for a in gone] == [first.agent_id]
    async with unit_of_work(app.state.sessionmaker) as session:
        run = await session.get(Run, run_id)
        assert run is not None and run.status == RunStatus.queued.value and "handed back" in (run.error or "")
    second = _agent(app, token, "edge")
    await second.register()
    again = await second.claim()
    assert again is not None and again["run_id"] == run_id and again["attempt"] == 2
    # The first agent, back, cannot report into the run it lost.
    late = await first.client.post(
        f"/agent/runs/{run_id}/end",
        json={"agent_id": first.agent_id, "attempt": 1, "status": "succeeded"},
    )
    assert late.status_code == 409
    async with unit_of_work(app.state.sessionmaker) as session:
        await agents.reap(session, now=later + timedelta(seconds=120), offline_after_s=30)
    async with unit_of_work(app.state.sessionmaker) as session:
        run = await session.get(Run, run_id)
        assert run is not None and run.status == RunStatus.failed.value
        assert "stopped heart-beating mid-run (attempt 2" in (run.error or "")
        offline = await session.get(AgentRow, second.agent_id)
        assert offline is not None and offline.offline_since is not None
    await first.close()
    await second.close()


def _step(index: int, count: int, *, start_seq: int = 0) -> StepResult:
    """A step of `count` requests sent 10 ms apart from 5 s on the agent's clock, each 40 ms to
    its first token."""
    samples = []
    for i in range(count):
        sent = 5_000_000_000 + i * 10_000_000
        chunks = [sent + 40_000_000 + k * 5_000_000 for k in range(4)]
        samples.append(Sample(seq=start_seq + i, sent_ns=sent, first_content_ns=chunks[0], first_answer_ns=chunks[0],
                              last_content_ns=chunks[-1], end_ns=chunks[-1], chunk_ns=chunks, output_tokens=4,
                              input_tokens=16, token_source="usage"))  # fmt: skip
    return StepResult(index=index, concurrency=1, request_rate=None, samples=samples,
                      summary=summarize_step(samples, concurrency=1))  # fmt: skip


async def _stored_samples(app, run_id: int) -> list[tuple[int, int, float]]:  # type: ignore[no-untyped-def]
    async with unit_of_work(app.state.sessionmaker) as session:
        rows = await session.execute(
            select(RequestSample.step_index, RequestSample.seq, RequestSample.sent_offset_ms)
            .where(RequestSample.run_id == run_id)
            .order_by(RequestSample.seq)
        )
        return [(int(a), int(b), float(c)) for a, b, c in rows.all()]


async def _parts_left(app, run_id: int) -> int:  # type: ignore[no-untyped-def]
    async with unit_of_work(app.state.sessionmaker) as session:
        return int(
            await session.scalar(select(func.count()).select_from(StepPart).where(StepPart.run_id == run_id))
            or 0
        )


async def test_a_large_step_goes_up_in_parts_each_stored_once(app, client: httpx.AsyncClient, people) -> None:
    """A step of 25 requests in parts of 10: stored whole, each request's offset from the whole
    step's first send (not its part's); a part or the step sent again is stored once; the step
    cannot be stored before all its parts; a part cannot repeat another's requests; the parts of
    a step never completed are dropped when the run is handed back, and when it ends."""
    admin = await bearer(client, "admin")
    endpoint_id = await _endpoint(client, admin, "http://127.0.0.1:9/v1")
    _, token = await _mint(client, admin, "edge")
    _, other_token = await _mint(client, admin, "elsewhere")
    queued = await client.post(
        f"/api/v1/endpoints/{endpoint_id}/runs", json={"profile": "smoke", "location": "edge"}, headers=admin
    )
    run_id = int(queued.json()["run_id"])
    agent = _agent(app, token, "edge")
    agent.config.part_samples = 10
    await agent.register()
    claimed = await agent.claim()
    assert claimed is not None and claimed["run_id"] == run_id
    auth = {"Authorization": f"Bearer {token}"}
    parts_url = f"/api/v1/agent/runs/{run_id}/steps/0/parts"

    def part(number: int, step: StepResult, attempt: int = 1) -> dict[str, object]:
        chunk = step.samples[number * 10 : (number + 1) * 10]
        return {"agent_id": agent.agent_id, "attempt": attempt, "part": number,
                "origin_ns": 5_000_000_000, "samples": [dataclasses.asdict(x) for x in chunk]}  # fmt: skip

    whole = _step(0, 25)
    # The first two parts, then a premature step: refused, naming the missing part.
    for number in (0, 1):
        answer = await client.post(parts_url, json=part(number, whole), headers=auth)
        assert answer.status_code == 200 and answer.json()["stored"], answer.text
    again = await client.post(parts_url, json=part(1, whole), headers=auth)
    assert again.json() == {"stored": False, "parts": [0, 1]}
    head = {"agent_id": agent.agent_id, "attempt": 1, "index": 0, "concurrency": 1,
            "summary": whole.summary.model_dump(mode="json"), "samples": [], "parts": 3}  # fmt: skip
    early = await client.post(f"/api/v1/agent/runs/{run_id}/steps", json=head, headers=auth)
    assert early.status_code == 422 and "missing: [2]" in early.json()["error"]["message"], early.text
    overlapping = {**part(1, whole), "part": 2}  # part 1's requests again as part 2
    repeated = await client.post(parts_url, json=overlapping, headers=auth)
    assert repeated.status_code == 422 and "repeats request sequence numbers" in repeated.text
    before = {**part(2, whole), "origin_ns": 6_000_000_000}
    assert (await client.post(parts_url, json=before, headers=auth)).status_code == 422
    elsewhere = await client.post(
        parts_url, json=part(2, whole), headers={"Authorization": f"Bearer {other_token}"}
    )
    assert elsewhere.status_code in (401, 403)
    stale = await client.post(parts_url, json=part(2, whole, attempt=2), headers=auth)
    assert stale.status_code == 409
    big = b"x" * (app.state.settings.limits.max_import_bytes + 1)  # the imports' limit, before reading
    too_big = await client.post(parts_url, content=big, headers={**auth, "Content-Type": "application/json"})
    assert too_big.status_code == 413
    assert len(await _stored_samples(app, run_id)) == 20 and await _parts_left(app, run_id) == 2

    # The agent goes silent: the run is handed back, its half-uploaded step dropped.
    later = datetime.now(UTC) + timedelta(seconds=60)
    async with unit_of_work(app.state.sessionmaker) as session:
        await agents.reap(session, now=later, offline_after_s=30)
    assert await _stored_samples(app, run_id) == [] and await _parts_left(app, run_id) == 0
    await agent.close()

    # The next attempt uploads the step in parts through the agent, then once more (a retry).
    agent = _agent(app, token, "edge")
    agent.config.part_samples = 10
    await agent.register()
    claimed = await agent.claim()
    assert claimed is not None and claimed["attempt"] == 2
    await agent.upload_step(run_id, 2, whole)
    await agent.upload_step(run_id, 2, whole)  # every part and the step answer "stored before"
    stored = await _stored_samples(app, run_id)
    assert [seq for _, seq, _ in stored] == list(range(25))
    assert [round(offset, 3) for _, _, offset in stored] == [10.0 * i for i in range(25)]
    assert await _parts_left(app, run_id) == 0
    # A second step in parts, left unfinished: the run's end drops it and keeps the whole one.
    unfinished = _step(1, 25, start_seq=100)
    answer = await client.post(
        f"/api/v1/agent/runs/{run_id}/steps/1/parts",
        json={**part(0, unfinished, attempt=2), "agent_id": agent.agent_id},
        headers=auth,
    )
    assert answer.status_code == 200 and answer.json() == {"stored": True, "parts": [0]}
    end = {"agent_id": agent.agent_id, "attempt": 2, "status": "succeeded"}
    assert (await client.post(f"/api/v1/agent/runs/{run_id}/end", json=end, headers=auth)).status_code == 204
    assert [seq for _, seq, _ in await _stored_samples(app, run_id)] == list(range(25))
    run = (await client.get(f"/api/v1/runs/{run_id}", headers=admin)).json()
    assert run["status"] == "succeeded" and [s["requests"]["completed"] for s in run["steps"]] == [25]
    assert run["steps"][0]["ttft_ms"]["p50"] == pytest.approx(40.0)
    await agent.close()


async def test_a_schedule_fans_out_over_its_locations(app, client: httpx.AsyncClient, people) -> None:
    admin = await bearer(client, "admin")
    endpoint_id = await _endpoint(client, admin, "http://127.0.0.1:9/v1")
    made = await client.post(
        "/api/v1/schedules",
        json={"endpoint_id": endpoint_id, "profile": "smoke", "interval_s": 60, "locations": ["eu", "us"]},
        headers=admin,
    )
    assert made.status_code == 201, made.text
    assert made.json()["locations"] == ["eu", "us"] and made.json()["location_mode"] == "all"
    mixed = await client.post(
        "/api/v1/schedules",
        json={"endpoint_id": endpoint_id, "profile": "chat", "interval_s": 60, "locations": ["local", "eu"]},
        headers=admin,
    )
    assert mixed.status_code == 422
    async with unit_of_work(app.state.sessionmaker) as session:
        schedule = await session.get(Schedule, int(made.json()["id"]))
        assert schedule is not None
        due = schedule.next_run_at
        assert due is not None
        assert await schedules.tick(session, now=due + timedelta(seconds=1))
        fired = (await session.scalars(select(Run).where(Run.schedule_id == schedule.id))).all()
        assert sorted(r.location for r in fired) == ["eu", "us"]
        assert {r.status for r in fired} == {RunStatus.queued.value} and len(
            {r.scheduled_for for r in fired}
        ) == 1
        schedule.location_mode = "round_robin"
        assert await schedules.tick(session, now=due + timedelta(seconds=61))
        assert schedules.firing_locations(schedule) == ["us"]  # the turn moved on from eu
        schedule.location_mode = "any"
        assert schedules.firing_locations(schedule) == ["*"]
        steps = await session.scalar(select(func.count()).select_from(RunStep))
        assert steps == 0


async def test_down_needs_k_of_the_locations_that_probe_the_endpoint(
    app, client: httpx.AsyncClient, people
) -> None:
    """Two locations, down after two failed runs in a row in at least two of them: one failing
    location is not an outage; both are; one recovering brings it back up."""
    from app.schemas import AlertSettings
    from app.services import alerts, runs

    admin = await bearer(client, "admin")
    endpoint_id = await _endpoint(client, admin, "http://127.0.0.1:9/v1")
    rules = AlertSettings(
        baseline_runs=5,
        regression_threshold_pct=10,
        regression_error_points=1,
        down_after_failures=2,
        down_locations=2,
    )
    now = datetime.now(UTC)
    raised: list[str] = []

    async def ran(location: str, status: str, minutes: int) -> None:
        async with unit_of_work(app.state.sessionmaker) as session:
            at = now + timedelta(minutes=minutes)
            run = await runs.start(session, endpoint_id=endpoint_id, profile_name="smoke", by=None,
                                   trigger="api", now=at, location=location)  # fmt: skip
            run.status, run.finished_at, run.error = (
                status,
                at,
                None if status == "succeeded" else "connection refused",
            )
            await session.flush()
            raised.extend(
                a.message for a in await alerts.after_run(session, run_id=run.id, rules=rules, now=at)
            )

    await ran("eu", "succeeded", 0)
    await ran("us", "succeeded", 1)
    await ran("eu", "failed", 2)
    await ran("eu", "failed", 3)
    assert raised == []  # one location of two failing: not down
    await ran("us", "failed", 4)
    await ran("us", "failed", 5)
    [down] = raised
    assert "is down at eu, us (2 of 2 locations): 2 failed runs in a row" in down
    await ran("eu", "succeeded", 6)
    assert raised[1:] and "is back up" in raised[1]


async def test_regressions_are_judged_per_location(app, client: httpx.AsyncClient, people) -> None:
    """eu measures 100 ms TTFT, us 200 ms (its network): neither is a regression of the other;
    us at 260 ms is a regression "from us", and an eu run does not recover it."""
    from app.schemas import AlertSettings
    from app.services import alerts

    admin = await bearer(client, "admin")
    endpoint_id = await _endpoint(client, admin, "http://127.0.0.1:9/v1")
    rules = AlertSettings(
        baseline_runs=3, regression_threshold_pct=10, regression_error_points=1, down_after_failures=3
    )
    now = datetime.now(UTC)
    raised: list[tuple[str, str]] = []

    async def measured(location: str, ttft_ms: float, minutes: int) -> None:
        at = now + timedelta(minutes=minutes)
        run_id = await _measured_run(app, endpoint_id, location, ttft_ms, at, 40)
        async with unit_of_work(app.state.sessionmaker) as session:
            found = await alerts.after_run(session, run_id=run_id, rules=rules, now=at)
            raised.extend((a.kind, a.message) for a in found)

    for k in range(4):
        await measured("eu", 100.0, 2 * k)
        await measured("us", 200.0, 2 * k + 1)
    assert raised == []  # each location against its own runs
    await measured("us", 260.0, 10)
    assert raised and all(kind == "regression" and "(smoke, from us)" in text for kind, text in raised)
    assert any("TTFT" in text for _, text in raised)
    count = len(raised)
    await measured("eu", 100.0, 11)
    assert len(raised) == count  # eu's run says nothing of us
    async with unit_of_work(app.state.sessionmaker) as session:
        _, standing = await alerts.listing(session, endpoint_id=endpoint_id)
    assert standing and {(a.kind, a.location) for a in standing} == {("regression", "us")}
    from_us = (await client.get("/api/v1/alerts?location=us", headers=admin)).json()
    assert from_us["items"] and {a["location"] for a in from_us["items"] + from_us["open"]} == {"us"}
    from_eu = (await client.get("/api/v1/alerts?location=eu", headers=admin)).json()
    assert from_eu["items"] == [] and from_eu["open"] == []


async def test_compare_picks_a_location_or_puts_locations_side_by_side(
    app, client: httpx.AsyncClient, people
) -> None:  # type: ignore[no-untyped-def]
    """Endpoint a is measured from here at 50 ms TTFT, then from us at 150 ms (its network); b from
    here at 50 ms. Comparing each latest run mixes places and says so; "from local" compares like
    with like; a alone, side by side by location, shows the network's share as a difference."""
    admin = await bearer(client, "admin")
    a = await _endpoint(client, admin, "http://127.0.0.1:9/v1", name="cmp-a")
    b = await _endpoint(client, admin, "http://127.0.0.1:9/v1", name="cmp-b")
    now = datetime.now(UTC) - timedelta(hours=1)
    a_local = await _measured_run(app, a, "local", 50.0, now, 60)
    b_local = await _measured_run(app, b, "local", 50.0, now + timedelta(minutes=1), 60)
    a_us = await _measured_run(app, a, "us", 150.0, now + timedelta(minutes=2), 60)
    viewer = await bearer(client, "viewer")
    pair = f"profile=smoke&endpoint={a}&endpoint={b}"

    async def compare(query: str) -> dict:  # type: ignore[type-arg]
        response = await client.get(f"/api/v1/compare?{query}", headers=viewer)
        assert response.status_code == 200, response.text
        return dict(response.json())

    latest = await compare(pair)
    assert [(c["run_id"], c["location"]) for c in latest["cards"]] == [(a_us, "us"), (b_local, "local")]
    assert latest["mixed_locations"] == ["local", "us"] and latest["locations"] == ["local", "us"]
    [diff] = latest["differences"]
    assert (diff["location"], diff["against_location"]) == ("local", "us")
    here = await compare(pair + "&location=local")
    assert [c["run_id"] for c in here["cards"]] == [a_local, b_local] and here["mixed_locations"] == []
    [diff] = here["differences"]
    ttft = {d["label"]: d for d in diff["comparison"]["differences"]}["TTFT p50"]
    assert not ttft["significant"], ttft  # 50 ms against 50 ms from one place
    nowhere = await compare(pair + "&location=mars")
    assert [c["run_id"] for c in nowhere["cards"]] == [None, None] and nowhere["differences"] == []
    split = await compare(f"profile=smoke&endpoint={a}&by_location=true")
    assert [(c["run_id"], c["location"]) for c in split["cards"]] == [(a_local, "local"), (a_us, "us")]
    [diff] = split["differences"]
    ttft = {d["label"]: d for d in diff["comparison"]["differences"]}["TTFT p50"]
    assert ttft["significant"] and ttft["verdict"] == "worse" and 180 < ttft["change_pct"] < 220, ttft
    assert [c["location"] for c in split["curves"]] == ["local", "us"]
    # The page: the choice, the warning on mixed places, the side-by-side columns.
    html = (await client.get(f"/compare?{pair}", headers=viewer)).text
    assert (
        'id="f-location"' in html
        and "different places" in html
        and 'cmp-a <span class="muted">from us' in html
    )
    html = (await client.get(f"/compare?{pair}&location=local", headers=viewer)).text
    assert "different places" not in html and '<option value="local" selected>' in html
    html = (await client.get(f"/compare?profile=smoke&endpoint={a}&by_location=true", headers=viewer)).text
    assert "the network&#39;s share" in html or "the network's share" in html
    assert "cmp-a from us against cmp-a from local" in html


async def test_change_points_are_found_in_each_locations_series(
    app, client: httpx.AsyncClient, people
) -> None:
    """eu at 100 ms and us at 200 ms, interleaved, twelve runs each: no change point (two levels
    are two series, not steps); us then at 240 ms for twelve runs: a TTFT change point at us only."""
    from app.services import changes

    admin = await bearer(client, "admin")
    body = {"name": "priced", "base_url": "http://127.0.0.1:9/v1", "model": "sim", "gpu_model": "H100 SXM",
            "gpu_count": 1, "price_per_gpu_hour": 2.0}  # fmt: skip
    endpoint_id = int((await client.post("/api/v1/endpoints", json=body, headers=admin)).json()["id"])
    now = datetime.now(UTC)
    rng = __import__("random").Random(7)

    async def measured(location: str, ttft_ms: float, minutes: int) -> None:
        at = now - timedelta(hours=2) + timedelta(minutes=minutes)  # in the trend's range
        await _measured_run(app, endpoint_id, location, ttft_ms * rng.gauss(1.0, 0.02), at, 30)

    for k in range(12):
        await measured("eu", 100.0, 2 * k)
        await measured("us", 200.0, 2 * k + 1)
    async with unit_of_work(app.state.sessionmaker) as session:
        assert await changes.rescan(session, endpoint_id=endpoint_id, profile="smoke", now=now) == []
    for k in range(12):
        await measured("us", 240.0, 30 + k)
    async with unit_of_work(app.state.sessionmaker) as session:
        await changes.rescan(session, endpoint_id=endpoint_id, profile="smoke", now=now)
    listed = (await client.get(f"/api/v1/endpoints/{endpoint_id}/change-points", headers=admin)).json()[
        "items"
    ]
    ttft = [c for c in listed if c["metric"] == "ttft_ms"]
    assert [c["location"] for c in ttft] == ["us"], listed
    assert 15 < ttft[0]["change_pct"] < 25 and ttft[0]["direction"] == "worse"
    # The trends split by location: one location's runs only, and the locations to choose from.
    trend = (await client.get("/api/v1/trends/cost?profile=smoke&days=1&location=us", headers=admin)).json()
    assert trend["location"] == "us" and trend["locations"] == ["eu", "us"]
    assert sum(len(s["points"]) for s in trend["series"]) == 24
    everywhere = (await client.get("/api/v1/trends/cost?profile=smoke&days=1", headers=admin)).json()
    assert sum(len(s["points"]) for s in everywhere["series"]) == 36
    page = (await client.get("/trends?profile=smoke&days=1&location=us", headers=admin)).text
    assert '<option value="us" selected>from us</option>' in page


async def test_an_agent_going_offline_and_back_is_an_alert_of_its_own(
    app, client: httpx.AsyncClient, people
) -> None:
    from app.services import webhooks

    admin = await bearer(client, "admin")
    _, token = await _mint(client, admin, "edge")
    agent = _agent(app, token, "edge")
    await agent.register()
    async with unit_of_work(app.state.sessionmaker) as session:
        row = await session.get(AgentRow, agent.agent_id)
        assert row is not None
        row.last_seen_at = datetime.now(UTC) - timedelta(seconds=120)  # silent for two minutes
    executor = app.state.executor
    await executor.reap()  # the dashboard itself just started: it could not have heard the agent
    assert (await client.get("/api/v1/alerts", headers=admin)).json()["items"] == []
    executor.up_since = datetime.now(UTC) - timedelta(minutes=5)  # up all along
    await executor.reap()
    listed = (await client.get("/api/v1/alerts", headers=admin)).json()
    [offline] = [a for a in listed["items"] if a["kind"] == "agent_offline"]
    assert offline["endpoint_id"] is None and offline["agent_id"] == agent.agent_id and offline["open"]
    assert "is offline: no heartbeat for 30 s" in offline["message"] and offline["location"] == "edge"
    assert [a["kind"] for a in listed["open"]] == ["agent_offline"]
    page = (await client.get("/settings/alerts", headers=admin)).text
    assert "agent_offline" in page  # a webhook can take it
    await agent.claim()  # heard from again
    listed = (await client.get("/api/v1/alerts", headers=admin)).json()
    assert [a["kind"] for a in listed["items"]][:2] == ["agent_online", "agent_offline"] and listed[
        "open"
    ] == []
    async with unit_of_work(app.state.sessionmaker) as session:
        from app.models import Alert

        alert = await session.get(Alert, offline["id"])
        assert alert is not None
        sent = webhooks.payload(alert, "", 1, None)
        assert sent.endpoint is None and sent.event == "agent_offline"
        assert ":satellite_antenna:" in webhooks.slack_body(sent)["text"]
    # Stopped with SIGTERM it says it leaves: listed as left, never offline, no alert.
    stop = asyncio.Event()
    stop.set()
    await agent.serve(stop)
    async with unit_of_work(app.state.sessionmaker) as session:
        row = await session.get(AgentRow, agent.agent_id)
        assert row is not None and row.left_at is not None
        row.last_seen_at = datetime.now(UTC) - timedelta(minutes=10)
    await executor.reap()
    listed = (await client.get("/api/v1/alerts", headers=admin)).json()
    assert [a["kind"] for a in listed["items"]].count("agent_offline") == 1 and listed["open"] == []
    [shown] = (await client.get("/api/v1/agents", headers=admin)).json()["items"]
    assert shown["left_at"] and not shown["online"]
    assert 'data-online="left"' in (await client.get("/agents", headers=admin)).text
    # Started again under its name, it is the same agent, online.
    again = _agent(app, token, "edge")
    again.config.name = agent.config.name
    assert await again.register() == agent.agent_id
    [shown] = (await client.get("/api/v1/agents", headers=admin)).json()["items"]
    assert shown["online"] and shown["left_at"] is None
    # Killed (silent, offline, alerted), then started again under its name: back, the alert closed.
    async with unit_of_work(app.state.sessionmaker) as session:
        row = await session.get(AgentRow, agent.agent_id)
        assert row is not None
        row.last_seen_at = datetime.now(UTC) - timedelta(minutes=10)
    await executor.reap()
    assert [a["kind"] for a in (await client.get("/api/v1/alerts", headers=admin)).json()["open"]] == [
        "agent_offline"
    ]
    assert await again.register() == agent.agent_id
    listed = (await client.get("/api/v1/alerts", headers=admin)).json()
    assert listed["items"][0]["kind"] == "agent_online" and listed["open"] == []
    # Crashed and restarted within the offline period (a container restart): still itself.
    assert await again.register() == agent.agent_id
    assert len((await client.get("/api/v1/agents", headers=admin)).json()["items"]) == 1
    await agent.close()
    await again.close()
