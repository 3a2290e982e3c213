"""Page and API latency at scale: one command, prints a table per database.

    .venv/bin/python bench/pages.py [--endpoints 100] [--days 365] [--runs-per-day 4]
                                    [--db sqlite,postgresql] [--fetches 20] [--synthetic-only]

For each database: a fresh one (a temporary SQLite file; a throwaway database on the local
PostgreSQL, dropped afterwards), `smartbench seed` into it (timed). Then, unless
--synthetic-only, one real run as the probe stores it: `smartbench serve` with its executor
probes a simulated vLLM (`smartbench simulate`, its /metrics scraped: telemetry series, energy,
the inspection after the steps, samples) with the chat profile, and every seeded run becomes a
copy of it (its environment, scorecard and step summaries; its own dates and cost columns), as
measured, so the pages read a year of runs of the size the probe writes. Then `smartbench serve
--no-executor` on it, and every page and API list fetched `--fetches` times after two warm-up
fetches, one at a time: p50 and p95 wall time as the client sees it, and the body size. On
PostgreSQL the plans of the hot queries are checked with EXPLAIN: no sequential scan of `runs`.

Budget (issues #9 and #19): p95 under 300 ms on PostgreSQL and under 1 s on SQLite for every row,
every page and API list under 500 KB. Rows over budget are marked with "!"."""

from __future__ import annotations

import argparse
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
BUDGET_MS = {"postgresql": 300.0, "sqlite": 1000.0}
PAGE_BYTES = 500_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def database(kind: str):  # type: ignore[no-untyped-def]
    """Yields (env, url) for a fresh database of this kind."""
    with tempfile.TemporaryDirectory(prefix="smartbench-bench-") as folder:
        env = {**os.environ, "SMARTBENCH_DATA_DIR": folder, "SMARTBENCH_PUBLIC_READ": "1"}
        if kind == "sqlite":
            yield env, f"sqlite+aiosqlite:///{folder}/smartbench.db"
            return
        import psycopg

        name = f"smartbench_bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
        try:
            yield {**env, "SMARTBENCH_DATABASE_URL": url}, url
        finally:
            with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def seed(env: dict[str, str], args: argparse.Namespace) -> tuple[float, str]:
    started = time.perf_counter()
    out = subprocess.run(
        [PY, "-m", "app.cli", "seed", "--endpoints", str(args.endpoints), "--days", str(args.days),
         "--runs-per-day", str(args.runs_per_day)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=3600, check=True,
    )  # fmt: skip
    return time.perf_counter() - started, out.stdout.strip()


def _wait_up(url: str, what: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{what} did not start")


@contextmanager
def server(env: dict[str, str], *, executor: bool = False):  # type: ignore[no-untyped-def]
    port = free_port()
    proc = subprocess.Popen(
        [PY, "-m", "app.cli", "serve", "--port", str(port), *([] if executor else ["--no-executor"])],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_up(f"{base}/healthz", "smartbench serve")
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@contextmanager
def simulator():  # type: ignore[no-untyped-def]
    port = free_port()
    proc = subprocess.Popen(
        [PY, "-m", "app.cli", "simulate", "--port", str(port), "--preset", "h100-fp8-70b", "--engine", "vllm"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_up(f"{base}/v1/models", "smartbench simulate")
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def real_run(env: dict[str, str], url: str) -> tuple[int, str]:
    """Probe a simulated vLLM once with the chat profile, as a scheduled run would, then make
    every seeded run a copy of it. Returns (the real run's id, what was done)."""
    env = {**env, "SMARTBENCH_ADMIN_PASSWORD": "bench-admin-passphrase-1"}
    started = time.perf_counter()
    with simulator() as sim, server(env, executor=True) as base:
        token = subprocess.run(
            [PY, "-m", "app.cli", "token", "create", "--name", "bench", "--user", "admin"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=True,
        ).stdout.strip()  # fmt: skip
        auth = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=base, headers=auth, timeout=60) as client:
            endpoint = client.post("/api/v1/endpoints", json={
                "name": "real-vllm", "base_url": f"{sim}/v1", "model": "sim", "metrics_url": f"{sim}/metrics",
                "engine": "vllm", "gpu_model": "H100 SXM", "gpu_count": 8, "price_per_gpu_hour": 2.5,
                "watts_per_gpu": 700,
            })  # fmt: skip
            endpoint.raise_for_status()
            queued = client.post(f"/api/v1/endpoints/{endpoint.json()['id']}/runs", json={"profile": "chat"})
            queued.raise_for_status()
            run_id = int(queued.json()["run_id"])
            deadline = time.monotonic() + 600
            while (status := client.get(f"/api/v1/runs/{run_id}").json()["status"]) in ("queued", "running"):
                if time.monotonic() > deadline:
                    raise RuntimeError("the real run did not finish in 10 minutes")
                time.sleep(1)
            if status != "succeeded":
                raise RuntimeError(f"the real run {status}")
            size = len(client.get(f"/api/v1/runs/{run_id}").content)
    probed = time.perf_counter() - started
    copied = copy_run(url, run_id)
    return run_id, (
        f"probed in {probed:.0f} s, its JSON {size / 1000:.0f} KB; copied over {copied} seeded runs in "
        f"{time.perf_counter() - started - probed:.0f} s"
    )


COPY_RUNS = (
    "UPDATE runs SET environment = src.environment, scorecard = src.scorecard, "
    "profile_snapshot = src.profile_snapshot, source = 'smartbench', trigger = 'schedule' "
    "FROM (SELECT environment, scorecard, profile_snapshot FROM runs WHERE id = :run) AS src "
    "WHERE runs.id <> :run AND runs.profile_name = 'chat'"
)
COPY_STEPS = (
    "UPDATE run_steps SET summary = src.summary FROM (SELECT step_index, summary FROM run_steps "
    "WHERE run_id = :run) AS src WHERE run_steps.run_id <> :run AND run_steps.step_index = src.step_index"
)


def copy_run(url: str, run_id: int) -> int:
    """Every other run of the chat profile becomes a measured copy of run `run_id`."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url.replace("+aiosqlite", ""))
    try:
        with engine.begin() as conn:
            copied = conn.execute(text(COPY_RUNS), {"run": run_id}).rowcount
            conn.execute(text(COPY_STEPS), {"run": run_id})
        # What autovacuum does after a bulk update (the visibility map that index-only scans need).
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            for table in ("runs", "run_steps"):
                conn.execute(
                    text(f"VACUUM ANALYZE {table}" if engine.dialect.name == "postgresql" else "ANALYZE")
                )
    finally:
        engine.dispose()
    return copied


def targets(base: str, real: int | None) -> list[str]:
    first = httpx.get(f"{base}/api/v1/runs?limit=50", timeout=60).json()
    run_id = first["items"][-1]["id"]  # a copy (or a seeded run)
    return [
        *([f"/runs/{real}", f"/api/v1/runs/{real}"] if real is not None else []),
        "/",
        "/endpoints",
        "/endpoints/1",
        f"/runs/{run_id}",
        "/trends",
        "/trends?days=365",
        "/compare",
        "/api/v1/runs?limit=50",
        f"/api/v1/runs?limit=50&cursor={first['next']}",
        "/api/v1/runs?limit=50&endpoint_id=1",
        "/api/v1/scorecards",
        "/api/v1/endpoints/1/scorecard",
        "/api/v1/trends/cost",
        "/api/v1/trends/cost?days=365",
    ]


def fetch_all(base: str, paths: list[str], fetches: int) -> list[tuple[str, float, float, int]]:
    rows = []
    with httpx.Client(base_url=base, timeout=120) as client:
        for path in paths:
            for _ in range(2):
                client.get(path)
            times, size = [], 0
            for _ in range(fetches):
                started = time.perf_counter()
                response = client.get(path)
                times.append((time.perf_counter() - started) * 1000.0)
                response.raise_for_status()
                size = len(response.content)
            times.sort()
            p95 = float(np.percentile(times, 95))
            rows.append((path, statistics.median(times), p95, size))
    return rows


EXPLAINED = {
    "run list (keyset)": "SELECT id FROM runs WHERE (created_at, id) < (now(), 1000000000) "
    "ORDER BY created_at DESC, id DESC LIMIT 51",
    "latest measured run": "SELECT id FROM runs WHERE endpoint_id = 1 AND profile_name = 'chat' AND "
    "status = 'succeeded' AND source <> 'synthetic' ORDER BY created_at DESC, id DESC LIMIT 1",
    "trend range": "SELECT count(*) FROM runs WHERE endpoint_id = 1 AND profile_name = 'chat' AND "
    "status = 'succeeded' AND created_at >= now() - interval '365 days'",
}


def explain(url: str) -> list[str]:
    import psycopg

    lines = []
    with psycopg.connect(url.replace("+psycopg", "")) as conn:
        conn.execute("ANALYZE runs")
        for what, sql in EXPLAINED.items():
            plan = [row[0] for row in conn.execute(f"EXPLAIN {sql}").fetchall()]
            seq = any(re.search(r"Seq Scan on runs", line) for line in plan)
            index = next((line.strip() for line in plan if "Index" in line), plan[0].strip())
            lines.append(f"  {what}: {'SEQ SCAN!' if seq else 'ok'} ({index[:90]})")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--endpoints", type=int, default=100)
    parser.add_argument("--days", type=float, default=365)
    parser.add_argument("--runs-per-day", type=float, default=4)
    parser.add_argument("--db", default="postgresql,sqlite", help="comma-separated: postgresql, sqlite")
    parser.add_argument("--fetches", type=int, default=20)
    parser.add_argument("--synthetic-only", action="store_true", help="measure the seeded runs as they are")
    args = parser.parse_args()
    print(
        f"{args.endpoints} endpoints x {args.days:g} days x {args.runs_per_day:g} runs/day, "
        f"{args.fetches} fetches per row after 2 warm-ups, cores: {os.cpu_count()}"
    )
    for kind in args.db.split(","):
        with database(kind) as (env, url):
            took, said = seed(env, args)
            print(f"\n## {kind}\nseed: {took:.0f} s ({said})")
            real = None
            if not args.synthetic_only:
                real, done = real_run(env, url)
                print(f"real run {real}: {done}")
            with server(env) as base:
                rows = fetch_all(base, targets(base, real), args.fetches)
            budget = BUDGET_MS[kind]
            print("| page | p50 ms | p95 ms | size KB |\n|---|---:|---:|---:|")
            for path, p50, p95, size in rows:
                over = "!" if p95 > budget or size > PAGE_BYTES else ""
                print(f"| `{path}` | {p50:.0f} | {p95:.0f}{over} | {size / 1000:.0f} |")
            worst = max(rows, key=lambda r: r[2])
            print(f"worst p95: {worst[2]:.0f} ms ({worst[0]}), budget {budget:.0f} ms")
            if kind == "postgresql":
                print("plans:")
                print("\n".join(explain(url)))


if __name__ == "__main__":
    main()
