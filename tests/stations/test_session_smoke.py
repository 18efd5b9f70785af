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
