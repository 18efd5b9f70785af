-- Step 4 (schema.sql of 876bad1): an index for the read API's "one station, a
-- time range" charts over meter_values. Built under a SHARE lock (writes to
-- meter_values wait while it builds): on a large table, run it in a quiet window.
-- Idempotent; one transaction:  psql -v ON_ERROR_STOP=1 -f 0004_meter_values_station_time_index.sql

BEGIN;

CREATE INDEX IF NOT EXISTS meter_values_station_time_idx ON meter_values (station_id, sampled_at);

INSERT INTO schema_version (version, name) VALUES (4, 'meter_values_station_time_index')
ON CONFLICT (version) DO NOTHING;

COMMIT;
