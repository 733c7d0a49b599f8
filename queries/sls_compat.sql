-- Presto/SLS functions used by the `sls` dialect, implemented on PostgreSQL so that tests run the
-- exact sls SQL text. Each follows SLS's documented behaviour, not PostgreSQL's habits, so that a
-- query which would misbehave on SLS misbehaves here too. Installed only in test databases, in
-- schema sls_compat; sls-dialect test connections put it first on the search_path.
DROP SCHEMA IF EXISTS sls_compat CASCADE;
CREATE SCHEMA sls_compat;

-- from_iso8601_timestamp(text) -> timestamp with time zone.
-- SLS: parses an ISO-8601 date-time; an explicit offset (Z, +08:00) is honoured, a value without
-- one is read in the *session* time zone; precision is milliseconds (Presto timestamps).
-- Strict as SLS: a text that is not ISO-8601 (garbage, '', '2025-03-01 10:00:00' with a blank for
-- the T, 'now', 'epoch', 'March 1 2025', which PostgreSQL's own casts would take) raises an error
-- instead of becoming some instant. Accepted: YYYY-MM-DD, optionally THH:MM[:SS[.fraction]],
-- optionally an offset.
-- (STABLE, not IMMUTABLE: the planner must not fold it ahead of the CASE that guards it)
CREATE FUNCTION sls_compat.invalid_iso8601(value text) RETURNS timestamptz
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RAISE EXCEPTION 'Invalid format: "%"', value USING ERRCODE = '22007';
END
$$;

CREATE FUNCTION sls_compat.from_iso8601_timestamp(value text) RETURNS timestamptz
LANGUAGE sql STABLE STRICT AS $$
    SELECT date_trunc('milliseconds',
        CASE WHEN value !~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}(T[0-9]{2}:[0-9]{2}(:[0-9]{2}([.][0-9]+)?)?)?(Z|[+-][0-9]{2}(:?[0-9]{2})?)?$'
                 THEN sls_compat.invalid_iso8601(value)
             WHEN value ~ '(Z|[+-][0-9][0-9](:?[0-9][0-9])?)$' THEN CAST(value AS timestamptz)
             ELSE CAST(value AS timestamp) AT TIME ZONE current_setting('TimeZone') END)
$$;

-- to_unixtime(timestamp) -> double: seconds since the epoch, fractional part kept.
CREATE FUNCTION sls_compat.to_unixtime(value timestamptz) RETURNS double precision
LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT CAST(EXTRACT(EPOCH FROM value) AS double precision)
$$;

-- regexp_extract(string, pattern) -> varchar: the first match of pattern, NULL when none.
CREATE FUNCTION sls_compat.regexp_extract(value text, pattern text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT regexp_substr(value, pattern)
$$;

-- regexp_extract(string, pattern, group) -> varchar: capturing group `group` of the first match,
-- NULL when there is no match.
CREATE FUNCTION sls_compat.regexp_extract(value text, pattern text, capture integer) RETURNS text
LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT regexp_substr(value, pattern, 1, 1, '', capture)
$$;

-- try_from_iso8601_timestamp(text): what SLS's `TRY(from_iso8601_timestamp(x))` answers, NULL
-- where the parse fails (an impossible date such as 2025-02-30 passes any shape check). TRY is
-- lazy in Presto; PostgreSQL evaluates a function's argument before the function, so the SLS
-- stand-in (tests/sls_standin.py) rewrites `TRY(from_iso8601_timestamp(x))` to this function.
CREATE FUNCTION sls_compat.try_from_iso8601_timestamp(value text) RETURNS timestamptz
LANGUAGE plpgsql STABLE STRICT AS $$
BEGIN
    RETURN sls_compat.from_iso8601_timestamp(value);
EXCEPTION WHEN data_exception THEN
    RETURN NULL;
END
$$;

-- try(x) for connections that bypass the stand-in: eager, so an error in x still fails the
-- statement (stricter than SLS, never kinder).
CREATE FUNCTION sls_compat.try(value anyelement) RETURNS anyelement
LANGUAGE sql IMMUTABLE AS $$ SELECT value $$;

-- concat(x, y, ...) -> varchar: Presto's concat is NULL when any argument is NULL (PostgreSQL's
-- skips NULL arguments). Resolved before pg_catalog's concat("any") for text arguments, with
-- `sls_compat, pg_catalog` first on the search_path.
CREATE FUNCTION sls_compat.concat(VARIADIC parts text[]) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN array_position(parts, NULL) IS NULL THEN array_to_string(parts, '') END
$$;

-- regexp_like(string, pattern) -> boolean: whether pattern matches anywhere in string.
CREATE FUNCTION sls_compat.regexp_like(value text, pattern text) RETURNS boolean
LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT value ~ pattern
$$;
