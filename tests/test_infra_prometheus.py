"""infra/prometheus (scrape config, alert rules and their unit tests) as promtool reads it, and
infra/grafana's provisioning and dashboard, agreeing with docker-compose.yml. That every metric
they query exists in some process's /metrics: tests/test_metrics_live.py."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.promql_names import ALERTS, DASHBOARDS, ROOT, alert_expressions, dashboard_expressions, metric_names
from tests.support.system_programs import require_program

PROMETHEUS = ROOT / "infra" / "prometheus"
GRAFANA = ROOT / "infra" / "grafana"


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    promtool = require_program("promtool", "prometheus", "checking infra/prometheus")
    return subprocess.run([promtool, *args], cwd=PROMETHEUS, capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize("args", [("check", "config", "prometheus.yml"), ("check", "rules", "alerts.yml"),
                                  ("test", "rules", "alerts_test.yml")], ids=" ".join)
def test_promtool_accepts(args: tuple[str, ...]) -> None:
    result = _promtool(*args)
    assert result.returncode == 0, f"promtool {' '.join(args)}: {result.stdout}{result.stderr}"


def test_promtool_refuses_a_broken_rule(tmp_path: Path) -> None:
    broken = tmp_path / "alerts.yml"
    assert "max by (stream, group) (chat_stream_group_pending)" in ALERTS.read_text()
    broken.write_text(ALERTS.read_text().replace("max by (stream, group) (chat_stream_group_pending)",
                                                 "max by (stream, group (chat_stream_group_pending)"))
    result = _promtool("check", "rules", str(broken))
    assert result.returncode == 1, result.stdout


def test_the_required_alerts_exist() -> None:
    assert {"GatewayNotReady", "ConsumerLagGrowing", "DeadLetters", "StorageBehind", "RequestErrorRate"} <= set(
        alert_expressions()
    )


def _compose() -> dict[str, Any]:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(compose, dict)
    return compose


def test_scrape_config_covers_every_compose_service() -> None:
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    services = _compose()["services"]
    targets = {
        name: int(sd["port"])
        for job in config["scrape_configs"] for sd in job["dns_sd_configs"] for name in sd["names"]
    }
    assert targets == {"gateway": 8000, "auth_service": 9100, "chat_service": 9100, "storage_worker": 9100}
    for name, port in targets.items():
        assert str(port) in [str(p) for p in services[name]["expose"]], f"{name} does not expose {port}"
    mounts = " ".join(services["prometheus"]["volumes"])
    assert "./infra/prometheus:/etc/prometheus" in mounts


def test_grafana_provisioning_matches_the_dashboard() -> None:
    datasource = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    uid = datasource["datasources"][0]["uid"]
    assert datasource["datasources"][0]["url"] == "http://prometheus:9090"
    dashboards = sorted(DASHBOARDS.glob("*.json"))
    assert dashboards
    for path in dashboards:
        dashboard = json.loads(path.read_text())
        assert dashboard["uid"] and dashboard["title"]
        ids = [panel["id"] for panel in dashboard["panels"]]
        assert len(ids) == len(set(ids)), f"{path.name}: panel ids repeat"
        for panel in dashboard["panels"]:
            for target in panel.get("targets", []):
                assert target["datasource"]["uid"] == uid, f"{panel['title']}: datasource {target['datasource']}"
    mounts = " ".join(_compose()["services"]["grafana"]["volumes"])
    assert "./infra/grafana/dashboards:/var/lib/grafana/dashboards" in mounts


def test_every_expression_names_a_metric() -> None:
    for where, expr in {**alert_expressions(), **dashboard_expressions()}.items():
        assert metric_names(expr), f"{where}: found no metric name in {expr!r}"


def test_metric_names_parser() -> None:
    expr = ('histogram_quantile(0.99, sum by (le, type) (rate(chat_x_seconds_bucket{type=~"a|b"}[$__rate_interval])))'
            ' / on (job) group_left up{job="g"} and max(foo:bar) > 0.5')
    assert metric_names(expr) == {"chat_x_seconds_bucket", "up", "foo:bar"}
