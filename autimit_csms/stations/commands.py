"""Commands to chargers across CSMS processes, through PostgreSQL alone.

Owns: the command's life as a row (queued -> sent -> answered / call_error /
timeout / offline / failed), waking the process that holds the station's socket
(NOTIFY autimit_command), telling the requester it is done (NOTIFY
autimit_command_done), and recording what an accepted command changed on the
charger (reservations, local list, charging profiles, configuration). The API
calls `execute`; each process runs `run` in its root nursery.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from dataclasses import dataclass
from typing import Any, Final

import trio
from trio_websocket import ConnectionClosed

from ..db import SQL, Database, DatabaseError, Row, as_json
from ..db.writer import GroupCommitWriter
from ..handlers.context import now
from ..ocpp16 import ErrorReceived, OcppError
from .session import SessionRegistry

log = logging.getLogger(__name__)

NODE_SILENCE: Final = 30  # seconds without a node heartbeat: its stations are not reachable


class StationOffline(Exception):
    """No process holds a socket for this station."""


@dataclass
class CommandBus:
    db: Database
    writer: GroupCommitWriter
    sessions: SessionRegistry
    command_timeout: float

    def __post_init__(self) -> None:
        self._waiters: dict[uuid.UUID, trio.Event] = {}
        self._nursery: trio.Nursery | None = None

    @property
    def node_id(self) -> uuid.UUID:
        return self.sessions.node_id

    # ------------------------------------------------------------ requester side

    async def execute(self, station_id: uuid.UUID, action: str, payload: dict[str, Any],
                      requested_by: str) -> Row:
        """Queue a command, wait for whichever process delivers it; return its row.

        Raises StationOffline (recorded as an 'offline' command) when no live
        process holds the station. Waits at most command_timeout (+ margin);
        a command still open then is marked 'timeout'.
        """
        route = await self.db.fetch_one(SQL.station_route, {"station_id": station_id})
        online = bool(route and route["status"] != "offline" and route["node_id"]
                      and route["node_seen_at"] is not None
                      and (now() - route["node_seen_at"]).total_seconds() < NODE_SILENCE)
        command_id = uuid.uuid4()
        done = self._waiters[command_id] = trio.Event()  # before the NOTIFY can answer
        try:
            await self.db.fetch_one(SQL.insert_command, {
                "id": command_id, "station_id": station_id, "action": action,
                "payload": as_json(payload), "requested_by": requested_by,
                "status": "queued" if online else "offline",
                "error_code": None if online else "StationOffline",
                "error_description": None if online else "no connection to the station"})
            if not online:
                raise StationOffline(str(command_id))
            with trio.move_on_after(self.command_timeout + 2):
                await done.wait()
        finally:
            del self._waiters[command_id]
        if not done.is_set():  # the delivering process never finished it
            await self.db.fetch_all(SQL.finish_command, {
                "id": command_id, "status": "timeout", "response": None,
                "error_code": "Timeout", "error_description": "no answer in time"})
        command = await self.db.fetch_one(SQL.get_command, {"id": command_id})
        assert command is not None
        return command

    # ------------------------------------------------------------ holder side

    async def run(self, shutdown: trio.Event,
                  task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """LISTEN for commands and completions and deliver those for our stations,
        until `shutdown`; deliveries in flight then finish."""
        await self.db.execute(SQL.register_node, {
            "id": self.node_id, "hostname": socket.gethostname(), "pid": os.getpid()})
        async with trio.open_nursery() as deliveries:
            self._nursery = deliveries
            async with trio.open_nursery() as background:
                background.start_soon(self._listen)
                background.start_soon(self._sweep)
                task_status.started()
                await shutdown.wait()
                background.cancel_scope.cancel()
        with trio.CancelScope(shield=True), trio.move_on_after(2):
            await self.db.execute(SQL.forget_node, {"id": self.node_id})

    async def _listen(self) -> None:
        while True:
            try:
                await self.db.listen(("autimit_command", "autimit_command_done"),
                                     self._on_notify)
            except DatabaseError as err:
                log.warning("command listener lost the database (%s); retrying", err)
                await trio.sleep(1)

    def _on_notify(self, channel: str, payload: str) -> None:
        if channel == "autimit_command_done":
            event = self._waiters.get(uuid.UUID(payload))
            if event is not None:
                event.set()
            return
        command_id, _, station_id = payload.partition(":")
        if self.sessions.get(uuid.UUID(station_id)) is not None and self._nursery is not None:
            self._nursery.start_soon(self._deliver, uuid.UUID(command_id))

    async def _sweep(self) -> None:
        """Deliver commands whose NOTIFY was missed; keep this node's heartbeat."""
        while True:
            await trio.sleep(2)
            held = [s.ctx.station_id for s in self.sessions.sessions()]
            try:
                await self.db.execute(SQL.node_heartbeat, {"id": self.node_id})
                rows = await self.db.fetch_all(SQL.queued_commands_for, {"stations": held})
            except DatabaseError:
                continue
            for row in rows:
                assert self._nursery is not None
                self._nursery.start_soon(self._deliver, row["id"])

    async def _deliver(self, command_id: uuid.UUID) -> None:
        try:
            command = await self.db.fetch_one(SQL.claim_command, {
                "id": command_id, "node_id": self.node_id})
            if command is None:  # another process or a sweep claimed it first
                return
            outcome, answer = await self._call(command)
            await self.writer.submit(SQL.finish_command, {"id": command_id, **outcome},
                                     *effects(command, answer))
        except DatabaseError as err:
            log.error("command %s: database unavailable (%s)", command_id, err)

    async def _call(self, command: Row) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """The command's outcome columns, and the charger's answer if it accepted the call."""
        session = self.sessions.get(command["station_id"])
        if session is None:
            return _failed("offline", "StationOffline", "the station disconnected"), None
        try:
            with trio.fail_after(self.command_timeout):
                answer = await session.call(command["action"], command["payload"])
        except trio.TooSlowError:
            return _failed("timeout", "Timeout", "no answer within the command timeout"), None
        except ConnectionClosed:
            return _failed("offline", "StationOffline", "the station disconnected"), None
        except OcppError as err:
            return _failed("failed", err.code, err.description), None
        if isinstance(answer, ErrorReceived):
            return _failed("call_error", answer.error.error_code, answer.error.description,
                           answer.error.details or None), None
        outcome = {"status": "answered", "response": as_json(answer.result.payload),
                   "error_code": None, "error_description": None}
        if answer.error is not None:  # the charger answered outside its schema
            outcome["error_code"] = answer.error.code
            outcome["error_description"] = f"invalid answer: {answer.error.description}"
            return outcome, None
        return outcome, answer.result.payload


def _failed(status: str, code: str, description: str,
            details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"status": status, "response": as_json(details) if details else None,
            "error_code": code, "error_description": description[:500]}


def effects(command: Row, answer: dict[str, Any] | None) -> list[tuple[str, dict[str, Any]]]:
    """What an answered command changed on the charger, as statements to commit
    with the command's own row (one transaction)."""
    if answer is None:
        return []
    station_id, action, p = command["station_id"], command["action"], command["payload"]
    status = answer.get("status")
    if action == "ReserveNow":
        return [(SQL.record_reservation, {
            "station_id": station_id, "reservation_id": p["reservationId"],
            "connector_number": p["connectorId"], "id_tag": p["idTag"],
            "parent_id_tag": p.get("parentIdTag"), "expires_at": p["expiryDate"],
            "status": "reserved" if status == "Accepted" else "refused",
            "charger_status": status, "command_id": command["id"]})]
    if action == "CancelReservation" and status == "Accepted":
        return [(SQL.cancel_reservation, {"station_id": station_id,
                                          "reservation_id": p["reservationId"]})]
    if action == "SendLocalList" and status == "Accepted":
        entries = p.get("localAuthorizationList", [])
        return [(SQL.record_local_list, {
            "station_id": station_id, "list_version": p["listVersion"],
            "full": p["updateType"] == "Full",
            "upserts": as_json({e["idTag"]: e["idTagInfo"] for e in entries
                                if "idTagInfo" in e}),
            "removed": [e["idTag"] for e in entries if "idTagInfo" not in e]})]
    if action == "SetChargingProfile" and status == "Accepted":
        profile = p["csChargingProfiles"]
        return [(SQL.record_charging_profile, {
            "station_id": station_id, "connector_number": p["connectorId"],
            "charging_profile_id": profile["chargingProfileId"],
            "stack_level": profile["stackLevel"], "purpose": profile["chargingProfilePurpose"],
            "profile": as_json(profile)})]
    if action == "ClearChargingProfile" and status == "Accepted":
        return [(SQL.clear_charging_profiles, {
            "station_id": station_id, "charging_profile_id": p.get("id"),
            "connector_number": p.get("connectorId"),
            "purpose": p.get("chargingProfilePurpose"), "stack_level": p.get("stackLevel")})]
    if action == "GetConfiguration":
        keys = answer.get("configurationKey", [])
        return [(SQL.record_configuration, {
            "station_id": station_id, "source": "GetConfiguration",
            "keys": [k["key"] for k in keys], "values": [k.get("value") for k in keys],
            "readonly": [k.get("readonly") for k in keys]})] if keys else []
    if action == "ChangeConfiguration" and status in ("Accepted", "RebootRequired"):
        return [(SQL.record_configuration, {
            "station_id": station_id, "source": "ChangeConfiguration", "keys": [p["key"]],
            "values": [p["value"]], "readonly": [False]})]
    return []
