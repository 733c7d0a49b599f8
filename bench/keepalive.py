"""A cached answer over one kept-alive connection, through a real `python -m app serve` process.

Grafana and most HTTP clients keep their connection open between requests. When the server's
socket lets Nagle's algorithm hold back a response's second write until the client acknowledges
the first, and the client delays that acknowledgement (Linux: up to 40 ms), every request after
the first on a connection waits for it. So this part times the same cached answer on one
kept-alive connection, and for reference each on a connection of its own (which never waits: a
new connection's first response goes out at once), and reports the medians.
"""

from __future__ import annotations

import http.client
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from app.demo import demo_apps
from tests.live import wait_until_answering
from tests.processes import cli_env, service

REQUESTS = 200


def _ms(connection: http.client.HTTPConnection, path: str) -> float:
    started = time.perf_counter()
    connection.request("GET", path)
    answer = connection.getresponse()
    answer.read()
    elapsed = (time.perf_counter() - started) * 1000
    assert answer.status == 200 and answer.getheader("x-cache") == "hit", (answer.status, path)
    return elapsed


def measure(url: str) -> dict[str, Any]:
    """Medians (ms) of a cached daily-runs answer: on one kept-alive connection, and on a new
    connection each time."""
    app = demo_apps()[0]
    path = f"/v1/tenants/{app.tenant_id}/apps/{app.app_id}/statistics/daily-runs?timezone=UTC"
    with tempfile.TemporaryDirectory(prefix="dify-stats-keepalive-") as scratch:
        env = cli_env(Path(scratch), STATS_DATABASE_URL=url, STATS_LOG_LEVEL="warning")
        with service(env) as running:
            wait_until_answering(f"{running.base}/healthz", 60, running.process)
            kept = http.client.HTTPConnection("127.0.0.1", running.port, timeout=60)
            try:
                for _ in range(5):  # the first fills the cache; the others warm the connection
                    connection = http.client.HTTPConnection("127.0.0.1", running.port, timeout=60)
                    connection.request("GET", path)
                    connection.getresponse().read()
                    connection.close()
                kept_alive = [_ms(kept, path) for _ in range(REQUESTS)]
            finally:
                kept.close()
            fresh = []
            for _ in range(REQUESTS):
                connection = http.client.HTTPConnection("127.0.0.1", running.port, timeout=60)
                try:
                    fresh.append(_ms(connection, path))
                finally:
                    connection.close()
    quantiles = statistics.quantiles(kept_alive, n=10)
    return {
        "requests": REQUESTS,
        "kept_alive_p50_ms": round(statistics.median(kept_alive), 2),
        "kept_alive_p90_ms": round(quantiles[-1], 2),
        "new_connection_p50_ms": round(statistics.median(fresh), 2),
    }


def markdown_lines(figures: dict[str, Any]) -> list[str]:
    kept, p90, fresh = (
        figures["kept_alive_p50_ms"],
        figures["kept_alive_p90_ms"],
        figures["new_connection_p50_ms"],
    )
    return [
        "## A cached answer over one kept-alive connection (real `serve` process)",
        "",
        f"{figures['requests']} requests of the same cached daily-runs answer with `http.client` on "
        f"loopback: p50 {kept} ms (p90 {p90} ms) on one kept-alive connection, p50 {fresh} ms on a new "
        "connection each (goal: the kept-alive p50 no higher; a delayed acknowledgement would add "
        "~40 ms to each).",
    ]
