-- Commands to chargers and the process ownership that routes them
-- (DESIGN.md scale-out: PostgreSQL rows + LISTEN/NOTIFY, no other broker).

-- name: node_heartbeat
-- A process's sign of life (also its registration: a row forgotten while the
-- process could not reach the database comes back). Also forgets processes
-- gone for an hour; their stations were swept offline long before.
WITH gone AS (
    DELETE FROM csms_nodes WHERE last_seen_at < now() - interval '1 hour' AND id <> %(id)s
)
INSERT INTO csms_nodes (id, hostname, pid) VALUES (%(id)s, %(hostname)s, %(pid)s)
ON CONFLICT (id) DO UPDATE SET last_seen_at = now();

-- name: forget_node
DELETE FROM csms_nodes WHERE id = %(id)s;

-- name: station_route
SELECT r.status, r.node_id, n.last_seen_at AS node_seen_at
FROM station_runtime_state r
LEFT JOIN csms_nodes n ON n.id = r.node_id
WHERE r.station_id = %(station_id)s;

-- name: sweep_unheld_stations
-- The liveness rule (docs/ocpp.md "Liveness"): a station is online only while
-- the process recorded as its holder (node_id) is alive, i.e. its csms_nodes
-- heartbeat is younger than %(silence)s seconds. Any process sweeps the others:
-- a station whose holder is unknown, gone or silent is marked offline, dated at
-- the holder's last sign of life (so uptime is not overstated). The UPDATE
-- re-checks holder and connection under the row lock: a station that just
-- connected to a live process, or that another sweep took first, is left alone.
WITH unheld AS (
    SELECT r.station_id, r.node_id, r.connected_at,
           COALESCE(GREATEST(n.last_seen_at, r.last_seen_at, r.connected_at), now())
               AS last_sign
    FROM station_runtime_state r
    LEFT JOIN csms_nodes n ON n.id = r.node_id
    WHERE r.status <> 'offline'
      AND (n.id IS NULL OR n.last_seen_at < now() - make_interval(secs => %(silence)s))
), state AS (
    UPDATE station_runtime_state r
    SET status = 'offline', disconnected_at = unheld.last_sign, node_id = NULL,
        updated_at = now()
    FROM unheld
    WHERE r.station_id = unheld.station_id AND r.status <> 'offline'
      AND r.node_id IS NOT DISTINCT FROM unheld.node_id
      AND r.connected_at IS NOT DISTINCT FROM unheld.connected_at
    RETURNING r.station_id, unheld.last_sign
)
INSERT INTO station_connection_events (station_id, occurred_at, event_type, reason)
SELECT station_id, last_sign, 'timed_out', 'the process holding its connection is gone'
FROM state
RETURNING station_id;

-- name: reclaim_stations
-- A process that could not heartbeat for a while may have had its stations
-- swept by the others while it still held their sockets: it records them as
-- online again, only where its own connection is still the latest one.
WITH held AS (
    SELECT * FROM unnest(%(stations)s::uuid[], %(connected_at)s::timestamptz[])
        AS h(station_id, connected_at)
), state AS (
    UPDATE station_runtime_state r
    SET status = 'online', node_id = %(node_id)s, updated_at = now()
    FROM held
    WHERE r.station_id = held.station_id AND r.connected_at = held.connected_at
      AND (r.status = 'offline' OR r.node_id IS DISTINCT FROM %(node_id)s)
    RETURNING r.station_id
)
INSERT INTO station_connection_events (station_id, occurred_at, event_type, reason)
SELECT station_id, now(), 'connected', 'the process holding its connection is back'
FROM state
RETURNING station_id;

-- name: insert_command
-- The NOTIFY is delivered when this commits; it carries "command:station".
WITH command AS (
    INSERT INTO station_commands (id, station_id, action, payload, requested_by, status,
                                  error_code, error_description, finished_at)
    VALUES (%(id)s, %(station_id)s, %(action)s, %(payload)s, %(requested_by)s, %(status)s,
            %(error_code)s, %(error_description)s,
            CASE WHEN %(status)s = 'queued' THEN NULL ELSE now() END)
    RETURNING id, station_id, status
)
SELECT id, (SELECT pg_notify('autimit_command', id::text || ':' || station_id::text)
            WHERE status = 'queued') IS NOT NULL AS notified
FROM command;

-- name: claim_command
UPDATE station_commands SET status = 'sent', node_id = %(node_id)s, sent_at = now()
WHERE id = %(id)s AND status = 'queued'
RETURNING id, station_id, action, payload;

-- name: queued_commands_for
-- Commands whose NOTIFY this process may have missed (it was reconnecting).
SELECT id FROM station_commands
WHERE status = 'queued' AND station_id = ANY (%(stations)s::uuid[])
  AND created_at < now() - interval '2 seconds'
ORDER BY created_at;

-- name: finish_command
WITH done AS (
    UPDATE station_commands
    SET status = %(status)s, response = %(response)s, error_code = %(error_code)s,
        error_description = %(error_description)s, finished_at = now()
    WHERE id = %(id)s AND status IN ('queued', 'sent')
    RETURNING id
)
SELECT pg_notify('autimit_command_done', id::text) FROM done;

-- name: get_command
SELECT c.id, c.station_id, c.action, c.payload, c.requested_by, c.status, c.node_id,
       c.response, c.error_code, c.error_description, c.created_at, c.sent_at, c.finished_at
FROM station_commands c WHERE c.id = %(id)s;

-- name: list_commands
SELECT id, station_id, action, payload, requested_by, status, node_id, response, error_code,
       error_description, created_at, sent_at, finished_at
FROM station_commands WHERE station_id = %(station_id)s
ORDER BY created_at DESC, id
LIMIT %(limit)s OFFSET %(offset)s;

-- name: next_reservation_id
SELECT nextval('reservation_id_seq')::integer AS reservation_id;

-- ================================================================ effects of answered commands

-- name: record_reservation
INSERT INTO reservations AS r (station_id, reservation_id, connector_number, id_tag,
                               parent_id_tag, expires_at, status, charger_status, command_id)
VALUES (%(station_id)s, %(reservation_id)s, %(connector_number)s, %(id_tag)s,
        %(parent_id_tag)s, %(expires_at)s, %(status)s, %(charger_status)s, %(command_id)s)
ON CONFLICT (station_id, reservation_id) DO UPDATE
SET connector_number = EXCLUDED.connector_number, id_tag = EXCLUDED.id_tag,
    parent_id_tag = EXCLUDED.parent_id_tag, expires_at = EXCLUDED.expires_at,
    status = EXCLUDED.status, charger_status = EXCLUDED.charger_status,
    command_id = EXCLUDED.command_id, updated_at = now();

-- name: cancel_reservation
UPDATE reservations SET status = 'cancelled', updated_at = now()
WHERE station_id = %(station_id)s AND reservation_id = %(reservation_id)s;

-- name: list_reservations
SELECT reservation_id, connector_number, id_tag, parent_id_tag, expires_at,
       CASE WHEN status = 'reserved' AND expires_at <= now() THEN 'expired' ELSE status END
           AS status,
       charger_status, command_id, created_at, updated_at
FROM reservations WHERE station_id = %(station_id)s
ORDER BY created_at DESC
LIMIT %(limit)s OFFSET %(offset)s;

-- name: record_local_list
-- Full replaces the list; Differential sets the entries with idTagInfo and
-- removes those without (OCPP 1.6 §5.15).
INSERT INTO station_local_auth_lists AS l (station_id, list_version, entries)
VALUES (%(station_id)s, %(list_version)s, %(upserts)s)
ON CONFLICT (station_id) DO UPDATE
SET list_version = EXCLUDED.list_version,
    entries = CASE WHEN %(full)s THEN EXCLUDED.entries
                   ELSE (l.entries || EXCLUDED.entries) - %(removed)s::text[] END,
    updated_at = now();

-- name: get_local_list
SELECT list_version, entries, updated_at FROM station_local_auth_lists
WHERE station_id = %(station_id)s;

-- name: record_charging_profile
-- OCPP 1.6 §3.13.2: a profile replaces one with the same id (on any connector),
-- or with the same stackLevel and purpose on the same connector. The row with
-- the same key is replaced in place (ON CONFLICT): a DELETE of it in the same
-- statement would run after the INSERT and not make room for it.
WITH replaced AS (
    DELETE FROM station_charging_profiles
    WHERE station_id = %(station_id)s
      AND NOT (connector_number = %(connector_number)s
               AND charging_profile_id = %(charging_profile_id)s)
      AND (charging_profile_id = %(charging_profile_id)s
           OR (connector_number = %(connector_number)s AND stack_level = %(stack_level)s
               AND purpose = %(purpose)s))
)
INSERT INTO station_charging_profiles (station_id, connector_number, charging_profile_id,
                                       stack_level, purpose, profile)
VALUES (%(station_id)s, %(connector_number)s, %(charging_profile_id)s, %(stack_level)s,
        %(purpose)s, %(profile)s)
ON CONFLICT (station_id, connector_number, charging_profile_id) DO UPDATE
SET stack_level = EXCLUDED.stack_level, purpose = EXCLUDED.purpose,
    profile = EXCLUDED.profile, installed_at = now();

-- name: clear_charging_profiles
DELETE FROM station_charging_profiles
WHERE station_id = %(station_id)s
  AND (%(charging_profile_id)s::integer IS NULL OR charging_profile_id = %(charging_profile_id)s)
  AND (%(connector_number)s::integer IS NULL OR connector_number = %(connector_number)s)
  AND (%(purpose)s::text IS NULL OR purpose = %(purpose)s)
  AND (%(stack_level)s::integer IS NULL OR stack_level = %(stack_level)s);

-- name: list_charging_profiles
SELECT connector_number, charging_profile_id, stack_level, purpose, profile, installed_at
FROM station_charging_profiles WHERE station_id = %(station_id)s
ORDER BY connector_number, stack_level DESC, charging_profile_id;

-- name: record_configuration
-- One row per key; `keys`, `values`, `readonly` are parallel arrays.
INSERT INTO station_configuration AS c (station_id, key, value, readonly, source)
SELECT %(station_id)s, k.key, k.value, k.readonly, %(source)s
FROM unnest(%(keys)s::text[], %(values)s::text[], %(readonly)s::boolean[])
     AS k(key, value, readonly)
ON CONFLICT (station_id, key) DO UPDATE
SET value = EXCLUDED.value, readonly = COALESCE(EXCLUDED.readonly, c.readonly),
    source = EXCLUDED.source, updated_at = now();

-- name: list_configuration
SELECT key, value, readonly, source, updated_at FROM station_configuration
WHERE station_id = %(station_id)s ORDER BY key;

-- name: traced_stations
-- Of the stations this process holds, those an operator is tracing now.
SELECT id FROM stations
WHERE id = ANY (%(stations)s::uuid[]) AND ocpp_trace_until > now();
