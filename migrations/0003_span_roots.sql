-- Which spans can be the root of a trace in this store: those without a parent, and those whose parent is remote
-- (a request that arrived with a traceparent). A trace's root is the earliest of them whose parent is not stored
-- in the same trace (store/queries.py, recent_traces_sql). Rows written before this migration have NULL here.

ALTER TABLE {schema}.spans ADD COLUMN IF NOT EXISTS parent_remote boolean;

CREATE INDEX IF NOT EXISTS spans_roots_time ON {schema}.spans (time)
    WHERE parent_span_id IS NULL OR parent_remote;
