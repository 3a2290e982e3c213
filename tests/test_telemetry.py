"""Server telemetry during runs and measured energy, against the simulator's known power model
and latencies."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from app.probe.telemetry import parse, reduce
from tests.conftest import bearer
from tests.simproc import simulator
from tests.test_probe_cli import smartbench

# The simulator's power model (presets.SimConfig defaults, "fixed" preset: 1 GPU, 700 W peak,
# 100 W idle, max_batch 256): with one request running, 100 + 600 x (0.6 + 0.4 / 256) W.
IDLE_WATTS = 100.0
BUSY_WATTS_ONE_STREAM = IDLE_WATTS + 600 * (0.6 + 0.4 / 256)


def test_tokens_per_joule_from_the_dcgm_counter_within_one_percent() -> None:
    with simulator("--preset", "fixed", "--ttft-ms", "20", "--itl-ms", "2") as url:
        root = url.removesuffix("/v1")
        out = smartbench("probe", "--base-url", url, "--model", "sim", "--concurrency", "1", "--duration", "4",
                         "--output-tokens", "256", "--metrics-url", root + "/metrics", "--json", "-")  # fmt: skip
    assert out.returncode == 0, out.stderr
    step = json.loads(out.stdout)["steps"][0]
    telemetry = step["telemetry"]
    assert telemetry["energy_source"] == "energy counter" and step["energy_source"] == "measured"
    # Between one request's end and the next send the server idles (the client's turnaround,
    # longer on a busy machine): the model's mean power is weighted by the share of the step a
    # request was running, which the step's own figures give.
    busy = min(1.0, step["requests"]["completed"] * step["e2e_ms"]["mean"] / 1000.0 / step["duration_s"])
    expected = step["output_tokens_per_s"] / (IDLE_WATTS + (BUSY_WATTS_ONE_STREAM - IDLE_WATTS) * busy)
    assert step["tokens_per_joule"] == pytest.approx(expected, rel=0.01)
    # The server's own latency, from its histograms, is the simulator's configured delays.
    assert telemetry["server_ttft_ms"] == pytest.approx(20.0, rel=0.1)
    assert telemetry["server_itl_ms"] == pytest.approx(2.0, rel=0.1)
    assert telemetry["scrapes"] >= 4 and len(telemetry["series"]) == telemetry["scrapes"]
    assert telemetry["running_max"] == 1


@pytest.mark.parametrize(
    ("text", "running", "waiting", "kv"),
    [
        ("# TYPE sglang:num_running_reqs gauge\nsglang:num_running_reqs{dp=\"0\"} 3\nsglang:num_running_reqs{dp=\"1\"} 4\n"
         "# TYPE sglang:num_queue_reqs gauge\nsglang:num_queue_reqs 2\n# TYPE sglang:token_usage gauge\n"
         "sglang:token_usage{dp=\"0\"} 0.5\nsglang:token_usage{dp=\"1\"} 0.7\n", 7, 2, 0.6),
        ("# TYPE dynamo_frontend_inflight_requests gauge\ndynamo_frontend_inflight_requests{model=\"m\"} 9\n"
         "# TYPE dynamo_frontend_queued_requests gauge\ndynamo_frontend_queued_requests{model=\"m\"} 1\n", 9, 1, None),
        ("# TYPE tgi_batch_current_size gauge\ntgi_batch_current_size 5\n# TYPE tgi_queue_size gauge\n"
         "tgi_queue_size 0\n", 5, 0, None),
    ],
)  # fmt: skip
def test_each_engines_names_are_read(text: str, running: float, waiting: float, kv: float | None) -> None:
    energy = '# TYPE DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION counter\nDCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{gpu="0"} %d\n'
    found = reduce([parse(text + energy % 1000, 10.0), parse(text + energy % 501000, 12.0)], "x")
    assert found is not None
    assert (found.running_mean, found.waiting_mean) == (running, waiting)
    assert found.kv_usage_mean == (pytest.approx(kv) if kv is not None else None)
    assert found.energy_j == pytest.approx(500.0) and found.power_w == pytest.approx(250.0)


async def test_a_dashboard_run_keeps_telemetry_and_prices_measured_energy(idle_app, people) -> None:  # type: ignore[no-untyped-def]
    app = idle_app
    profile = {"name": "sweep", "input_tokens_mean": 32, "output_tokens_mean": 64, "load_levels": [1, 4],
               "duration_per_step_s": 2.5, "slo_ttft_ms": 1000, "slo_tpot_ms": 100, "target_price_per_million": 1.0}  # fmt: skip
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as client:
        auth = await bearer(client, "editor")
        assert (await client.post("/api/v1/profiles", json=profile, headers=auth)).status_code == 201
        with simulator("--preset", "fixed", "--ttft-ms", "10", "--itl-ms", "2", "--engine", "vllm") as url:
            made = await client.post("/api/v1/endpoints", json={
                "name": "metered", "base_url": url, "model": "sim", "gpu_count": 1, "price_per_gpu_hour": 2.0,
                "watts_per_gpu": 700, "electricity_price_per_kwh": 0.5,
                "metrics_url": url.removesuffix("/v1") + "/metrics"}, headers=auth)  # fmt: skip
            assert made.status_code == 201, made.text
            endpoint_id = made.json()["id"]
            accepted = await client.post(
                f"/api/v1/endpoints/{endpoint_id}/runs", json={"profile": "sweep"}, headers=auth
            )
            assert await app.state.executor.tick() is True
            await asyncio.wait_for(asyncio.gather(*app.state.executor.active), timeout=90)
        run_id = accepted.json()["run_id"]
        summary = (await client.get(f"/api/v1/runs/{run_id}", headers=auth)).json()
        assert summary["status"] == "succeeded", summary["error"]
        for step in summary["steps"]:
            telemetry = step["telemetry"]
            assert telemetry["energy_source"] == "energy counter" and step["energy_source"] == "measured"
            watts = telemetry["power_w"]
            assert 100 < watts < 700  # between idle and peak, as the model says
            # Hand computation: $2/h for the GPU + measured kW x $0.5/kWh, per million tokens.
            hourly = 2.0 + watts / 1000 * 0.5
            assert step["cost_per_million_tokens"] == pytest.approx(
                hourly / (step["total_tokens_per_s"] * 3600) * 1e6
            )
            assert step["tokens_per_joule"] == pytest.approx(step["output_tokens_per_s"] / watts)
        heavier = summary["steps"][1]["telemetry"]
        assert heavier["running_max"] >= 3  # four streams in the second step
        page = await client.get(f"/runs/{run_id}", headers=auth)
        assert 'data-chart="server_state"' in page.text and 'data-chart="server_latency"' in page.text
        assert "measured" in page.text
