"""docker-compose.yml, infra/nginx.conf and infra/Dockerfile agree with the code: the same
service modules the launcher runs, only real CHAT_* settings, and a config nginx accepts."""

from __future__ import annotations

import dataclasses
import re
import shlex
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from chatkit.settings import Settings, env_name
from devstack.launcher import GATEWAY, SERVICE_PACKAGES
from tests.support.system_programs import require_program

ROOT = Path(__file__).resolve().parent.parent
NGINX_CONF = ROOT / "infra" / "nginx.conf"


@pytest.fixture(scope="module")
def services() -> dict[str, dict[str, Any]]:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(compose, dict) and isinstance(compose.get("services"), dict)
    found: dict[str, dict[str, Any]] = compose["services"]
    return found


def _command(service: dict[str, Any]) -> list[str]:
    command = service.get("command", [])
    return shlex.split(command) if isinstance(command, str) else [str(part) for part in command]


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(key): str(value) for key, value in env.items()}


def _upstreams() -> dict[str, list[str]]:
    text = NGINX_CONF.read_text()
    return {
        name: re.findall(r"^\s*server\s+([^\s;]+)", body, re.MULTILINE)
        for name, body in re.findall(r"upstream\s+(\w+)\s*\{([^}]*)\}", text)
    }


def test_launcher_services_are_packaged() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packaged = {pattern.rstrip("*") for pattern in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]}
    assert set(SERVICE_PACKAGES) <= packaged, f"expected every launched service in pyproject, got {packaged}"
    for package in SERVICE_PACKAGES:
        assert (ROOT / package / "__main__.py").exists(), f"expected {package}/__main__.py (python -m {package})"


def test_compose_runs_no_module_the_launcher_does_not(services: dict[str, dict[str, Any]]) -> None:
    modules = {
        command[2] for command in map(_command, services.values()) if command[:2] == ["python", "-m"]
    }
    assert modules == set(SERVICE_PACKAGES)


@pytest.mark.parametrize("package", SERVICE_PACKAGES)
def test_compose_runs_each_service_like_the_launcher(services: dict[str, dict[str, Any]], package: str) -> None:
    commands = {name: _command(service) for name, service in services.items()}
    running = [name for name, command in commands.items() if command == ["python", "-m", package]]
    assert running, f"expected a compose service with command python -m {package}, got {commands}"


def test_compose_uses_only_settings_variables(services: dict[str, dict[str, Any]]) -> None:
    known = {env_name(field.name) for field in dataclasses.fields(Settings)}
    for name, service in services.items():
        unknown = {var for var in _environment(service) if var.startswith("CHAT_")} - known
        assert not unknown, f"{name}: {sorted(unknown)} are not Settings fields (expected some of {known})"


def test_app_services_reach_the_stores(services: dict[str, dict[str, Any]]) -> None:
    for package in SERVICE_PACKAGES:
        env = _environment(services[package])
        assert env[env_name("redis_url")] == "redis://redis:6379/0"
        assert re.fullmatch(r"postgresql://chat:.+@db:5432/chat", env[env_name("database_url")])
        assert services[package]["depends_on"]["redis"]["condition"] == "service_healthy"
        assert services[package]["depends_on"]["db"]["condition"] == "service_healthy"
    assert _environment(services["auth_service"])[env_name("secret")] == "${CHAT_SECRET:?set CHAT_SECRET}"


def test_stores_persist_and_report_health(services: dict[str, dict[str, Any]]) -> None:
    redis_command = _command(services["redis"])
    assert "--appendonly" in redis_command
    assert redis_command[redis_command.index("--appendonly") + 1] == "yes"
    for name in ("redis", "db"):
        assert services[name].get("volumes"), f"expected {name} to keep its data in a volume"
        assert services[name].get("healthcheck"), f"expected a healthcheck on {name}"


def test_gateway_is_replicated_and_health_checked(services: dict[str, dict[str, Any]]) -> None:
    gateway = services[GATEWAY]
    assert gateway["deploy"]["replicas"] >= 2
    assert "/readyz" in " ".join(_command({"command": gateway["healthcheck"]["test"]}))
    assert _environment(gateway)[env_name("host")] == "0.0.0.0"
    assert "ports" not in gateway, "replicas can't share host ports; nginx is the entry point"
    nginx = services["nginx"]
    assert "8080:80" in nginx["ports"]
    assert GATEWAY in nginx["depends_on"]


def test_nginx_upstream_is_the_gateway_service(services: dict[str, dict[str, Any]]) -> None:
    port = _environment(services[GATEWAY]).get(env_name("port"), str(Settings().port))
    upstreams = _upstreams()
    assert upstreams == {"gateways": [f"{GATEWAY}:{port}"]}
    text = NGINX_CONF.read_text()
    assert "proxy_pass http://gateways;" in text
    assert "proxy_set_header Upgrade $http_upgrade;" in text
    assert "location = /healthz" in text
    mounts = " ".join(services["nginx"]["volumes"])
    assert "./infra/nginx.conf:/etc/nginx/nginx.conf" in mounts


def test_nginx_accepts_the_config(tmp_path: Path) -> None:
    nginx = require_program("nginx", "nginx", "checking infra/nginx.conf")
    # Outside Docker "gateway" does not resolve and /var/log may not be ours: point both local.
    text = NGINX_CONF.read_text().replace(f"server {GATEWAY}:", "server 127.0.0.1:")
    text = text.replace("/var/log/nginx/", f"{tmp_path}/").replace("/var/run/nginx.pid", f"{tmp_path}/nginx.pid")
    config = tmp_path / "nginx.conf"
    config.write_text(text)
    result = subprocess.run(
        [nginx, "-t", "-p", str(tmp_path), "-e", str(tmp_path / "error.log"), "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, f"expected nginx -t to pass, got {result.returncode}: {result.stderr}"


def test_dockerfile_ships_every_service() -> None:
    dockerfile = (ROOT / "infra" / "Dockerfile").read_text()
    assert dockerfile.startswith("#") and "FROM python:3.11-slim" in dockerfile
    for package in SERVICE_PACKAGES:
        assert f"COPY {package} ./{package}" in dockerfile
