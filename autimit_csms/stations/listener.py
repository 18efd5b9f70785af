"""The OCPP-J 1.6 listener: admission and handshake decisions before the upgrade, then a session.

Owns: accepting TCP itself (so a source over its failure budget is dropped before
any HTTP parsing or TLS), path and Basic Auth checks (ADR 0001 connection flow),
the limits of stations/limits.py applied at the door, subprotocol negotiation
(OCPP-J §3), TLS, the connections nursery and its graceful close, and the
heartbeat watchdog. Refusals happen before the upgrade, so a refused charger
never gets a WebSocket.
"""

from __future__ import annotations

import base64
import binascii
import errno
import itertools
import logging
import os
import ssl
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Final
from urllib.parse import unquote

import trio

from .. import logs
from ..credentials import Verifier
from ..db import SQL, Database, DatabaseError, Row
from ..db.writer import GroupCommitWriter
from ..handlers import StationContext
from ..ocpp16 import OcppProtocol, SchemaRegistry
from ..settings import Settings, split_listen
from ..workers import shared_socket
from .limits import Admission, Pace, Standing, source_key
from .session import SessionRegistry, StationSession
from .websocket import ConnectionClosed, Upgrade, UpgradeRefused, WebSocket, upgrade_request

log = logging.getLogger(__name__)

PATH_PREFIX: Final = "/ocpp/1.6/"
SUBPROTOCOL: Final = "ocpp1.6"
# Identical for unknown station, inactive station, wrong user and wrong secret:
# deliberately not the specification's SHOULD-404 for unknown identities
# (OCPP-J §5.2), so station codes cannot be probed.
_UNAUTHORIZED: Final = [(b"WWW-Authenticate", b'Basic realm="Autimit OCPP", charset="UTF-8"')]
HANDSHAKE_TIMEOUT: Final = 10.0  # seconds from accept to a complete HTTP request (slowloris)
CLOSE_TIMEOUT: Final = 5.0       # seconds a finished connection gets to close cleanly
RETRY_AFTER: Final = b"60"  # throttled or full: budgets refill within a minute
# accept(2) errors: the system is out of something (wait), or one peer's trouble (skip).
ACCEPT_CAPACITY_ERRNOS: Final = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}
ACCEPT_IGNORED_ERRNOS: Final = {errno.ECONNABORTED, errno.EPROTO, errno.EPERM,
                                errno.ENETDOWN, errno.ENOPROTOOPT, errno.EHOSTDOWN,
                                errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ETIMEDOUT,
                                errno.ECONNRESET, errno.EOPNOTSUPP}


@dataclass
class _Wave:
    codes: set[str] = field(default_factory=set)
    rows: dict[str, Row] = field(default_factory=dict)
    error: DatabaseError | None = None
    done: trio.Event = field(default_factory=trio.Event)


class LoginLookup:
    """Station logins for handshakes, looked up in waves: the codes asked for while one
    query runs share the next one, so a reconnect storm costs a query and a thread hop
    per wave instead of per station (docs/performance.md)."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._gathering: _Wave | None = None
        self._one_at_a_time = trio.Lock()

    async def find(self, code: str) -> Row | None:
        wave = self._gathering
        if wave is None:
            wave = self._gathering = _Wave()
            # Shielded: the other handshakes of the wave wait for this task's query.
            with trio.CancelScope(shield=True):
                wave.codes.add(code)
                async with self._one_at_a_time:  # meanwhile, others join this wave
                    self._gathering = None
                    try:
                        rows = await self._db.fetch_all(SQL.find_station_logins,
                                                        {"codes": sorted(wave.codes)})
                        wave.rows = {row["requested"]: row for row in rows}
                    except DatabaseError as err:
                        wave.error = err
                    finally:
                        wave.done.set()
        else:
            wave.codes.add(code)
            await wave.done.wait()
        if wave.error is not None:
            raise wave.error
        return wave.rows.get(code)


class _Refused(Exception):
    """A handshake refusal: the status and headers to answer, and how it is counted."""

    def __init__(self, status: int, headers: list[tuple[bytes, bytes]], kind: str,
                 code: str | None = None) -> None:
        super().__init__(kind)
        self.status, self.headers, self.kind, self.code = status, headers, kind, code


@dataclass
class OcppService:
    """What the listener and its sessions share; built once by the server."""

    settings: Settings
    db: Database
    writer: GroupCommitWriter
    verifier: Verifier
    schemas: SchemaRegistry
    sessions: SessionRegistry
    limits: Admission = field(init=False)
    logins: LoginLookup = field(init=False)

    def __post_init__(self) -> None:
        self.limits = Admission(self.settings)
        self.logins = LoginLookup(self.db)
        self._handshakes: set[trio.CancelScope] = set()
        # Short, unique in this process's log: "c" + a hexadecimal counter.
        self._connection_ids = (f"c{n:x}" for n in itertools.count(1))
        self._stopping = False

    async def serve(self, shutdown: trio.Event,
                    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen until `shutdown`; then stop accepting, close sessions, wait for them."""
        host, port = split_listen(self.settings.ocpp_listen)
        if self.settings.reuse_port:  # one of several worker processes (workers.py)
            listeners = [trio.SocketListener(trio.socket.from_stdlib_socket(
                shared_socket(self.settings.ocpp_listen)))]
        else:
            listeners = await trio.open_tcp_listeners(port, host=host)
        context = self.ssl_context()
        async with trio.open_nursery() as connections:
            background = trio.CancelScope()

            async def run_background() -> None:
                with background:
                    async with trio.open_nursery() as nursery:
                        for listener in listeners:
                            nursery.start_soon(self._accept, listener, context, connections)
                        nursery.start_soon(self._watchdog)
                        nursery.start_soon(self.limits.refusals.run)

            connections.start_soon(run_background)
            bound = int(listeners[0].socket.getsockname()[1])
            log.info("OCPP-J 1.6 listener on %s://%s:%d%s{stationCode}",
                     "wss" if self.settings.tls_cert else "ws", host, bound, PATH_PREFIX)
            task_status.started(bound)
            await shutdown.wait()
            background.cancel()
            self._stopping = True
            for handshake in self._handshakes:  # nothing to finish there: let them go now
                handshake.cancel()
            self.sessions.close_all("server shutting down", code=1001)  # going away

    def ssl_context(self) -> ssl.SSLContext | None:
        if not self.settings.tls_cert:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2  # security whitepaper §2 (SP2)
        context.load_cert_chain(self.settings.tls_cert, self.settings.tls_key)
        return context

    async def _accept(self, listener: trio.SocketListener, context: ssl.SSLContext | None,
                      connections: trio.Nursery) -> None:
        """Accept TCP connections for ever; each admitted one gets its own task.

        A source still failing after being told to wait is closed right here:
        one accept and one close, no task, no HTTP parse, no TLS -- the cheapest
        a flood from one address can be made. (trio.serve_listeners, with our
        own check between accept and the task.)
        """
        while True:
            try:
                sock, address = await listener.socket.accept()
            except OSError as exc:
                if exc.errno in ACCEPT_CAPACITY_ERRNOS:  # out of descriptors or memory
                    log.error("accept failed: %s; retrying in 0.1 s", os.strerror(exc.errno))
                    await trio.sleep(0.1)
                elif exc.errno not in ACCEPT_IGNORED_ERRNOS:
                    raise
                continue
            peer = (str(address[0]), int(address[1])) if isinstance(address, tuple) else ("?", 0)
            source = source_key(peer[0])
            if self.limits.sources.standing(source) is Standing.BLOCKED:
                self.limits.refusals.count(source, "dropped")
                sock.close()
                continue
            stream: trio.abc.Stream = trio.SocketStream(sock)
            if context is not None:
                stream = trio.SSLStream(stream, context, server_side=True,
                                        https_compatible=True)
            connections.start_soon(self._connection, stream, peer, source)

    async def _connection(self, stream: trio.abc.Stream, peer: tuple[str, int],
                          source: str) -> None:
        """One accepted TCP connection, from admission to the end of its session.

        The request head is read and judged here, before any WebSocket machinery:
        a refusal is one canned response, the cheapest answer a flood can get.
        Only an admitted request is handed to the WebSocket (stations/websocket.py).
        """
        limits = self.limits
        full = limits.over_limit(source)
        try:
            with limits.holding(source):
                head: tuple[bytes, bytes] | None = None
                with trio.move_on_after(HANDSHAKE_TIMEOUT) as handshake:
                    self._handshakes.add(handshake)
                    head = await _read_head(stream)
                self._handshakes.discard(handshake)
                if head is None:
                    if not self._stopping:  # nothing complete in time, or not HTTP at all
                        limits.failed(source, "no_request")
                    return
                try:
                    code, header, upgrade = self._admissible(head[0], full)
                    login = await self._authenticate(code, header, source)
                except _Refused as refused:
                    if refused.kind == "over_limit":
                        limits.refusals.count(source, refused.kind)
                    else:
                        limits.failed(source, refused.kind, refused.code)
                    await stream.send_all(_response(refused.status, refused.headers))
                    return
                except DatabaseError:
                    log.warning("handshake from %s refused: database unavailable", source)
                    await stream.send_all(_response(503, [(b"Retry-After", b"30")]))
                    return
                # Every log line of this connection's tasks names it (autimit_csms.logs).
                logs.STATION.set(login[0].station_code)
                logs.CONNECTION.set(next(self._connection_ids))
                await self._upgrade(stream, upgrade, head[1], *login, f"{peer[0]}:{peer[1]}")
        except (trio.BrokenResourceError, trio.ClosedResourceError, ConnectionClosed):
            pass  # the peer left before our answer
        except Exception:
            # One connection's failure must never take the listener down.
            log.exception("connection task failed")
        finally:
            with trio.move_on_after(CLOSE_TIMEOUT) as closing:
                await stream.aclose()
            if closing.cancelled_caught:
                await trio.aclose_forcefully(stream)

    def _admissible(self, head: bytes, full: bool) -> tuple[str, bytes | None, Upgrade]:
        """(station code, Authorization header, upgrade) of a request worth checking;
        else _Refused."""
        request = _parse_head(head)
        if request is None:
            raise _Refused(400, [], "bad_request")
        path, headers = request
        code = station_code_from_path(path)
        if code is None:
            raise _Refused(404, [], "bad_path")
        try:
            upgrade = upgrade_request(headers)
        except UpgradeRefused as refused:
            raise _Refused(refused.status, refused.headers, "bad_request") from None
        if full or self._stopping:
            raise _Refused(503, [(b"Retry-After", RETRY_AFTER)], "over_limit")
        return code, headers.get(b"authorization"), upgrade

    async def _upgrade(self, stream: trio.abc.Stream, upgrade: Upgrade, already_read: bytes,
                       ctx: StationContext, relaxed: bool, remote: str) -> None:
        if self._stopping:
            return
        limit = self.settings.max_frame_bytes
        if SUBPROTOCOL not in upgrade.subprotocols:
            # OCPP-J §3.1.2: complete the handshake without the header, then close.
            ws = await WebSocket.accept(stream, upgrade, None, max_message_bytes=limit)
            log.info("%s offered no %s subprotocol (%s); closed", ctx.station_code, SUBPROTOCOL,
                     ", ".join(upgrade.subprotocols) or "none")
            with trio.move_on_after(CLOSE_TIMEOUT):
                await ws.aclose(1002, f"subprotocol {SUBPROTOCOL} required")
            return
        ws = await WebSocket.accept(stream, upgrade, SUBPROTOCOL, already_read,
                                    max_message_bytes=limit)
        settings = self.settings
        pace = (Pace(settings.max_calls_per_second, settings.call_burst)
                if settings.max_calls_per_second > 0 else None)
        session = StationSession(ws, OcppProtocol(self.schemas, relaxed=relaxed), ctx,
                                 self.sessions, remote, pace=pace)
        try:
            await session.run(settings.ws_ping_interval)
        except DatabaseError as err:
            log.warning("%s: database unavailable at connect (%s); closing", ctx.station_code,
                        err)

    async def _authenticate(self, code: str, header: bytes | None, source: str
                            ) -> tuple[StationContext, bool]:
        """The station's context and its relaxed-validation flag; raises _Refused.

        Order matters for floods: the budgets are checked before the database
        and bcrypt; an unknown code costs a lookup and a sleep as long as a
        bcrypt check (timing alike), never the check itself.
        """
        credentials = basic_credentials(header)
        # ADR 0001: the Basic Auth username must be the stationCode of the path.
        if credentials is None or credentials[0] != code:
            raise _Refused(401, _UNAUTHORIZED, "malformed", code)
        secret = credentials[1]
        throttled = self.limits.standing(source, code) is not Standing.OK
        known_hash = self.verifier.verified_before(secret, user=code)
        if throttled and known_hash is None:
            raise self._throttled(code)
        row = await self.logins.find(code)
        if row is None:
            if not throttled:
                await trio.sleep(min(self.verifier.typical_seconds, 0.5))
            raise self._throttled(code) if throttled else _Refused(
                401, _UNAUTHORIZED, "unknown", code)
        stored = row["station_secret_hash"]
        if throttled:
            if known_hash != stored:  # rotated since: a full check must wait
                raise self._throttled(code)
        elif not await self.verifier.verify(secret, stored, user=code):
            raise _Refused(401, _UNAUTHORIZED, "wrong_secret", code)
        return StationContext(
            station_id=row["id"], station_code=row["station_code"],
            account_id=row["account_id"], registration=row["registration_status"] or "new",
            heartbeat_interval=self.settings.heartbeat_interval,
            writer=self.writer, db=self.db), row["ocpp_relaxed"]

    @staticmethod
    def _throttled(code: str) -> _Refused:
        # One fixed Retry-After: it must not depend on whether the code exists.
        return _Refused(429, [(b"Retry-After", RETRY_AFTER)], "throttled", code)

    async def _watchdog(self) -> None:
        """Close connections silent beyond the limit (no frame, no pong).

        Only this process's sockets: stations left online by a process that died
        are swept by the node liveness rule (stations/commands.py, docs/ocpp.md).
        """
        limit = self.settings.heartbeat_interval * self.settings.offline_after_heartbeats
        period = max(1.0, min(60.0, limit / 4))
        while True:
            await trio.sleep(period)
            clock = trio.current_time()
            for session in self.sessions.sessions():
                if clock - session.last_activity > limit:
                    log.warning("%s silent for %.0f s; closing", session.ctx.station_code,
                                clock - session.last_activity)
                    session.close(f"silent for more than {limit:.0f} s", timed_out=True)


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


MAX_HEAD: Final = 8192  # bytes of request line + headers; a real upgrade is ~300


async def _read_head(stream: trio.abc.Stream) -> tuple[bytes, bytes] | None:
    """(request head through its blank line, bytes read after it), or None."""
    data = b""
    while (end := data.find(b"\r\n\r\n")) < 0:
        if len(data) > MAX_HEAD:
            return None
        try:
            chunk = await stream.receive_some(4096)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return None  # reset, or a failed TLS handshake
        if not chunk:
            return None
        data += chunk
    return data[:end + 4], data[end + 4:]


def _parse_head(head: bytes) -> tuple[str, dict[bytes, bytes]] | None:
    """Path and headers (lower-case names; a repeated header's values joined by ", ",
    RFC 9110 §5.3) of a GET upgrade; None if not one."""
    request_line, *lines = head[:-4].split(b"\r\n")
    parts = request_line.split(b" ")
    if len(parts) != 3 or parts[0] != b"GET" or not parts[2].startswith(b"HTTP/1."):
        return None
    headers: dict[bytes, bytes] = {}
    for line in lines:
        name, sep, value = line.partition(b":")
        if not sep:
            return None
        name, value = name.strip().lower(), value.strip()
        headers[name] = headers[name] + b", " + value if name in headers else value
    if b"websocket" not in headers.get(b"upgrade", b"").lower():
        return None
    try:
        return parts[1].decode("ascii"), headers
    except UnicodeDecodeError:
        return None


def _response(status: int, headers: list[tuple[bytes, bytes]]) -> bytes:
    lines = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}".encode(),
             *(name + b": " + value for name, value in headers),
             b"Content-Length: 0", b"Connection: close"]
    return b"\r\n".join(lines) + b"\r\n\r\n"


