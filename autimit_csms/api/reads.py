"""Read API for dashboards and apps: availability, sessions, meter values, history.

Owns: the read-only endpoints of ADR 0002's query rules — live views from the
current-state tables, charts/uptime/faults from the history tables — with
their account scoping, paging and time-range validation, and the one session
write an operator needs (closing a stuck session). It writes nothing else,
and holds no SQL (db/reads.sql, db/queries.sql).
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from typing import Any, Final

from quart import Blueprint, Response, request

from ..db import SQL, Row
from .app import (
    check_account,
    database,
    fail,
    invalid,
    json_object,
    json_response,
    page,
    page_args,
    parse_timestamp,
    parse_uuid,
    principal,
    query_int,
    query_uuid,
    scoped_account,
    unstorable,
)
from .locations import load_location
from .stations import load_station

blueprint = Blueprint("reads", __name__)

MAX_SPAN: Final = dt.timedelta(days=366)
DAY: Final = dt.timedelta(days=1)
MAX_BUCKET_SECONDS: Final = 86_400
MAX_METER_ROWS: Final = 10_000
DEFAULT_METER_ROWS: Final = 1_000
MAX_CONNECTOR: Final = 1_000
MEASURAND_PATTERN: Final = re.compile(r"[A-Za-z][A-Za-z0-9._-]{0,63}")
# A '+' of an offset left unencoded in a query string arrives as a space.
_SPACED_OFFSET: Final = re.compile(r"(.*T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?) (\d{2}:?\d{2})")


# ---------------------------------------------------------------- parameters

def query_time(name: str) -> dt.datetime | None:
    raw = request.args.get(name)
    if raw is None:
        return None
    spaced = _SPACED_OFFSET.fullmatch(raw)
    return parse_timestamp(name, f"{spaced[1]}+{spaced[2]}" if spaced else raw)


def time_range(default_span: dt.timedelta | None
               ) -> tuple[dt.datetime | None, dt.datetime | None]:
    """`from`/`to` checked: with a time zone, from < to, at most MAX_SPAN apart.

    With a default span, a missing `to` is now and a missing `from` is `to`
    minus the span; without one, a missing bound stays open.
    """
    start, end = query_time("from"), query_time("to")
    given_from, given_to = start is not None, end is not None
    if default_span is not None:
        end = end or dt.datetime.now(dt.UTC)
        start = start or end - default_span
    if start is not None and end is not None:
        if start >= end:
            invalid("to" if given_to else "from", "must be after from" if given_to
                    else "must be before to (default: now)")
        if end - start > MAX_SPAN:
            invalid("from" if given_from else "to",
                    f"the range may span at most {MAX_SPAN.days} days")
    return start, end


def query_bool(name: str) -> bool | None:
    raw = request.args.get(name)
    if raw is None:
        return None
    if raw not in ("true", "false"):
        invalid(name, "must be true or false")
    return raw == "true"


def query_measurands() -> list[str] | None:
    """`measurand` repeated and/or comma-separated; absent = all."""
    names = [name.strip() for raw in request.args.getlist("measurand")
             for name in raw.split(",")]
    if not names:
        return None
    for name in names:
        if not MEASURAND_PATTERN.fullmatch(name):
            invalid("measurand", "must be OCPP measurand names (e.g. Power.Active.Import)")
    return names


def optional_int(name: str, *, low: int, high: int) -> int | None:
    if name not in request.args:
        return None
    return query_int(name, default=low, low=low, high=high)


# ---------------------------------------------------------------- availability (current state)

@blueprint.get("/api/availability")
async def availability() -> Response:
    """Connector availability of a station or a location, for maps and dashboards."""
    station_id, location_id = query_uuid("stationId"), query_uuid("locationId")
    if station_id is None and location_id is None:
        invalid("locationId", "locationId or stationId is required")
    db = database()
    if station_id is not None:
        await load_station(station_id)
    if location_id is not None:
        await load_location(location_id)
    limit, offset = page_args()
    rows = await db.fetch_all(SQL.availability, {
        "station_id": station_id, "location_id": location_id, "limit": limit,
        "offset": offset})
    totals = rows[0]
    stations = [{
        "stationId": r["id"], "stationCode": r["station_code"], "accountId": r["account_id"],
        "locationId": r["location_id"], "isActive": r["is_active"],
        "status": r["station_status"], "online": r["station_status"] != "offline",
        "lastSeenAt": r["last_seen_at"], "connectors": r["connectors"],
    } for r in rows if r["id"] is not None]
    body = page(stations, limit, offset)
    body["counts"] = {
        "stations": totals["station_total"], "stationsOnline": totals["stations_online"],
        "connectors": totals["connector_total"], "availableNow": totals["available_now"],
        "byStatus": totals["by_status"],
    }
    return json_response(body)


# ---------------------------------------------------------------- sessions

def present_session(row: Row) -> dict[str, Any]:
    return {
        "id": row["id"], "transactionId": row["transaction_id"],
        "stationId": row["station_id"], "stationCode": row["station_code"],
        "accountId": row["account_id"], "connectorNumber": row["connector_number"],
        "idTag": row["id_tag"], "idTagStatus": row["id_tag_status"],
        "status": row["status"], "startedAt": row["started_at"],
        "stoppedAt": row["stopped_at"], "meterStartWh": row["meter_start_wh"],
        "meterStopWh": row["meter_stop_wh"], "energyWh": row["energy_wh"],
        "energySource": row["energy_source"], "durationSeconds": row["duration_seconds"],
        "stopReason": row["stop_reason"], "stopIdTag": row["stop_id_tag"],
        "billingStatus": row["billing_status"], "reservationId": row["reservation_id"],
        # who closed it: charger (StopTransaction), newSession (its stop was lost
        # and a new session started on the connector) or operator; the last two
        # have billingStatus "review" and say why in reviewReason
        "closedBy": _CLOSED_BY.get(row["stop_source"]), "reviewReason": row["review_reason"],
        "createdAt": row["created_at"], "updatedAt": row["updated_at"],
    }


_CLOSED_BY: Final = {"charger": "charger", "new_session": "newSession", "operator": "operator"}
MAX_REASON: Final = 500


def session_filter(**given: Any) -> dict[str, Any]:
    params: dict[str, Any] = {
        "id": None, "account_id": None, "station_id": None, "transaction_id": None,
        "id_tag": None, "active": None, "from_at": None, "to_at": None, "limit": 1,
        "offset": 0}
    params.update(given)
    return params


async def load_session(session_id: uuid.UUID) -> Row:
    """The session view, 404 if unknown, 403 if another account's."""
    row = await database().fetch_one(SQL.select_sessions, session_filter(id=session_id))
    if row is None:
        fail(404, "not_found", "no such session")
    check_account(row["account_id"])
    return row


@blueprint.get("/api/sessions")
async def list_sessions() -> Response:
    limit, offset = page_args()
    station_id = query_uuid("stationId")
    if station_id is not None:
        await load_station(station_id)
    id_tag = request.args.get("idTag")
    if id_tag is not None and not 1 <= len(id_tag) <= 20:
        invalid("idTag", "must be 1 to 20 characters")
    start, end = time_range(None)
    rows = await database().fetch_all(SQL.select_sessions, session_filter(
        account_id=await scoped_account(query_uuid("accountId")), station_id=station_id,
        transaction_id=optional_int("transactionId", low=0, high=2_147_483_647),
        id_tag=id_tag, active=query_bool("active"), from_at=start, to_at=end,
        limit=limit, offset=offset))
    return json_response(page([present_session(r) for r in rows], limit, offset))


@blueprint.get("/api/sessions/<session_id>")
async def get_session(session_id: str) -> Response:
    return json_response(present_session(await load_session(parse_uuid("id", session_id))))


@blueprint.post("/api/sessions/<session_id>/close")
async def close_session(session_id: str) -> Response:
    """An operator closes a stuck session (its StopTransaction never came): now,
    energy from its last meter reading, for billing review, audited. The charger
    is not told; a StopTransaction arriving later still corrects the figures."""
    session = await load_session(parse_uuid("id", session_id))
    body = await json_object()
    reason = body.get("reason")
    if not isinstance(reason, str) or not reason.strip():
        invalid("reason", "is required: why the session is closed")
    if unstorable(reason, "reason"):
        invalid("reason", "must not contain NUL characters or lone surrogates")
    if len(reason) > MAX_REASON:
        invalid("reason", f"must be at most {MAX_REASON} characters")
    if session["status"] != "active":
        fail(409, "session_closed", "the session is already closed")
    closed = await database().fetch_one(SQL.close_session, {
        "id": session["id"], "reason": reason.strip(), "requested_by": principal().name})
    if closed is None:  # stopped meanwhile
        fail(409, "session_closed", "the session is already closed")
    return json_response(present_session(await load_session(session["id"])))


@blueprint.get("/api/stations/<station_id>/active-sessions")
async def active_sessions(station_id: str) -> Response:
    """Active session lookup: charging_sessions is current state (ADR 0002)."""
    station = await load_station(parse_uuid("id", station_id))
    limit, offset = page_args()
    rows = await database().fetch_all(SQL.select_sessions, session_filter(
        station_id=station["id"], active=True, limit=limit, offset=offset))
    return json_response(page([present_session(r) for r in rows], limit, offset))


# ---------------------------------------------------------------- meter values (history)

async def meter_values(station_id: uuid.UUID, *, transaction_id: int | None,
                       connector: int | None, start: dt.datetime | None,
                       end: dt.datetime | None) -> Response:
    bucket = optional_int("bucket", low=1, high=MAX_BUCKET_SECONDS)
    limit = query_int("limit", default=DEFAULT_METER_ROWS, low=1, high=MAX_METER_ROWS)
    offset = query_int("offset", default=0, low=0, high=10_000_000)
    params = {"station_id": station_id, "transaction_id": transaction_id,
              "connector": connector, "measurands": query_measurands(),
              "from_at": start, "to_at": end, "limit": limit, "offset": offset}
    db = database()
    if bucket is None:
        rows = await db.fetch_all(SQL.meter_values_raw, params)
        items = [{
            "sampledAt": r["sampled_at"], "connectorNumber": r["connector_number"],
            "transactionId": r["transaction_id"], "measurand": r["measurand"],
            "phase": r["phase"], "location": r["location"], "context": r["context"],
            "unit": r["unit"], "value": r["value"], "format": r["format"],
            "rawValue": r["raw_value"],
        } for r in rows]
    else:
        rows = await db.fetch_all(SQL.meter_values_bucketed, {**params, "bucket": bucket})
        items = [{
            "bucket": r["bucket"], "connectorNumber": r["connector_number"],
            "measurand": r["measurand"], "phase": r["phase"], "location": r["location"],
            "unit": r["unit"], "count": r["samples"], "min": r["min_value"],
            "max": r["max_value"], "avg": r["avg_value"], "last": r["last_value"],
            "lastAt": r["last_at"],
        } for r in rows]
    body = page(items, limit, offset)
    body.update({"bucketSeconds": bucket, "from": start, "to": end})
    return json_response(body)


@blueprint.get("/api/sessions/<session_id>/meter-values")
async def session_meter_values(session_id: str) -> Response:
    session = await load_session(parse_uuid("id", session_id))
    start, end = time_range(None)
    return await meter_values(session["station_id"], transaction_id=session["transaction_id"],
                              connector=None, start=start, end=end)


@blueprint.get("/api/stations/<station_id>/meter-values")
async def station_meter_values(station_id: str) -> Response:
    station = await load_station(parse_uuid("id", station_id))
    start, end = time_range(DAY)
    return await meter_values(station["id"], transaction_id=None,
                              connector=optional_int("connector", low=0, high=MAX_CONNECTOR),
                              start=start, end=end)


# ---------------------------------------------------------------- status history, uptime, faults

@blueprint.get("/api/stations/<station_id>/status-history")
async def status_history(station_id: str) -> Response:
    station = await load_station(parse_uuid("id", station_id))
    start, end = time_range(DAY)
    limit, offset = page_args()
    rows = await database().fetch_all(SQL.station_status_history, {
        "station_id": station["id"], "from_at": start, "to_at": end, "limit": limit,
        "offset": offset})
    items = [{
        "occurredAt": r["occurred_at"], "kind": r["kind"], "event": r["event"],
        "reason": r["reason"], "ocppStatus": r["ocpp_status"], "errorCode": r["error_code"],
        "info": r["info"], "vendorErrorCode": r["vendor_error_code"],
    } for r in rows]
    body = page(items, limit, offset)
    body.update({"from": start, "to": end})
    return json_response(body)


@blueprint.get("/api/stations/<station_id>/uptime")
async def uptime(station_id: str) -> Response:
    station = await load_station(parse_uuid("id", station_id))
    start, end = time_range(DAY)
    row = await database().fetch_one(SQL.station_uptime, {
        "station_id": station["id"], "from_at": start, "to_at": end})
    assert row is not None
    observed, online = row["observed_seconds"], row["online_seconds"]
    return json_response({
        "stationId": station["id"], "from": start, "to": end,
        "observedTo": row["observed_to"], "observedSeconds": observed,
        "onlineSeconds": online, "offlineSeconds": observed - online,
        "ratio": float(online / observed) if observed > 0 else None,
        "intervals": [{"from": a, "to": b} for a, b in zip(
            row["interval_starts"], row["interval_ends"], strict=True)],
    })


@blueprint.get("/api/stations/<station_id>/faults")
async def faults(station_id: str) -> Response:
    station = await load_station(parse_uuid("id", station_id))
    start, end = time_range(dt.timedelta(days=30))
    limit, offset = page_args()
    rows = await database().fetch_all(SQL.station_faults, {
        "station_id": station["id"], "from_at": start, "to_at": end,
        "connector": optional_int("connector", low=0, high=MAX_CONNECTOR),
        "limit": limit, "offset": offset})
    items = [{
        "occurredAt": r["occurred_at"], "connectorNumber": r["connector_number"],
        "status": r["status"], "ocppStatus": r["ocpp_status"],
        "errorCode": r["ocpp_error_code"], "info": r["info"], "vendorId": r["vendor_id"],
        "vendorErrorCode": r["vendor_error_code"], "recordedAt": r["recorded_at"],
    } for r in rows]
    body = page(items, limit, offset)
    body.update({"from": start, "to": end})
    return json_response(body)
