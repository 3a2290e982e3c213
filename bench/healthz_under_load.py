"""/healthz while the service is made to work hard (issue #18): one command, prints the figures.

    .venv/bin/python bench/healthz_under_load.py [--mb 50] [--inspections 20] [--db sqlite|postgresql]

Starts `smartbench serve --no-executor` on a fresh database and a TCP server on loopback that
accepts connections and never answers. Then, at once: an editor imports a `vllm bench serve
--save-detailed` file of about --mb MB (the simulator-made fixture's requests repeated: a real
import, stored as samples), --inspections inspections of the silent endpoint are requested in
parallel, and /healthz is fetched every 20 ms on a connection of its own until both are done.
Prints /healthz p50/p99/max, the import's time and status, and the inspections' answers.

Target: /healthz p99 under 100 ms."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "fixtures" / "imports" / "vllm-0.33.0" / "c2.json"
DETAIL = (
    "start_times",
    "ttfts",
    "itls",
    "latencies",
    "input_lens",
    "output_lens",
    "errors",
    "generated_texts",
)
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def big_vllm_file(megabytes: float) -> bytes:
    """The fixture's requests repeated, each copy later in time, to about `megabytes`."""
    doc = json.loads(FIXTURE.read_text())
    one = len(json.dumps({k: doc[k] for k in DETAIL if k in doc}))
    copies = max(1, int(megabytes * 1_000_000 / one))
    span = max(doc["start_times"]) - min(doc["start_times"]) + 1.0
    for key in DETAIL:
        if key not in doc:
            continue
        if key == "start_times":
            doc[key] = [t + c * span for c in range(copies) for t in doc[key]]
        else:
            doc[key] = [v for _ in range(copies) for v in doc[key]]
    doc["completed"] = len(doc["start_times"])
    doc["num_prompts"] = len(doc["start_times"])
    return json.dumps(doc).encode()


async def silent(port: int, stop: asyncio.Event) -> None:
    held: list[asyncio.StreamWriter] = []

    async def handle(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(handle, "127.0.0.1", port)
    await stop.wait()
    for writer in held:
        writer.close()
    server.close()


async def measure(base: str, token: str, raw: bytes, inspections: int) -> dict[str, object]:
    auth = {"Authorization": f"Bearer {token}"}
    silent_port = free_port()
    stop = asyncio.Event()
    quiet = asyncio.create_task(silent(silent_port, stop))
    async with httpx.AsyncClient(base_url=base, timeout=120) as client:
        made = await client.post("/api/v1/endpoints", headers=auth, json={
            "name": "mute", "base_url": f"http://127.0.0.1:{silent_port}/v1", "model": "m"})  # fmt: skip
        made.raise_for_status()
        target = await client.post("/api/v1/endpoints", headers=auth, json={
            "name": "h100", "base_url": "http://127.0.0.1:9/v1", "model": "sim", "gpu_count": 8,
            "price_per_gpu_hour": 2.5})  # fmt: skip
        target.raise_for_status()
        mute_id, target_id = made.json()["id"], target.json()["id"]
        for _ in range(20):  # warm the connection pool and the routes
            await client.get("/healthz")
        latencies: list[tuple[float, float]] = []  # (sent at, ms)
        window: list[float] = []  # the import's start and end
        done = asyncio.Event()

        async def probe_health() -> None:
            async with httpx.AsyncClient(base_url=base, timeout=10) as health:
                while not done.is_set():
                    start = time.perf_counter()
                    answer = await health.get("/healthz")
                    latencies.append((start, (time.perf_counter() - start) * 1000))
                    assert answer.status_code == 200, answer.text
                    await asyncio.sleep(0.02)

        async def do_import() -> tuple[int, float, str]:
            start = time.perf_counter()
            window.append(start)
            answer = await client.post("/api/v1/imports", headers=auth, data={"endpoint_id": str(target_id)},
                                       files=[("files", ("big.json", raw))])  # fmt: skip
            window.append(time.perf_counter())
            return answer.status_code, time.perf_counter() - start, answer.text[:200]

        async def do_inspect() -> int:
            answer = await client.post(f"/api/v1/endpoints/{mute_id}/inspections", headers=auth)
            return answer.status_code

        health_task = asyncio.create_task(probe_health())
        await asyncio.sleep(0.5)
        started = time.perf_counter()
        imported, *asked = await asyncio.gather(do_import(), *(do_inspect() for _ in range(inspections)))
        elapsed = time.perf_counter() - started
        done.set()
        await health_task
    stop.set()
    await quiet

    def stats(values: list[float]) -> tuple[float, float, float, int]:
        arr = np.asarray(values)
        return float(np.percentile(arr, 50)), float(np.percentile(arr, 99)), float(arr.max()), len(arr)

    during = [ms for at, ms in latencies if window[0] <= at <= window[1]]
    return {
        "health": stats([ms for _, ms in latencies]),
        "health_import": stats(during),
        "import": imported,
        "inspections": {code: asked.count(code) for code in sorted(set(asked))},
        "elapsed": elapsed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mb", type=float, default=50.0)
    parser.add_argument("--inspections", type=int, default=20)
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    args = parser.parse_args()
    raw = big_vllm_file(args.mb)
    with tempfile.TemporaryDirectory(prefix="smartbench-health-") as folder:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SMARTBENCH_")}
        env.update(
            SMARTBENCH_DATA_DIR=folder,
            SMARTBENCH_ENV="development",
            SMARTBENCH_ADMIN_PASSWORD="bench-admin-passphrase-1",  # noqa: S106 (a throwaway database)
        )
        database = None
        if args.db == "postgresql":
            import psycopg

            database = f"smartbench_bench_{uuid.uuid4().hex[:8]}"
            with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
                admin.execute(f'CREATE DATABASE "{database}"')
            env["SMARTBENCH_DATABASE_URL"] = f"postgresql+psycopg://postgres@127.0.0.1:5432/{database}"
        exe = str(Path(sys.executable).parent / "smartbench")
        port = free_port()
        server = subprocess.Popen([exe, "serve", "--port", str(port), "--no-executor"], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        try:
            base = f"http://127.0.0.1:{port}"
            for _ in range(300):
                try:
                    if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.2)
            token = subprocess.run([exe, "token", "create", "--name", "bench"], env=env, check=True,
                                   capture_output=True, text=True).stdout.strip()  # fmt: skip
            result = asyncio.run(measure(base, token, raw, args.inspections))
        finally:
            server.terminate()
            server.wait(timeout=30)
            if database:
                import psycopg

                with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
                    admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    p50, p99, worst, count = result["health"]  # type: ignore[misc]
    i50, i99, iworst, icount = result["health_import"]  # type: ignore[misc]
    status, seconds, text = result["import"]  # type: ignore[misc]
    print(f"database {args.db}; a {len(raw) / 1e6:.1f} MB vllm --save-detailed import and "
          f"{args.inspections} inspections of an endpoint that never answers")  # fmt: skip
    print(f"  import: HTTP {status} in {seconds:.1f} s {'' if status == 201 else text}")
    print(f"  inspections: {result['inspections']}")
    print(f"  /healthz over {result['elapsed']:.1f} s, {count} fetches: p50 {p50:.1f} ms, p99 {p99:.1f} ms, "
          f"max {worst:.1f} ms {'(target p99 < 100 ms: met)' if p99 < 100 else '(target p99 < 100 ms: MISSED)'}")  # fmt: skip
    print(f"  /healthz while the import ran, {icount} fetches: p50 {i50:.1f} ms, p99 {i99:.1f} ms, "
          f"max {iworst:.1f} ms {'(met)' if i99 < 100 else '(MISSED)'}")  # fmt: skip


if __name__ == "__main__":
    main()
