"""The Grafana JSON datasource routes, checked against the plugin's protocol (restated in
tests/data/grafana_json_datasource.yaml) and against the native API."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import jsonschema
import psycopg
import pytest
import yaml
from litestar.testing import TestClient

from app.config import load_settings
from app.demo import copy_rows, demo_apps, generate_rows
from app.http.grafana import SERIES
from app.main import create_app
from app.stores.backend import Backend

PROTOCOL = Path(__file__).parent / "data" / "grafana_json_datasource.yaml"
NOW = datetime.now(UTC).replace(microsecond=0)
APPS = demo_apps()
KEY_ALL = "grafana-key-for-all-tenants-01"
KEY_ONE = "grafana-key-for-one-tenant-001"
ALL = {"Authorization": f"Bearer {KEY_ALL}"}


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(PROTOCOL.read_text())
    return loaded


def response_schema(spec: dict[str, Any], path: str) -> dict[str, Any] | None:
    """The schema a 200 answer of `path` must satisfy (None: only the status matters), with
    `#/definitions/...` references inlined."""

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return inline(spec["definitions"][node["$ref"].rsplit("/", 1)[1]])
            return {key: inline(value) for key, value in node.items()}
        if isinstance(node, list):
            return [inline(item) for item in node]
        return node

    return inline(spec["routes"][path]["answer"])  # type: ignore[no-any-return]


def conforms(spec: dict[str, Any], path: str, answer: Any) -> None:
    schema = response_schema(spec, path)
    assert schema is not None, f"the protocol gives no answer schema for {path}"
    jsonschema.validate(answer, schema)


def request_example(spec: dict[str, Any], path: str) -> Any:
    return spec["routes"][path]["request_example"]


@pytest.fixture
def grafana(database_url: str, pg_conn: psycopg.Connection[Any]) -> Iterator[TestClient[Any]]:
    pg_conn.execute("TRUNCATE workflow_execution")
    copy_rows(pg_conn, generate_rows(600, days=10, now=NOW))
    keys = f"{KEY_ALL}=*;{KEY_ONE}={APPS[0].tenant_id}"
    settings = load_settings({"STATS_DATABASE_URL": database_url, "STATS_API_KEYS": keys})
    with TestClient(app=create_app(settings, Backend(database_url, settings))) as client:
        yield client


def _range(days: int, zone: str) -> tuple[str, str, list[date]]:
    """A Grafana range ending now, and the local days it touches."""
    start = NOW - timedelta(days=days)
    tz = ZoneInfo(zone)
    first, last = start.astimezone(tz).date(), (NOW - timedelta(microseconds=1)).astimezone(tz).date()
    touched = [first + timedelta(days=n) for n in range((last - first).days + 1)]
    return start.isoformat().replace("+00:00", "Z"), NOW.isoformat().replace("+00:00", "Z"), touched


def test_health_and_auth(grafana: TestClient[Any]) -> None:
    assert grafana.get("/grafana", headers=ALL).status_code == 200
    assert grafana.get("/grafana").status_code == 401
    assert grafana.post("/grafana/metrics", json={}).status_code == 401


def test_metrics_catalogue_conforms(grafana: TestClient[Any], spec: dict[str, Any]) -> None:
    example = request_example(spec, "/metrics")
    answer = grafana.post("/grafana/metrics", json=example, headers=ALL)
    assert answer.status_code == 200
    conforms(spec, "/metrics", answer.json())
    names = [metric["value"] for metric in answer.json()]
    assert names == [
        "daily_runs", "daily_terminals", "token_costs", "average_interactions",
        "runs_succeeded", "runs_failed", "runs_stopped", "runs_partial_succeeded", "runs_running",
        "runs_paused", "failure_rate",
        "duration_count", "duration_p50", "duration_p95", "duration_p99", "duration_max",
        "runs_by_status", "recent_runs",
    ]  # fmt: skip
    assert {payload["name"] for payload in answer.json()[0]["payloads"]} == {
        "app_id",
        "triggered_from",
        "timezone",
    }


def test_payload_options_conform_and_respect_tenants(grafana: TestClient[Any], spec: dict[str, Any]) -> None:
    example = request_example(spec, "/metric-payload-options")
    unknown = grafana.post("/grafana/metric-payload-options", json=example, headers=ALL)
    assert (unknown.status_code, unknown.json()) == (200, [])
    body = {"metric": "daily_runs", "payload": {}, "name": "app_id"}
    every = grafana.post("/grafana/metric-payload-options", json=body, headers=ALL).json()
    conforms(spec, "/metric-payload-options", every)
    assert {option["value"] for option in every} == {app.app_id for app in APPS}
    mine = grafana.post(
        "/grafana/metric-payload-options", json=body, headers={"Authorization": f"Bearer {KEY_ONE}"}
    )
    assert {option["value"] for option in mine.json()} == {
        app.app_id for app in APPS if app.tenant_id == APPS[0].tenant_id
    }
    triggers = grafana.post(
        "/grafana/metric-payload-options", json={**body, "name": "triggered_from"}, headers=ALL
    )
    assert "app-run" in {option["value"] for option in triggers.json()}


def test_daily_series_are_zero_filled_local_midnights_equal_to_the_native_answer(
    grafana: TestClient[Any], spec: dict[str, Any]
) -> None:
    app = APPS[0]
    zone = "Asia/Kolkata"
    start, end, days = _range(7, zone)
    payload = {"app_id": app.app_id, "timezone": zone}
    body = {
        "range": {"from": start, "to": end, "raw": {"from": "now-7d", "to": "now"}},
        "targets": [
            {"refId": "A", "target": "daily_runs", "payload": payload},
            {"refId": "B", "target": "average_interactions", "payload": payload},
            {"refId": "C", "target": "runs_by_status", "payload": {"app_id": app.app_id}},
        ],
        "interval": "1h", "intervalMs": 3_600_000, "maxDataPoints": 1000, "panelId": 2,
    }  # fmt: skip
    answer = grafana.post("/grafana/query", json=body, headers=ALL)
    assert answer.status_code == 200, answer.text
    conforms(spec, "/query", answer.json())
    runs, interactions, table = answer.json()
    tz = ZoneInfo(zone)
    midnights = [int(datetime(d.year, d.month, d.day, tzinfo=tz).timestamp() * 1000) for d in days]
    assert [point[1] for point in runs["datapoints"]] == midnights
    native = grafana.get(
        f"/v1/tenants/{app.tenant_id}/apps/{app.app_id}/statistics/daily-runs",
        params={"start": start, "end": end, "timezone": zone},
        headers=ALL,
    ).json()["data"]
    by_day = {item["date"]: item["runs"] for item in native}
    assert [point[0] for point in runs["datapoints"]] == [float(by_day.get(d.isoformat(), 0)) for d in days]
    assert sum(point[0] for point in runs["datapoints"]) > 0
    assert len(interactions["datapoints"]) == len(days)
    assert table["type"] == "table" and [column["text"] for column in table["columns"]] == ["status", "runs"]
    assert {row[0] for row in table["rows"]} == {
        "running",
        "succeeded",
        "failed",
        "stopped",
        "partial-succeeded",
        "paused",
    }


def test_status_and_duration_series_equal_the_native_answers_with_gaps_where_no_value(
    grafana: TestClient[Any], spec: dict[str, Any]
) -> None:
    """One series per status and per duration statistic, each the native answer's field per local
    day; counts are 0 on days without runs, the failure rate and durations a null gap there."""
    app = APPS[0]
    zone = "America/New_York"
    start, end, days = _range(14, zone)  # the demo's 10 days and 4 days before them without runs
    payload = {"app_id": app.app_id, "timezone": zone}
    metrics = [name for name in SERIES if name.startswith(("runs_", "failure_rate", "duration_"))]
    body = {
        "range": {"from": start, "to": end},
        "targets": [{"target": m, "payload": payload} for m in metrics],
    }
    answer = grafana.post("/grafana/query", json=body, headers=ALL)
    assert answer.status_code == 200, answer.text
    conforms(spec, "/query", answer.json())
    series = {item["target"]: [value for value, _ in item["datapoints"]] for item in answer.json()}
    assert list(series) == metrics and len(metrics) == 12
    base = f"/v1/tenants/{app.tenant_id}/apps/{app.app_id}/statistics"
    window = {"start": start, "end": end, "timezone": zone}
    statuses = {
        p["date"]: p for p in grafana.get(f"{base}/daily-status", params=window, headers=ALL).json()["data"]
    }
    durations = {
        p["date"]: p for p in grafana.get(f"{base}/daily-duration", params=window, headers=ALL).json()["data"]
    }
    assert len(statuses) >= 9 and sum(p["failed"] for p in statuses.values()) > 0
    for metric, values in series.items():
        native, field, empty = (
            (durations, metric.removeprefix("duration_"), None)
            if metric.startswith("duration_")
            else (statuses, metric.removeprefix("runs_"), None if metric == "failure_rate" else 0)
        )
        if metric == "duration_count":
            empty = 0
        assert values == [
            float(native[d.isoformat()][field])
            if d.isoformat() in native and native[d.isoformat()][field] is not None
            else empty
            for d in days
        ], metric
    assert None in series["failure_rate"] and None in series["duration_p95"]  # the days without runs
    assert 0.0 in series["runs_failed"] and None not in series["runs_failed"]


@pytest.mark.parametrize("filters_field", ["filters", "adhocFilters"])
def test_ad_hoc_filters_old_and_new_plugin_bodies(grafana: TestClient[Any], filters_field: str) -> None:
    """Bodies shaped as the plugin sends them: every payload value a string, extra fields."""
    app = APPS[1]
    start, end, _ = _range(10, "UTC")
    target = {
        "datasource": {"type": "simpod-json-datasource", "uid": "dify-stats"}, "editorMode": "builder",
        "payload": {"app_id": app.app_id, "timezone": "UTC"}, "refId": "A", "target": "daily_runs",
    }  # fmt: skip
    body = {
        "app": "dashboard", "requestId": "Q100", "timezone": "browser", "panelId": 4, "dashboardUID": "dify",
        "range": {"from": start, "to": end, "raw": {"from": "now-10d", "to": "now"}},
        "rangeRaw": {"from": "now-10d", "to": "now"}, "interval": "10m", "intervalMs": 600000,
        "targets": [target],
        "maxDataPoints": 1200, "scopedVars": {"__interval": {"text": "10m", "value": "10m"}}, "startTime": 1,
        filters_field: [{"key": "triggered_from", "operator": "=", "value": "debugging"}],
    }  # fmt: skip
    answer = grafana.post("/grafana/query", json=body, headers=ALL)
    assert answer.status_code == 200, answer.text
    native = grafana.get(
        f"/v1/tenants/{app.tenant_id}/apps/{app.app_id}/statistics/daily-runs",
        params={"start": start, "end": end, "triggered_from": "debugging"},
        headers=ALL,
    ).json()["data"]
    assert sum(point[0] for point in answer.json()[0]["datapoints"]) == sum(item["runs"] for item in native)


def test_two_ad_hoc_filters_on_one_key_are_a_400_naming_it(grafana: TestClient[Any]) -> None:
    """Grafana ANDs ad-hoc filters: status=failed and status=succeeded match nothing, in either
    order, and neither may silently win; the same filter twice is that filter."""
    start, end, _ = _range(10, "UTC")
    body = {"range": {"from": start, "to": end},
            "targets": [{"target": "runs_by_status", "payload": {"app_id": APPS[0].app_id}}]}  # fmt: skip
    failed = {"key": "status", "operator": "=", "value": "failed"}
    succeeded = {"key": "status", "operator": "=", "value": "succeeded"}
    for filters in ([failed, succeeded], [succeeded, failed]):
        for field in ("filters", "adhocFilters"):
            answer = grafana.post("/grafana/query", json={**body, field: filters}, headers=ALL)
            assert answer.status_code == 400, answer.text
            assert answer.json()["message"].startswith("filters: two filters on 'status'")
        split = {"filters": filters[:1], "adhocFilters": filters[1:]}  # one in each list
        assert grafana.post("/grafana/query", json={**body, **split}, headers=ALL).status_code == 400
    alone = grafana.post("/grafana/query", json={**body, "filters": [failed]}, headers=ALL)
    twice = grafana.post(
        "/grafana/query", json={**body, "filters": [failed], "adhocFilters": [failed]}, headers=ALL
    )
    assert alone.status_code == twice.status_code == 200 and alone.json() == twice.json()


@pytest.mark.parametrize("status", ["failed", "running", "paused"])
def test_the_status_filter_applies_to_the_daily_series(grafana: TestClient[Any], status: str) -> None:
    """Series count only the runs whose latest status matches: as many as the status table says."""
    app = APPS[0]
    start, end, _ = _range(10, "Asia/Kolkata")
    targets = [
        {"target": name, "payload": {"app_id": app.app_id, "timezone": "Asia/Kolkata"}}
        for name in ("daily_runs", "runs_by_status", "daily_terminals")
    ]

    def query(filters: list[dict[str, str]]) -> Any:
        body = {"range": {"from": start, "to": end}, "targets": targets, "filters": filters}
        answer = grafana.post("/grafana/query", json=body, headers=ALL)
        assert answer.status_code == 200, answer.text
        return answer.json()

    runs, table, users = query([{"key": "status", "operator": "=", "value": status}])
    everything, _, all_users = query([])
    [[_, count]] = table["rows"]
    assert 0 < sum(value for value, _ in runs["datapoints"]) == count
    assert count < sum(value for value, _ in everything["datapoints"])
    assert all(
        filtered <= unfiltered
        for (filtered, _), (unfiltered, _) in zip(users["datapoints"], all_users["datapoints"], strict=True)
    )


def test_recent_runs_table(grafana: TestClient[Any], spec: dict[str, Any]) -> None:
    app = APPS[0]
    start, end, _ = _range(3, "UTC")
    body = {
        "range": {"from": start, "to": end},
        "targets": [{"refId": "A", "target": "recent_runs", "payload": {"app_id": [app.app_id]}}],
        "filters": [{"key": "status", "operator": "=", "value": "succeeded"}],
    }
    answer = grafana.post("/grafana/query", json=body, headers=ALL)
    assert answer.status_code == 200, answer.text
    conforms(spec, "/query", answer.json())
    table = answer.json()[0]
    assert 0 < len(table["rows"]) <= 50 and {row[2] for row in table["rows"]} == {"succeeded"}
    assert [row[0] for row in table["rows"]] == sorted((row[0] for row in table["rows"]), reverse=True)


@pytest.mark.parametrize(
    ("zone", "trigger"), [("America/New_York", "app-run"), ("Etc/GMT+8", "rag-pipeline-run")]
)
def test_payload_values_regex_escaped_by_grafana_are_read_as_the_plain_value(
    grafana: TestClient[Any], zone: str, trigger: str
) -> None:
    """Grafana interpolates `$timezone` in a builder payload with its regex format (seen by running
    the plugin's DataSource.ts with Grafana's scenes interpolator): `America/New_York` arrives as
    `America\\/New_York`. The answer must be that of the plain value."""
    app = APPS[0]
    start, end, _ = _range(10, zone)

    def series(payload: dict[str, Any]) -> Any:
        body = {
            "range": {"from": start, "to": end},
            "targets": [{"target": "daily_runs", "payload": payload}],
        }
        answer = grafana.post("/grafana/query", json=body, headers=ALL)
        assert answer.status_code == 200, answer.text
        return answer.json()

    escaped = {
        "app_id": app.app_id,
        "timezone": re.sub(r"([\\^$*+?.()|\[\]{}/])", r"\\\1", zone),
        "triggered_from": trigger,
    }
    assert "\\" in escaped["timezone"]
    plain = series({"app_id": app.app_id, "timezone": zone, "triggered_from": trigger})
    assert series(escaped) == plain


def test_a_multi_value_app_variable_is_a_400_naming_app_id(grafana: TestClient[Any]) -> None:
    start, end, _ = _range(1, "UTC")
    for chosen in (f"({APPS[0].app_id}|{APPS[1].app_id})", [APPS[0].app_id, APPS[1].app_id]):
        body = {
            "range": {"from": start, "to": end},
            "targets": [{"target": "daily_runs", "payload": {"app_id": chosen}}],
        }
        answer = grafana.post("/grafana/query", json=body, headers=ALL)
        assert answer.status_code == 400
        assert answer.json()["message"] == "app_id: choose exactly one value per query"


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"targets": [{"target": "daily_runs", "payload": {}}]}, "app_id"),
        ({"targets": [{"target": "bogus", "payload": {"app_id": APPS[0].app_id}}]}, "target"),
        ({"range": {"from": "yesterday", "to": "now"}}, "range.from"),
        ({"filters": [{"key": "status", "operator": "!=", "value": "failed"}]}, "filters"),
        ({"filters": [{"key": "region", "operator": "=", "value": "eu"}]}, "filters"),
        (
            {
                "targets": [
                    {"target": "daily_runs", "payload": {"app_id": "a9000000-0000-4000-8000-0000000000a9"}}
                ]
            },
            "app_id",
        ),
        ({"targets": "not a list"}, "targets"),
        (
            {
                "targets": [
                    {"target": "daily_runs", "payload": {"app_id": APPS[0].app_id, "triggered_from": False}}
                ]
            },
            "triggered_from: must be a text, not a boolean",
        ),
        (
            {"targets": [{"target": "daily_runs", "payload": {"app_id": APPS[0].app_id, "timezone": 0}}]},
            "timezone: must be a text, not a number",
        ),
        (
            {
                "targets": [
                    {"target": "daily_runs", "payload": {"app_id": APPS[0].app_id, "timezone": "localtime"}}
                ]
            },
            "timezone: unknown time zone 'localtime'",
        ),
    ],
)
def test_bad_payloads_are_a_400_with_a_message(
    grafana: TestClient[Any], change: dict[str, Any], needle: str
) -> None:
    start, end, _ = _range(1, "UTC")
    body = {
        "range": {"from": start, "to": end},
        "targets": [{"target": "daily_runs", "payload": {"app_id": APPS[0].app_id}}],
    }
    answer = grafana.post("/grafana/query", json={**body, **change}, headers=ALL)
    assert answer.status_code == 400
    assert needle in answer.json()["message"]


def test_another_tenants_app_is_refused(grafana: TestClient[Any]) -> None:
    start, end, _ = _range(1, "UTC")
    other = next(app for app in APPS if app.tenant_id != APPS[0].tenant_id)
    body = {
        "range": {"from": start, "to": end},
        "targets": [{"target": "daily_runs", "payload": {"app_id": other.app_id}}],
    }
    answer = grafana.post("/grafana/query", json=body, headers={"Authorization": f"Bearer {KEY_ONE}"})
    assert answer.status_code == 400 and "app_id" in answer.json()["message"]


def test_variable_and_tags_conform(grafana: TestClient[Any], spec: dict[str, Any]) -> None:
    variable = grafana.post(
        "/grafana/variable", json={"payload": {"target": "apps"}, "range": {}}, headers=ALL
    )
    assert variable.status_code == 200
    conforms(spec, "/variable", variable.json())
    assert {item["__value"] for item in variable.json()} == {app.app_id for app in APPS}
    keys = grafana.post("/grafana/tag-keys", json={}, headers=ALL)
    conforms(spec, "/tag-keys", keys.json())
    assert [key["text"] for key in keys.json()] == ["triggered_from", "status"]
    values = grafana.post("/grafana/tag-values", json={"key": "status"}, headers=ALL)
    assert values.status_code == 200 and {"text": "paused"} in values.json()


def test_reversed_or_too_long_ranges_name_the_range_field(grafana: TestClient[Any]) -> None:
    target = [{"target": "daily_runs", "payload": {"app_id": APPS[0].app_id}}]
    reversed_range = {"from": "2026-11-10T00:00:00Z", "to": "2026-11-01T00:00:00Z"}
    too_long = {"from": "2020-01-01T00:00:00Z", "to": "2026-11-01T00:00:00Z"}
    for window, needle in (
        (reversed_range, "range.from: must not be after range.to"),
        (too_long, "range.to"),
    ):
        answer = grafana.post("/grafana/query", json={"range": window, "targets": target}, headers=ALL)
        assert answer.status_code == 400 and needle in answer.json()["message"]


PLUGIN_REQUESTS = json.loads((Path(__file__).parent / "data" / "grafana_plugin_requests.json").read_text())


@pytest.mark.parametrize(
    "recorded",
    PLUGIN_REQUESTS["requests"],
    ids=[f"{item['url']}-{n}" for n, item in enumerate(PLUGIN_REQUESTS["requests"])],
)
def test_requests_recorded_from_the_plugin_get_the_answers_they_got(
    grafana: TestClient[Any], spec: dict[str, Any], recorded: dict[str, Any]
) -> None:
    """Bodies the plugin's own code sent (see the file's `about`), with the range moved to now:
    each gets the status it got then, answers conform to the protocol, series cover the range."""
    body = recorded.get("body")
    if body and "range" in body:
        start, end, _ = _range(30, "UTC")
        body = {**body, "range": {**body["range"], "from": start, "to": end}}
    answer = grafana.request(recorded["method"], recorded["url"], json=body, headers=ALL)
    assert answer.status_code == recorded["status"], answer.text
    if answer.status_code != 200:
        assert "timezone" in answer.json()["message"]
        return
    path = recorded["url"].removeprefix("/grafana") or "/"
    assert recorded["method"].lower() == spec["routes"][path]["method"]
    if response_schema(spec, path) is not None:  # `/` and `/tag-values`: only the status matters
        conforms(spec, path, answer.json())
    if recorded["url"] == "/grafana/query" and body["targets"][0]["target"] in SERIES:
        zone = body["targets"][0]["payload"]["timezone"].replace("\\", "")
        assert len(answer.json()[0]["datapoints"]) == len(_range(30, zone)[2])


@pytest.mark.parametrize("range_days", [400, 100], ids=["default-history", "shorter-history"])
def test_an_app_without_runs_in_the_last_90_days_is_answered_over_its_history(
    database_url: str, pg_conn: psycopg.Connection[Any], range_days: int
) -> None:
    """Every run 120-130 days old: Grafana answers it, with a `*` key and with the tenant's own,
    exactly as the native API does, as far back as a range may reach (STATS_MAX_RANGE_DAYS, 400 by
    default); with ranges of at most 100 days the app is outside the list, and the 400 says so."""
    pg_conn.execute("TRUNCATE workflow_execution")
    old_now = NOW - timedelta(days=120)
    copy_rows(pg_conn, generate_rows(300, days=10, now=old_now))
    keys = f"{KEY_ALL}=*;{KEY_ONE}={APPS[0].tenant_id}"
    settings = load_settings(
        {"STATS_DATABASE_URL": database_url, "STATS_API_KEYS": keys, "STATS_MAX_RANGE_DAYS": str(range_days)}
    )
    app = APPS[0]
    start = (old_now - timedelta(days=12)).isoformat().replace("+00:00", "Z")
    end = (old_now + timedelta(days=1)).isoformat().replace("+00:00", "Z")
    body = {
        "range": {"from": start, "to": end},
        "targets": [{"target": "daily_runs", "payload": {"app_id": app.app_id}}],
    }
    with TestClient(app=create_app(settings, Backend(database_url, settings))) as client:
        native = client.get(
            f"/v1/tenants/{app.tenant_id}/apps/{app.app_id}/statistics/daily-runs",
            params={"start": start, "end": end},
            headers=ALL,
        ).json()["data"]
        assert sum(item["runs"] for item in native) > 0
        for key in (KEY_ALL, KEY_ONE):
            answer = client.post("/grafana/query", json=body, headers={"Authorization": f"Bearer {key}"})
            listed = client.post("/grafana/variable", json={}, headers={"Authorization": f"Bearer {key}"})
            if range_days == 100:
                assert answer.status_code == 400
                assert "runs in the last 100 days" in answer.json()["message"], answer.text
                assert "STATS_MAX_RANGE_DAYS" in answer.json()["message"]
                assert listed.json() == []
                continue
            assert answer.status_code == 200, answer.text
            by_day = {item["date"]: item["runs"] for item in native}
            series = {
                datetime.fromtimestamp(ms / 1000, UTC).date().isoformat(): runs
                for runs, ms in answer.json()[0]["datapoints"]
            }
            assert {day: runs for day, runs in series.items() if runs} == by_day
            assert app.app_id in {item["value"] for item in listed.json()}
