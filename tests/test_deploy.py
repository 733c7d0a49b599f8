"""Deployment recipes: the nginx snippet routes every console path we serve (and nothing else),
the Grafana dashboard and provisioning refer to what the service offers, compose files exist."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from app.grafana import SERIES, TABLES

ROOT = Path(__file__).resolve().parents[1]
APP = "8483f8b8-332d-4331-ba0b-9965cda6c6fd"
RUN = "3f2c1a9e-5b7d-4e1f-9a2b-6c8d0e4f1a3b"


def nginx_location_pattern() -> re.Pattern[str]:
    text = (ROOT / "deploy" / "nginx-dify-stats.conf").read_text()
    found = re.search(r"^location ~ (\S+) \{$", text, re.MULTILINE)
    assert found, "no regex location in the nginx snippet"
    return re.compile(found.group(1))


def our_console_paths(client_app: Any) -> list[str]:
    paths = [route.path for route in client_app.routes if route.path.startswith("/console/api/")]
    return [path.replace("{app_id:str}", APP).replace("{run_id:str}", RUN) for path in paths]


def test_nginx_routes_every_console_path_we_serve_and_nothing_else(service_settings: Any) -> None:
    from app.backend import Backend
    from app.main import create_app

    pattern = nginx_location_pattern()
    app = create_app(service_settings, Backend(service_settings.database_url, service_settings))
    served = our_console_paths(app)
    assert len(served) == 7
    for path in served:
        assert pattern.match(path), path
    for dify_only in (
        f"/console/api/apps/{APP}",
        f"/console/api/apps/{APP}/workflow-runs/{RUN}/node-executions",
        f"/console/api/apps/{APP}/workflow-runs/tasks/{RUN}/stop",
        f"/console/api/apps/{APP}/workflow/statistics/unknown",
        f"/console/api/apps/{APP}/statistics/daily-conversations",
        "/console/api/workspaces/current",
    ):
        assert not pattern.match(dify_only), dify_only


def test_readme_shows_the_same_nginx_block() -> None:
    snippet = (ROOT / "deploy" / "nginx-dify-stats.conf").read_text()
    assert snippet in (ROOT / "README.md").read_text()


def test_dashboard_panels_use_our_metrics_and_the_app_variable() -> None:
    dashboard = json.loads((ROOT / "grafana" / "dify-stats-dashboard.json").read_text())
    variables = {variable["name"]: variable for variable in dashboard["templating"]["list"]}
    assert {"datasource", "app", "triggered_from", "timezone"} <= set(variables)
    assert variables["app"]["type"] == "query"
    metrics = {target["target"] for panel in dashboard["panels"] for target in panel["targets"]}
    assert metrics == set(SERIES) | set(TABLES)
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            assert target["payload"]["app_id"] == "$app"
            assert panel["datasource"]["type"] == "simpod-json-datasource"


def test_provisioning_points_grafana_at_the_datasource_route_with_a_key() -> None:
    provisioned = yaml.safe_load(
        (ROOT / "grafana" / "provisioning" / "datasources" / "dify-stats.yaml").read_text()
    )
    source = provisioned["datasources"][0]
    assert source["type"] == "simpod-json-datasource" and source["url"].endswith("/grafana")
    assert source["jsonData"]["httpHeaderName1"] == "Authorization"
    assert source["secureJsonData"]["httpHeaderValue1"].startswith("Bearer ")


def test_compose_mounts_files_that_exist() -> None:
    compose = yaml.safe_load((ROOT / "deploy" / "docker-compose.yml").read_text())
    grafana = compose["services"]["grafana"]
    assert "simpod-json-datasource" in grafana["environment"]["GF_INSTALL_PLUGINS"]
    for volume in grafana["volumes"]:
        source = volume.split(":")[0]
        assert (ROOT / "deploy" / source).resolve().exists(), source
    assert (ROOT / "deploy" / compose["services"]["dify-stats"]["build"] / "Dockerfile").exists()
