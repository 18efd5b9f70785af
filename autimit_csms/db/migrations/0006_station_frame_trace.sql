-- Step 6: an operator can trace one station's OCPP frames at run time
-- (PUT /api/stations/:id/trace): the process holding its connection logs every
-- frame, redacted, at INFO until stations.ocpp_trace_until. Only an addition.
-- Idempotent; one transaction:  psql -v ON_ERROR_STOP=1 -f 0006_station_frame_trace.sql

BEGIN;

ALTER TABLE stations ADD COLUMN IF NOT EXISTS ocpp_trace_until timestamptz;

INSERT INTO schema_version (version, name) VALUES (6, 'station_frame_trace')
ON CONFLICT (version) DO NOTHING;

COMMIT;
