-- Step 2 (schema.sql of c04a6c3): meter_values' replay key includes `format`,
-- because a signed reading travels next to its plain twin with the same
-- time, measurand, context, location and phase.
--
-- The key keeps its name; a key that lacks `format` is replaced. Widening a
-- unique key cannot find duplicates, but it rebuilds the key's index under an
-- ACCESS EXCLUSIVE lock: on a large meter_values, run it in a quiet window.
-- Idempotent; one transaction:  psql -v ON_ERROR_STOP=1 -f 0002_meter_values_key_with_format.sql

BEGIN;

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_constraint
               WHERE conrelid = 'meter_values'::regclass
                 AND conname = 'meter_values_station_id_connector_number_sampled_at_measura_key'
                 AND pg_get_constraintdef(oid) NOT LIKE '%format)') THEN
        ALTER TABLE meter_values
            DROP CONSTRAINT meter_values_station_id_connector_number_sampled_at_measura_key;
        ALTER TABLE meter_values
            ADD CONSTRAINT meter_values_station_id_connector_number_sampled_at_measura_key
            UNIQUE NULLS NOT DISTINCT (station_id, connector_number, sampled_at, measurand,
                                       context, location, phase, format);
    END IF;
END $$;

INSERT INTO schema_version (version, name) VALUES (2, 'meter_values_key_with_format')
ON CONFLICT (version) DO NOTHING;

COMMIT;
