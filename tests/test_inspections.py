"""Inspections stored with runs and on demand, shown on the endpoint page and its JSON twin, and
scored into A and T, against simulators playing different engines."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import httpx

from tests.conftest import bearer, login
from tests.simproc import simulator

SMOKE = {"name": "tiny", "input_tokens_mean": 16, "output_tokens_mean": 8, "load_levels": [1],
         "requests_per_step": 3, "slo_ttft_ms": 1000, "slo_tpot_ms": 100, "target_price_per_million": 1.0}  # fmt: skip


async def _run(app, client: httpx.AsyncClient, auth: dict[str, str], endpoint_id: int) -> dict:  # type: ignore[no-untyped-def]
    accepted = await client.post(
        f"/api/v1/endpoints/{endpoint_id}/runs", json={"profile": "tiny"}, headers=auth
    )
    assert await app.state.executor.tick() is True
    await asyncio.wait_for(asyncio.gather(*app.state.executor.active), timeout=90)
    return (await client.get(f"/api/v1/runs/{accepted.json()['run_id']}", headers=auth)).json()


async def test_each_run_inspects_and_the_letters_follow(idle_app, people) -> None:  # type: ignore[no-untyped-def]
    app = idle_app
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as client:
        auth = await bearer(client, "editor")
        assert (await client.post("/api/v1/profiles", json=SMOKE, headers=auth)).status_code == 201
        letters = {}
        with (
            simulator("--preset", "fixed", "--ttft-ms", "5", "--itl-ms", "1", "--engine", "vllm",
                      "--engine-version", "0.11.0") as vllm_url,
            simulator("--preset", "fixed", "--ttft-ms", "5", "--itl-ms", "1", "--engine", "tgi",
                      "--engine-version", "3.3.4", "--break", "tool_calls") as tgi_url,
        ):  # fmt: skip
            for name, url, declared in (("v", vllm_url, "vllm"), ("t", tgi_url, "vllm")):
                made = await client.post("/api/v1/endpoints", json={"name": name, "base_url": url, "model": "sim",
                                         "engine": declared, "gpu_count": 1, "price_per_gpu_hour": 2.0},
                                         headers=auth)  # fmt: skip
                endpoint_id = made.json()["id"]
                summary = await _run(app, client, auth, endpoint_id)
                assert summary["status"] == "succeeded", summary["error"]
                inspected = summary["environment"]["inspection"]
                assert inspected["engine"] == ("vllm" if name == "v" else "tgi")
                card = (await client.get(f"/api/v1/endpoints/{endpoint_id}/scorecard", headers=auth)).json()
                letters[name] = {x["letter"]: x for x in card["items"][0]["letters"]}
                overview = (
                    await client.get(f"/api/v1/endpoints/{endpoint_id}/overview", headers=auth)
                ).json()
                assert overview["inspection"]["run_id"] == summary["run_id"]
                assert len(overview["inspection"]["checks"]) == 17
                if name == "t":
                    assert (
                        overview["inspection"]["warning"] == "declared vllm, but the endpoint looks like tgi"
                    )
                else:
                    assert overview["inspection"]["warning"] is None
                    assert overview["inspection"]["engine_version"] == "0.11.0"
    v, t = letters["v"], letters["t"]
    assert v["T"]["score"] is not None and t["T"]["score"] is not None
    # TGI here: errors not in OpenAI's shape (2 checks), tool calls broken: T lower; the engine
    # differs from the declared one and the error shapes matter to serving: A lower.
    assert t["T"]["score"] < v["T"]["score"]
    assert t["A"]["score"] < v["A"]["score"]
    labels = [e["label"] for e in t["A"]["evidence"]]
    assert any("detected engine (tgi) is the declared one (vllm)" in label for label in labels)


async def test_inspect_on_demand_and_the_page_shows_it(idle_app, people) -> None:  # type: ignore[no-untyped-def]
    app = idle_app
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as client:
        auth, viewer = await bearer(client, "editor"), await bearer(client, "viewer")
        with simulator("--preset", "fixed", "--ttft-ms", "5", "--itl-ms", "1", "--engine", "sglang",
                       "--break", "stop") as url:  # fmt: skip
            made = await client.post("/api/v1/endpoints", json={"name": "s", "base_url": url, "model": "sim"},
                                     headers=auth)  # fmt: skip
            endpoint_id = made.json()["id"]
            page = await client.get(f"/endpoints/{endpoint_id}", headers=auth)
            assert "not inspected yet" in page.text
            csrf = await login(client, "editor")
            pressed = await client.post(f"/endpoints/{endpoint_id}/inspect", data={"csrf_token": csrf})
            assert pressed.status_code == 303 and pressed.headers["location"].endswith("#serving")
            client.cookies.clear()
            again = await client.post(f"/api/v1/endpoints/{endpoint_id}/inspections", headers=auth)
            assert again.status_code == 429 and int(again.headers["retry-after"]) <= 30  # the cool-down
            later = datetime.now(UTC) + timedelta(seconds=31)
            app.state.clock = lambda: later
            made_api = await client.post(f"/api/v1/endpoints/{endpoint_id}/inspections", headers=auth)
            assert made_api.status_code == 201 and made_api.json()["engine"] == "sglang"
        listed = (await client.get(f"/api/v1/endpoints/{endpoint_id}/inspections", headers=viewer)).json()[
            "items"
        ]
        assert len(listed) == 2 and listed[0]["run_id"] is None
        stop = next(c for c in listed[0]["checks"] if c["id"] == "stop")
        assert stop["status"] == "failed" and "«…»" in stop["evidence"]  # viewers: no target excerpts
        as_editor = (await client.get(f"/api/v1/endpoints/{endpoint_id}/inspections", headers=auth)).json()[
            "items"
        ]
        assert "«…»" not in next(c for c in as_editor[0]["checks"] if c["id"] == "stop")["evidence"]
        page = await client.get(f"/endpoints/{endpoint_id}", headers=auth)
        assert 'id="checklist"' in page.text and "sglang" in page.text and "get_model_info" in page.text


async def test_the_checklist_carries_over_between_close_runs(idle_app, people) -> None:  # type: ignore[no-untyped-def]
    """Detection every run; the checklist's requests at most every 6 h, or when the engine or
    its version changed."""
    from sqlalchemy import update

    from app.db import unit_of_work
    from app.models import Inspection

    app = idle_app
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as client:
        auth = await bearer(client, "editor")
        assert (await client.post("/api/v1/profiles", json=SMOKE, headers=auth)).status_code == 201
        with simulator("--preset", "fixed", "--ttft-ms", "5", "--itl-ms", "1", "--engine", "vllm",
                       "--engine-version", "0.11.0") as url:  # fmt: skip
            made = await client.post("/api/v1/endpoints", json={"name": "c", "base_url": url, "model": "sim"},
                                     headers=auth)  # fmt: skip
            endpoint_id = made.json()["id"]
            first = (await _run(app, client, auth, endpoint_id))["environment"]["inspection"]
            second = (await _run(app, client, auth, endpoint_id))["environment"]["inspection"]
            async with unit_of_work(app.state.sessionmaker) as session:  # as if the engine was upgraded since
                await session.execute(update(Inspection).values(engine_version="0.10.2"))
            third = (await _run(app, client, auth, endpoint_id))["environment"]["inspection"]
    assert first["checks_at"] is None and len(first["checks"]) == 17
    assert second["checks_at"] is not None and second["checks"] == first["checks"]
    assert third["checks_at"] is None  # the version moved: the checklist ran again
