"""Stations: provisioning (ADR 0001) and the station views with runtime state."""

from __future__ import annotations

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
    json_body,
    json_response,
    no_body,
    page,
    page_args,
    parse_uuid,
    principal,
    query_uuid,
    scoped_account,
)
from .locations import load_location

blueprint = Blueprint("stations", __name__)

STATION_CODE_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]{0,47}"  # as schema.sql checks
MAX_CONNECTORS = 64


def connection_url(station_code: str) -> str:
    return f"{context()['public_ocpp_url']}/{quote(station_code, safe='')}"


def present(row: Row) -> dict[str, Any]:
    return {
        "id": row["id"], "accountId": row["account_id"], "locationId": row["location_id"],
        "stationCode": row["station_code"],
        "ocppConnectionUrl": connection_url(row["station_code"]),
        "serialNumber": row["serial_number"], "manufacturer": row["manufacturer"],
        "model": row["model"], "connectorCount": row["connector_count"],
        "isActive": row["is_active"], "ocppRelaxedValidation": row["ocpp_relaxed"],
        "createdAt": row["created_at"], "updatedAt": row["updated_at"],
        "runtime": {
            "status": row["status"], "registrationStatus": row["registration_status"],
            "lastHeartbeatAt": row["last_heartbeat_at"], "bootedAt": row["booted_at"],
            "firmwareVersion": row["firmware_version"], "lastErrorCode": row["last_error_code"],
            "connectedAt": row["connected_at"], "disconnectedAt": row["disconnected_at"],
            "lastSeenAt": row["last_seen_at"], "updatedAt": row["runtime_updated_at"],
        },
        "connectors": row["connector_list"],
    }


@blueprint.post("/api/stations")
async def create_station() -> Response:
    body = await json_body()
    account_id = body.uuid("accountId", required=principal().is_admin) or principal().account_id
    assert account_id is not None
    check_account(account_id)
    station_code = body.text("stationCode", required=True, max_len=48,
                             pattern=STATION_CODE_PATTERN)
    assert station_code is not None
    params = {
        "account_id": account_id,
        "location_id": body.uuid("locationId", required=True),
        "station_code": station_code,
        "serial_number": body.text("serialNumber", max_len=64),
        "manufacturer": body.text("manufacturer", max_len=64),
        "model": body.text("model", max_len=64),
        "connectors": body.integer("connectors", required=True, low=1, high=MAX_CONNECTORS),
    }
    body.done()
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
    url = connection_url(row["station_code"])
    # ADR 0001's response, exactly; the secret is never shown again.
    return json_response({
        "station": {"id": row["id"], "stationCode": row["station_code"],
                    "ocppConnectionUrl": url},
        "provisioning": {"stationCode": row["station_code"], "ocppConnectionUrl": url,
                         "stationSecret": secret},
    }, 201)


async def load_station(station_id: uuid.UUID) -> Row:
    """The station view, 404 if unknown, 403 if another account's."""
    rows = await database().fetch_all(SQL.select_stations, {
        "id": station_id, "account_id": None, "location_id": None, "limit": 1, "offset": 0})
    if not rows:
        fail(404, "not_found", "no such station")
    check_account(rows[0]["account_id"])
    return rows[0]


@blueprint.get("/api/stations")
async def list_stations() -> Response:
    limit, offset = page_args()
    account_id = await scoped_account(query_uuid("accountId"))
    location_id = query_uuid("locationId")
    if location_id is not None:
        await load_location(location_id)
    rows = await database().fetch_all(SQL.select_stations, {
        "id": None, "account_id": account_id, "location_id": location_id,
        "limit": limit, "offset": offset})
    return json_response(page([present(r) for r in rows], limit, offset))


@blueprint.get("/api/stations/<station_id>")
async def get_station(station_id: str) -> Response:
    return json_response(present(await load_station(parse_uuid("id", station_id))))


@blueprint.patch("/api/stations/<station_id>")
async def update_station(station_id: str) -> Response:
    """Deactivate/activate, relaxed OCPP validation, registration data."""
    row = await load_station(parse_uuid("id", station_id))
    body = await json_body()
    params = {"id": row["id"], "is_active": body.boolean("isActive"),
              "ocpp_relaxed": body.boolean("ocppRelaxedValidation"),
              "serial_number": body.text("serialNumber", max_len=64),
              "manufacturer": body.text("manufacturer", max_len=64),
              "model": body.text("model", max_len=64)}
    body.done()
    await database().fetch_one(SQL.update_station, params)
    return json_response(present(await load_station(row["id"])))


@blueprint.post("/api/stations/<station_id>/secret")
async def rotate_secret(station_id: str) -> Response:
    """A new one-time secret; the old one stops working for new connections at once."""
    row = await load_station(parse_uuid("id", station_id))
    await no_body()
    secret = new_station_secret()
    await database().fetch_one(SQL.set_station_secret, {
        "id": row["id"], "secret_hash": await hash_secret(secret)})
    url = connection_url(row["station_code"])
    return json_response({"stationCode": row["station_code"], "ocppConnectionUrl": url,
                          "stationSecret": secret}, 201)
