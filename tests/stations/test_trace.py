"""An operator's frame trace of one station, switched on and off through the API at
run time: that station's frames appear at INFO (id tags redacted), no other's."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable

import httpx
import pytest
import trio

from autimit_csms.db import Database
from autimit_csms.server import Server

from ..conftest import server_settings
from .conftest import boot, call, connect, provision

SESSION_LOG = "autimit_csms.stations.session"


def frames(caplog: pytest.LogCaptureFixture, code: str) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == SESSION_LOG and r.levelno == logging.INFO
            and r.getMessage().startswith((f"{code} <- ", f"{code} -> "))]


async def until(condition: Callable[[], bool], seconds: float = 5) -> None:
    with trio.fail_after(seconds):
        while not condition():  # noqa: ASYNC110 - polls a flag the server owns
            await trio.sleep(0.05)


async def test_trace_one_station_on_and_off(db: Database, db_url: str,
                                            caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=SESSION_LOG)
    # a short node silence makes the sweep (which carries the trace) run every 0.2 s
    async with trio.open_nursery() as nursery:
        server: Server = await nursery.start(
            Server(server_settings(db_url, node_silence=0.6), db).run)
        async with httpx.AsyncClient(base_url=server.api_urls[0], headers={
                "Authorization": "Bearer test-admin-token-0123456789"}) as api:
            traced = await provision(api, "CP-T")
            other = await provision(api, "CP-O", account_id=traced.account_id)
            async with connect(server, traced.code, traced.secret) as ws, \
                    connect(server, other.code, other.secret) as ws2:
                await boot(ws)
                await boot(ws2)
                await call(ws, "Heartbeat", {})
                assert frames(caplog, "CP-T") == []  # not traced: frames at DEBUG only

                r = await api.put(f"/api/stations/{traced.id}/trace", json={"minutes": 5})
                assert r.status_code == 200, r.text
                assert r.json()["stationId"] == traced.id and r.json()["ocppTraceUntil"]
                view = (await api.get(f"/api/stations/{traced.id}")).json()
                assert view["ocppTraceUntil"] == r.json()["ocppTraceUntil"]
                session = server.sessions.get(uuid.UUID(traced.id))
                assert session is not None
                await until(lambda: session.trace)
                await call(ws, "Authorize", {"idTag": "PERSONAL-TAG-1"}, "auth-1")
                await call(ws2, "Heartbeat", {})
                logged = frames(caplog, "CP-T")
                assert any('"auth-1"' in f and f.startswith("CP-T <- ") for f in logged)
                assert any(f.startswith("CP-T -> ") and '"auth-1"' in f for f in logged)
                assert not any("PERSONAL-TAG-1" in f for f in logged), logged
                assert frames(caplog, "CP-O") == []  # only the traced station

                r = await api.delete(f"/api/stations/{traced.id}/trace")
                assert r.status_code == 200 and r.json()["ocppTraceUntil"] is None
                await until(lambda: not session.trace)
                count = len(frames(caplog, "CP-T"))
                await call(ws, "Heartbeat", {})
                assert len(frames(caplog, "CP-T")) == count
        server.stop()


async def test_trace_minutes_are_bounded(api: httpx.AsyncClient) -> None:
    station = await provision(api)
    for minutes in (0, 24 * 60 + 1, "5"):
        r = await api.put(f"/api/stations/{station.id}/trace", json={"minutes": minutes})
        assert r.status_code == 422 and r.json()["error"]["field"] == "minutes", r.text
    r = await api.put(f"/api/stations/{station.id}/trace")  # no body: the default hour
    assert r.status_code == 200 and r.json()["ocppTraceUntil"]
