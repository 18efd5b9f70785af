-- Step 5 (schema.sql of da86881): a session can end without its StopTransaction.
-- charging_sessions.stop_source says who closed it ('charger', 'new_session':
-- a StartTransaction on the same connector, 'operator': the API), such a
-- session is billed after review (billing_status 'review', review_reason), and
-- session_events records the closing ('closed_stale', 'closed_by_operator')
-- with who asked for it (requested_by).
-- The CHECK constraints are replaced only when they lack the new values: on
-- TimescaleDB session_events is a hypertable, where DDL is best done once.
-- Idempotent; one transaction:  psql -v ON_ERROR_STOP=1 -f 0005_sessions_closed_without_stop.sql

BEGIN;

ALTER TABLE charging_sessions ADD COLUMN IF NOT EXISTS stop_source text
    CHECK (stop_source IN ('charger', 'new_session', 'operator'));
ALTER TABLE charging_sessions ADD COLUMN IF NOT EXISTS review_reason text;
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_constraint
                   WHERE conrelid = 'charging_sessions'::regclass
                     AND conname = 'charging_sessions_billing_status_check'
                     AND pg_get_constraintdef(oid) LIKE '%''review''%') THEN
        ALTER TABLE charging_sessions DROP CONSTRAINT IF EXISTS charging_sessions_billing_status_check;
        ALTER TABLE charging_sessions ADD CONSTRAINT charging_sessions_billing_status_check
            CHECK (billing_status IN ('open', 'pending', 'billed', 'not_billable', 'review'));
    END IF;
END $$;

ALTER TABLE session_events ADD COLUMN IF NOT EXISTS requested_by text;
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_constraint
                   WHERE conrelid = 'session_events'::regclass
                     AND conname = 'session_events_event_type_check'
                     AND pg_get_constraintdef(oid) LIKE '%closed_by_operator%') THEN
        ALTER TABLE session_events DROP CONSTRAINT IF EXISTS session_events_event_type_check;
        ALTER TABLE session_events ADD CONSTRAINT session_events_event_type_check
            CHECK (event_type IN ('started', 'start_repeated', 'stopped', 'stop_repeated',
                                  'stop_unmatched', 'closed_stale', 'closed_by_operator'));
    END IF;
END $$;

INSERT INTO schema_version (version, name) VALUES (5, 'sessions_closed_without_stop')
ON CONFLICT (version) DO NOTHING;

COMMIT;
