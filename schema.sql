-- Autimit CSMS schema: every table the service needs, for PostgreSQL >= 15.
--
--   psql -v ON_ERROR_STOP=1 -f schema.sql          (safe to apply twice)
--
-- ADR 0001 (station domain model): accounts, locations, stations,
-- station_connectors, station_runtime_state.
-- ADR 0002 (time-series data model): current-state tables (station_runtime_state,
-- connector_runtime_state, charging_sessions) and append-only event tables
-- (station_heartbeat_events, station_boot_events, connector_status_events,
-- meter_values, session_events). timescale_policies.sql turns the event tables
-- into hypertables; their unique keys therefore include the partition column.
-- Additions the ADRs leave open are marked "beyond the ADR" with the reason.
-- Every timestamp is timestamptz. Idempotence: CREATE ... IF NOT EXISTS only;
-- a later change to an existing table is an ALTER ... ADD COLUMN IF NOT EXISTS.

BEGIN;

-- ---------------------------------------------------------------- schema version
-- docs/upgrading.md. This file creates a database at the latest step of
-- autimit_csms/db/migrations (one row per step). On a database that already has
-- tables it records nothing: its IF NOT EXISTS statements cannot change a table
-- an earlier schema.sql made, so `autimit-csms db upgrade` must bring it forward
-- (no schema_version rows = made by a schema.sql from before versioning).
-- Adding a step: its change goes into this file too, and its row below.

CREATE TABLE IF NOT EXISTS schema_version (
    version     integer PRIMARY KEY CHECK (version > 0),
    name        text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
);
INSERT INTO schema_version (version, name)
SELECT step.version, step.name
FROM (VALUES (1, 'schema_version'),
             (2, 'meter_values_key_with_format'),
             (3, 'commands_across_nodes'),
             (4, 'meter_values_station_time_index'),
             (5, 'sessions_closed_without_stop'),
             (6, 'station_frame_trace')) AS step (version, name)
WHERE to_regclass('accounts') IS NULL
ON CONFLICT (version) DO NOTHING;

-- ---------------------------------------------------------------- ADR 0001

CREATE TABLE IF NOT EXISTS accounts (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name        text NOT NULL CHECK (length(btrim(name)) BETWEEN 1 AND 200),
    document    text NOT NULL CHECK (length(btrim(document)) BETWEEN 1 AND 64),
    is_active   boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Beyond the ADR: account API keys (DESIGN.md contract). The key is shown once;
-- only its bcrypt hash is kept. key_id is the public, random lookup part.
CREATE TABLE IF NOT EXISTS account_api_keys (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    account_id  uuid NOT NULL REFERENCES accounts (id),
    key_id      text NOT NULL UNIQUE,
    key_hash    text NOT NULL,
    name        text NOT NULL DEFAULT '',
    is_active   boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS account_api_keys_account_idx ON account_api_keys (account_id);

CREATE TABLE IF NOT EXISTS locations (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    account_id  uuid NOT NULL REFERENCES accounts (id),
    name        text NOT NULL CHECK (length(btrim(name)) BETWEEN 1 AND 200),
    address     text NOT NULL CHECK (length(btrim(address)) BETWEEN 1 AND 500),
    latitude    numeric(9, 6) NOT NULL CHECK (latitude BETWEEN -90 AND 90),
    longitude   numeric(9, 6) NOT NULL CHECK (longitude BETWEEN -180 AND 180),
    is_public   boolean NOT NULL DEFAULT false,
    is_active   boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    -- target of stations' (location_id, account_id) key: a station's location
    -- must belong to the station's own account.
    UNIQUE (id, account_id)
);
CREATE INDEX IF NOT EXISTS locations_account_idx ON locations (account_id, created_at, id);

CREATE TABLE IF NOT EXISTS stations (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    account_id          uuid NOT NULL REFERENCES accounts (id),
    location_id         uuid NOT NULL REFERENCES locations (id),
    -- OCPP charge point identity: it is a URL path segment and the Basic Auth
    -- username (RFC 7617 forbids ':' there), so letters, digits, '.', '_', '-'.
    station_code        text NOT NULL
                        CHECK (station_code ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,47}$'),
    station_secret_hash text NOT NULL,
    serial_number       text CHECK (length(serial_number) <= 64),
    manufacturer        text CHECK (length(manufacturer) <= 64),
    model               text CHECK (length(model) <= 64),
    connectors          integer NOT NULL CHECK (connectors > 0),
    is_active           boolean NOT NULL DEFAULT true,
    -- Beyond the ADR: per-station relaxed OCPP validation for known firmware
    -- quirks (out-of-enum values stored with a warning instead of refused).
    ocpp_relaxed        boolean NOT NULL DEFAULT false,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (location_id, account_id) REFERENCES locations (id, account_id)
);
-- ADR 0001: station_code is unique case-insensitively.
CREATE UNIQUE INDEX IF NOT EXISTS stations_station_code_key ON stations (lower(station_code));
CREATE INDEX IF NOT EXISTS stations_account_idx ON stations (account_id, created_at, id);
CREATE INDEX IF NOT EXISTS stations_location_idx ON stations (location_id);
-- Beyond the ADR: while this is in the future, the process holding the station's
-- connection logs its OCPP frames (redacted) at INFO -- an operator debugging one
-- charger (PUT /api/stations/:id/trace). Added by ALTER (step 6 of the upgrades).
ALTER TABLE stations ADD COLUMN IF NOT EXISTS ocpp_trace_until timestamptz;

CREATE TABLE IF NOT EXISTS station_connectors (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    station_id        uuid NOT NULL REFERENCES stations (id) ON DELETE CASCADE,
    connector_number  integer NOT NULL CHECK (connector_number > 0),
    connector_type    text CHECK (length(connector_type) BETWEEN 1 AND 32),
    max_power_kw      numeric(8, 2) CHECK (max_power_kw > 0),
    is_active         boolean NOT NULL DEFAULT true,
    -- Beyond the ADR: set when a charger reported a connector number that was
    -- not provisioned; the row is created so its data is stored, not lost.
    discovered_at     timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    UNIQUE (station_id, connector_number)
);

CREATE TABLE IF NOT EXISTS station_runtime_state (
    station_id           uuid PRIMARY KEY REFERENCES stations (id) ON DELETE CASCADE,
    status               text NOT NULL DEFAULT 'offline'
                         CHECK (status IN ('offline', 'online', 'faulted', 'unavailable')),
    last_heartbeat_at    timestamptz,
    booted_at            timestamptz,
    firmware_version     text,
    last_error_code      text,
    updated_at           timestamptz NOT NULL DEFAULT now(),
    -- Beyond the ADR, for OCPP: the BootNotification answer persists across
    -- connections (chargers do not boot again on every reconnect), and
    -- "connected" is not "booted". 'new' = never booted.
    registration_status  text NOT NULL DEFAULT 'new'
                         CHECK (registration_status IN ('new', 'accepted', 'pending', 'rejected')),
    reported_vendor      text,
    reported_model       text,
    reported_serial      text,
    connected_at         timestamptz,
    disconnected_at      timestamptz,
    last_seen_at         timestamptz,
    firmware_status      text,
    diagnostics_status   text,
    -- the CSMS process holding the station's socket (csms_nodes.id); commands
    -- are delivered by that process. No foreign key: nodes come and go.
    node_id              uuid
);
CREATE INDEX IF NOT EXISTS station_runtime_state_online_idx
    ON station_runtime_state (last_seen_at) WHERE status <> 'offline';

-- ---------------------------------------------------------------- ADR 0002: current state

CREATE TABLE IF NOT EXISTS connector_runtime_state (
    station_id         uuid NOT NULL,
    connector_number   integer NOT NULL,
    -- normalized set (ADR 0002) plus 'reserved' and 'unknown' (nothing reported yet)
    status             text NOT NULL DEFAULT 'unknown'
                       CHECK (status IN ('available', 'occupied', 'charging', 'suspended',
                                         'faulted', 'unavailable', 'reserved', 'unknown')),
    -- the raw OCPP 1.6 values, kept as reported
    ocpp_status        text,
    ocpp_error_code    text,
    info               text,
    vendor_id          text,
    vendor_error_code  text,
    status_at          timestamptz,
    updated_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (station_id, connector_number),
    FOREIGN KEY (station_id, connector_number)
        REFERENCES station_connectors (station_id, connector_number) ON DELETE CASCADE
);

-- Beyond the ADR: id tags (RFID cards, app tokens) owned by an account.
-- The OCPP idTagInfo status is derived: blocked -> Blocked, expires_at past ->
-- Expired, in another active session -> ConcurrentTx, unknown -> Invalid.
CREATE TABLE IF NOT EXISTS id_tags (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    account_id     uuid NOT NULL REFERENCES accounts (id),
    id_tag         text NOT NULL CHECK (length(id_tag) BETWEEN 1 AND 20),  -- OCPP CiString20
    status         text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'blocked')),
    expires_at     timestamptz,
    parent_id_tag  text CHECK (length(parent_id_tag) BETWEEN 1 AND 20),
    label          text NOT NULL DEFAULT '',
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX IF NOT EXISTS id_tags_account_tag_key ON id_tags (account_id, lower(id_tag));

-- OCPP transactionId: assigned by the CSMS, an integer on the wire (signed 32 bit).
CREATE SEQUENCE IF NOT EXISTS ocpp_transaction_id_seq AS integer MINVALUE 1 MAXVALUE 2147483647;

CREATE TABLE IF NOT EXISTS charging_sessions (
    id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    transaction_id     integer NOT NULL UNIQUE DEFAULT nextval('ocpp_transaction_id_seq'),
    station_id         uuid NOT NULL REFERENCES stations (id),
    connector_number   integer NOT NULL CHECK (connector_number > 0),
    id_tag             text NOT NULL,
    -- the idTagInfo.status we answered; a refused tag still gets a session,
    -- because the charger may already be delivering energy.
    id_tag_status      text NOT NULL
                       CHECK (id_tag_status IN ('Accepted', 'Blocked', 'Expired', 'Invalid', 'ConcurrentTx')),
    reservation_id     integer,
    status             text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'completed')),
    meter_start_wh     bigint NOT NULL,
    meter_stop_wh      bigint,
    -- billing fields survive telemetry retention (ADR 0002)
    energy_wh          bigint,
    started_at         timestamptz NOT NULL,
    stopped_at         timestamptz,
    stop_reason        text,
    stop_id_tag        text,
    billing_status     text NOT NULL DEFAULT 'open'
                       CHECK (billing_status IN ('open', 'pending', 'billed', 'not_billable')),
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    -- Chargers re-send a queued StartTransaction with a new message id; the
    -- content identifies it (OCPP 1.6 §4.8), so a retry finds its session.
    UNIQUE (station_id, connector_number, id_tag, started_at, meter_start_wh),
    CHECK ((status = 'completed') = (stopped_at IS NOT NULL))
);
ALTER SEQUENCE ocpp_transaction_id_seq OWNED BY charging_sessions.transaction_id;
CREATE INDEX IF NOT EXISTS charging_sessions_station_idx ON charging_sessions (station_id, started_at DESC);
CREATE INDEX IF NOT EXISTS charging_sessions_active_idx ON charging_sessions (station_id, connector_number)
    WHERE status = 'active';
CREATE INDEX IF NOT EXISTS charging_sessions_id_tag_idx ON charging_sessions (lower(id_tag), started_at DESC);
-- Beyond the ADR: a session can end without its StopTransaction (lost while the
-- charger was offline, a replaced controller...). `stop_source` says who closed it:
-- 'charger' (StopTransaction), 'new_session' (a StartTransaction on the same
-- connector closed it, issue 7) or 'operator' (POST /api/sessions/:id/close).
-- A session not closed by its charger has an estimated meterStop (its highest
-- energy register reading, else unknown): billing_status 'review', and
-- review_reason says why. Added by ALTER so an existing database upgrades.
ALTER TABLE charging_sessions ADD COLUMN IF NOT EXISTS stop_source text
    CHECK (stop_source IN ('charger', 'new_session', 'operator'));
ALTER TABLE charging_sessions ADD COLUMN IF NOT EXISTS review_reason text;
ALTER TABLE charging_sessions DROP CONSTRAINT IF EXISTS charging_sessions_billing_status_check;
ALTER TABLE charging_sessions ADD CONSTRAINT charging_sessions_billing_status_check
    CHECK (billing_status IN ('open', 'pending', 'billed', 'not_billable', 'review'));

-- ---------------------------------------------------------------- ADR 0002: history
-- Append-only. Partition column as ADR 0002 says; unique keys include it.

CREATE TABLE IF NOT EXISTS station_heartbeat_events (
    station_id   uuid NOT NULL REFERENCES stations (id),
    occurred_at  timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS station_heartbeat_events_station_idx
    ON station_heartbeat_events (station_id, occurred_at DESC);

CREATE TABLE IF NOT EXISTS station_boot_events (
    station_id                 uuid NOT NULL REFERENCES stations (id),
    occurred_at                timestamptz NOT NULL,
    registration_status        text NOT NULL,
    charge_point_vendor        text NOT NULL,
    charge_point_model         text NOT NULL,
    charge_point_serial_number text,
    charge_box_serial_number   text,
    firmware_version           text,
    iccid                      text,
    imsi                       text,
    meter_type                 text,
    meter_serial_number        text
);
CREATE INDEX IF NOT EXISTS station_boot_events_station_idx
    ON station_boot_events (station_id, occurred_at DESC);

CREATE TABLE IF NOT EXISTS connector_status_events (
    station_id         uuid NOT NULL REFERENCES stations (id),
    connector_number   integer NOT NULL CHECK (connector_number >= 0),  -- 0 = the station
    occurred_at        timestamptz NOT NULL,  -- the charger's timestamp, else receipt time
    status             text NOT NULL,         -- normalized
    ocpp_status        text NOT NULL,
    ocpp_error_code    text NOT NULL,
    info               text,
    vendor_id          text,
    vendor_error_code  text,
    recorded_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS connector_status_events_station_idx
    ON connector_status_events (station_id, occurred_at DESC);

CREATE TABLE IF NOT EXISTS meter_values (
    station_id        uuid NOT NULL REFERENCES stations (id),
    connector_number  integer NOT NULL CHECK (connector_number >= 0),  -- 0 = main meter
    transaction_id    integer,
    sampled_at        timestamptz NOT NULL,
    -- OCPP 1.6 defaults applied when the charger omitted them
    measurand         text NOT NULL,
    phase             text,
    location          text NOT NULL,
    context           text NOT NULL,
    unit              text NOT NULL,   -- base unit after normalization (kWh -> Wh, kW -> W, ...)
    value             numeric,         -- in unit; NULL when the reported value is not a number
    format            text NOT NULL,
    raw_value         text,            -- kept for SignedData (billing evidence) and non-numbers
    recorded_at       timestamptz NOT NULL DEFAULT now(),
    -- a replayed MeterValues (new message id, same content) is stored once; format
    -- is part of it because a signed reading travels next to its plain twin
    UNIQUE NULLS NOT DISTINCT (station_id, connector_number, sampled_at, measurand, context,
                               location, phase, format)
);
CREATE INDEX IF NOT EXISTS meter_values_station_time_idx ON meter_values (station_id, sampled_at);
CREATE INDEX IF NOT EXISTS meter_values_transaction_idx
    ON meter_values (transaction_id, sampled_at) WHERE transaction_id IS NOT NULL;

CREATE TABLE IF NOT EXISTS session_events (
    station_id      uuid NOT NULL REFERENCES stations (id),
    session_id      uuid REFERENCES charging_sessions (id),
    transaction_id  integer,   -- as the charger sent it (may be 0, -1 or unknown)
    occurred_at     timestamptz NOT NULL,
    event_type      text NOT NULL CHECK (event_type IN ('started', 'start_repeated', 'stopped',
                                                        'stop_repeated', 'stop_unmatched')),
    id_tag          text,
    meter_wh        bigint,
    reason          text,
    recorded_at     timestamptz NOT NULL DEFAULT now()
);
-- Beyond the ADR: sessions closed without their StopTransaction (see
-- charging_sessions.stop_source) are events too; `requested_by` is who closed
-- one through the API ('admin' or 'api-key:<key id>'), for the audit trail.
ALTER TABLE session_events ADD COLUMN IF NOT EXISTS requested_by text;
-- Replaced only when it lacks the new types: on TimescaleDB this table is a
-- (possibly compressed) hypertable, where DDL is best done once, not every apply.
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
CREATE INDEX IF NOT EXISTS session_events_session_idx ON session_events (session_id, occurred_at);
CREATE INDEX IF NOT EXISTS session_events_station_idx ON session_events (station_id, occurred_at DESC);

-- Beyond the ADR: connect/disconnect history, for uptime (what is online when).
CREATE TABLE IF NOT EXISTS station_connection_events (
    station_id   uuid NOT NULL REFERENCES stations (id),
    occurred_at  timestamptz NOT NULL,
    event_type   text NOT NULL CHECK (event_type IN ('connected', 'disconnected', 'timed_out')),
    reason       text
);
CREATE INDEX IF NOT EXISTS station_connection_events_station_idx
    ON station_connection_events (station_id, occurred_at DESC);

-- Beyond the ADR: the other charger notifications, append-only
-- (SecurityEventNotification is the security whitepaper's audit log).
CREATE TABLE IF NOT EXISTS station_notifications (
    station_id   uuid NOT NULL REFERENCES stations (id),
    occurred_at  timestamptz NOT NULL,
    action       text NOT NULL CHECK (action IN ('SecurityEventNotification', 'DataTransfer',
                                                 'DiagnosticsStatusNotification',
                                                 'FirmwareStatusNotification',
                                                 'SignedFirmwareStatusNotification',
                                                 'LogStatusNotification')),
    payload      jsonb NOT NULL,
    recorded_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS station_notifications_station_idx
    ON station_notifications (station_id, occurred_at DESC);

-- ---------------------------------------------------------------- commands and scale-out
-- Beyond the ADRs (DESIGN.md scale-out): several CSMS processes share this
-- database; a command accepted by any process is delivered by the one holding
-- the station's socket, woken through LISTEN/NOTIFY. Every command is a row.

CREATE TABLE IF NOT EXISTS csms_nodes (
    id            uuid PRIMARY KEY,
    hostname      text NOT NULL,
    pid           integer NOT NULL,
    started_at    timestamptz NOT NULL DEFAULT now(),
    last_seen_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS station_commands (
    id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    station_id         uuid NOT NULL REFERENCES stations (id),
    action             text NOT NULL,
    payload            jsonb NOT NULL,
    requested_by       text NOT NULL,          -- 'admin' or 'api-key:<key id>'
    status             text NOT NULL DEFAULT 'queued'
                       CHECK (status IN ('queued', 'sent', 'answered', 'call_error', 'timeout',
                                         'offline', 'failed')),
    node_id            uuid,                   -- the process that delivered it
    response           jsonb,                  -- the charger's CALLRESULT payload
    error_code         text,                   -- the charger's CALLERROR, or ours
    error_description  text,
    created_at         timestamptz NOT NULL DEFAULT now(),
    sent_at            timestamptz,
    finished_at        timestamptz
);
CREATE INDEX IF NOT EXISTS station_commands_station_idx
    ON station_commands (station_id, created_at DESC);
CREATE INDEX IF NOT EXISTS station_commands_open_idx
    ON station_commands (station_id) WHERE status IN ('queued', 'sent');

-- What the commands changed on the chargers, as the chargers accepted it.
CREATE SEQUENCE IF NOT EXISTS reservation_id_seq AS integer MINVALUE 1 MAXVALUE 2147483647;

CREATE TABLE IF NOT EXISTS reservations (
    station_id        uuid NOT NULL REFERENCES stations (id),
    reservation_id    integer NOT NULL,
    connector_number  integer NOT NULL CHECK (connector_number >= 0),
    id_tag            text NOT NULL,
    parent_id_tag     text,
    expires_at        timestamptz NOT NULL,
    -- 'expired' is also shown for 'reserved' rows past expires_at
    status            text NOT NULL CHECK (status IN ('reserved', 'refused', 'cancelled', 'used',
                                                      'expired')),
    charger_status    text,  -- ReserveNow.conf status
    command_id        uuid REFERENCES station_commands (id),
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (station_id, reservation_id)
);

CREATE TABLE IF NOT EXISTS station_local_auth_lists (
    station_id    uuid PRIMARY KEY REFERENCES stations (id),
    list_version  integer NOT NULL,
    entries       jsonb NOT NULL,  -- {idTag: idTagInfo}, as last accepted
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS station_charging_profiles (
    station_id           uuid NOT NULL REFERENCES stations (id),
    connector_number     integer NOT NULL CHECK (connector_number >= 0),
    charging_profile_id  integer NOT NULL,
    stack_level          integer NOT NULL,
    purpose              text NOT NULL,
    profile              jsonb NOT NULL,
    installed_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (station_id, connector_number, charging_profile_id)
);

CREATE TABLE IF NOT EXISTS station_configuration (
    station_id  uuid NOT NULL REFERENCES stations (id),
    key         text NOT NULL,
    value       text,
    readonly    boolean,
    source      text NOT NULL CHECK (source IN ('GetConfiguration', 'ChangeConfiguration')),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (station_id, key)
);

COMMIT;
