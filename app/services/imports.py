"""Importing other tools' results as runs (app/importers reads the files).

An import becomes one run of the endpoint with `source` set to the tool and `trigger` "import":
its steps (and samples, when the files have requests) are stored and scored by the same code as
smartbench's own runs. The profile named (else none, "imported") gives the SLO and the target
price; the workload in the run's snapshot is the one the tool ran. Everything happens in the
caller's transaction after every file has parsed, so a bad file stores nothing.

Parsing runs off the event loop that serves pages (a worker thread, or a worker process for
large files), one import at a time, after `check.bound` has judged what the files would take in memory; the
parsed run passes `check.check` before anything is summarised. The run's time is the import's
(`created_at`): a file cannot date itself into the future and own the scorecard; the tool's own
start and end stay as the run's `started_at`/`finished_at` and in its import note."""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import anyio
import anyio.to_process
from anyio import CapacityLimiter
from anyio.lowlevel import RunVar
from sqlalchemy.ext.asyncio import AsyncSession

from app import importers
from app.config import Settings
from app.domain import SLO, RunSource
from app.environment import ImportRecord, RunEnvironment
from app.errors import NotFound, ValidationFailed
from app.importers import check
from app.importers.base import MAX_TEXT, ImportedRun, ImportProblem
from app.models import Profile, RunStatus
from app.probe.types import StepResult
from app.schemas import ImportResult
from app.services import changes, results, runs
from app.services import endpoints as endpoint_service
from app.services import profiles as profile_service
from app.snapshot import ProfileSnapshot

UNPROFILED = "imported"  # the profile name of imports made without one
# One import parses at a time (thread or worker process alike): the memory bound holds for all.
_PARSING: RunVar[CapacityLimiter] = RunVar("smartbench_import_parsing")


def _one_at_a_time() -> CapacityLimiter:
    try:
        return _PARSING.get()
    except LookupError:
        limiter = CapacityLimiter(1)
        _PARSING.set(limiter)
        return limiter


@dataclass(frozen=True)
class ImportLimits:
    max_samples: int = 200_000
    max_memory_bytes: int = 1024**3
    in_process_bytes: int = 4 * 1024**2  # larger imports parse in a worker process

    @classmethod
    def from_settings(cls, settings: Settings) -> ImportLimits:
        return cls(settings.limits.max_import_samples, settings.limits.max_import_memory_bytes)


def _refused(exc: ImportProblem) -> ValidationFailed:
    return ValidationFailed(f"the import was refused: {exc}", fields={"file": str(exc)})


@dataclass
class Prepared:
    """A parsed, checked and summarised import. The samples travel as their table rows, pickled
    in batches that the store unpickles one at a time (a worker process's answer is never one
    large unpickling on the event loop)."""

    imported: ImportedRun  # without its samples
    steps: list[StepResult]  # summaries; samples left behind
    batches: list[list[bytes]]  # per step: pickled lists of at most results.SAMPLE_BATCH rows
    samples: int

    def rows(self) -> list[Iterator[list[dict[str, object]]]]:
        return [(pickle.loads(batch) for batch in step) for step in self.batches]  # noqa: S301 (our own worker's)


def prepare(
    files: list[tuple[str, bytes]], fmt: str, slo: SLO, now: datetime, limits: ImportLimits
) -> Prepared:
    """Off the event loop (a worker thread, or a worker process for large files): bound, parse
    once, check, summarise, and the samples' rows."""
    check.bound(files, max_memory=limits.max_memory_bytes)
    imported = importers.parse(files, fmt)
    check.check(imported, now=now, max_samples=limits.max_samples)
    steps = importers.step_results(imported, slo)
    batches = [
        [pickle.dumps(rows[i : i + results.SAMPLE_BATCH]) for i in range(0, len(rows), results.SAMPLE_BATCH)]
        for rows in results.sample_rows(steps)
    ]
    count = sum(len(step.samples) for step in steps)
    for step in imported.steps:
        step.samples = [] if step.samples else None
    light = [replace(step, samples=[]) for step in steps]
    return Prepared(imported, light, batches, count)


async def parse(
    files: list[tuple[str, bytes]], fmt: str, slo: SLO, *, now: datetime, limits: ImportLimits
) -> Prepared:
    """Parsed and summarised off the event loop, or a 422 naming the file, line and field.
    Files up to `limits.in_process_bytes` in all parse in a worker thread; larger ones in a
    worker process, whose parsing never holds this process's GIL (a 50 MB file's JSON parse
    holds it for 0.2 s and its half a million Python objects contend for it for seconds, which
    /healthz felt as 70 ms p50 in a thread)."""
    size = sum(len(raw) for _, raw in files)
    limiter = _one_at_a_time()
    try:
        if size <= limits.in_process_bytes:
            return await anyio.to_thread.run_sync(prepare, files, fmt, slo, now, limits, limiter=limiter)
        return await anyio.to_process.run_sync(
            prepare, files, fmt, slo, now, limits, cancellable=True, limiter=limiter
        )
    except ImportProblem as exc:
        raise _refused(exc) from exc


def _workload(base: ProfileSnapshot, imported: ImportedRun, steps: list[Any]) -> ProfileSnapshot:
    """The profile the run is judged by, with the workload the tool actually ran."""
    means = [s.summary for s in steps]
    isl = imported.input_tokens or next((m.input_tokens.mean for m in means if m.input_tokens.mean), None)
    osl = imported.output_tokens or next((m.output_tokens.mean for m in means if m.output_tokens.mean), None)
    rate = any(s.request_rate is not None for s in steps)
    return base.model_copy(
        update={
            "input_tokens_mean": round(isl) if isl else 0,
            "output_tokens_mean": round(osl) if osl else 0,
            "input_tokens_spread": 0.0,
            "output_tokens_spread": 0.0,
            "load_mode": "rate" if rate else "concurrency",
            "load_levels": [s.request_rate if rate else s.concurrency for s in steps],
            "requests_per_step": max((s.summary.requests.sent for s in steps), default=None),
            "duration_per_step_s": None,
            "warmup_requests": 0,
            "search": False,
        }
    )


async def import_run(
    session: AsyncSession,
    *,
    endpoint_id: int,
    files: list[tuple[str, bytes]],
    fmt: str = "auto",
    profile_name: str | None = None,
    tool_version: str | None = None,
    by: int | None,
    now: datetime,
    limits: ImportLimits | None = None,
) -> ImportResult:
    endpoint = await endpoint_service.get(session, endpoint_id)
    profile: Profile | None = None
    if profile_name:
        try:
            profile = await profile_service.get_by_name(session, profile_name)
        except NotFound as exc:
            raise ValidationFailed(exc.message, fields={"profile": exc.message}) from exc
    if tool_version is not None and len(tool_version) > MAX_TEXT["tool_version"]:
        raise ValidationFailed(
            "the tool version is too long", fields={"tool_version": "at most 50 characters"}
        )
    base = profile_service.snapshot(profile) if profile is not None else _unprofiled()
    prepared = await parse(files, fmt, base.slo, now=now, limits=limits or ImportLimits())
    imported, steps = prepared.imported, prepared.steps
    snapshot = _workload(base, imported, steps)
    notes = list(imported.notes)
    if profile is not None and (
        profile.input_tokens_mean != snapshot.input_tokens_mean
        or profile.output_tokens_mean != snapshot.output_tokens_mean
    ):
        notes.append(
            f"the tool ran {snapshot.input_tokens_mean} input and {snapshot.output_tokens_mean} output tokens; "
            f"profile {profile.name} asks {profile.input_tokens_mean} and {profile.output_tokens_mean}: "
            "judged by its SLO, not its workload"
        )
    version = imported.tool_version or tool_version
    completed = any(s.summary.requests.completed for s in steps)
    run = runs.new_run(
        endpoint,
        snapshot,
        profile_id=profile.id if profile is not None else None,
        status=RunStatus.succeeded if completed else RunStatus.failed,
        error=None if completed else "no request completed in the imported files",
        trigger="import",
        source=RunSource(imported.tool),
        created_at=now,  # the import's time: the file's own dates never order the run
        started_at=imported.started_at or now,
        finished_at=imported.finished_at or imported.started_at or now,
        requested_by_id=by,
        environment=RunEnvironment(
            imported=ImportRecord(
                tool=imported.tool,
                tool_version=version,
                version_from="file" if imported.tool_version else ("user" if tool_version else None),
                files=[name.rsplit("/", 1)[-1] for name in imported.files],
                model=imported.model,
                notes=notes,
                imported_at=now.isoformat(),
                measured_from=imported.started_at.isoformat() if imported.started_at else None,
                measured_to=imported.finished_at.isoformat() if imported.finished_at else None,
                tool_figures=[step.tool_figures for step in imported.steps],
                samples=prepared.samples,
            )
        ),
    )
    session.add(run)
    await session.flush()
    await results.store_steps(session, run_id=run.id, steps=steps, rows=prepared.rows())
    await results.judge(session, run=run)
    await changes.rescan(session, endpoint_id=run.endpoint_id, profile=run.profile_name, now=now)
    return ImportResult(
        run_id=run.id,
        tool=imported.tool,
        tool_version=version,
        profile=run.profile_name,
        steps=len(steps),
        samples=prepared.samples,
        notes=notes,
    )


def _unprofiled() -> ProfileSnapshot:
    """The profile of a run imported without one: no SLO (judged throughput first)."""
    return ProfileSnapshot(name=UNPROFILED, title="Imported results", builtin=False)
