"""Read API for dashboards and apps: availability, sessions, meter values, history.

Owns: the read-only endpoints of ADR 0002's query rules — live views from the
current-state tables, charts/uptime/faults from the history tables — with
their account scoping, paging and time-range validation, and the one session
write an operator needs (closing a stuck session). It writes nothing else,
and holds no SQL (db/reads.sql, db/queries.sql).
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, Final

from quart import Blueprint, Response

from ..db import SQL, Row
from .app import check_account, database, fail, invalid, json_response, principal, scoped_account
from .locations import ACCOUNT_FILTER, load_location
from .spec import (
    Boolean,
    Choice,
    Field,
    Integer,
    Json,
    List,
    Names,
    Number,
    Obj,
    Page,
    Text,
    Timestamp,
    Uuid,
    Values,
    body,
    operation,
    page,
    page_query,
    parse_uuid,
    query,
)
from .stations import CONNECTOR_STATUSES, load_station

blueprint = Blueprint("reads", __name__)

MAX_SPAN: Final = dt.timedelta(days=366)
DAY: Final = dt.timedelta(days=1)
MAX_BUCKET_SECONDS: Final = 86_400
MAX_METER_ROWS: Final = 10_000
DEFAULT_METER_ROWS: Final = 1_000
MAX_CONNECTOR: Final = 1_000
MEASURAND_PATTERN: Final = r"[A-Za-z][A-Za-z0-9._-]{0,63}"
MAX_REASON: Final = 500
_CLOSED_BY: Final = {"charger": "charger", "new_session": "newSession", "operator": "operator"}


# ---------------------------------------------------------------- parameters

def time_query(default: str) -> dict[str, Field]:
    return {"from": Timestamp(f"Start of the range, inclusive; with a time zone. {default}"),
            "to": Timestamp("End of the range, exclusive; with a time zone. At most 366 "
                            "days after `from`.")}


def time_range(q: Values, default_span: dt.timedelta | None
               ) -> tuple[dt.datetime | None, dt.datetime | None]:
    """`from`/`to` checked: from < to, at most MAX_SPAN apart.

    With a default span, a missing `to` is now and a missing `from` is `to`
    minus the span; without one, a missing bound stays open.
    """
    start, end = q["from"], q["to"]
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


RANGE: Final = {"from": Timestamp(null=True, doc="The range asked for, or null when open."),
                "to": Timestamp(null=True)}


# ---------------------------------------------------------------- availability (current state)

AVAILABLE_CONNECTOR = Obj("AvailabilityConnector", {
    "connectorNumber": Integer(), "connectorType": Text(null=True),
    "maxPowerKw": Number(null=True), "isActive": Boolean(),
    "status": Choice(CONNECTOR_STATUSES, "Normalized; `unknown` = never reported."),
    "ocppStatus": Text(null=True), "errorCode": Text(null=True),
    "statusAt": Timestamp(null=True),
    "availableNow": Boolean("Available, and its station online, both active.")})
AVAILABILITY = Obj("StationAvailability", {
    "stationId": Uuid(source="id"), "stationCode": Text(), "accountId": Uuid(),
    "locationId": Uuid(), "isActive": Boolean(),
    "status": Choice(("offline", "online", "faulted", "unavailable"), source="station_status"),
    "online": Boolean(source=lambda r: r["station_status"] != "offline"),
    "lastSeenAt": Timestamp(null=True),
    "connectors": List(AVAILABLE_CONNECTOR)})
COUNTS = Obj("AvailabilityCounts", {
    "stations": Integer(source="station_total"), "stationsOnline": Integer(),
    "connectors": Integer(source="connector_total"), "availableNow": Integer(),
    "byStatus": Json("Connectors by normalized status.")},
    "Totals over the whole scope, whatever the page.")


@blueprint.get("/api/availability")
@operation("Connector availability of a station or a location", query={
    "stationId": Uuid("This station (or `locationId`)."),
    "locationId": Uuid("Every station of this location (or `stationId`)."), **page_query()},
    responses={200: Page(AVAILABILITY, {"counts": COUNTS})})
async def availability() -> Response:
    """For maps and dashboards, from the current-state tables."""
    q = query()
    station_id, location_id = q["stationId"], q["locationId"]
    if station_id is None and location_id is None:
        invalid("locationId", "locationId or stationId is required")
    if station_id is not None:
        await load_station(station_id)
    if location_id is not None:
        await load_location(location_id)
    rows = await database().fetch_all(SQL.availability, {
        "station_id": station_id, "location_id": location_id, "limit": q["limit"],
        "offset": q["offset"]})
    stations = [AVAILABILITY.shape(r) for r in rows if r["id"] is not None]
    result = page(stations, q["limit"], q["offset"])
    result["counts"] = COUNTS.shape(rows[0])
    return json_response(result)


# ---------------------------------------------------------------- sessions

SESSION = Obj("Session", {
    "id": Uuid(), "transactionId": Integer("The OCPP transactionId."), "stationId": Uuid(),
    "stationCode": Text(), "accountId": Uuid(), "connectorNumber": Integer(),
    "idTag": Text(),
    "idTagStatus": Choice(("Accepted", "Blocked", "Expired", "Invalid", "ConcurrentTx"),
                          "The idTagInfo status the CSMS answered."),
    "status": Choice(("active", "completed")),
    "startedAt": Timestamp(), "stoppedAt": Timestamp(null=True),
    "meterStartWh": Integer(), "meterStopWh": Integer(null=True),
    "energyWh": Integer("Stopped: the billing figure; active: the latest energy register "
                        "reading minus meterStart, or null.", null=True),
    "energySource": Choice(("meterStop", "meterValues"), null=True),
    "durationSeconds": Number(null=True),
    "stopReason": Text(null=True), "stopIdTag": Text(null=True),
    "billingStatus": Choice(("open", "pending", "billed", "not_billable", "review")),
    "reservationId": Integer(null=True),
    # who closed it: charger (StopTransaction), newSession (its stop was lost and a new
    # session started on the connector) or operator; the last two have billingStatus
    # "review" and say why in reviewReason
    "closedBy": Choice(("charger", "newSession", "operator"), null=True,
                       source=lambda r: _CLOSED_BY.get(r["stop_source"])),
    "reviewReason": Text(null=True),
    "createdAt": Timestamp(), "updatedAt": Timestamp()},
    "A charging session (current state, ADR 0002).")
CLOSE = Obj("SessionClose", {
    "reason": Text("Why the session is closed (audited).", required=True, max_len=MAX_REASON)})


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
@operation("List charging sessions, newest first", query={
    **page_query(), "stationId": Uuid("Only this station's."),
    "idTag": Text("Only this id tag's, in any letter case.", max_len=20),
    **time_query("On `startedAt`; open when absent."), "accountId": ACCOUNT_FILTER,
    "transactionId": Integer("The OCPP transactionId.", low=0, high=2_147_483_647),
    "active": Boolean("true: only active sessions; false: only finished ones.")},
    responses={200: Page(SESSION)})
async def list_sessions() -> Response:
    q = query()
    if q["stationId"] is not None:
        await load_station(q["stationId"])
    start, end = time_range(q, None)
    rows = await database().fetch_all(SQL.select_sessions, session_filter(
        account_id=await scoped_account(q["accountId"]), station_id=q["stationId"],
        transaction_id=q["transactionId"], id_tag=q["idTag"], active=q["active"],
        from_at=start, to_at=end, limit=q["limit"], offset=q["offset"]))
    return json_response(page([SESSION.shape(r) for r in rows], q["limit"], q["offset"]))


@blueprint.get("/api/sessions/<session_id>")
@operation("Get a charging session", responses={200: SESSION})
async def get_session(session_id: str) -> Response:
    return json_response(SESSION.shape(await load_session(parse_uuid("id", session_id))))


@blueprint.post("/api/sessions/<session_id>/close")
@operation("Close a stuck session (operator)", body=CLOSE, responses={200: SESSION},
           errors={409: "The session is not active."},
           description="Its StopTransaction never came: closed now, energy from its last "
                       "meter reading, for billing review, audited. The charger is not told; "
                       "a StopTransaction arriving later still corrects the figures.")
async def close_session(session_id: str) -> Response:
    session = await load_session(parse_uuid("id", session_id))
    reason = (await body())["reason"]
    if session["status"] != "active":
        fail(409, "session_closed", "the session is already closed")
    closed = await database().fetch_one(SQL.close_session, {
        "id": session["id"], "reason": reason.strip(), "requested_by": principal().name})
    if closed is None:  # stopped meanwhile
        fail(409, "session_closed", "the session is already closed")
    return json_response(SESSION.shape(await load_session(session["id"])))


@blueprint.get("/api/stations/<station_id>/active-sessions")
@operation("A station's active sessions", query=page_query(), responses={200: Page(SESSION)},
           description="charging_sessions is current state (ADR 0002).")
async def active_sessions(station_id: str) -> Response:
    station = await load_station(parse_uuid("id", station_id))
    q = query()
    rows = await database().fetch_all(SQL.select_sessions, session_filter(
        station_id=station["id"], active=True, limit=q["limit"], offset=q["offset"]))
    return json_response(page([SESSION.shape(r) for r in rows], q["limit"], q["offset"]))


# ---------------------------------------------------------------- meter values (history)

RAW_SAMPLE = Obj("MeterValue", {
    "sampledAt": Timestamp(), "connectorNumber": Integer("0 = the main meter."),
    "transactionId": Integer(null=True), "measurand": Text(), "phase": Text(null=True),
    "location": Text(), "context": Text(), "unit": Text("Base unit (Wh, W, varh, …)."),
    "value": Number("In `unit`; null when the reading is not a number.", null=True),
    "format": Text(), "rawValue": Text("Kept for SignedData and non-numbers.", null=True)},
    "A raw sample (no `bucket`).")
BUCKET = Obj("MeterValueBucket", {
    "bucket": Timestamp("Start of the bucket (edges as TimescaleDB's time_bucket)."),
    "connectorNumber": Integer(), "measurand": Text(), "phase": Text(null=True),
    "location": Text(), "unit": Text(), "count": Integer(source="samples"),
    "min": Number(source="min_value"), "max": Number(source="max_value"),
    "avg": Number(source="avg_value"), "last": Number(source="last_value"),
    "lastAt": Timestamp()},
    "Numeric samples of one bucket (with `bucket`).")
METER_PAGE = Page((RAW_SAMPLE, BUCKET), {"bucketSeconds": Integer(null=True), **RANGE},
                  name="MeterValuePage")
METER_QUERY: Final = {
    "measurand": Names(MEASURAND_PATTERN,
                       "must be OCPP measurand names (e.g. Power.Active.Import)",
                       "OCPP measurands, repeated or comma-separated; absent = all."),
    "bucket": Integer("Seconds per bucket: count/min/max/avg/last per bucket instead of raw "
                      "rows.", low=1, high=MAX_BUCKET_SECONDS),
    **page_query(high=MAX_METER_ROWS, default=DEFAULT_METER_ROWS)}


async def meter_values(q: Values, station_id: uuid.UUID, *, transaction_id: int | None,
                       connector: int | None, start: dt.datetime | None,
                       end: dt.datetime | None) -> Response:
    bucket, limit, offset = q["bucket"], q["limit"], q["offset"]
    params = {"station_id": station_id, "transaction_id": transaction_id,
              "connector": connector, "measurands": q["measurand"],
              "from_at": start, "to_at": end, "limit": limit, "offset": offset}
    db = database()
    if bucket is None:
        rows = await db.fetch_all(SQL.meter_values_raw, params)
        items = [RAW_SAMPLE.shape(r) for r in rows]
    else:
        rows = await db.fetch_all(SQL.meter_values_bucketed, {**params, "bucket": bucket})
        items = [BUCKET.shape(r) for r in rows]
    result = page(items, limit, offset)
    result.update({"bucketSeconds": bucket, "from": start, "to": end})
    return json_response(result)


@blueprint.get("/api/sessions/<session_id>/meter-values")
@operation("A session's meter values", query={**time_query("Open when absent."),
                                              **METER_QUERY},
           responses={200: METER_PAGE}, description="Oldest first.")
async def session_meter_values(session_id: str) -> Response:
    session = await load_session(parse_uuid("id", session_id))
    q = query()
    start, end = time_range(q, None)
    return await meter_values(q, session["station_id"],
                              transaction_id=session["transaction_id"], connector=None,
                              start=start, end=end)


CONNECTOR_FILTER: Final = Integer("Only this connector (0 = the station / main meter).",
                                  low=0, high=MAX_CONNECTOR)


@blueprint.get("/api/stations/<station_id>/meter-values")
@operation("A station's meter values", query={
    **time_query("Default: `to` minus 24 hours."), "connector": CONNECTOR_FILTER,
    **METER_QUERY}, responses={200: METER_PAGE}, description="Oldest first.")
async def station_meter_values(station_id: str) -> Response:
    station = await load_station(parse_uuid("id", station_id))
    q = query()
    start, end = time_range(q, DAY)
    return await meter_values(q, station["id"], transaction_id=None, connector=q["connector"],
                              start=start, end=end)


# ---------------------------------------------------------------- status history, uptime, faults

STATUS_EVENT = Obj("StatusEvent", {
    "occurredAt": Timestamp(), "kind": Choice(("connection", "status")),
    "event": Text("connected / disconnected / timed_out, or the normalized status."),
    "reason": Text(null=True), "ocppStatus": Text(null=True), "errorCode": Text(null=True),
    "info": Text(null=True), "vendorErrorCode": Text(null=True)})
FAULT = Obj("Fault", {
    "occurredAt": Timestamp(), "connectorNumber": Integer("0 = the station."),
    "status": Text(), "ocppStatus": Text(), "errorCode": Text(source="ocpp_error_code"),
    "info": Text(null=True), "vendorId": Text(null=True), "vendorErrorCode": Text(null=True),
    "recordedAt": Timestamp()})
UPTIME = Obj("Uptime", {
    "stationId": Uuid(), "from": Timestamp(), "to": Timestamp(),
    "observedTo": Timestamp("min(to, now): the future is not observed."),
    "observedSeconds": Number(), "onlineSeconds": Number(), "offlineSeconds": Number(),
    "ratio": Number("onlineSeconds / observedSeconds; null when nothing is observed.",
                    null=True),
    "intervals": List(Obj("UptimeInterval", {"from": Timestamp(), "to": Timestamp()}),
                      "The online intervals, clipped to the range.")})
SPAN: Final = {"from": Timestamp(), "to": Timestamp()}


@blueprint.get("/api/stations/<station_id>/status-history")
@operation("Connection events and station-level status, oldest first",
           query={**time_query("Default: `to` minus 24 hours."), **page_query()},
           responses={200: Page(STATUS_EVENT, SPAN)})
async def status_history(station_id: str) -> Response:
    station = await load_station(parse_uuid("id", station_id))
    q = query()
    start, end = time_range(q, DAY)
    rows = await database().fetch_all(SQL.station_status_history, {
        "station_id": station["id"], "from_at": start, "to_at": end, "limit": q["limit"],
        "offset": q["offset"]})
    result = page([STATUS_EVENT.shape(r) for r in rows], q["limit"], q["offset"])
    result.update({"from": start, "to": end})
    return json_response(result)


@blueprint.get("/api/stations/<station_id>/uptime")
@operation("Online time in a range", query=time_query("Default: `to` minus 24 hours."),
           responses={200: UPTIME})
async def uptime(station_id: str) -> Response:
    station = await load_station(parse_uuid("id", station_id))
    start, end = time_range(query(), DAY)
    row = await database().fetch_one(SQL.station_uptime, {
        "station_id": station["id"], "from_at": start, "to_at": end})
    assert row is not None
    observed, online = row["observed_seconds"], row["online_seconds"]
    return json_response(UPTIME.shape({
        **row, "station_id": station["id"], "from": start, "to": end,
        "offline_seconds": observed - online,
        "ratio": float(online / observed) if observed > 0 else None,
        "intervals": [{"from": a, "to": b} for a, b in zip(
            row["interval_starts"], row["interval_ends"], strict=True)]}))


@blueprint.get("/api/stations/<station_id>/faults")
@operation("Connector errors and Faulted statuses, newest first", query={
    **time_query("Default: `to` minus 30 days."), **page_query(),
    "connector": CONNECTOR_FILTER}, responses={200: Page(FAULT, SPAN)})
async def faults(station_id: str) -> Response:
    station = await load_station(parse_uuid("id", station_id))
    q = query()
    start, end = time_range(q, dt.timedelta(days=30))
    rows = await database().fetch_all(SQL.station_faults, {
        "station_id": station["id"], "from_at": start, "to_at": end,
        "connector": q["connector"], "limit": q["limit"], "offset": q["offset"]})
    result = page([FAULT.shape(r) for r in rows], q["limit"], q["offset"])
    result.update({"from": start, "to": end})
    return json_response(result)


# ---------------------------------------------------------------- the network at a glance

OVERVIEW = Obj("Overview", {
    "stations": Obj(None, {
        "total": Integer("Every station in scope, active or not.", source="station_total"),
        "inactive": Integer("Deactivated: refused at their next connection.",
                            source="stations_inactive"),
        "byStatus": Json("Active stations by runtime status (offline, online, faulted, "
                         "unavailable); absent statuses are 0.", source="stations_by_status")}),
    "connectors": Obj(None, {
        "total": Integer("Active connectors of active stations.", source="connector_total"),
        "byStatus": Json("Those connectors by normalized status (`unknown`: never "
                         "reported).", source="connectors_by_status")}),
    "sessions": Obj(None, {
        "active": Integer("Sessions charging now.", source="active_sessions"),
        "startedSince": Integer("Sessions started since `from`.", source="sessions_started"),
        "energyWh": Integer("Their energy: the billing figure once stopped, the latest "
                            "register reading minus meterStart while active.")}),
    "from": Timestamp("Sessions count from here (default: today 00:00 UTC).",
                      source="from_at"),
    "generatedAt": Timestamp("When the database answered.")},
    "An account's network (the admin: every account's, or `accountId`'s) at a glance.")


@blueprint.get("/api/overview")
@operation("The network at a glance: stations, connectors, sessions, energy", query={
    "accountId": ACCOUNT_FILTER,
    "from": Timestamp("Count sessions started from here, e.g. the operator's local "
                      "midnight; with a time zone. Default: today 00:00 UTC; at most 366 "
                      "days ago.")},
    responses={200: OVERVIEW},
    description="From the current-state tables only (ADR 0002), for a dashboard that "
                "polls it every few seconds.")
async def overview() -> Response:
    q = query()
    now = dt.datetime.now(dt.UTC)
    start = q["from"] or now.replace(hour=0, minute=0, second=0, microsecond=0)
    if start > now:
        invalid("from", "must not be in the future")
    if now - start > MAX_SPAN:
        invalid("from", f"may be at most {MAX_SPAN.days} days ago")
    row = await database().fetch_one(SQL.network_overview, {
        "account_id": await scoped_account(q["accountId"]), "from_at": start})
    assert row is not None
    return json_response(OVERVIEW.shape({**row, "from_at": start}))
