"""Configuration: one frozen struct, read once from the environment.

Every variable the README's configuration table lists lives here with its default. A bad value is a
`ConfigError` naming the variable; `python -m app serve` turns it into a message and exit code 2.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from datetime import datetime
from typing import Literal
from urllib.parse import quote, urlsplit

import msgspec

Dialect = Literal["postgres", "sls"]
QueryPlan = Literal["shortcut", "windowed"]

SLS_MAX_CONCURRENCY = 15  # (fact) SLS allows 15 concurrent queries per project
SLS_MAX_TIMEOUT = 55  # (fact) SLS cancels a query after 55 s


class ConfigError(ValueError):
    """A configuration value is missing or malformed; the message names the variable."""


class ApiKey(msgspec.Struct, frozen=True):
    """One bearer key and the tenants it may read (`None` = every tenant)."""

    key: str
    tenants: frozenset[str] | None


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
    settled_ttl: float = 3_600.0
    stale_max: float = 600.0

    dify_database_url: str | None = None
    logstore_since: datetime | None = None

    log_level: str = "info"

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
    """The URL with its password replaced, safe for logs and error messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return parts._replace(netloc=f"{user}:***@{host}{port}").geturl()


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


def load_settings(env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
    """Read and check every variable; `overrides` (from CLI flags) win over the environment."""
    env = os.environ if env is None else env
    reader = _EnvReader(env)

    database_url = reader.text("STATS_DATABASE_URL") or _sls_url_from_dify_vars(reader)
    dialect = reader.choice("STATS_DIALECT", ("postgres", "sls"), _default_dialect(database_url))
    pool_default = reader.integer("ALIYUN_SLS_PG_POOL_SIZE", 8, 1, 1000)
    pool_size = reader.integer("STATS_POOL_SIZE", pool_default, 1, 1000)
    if dialect == "sls" and pool_size > SLS_MAX_CONCURRENCY:
        raise ConfigError(
            f"STATS_POOL_SIZE={pool_size} exceeds {SLS_MAX_CONCURRENCY}, "
            "the concurrent-query limit of an SLS project"
        )
    query_timeout = reader.number("STATS_QUERY_TIMEOUT", 30.0, 0.1, 3600.0)
    if dialect == "sls" and query_timeout > SLS_MAX_TIMEOUT:
        raise ConfigError(f"STATS_QUERY_TIMEOUT={query_timeout} exceeds SLS's own {SLS_MAX_TIMEOUT} s limit")

    values: dict[str, object] = {
        "database_url": database_url,
        "dialect": dialect,
        "data_dir": reader.text("STATS_DATA_DIR") or "./.stats-data",
        "query_plan": reader.choice("STATS_QUERY_PLAN", ("shortcut", "windowed"), "shortcut"),
        "time_slack": reader.integer("STATS_TIME_SLACK", 3600, 0, 86_400 * 7),
        "pool_size": pool_size,
        "query_timeout": query_timeout,
        "max_range_days": reader.integer("STATS_MAX_RANGE_DAYS", 400, 1, 36_500),
        "host": reader.text("STATS_HOST") or "127.0.0.1",
        "port": reader.integer("STATS_PORT", 8000, 1, 65_535),
        "api_keys": parse_api_keys(reader.text("STATS_API_KEYS") or ""),
        "dify_console_api_url": reader.text("DIFY_CONSOLE_API_URL"),
        "dify_timeout": reader.number("STATS_DIFY_TIMEOUT", 5.0, 0.1, 60.0),
        "auth_cache_ttl": reader.number("STATS_AUTH_CACHE_TTL", 60.0, 0.0, 86_400.0),
        "cache_max_entries": reader.integer("STATS_CACHE_MAX_ENTRIES", 10_000, 1, 10_000_000),
        "cache_ttl": reader.number("STATS_CACHE_TTL", 30.0, 0.0, 86_400.0),
        "settle_after": reader.number("STATS_SETTLE_AFTER", 86_400.0, 0.0, 86_400.0 * 30),
        "settled_ttl": reader.number("STATS_SETTLED_TTL", 3_600.0, 0.0, 86_400.0 * 30),
        "stale_max": reader.number("STATS_STALE_MAX", 600.0, 0.0, 86_400.0),
        "dify_database_url": reader.text("STATS_DIFY_DATABASE_URL"),
        "logstore_since": reader.instant("STATS_LOGSTORE_SINCE"),
        "log_level": reader.choice("STATS_LOG_LEVEL", ("debug", "info", "warning", "error"), "info"),
    }
    auth_setting = reader.choice("STATS_AUTH", ("on", "off", ""), "")
    values.update({k: v for k, v in overrides.items() if v is not None})
    values["auth"] = auth_setting == "on" or (auth_setting == "" and bool(values["api_keys"]))
    settings = Settings(**values)  # type: ignore[arg-type]
    _check_auth(settings)
    _check_sources(settings)
    return settings


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
    """`key=tenant[,tenant...]` or `key=*`, entries separated by `;`."""
    keys: list[ApiKey] = []
    for entry in filter(None, (part.strip() for part in text.split(";"))):
        key, sep, scope = entry.partition("=")
        key, scope = key.strip(), scope.strip()
        if not sep or not key or not scope:
            raise ConfigError("STATS_API_KEYS: every entry must be key=tenant_id[,tenant_id...] or key=*")
        if len(key) < 16:
            raise ConfigError("STATS_API_KEYS: keys must be at least 16 characters long")
        tenants = (
            None if scope == "*" else frozenset(t.strip().lower() for t in scope.split(",") if t.strip())
        )
        keys.append(ApiKey(key=key, tenants=tenants))
    if len({k.key for k in keys}) != len(keys):
        raise ConfigError("STATS_API_KEYS: a key is listed twice")
    return tuple(keys)


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
    if database_url and (urlsplit(database_url).hostname or "").endswith("aliyuncs.com"):
        return "sls"
    return "postgres"


def _sls_url_from_dify_vars(reader: _EnvReader) -> str | None:
    """Dify's own ALIYUN_SLS_* variables, used when STATS_DATABASE_URL is unset."""
    names = (
        "ALIYUN_SLS_ACCESS_KEY_ID",
        "ALIYUN_SLS_ACCESS_KEY_SECRET",
        "ALIYUN_SLS_ENDPOINT",
        "ALIYUN_SLS_PROJECT_NAME",
    )
    found = {name: reader.text(name) for name in names}
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


class _EnvReader:
    """Typed access to the environment; every failure names the variable."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env

    def text(self, name: str) -> str | None:
        value = self.env.get(name, "").strip()
        return value or None

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        raw = self.text(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise ConfigError(f"{name}={raw!r} is not a whole number") from None
        if not low <= value <= high:
            raise ConfigError(f"{name}={value} is outside {low}..{high}")
        return value

    def number(self, name: str, default: float, low: float, high: float) -> float:
        raw = self.text(name)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise ConfigError(f"{name}={raw!r} is not a number") from None
        if not low <= value <= high:
            raise ConfigError(f"{name}={value} is outside {low}..{high}")
        return value

    def choice(self, name: str, allowed: tuple[str, ...], default: str) -> str:
        raw = (self.text(name) or default).lower()
        if raw not in allowed:
            shown = ", ".join(a for a in allowed if a)
            raise ConfigError(f"{name}={raw!r} must be one of: {shown}")
        return raw

    def instant(self, name: str) -> datetime | None:
        raw = self.text(name)
        if raw is None:
            return None
        try:
            return parse_instant(raw)
        except ValueError as error:
            raise ConfigError(f"{name}={error}") from None
