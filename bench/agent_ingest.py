"""How fast the dashboard takes agents' finished runs (issue #22): one command, prints the figures.

    .venv/bin/python bench/agent_ingest.py [--agents 20] [--runs 200] [--steps 4] [--samples 1000]
                                           [--part-samples 2000]

Starts `smartbench serve --no-executor` on a fresh PostgreSQL database, queues --runs runs at
the location "bench", and --agents simulated agents (async HTTP clients, no probe: each run's
steps are made up front, 1,000 requests a step as the probe would record them) claim and upload
as fast as the dashboard accepts: per run, a claim, --steps step uploads (gzip, as `smartbench
agent` sends them; a step of more than --part-samples requests in parts, then the step naming
them) and the end (where the scorecard is judged). Prints runs per second, uploads per second
and the upload latency (p50, p99, max).

The aim: 100 agents each running a canary every minute is 1.7 runs a second; the headroom is the
measured rate over that."""

from __future__ import annotations

import argparse
import asyncio
import gzip
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np
import orjson
import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.config import Settings  # noqa: E402
from app.db import create_engine, create_sessionmaker, unit_of_work, upgrade  # noqa: E402
from app.models import Endpoint  # noqa: E402
from app.probe.stats import summarize_step  # noqa: E402
from app.probe.types import Sample  # noqa: E402
from app.services import agents, profiles, runs  # noqa: E402

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
CANARY_RATE = 100 / 60.0  # 100 agents, a canary each a minute


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def step_uploads(index: int, samples: int, part_samples: int, rng: random.Random) -> list[tuple[str, bytes]]:
    """The uploads of one step as the agent sends them (app/agent.py `upload_step`): the step with
    its samples, or its parts and then the step naming them; (path under the run, JSON body)."""
    step = step_body(index, samples, rng)
    made = step.pop("samples")
    assert isinstance(made, list)
    blank = {"agent_id": 0, "attempt": 0}  # set per agent and attempt (`framed`)
    if len(made) <= part_samples:
        return [("steps", orjson.dumps({**blank, **step, "samples": made}))]
    origin = min(s.sent_ns for s in made)
    starts = range(0, len(made), part_samples)
    parts = [
        (f"steps/{index}/parts", orjson.dumps({**blank, "part": k, "origin_ns": origin,
                                               "samples": made[start : start + part_samples]}))
        for k, start in enumerate(starts)
    ]  # fmt: skip
    return [*parts, ("steps", orjson.dumps({**blank, **step, "samples": [], "parts": len(starts)}))]


def step_body(index: int, samples: int, rng: random.Random) -> dict[str, object]:
    """A step as an agent uploads it: `samples` requests of 64 output tokens, as the probe records them."""
    made = []
    t = 0
    for seq in range(samples):
        ttft = int(rng.lognormvariate(np.log(80e6), 0.2))
        gaps = [int(rng.lognormvariate(np.log(12e6), 0.1)) for _ in range(64)]
        chunks = list(np.cumsum([t + ttft, *gaps[1:]]).tolist())
        counted = "usage"  # the server's usage counted the tokens
        sample = Sample(
            seq=index * samples + seq, step_index=index, sent_ns=t, first_content_ns=chunks[0], first_answer_ns=chunks[0],
            last_content_ns=chunks[-1], end_ns=chunks[-1] + 1000, chunk_ns=chunks, input_tokens=512,
            output_tokens=64, requested_output_tokens=64, token_source=counted, finish_reason="length",
        )  # fmt: skip
        made.append(sample)
        t += 20_000_000
    summary = summarize_step(made, concurrency=8)
    return {"index": index, "concurrency": 8, "request_rate": None,
            "summary": summary.model_dump(mode="json"), "samples": made}  # fmt: skip


async def agent_loop(
    url: str,
    token: str,
    bodies: list[tuple[str, bytes]],
    latencies: list[float],
    done: list[int],
    stop_at: int,
) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=url + "/api/v1", headers=headers, timeout=120) as client:
        me = (
            await client.post(
                "/agent/register", json={"location": "bench", "name": f"bench-{uuid.uuid4().hex[:6]}"}
            )
        ).json()
        agent_id = me["agent_id"]
        # Compressed once per agent and attempt, as the agent compresses each step once: the
        # bench's own CPU stays off the measurement (the machine has two cores).
        compressed: dict[int, list[tuple[str, bytes]]] = {}

        def framed(attempt: int) -> list[tuple[str, bytes]]:
            if attempt not in compressed:
                mine = f'"agent_id":{agent_id},"attempt":{attempt}'.encode()
                compressed[attempt] = [
                    (path, gzip.compress(b.replace(b'"agent_id":0,"attempt":0', mine, 1), 5))
                    for path, b in bodies
                ]
            return compressed[attempt]

        while len(done) < stop_at:
            claimed = await client.post("/agent/claim", json={"agent_id": agent_id, "wait_s": 0})
            if claimed.status_code == 204:
                return
            run = claimed.json()
            run_id, attempt = run["run_id"], run["attempt"]
            for path, body in framed(attempt):
                started = time.perf_counter()
                answer = await client.post(
                    f"/agent/runs/{run_id}/{path}", content=body,
                    headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
                )  # fmt: skip
                latencies.append(time.perf_counter() - started)
                answer.raise_for_status()
            started = time.perf_counter()
            ended = await client.post(
                f"/agent/runs/{run_id}/end",
                json={"agent_id": agent_id, "attempt": attempt, "status": "succeeded"},
            )
            latencies.append(time.perf_counter() - started)
            ended.raise_for_status()
            done.append(run_id)


async def setup(url: str, args: argparse.Namespace, settings: Settings) -> str:
    """The endpoints (one per agent: an endpoint is probed once at a time), the queued runs, the token."""
    engine = create_engine(settings)
    maker = create_sessionmaker(engine)
    now = datetime.now(UTC)
    async with unit_of_work(maker) as session:
        await profiles.ensure_builtins(session)
        endpoints = []
        for i in range(args.agents):
            endpoint = Endpoint(name=f"ep{i}", base_url="http://127.0.0.1:9/v1", model="m", tags=[])
            session.add(endpoint)
            endpoints.append(endpoint)
        await session.flush()
        for k in range(args.runs):
            await runs.start(session, endpoint_id=endpoints[k % len(endpoints)].id, profile_name="chat",
                             by=None, trigger="api", now=now, location="bench")  # fmt: skip
        _, token = await agents.mint(session, location="bench", name="bench", by=None, now=now)
    await engine.dispose()
    return token


async def load(
    base: str, token: str, bodies: list[tuple[str, bytes]], args: argparse.Namespace
) -> tuple[list[float], list[int], float]:
    latencies: list[float] = []
    done: list[int] = []
    started = time.perf_counter()
    await asyncio.gather(
        *(agent_loop(base, token, bodies, latencies, done, args.runs) for _ in range(args.agents))
    )
    return latencies, done, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=20)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument(
        "--part-samples", type=int, default=2000, help="a larger step goes up in parts of this many"
    )
    args = parser.parse_args()

    name = f"smartbench_ingest_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    data = Path(tempfile.mkdtemp(prefix="smartbench-ingest-"))
    settings = Settings(database_url=url, data_dir=data)
    upgrade(settings)
    token = asyncio.run(setup(url, args, settings))

    rng = random.Random(22)  # noqa: S311 - made-up latencies, not a secret
    bodies = [
        upload
        for index in range(args.steps)
        for upload in step_uploads(index, args.samples, args.part_samples, rng)
    ]
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMARTBENCH_")}
    env.update(SMARTBENCH_DATABASE_URL=url, SMARTBENCH_DATA_DIR=str(data))
    server = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", "--no-executor", "--port", str(port)],
        stdout=(data / "serve.log").open("wb"), stderr=subprocess.STDOUT, env=env,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if httpx.get(base + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        try:
            latencies, done, elapsed = asyncio.run(load(base, token, bodies, args))
        except httpx.HTTPStatusError:
            print((data / "serve.log").read_text()[-3000:])
            raise
    finally:
        server.terminate()
        server.wait(timeout=30)
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    lat = np.asarray(latencies) * 1000
    body_kb = sum(len(gzip.compress(b, 5)) for _, b in bodies) / args.steps / 1024
    per_step = len(bodies) // args.steps
    rate = len(done) / elapsed
    print(f"{len(done)} runs by {args.agents} agents in {elapsed:.1f} s on PostgreSQL "
          f"({args.steps} steps x {args.samples} samples a run, {body_kb:.0f} KiB gzip a step, "
          f"{per_step} upload{'s' if per_step > 1 else ''} a step)")  # fmt: skip
    print(f"runs/s {rate:.2f}   uploads/s {len(latencies) / elapsed:.1f}   "
          f"upload latency p50 {np.percentile(lat, 50):.0f} ms  p99 {np.percentile(lat, 99):.0f} ms  max {lat.max():.0f} ms")  # fmt: skip
    print(f"100 agents with a canary a minute: {CANARY_RATE:.2f} runs/s; headroom {rate / CANARY_RATE:.1f}x")


if __name__ == "__main__":
    main()
