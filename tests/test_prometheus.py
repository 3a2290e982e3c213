"""/metrics as Prometheus reads it: it parses with prometheus_client's parser, carries each
endpoint's latest measured figures, and every metric the shipped Grafana dashboard queries
exists."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import bearer
from tests.simproc import simulator

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "smartbench.json"
QUICK = {"name": "quick", "input_tokens_mean": 32, "output_tokens_mean": 16, "load_levels": [1, 2],
         "requests_per_step": 4, "slo_ttft_ms": 1000, "slo_tpot_ms": 100, "target_price_per_million": 1.0}  # fmt: skip


def dashboard_metrics() -> set[str]:
    exprs = [t["expr"] for panel in json.loads(DASHBOARD.read_text())["panels"] for t in panel["targets"]]
    return {name for expr in exprs for name in re.findall(r"\b(smartbench_[a-z_]+)", expr)}


async def test_exposition_parses_and_carries_the_latest_figures(idle_app, people) -> None:  # type: ignore[no-untyped-def]
    app = idle_app
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as client:
        auth, reader = await bearer(client, "editor"), await bearer(client, "viewer", read_only=True)
        assert (await client.post("/api/v1/profiles", json=QUICK, headers=auth)).status_code == 201
        with simulator("--preset", "fixed", "--ttft-ms", "10", "--itl-ms", "1") as url:
            made = await client.post("/api/v1/endpoints", json={"name": "prom one", "base_url": url, "model": "sim",
                                     "gpu_count": 1, "price_per_gpu_hour": 2.0}, headers=auth)  # fmt: skip
            accepted = await client.post(f"/api/v1/endpoints/{made.json()['id']}/runs", json={"profile": "quick"},
                                         headers=auth)  # fmt: skip
            assert await app.state.executor.tick() is True
            await asyncio.wait_for(asyncio.gather(*app.state.executor.active), timeout=90)
        summary = (await client.get(f"/api/v1/runs/{accepted.json()['run_id']}", headers=auth)).json()
        assert summary["status"] == "succeeded"
        text = (await client.get("/metrics", headers=reader)).text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert dashboard_metrics() <= set(families), dashboard_metrics() - set(families)

    def value(name: str, **labels: str) -> float:
        return next(
            s.value for s in families[name].samples if all(s.labels.get(k) == v for k, v in labels.items())
        )

    who = {"endpoint": "prom one", "profile": "quick", "location": "local"}  # every series says where from
    card = {e["letter"]: e["score"] for e in summary["scorecard"]["letters"]}
    for letter, score in card.items():
        if score is not None:
            assert value("smartbench_letter_score", letter=letter, **who) == pytest.approx(score, rel=1e-5)
    op = summary["scorecard"]["operating_point"]
    assert value("smartbench_cost_per_million_tokens", **who) == pytest.approx(
        op["cost_per_million_tokens"], rel=1e-5
    )
    step = summary["steps"][op["step_index"]]
    assert value("smartbench_latency_ms", metric="ttft", stat="p99", **who) == pytest.approx(
        step["ttft_ms"]["p99"], rel=1e-5
    )
    assert value("smartbench_endpoint_runs", endpoint="prom one", location="local", status="succeeded") == 1
    assert value("smartbench_last_success_timestamp_seconds", endpoint="prom one") > 1.7e9


def test_compose_provisions_prometheus_and_grafana_with_the_dashboard() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert services["prometheus"]["image"].startswith("prom/prometheus")
    assert services["grafana"]["image"].startswith("grafana/grafana")
    mounted = [v.split(":")[0] for v in services["grafana"]["volumes"]] + [
        v.split(":")[0] for v in services["prometheus"]["volumes"]
    ]
    for path in (
        "./deploy/grafana/provisioning",
        "./deploy/grafana/dashboards",
        "./deploy/prometheus/prometheus.yml",
    ):
        assert path in mounted and (ROOT / path).exists()
    scrape = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())["scrape_configs"][0]
    assert scrape["static_configs"][0]["targets"] == ["app:8080"] and scrape["metrics_path"] == "/metrics"
    assert dashboard_metrics() >= {"smartbench_letter_score", "smartbench_cost_per_million_tokens"}
