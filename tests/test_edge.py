"""The HTTP edge of a real `python -m app serve` process, on raw sockets: what a client meets
before any route runs (credentials, admission, the connection's timeouts and limits), and that
every answer there is Dify's error shape.

Two processes: one with the defaults (STATS_MAX_INFLIGHT 128, STATS_TENANT_SHARE 0.5,
STATS_BODY_TIMEOUT 10 s), as a deployment runs; one with tiny limits, to fill them with few
connections."""

from __future__ import annotations

import http.client
import json
import select
import socket
import statistics
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from app.config import ConfigError, load_settings
from tests import examples
from tests.db import load_history
from tests.live import wait_until_answering
from tests.processes import Service, cli_env, service

T, U, A = examples.T, examples.U, examples.A
KEY_T, KEY_U = "edge-key-of-tenant-t-0001", "edge-key-of-tenant-u-0001"
METRICS_KEY = "edge-metrics-key-000000001"
KEYS = f"{KEY_T}={T}; {KEY_U}={U}"
COUNT_U = f"/v1/tenants/{U}/apps/{A}/runs/count?triggered_from=app-run"  # r6: one run
STALLED_QUERY = (  # a Grafana query whose body never arrives whole
    b"POST /grafana/query HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    b"Content-Length: 100\r\nAuthorization: Bearer " + KEY_T.encode() + b'\r\n\r\n{"a":'
)


@contextmanager
def started(env: dict[str, str]) -> Iterator[Service]:
    with service(env) as running:
        wait_until_answering(f"{running.base}/healthz", 60, running.process)
        yield running


@pytest.fixture(scope="module")
def history(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        load_history(conn, examples.history())


@pytest.fixture(scope="module")
def defaults(database_url: str, history: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    with started(cli_env(tmp_path_factory.mktemp("defaults"), STATS_DATABASE_URL=database_url,
                         STATS_API_KEYS=KEYS)) as running:  # fmt: skip
        yield running


@pytest.fixture(scope="module")
def tiny(database_url: str, history: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    env = cli_env(
        tmp_path_factory.mktemp("tiny"),
        STATS_DATABASE_URL=database_url,
        STATS_API_KEYS=KEYS,
        STATS_MAX_INFLIGHT="2",
        STATS_TENANT_SHARE="1",  # tenant T alone may fill the whole limit
        STATS_BODY_TIMEOUT="1.5",
        STATS_METRICS_KEY=METRICS_KEY,
    )
    with started(env) as running:
        yield running


def _connect(running: Service, first: bytes = b"") -> socket.socket:
    connection = socket.create_connection(("127.0.0.1", running.port), timeout=10)
    connection.sendall(first)
    return connection


def _until_closed(connections: list[socket.socket], within: float) -> dict[socket.socket, bytes]:
    """What the server sent on each connection before closing it, once all are closed (fails
    if one is still open after `within` seconds)."""
    received = {connection: b"" for connection in connections}
    open_ = set(connections)
    deadline = time.monotonic() + within
    while open_ and time.monotonic() < deadline:
        readable, _, _ = select.select(list(open_), [], [], 0.5)
        for connection in readable:
            chunk = connection.recv(65536)
            received[connection] += chunk
            if not chunk:
                open_.discard(connection)
    assert not open_, f"{len(open_)} connections still open after {within} s"
    return received


def _answer(raw: bytes) -> tuple[int, dict[str, str], dict[str, Any]]:
    """Status, headers and JSON body of the one raw HTTP/1.1 response in `raw` (one request, one
    answer: nothing may follow it)."""
    head, _, rest = raw.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value for name, _, value in (line.partition(": ") for line in lines)}
    length = int(headers["content-length"])
    assert len(rest) == length, raw
    return int(status_line.split()[1]), headers, json.loads(rest)


def _dify_shaped(raw: bytes, status: int, code: str) -> str:
    got_status, headers, body = _answer(raw)
    assert (got_status, headers["content-type"]) == (status, "application/json"), raw[:300]
    assert set(body) == {"code", "message", "status"} and (body["code"], body["status"]) == (code, status)
    return str(body["message"])


def test_one_tenants_stalled_bodies_cost_only_that_tenant(defaults: Service) -> None:
    """150 Grafana queries of tenant T whose bodies stop after `{"a":`: the tenant is known from
    its key before a body is read, so T holds its share (64 of 128), its other requests are 503 at
    once, tenant U is answered at once, and the server closes every stalled connection."""
    stalled = [_connect(defaults, STALLED_QUERY) for _ in range(150)]
    try:
        time.sleep(0.5)
        started = time.monotonic()
        headers = {"Authorization": f"Bearer {KEY_U}"}
        count = httpx.get(defaults.base + COUNT_U, headers=headers, timeout=10)
        apps = httpx.post(f"{defaults.base}/grafana/variable", headers=headers, json={}, timeout=10)
        assert time.monotonic() - started < 2
        assert (count.status_code, count.json()["total"]) == (200, 1), count.text
        assert apps.status_code == 200 and isinstance(apps.json(), list), apps.text
        answered = _until_closed(stalled, 60)
    finally:
        for connection in stalled:
            connection.close()
    statuses = Counter(_answer(raw)[0] for raw in answered.values())
    assert statuses == {408: 64, 503: 86}
    timed_out = next(raw for raw in answered.values() if raw.startswith(b"HTTP/1.1 408"))
    assert "STATS_BODY_TIMEOUT" in _dify_shaped(timed_out, 408, "request_timeout")


def test_with_auth_off_keyless_grafana_requests_count_as_one_requester(
    database_url: str, history: None, tmp_path: Path
) -> None:
    """No key names their tenant, so Grafana requests without one share one requester's places:
    their stalled bodies leave room for a tenant named in a path."""
    env = cli_env(tmp_path, STATS_DATABASE_URL=database_url, STATS_MAX_INFLIGHT="4", STATS_BODY_TIMEOUT="60")
    keyless = STALLED_QUERY.replace(f"Authorization: Bearer {KEY_T}\r\n".encode(), b"")
    with started(env) as running:
        stalled = [_connect(running, keyless) for _ in range(4)]
        try:
            for connection in stalled[2:]:  # the third and fourth: over the share of 2
                assert connection.recv(65536).startswith(b"HTTP/1.1 503 ")
            answer = httpx.get(running.base + COUNT_U, timeout=5)
            assert (answer.status_code, answer.json()["total"]) == (200, 1), answer.text
        finally:
            for connection in stalled:
                connection.close()


def test_a_kept_alive_connection_does_not_wait_for_delayed_acknowledgements(defaults: Service) -> None:
    """TCP_NODELAY: without it every request after the first on a connection waits ~40 ms."""
    connection = http.client.HTTPConnection("127.0.0.1", defaults.port, timeout=10)
    headers = {"Authorization": f"Bearer {KEY_U}"}
    try:
        elapsed = []
        for _ in range(21):  # the first fills the cache
            started = time.perf_counter()
            connection.request("GET", COUNT_U, headers=headers)
            answer = connection.getresponse()
            answer.read()
            assert answer.status == 200
            elapsed.append(time.perf_counter() - started)
    finally:
        connection.close()
    assert statistics.median(elapsed[1:]) < 0.015, elapsed


def test_request_heads_over_16_kib_are_a_431(defaults: Service) -> None:
    """Whole heads of 20 and 100 KB (h11 reads them in one piece, past its own buffer limit) and
    a 20 KB head still waiting for its end; 15 KB passes."""
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: "
    big = [_connect(defaults, head + b"a" * size + b"\r\n\r\n") for size in (20_000, 100_000)]
    unfinished = _connect(defaults, head + b"a" * 20_000)
    for raw in _until_closed([*big, unfinished], 10).values():
        assert "16 KiB" in _dify_shaped(raw, 431, "request_header_fields_too_large")
    answer = httpx.get(f"{defaults.base}/healthz", headers={"X-Big": "a" * 15_000}, timeout=10)
    assert answer.status_code == 200


@pytest.mark.parametrize(
    ("raw", "status", "code", "message"),
    [
        (b"GARBAGE\r\n\r\n", 400, "bad_request", "malformed HTTP/1.1 request: illegal request line"),
        (b"POST /grafana/query HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400,
         "bad_request", "malformed HTTP/1.1 request: illegal chunk header"),
        (b"POST /grafana/query HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 501,
         "not_implemented", "malformed HTTP/1.1 request: Only Transfer-Encoding: chunked is supported"),
    ],
)  # fmt: skip
def test_requests_the_server_cannot_read_are_dify_shaped(
    defaults: Service, raw: bytes, status: int, code: str, message: str
) -> None:
    (answer,) = _until_closed([_connect(defaults, raw)], 10).values()
    assert _dify_shaped(answer, status, code) == message


def test_empty_and_blank_grafana_bodies_are_400s_naming_the_body(defaults: Service) -> None:
    headers = {"Authorization": f"Bearer {KEY_T}", "Content-Type": "application/json"}

    def post(path: str, body: bytes) -> httpx.Response:
        return httpx.post(f"{defaults.base}/grafana{path}", content=body, headers=headers, timeout=10)

    for body in (b"", b"   ", b"\r\n\t "):
        answer = post("/query", body)
        assert answer.status_code == 400, (body, answer.text)
        assert answer.json() == {
            "code": "invalid_param",
            "message": "body: is empty: this route needs a JSON object",
            "status": 400,
        }
    assert post("/metrics", b"").status_code == 200  # its body is optional
    blank = post("/metrics", b"   ")
    assert blank.status_code == 400 and blank.json()["message"] == (
        "body: holds only whitespace: send a JSON object, or no body at all"
    )


def test_credentials_are_checked_before_admission(tiny: Service) -> None:
    """Two stalled bodies of tenant T fill STATS_MAX_INFLIGHT=2. Meanwhile a request without a key
    or with a wrong one is a 401 and one for a tenant its key may not read a 403, none of them
    counted; a keyed request is 503 (the limit is full); health and metrics answer. Once the body timeout
    closes the stalled two, the keyed request is 200."""
    stalled = [_connect(tiny, STALLED_QUERY) for _ in range(2)]
    try:
        time.sleep(0.3)
        for headers, status in (
            ({}, 401),
            ({"Authorization": "Bearer not-a-key-of-this-service"}, 401),
            ({"Authorization": f"Basic {KEY_U}"}, 401),
            ({"Authorization": f"Bearer {KEY_T}"}, 403),
            ({"Authorization": f"Bearer {KEY_U}"}, 503),
        ):
            answer = httpx.get(tiny.base + COUNT_U, headers=headers, timeout=5)
            assert answer.status_code == status, (headers, answer.text)
            assert set(answer.json()) == {"code", "message", "status"} and answer.headers["x-request-id"]
        metrics = {"Authorization": f"Bearer {METRICS_KEY}"}
        for path, headers in (("/healthz", {}), ("/readyz", {}), ("/metrics", metrics)):  # never counted
            assert httpx.get(tiny.base + path, headers=headers, timeout=5).status_code == 200, path
        unauthorized = httpx.post(f"{tiny.base}/grafana/query", json={}, timeout=5)
        assert unauthorized.status_code == 401 and unauthorized.headers["www-authenticate"] == "Bearer"
        for raw in _until_closed(stalled, 5).values():
            _dify_shaped(raw, 408, "request_timeout")
    finally:
        for connection in stalled:
            connection.close()
    answer = httpx.get(tiny.base + COUNT_U, headers={"Authorization": f"Bearer {KEY_U}"}, timeout=5)
    assert answer.status_code == 200, answer.text


def _trickle(connections: list[socket.socket], seconds: float) -> dict[socket.socket, tuple[bytes, float]]:
    """Send a body byte every 0.1 s on each connection until the server closes it: what it sent,
    and when it closed (fails if one is still open after `seconds`)."""
    started = time.monotonic()
    received = dict.fromkeys(connections, b"")
    closed: dict[socket.socket, float] = {}
    while len(closed) < len(connections) and time.monotonic() - started < seconds:
        for connection in (connection for connection in connections if connection not in closed):
            chunk = connection.recv(65536) if select.select([connection], [], [], 0)[0] else None
            received[connection] += chunk or b""
            if chunk == b"":
                closed[connection] = time.monotonic() - started
            elif chunk is None:
                connection.sendall(b" ")
        time.sleep(0.1)
    assert len(closed) == len(connections), f"still open after {seconds} s"
    return {connection: (received[connection], closed[connection]) for connection in connections}


def test_a_body_trickled_a_byte_at_a_time_is_bounded_in_total(tiny: Service) -> None:
    """STATS_BODY_TIMEOUT (1.5 s here) counts from the head's end to the body's, not between
    reads; after an early answer (a 401, sent before the body) the connection is closed, never
    answered twice."""
    trickling = _connect(tiny, STALLED_QUERY)
    early = _connect(tiny, b"POST /grafana/query HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
    try:
        seen = _trickle([trickling, early], 6)
    finally:
        trickling.close()
        early.close()
    for connection, (status, code) in ((trickling, (408, "request_timeout")), (early, (401, "unauthorized"))):
        raw, closed_after = seen[connection]
        _dify_shaped(raw, status, code)
        assert closed_after < 1.5 + 1.5, closed_after


def test_metrics_may_require_their_own_key(tiny: Service, defaults: Service) -> None:
    assert httpx.get(f"{defaults.base}/metrics", timeout=5).status_code == 200  # open without the setting
    refused = httpx.get(f"{tiny.base}/metrics", timeout=5)
    assert refused.status_code == 401 and refused.json()["code"] == "unauthorized"
    for key in (KEY_T, "x" + METRICS_KEY):  # an API key is not the metrics key
        assert (
            httpx.get(f"{tiny.base}/metrics", headers={"Authorization": f"Bearer {key}"}).status_code == 401
        )
    allowed = httpx.get(f"{tiny.base}/metrics", headers={"Authorization": f"Bearer {METRICS_KEY}"}, timeout=5)
    assert allowed.status_code == 200 and "dify_stats_requests_total" in allowed.text
    assert httpx.get(f"{tiny.base}/healthz", timeout=5).status_code == 200


def test_keys_naming_tenants_that_are_not_uuids_stop_the_start(tmp_path: Path) -> None:
    from tests.test_operations import assert_one_line_exit_2, run_serve

    secret = "a-secret-key-never-printed"
    for entries, position in (
        (f"{KEY_T}={T}; {secret}=not-a-uuid", 2),
        (f"{secret}={T[:-1]}", 1),  # one digit short: 35 characters
        (f"{KEY_T}={T},{U}x; {KEY_U}=*", 1),
        (f"{secret}={T.replace('-', '')}", 1),
    ):
        done = run_serve(cli_env(tmp_path, STATS_API_KEYS=entries))
        assert_one_line_exit_2(done, f"STATS_API_KEYS: entry {position}", "UUID")
        assert secret not in done.stderr and KEY_T not in done.stderr


def test_edge_settings_are_read_and_checked() -> None:
    defaults = load_settings({})
    assert (defaults.header_timeout, defaults.body_timeout, defaults.metrics_key) == (10.0, 10.0, None)
    assert load_settings({"STATS_BODY_TIMEOUT": "2.5", "STATS_METRICS_KEY": METRICS_KEY}).body_timeout == 2.5
    for env, message in (
        ({"STATS_BODY_TIMEOUT": "0"}, "STATS_BODY_TIMEOUT='0': expected `float` >= 0.1"),
        ({"STATS_BODY_TIMEOUT": "soon"}, "STATS_BODY_TIMEOUT='soon'"),
        ({"STATS_METRICS_KEY": "short"}, "STATS_METRICS_KEY: keys must be at least 16 characters long"),
    ):
        with pytest.raises(ConfigError) as refused:
            load_settings(env)
        assert str(refused.value).startswith(message), refused.value


def test_api_key_entries_are_named_by_position_never_by_key() -> None:
    secret = "a-secret-key-never-printed"
    keys = load_settings({"STATS_API_KEYS": f"{KEY_T}={T.upper()}, {U}; {secret}=*"}).api_keys
    assert [key.tenants for key in keys] == [frozenset({T, U}), None]  # ids are compared in lower case
    for entries, message in (
        (f"{KEY_T}=*; {secret}", "entry 2 must be key=tenant_id[,tenant_id...] or key=*"),
        (f"{KEY_T}=*;; short={T}", "entry 2: keys must be at least 16 characters long"),
        (f"{secret}={T},", "entry 1: every tenant must be a UUID"),
        (f"{secret}={T}; {KEY_T}=all", "entry 2: every tenant must be a UUID"),
        (f"{secret}={{{T}}}", "entry 1: every tenant must be a UUID"),  # braces: uuid.UUID reads them
    ):
        with pytest.raises(ConfigError) as refused:
            load_settings({"STATS_API_KEYS": entries})
        assert str(refused.value).startswith(f"STATS_API_KEYS: {message}"), refused.value
        assert secret not in str(refused.value) and KEY_T not in str(refused.value)
