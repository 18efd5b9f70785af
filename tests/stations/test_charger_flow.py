"""A charge point this project did not write runs the whole OCPP 1.6 flow.

The charger is the `ocpp` package (mobilityhouse) on `websockets`, both asyncio;
it runs in a worker thread (`trio.to_thread`) while the server runs in this
test's Trio loop. After every step the rows ADR 0002 prescribes are read back
with psycopg from the same worker thread, and where a write rule touches a
current-state table and a history table, both rows must carry the same xmin:
one transaction per rule (group commit may put several rules in one
transaction; only the equality of the pair is asserted).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

import httpx
import psycopg
import trio
import websockets
from ocpp.v16 import ChargePoint, call

from autimit_csms.server import Server

from .conftest import Provisioned, boot, connect, iso, ocpp_url, provision
from .conftest import call as raw_call

Scenario = Callable[[ChargePoint], Awaitable[None]]


async def create_tag(api: httpx.AsyncClient, account_id: str, id_tag: str,
                     **extra: Any) -> dict[str, Any]:
    r = await api.post("/api/id-tags", json={"accountId": account_id, "idTag": id_tag, **extra})
    assert r.status_code == 201, r.text
    return r.json()


async def run_charger(server: Server, station: Provisioned, scenario: Scenario, *,
                      limit: float = 30) -> None:
    """Connect an `ocpp` ChargePoint as `station` and run `scenario` in a worker thread."""
    url = ocpp_url(server, station.code)
    token = base64.b64encode(f"{station.code}:{station.secret}".encode()).decode()

    async def main() -> None:
        async with websockets.connect(url, subprotocols=["ocpp1.6"],
                                      additional_headers={"Authorization": f"Basic {token}"},
                                      open_timeout=10) as ws:
            assert ws.subprotocol == "ocpp1.6"
            cp = ChargePoint(station.code, ws, response_timeout=10)
            reader = asyncio.create_task(cp.start())
            try:
                await asyncio.wait_for(scenario(cp), limit)
            finally:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError, websockets.ConnectionClosed):
                    await reader

    with trio.fail_after(limit + 10):
        await trio.to_thread.run_sync(lambda: asyncio.run(main()), abandon_on_cancel=True)


class Rows:
    """Synchronous reads for the worker thread (a fresh autocommit connection)."""

    def __init__(self, url: str) -> None:
        self.url = url

    def all(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.url, autocommit=True, connect_timeout=5,
                             options="-c statement_timeout=5000") as conn:
            return conn.execute(sql, params).fetchall()

    def one(self, sql: str, *params: Any) -> tuple[Any, ...]:
        rows = self.all(sql, *params)
        assert len(rows) == 1, rows
        return rows[0]


async def test_ocpp_library_charger_full_flow(server: Server, api: httpx.AsyncClient,
                                              station: Provisioned, db_url: str) -> None:
    sid = station.id
    await create_tag(api, station.account_id, "GOOD-TAG")
    await create_tag(api, station.account_id, "BLOCKED-TAG", status="blocked")
    await create_tag(api, station.account_id, "OLD-TAG",
                     expiresAt=iso(dt.datetime.now(dt.UTC) - dt.timedelta(days=1)))
    db = Rows(db_url)
    t0 = dt.datetime.now(dt.UTC).replace(microsecond=0)

    async def scenario(cp: ChargePoint) -> None:
        # ---------------------------------------------------------- boot
        conf = await cp.call(call.BootNotification(
            charge_point_vendor="ThirdParty", charge_point_model="Wallbox-X",
            charge_point_serial_number="CPS-1", charge_box_serial_number="CBS-1",
            firmware_version="4.5.6", iccid="", meter_type="DZG", meter_serial_number="M-9"),
            suppress=False)
        assert conf.status == "Accepted" and conf.interval == 300
        assert dt.datetime.fromisoformat(conf.current_time) >= t0
        state = db.one("SELECT booted_at, firmware_version, registration_status, status, "
                       "reported_vendor, reported_model, reported_serial, xmin::text "
                       "FROM station_runtime_state WHERE station_id = %s", sid)
        assert state[0] is not None and state[0] >= t0
        assert state[1:7] == ("4.5.6", "accepted", "online", "ThirdParty", "Wallbox-X", "CPS-1")
        event = db.one("SELECT occurred_at, registration_status, charge_point_vendor, "
                       "charge_point_model, charge_point_serial_number, "
                       "charge_box_serial_number, firmware_version, iccid, meter_type, "
                       "meter_serial_number, xmin::text "
                       "FROM station_boot_events WHERE station_id = %s", sid)
        assert event[0] == state[0]
        assert event[1:10] == ("accepted", "ThirdParty", "Wallbox-X", "CPS-1", "CBS-1",
                               "4.5.6", "", "DZG", "M-9")
        assert event[10] == state[7], "boot: current state and history in one transaction"

        # ---------------------------------------------------------- heartbeat
        conf = await cp.call(call.Heartbeat(), suppress=False)
        beat = dt.datetime.fromisoformat(conf.current_time)
        state = db.one("SELECT last_heartbeat_at, xmin::text FROM station_runtime_state "
                       "WHERE station_id = %s", sid)
        assert state[0] is not None and abs((state[0] - beat).total_seconds()) < 0.01
        event = db.one("SELECT occurred_at, xmin::text FROM station_heartbeat_events "
                       "WHERE station_id = %s", sid)
        assert event[0] == state[0]
        assert event[1] == state[1], "heartbeat: current state and history in one transaction"

        # ---------------------------------------------------------- status
        for number, (ocpp_status, normalized) in enumerate(
                [("Available", "available"), ("Preparing", "occupied")], start=1):
            at = dt.datetime.now(dt.UTC).replace(microsecond=number * 1000)
            conf = await cp.call(call.StatusNotification(
                connector_id=1, error_code="NoError", status=ocpp_status, timestamp=iso(at),
                info=f"step {number}"), suppress=False)
            assert conf is not None
            current = db.one("SELECT status, ocpp_status, ocpp_error_code, info, status_at, "
                             "xmin::text FROM connector_runtime_state "
                             "WHERE station_id = %s AND connector_number = 1", sid)
            assert current[:4] == (normalized, ocpp_status, "NoError", f"step {number}")
            history = db.all("SELECT status, ocpp_status, ocpp_error_code, occurred_at, "
                             "xmin::text FROM connector_status_events "
                             "WHERE station_id = %s AND connector_number = 1 "
                             "ORDER BY occurred_at", sid)
            assert len(history) == number
            assert history[-1][:4] == (normalized, ocpp_status, "NoError", current[4])
            assert history[-1][4] == current[5], "status: current and history in one tx"
        # the other connector is untouched
        assert db.one("SELECT status FROM connector_runtime_state "
                      "WHERE station_id = %s AND connector_number = 2", sid) == ("unknown",)

        # ---------------------------------------------------------- authorize
        for tag, expected in [("GOOD-TAG", "Accepted"), ("good-tag", "Accepted"),
                              ("NOBODY", "Invalid"), ("BLOCKED-TAG", "Blocked"),
                              ("OLD-TAG", "Expired")]:
            conf = await cp.call(call.Authorize(id_tag=tag), suppress=False)
            assert conf.id_tag_info["status"] == expected, (tag, conf)
        assert db.one("SELECT count(*) FROM charging_sessions") == (0,)

        # ---------------------------------------------------------- start
        started = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(seconds=30)
        conf = await cp.call(call.StartTransaction(
            connector_id=1, id_tag="GOOD-TAG", meter_start=12_000, timestamp=iso(started)),
            suppress=False)
        tx = conf.transaction_id
        assert isinstance(tx, int) and not isinstance(tx, bool)
        assert -(2**31) <= tx <= 2**31 - 1
        assert conf.id_tag_info["status"] == "Accepted"
        session = db.one("SELECT id, transaction_id, status, connector_number, id_tag, "
                         "id_tag_status, meter_start_wh, started_at, stopped_at, xmin::text "
                         "FROM charging_sessions WHERE station_id = %s", sid)
        assert session[1:9] == (tx, "active", 1, "GOOD-TAG", "Accepted", 12_000, started, None)
        event = db.one("SELECT session_id, transaction_id, event_type, id_tag, meter_wh, "
                       "occurred_at, xmin::text FROM session_events WHERE station_id = %s", sid)
        assert event[:6] == (session[0], tx, "started", "GOOD-TAG", 12_000, started)
        assert event[6] == session[9], "start: session and its event in one transaction"

        # the tag is now in a transaction: Authorize elsewhere is ConcurrentTx
        conf = await cp.call(call.Authorize(id_tag="GOOD-TAG"), suppress=False)
        assert conf.id_tag_info["status"] == "ConcurrentTx"

        # ---------------------------------------------------------- meter values
        sampled = started + dt.timedelta(seconds=15)
        conf = await cp.call(call.MeterValues(connector_id=1, transaction_id=tx, meter_value=[{
            "timestamp": iso(sampled),
            "sampledValue": [
                {"value": "12.345", "context": "Sample.Periodic", "format": "Raw",
                 "measurand": "Energy.Active.Import.Register", "location": "Outlet",
                 "unit": "kWh"},
                {"value": "7200", "measurand": "Power.Active.Import", "unit": "W"},
                {"value": "230.5", "measurand": "Voltage", "phase": "L1", "unit": "V"},
                {"value": "31.3", "measurand": "Current.Import", "phase": "L1",
                 "unit": "A", "location": "Inlet"},
                {"value": "57", "measurand": "SoC", "unit": "Percent", "location": "EV",
                 "context": "Sample.Clock"},
            ]}]), suppress=False)
        assert conf is not None
        rows = db.all("SELECT measurand, phase, location, context, unit, value, format, "
                      "raw_value, connector_number, transaction_id, sampled_at, xmin::text "
                      "FROM meter_values WHERE station_id = %s ORDER BY measurand", sid)
        assert [r[:10] for r in rows] == [
            ("Current.Import", "L1", "Inlet", "Sample.Periodic", "A", Decimal("31.3"), "Raw",
             None, 1, tx),
            ("Energy.Active.Import.Register", None, "Outlet", "Sample.Periodic", "Wh",
             Decimal("12345"), "Raw", None, 1, tx),
            ("Power.Active.Import", None, "Outlet", "Sample.Periodic", "W", Decimal("7200"),
             "Raw", None, 1, tx),
            ("SoC", None, "EV", "Sample.Clock", "Percent", Decimal("57"), "Raw", None, 1, tx),
            ("Voltage", "L1", "Outlet", "Sample.Periodic", "V", Decimal("230.5"), "Raw", None,
             1, tx),
        ]
        assert {r[10] for r in rows} == {sampled}
        assert len({r[11] for r in rows}) == 1, "one MeterValues is one transaction"

        # ---------------------------------------------------------- stop
        stopped = started + dt.timedelta(minutes=20)
        conf = await cp.call(call.StopTransaction(
            meter_stop=19_500, timestamp=iso(stopped), transaction_id=tx,
            reason="EVDisconnected", id_tag="GOOD-TAG",
            transaction_data=[{"timestamp": iso(stopped), "sampledValue": [
                {"value": "19.5", "unit": "kWh", "context": "Transaction.End",
                 "measurand": "Energy.Active.Import.Register"}]}]), suppress=False)
        assert conf.id_tag_info["status"] == "Accepted"  # no longer in a transaction
        session = db.one("SELECT id, status, meter_stop_wh, energy_wh, stopped_at, "
                         "stop_reason, stop_id_tag, billing_status, xmin::text "
                         "FROM charging_sessions WHERE transaction_id = %s", tx)
        assert session[1:8] == ("completed", 19_500, 7_500, stopped, "EVDisconnected",
                                "GOOD-TAG", "pending")
        events = db.all("SELECT event_type, session_id, meter_wh, reason, occurred_at, "
                        "xmin::text FROM session_events WHERE station_id = %s "
                        "ORDER BY occurred_at", sid)
        assert [e[0] for e in events] == ["started", "stopped"]
        assert events[1][1:5] == (session[0], 19_500, "EVDisconnected", stopped)
        assert events[1][5] == session[8], "stop: session and its event in one transaction"
        end = db.one("SELECT connector_number, transaction_id, unit, value, context, "
                     "sampled_at, xmin::text FROM meter_values "
                     "WHERE station_id = %s AND context = 'Transaction.End'", sid)
        assert end[:6] == (1, tx, "Wh", Decimal("19500"), "Transaction.End", stopped)
        assert end[6] == session[8], "stop and its transactionData in one transaction"

        # ---------------------------------------------------------- back to available
        await cp.call(call.StatusNotification(connector_id=1, error_code="NoError",
                                              status="Available"), suppress=False)
        assert db.one("SELECT status, ocpp_status FROM connector_runtime_state "
                      "WHERE station_id = %s AND connector_number = 1", sid) == (
            "available", "Available")

    await run_charger(server, station, scenario)

    # The ocpp charger closed its socket: the station is offline again.
    state: tuple[Any, ...] = ()
    with trio.move_on_after(5):
        while True:
            state = db.one("SELECT status FROM station_runtime_state WHERE station_id = %s", sid)
            if state == ("offline",):
                break
            await trio.sleep(0.05)
    assert state == ("offline",)


async def test_concurrent_tx_on_other_connector_and_other_station(
        server: Server, api: httpx.AsyncClient, station: Provisioned, db_url: str) -> None:
    other = await provision(api, "CP-2", account_id=station.account_id)
    stranger = await provision(api, "CP-3")  # another account: the tag is unknown there
    await create_tag(api, station.account_id, "SHARED")
    db = Rows(db_url)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    result: dict[str, Any] = {}

    async def first(cp: ChargePoint) -> None:
        await cp.call(call.BootNotification(charge_point_vendor="V", charge_point_model="M"))
        conf = await cp.call(call.StartTransaction(
            connector_id=1, id_tag="SHARED", meter_start=0, timestamp=iso(now)), suppress=False)
        assert conf.id_tag_info["status"] == "Accepted"
        result["tx"] = conf.transaction_id
        # the same station, another connector
        conf = await cp.call(call.Authorize(id_tag="shared"), suppress=False)
        assert conf.id_tag_info["status"] == "ConcurrentTx"
        conf = await cp.call(call.StartTransaction(
            connector_id=2, id_tag="SHARED", meter_start=5, timestamp=iso(now)), suppress=False)
        assert conf.id_tag_info["status"] == "ConcurrentTx"
        assert conf.transaction_id != result["tx"]
        result["tx2"] = conf.transaction_id

    async def second(cp: ChargePoint) -> None:
        await cp.call(call.BootNotification(charge_point_vendor="V", charge_point_model="M"))
        conf = await cp.call(call.Authorize(id_tag="SHARED"), suppress=False)
        assert conf.id_tag_info["status"] == "ConcurrentTx"

    async def third(cp: ChargePoint) -> None:
        await cp.call(call.BootNotification(charge_point_vendor="V", charge_point_model="M"))
        conf = await cp.call(call.Authorize(id_tag="SHARED"), suppress=False)
        assert conf.id_tag_info["status"] == "Invalid"

    await run_charger(server, station, first)
    await run_charger(server, other, second)
    await run_charger(server, stranger, third)
    # The refused second start is still recorded (the charger may be charging).
    assert db.all("SELECT connector_number, id_tag_status, status FROM charging_sessions "
                  "ORDER BY connector_number") == [(1, "Accepted", "active"),
                                                   (2, "ConcurrentTx", "active")]

    # Once the first transaction stops, the tag is free again elsewhere.
    async with connect(server, other.code, other.secret) as ws, \
            connect(server, station.code, station.secret) as ws1:
        with trio.fail_after(10):
            for tx in (result["tx"], result["tx2"]):
                answer = await raw_call(ws1, "StopTransaction", {
                    "transactionId": tx, "meterStop": 100, "timestamp": iso(now)})
                assert answer[0] == 3, answer
            answer = await raw_call(ws, "Authorize", {"idTag": "SHARED"})
            assert answer[2]["idTagInfo"]["status"] == "Accepted", answer


async def test_second_raw_boot_keeps_history(server: Server, station: Provisioned,
                                             db_url: str) -> None:
    """Each BootNotification is one boot event; the current state keeps the latest."""
    async with connect(server, station.code, station.secret) as ws:
        with trio.fail_after(10):
            await boot(ws)
            answer = await raw_call(ws, "BootNotification", {
                "chargePointVendor": "TestVendor", "chargePointModel": "TestModel",
                "firmwareVersion": "2.0.0"})
            assert answer[0] == 3 and answer[2]["status"] == "Accepted"
    db = Rows(db_url)
    assert db.one("SELECT firmware_version FROM station_runtime_state WHERE station_id = %s",
                  station.id) == ("2.0.0",)
    assert db.all("SELECT firmware_version FROM station_boot_events WHERE station_id = %s "
                  "ORDER BY occurred_at", station.id) == [("1.2.3",), ("2.0.0",)]
