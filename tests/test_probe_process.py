"""A probe in its own process: steps stream back as they complete, cancellation keeps what was
measured, the deadline stops it, and a process that dies becomes a failed outcome with the reason.
Against the simulator over real sockets."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from app.probe.process import ProbeProcess, ProbeSpec
from app.probe.types import StepResult, Target, Workload
from tests.browser import free_port
from tests.simproc import simulator

pytestmark = pytest.mark.slow

# ~0.1 s per request (TTFT 20 ms + 31 x 3 ms): a step of 400 requests at c=2 lasts ~20 s.
SLOW_ARGS = ("--preset", "fixed", "--ttft-ms", "20", "--itl-ms", "3")


def spec(url: str, *, levels: tuple[float, ...] = (2,), requests: int = 400, **extra: object) -> ProbeSpec:
    return ProbeSpec(
        Target(url, "sim"), Workload(levels=levels, requests_per_step=requests, output_tokens=32), **extra
    )  # type: ignore[arg-type]


async def started(probe: ProbeProcess, done: list[int], at_least: int) -> None:
    """Wait (bounded) until the probe reported `at_least` completed requests."""
    for _ in range(300):
        if done and done[-1] >= at_least:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the probe reported only {done[-1:]} requests in 15 s")


async def test_steps_stream_back_as_they_complete() -> None:
    seen: list[int] = []
    progress: list[tuple[int, int]] = []

    async def on_step(step: StepResult) -> None:
        seen.append(step.index)
        assert len(step.samples) == 6 and step.summary.requests.completed == 6

    with simulator("--preset", "fixed", "--ttft-ms", "5", "--itl-ms", "1") as url:
        probe = ProbeProcess(
            spec(url, levels=(1, 2), requests=6),
            on_step=on_step,
            on_progress=lambda step, done, planned: progress.append((step, done)),
        )
        outcome = await probe.run()
    assert outcome.status == "succeeded", outcome.error
    assert seen == [0, 1] and [s.index for s in outcome.steps] == [0, 1]
    assert (1, 6) in progress  # the last request of each step is always reported
    assert outcome.environment is not None and outcome.environment.pinned_output is True
    assert outcome.steps[1].samples[0].chunk_ns, "samples arrive whole, chunk timestamps included"
    assert probe.pid is not None and probe.pid != os.getpid()


async def test_cancel_keeps_what_was_measured() -> None:
    done: list[int] = []
    with simulator(*SLOW_ARGS) as url:
        probe = ProbeProcess(spec(url, levels=(2, 2)), on_progress=lambda s, d, p: done.append(d))
        task = asyncio.get_running_loop().create_task(probe.run())
        await started(probe, done, 4)
        probe.cancel()
        outcome = await asyncio.wait_for(task, timeout=15)
    assert outcome.status == "cancelled"
    assert len(outcome.steps) == 1, "the step cut short is kept, the next never starts"
    step = outcome.steps[0]
    assert 4 <= step.summary.requests.completed < 400
    assert len(step.samples) == step.summary.requests.sent
    assert any("cancelled during the step" in note for note in step.summary.quality.client_notes)


async def test_the_deadline_stops_a_run_and_keeps_its_steps() -> None:
    with simulator(*SLOW_ARGS) as url:
        probe = ProbeProcess(spec(url, levels=(2, 2)), deadline_s=2.0, kill_grace_s=5.0)
        outcome = await asyncio.wait_for(probe.run(), timeout=20)
    assert outcome.status == "failed"
    assert outcome.error is not None and "deadline of 2 s" in outcome.error
    assert len(outcome.steps) == 1 and outcome.steps[0].summary.requests.completed > 0


async def test_a_probe_process_that_dies_is_a_failed_outcome_with_the_reason() -> None:
    done: list[int] = []
    with simulator(*SLOW_ARGS) as url:
        probe = ProbeProcess(spec(url), on_progress=lambda s, d, p: done.append(d))
        task = asyncio.get_running_loop().create_task(probe.run())
        await started(probe, done, 1)
        assert probe.pid is not None
        os.kill(probe.pid, signal.SIGKILL)
        outcome = await asyncio.wait_for(task, timeout=10)
    assert outcome.status == "failed"
    assert outcome.error == "the probe process was killed by SIGKILL"


async def test_an_unreachable_target_fails_in_the_preflight() -> None:
    outcome = await ProbeProcess(spec(f"http://127.0.0.1:{free_port()}/v1")).run()
    assert outcome.status == "failed" and outcome.environment is None
    assert outcome.error is not None and "cannot connect" in outcome.error


async def test_the_api_key_travels_on_a_pipe_and_never_into_the_outcome() -> None:
    key = "sk-canary-6b1f0c"
    with simulator("--preset", "zero", "--api-key", "sk-other") as url:
        probe = ProbeProcess(
            ProbeSpec(Target(url, "sim", api_key=key), Workload(levels=(1,), requests_per_step=2))
        )
        outcome = await probe.run()
    assert outcome.status == "failed" and "rejected the API key" in (outcome.error or "")
    assert key not in repr(outcome) and key not in probe.stderr_tail()


@pytest.mark.skipif(
    not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2,
    reason="needs Linux CPU affinity and two cores (the simulator on one, the probe and a hog on the other)",
)
async def test_client_bound_rises_when_another_process_hogs_the_probes_core() -> None:
    """The truth is known (TTFT 20 ms, 2 ms per token); a busy loop on the probe's core, with
    the probe's priority lowered (its autogroup too: each probe has a session of its own),
    starves it. Its figures go wrong, and it must say so."""
    import subprocess
    import sys

    cores = sorted(os.sched_getaffinity(0))
    probe_core, sim_core = cores[0], cores[1]
    hogs: list[subprocess.Popen[bytes]] = []
    probe: ProbeProcess

    def starve(step: int, done: int, planned: int | None) -> None:
        if hogs or probe.pid is None:
            return
        os.sched_setaffinity(probe.pid, {probe_core})
        os.setpriority(os.PRIO_PROCESS, probe.pid, 15)
        autogroup = f"/proc/{probe.pid}/autogroup"
        if os.path.exists(autogroup):
            with open(autogroup, "w") as handle:
                handle.write("15")
        hogs.append(
            subprocess.Popen(  # bounded: killed below, and by its own timeout
                [sys.executable, "-c", "import time\nend = time.time() + 60\nwhile time.time() < end: pass"],
                preexec_fn=lambda: os.sched_setaffinity(0, {probe_core}),
            )
        )

    workload = Workload(levels=(8,), requests_per_step=None, duration_per_step_s=3.0, output_tokens=64)
    with simulator("--preset", "fixed", "--ttft-ms", "20", "--itl-ms", "2") as url:
        sim_pids = [p for p in _children() if p != os.getpid()]
        for pid in sim_pids:
            os.sched_setaffinity(pid, {sim_core})
        try:
            probe = ProbeProcess(ProbeSpec(Target(url, "sim"), workload), on_progress=starve)
            outcome = await asyncio.wait_for(probe.run(), timeout=60)
        finally:
            for hog in hogs:
                hog.kill()
                hog.wait()
    assert hogs, "the hog never started"
    quality = outcome.steps[0].summary.quality
    assert quality.client_bound, quality
    assert any(note.startswith(("event-loop lag", "event loop stalled")) for note in quality.client_notes)


def _children() -> list[int]:
    """This process's child processes (the simulator started by the test)."""
    path = f"/proc/{os.getpid()}/task/{os.getpid()}/children"
    with open(path) as handle:
        return [int(pid) for pid in handle.read().split()]
