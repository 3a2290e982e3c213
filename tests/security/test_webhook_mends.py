"""Issue #18, findings 2 and 7: webhooks. Key rotation re-seals their URLs and secrets, and a
delivery that cannot be decrypted fails visibly instead of blocking every other one; webhooks
have an outbound policy of their own (public addresses only by default: no blind probing of the
dashboard's network); Slack text is escaped; error text carries the URL in no form; the README's
receiver drops repeated deliveries. Each failed on 48cab14's code."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from app.db import unit_of_work
from app.models import Alert, Delivery, Endpoint, Webhook
from app.schemas import SiteSettingsUpdate, WebhookEndpoint, WebhookPayload
from app.scoring.regression import AlertDetail
from app.security.crypto import SecretBox
from app.security.outbound import OutboundPolicy
from app.services import alerts, site, webhooks
from tests.conftest import bearer

README = Path(__file__).parents[2] / "README.md"


async def _down_alert(session: Any, now: datetime) -> None:
    endpoint = Endpoint(name="e", base_url="http://127.0.0.1:9/v1", model="m", tags=[])
    session.add(endpoint)
    await session.flush()
    alert = Alert(endpoint_id=endpoint.id, kind="down", detail={}, message="e is down", created_at=now)
    session.add(alert)
    await session.flush()
    await alerts.queue(session, [alert], now)


def test_slack_text_is_escaped() -> None:
    data = WebhookPayload(
        delivery=1, event="regression", alert_id=1, at="2026-12-03T00:00:00+00:00",
        endpoint=WebhookEndpoint(id=1, name="e"), profile="chat", metric="ttft_ms", baseline=1.0, value=2.0,
        change_pct=100.0, degraded=False, detail=AlertDetail(), message="ttft of <!channel> & <https://evil.example|click>",
        run_url="https://sb.example/runs/3", run_id=3,
    )  # fmt: skip
    text = webhooks.slack_body(data)["text"]
    assert "<!channel>" not in text and "&lt;!channel&gt; &amp; &lt;https://evil.example|click&gt;" in text
    assert text.endswith("<https://sb.example/runs/3|run 3>")  # smartbench's own link stays a link


@pytest.mark.parametrize(
    "shown",
    [
        "https://hooks.slack.com/services/T000/B000/XXXXsecretXXXX",  # as given
        "hooks.slack.com/services/T000/B000/XXXXsecretXXXX",
        "/services/T000/B000/XXXXsecretXXXX",  # the path alone
        "https://hooks.slack.com/services/T000/B000/XXXX%73ecretXXXX",  # percent-encoded
        "https%3A%2F%2Fhooks.slack.com%2Fservices%2FT000%2FB000%2FXXXXsecretXXXX",  # quoted whole
        "https:\\/\\/hooks.slack.com\\/services\\/T000\\/B000\\/XXXXsecretXXXX",  # JSON-escaped
    ],
)
def test_error_text_is_scrubbed_of_every_form_of_the_url(shown: str) -> None:
    url = "https://hooks.slack.com/services/T000/B000/XXXXsecretXXXX"
    assert "XXXXsecret" not in webhooks.scrub(f"ClientError: cannot reach {shown} (refused)", url)


def test_user_info_in_a_url_is_scrubbed() -> None:
    url = "https://alerts:hunter2-pass@hooks.example.com/x"
    assert "hunter2-pass" not in webhooks.scrub(
        "Cannot connect to alerts:hunter2-pass@hooks.example.com", url
    )


def test_the_webhook_policy_is_public_only_by_default() -> None:
    public = OutboundPolicy.parse("public", [])
    for address in ("127.0.0.1", "10.1.2.3", "192.168.0.10", "172.16.5.5", "100.64.0.1", "::1", "fd00::5",
                    "::ffff:10.0.0.1", "169.254.169.254", "0x7f000001"):  # fmt: skip
        assert public.host_problem(address) is not None, address
    assert public.host_problem("93.184.216.34") is None
    assert public.resolved_problem("hooks.example.com", ["10.0.0.7"]) is not None  # a name pointing inside
    widened = OutboundPolicy.parse("public", ["10.20.0.0/16", "alerts.internal"])
    assert widened.host_problem("10.20.3.4") is None and widened.host_problem("10.21.3.4") is not None
    assert widened.resolved_problem("alerts.internal", ["10.9.9.9"]) is None


def _readme_receiver() -> Any:
    text = README.read_text()
    block = re.search(r"drop one you already accepted.*?```python\n(.*?)```", text, re.S)
    assert block, "the README's receiver snippet"
    scope: dict[str, Any] = {}
    exec(block.group(1), scope)
    return scope["accept"]


def test_the_readme_receiver_accepts_a_delivery_once() -> None:
    accept = _readme_receiver()
    secret, body = "whsec_test", json.dumps({"delivery": 41, "event": "down"}).encode()
    stamp = int(time.time())
    headers = {"X-Smartbench-Timestamp": str(stamp), "X-Smartbench-Delivery": "41",
               "X-Smartbench-Signature": "sha256=" + hmac.new(secret.encode(), f"{stamp}.".encode() + body,
                                                              hashlib.sha256).hexdigest()}  # fmt: skip
    assert accept(secret, headers, body) is True
    assert accept(secret, headers, body) is False  # replayed within the window
    assert accept("other", headers, json.dumps({"delivery": 42}).encode()) is False


async def test_saving_and_delivering_follow_the_webhook_policy(idle_app, people) -> None:  # type: ignore[no-untyped-def]
    app = idle_app
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as client:
        admin = await bearer(client, "admin")
        for url in ("http://127.0.0.1:8080/x", "http://10.0.0.5/hook", "http://[::1]:9/x"):
            answer = await client.post("/api/v1/webhooks", json={"name": "x", "url": url}, headers=admin)
            assert (
                answer.status_code == 422
                and "public addresses only" in answer.json()["error"]["fields"]["url"]
            )
        wide = await client.patch(
            "/api/v1/settings/site", json={"webhook_outbound_mode": "default"}, headers=admin
        )
        assert wide.status_code == 200 and wide.json()["webhook_outbound_mode"] == "default"
        made = await client.post("/api/v1/webhooks", json={"name": "inside", "url": "http://127.0.0.1:9/x"},
                                 headers=admin)  # fmt: skip
        assert made.status_code == 201
        # The endpoints' policy is apart: an endpoint may still live on loopback.
        assert (await client.get("/api/v1/settings/site", headers=admin)).json()["outbound_mode"] == "default"
        back = await client.patch(
            "/api/v1/settings/site", json={"webhook_outbound_mode": "public"}, headers=admin
        )
        assert back.status_code == 200
    async with unit_of_work(app.state.sessionmaker) as session:
        await _down_alert(session, datetime.now(UTC))
    await app.state.executor.deliver_tick()
    async with unit_of_work(app.state.sessionmaker) as session:
        delivery = (await session.scalars(select(Delivery))).one()
        assert delivery.error and "refused by the outbound policy" in delivery.error  # checked when sent too


async def test_an_undecryptable_webhook_fails_visibly_and_blocks_nothing(idle_app, people) -> None:  # type: ignore[no-untyped-def]
    """48cab14: after a key was dropped, the claim raised on decryption and rolled back every
    2 s; no delivery of any webhook moved again."""
    app = idle_app
    now = [datetime(2026, 12, 3, 12, 0, tzinfo=UTC)]
    app.state.executor.clock = lambda: now[0]
    async with unit_of_work(app.state.sessionmaker) as session:
        await site.save(
            session, app.state.settings, SiteSettingsUpdate(webhook_outbound_mode="default"), by="t"
        )
        retired = SecretBox([("retired", b"\x05" * 32)])
        stale = Webhook(name="stale", kind="json", url_encrypted=retired.encrypt("http://127.0.0.1:9/a"),
                        url_hint="http://127.0.0.1/…9/a", secret_encrypted=retired.encrypt("s"),
                        events=["down"], enabled=True, created_by="t", created_at=now[0])  # fmt: skip
        box: SecretBox = app.state.secret_box
        live = Webhook(name="live", kind="json", url_encrypted=box.encrypt("http://127.0.0.1:9/b"),
                       url_hint="http://127.0.0.1/…9/b", secret_encrypted=None, events=["down"],
                       enabled=True, created_by="t", created_at=now[0])  # fmt: skip
        session.add_all([stale, live])
        await session.flush()
        await _down_alert(session, now[0])
    await app.state.executor.deliver_tick()
    async with unit_of_work(app.state.sessionmaker) as session:
        rows = {d.webhook_id: d for d in (await session.scalars(select(Delivery))).all()}
        hooks = {h.name: h.id for h in (await session.scalars(select(Webhook))).all()}
    failed, tried = rows[hooks["stale"]], rows[hooks["live"]]
    assert failed.status == "failed" and failed.attempts == 1 and "does not decrypt" in (failed.error or "")
    assert tried.attempts == 1 and tried.status == "pending"  # attempted (nothing listens), not blocked
    now[0] += timedelta(minutes=5)
    await app.state.executor.deliver_tick()
    async with unit_of_work(app.state.sessionmaker) as session:
        assert (await session.get(Delivery, tried.id)).attempts == 2  # type: ignore[union-attr]
