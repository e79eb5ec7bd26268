-- Least-privilege group roles. Grant them to login roles, for example:
--   CREATE ROLE rag_app LOGIN PASSWORD '...' IN ROLE {schema_text}_writer;
-- writer:     INSERT into logs and spans, create the day's partitions (through ensure_partitions). No SELECT.
-- reader:     SELECT only (the CLI, the debug page, Grafana).
-- maintainer: owns the tables: creates, detaches and drops partitions (retention).
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{schema_text}_writer') THEN
        CREATE ROLE {role_writer} NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{schema_text}_reader') THEN
        CREATE ROLE {role_reader} NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{schema_text}_maintainer') THEN
        CREATE ROLE {role_maintainer} NOLOGIN;
    END IF;
END
$$;

GRANT USAGE, CREATE ON SCHEMA {schema} TO {role_maintainer};
ALTER TABLE {schema}.logs OWNER TO {role_maintainer};
ALTER TABLE {schema}.spans OWNER TO {role_maintainer};
ALTER FUNCTION {schema}.ensure_partitions(date, date) OWNER TO {role_maintainer};

GRANT USAGE ON SCHEMA {schema} TO {role_writer}, {role_reader};
GRANT INSERT ON {schema}.logs, {schema}.spans TO {role_writer};
REVOKE ALL ON FUNCTION {schema}.ensure_partitions(date, date) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION {schema}.ensure_partitions(date, date) TO {role_writer}, {role_maintainer};
GRANT SELECT ON {schema}.logs, {schema}.spans TO {role_reader};
GRANT SELECT ON {schema}.schema_migrations TO {role_reader}, {role_writer};
