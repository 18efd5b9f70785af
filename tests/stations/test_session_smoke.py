"""A first end-to-end pass: connect, boot, heartbeat, rows in the database."""

from __future__ import annotations

import psycopg

from autimit_csms.server import Server

from .conftest import Provisioned, boot, call, connect


async def test_boot_and_heartbeat_are_stored(server: Server, station: Provisioned,
                                             db_url: str) -> None:
    async with connect(server, station.code, station.secret) as ws:
        assert ws.subprotocol == "ocpp1.6"
        answer = await boot(ws)
        assert answer[2]["interval"] == 300
        answer = await call(ws, "Heartbeat", {})
        assert answer[0] == 3 and "currentTime" in answer[2]
        with psycopg.connect(db_url) as conn:
            state = conn.execute(
                "SELECT status, registration_status, firmware_version, last_heartbeat_at "
                "IS NOT NULL FROM station_runtime_state WHERE station_id = %s",
                (station.id,)).fetchone()
            assert state == ("online", "accepted", "1.2.3", True)
            assert conn.execute("SELECT count(*) FROM station_heartbeat_events").fetchone() == (1,)
            assert conn.execute("SELECT count(*) FROM station_boot_events").fetchone() == (1,)


async def test_rotated_secret_and_deactivation_apply_to_new_connections(
        server: Server, station: Provisioned, api: object) -> None:
    import httpx
    from trio_websocket import ConnectionRejected

    assert isinstance(api, httpx.AsyncClient)
    async with connect(server, station.code, station.secret) as ws:  # warms the cache
        await boot(ws)
    r = await api.post(f"/api/stations/{station.id}/secret")
    assert r.status_code == 201
    new_secret = r.json()["stationSecret"]
    assert new_secret != station.secret
    assert station.secret not in (await api.get(f"/api/stations/{station.id}")).text
    try:
        async with connect(server, station.code, station.secret):
            raise AssertionError("the old secret must be refused")
    except ConnectionRejected as rejected:
        assert rejected.status_code == 401
    async with connect(server, station.code, new_secret) as ws:
        assert (await call(ws, "Heartbeat", {}))[0] == 3  # still accepted: no new boot needed

    r = await api.patch(f"/api/stations/{station.id}", json={"isActive": False})
    assert r.status_code == 200 and r.json()["isActive"] is False
    try:
        async with connect(server, station.code, new_secret):
            raise AssertionError("an inactive station must be refused")
    except ConnectionRejected as rejected:
        assert rejected.status_code == 401
    r = await api.patch(f"/api/stations/{station.id}", json={"ocppRelaxedValidation": "yes"})
    assert r.status_code == 422


async def test_progress_notifications_update_the_station(server: Server, station: Provisioned,
                                                         db_url: str) -> None:
    async with connect(server, station.code, station.secret) as ws:
        await boot(ws)
        assert (await call(ws, "FirmwareStatusNotification", {"status": "Installing"}))[0] == 3
        for action, status in (("FirmwareStatusNotification", "Installed"),
                               ("DiagnosticsStatusNotification", "Uploaded")):
            answer = await call(ws, action, {"status": status})
            assert answer[0] == 3 and answer[2] == {}
    with psycopg.connect(db_url) as conn:
        assert conn.execute(
            "SELECT firmware_status, diagnostics_status FROM station_runtime_state "
            "WHERE station_id = %s", (station.id,)).fetchone() == ("Installed", "Uploaded")
        assert conn.execute("SELECT count(*) FROM station_notifications").fetchone() == (3,)
