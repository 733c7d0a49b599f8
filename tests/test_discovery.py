"""Discovery: GET /v1/tenants/{tenant_id}/apps and GET /v1/tenants over the test PostgreSQL.

The routes (keys, 90-day window, cache, documented shapes) on the example history with the
service's clock set near it; the repository's counts against the reference over split histories,
in both dialects and every plan, in keyset pages as small as one row."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import jsonschema
import msgspec
import psycopg
import pytest
from hypothesis import given
from hypothesis import strategies as st
from litestar.testing import TestClient

from app.config import load_settings
from app.core.service import APPS_WINDOW_S
from app.main import create_app
from app.stores.backend import Backend
from queries.rows import AppActivityRow
from tests import examples, reference
from tests.db import load_history, load_two_sources
from tests.strategies import APPS, instants, split_histories
from tests.test_two_sources import Harness
from tests.test_two_sources import harness as harness  # its module-scoped fixture: backends opened once

T, U, A = examples.T, examples.U, examples.A
KEY_T = "discovery-key-tenant-t-0123"
KEY_ALL = "discovery-key-every-tenant-0123"
R4_CREATED_S = 1740852000  # 2025-03-01T18:00:00Z
R5_CREATED_S = 1740884400  # 2025-03-02T03:00:00Z, the newest run of tenant T


def _clock_at(client: TestClient[Any], now_s: float) -> None:
    client.app.state.service.wall_clock = lambda: now_s


@pytest.fixture
def keyed(database_url: str, pg_conn: psycopg.Connection[Any]) -> Iterator[TestClient[Any]]:
    load_history(pg_conn, examples.history())
    settings = load_settings(
        {"STATS_DATABASE_URL": database_url, "STATS_API_KEYS": f"{KEY_T}={T};{KEY_ALL}=*"}
    )
    with TestClient(app=create_app(settings, Backend(database_url, settings))) as client:
        _clock_at(client, R5_CREATED_S + 86_400)
        yield client


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_a_tenants_apps_with_run_count_and_last_run(keyed: TestClient[Any]) -> None:
    answer = keyed.get(f"/v1/tenants/{T.upper()}/apps", headers=_bearer(KEY_T))
    assert answer.status_code == 200, answer.text
    # r1..r5, every trigger source (r5 is debugging); r6 is tenant U's.
    assert answer.json() == {
        "since": R5_CREATED_S + 86_400 - APPS_WINDOW_S,
        "data": [{"app_id": A, "runs": 5, "last_run_at": R5_CREATED_S}],
    }
    assert answer.headers["x-cache"] == "miss"
    assert keyed.get(f"/v1/tenants/{T}/apps", headers=_bearer(KEY_T)).headers["x-cache"] == "hit"


def test_runs_created_before_the_90_day_window_are_left_out(keyed: TestClient[Any]) -> None:
    _clock_at(keyed, R4_CREATED_S + APPS_WINDOW_S)  # the window starts at r4's created time
    data = keyed.get(f"/v1/tenants/{T}/apps", headers=_bearer(KEY_ALL)).json()["data"]
    assert data == [{"app_id": A, "runs": 2, "last_run_at": R5_CREATED_S}]  # r4 and r5
    _clock_at(keyed, R5_CREATED_S + APPS_WINDOW_S + 1)
    assert keyed.get(f"/v1/tenants/{U}/apps", headers=_bearer(KEY_ALL)).json()["data"] == []


def test_tenants_busiest_first_for_a_key_of_every_tenant_only(keyed: TestClient[Any]) -> None:
    answer = keyed.get("/v1/tenants", headers=_bearer(KEY_ALL))
    assert answer.status_code == 200, answer.text
    assert answer.json()["data"] == [
        {"tenant_id": T, "apps": 1, "runs": 5, "last_run_at": R5_CREATED_S},
        {"tenant_id": U, "apps": 1, "runs": 1, "last_run_at": 1740844800},
    ]
    denied = keyed.get("/v1/tenants", headers=_bearer(KEY_T))
    assert denied.status_code == 403
    assert denied.json() == {
        "code": "forbidden",
        "message": "only a key for every tenant (key=*) may list tenants",
        "status": 403,
    }
    assert keyed.get("/v1/tenants").status_code == 401
    other = keyed.get(f"/v1/tenants/{U}/apps", headers=_bearer(KEY_T))
    assert (other.status_code, other.json()["code"]) == (403, "forbidden")
    bad = keyed.get("/v1/tenants/not-a-tenant/apps", headers=_bearer(KEY_ALL))
    assert bad.status_code == 400 and bad.json()["message"].startswith("tenant_id: ")


def test_with_auth_off_on_loopback_tenants_are_listed(client: TestClient[Any], pg_conn: Any) -> None:
    load_history(pg_conn, examples.history())
    _clock_at(client, R5_CREATED_S)
    answer = client.get("/v1/tenants")
    assert answer.status_code == 200
    assert [tenant["tenant_id"] for tenant in answer.json()["data"]] == [T, U]


def test_answers_validate_against_the_documented_schemas(keyed: TestClient[Any]) -> None:
    """tests/test_openapi.py checks these operations with the example history outside the window
    (empty lists); here the lists hold items."""
    document = keyed.get("/schema/openapi.json").json()
    for path, url in (
        ("/v1/tenants", "/v1/tenants"),
        ("/v1/tenants/{tenant_id}/apps", f"/v1/tenants/{T}/apps"),
    ):
        operation = document["paths"][path]["get"]
        schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
        body = keyed.get(url, headers=_bearer(KEY_ALL)).json()
        assert body["data"], path
        jsonschema.Draft202012Validator({**schema, "components": document["components"]}).validate(body)
        assert "90 days" in operation["description"] and "epoch seconds" in operation["description"]


def _reference_activity(
    history: list[reference.Version], tenant_id: str | None, since_us: int
) -> list[tuple[str, str, int, int]]:
    per_app: dict[tuple[str, str], tuple[int, int]] = {}
    for run in reference.latest_versions(history):
        created = reference.created_us(run)
        if created < since_us or tenant_id not in (None, run.tenant_id):
            continue
        runs, last = per_app.get((run.tenant_id, run.app_id), (0, 0))
        per_app[run.tenant_id, run.app_id] = (runs + 1, max(last, created))
    return [(tenant, app, runs, last) for (tenant, app), (runs, last) in sorted(per_app.items())]


def _since(data: st.DataObject, history: list[reference.Version]) -> int:
    """Often a run's created time, or a µs either side of one: the bound is inclusive."""
    if not history or data.draw(st.booleans()):
        return data.draw(instants())
    created = reference.created_us(data.draw(st.sampled_from(history)))
    return created + data.draw(st.sampled_from((0, 1, -1)))


def _rows(found: list[AppActivityRow]) -> list[tuple[str, str, int, int]]:
    return [(row.tenant_id, row.app_id, row.runs, row.last_created_us) for row in found]


@given(
    data=st.data(),
    tenant_id=st.none() | st.sampled_from(sorted({tenant for tenant, _ in APPS})),
    page_rows=st.sampled_from((1, 2, 500)),
)
def test_apps_count_each_run_once_across_the_boundary(
    pg_conn: psycopg.Connection[Any],
    harness: Harness,
    data: st.DataObject,
    tenant_id: str | None,
    page_rows: int,
) -> None:
    """Dual-written copies on both sides are ignored: each side counts the created times it owns."""
    split = data.draw(split_histories())
    load_two_sources(pg_conn, split.logstore, split.workflow_runs)
    since_us = _since(data, split.history)
    want = _reference_activity(split.history, tenant_id, since_us)
    for combination, repository in harness.repositories(split.since_us).items():
        found = harness.run(repository.app_activity(tenant_id, since_us, page_rows))
        assert _rows(found) == want, combination


@given(data=st.data(), page_rows=st.sampled_from((1, 2, 500)))
def test_apps_from_one_source(
    pg_conn: psycopg.Connection[Any], harness: Harness, data: st.DataObject, page_rows: int
) -> None:
    split = data.draw(split_histories())
    since_us = _since(data, split.history)
    want = _reference_activity(split.history, None, since_us)
    latest = reference.latest_versions(split.history)
    # A row without an app id ('' stands for NULL too) belongs to no app.
    orphans = [msgspec.structs.replace(row, id=f"{row.id[:-4]}ffff", app_id="") for row in latest[:1]]
    load_two_sources(pg_conn, split.history + orphans, latest)
    for combination, repository in harness.logstore_only(since_us).items():
        assert _rows(harness.run(repository.app_activity(None, since_us, page_rows))) == want, combination
    only = harness.workflow_runs_only()
    assert _rows(harness.run(only.app_activity(None, since_us, page_rows))) == want
