"""docker-compose.yml cannot run here (no Docker engine); check that it parses and is wired."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def test_compose_wires_postgres_app_and_scalable_workers() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"db", "app", "worker"} <= set(services)

    db = services["db"]
    assert db["image"].startswith("postgres:")
    assert any(v.startswith("pgdata:") for v in db["volumes"]) and "pgdata" in compose["volumes"]
    assert "healthcheck" in db

    app, worker = services["app"], services["worker"]
    assert app["command"][:2] == ["smartbench", "serve"] and app["expose"] == ["8080"] and "ports" not in app
    assert worker["command"] == ["smartbench", "worker"]
    assert "ports" not in worker and "container_name" not in worker  # so `--scale worker=N` works
    for service in (app, worker):
        env = service["environment"]
        assert (
            env["SMARTBENCH_DATABASE_URL"].startswith("postgresql+psycopg://")
            and "@db:5432/" in env["SMARTBENCH_DATABASE_URL"]
        )
        assert env["SMARTBENCH_ENV"] == "production"
        assert "SMARTBENCH_SECRET_KEY" in env and "SMARTBENCH_ENCRYPTION_KEYS" in env
        assert service["depends_on"]["db"]["condition"] == "service_healthy"
    assert worker["image"] == app["image"]
    # An agent: the same image, only outbound HTTPS to the dashboard, its token from the environment.
    agent = services["agent"]
    assert agent["command"][:2] == ["smartbench", "agent"] and agent["image"] == app["image"]
    assert (
        "SMARTBENCH_DATABASE_URL" not in agent["environment"]
        and "SMARTBENCH_AGENT_TOKEN" in agent["environment"]
    )
    assert "--token" not in agent["command"] and "ports" not in agent


def test_the_kubernetes_agent_runs_the_agent_with_its_token_from_a_secret() -> None:
    [deployment] = list(yaml.safe_load_all((ROOT / "deploy/kubernetes/agent.yaml").read_text()))
    assert deployment["kind"] == "Deployment"
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert container["command"][:2] == ["smartbench", "agent"]
    assert any(a.startswith("--location=") for a in container["command"])
    assert any(a.startswith("--url=https://") for a in container["command"])
    [token] = container["env"]
    assert token["name"] == "SMARTBENCH_AGENT_TOKEN" and "secretKeyRef" in token["valueFrom"]


def test_dockerfile_installs_the_package_and_serves() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert "pip install ." in text and '"smartbench", "serve"' in text
    for path in ("app", "migrations", "templates", "static"):
        assert f"COPY {path} ./{path}" in text


def test_compose_serves_over_tls_through_a_trusted_proxy() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    proxy, app = services["proxy"], services["app"]
    assert proxy["image"].startswith("caddy:") and "app:8080" in proxy["command"]
    assert {"80:80", "443:443"} <= set(proxy["ports"])
    address = proxy["networks"]["default"]["ipv4_address"]
    assert app["environment"]["SMARTBENCH_TRUSTED_PROXIES"] == address
    assert app["environment"]["SMARTBENCH_PUBLIC_URL"].startswith("https://")
    subnet = compose["networks"]["default"]["ipam"]["config"][0]["subnet"]
    assert ipaddress.ip_address(address) in ipaddress.ip_network(subnet)
