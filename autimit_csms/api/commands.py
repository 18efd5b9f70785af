"""Commands to chargers (every central-system-initiated OCPP 1.6 action) and what
they changed: reservations, local authorization list, charging profiles, configuration."""

from __future__ import annotations

from typing import Any, Final

from quart import Blueprint, Response

from ..db import SQL, Row
from ..ocpp16 import CSMS_TO_CHARGER, OcppError
from ..stations.commands import CommandBus, StationOffline, UnstorablePayload
from .app import context, database, fail, invalid, json_object, json_response, principal, unstorable
from .spec import (
    Boolean,
    Choice,
    Integer,
    Json,
    List,
    Obj,
    Page,
    Text,
    Timestamp,
    Uuid,
    operation,
    page,
    page_query,
    parse_uuid,
    query,
)
from .stations import load_station

blueprint = Blueprint("commands", __name__)

# HTTP status by command outcome: the charger's CALLERROR is a bad gateway
# answer; its CALLRESULT (even "Rejected") is a successful exchange.
HTTP_STATUS = {"answered": 200, "call_error": 502, "failed": 502, "timeout": 504,
               "offline": 409, "queued": 504, "sent": 504}
MAX_WAIT: Final = 60  # seconds a GET of a command may wait for its end


def _error(row: Row) -> dict[str, Any] | None:
    # the contract's error shape, so a 409/502/504 reads like every other error
    if not row["error_code"]:
        return None
    return {"code": row["error_code"], "message": row["error_description"] or ""}


def _answered(row: Row) -> bool:
    return row["status"] == "answered"  # type: ignore[no-any-return]


COMMAND = Obj("Command", {
    "id": Uuid(), "stationId": Uuid(), "action": Text("The OCPP 1.6 action."),
    "payload": Json("The OCPP request as sent (ReserveNow: with the allocated reservationId)."),
    "requestedBy": Text("`admin` or `api-key:<key id>`, never the token."),
    "status": Choice(("queued", "sent", "answered", "call_error", "timeout", "offline",
                      "failed"), "`queued` and `sent` are in progress; the rest are final."),
    # `response` holds the CALLRESULT when answered, else a CALLERROR's details
    "response": Json("The charger's CALLRESULT payload (status `answered`).", null=True,
                     source=lambda r: r["response"] if _answered(r) else None),
    "error": Obj(None, {"code": Text(), "message": Text()}, null=True, source=_error,
                 doc="The charger's CALLERROR, or ours (StationOffline, Timeout, "
                     "NotRecorded, an invalid answer)."),
    "errorDetails": Json("A CALLERROR's details.", null=True,
                         source=lambda r: None if _answered(r) else r["response"]),
    "nodeId": Uuid("The CSMS process that delivered it.", null=True),
    "createdAt": Timestamp(), "sentAt": Timestamp(null=True),
    "finishedAt": Timestamp(null=True)},
    "A command to a charger, as recorded in station_commands.")
SEND_QUERY: Final = {"wait": Boolean(
    "false: answer 202 with the queued command at once; follow it with "
    "GET /api/commands/{commandId}?wait=N.", default=True)}
@blueprint.post("/api/stations/<station_id>/commands/<action>")
@operation("Send an OCPP command", query=SEND_QUERY, ocpp_actions=CSMS_TO_CHARGER,
           responses={
               200: ("The charger answered with a CALLRESULT (whatever its status).", COMMAND),
               202: ("Queued (`wait=false`); `Location` is the command.", COMMAND),
               502: ("The charger answered with a CALLERROR, or the call failed.", COMMAND),
               504: ("No answer within --command-timeout.", COMMAND)},
           errors={404: "No such station, or not a central-system-initiated action.",
                   409: "The station is not connected (the attempt is recorded)."},
           description="The body is the OCPP 1.6 request payload, validated against the "
                       "official schema (422 naming the field, nothing sent). By default the "
                       "call waits for the charger: 200 with its CALLRESULT, 502 its "
                       "CALLERROR, 504 no answer in time (the command row in each case).")
async def send_command(station_id: str, action: str) -> Response:
    station = await load_station(parse_uuid("id", station_id))
    if action not in CSMS_TO_CHARGER:
        fail(404, "unknown_command",
             f"not a central-system-initiated OCPP 1.6 action: {action[:50]!r}")
    payload = await json_object()
    wait = query()["wait"]
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
    if action == "ChangeConfiguration" and payload["key"].lower() == "authorizationkey":
        # The station's credential: a command row would keep it in plain text, and an
        # Accepted change would lock the charger out (only its bcrypt hash is known).
        invalid("key", "the AuthorizationKey is the station's secret: issue a new one with "
                       "POST /api/stations/:id/secret and set it on the charger")
    bus: CommandBus = context()["commands"]
    try:
        # An offline station is a 409 whatever text the payload holds (the
        # attempt is recorded with unstorable text as U+FFFD); for a live one
        # such text is a 422 naming the field, nothing recorded or sent.
        command = await bus.execute(station["id"], action, payload, principal().name,
                                    unstorable_at=unstorable(payload), wait=wait)
    except StationOffline as offline:
        fail(409, "station_offline", f"the station is not connected (command {offline})")
    except UnstorablePayload as bad:
        invalid(bad.args[0], "must not contain NUL characters or lone surrogates")
    if command["status"] == "offline":  # it went away while the command waited
        fail(409, "station_offline", f"the station disconnected (command {command['id']})")
    if not wait:
        response = json_response(COMMAND.shape(command), 202)
        response.headers["Location"] = f"/api/commands/{command['id']}"
        return response
    return json_response(COMMAND.shape(command), HTTP_STATUS[command["status"]])


@blueprint.get("/api/stations/<station_id>/commands")
@operation("A station's commands, newest first", query=page_query(),
           responses={200: Page(COMMAND)})
async def list_commands(station_id: str) -> Response:
    station = await load_station(parse_uuid("id", station_id))
    q = query()
    rows = await database().fetch_all(SQL.list_commands, {
        "station_id": station["id"], "limit": q["limit"], "offset": q["offset"]})
    return json_response(page([COMMAND.shape(r) for r in rows], q["limit"], q["offset"]))


@blueprint.get("/api/commands/<command_id>")
@operation("Get a command", query={"wait": Integer(
    f"Seconds (at most {MAX_WAIT}) to wait for the command to finish before answering; "
    "it answers as soon as the command is finished.", low=0, high=MAX_WAIT, default=0)},
    responses={200: COMMAND},
    description="Always 200 with the command row, finished or not (see `status`).")
async def get_command(command_id: str) -> Response:
    key = {"id": parse_uuid("id", command_id)}
    row = await database().fetch_one(SQL.get_command, key)
    if row is None:
        fail(404, "not_found", "no such command")
    await load_station(row["station_id"])  # 403 for another account's station
    seconds = query()["wait"]
    if seconds and row["status"] in ("queued", "sent"):
        bus: CommandBus = context()["commands"]
        await bus.wait(row["id"], seconds)
        row = await database().fetch_one(SQL.get_command, key)
        assert row is not None
    return json_response(COMMAND.shape(row))


# ---------------------------------------------------------------- what the commands changed

RESERVATION = Obj("Reservation", {
    "reservationId": Integer(), "connectorId": Integer(source="connector_number"),
    "idTag": Text(), "parentIdTag": Text(null=True),
    "expiryDate": Timestamp(source="expires_at"),
    "status": Choice(("reserved", "refused", "cancelled", "used", "expired")),
    "chargerStatus": Text("The charger's ReserveNow answer.", null=True),
    "commandId": Uuid(null=True), "createdAt": Timestamp(), "updatedAt": Timestamp()})
LOCAL_LIST = Obj("LocalAuthList", {
    "listVersion": Integer("The version the charger last accepted.", null=True),
    "entries": Json("{idTag: idTagInfo}"), "updatedAt": Timestamp(null=True)},
    "The charger's local authorization list, as last accepted.")
PROFILE = Obj("ChargingProfile", {
    "connectorId": Integer(source="connector_number"), "chargingProfileId": Integer(),
    "stackLevel": Integer(), "chargingProfilePurpose": Text(source="purpose"),
    "profile": Json("The OCPP csChargingProfiles as installed."), "installedAt": Timestamp()})
PROFILES = Obj("ChargingProfileList", {"items": List(PROFILE)})
SETTING = Obj("ConfigurationKey", {
    "key": Text(), "value": Text(null=True), "readonly": Boolean(null=True),
    "source": Choice(("GetConfiguration", "ChangeConfiguration")),
    "updatedAt": Timestamp()})
SETTINGS = Obj("ConfigurationList", {"items": List(SETTING)})


@blueprint.get("/api/stations/<station_id>/reservations")
@operation("A station's reservations", query=page_query(), responses={200: Page(RESERVATION)})
async def list_reservations(station_id: str) -> Response:
    station = await load_station(parse_uuid("id", station_id))
    q = query()
    rows = await database().fetch_all(SQL.list_reservations, {
        "station_id": station["id"], "limit": q["limit"], "offset": q["offset"]})
    return json_response(page([RESERVATION.shape(r) for r in rows], q["limit"], q["offset"]))


@blueprint.get("/api/stations/<station_id>/local-auth-list")
@operation("A station's local authorization list", responses={200: LOCAL_LIST})
async def local_auth_list(station_id: str) -> Response:
    station = await load_station(parse_uuid("id", station_id))
    row = await database().fetch_one(SQL.get_local_list, {"station_id": station["id"]})
    return json_response(LOCAL_LIST.shape(
        row or {"list_version": None, "entries": {}, "updated_at": None}))


@blueprint.get("/api/stations/<station_id>/charging-profiles")
@operation("A station's installed charging profiles", responses={200: PROFILES})
async def charging_profiles(station_id: str) -> Response:
    station = await load_station(parse_uuid("id", station_id))
    rows = await database().fetch_all(SQL.list_charging_profiles,
                                      {"station_id": station["id"]})
    return json_response(PROFILES.shape({"items": [PROFILE.shape(r) for r in rows]}))


@blueprint.get("/api/stations/<station_id>/configuration")
@operation("A station's configuration keys, as last read or changed",
           responses={200: SETTINGS})
async def configuration(station_id: str) -> Response:
    station = await load_station(parse_uuid("id", station_id))
    rows = await database().fetch_all(SQL.list_configuration, {"station_id": station["id"]})
    return json_response(SETTINGS.shape({"items": [SETTING.shape(r) for r in rows]}))
