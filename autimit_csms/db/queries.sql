-- Every statement Autimit CSMS runs, by name (see statements.py).
-- Parameters are bound (%(name)s), never interpolated.
-- An ADR 0002 write rule ("UPDATE current state + INSERT history") is one
-- statement with data-modifying CTEs, so it commits or fails as a whole.

-- ================================================================ accounts

-- name: insert_account
INSERT INTO accounts (name, document, is_active)
VALUES (%(name)s, %(document)s, %(is_active)s)
RETURNING id, name, document, is_active, created_at, updated_at;

-- name: get_account
SELECT id, name, document, is_active, created_at, updated_at
FROM accounts WHERE id = %(id)s;

-- name: list_accounts
SELECT id, name, document, is_active, created_at, updated_at
FROM accounts
ORDER BY created_at, id
LIMIT %(limit)s OFFSET %(offset)s;

-- name: insert_api_key
INSERT INTO account_api_keys (account_id, key_id, key_hash, name)
VALUES (%(account_id)s, %(key_id)s, %(key_hash)s, %(name)s)
RETURNING id, account_id, key_id, name, created_at;

-- name: find_api_key
SELECT k.account_id, k.key_hash
FROM account_api_keys k JOIN accounts a ON a.id = k.account_id
WHERE k.key_id = %(key_id)s AND k.is_active AND a.is_active;

-- ================================================================ locations

-- name: insert_location
INSERT INTO locations (account_id, name, address, latitude, longitude, is_public, is_active)
VALUES (%(account_id)s, %(name)s, %(address)s, %(latitude)s, %(longitude)s,
        %(is_public)s, %(is_active)s)
RETURNING id, account_id, name, address, latitude, longitude, is_public, is_active,
          created_at, updated_at;

-- name: get_location
SELECT id, account_id, name, address, latitude, longitude, is_public, is_active,
       created_at, updated_at
FROM locations WHERE id = %(id)s;

-- name: list_locations
SELECT id, account_id, name, address, latitude, longitude, is_public, is_active,
       created_at, updated_at
FROM locations
WHERE (%(account_id)s::uuid IS NULL OR account_id = %(account_id)s)
ORDER BY created_at, id
LIMIT %(limit)s OFFSET %(offset)s;

-- ================================================================ stations

-- name: create_station
-- One statement: the station, its connectors 1..N and their runtime rows.
WITH station AS (
    INSERT INTO stations (account_id, location_id, station_code, station_secret_hash,
                          serial_number, manufacturer, model, connectors)
    VALUES (%(account_id)s, %(location_id)s, %(station_code)s, %(secret_hash)s,
            %(serial_number)s, %(manufacturer)s, %(model)s, %(connectors)s)
    RETURNING id, station_code, connectors
), runtime AS (
    INSERT INTO station_runtime_state (station_id) SELECT id FROM station
), connectors AS (
    INSERT INTO station_connectors (station_id, connector_number)
    SELECT station.id, n FROM station, generate_series(1, station.connectors) AS n
    RETURNING station_id, connector_number
), connector_runtime AS (
    INSERT INTO connector_runtime_state (station_id, connector_number)
    SELECT station_id, connector_number FROM connectors
)
SELECT id, station_code FROM station;

-- name: select_stations
-- Stations with their connectors and runtime state, as the API shows them:
-- one by id, or a page filtered by account, location and code (any letter case).
SELECT s.id, s.account_id, s.location_id, s.station_code, s.serial_number, s.manufacturer,
       s.model, s.connectors AS connector_count, s.is_active, s.ocpp_relaxed,
       CASE WHEN s.ocpp_trace_until > now() THEN s.ocpp_trace_until END AS ocpp_trace_until,
       s.created_at, s.updated_at,
       r.status, r.registration_status, r.last_heartbeat_at, r.booted_at,
       r.firmware_version, r.last_error_code, r.connected_at, r.disconnected_at,
       r.last_seen_at, r.updated_at AS runtime_updated_at,
       COALESCE((
           SELECT json_agg(json_build_object(
                      'connectorNumber', c.connector_number,
                      'connectorType', c.connector_type,
                      'maxPowerKw', c.max_power_kw,
                      'isActive', c.is_active,
                      'discovered', c.discovered_at IS NOT NULL,
                      'status', cr.status,
                      'ocppStatus', cr.ocpp_status,
                      'errorCode', cr.ocpp_error_code,
                      'statusAt', cr.status_at)
                  ORDER BY c.connector_number)
           FROM station_connectors c
           LEFT JOIN connector_runtime_state cr
                  ON cr.station_id = c.station_id AND cr.connector_number = c.connector_number
           WHERE c.station_id = s.id), '[]'::json) AS connector_list
FROM stations s
LEFT JOIN station_runtime_state r ON r.station_id = s.id
WHERE (%(id)s::uuid IS NULL OR s.id = %(id)s)
  AND (%(account_id)s::uuid IS NULL OR s.account_id = %(account_id)s)
  AND (%(location_id)s::uuid IS NULL OR s.location_id = %(location_id)s)
  AND (%(station_code)s::text IS NULL OR lower(s.station_code) = lower(%(station_code)s))
ORDER BY s.created_at, s.id
LIMIT %(limit)s OFFSET %(offset)s;

-- name: find_station_logins
-- The handshake's lookup (ADR 0001): active stations by code, any letter case, for
-- every handshake waiting at once (a reconnect storm shares one query per wave);
-- `requested` is the code as the charger sent it.
SELECT c.requested, s.id, s.station_code, s.station_secret_hash, s.ocpp_relaxed,
       s.account_id, r.registration_status
FROM unnest(%(codes)s::text[]) AS c(requested)
JOIN stations s ON lower(s.station_code) = lower(c.requested)
JOIN accounts a ON a.id = s.account_id
LEFT JOIN station_runtime_state r ON r.station_id = s.id
WHERE s.is_active AND a.is_active;

-- name: update_station
UPDATE stations
SET is_active = COALESCE(%(is_active)s, is_active),
    ocpp_relaxed = COALESCE(%(ocpp_relaxed)s, ocpp_relaxed),
    serial_number = COALESCE(%(serial_number)s, serial_number),
    manufacturer = COALESCE(%(manufacturer)s, manufacturer),
    model = COALESCE(%(model)s, model),
    updated_at = now()
WHERE id = %(id)s
RETURNING id;

-- name: set_station_trace
-- An operator's frame trace of one station: on for %(minutes)s minutes, or off (NULL).
-- The process holding the connection picks it up within one sweep (stations/commands.py).
UPDATE stations
SET ocpp_trace_until = now() + make_interval(mins => %(minutes)s::integer)
WHERE id = %(id)s
RETURNING id, CASE WHEN ocpp_trace_until > now() THEN ocpp_trace_until END AS ocpp_trace_until;

-- name: set_station_secret
UPDATE stations SET station_secret_hash = %(secret_hash)s, updated_at = now()
WHERE id = %(id)s
RETURNING id, station_code;

-- ================================================================ id tags

-- name: insert_id_tag
INSERT INTO id_tags (account_id, id_tag, status, expires_at, parent_id_tag, label)
VALUES (%(account_id)s, %(id_tag)s, %(status)s, %(expires_at)s, %(parent_id_tag)s, %(label)s)
RETURNING id, account_id, id_tag, status, expires_at, parent_id_tag, label, created_at, updated_at;

-- name: get_id_tag
SELECT id, account_id, id_tag, status, expires_at, parent_id_tag, label, created_at, updated_at
FROM id_tags WHERE id = %(id)s;

-- name: update_id_tag
UPDATE id_tags
SET status = COALESCE(%(status)s, status),
    expires_at = CASE WHEN %(set_expires_at)s THEN %(expires_at)s ELSE expires_at END,
    label = COALESCE(%(label)s, label),
    updated_at = now()
WHERE id = %(id)s
RETURNING id, account_id, id_tag, status, expires_at, parent_id_tag, label, created_at, updated_at;

-- name: list_id_tags
SELECT id, account_id, id_tag, status, expires_at, parent_id_tag, label, created_at, updated_at
FROM id_tags
WHERE (%(account_id)s::uuid IS NULL OR account_id = %(account_id)s)
ORDER BY created_at, id
LIMIT %(limit)s OFFSET %(offset)s;

-- ================================================================ OCPP: connection lifecycle
-- Each rule below is one ADR 0002 write (current state + history) in one
-- statement, submitted through the group-commit writer.

-- name: station_connected
WITH state AS (
    UPDATE station_runtime_state
    SET status = 'online', connected_at = %(at)s, last_seen_at = %(at)s,
        node_id = %(node_id)s, updated_at = now()
    WHERE station_id = %(station_id)s
    RETURNING station_id
)
INSERT INTO station_connection_events (station_id, occurred_at, event_type)
SELECT station_id, %(at)s, 'connected' FROM state;

-- name: station_disconnected
-- Only the connection that is still the station's current one marks it
-- offline: a replaced connection closing late must not undo its successor.
WITH state AS (
    UPDATE station_runtime_state
    SET status = 'offline', disconnected_at = %(at)s, node_id = NULL, updated_at = now()
    WHERE station_id = %(station_id)s AND connected_at = %(connected_at)s
      AND status <> 'offline'  -- already swept (its process seemed gone): recorded then
    RETURNING station_id
)
INSERT INTO station_connection_events (station_id, occurred_at, event_type, reason)
SELECT station_id, %(at)s, %(event_type)s, %(reason)s FROM state;

-- ================================================================ OCPP: charger messages

-- name: boot_notification
WITH state AS (
    UPDATE station_runtime_state
    SET booted_at = %(at)s, firmware_version = %(firmware_version)s,
        registration_status = %(registration_status)s, reported_vendor = %(vendor)s,
        reported_model = %(model)s, reported_serial = %(serial)s, last_seen_at = %(at)s,
        status = CASE WHEN status = 'offline' THEN 'online' ELSE status END,
        updated_at = now()
    WHERE station_id = %(station_id)s
    RETURNING station_id
)
INSERT INTO station_boot_events (station_id, occurred_at, registration_status,
    charge_point_vendor, charge_point_model, charge_point_serial_number,
    charge_box_serial_number, firmware_version, iccid, imsi, meter_type, meter_serial_number)
SELECT station_id, %(at)s, %(registration_status)s, %(vendor)s, %(model)s, %(serial)s,
       %(charge_box_serial)s, %(firmware_version)s, %(iccid)s, %(imsi)s, %(meter_type)s,
       %(meter_serial)s
FROM state;

-- name: heartbeat
-- `rows`: [{"station_id", "at"}], one per Heartbeat; the group-commit writer merges
-- the rows of every Heartbeat of a batch into one statement (like meter values).
-- A station's latest beat of the batch sets its state; every beat is history.
WITH beat AS (
    SELECT r.station_id, r.at
    FROM jsonb_to_recordset(%(rows)s::jsonb) AS r(station_id uuid, at timestamptz)
), state AS (
    UPDATE station_runtime_state s
    SET last_heartbeat_at = latest.at, last_seen_at = latest.at, updated_at = now()
    FROM (SELECT station_id, max(at) AS at FROM beat GROUP BY station_id) AS latest
    WHERE s.station_id = latest.station_id
    RETURNING s.station_id
)
INSERT INTO station_heartbeat_events (station_id, occurred_at)
SELECT beat.station_id, beat.at FROM beat JOIN state USING (station_id);

-- name: station_status_notification
-- Connector 0: the charge point itself (OCPP 1.6 §4.9).
WITH state AS (
    UPDATE station_runtime_state
    SET status = %(station_status)s,
        last_error_code = CASE WHEN %(error_code)s = 'NoError' THEN last_error_code
                               ELSE %(error_code)s END,
        last_seen_at = %(received_at)s, updated_at = now()
    WHERE station_id = %(station_id)s
    RETURNING station_id
)
INSERT INTO connector_status_events (station_id, connector_number, occurred_at, status,
    ocpp_status, ocpp_error_code, info, vendor_id, vendor_error_code)
SELECT station_id, 0, %(at)s, %(status)s, %(ocpp_status)s, %(error_code)s, %(info)s,
       %(vendor_id)s, %(vendor_error_code)s
FROM state;

-- name: connector_status_notification
-- A connector number that was not provisioned is created (discovered_at set)
-- so the report is stored, not lost. A replayed older report is kept as
-- history but does not overwrite a newer current state.
WITH discovered AS (
    INSERT INTO station_connectors (station_id, connector_number, discovered_at)
    VALUES (%(station_id)s, %(connector_number)s, now())
    ON CONFLICT (station_id, connector_number) DO NOTHING
    RETURNING connector_number
), state AS (
    INSERT INTO connector_runtime_state AS cr (station_id, connector_number, status,
        ocpp_status, ocpp_error_code, info, vendor_id, vendor_error_code, status_at)
    VALUES (%(station_id)s, %(connector_number)s, %(status)s, %(ocpp_status)s, %(error_code)s,
            %(info)s, %(vendor_id)s, %(vendor_error_code)s, %(at)s)
    ON CONFLICT (station_id, connector_number) DO UPDATE
    SET status = EXCLUDED.status, ocpp_status = EXCLUDED.ocpp_status,
        ocpp_error_code = EXCLUDED.ocpp_error_code, info = EXCLUDED.info,
        vendor_id = EXCLUDED.vendor_id, vendor_error_code = EXCLUDED.vendor_error_code,
        status_at = EXCLUDED.status_at, updated_at = now()
    WHERE cr.status_at IS NULL OR cr.status_at <= EXCLUDED.status_at
), station AS (
    UPDATE station_runtime_state
    SET last_error_code = CASE WHEN %(error_code)s = 'NoError' THEN last_error_code
                               ELSE %(error_code)s END,
        last_seen_at = %(received_at)s, updated_at = now()
    WHERE station_id = %(station_id)s
), history AS (
    INSERT INTO connector_status_events (station_id, connector_number, occurred_at, status,
        ocpp_status, ocpp_error_code, info, vendor_id, vendor_error_code)
    VALUES (%(station_id)s, %(connector_number)s, %(at)s, %(status)s, %(ocpp_status)s,
            %(error_code)s, %(info)s, %(vendor_id)s, %(vendor_error_code)s)
)
SELECT EXISTS (SELECT 1 FROM discovered) AS discovered;

-- name: id_tag_info
-- What an idTag may do at this station: the tag of the station's account, and
-- whether it is in an active session elsewhere (ConcurrentTx). A session on
-- the same connector does not count, so a retried StartTransaction is not
-- refused by its own first attempt.
SELECT t.status, t.expires_at, t.parent_id_tag,
       EXISTS (SELECT 1 FROM charging_sessions cs JOIN stations cs_s ON cs_s.id = cs.station_id
               WHERE cs.status = 'active' AND cs_s.account_id = s.account_id
                 AND lower(cs.id_tag) = lower(t.id_tag)
                 AND NOT (cs.station_id = s.id
                          AND cs.connector_number IS NOT DISTINCT FROM %(connector_number)s))
           AS in_other_session
FROM stations s
JOIN id_tags t ON t.account_id = s.account_id AND lower(t.id_tag) = lower(%(id_tag)s)
WHERE s.id = %(station_id)s;

-- name: start_transaction
-- Deduplicated on content (station, connector, idTag, timestamp, meterStart):
-- a StartTransaction re-sent with a new message id gets its first transactionId
-- and closes nothing. A new session closes a session still active on the same
-- connector that started no later (its StopTransaction was lost; issue 7): at
-- the new start, with its highest energy register reading of that transaction
-- as meterStop (else unknown), for billing review, with a 'closed_stale' event.
WITH existing AS (
    SELECT id, transaction_id, id_tag_status FROM charging_sessions
    WHERE station_id = %(station_id)s AND connector_number = %(connector_number)s
      AND id_tag = %(id_tag)s AND started_at = %(started_at)s
      AND meter_start_wh = %(meter_start)s
), discovered AS (
    INSERT INTO station_connectors (station_id, connector_number, discovered_at)
    VALUES (%(station_id)s, %(connector_number)s, now())
    ON CONFLICT (station_id, connector_number) DO NOTHING
), created AS (
    INSERT INTO charging_sessions (station_id, connector_number, id_tag, id_tag_status,
                                   reservation_id, meter_start_wh, started_at)
    SELECT %(station_id)s, %(connector_number)s, %(id_tag)s, %(id_tag_status)s,
           %(reservation_id)s, %(meter_start)s, %(started_at)s
    WHERE NOT EXISTS (SELECT 1 FROM existing)
    RETURNING id, transaction_id, id_tag_status
), stale AS (
    SELECT cs.id, cs.meter_start_wh,
           (SELECT max(mv.value) FROM meter_values mv
            WHERE mv.station_id = cs.station_id AND mv.transaction_id = cs.transaction_id
              AND mv.measurand = 'Energy.Active.Import.Register' AND mv.phase IS NULL
              AND mv.unit = 'Wh')::bigint AS last_wh
    FROM charging_sessions cs
    WHERE cs.station_id = %(station_id)s AND cs.connector_number = %(connector_number)s
      AND cs.status = 'active' AND cs.started_at <= %(started_at)s
), closed AS (
    UPDATE charging_sessions cs
    SET status = 'completed', stopped_at = %(started_at)s, meter_stop_wh = stale.last_wh,
        energy_wh = stale.last_wh - stale.meter_start_wh, stop_source = 'new_session',
        billing_status = 'review',
        review_reason = 'no StopTransaction: transaction ' || created.transaction_id
                        || ' started on the same connector; meterStop '
                        || CASE WHEN stale.last_wh IS NULL THEN 'unknown (no meter reading)'
                                ELSE 'from the last meter reading' END,
        updated_at = now()
    FROM stale, created
    WHERE cs.id = stale.id
    RETURNING cs.id, cs.transaction_id, cs.id_tag, cs.meter_stop_wh, cs.review_reason
), reservation AS (
    UPDATE reservations SET status = 'used', updated_at = now()
    WHERE station_id = %(station_id)s AND reservation_id = %(reservation_id)s
      AND EXISTS (SELECT 1 FROM created)
), history AS (
    INSERT INTO session_events (station_id, session_id, transaction_id, occurred_at,
                                event_type, id_tag, meter_wh, reason)
    SELECT %(station_id)s, id, transaction_id, %(started_at)s, 'started', %(id_tag)s,
           %(meter_start)s, NULL FROM created
    UNION ALL
    SELECT %(station_id)s, id, transaction_id, %(started_at)s, 'start_repeated', %(id_tag)s,
           %(meter_start)s, NULL FROM existing
    UNION ALL
    SELECT %(station_id)s, id, transaction_id, %(started_at)s, 'closed_stale', id_tag,
           meter_stop_wh, review_reason FROM closed
)
SELECT transaction_id, id_tag_status, true AS created,
       ARRAY(SELECT transaction_id FROM closed ORDER BY transaction_id) AS closed_stale
FROM created
UNION ALL
SELECT transaction_id, id_tag_status, false AS created, '{}'::integer[] AS closed_stale
FROM existing;

-- name: stop_transaction
-- Closes the session once; a repeated stop changes nothing (no double billing)
-- and a stop for an unknown transactionId (0, -1, lost) is kept as an event.
-- A session the CSMS closed without its stop (stop_source 'new_session' or
-- 'operator') takes the real figures of a StopTransaction arriving later, and
-- stays marked for review. The condition is on `cs`, re-read under the row
-- lock, so an operator's close and the charger's stop never both win.
WITH target AS (
    SELECT id FROM charging_sessions
    WHERE station_id = %(station_id)s AND transaction_id = %(transaction_id)s
), closed AS (
    UPDATE charging_sessions cs
    SET status = 'completed', meter_stop_wh = %(meter_stop)s,
        energy_wh = %(meter_stop)s - cs.meter_start_wh, stopped_at = %(stopped_at)s,
        stop_reason = %(reason)s, stop_id_tag = %(id_tag)s, stop_source = 'charger',
        billing_status = CASE WHEN cs.status = 'completed' THEN 'review'
                              WHEN %(meter_stop)s >= cs.meter_start_wh THEN 'pending'
                              ELSE 'not_billable' END,
        review_reason = CASE WHEN cs.status = 'completed'
                             THEN cs.review_reason || '; corrected by its StopTransaction'
                             ELSE cs.review_reason END,
        updated_at = now()
    FROM target
    WHERE cs.id = target.id
      AND (cs.status = 'active' OR cs.stop_source IN ('new_session', 'operator'))
    RETURNING cs.id, cs.energy_wh
), history AS (
    INSERT INTO session_events (station_id, session_id, transaction_id, occurred_at,
                                event_type, id_tag, meter_wh, reason)
    SELECT %(station_id)s, (SELECT id FROM target), %(transaction_id)s, %(stopped_at)s,
           CASE WHEN EXISTS (SELECT 1 FROM closed) THEN 'stopped'
                WHEN EXISTS (SELECT 1 FROM target) THEN 'stop_repeated'
                ELSE 'stop_unmatched' END,
           %(id_tag)s, %(meter_stop)s, %(reason)s
)
SELECT (SELECT id FROM target) AS session_id,
       EXISTS (SELECT 1 FROM closed) AS closed,
       (SELECT energy_wh FROM closed) AS energy_wh;

-- name: close_session
-- An operator closes a stuck session (POST /api/sessions/:id/close): now, with
-- the highest energy register reading of its transaction as meterStop (else
-- unknown), for billing review with the operator's reason; the event names who.
-- No row: the session was not active (already closed).
WITH target AS (
    SELECT cs.id, cs.meter_start_wh,
           (SELECT max(mv.value) FROM meter_values mv
            WHERE mv.station_id = cs.station_id AND mv.transaction_id = cs.transaction_id
              AND mv.measurand = 'Energy.Active.Import.Register' AND mv.phase IS NULL
              AND mv.unit = 'Wh')::bigint AS last_wh
    FROM charging_sessions cs
    WHERE cs.id = %(id)s
), closed AS (
    UPDATE charging_sessions cs
    SET status = 'completed', stopped_at = GREATEST(now(), cs.started_at),
        meter_stop_wh = target.last_wh, energy_wh = target.last_wh - target.meter_start_wh,
        stop_source = 'operator', billing_status = 'review',
        review_reason = 'closed by ' || %(requested_by)s || ': ' || %(reason)s,
        updated_at = now()
    FROM target
    WHERE cs.id = target.id AND cs.status = 'active'
    RETURNING cs.id, cs.station_id, cs.transaction_id, cs.id_tag, cs.stopped_at,
              cs.meter_stop_wh
), history AS (
    INSERT INTO session_events (station_id, session_id, transaction_id, occurred_at,
                                event_type, id_tag, meter_wh, reason, requested_by)
    SELECT station_id, id, transaction_id, stopped_at, 'closed_by_operator', id_tag,
           meter_stop_wh, %(reason)s, %(requested_by)s
    FROM closed
)
SELECT id FROM closed;

-- name: insert_meter_values
-- One row per sampled value, of one or many messages: the group-commit writer
-- merges the `rows` of every MeterValues in a batch into one statement. A
-- replayed MeterValues (same content, new message id) hits the unique key and
-- is stored once. connector_number NULL (StopTransaction's transactionData)
-- means the connector of the transaction; an unprovisioned connector number is
-- created (discovered_at) so its data is stored, not lost.
WITH v AS (
    SELECT r.station_id,
           COALESCE(r.connector_number,
                    (SELECT cs.connector_number FROM charging_sessions cs
                     WHERE cs.station_id = r.station_id
                       AND cs.transaction_id = r.transaction_id),
                    0) AS connector_number,
           r.transaction_id, r.sampled_at, r.measurand, r.phase, r.location, r.context,
           r.unit, r.value, r.format, r.raw_value
    FROM jsonb_to_recordset(%(rows)s::jsonb)
         AS r(station_id uuid, connector_number integer, transaction_id integer,
              sampled_at timestamptz, measurand text, phase text, location text,
              context text, unit text, value numeric, format text, raw_value text)
), discovered AS (
    INSERT INTO station_connectors (station_id, connector_number, discovered_at)
    SELECT DISTINCT station_id, connector_number, now() FROM v WHERE connector_number > 0
    ON CONFLICT (station_id, connector_number) DO NOTHING
)
INSERT INTO meter_values (station_id, connector_number, transaction_id, sampled_at, measurand,
                          phase, location, context, unit, value, format, raw_value)
SELECT station_id, connector_number, transaction_id, sampled_at, measurand, phase, location,
       context, unit, value, format, raw_value
FROM v
ON CONFLICT DO NOTHING;

-- name: progress_notification
-- Firmware/DiagnosticsStatusNotification: the latest status on the station,
-- each report in the log.
WITH state AS (
    UPDATE station_runtime_state
    SET firmware_status = CASE WHEN %(action)s = 'FirmwareStatusNotification' THEN %(status)s
                               ELSE firmware_status END,
        diagnostics_status = CASE WHEN %(action)s = 'DiagnosticsStatusNotification'
                                  THEN %(status)s ELSE diagnostics_status END,
        updated_at = now()
    WHERE station_id = %(station_id)s
    RETURNING station_id
)
INSERT INTO station_notifications (station_id, occurred_at, action, payload)
SELECT station_id, %(at)s, %(action)s, %(payload)s FROM state;

-- name: station_notification
INSERT INTO station_notifications (station_id, occurred_at, action, payload)
VALUES (%(station_id)s, %(at)s, %(action)s, %(payload)s);
