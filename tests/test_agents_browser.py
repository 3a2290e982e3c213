"""The agents page in a real browser: an admin mints an agent token for a location (shown once),
an agent started with it appears online with its labels, and revoking the token stops it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, require_chromium, serve

pytestmark = pytest.mark.browser


def test_mint_a_token_see_the_agent_online_and_revoke_it(tmp_path: Path) -> None:
    require_chromium()
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    home = tmp_path / "agent-home"
    home.mkdir()
    agent: subprocess.Popen[bytes] | None = None
    (tmp_path / "dash").mkdir()
    with serve(tmp_path / "dash") as server, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page()
        problems: list[str] = []
        page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
        page.on("pageerror", lambda exc: problems.append(str(exc)))
        page.on("dialog", lambda dialog: dialog.accept())
        page.set_default_timeout(15_000)
        try:
            page.goto(server.url)
            page.fill("#f-username", server.admin_user)
            page.fill("#f-password", server.admin_password)
            page.click("button[type=submit]")
            page.fill("#f-current", server.admin_password)
            page.fill("#f-new", "my-own-password-1")
            page.fill("#f-again", "my-own-password-1")
            page.click("form.form button[type=submit]")
            expect(page.locator(".alert.ok")).to_contain_text("was changed")

            page.click("nav.mainnav >> text=Agents")
            expect(page.locator("h1")).to_have_text("Agents")
            page.fill("#f-location", "local")  # reserved: the form says why and keeps the values
            page.fill("#f-name", "eu agents")
            page.click("text=Create agent token")
            expect(page.locator("#f-location")).to_have_value("local")
            expect(page.locator("form.form")).to_contain_text("reserved")
            page.fill("#f-location", "eu-west")
            page.click("text=Create agent token")
            token = page.locator("#new-agent-token").inner_text().strip()
            assert token.startswith("sba_")

            env = {k: v for k, v in os.environ.items() if not k.startswith("SMARTBENCH_")}
            env["SMARTBENCH_AGENT_TOKEN"] = token
            with (home / "agent.log").open("wb") as log:
                agent = subprocess.Popen(
                    [sys.executable, "-m", "app.cli", "agent", "--url", server.url, "--location", "eu-west",
                     "--label", "rack=r7"],
                    stdout=log, stderr=subprocess.STDOUT, env=env, cwd=home,
                )  # fmt: skip
            deadline = time.monotonic() + 30
            while True:
                page.goto(server.url.rstrip("/") + "/agents")
                if page.locator('#agents-table tr[data-location="eu-west"][data-online="yes"]').count():
                    break
                assert time.monotonic() < deadline, (home / "agent.log").read_text()
                time.sleep(0.5)
            row = page.locator('#agents-table tr[data-location="eu-west"]')
            expect(row).to_contain_text("rack=r7")
            expect(row).to_contain_text("online")
            page.screenshot(path=str(ARTIFACTS / "agents.png"), full_page=True)

            page.locator("#agent-tokens form button", has_text="Revoke").click()
            expect(page.locator("#agent-tokens")).to_contain_text("revoked")
            assert agent.wait(timeout=40) == 3  # stopped at its next call
            assert "refused this agent's token" in (home / "agent.log").read_text()
            assert token not in (home / "agent.log").read_text()
            assert [p for p in problems if "status of 400" not in p] == []  # the refused form answers 400
        finally:
            if agent is not None and agent.poll() is None:
                agent.kill()
            browser.close()
