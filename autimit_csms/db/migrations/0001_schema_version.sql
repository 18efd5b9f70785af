-- Step 1: the schema_version table itself (docs/upgrading.md).
--
-- A database made by a schema.sql from before this step has no schema_version
-- table: `autimit-csms db upgrade` counts it as version 0 and applies every
-- step; each step checks the catalog and changes only what its database lacks.
-- Idempotent; one transaction:  psql -v ON_ERROR_STOP=1 -f 0001_schema_version.sql

BEGIN;

CREATE TABLE IF NOT EXISTS schema_version (
    version     integer PRIMARY KEY CHECK (version > 0),
    name        text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
);

INSERT INTO schema_version (version, name) VALUES (1, 'schema_version')
ON CONFLICT (version) DO NOTHING;

COMMIT;
