"""The endpoint key never leaves, whatever the target sends back; target excerpts are for
editors and admins; the outbound policy holds when URLs are saved and at connect time."""

from __future__ import annotations

import asyncio
import io
import socket
from collections.abc import AsyncIterator

import orjson
import pytest
from sqlalchemy import text

from app.db import unit_of_work
from app.probe.client import make_session, stream_request
from app.probe.process import _Channel
from app.probe.prompts import BodyOptions, request_body
from app.probe.runner import ProbeError, Prober
from app.probe.types import Limits, Sample, Target, Timeouts, Workload
from app.security.outbound import OutboundPolicy, OutboundRefused
from app.security.redact import Redactor, mask
from app.security.resolver import PolicyResolver
from tests.conftest import bearer

KEY = "sk-canary-7f3a9c1e5b2d4f6a8c0e"


async def echo_auth_server() -> AsyncIterator[int]:
    """Answers every request 401 with its Authorization header in the body (as some proxies do)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode()
            auth = next((line for line in head.split("\r\n") if line.lower().startswith("authorization")), "")
            body = orjson.dumps({"error": {"message": f"invalid credentials; you sent {auth}", "key": KEY}})
            writer.write(
                b"HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nConnection: close\r\n"
            )
            writer.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
            await writer.drain()
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


@pytest.fixture
async def echo_port() -> AsyncIterator[int]:
    async for port in echo_auth_server():
        yield port


async def test_a_key_echoed_by_the_target_is_never_stored_or_shown(make_app, echo_port: int) -> None:
    async with make_app() as (app, client, _clock):
        editor, viewer = await bearer(client, "editor"), await bearer(client, "viewer")
        created = await client.post(
            "/api/v1/endpoints",
            json={
                "name": "echo",
                "base_url": f"http://127.0.0.1:{echo_port}/v1",
                "model": "m",
                "api_key": KEY,
            },
            headers=editor,
        )
        run_id = (await client.post(f"/api/v1/endpoints/{created.json()['id']}/runs", json={"profile": "smoke"},
                                    headers=editor)).json()["run_id"]  # fmt: skip
        assert await app.state.executor.tick() is True
        await asyncio.wait_for(asyncio.gather(*app.state.executor.active), timeout=60)

        as_editor = await client.get(f"/api/v1/runs/{run_id}", headers=editor)
        error = as_editor.json()["error"]
        assert as_editor.json()["status"] == "failed" and "HTTP 401" in error
        assert "[redacted]" in error and KEY not in as_editor.text and KEY[3:15] not in as_editor.text
        as_viewer = await client.get(f"/api/v1/runs/{run_id}", headers=viewer)
        assert "«…»" in as_viewer.json()["error"] and "invalid credentials" not in as_viewer.text
        page = await client.get(f"/runs/{run_id}", headers=viewer)
        assert "invalid credentials" not in page.text and KEY not in page.text
        async with unit_of_work(app.state.sessionmaker) as session:
            stored = (await session.execute(text("SELECT error, environment, scorecard FROM runs"))).all()
            samples = (await session.execute(text("SELECT error_detail FROM request_samples"))).all()
        assert KEY not in repr(stored) and KEY not in repr(samples)


def test_the_probe_channel_redacts_every_line() -> None:
    """The last guard: whatever field a key reached, it does not cross the pipe."""
    out = io.BytesIO()
    channel = _Channel(out, KEY)
    sample = Sample(seq=1, error_kind="http_500", error_detail=f"boom {KEY} and {KEY.replace('-', '%2D')}")
    channel.send("samples", step=0, samples=[sample])
    channel.send("end", status="failed", error=f'{{"echo": "{KEY}"}}', environment={"server": KEY})
    assert KEY.encode() not in out.getvalue()
    assert out.getvalue().count(b"[redacted]") >= 3


def test_redaction_happens_before_truncation() -> None:
    from app.probe.client import error_message

    body = orjson.dumps({"error": {"message": "x" * 190 + "Bearer " + KEY}})
    said = error_message(body, KEY)
    assert KEY[:6] not in said.replace("sk-canary", "")  # no half key left at the cut
    assert said.startswith("«") and said.endswith("»")
    assert mask(f"HTTP 401: {said}") == "HTTP 401: «…»"
    assert Redactor(KEY).text(f"a {KEY} b") == "a [redacted] b"


@pytest.mark.parametrize(
    "url",
    ["http://169.254.169.254/v1", "http://2852039166/v1", "http://0xa9fea9fe/v1", "http://0251.0376.0251.0376/v1",
     "http://[::ffff:169.254.169.254]/v1", "http://[fd00:ec2::254]/v1", "http://[fe80::1]:8000/v1",
     "http://metadata.google.internal/v1", "http://0.0.0.0:8000/v1", "http://[64:ff9b::a9fe:a9fe]/v1"],
)  # fmt: skip
async def test_metadata_and_link_local_addresses_are_refused_in_every_spelling(make_app, url: str) -> None:
    async with make_app() as (_app, client, _clock):
        editor = await bearer(client, "editor")
        answer = await client.post(
            "/api/v1/endpoints", json={"name": "meta", "base_url": url, "model": "m"}, headers=editor
        )
        assert answer.status_code == 422 and "outbound policy" in answer.json()["error"]["fields"]["base_url"]
        metrics = await client.post(
            "/api/v1/endpoints",
            json={"name": "meta2", "base_url": "http://127.0.0.1:8000/v1", "model": "m", "metrics_url": url},
            headers=editor,
        )
        assert metrics.status_code == 422 and "metrics_url" in metrics.json()["error"]["fields"]


async def test_loopback_and_private_stay_allowed_and_an_admin_can_switch_to_an_allowlist(make_app) -> None:
    async with make_app() as (_app, client, _clock):
        editor, admin = await bearer(client, "editor"), await bearer(client, "admin")
        for i, url in enumerate(["http://127.0.0.1:8000/v1", "http://10.1.2.3/v1", "http://localhost:9/v1"]):
            made = await client.post("/api/v1/endpoints", json={"name": f"ok{i}", "base_url": url, "model": "m"},
                                     headers=editor)  # fmt: skip
            assert made.status_code == 201, made.text
        assert (await client.patch("/api/v1/settings/site", json={"outbound_mode": "allowlist"},
                                   headers=editor)).status_code == 403  # fmt: skip
        empty = await client.patch(
            "/api/v1/settings/site", json={"outbound_mode": "allowlist"}, headers=admin
        )
        assert empty.status_code == 422
        saved = await client.patch(
            "/api/v1/settings/site", json={"outbound_mode": "allowlist", "outbound_allow": ["10.0.0.0/8"]},
            headers=admin,
        )  # fmt: skip
        assert saved.status_code == 200 and saved.json()["outbound_allow"] == ["10.0.0.0/8"]
        refused = await client.post("/api/v1/endpoints", json={"name": "lo", "base_url": "http://127.0.0.1:8000/v1",
                                                                "model": "m"}, headers=editor)  # fmt: skip
        assert refused.status_code == 422 and "allowlist" in refused.json()["error"]["fields"]["base_url"]
        allowed = await client.post("/api/v1/endpoints", json={"name": "ten", "base_url": "http://10.9.9.9/v1",
                                                                "model": "m"}, headers=editor)  # fmt: skip
        assert allowed.status_code == 201


class _Rebinding:
    """A resolver that answers what an attacker's DNS would at connect time."""

    def __init__(self, address: str) -> None:
        self.address = address

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET) -> list:
        return [
            {"hostname": host, "host": self.address, "port": port, "family": family, "proto": 0, "flags": 0}
        ]

    async def close(self) -> None:
        return None


async def test_connect_time_resolution_refuses_a_rebound_name() -> None:
    resolver = PolicyResolver(OutboundPolicy())
    resolver.inner = _Rebinding("169.254.169.254")  # type: ignore[assignment]
    with pytest.raises(OutboundRefused, match="link-local"):
        await resolver.resolve("innocent.example", 80)
    resolver.inner = _Rebinding("10.0.0.7")  # type: ignore[assignment]
    assert (await resolver.resolve("innocent.example", 80))[0]["host"] == "10.0.0.7"


async def test_the_probe_refuses_at_connect_time() -> None:
    """A name outside the allowlist fails as a classified sample, a literal before any socket."""
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    limits = Limits(outbound=OutboundPolicy.parse("allowlist", ["10.0.0.0/8"]))
    try:
        target = Target(f"http://localhost:{port}/v1", "m")
        async with make_session(1, Timeouts(connect=2.0), limits) as session:
            sample = await stream_request(
                session, target, request_body("chat", "m", "hi", 4, BodyOptions()), Sample(seq=0),
                timeouts=Timeouts(connect=2.0, ttft=2.0, total=3.0), limits=limits,
            )  # fmt: skip
        assert sample.error_kind == "connect_error" and "outbound policy" in (sample.error_detail or "")
        literal = Prober(
            Target("http://[::ffff:a9fe:a9fe]:80/v1", "m"),
            Workload(),
            limits=Limits(outbound=OutboundPolicy()),
        )
        with pytest.raises(ProbeError, match="outbound policy"):
            await literal.preflight()
    finally:
        server.close()


def test_excerpts_are_hidden_unless_the_reader_may_see_them() -> None:
    """Outside a request nothing says who reads: excerpts hide. The operator's own output passes
    the right explicitly."""
    from app.security.redact import VISIBLE, excerpt
    from app.summary import RunSummary

    run = RunSummary(status="failed", error="the server said " + excerpt("stack trace at /srv/app.py"))
    assert "/srv/app.py" not in run.model_dump_json() and "«…»" in run.model_dump()["error"]
    assert "/srv/app.py" in run.model_dump(context=VISIBLE)["error"]
    assert "/srv/app.py" not in run.model_dump(context={"excerpts": False})["error"]
