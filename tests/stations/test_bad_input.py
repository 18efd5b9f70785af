"""Bad input on an authenticated, booted connection: the answer, then still usable.

OCPP-J 1.6 §4: a broken CALL whose unique id can be read -- even when the rest of
its JSON cannot, and a numeric id as the string the charger wrote -- gets a CALLERROR
`[4, id, code, description, {}]` in the 1.6 spellings (FormationViolation,
OccurenceConstraintViolation); a frame whose id cannot be read, a CALLRESULT or
CALLERROR nobody waits for, an unknown message type and a binary frame get no
answer at all. Either way the connection keeps working, which each case proves
by a Heartbeat whose CALLRESULT must be the very next frame. Strings PostgreSQL
cannot store (NUL padding, lone surrogates) are cleaned, stored and warned about,
never turned into an InternalError the charger retries forever; and no id tag or
key reaches the log.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from decimal import Decimal
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
from .test_commands import Charger

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


REAL_CHARGER_METER_VALUES = (  # sent in the field: an element missing before the comma
    '[2,"mv-1","MeterValues",{"connectorId":1,"meterValue":[{"timestamp":"' + NOW + '",'
    '"sampledValue":[,{"value":"10"}]}]}]')

# (case id, frame sent, expected CALLERROR code and unique id, or None: no answer at all)
BAD_FRAMES: list[tuple[str, str | bytes, tuple[str, str] | None]] = [
    # no readable unique id -> nothing to answer
    ("not JSON", "this is not json", None),
    ("JSON object", "{}", None),
    ("empty array", "[]", None),
    ("type only", "[2]", None),
    ("truncated before the id", "[2, ", None),
    ("null unique id", '[2, null, "Heartbeat", {}]', None),
    ("boolean unique id", '[2, true, "Heartbeat", {}]', None),
    ("object unique id", '[2, {"id": 1}, "Heartbeat", {}]', None),
    ("truncated JSON, id of 37 chars", f'[2, "{"x" * 37}", "Heartbeat", {{', None),
    ("truncated JSON, id not a JSON string", '[2, "bad\\q", "Heartbeat", {', None),
    # broken JSON whose unique id can still be read: FormationViolation for that id, or the
    # charger retries it forever
    ("truncated JSON", '[2, "t-1", "Heartbeat", {', ("FormationViolation", "t-1")),
    ("missing array element", REAL_CHARGER_METER_VALUES, ("FormationViolation", "mv-1")),
    ("NaN payload", '[2, "nan", "Heartbeat", NaN]', ("FormationViolation", "nan")),
    ("number beyond Decimal", '[2,"big","MeterValues",{"connectorId":1e99999999999999999999,'
     '"meterValue":[]}]', ("FormationViolation", "big")),
    ("nested 10,000 levels", '[2,"deep","DataTransfer",' + "[" * 10_000,
     ("FormationViolation", "deep")),
    ("nested 33 levels, valid JSON", '[2,"d33","DataTransfer",{"vendorId":"v","data":'
     + "[" * 31 + "]" * 31 + "}]", ("FormationViolation", "d33")),
    ("lone surrogate unique id, broken JSON", '[2,"\\ud800","Heartbeat",{',
     ("FormationViolation", "\ud800")),
    # a numeric unique id is answered, as the string the charger wrote
    ("numeric unique id", '[2, 5, "Heartbeat", {}]', ("FormationViolation", "5")),
    ("numeric unique id, broken JSON", '[2, 17, "MeterValues", {', ("FormationViolation", "17")),
    # framing with a readable unique id -> FormationViolation for that id
    ("CALL of 3 elements", '[2, "id1", "Heartbeat"]', ("FormationViolation", "id1")),
    ("CALL of 5 elements", '[2, "id5", "Heartbeat", {}, {}]', ("FormationViolation", "id5")),
    ("type as string", '["2", "ts", "Heartbeat", {}]', ("FormationViolation", "ts")),
    ("action not a string", '[2, "an", 7, {}]', ("FormationViolation", "an")),
    ("payload is a list", '[2, "pl", "Heartbeat", []]', ("FormationViolation", "pl")),
    ("unique id of 37 chars", frame("Heartbeat", {}, "x" * 37), ("ProtocolError", "x" * 37)),
    # actions
    ("unknown action", frame("FooBar", {}), ("NotImplemented", "bad-1")),
    ("action in wrong case", frame("heartbeat", {}), ("NotImplemented", "bad-1")),
    ("CSMS-to-charger action", frame("Reset", {"type": "Hard"}), ("NotSupported", "bad-1")),
    # schema violations, one kind each
    ("StatusNotification without errorCode",
     frame("StatusNotification", {"connectorId": 1, "status": "Available"}),
     ("OccurenceConstraintViolation", "bad-1")),
    ("StatusNotification connectorId as string",
     frame("StatusNotification", {**STATUS, "connectorId": "1"}),
     ("TypeConstraintViolation", "bad-1")),
    ("StatusNotification status out of enum",
     frame("StatusNotification", {**STATUS, "status": "Sleeping"}),
     ("PropertyConstraintViolation", "bad-1")),
    ("StatusNotification errorCode Error (strict mode)",
     frame("StatusNotification", {**STATUS, "errorCode": "Error"}),
     ("PropertyConstraintViolation", "bad-1")),
    ("StatusNotification additional property",
     frame("StatusNotification", {**STATUS, "colour": "red"}),
     ("PropertyConstraintViolation", "bad-1")),
    ("BootNotification vendor of 21 chars",
     frame("BootNotification", {**BOOT, "chargePointVendor": "V" * 21}),
     ("PropertyConstraintViolation", "bad-1")),
    ("MeterValues with empty meterValue",
     frame("MeterValues", {"connectorId": 1, "meterValue": []}),
     ("OccurenceConstraintViolation", "bad-1")),
    ("StartTransaction timestamp not a date-time",
     frame("StartTransaction", {**START, "timestamp": "yesterday"}),
     ("TypeConstraintViolation", "bad-1")),
    ("StartTransaction meterStart as float",
     frame("StartTransaction", {**START, "meterStart": 1.5}), ("TypeConstraintViolation", "bad-1")),
    # OCPP 1.6 integers are 32 bits; a wider one must not reach an integer column
    ("StartTransaction connectorId beyond 32 bits",
     frame("StartTransaction", {**START, "connectorId": 2**31}),
     ("TypeConstraintViolation", "bad-1")),
    # answers nobody asked for, unknown types, binary: ignored (OCPP-J §4.1.3, §3.3)
    ("CALLRESULT for unknown id", '[3, "nope", {}]', None),
    ("CALLERROR for unknown id", '[4, "nope", "GenericError", "", {}]', None),
    ("CALLRESULT with broken JSON", '[3, "nope", {', None),
    ("unknown message type", '[7, "x", {}]', None),
    ("unknown message type, broken JSON", '[7, "x", {', None),
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
                         [pytest.param(sent, answer, id=case) for case, sent, answer in BAD_FRAMES])
async def test_bad_frame(ws: WebSocketConnection, sent: str | bytes,
                         expected: tuple[str, str] | None) -> None:
    await ws.send_message(sent)
    if expected is not None:
        with trio.fail_after(5):
            text = await ws.get_message()
        answer = json.loads(text)
        assert answer[:3] == [4, expected[1], expected[0]], answer
        assert len(answer) == 5 and isinstance(answer[3], str) and answer[4] == {}, answer
        assert answer[2] in ERROR_CODES_16
        # the 2.x spellings break 1.6 chargers
        assert "FormatViolation" not in text and "OccurrenceConstraintViolation" not in text
    await assert_usable(ws)


async def test_rejected_calls_store_nothing(ws: WebSocketConnection, station: Provisioned,
                                           db_url: str) -> None:
    for case, sent, answer in BAD_FRAMES:
        if answer is not None and "StatusNotification" in case:
            await ws.send_message(sent)
            with trio.fail_after(5):
                assert json.loads(await ws.get_message())[2] == answer[0]
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


NUL3 = "\u0000" * 3


async def test_nul_padded_boot_is_accepted_and_stored_clean(
        ws: WebSocketConnection, station: Provisioned, db_url: str,
        caplog: pytest.LogCaptureFixture) -> None:
    # C firmware pads fixed buffers; the 20-character model is valid once unpadded
    with trio.fail_after(5):
        answer = await call(ws, "BootNotification", {
            "chargePointVendor": f"ABB{NUL3}", "chargePointModel": "M" * 20 + NUL3,
            "firmwareVersion": f"1.7.2{NUL3}", "chargePointSerialNumber": "SN\u0000-9"},
            unique_id="b-nul")
    assert answer[:2] == [3, "b-nul"] and answer[2]["status"] == "Accepted", answer
    assert rows(db_url, "SELECT charge_point_vendor, charge_point_model, firmware_version, "
                        "charge_point_serial_number FROM station_boot_events "
                        "WHERE station_id = %s ORDER BY occurred_at DESC LIMIT 1",
                station.id) == [("ABB", "M" * 20, "1.7.2", "SN-9")]
    assert rows(db_url, "SELECT reported_vendor, reported_model, firmware_version "
                        "FROM station_runtime_state WHERE station_id = %s",
                station.id) == [("ABB", "M" * 20, "1.7.2")]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert f"{station.code} BootNotification accepted with a warning: chargePointVendor: " \
        "NUL characters removed" in warnings
    await assert_usable(ws)


async def test_unstorable_strings_in_notifications_are_stored_clean(
        ws: WebSocketConnection, station: Provisioned, db_url: str) -> None:
    with trio.fail_after(5):
        answer = await call(ws, "StatusNotification", {**STATUS, "info": "lid \ud800 open"},
                            unique_id="s-sur")
        assert answer == [3, "s-sur", {}]
        answer = await call(ws, "DataTransfer", {"vendorId": "com.acme\u0000",
                                                 "data": f"blob{NUL3}\udfff"},
                            unique_id="d-nul")
        assert answer[:2] == [3, "d-nul"], answer
    assert rows(db_url, "SELECT info FROM connector_status_events WHERE station_id = %s",
                station.id) == [("lid \ufffd open",)]
    assert rows(db_url, "SELECT payload FROM station_notifications WHERE station_id = %s "
                        "AND action = 'DataTransfer'",
                station.id) == [({"vendorId": "com.acme", "data": "blob\ufffd"},)]
    await assert_usable(ws)


@pytest.mark.parametrize("unit", ["Wh", "kWh"])
async def test_absurd_meter_values_are_stored_as_raw_text(
        ws: WebSocketConnection, station: Provisioned, db_url: str, unit: str) -> None:
    """A value PostgreSQL's numeric cannot hold ("1e999999") once failed the whole write,
    and the charger resent it forever; it is kept as raw text like any non-number."""
    values = ["1e999999", "-1e200000", "12.5"]
    with trio.fail_after(5):
        answer = await call(ws, "MeterValues", {"connectorId": 1, "meterValue": [
            {"timestamp": f"2024-05-01T12:00:0{n}Z",
             "sampledValue": [{"value": value, "unit": unit}]}
            for n, value in enumerate(values)]}, unique_id="mv-big")
    assert answer == [3, "mv-big", {}]
    factor = 1000 if unit == "kWh" else 1
    assert rows(db_url, "SELECT value, raw_value FROM meter_values WHERE station_id = %s "
                        "ORDER BY sampled_at", station.id) == [
        (None, "1e999999"), (None, "-1e200000"), (Decimal("12.5") * factor, None)]
    await assert_usable(ws)


async def test_command_answer_with_nul_is_stored_clean(
        api: httpx.AsyncClient, server: Server, station: Provisioned, db_url: str) -> None:
    answer = {"configurationKey": [
        {"key": "ChargePointVendor", "readonly": True, "value": "ABB\x00\x00"},
        {"key": "Note\x00", "readonly": False, "value": "x\ud800"}]}
    async with connect(server, station.code, station.secret) as conn:
        await boot(conn)
        bot = Charger(conn, lambda action, _: answer)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(bot.run)
            with trio.fail_after(10):
                r = await api.post(f"/api/stations/{station.id}/commands/GetConfiguration",
                                   json={})
            nursery.cancel_scope.cancel()
    assert r.status_code == 200, r.text
    clean = {"configurationKey": [
        {"key": "ChargePointVendor", "readonly": True, "value": "ABB"},
        {"key": "Note", "readonly": False, "value": "x\ufffd"}]}
    assert r.json()["status"] == "answered" and r.json()["response"] == clean
    assert rows(db_url, "SELECT response FROM station_commands WHERE id = %s",
                r.json()["id"]) == [(clean,)]
    assert rows(db_url, "SELECT key, value FROM station_configuration WHERE station_id = %s "
                        "ORDER BY key", station.id) == [("ChargePointVendor", "ABB"),
                                                         ("Note", "x\ufffd")]


TAG = "ZQX-TAG-4711"
PARENT = "ZQX-PARENT-0815"
LISTED = "ZQX-LISTED-2342"
KEY = "ZQXKEY0123456789abcdefgh"


async def test_id_tags_and_keys_never_reach_the_log(
        api: httpx.AsyncClient, server: Server, station: Provisioned,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    r = await api.post("/api/id-tags", json={"accountId": station.account_id, "idTag": TAG,
                                             "parentIdTag": PARENT})
    assert r.status_code == 201, r.text
    async with connect(server, station.code, station.secret) as conn:
        with trio.fail_after(10):
            await boot(conn)
            answer = await call(conn, "Authorize", {"idTag": TAG}, unique_id="auth")
            assert answer[2]["idTagInfo"] == {"status": "Accepted", "parentIdTag": PARENT}
            answer = await call(conn, "StartTransaction", {**START, "idTag": TAG})
            transaction_id = answer[2]["transactionId"]
            answer = await call(conn, "StopTransaction", {
                "transactionId": transaction_id, "idTag": TAG, "meterStop": 10,
                "timestamp": NOW})
            assert answer[2]["idTagInfo"]["status"] == "Accepted"
            # refused: the description says what is wrong without quoting the tag
            answer = await call(conn, "Authorize", {"idTag": TAG + "-TOO-LONG"}, "long")
            assert answer == [4, "long", "PropertyConstraintViolation",
                              "idTag: longer than 20 characters", {}]
            await conn.send_message('[2,"broken","Authorize",{"idTag":"' + TAG + '",}]')
            assert json.loads(await conn.get_message())[:3] == [
                4, "broken", "FormationViolation"]
        bot = Charger(conn, lambda action, _: {"status": "Accepted"} if action != (
            "GetConfiguration") else {"configurationKey": [
                {"key": "AuthorizationKey", "value": KEY, "readonly": False}]})
        async with trio.open_nursery() as nursery:
            nursery.start_soon(bot.run)
            with trio.fail_after(10):
                r = await api.post(f"/api/stations/{station.id}/commands/SendLocalList", json={
                    "listVersion": 1, "updateType": "Full", "localAuthorizationList": [
                        {"idTag": LISTED, "idTagInfo": {"status": "Accepted",
                                                        "parentIdTag": PARENT}}]})
                assert r.status_code == 200, r.text
                # never sent through a command (docs/commands.md) ...
                r = await api.post(f"/api/stations/{station.id}/commands/ChangeConfiguration",
                                   json={"key": "AuthorizationKey", "value": KEY})
                assert r.status_code == 422, r.text
                # ... but firmware may report it: the frame is logged with it redacted
                r = await api.post(f"/api/stations/{station.id}/commands/GetConfiguration",
                                   json={})
                assert r.status_code == 200 and KEY not in r.text, r.text
            nursery.cancel_scope.cancel()
    assert LISTED in bot.received[0] and len(bot.received) == 2  # the charger got the list
    logged = caplog.text + "\n".join(r.getMessage() for r in caplog.records)
    for secret in (TAG, PARENT, LISTED, KEY):
        assert secret not in logged, secret
    frames = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG
              and r.name == "autimit_csms.stations.session"]
    assert f'{station.code} <- [2,"auth","Authorize",{{"idTag":"<redacted>"}}]' in frames
    assert any('"parentIdTag":"<redacted>"' in f and f.startswith(f"{station.code} -> [3,")
               for f in frames)
    assert any('"localAuthorizationList":[{"idTag":"<redacted>"' in f for f in frames)
    assert any('"key":"AuthorizationKey","value":"<redacted>"' in f for f in frames)
    assert any('"broken","Authorize",{"idTag":"<redacted>"' in f for f in frames)
