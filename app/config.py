"""Configuration: one frozen struct, read once from the environment.

Every variable the README's configuration table lists lives here with its default. A bad value is a
`ConfigError` naming the variable; `python -m app serve` turns it into a message and exit code 2.
"""

from __future__ import annotations

import ipaddress
import os
import re
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Literal, get_args, get_type_hints
from urllib.parse import quote, urlsplit

import msgspec
import psycopg
from psycopg.conninfo import conninfo_to_dict

from app.logging import names_a_secret

Dialect = Literal["postgres", "sls"]
QueryPlan = Literal["shortcut", "windowed"]

SLS_MAX_CONCURRENCY = 15  # (fact) SLS allows 15 concurrent queries per project
SLS_MAX_TIMEOUT = 55  # (fact) SLS cancels a query after 55 s
MIN_KEY_CHARS = 16  # an API or metrics key shorter than this is refused at start
UUID_CHARS = 36


class ConfigError(ValueError):
    """A configuration value is missing or malformed; the message names the variable."""


class ApiKey(msgspec.Struct, frozen=True):
    """One bearer key and the tenants it may read (`None` = every tenant)."""

    key: str
    tenants: frozenset[str] | None


class RedisSettings(msgspec.Struct, frozen=True, kw_only=True):
    """Where replicas share their budget, cache and kept runs: one URL, or Sentinel as Dify
    configures it (the master's address comes from the sentinels). The master's credentials and
    database come from STATS_REDIS_USERNAME / STATS_REDIS_PASSWORD / STATS_REDIS_DB, or from the
    URL, which says them in one place."""

    url: str | None = None  # redis:// or rediss://
    sentinels: tuple[tuple[str, int], ...] = ()
    sentinel_service_name: str | None = None
    sentinel_username: str | None = None
    sentinel_password: str | None = None
    tls: bool = False  # Sentinel mode: TLS to the sentinels and the master (a URL says rediss://)
    username: str | None = None
    password: str | None = None
    db: int = 0
    prefix: str = "dify-stats:"
    ca_file: str | None = None  # CA bundle for rediss:// (and TLS to sentinels)

    def redacted(self) -> str:
        """Where Redis is, without any password (logs, /readyz, the start-up line)."""
        if self.url is not None:
            return redact_url(self.url)
        addresses = ",".join(f"{host}:{port}" for host, port in self.sentinels)
        return f"sentinel {self.sentinel_service_name} via {addresses} db {self.db}"


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    database_url: str | None = None
    dialect: Dialect = "postgres"
    data_dir: str = "./.stats-data"
    query_plan: QueryPlan = "shortcut"
    time_slack: int = 3600
    pool_size: int = 8
    query_timeout: float = 30.0
    max_range_days: int = 400

    host: str = "127.0.0.1"
    port: int = 8000
    auth: bool = False
    api_keys: tuple[ApiKey, ...] = ()

    dify_console_api_url: str | None = None
    dify_timeout: float = 5.0
    auth_cache_ttl: float = 60.0

    cache_max_entries: int = 10_000
    cache_ttl: float = 30.0
    settle_after: float = 86_400.0
    settled_ttl: float = 3_600.0  # settled days are validated this often (app/core/settled.py)
    stale_max: float = 600.0
    live_runs_max: int = 200_000  # runs kept for live days and range edges (app/core/kept_runs.py)
    settled_days_max: int = 200_000  # settled days kept in memory, each measure's day counting one
    near_cache: bool = True  # off: with Redis, no in-process copy of shared answers (the bench only)

    # Hostile and heavy traffic (docs/reliability.md)
    max_queries_per_request: int = 64
    tenant_share: float = 0.5
    max_inflight: int = 128
    probe_interval: float = 1.0

    dify_database_url: str | None = None
    logstore_since: datetime | None = None
    logstore_ttl_days: int | None = None  # Dify's ALIYUN_SLS_LOGSTORE_TTL: the LogStore's retention
    sls_field_bytes: int = 2048  # SLS's longest text value in SQL results (per logstore, 64..16384)
    node_executions_max: int = 10_000  # node executions in one answer (app/stores/node_repository.py)

    log_level: str = "info"
    startup_wait: float = 0.0
    max_connections: int = 1000
    header_timeout: float = 10.0  # seconds a client has to send a request's head (app/http/protocol.py)
    body_timeout: float = 10.0  # seconds, from the head's end, to send the whole body (app/http/protocol.py)
    metrics_key: str | None = None  # Bearer key /metrics requires; None: /metrics is open

    redis: RedisSettings | None = None  # replicas sharing one Redis (app/fleet/link.py)

    @property
    def embedded(self) -> bool:
        """No backend configured: serve the embedded PostgreSQL with demo data (split into both
        sources at STATS_LOGSTORE_SINCE when it is set)."""
        return self.database_url is None and self.dify_database_url is None

    @property
    def two_sources(self) -> bool:
        """A migration: workflow_runs before STATS_LOGSTORE_SINCE, the LogStore from it on."""
        return self.logstore_since is not None

    def redacted_database_url(self) -> str:
        return redact_url(self.database_url) if self.database_url else "embedded"


def redact_url(url: str) -> str:
    """The URL (or libpq key=value string) with every credential in it replaced by `***`: the
    user information's password, and any parameter whose name holds `password`, `secret` or
    `token` (libpq and redis-py both take `?password=`; libpq also `sslpassword`). Safe for logs
    and error messages.

    Total: it is shown in the very messages that say a URL is malformed, so it parses no port or
    IPv6 address and never raises. The user information runs to the last `@` before the query, so
    a `/`, `#` or `@` left unencoded in a password is hidden as well."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return _redact_conninfo(url)
    before_query, question, query = rest.partition("?")
    userinfo, at, location = before_query.rpartition("@")
    if at and ":" in userinfo:
        before_query = f"{userinfo.partition(':')[0]}:***@{location}"
    return f"{scheme}://{before_query}{question}{_redact_parameters(query) if question else ''}"


# libpq's key = value pairs: a value is quoted ('...' with backslash escapes) or runs to a space.
_CONNINFO_PAIR = re.compile(
    r"(?P<key>[^\s=]+)(?P<equals>\s*=\s*)(?P<value>'(?:[^'\\]|\\.)*'|(?:[^\s\\]|\\.)*)"
)


def _redact_parameters(query: str) -> str:
    """A URL's `name=value&...` with the value of each secret's name hidden."""
    pairs = (item.partition("=") for item in query.split("&"))
    return "&".join(
        name + ("=***" if eq and names_a_secret(name) else eq + value) for name, eq, value in pairs
    )


def _redact_conninfo(text: str) -> str:
    """A key=value string with its secrets hidden; one libpq cannot read is not shown at all
    (where it went wrong, a value may read as a key)."""
    try:
        conninfo_to_dict(text)
    except (psycopg.Error, ValueError):  # ValueError: text libpq cannot even be given (not UTF-8)
        return "(a key=value string libpq cannot read)"
    return _CONNINFO_PAIR.sub(
        lambda pair: pair["key"] + pair["equals"] + ("***" if names_a_secret(pair["key"]) else pair["value"]),
        text,
    )


def parse_instant(text: str) -> datetime:
    """An ISO-8601 instant with an offset (`Z` allowed); ValueError saying what is wrong."""
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{text!r} is not an ISO-8601 instant") from None
    if value.tzinfo is None:
        raise ValueError(f"{text!r} needs an offset (e.g. 2025-06-01T00:00:00+00:00)")
    return value


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _Variables(msgspec.Struct, frozen=True, kw_only=True):
    """The plain variables as the environment gives them, each with its bounds and default,
    declared once: msgspec's conversion checks them and its errors name the variable."""

    STATS_DIALECT: Dialect | None = None  # default: sls for an aliyuncs.com host
    STATS_DATA_DIR: str = "./.stats-data"
    STATS_QUERY_PLAN: QueryPlan = "shortcut"
    STATS_TIME_SLACK: Annotated[int, msgspec.Meta(ge=0, le=86_400 * 7)] = 3600
    ALIYUN_SLS_PG_POOL_SIZE: Annotated[int, msgspec.Meta(ge=1, le=1000)] | None = None
    STATS_POOL_SIZE: Annotated[int, msgspec.Meta(ge=1, le=1000)] | None = None
    STATS_QUERY_TIMEOUT: Annotated[float, msgspec.Meta(ge=0.1, le=3600)] = 30.0
    STATS_MAX_RANGE_DAYS: Annotated[int, msgspec.Meta(ge=1, le=36_500)] = 400
    STATS_HOST: str = "127.0.0.1"
    STATS_PORT: Annotated[int, msgspec.Meta(ge=1, le=65_535)] = 8000
    STATS_AUTH: Literal["on", "off"] | None = None  # default: on when keys are set
    STATS_DIFY_TIMEOUT: Annotated[float, msgspec.Meta(ge=0.1, le=60)] = 5.0
    STATS_AUTH_CACHE_TTL: Annotated[float, msgspec.Meta(ge=0, le=86_400)] = 60.0
    STATS_CACHE_MAX_ENTRIES: Annotated[int, msgspec.Meta(ge=1, le=10_000_000)] = 10_000
    STATS_CACHE_TTL: Annotated[float, msgspec.Meta(ge=0, le=86_400)] = 30.0
    STATS_SETTLE_AFTER: Annotated[float, msgspec.Meta(ge=0, le=86_400 * 30)] = 86_400.0
    STATS_SETTLED_TTL: Annotated[float, msgspec.Meta(ge=0, le=86_400 * 30)] = 3_600.0
    STATS_STALE_MAX: Annotated[float, msgspec.Meta(ge=0, le=86_400)] = 600.0
    STATS_LIVE_RUNS_MAX: Annotated[int, msgspec.Meta(ge=0, le=100_000_000)] = 200_000
    STATS_SETTLED_DAYS_MAX: Annotated[int, msgspec.Meta(ge=1, le=100_000_000)] = 200_000
    STATS_MAX_QUERIES_PER_REQUEST: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 64
    STATS_TENANT_SHARE: Annotated[float, msgspec.Meta(ge=0.01, le=1)] = 0.5
    STATS_MAX_INFLIGHT: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 128
    STATS_PROBE_INTERVAL: Annotated[float, msgspec.Meta(ge=0.1, le=60)] = 1.0
    ALIYUN_SLS_LOGSTORE_TTL: Annotated[int, msgspec.Meta(ge=0, le=36_500)] = 0  # 0: not set
    STATS_SLS_FIELD_BYTES: Annotated[int, msgspec.Meta(ge=64, le=16_384)] = 2048
    STATS_NODE_EXECUTIONS_MAX: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 10_000
    STATS_LOG_LEVEL: Literal["debug", "info", "warning", "error"] = "info"
    STATS_STARTUP_WAIT: Annotated[float, msgspec.Meta(ge=0, le=3600)] = 0.0
    STATS_MAX_CONNECTIONS: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] = 1000
    STATS_HEADER_TIMEOUT: Annotated[float, msgspec.Meta(ge=0.1, le=3600)] = 10.0
    STATS_BODY_TIMEOUT: Annotated[float, msgspec.Meta(ge=0.1, le=3600)] = 10.0
    STATS_REDIS_PREFIX: Annotated[
        str, msgspec.Meta(min_length=1, max_length=64, pattern="^[A-Za-z0-9_.:-]+$")
    ] = "dify-stats:"
    STATS_REDIS_DB: Annotated[int, msgspec.Meta(ge=0, le=1_000)] = 0
    STATS_REDIS_TLS: Literal["on", "off"] = "off"
    STATS_NEAR_CACHE: Literal["on", "off"] = "on"


_CASE_FREE = (
    "STATS_DIALECT", "STATS_QUERY_PLAN", "STATS_AUTH", "STATS_LOG_LEVEL", "STATS_REDIS_TLS",
    "STATS_NEAR_CACHE",
)  # fmt: skip


def _read_variables(env: Mapping[str, str]) -> _Variables:
    raw = {name: env[name].strip() for name in _Variables.__struct_fields__ if env.get(name, "").strip()}
    raw.update({name: raw[name].lower() for name in _CASE_FREE if name in raw})
    try:
        return msgspec.convert(raw, _Variables, strict=False)
    except msgspec.ValidationError as error:
        problem, _, path = str(error).rpartition(" - at `$.")
        name = path.rstrip("`")
        value = raw.get(name, "")
        choices = _choices(get_type_hints(_Variables)[name])
        if choices:
            raise ConfigError(f"{name}={value!r} must be one of: {', '.join(choices)}") from None
        problem = problem.replace(" | null", "").replace("Expected", "expected")
        raise ConfigError(f"{name}={value!r}: {problem}") from None


def _choices(hint: object) -> list[str]:
    """The values a Literal (possibly inside an Optional) allows."""
    return [value for arg in get_args(hint) for value in ([arg] if isinstance(arg, str) else _choices(arg))]


def load_settings(env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
    """Read and check every variable; `overrides` (from CLI flags) win over the environment."""
    env = os.environ if env is None else env
    found = _read_variables(env)
    own_url = _postgres_url(env, "STATS_DATABASE_URL")
    database_url = own_url or _sls_url_from_dify_vars(env)
    dialect = found.STATS_DIALECT or _default_dialect(database_url)
    # SLS allows 15 concurrent queries per project, shared with Dify's own readers: take a third.
    # Dify's pool size counts only where Dify's variables say where the store is.
    pool_variable, pool_size = "STATS_POOL_SIZE", found.STATS_POOL_SIZE
    if pool_size is None and own_url is None and database_url and found.ALIYUN_SLS_PG_POOL_SIZE:
        pool_variable, pool_size = "ALIYUN_SLS_PG_POOL_SIZE", found.ALIYUN_SLS_PG_POOL_SIZE
    pool_size = pool_size or (5 if dialect == "sls" else 8)
    if dialect == "sls" and pool_size > SLS_MAX_CONCURRENCY:
        raise ConfigError(
            f"{pool_variable}={pool_size} exceeds {SLS_MAX_CONCURRENCY}, "
            "the concurrent-query limit of an SLS project"
        )
    query_timeout = found.STATS_QUERY_TIMEOUT
    if dialect == "sls" and query_timeout > SLS_MAX_TIMEOUT:
        raise ConfigError(f"STATS_QUERY_TIMEOUT={query_timeout} exceeds SLS's own {SLS_MAX_TIMEOUT} s limit")
    since = _text(env, "STATS_LOGSTORE_SINCE")
    try:
        logstore_since = parse_instant(since) if since else None
    except ValueError as error:
        raise ConfigError(f"STATS_LOGSTORE_SINCE={error}") from None

    values: dict[str, object] = {
        "database_url": database_url,
        "dialect": dialect,
        "data_dir": found.STATS_DATA_DIR,
        "query_plan": found.STATS_QUERY_PLAN,
        "time_slack": found.STATS_TIME_SLACK,
        "pool_size": pool_size,
        "query_timeout": query_timeout,
        "max_range_days": found.STATS_MAX_RANGE_DAYS,
        "host": found.STATS_HOST,
        "port": found.STATS_PORT,
        "api_keys": parse_api_keys(_text(env, "STATS_API_KEYS") or ""),
        "dify_console_api_url": _text(env, "DIFY_CONSOLE_API_URL"),
        "dify_timeout": found.STATS_DIFY_TIMEOUT,
        "auth_cache_ttl": found.STATS_AUTH_CACHE_TTL,
        "cache_max_entries": found.STATS_CACHE_MAX_ENTRIES,
        "cache_ttl": found.STATS_CACHE_TTL,
        "settle_after": found.STATS_SETTLE_AFTER,
        "settled_ttl": found.STATS_SETTLED_TTL,
        "stale_max": found.STATS_STALE_MAX,
        "live_runs_max": found.STATS_LIVE_RUNS_MAX,
        "settled_days_max": found.STATS_SETTLED_DAYS_MAX,
        "near_cache": found.STATS_NEAR_CACHE == "on",
        "max_queries_per_request": found.STATS_MAX_QUERIES_PER_REQUEST,
        "tenant_share": found.STATS_TENANT_SHARE,
        "max_inflight": found.STATS_MAX_INFLIGHT,
        "probe_interval": found.STATS_PROBE_INTERVAL,
        "dify_database_url": _postgres_url(env, "STATS_DIFY_DATABASE_URL"),
        "logstore_since": logstore_since,
        "logstore_ttl_days": found.ALIYUN_SLS_LOGSTORE_TTL or None,
        "sls_field_bytes": found.STATS_SLS_FIELD_BYTES,
        "node_executions_max": found.STATS_NODE_EXECUTIONS_MAX,
        "log_level": found.STATS_LOG_LEVEL,
        "startup_wait": found.STATS_STARTUP_WAIT,
        "max_connections": found.STATS_MAX_CONNECTIONS,
        "header_timeout": found.STATS_HEADER_TIMEOUT,
        "body_timeout": found.STATS_BODY_TIMEOUT,
        "metrics_key": _metrics_key(env),
        "redis": _redis_settings(env, found),
    }
    values.update({k: v for k, v in overrides.items() if v is not None})
    values["auth"] = found.STATS_AUTH == "on" or (found.STATS_AUTH is None and bool(values["api_keys"]))
    settings = Settings(**values)  # type: ignore[arg-type]
    _check_auth(settings)
    _check_sources(settings)
    return settings


def _text(env: Mapping[str, str], name: str) -> str | None:
    return env.get(name, "").strip() or None


def _postgres_url(env: Mapping[str, str], name: str) -> str | None:
    """A URL of a store that speaks PostgreSQL's protocol (SLS's endpoint does); libpq's
    `key=value` form is accepted too."""
    url = _text(env, name)
    scheme = url.partition("://")[0] if url and "://" in url else None
    if scheme is not None and scheme.lower() not in ("postgresql", "postgres"):
        raise ConfigError(
            f"{name}: a {scheme}:// URL cannot be read: the store must speak PostgreSQL's wire "
            "protocol, as SLS's PostgreSQL endpoint does (postgresql://user:password@host:port/database)"
        )
    if url is not None:
        _check_libpq_address(name, url)
    return url


_PERCENT_ENCODE = "percent-encode any '/', '?', '#', '@' or '%' in the user name or password"


def _check_libpq_address(name: str, url: str) -> None:
    """What libpq would refuse at connect time, refused now with the variable named: a string its
    own parser cannot read (an IPv6 host without its `]`), or a port that is not a number from 1 to
    65535. The message shows the URL with its password hidden and no part libpq read from it (a
    password's unencoded `/` makes its first half a "port")."""
    hint = f" ({_PERCENT_ENCODE})" if "://" in url else ""
    try:
        options = conninfo_to_dict(url)
    except (psycopg.Error, ValueError):
        location = url.partition("?")[0].rpartition("@")[2]
        bracket = "://" in url and "[" in location and "]" not in location
        reason = "an IPv6 host needs its closing ']'" if bracket else f"libpq cannot read it{hint}"
        raise ConfigError(f"{name}={redact_url(url)!r}: {reason}") from None
    if not all(_is_port(port) for port in str(options.get("port") or "").split(",") if port):
        raise ConfigError(f"{name}={redact_url(url)!r}: a port must be a number from 1 to 65535{hint}")


def _is_port(text: str) -> bool:
    return text.isascii() and text.isdigit() and 0 < int(text) < 65_536


def _check_sources(settings: Settings) -> None:
    """The source combinations: the LogStore, workflow_runs, or both split at an instant.

    The embedded default may be split too (both tables in the embedded server, for the demo)."""
    logstore, workflow_runs = settings.database_url is not None, settings.dify_database_url is not None
    since = settings.logstore_since is not None
    if since and logstore and not workflow_runs:
        raise ConfigError("STATS_LOGSTORE_SINCE needs STATS_DIFY_DATABASE_URL (the workflow_runs side)")
    if since and workflow_runs and not logstore:
        raise ConfigError(
            "STATS_LOGSTORE_SINCE needs the LogStore too (STATS_DATABASE_URL or ALIYUN_SLS_*); "
            "without it, unset STATS_LOGSTORE_SINCE to serve workflow_runs alone"
        )
    if logstore and workflow_runs and not since:
        raise ConfigError(
            "STATS_DATABASE_URL and STATS_DIFY_DATABASE_URL together need STATS_LOGSTORE_SINCE "
            "(the instant runs start being read from the LogStore)"
        )


def parse_api_keys(text: str) -> tuple[ApiKey, ...]:
    """`key=tenant[,tenant...]` or `key=*`, entries separated by `;`. A key may hold `=` (base64
    keys end in one or two), a tenant id never does: the entry splits at its last `=`. A tenant is
    a UUID as the routes take it (8-4-4-4-12 hexadecimal digits): anything else could never match
    a request, and the key would only ever be refused. Messages name an entry by its position,
    never by its key."""
    keys: list[ApiKey] = []
    for position, entry in enumerate(filter(None, (part.strip() for part in text.split(";"))), 1):
        where = f"STATS_API_KEYS: entry {position}"
        key, sep, scope = entry.rpartition("=")
        key, scope = key.strip(), scope.strip()
        if not sep or not key or not scope:
            raise ConfigError(f"{where} must be key=tenant_id[,tenant_id...] or key=*")
        if len(key) < MIN_KEY_CHARS:
            raise ConfigError(f"{where}: keys must be at least {MIN_KEY_CHARS} characters long")
        tenants = None if scope == "*" else [tenant.strip() for tenant in scope.split(",")]
        if tenants is not None and not all(map(is_uuid, tenants)):
            raise ConfigError(
                f"{where}: every tenant must be a UUID (8-4-4-4-12 hexadecimal digits), or the scope `*`"
            )
        keys.append(ApiKey(key=key, tenants=None if tenants is None else frozenset(map(str.lower, tenants))))
    if len({k.key for k in keys}) != len(keys):
        raise ConfigError("STATS_API_KEYS: a key is listed twice")
    return tuple(keys)


def is_uuid(text: str) -> bool:
    """A UUID in its canonical text (dashes included; either case)."""
    try:
        return len(text) == UUID_CHARS and str(uuid.UUID(text)) == text.lower()
    except ValueError:
        return False


def _metrics_key(env: Mapping[str, str]) -> str | None:
    key = _text(env, "STATS_METRICS_KEY")
    if key is not None and len(key) < MIN_KEY_CHARS:
        raise ConfigError(f"STATS_METRICS_KEY: keys must be at least {MIN_KEY_CHARS} characters long")
    return key


def _redis_settings(env: Mapping[str, str], found: _Variables) -> RedisSettings | None:
    """STATS_REDIS_URL, or STATS_REDIS_SENTINELS (`host:port,host:port`) with the service name;
    None when neither is set (one process needs nothing beyond its store)."""
    url = _text(env, "STATS_REDIS_URL")
    sentinels_text = _text(env, "STATS_REDIS_SENTINELS")
    ca_file = _text(env, "STATS_REDIS_CA_FILE")
    if ca_file is not None and not os.path.isfile(ca_file):
        raise ConfigError(f"STATS_REDIS_CA_FILE={ca_file!r} is not a readable file")
    common = {
        "prefix": found.STATS_REDIS_PREFIX,
        "ca_file": ca_file,
        "username": _text(env, "STATS_REDIS_USERNAME"),
        "password": _text(env, "STATS_REDIS_PASSWORD"),
        "db": found.STATS_REDIS_DB,
    }
    if url is not None:
        if sentinels_text is not None:
            raise ConfigError("set STATS_REDIS_URL or STATS_REDIS_SENTINELS, not both")
        try:
            parts = urlsplit(url)  # as redis-py reads it; an IPv6 host without its `]` raises here
            parts.port  # noqa: B018 - a bad port raises here
            database = parts.path.strip("/")
            if database and not (database.isascii() and database.isdigit()):
                raise ValueError(database)
        except ValueError:
            raise ConfigError(
                f"STATS_REDIS_URL={redact_url(url)!r}: bad port or database number, or an IPv6 host "
                f"without its ']' (a port is 1 to 65535; {_PERCENT_ENCODE})"
            ) from None
        if parts.scheme not in ("redis", "rediss") or not parts.hostname:
            raise ConfigError(
                f"STATS_REDIS_URL={redact_url(url)!r} must be redis://host:port/db or rediss://..."
            )
        # Dify keeps its Redis password apart from the host: the separate variables fill in what
        # the URL leaves out, and saying one thing in both places is refused.
        given_twice = [
            name
            for name, in_url in (
                ("STATS_REDIS_USERNAME", parts.username),
                ("STATS_REDIS_PASSWORD", parts.password),
                ("STATS_REDIS_DB", database),
            )
            if in_url and _text(env, name) is not None
        ]
        if given_twice:
            raise ConfigError(f"{given_twice[0]} is also in STATS_REDIS_URL: set it in one place")
        return RedisSettings(url=url, **common)  # type: ignore[arg-type]
    if sentinels_text is None:
        return None
    sentinels = []
    for entry in filter(None, (part.strip() for part in sentinels_text.split(","))):
        host, _, port = entry.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65_536:
            raise ConfigError(f"STATS_REDIS_SENTINELS: {entry!r} is not host:port")
        sentinels.append((host, int(port)))
    service = _text(env, "STATS_REDIS_SENTINEL_SERVICE_NAME")
    if not sentinels or service is None:
        raise ConfigError(
            "STATS_REDIS_SENTINELS needs host:port entries and STATS_REDIS_SENTINEL_SERVICE_NAME"
        )
    return RedisSettings(
        sentinels=tuple(sentinels),
        sentinel_service_name=service,
        sentinel_username=_text(env, "STATS_REDIS_SENTINEL_USERNAME"),
        sentinel_password=_text(env, "STATS_REDIS_SENTINEL_PASSWORD"),
        tls=found.STATS_REDIS_TLS == "on",
        **common,  # type: ignore[arg-type]
    )


def _check_auth(settings: Settings) -> None:
    if is_loopback(settings.host):
        if settings.auth and not settings.api_keys:
            raise ConfigError("STATS_AUTH=on needs STATS_API_KEYS")
        return
    if not settings.auth or not settings.api_keys:
        raise ConfigError(
            f"listening on {settings.host} (not loopback) needs STATS_API_KEYS; "
            "STATS_AUTH=off is allowed only on a loopback address"
        )


def _default_dialect(database_url: str | None) -> str:
    """sls for an Aliyun host (libpq reads the hosts: a URL's or a key=value string's)."""
    if database_url is None:
        return "postgres"
    try:
        hosts = str(conninfo_to_dict(database_url).get("host") or "").split(",")
    except (psycopg.Error, ValueError):
        return "postgres"
    return "sls" if any(host.lower().endswith("aliyuncs.com") for host in hosts) else "postgres"


def _sls_url_from_dify_vars(env: Mapping[str, str]) -> str | None:
    """Dify's own ALIYUN_SLS_* variables, used when STATS_DATABASE_URL is unset."""
    names = (
        "ALIYUN_SLS_ACCESS_KEY_ID",
        "ALIYUN_SLS_ACCESS_KEY_SECRET",
        "ALIYUN_SLS_ENDPOINT",
        "ALIYUN_SLS_PROJECT_NAME",
    )
    found = {name: _text(env, name) for name in names}
    if not any(found.values()):
        return None
    missing = [name for name, value in found.items() if not value]
    if missing:
        raise ConfigError(f"incomplete SLS settings: {', '.join(missing)} not set")
    ak_id, ak_secret, endpoint, project = (str(found[name]) for name in names)
    endpoint = endpoint.removeprefix("https://").removeprefix("http://").rstrip("/")
    host = endpoint if endpoint.startswith(project + ".") else f"{project}.{endpoint}"
    credentials = f"{quote(ak_id, safe='')}:{quote(ak_secret, safe='')}"
    return f"postgresql://{credentials}@{host}:5432/{project}?sslmode=require"
