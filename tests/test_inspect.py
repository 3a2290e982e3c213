"""Engine detection and the conformance checklist, against recorded answers and against the
simulator playing each engine, conforming or breaking one feature at a time."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from app.domain import CHECKLIST, WEIGHTS, conformance
from app.probe.ask import Reply
from app.probe.detect import detect
from app.probe.inspect import inspect
from app.probe.types import Target
from app.simulator.personas import PERSONAS
from app.simulator.presets import SimConfig
from app.simulator.server import Simulator

FIXTURES = Path(__file__).parent / "fixtures" / "engines"
# Checks that rest on another: breaking chat breaks every check made of chat requests, breaking
# streaming every streamed one, reasoning leaked into the content spoils what parses the content.
DEPENDS = {
    "chat": {cid for cid, _, _ in CHECKLIST} - {"completions", "models", "error_bad_model", "rate_limit"},
    "streaming": {"usage_in_stream", "per_chunk_usage", "tool_calls", "reasoning"},
    "reasoning": {"stop", "structured_output", "seed"},
}


class Replay:
    """detect() asks for URLs; the fixture answers as the recorded server did."""

    def __init__(self, recorded: dict[str, dict[str, object]]) -> None:
        self.recorded = recorded
        self.target = Target("http://engine.test:8000/v1", "sim")

    async def get(self, url: str) -> Reply | None:
        answer = self.recorded.get(urlsplit(url).path or "/")
        if answer is None:
            return None
        headers = {str(k): str(v) for k, v in dict(answer["headers"]).items()}  # type: ignore[call-overload]
        return Reply(int(answer["status"]), headers, str(answer["body"]).encode())  # type: ignore[call-overload]


@pytest.mark.parametrize("path", sorted(FIXTURES.glob("*.json")), ids=lambda p: p.stem)
async def test_detection_from_recorded_answers(path: Path) -> None:
    fixture = json.loads(path.read_text())
    assert fixture["sources"], "each fixture names the real project's sources"
    engine, version, evidence, _, _ = await detect(Replay(fixture["responses"]), None)  # type: ignore[arg-type]
    assert engine == fixture["engine"]
    assert all(item.source and item.saw for item in evidence)
    assert bool(evidence) == (engine != "unknown")
    if engine not in ("dynamo", "transformers", "unknown"):  # these expose no version on the routes read
        assert (version and "9.9.9" in version) or engine == "smartbench-simulator"


def test_every_engine_has_a_fixture() -> None:
    assert {p.stem for p in FIXTURES.glob("*.json")} == set(PERSONAS)


async def test_an_unknown_server_is_unknown() -> None:
    engine, version, evidence, exposed, _ = await detect(Replay({}), None)  # type: ignore[arg-type]
    assert (engine, version, evidence, exposed) == ("unknown", None, [], False)


@pytest.mark.parametrize("name", sorted(PERSONAS))
async def test_each_engine_played_live_is_detected_and_checked(name: str) -> None:
    config = SimConfig(mode="zero", persona=name, engine_version="2.0.1", reasoning_tokens=3)
    async with Simulator(config) as sim:
        found = await inspect(Target(sim.base_url, "sim"))
    assert found.engine == {"smartbench": "smartbench-simulator", "hosted": "unknown"}.get(name, name)
    statuses = {c.id: c.status for c in found.checks}
    assert [c.id for c in found.checks] == [cid for cid, _, _ in CHECKLIST]
    assert statuses["rate_limit"] == "not_observed"
    failing = {cid for cid, status in statuses.items() if status == "failed"}
    # TGI and FastAPI servers answer errors in their own shapes, not OpenAI's.
    expected = {"error_bad_model", "error_bad_request"} if PERSONAS[name].error_style != "openai" else set()
    assert failing == expected


@pytest.mark.parametrize("check", [cid for cid, _, _ in CHECKLIST])
async def test_each_check_fails_against_a_server_that_breaks_it(check: str) -> None:
    config = SimConfig(mode="zero", reasoning_tokens=3, broken=frozenset({check}),
                       limit_every=4 if check == "rate_limit" else 0)  # fmt: skip
    async with Simulator(config) as sim:
        found = await inspect(Target(sim.base_url, "sim"))
    statuses = {c.id: c.status for c in found.checks}
    assert statuses[check] == "failed", found.checks
    others = {cid for cid, status in statuses.items() if cid != check and status == "failed"}
    assert others <= DEPENDS.get(check, set())


async def test_a_rate_limiting_server_with_retry_after_passes() -> None:
    async with Simulator(SimConfig(mode="zero", reasoning_tokens=3, limit_every=4)) as sim:
        found = await inspect(Target(sim.base_url, "sim"))
    assert {c.id: c.status for c in found.checks}["rate_limit"] == "passed"
    assert all(c.status == "passed" for c in found.checks)


async def test_refused_features_are_not_supported_and_evidence_never_holds_the_key() -> None:
    key = "sk-inspect-canary-1234567890"
    async with Simulator(SimConfig(mode="zero", strict="openai", api_key=key)) as sim:
        found = await inspect(Target(sim.base_url, "sim", api_key=key))
    statuses = {c.id: c.status for c in found.checks}
    assert statuses["per_chunk_usage"] == "not_supported"  # a 400 for continuous_usage_stats
    assert statuses["reasoning"] == "not_supported"  # this model does not reason
    assert key not in json.dumps(found.as_dict())


def test_conformance_is_the_weighted_share_of_checks_passed() -> None:
    checks = {"chat": "passed", "tool_calls": "failed", "n": "not_supported", "rate_limit": "not_observed"}
    # chat 3 passed of chat 3 + tool_calls 3 + n 0.5; rate_limit not observed: left out.
    assert WEIGHTS["chat"] == 3.0 and WEIGHTS["tool_calls"] == 3.0 and WEIGHTS["n"] == 0.5
    assert conformance(checks) == pytest.approx(3.0 / 6.5)
    assert conformance({"rate_limit": "not_observed"}) is None


async def test_structured_output_cut_by_max_tokens_is_inconclusive_not_failed() -> None:
    """Issue #18: a model still inside its JSON when max_tokens cut it (finish_reason "length")
    was marked failed; nothing says it broke the schema. The check now asks for 256 tokens."""
    async with Simulator(
        SimConfig(mode="zero", reasoning_tokens=3, broken=frozenset({"structured_rambles"}))
    ) as sim:
        found = await inspect(Target(sim.base_url, "sim"))
    check = next(c for c in found.checks if c.id == "structured_output")
    assert check.status == "inconclusive" and "max_tokens=256" in check.request and "cut" in check.request
    assert conformance({c.id: c.status for c in found.checks}) == 1.0  # inconclusive counts neither way
