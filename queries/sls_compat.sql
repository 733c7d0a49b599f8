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

-- max_by(x, y) -> x: the value of x on the row with the largest y; min_by(x, y) likewise for the
-- smallest y. Rows whose y is NULL are ignored; NULL when no row has a y.
-- Among rows sharing that y, Presto leaves which x is returned unspecified. These shims take the
-- one a query is least likely to want: max_by the smallest x, min_by the largest (a NULL x loses
-- to any other; text compares byte-wise), so a query that relies on a tie-break fails here too.
-- Declared for the (bigint, bigint) and (text, bigint) uses.
CREATE TYPE sls_compat.by_bigint_state AS (value bigint, ordering bigint);
CREATE TYPE sls_compat.by_text_state AS (value text, ordering bigint);

CREATE FUNCTION sls_compat.max_by_bigint_step(state sls_compat.by_bigint_state, value bigint, ordering bigint)
RETURNS sls_compat.by_bigint_state LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN ordering IS NULL THEN state
                WHEN state IS NULL OR ordering > (state).ordering
                    OR (ordering = (state).ordering AND value IS NOT NULL
                        AND ((state).value IS NULL OR value < (state).value))
                    THEN ROW(value, ordering)::sls_compat.by_bigint_state
                ELSE state END
$$;
CREATE FUNCTION sls_compat.min_by_bigint_step(state sls_compat.by_bigint_state, value bigint, ordering bigint)
RETURNS sls_compat.by_bigint_state LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN ordering IS NULL THEN state
                WHEN state IS NULL OR ordering < (state).ordering
                    OR (ordering = (state).ordering AND value IS NOT NULL
                        AND ((state).value IS NULL OR value > (state).value))
                    THEN ROW(value, ordering)::sls_compat.by_bigint_state
                ELSE state END
$$;
CREATE FUNCTION sls_compat.by_bigint_final(state sls_compat.by_bigint_state) RETURNS bigint
LANGUAGE sql IMMUTABLE AS $$ SELECT (state).value $$;
CREATE AGGREGATE sls_compat.max_by(bigint, bigint) (
    SFUNC = sls_compat.max_by_bigint_step,
    STYPE = sls_compat.by_bigint_state,
    FINALFUNC = sls_compat.by_bigint_final
);
CREATE AGGREGATE sls_compat.min_by(bigint, bigint) (
    SFUNC = sls_compat.min_by_bigint_step,
    STYPE = sls_compat.by_bigint_state,
    FINALFUNC = sls_compat.by_bigint_final
);

CREATE FUNCTION sls_compat.max_by_text_step(state sls_compat.by_text_state, value text, ordering bigint)
RETURNS sls_compat.by_text_state LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN ordering IS NULL THEN state
                WHEN state IS NULL OR ordering > (state).ordering
                    OR (ordering = (state).ordering AND value IS NOT NULL
                        AND ((state).value IS NULL OR value COLLATE "C" < (state).value COLLATE "C"))
                    THEN ROW(value, ordering)::sls_compat.by_text_state
                ELSE state END
$$;
CREATE FUNCTION sls_compat.min_by_text_step(state sls_compat.by_text_state, value text, ordering bigint)
RETURNS sls_compat.by_text_state LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN ordering IS NULL THEN state
                WHEN state IS NULL OR ordering < (state).ordering
                    OR (ordering = (state).ordering AND value IS NOT NULL
                        AND ((state).value IS NULL OR value COLLATE "C" > (state).value COLLATE "C"))
                    THEN ROW(value, ordering)::sls_compat.by_text_state
                ELSE state END
$$;
CREATE FUNCTION sls_compat.by_text_final(state sls_compat.by_text_state) RETURNS text
LANGUAGE sql IMMUTABLE AS $$ SELECT (state).value $$;
CREATE AGGREGATE sls_compat.max_by(text, bigint) (
    SFUNC = sls_compat.max_by_text_step,
    STYPE = sls_compat.by_text_state,
    FINALFUNC = sls_compat.by_text_final
);
CREATE AGGREGATE sls_compat.min_by(text, bigint) (
    SFUNC = sls_compat.min_by_text_step,
    STYPE = sls_compat.by_text_state,
    FINALFUNC = sls_compat.by_text_final
);

-- regexp_like(string, pattern) -> boolean: whether pattern matches anywhere in string.
CREATE FUNCTION sls_compat.regexp_like(value text, pattern text) RETURNS boolean
LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT value ~ pattern
$$;
