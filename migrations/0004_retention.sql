-- The log lifecycle (otel_rag/_store/retention.py): hot days as they are, then archived to Parquet and thinned to
-- the warm set, then dropped. The manifest drives every step, one row per day and signal, so a run killed at any
-- point is finished by the next one: nothing leaves Postgres before the archive holds it, verified.
--
-- retention_days.state: archived (the archive holds every row the partition holds, verified by count and key
--        checksum),
--        thinned  (the partition holds only the warm set), dropped (the partition is gone; the archive remains),
--        expired  (the archive's objects were deleted after OTEL_RAG_ARCHIVE_DAYS).

CREATE TABLE IF NOT EXISTS {schema}.retention_days (
    day             date        NOT NULL,
    signal          text        NOT NULL CHECK (signal IN ('logs', 'spans')),
    state           text        NOT NULL CHECK (state IN ('archived', 'thinned', 'dropped', 'expired')),
    store_rows      bigint      NOT NULL,  -- what the partition holds by our records (all of it is archived)
    store_checksum  numeric     NOT NULL,  -- key checksum of those rows (archive.py, key_checksum)
    archived_rows   bigint      NOT NULL,  -- rows in the archive's objects for this day
    bytes_freed     bigint,                -- set once the thinned partition is rewritten (VACUUM FULL)
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (day, signal)
);

-- The archive's objects of each day: part 0 is the day as it was first archived; a later part holds only rows that
-- arrived after that (records replayed from a spool), so no row is archived twice.
CREATE TABLE IF NOT EXISTS {schema}.retention_objects (
    day           date        NOT NULL,
    signal        text        NOT NULL CHECK (signal IN ('logs', 'spans')),
    part          integer     NOT NULL,
    object_key    text        NOT NULL,  -- relative to OTEL_RAG_ARCHIVE_URL
    row_count     bigint      NOT NULL,
    key_checksum  numeric     NOT NULL,
    sha256        text        NOT NULL,  -- of the object's bytes
    object_bytes  bigint      NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (day, signal, part)
);

-- One row per run: what it did, for `otel-rag retention status` and the retention metrics.
CREATE TABLE IF NOT EXISTS {schema}.retention_runs (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    started_at    timestamptz NOT NULL,
    finished_at   timestamptz,
    ok            boolean,
    archived_rows bigint      NOT NULL DEFAULT 0,
    thinned_rows  bigint      NOT NULL DEFAULT 0,
    dropped_rows  bigint      NOT NULL DEFAULT 0,
    bytes_freed   bigint      NOT NULL DEFAULT 0,
    error         text
);

ALTER TABLE {schema}.retention_days OWNER TO {role_maintainer};
ALTER TABLE {schema}.retention_objects OWNER TO {role_maintainer};
ALTER TABLE {schema}.retention_runs OWNER TO {role_maintainer};
GRANT SELECT ON {schema}.retention_days, {schema}.retention_objects, {schema}.retention_runs TO {role_reader};
