"""Commands from the REST API to a connected charger, over real sockets."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import psycopg
import pytest
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection

from autimit_csms.db import Database
from autimit_csms.server import Server

from ..conftest import ADMIN_TOKEN, server_settings
from .conftest import Provisioned, boot, connect, rows

SOON = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
PROFILE = {"chargingProfileId": 7, "stackLevel": 1, "chargingProfilePurpose": "TxDefaultProfile",
           "chargingProfileKind": "Absolute", "chargingSchedule": {
               "chargingRateUnit": "A", "chargingSchedulePeriod": [
                   {"startPeriod": 0, "limit": 11.10}]}}

# action -> (request the operator sends, the charger's answer)
COMMANDS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "RemoteStartTransaction": ({"idTag": "TAG-1", "connectorId": 1}, {"status": "Accepted"}),
    "RemoteStopTransaction": ({"transactionId": 42}, {"status": "Accepted"}),
    "Reset": ({"type": "Soft"}, {"status": "Accepted"}),
    "UnlockConnector": ({"connectorId": 1}, {"status": "Unlocked"}),
    "ChangeAvailability": ({"connectorId": 0, "type": "Inoperative"}, {"status": "Scheduled"}),
    "ChangeConfiguration": ({"key": "HeartbeatInterval", "value": "120"}, {"status": "Accepted"}),
    "GetConfiguration": ({}, {"configurationKey": [
        {"key": "HeartbeatInterval", "readonly": False, "value": "120"},
        {"key": "NumberOfConnectors", "readonly": True, "value": "2"}]}),
    "ClearCache": ({}, {"status": "Accepted"}),
    "TriggerMessage": ({"requestedMessage": "StatusNotification", "connectorId": 1},
                       {"status": "Accepted"}),
    "DataTransfer": ({"vendorId": "com.acme", "messageId": "ping"},
                     {"status": "Accepted", "data": "pong"}),
    "UpdateFirmware": ({"location": "https://fw.example/1.bin", "retrieveDate": SOON}, {}),
    "GetDiagnostics": ({"location": "ftp://diag.example/"}, {"fileName": "diag.tar"}),
    "ReserveNow": ({"connectorId": 1, "expiryDate": SOON, "idTag": "TAG-1"},
                   {"status": "Accepted"}),
    "CancelReservation": ({"reservationId": 999}, {"status": "Rejected"}),
    "SendLocalList": ({"listVersion": 3, "updateType": "Full", "localAuthorizationList": [
        {"idTag": "TAG-1", "idTagInfo": {"status": "Accepted"}}]}, {"status": "Accepted"}),
    "GetLocalListVersion": ({}, {"listVersion": 3}),
    "SetChargingProfile": ({"connectorId": 1, "csChargingProfiles": PROFILE},
                           {"status": "Accepted"}),
    "ClearChargingProfile": ({"id": 99}, {"status": "Unknown"}),
    "GetCompositeSchedule": ({"connectorId": 1, "duration": 3600}, {"status": "Rejected"}),
}


class Charger:
    """A scripted charge point: answers each CALL with `answer(action, payload)`."""

    def __init__(self, ws: WebSocketConnection,
                 answer: Callable[[str, dict[str, Any]], Any]) -> None:
        self.ws, self.answer = ws, answer
        self.received: list[str] = []

    async def run(self) -> None:
        while True:
            try:
                text = await self.ws.get_message()
            except ConnectionClosed:
                return
            self.received.append(text)
            frame = json.loads(text)
            reply = self.answer(frame[2], frame[3])
            if reply is not None:
                await self.ws.send_message(json.dumps([3, frame[1], reply]))


@pytest.fixture
async def charger(server: Server, station: Provisioned) -> AsyncIterator[Charger]:
    async with connect(server, station.code, station.secret) as ws:
        await boot(ws)
        bot = Charger(ws, lambda action, _: COMMANDS[action][1])
        async with trio.open_nursery() as nursery:
            nursery.start_soon(bot.run)
            yield bot
            nursery.cancel_scope.cancel()


@pytest.mark.parametrize("action", sorted(COMMANDS))
async def test_every_command_reaches_the_charger_and_returns_its_answer(
        api: httpx.AsyncClient, station: Provisioned, charger: Charger, action: str,
        db_url: str) -> None:
    request, answer = COMMANDS[action]
    with trio.fail_after(10):
        r = await api.post(f"/api/stations/{station.id}/commands/{action}", json=request)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "answered" and body["response"] == answer and body["error"] is None
    frame_text = charger.received[-1]
    frame = json.loads(frame_text)
    assert frame[0] == 2 and frame[2] == action
    assert " " not in frame_text.replace('"TAG-1"', "")  # compact JSON
    with psycopg.connect(db_url) as conn:
        row = conn.execute("SELECT status, requested_by, response, sent_at <= finished_at, "
                           "node_id IS NOT NULL FROM station_commands WHERE id = %s",
                           (body["id"],)).fetchone()
    assert row == ("answered", "admin", answer, True, True)


async def test_outbound_frames_follow_the_schema_member_order(
        api: httpx.AsyncClient, station: Provisioned, charger: Charger) -> None:
    # The operator writes the members in another order than the schema.
    # Raw text: the number 11.10 must reach the charger as written.
    r = await api.post(f"/api/stations/{station.id}/commands/SetChargingProfile", content=(
        '{"csChargingProfiles": {"chargingSchedule": {"chargingSchedulePeriod": ['
        '{"limit": 11.10, "startPeriod": 0}], "chargingRateUnit": "A"}, '
        '"chargingProfileKind": "Absolute", "chargingProfilePurpose": "TxDefaultProfile", '
        '"stackLevel": 1, "chargingProfileId": 7}, "connectorId": 1}'),
        headers={"Content-Type": "application/json"})
    assert r.status_code == 200
    sent = charger.received[-1]
    payload = sent[sent.index("{"):-1]
    assert payload == (
        '{"connectorId":1,"csChargingProfiles":{"chargingProfileId":7,"stackLevel":1,'
        '"chargingProfilePurpose":"TxDefaultProfile","chargingProfileKind":"Absolute",'
        '"chargingSchedule":{"chargingRateUnit":"A","chargingSchedulePeriod":'
        '[{"startPeriod":0,"limit":11.10}]}}}')


@pytest.mark.parametrize(("action", "body", "field"), [
    ("Reset", {"type": "Warm"}, "type"),
    ("Reset", {}, "payload"),
    ("UnlockConnector", {"connectorId": "one"}, "connectorId"),
    ("ChangeConfiguration", {"key": "K", "value": "v", "extra": 1}, "payload"),
    ("RemoteStartTransaction", {"idTag": "x" * 21}, "idTag"),
])
async def test_invalid_payload_is_422_and_nothing_is_sent(
        api: httpx.AsyncClient, station: Provisioned, charger: Charger, action: str,
        body: dict[str, Any], field: str) -> None:
    r = await api.post(f"/api/stations/{station.id}/commands/{action}", json=body)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"] == field
    await trio.sleep(0.1)
    assert charger.received == []


async def test_unknown_action_and_offline_station(
        api: httpx.AsyncClient, station: Provisioned, db_url: str) -> None:
    r = await api.post(f"/api/stations/{station.id}/commands/Heartbeat", json={})
    assert r.status_code == 404
    r = await api.post(f"/api/stations/{station.id}/commands/Reset", json={"type": "Hard"})
    assert r.status_code == 409 and r.json()["error"]["code"] == "station_offline"
    with psycopg.connect(db_url) as conn:  # the attempt is on record too
        assert conn.execute("SELECT action, status FROM station_commands").fetchall() == [
            ("Reset", "offline")]


async def test_silent_charger_gives_504_and_the_next_command_works(
        api: httpx.AsyncClient, station: Provisioned, db: Database, db_url: str) -> None:
    async with trio.open_nursery() as nursery:
        quick: Server = await nursery.start(
            Server(server_settings(db_url, command_timeout=0.5), db).run)
        async with httpx.AsyncClient(base_url=quick.api_urls[0], headers={
                "Authorization": f"Bearer {ADMIN_TOKEN}"}) as quick_api, \
                connect(quick, station.code, station.secret) as ws:
            await boot(ws)
            silent = {"ClearCache"}
            bot = Charger(ws, lambda action, _: None if action in silent else {"status":
                                                                               "Accepted"})
            nursery.start_soon(bot.run)
            with trio.fail_after(5):
                r = await quick_api.post(f"/api/stations/{station.id}/commands/ClearCache",
                                         json={})
            assert r.status_code == 504 and r.json()["status"] == "timeout"
            with trio.fail_after(5):
                r = await quick_api.post(f"/api/stations/{station.id}/commands/Reset",
                                         json={"type": "Soft"})
            assert r.status_code == 200 and r.json()["response"] == {"status": "Accepted"}
        quick.stop()


async def test_call_error_from_charger_is_returned(
        api: httpx.AsyncClient, station: Provisioned, server: Server) -> None:
    async with connect(server, station.code, station.secret) as ws:
        await boot(ws)

        async def refuse() -> None:
            frame = json.loads(await ws.get_message())
            await ws.send_message(json.dumps([4, frame[1], "NotSupported", "no", {}]))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(refuse)
            r = await api.post(f"/api/stations/{station.id}/commands/ClearCache", json={})
    assert r.status_code == 502
    assert r.json()["status"] == "call_error"
    assert r.json()["error"] == {"code": "NotSupported", "message": "no"}


async def test_concurrent_commands_queue_one_at_a_time(
        api: httpx.AsyncClient, station: Provisioned, server: Server) -> None:
    async with connect(server, station.code, station.secret) as ws:
        await boot(ws)
        outstanding: list[str] = []
        overlaps: list[int] = []

        async def slow_charger() -> None:
            while True:
                frame = json.loads(await ws.get_message())
                outstanding.append(frame[1])
                overlaps.append(len(outstanding))
                await trio.sleep(0.2)
                outstanding.remove(frame[1])
                await ws.send_message(json.dumps([3, frame[1], {"status": "Accepted"}]))

        results: list[int] = []

        async def send() -> None:
            r = await api.post(f"/api/stations/{station.id}/commands/Reset",
                               json={"type": "Soft"})
            results.append(r.status_code)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(slow_charger)
            with trio.fail_after(10):
                async with trio.open_nursery() as senders:
                    for _ in range(3):
                        senders.start_soon(send)
            nursery.cancel_scope.cancel()
    assert results == [200, 200, 200]
    assert overlaps == [1, 1, 1]  # never two CALLs outstanding on the connection


async def test_state_changing_commands_are_tracked(
        api: httpx.AsyncClient, station: Provisioned, charger: Charger) -> None:
    base = f"/api/stations/{station.id}"
    r = await api.post(f"{base}/commands/ReserveNow", json={
        "connectorId": 1, "expiryDate": SOON, "idTag": "TAG-1"})
    reservation_id = r.json()["payload"]["reservationId"]  # allocated by the CSMS
    assert isinstance(reservation_id, int)
    reservations = (await api.get(f"{base}/reservations")).json()["items"]
    assert [(x["reservationId"], x["status"]) for x in reservations] == [
        (reservation_id, "reserved")]
    charger.answer = lambda action, _: {"status": "Accepted"}
    await api.post(f"{base}/commands/CancelReservation", json={"reservationId": reservation_id})
    assert (await api.get(f"{base}/reservations")).json()["items"][0]["status"] == "cancelled"

    charger.answer = lambda action, _: COMMANDS[action][1]
    await api.post(f"{base}/commands/SendLocalList", json={
        "listVersion": 1, "updateType": "Full", "localAuthorizationList": [
            {"idTag": "A", "idTagInfo": {"status": "Accepted"}},
            {"idTag": "B", "idTagInfo": {"status": "Blocked"}}]})
    await api.post(f"{base}/commands/SendLocalList", json={
        "listVersion": 2, "updateType": "Differential", "localAuthorizationList": [
            {"idTag": "B"}, {"idTag": "C", "idTagInfo": {"status": "Accepted"}}]})
    local = (await api.get(f"{base}/local-auth-list")).json()
    assert local["listVersion"] == 2
    assert local["entries"] == {"A": {"status": "Accepted"}, "C": {"status": "Accepted"}}

    await api.post(f"{base}/commands/SetChargingProfile",
                   json={"connectorId": 1, "csChargingProfiles": PROFILE})
    profiles = (await api.get(f"{base}/charging-profiles")).json()["items"]
    assert [(p["chargingProfileId"], p["connectorId"]) for p in profiles] == [(7, 1)]
    assert profiles[0]["profile"]["chargingSchedule"]["chargingSchedulePeriod"][0]["limit"] == (
        11.1)
    charger.answer = lambda action, _: {"status": "Accepted"}
    await api.post(f"{base}/commands/ClearChargingProfile", json={"id": 7})
    assert (await api.get(f"{base}/charging-profiles")).json()["items"] == []

    charger.answer = lambda action, _: COMMANDS[action][1]
    await api.post(f"{base}/commands/GetConfiguration", json={})
    await api.post(f"{base}/commands/ChangeConfiguration",
                   json={"key": "HeartbeatInterval", "value": "60"})
    config = {c["key"]: (c["value"], c["readonly"], c["source"])
              for c in (await api.get(f"{base}/configuration")).json()["items"]}
    assert config == {"HeartbeatInterval": ("60", False, "ChangeConfiguration"),
                      "NumberOfConnectors": ("2", True, "GetConfiguration")}
    history = (await api.get(f"{base}/commands")).json()["items"]
    assert [c["action"] for c in history][:2] == ["ChangeConfiguration", "GetConfiguration"]


async def test_account_key_commands_only_its_own_stations(
        api: httpx.AsyncClient, server: Server, station: Provisioned) -> None:
    from ..api.test_provisioning import tenant

    _, _, other = await tenant(api, server, "Other")
    async with other:
        r = await other.post(f"/api/stations/{station.id}/commands/Reset", json={"type": "Soft"})
        assert r.status_code == 403
        assert (await other.get(f"/api/stations/{station.id}/commands")).status_code == 403


async def test_set_charging_profile_replaces_as_ocpp_says(
        api: httpx.AsyncClient, station: Provisioned, charger: Charger, db_url: str) -> None:
    # OCPP 1.6 §3.13.2: same chargingProfileId, or same stackLevel + purpose on the
    # connector, replaces (the reused id used to hit the primary key: 504 + old kept).
    base = f"/api/stations/{station.id}"

    async def install(connector: int, **changes: Any) -> httpx.Response:
        profile = {**PROFILE, **changes}
        r = await api.post(f"{base}/commands/SetChargingProfile",
                           json={"connectorId": connector, "csChargingProfiles": profile})
        assert r.status_code == 200, r.text
        assert r.json()["response"] == {"status": "Accepted"} and r.json()["error"] is None
        return r

    def installed() -> list[tuple[int, int, int, str]]:
        return [(r[0], r[1], r[2], str(r[3])) for r in psycopg.connect(db_url).execute(
            "SELECT connector_number, charging_profile_id, stack_level, "
            "profile->'chargingSchedule'->'chargingSchedulePeriod'->0->>'limit' "
            "FROM station_charging_profiles ORDER BY 1, 2").fetchall()]

    await install(1)
    await install(2, chargingProfileId=8)
    assert installed() == [(1, 7, 1, "11.1"), (2, 8, 1, "11.1")]
    schedule = {"chargingRateUnit": "A", "chargingSchedulePeriod": [
        {"startPeriod": 0, "limit": 16}]}
    await install(1, chargingSchedule=schedule)                       # same id, same place
    assert installed() == [(1, 7, 1, "16"), (2, 8, 1, "11.1")]
    await install(1, chargingProfileId=9, chargingSchedule=schedule)  # same level + purpose
    assert installed() == [(1, 9, 1, "16"), (2, 8, 1, "11.1")]
    await install(1, chargingProfileId=8, stackLevel=2)               # id 8 moves connector
    assert installed() == [(1, 8, 2, "11.1"), (1, 9, 1, "16")]
    statuses = psycopg.connect(db_url).execute(
        "SELECT DISTINCT status FROM station_commands").fetchall()
    assert statuses == [("answered",)]


async def test_a_failure_recording_the_effect_keeps_the_chargers_answer(
        api: httpx.AsyncClient, station: Provisioned, charger: Charger, db_url: str) -> None:
    # connectorId -1 passes the OCPP schema, the charger accepts it, and the
    # profiles table refuses it: the answer stands, the failure is said as such.
    r = await api.post(f"/api/stations/{station.id}/commands/SetChargingProfile",
                       json={"connectorId": -1, "csChargingProfiles": PROFILE})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "answered" and body["response"] == {"status": "Accepted"}
    assert body["error"]["code"] == "NotRecorded"
    assert "ConstraintViolation" in body["error"]["message"]
    with psycopg.connect(db_url) as conn:
        row = conn.execute("SELECT status, response, error_code FROM station_commands "
                           "WHERE id = %s", (body["id"],)).fetchone()
        assert row == ("answered", {"status": "Accepted"}, "NotRecorded")
        assert conn.execute("SELECT count(*) FROM station_charging_profiles").fetchone() == (0,)
    # the next command is unaffected
    r = await api.post(f"/api/stations/{station.id}/commands/Reset", json={"type": "Soft"})
    assert r.status_code == 200 and r.json()["error"] is None


@pytest.mark.parametrize("data", ['"nul \\u0000 here"', '"lone \\ud800 surrogate"'])
async def test_unstorable_text_in_a_command(
        api: httpx.AsyncClient, station: Provisioned, server: Server, db_url: str,
        data: str) -> None:
    url = f"/api/stations/{station.id}/commands/DataTransfer"
    content = '{"vendorId": "com.acme", "data": ' + data + '}'
    headers = {"Content-Type": "application/json"}
    # offline: 409 as for any payload; the attempt is recorded, the text as U+FFFD
    r = await api.post(url, content=content, headers=headers)
    assert r.status_code == 409 and r.json()["error"]["code"] == "station_offline", r.text
    with psycopg.connect(db_url) as conn:
        row = conn.execute("SELECT status, payload->>'data', error_description "
                           "FROM station_commands").fetchone()
    assert row[0] == "offline" and "\ufffd" in row[1] and "data" in row[2]
    # online: 422 naming the field; nothing sent, nothing recorded
    async with connect(server, station.code, station.secret) as ws:
        await boot(ws)
        bot = Charger(ws, lambda action, _: {"status": "Accepted"})
        async with trio.open_nursery() as nursery:
            nursery.start_soon(bot.run)
            r = await api.post(url, content=content, headers=headers)
            assert r.status_code == 422 and r.json()["error"]["field"] == "data", r.text
            await trio.sleep(0.1)
            assert bot.received == []
            nursery.cancel_scope.cancel()
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT count(*) FROM station_commands").fetchone() == (1,)


async def test_the_authorization_key_is_never_stored_or_shown(
        api: httpx.AsyncClient, station: Provisioned, charger: Charger, db_url: str) -> None:
    base = f"/api/stations/{station.id}"
    for key in ("AuthorizationKey", "authorizationkey"):
        r = await api.post(f"{base}/commands/ChangeConfiguration",
                           json={"key": key, "value": "NewSecret0123456789abcd"})
        assert r.status_code == 422 and r.json()["error"]["field"] == "key", r.text
    assert not charger.received  # nothing reached the charger
    # firmware that reports the write-only key anyway: its value is not kept
    charger.answer = lambda action, _: {"configurationKey": [
        {"key": "AuthorizationKey", "readonly": False, "value": "ChargerKnowsThis0123"},
        {"key": "HeartbeatInterval", "readonly": False, "value": "300"}]}
    r = await api.post(f"{base}/commands/GetConfiguration", json={})
    assert r.status_code == 200, r.text
    assert "ChargerKnowsThis0123" not in r.text
    config = {c["key"]: c["value"]
              for c in (await api.get(f"{base}/configuration")).json()["items"]}
    assert config == {"AuthorizationKey": "<redacted>", "HeartbeatInterval": "300"}
    stored = rows(db_url, "SELECT payload::text || coalesce(response::text, '') "
                          "FROM station_commands UNION ALL "
                          "SELECT coalesce(value, '') FROM station_configuration")
    assert not any("NewSecret0123456789abcd" in text or "ChargerKnowsThis0123" in text
                   for (text,) in stored), stored
