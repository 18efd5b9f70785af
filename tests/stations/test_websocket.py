"""The server's own WebSocket layer (stations/websocket.py) against a wsproto client:
the upgrade (RFC 6455 §4.2), fragments, pings both ways, the closing handshake and
protocol errors, on a real listener. (Oversize messages, binary frames:
test_bad_input.py.)"""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import psycopg
import trio
from wsproto import ConnectionType, WSConnection
from wsproto.connection import Connection
from wsproto.events import (
    AcceptConnection,
    CloseConnection,
    Event,
    Ping,
    Pong,
    Request,
    TextMessage,
)
from wsproto.frame_protocol import Opcode

from autimit_csms.db import Database
from autimit_csms.server import Server

from ..conftest import server_settings
from .conftest import Provisioned


class Charger:
    """A charger on a bare wsproto client: every frame it receives is kept in `events`."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream, self.proto = stream, WSConnection(ConnectionType.CLIENT)
        self.events: list[Event] = []
        self.answer_pings = True

    @classmethod
    async def connect(cls, server: Server, station: Provisioned) -> Charger:
        charger = cls(await trio.open_tcp_stream("127.0.0.1", server.ocpp_port))
        token = base64.b64encode(f"{station.code}:{station.secret}".encode())
        await charger.send(Request(host="127.0.0.1", target=f"/ocpp/1.6/{station.code}",
                                   subprotocols=["ocpp1.6"],
                                   extra_headers=[(b"authorization", b"Basic " + token)]))
        accepted = await charger.next(AcceptConnection)
        assert accepted.subprotocol == "ocpp1.6"
        return charger

    async def send(self, event: Event) -> None:
        await self.stream.send_all(self.proto.send(event))

    async def send_raw(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def next(self, kind: type[Any]) -> Any:
        """Read until an event of `kind` arrives (pings answered meanwhile)."""
        while True:
            for event in self.proto.events():
                self.events.append(event)
                if isinstance(event, Ping) and self.answer_pings:
                    await self.send(event.response())
                if isinstance(event, kind):
                    return event
            data = await self.stream.receive_some(65536)
            assert data, "the server closed the TCP connection first"
            self.proto.receive_data(data)


def connection_events(db_url: str, station_id: str) -> list[tuple[str, str]]:
    with psycopg.connect(db_url) as conn:
        return conn.execute("SELECT event_type, reason FROM station_connection_events "
                            "WHERE station_id = %s AND event_type <> 'connected' "
                            "ORDER BY occurred_at", (station_id,)).fetchall()


async def wait_for_disconnect(db_url: str, station_id: str) -> tuple[str, str]:
    with trio.fail_after(5):
        while not (events := connection_events(db_url, station_id)):  # noqa: ASYNC110
            await trio.sleep(0.05)
    return events[0]


async def test_a_fragmented_call_is_joined_and_answered(server: Server,
                                                        station: Provisioned) -> None:
    charger = await Charger.connect(server, station)
    text = json.dumps([2, "frag-1", "BootNotification", {"chargePointVendor": "Acme",
                                                         "chargePointModel": "Ünø"}])
    thirds = [text[:10], text[10:30], text[30:]]
    with trio.fail_after(5):
        for number, part in enumerate(thirds):
            await charger.send(TextMessage(data=part, message_finished=number == 2))
        answer = await charger.next(TextMessage)
    message = json.loads(answer.data)
    assert message[:2] == [3, "frag-1"] and message[2]["status"] == "Accepted"


async def test_pings_both_ways(db: Database, db_url: str, station: Provisioned,
                               nursery: trio.Nursery) -> None:
    pinging: Server = await nursery.start(Server(server_settings(db_url, ws_ping_interval=0.2),
                                                 db).run)
    charger = await Charger.connect(pinging, station)
    with trio.fail_after(5):
        await charger.send(Ping(payload=b"are you there"))
        pong = await charger.next(Pong)
        assert bytes(pong.payload) == b"are you there"
        for _ in range(3):  # the server pings on its interval; we answer
            await charger.next(Ping)
    assert connection_events(db_url, station.id) == []  # answered pings keep it connected
    charger.answer_pings = False  # a half-open connection: pings go unanswered
    with trio.fail_after(10):  # the server waits max(interval / 2, 5 s) for a pong
        close = await charger.next(CloseConnection)
    assert close.code == 1000 and close.reason == "ping timeout"
    assert await wait_for_disconnect(db_url, station.id) == ("timed_out", "ping timeout")


async def test_close_from_the_charger_is_answered_and_recorded(
        server: Server, station: Provisioned, db_url: str) -> None:
    charger = await Charger.connect(server, station)
    with trio.fail_after(5):
        await charger.send(CloseConnection(code=1001, reason="rebooting"))
        answer = await charger.next(CloseConnection)
    assert answer.code == 1001
    assert await wait_for_disconnect(db_url, station.id) == ("disconnected",
                                                            "closed by peer (1001)")


async def test_invalid_utf8_text_closes_with_1007(server: Server, station: Provisioned,
                                                  db_url: str) -> None:
    charger = await Charger.connect(server, station)
    # A masked text frame whose payload is not UTF-8 (RFC 6455 §8.1).
    payload, mask = b"[2,\"x\",\"Heartbeat\",{}]\xff", b"\x01\x02\x03\x04"
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    with trio.fail_after(5):
        await charger.send_raw(bytes([0x80 | Opcode.TEXT, 0x80 | len(payload)]) + mask + masked)
        close = await charger.next(CloseConnection)
    assert close.code == 1007
    event_type, reason = await wait_for_disconnect(db_url, station.id)
    assert event_type == "disconnected" and reason.startswith("closed: ") and "1007" in reason


async def test_a_command_reaches_a_charger_that_sends_meanwhile(
        server: Server, station: Provisioned) -> None:
    """Our CALL and our answer to the charger's CALL share the socket: each frame whole."""
    charger = await Charger.connect(server, station)
    with trio.fail_after(5):
        await charger.send(TextMessage(data=json.dumps([2, "b", "BootNotification", {
            "chargePointVendor": "Acme", "chargePointModel": "M"}])))
        await charger.next(TextMessage)
    session = server.sessions.get(uuid.UUID(station.id))
    assert session is not None
    async with trio.open_nursery() as nursery:
        nursery.start_soon(session.call, "ClearCache", {})
        for number in range(20):
            await charger.send(TextMessage(data=json.dumps([2, f"h{number}", "Heartbeat", {}])))
        seen: list[Any] = []
        with trio.fail_after(5):
            while len(seen) < 21:
                seen.append(json.loads((await charger.next(TextMessage)).data))
        call = next(m for m in seen if m[0] == 2)
        assert call[2] == "ClearCache"
        await charger.send(TextMessage(data=json.dumps([3, call[1], {"status": "Accepted"}])))
    assert sorted(m[1] for m in seen if m[0] == 3) == sorted(f"h{n}" for n in range(20))


def raw_upgrade(station: Provisioned, *extra: str, version: str = "13",
                key: str = "dGhlIHNhbXBsZSBub25jZQ==", connection: str = "Upgrade") -> bytes:
    token = base64.b64encode(f"{station.code}:{station.secret}".encode()).decode()
    lines = [f"GET /ocpp/1.6/{station.code} HTTP/1.1", "Host: x", "Upgrade: websocket",
             f"Connection: {connection}", f"Sec-WebSocket-Key: {key}",
             f"Sec-WebSocket-Version: {version}", f"Authorization: Basic {token}", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def raw_answer(server: Server, data: bytes) -> bytes:
    stream = await trio.open_tcp_stream("127.0.0.1", server.ocpp_port)
    async with stream:
        await stream.send_all(data)
        answer = b""
        with trio.fail_after(5):
            while b"\r\n\r\n" not in answer:
                chunk = await stream.receive_some(4096)
                assert chunk, answer
                answer += chunk
        return answer


async def test_upgrade_requests_that_rfc_6455_refuses(server: Server,
                                                      station: Provisioned) -> None:
    old = await raw_answer(server, raw_upgrade(station, "Sec-WebSocket-Protocol: ocpp1.6",
                                               version="8"))
    assert old.startswith(b"HTTP/1.1 426 ") and b"Sec-WebSocket-Version: 13\r\n" in old
    short_key = await raw_answer(server, raw_upgrade(station, key="c2hvcnQ="))
    assert short_key.startswith(b"HTTP/1.1 400 ")
    no_connection = await raw_answer(server, raw_upgrade(station, connection="keep-alive"))
    assert no_connection.startswith(b"HTTP/1.1 400 ")


async def test_upgrade_answer_and_frames_sent_with_the_request(server: Server,
                                                               station: Provisioned) -> None:
    """Subprotocols offered on two header lines count; a CALL in the same packet as the
    request is read and answered."""
    request = raw_upgrade(station, "Sec-WebSocket-Protocol: chat",
                          "Sec-WebSocket-Protocol: ocpp1.6")
    client = Connection(ConnectionType.CLIENT)
    boot = client.send(TextMessage(data=json.dumps([2, "b1", "BootNotification", {
        "chargePointVendor": "Acme", "chargePointModel": "M"}])))
    stream = await trio.open_tcp_stream("127.0.0.1", server.ocpp_port)
    async with stream:
        await stream.send_all(request + boot)
        received = b""
        with trio.fail_after(5):
            while b"\r\n\r\n" not in received:
                received += await stream.receive_some(4096)
            head, _, rest = received.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 101 ")
            # RFC 6455 §1.3's own example key and accept value
            assert b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in head
            assert b"Sec-WebSocket-Protocol: ocpp1.6" in head
            client.receive_data(rest)
            while not (messages := [e for e in client.events() if isinstance(e, TextMessage)]):
                client.receive_data(await stream.receive_some(4096))
    answer = json.loads(messages[0].data)
    assert answer[:2] == [3, "b1"] and answer[2]["status"] == "Accepted"
