"""The two SQL dialects differ only in how an ISO-8601 text becomes an integer µs epoch.

Both expressions read naive text as UTC and honour an explicit offset (`Z`, `+08:00`), so no
result depends on the session time zone. Both keep microseconds: PostgreSQL's timestamps do;
Presto's (SLS) keep milliseconds, so the sls form parses whole seconds and adds the fraction
digits from the text.
"""

from __future__ import annotations

from typing import Literal

Dialect = Literal["postgres", "sls"]

# An explicit UTC offset at the end of an ISO-8601 text.
_OFFSET_PATTERN = "(Z|[+-][0-9][0-9](:?[0-9][0-9])?)$"


def created_text_sql(alias: str = "") -> str:
    """A run's created time as text: created_at, or started_at for older writers."""
    prefix = f"{alias}." if alias else ""
    return f"coalesce(nullif({prefix}created_at, ''), {prefix}started_at)"


# The ISO-8601 date-times the parsers below read: a text of another shape is NULL, so one bad row
# is skipped (its run is in no range) instead of failing the whole statement, as one unparsable
# value does on SLS. A shape-valid impossible date (February 30) is NULL too on SLS, where the
# parse is inside TRY(...). On PostgreSQL, where the check is cheaper (separators and length),
# an impossible date or a text with the right separators but other characters fails the
# statement: PostgreSQL has no TRY, and the writer that fills such a store is ours to choose.
ISO_SHAPE = (
    "^[0-9]{4}-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-5][0-9]([.][0-9]{1,6})?"
    "(Z|[+-][0-9][0-9](:?[0-9][0-9])?)?$"
)


def epoch_us_sql(dialect: Dialect, text: str) -> str:
    """SQL turning the ISO-8601 text expression `text` into bigint microseconds since the epoch,
    NULL when the text is not an ISO-8601 date-time."""
    if dialect == "postgres":
        # A regex per run doubled a 90-day statement on PostgreSQL (72 -> 134 ms, 100 k runs);
        # the separators and the length are what the cast needs to be possible at all.
        well_formed = (
            f"(length({text}) BETWEEN 19 AND 32 AND substr({text}, 5, 1) = '-' "
            f"AND substr({text}, 11, 1) = 'T' AND substr({text}, 14, 1) = ':')"
        )
    else:
        well_formed = f"regexp_like({text}, '{ISO_SHAPE}')"
    return f"CASE WHEN {well_formed} THEN {_parsed_epoch_us_sql(dialect, text)} END"


def _parsed_epoch_us_sql(dialect: Dialect, text: str) -> str:
    if dialect == "postgres":
        # date_part gives double seconds: exact to the µs after rounding (its error near 2e9 s is
        # ~0.24 µs), and ~25 % cheaper than numeric EXTRACT. An offset can only follow position 19.
        tail = f"substr({text}, 20)"
        has_offset = f"(right({text}, 1) = 'Z' OR strpos({tail}, '+') > 0 OR strpos({tail}, '-') > 0)"
        return (
            f"CAST(round(date_part('epoch', CASE WHEN {has_offset} "
            f"THEN CAST({text} AS timestamptz) "
            f"ELSE CAST({text} AS timestamp) AT TIME ZONE 'UTC' END) * 1000000) AS bigint)"
        )
    # TRY: one impossible date (2025-02-30) would otherwise fail the whole statement on SLS.
    whole_seconds = (
        f"CAST(to_unixtime(TRY(from_iso8601_timestamp(concat(coalesce(substr({text}, 1, 19), ''), "
        f"coalesce(regexp_extract({text}, '{_OFFSET_PATTERN}'), 'Z'))))) AS bigint)"
    )
    micros = f"CAST(rpad(coalesce(regexp_extract({text}, '^[^.]*[.]([0-9]+)', 1), ''), 6, '0') AS bigint)"
    return f"({whole_seconds} * 1000000 + {micros})"


def latest_key_sql(value: str = "''") -> str:
    """A text that sorts as the truth's order of versions: log_version, then __time__, then
    total_tokens, then `value`, each number as fixed-width digits. Its `max` is the latest
    version's key: a plain aggregate, fully specified in every engine (Presto leaves `max_by`
    among equal keys unspecified, and Dify's retries do write versions sharing a log_version)."""
    # Presto's concat is NULL when any argument is: every part is coalesced (a NULL number reads as
    # 0, the lowest, as `DESC NULLS LAST` orders it in LATEST_FIRST).
    return (
        "concat(lpad(CAST(coalesce(log_version, 0) AS varchar), 20, '0'), "
        "lpad(CAST(coalesce(__time__, 0) AS varchar), 12, '0'), "
        f"lpad(CAST(coalesce(total_tokens, 0) AS varchar), 20, '0'), coalesce({value}, ''))"
    )


LATEST_KEY_PREFIX = 52  # characters before `value` in latest_key_sql; total_tokens is 33..52

FINISHED = "coalesce(finished_at, '') <> ''"  # SLS may send NULL or '' for an empty text

# A run's duration, in integer µs: elapsed_time of its latest version read to the microsecond
# (floor(seconds * 1e6 + 0.5), the same IEEE double operations in every engine and in Python), or
# finished_at - started_at when elapsed_time is NULL. NULL for an unfinished version, and for one
# whose duration cannot be known (an elapsed_time beyond ±1e12 s, NaN, or times that do not parse):
# no cast may fail a whole statement.
ELAPSED_LIMIT_S = 1_000_000_000_000
ELAPSED_US = (
    f"CASE WHEN elapsed_time BETWEEN -{ELAPSED_LIMIT_S} AND {ELAPSED_LIMIT_S} "
    "THEN CAST(floor(elapsed_time * 1000000 + 0.5) AS bigint) END"
)


def duration_us_sql(dialect: Dialect) -> str:
    """The duration (µs) of the version in the current row; NULL while unfinished or unknown."""
    measured = f"{epoch_us_sql(dialect, 'finished_at')} - {epoch_us_sql(dialect, 'started_at')}"
    return (
        f"CASE WHEN NOT ({FINISHED}) THEN NULL WHEN elapsed_time IS NOT NULL THEN {ELAPSED_US} "
        f"ELSE {measured} END"
    )


# A duration inside a latest-version key: fixed-width digits that sort as the numbers, NULL lowest.
# Durations lie within ±1e18 µs (the elapsed limit above; ISO times span less), so the biased value
# has exactly 19 digits.
DURATION_BIAS = 3_000_000_000_000_000_000
DURATION_WIDTH = 19
NO_DURATION = "0" * DURATION_WIDTH


def duration_key_sql(dialect: Dialect) -> str:
    """The version's duration as DURATION_WIDTH characters of a latest-version key (never NULL)."""
    return f"coalesce(CAST(({duration_us_sql(dialect)}) + {DURATION_BIAS} AS varchar), '{NO_DURATION}')"


def duration_from_key_sql(key: str) -> str:
    """The duration (µs, or NULL) in the key expression `key`, right after LATEST_KEY_PREFIX."""
    digits = f"substr({key}, {LATEST_KEY_PREFIX + 1}, {DURATION_WIDTH})"
    return f"CAST(nullif({digits}, '{NO_DURATION}') AS bigint) - {DURATION_BIAS}"


def duration_from_key(digits: str) -> int | None:
    """The app's side of duration_key_sql: DURATION_WIDTH digits back to µs (None: no duration)."""
    return None if digits == NO_DURATION else int(digits) - DURATION_BIAS


def latest_value_sql(dialect: Dialect, column: str) -> str:
    """Aggregate giving total_tokens of the latest version within a GROUP BY id (the truth's
    order: log_version, __time__, then the larger value)."""
    if dialect == "postgres":
        order = f"log_version DESC NULLS LAST, __time__ DESC NULLS LAST, coalesce({column}, 0) DESC"
        return f"(array_agg(coalesce({column}, 0) ORDER BY {order}))[1]"
    assert column == "total_tokens", "the key carries total_tokens only"
    return "CAST(substr(max(" + latest_key_sql() + "), 33, 20) AS bigint)"


def parse_once_fence(dialect: Dialect) -> str:
    """Ends a subquery that computes `created_us` when the level above filters on it.

    PostgreSQL would push that filter down into the subquery and then evaluate the (costly) parse
    twice, once for the filter and once for the output: measured 558 ms -> 337 ms for a 90-day
    range over 65 k runs. `OFFSET 0` is PostgreSQL's documented optimization fence. SLS plans
    differently and is left alone.
    """
    return "\n    OFFSET 0" if dialect == "postgres" else ""
