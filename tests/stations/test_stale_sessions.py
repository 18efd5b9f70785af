"""Sessions whose StopTransaction never came (issue 7, defect 7).

A StartTransaction on a connector with a session still active closes that
session at the new start, energy from its last meter reading, for billing
review; a replay closes nothing; an operator can close a stuck session through
the API. Raw OCPP-J frames over a real socket, real PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import httpx
import trio
from trio_websocket import WebSocketConnection

from autimit_csms.server import Server

from .conftest import Provisioned, boot, call, connect, iso, provision, rows

T0 = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(hours=3)


async def ok(ws: WebSocketConnection, action: str, payload: dict[str, Any]) -> dict[str, Any]:
    with trio.fail_after(10):
        answer = await call(ws, action, payload, unique_id=str(uuid.uuid4()))
    assert answer[0] == 3, f"{action} got {answer}"
    return answer[2]


def start(tag: str, meter: int, at: dt.datetime, connector: int = 1) -> dict[str, Any]:
    return {"connectorId": connector, "idTag": tag, "meterStart": meter, "timestamp": iso(at)}


def energy(tx: int, wh: str, at: dt.datetime, unit: str = "Wh",
           **more: str) -> dict[str, Any]:
    return {"connectorId": 1, "transactionId": tx, "meterValue": [{
        "timestamp": iso(at), "sampledValue": [
            {"value": wh, "measurand": "Energy.Active.Import.Register", "unit": unit,
             **more}]}]}


def session_row(db_url: str, tx: int) -> tuple[Any, ...]:
    return rows(db_url, "SELECT status, stopped_at, meter_stop_wh, energy_wh, billing_status, "
                "stop_source, review_reason FROM charging_sessions WHERE transaction_id = %s",
                tx)[0]


async def test_new_start_closes_the_session_whose_stop_was_lost(
        server: Server, station: Provisioned, api: httpx.AsyncClient, db_url: str) -> None:
    async with connect(server, station.code, station.secret) as ws:
        await boot(ws)
        first = (await ok(ws, "StartTransaction", start("TAG-A", 1000, T0)))["transactionId"]
        await ok(ws, "MeterValues", energy(first, "1.5", T0 + dt.timedelta(minutes=10), "kWh"))
        await ok(ws, "MeterValues", energy(first, "1800", T0 + dt.timedelta(minutes=20)))
        # ... its StopTransaction is lost; the next driver plugs in an hour later
        later = T0 + dt.timedelta(hours=1)
        second = (await ok(ws, "StartTransaction", start("TAG-B", 2000, later)))["transactionId"]
    assert second != first
    status, stopped_at, meter_stop, energy_wh, billing, source, reason = session_row(
        db_url, first)
    assert (status, stopped_at, meter_stop, energy_wh, billing, source) == (
        "completed", later, 1800, 800, "review", "new_session")
    assert f"transaction {second} started on the same connector" in reason
    assert session_row(db_url, second)[0] == "active"
    events = rows(db_url, "SELECT event_type, transaction_id, occurred_at, meter_wh, reason "
                  "FROM session_events WHERE event_type = 'closed_stale'")
    assert events == [("closed_stale", first, later, 1800, reason)]
    # the read API shows the mark and why
    r = await api.get("/api/sessions", params={"transactionId": first})
    view = r.json()["items"][0]
    assert view["billingStatus"] == "review" and view["closedBy"] == "newSession"
    assert view["reviewReason"] == reason
    assert (view["energyWh"], view["energySource"]) == (800, "meterValues")
    r = await api.get(f"/api/stations/{station.id}/active-sessions")
    assert [s["transactionId"] for s in r.json()["items"]] == [second]


async def test_stale_session_without_readings_has_unknown_energy(
        server: Server, station: Provisioned, db_url: str) -> None:
    async with connect(server, station.code, station.secret) as ws:
        await boot(ws)
        first = (await ok(ws, "StartTransaction", start("TAG-A", 1000, T0)))["transactionId"]
        # a reading of another transaction and a per-phase reading do not count
        await ok(ws, "MeterValues", energy(first + 1000, "5000", T0 + dt.timedelta(minutes=5)))
        await ok(ws, "MeterValues", energy(first, "900", T0 + dt.timedelta(minutes=6),
                                           phase="L1"))
        await ok(ws, "StartTransaction", start("TAG-B", 2000, T0 + dt.timedelta(hours=1)))
        # another connector is another story
        other = (await ok(ws, "StartTransaction", start("TAG-C", 0, T0, connector=2)))
    status, _, meter_stop, energy_wh, billing, _, reason = session_row(db_url, first)
    assert (status, meter_stop, energy_wh, billing) == ("completed", None, None, "review")
    assert "unknown" in reason
    assert session_row(db_url, other["transactionId"])[0] == "active"


async def test_replayed_starts_find_their_session_and_close_nothing(
        server: Server, station: Provisioned, db_url: str) -> None:
    async with connect(server, station.code, station.secret) as ws:
        await boot(ws)
        first = (await ok(ws, "StartTransaction", start("TAG-A", 1000, T0)))["transactionId"]
        later = T0 + dt.timedelta(hours=1)
        second = (await ok(ws, "StartTransaction", start("TAG-B", 2000, later)))["transactionId"]
        before = rows(db_url, "SELECT transaction_id, status, stopped_at, updated_at "
                      "FROM charging_sessions ORDER BY transaction_id")
        # both re-sent with new message ids (a lost answer, a replayed queue)
        again = await ok(ws, "StartTransaction", start("TAG-B", 2000, later))
        old = await ok(ws, "StartTransaction", start("TAG-A", 1000, T0))
    assert (again["transactionId"], old["transactionId"]) == (second, first)
    assert rows(db_url, "SELECT transaction_id, status, stopped_at, updated_at "
                "FROM charging_sessions ORDER BY transaction_id") == before
    assert [r[1] for r in before] == ["completed", "active"]
    assert rows(db_url, "SELECT event_type, count(*) FROM session_events GROUP BY 1 "
                "ORDER BY 1") == [("closed_stale", 1), ("start_repeated", 2), ("started", 2)]


async def test_an_older_start_does_not_close_a_newer_session(
        server: Server, station: Provisioned, db_url: str) -> None:
    async with connect(server, station.code, station.secret) as ws:
        await boot(ws)
        newer = await ok(ws, "StartTransaction", start("TAG-B", 2000, T0 + dt.timedelta(hours=1)))
        older = await ok(ws, "StartTransaction", start("TAG-A", 1000, T0))
    assert session_row(db_url, newer["transactionId"])[0] == "active"
    assert session_row(db_url, older["transactionId"])[0] == "active"


async def test_closing_the_stale_session_frees_its_tag(
        server: Server, api: httpx.AsyncClient, db_url: str) -> None:
    one = await provision(api, code="STALE-1")
    two = await provision(api, code="STALE-2", account_id=one.account_id)
    for tag in ("TAG-A", "TAG-B"):
        r = await api.post("/api/id-tags", json={"accountId": one.account_id, "idTag": tag})
        assert r.status_code == 201, r.text
    async with connect(server, one.code, one.secret) as ws1, \
            connect(server, two.code, two.secret) as ws2:
        await boot(ws1)
        await boot(ws2)
        first = await ok(ws1, "StartTransaction", start("TAG-A", 1000, T0))
        assert first["idTagInfo"]["status"] == "Accepted"
        # its stop is lost: TAG-A is "in a transaction" everywhere
        assert (await ok(ws2, "Authorize", {"idTag": "TAG-A"}))["idTagInfo"]["status"] == (
            "ConcurrentTx")
        await ok(ws1, "StartTransaction", start("TAG-B", 2000, T0 + dt.timedelta(hours=1)))
        assert (await ok(ws2, "Authorize", {"idTag": "TAG-A"}))["idTagInfo"]["status"] == (
            "Accepted")


async def test_a_late_stop_corrects_the_estimate(
        server: Server, station: Provisioned, db_url: str) -> None:
    async with connect(server, station.code, station.secret) as ws:
        await boot(ws)
        first = (await ok(ws, "StartTransaction", start("TAG-A", 1000, T0)))["transactionId"]
        await ok(ws, "MeterValues", energy(first, "1500", T0 + dt.timedelta(minutes=10)))
        await ok(ws, "StartTransaction", start("TAG-B", 2000, T0 + dt.timedelta(hours=1)))
        stop = {"transactionId": first, "meterStop": 1900, "reason": "EVDisconnected",
                "timestamp": iso(T0 + dt.timedelta(minutes=30))}
        await ok(ws, "StopTransaction", stop)
        await ok(ws, "StopTransaction", stop)  # and once more: changes nothing
    status, stopped_at, meter_stop, energy_wh, billing, source, reason = session_row(
        db_url, first)
    assert (status, stopped_at, meter_stop, energy_wh, billing, source) == (
        "completed", T0 + dt.timedelta(minutes=30), 1900, 900, "review", "charger")
    assert reason.endswith("; corrected by its StopTransaction")
    assert rows(db_url, "SELECT event_type FROM session_events WHERE transaction_id = %s "
                "ORDER BY recorded_at", first) == [
        ("started",), ("closed_stale",), ("stopped",), ("stop_repeated",)]


async def test_operator_closes_a_stuck_session(
        server: Server, station: Provisioned, api: httpx.AsyncClient, db_url: str) -> None:
    from ..api.test_provisioning import tenant

    async with connect(server, station.code, station.secret) as ws:
        await boot(ws)
        tx = (await ok(ws, "StartTransaction", start("TAG-A", 1000, T0)))["transactionId"]
        await ok(ws, "MeterValues", energy(tx, "1250", T0 + dt.timedelta(minutes=10)))
    session_id = rows(db_url, "SELECT id FROM charging_sessions")[0][0]
    url = f"/api/sessions/{session_id}/close"
    for bad in ({}, {"reason": ""}, {"reason": "  "}, {"reason": 7},
                {"reason": "stuck\u0000"}, {"reason": "x" * 501}):
        r = await api.post(url, json=bad)
        assert r.status_code == 422 and r.json()["error"]["field"] == "reason", (bad, r.text)
    assert (await api.post(f"/api/sessions/{uuid.uuid4()}/close",
                           json={"reason": "x"})).status_code == 404
    _, _, other = await tenant(api, server, "Other")
    async with other:
        assert (await other.post(url, json={"reason": "not mine"})).status_code == 403
    assert session_row(db_url, tx)[0] == "active"

    r = await api.post(url, json={"reason": "charger replaced, stop lost"})
    assert r.status_code == 200, r.text
    view = r.json()
    assert (view["status"], view["billingStatus"], view["closedBy"]) == (
        "completed", "review", "operator")
    assert view["reviewReason"] == "closed by admin: charger replaced, stop lost"
    assert (view["meterStopWh"], view["energyWh"]) == (1250, 250)
    assert rows(db_url, "SELECT event_type, requested_by, reason, meter_wh FROM session_events "
                "WHERE event_type = 'closed_by_operator'") == [
        ("closed_by_operator", "admin", "charger replaced, stop lost", 1250)]
    again = await api.post(url, json={"reason": "twice"})
    assert again.status_code == 409 and again.json()["error"]["code"] == "session_closed"
