"""Durability (issue 3 item 7): a CALLRESULT is sent only after the data is committed.

If the database is unavailable the charger gets CALLERROR InternalError and the
connection stays up; nothing acknowledged is lost. The outage is real, not
mocked: the test database is closed to new connections (ALTER DATABASE ...
ALLOW_CONNECTIONS false) and the server's backends are terminated, from an
admin connection to the cluster's maintenance database.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import psycopg
import pytest
import trio
from psycopg import sql
from trio_websocket import ConnectionRejected, WebSocketConnection

from autimit_csms.db import Database
from autimit_csms.localpg import LocalPostgres
from autimit_csms.server import Server

from ..conftest import ADMIN_TOKEN, server_settings
from .conftest import Provisioned, boot, call, connect, iso, provision, rows


def db_name(db_url: str) -> str:
    return db_url.rsplit("/", 1)[1]


@contextmanager
def database_down(pg: LocalPostgres, db_url: str) -> Iterator[None]:
    """The database refuses connections and every open one is cut, until the block ends."""
    name = db_name(db_url)
    with psycopg.connect(pg.url(), autocommit=True) as admin:
        admin.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false").format(
            sql.Identifier(name)))
        try:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE datname = %s AND pid <> pg_backend_pid()", (name,))
            yield
        finally:
            admin.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS true").format(
                sql.Identifier(name)))


@pytest.fixture
async def fast_server(db_url: str) -> AsyncIterator[Server]:
    """A server whose pool gives up on a connection after 1 s instead of 5 s."""
    database = Database(db_url, min_size=1, max_size=4, timeout=1.0)
    await database.open()
    try:
        async with trio.open_nursery() as nursery:
            running: Server = await nursery.start(Server(server_settings(db_url), database).run)
            yield running
            running.stop()
    finally:
        await database.close()


@pytest.fixture
async def fast_station(fast_server: Server) -> Provisioned:
    async with httpx.AsyncClient(base_url=fast_server.api_urls[0],
                                 headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as api:
        return await provision(api, "CP-DUR")


async def send(ws: WebSocketConnection, action: str, payload: dict[str, Any],
               limit: float = 10) -> list[Any]:
    with trio.fail_after(limit):
        return await call(ws, action, payload, unique_id=str(uuid.uuid4()))


def meter_value(at: dt.datetime, wh: int) -> dict[str, Any]:
    return {"connectorId": 1, "meterValue": [{"timestamp": iso(at), "sampledValue": [
        {"value": str(wh)}, {"value": "7", "measurand": "Power.Active.Import", "unit": "kW"}]}]}


def assert_internal_error(answer: list[Any], unique_id: str | None = None) -> None:
    assert answer[0] == 4, answer
    assert answer[2] == "InternalError", answer
    # no internals leaked: no driver text, no SQL
    assert "psycopg" not in answer[3].lower() and "select" not in answer[3].lower(), answer


async def test_outage_answers_internal_error_and_keeps_the_connection(
        fast_server: Server, fast_station: Provisioned, pg: LocalPostgres,
        db_url: str) -> None:
    base = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(hours=1)
    acknowledged: list[dt.datetime] = []
    refused: list[dt.datetime] = []
    async with connect(fast_server, fast_station.code, fast_station.secret) as ws:
        with trio.fail_after(10):
            await boot(ws)
        for n in range(5):
            at = base + dt.timedelta(seconds=n)
            answer = await send(ws, "MeterValues", meter_value(at, 1000 + n))
            assert answer[0] == 3, answer
            acknowledged.append(at)

        with database_down(pg, db_url):
            started = trio.current_time()
            answer = await send(ws, "Heartbeat", {})
            assert_internal_error(answer)
            assert trio.current_time() - started < 4, "the charger must not wait for the pool"
            for n in range(5, 8):
                at = base + dt.timedelta(seconds=n)
                answer = await send(ws, "MeterValues", meter_value(at, 1000 + n))
                assert_internal_error(answer)
                refused.append(at)
            answer = await send(ws, "StartTransaction", {
                "connectorId": 1, "idTag": "T", "meterStart": 0, "timestamp": iso(base)})
            assert_internal_error(answer)
            assert ws.closed is None, "the connection stays up during the outage"

        # database back: the charger retries the same messages with new ids
        answer = await send(ws, "Heartbeat", {})
        assert answer[0] == 3 and "currentTime" in answer[2], answer
        for n, at in enumerate(refused, start=5):
            answer = await send(ws, "MeterValues", meter_value(at, 1000 + n))
            assert answer[0] == 3, answer
            acknowledged.append(at)
        answer = await send(ws, "StartTransaction", {
            "connectorId": 1, "idTag": "T", "meterStart": 0, "timestamp": iso(base)})
        assert answer[0] == 3 and isinstance(answer[2]["transactionId"], int), answer
        tx = answer[2]["transactionId"]
        assert ws.closed is None

    # every message that got a CALLRESULT has its rows, each once
    stored = rows(db_url, "SELECT sampled_at, measurand, value FROM meter_values "
                  "ORDER BY sampled_at, measurand")
    assert [r[0] for r in stored[::2]] == acknowledged
    assert all(r[1] == "Energy.Active.Import.Register" for r in stored[::2])
    assert [int(r[2]) for r in stored[::2]] == [1000 + n for n in range(8)]
    assert len(stored) == 2 * len(acknowledged)
    assert rows(db_url, "SELECT count(*) FROM station_heartbeat_events") == [(1,)]
    assert rows(db_url, "SELECT transaction_id FROM charging_sessions") == [(tx,)]
    assert rows(db_url, "SELECT event_type FROM session_events") == [("started",)]


async def test_outage_with_default_pool_timeout_still_answers(
        server: Server, station: Provisioned, pg: LocalPostgres, db_url: str) -> None:
    """The stock server (5 s pool timeout) answers well within a charger's call timeout."""
    async with connect(server, station.code, station.secret) as ws:
        with trio.fail_after(10):
            await boot(ws)
        with database_down(pg, db_url):
            for _ in range(2):
                started = trio.current_time()
                answer = await send(ws, "Heartbeat", {}, limit=15)
                assert_internal_error(answer)
                assert trio.current_time() - started < 10
        answer = await send(ws, "Heartbeat", {})
        assert answer[0] == 3, answer
    assert rows(db_url, "SELECT count(*) FROM station_heartbeat_events") == [(1,)]


async def test_new_connection_during_outage_is_503_not_401(
        fast_server: Server, fast_station: Provisioned, pg: LocalPostgres,
        db_url: str) -> None:
    """A charger must not take an outage for wrong credentials."""
    with database_down(pg, db_url):
        with trio.fail_after(10), pytest.raises(ConnectionRejected) as refused:
            async with connect(fast_server, fast_station.code, fast_station.secret):
                pass
        assert refused.value.status_code == 503
    async with connect(fast_server, fast_station.code, fast_station.secret) as ws:
        with trio.fail_after(10):
            await boot(ws)


async def test_meter_values_are_committed_before_the_answer(
        server: Server, api: httpx.AsyncClient, db_url: str) -> None:
    """After each CALLRESULT the rows are visible from another connection at once.

    Several stations send at the same time, so the group-commit writer batches.
    """
    stations = [await provision(api, f"CP-GC-{n}", account_id=None) for n in range(4)]
    base = dt.datetime.now(dt.UTC).replace(microsecond=0)
    checked: list[int] = []

    async def charger(station: Provisioned) -> None:
        async with connect(server, station.code, station.secret) as ws:
            with trio.fail_after(10):
                await boot(ws)
            for n in range(12):
                answer = await send(ws, "MeterValues", meter_value(
                    base + dt.timedelta(seconds=n), n))
                assert answer[0] == 3, answer
                count = await trio.to_thread.run_sync(
                    rows, db_url, "SELECT count(*) FROM meter_values WHERE station_id = %s",
                    station.id)
                assert count == [(2 * (n + 1),)], (station.code, n, count)
                checked.append(n)

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            for station in stations:
                nursery.start_soon(charger, station)
    assert len(checked) == 4 * 12
    assert server.writer.stats.items >= 4 * 13  # every write went through the writer


async def test_no_answer_until_the_commit_is_done(server: Server, station: Provisioned,
                                                  db_url: str) -> None:
    """A write that cannot commit yet (row locked elsewhere) is not answered yet."""
    async with connect(server, station.code, station.secret) as ws:
        with trio.fail_after(10):
            await boot(ws)
            answer = await call(ws, "StartTransaction", {
                "connectorId": 1, "idTag": "T", "meterStart": 100,
                "timestamp": iso(dt.datetime.now(dt.UTC))})
        tx = answer[2]["transactionId"]
        with psycopg.connect(db_url) as lock:
            lock.execute("SELECT 1 FROM charging_sessions WHERE transaction_id = %s FOR UPDATE",
                         (tx,))
            try:
                await ws.send_message(
                    f'[2,"stop-1","StopTransaction",{{"transactionId":{tx},"meterStop":900,'
                    f'"timestamp":"{iso(dt.datetime.now(dt.UTC))}"}}]')
                with trio.move_on_after(0.7) as waited:
                    early = await ws.get_message()
                assert waited.cancelled_caught, f"answered before commit: {early}"
                assert rows(db_url, "SELECT status FROM charging_sessions") == [("active",)]
            finally:
                lock.rollback()
        with trio.fail_after(10):
            answer = await ws.get_message()
        assert answer == '[3,"stop-1",{}]'
        assert rows(db_url, "SELECT status, energy_wh FROM charging_sessions") == [
            ("completed", 800)]


async def test_database_restart_alone_costs_no_charger_an_error(
        server: Server, station: Provisioned, pg: LocalPostgres, db_url: str) -> None:
    """The server's connections are cut, the database itself stays available.

    Regression: the pool once handed out the dead connections unchecked, so the
    first write on each failed with InternalError (fixed in c04a6c3).
    """
    async with connect(server, station.code, station.secret) as ws:
        with trio.fail_after(10):
            await boot(ws)
        with psycopg.connect(pg.url(), autocommit=True) as admin:
            cut = admin.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                "WHERE datname = %s AND pid <> pg_backend_pid()",
                                (db_name(db_url),)).fetchone()
        assert cut is not None and cut[0] >= 1
        answers = [await send(ws, "Heartbeat", {}) for _ in range(3)]
    assert [a[0] for a in answers] == [3, 3, 3], answers
    assert rows(db_url, "SELECT count(*) FROM station_heartbeat_events") == [(3,)]
