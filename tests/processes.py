"""Helpers for tests that run `python -m app serve` as a process: start it, read its stderr, find
the PostgreSQL processes serving a data directory."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil

from tests.live import free_port

ROOT = Path(__file__).resolve().parents[1]


def postgres_serving(directory: Path | str) -> list[psutil.Process]:
    """Running postgres server processes whose command line names a path under `directory`."""
    found = []
    for process in psutil.process_iter(["name", "cmdline"]):
        cmdline = process.info["cmdline"] or []
        if process.info["name"] == "postgres" and any(str(directory) in part for part in cmdline):
            found.append(process)
    return found


class Service:
    """A `python -m app serve` process; its stderr lines are collected as they come."""

    def __init__(self, env: dict[str, str], *args: str) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.lines: list[str] = []
        self.process = subprocess.Popen(  # noqa: S603 - our own CLI
            [sys.executable, "-m", "app", "serve", "--port", str(self.port), *args],
            cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line.rstrip("\n"))

    def wait_for_line(self, needle: str, seconds: float) -> str:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if needle in line:
                    return line
            if self.process.poll() is not None and not self.reader.is_alive():
                break
            time.sleep(0.05)
        raise AssertionError(f"no line with {needle!r}; stderr was:\n" + "\n".join(self.lines))

    def stop(self, signum: int, seconds: float = 30) -> int:
        self.process.send_signal(signum)
        code = self.process.wait(timeout=seconds)
        self.reader.join(timeout=5)
        return code


@contextmanager
def service(env: dict[str, str], *args: str) -> Iterator[Service]:
    running = Service(env, *args)
    try:
        yield running
    finally:
        if running.process.poll() is None:
            running.process.terminate()
            running.process.wait(timeout=30)


def cli_env(tmp_path: Path, **settings: str) -> dict[str, str]:
    """A clean environment: no STATS_* of the caller's, HOME in the test's directory."""
    keep = {name: os.environ[name] for name in ("PATH", "LANG") if name in os.environ}
    return {**keep, "HOME": str(tmp_path), "STATS_DATA_DIR": str(tmp_path / "data"), **settings}
