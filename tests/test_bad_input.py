"""Bad input is a 4xx in Dify's shape, never a 500, on a real socket: JSON nested deeper than a
decoder follows, instants at the calendar's edges, unknown routes and methods; and HEAD answers
wherever GET does."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest

from app.config import load_settings
from app.core.json_depth import MAX_DEPTH
from app.main import create_app
from app.stores.backend import Backend
from tests import examples
from tests.db import load_history
from tests.live import serve

BASE = f"/v1/tenants/{examples.T}/apps/{examples.A}"
POST_ROUTES = ("/grafana/query", "/grafana/metrics", "/grafana/metric-payload-options", "/grafana/variable",
               "/grafana/tag-keys", "/grafana/tag-values")  # fmt: skip


@pytest.fixture(scope="module")
def base_url(database_url: str) -> Iterator[str]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        load_history(conn, examples.history())
    settings = load_settings({"STATS_DATABASE_URL": database_url})
    with serve(create_app(settings, Backend(database_url, settings))) as url:
        yield url


def _dify_shaped(answer: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    body: dict[str, Any] = answer.json()
    assert body["code"] == code and body["status"] == status and body["message"]
    assert answer.headers["x-request-id"]
    return body


def test_json_nested_too_deeply_is_a_400_on_every_post_route(base_url: str) -> None:
    """Beyond the decoder's limit, and one level beyond the service's own bound (which the decoder
    would still read, but the answer's encoding might not)."""
    for depth in (3000, MAX_DEPTH + 1):
        deep = "[" * depth + "]" * depth
        for path in POST_ROUTES:
            answer = httpx.post(base_url + path, content=deep, headers={"content-type": "application/json"})
            message = _dify_shaped(answer, 400, "invalid_param")["message"]
            assert message == f"body: JSON nested more than {MAX_DEPTH} levels deep", path


def test_malformed_json_is_the_same_400_on_every_post_route(base_url: str) -> None:
    """Also on /grafana/tag-keys, which reads nothing from its body."""
    for path in POST_ROUTES:
        for body in ('{"range":', "{'targets': []}", "not json"):
            answer = httpx.post(base_url + path, content=body, headers={"content-type": "application/json"})
            message = _dify_shaped(answer, 400, "invalid_param")["message"]
            assert message.startswith("body: is not valid JSON"), (path, message)
    assert httpx.post(f"{base_url}/grafana/tag-keys", json={}).status_code == 200


def test_a_limit_that_is_not_written_in_digits_is_a_400(base_url: str) -> None:
    for limit in ("1e1", "10.0", "+10", " 10", "10 "):
        answer = httpx.get(f"{base_url}{BASE}/runs", params={"limit": limit})
        assert _dify_shaped(answer, 400, "invalid_param")["message"].startswith("limit: "), limit
    assert httpx.get(f"{base_url}{BASE}/runs", params={"limit": "10"}).json()["limit"] == 10


@pytest.mark.parametrize(
    ("path", "params", "message"),
    [
        ("/statistics/daily-runs", {"triggered_from": "app_run"},
         "triggered_from: must be one of: debugging, app-run, rag-pipeline-run, rag-pipeline-debugging, "
         "webhook, schedule, plugin"),
        ("/runs", {"status": "done"},
         "status: must be one of: running, succeeded, failed, stopped, partial-succeeded, paused"),
        ("/runs", {"last_id": examples.R1.replace("-", "")}, "last_id: must be a UUID"),
        ("/runs/count", {"time_range": "7x"}, "time_range: must be a number followed by d, h, m or s"),
        ("/statistics/daily-runs", {"start": "2025-13-01"},
         "start: '2025-13-01' is not a valid date: month must be in 1..12"),
        ("/statistics/daily-runs", {"end": "2025-02-30 10:00"},
         "end: '2025-02-30 10:00' is not a valid date-time: day is out of range for month"),
        ("/statistics/daily-runs", {"timezone": "asia/shanghai"},
         "timezone: unknown time zone 'asia/shanghai'; names are case-sensitive: "
         "did you mean 'Asia/Shanghai'?"),
        ("/statistics/daily-runs", {"start": "2025-03-01T08:00:00 08:00"},  # the `+` sent unencoded
         "start: its UTC offset lost its '+' (a '+' in a URL query means a space): write it as %2B"),
    ],
)  # fmt: skip
def test_messages_name_the_fix(base_url: str, path: str, params: dict[str, str], message: str) -> None:
    answer = httpx.get(f"{base_url}{BASE}{path}", params=params)
    assert _dify_shaped(answer, 400, "invalid_param")["message"].startswith(message)


# Names zoneinfo loads that are no IANA zone: the host's own zone (it differs between replicas that
# share cache keys, and tells a caller the host's zone), tzcode's stand-ins, the database's copies.
NOT_ZONES = ("localtime", "posixrules", "Factory", "right/UTC", "posix/UTC", "posix/Asia/Shanghai")


def test_only_iana_zone_names_are_zones(base_url: str) -> None:
    path = f"{base_url}{BASE}/statistics/daily-status"
    for zone in NOT_ZONES:
        answer = httpx.get(path, params={"timezone": zone})
        assert _dify_shaped(answer, 400, "invalid_param")["message"].startswith("timezone: "), zone
    for zone in ("UTC", "Etc/UTC", "Asia/Kolkata", "America/New_York", "Etc/GMT+12", "Asia/Shanghai"):
        assert httpx.get(path, params={"timezone": zone}).status_code == 200, zone


def test_an_id_without_dashes_must_be_a_uuid_wherever_it_is(base_url: str) -> None:
    undashed = examples.T.replace("-", "")
    for path in (f"/v1/tenants/{undashed}/apps/{examples.A}/runs", f"{BASE}/runs/{examples.R1[:-1]}",
                 f"/v1/tenants/{undashed}/apps"):  # fmt: skip
        message = _dify_shaped(httpx.get(base_url + path), 400, "invalid_param")["message"]
        assert message.split(": ", 1)[1].startswith("must be a UUID"), (path, message)


def test_instants_at_the_calendars_edges_are_400s(base_url: str) -> None:
    edges = (
        ("9999-12-31", "Pacific/Kiritimati"),
        ("0001-01-01", "Asia/Tokyo"),
        ("0001-01-01T00:00:00+14:00", "UTC"),
        ("9999-12-31T23:59:59-12:00", "UTC"),
    )
    for start, zone in edges:
        answer = httpx.get(
            f"{base_url}{BASE}/statistics/daily-runs", params={"start": start, "timezone": zone}
        )
        assert _dify_shaped(answer, 400, "invalid_param")["message"].startswith("start: ")
    for edge in ("9999-12-31T00:00:00Z", "0001-01-01T00:00:00+08:00"):
        body = {"range": {"from": edge, "to": "9999-12-31T23:00:00Z"}, "targets": []}
        answer = httpx.post(f"{base_url}/grafana/query", json=body)
        assert _dify_shaped(answer, 400, "invalid_param")["message"].startswith("range.from: ")


def test_unknown_routes_and_methods_are_dify_shaped_with_a_request_id(base_url: str) -> None:
    _dify_shaped(httpx.get(f"{base_url}/no/such/route"), 404, "not_found")
    for path in ("/schema/swagger", "/schema/nothing.json", "/schema/a/b"):  # the document's routes too
        _dify_shaped(httpx.get(f"{base_url}{path}"), 404, "not_found")
    _dify_shaped(httpx.post(f"{base_url}{BASE}/runs/count"), 405, "method_not_allowed")
    wrong_method = httpx.delete(f"{base_url}/healthz")
    _dify_shaped(wrong_method, 405, "method_not_allowed")
    assert set(wrong_method.headers["allow"].replace(" ", "").split(",")) >= {"GET", "HEAD"}
    metrics = httpx.get(f"{base_url}/metrics").text
    assert 'route="(no route)",status="404"' in metrics and 'route="(no route)",status="405"' in metrics


def test_head_answers_wherever_get_does(base_url: str) -> None:
    for path in ("/healthz", "/readyz", f"{BASE}/runs/count", f"{BASE}/statistics/daily-runs",
                 f"{BASE}/runs/{examples.R1}", "/grafana", "/schema", "/schema/openapi.json",
                 "/schema/openapi.yaml", "/schema/openapi.yml", "/schema/swagger"):  # fmt: skip
        got, head = httpx.get(base_url + path), httpx.head(base_url + path)
        assert (head.status_code, head.content) == (got.status_code, b""), path
        assert head.headers["content-type"] == got.headers["content-type"], path
