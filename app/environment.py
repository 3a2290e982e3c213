"""What a run learned about where it ran, kept as the run's `environment` (app/models.Typed): the
preflight's findings, the SLO search's trail, the inspection after the steps, an import's
provenance, the note on a synthetic run. And a running run's live progress.

Each record keeps the keys it was stored with: a run's JSON shows the parts that run has (a probe
run has no `import`, an imported one no `server`), and keys a later version adds read back
unchanged. Excerpts of a target's replies (the inspection's evidence and check answers) are shown
only where the serialisation context allows (app/security/redact.shown)."""

from __future__ import annotations

from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializationInfo,
    SerializerFunctionWrapHandler,
    field_serializer,
    model_serializer,
)

from app.security.redact import shown


class Record(BaseModel):
    """Stored JSON with a type: dumped with the keys it was given (stored or set), never with a
    default it did not have; keys a later version adds are kept."""

    model_config = ConfigDict(extra="allow", validate_by_name=True, serialize_by_alias=True)

    @model_serializer(mode="wrap")
    def _as_given(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        dumped: dict[str, Any] = handler(self)
        given = {
            field.alias or name
            for name, field in type(self).model_fields.items()
            if name in self.model_fields_set
        }
        return {
            key: value for key, value in dumped.items() if key in given or key in (self.model_extra or {})
        }


class SearchReport(Record):
    """The SLO search's bracket and answer (app/probe/search.py): the loads measured in order,
    each with whether it met the SLO."""

    start: float
    ceiling: float
    max_steps: int
    budget_s: float
    trail: list[tuple[float, bool]] = Field(default_factory=list)
    capacity: float | None = None  # the heaviest load that met the SLO
    breaks_at: float | None = None  # the lightest that broke it
    stopped: str | None = None  # why the search ended (None: cancelled)


class EngineEvidence(Record):
    """One clue the inspection saw for an engine."""

    engine: str
    weight: int = 0
    source: str = ""
    saw: str | None = None

    @field_serializer("saw")
    def _saw(self, value: str | None, info: SerializationInfo) -> str | None:
        return shown(value, info.context)


class CheckAnswer(Record):
    """One checklist answer: passed | failed | not_supported | not_observed | inconclusive."""

    id: str
    title: str = ""
    status: str
    request: str = ""
    evidence: str | None = None

    @field_serializer("evidence")
    def _evidence(self, value: str | None, info: SerializationInfo) -> str | None:
        return shown(value, info.context)


class InspectionRecord(Record):
    """What a run keeps of the inspection after its steps (app/services/inspections.summary), for
    scoring and recompute; only `error` when the inspection itself failed."""

    engine: str | None = None
    engine_version: str | None = None
    checks: list[CheckAnswer] = Field(default_factory=list)
    checklist_version: str | None = None
    metrics_exposed: bool = False
    evidence: list[EngineEvidence] = Field(default_factory=list)
    error: str | None = None
    checks_at: str | None = None  # the checklist's answers were carried over from then

    def passed(self, unjudged: frozenset[str] | set[str]) -> dict[str, str]:
        """Check id -> status, leaving out the statuses that judge nothing."""
        return {check.id: check.status for check in self.checks if check.status not in unjudged}


class ImportRecord(Record):
    """Where an imported run came from: the tool, its files and what the import noticed."""

    tool: str
    tool_version: str | None = None
    version_from: str | None = None  # "file" | "user" | None (unknown)
    files: list[str] = Field(default_factory=list)
    model: str | None = None
    notes: list[str] = Field(default_factory=list)
    imported_at: str
    measured_from: str | None = None
    measured_to: str | None = None
    tool_figures: list[dict[str, float | None]] = Field(default_factory=list)  # per step
    samples: int = 0


class RunEnvironment(Record):
    """A run's environment. The preflight's part (app/probe/preflight.Preflight.environment), then
    what came after: the search, the inspection; or an import's provenance; or a synthetic note."""

    server: str | None = None  # the Server header
    connect_ms: float | None = None  # median TCP connect time from the probe's host (the network's share)
    pinned_output: bool | None = None  # ignore_eos / min_tokens accepted
    dropped_options: list[str] = Field(default_factory=list)
    continuous_usage: bool | None = None
    input_calibration: str | None = None
    notes: list[str] = Field(default_factory=list)
    search: SearchReport | None = None
    inspection: InspectionRecord | None = None
    imported: ImportRecord | None = Field(default=None, alias="import")
    synthetic: str | None = None  # the note on a run the demo generated


class RunProgress(Record):
    """A running run's live progress, replaced as it moves (services/execution)."""

    step: int = 0
    steps: int = 0
    done: int = 0
    planned: int | None = None
    pid: int | None = None  # the probe process
    worker: str | None = None
