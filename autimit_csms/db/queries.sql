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
-- one by id, or a page filtered by account and location.
SELECT s.id, s.account_id, s.location_id, s.station_code, s.serial_number, s.manufacturer,
       s.model, s.connectors AS connector_count, s.is_active, s.ocpp_relaxed,
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
ORDER BY s.created_at, s.id
LIMIT %(limit)s OFFSET %(offset)s;

-- name: find_station_login
-- The handshake's lookup (ADR 0001): active station by code, any letter case.
SELECT s.id, s.station_code, s.station_secret_hash, s.ocpp_relaxed, s.account_id,
       r.registration_status
FROM stations s
JOIN accounts a ON a.id = s.account_id
LEFT JOIN station_runtime_state r ON r.station_id = s.id
WHERE lower(s.station_code) = lower(%(station_code)s) AND s.is_active AND a.is_active;

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
