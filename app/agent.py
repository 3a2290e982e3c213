"""`smartbench agent`: a probe host that needs only outbound HTTPS to the dashboard.

It registers with its agent token and location, then loops: claim a run of its location (a long
poll), run it in a probe process of its own (app/probe/process.py, the same probe and quality
flags as the dashboard's), upload each step as it completes (gzip, retried; a large step in parts,
each retried on its own; the dashboard stores a step and a part once, so a retry is harmless) and
the run's end. A heartbeat every few seconds carries the run's progress and brings back a user's
cancellation. The endpoint's key arrives with the claimed run, is handed to the probe process on
a pipe and is never written to disk or to the log. A revoked token (401) stops the agent; a run
the dashboard took back (409) is dropped."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import logging
import os
import random
import socket
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import TypeVar

import httpx
import orjson

from app import __version__
from app.environment import RunProgress
from app.probe.process import ProbeProcess, ProbeSpec
from app.probe.types import StepResult

log = logging.getLogger("smartbench.agent")
T = TypeVar("T")

PATIENCE_S = 600.0  # how long a call is retried (0.5 s doubling to 10 s between tries): rides out a restart
PART_SAMPLES = 2_000  # samples a part (about 750 KiB gzip'd): a failed upload resends one part


class Revoked(Exception):
    """The dashboard refused the agent's token: the agent stops."""


class TakenBack(Exception):
    """The dashboard says the run is no longer this agent's (handed back or ended)."""


class Unreachable(Exception):
    """The dashboard did not answer (network errors, 5xx) for the call's whole patience."""


class Refused(Exception):
    """The dashboard refused a call (a 4xx other than 401 and 409): retrying would not help."""


@dataclass
class AgentConfig:
    url: str
    token: str
    location: str
    labels: dict[str, str] = field(default_factory=dict)
    name: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")
    wait_s: float = 20.0
    verify: bool | str = True  # TLS verification (a CA bundle's path, or False only for tests)
    part_samples: int = PART_SAMPLES  # a step with more samples goes up in parts of this many
    patience_s: float = PATIENCE_S  # a call to the dashboard is retried this long before it is given up
    retry_s: float = 0.5  # the first wait between tries (doubling to 10 s)


class Agent:
    def __init__(self, config: AgentConfig, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.config = config
        self.client = httpx.AsyncClient(
            base_url=config.url.rstrip("/") + "/api/v1",
            headers={
                "Authorization": f"Bearer {config.token}",
                "User-Agent": f"smartbench-agent/{__version__}",
            },
            timeout=httpx.Timeout(30.0, read=config.wait_s + 15.0),
            verify=config.verify,
            transport=transport,
        )
        self.agent_id: int | None = None
        self.beat_s = 5.0
        self.runs_done = 0
        self.probe: ProbeProcess | None = None  # the run's probe, while one runs

    async def close(self) -> None:
        await self.client.aclose()

    async def _post(self, path: str, *, json: object = None, content: bytes | None = None,
                    headers: dict[str, str] | None = None, patience_s: float | None = None) -> httpx.Response:  # fmt: skip
        """POST, retried on network errors and 5xx for `patience_s` (the config's by default), then
        Unreachable; 401 raises Revoked, 409 TakenBack, another 4xx Refused."""
        loop = asyncio.get_running_loop()
        until = loop.time() + (self.config.patience_s if patience_s is None else patience_s)
        delay = self.config.retry_s
        while True:
            try:
                response = await self.client.post(path, json=json, content=content, headers=headers)
            except httpx.TransportError as exc:
                failure = type(exc).__name__
            else:
                if response.status_code == 401:
                    raise Revoked(_message(response))
                if response.status_code == 409:
                    raise TakenBack(_message(response))
                if response.status_code < 400:
                    return response
                if response.status_code < 500:
                    raise Refused(f"{path}: {response.status_code} {_message(response)}")
                failure = f"{response.status_code} {_message(response)[:100]}"
            if loop.time() + delay > until:
                raise Unreachable(f"{path}: {failure}")
            log.warning("%s: %s; retrying", path, failure)
            await asyncio.sleep(delay * random.uniform(0.5, 1.5))  # noqa: S311 - jitter, not a secret
            delay = min(delay * 2, 10.0)

    async def register(self) -> int:
        me = {
            "location": self.config.location, "name": self.config.name[:200], "labels": self.config.labels,
            "version": __version__, "cores": os.cpu_count(),
        }  # fmt: skip
        found = (await self._post("/agent/register", json=me)).json()
        self.agent_id = int(found["agent_id"])
        self.beat_s = float(found["beat_s"])
        log.info("agent %s registered for location %s", self.agent_id, found["location"])
        return self.agent_id

    async def claim(self) -> dict[str, object] | None:
        response = await self._post(
            "/agent/claim", json={"agent_id": self.agent_id, "wait_s": self.config.wait_s}
        )
        return None if response.status_code == 204 else dict(response.json())

    async def run_one(self, claimed: dict[str, object]) -> str:
        """Run a claimed run to its end and report it; returns its status."""
        run_id, attempt = int(str(claimed["run_id"])), int(str(claimed["attempt"]))
        spec = ProbeSpec.from_json(orjson.dumps(claimed["spec"]))
        deadline = claimed.get("deadline_s")
        progress = RunProgress()

        def on_progress(step: int, done: int, planned: int | None) -> None:
            progress.step, progress.done, progress.planned = step, done, planned

        # Steps go up from a queue of their own, so the probe's pipe is read while the network is
        # slow or the dashboard away: the measurement never waits on an upload.
        finished: asyncio.Queue[StepResult | None] = asyncio.Queue()

        async def on_step(step: StepResult) -> None:
            finished.put_nowait(step)

        async def upload() -> None:
            while (step := await finished.get()) is not None:
                await self.upload_step(run_id, attempt, step)

        probe = ProbeProcess(
            spec, on_progress=on_progress, on_step=on_step,
            deadline_s=float(str(deadline)) if deadline is not None else None,
        )  # fmt: skip
        log.info(
            "run %s (attempt %s): %s with %s",
            run_id,
            attempt,
            claimed.get("endpoint"),
            claimed.get("profile"),
        )
        self.probe = probe
        loop = asyncio.get_running_loop()
        running = loop.create_task(probe.run())
        beating = loop.create_task(self._beat(run_id, attempt, probe, progress))
        uploading = loop.create_task(upload())

        def upload_failed(task: asyncio.Task[None]) -> None:  # no point measuring what cannot be stored
            if not task.cancelled() and task.exception() is not None and not probe.cancel_requested:
                probe.cancel()

        uploading.add_done_callback(upload_failed)
        try:
            outcome = await running
        except BaseException:
            uploading.cancel()
            raise
        finally:
            self.probe = None
            beating.cancel()
            with contextlib.suppress(asyncio.CancelledError, TakenBack, Revoked):
                await beating
            finished.put_nowait(None)
        if beating.done() and not beating.cancelled() and isinstance(beating.exception(), Revoked):
            uploading.cancel()
            raise Revoked("revoked during the run")
        status, error = outcome.status, outcome.error or None
        try:
            await uploading
        except (Unreachable, Refused) as exc:
            status, error = "failed", f"the agent could not upload the run's steps: {exc}"
            log.error("run %s: %s", run_id, error)
        environment = outcome.environment.model_dump(mode="json") if outcome.environment is not None else None
        await self._post(
            f"/agent/runs/{run_id}/end",
            json={"agent_id": self.agent_id, "attempt": attempt, "status": status,
                  "error": error and error[:2000], "environment": environment},
        )  # fmt: skip
        self.runs_done += 1
        log.info("run %s: %s", run_id, status)
        return status

    async def upload_step(self, run_id: int, attempt: int, step: StepResult) -> None:
        """The step with its samples in one body, or (more than `part_samples` of them) its samples
        in parts, each retried on its own and stored once, then the step naming its parts."""
        head = {
            "agent_id": self.agent_id, "attempt": attempt, "index": step.index,
            "concurrency": step.concurrency, "request_rate": step.request_rate,
            "summary": step.summary.model_dump(mode="json"),
        }  # fmt: skip
        size = self.config.part_samples
        if len(step.samples) <= size:
            await self._send(f"/agent/runs/{run_id}/steps", {**head, "samples": step.samples})
            return
        origin = min(s.sent_ns for s in step.samples)
        parts = range(0, len(step.samples), size)
        for part, start in enumerate(parts):
            await self._send(
                f"/agent/runs/{run_id}/steps/{step.index}/parts",
                {"agent_id": self.agent_id, "attempt": attempt, "part": part, "origin_ns": origin,
                 "samples": step.samples[start : start + size]},
            )  # fmt: skip
        await self._send(f"/agent/runs/{run_id}/steps", {**head, "samples": [], "parts": len(parts)})

    async def _send(self, path: str, body: dict[str, object]) -> None:
        await self._post(
            path,
            content=gzip.compress(orjson.dumps(body), compresslevel=5),
            headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
        )

    async def _beat(self, run_id: int, attempt: int, probe: ProbeProcess, progress: RunProgress) -> None:
        while True:
            await asyncio.sleep(self.beat_s)
            try:
                beat = {"agent_id": self.agent_id, "run_id": run_id, "attempt": attempt,
                        "progress": progress.model_dump(mode="json")}  # fmt: skip
                answer = (await self._post("/agent/heartbeat", json=beat, patience_s=self.beat_s)).json()
            except (Revoked, TakenBack):
                probe.cancel()
                raise
            except Exception as exc:  # the dashboard is away: the probe goes on, beats resume
                log.warning("run %s: heartbeat failed (%s)", run_id, type(exc).__name__)
                continue
            if (answer.get("cancel") or answer.get("abandon")) and not probe.cancel_requested:
                log.info(
                    "run %s: %s", run_id, "cancelled by a user" if answer.get("cancel") else "taken back"
                )
                probe.cancel()

    def stop_run(self) -> None:
        """SIGTERM: the probe ends its step with what completed, and the run ends cancelled."""
        if self.probe is not None and not self.probe.cancel_requested:
            self.probe.cancel()

    async def serve(self, stop: asyncio.Event, *, max_runs: int | None = None) -> None:
        """Register, then claim and run until `stop` is set (or `max_runs` ran), then say it
        leaves when stopped. The dashboard away (a restart, the network) is waited out; a revoked
        token (Revoked) or a refused registration (Refused) ends it."""
        while not stop.is_set() and self.agent_id is None:
            try:
                await _unless(stop, self.register())
            except Unreachable as exc:
                log.warning("the dashboard does not answer (%s); still trying", exc)
        while not stop.is_set() and (max_runs is None or self.runs_done < max_runs):
            try:
                claimed = await _unless(stop, self.claim())
                if claimed is not None and not stop.is_set():
                    await self.run_one(claimed)
            except TakenBack as exc:
                log.warning("a run was taken back: %s", exc)
            except (Unreachable, Refused) as exc:  # the reaper ends a run whose end never arrived
                log.error("%s; going on", exc)
                await asyncio.sleep(1.0)
        if stop.is_set() and self.agent_id is not None:
            await self.leave()

    async def leave(self) -> None:
        """Tell the dashboard this agent stops (so it is "left", not "offline"); best effort."""
        try:
            await self._post("/agent/leave", json={"agent_id": self.agent_id}, patience_s=self.beat_s)
        except (Unreachable, Refused, Revoked) as exc:
            log.warning("could not say goodbye to the dashboard: %s", exc)
        else:
            log.info("agent %s left", self.agent_id)


async def _unless(stop: asyncio.Event, call: Coroutine[object, object, T]) -> T | None:
    """The call's result, or None once `stop` is set first (the call cancelled)."""
    calling = asyncio.ensure_future(call)
    stopping = asyncio.ensure_future(stop.wait())
    done, _ = await asyncio.wait({calling, stopping}, return_when=asyncio.FIRST_COMPLETED)
    if calling not in done:
        calling.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await calling
        return None
    stopping.cancel()
    return calling.result()


def _message(response: httpx.Response) -> str:
    try:
        return str(response.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return response.text[:200]


def parse_labels(pairs: list[str]) -> dict[str, str]:
    """["region=eu-west", "gpu=none"] as a dict; a pair without '=' is refused."""
    found: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"a label is key=value, not {pair!r}")
        found[key.strip()] = value.strip()
    return found
