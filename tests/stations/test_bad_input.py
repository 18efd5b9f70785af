"""Bad input on an authenticated, booted connection: the answer, then still usable.

OCPP-J 1.6 §4: a broken CALL whose unique id can be read gets a CALLERROR
`[4, id, code, description, {}]` in the 1.6 spellings (FormationViolation,
OccurenceConstraintViolation); a frame whose id cannot be read, a CALLRESULT or
CALLERROR nobody waits for, an unknown message type and a binary frame get no
answer at all. Either way the connection keeps working, which each case proves
by a Heartbeat whose CALLRESULT must be the very next frame.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import psycopg
import pytest
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection

from autimit_csms.db import Database
from autimit_csms.server import Server

from ..conftest import server_settings
from .conftest import Provisioned, boot, call, connect, rows

ERROR_CODES_16 = {
    "NotImplemented", "NotSupported", "InternalError", "ProtocolError", "SecurityError",
    "FormationViolation", "PropertyConstraintViolation", "OccurenceConstraintViolation",
    "TypeConstraintViolation", "GenericError",
}
NOW = "2024-05-01T12:00:00Z"
STATUS = {"connectorId": 1, "errorCode": "NoError", "status": "Available"}
BOOT = {"chargePointVendor": "TestVendor", "chargePointModel": "TestModel"}
START = {"connectorId": 1, "idTag": "TAG-1", "meterStart": 0, "timestamp": NOW}


def frame(action: str, payload: Any, unique_id: str = "bad-1") -> str:
    return json.dumps([2, unique_id, action, payload])


# (case id, frame sent, expected CALLERROR code, or None: no answer at all)
BAD_FRAMES: list[tuple[str, str | bytes, str | None]] = [
    # framing (OCPP-J §4.1): no readable unique id -> nothing to answer
    ("not JSON", "this is not json", None),
    ("truncated JSON", '[2, "t-1", "Heartbeat", {', None),
    ("JSON object", "{}", None),
    ("empty array", "[]", None),
    ("type only", "[2]", None),
    ("numeric unique id", '[2, 5, "Heartbeat", {}]', None),
    ("null unique id", '[2, null, "Heartbeat", {}]', None),
    # framing with a readable unique id -> FormationViolation for that id
    ("CALL of 3 elements", '[2, "id1", "Heartbeat"]', "FormationViolation"),
    ("CALL of 5 elements", '[2, "id5", "Heartbeat", {}, {}]', "FormationViolation"),
    ("type as string", '["2", "ts", "Heartbeat", {}]', "FormationViolation"),
    ("action not a string", '[2, "an", 7, {}]', "FormationViolation"),
    ("payload is a list", '[2, "pl", "Heartbeat", []]', "FormationViolation"),
    ("unique id of 37 chars", frame("Heartbeat", {}, "x" * 37), "ProtocolError"),
    # actions
    ("unknown action", frame("FooBar", {}), "NotImplemented"),
    ("action in wrong case", frame("heartbeat", {}), "NotImplemented"),
    ("CSMS-to-charger action", frame("Reset", {"type": "Hard"}), "NotSupported"),
    # schema violations, one kind each
    ("StatusNotification without errorCode",
     frame("StatusNotification", {"connectorId": 1, "status": "Available"}),
     "OccurenceConstraintViolation"),
    ("StatusNotification connectorId as string",
     frame("StatusNotification", {**STATUS, "connectorId": "1"}), "TypeConstraintViolation"),
    ("StatusNotification status out of enum",
     frame("StatusNotification", {**STATUS, "status": "Sleeping"}),
     "PropertyConstraintViolation"),
    ("StatusNotification errorCode Error (strict mode)",
     frame("StatusNotification", {**STATUS, "errorCode": "Error"}),
     "PropertyConstraintViolation"),
    ("StatusNotification additional property",
     frame("StatusNotification", {**STATUS, "colour": "red"}), "PropertyConstraintViolation"),
    ("BootNotification vendor of 21 chars",
     frame("BootNotification", {**BOOT, "chargePointVendor": "V" * 21}),
     "PropertyConstraintViolation"),
    ("MeterValues with empty meterValue",
     frame("MeterValues", {"connectorId": 1, "meterValue": []}),
     "OccurenceConstraintViolation"),
    ("StartTransaction timestamp not a date-time",
     frame("StartTransaction", {**START, "timestamp": "yesterday"}), "TypeConstraintViolation"),
    ("StartTransaction meterStart as float",
     frame("StartTransaction", {**START, "meterStart": 1.5}), "TypeConstraintViolation"),
    # answers nobody asked for, unknown types, binary: ignored (OCPP-J §4.1.3, §3.3)
    ("CALLRESULT for unknown id", '[3, "nope", {}]', None),
    ("CALLERROR for unknown id", '[4, "nope", "GenericError", "", {}]', None),
    ("unknown message type", '[7, "x", {}]', None),
    ("binary frame", b"\x00\x01\x02 not text", None),
    ("binary frame holding a CALL", frame("Heartbeat", {}, "bin").encode(), None),
]


@pytest.fixture
async def ws(server: Server, station: Provisioned) -> AsyncIterator[WebSocketConnection]:
    """An authenticated connection of a station that has booted (Accepted)."""
    async with connect(server, station.code, station.secret) as conn:
        with trio.fail_after(5):
            await boot(conn)
        yield conn


async def assert_usable(ws: WebSocketConnection) -> None:
    """The next frame from the server is the answer to this Heartbeat: nothing else
    was sent before it, and the connection still works."""
    with trio.fail_after(5):
        answer = await call(ws, "Heartbeat", {}, unique_id="still-usable")
    assert answer[:2] == [3, "still-usable"], answer
    assert set(answer[2]) == {"currentTime"}


@pytest.mark.parametrize(("sent", "expected"),
                         [pytest.param(sent, code, id=case) for case, sent, code in BAD_FRAMES])
async def test_bad_frame(ws: WebSocketConnection, sent: str | bytes,
                         expected: str | None) -> None:
    await ws.send_message(sent)
    if expected is not None:
        with trio.fail_after(5):
            text = await ws.get_message()
        answer = json.loads(text)
        assert answer[:3] == [4, json.loads(sent)[1], expected], answer
        assert len(answer) == 5 and isinstance(answer[3], str) and answer[4] == {}, answer
        assert answer[2] in ERROR_CODES_16
        # the 2.x spellings break 1.6 chargers
        assert "FormatViolation" not in text and "OccurrenceConstraintViolation" not in text
    await assert_usable(ws)


async def test_rejected_calls_store_nothing(ws: WebSocketConnection, station: Provisioned,
                                           db_url: str) -> None:
    for case, sent, code in BAD_FRAMES:
        if code is not None and "StatusNotification" in case:
            await ws.send_message(sent)
            with trio.fail_after(5):
                assert json.loads(await ws.get_message())[2] == code
    await assert_usable(ws)
    assert rows(db_url, "SELECT count(*) FROM connector_status_events") == [(0,)]
    assert rows(db_url, "SELECT count(*) FROM station_boot_events") == [(1,)]


async def test_oversize_frame_closes_with_1009(api: httpx.AsyncClient, station: Provisioned,
                                              db: Database, db_url: str) -> None:
    async with trio.open_nursery() as nursery:
        small: Server = await nursery.start(
            Server(server_settings(db_url, max_frame_bytes=1024, shutdown_grace=0.3), db).run)
        async with connect(small, station.code, station.secret) as conn:
            with trio.fail_after(5):
                await boot(conn)
                # just under the limit: still fine
                answer = await call(conn, "DataTransfer", {"vendorId": "v", "data": "d" * 900})
            assert answer[0] == 3
            await conn.send_message(frame("DataTransfer", {"vendorId": "v", "data": "d" * 2000}))
            with trio.fail_after(5), pytest.raises(ConnectionClosed) as closed:
                await conn.get_message()
            assert closed.value.reason.code == 1009
        small.stop()
    # the oversize frame was not handled: only the first DataTransfer is stored
    assert rows(db_url, "SELECT count(*) FROM station_notifications "
                        "WHERE action = 'DataTransfer'") == [(1,)]


@pytest.mark.parametrize(("action", "payload", "conf"), [
    ("FirmwareStatusNotification", {"status": "Installed"}, {}),
    ("DiagnosticsStatusNotification", {"status": "Uploaded"}, {}),
    ("SecurityEventNotification", {"type": "SettingSystemTime", "timestamp": NOW}, {}),
    ("DataTransfer", {"vendorId": "com.example", "messageId": "m", "data": "x"},
     {"status": "UnknownVendorId"}),
])
async def test_notifications_are_answered_and_stored(
        ws: WebSocketConnection, station: Provisioned, db_url: str, action: str,
        payload: dict[str, Any], conf: dict[str, Any]) -> None:
    with trio.fail_after(5):
        answer = await call(ws, action, payload, unique_id="n-1")
    assert answer == [3, "n-1", conf]
    assert rows(db_url, "SELECT action, payload FROM station_notifications "
                        "WHERE station_id = %s", station.id) == [(action, payload)]
    await assert_usable(ws)


async def test_boot_with_empty_iccid_is_accepted(ws: WebSocketConnection) -> None:
    with trio.fail_after(5):
        answer = await call(ws, "BootNotification", {**BOOT, "iccid": ""}, unique_id="b-2")
    assert answer[:2] == [3, "b-2"] and answer[2]["status"] == "Accepted", answer


async def test_relaxed_station_stores_out_of_enum_error_code(
        server: Server, station: Provisioned, db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        conn.execute("UPDATE stations SET ocpp_relaxed = true WHERE id = %s", (station.id,))
    async with connect(server, station.code, station.secret) as conn:
        with trio.fail_after(5):
            await boot(conn)
            answer = await call(conn, "StatusNotification",
                                {**STATUS, "status": "Faulted", "errorCode": "Error"},
                                unique_id="s-1")
        assert answer == [3, "s-1", {}]
        assert rows(db_url, "SELECT connector_number, ocpp_status, ocpp_error_code "
                            "FROM connector_status_events WHERE station_id = %s",
                    station.id) == [(1, "Faulted", "Error")]
        # relaxed covers out-of-enum values only: a wrong type is still refused
        with trio.fail_after(5):
            answer = await call(conn, "StatusNotification", {**STATUS, "connectorId": "1"},
                                unique_id="s-2")
        assert answer[:3] == [4, "s-2", "TypeConstraintViolation"]
