"""The OCPP-J 1.6 listener: handshake decisions before the upgrade, then a session.

Owns: path and Basic Auth checks (ADR 0001 connection flow), subprotocol
negotiation (OCPP-J §3), TLS, the connections nursery and its graceful close,
and the heartbeat watchdog. Refusals happen before the upgrade, so a refused
charger never gets a WebSocket.
"""

from __future__ import annotations

import base64
import binascii
import logging
import ssl
from dataclasses import dataclass
from typing import Final
from urllib.parse import unquote

import trio
from trio_websocket import WebSocketRequest, serve_websocket

from ..credentials import Verifier
from ..db import SQL, Database, DatabaseError
from ..db.writer import GroupCommitWriter
from ..handlers import StationContext
from ..handlers.context import now
from ..ocpp16 import OcppProtocol, SchemaRegistry
from ..settings import Settings, split_listen
from .session import SessionRegistry, StationSession

log = logging.getLogger(__name__)

PATH_PREFIX: Final = "/ocpp/1.6/"
SUBPROTOCOL: Final = "ocpp1.6"
# Identical for unknown station, inactive station, wrong user and wrong secret:
# deliberately not the specification's SHOULD-404 for unknown identities
# (OCPP-J §5.2), so station codes cannot be probed.
_UNAUTHORIZED: Final = [(b"WWW-Authenticate", b'Basic realm="Autimit OCPP", charset="UTF-8"')]


@dataclass
class OcppService:
    """What the listener and its sessions share; built once by the server."""

    settings: Settings
    db: Database
    writer: GroupCommitWriter
    verifier: Verifier
    schemas: SchemaRegistry
    sessions: SessionRegistry

    async def serve(self, shutdown: trio.Event,
                    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen until `shutdown`; then stop accepting, close sessions, wait for them."""
        host, port = split_listen(self.settings.ocpp_listen)
        async with trio.open_nursery() as connections:
            listener = trio.CancelScope()

            async def listen(task_status: trio.TaskStatus[int]) -> None:
                with listener:
                    await serve_websocket(
                        self._handle, host, port, self.ssl_context(),
                        handler_nursery=connections,
                        max_message_size=self.settings.max_frame_bytes,
                        task_status=task_status)

            server = await connections.start(listen)
            watchdog = trio.CancelScope()

            async def watch() -> None:
                with watchdog:
                    await self._watchdog()

            connections.start_soon(watch)
            log.info("OCPP-J 1.6 listener on %s://%s:%d%s{stationCode}",
                     "wss" if self.settings.tls_cert else "ws", host, server.port, PATH_PREFIX)
            task_status.started(server.port)
            await shutdown.wait()
            listener.cancel()
            watchdog.cancel()
            self.sessions.close_all("server shutting down", code=1001)  # going away

    def ssl_context(self) -> ssl.SSLContext | None:
        if not self.settings.tls_cert:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2  # security whitepaper §2 (SP2)
        context.load_cert_chain(self.settings.tls_cert, self.settings.tls_key)
        return context

    async def _handle(self, request: WebSocketRequest) -> None:
        try:
            await self._handshake_and_run(request)
        except Exception:
            # One connection's failure must never take the listener down.
            log.exception("connection task failed")

    async def _handshake_and_run(self, request: WebSocketRequest) -> None:
        code = station_code_from_path(request.path)
        if code is None:
            await request.reject(404)
            return
        try:
            login = await self._authenticate(code, dict(request.headers).get(b"authorization"))
        except DatabaseError:
            log.warning("handshake of %r refused: database unavailable", code)
            await request.reject(503, extra_headers=[(b"Retry-After", b"30")])
            return
        if login is None:
            log.info("handshake of %r refused: bad credentials", code)
            await request.reject(401, extra_headers=_UNAUTHORIZED)
            return
        ctx, relaxed = login
        if SUBPROTOCOL not in request.proposed_subprotocols:
            # OCPP-J §3.1.2: complete the handshake without the header, then close.
            ws = await request.accept()
            log.info("%s offered no %s subprotocol (%s); closed", ctx.station_code, SUBPROTOCOL,
                     ", ".join(request.proposed_subprotocols) or "none")
            await ws.aclose(1002, f"subprotocol {SUBPROTOCOL} required")
            return
        ws = await request.accept(subprotocol=SUBPROTOCOL)
        try:
            remote = str(ws.remote)
        except OSError:  # the peer is already gone; the session finds out on read
            remote = "?"
        session = StationSession(ws, OcppProtocol(self.schemas, relaxed=relaxed), ctx,
                                 self.sessions, remote)
        try:
            await session.run(self.settings.ws_ping_interval)
        except DatabaseError as err:
            log.warning("%s: database unavailable at connect (%s); closing", code, err)

    async def _authenticate(self, code: str, header: bytes | None
                            ) -> tuple[StationContext, bool] | None:
        """The station's context and its relaxed-validation flag, or None: refuse."""
        credentials = basic_credentials(header)
        # ADR 0001: the Basic Auth username must be the stationCode of the path.
        if credentials is None or credentials[0] != code:
            return None
        row = await self.db.fetch_one(SQL.find_station_login, {"station_code": code})
        if row is None or not await self.verifier.verify(credentials[1],
                                                         row["station_secret_hash"]):
            return None
        return StationContext(
            station_id=row["id"], station_code=row["station_code"],
            account_id=row["account_id"], registration=row["registration_status"] or "new",
            heartbeat_interval=self.settings.heartbeat_interval,
            writer=self.writer, db=self.db), row["ocpp_relaxed"]

    async def _watchdog(self) -> None:
        """Close connections silent beyond the limit; sweep stations nobody holds."""
        limit = self.settings.heartbeat_interval * self.settings.offline_after_heartbeats
        period = max(1.0, min(60.0, limit / 4))
        while True:
            await trio.sleep(period)
            clock = trio.current_time()
            held = []
            for session in self.sessions.sessions():
                if clock - session.last_activity > limit:
                    log.warning("%s silent for %.0f s; closing", session.ctx.station_code,
                                clock - session.last_activity)
                    session.close(f"silent for more than {limit:.0f} s", timed_out=True)
                else:
                    held.append(session.ctx.station_id)
            try:
                await self.writer.submit(SQL.touch_stations, {
                    "stations": held, "at": now()})
                rows = await self.writer.submit(SQL.mark_silent_stations_offline, {
                    "silence": f"{limit} seconds", "held": held})
            except DatabaseError as err:
                log.warning("watchdog: database unavailable (%s)", err)
                continue
            for row in rows:
                log.info("station %s marked offline: silent and not connected here",
                         row["station_id"])


def station_code_from_path(path: str) -> str | None:
    """`/ocpp/1.6/{stationCode}`, percent-decoded (OCPP-J §3.1.1); None if not that."""
    path = path.split("?", 1)[0]
    if not path.startswith(PATH_PREFIX):
        return None
    try:
        code = unquote(path[len(PATH_PREFIX):], errors="strict")
    except UnicodeDecodeError:
        return None
    if not code or "/" in code or len(code) > 48:
        return None
    return code


def basic_credentials(header: bytes | None) -> tuple[str, str] | None:
    if not header:
        return None
    scheme, _, encoded = header.partition(b" ")
    if scheme.lower() != b"basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None

