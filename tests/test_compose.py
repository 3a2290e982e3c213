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
