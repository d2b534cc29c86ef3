"""docker-compose.yml as a real implementation reads it: Debian's docker-compose (1.29) parses,
resolves and validates the file without a Docker engine. Every service is health-checked (the
application services on their /readyz), the consumers run two replicas, and every dependency
waits for health."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from devstack.launcher import GATEWAY, WORKERS
from tests.support.system_programs import require_program

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
# What the file requires (${...:?}) to resolve at all.
_ENV = {"POSTGRES_PASSWORD": "compose-test-password", "CHAT_SECRET": "compose-test-secret"}


def _compose(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    program = require_program("docker-compose", "docker-compose", "validating docker-compose.yml")
    env = {key: value for key, value in os.environ.items() if not key.startswith(("CHAT_", "COMPOSE_"))}
    return subprocess.run(
        [program, "--project-directory", str(ROOT), "-f", str(path), *args],
        env={**env, **_ENV}, capture_output=True, text=True, timeout=60, check=False,
    )


@pytest.fixture(scope="module")
def resolved() -> dict[str, Any]:
    """The file after docker-compose resolved anchors, merges and variables."""
    result = _compose(COMPOSE, "--profile", "monitoring", "config")
    assert result.returncode == 0, f"expected docker-compose config to accept the file: {result.stderr}"
    config = yaml.safe_load(result.stdout)
    assert isinstance(config, dict)
    return config


def test_docker_compose_validates_the_file() -> None:
    result = _compose(COMPOSE, "config", "-q")
    assert result.returncode == 0, f"expected exit 0, got {result.returncode}: {result.stderr}"


def test_docker_compose_names_a_misspelt_option(tmp_path: Path) -> None:
    text = COMPOSE.read_text()
    assert "stop_grace_period:" in text
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(text.replace("stop_grace_period:", "stop_grace_perod:"))
    result = _compose(broken, "config", "-q")
    assert result.returncode == 1, f"expected exit 1 on a misspelt option, got {result.returncode}"
    assert "stop_grace_perod" in result.stderr, result.stderr


def test_every_service_is_health_checked(resolved: dict[str, Any]) -> None:
    services: dict[str, Any] = resolved["services"]
    unchecked = [name for name, service in services.items() if "test" not in service.get("healthcheck", {})]
    assert unchecked == [], f"expected a healthcheck on every service, none on {unchecked}"
    for name in (*WORKERS, GATEWAY):
        test = " ".join(services[name]["healthcheck"]["test"])
        port = "8000" if name == GATEWAY else services[name]["environment"]["CHAT_METRICS_PORT"]
        assert f"http://127.0.0.1:{port}/readyz" in test, f"{name}: expected its /readyz checked, got {test}"
        assert port in [str(p) for p in services[name]["expose"]], f"{name}: expected port {port} exposed"
    for name in WORKERS:
        assert services[name]["environment"]["CHAT_METRICS_HOST"] == "0.0.0.0"


def test_consumers_run_two_replicas(resolved: dict[str, Any]) -> None:
    for name in ("chat_service", "storage_worker", GATEWAY):
        assert resolved["services"][name]["deploy"]["replicas"] >= 2, name


def test_every_dependency_waits_for_health(resolved: dict[str, Any]) -> None:
    for name, service in resolved["services"].items():
        for dependency, how in (service.get("depends_on") or {}).items():
            assert how == {"condition": "service_healthy"}, f"{name} -> {dependency}: {how}"
    assert {"auth_service", "chat_service"} <= set(resolved["services"][GATEWAY]["depends_on"])
