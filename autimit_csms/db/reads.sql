-- The read API (ADR 0002 query rules): current-state tables for live views,
-- history tables for charts, reports, uptime and faults. Bound parameters only.
-- Account scoping: the API checks a single station/session/location itself
-- (404/403); listings take %(account_id)s (NULL = admin, all accounts).
-- Time ranges are half-open, [from, to).

-- ================================================================ current state

-- name: availability
-- Map/dashboard availability of one station or every station of a location,
-- from station_runtime_state + connector_runtime_state only. The counts cover
-- the whole scope; the stations are one page of it. One row even when the page
-- is empty (station columns NULL), so the counts always come back.
-- A connector is "available now" only if it says Available and its station is
-- online and both are active: a stale 'available' of an offline station is not.
WITH scope AS (
    SELECT s.id, s.account_id, s.location_id, s.station_code, s.is_active,
           COALESCE(r.status, 'offline') AS station_status, r.last_seen_at
    FROM stations s
    LEFT JOIN station_runtime_state r ON r.station_id = s.id
    WHERE (%(station_id)s::uuid IS NULL OR s.id = %(station_id)s)
      AND (%(location_id)s::uuid IS NULL OR s.location_id = %(location_id)s)
), connector AS (
    SELECT c.station_id, c.connector_number, c.connector_type, c.max_power_kw, c.is_active,
           COALESCE(cr.status, 'unknown') AS status, cr.ocpp_status, cr.ocpp_error_code,
           cr.status_at,
           (COALESCE(cr.status, 'unknown') = 'available' AND c.is_active AND scope.is_active
            AND scope.station_status = 'online') AS available_now
    FROM station_connectors c
    JOIN scope ON scope.id = c.station_id
    LEFT JOIN connector_runtime_state cr
           ON cr.station_id = c.station_id AND cr.connector_number = c.connector_number
), totals AS (
    SELECT (SELECT count(*) FROM scope) AS station_total,
           (SELECT count(*) FROM scope WHERE station_status = 'online') AS stations_online,
           (SELECT count(*) FROM connector) AS connector_total,
           (SELECT count(*) FROM connector WHERE available_now) AS available_now,
           COALESCE((SELECT json_object_agg(status, n ORDER BY status)
                     FROM (SELECT status, count(*) AS n FROM connector GROUP BY status) g),
                    '{}'::json) AS by_status
)
SELECT totals.*, p.*
FROM totals
LEFT JOIN LATERAL (
    SELECT scope.id, scope.account_id, scope.location_id, scope.station_code, scope.is_active,
           scope.station_status, scope.last_seen_at,
           COALESCE((SELECT json_agg(json_build_object(
                                'connectorNumber', connector.connector_number,
                                'connectorType', connector.connector_type,
                                'maxPowerKw', connector.max_power_kw,
                                'isActive', connector.is_active,
                                'status', connector.status,
                                'ocppStatus', connector.ocpp_status,
                                'errorCode', connector.ocpp_error_code,
                                'statusAt', connector.status_at,
                                'availableNow', connector.available_now)
                            ORDER BY connector.connector_number)
                     FROM connector WHERE connector.station_id = scope.id),
                    '[]'::json) AS connectors
    FROM scope
    ORDER BY scope.station_code, scope.id
    LIMIT %(limit)s OFFSET %(offset)s
) p ON true;

-- name: select_sessions
-- Sessions (charging_sessions is a current-state table) by id, or a page
-- filtered by account, station, idTag (any case), active or not, and start
-- time. energy_wh is the stored billing figure once stopped; while active, the
-- latest energy register reading of the transaction (meter_values) minus
-- meterStart, marked as such. A session closed without its StopTransaction
-- (stop_source 'new_session' or 'operator') has billing_status 'review', a
-- review_reason, and its stored figure comes from the last meter reading.
SELECT cs.id, cs.transaction_id, cs.station_id, s.station_code, s.account_id,
       cs.connector_number, cs.id_tag, cs.id_tag_status, cs.reservation_id, cs.status,
       cs.meter_start_wh, cs.meter_stop_wh, cs.started_at, cs.stopped_at, cs.stop_reason,
       cs.stop_id_tag, cs.billing_status, cs.stop_source, cs.review_reason, cs.created_at,
       cs.updated_at,
       CASE WHEN cs.energy_wh IS NOT NULL THEN cs.energy_wh
            ELSE (live.value - cs.meter_start_wh)::bigint END AS energy_wh,
       CASE WHEN cs.energy_wh IS NOT NULL
                 AND cs.stop_source IN ('new_session', 'operator') THEN 'meterValues'
            WHEN cs.energy_wh IS NOT NULL THEN 'meterStop'
            WHEN live.value IS NOT NULL THEN 'meterValues' END AS energy_source,
       EXTRACT(EPOCH FROM cs.stopped_at - cs.started_at) AS duration_seconds
FROM charging_sessions cs
JOIN stations s ON s.id = cs.station_id
LEFT JOIN LATERAL (
    SELECT mv.value FROM meter_values mv
    WHERE cs.status = 'active' AND mv.transaction_id = cs.transaction_id
      AND mv.station_id = cs.station_id
      AND mv.measurand = 'Energy.Active.Import.Register' AND mv.phase IS NULL
      AND mv.unit = 'Wh' AND mv.value IS NOT NULL
    ORDER BY mv.sampled_at DESC
    LIMIT 1
) live ON true
WHERE (%(id)s::uuid IS NULL OR cs.id = %(id)s)
  AND (%(account_id)s::uuid IS NULL OR s.account_id = %(account_id)s)
  AND (%(station_id)s::uuid IS NULL OR cs.station_id = %(station_id)s)
  AND (%(transaction_id)s::integer IS NULL OR cs.transaction_id = %(transaction_id)s)
  AND (%(id_tag)s::text IS NULL OR lower(cs.id_tag) = lower(%(id_tag)s))
  AND (%(active)s::boolean IS NULL OR (cs.status = 'active') = %(active)s)
  AND (%(from_at)s::timestamptz IS NULL OR cs.started_at >= %(from_at)s)
  AND (%(to_at)s::timestamptz IS NULL OR cs.started_at < %(to_at)s)
ORDER BY cs.started_at DESC, cs.id
LIMIT %(limit)s OFFSET %(offset)s;

-- ================================================================ history: charts

-- name: meter_values_raw
-- Raw samples of a station (optionally one connector) or of one transaction,
-- in a time range, oldest first; the API caps the page size.
SELECT sampled_at, connector_number, transaction_id, measurand, phase, location, context,
       unit, value, format, raw_value
FROM meter_values
WHERE station_id = %(station_id)s
  AND (%(transaction_id)s::integer IS NULL OR transaction_id = %(transaction_id)s)
  AND (%(connector)s::integer IS NULL OR connector_number = %(connector)s)
  AND (%(measurands)s::text[] IS NULL OR measurand = ANY (%(measurands)s::text[]))
  AND (%(from_at)s::timestamptz IS NULL OR sampled_at >= %(from_at)s)
  AND (%(to_at)s::timestamptz IS NULL OR sampled_at < %(to_at)s)
ORDER BY sampled_at, connector_number, measurand, phase NULLS FIRST, location, context, format
LIMIT %(limit)s OFFSET %(offset)s;

-- name: meter_values_bucketed
-- Down-sampled samples: one row per (bucket start, connector, measurand, phase,
-- location, unit) with count/min/max/avg/last of the numeric values (a
-- SignedData twin or a non-number has value NULL and is not counted).
-- date_bin, not time_bucket, so plain PostgreSQL (>= 14) runs it; the origin is
-- TimescaleDB's default for time_bucket (Monday 2000-01-03 00:00 UTC), so both
-- give the same bucket edges for any width. Written with an explicit offset:
-- a bare TIMESTAMPTZ literal would be read in the session's time zone.
SELECT date_bin(make_interval(secs => %(bucket)s), sampled_at,
                TIMESTAMPTZ '2000-01-03 00:00:00+00') AS bucket,
       connector_number, measurand, phase, location, unit,
       count(*) AS samples,
       min(value) AS min_value,
       max(value) AS max_value,
       avg(value) AS avg_value,
       (array_agg(value ORDER BY sampled_at DESC))[1] AS last_value,
       max(sampled_at) AS last_at
FROM meter_values
WHERE station_id = %(station_id)s
  AND value IS NOT NULL
  AND (%(transaction_id)s::integer IS NULL OR transaction_id = %(transaction_id)s)
  AND (%(connector)s::integer IS NULL OR connector_number = %(connector)s)
  AND (%(measurands)s::text[] IS NULL OR measurand = ANY (%(measurands)s::text[]))
  AND (%(from_at)s::timestamptz IS NULL OR sampled_at >= %(from_at)s)
  AND (%(to_at)s::timestamptz IS NULL OR sampled_at < %(to_at)s)
GROUP BY 1, connector_number, measurand, phase, location, unit
ORDER BY 1, connector_number, measurand, phase NULLS FIRST, location, unit
LIMIT %(limit)s OFFSET %(offset)s;

-- ================================================================ history: status, uptime, faults

-- name: station_status_history
-- Connection events and station-level (connector 0) status notifications in
-- the range, as one timeline, oldest first.
SELECT occurred_at, kind, event, reason, ocpp_status, error_code, info, vendor_error_code
FROM (
    SELECT occurred_at, 'connection' AS kind, event_type AS event, reason,
           NULL::text AS ocpp_status, NULL::text AS error_code, NULL::text AS info,
           NULL::text AS vendor_error_code, 0 AS tiebreak
    FROM station_connection_events
    WHERE station_id = %(station_id)s
      AND occurred_at >= %(from_at)s AND occurred_at < %(to_at)s
    UNION ALL
    SELECT occurred_at, 'status', status, NULL, ocpp_status, ocpp_error_code, info,
           vendor_error_code, 1
    FROM connector_status_events
    WHERE station_id = %(station_id)s AND connector_number = 0
      AND occurred_at >= %(from_at)s AND occurred_at < %(to_at)s
) timeline
ORDER BY occurred_at, tiebreak, event
LIMIT %(limit)s OFFSET %(offset)s;

-- name: station_uptime
-- Seconds online in [from, to), from station_connection_events: the station is
-- online from a 'connected' event until the next event of any kind (the next
-- 'disconnected'/'timed_out', or a 'connected' of a replacing connection that
-- opens the following interval); the last interval ends at `to`, or now if
-- `to` is in the future. The state at `from` is the last event before it.
-- Intervals are clipped to the range; `observed_seconds` is the part of the
-- range that is not in the future.
WITH bounds AS (
    SELECT %(from_at)s::timestamptz AS lo,
           GREATEST(%(from_at)s::timestamptz, LEAST(%(to_at)s::timestamptz, now())) AS hi
), events AS (
    (SELECT occurred_at, event_type FROM station_connection_events
     WHERE station_id = %(station_id)s AND occurred_at < %(from_at)s
     ORDER BY occurred_at DESC, (event_type = 'connected') DESC
     LIMIT 1)
    UNION ALL
    SELECT occurred_at, event_type FROM station_connection_events, bounds
    WHERE station_id = %(station_id)s AND occurred_at >= bounds.lo AND occurred_at < bounds.hi
), timeline AS (
    -- at one instant a disconnect sorts before a connect (a reconnect)
    SELECT occurred_at, event_type,
           lead(occurred_at) OVER (ORDER BY occurred_at, event_type = 'connected') AS next_at
    FROM events
), online AS (
    SELECT GREATEST(t.occurred_at, b.lo) AS started_at,
           LEAST(COALESCE(t.next_at, b.hi), b.hi) AS ended_at
    FROM timeline t, bounds b
    WHERE t.event_type = 'connected'
)
SELECT b.lo AS from_at, b.hi AS observed_to,
       EXTRACT(EPOCH FROM b.hi - b.lo) AS observed_seconds,
       COALESCE((SELECT sum(EXTRACT(EPOCH FROM ended_at - started_at)) FROM online
                 WHERE ended_at > started_at), 0) AS online_seconds,
       ARRAY(SELECT started_at FROM online WHERE ended_at > started_at
             ORDER BY started_at) AS interval_starts,
       ARRAY(SELECT ended_at FROM online WHERE ended_at > started_at
             ORDER BY started_at) AS interval_ends
FROM bounds b;

-- name: station_faults
-- Connector errors (any connector, 0 = the station): an errorCode other than
-- NoError, or a Faulted status. Newest first.
SELECT occurred_at, connector_number, status, ocpp_status, ocpp_error_code, info, vendor_id,
       vendor_error_code, recorded_at
FROM connector_status_events
WHERE station_id = %(station_id)s
  AND (ocpp_error_code <> 'NoError' OR status = 'faulted')
  AND (%(connector)s::integer IS NULL OR connector_number = %(connector)s)
  AND occurred_at >= %(from_at)s AND occurred_at < %(to_at)s
ORDER BY occurred_at DESC, connector_number
LIMIT %(limit)s OFFSET %(offset)s;

-- ================================================================ the console's overview

-- name: network_overview
-- One account's network (or every account's: %(account_id)s NULL) at a glance, from
-- the current-state tables only: stations by status (inactive ones apart), connectors
-- by normalized status, active sessions, and the sessions started since %(from_at)s
-- with their energy (the stored figure once stopped; while active, the latest energy
-- register reading minus meterStart, as select_sessions reads it). Sessions are
-- picked by indexed conditions only (started_at; status = 'active'), never a scan of
-- all of them: 400 000 sessions of 200 stations, 2 000 today: 2.7 ms (EXPLAIN ANALYZE).
WITH scope AS (
    SELECT s.id, s.is_active, COALESCE(r.status, 'offline') AS status
    FROM stations s
    LEFT JOIN station_runtime_state r ON r.station_id = s.id
    WHERE (%(account_id)s::uuid IS NULL OR s.account_id = %(account_id)s)
), connector AS (
    SELECT COALESCE(cr.status, 'unknown') AS status
    FROM station_connectors c
    JOIN scope ON scope.id = c.station_id
    LEFT JOIN connector_runtime_state cr
           ON cr.station_id = c.station_id AND cr.connector_number = c.connector_number
    WHERE c.is_active AND scope.is_active
), session AS (
    SELECT cs.status, cs.started_at >= %(from_at)s AS started_in_range,
           CASE WHEN cs.energy_wh IS NOT NULL THEN cs.energy_wh
                ELSE (SELECT mv.value FROM meter_values mv
                      WHERE cs.status = 'active' AND mv.transaction_id = cs.transaction_id
                        AND mv.station_id = cs.station_id
                        AND mv.measurand = 'Energy.Active.Import.Register'
                        AND mv.phase IS NULL AND mv.unit = 'Wh' AND mv.value IS NOT NULL
                      ORDER BY mv.sampled_at DESC
                      LIMIT 1) - cs.meter_start_wh END AS energy_wh
    FROM scope
    JOIN charging_sessions cs ON cs.station_id = scope.id
    WHERE cs.started_at >= %(from_at)s OR cs.status = 'active'
)
SELECT (SELECT count(*) FROM scope) AS station_total,
       (SELECT count(*) FROM scope WHERE NOT is_active) AS stations_inactive,
       COALESCE((SELECT json_object_agg(status, n ORDER BY status)
                 FROM (SELECT status, count(*) AS n FROM scope WHERE is_active
                       GROUP BY status) g), '{}'::json) AS stations_by_status,
       (SELECT count(*) FROM connector) AS connector_total,
       COALESCE((SELECT json_object_agg(status, n ORDER BY status)
                 FROM (SELECT status, count(*) AS n FROM connector GROUP BY status) g),
                '{}'::json) AS connectors_by_status,
       (SELECT count(*) FROM session WHERE status = 'active') AS active_sessions,
       (SELECT count(*) FROM session WHERE started_in_range) AS sessions_started,
       (SELECT COALESCE(sum(energy_wh), 0) FROM session
        WHERE started_in_range) AS energy_wh,
       now() AS generated_at;
