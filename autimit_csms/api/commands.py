"""Commands to chargers (every central-system-initiated OCPP 1.6 action) and what
they changed: reservations, local authorization list, charging profiles, configuration."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, Response

from ..db import SQL, Row
from ..ocpp16 import CSMS_TO_CHARGER, OcppError
from ..stations.commands import CommandBus, StationOffline, UnstorablePayload
from .app import (
    context,
    database,
    fail,
    invalid,
    json_object,
    json_response,
    page,
    page_args,
    parse_uuid,
    principal,
    unstorable,
)
from .stations import load_station

blueprint = Blueprint("commands", __name__)

# HTTP status by command outcome: the charger's CALLERROR is a bad gateway
# answer; its CALLRESULT (even "Rejected") is a successful exchange.
HTTP_STATUS = {"answered": 200, "call_error": 502, "failed": 502, "timeout": 504,
               "offline": 409, "queued": 504, "sent": 504}


def present(row: Row) -> dict[str, Any]:
    # the contract's error shape, so a 409/502/504 reads like every other error
    error = ({"code": row["error_code"], "message": row["error_description"] or ""}
             if row["error_code"] else None)
    # `response` holds the CALLRESULT when answered, else a CALLERROR's details
    answered = row["status"] == "answered"
    return {"id": row["id"], "stationId": row["station_id"], "action": row["action"],
            "payload": row["payload"], "requestedBy": row["requested_by"],
            "status": row["status"], "response": row["response"] if answered else None,
            "error": error, "errorDetails": None if answered else row["response"],
            "nodeId": row["node_id"], "createdAt": row["created_at"], "sentAt": row["sent_at"],
            "finishedAt": row["finished_at"]}


@blueprint.post("/api/stations/<station_id>/commands/<action>")
async def send_command(station_id: str, action: str) -> Response:
    station = await load_station(parse_uuid("id", station_id))
    if action not in CSMS_TO_CHARGER:
        fail(404, "unknown_command",
             f"not a central-system-initiated OCPP 1.6 action: {action[:50]!r}")
    payload = await json_object()
    db, schemas = database(), context()["schemas"]
    if action == "ReserveNow" and "reservationId" not in payload:
        row = await db.fetch_one(SQL.next_reservation_id)
        assert row is not None
        payload["reservationId"] = row["reservation_id"]
    try:
        schemas.validate_request(action, payload)
    except OcppError as err:
        field = err.description.split(":", 1)[0] if ":" in err.description else ""
        invalid(field or "payload", err.description.split(": ", 1)[-1])
    bus: CommandBus = context()["commands"]
    try:
        # An offline station is a 409 whatever text the payload holds (the
        # attempt is recorded with unstorable text as U+FFFD); for a live one
        # such text is a 422 naming the field, nothing recorded or sent.
        command = await bus.execute(station["id"], action, payload, principal().name,
                                    unstorable_at=unstorable(payload))
    except StationOffline as offline:
        fail(409, "station_offline", f"the station is not connected (command {offline})")
    except UnstorablePayload as bad:
        invalid(bad.args[0], "must not contain NUL characters or lone surrogates")
    if command["status"] == "offline":  # it went away while the command waited
        fail(409, "station_offline", f"the station disconnected (command {command['id']})")
    return json_response(present(command), HTTP_STATUS[command["status"]])


@blueprint.get("/api/stations/<station_id>/commands")
async def list_commands(station_id: str) -> Response:
    station = await load_station(parse_uuid("id", station_id))
    limit, offset = page_args()
    rows = await database().fetch_all(SQL.list_commands, {
        "station_id": station["id"], "limit": limit, "offset": offset})
    return json_response(page([present(r) for r in rows], limit, offset))


@blueprint.get("/api/commands/<command_id>")
async def get_command(command_id: str) -> Response:
    row = await database().fetch_one(SQL.get_command, {"id": parse_uuid("id", command_id)})
    if row is None:
        fail(404, "not_found", "no such command")
    await load_station(row["station_id"])  # 403 for another account's station
    return json_response(present(row))


@blueprint.get("/api/stations/<station_id>/reservations")
async def list_reservations(station_id: str) -> Response:
    station = await load_station(parse_uuid("id", station_id))
    limit, offset = page_args()
    rows = await database().fetch_all(SQL.list_reservations, {
        "station_id": station["id"], "limit": limit, "offset": offset})
    return json_response(page([{
        "reservationId": r["reservation_id"], "connectorId": r["connector_number"],
        "idTag": r["id_tag"], "parentIdTag": r["parent_id_tag"], "expiryDate": r["expires_at"],
        "status": r["status"], "chargerStatus": r["charger_status"],
        "commandId": r["command_id"], "createdAt": r["created_at"],
        "updatedAt": r["updated_at"]} for r in rows], limit, offset))


@blueprint.get("/api/stations/<station_id>/local-auth-list")
async def local_auth_list(station_id: str) -> Response:
    station = await load_station(parse_uuid("id", station_id))
    row = await database().fetch_one(SQL.get_local_list, {"station_id": station["id"]})
    if row is None:
        return json_response({"listVersion": None, "entries": {}, "updatedAt": None})
    return json_response({"listVersion": row["list_version"], "entries": row["entries"],
                          "updatedAt": row["updated_at"]})


@blueprint.get("/api/stations/<station_id>/charging-profiles")
async def charging_profiles(station_id: str) -> Response:
    station = await load_station(parse_uuid("id", station_id))
    rows = await database().fetch_all(SQL.list_charging_profiles,
                                      {"station_id": station["id"]})
    return json_response({"items": [{
        "connectorId": r["connector_number"], "chargingProfileId": r["charging_profile_id"],
        "stackLevel": r["stack_level"], "chargingProfilePurpose": r["purpose"],
        "profile": r["profile"], "installedAt": r["installed_at"]} for r in rows]})


@blueprint.get("/api/stations/<station_id>/configuration")
async def configuration(station_id: str) -> Response:
    station = await load_station(parse_uuid("id", station_id))
    rows = await database().fetch_all(SQL.list_configuration, {"station_id": station["id"]})
    return json_response({"items": [{
        "key": r["key"], "value": r["value"], "readonly": r["readonly"], "source": r["source"],
        "updatedAt": r["updated_at"]} for r in rows]})



