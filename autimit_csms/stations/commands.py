"""Commands to chargers across CSMS processes, through PostgreSQL alone.

Owns: the command's life as a row (queued -> sent -> answered / call_error /
timeout / offline / failed), waking the process that holds the station's socket
(NOTIFY autimit_command), telling the requester it is done (NOTIFY
autimit_command_done), and recording what an accepted command changed on the
charger (reservations, local list, charging profiles, configuration). The API
calls `execute`; each process runs `run` in its root nursery.

Also carries an operator's frame trace of a station (stations.ocpp_trace_until)
to the process holding it, within one sweep. Also owns the liveness rule of
processes (docs/ocpp.md "Liveness"): each process heartbeats its csms_nodes row,
and sweeps offline the stations whose holding process is gone or silent for
`node_silence` seconds.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Final

import trio

from .. import logs
from ..db import SQL, Database, DatabaseError, DatabaseUnavailable, Row, as_json
from ..db.writer import GroupCommitWriter
from ..handlers.context import now
from ..metrics import LATENCY_SECONDS, Distribution
from ..ocpp16 import REDACTED, ErrorReceived, OcppError
from .session import SessionRegistry
from .websocket import ConnectionClosed

log = logging.getLogger(__name__)

NODE_SILENCE: Final = 10.0  # seconds without a node heartbeat (5 missed): its stations are offline
NODE_HEARTBEAT: Final = 2.0  # seconds between heartbeats (at most node_silence / 3)
RETRY_PAUSE: Final = 0.5     # seconds between attempts to record an outcome


@dataclass
class CommandStats:
    """Deliveries by this process, read by autimit_csms/metrics.py."""

    outcomes: Counter[tuple[str, str]] = field(default_factory=Counter)  # (action, status)
    latency: Distribution = field(default_factory=lambda: Distribution(LATENCY_SECONDS))


class StationOffline(Exception):
    """No process holds a socket for this station."""


class UnstorablePayload(Exception):
    """Text in the payload PostgreSQL cannot store (NUL, lone surrogate); args[0] is the field."""


@dataclass
class CommandBus:
    db: Database
    writer: GroupCommitWriter
    sessions: SessionRegistry
    command_timeout: float
    node_silence: float = NODE_SILENCE

    def __post_init__(self) -> None:
        self._waiters: dict[uuid.UUID, trio.Event] = {}
        self._watchers: dict[uuid.UUID, int] = {}  # how many wait on each of _waiters
        self.stats = CommandStats()
        self._nursery: trio.Nursery | None = None
        self._background: trio.Nursery | None = None

    @property
    def node_id(self) -> uuid.UUID:
        return self.sessions.node_id

    # ------------------------------------------------------------ requester side

    async def execute(self, station_id: uuid.UUID, action: str, payload: dict[str, Any],
                      requested_by: str, *, unstorable_at: str | None = None,
                      wait: bool = True) -> Row:
        """Queue a command, wait for whichever process delivers it; return its row.

        Raises StationOffline (recorded as an 'offline' command) when no live
        process holds the station, whatever the payload: `unstorable_at` (the
        field with text PostgreSQL cannot store) only makes the recorded copy
        replace that text with U+FFFD. For a live station such a payload raises
        UnstorablePayload, nothing recorded or sent. Waits at most twice
        command_timeout (+ margin): the call, then recording its outcome; a
        command still open then is marked 'timeout'. With `wait=False` the row
        is returned as soon as it is queued, and a task of `run` keeps that bound
        (given up at shutdown: only a delivering process that died needs it).
        """
        route = await self.db.fetch_one(SQL.station_route, {"station_id": station_id})
        online = bool(route and route["status"] != "offline" and route["node_id"]
                      and route["node_seen_at"] is not None
                      and (now() - route["node_seen_at"]).total_seconds() < self.node_silence)
        if online and unstorable_at is not None:
            raise UnstorablePayload(unstorable_at)
        command_id = uuid.uuid4()
        if not online:
            note = "no connection to the station"
            if unstorable_at is not None:
                payload = storable(payload)
                note += f"; text at {unstorable_at[:100]} recorded with U+FFFD (unstorable)"
            await self.db.fetch_one(SQL.insert_command, {
                "id": command_id, "station_id": station_id, "action": action,
                "payload": as_json(payload), "requested_by": requested_by,
                "status": "offline", "error_code": "StationOffline",
                "error_description": note})
            raise StationOffline(str(command_id))
        done = self._watch(command_id)  # before the NOTIFY can answer
        try:
            await self.db.fetch_one(SQL.insert_command, {
                "id": command_id, "station_id": station_id, "action": action,
                "payload": as_json(payload), "requested_by": requested_by,
                "status": "queued", "error_code": None, "error_description": None})
        except BaseException:
            self._unwatch(command_id)
            raise
        if wait or self._background is None:  # (none: shutting down, so the caller waits)
            await self._bound(command_id, done)
        else:
            self._background.start_soon(self._bound, command_id, done)
        command = await self.db.fetch_one(SQL.get_command, {"id": command_id})
        assert command is not None
        return command

    async def wait(self, command_id: uuid.UUID, seconds: float) -> None:
        """Return once the command is finished, by whichever process, or after `seconds`."""
        done = self._watch(command_id)  # before reading, so a finish in between wakes us
        try:
            row = await self.db.fetch_one(SQL.get_command, {"id": command_id})
            if row is not None and row["status"] in ("queued", "sent"):
                with trio.move_on_after(seconds):
                    await done.wait()
        finally:
            self._unwatch(command_id)

    async def _bound(self, command_id: uuid.UUID, done: trio.Event) -> None:
        try:
            with trio.move_on_after(2 * self.command_timeout + 2):
                await done.wait()
        finally:
            self._unwatch(command_id)
        if not done.is_set():  # the delivering process never finished it
            await self.db.fetch_all(SQL.finish_command, {
                "id": command_id, "status": "timeout", "response": None,
                "error_code": "Timeout", "error_description": "no answer in time"})

    def _watch(self, command_id: uuid.UUID) -> trio.Event:
        """The event set when the command finishes; one per command, shared by its waiters."""
        self._watchers[command_id] = self._watchers.get(command_id, 0) + 1
        return self._waiters.setdefault(command_id, trio.Event())

    def _unwatch(self, command_id: uuid.UUID) -> None:
        self._watchers[command_id] -= 1
        if not self._watchers[command_id]:
            del self._watchers[command_id], self._waiters[command_id]

    # ------------------------------------------------------------ holder side

    async def run(self, shutdown: trio.Event,
                  task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """LISTEN for commands and completions and deliver those for our stations,
        until `shutdown`; deliveries in flight then finish."""
        await self.db.execute(SQL.node_heartbeat, self._node_row())
        async with trio.open_nursery() as deliveries:
            self._nursery = deliveries
            async with trio.open_nursery() as background:
                self._background = background
                background.start_soon(self._listen)
                background.start_soon(self._sweep)
                task_status.started()
                await shutdown.wait()
                background.cancel_scope.cancel()
                self._background = None
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

    def _node_row(self) -> dict[str, Any]:
        return {"id": self.node_id, "hostname": socket.gethostname(), "pid": os.getpid()}

    async def _sweep(self) -> None:
        """Keep this node's heartbeat; sweep stations whose holder is gone; deliver
        commands whose NOTIFY was missed."""
        period = min(NODE_HEARTBEAT, self.node_silence / 3)
        last_beat = trio.current_time()
        while True:
            await trio.sleep(period)
            held = self.sessions.sessions()
            held_ids = [s.ctx.station_id for s in held]
            try:
                await self.db.execute(SQL.node_heartbeat, self._node_row())
                if trio.current_time() - last_beat > self.node_silence / 2:
                    # Silent long enough for another process to have swept our stations.
                    reclaimed = await self.db.fetch_all(SQL.reclaim_stations, {
                        "node_id": self.node_id,
                        "stations": held_ids,
                        "connected_at": [s.connected_at for s in held]})
                    if reclaimed:
                        log.warning("%d stations recorded online again after this process "
                                    "could not heartbeat", len(reclaimed))
                last_beat = trio.current_time()
                swept = await self.db.fetch_all(SQL.sweep_unheld_stations, {
                    "silence": self.node_silence})
                rows = await self.db.fetch_all(SQL.queued_commands_for, {"stations": held_ids})
                traced = {row["id"] for row in await self.db.fetch_all(SQL.traced_stations, {
                    "stations": held_ids})}
            except DatabaseError as err:
                log.warning("node heartbeat/sweep: %s (%s)", type(err).__name__, err)
                continue
            for row in swept:
                log.info("station %s marked offline: the process holding it is gone",
                         row["station_id"])
            for session in held:  # an operator's frame trace, on or off within a sweep
                if session.trace != (session.ctx.station_id in traced):
                    session.trace = not session.trace
                    log.info("%s: OCPP frame trace %s", session.ctx.station_code,
                             "on" if session.trace else "off")
            for row in rows:
                assert self._nursery is not None
                self._nursery.start_soon(self._deliver, row["id"])

    async def _deliver(self, command_id: uuid.UUID) -> None:
        try:
            command = await self.db.fetch_one(SQL.claim_command, {
                "id": command_id, "node_id": self.node_id})
        except DatabaseError as err:  # still queued: the requester marks it in time
            log.error("command %s not claimed: %s (%s)", command_id, type(err).__name__, err)
            return
        if command is None:  # another process or a sweep claimed it first
            return
        session = self.sessions.get(command["station_id"])
        if session is not None:  # this delivery's log lines name the station
            logs.STATION.set(session.ctx.station_code)
            logs.CONNECTION.set(session.connection_id)
        logs.MESSAGE.set(f"command:{command_id}")
        started = trio.current_time()
        outcome, answer = await self._call(command)
        self.stats.outcomes[command["action"], outcome["status"]] += 1
        self.stats.latency.observe(trio.current_time() - started)
        await self._finish(command, outcome, effects(command, answer))
        # A requester in this process is told at once, not only through the NOTIFY,
        # which the listener no longer hears once shutdown has begun.
        waiter = self._waiters.get(command_id)
        if waiter is not None:
            waiter.set()

    async def _finish(self, command: Row, outcome: dict[str, Any],
                      statements: list[tuple[str, dict[str, Any]]]) -> None:
        """Record the outcome and what it changed, in one transaction.

        A charger's answer is never lost to a failure of ours: a database outage
        is retried for up to command_timeout; a statement that fails for any
        other reason (a constraint, unstorable text) is dropped and the outcome
        kept, with that failure as its error; answer text PostgreSQL cannot
        store is kept with U+FFFD in its place.
        """
        command_id, action = command["id"], command["action"]
        response, sanitized = outcome["response"], False
        with trio.move_on_after(self.command_timeout):
            while True:
                try:
                    await self.writer.submit(SQL.finish_command, {"id": command_id, **outcome},
                                             *statements)
                    return
                except DatabaseUnavailable as err:
                    log.warning("command %s (%s): outcome not recorded yet (%s); retrying",
                                command_id, action, err)
                    await trio.sleep(RETRY_PAUSE)
                    continue
                except DatabaseError as err:
                    failure = f"{type(err).__name__}: {err}"
                if statements:
                    log.error("command %s (%s): the charger answered, but recording what it "
                              "changed failed: %s", command_id, action, failure)
                    statements, what = [], "recording what it changed"
                elif response is not None and not sanitized:
                    log.error("command %s (%s): the answer cannot be stored as sent (%s); "
                              "stored with U+FFFD", command_id, action, failure)
                    outcome["response"] = as_json(storable(response.obj))
                    sanitized, what = True, "storing the answer as sent"
                else:
                    log.error("command %s (%s): outcome not recorded: %s", command_id, action,
                              failure)
                    return
                outcome["error_code"] = "NotRecorded"
                outcome["error_description"] = f"answer kept; {what} failed ({failure})"[:500]
        log.error("command %s (%s): outcome not recorded within %.0f s: database unavailable",
                  command_id, action, self.command_timeout)

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
        payload = without_credentials(answer.result.payload)  # what is stored and applied
        outcome = {"status": "answered", "response": as_json(payload),
                   "error_code": None, "error_description": None}
        if answer.error is not None:  # the charger answered outside its schema
            outcome["error_code"] = answer.error.code
            outcome["error_description"] = f"invalid answer: {answer.error.description}"
            return outcome, None
        return outcome, payload


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


def storable(value: Any) -> Any:
    """`value` with the text PostgreSQL cannot store (NUL, lone surrogates) as U+FFFD."""
    if isinstance(value, str):
        return "".join("\ufffd" if c == "\x00" or "\ud800" <= c <= "\udfff" else c
                       for c in value)
    if isinstance(value, dict):
        return {storable(k): storable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [storable(v) for v in value]
    return value


CREDENTIAL_KEYS: Final = frozenset({"authorizationkey"})  # OCPP 1.6 security whitepaper


def without_credentials(answer: dict[str, Any]) -> dict[str, Any]:
    """A GetConfiguration answer with the value of the station's credential removed:
    the key is write-only (errata §3.10), but some firmware reports it anyway, and
    it must not be stored or shown (the command row and `effects` both get this)."""
    keys = answer.get("configurationKey")
    if not isinstance(keys, list):
        return answer
    return {**answer, "configurationKey": [
        {**key, "value": REDACTED} if isinstance(key, dict) and "value" in key
        and str(key.get("key", "")).lower() in CREDENTIAL_KEYS else key for key in keys]}
