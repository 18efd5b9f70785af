"""One station connection: the session loop, outbound calls, and who is connected.

Owns: reading frames, feeding the sans-I/O OcppProtocol, running the handler
for each CALL and sending its answer, one outbound CALL at a time (commands),
and the online/offline bookkeeping of the connection's lifetime. Messages of
one connection are handled in order, in the connection's own task: no task per
message. It must not parse frames (ocpp16) nor decide what a message means
(handlers).
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import trio

from .. import logs
from ..db import SQL, DatabaseError
from ..db.writer import GroupCommitWriter
from ..handlers import ROUTES, InvalidCall, StationContext
from ..ocpp16 import (
    CallReceived,
    ErrorCode,
    ErrorReceived,
    Ignored,
    OcppError,
    OcppProtocol,
    Rejected,
    ResultReceived,
)
from ..ocpp16.codec import redact_for_log
from .limits import Pace
from .websocket import ConnectionClosed, WebSocket

log = logging.getLogger(__name__)


@dataclass
class Metrics:
    """Process counters, read by autimit_csms/metrics.py at scrape time."""

    connections_opened: int = 0
    connections_replaced: int = 0
    frames_in: int = 0
    calls_by_outcome: Counter[tuple[str, str]] = field(default_factory=Counter)  # result|error
    call_errors_sent: Counter[str] = field(default_factory=Counter)
    frames_paced: int = 0  # read later than they arrived: the connection was over its pace


class StationSession:
    def __init__(self, ws: WebSocket, protocol: OcppProtocol, ctx: StationContext,
                 registry: SessionRegistry, remote: str = "?", *,
                 pace: Pace | None = None) -> None:
        self._pace = pace
        self.ws = ws
        self.remote = remote
        self.connection_id = logs.CONNECTION.get()  # set by the listener for this connection
        self.trace = False  # frames at INFO: an operator traces this station (docs/read-api.md)
        self.protocol = protocol
        self.ctx = ctx
        self.registry = registry
        self.connected_at = dt.datetime.now(dt.UTC)
        self.last_activity = trio.current_time()
        self._closing: str | None = None
        self._close_code = 1000             # 1001 when the server goes away
        self._timed_out = False             # recorded as 'timed_out', not 'disconnected'
        self._read_scope: trio.CancelScope | None = None
        self._call_lock = trio.Lock()
        self._answer: trio.MemorySendChannel[ResultReceived | ErrorReceived] | None = None

    @property
    def writer(self) -> GroupCommitWriter:
        return self.ctx.writer

    def close(self, reason: str, *, code: int = 1000, timed_out: bool = False) -> None:
        """Finish the message in hand, then close. Safe to call more than once."""
        if self._closing is None:
            self._closing, self._close_code, self._timed_out = reason, code, timed_out
        if self._read_scope is not None:
            self._read_scope.cancel()

    async def run(self, ping_interval: float) -> None:
        code = self.ctx.station_code
        previous = self.registry.attach(self)
        if previous is not None:
            log.warning("%s connected again; closing its previous connection", code)
            previous.close("replaced by a new connection")
        try:
            await self.writer.submit(SQL.station_connected, {
                "station_id": self.ctx.station_id, "at": self.connected_at,
                "node_id": self.registry.node_id})
            log.info("%s connected from %s", code, self.remote)
            async with trio.open_nursery() as nursery:
                if ping_interval > 0:
                    nursery.start_soon(self._ping, ping_interval)
                await self._read_loop()
                nursery.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True):
                await self._finish()

    async def _read_loop(self) -> None:
        while self._closing is None:
            with trio.CancelScope() as self._read_scope:
                if self._pace is not None and (wait := self._pace.take()) > 0:
                    # Not reading is the throttle: the frames wait in TCP buffers,
                    # the charger's sends block, nothing is lost or refused.
                    self.registry.metrics.frames_paced += 1
                    await trio.sleep(wait)
                try:
                    message = await self.ws.get_message()
                except ConnectionClosed as closed:
                    self._closing = (f"closed by peer ({closed.code})" if closed.by_peer
                                     else f"closed: {closed.reason} ({closed.code})")
                    return
            self._read_scope = None
            if self._closing is not None:
                return
            self.last_activity = trio.current_time()
            self.registry.metrics.frames_in += 1
            if isinstance(message, bytes):
                # OCPP-J uses text frames only (§3.3); drop, keep the connection.
                log.warning("%s sent a binary frame (%d bytes); ignored", self.ctx.station_code,
                            len(message))
                continue
            try:
                await self._handle(message)
            except ConnectionClosed:
                self._closing = "closed while answering"
                return

    async def _handle(self, text: str) -> None:
        self._log_frame("<-", text)
        event = self.protocol.receive(text)
        if isinstance(event, CallReceived):
            token = logs.MESSAGE.set(event.call.unique_id)
            try:
                await self._send(await self._answer_call(event))
            finally:
                logs.MESSAGE.reset(token)
        elif isinstance(event, Rejected):
            self.registry.metrics.call_errors_sent[event.error.code] += 1
            log.info("%s sent a bad frame: %s %s", self.ctx.station_code, event.error.code,
                     event.error.description)
            if event.reply is not None:
                await self._send(event.reply)
        elif isinstance(event, ResultReceived | ErrorReceived):
            for warning in event.warnings:
                log.warning("%s %s.conf accepted with a warning: %s", self.ctx.station_code,
                            event.action, warning)
            if self._answer is not None:
                self._answer.send_nowait(event)
        elif isinstance(event, Ignored):
            log.info("%s: ignored frame: %s", self.ctx.station_code, event.reason)

    async def _answer_call(self, event: CallReceived) -> str:
        call, ctx = event.call, self.ctx
        for warning in event.warnings:  # corrected or tolerated: stored, but said
            log.warning("%s %s accepted with a warning: %s", ctx.station_code, call.action,
                        warning)
        if not ctx.accepted and call.action != "BootNotification":
            # OCPP-J errata §3.8: nothing but BootNotification before acceptance.
            return self._error(call, ErrorCode.SecurityError,
                               "station not accepted yet: send BootNotification first")
        try:
            payload = await ROUTES[call.action](ctx, call.payload)
            answer = self.protocol.answer(call, payload)
            self.registry.metrics.calls_by_outcome[call.action, "result"] += 1
            return answer
        except InvalidCall as err:
            return self._error(call, err.code, err.description)
        except DatabaseError as err:
            log.warning("%s %s not stored (%s); answered InternalError so it is retried",
                        ctx.station_code, call.action, err)
            return self._error(call, ErrorCode.InternalError, "could not store; retry later")
        except OcppError:  # our .conf broke its schema: a bug, said in the log
            log.exception("%s %s: invalid answer", ctx.station_code, call.action)
            return self._error(call, ErrorCode.InternalError, "internal error")
        except Exception:
            log.exception("%s %s handler failed", ctx.station_code, call.action)
            return self._error(call, ErrorCode.InternalError, "internal error")

    def _error(self, call: Any, code: str, description: str) -> str:
        self.registry.metrics.call_errors_sent[code] += 1
        self.registry.metrics.calls_by_outcome[call.action, "error"] += 1
        return self.protocol.answer_error(call, code, description)

    def _log_frame(self, direction: str, text: str) -> None:
        """Every frame at DEBUG; at INFO while an operator traces this station
        (`trace`, refreshed by the command bus from the database). Id tags and
        keys never reach a log either way (ocpp16.redact_for_log)."""
        level = logging.INFO if self.trace else logging.DEBUG
        if log.isEnabledFor(level):
            log.log(level, "%s %s %s", self.ctx.station_code, direction, redact_for_log(text))

    async def _send(self, text: str) -> None:
        self._log_frame("->", text)
        await self.ws.send_message(text)

    async def call(self, action: str, payload: dict[str, Any]
                   ) -> ResultReceived | ErrorReceived:
        """Send one CALL and wait for its answer; callers queue (OCPP-J §4.1.1).

        The caller bounds the wait with its own cancel scope (trio.fail_after);
        a cancelled call is forgotten and a late answer ignored. Raises
        ConnectionClosed if the station goes away.
        """
        async with self._call_lock:
            unique_id, text = self.protocol.send_call(action, payload)
            logs.MESSAGE.set(unique_id)  # the caller's task: its lines name this CALL
            send, receive = trio.open_memory_channel[ResultReceived | ErrorReceived](1)
            self._answer = send
            try:
                await self._send(text)
                return await receive.receive()
            except trio.EndOfChannel:  # the session ended first (see _finish)
                raise self.ws.closed or ConnectionClosed(1006, "session ended") from None
            finally:
                self._answer = None
                if self.protocol.outstanding_call == unique_id:
                    self.protocol.cancel_call()

    async def _ping(self, interval: float) -> None:
        # Half-open TCP (a charger that lost power) is found by a missing pong.
        while True:
            await trio.sleep(interval)
            with trio.move_on_after(max(interval / 2, 5)) as scope:
                try:
                    await self.ws.ping()
                except ConnectionClosed:
                    return
            if scope.cancelled_caught:
                log.warning("%s did not answer a ping; closing", self.ctx.station_code)
                self.close("ping timeout", timed_out=True)
                return
            self.last_activity = trio.current_time()

    async def _finish(self) -> None:
        reason = self._closing or "connection task ended"
        self.registry.detach(self)
        if self._answer is not None:  # a command waiting for an answer that cannot come
            self._answer.close()
        with trio.move_on_after(2):
            try:
                await self.ws.aclose(self._close_code, reason[:120])
            except Exception:  # noqa: BLE001 - the socket may be long gone
                pass
        # Bounded: a stuck database must not hold a shutdown forever; the
        # housekeeping sweep marks the station offline later in that case.
        with trio.move_on_after(10) as bounded:
            await self._mark_offline(reason)
        if bounded.cancelled_caught:
            log.error("%s: could not mark offline in time", self.ctx.station_code)
        log.info("%s disconnected: %s", self.ctx.station_code, reason)

    async def _mark_offline(self, reason: str) -> None:
        try:
            await self.writer.submit(SQL.station_disconnected, {
                "station_id": self.ctx.station_id, "connected_at": self.connected_at,
                "at": dt.datetime.now(dt.UTC), "reason": reason[:200],
                "event_type": "timed_out" if self._timed_out else "disconnected"})
        except DatabaseError as err:
            # The housekeeping sweep marks it offline once the database is back.
            log.error("%s: could not mark offline: %s", self.ctx.station_code, err)


class SessionRegistry:
    """The live sessions of this process, one per station."""

    def __init__(self, node_id: uuid.UUID | None = None) -> None:
        self.node_id = node_id or uuid.uuid4()  # this process, as csms_nodes.id
        self._sessions: dict[uuid.UUID, StationSession] = {}
        self.metrics = Metrics()

    def attach(self, session: StationSession) -> StationSession | None:
        previous = self._sessions.get(session.ctx.station_id)
        self._sessions[session.ctx.station_id] = session
        self.metrics.connections_opened += 1
        if previous is not None:
            self.metrics.connections_replaced += 1
        return previous

    def detach(self, session: StationSession) -> None:
        if self._sessions.get(session.ctx.station_id) is session:
            del self._sessions[session.ctx.station_id]

    def get(self, station_id: uuid.UUID) -> StationSession | None:
        return self._sessions.get(station_id)

    def sessions(self) -> list[StationSession]:
        return list(self._sessions.values())

    def close_all(self, reason: str, *, code: int = 1000) -> None:
        for session in self.sessions():
            session.close(reason, code=code)
