"""Graceful shutdown ends when the work is done, not when the grace runs out.

No wall-clock assertions: the server says whether its grace deadline had to
cancel anything (Server.grace_expired), and the long grace makes that the only
way a slow shutdown could still pass.
"""

from __future__ import annotations

import base64
import os
import uuid

import httpx
import pytest
import trio
from trio_websocket import ConnectionClosed

from autimit_csms.db import Database
from autimit_csms.server import Server
from autimit_csms.stations.websocket import ConnectionClosed as SessionClosed

from ..conftest import ADMIN_TOKEN, server_settings
from .conftest import Provisioned, basic, boot, connect


async def test_shutdown_with_a_charger_and_an_idle_api_connection_needs_no_grace(
        api: httpx.AsyncClient, server: Server, station: Provisioned, db: Database,
        db_url: str) -> None:
    waiting_call: list[SessionClosed] = []
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as client:
        with trio.fail_after(25):  # a safety net only: the assertion is grace_expired
            async with trio.open_nursery() as nursery:
                other: Server = await nursery.start(
                    Server(server_settings(db_url, shutdown_grace=30), db).run)
                # a keep-alive connection stays open after its answer, as real clients do
                r = await client.get(f"{other.api_urls[0]}/api/stations")
                assert r.status_code == 200
                async with connect(other, station.code, station.secret) as ws:
                    await boot(ws)
                    session = other.sessions.get(uuid.UUID(station.id))
                    assert session is not None

                    async def command_in_flight() -> None:  # the charger never answers it
                        try:
                            await session.call("Reset", {"type": "Soft"})
                        except SessionClosed as closed:
                            waiting_call.append(closed)

                    nursery.start_soon(command_in_flight)
                    await ws.get_message()  # the Reset CALL reached the charger
                    other.stop()
                    with pytest.raises(ConnectionClosed) as closed:
                        await ws.get_message()
    assert closed.value.reason.code == 1001
    assert len(waiting_call) == 1  # the call ended with the session, it did not wait it out
    assert other.grace_expired is False


async def test_grace_expired_says_when_the_deadline_cut_something(
        api: httpx.AsyncClient, server: Server, station: Provisioned, db: Database,
        db_url: str) -> None:
    async with trio.open_nursery() as nursery:
        other: Server = await nursery.start(
            Server(server_settings(db_url, shutdown_grace=0.2), db).run)
        # a raw client that completes the upgrade, then never reads: the server's
        # close handshake cannot finish within the grace
        stream = await trio.open_tcp_stream("127.0.0.1", other.ocpp_port)
        key = base64.b64encode(os.urandom(16)).decode()
        name, value = basic(station.code, station.secret)
        await stream.send_all((
            f"GET /ocpp/1.6/{station.code} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"Sec-WebSocket-Protocol: ocpp1.6\r\n{name}: {value}\r\n\r\n").encode())
        assert (await stream.receive_some(4096)).startswith(b"HTTP/1.1 101")
        with trio.fail_after(5):
            while other.sessions.get(uuid.UUID(station.id)) is None:  # noqa: ASYNC110
                await trio.sleep(0.01)
        other.stop()
    await stream.aclose()
    assert other.grace_expired is True
