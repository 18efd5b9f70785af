-- Statements of `autimit-csms db upgrade` (db/schema.py). The steps themselves
-- are the files in db/migrations/, run as they are, like psql -f runs them.

-- name: upgrade_try_lock
-- One upgrade at a time per database: a session-level advisory lock, released
-- when the upgrading connection closes.
SELECT pg_try_advisory_lock(%(key)s) AS locked;

-- name: schema_version_state
-- `versioned`: the schema_version table exists (it may still be empty: a
-- schema.sql of today applied over an older database records no steps).
-- `has_schema`: tables of some schema.sql exist.
SELECT to_regclass('schema_version') IS NOT NULL AS versioned,
       to_regclass('accounts') IS NOT NULL AS has_schema;

-- name: schema_versions_applied
SELECT version FROM schema_version ORDER BY version;
