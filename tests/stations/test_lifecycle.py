"""Connection lifetime: watchdog, server pings, graceful shutdown, the offline sweep."""

from __future__ import annotations

import datetime as dt
import json
import uuid

import psycopg
import trio
from trio_websocket import ConnectionClosed

from autimit_csms.db import Database
from autimit_csms.server import Server

from ..conftest import server_settings
from .conftest import Provisioned, boot, call, connect


def runtime_status(db_url: str, station_id: str) -> str:
    with psycopg.connect(db_url) as conn:
        return conn.execute("SELECT status FROM station_runtime_state WHERE station_id = %s",
                            (station_id,)).fetchone()[0]


async def wait_for_status(db_url: str, station_id: str, wanted: str) -> None:
    with trio.fail_after(5):
        while runtime_status(db_url, station_id) != wanted:  # noqa: ASYNC110 - polling the DB
            await trio.sleep(0.05)


async def start_server(nursery: trio.Nursery, db: Database, db_url: str,
                       **overrides: object) -> Server:
    return await nursery.start(Server(server_settings(db_url, **overrides), db).run)


async def test_silent_station_is_closed_and_marked_offline(
        api: object, server: Server, station: Provisioned, db: Database, db_url: str,
        nursery: trio.Nursery) -> None:
    # A second server on the same database with a 1 s heartbeat, 2 intervals of
    # allowed silence and no pings: a silent charger is cut after ~2 s.
    quick = await start_server(nursery, db, db_url, heartbeat_interval=1,
                               offline_after_heartbeats=2, ws_ping_interval=0)
    async with connect(quick, station.code, station.secret) as ws:
        await boot(ws)
        assert runtime_status(db_url, station.id) == "online"
        with trio.fail_after(6):
            try:
                while True:
                    await ws.get_message()
            except ConnectionClosed as closed:
                assert closed.reason.code == 1000
    await wait_for_status(db_url, station.id, "offline")
    with psycopg.connect(db_url) as conn:
        events = [r[0] for r in conn.execute(
            "SELECT event_type FROM station_connection_events WHERE station_id = %s "
            "ORDER BY occurred_at", (station.id,))]
    assert events == ["connected", "timed_out"]
    quick.stop()


async def test_heartbeats_keep_a_station_connected(
        api: object, server: Server, station: Provisioned, db: Database, db_url: str,
        nursery: trio.Nursery) -> None:
    quick = await start_server(nursery, db, db_url, heartbeat_interval=1,
                               offline_after_heartbeats=2, ws_ping_interval=0)
    async with connect(quick, station.code, station.secret) as ws:
        await boot(ws)
        for _ in range(8):  # 4 s: twice the allowed silence
            await trio.sleep(0.5)
            assert (await call(ws, "Heartbeat", {}))[0] == 3
    quick.stop()


async def test_graceful_shutdown_closes_with_1001_and_marks_offline(
        api: object, server: Server, station: Provisioned, db: Database, db_url: str,
        nursery: trio.Nursery) -> None:
    other = await start_server(nursery, db, db_url)
    async with connect(other, station.code, station.secret) as ws:
        await boot(ws)
        other.stop()
        with trio.fail_after(5):
            try:
                await ws.get_message()
                raise AssertionError("expected the server to close the connection")
            except ConnectionClosed as closed:
                assert closed.reason.code == 1001
    await wait_for_status(db_url, station.id, "offline")


async def test_sweep_marks_stations_nobody_holds_offline(
        api: object, server: Server, station: Provisioned, db: Database, db_url: str,
        nursery: trio.Nursery) -> None:
    # As if a process died holding the station: online, last seen long ago.
    with psycopg.connect(db_url) as conn:
        conn.execute("UPDATE station_runtime_state SET status = 'online', last_seen_at = %s "
                     "WHERE station_id = %s",
                     (dt.datetime.now(dt.UTC) - dt.timedelta(hours=1), station.id))
    await start_server(nursery, db, db_url, heartbeat_interval=1, offline_after_heartbeats=2)
    await wait_for_status(db_url, station.id, "offline")


async def test_outbound_call_waits_for_the_chargers_answer(
        api: object, server: Server, station: Provisioned) -> None:
    async with connect(server, station.code, station.secret) as ws:
        await boot(ws)
        session = server.sessions.get(uuid.UUID(station.id))
        assert session is not None

        async def charger() -> None:
            frame = json.loads(await ws.get_message())
            assert frame[0] == 2 and frame[2] == "Reset" and frame[3] == {"type": "Soft"}
            await ws.send_message(json.dumps([3, frame[1], {"status": "Accepted"}]))

        async with trio.open_nursery() as n:
            n.start_soon(charger)
            with trio.fail_after(5):
                answer = await session.call("Reset", {"type": "Soft"})
        assert answer.result.payload == {"status": "Accepted"}
        # a charger that never answers: the caller's deadline ends the call, the
        # next call still works (one outstanding CALL at a time)
        with trio.move_on_after(0.3):
            await session.call("ClearCache", {})
        assert session.protocol.outstanding_call is None
