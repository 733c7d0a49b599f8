"""Deployment recipes: the nginx snippet routes every console path we serve (and nothing else),
the Grafana dashboard and provisioning refer to what the service offers, compose files exist."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from app.http.grafana import SERIES, TABLES
from tests.live import free_port, wait_until_answering

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
    from app.main import create_app
    from app.stores.backend import Backend

    pattern = nginx_location_pattern()
    app = create_app(service_settings, Backend(service_settings.database_url, service_settings))
    served = our_console_paths(app)
    assert len(served) == 10
    for path in served:
        assert pattern.match(path), path
    for dify_only in (
        f"/console/api/apps/{APP}",
        f"/console/api/apps/{APP}/workflow-runs/tasks/{RUN}/stop",
        f"/console/api/apps/{APP}/workflow-runs/{RUN}/export",
        f"/console/api/apps/{APP}/workflow/statistics/unknown",
        f"/console/api/apps/{APP}/statistics/daily-conversations",
        f"/console/api/apps/{APP}/advanced-chat/workflow-runs/{RUN}",
        f"/console/api/apps/{APP}/advanced-chat/workflows/draft/run",
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
    panels = [panel for panel in dashboard["panels"] if panel["type"] != "row"]  # rows only group
    metrics = {target["target"] for panel in panels for target in panel["targets"]}
    assert metrics == set(SERIES) | set(TABLES)
    for panel in panels:
        for target in panel["targets"]:
            assert target["payload"]["app_id"] == "$app"
            assert panel["datasource"]["type"] == "simpod-json-datasource"


def test_the_dashboard_has_a_row_of_failure_rate_and_p95_duration_per_app() -> None:
    """The operators' row: below the other panels, holding the failure rate (a ratio from 0 to 1)
    and the p95 duration (seconds) of the chosen app over the dashboard's range."""
    dashboard = json.loads((ROOT / "grafana" / "dify-stats-dashboard.json").read_text())
    panels = dashboard["panels"]
    rows = [panel for panel in panels if panel["type"] == "row"]
    assert len(rows) == 1 and "$app" in rows[0]["title"]
    below = [panel for panel in panels if panel["gridPos"]["y"] > rows[0]["gridPos"]["y"]]
    others = [panel for panel in panels if panel["type"] != "row" and panel not in below]
    assert rows[0]["gridPos"]["y"] >= max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in others)
    by_metric = {target["target"]: panel for panel in below for target in panel["targets"]}
    assert by_metric["failure_rate"]["fieldConfig"]["defaults"]["unit"] == "percentunit"
    assert by_metric["failure_rate"]["fieldConfig"]["defaults"]["max"] == 1
    assert by_metric["duration_p95"]["fieldConfig"]["defaults"]["unit"] == "s"
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids))


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


SNIPPET = ROOT / "deploy" / "nginx-dify-stats.conf"


def test_nginx_resolves_dify_stats_per_request_and_falls_back_to_a_json_502() -> None:
    """A name in a literal proxy_pass is resolved when nginx starts, and an absent dify-stats
    would then stop Dify's whole nginx; a variable with a resolver is resolved per request."""
    text = SNIPPET.read_text()
    assert re.search(r"^\s*resolver \S+", text, re.MULTILINE)
    upstream = re.search(r"^\s*set (\$\w+) (http://dify-stats:8000);$", text, re.MULTILINE)
    assert upstream, "proxy_pass must take the upstream from a variable"
    assert re.search(rf"^\s*proxy_pass \{upstream.group(1)};$", text, re.MULTILINE)
    fallback = re.search(r"error_page 502 503 504 = (@\w+);", text)
    assert fallback
    named = re.search(rf"^location {fallback.group(1)} \{{(.*?)^\}}", text, re.MULTILINE | re.DOTALL)
    assert named and "return 502" in named.group(1)
    body = re.search(r"return 502 '(.*)';", named.group(1))
    assert body and json.loads(body.group(1))["status"] == 502


def nginx_conf(tmp: Path, port: int, snippet: str) -> Path:
    """A minimal nginx.conf: Dify's server block stands in as a `location /` answering 200."""
    user = "user root;\n" if os.geteuid() == 0 else ""
    conf = tmp / "nginx.conf"
    conf.write_text(
        f"{user}pid {tmp}/nginx.pid;\nerror_log {tmp}/error.log;\nevents {{}}\n"
        f"http {{\n access_log off;\n client_body_temp_path {tmp}/body;\n proxy_temp_path {tmp}/proxy;\n"
        f" fastcgi_temp_path {tmp}/fastcgi;\n uwsgi_temp_path {tmp}/uwsgi;\n scgi_temp_path {tmp}/scgi;\n"
        f" server {{\n  listen 127.0.0.1:{port};\n{snippet}\n"
        "  location / { return 200 'dify ui'; }\n }\n}\n"
    )
    return conf


@contextmanager
def running_nginx(nginx: str, conf: Path, port: int) -> Iterator[str]:
    process = subprocess.Popen(  # noqa: S603 - nginx on a file this test wrote
        [nginx, "-p", str(conf.parent), "-c", str(conf), "-g", "daemon off;"],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        wait_until_answering(f"http://127.0.0.1:{port}/", 20, process)
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=20)


@pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed (apt-get install nginx)")
def test_nginx_starts_without_dify_stats_and_only_our_paths_answer_502(tmp_path: Path, client: Any) -> None:
    nginx = str(shutil.which("nginx"))
    # Nothing answers DNS on this port: the name cannot be resolved, as when dify-stats is absent.
    snippet = re.sub(r"resolver \S+", f"resolver 127.0.0.1:{free_port()}", SNIPPET.read_text())
    snippet = snippet.replace("resolver_timeout 5s", "resolver_timeout 1s")
    port = free_port()
    conf = nginx_conf(tmp_path, port, snippet)
    checked = subprocess.run(  # noqa: S603
        [nginx, "-t", "-p", str(tmp_path), "-c", str(conf)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert checked.returncode == 0, checked.stderr
    with running_nginx(nginx, conf, port) as base:
        assert httpx.get(f"{base}/apps", timeout=10).text == "dify ui"
        ours = httpx.get(f"{base}/console/api/apps/{APP}/workflow-runs/count", timeout=20)
        assert ours.status_code == 502 and ours.json()["code"] == "dify_stats_unavailable"
        assert httpx.get(f"{base}/console/api/apps/{APP}", timeout=10).text == "dify ui"


@pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed (apt-get install nginx)")
def test_nginx_passes_our_paths_and_dify_stats_answers_through_it(
    tmp_path: Path, service_settings: Any
) -> None:
    from app.main import create_app
    from app.stores.backend import Backend
    from tests.live import serve

    nginx = str(shutil.which("nginx"))
    app = create_app(service_settings, Backend(service_settings.database_url, service_settings))
    with serve(app) as stats:
        snippet = SNIPPET.read_text().replace("http://dify-stats:8000", stats)  # an address, no lookup
        port = free_port()
        with running_nginx(nginx, nginx_conf(tmp_path, port, snippet), port) as base:
            answer = httpx.get(f"{base}/console/api/apps/{APP}/workflow-runs/count", timeout=20)
    # dify-stats' own answer (no DIFY_CONSOLE_API_URL here), not nginx's fallback
    assert answer.status_code == 503 and "DIFY_CONSOLE_API_URL" in answer.json()["message"]


def test_compose_reads_the_logstore_from_either_variable_and_joins_difys_network() -> None:
    compose = yaml.safe_load((ROOT / "deploy" / "docker-compose.yml").read_text())
    stats = compose["services"]["dify-stats"]
    environment = stats["environment"]
    assert ":?" not in environment["STATS_DATABASE_URL"], "STATS_DATABASE_URL must be optional"
    for name in (
        "ALIYUN_SLS_ACCESS_KEY_ID", "ALIYUN_SLS_ACCESS_KEY_SECRET", "ALIYUN_SLS_ENDPOINT",
        "ALIYUN_SLS_PROJECT_NAME",
    ):  # fmt: skip
        assert environment[name] == f"${{{name}:-}}", name
    external = [name for name, network in compose["networks"].items() if network.get("external")]
    assert external and set(external) <= set(stats["networks"])
    from app.config import load_settings

    # What compose hands the service when only Dify's SLS variables are set: a usable setting.
    passed = {name: "" for name in environment} | {
        "ALIYUN_SLS_ACCESS_KEY_ID": "ak",
        "ALIYUN_SLS_ACCESS_KEY_SECRET": "sk",
        "ALIYUN_SLS_ENDPOINT": "cn-hangzhou.log.aliyuncs.com",
        "ALIYUN_SLS_PROJECT_NAME": "p",
        "STATS_API_KEYS": "k" * 16 + "=*",
        "STATS_STARTUP_WAIT": "60",
    }
    settings = load_settings(passed)
    assert settings.dialect == "sls" and settings.database_url and settings.startup_wait == 60


def test_compose_runs_three_replicas_on_difys_redis_behind_an_nginx() -> None:
    compose = yaml.safe_load((ROOT / "deploy" / "docker-compose.yml").read_text())
    stats, balancer = compose["services"]["dify-stats"], compose["services"]["dify-stats-lb"]
    assert stats["deploy"]["replicas"] == 3 and "ports" not in stats  # only the balancer listens
    redis_url = stats["environment"]["STATS_REDIS_URL"]
    assert redis_url.startswith("redis://:${REDIS_PASSWORD") and "${REDIS_HOST:-redis}" in redis_url
    assert redis_url.endswith("/${STATS_REDIS_DB:-5}")  # a database of its own, beside Dify's 0
    from app.config import load_settings

    resolved = redis_url.replace("${REDIS_PASSWORD:-difyai123456}", "difyai123456")
    resolved = re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", resolved)
    settings = load_settings({"STATS_REDIS_URL": resolved})
    assert settings.redis is not None and settings.redis.redacted() == "redis://:***@redis:6379/5"
    mounted = [volume.split(":")[0] for volume in balancer["volumes"]]
    assert mounted == ["./nginx-replicas.conf"] and (ROOT / "deploy" / mounted[0]).exists()
    assert compose["services"]["grafana"]["environment"]["DIFY_STATS_URL"] == "http://dify-stats-lb:8000"
    conf = (ROOT / "deploy" / "nginx-replicas.conf").read_text()
    assert "set $dify_stats_replicas http://dify-stats:8000;" in conf and "resolver 127.0.0.11" in conf


@pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed (apt-get install nginx)")
def test_the_balancer_config_is_valid_nginx(tmp_path: Path) -> None:
    server = (ROOT / "deploy" / "nginx-replicas.conf").read_text()
    user = "user root;\n" if os.geteuid() == 0 else ""
    conf = tmp_path / "nginx.conf"
    head = f"{user}pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\n"
    conf.write_text(f"{head}http {{\n{server}\n}}\n")
    checked = subprocess.run(  # noqa: S603
        [str(shutil.which("nginx")), "-t", "-p", str(tmp_path), "-c", str(conf)],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stderr


KUBERNETES = ROOT / "deploy" / "kubernetes"


def _manifests() -> dict[str, dict[str, Any]]:
    found = {}
    for path in sorted(KUBERNETES.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            found[document["kind"]] = document
    return found


def test_kubernetes_manifests_validate_against_the_schemas() -> None:
    """Each manifest against Kubernetes' own OpenAPI schemas (the kubernetes-validate package
    ships them), strictly: an unknown or misplaced field fails."""
    import kubernetes_validate

    manifests = _manifests()
    assert set(manifests) == {"ConfigMap", "Deployment", "PodDisruptionBudget", "Secret", "Service"}
    for manifest in manifests.values():
        for version in ("1.28.0", kubernetes_validate.latest_version()):
            kubernetes_validate.validate(manifest, version, strict=True)
    broken = json.loads(json.dumps(manifests["Deployment"]))
    broken["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}  # a typo
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, kubernetes_validate.latest_version(), strict=True)


def test_kubernetes_replicas_are_probed_hardened_and_get_secrets_from_the_secret() -> None:
    manifests = _manifests()
    deployment = manifests["Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert deployment["spec"]["replicas"] == 3
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    hardening = container["securityContext"]
    assert hardening["readOnlyRootFilesystem"] is True and hardening["allowPrivilegeEscalation"] is False
    assert hardening["capabilities"]["drop"] == ["ALL"]
    assert {"configMapRef": {"name": "dify-stats"}} in container["envFrom"]
    assert {"secretRef": {"name": "dify-stats"}} in container["envFrom"]
    secret, config = manifests["Secret"]["stringData"], manifests["ConfigMap"]["data"]
    assert {"STATS_REDIS_URL", "STATS_API_KEYS", "ALIYUN_SLS_ACCESS_KEY_SECRET"} <= set(secret)
    assert not any("SECRET" in name or "PASSWORD" in name or "KEYS" in name for name in config)
    pdb = manifests["PodDisruptionBudget"]["spec"]
    assert pdb["maxUnavailable"] == 1 and pdb["selector"] == deployment["spec"]["selector"]
    assert manifests["Service"]["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    from app.config import load_settings

    settings = load_settings({**config, **secret, "STATS_HOST": "0.0.0.0"})  # noqa: S104 - in a pod
    assert settings.redis is not None and settings.dialect == "sls" and settings.pool_size == 5
