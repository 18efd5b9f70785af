-- TimescaleDB layout of ADR 0002, applied after schema.sql (safe to apply twice):
--
--   psql -v ON_ERROR_STOP=1 -f schema.sql -f timescale_policies.sql
--
-- 1. Each event table becomes a hypertable on ADR 0002's partition column
--    (existing rows are migrated).
-- 2. ADR 0002's compression and retention table, exactly; compressed segments are
--    per station, because every history query of the API is "one station, a time
--    range". These policies need the Community edition (timescaledb.license =
--    'timescale', what production runs). On the Apache edition they are skipped
--    with a WARNING and the hypertables still work (drop_chunks by hand).
--
-- | hypertable               | partition   | chunk  | compress after | retention |
-- | station_heartbeat_events | occurred_at | 1 day  | 7 days         | 90 days   |
-- | station_boot_events      | occurred_at | 30 days| 30 days        | 365 days  |
-- | connector_status_events  | occurred_at | 7 days | 14 days        | 180 days  |
-- | meter_values             | sampled_at  | 1 day  | 30 days        | 730 days  |
-- | session_events           | occurred_at | 7 days | 30 days        | 730 days  |
--
-- Billing never depends on raw telemetry retention: charging_sessions (a regular
-- table) keeps meter start/stop and energy for good.

CREATE EXTENSION IF NOT EXISTS timescaledb;

SELECT create_hypertable('station_heartbeat_events', by_range('occurred_at', INTERVAL '1 day'),
                         if_not_exists => TRUE, migrate_data => TRUE);
SELECT create_hypertable('station_boot_events', by_range('occurred_at', INTERVAL '30 days'),
                         if_not_exists => TRUE, migrate_data => TRUE);
SELECT create_hypertable('connector_status_events', by_range('occurred_at', INTERVAL '7 days'),
                         if_not_exists => TRUE, migrate_data => TRUE);
SELECT create_hypertable('meter_values', by_range('sampled_at', INTERVAL '1 day'),
                         if_not_exists => TRUE, migrate_data => TRUE);
SELECT create_hypertable('session_events', by_range('occurred_at', INTERVAL '7 days'),
                         if_not_exists => TRUE, migrate_data => TRUE);

DO $policies$
DECLARE
    edition text := current_setting('timescaledb.license', true);
BEGIN
    IF edition IS DISTINCT FROM 'timescale' THEN
        RAISE WARNING 'TimescaleDB license is %: ADR 0002 compression and retention policies '
                      'skipped (they need the Community edition, timescaledb.license = timescale)',
                      coalesce(edition, 'unknown');
        RETURN;
    END IF;

    -- Compression settings can only be set while no chunk is compressed, so
    -- only the first run sets them.
    IF NOT EXISTS (SELECT 1 FROM timescaledb_information.hypertables
                   WHERE hypertable_name = 'station_heartbeat_events' AND compression_enabled) THEN
        ALTER TABLE station_heartbeat_events SET (
            timescaledb.compress,
            timescaledb.compress_segmentby = 'station_id',
            timescaledb.compress_orderby = 'occurred_at DESC');
    END IF;
    IF NOT EXISTS (SELECT 1 FROM timescaledb_information.hypertables
                   WHERE hypertable_name = 'station_boot_events' AND compression_enabled) THEN
        ALTER TABLE station_boot_events SET (
            timescaledb.compress,
            timescaledb.compress_segmentby = 'station_id',
            timescaledb.compress_orderby = 'occurred_at DESC');
    END IF;
    IF NOT EXISTS (SELECT 1 FROM timescaledb_information.hypertables
                   WHERE hypertable_name = 'connector_status_events' AND compression_enabled) THEN
        ALTER TABLE connector_status_events SET (
            timescaledb.compress,
            timescaledb.compress_segmentby = 'station_id',
            timescaledb.compress_orderby = 'occurred_at DESC, connector_number');
    END IF;
    IF NOT EXISTS (SELECT 1 FROM timescaledb_information.hypertables
                   WHERE hypertable_name = 'meter_values' AND compression_enabled) THEN
        -- every column of meter_values' unique key is a segment or order column,
        -- as compression of a table with a unique constraint requires
        ALTER TABLE meter_values SET (
            timescaledb.compress,
            timescaledb.compress_segmentby = 'station_id',
            timescaledb.compress_orderby =
                'sampled_at DESC, connector_number, measurand, context, location, phase, format');
    END IF;
    IF NOT EXISTS (SELECT 1 FROM timescaledb_information.hypertables
                   WHERE hypertable_name = 'session_events' AND compression_enabled) THEN
        ALTER TABLE session_events SET (
            timescaledb.compress,
            timescaledb.compress_segmentby = 'station_id',
            timescaledb.compress_orderby = 'occurred_at DESC');
    END IF;

    PERFORM add_compression_policy('station_heartbeat_events', INTERVAL '7 days', if_not_exists => TRUE);
    PERFORM add_compression_policy('station_boot_events', INTERVAL '30 days', if_not_exists => TRUE);
    PERFORM add_compression_policy('connector_status_events', INTERVAL '14 days', if_not_exists => TRUE);
    PERFORM add_compression_policy('meter_values', INTERVAL '30 days', if_not_exists => TRUE);
    PERFORM add_compression_policy('session_events', INTERVAL '30 days', if_not_exists => TRUE);

    PERFORM add_retention_policy('station_heartbeat_events', INTERVAL '90 days', if_not_exists => TRUE);
    PERFORM add_retention_policy('station_boot_events', INTERVAL '365 days', if_not_exists => TRUE);
    PERFORM add_retention_policy('connector_status_events', INTERVAL '180 days', if_not_exists => TRUE);
    PERFORM add_retention_policy('meter_values', INTERVAL '730 days', if_not_exists => TRUE);
    PERFORM add_retention_policy('session_events', INTERVAL '730 days', if_not_exists => TRUE);
END
$policies$;
