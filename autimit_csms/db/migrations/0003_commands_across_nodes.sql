-- Step 3 (schema.sql of 21b26bf): commands across nodes. Several CSMS processes
-- share the database; the one holding a station's socket is recorded
-- (station_runtime_state.node_id) and delivers the commands accepted by any
-- process (station_commands), with what the accepted commands changed on the
-- chargers (reservations, local lists, charging profiles, configuration).
-- Only additions: new tables, a new nullable column.
-- Idempotent; one transaction:  psql -v ON_ERROR_STOP=1 -f 0003_commands_across_nodes.sql

BEGIN;

-- the CSMS process holding the station's socket (csms_nodes.id); commands
-- are delivered by that process. No foreign key: nodes come and go.
ALTER TABLE station_runtime_state ADD COLUMN IF NOT EXISTS node_id uuid;

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

INSERT INTO schema_version (version, name) VALUES (3, 'commands_across_nodes')
ON CONFLICT (version) DO NOTHING;

COMMIT;
