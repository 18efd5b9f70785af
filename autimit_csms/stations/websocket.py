"""The server side of one WebSocket connection (RFC 6455), on the sans-I/O wsproto.

Owns: the upgrade (RFC 6455 §4.2: checking the request headers the listener already
parsed, and the 101 answer -- no second HTTP parser on the way), reading
whole messages (fragments joined, a size limit, pings answered, the peer's close
answered), sending under one lock, our pings and their pongs, and our closing
handshake. It has no task of its own: the session's read loop drives it, so a message
costs one task switch, not two, and a connection holds no reader task, channel or
buffers beyond wsproto's (trio-websocket's did: docs/performance.md has the A/B).
The price: while the session handles a message, or registers the connection, a
charger's ping or close waits in the socket until the session reads again -- as long
as one database write at most. It does not close the TCP stream (the listener owns
it) and must not know OCPP.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import itertools
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, cast

import trio
from wsproto import ConnectionType
from wsproto.connection import Connection, ConnectionState
from wsproto.events import (
    BytesMessage,
    CloseConnection,
    Ping,
    Pong,
    TextMessage,
)

RECEIVE_BYTES: Final = 16384
ABNORMAL: Final = 1006  # RFC 6455 §7.1.5: closed without a close frame
TOO_BIG: Final = 1009
_ACCEPT_GUID: Final = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 §1.3


class UpgradeRefused(Exception):
    """Not a WebSocket upgrade we can accept: the HTTP status and headers to answer."""

    def __init__(self, status: int, headers: list[tuple[bytes, bytes]] | None = None) -> None:
        super().__init__(status)
        self.status, self.headers = status, headers or []


@dataclass(frozen=True)
class Upgrade:
    key: bytes                    # Sec-WebSocket-Key, checked
    subprotocols: tuple[str, ...]  # as offered, in order


def upgrade_request(headers: Mapping[bytes, bytes]) -> Upgrade:
    """What a GET's headers (lower-case names, repeated ones joined by ", ") ask for,
    checked as RFC 6455 §4.2.1 requires; raises UpgradeRefused."""
    if b"websocket" not in _tokens(headers.get(b"upgrade", b"")) or b"upgrade" not in _tokens(
            headers.get(b"connection", b"")):
        raise UpgradeRefused(400)
    if headers.get(b"sec-websocket-version") != b"13":
        raise UpgradeRefused(426, [(b"Sec-WebSocket-Version", b"13")])  # §4.4
    key = headers.get(b"sec-websocket-key", b"")
    try:
        if len(base64.b64decode(key, validate=True)) != 16:
            raise UpgradeRefused(400)
    except binascii.Error:
        raise UpgradeRefused(400) from None
    offered = headers.get(b"sec-websocket-protocol", b"").decode("latin-1")
    return Upgrade(key, tuple(p.strip() for p in offered.split(",") if p.strip()))


def _tokens(value: bytes) -> list[bytes]:
    return [token.strip().lower() for token in value.split(b",")]


class ConnectionClosed(Exception):
    """The WebSocket is closed: the close code (ours or the peer's) and reason."""

    def __init__(self, code: int, reason: str = "", *, by_peer: bool = True) -> None:
        super().__init__(f"{code} {reason}".strip())
        self.code, self.reason, self.by_peer = code, reason, by_peer


class WebSocket:
    def __init__(self, stream: trio.abc.Stream, proto: Connection, *,
                 max_message_bytes: int) -> None:
        self._stream = stream
        self._proto = proto
        self._max_message_bytes = max_message_bytes
        self._send_lock = trio.Lock()
        self._parts: list[str | bytes] = []
        self._size = 0
        self._messages: deque[str | bytes] = deque()
        self._pongs: dict[bytes, trio.Event] = {}
        self._ping_ids = itertools.count(1)
        self.closed: ConnectionClosed | None = None  # set once, when it closed

    @classmethod
    async def accept(cls, stream: trio.abc.Stream, upgrade: Upgrade, subprotocol: str | None,
                     already_read: bytes = b"", *, max_message_bytes: int) -> WebSocket:
        """Answer 101 (RFC 6455 §4.2.2) and open the connection; `already_read`: bytes
        that came after the request."""
        digest = hashlib.sha1(upgrade.key + _ACCEPT_GUID, usedforsecurity=False).digest()
        lines = [b"HTTP/1.1 101 Switching Protocols", b"Upgrade: websocket",
                 b"Connection: Upgrade", b"Sec-WebSocket-Accept: " + base64.b64encode(digest)]
        if subprotocol is not None:
            lines.append(b"Sec-WebSocket-Protocol: " + subprotocol.encode())
        await stream.send_all(b"\r\n".join(lines) + b"\r\n\r\n")
        ws = cls(stream, Connection(ConnectionType.SERVER, trailing_data=already_read),
                 max_message_bytes=max_message_bytes)
        await ws._handle_events()  # frames that came with the request
        return ws

    async def get_message(self) -> str | bytes:
        """The next whole message; raises ConnectionClosed once the connection is closed."""
        while not self._messages:
            if self.closed is not None:
                raise self.closed
            await self._receive()
        return self._messages.popleft()

    async def send_message(self, message: str) -> None:
        await self._send(TextMessage(data=message))

    async def ping(self) -> None:
        """Send a ping and wait for its pong (read by whoever reads the connection)."""
        payload = next(self._ping_ids).to_bytes(4, "big")
        self._pongs[payload] = answered = trio.Event()
        try:
            await self._send(Ping(payload=payload))
            await answered.wait()
        finally:
            del self._pongs[payload]
        if self.closed is not None:
            raise self.closed

    async def aclose(self, code: int = 1000, reason: str = "") -> None:
        """Our closing handshake: send a close frame, then read until the peer's
        answer (bounded by the caller's cancel scope). Safe when already closed."""
        if self._proto.state is ConnectionState.OPEN:
            try:
                await self._send(CloseConnection(code=code, reason=reason))
            except ConnectionClosed:
                return
        while self.closed is None:
            await self._receive()

    async def _receive(self) -> None:
        try:
            data = await self._stream.receive_some(RECEIVE_BYTES)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            data = b""
        if not data:
            self._closed(ABNORMAL, "connection lost")
            return
        self._proto.receive_data(bytes(data))
        await self._handle_events()

    async def _handle_events(self) -> None:
        for event in self._proto.events():
            if isinstance(event, TextMessage | BytesMessage):
                await self._message_part(event)
            elif isinstance(event, Ping):
                await self._send(event.response())
            elif isinstance(event, Pong):
                if (answered := self._pongs.get(bytes(event.payload))) is not None:
                    answered.set()
            elif isinstance(event, CloseConnection):
                await self._peer_closed(event)
            if self.closed is not None:
                return

    async def _message_part(self, event: TextMessage | BytesMessage) -> None:
        data = event.data if isinstance(event.data, str) else bytes(event.data)
        self._parts.append(data)
        self._size += len(data)
        if self._size > self._max_message_bytes:
            self._parts, self._size = [], 0
            reason = f"message over {self._max_message_bytes} bytes"
            await self._send_close(TOO_BIG, reason)
        elif event.message_finished:
            parts, self._parts, self._size = self._parts, [], 0
            if len(parts) == 1:
                self._messages.append(parts[0])
            elif isinstance(event, TextMessage):
                self._messages.append("".join(cast("list[str]", parts)))
            else:
                self._messages.append(b"".join(cast("list[bytes]", parts)))

    async def _peer_closed(self, event: CloseConnection) -> None:
        state = self._proto.state
        if state is ConnectionState.REMOTE_CLOSING:  # the peer started it: answer
            await self._send_closing(event.response())
            self._closed(event.code, event.reason or "")
        elif state is ConnectionState.CLOSED:  # the answer to our close
            self._closed(event.code, event.reason or "")
        else:  # wsproto found a protocol error (bad frame, bad UTF-8): close with its code
            await self._send_close(event.code, event.reason or "")

    async def _send_close(self, code: int, reason: str) -> None:
        """Close after a local decision while reading; the caller learns it from `closed`."""
        await self._send_closing(CloseConnection(code=code, reason=reason))
        self._closed(code, reason, by_peer=False)

    async def _send_closing(self, event: CloseConnection) -> None:
        async with self._send_lock:
            if self._proto.state not in (ConnectionState.OPEN, ConnectionState.REMOTE_CLOSING):
                return  # our close frame is already out
            try:
                await self._stream.send_all(self._proto.send(event))
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass  # closing anyway

    async def _send(self, event: TextMessage | Ping | Pong | CloseConnection) -> None:
        # Checked and framed under the lock: a close framed by another task while we
        # waited for it ends the connection for this send too.
        async with self._send_lock:
            if self.closed is not None:
                raise self.closed
            if self._proto.state is not ConnectionState.OPEN:
                raise ConnectionClosed(ABNORMAL, "closing")
            try:
                await self._stream.send_all(self._proto.send(event))
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._closed(ABNORMAL, "connection lost")
                raise ConnectionClosed(ABNORMAL, "connection lost") from None

    def _closed(self, code: int, reason: str, *, by_peer: bool = True) -> None:
        if self.closed is None:
            self.closed = ConnectionClosed(code, reason, by_peer=by_peer)
        for answered in self._pongs.values():  # nobody waits for a pong that cannot come
            answered.set()
