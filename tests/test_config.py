# ruff: noqa: S104 - binding to 0.0.0.0 is what these tests configure
"""Settings from the environment: defaults, Dify's SLS names, and clear errors on bad values."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.config import ConfigError, load_settings, redact_url
from app.stores.budget import LocalBudget

KEY = "k" * 32
TENANT = "0a000000-0000-4000-8000-00000000000a"


def test_defaults_are_the_spec_defaults() -> None:
    settings = load_settings({})
    assert settings.embedded and settings.database_url is None
    assert (settings.dialect, settings.query_plan, settings.data_dir) == (
        "postgres",
        "shortcut",
        "./.stats-data",
    )
    assert (settings.pool_size, settings.query_timeout, settings.time_slack) == (8, 30.0, 3600)
    assert (settings.max_range_days, settings.auth_cache_ttl, settings.stale_max) == (400, 60.0, 600.0)
    assert (settings.cache_ttl, settings.settle_after, settings.settled_ttl) == (30.0, 86_400.0, 3_600.0)
    assert (settings.host, settings.port, settings.auth) == ("127.0.0.1", 8000, False)
    assert (settings.startup_wait, settings.max_connections) == (0.0, 1000)


def test_startup_wait_and_connection_cap_are_read_and_checked() -> None:
    settings = load_settings({"STATS_STARTUP_WAIT": "45", "STATS_MAX_CONNECTIONS": "64"})
    assert (settings.startup_wait, settings.max_connections) == (45.0, 64)
    for name, bad in (
        ("STATS_STARTUP_WAIT", "-1"),
        ("STATS_STARTUP_WAIT", "soon"),
        ("STATS_MAX_CONNECTIONS", "0"),
        ("STATS_MAX_CONNECTIONS", "1.5"),
    ):
        with pytest.raises(ConfigError, match=name):
            load_settings({name: bad})


def test_sls_host_selects_the_sls_dialect() -> None:
    settings = load_settings(
        {"STATS_DATABASE_URL": "postgresql://ak:sk@proj.cn-hangzhou.log.aliyuncs.com:5432/proj"}
    )
    assert settings.dialect == "sls"
    assert load_settings({"STATS_DATABASE_URL": "postgresql://u@db:5432/x"}).dialect == "postgres"


def test_dify_sls_variables_are_mapped_when_no_url_is_set() -> None:
    settings = load_settings(
        {
            "ALIYUN_SLS_ACCESS_KEY_ID": "AKID",
            "ALIYUN_SLS_ACCESS_KEY_SECRET": "se/cr@t",
            "ALIYUN_SLS_ENDPOINT": "cn-hangzhou.log.aliyuncs.com",
            "ALIYUN_SLS_PROJECT_NAME": "dify-logs",
            "ALIYUN_SLS_PG_POOL_SIZE": "12",
        }
    )
    assert settings.database_url == (
        "postgresql://AKID:se%2Fcr%40t@dify-logs.cn-hangzhou.log.aliyuncs.com:5432/dify-logs?sslmode=require"
    )
    assert (settings.dialect, settings.pool_size) == ("sls", 12)
    assert "se%2Fcr%40t" not in settings.redacted_database_url()


def test_difys_pool_size_counts_only_with_difys_store_variables() -> None:
    """With its own URL, this service's pool is its own: Dify's pool size is Dify's share of the
    project's budget, counted beside ours, not instead of it."""
    url = "postgresql://ak:sk@proj.cn-hangzhou.log.aliyuncs.com:5432/proj"
    assert load_settings({"STATS_DATABASE_URL": url, "ALIYUN_SLS_PG_POOL_SIZE": "12"}).pool_size == 5
    dify_postgres = {"STATS_DIFY_DATABASE_URL": "postgresql://u:p@h/db", "ALIYUN_SLS_PG_POOL_SIZE": "40"}
    assert load_settings(dify_postgres).pool_size == 8  # no SLS store at all: the postgres default
    dify_store = {
        "ALIYUN_SLS_ACCESS_KEY_ID": "a",
        "ALIYUN_SLS_ACCESS_KEY_SECRET": "b",
        "ALIYUN_SLS_ENDPOINT": "cn-hangzhou.log.aliyuncs.com",
        "ALIYUN_SLS_PROJECT_NAME": "p",
    }
    with pytest.raises(ConfigError, match="ALIYUN_SLS_PG_POOL_SIZE=20 exceeds 15"):
        load_settings({**dify_store, "ALIYUN_SLS_PG_POOL_SIZE": "20"})
    ours = load_settings({**dify_store, "ALIYUN_SLS_PG_POOL_SIZE": "20", "STATS_POOL_SIZE": "4"})
    assert ours.pool_size == 4


def test_incomplete_dify_sls_variables_name_what_is_missing() -> None:
    with pytest.raises(ConfigError, match="ALIYUN_SLS_PROJECT_NAME"):
        load_settings(
            {"ALIYUN_SLS_ACCESS_KEY_ID": "a", "ALIYUN_SLS_ACCESS_KEY_SECRET": "b", "ALIYUN_SLS_ENDPOINT": "c"}
        )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"STATS_POOL_SIZE": "abc"}, "STATS_POOL_SIZE='abc': expected `int`, got `str`"),
        ({"STATS_POOL_SIZE": "0"}, "STATS_POOL_SIZE='0': expected `int` >= 1"),
        ({"STATS_DIALECT": "sls", "STATS_POOL_SIZE": "20"}, "exceeds 15"),
        ({"STATS_DIALECT": "sls", "STATS_QUERY_TIMEOUT": "60"}, "55 s"),
        ({"STATS_QUERY_PLAN": "fast"}, "STATS_QUERY_PLAN='fast' must be one of: shortcut, windowed"),
        ({"STATS_DIALECT": "mysql"}, "STATS_DIALECT"),
        ({"STATS_QUERY_TIMEOUT": "soon"}, "STATS_QUERY_TIMEOUT"),
        ({"STATS_HOST": "0.0.0.0"}, "needs STATS_API_KEYS"),
        ({"STATS_HOST": "0.0.0.0", "STATS_API_KEYS": f"{KEY}=*", "STATS_AUTH": "off"}, "loopback"),
        ({"STATS_AUTH": "on"}, "STATS_AUTH=on needs STATS_API_KEYS"),
        ({"STATS_API_KEYS": "short=*"}, "at least 16"),
        ({"STATS_DATABASE_URL": "mysql://u:pw@db:3306/dify"}, "must speak PostgreSQL's wire protocol"),
        ({"STATS_DIFY_DATABASE_URL": "sqlite:///dify.db"}, "a sqlite:// URL cannot be read"),
        ({"STATS_API_KEYS": f"{KEY}"}, "key=tenant_id"),
        (
            {"STATS_DATABASE_URL": "postgresql://x/y", "STATS_LOGSTORE_SINCE": "2025-06-01T00:00:00+00:00"},
            "needs STATS_DIFY_DATABASE_URL",
        ),
        (
            {"STATS_DIFY_DATABASE_URL": "postgresql://x/y", "STATS_LOGSTORE_SINCE": "2025-06-01T00:00:00Z"},
            "needs the LogStore too",
        ),
        (
            {"STATS_DATABASE_URL": "postgresql://x/y", "STATS_DIFY_DATABASE_URL": "postgresql://x/z"},
            "need STATS_LOGSTORE_SINCE",
        ),
        ({"STATS_DIFY_DATABASE_URL": "postgresql://x/y", "STATS_LOGSTORE_SINCE": "yesterday"}, "ISO-8601"),
        ({"STATS_DIFY_DATABASE_URL": "postgresql://x/y", "STATS_LOGSTORE_SINCE": "2025-06-01"}, "offset"),
    ],
)
def test_bad_values_are_refused_with_the_variable_named(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_settings(env)


def test_api_keys_and_public_listening() -> None:
    settings = load_settings(
        {"STATS_HOST": "0.0.0.0", "STATS_API_KEYS": f"{KEY}={TENANT},{TENANT.upper()}; {'z' * 20}=*"}
    )
    assert settings.auth
    assert settings.api_keys[0].tenants == frozenset({TENANT})  # case-insensitive, like UUIDs
    assert settings.api_keys[1].tenants is None


def test_keys_holding_equals_signs_are_split_at_the_last_one() -> None:
    one, two = "c2VjcmV0LWtleS0wMQ==", "c2VjcmV0LWtleS0wMDI="  # base64 keys end in `=`
    settings = load_settings({"STATS_API_KEYS": f"{one}={TENANT}; {two}=*"})
    assert [(key.key, key.tenants) for key in settings.api_keys] == [(one, frozenset({TENANT})), (two, None)]


def test_cli_flags_override_the_environment() -> None:
    settings = load_settings({"STATS_PORT": "9000"}, port=9100, host=None)
    assert (settings.port, settings.host) == (9100, "127.0.0.1")


def test_redact_url_hides_the_password() -> None:
    assert redact_url("postgresql://ak:secret@h:5432/p") == "postgresql://ak:***@h:5432/p"
    assert redact_url("postgresql://u:pw@[::1]:5432,h2:5433/db") == "postgresql://u:***@[::1]:5432,h2:5433/db"
    assert redact_url("redis://:pw@[::1/0") == "redis://:***@[::1/0"  # malformed: still hidden


def test_redact_url_hides_credentials_in_parameters() -> None:
    """libpq and redis-py both read `?password=`; libpq's key=value form holds them as well."""
    assert redact_url("postgresql://u@/db?host=/tmp/pg&password=pw&sslpassword=key&sslmode=require") == (
        "postgresql://u@/db?host=/tmp/pg&password=***&sslpassword=***&sslmode=require"
    )
    assert redact_url("redis://h:6379/5?password=pw&Client_Secret=s&x-token=t&db=5") == (
        "redis://h:6379/5?password=***&Client_Secret=***&x-token=***&db=5"
    )
    assert redact_url("host=/tmp/pg password=pw dbname=d sslpassword = 'a b\\' c' port=5432") == (
        "host=/tmp/pg password=*** dbname=d sslpassword = *** port=5432"
    )
    assert redact_url("host=x passwordpw") == "(a key=value string libpq cannot read)"


@given(st.text(max_size=60))
def test_redact_url_never_raises(text: str) -> None:
    """It is called inside the very errors that say a URL is malformed."""
    for url in (text, f"redis://{text}", f"postgresql://h/d?{text}", "host=\udcff " + text):
        redact_url(url)


@given(
    scheme=st.sampled_from(["postgresql", "redis", "rediss"]),
    password=st.text(st.characters(exclude_characters="?"), max_size=20),
    address=st.sampled_from(["h:99999", "h:abc", "[::1", "[::1]:5432", "h1:1,h2:2", ""]),
    tail=st.sampled_from(["", "/0", "/db?sslmode=require", "/db#x"]),
)
def test_redact_url_never_shows_a_password(scheme: str, password: str, address: str, tail: str) -> None:
    """Also one a client cannot read (an unencoded `/`, `#` or `@` in it, a malformed address),
    and one in the query."""
    secret = "S3CRET" + password
    assert "S3CRET" not in redact_url(f"{scheme}://user:{secret}@{address}{tail}")
    query = "&" if "?" in tail else "?"
    assert "S3CRET" not in redact_url(
        f"{scheme}://user@{address}{tail}{query}password={secret.replace('&', '')}"
    )


@pytest.mark.parametrize(
    ("name", "url", "message"),
    [
        ("STATS_REDIS_URL", "redis://:S3CRET@127.0.0.1:99999/0", "bad port or database number"),
        ("STATS_REDIS_URL", "redis://:S3CRET@127.0.0.1:abc/0", "bad port or database number"),
        ("STATS_REDIS_URL", "redis://:S3CRET@[::1/0", "bad port or database number"),
        ("STATS_REDIS_URL", "redis://:S3C/RET@127.0.0.1/0", "percent-encode"),
        ("STATS_DATABASE_URL", "postgresql://u:S3CRET@127.0.0.1:99999/db", "a port must be a number"),
        ("STATS_DATABASE_URL", "postgresql://u:S3CRET@[::1:5432/db", "an IPv6 host needs its closing ']'"),
        ("STATS_DATABASE_URL", "postgresql://u:S3C/RET@127.0.0.1/db", "percent-encode"),
        ("STATS_DIFY_DATABASE_URL", "postgresql://u:S3CRET@h1:5432,h2:70000/db", "a port must be a number"),
    ],
)
def test_a_malformed_address_is_one_line_naming_the_variable_and_exit_2(
    name: str, url: str, message: str
) -> None:
    done = run_cli("serve", **{name: url})
    assert (done.returncode, done.stdout) == (2, ""), done.stderr
    [line] = done.stderr.splitlines()
    assert line.startswith(f"dify-stats: configuration error: {name}='") and message in line
    assert "S3C" not in line


@pytest.mark.parametrize(
    "url",
    ["postgresql://u@127.0.0.1:1/db?password=S3CRET", "host=127.0.0.1 port=1 dbname=db password=S3CRET"],
)
def test_a_store_that_cannot_be_reached_is_named_without_its_password(url: str) -> None:
    done = run_cli("serve", STATS_DATABASE_URL=url)
    assert done.returncode == 2, done.stderr
    [line] = done.stderr.splitlines()
    assert line.startswith("dify-stats: configuration error: logstore ") and "cannot connect" in line
    assert "password=***" in line and "S3CRET" not in line


def test_good_addresses_still_load() -> None:
    for url in ("postgresql://u:p@[::1]:5432,h2:5433/db", "host=/tmp port=5432 dbname=x", "postgresql://x/y"):
        assert load_settings({"STATS_DATABASE_URL": url}).database_url == url
    sls = "host=proj.cn-hangzhou.log.ALIYUNCS.com port=5432 dbname=proj user=ak password=sk"
    assert load_settings({"STATS_DATABASE_URL": sls}).dialect == "sls"
    redis = load_settings({"STATS_REDIS_URL": "redis://:p@[::1]:6379/5"}).redis
    assert redis is not None and redis.redacted() == "redis://:***@[::1]:6379/5"


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`python -m app ...` in a clean environment (no database, no SLS variables)."""
    return subprocess.run(  # noqa: S603 - our own CLI, fixed arguments
        [sys.executable, "-m", "app", *args],
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_serve_exits_2_with_a_clear_message_on_bad_config() -> None:
    done = run_cli("serve", STATS_POOL_SIZE="abc")
    assert done.returncode == 2
    assert "STATS_POOL_SIZE='abc': expected `int`, got `str`" in done.stderr
    assert "Traceback" not in done.stderr


def test_check_sls_says_it_skipped_without_credentials() -> None:
    done = run_cli("check-sls")
    assert done.returncode == 0
    assert "SKIPPED" in done.stdout


def test_hostile_traffic_limits_are_checked_and_named() -> None:
    settings = load_settings(
        {"STATS_POOL_SIZE": "8", "STATS_TENANT_SHARE": "0.25", "STATS_MAX_INFLIGHT": "10"}
    )
    budget = LocalBudget(settings.pool_size, settings.tenant_share)
    assert (budget.tenants.per_tenant, settings.max_inflight) == (2, 10)
    assert LocalBudget(1, 0.5).tenants.per_tenant == 1  # at least one slot
    for name, value in (
        ("STATS_TENANT_SHARE", "0"),
        ("STATS_TENANT_SHARE", "1.5"),
        ("STATS_MAX_INFLIGHT", "0"),
        ("STATS_MAX_QUERIES_PER_REQUEST", "0"),
        ("STATS_PROBE_INTERVAL", "x"),
    ):
        with pytest.raises(ConfigError, match=name):
            load_settings({name: value})
