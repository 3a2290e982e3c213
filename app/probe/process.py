"""A probe in an OS process of its own.

A load generator that shares its event loop with a web server, database writes, scoring or
another probe measures its own queueing as the server's latency. So every run, from the
dashboard and from `smartbench probe` alike, generates its load in a child process
(`python -m app.probe.process`) that does nothing else; the parent only orchestrates:

- the spec (target with its API key, workload, timeouts) goes to the child on stdin, never on a
  command line;
- the child answers on its stdout with JSON lines: `progress` (at most 4 a second),
  `environment` (after the preflight), `samples` (in batches) and `step` at the end of each
  step, and `end`; anything else the child prints goes to its stderr;
- `cancel()` sends SIGTERM: the child stops its current step, sends what completed, and ends
  `cancelled`; past the deadline the parent sends SIGTERM, then SIGKILL after a grace period;
- a child that dies without `end` makes the outcome `failed` with the exit status and the tail
  of its stderr, never a hang."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, Any

import orjson

from app.datasets import DatasetContent
from app.domain import SLO
from app.environment import RunEnvironment
from app.probe.runner import Prober
from app.probe.search import SearchSpec
from app.probe.types import Limits, Sample, StepResult, Target, Timeouts, Workload
from app.security.outbound import OutboundPolicy
from app.security.redact import VISIBLE, Redactor
from app.summary import RunSummary, StepSummary
from app.workloads import WorkloadSpec

SAMPLE_BATCH = 500
PROGRESS_EVERY_S = 0.25
STDERR_TAIL = 4000
KILL_GRACE_S = 10.0  # past the run's deadline: SIGTERM, then SIGKILL this much later
CANCEL_WAIT_S = 3.0  # a worker that stops waits this long for a cancelled probe's partial results
LINE_LIMIT = 256 * 1024 * 1024  # one message line (a batch of samples) at most

Progress = Callable[[int, int, int | None], None]
OnStep = Callable[[StepResult], Awaitable[None]]


@dataclass(frozen=True)
class ProbeSpec:
    """Everything a probe process needs to run (JSON on the child's stdin)."""

    target: Target
    workload: Workload
    timeouts: Timeouts = field(default_factory=Timeouts)
    limits: Limits = field(default_factory=Limits)
    tokenizer: str | None = None
    processes: int = 1
    metrics_url: str | None = None  # the server's Prometheus endpoint, scraped during each step

    def to_json(self) -> bytes:
        policy = self.limits.outbound
        data = dataclasses.asdict(
            dataclasses.replace(self, limits=dataclasses.replace(self.limits, outbound=None))
        )
        data["limits"]["outbound"] = (
            None if policy is None else {"mode": policy.mode, "entries": policy.entries}
        )
        data["workload"]["spec"] = self.workload.spec.model_dump(mode="json")
        content = self.workload.content
        data["workload"]["content"] = (
            None if content is None else content.model_dump(mode="json", exclude_defaults=True)
        )
        return orjson.dumps(data)

    @classmethod
    def from_json(cls, raw: bytes) -> ProbeSpec:
        data = orjson.loads(raw)
        workload, policy = dict(data["workload"]), data["limits"]["outbound"]
        workload["levels"] = tuple(workload["levels"])
        workload["slo"] = SLO(**workload["slo"])
        if workload.get("search") is not None:
            workload["search"] = SearchSpec(**workload["search"])
        workload["spec"] = WorkloadSpec.model_validate(workload.get("spec") or {})
        if workload.get("content") is not None:
            workload["content"] = DatasetContent.model_validate(workload["content"])
        return cls(
            target=Target(**data["target"]),
            workload=Workload(**workload),
            timeouts=Timeouts(**data["timeouts"]),
            limits=Limits(**{**data["limits"], "outbound": policy and OutboundPolicy.parse(**policy)}),
            tokenizer=data["tokenizer"],
            processes=int(data["processes"]),
            metrics_url=data.get("metrics_url"),
        )


@dataclass
class ProbeOutcome:
    """What a probe process delivered: its steps (also handed to `on_step` as they came) and
    how it ended. `environment` is None when the preflight failed."""

    status: str
    error: str | None
    started_at: datetime
    finished_at: datetime
    environment: RunEnvironment | None
    steps: list[StepResult] = field(default_factory=list)

    def summary(self, *, endpoint: str | None = None, profile: str | None = None) -> RunSummary:
        return RunSummary(
            endpoint=endpoint,
            profile=profile,
            started_at=self.started_at.isoformat(),
            finished_at=self.finished_at.isoformat(),
            status=self.status,
            error=self.error,
            environment=self.environment,
            steps=[step.summary for step in self.steps],
        )


class ProbeProcess:
    """Runs one probe in a child process; see the module docstring for the protocol."""

    def __init__(
        self,
        spec: ProbeSpec,
        *,
        on_progress: Progress | None = None,
        on_step: OnStep | None = None,
        deadline_s: float | None = None,
        kill_grace_s: float = KILL_GRACE_S,
        cpu: int | None = None,
    ) -> None:
        self.cpu = cpu  # a core of its own for the probe (Linux), as the executor plans them
        self.spec = spec
        self.on_progress = on_progress
        self.on_step = on_step
        self.deadline_s = deadline_s
        self.kill_grace_s = kill_grace_s
        self.proc: asyncio.subprocess.Process | None = None
        self.cancel_requested = False
        self.deadline_reached = False
        self._stderr: deque[str] = deque()
        self._stderr_len = 0

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def cancel(self) -> None:
        """Ask the probe to stop: it keeps what it measured and ends `cancelled`."""
        self.cancel_requested = True
        self._signal(signal.SIGTERM)

    def _signal(self, sig: signal.Signals) -> None:
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)

    async def run(self) -> ProbeOutcome:
        started = datetime.now(UTC)
        self.proc = proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "app.probe.process",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            limit=LINE_LIMIT,
            start_new_session=True,  # a terminal's Ctrl-C reaches the parent, which cancels cleanly
        )
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        if self.cpu is not None and hasattr(os, "sched_setaffinity"):
            with contextlib.suppress(OSError):  # before it reads its spec: its threads inherit the core
                os.sched_setaffinity(proc.pid, {self.cpu})
        proc.stdin.write(self.spec.to_json())
        with contextlib.suppress(ConnectionError):
            await proc.stdin.drain()
        proc.stdin.close()
        if self.cancel_requested:
            self._signal(signal.SIGTERM)
        stderr_task = asyncio.get_running_loop().create_task(self._drain_stderr(proc.stderr))
        watchdog = (
            asyncio.get_running_loop().create_task(self._watchdog(self.deadline_s))
            if self.deadline_s is not None
            else None
        )
        state = _Reading(started)
        try:
            await self._read(proc.stdout, state)
            await proc.wait()
        except BaseException:
            # The caller was cancelled (or failed): the child must not outlive it.
            self._signal(signal.SIGKILL)
            with contextlib.suppress(Exception):
                await asyncio.shield(proc.wait())
            raise
        finally:
            if watchdog is not None:
                watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(stderr_task, timeout=2.0)
        return self._outcome(state, proc.returncode)

    async def _read(self, stdout: asyncio.StreamReader, state: _Reading) -> None:
        pending: list[Sample] = []
        while True:
            try:
                line = await stdout.readline()
            except ValueError:  # a line over LINE_LIMIT: the child is not speaking the protocol
                self._note_stderr("the probe process sent a message over the size limit")
                self._signal(signal.SIGKILL)
                return
            if not line:
                return
            try:
                msg = orjson.loads(line)
                kind = msg["kind"]
            except (orjson.JSONDecodeError, KeyError, TypeError):
                self._note_stderr(
                    "the probe process sent a malformed message: " + line[:80].decode("utf-8", "replace")
                )
                continue
            if kind == "progress":
                if self.on_progress is not None:
                    self.on_progress(int(msg["step"]), int(msg["done"]), msg.get("planned"))
            elif kind == "environment":
                state.environment = RunEnvironment.model_validate(msg["environment"])
            elif kind == "samples":
                pending.extend(Sample(**s) for s in msg["samples"])
            elif kind == "step":
                step = StepResult(
                    index=int(msg["index"]),
                    concurrency=msg["concurrency"],
                    request_rate=msg["request_rate"],
                    samples=pending,
                    summary=StepSummary.model_validate(msg["summary"]),
                )
                pending = []
                state.steps.append(step)
                if self.on_step is not None:
                    await self.on_step(step)
            elif kind == "end":
                found = msg.get("environment")
                environment = RunEnvironment.model_validate(found) if found is not None else None
                state.end = _End(str(msg["status"]), msg.get("error"), environment)

    def _outcome(self, state: _Reading, returncode: int | None) -> ProbeOutcome:
        finished = datetime.now(UTC)
        end = state.end
        if end is not None:
            status, error = end.status, end.error
            if end.environment is not None:
                state.environment = end.environment
        else:
            status, error = "failed", self._death(returncode)
        if self.deadline_reached:
            status = "failed"
            error = f"the run passed its deadline of {self.deadline_s:g} s and was stopped; completed steps are kept"
        return ProbeOutcome(status, error, state.started, finished, state.environment, state.steps)

    def _death(self, returncode: int | None) -> str:
        if returncode is not None and returncode < 0:
            try:
                how = f"was killed by {signal.Signals(-returncode).name}"
            except ValueError:
                how = f"was killed by signal {-returncode}"
        else:
            how = f"exited with status {returncode} before reporting its end"
        tail = self.stderr_tail().strip().splitlines()
        last = tail[-1] if tail else ""
        return f"the probe process {how}" + (f": {last}" if last else "")

    def stderr_tail(self) -> str:
        return Redactor(self.spec.target.api_key).text("".join(self._stderr))

    def _note_stderr(self, text: str) -> None:
        self._stderr.append(text + "\n")
        self._stderr_len += len(text) + 1
        while self._stderr_len > STDERR_TAIL and len(self._stderr) > 1:
            self._stderr_len -= len(self._stderr.popleft())

    async def _drain_stderr(self, stderr: asyncio.StreamReader) -> None:
        while chunk := await stderr.read(4096):
            self._note_stderr(chunk.decode("utf-8", "replace").rstrip("\n"))

    async def _watchdog(self, deadline_s: float) -> None:
        await asyncio.sleep(deadline_s)
        self.deadline_reached = True
        self._signal(signal.SIGTERM)
        await asyncio.sleep(self.kill_grace_s)
        self._signal(signal.SIGKILL)


@dataclass
class _Reading:
    started: datetime
    environment: RunEnvironment | None = None
    steps: list[StepResult] = field(default_factory=list)
    end: _End | None = None


@dataclass
class _End:
    """The child's last word: how the run ended and, when the preflight passed, its environment."""

    status: str
    error: str | None
    environment: RunEnvironment | None


# -- the child --------------------------------------------------------------------------------------


class _Channel:
    """The child's side: JSON lines on the parent's pipe. Whatever a target sent back, the
    endpoint's key never crosses it (each line is redacted as a whole, the last guard after the
    client's own)."""

    def __init__(self, out: IO[bytes], secret: str | None = None) -> None:
        self.out = out
        self.redactor = Redactor(secret)
        self._last_progress = 0.0

    def send(self, kind: str, **fields: Any) -> None:
        line = orjson.dumps({"kind": kind, **fields})
        self.out.write((self.redactor.bytes(line) if self.redactor else line) + b"\n")
        self.out.flush()

    def progress(self, step: int, done: int, planned: int | None) -> None:
        now = time.monotonic()
        if now - self._last_progress >= PROGRESS_EVERY_S or (planned is not None and done >= planned):
            self._last_progress = now
            self.send("progress", step=step, done=done, planned=planned)

    def step(self, step: StepResult) -> None:
        for i in range(0, len(step.samples), SAMPLE_BATCH):
            self.send("samples", step=step.index, samples=step.samples[i : i + SAMPLE_BATCH])
        self.send(
            "step",
            index=step.index,
            concurrency=step.concurrency,
            request_rate=step.request_rate,
            summary=step.summary.model_dump(mode="json"),
        )


async def _child(spec: ProbeSpec, channel: _Channel) -> None:
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    try:
        prober = Prober(
            spec.target,
            spec.workload,
            timeouts=spec.timeouts,
            limits=spec.limits,
            tokenizer=spec.tokenizer,
            processes=spec.processes,
            metrics_url=spec.metrics_url,
        )
    except ValueError as exc:  # e.g. a tokenizer that cannot be loaded
        channel.send("end", status="failed", error=str(exc), environment=None)
        return

    async def on_step(step: StepResult) -> None:
        channel.step(step)

    def on_preflight(environment: RunEnvironment) -> None:
        channel.send("environment", environment=environment.model_dump(mode="json", context=VISIBLE))

    try:
        result = await prober.run(channel.progress, on_step=on_step, on_preflight=on_preflight)
    except asyncio.CancelledError:
        channel.send("end", status="cancelled", error="cancelled", environment=None)
        return
    found = result.environment()
    environment = found.model_dump(mode="json", context=VISIBLE) if found is not None else None
    channel.send("end", status=result.status, error=result.error, environment=environment)


def _die_with_parent() -> None:
    """A probe whose orchestrator died (a worker killed with SIGKILL) must not go on loading the
    endpoint: on Linux the kernel sends it SIGTERM, which stops it like a cancellation."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_pdeathsig = 1
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def main() -> None:
    from app.aio import run_fast

    parent = os.getppid()
    _die_with_parent()
    if os.getppid() != parent:  # the parent died before the kernel was told
        return
    # The protocol owns the original stdout; stray prints from any library go to stderr.
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    spec = ProbeSpec.from_json(sys.stdin.buffer.read())
    try:
        run_fast(_child(spec, _Channel(out, spec.target.api_key)))
        out.close()
    except BrokenPipeError:  # nobody is listening any more: the orchestrator is gone
        os._exit(1)


if __name__ == "__main__":
    main()
