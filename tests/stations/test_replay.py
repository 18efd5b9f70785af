"""Chargers replay after being offline (issue 3 item 6, OCPP 1.6 §3.6, §4.8).

Queued StartTransaction / MeterValues / StopTransaction arrive late, with old
timestamps, and are re-sent with a NEW message id each time: the CSMS must
deduplicate on content, always answer with a CALLRESULT, and never open a
second session or bill twice. Raw OCPP-J frames over a real socket, real
PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from decimal import Decimal
from typing import Any

import psycopg
import pytest
import trio
from trio_websocket import WebSocketConnection

from autimit_csms.server import Server

from .conftest import Provisioned, boot, call, connect, iso, rows

TWO_DAYS_AGO = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(days=2)


async def ok(ws: WebSocketConnection, action: str, payload: dict[str, Any]) -> dict[str, Any]:
    """Send a CALL with a fresh message id; it must be answered with a CALLRESULT."""
    with trio.fail_after(10):
        answer = await call(ws, action, payload, unique_id=str(uuid.uuid4()))
    assert answer[0] == 3, f"{action} got {answer}"
    return answer[2]


def start_payload(**overrides: Any) -> dict[str, Any]:
    return {"connectorId": 1, "idTag": "TAG-1", "meterStart": 1000,
            "timestamp": iso(TWO_DAYS_AGO), **overrides}


async def test_start_transaction_resent_gets_same_transaction_id(
        server: Server, station: Provisioned, db_url: str) -> None:
    async with connect(server, station.code, station.secret) as ws:
        with trio.fail_after(10):
            await boot(ws)
        first = await ok(ws, "StartTransaction", start_payload())
        again = await ok(ws, "StartTransaction", start_payload())
        # same instant written differently is the same content
        third = await ok(ws, "StartTransaction", start_payload(
            timestamp=TWO_DAYS_AGO.isoformat()))
    assert first["transactionId"] == again["transactionId"] == third["transactionId"]
    assert first["idTagInfo"] == again["idTagInfo"] == {"status": "Invalid"}
    sessions = rows(db_url, "SELECT id, transaction_id, started_at FROM charging_sessions")
    assert len(sessions) == 1
    assert sessions[0][1:] == (first["transactionId"], TWO_DAYS_AGO)
    events = rows(db_url, "SELECT event_type, session_id, transaction_id FROM session_events "
                  "ORDER BY recorded_at")
    assert events == [("started", sessions[0][0], first["transactionId"]),
                      ("start_repeated", sessions[0][0], first["transactionId"]),
                      ("start_repeated", sessions[0][0], first["transactionId"])]


async def test_start_transaction_different_content_is_a_new_session(
        server: Server, station: Provisioned, db_url: str) -> None:
    async with connect(server, station.code, station.secret) as ws:
        with trio.fail_after(10):
            await boot(ws)
        first = await ok(ws, "StartTransaction", start_payload())
        later = await ok(ws, "StartTransaction", start_payload(
            meterStart=2000, timestamp=iso(TWO_DAYS_AGO + dt.timedelta(hours=1))))
    assert first["transactionId"] != later["transactionId"]
    assert rows(db_url, "SELECT count(*) FROM charging_sessions") == [(2,)]


async def test_stop_transaction_resent_does_not_bill_twice(
        server: Server, station: Provisioned, db_url: str) -> None:
    stopped = TWO_DAYS_AGO + dt.timedelta(hours=2)
    async with connect(server, station.code, station.secret) as ws:
        with trio.fail_after(10):
            await boot(ws)
        tx = (await ok(ws, "StartTransaction", start_payload()))["transactionId"]
        stop = {"transactionId": tx, "meterStop": 4500, "timestamp": iso(stopped),
                "reason": "EVDisconnected"}
        assert await ok(ws, "StopTransaction", stop) == {}
        before = rows(db_url, "SELECT status, meter_stop_wh, energy_wh, stopped_at, "
                      "stop_reason, updated_at FROM charging_sessions")
        assert before[0][:5] == ("completed", 4500, 3500, stopped, "EVDisconnected")
        assert await ok(ws, "StopTransaction", stop) == {}
        # a confused charger re-sending with other numbers does not re-bill either
        assert await ok(ws, "StopTransaction", {**stop, "meterStop": 9999,
                                                "timestamp": iso(stopped + dt.timedelta(1))}
                        ) == {}
    after = rows(db_url, "SELECT status, meter_stop_wh, energy_wh, stopped_at, "
                 "stop_reason, updated_at FROM charging_sessions")
    assert after == before
    events = rows(db_url, "SELECT event_type, transaction_id FROM session_events "
                  "ORDER BY recorded_at, event_type")
    assert [e[0] for e in events] == ["started", "stopped", "stop_repeated", "stop_repeated"]
    assert {e[1] for e in events} == {tx}


@pytest.mark.parametrize("transaction_id", [0, -1, 999999])
async def test_stop_for_unknown_transaction_is_answered_and_recorded(
        server: Server, station: Provisioned, db_url: str, transaction_id: int) -> None:
    async with connect(server, station.code, station.secret) as ws:
        with trio.fail_after(10):
            await boot(ws)
        answer = await ok(ws, "StopTransaction", {
            "transactionId": transaction_id, "meterStop": 777, "timestamp": iso(TWO_DAYS_AGO),
            "idTag": "WHO", "reason": "PowerLoss",
            "transactionData": [{"timestamp": iso(TWO_DAYS_AGO), "sampledValue": [
                {"value": "777", "context": "Transaction.End"}]}]})
        assert answer == {"idTagInfo": {"status": "Invalid"}}
        # the connection stays usable
        assert "currentTime" in await ok(ws, "Heartbeat", {})
    assert rows(db_url, "SELECT event_type, session_id, transaction_id, meter_wh, reason, "
                "occurred_at FROM session_events") == [
        ("stop_unmatched", None, transaction_id, 777, "PowerLoss", TWO_DAYS_AGO)]
    assert rows(db_url, "SELECT count(*) FROM charging_sessions") == [(0,)]
    # its transactionData is evidence too: kept on the station's main meter
    assert rows(db_url, "SELECT connector_number, transaction_id, value FROM meter_values") == [
        (0, transaction_id, Decimal("777"))]


async def test_stop_without_reason_is_local(server: Server, station: Provisioned,
                                            db_url: str) -> None:
    async with connect(server, station.code, station.secret) as ws:
        with trio.fail_after(10):
            await boot(ws)
        tx = (await ok(ws, "StartTransaction", start_payload()))["transactionId"]
        await ok(ws, "StopTransaction", {"transactionId": tx, "meterStop": 1500,
                                         "timestamp": iso(TWO_DAYS_AGO + dt.timedelta(hours=1))})
    assert rows(db_url, "SELECT stop_reason, energy_wh FROM charging_sessions") == [
        ("Local", 500)]
    assert rows(db_url, "SELECT reason FROM session_events WHERE event_type = 'stopped'") == [
        ("Local",)]


async def test_queued_backlog_keeps_its_own_timestamps(server: Server, station: Provisioned,
                                                       db_url: str) -> None:
    """Start, periodic samples and stop from two days ago, delivered now, in order."""
    samples = [TWO_DAYS_AGO + dt.timedelta(minutes=m) for m in (5, 10, 15)]
    stopped = TWO_DAYS_AGO + dt.timedelta(minutes=20)
    async with connect(server, station.code, station.secret) as ws:
        with trio.fail_after(10):
            await boot(ws)
        tx = (await ok(ws, "StartTransaction", start_payload()))["transactionId"]
        for n, at in enumerate(samples, start=1):
            await ok(ws, "MeterValues", {"connectorId": 1, "transactionId": tx, "meterValue": [
                {"timestamp": iso(at), "sampledValue": [{"value": str(1000 + n * 100)}]}]})
        await ok(ws, "StopTransaction", {"transactionId": tx, "meterStop": 1400,
                                         "timestamp": iso(stopped), "reason": "Local"})
    assert rows(db_url, "SELECT started_at, stopped_at, energy_wh FROM charging_sessions") == [
        (TWO_DAYS_AGO, stopped, 400)]
    assert rows(db_url, "SELECT sampled_at, value, unit, measurand, context, location "
                "FROM meter_values ORDER BY sampled_at") == [
        (at, Decimal(1000 + n * 100), "Wh", "Energy.Active.Import.Register", "Sample.Periodic",
         "Outlet") for n, at in enumerate(samples, start=1)]
    assert rows(db_url, "SELECT event_type, occurred_at FROM session_events "
                "ORDER BY occurred_at") == [("started", TWO_DAYS_AGO), ("stopped", stopped)]


async def test_meter_values_resent_are_stored_once(server: Server, station: Provisioned,
                                                   db_url: str) -> None:
    message = {"connectorId": 2, "meterValue": [
        {"timestamp": iso(TWO_DAYS_AGO), "sampledValue": [
            {"value": "1.5", "unit": "kWh"},
            {"value": "11", "unit": "kW", "measurand": "Power.Active.Import"},
            {"value": "230", "unit": "V", "measurand": "Voltage", "phase": "L1-N"},
            {"value": "231", "unit": "V", "measurand": "Voltage", "phase": "L2-N"}]}]}
    async with connect(server, station.code, station.secret) as ws:
        with trio.fail_after(10):
            await boot(ws)
        for _ in range(3):
            assert await ok(ws, "MeterValues", message) == {}
    assert rows(db_url, "SELECT measurand, phase, unit, value FROM meter_values "
                "ORDER BY measurand, phase") == [
        ("Energy.Active.Import.Register", None, "Wh", Decimal("1500")),
        ("Power.Active.Import", None, "W", Decimal("11000")),
        ("Voltage", "L1-N", "V", Decimal("230")),
        ("Voltage", "L2-N", "V", Decimal("231"))]


async def test_start_for_unknown_id_tag_is_recorded_and_answered_invalid(
        server: Server, station: Provisioned, db_url: str) -> None:
    async with connect(server, station.code, station.secret) as ws:
        with trio.fail_after(10):
            await boot(ws)
        answer = await ok(ws, "StartTransaction", start_payload(idTag="STRANGER"))
    assert isinstance(answer["transactionId"], int)
    assert answer["idTagInfo"]["status"] == "Invalid"
    assert rows(db_url, "SELECT transaction_id, id_tag, id_tag_status, status "
                "FROM charging_sessions") == [
        (answer["transactionId"], "STRANGER", "Invalid", "active")]
    assert rows(db_url, "SELECT event_type FROM session_events") == [("started",)]


async def test_unprovisioned_connector_is_discovered(server: Server, station: Provisioned,
                                                     db_url: str) -> None:
    at = dt.datetime.now(dt.UTC).replace(microsecond=0)
    async with connect(server, station.code, station.secret) as ws:
        with trio.fail_after(10):
            await boot(ws)
        await ok(ws, "StatusNotification", {"connectorId": 5, "errorCode": "NoError",
                                            "status": "Charging", "timestamp": iso(at)})
        await ok(ws, "MeterValues", {"connectorId": 5, "meterValue": [
            {"timestamp": iso(at), "sampledValue": [{"value": "42"}]}]})
        # MeterValues alone for yet another unknown connector
        await ok(ws, "MeterValues", {"connectorId": 7, "meterValue": [
            {"timestamp": iso(at), "sampledValue": [{"value": "43"}]}]})
    connectors = rows(db_url, "SELECT connector_number, discovered_at IS NOT NULL "
                      "FROM station_connectors WHERE station_id = %s "
                      "ORDER BY connector_number", station.id)
    assert connectors == [(1, False), (2, False), (5, True), (7, True)]
    assert rows(db_url, "SELECT status, ocpp_status, status_at FROM connector_runtime_state "
                "WHERE connector_number = 5") == [("charging", "Charging", at)]
    assert rows(db_url, "SELECT connector_number, status FROM connector_status_events") == [
        (5, "charging")]
    assert rows(db_url, "SELECT connector_number, value FROM meter_values "
                "ORDER BY connector_number") == [(5, Decimal(42)), (7, Decimal(43))]


async def test_older_status_replayed_does_not_overwrite_current_state(
        server: Server, station: Provisioned, db_url: str) -> None:
    newer = dt.datetime.now(dt.UTC).replace(microsecond=0)
    older = newer - dt.timedelta(minutes=10)
    async with connect(server, station.code, station.secret) as ws:
        with trio.fail_after(10):
            await boot(ws)
        await ok(ws, "StatusNotification", {"connectorId": 1, "errorCode": "NoError",
                                            "status": "Charging", "timestamp": iso(newer)})
        await ok(ws, "StatusNotification", {"connectorId": 1, "errorCode": "GroundFailure",
                                            "status": "Faulted", "timestamp": iso(older)})
    assert rows(db_url, "SELECT status, ocpp_status, ocpp_error_code, status_at "
                "FROM connector_runtime_state WHERE connector_number = 1") == [
        ("charging", "Charging", "NoError", newer)]
    assert rows(db_url, "SELECT occurred_at, status, ocpp_error_code "
                "FROM connector_status_events ORDER BY occurred_at") == [
        (older, "faulted", "GroundFailure"), (newer, "charging", "NoError")]


async def test_both_celsius_spellings_are_stored_as_celsius(
        server: Server, station: Provisioned, db_url: str) -> None:
    at = dt.datetime.now(dt.UTC).replace(microsecond=0)
    async with connect(server, station.code, station.secret) as ws:
        with trio.fail_after(10):
            await boot(ws)
        await ok(ws, "MeterValues", {"connectorId": 1, "meterValue": [
            {"timestamp": iso(at), "sampledValue": [
                {"value": "35.5", "measurand": "Temperature", "unit": "Celcius",
                 "location": "Body"},
                {"value": "41", "measurand": "Temperature", "unit": "Celsius",
                 "location": "Outlet"}]}]})
    assert rows(db_url, "SELECT location, unit, value FROM meter_values ORDER BY location") == [
        ("Body", "Celsius", Decimal("35.5")), ("Outlet", "Celsius", Decimal("41"))]


SIGNED = "AP;0;3;ALCV3ABBBISHMA2RYEGAZE3HV5YQBQRQAEHAR2MN;BIHEIWSHAAA2W2V7OYYDCNQAAAFACRC2I4ADGAET"


async def test_signed_data_keeps_raw_value(server: Server, station: Provisioned,
                                           db_url: str) -> None:
    at = dt.datetime.now(dt.UTC).replace(microsecond=0)
    async with connect(server, station.code, station.secret) as ws:
        with trio.fail_after(10):
            await boot(ws)
        await ok(ws, "MeterValues", {"connectorId": 1, "meterValue": [
            {"timestamp": iso(at), "sampledValue": [
                {"value": SIGNED, "format": "SignedData", "context": "Transaction.End"}]}]})
    assert rows(db_url, "SELECT format, value, raw_value, unit FROM meter_values") == [
        ("SignedData", None, SIGNED, "Wh")]


async def test_signed_data_next_to_raw_value_of_same_measurand_is_kept(
        server: Server, station: Provisioned, db_url: str) -> None:
    """The usual Eichrecht/OCMF shape: the plain reading and its signed twin, one timestamp.

    Regression: meter_values' unique key once left out `format`, and the signed
    twin was dropped by ON CONFLICT DO NOTHING (fixed in c04a6c3).
    """
    at = dt.datetime.now(dt.UTC).replace(microsecond=0)
    async with connect(server, station.code, station.secret) as ws:
        with trio.fail_after(10):
            await boot(ws)
        await ok(ws, "MeterValues", {"connectorId": 1, "meterValue": [
            {"timestamp": iso(at), "sampledValue": [
                {"value": "1234", "context": "Transaction.End"},
                {"value": SIGNED, "format": "SignedData", "context": "Transaction.End"}]}]})
    assert rows(db_url, "SELECT format, value, raw_value FROM meter_values ORDER BY format") == [
        ("Raw", Decimal("1234"), None), ("SignedData", None, SIGNED)]


async def test_stop_then_immediate_close_is_still_committed(
        server: Server, station: Provisioned, db_url: str) -> None:
    """A hard reset: StopTransaction sent, socket closed without reading the answer."""
    stopped = TWO_DAYS_AGO + dt.timedelta(minutes=30)
    async with connect(server, station.code, station.secret) as ws:
        with trio.fail_after(10):
            await boot(ws)
            tx = (await ok(ws, "StartTransaction", start_payload()))["transactionId"]
            await ws.send_message(json.dumps([2, str(uuid.uuid4()), "StopTransaction", {
                "transactionId": tx, "meterStop": 2500, "timestamp": iso(stopped),
                "reason": "HardReset"}]))
            await ws.aclose()
    await _expect_stopped(db_url, tx, stopped)


async def _expect_stopped(db_url: str, tx: int, stopped: dt.datetime) -> None:
    state: list[tuple[Any, ...]] = []
    with trio.move_on_after(3):
        while True:
            state = rows(db_url, "SELECT status, energy_wh, stopped_at, stop_reason "
                         "FROM charging_sessions WHERE transaction_id = %s", tx)
            if state[0][0] == "completed":
                break
            await trio.sleep(0.05)
    assert state == [("completed", 1500, stopped, "HardReset")]
    assert rows(db_url, "SELECT event_type FROM session_events ORDER BY occurred_at") == [
        ("started",), ("stopped",)]


async def test_stop_sent_and_closed_while_connection_is_being_registered(
        server: Server, station: Provisioned, db_url: str) -> None:
    """A charger reconnects, flushes its queued stop at once and hard-resets.

    The connection's registration commit (station_connected) is held back by a
    row lock, so the charger is gone before the session reads its first frame:
    the frame is already received and must still be handled. Regression: the
    session once read ws.remote (getpeername) after that commit, which raised
    OSError on the closed socket and lost the stop (fixed in c04a6c3).
    """
    stopped = TWO_DAYS_AGO + dt.timedelta(minutes=30)
    async with connect(server, station.code, station.secret) as ws:
        with trio.fail_after(10):
            await boot(ws)
            tx = (await ok(ws, "StartTransaction", start_payload()))["transactionId"]
    with psycopg.connect(db_url) as lock:  # a transaction stays open until rollback
        lock.execute("SELECT 1 FROM station_runtime_state WHERE station_id = %s FOR UPDATE",
                     (station.id,))
        try:
            # a hard reset: the stop and a close frame go out, nobody waits for the answer
            with trio.move_on_after(1):
                async with connect(server, station.code, station.secret) as ws:
                    await ws.send_message(json.dumps([2, str(uuid.uuid4()), "StopTransaction", {
                        "transactionId": tx, "meterStop": 2500, "timestamp": iso(stopped),
                        "reason": "HardReset"}]))
                    await ws.aclose()
        finally:
            lock.rollback()
    await _expect_stopped(db_url, tx, stopped)


async def test_start_transaction_on_connector_zero_is_refused_not_stored(
        server: Server, station: Provisioned, db_url: str) -> None:
    async with connect(server, station.code, station.secret) as ws:
        with trio.fail_after(10):
            await boot(ws)
            answer = await call(ws, "StartTransaction", {
                "connectorId": 0, "idTag": "TAG", "meterStart": 0,
                "timestamp": iso(dt.datetime.now(dt.UTC))})
    assert answer[0] == 4 and answer[2] == "PropertyConstraintViolation", answer
    assert rows(db_url, "SELECT count(*) FROM charging_sessions") == [(0,)]
