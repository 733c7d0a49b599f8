"""Several real replica processes (`python -m app serve`) sharing one real Redis, in front of the
SLS stand-in, whose counts prove what the fleet sends: a storm of identical requests costs what
it costs one replica; never more than STATS_POOL_SIZE statements run fleet-wide (the table is
locked so that they wait where they can be counted); one replica alone may fill the budget; a
replica killed while holding slots frees them within 15 s; Redis stopped, every answer is still
exact; Redis back, sharing resumes; garbage over every key, answers stay exact."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import httpx
import psycopg
import pytest
import redis

from tests import examples
from tests.db import load_history, locked_table
from tests.live import wait_until_answering
from tests.processes import Service, cli_env, service
from tests.sls_standin import SlsStandIn

BASE = f"/v1/tenants/{examples.T}/apps/{examples.A}/statistics/daily-runs"
SHANGHAI = {"timezone": "Asia/Shanghai"}
EXPECTED = [{"date": "2025-03-01", "runs": 1}, {"date": "2025-03-02", "runs": 3}]
POOL = 3


@pytest.fixture
def standin(sls_standin: SlsStandIn, pg_conn: psycopg.Connection[Any]) -> SlsStandIn:
    load_history(pg_conn, examples.history())
    return sls_standin


@pytest.fixture
def start_fleet(standin: SlsStandIn, redis_url: str, tmp_path: Any) -> Iterator[Callable[..., list[Service]]]:
    """Start `count` replicas sharing the Redis (each with STATS_POOL_SIZE=3); all stopped after."""
    with ExitStack() as stack:

        def start(count: int, **settings: str) -> list[Service]:
            env = cli_env(
                tmp_path, STATS_DATABASE_URL=standin.url, STATS_DIALECT="sls", STATS_REDIS_URL=redis_url,
                STATS_POOL_SIZE=str(POOL), STATS_QUERY_TIMEOUT="30", **settings,
            )  # fmt: skip
            replicas = [stack.enter_context(service(env)) for _ in range(count)]
            for replica in replicas:
                wait_until_answering(f"{replica.base}/readyz", 60, replica.process)
            return replicas

        yield start


def statements(standin: SlsStandIn) -> list[str]:
    """What the stand-in ran for answers (not the connection checks)."""
    return [seen.sql for seen in standin.counters.statements() if "AS ok" not in seen.sql]


def storms(replicas: list[Service], ranges: list[dict[str, str]], each: int) -> list[httpx.Response]:
    """One storm after another: per range, `each` identical requests at once over the replicas."""
    return [answer for params in ranges for answer in storm(replicas, [params], each)]


def storm(replicas: list[Service], ranges: list[dict[str, str]], each: int) -> list[httpx.Response]:
    """`each` identical requests per range, all at once, spread over the replicas."""
    requests = [(replicas[n % len(replicas)], params) for params in ranges for n in range(each)]
    answers: list[httpx.Response] = [httpx.Response(0)] * len(requests)

    def send(position: int, replica: Service, params: dict[str, str]) -> None:
        try:
            answers[position] = httpx.get(f"{replica.base}{BASE}", params={**SHANGHAI, **params}, timeout=60)
        except httpx.TransportError:  # a replica the test killed
            answers[position] = httpx.Response(599)

    threads = [threading.Thread(target=send, args=(n, *request)) for n, request in enumerate(requests)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers


RANGES = [
    {"start": "2025-03-01", "end": "2025-03-03"},
    {"start": "2025-02-28", "end": "2025-03-03"},
    {"start": "2025-03-01", "end": "2025-03-04"},
]


def test_a_storm_on_three_replicas_costs_what_it_costs_one(
    standin: SlsStandIn, start_fleet: Callable[..., list[Service]], redis_url: str
) -> None:
    alone = start_fleet(1, STATS_REDIS_PREFIX="alone:")
    standin.counters.reset()
    answers = storms(alone, RANGES, 12)
    one_replica = statements(standin)
    assert [answer.json()["data"] for answer in answers[:1]] == [EXPECTED]

    three = start_fleet(3, STATS_REDIS_PREFIX="three:")
    standin.counters.reset()
    answers = storms(three, RANGES, 12)
    assert all(answer.status_code == 200 for answer in answers)
    assert all(answer.json()["data"] == EXPECTED for answer in answers[:12])
    three_replicas = statements(standin)
    assert three_replicas == one_replica and len(one_replica) == len(RANGES)
    # and a replica that never answered before answers the same dashboard with no statement
    standin.counters.reset()
    late = start_fleet(1, STATS_REDIS_PREFIX="three:")[0]
    standin.counters.reset()
    answer = httpx.get(f"{late.base}{BASE}", params={**SHANGHAI, **RANGES[0]}, timeout=30)
    assert (answer.json()["data"], answer.headers["x-cache"], statements(standin)) == (EXPECTED, "hit", [])


def _distinct_requests(count: int) -> list[dict[str, str]]:
    """Requests that share no cache entry: each its own range."""
    return [{"start": f"2025-0{1 + n // 28}-{1 + n % 28:02d}", "end": "2025-03-05"} for n in range(count)]


def _peak(waiting: Callable[[], int], seconds: float) -> int:
    peak, deadline = 0, time.monotonic() + seconds
    while time.monotonic() < deadline:
        peak = max(peak, waiting())
        time.sleep(0.1)
    return peak


@pytest.mark.parametrize("spread", [3, 1], ids=["spread-over-three", "all-on-one"])
def test_never_more_than_the_pool_size_fleet_wide_and_one_replica_may_fill_it(
    standin: SlsStandIn, start_fleet: Callable[..., list[Service]], database_url: str, spread: int
) -> None:
    replicas = start_fleet(3, STATS_TENANT_SHARE="1")  # one tenant asks: let it have the whole budget
    asked = replicas[:spread]
    with locked_table(database_url) as waiting:
        sender = threading.Thread(target=storm, args=(asked, _distinct_requests(12), 1))
        sender.start()
        peak = _peak(waiting, 4)
    sender.join(60)
    assert peak == POOL, f"{peak} statements ran at once; STATS_POOL_SIZE is {POOL} for the whole fleet"


def test_a_killed_replicas_slots_come_back_within_15_seconds(
    standin: SlsStandIn, start_fleet: Callable[..., list[Service]], database_url: str
) -> None:
    doomed, survivor = start_fleet(2, STATS_TENANT_SHARE="1")
    with locked_table(database_url) as waiting:
        threading.Thread(target=storm, args=([doomed], _distinct_requests(6), 1), daemon=True).start()
        deadline = time.monotonic() + 10
        while waiting() < POOL and time.monotonic() < deadline:
            time.sleep(0.05)
        assert waiting() == POOL  # the doomed replica holds every slot
        doomed.process.send_signal(signal.SIGKILL)
        doomed.process.wait(10)
        killed = time.monotonic()
    # Its statements are gone from the store, but not its leases: the survivor waits for them.
    answer = httpx.get(f"{survivor.base}{BASE}", params={**SHANGHAI, **RANGES[1]}, timeout=30)
    waited = time.monotonic() - killed
    assert answer.status_code == 200 and answer.json()["data"] == EXPECTED
    assert waited <= 15, waited


def test_redis_stopped_answers_stay_exact_and_sharing_resumes_when_it_is_back(
    standin: SlsStandIn, start_fleet: Callable[..., list[Service]], redis_server: Any
) -> None:
    one, two = start_fleet(2)
    redis_server.stop()
    for replica in (one, two, one, two):
        started = time.monotonic()
        answer = httpx.get(f"{replica.base}{BASE}", params={**SHANGHAI, **RANGES[0]}, timeout=30)
        assert (answer.status_code, answer.json()["data"]) == (200, EXPECTED)
        assert time.monotonic() - started < 4
    ready = httpx.get(f"{one.base}/readyz", timeout=5)
    assert ready.status_code == 200 and ready.json()["redis"] == "down"
    redis_server.start()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if all(httpx.get(f"{r.base}/readyz", timeout=5).json().get("redis") == "up" for r in (one, two)):
            break
        time.sleep(0.2)
    first = httpx.get(f"{one.base}{BASE}", params={**SHANGHAI, **RANGES[2]}, timeout=30)
    then = httpx.get(f"{two.base}{BASE}", params={**SHANGHAI, **RANGES[2]}, timeout=30)
    assert first.headers["x-cache"] != "hit"  # computed on one ...
    assert then.headers["x-cache"] == "hit"  # ... a hit on the other: shared again
    assert then.json()["data"] == EXPECTED


def test_garbage_over_every_key_still_gives_exact_answers(
    standin: SlsStandIn, start_fleet: Callable[..., list[Service]], redis_url: str
) -> None:
    one, two = start_fleet(2)
    for params in RANGES:
        httpx.get(f"{one.base}{BASE}", params={**SHANGHAI, **params}, timeout=30)
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter("dify-stats:*"))
        assert len(keys) > 5
        for key in keys:
            client.set(key, b"\x00garbage\xff")  # any type replaced, no TTL
    finally:
        client.close()
    for params in RANGES:
        for replica in (two, one):
            answer = httpx.get(f"{replica.base}{BASE}", params={**SHANGHAI, **params}, timeout=30)
            assert answer.status_code == 200, answer.text
            if params is RANGES[0]:
                assert answer.json()["data"] == EXPECTED
    health = httpx.get(f"{one.base}/readyz", timeout=5).json()
    assert health["redis"] == "up"


def test_a_sentinel_failover_keeps_the_fleet_answering_and_sharing(
    standin: SlsStandIn, tmp_path: Any
) -> None:
    """Redis as Dify's Helm chart runs it, with Sentinel: the master dies, the sentinel promotes
    its replica, and the replicas find the new master by themselves."""
    from tests.redis_server import start_sentinel_group

    group = start_sentinel_group(tmp_path / "sentinel")
    try:
        env = cli_env(
            tmp_path, STATS_DATABASE_URL=standin.url, STATS_DIALECT="sls",
            STATS_REDIS_SENTINELS=f"127.0.0.1:{group.sentinel_port}",
            STATS_REDIS_SENTINEL_SERVICE_NAME=group.service_name,
        )  # fmt: skip
        with service(env) as one, service(env) as two:
            for replica in (one, two):
                wait_until_answering(f"{replica.base}/readyz", 60, replica.process)
            first = httpx.get(f"{one.base}{BASE}", params={**SHANGHAI, **RANGES[0]}, timeout=30)
            shared = httpx.get(f"{two.base}{BASE}", params={**SHANGHAI, **RANGES[0]}, timeout=30)
            assert (first.headers["x-cache"], shared.headers["x-cache"]) == ("miss", "hit")
            group.master.stop()  # SIGKILL
            deadline = time.monotonic() + 30
            asked = dict(RANGES[1])
            while time.monotonic() < deadline:  # answers go on meanwhile, exact
                answer = httpx.get(f"{one.base}{BASE}", params={**SHANGHAI, **asked}, timeout=30)
                assert (answer.status_code, answer.json()["data"]) == (200, EXPECTED)
                after = httpx.get(f"{two.base}{BASE}", params={**SHANGHAI, **asked}, timeout=30)
                if after.headers["x-cache"] == "hit" and answer.headers["x-cache"] != "hit":
                    break  # one computed it on the new master, the other read it there
                time.sleep(0.5)
                asked["end"] = _next_day(asked["end"])  # a question neither has answered yet
            else:
                raise AssertionError("sharing did not resume after the failover")
            assert httpx.get(f"{two.base}/readyz", timeout=5).json()["redis"] == "up"
    finally:
        group.stop()


def _next_day(day: str) -> str:
    from datetime import date, timedelta

    return (date.fromisoformat(day) + timedelta(days=1)).isoformat()


def test_a_starting_replicas_checks_wait_for_a_slot_of_the_fleet(
    standin: SlsStandIn, redis_url: str, tmp_path: Any
) -> None:
    """The start-up checks are statements too: while the fleet's budget is full, a replica
    starting waits for a slot before it reads the store, then starts."""
    import asyncio

    from app.config import RedisSettings
    from app.fleet.budget import FleetBudget
    from app.fleet.link import RedisLink
    from app.stores.budget import store_identity

    async def fill_then_free(wait_s: float) -> None:
        link = RedisLink(RedisSettings(url=redis_url))
        budget = FleetBudget(link, store_identity(standin.url, "logstore"), POOL, 1.0)
        held = [await budget._acquire("") for _ in range(POOL)]
        filled.set()
        await asyncio.sleep(wait_s)
        for slot in held:
            assert slot is not None
            await budget._release(slot)
        await link.close()

    filled = threading.Event()
    holder = threading.Thread(target=lambda: asyncio.run(fill_then_free(4)))
    holder.start()
    filled.wait(10)
    standin.counters.reset()
    env = cli_env(
        tmp_path, STATS_DATABASE_URL=standin.url, STATS_DIALECT="sls", STATS_REDIS_URL=redis_url,
        STATS_POOL_SIZE=str(POOL),
    )  # fmt: skip
    started = time.monotonic()
    with service(env) as replica:
        time.sleep(2)
        assert standin.counters["queries"] == 0  # not a statement while every slot is held
        wait_until_answering(f"{replica.base}/readyz", 60, replica.process)
        assert time.monotonic() - started >= 3.5
    holder.join()


KEY_T, KEY_U, KEY_ALL = "forge-key-tenant-t-0123456", "forge-key-tenant-u-0123456", "forge-key-all-0123456789"
APP_T, APP_U = "a7000000-0000-4000-8000-0000000000a7", "a8000000-0000-4000-8000-0000000000a8"


def _iso(epoch_s: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(epoch_s, UTC).replace(tzinfo=None).isoformat()


def _two_tenants_lately() -> list[Any]:
    """Two runs a day for the last three days, of tenant T's app and of tenant U's."""
    versions = []
    for day in range(3):
        for n, (tenant, app) in enumerate(((examples.T, APP_T), (examples.U, APP_U)) * 2):
            created = int(time.time()) - (day + 1) * 86_400 + n * 60
            at = {"created_at": _iso(created), "started_at": _iso(created), "finished_at": _iso(created + 1)}
            owner = {"tenant_id": tenant, "app_id": app, "workflow_id": app}
            run_id = f"{day}{n}000000-0000-4000-8000-{created:012d}"
            versions.append(examples._version(run_id, created, 1, "succeeded", 5, **owner, **at))
    return versions


def _verdicts(replica: Service) -> dict[str, Any]:
    """Who may read what, as each key sees it through this replica (statuses and app lists)."""
    now = time.time()
    grafana_range = {"from": _iso(now - 4 * 86_400) + "Z", "to": _iso(now) + "Z"}

    def post(key: str, path: str, body: dict[str, Any]) -> httpx.Response:
        headers = {"Authorization": f"Bearer {key}"}
        return httpx.post(f"{replica.base}/grafana{path}", json=body, headers=headers, timeout=30)

    def query(key: str, app: str) -> int:
        targets = [{"target": "daily_runs", "payload": {"app_id": app}}]
        return post(key, "/query", {"range": grafana_range, "targets": targets}).status_code

    def apps(key: str) -> list[str]:
        listed = post(key, "/variable", {}).json()
        options = post(
            key, "/metric-payload-options", {"metric": "daily_runs", "payload": {}, "name": "app_id"}
        )
        return [
            *sorted(item["value"] for item in listed),
            "|",
            *sorted(item["value"] for item in options.json()),
        ]

    def native(key: str, path: str) -> int:
        headers = {"Authorization": f"Bearer {key}"}
        return httpx.get(f"{replica.base}/v1/tenants{path}", headers=headers, timeout=30).status_code

    return {
        "T queries T's app": query(KEY_T, APP_T),
        "T queries U's app": query(KEY_T, APP_U),
        "U queries U's app": query(KEY_U, APP_U),
        "U queries T's app": query(KEY_U, APP_T),
        "* queries U's app": query(KEY_ALL, APP_U),
        "T's apps": apps(KEY_T),
        "U's apps": apps(KEY_U),
        "T reads U's runs": native(KEY_T, f"/{examples.U}/apps/{APP_U}/runs/count"),
        "T lists U's apps": native(KEY_T, f"/{examples.U}/apps"),
        "T lists tenants": native(KEY_T, ""),
    }


def _kind(key: str) -> str:
    """What the fleet keeps under a key (app/fleet/keys.py names them)."""
    parts = key.split(":")
    if "budget" in parts:
        return "budget " + parts[-1]
    if parts[-1] == "replicas":
        return "heartbeats"
    if parts[-1] in ("lock", "validating"):
        return "locks"
    if "k" in parts:
        return "kept runs " + (parts[-2] if parts[-2] in ("gen", "refreshes") else parts[-1])
    if "a" in parts:
        return "answers"
    if "s" in parts:
        return "settled days"
    raise AssertionError(f"a key of no known kind: {key}")


def _forge_every_key(client: redis.Redis) -> set[str]:
    """Overwrite every key the fleet wrote, by kind, with what would move an app or a tenant if
    anything read from Redis decided who may read what; also write the apps list as earlier
    releases kept it in Redis (rows of [tenant, app, runs]) with U's app under T. The kinds found."""
    import msgspec

    from app.config import RedisSettings
    from app.fleet.link import RedisLink

    moved = msgspec.msgpack.encode([[examples.T, APP_U, 999], [examples.T, APP_T, 1]])
    far = 99_999_999_999_999
    kinds: set[str] = set()
    budgets: set[str] = set()
    for raw in list(client.scan_iter("dify-stats:*")):
        key, kind = raw.decode(), _kind(raw.decode())
        kinds.add(kind)
        if kind == "answers":
            client.set(key, moved, keepttl=True)
        elif kind == "locks":
            client.set(key, "forged", px=3_600_000)
        elif kind.startswith("budget"):
            budgets.add(key.rsplit(":", 1)[0])
        elif kind == "settled days":  # a ledger and days that name U's app under T
            client.hset(key, mapping={"c": "1e300", "p:20000:daily_runs": moved, "h:20000": "x y"})
        elif kind == "heartbeats":
            client.zadd(key, {f"ghost-{n}": far for n in range(50)})
        else:  # kept runs
            client.delete(key)
            client.hset(key, mapping={"generation": "forged", "refreshes": "9"})
    for budget in budgets:  # every part, also those empty now (an empty sorted set is no key)
        for part in ("slots", "queue", "heads", "alive"):
            client.delete(f"{budget}:{part}")
            client.zadd(f"{budget}:{part}", {f"{examples.T}|{n:015d}|forged|x": far for n in range(20)})
            kinds.add(f"budget {part}")
        client.set(f"{budget}:ticket", "nan", px=60_000)
    link = RedisLink(RedisSettings(url="redis://127.0.0.1:1/0"))  # only names keys; never connects
    for tenant in ("", examples.T):
        client.set(link.data_key(tenant, "a", list[tuple[str, str, int]], ("apps",)), moved, px=900_000)
    return kinds


def test_who_may_read_what_never_changes_with_what_redis_holds(
    pg_conn: psycopg.Connection[Any], start_fleet: Callable[..., list[Service]], redis_url: str
) -> None:
    """Authorization is decided by the keys and the source, never by anything in Redis: with every
    kind of key the fleet writes forged, a fresh replica (reading all it can from Redis) and the
    replica that wrote them answer every key's questions as before."""
    load_history(pg_conn, _two_tenants_lately())
    keys = f"{KEY_T}={examples.T};{KEY_U}={examples.U};{KEY_ALL}=*"
    (first,) = start_fleet(1, STATS_API_KEYS=keys, STATS_CACHE_TTL="0.5")
    before = _verdicts(first)
    assert before["T queries T's app"] == 200 and before["T queries U's app"] == 400
    assert before["T's apps"] == [APP_T, "|", APP_T]
    client = redis.Redis.from_url(redis_url)
    try:
        kinds = _forge_every_key(client)
    finally:
        client.close()
    written = {"answers", "kept runs meta", "kept runs gen", "budget slots", "budget ticket", "heartbeats"}
    assert written <= kinds, kinds
    (fresh,) = start_fleet(1, STATS_API_KEYS=keys, STATS_CACHE_TTL="0.5")
    time.sleep(0.6)  # the first replica's own answers are no longer fresh: it reads Redis too
    assert _verdicts(fresh) == before
    assert _verdicts(first) == before
