-- ADR 0002 retention without TimescaleDB policies (autimit_csms/retention.py).
-- One count and one batched delete per event table, spelled out: no table name
-- is ever a parameter. Bound parameters: %(cutoff)s (timestamptz: rows strictly
-- older go), %(batch)s (rows per DELETE).
--
-- A batch is the rows whose ctid the sub-select found first, re-checked against
-- the cut-off. On plain PostgreSQL the old rows sit at the start of the heap of
-- these append-only tables, so the scan stops early; on a hypertable the batches
-- only meet the chunk straddling the cut-off (drop_chunks took the older ones),
-- where ctids are unique.

-- ================================================================ the database

-- name: retention_backend
-- The TimescaleDB version (NULL: plain PostgreSQL) and edition ('apache' has no
-- compression and no policies; 'timescale' is the Community edition).
SELECT now() AS now,
       (SELECT extversion FROM pg_extension WHERE extname = 'timescaledb') AS timescaledb,
       current_setting('timescaledb.license', true) AS license;

-- name: retention_hypertables
-- The hypertables of this schema, whether compression is on, and whether a
-- TimescaleDB retention policy (a Community feature) already handles them.
SELECT h.hypertable_name AS table_name, h.compression_enabled,
       EXISTS (SELECT 1 FROM timescaledb_information.jobs j
               WHERE j.proc_name = 'policy_retention'
                 AND j.hypertable_schema = h.hypertable_schema
                 AND j.hypertable_name = h.hypertable_name) AS has_retention_policy
FROM timescaledb_information.hypertables h
WHERE h.hypertable_schema = current_schema();

-- name: retention_oldest_active_session
-- The meterStop of a session closed without its StopTransaction is estimated
-- from its meter_values (queries.sql close_session): an active session's
-- samples are billing data, kept however old.
SELECT cs.started_at, cs.transaction_id, s.station_code
FROM charging_sessions cs
JOIN stations s ON s.id = cs.station_id
WHERE cs.status = 'active'
ORDER BY cs.started_at
LIMIT 1;

-- name: retention_lock_timeout
-- For the one short transaction of a batch or a drop_chunks: wait at most this
-- long for a lock, rather than queue the charger write path behind us.
SELECT set_config('lock_timeout', %(lock_timeout)s, true);

-- ================================================================ TimescaleDB

-- name: retention_count_chunks
SELECT count(*) AS chunks
FROM show_chunks(%(table)s::regclass, older_than => %(cutoff)s::timestamptz);

-- name: retention_drop_chunks
-- Whole chunks entirely older than the cut-off (the Apache edition has it).
SELECT count(*) AS chunks
FROM drop_chunks(%(table)s::regclass, older_than => %(cutoff)s::timestamptz);

-- ================================================================ per table

-- name: retention_count_station_heartbeat_events
SELECT count(*) AS rows FROM station_heartbeat_events WHERE occurred_at < %(cutoff)s;

-- name: retention_delete_station_heartbeat_events
DELETE FROM station_heartbeat_events
WHERE ctid = ANY (ARRAY(SELECT ctid FROM station_heartbeat_events
                        WHERE occurred_at < %(cutoff)s LIMIT %(batch)s))
  AND occurred_at < %(cutoff)s;

-- name: retention_count_station_boot_events
SELECT count(*) AS rows FROM station_boot_events WHERE occurred_at < %(cutoff)s;

-- name: retention_delete_station_boot_events
DELETE FROM station_boot_events
WHERE ctid = ANY (ARRAY(SELECT ctid FROM station_boot_events
                        WHERE occurred_at < %(cutoff)s LIMIT %(batch)s))
  AND occurred_at < %(cutoff)s;

-- name: retention_count_connector_status_events
SELECT count(*) AS rows FROM connector_status_events WHERE occurred_at < %(cutoff)s;

-- name: retention_delete_connector_status_events
DELETE FROM connector_status_events
WHERE ctid = ANY (ARRAY(SELECT ctid FROM connector_status_events
                        WHERE occurred_at < %(cutoff)s LIMIT %(batch)s))
  AND occurred_at < %(cutoff)s;

-- name: retention_count_meter_values
SELECT count(*) AS rows FROM meter_values WHERE sampled_at < %(cutoff)s;

-- name: retention_delete_meter_values
DELETE FROM meter_values
WHERE ctid = ANY (ARRAY(SELECT ctid FROM meter_values
                        WHERE sampled_at < %(cutoff)s LIMIT %(batch)s))
  AND sampled_at < %(cutoff)s;

-- name: retention_count_session_events
SELECT count(*) AS rows FROM session_events WHERE occurred_at < %(cutoff)s;

-- name: retention_delete_session_events
DELETE FROM session_events
WHERE ctid = ANY (ARRAY(SELECT ctid FROM session_events
                        WHERE occurred_at < %(cutoff)s LIMIT %(batch)s))
  AND occurred_at < %(cutoff)s;
