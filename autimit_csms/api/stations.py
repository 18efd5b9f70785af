"""Stations: provisioning (ADR 0001) and the station views with runtime state."""

from __future__ import annotations

import logging
import uuid
from typing import Any
from urllib.parse import quote

from quart import Blueprint, Response

from ..credentials import hash_secret, new_station_secret
from ..db import SQL, ConstraintViolation, Row
from .app import (
    check_account,
    context,
    database,
    fail,
    invalid,
    json_response,
    principal,
    scoped_account,
)
from .locations import ACCOUNT_FILTER, load_location
from .spec import (
    Boolean,
    Choice,
    Integer,
    List,
    Number,
    Obj,
    Owner,
    Page,
    Text,
    Timestamp,
    Uuid,
    body,
    operation,
    page,
    page_query,
    parse_uuid,
    query,
)

blueprint = Blueprint("stations", __name__)
log = logging.getLogger(__name__)

STATION_CODE_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]{0,47}"  # as schema.sql checks
MAX_CONNECTORS = 64
MAX_TRACE_MINUTES = 24 * 60
DEFAULT_TRACE_MINUTES = 60
CONNECTOR_STATUSES = ("available", "occupied", "charging", "suspended", "faulted",
                      "unavailable", "reserved", "unknown")


def connection_url(station_code: str) -> str:
    return f"{context()['public_ocpp_url']}/{quote(station_code, safe='')}"


def _url(row: Row) -> str:
    return connection_url(row["station_code"])


STATION_CODE = Text("The charger's OCPP identity: letters, digits, `.`, `_`, `-`; unique in "
                    "any letter case.", required=True, max_len=48, pattern=STATION_CODE_PATTERN)
OCPP_URL = Text("Where the charger connects (wss://…/ocpp/1.6/{stationCode}).", source=_url)
CONNECTOR = Obj("Connector", {
    "connectorNumber": Integer(), "connectorType": Text(null=True),
    "maxPowerKw": Number(null=True), "isActive": Boolean(),
    "discovered": Boolean("Reported by the charger without having been provisioned."),
    "status": Choice(CONNECTOR_STATUSES, "Normalized; `unknown` = nothing reported yet.",
                     null=True),
    "ocppStatus": Text("As the charger reported it (OCPP 1.6 ChargePointStatus).", null=True),
    "errorCode": Text("OCPP 1.6 ChargePointErrorCode.", null=True),
    "statusAt": Timestamp(null=True)})
RUNTIME = Obj("StationRuntime", {
    "status": Choice(("offline", "online", "faulted", "unavailable")),
    "registrationStatus": Choice(("new", "accepted", "pending", "rejected"),
                                 "The BootNotification answer; `new` = never booted."),
    "lastHeartbeatAt": Timestamp(null=True), "bootedAt": Timestamp(null=True),
    "firmwareVersion": Text(null=True), "lastErrorCode": Text(null=True),
    "connectedAt": Timestamp(null=True), "disconnectedAt": Timestamp(null=True),
    "lastSeenAt": Timestamp(null=True),
    "updatedAt": Timestamp(source="runtime_updated_at")},
    "What the CSMS last saw of the charger (current state, ADR 0002).")
TRACE_UNTIL = Timestamp("While set, every OCPP frame of this station is logged at INFO "
                        "(id tags and keys redacted) by the process holding its connection.",
                        null=True, source="ocpp_trace_until")
STATION = Obj("Station", {
    "id": Uuid(), "accountId": Uuid(), "locationId": Uuid(), "stationCode": Text(),
    "ocppConnectionUrl": OCPP_URL,
    "serialNumber": Text(null=True), "manufacturer": Text(null=True), "model": Text(null=True),
    "connectorCount": Integer(), "isActive": Boolean(),
    "ocppRelaxedValidation": Boolean("Out-of-enum values stored with a warning, not refused.",
                                     source="ocpp_relaxed"),
    "ocppTraceUntil": TRACE_UNTIL,
    "createdAt": Timestamp(), "updatedAt": Timestamp(),
    "runtime": RUNTIME,
    "connectors": List(CONNECTOR, source="connector_list")},
    "A station with its connectors and runtime state.")
NEW_STATION = Obj("StationCreate", {
    # checked in this order, so the first problem is the one reported
    "accountId": Owner(),
    "stationCode": STATION_CODE,
    "locationId": Uuid("A location of the same account.", required=True),
    "serialNumber": Text(max_len=64), "manufacturer": Text(max_len=64),
    "model": Text(max_len=64),
    "connectors": Integer("How many connectors (numbered 1..N).", required=True, low=1,
                          high=MAX_CONNECTORS)},
    "ADR 0001's provisioning request.")
PROVISIONING = Obj("Provisioning", {
    "stationCode": Text(), "ocppConnectionUrl": OCPP_URL,
    "stationSecret": Text("The charger's Basic Auth password (AuthorizationKey). Shown only "
                          "here, once; only its bcrypt hash is stored.")})
PROVISIONED = Obj("StationProvisioned", {
    "station": Obj("ProvisionedStation", {"id": Uuid(), "stationCode": Text(),
                                          "ocppConnectionUrl": OCPP_URL}),
    "provisioning": PROVISIONING},
    "ADR 0001's provisioning response, exactly.")
STATION_PATCH = Obj("StationUpdate", {
    "isActive": Boolean("false: refused at its next connection."),
    "ocppRelaxedValidation": Boolean("Tolerate known firmware quirks (out-of-enum values)."),
    "serialNumber": Text(max_len=64), "manufacturer": Text(max_len=64),
    "model": Text(max_len=64)},
    "Absent or null members are left as they are.")
NO_BODY = Obj("Empty", {}, "No body, or an empty JSON object.")


@blueprint.post("/api/stations")
@operation("Provision a station (ADR 0001)", body=NEW_STATION, responses={201: PROVISIONED},
           errors={409: "A station with this stationCode exists (codes ignore letter case)."})
async def create_station() -> Response:
    data = await body()
    params: dict[str, Any] = {
        "account_id": data["accountId"], "location_id": data["locationId"],
        "station_code": data["stationCode"], "serial_number": data["serialNumber"],
        "manufacturer": data["manufacturer"], "model": data["model"],
        "connectors": data["connectors"]}
    secret = new_station_secret()
    params["secret_hash"] = await hash_secret(secret)
    try:
        row = await database().fetch_one(SQL.create_station, params)
    except ConstraintViolation as err:
        if err.kind == "unique":
            fail(409, "duplicate_station_code",
                 "a station with this stationCode already exists (codes ignore letter case)")
        if err.kind == "foreign_key" and err.constraint == "stations_account_id_fkey":
            invalid("accountId", "no such account")
        if err.kind == "foreign_key":
            invalid("locationId", "no such location in this account")
        raise
    assert row is not None
    # ADR 0001's response, exactly; the secret is never shown again.
    return json_response(PROVISIONED.shape({**row, "station_secret": secret}), 201)


def _station_filter(**given: Any) -> dict[str, Any]:
    params = {"id": None, "account_id": None, "location_id": None, "station_code": None,
              "limit": 1, "offset": 0}
    params.update(given)
    return params


async def load_station(station_id: uuid.UUID) -> Row:
    """The station view, 404 if unknown, 403 if another account's."""
    rows = await database().fetch_all(SQL.select_stations, _station_filter(id=station_id))
    if not rows:
        fail(404, "not_found", "no such station")
    check_account(rows[0]["account_id"])
    return rows[0]


@blueprint.get("/api/stations")
@operation("List stations", query={
    **page_query(), "accountId": ACCOUNT_FILTER,
    "locationId": Uuid("Only this location's."),
    "stationCode": Text("The station with this code, in any letter case.", max_len=48,
                        pattern=STATION_CODE_PATTERN)},
    responses={200: Page(STATION)})
async def list_stations() -> Response:
    q = query()
    account_id = await scoped_account(q["accountId"])
    if q["locationId"] is not None:
        await load_location(q["locationId"])
    if q["stationCode"] is not None:  # like every filter naming an object: 404, 403
        found = await database().fetch_all(SQL.select_stations,
                                           _station_filter(station_code=q["stationCode"]))
        if not found:
            fail(404, "not_found", "no station with this stationCode")
        check_account(found[0]["account_id"])
    rows = await database().fetch_all(SQL.select_stations, _station_filter(
        account_id=account_id, location_id=q["locationId"], station_code=q["stationCode"],
        limit=q["limit"], offset=q["offset"]))
    return json_response(page([STATION.shape(r) for r in rows], q["limit"], q["offset"]))


@blueprint.get("/api/stations/<station_id>")
@operation("Get a station", responses={200: STATION})
async def get_station(station_id: str) -> Response:
    return json_response(STATION.shape(await load_station(parse_uuid("id", station_id))))


@blueprint.patch("/api/stations/<station_id>")
@operation("Update a station", body=STATION_PATCH, responses={200: STATION},
           description="Deactivate/activate, relaxed OCPP validation, registration data.")
async def update_station(station_id: str) -> Response:
    row = await load_station(parse_uuid("id", station_id))
    data = await body()
    await database().fetch_one(SQL.update_station, {
        "id": row["id"], "is_active": data["isActive"],
        "ocpp_relaxed": data["ocppRelaxedValidation"], "serial_number": data["serialNumber"],
        "manufacturer": data["manufacturer"], "model": data["model"]})
    return json_response(STATION.shape(await load_station(row["id"])))


@blueprint.post("/api/stations/<station_id>/secret")
@operation("Issue a new one-time station secret", body=NO_BODY, body_optional=True,
           responses={201: PROVISIONING},
           description="The old secret stops working for new connections at once.")
async def rotate_secret(station_id: str) -> Response:
    row = await load_station(parse_uuid("id", station_id))
    await body()
    secret = new_station_secret()
    await database().fetch_one(SQL.set_station_secret, {
        "id": row["id"], "secret_hash": await hash_secret(secret)})
    return json_response(PROVISIONING.shape({**row, "station_secret": secret}), 201)


TRACE = Obj("TraceRequest", {
    "minutes": Integer("How long to trace [default 60].", low=1, high=MAX_TRACE_MINUTES)},
    "Switch on the frame trace of one station.")
TRACE_STATE = Obj("StationTrace", {"stationId": Uuid(source="id"),
                                   "ocppTraceUntil": TRACE_UNTIL})


@blueprint.put("/api/stations/<station_id>/trace")
@operation("Trace this station's OCPP frames", body=TRACE, body_optional=True,
           responses={200: TRACE_STATE},
           description="For debugging one charger: its frames, both directions, at INFO in "
                       "the log of the process holding its connection, within a few seconds, "
                       "until the time given or DELETE. Id tags and keys stay redacted.")
async def start_trace(station_id: str) -> Response:
    row = await load_station(parse_uuid("id", station_id))
    minutes = (await body()).get("minutes") or DEFAULT_TRACE_MINUTES
    traced = await database().fetch_one(SQL.set_station_trace, {"id": row["id"],
                                                                "minutes": minutes})
    log.info("%s: frame trace on for %d min, asked by %s", row["station_code"], minutes,
             principal().name)
    return json_response(TRACE_STATE.shape(traced))


@blueprint.delete("/api/stations/<station_id>/trace")
@operation("Stop tracing this station's OCPP frames", responses={200: TRACE_STATE})
async def stop_trace(station_id: str) -> Response:
    row = await load_station(parse_uuid("id", station_id))
    traced = await database().fetch_one(SQL.set_station_trace, {"id": row["id"], "minutes": 0})
    log.info("%s: frame trace off, asked by %s", row["station_code"], principal().name)
    return json_response(TRACE_STATE.shape(traced))
