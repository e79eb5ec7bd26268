-- otel-rag store: logs and spans, range-partitioned by day.
-- {schema} is replaced by the configured schema name (validated and quoted by the migration runner).
--
-- Unique keys start with trace_id and include time: trace_id is the natural distribution column (Citus),
-- time is required by partitioning, and the same index serves "everything of this trace" lookups.

CREATE TABLE IF NOT EXISTS {schema}.logs (
    time            timestamptz      NOT NULL,
    record_id       uuid             NOT NULL,
    trace_id        text,
    span_id         text,
    service_name    text             NOT NULL,
    user_id         text,
    severity        text             NOT NULL,
    severity_number smallint         NOT NULL,
    logger          text,
    body            text,
    attributes      jsonb            NOT NULL DEFAULT '{}',
    resource        jsonb            NOT NULL DEFAULT '{}',
    cost_usd        numeric(18, 9),
    input_tokens    integer,
    output_tokens   integer,
    CONSTRAINT logs_key UNIQUE NULLS NOT DISTINCT (trace_id, time, record_id)
) PARTITION BY RANGE (time);

CREATE TABLE IF NOT EXISTS {schema}.spans (
    time            timestamptz      NOT NULL,  -- start
    end_time        timestamptz      NOT NULL,
    duration_ms     double precision NOT NULL,
    trace_id        text             NOT NULL,
    span_id         text             NOT NULL,
    parent_span_id  text,
    service_name    text             NOT NULL,
    user_id         text,
    name            text             NOT NULL,
    kind            text             NOT NULL,
    status          text             NOT NULL,  -- UNSET, OK, ERROR
    status_message  text,
    scope           text,
    attributes      jsonb            NOT NULL DEFAULT '{}',
    events          jsonb            NOT NULL DEFAULT '[]',
    resource        jsonb            NOT NULL DEFAULT '{}',
    cost_usd        numeric(18, 9),
    input_tokens    integer,
    output_tokens   integer,
    CONSTRAINT spans_key PRIMARY KEY (trace_id, time, span_id)
) PARTITION BY RANGE (time);

-- The questions users ask: by trace (the keys above), by user over time, by time, errors by time.
CREATE INDEX IF NOT EXISTS logs_user_time ON {schema}.logs (user_id, time) WHERE user_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS logs_time_brin ON {schema}.logs USING brin (time);
CREATE INDEX IF NOT EXISTS logs_errors_time ON {schema}.logs (time) WHERE severity_number >= 17;
CREATE INDEX IF NOT EXISTS spans_user_time ON {schema}.spans (user_id, time) WHERE user_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS spans_time_brin ON {schema}.spans USING brin (time);
CREATE INDEX IF NOT EXISTS spans_errors_time ON {schema}.spans (time) WHERE status = 'ERROR';

-- Creates the daily partitions covering [first_day, last_day]; callable by the writer role (SECURITY DEFINER),
-- so the sink can make room for a day it has not seen without owning the tables.
CREATE OR REPLACE FUNCTION {schema}.ensure_partitions(first_day date, last_day date)
RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    day date;
    created integer := 0;
    parent text;
    partition_name text;
BEGIN
    IF last_day - first_day > 366 THEN
        RAISE EXCEPTION 'refusing to create more than 366 daily partitions at once';
    END IF;
    FOR day IN SELECT generate_series(first_day, last_day, interval '1 day')::date LOOP
        FOREACH parent IN ARRAY ARRAY['logs', 'spans'] LOOP
            partition_name := parent || '_' || to_char(day, 'YYYYMMDD');
            IF to_regclass(format('%I.%I', '{schema_text}', partition_name)) IS NULL THEN
                BEGIN
                    EXECUTE format(
                        'CREATE TABLE %I.%I PARTITION OF %I.%I FOR VALUES FROM (%L) TO (%L)',
                        '{schema_text}', partition_name, '{schema_text}', parent,
                        day::timestamp AT TIME ZONE 'UTC', (day + 1)::timestamp AT TIME ZONE 'UTC'
                    );
                    created := created + 1;
                EXCEPTION WHEN duplicate_table OR unique_violation THEN
                    NULL;  -- another writer created it first
                END;
            END IF;
        END LOOP;
    END LOOP;
    RETURN created;
END
$$;
