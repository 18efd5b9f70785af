"""Several CSMS processes on one database: commands cross between them, and the
liveness rule (docs/ocpp.md "Liveness") leaves no station held by a dead one."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import psycopg
import pytest
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, open_websocket_url

from autimit_csms.db import Database
from autimit_csms.localpg import free_port
from autimit_csms.server import Server

from ..conftest import ADMIN_TOKEN, server_settings
from .conftest import Provisioned, basic, boot, connect, provision, rows

SILENCE = 3  # --node-silence of the processes here: small, so a dead one is found soon


class Node:
    def __init__(self, db_url: str) -> None:
        self.api_port, self.ocpp_port = free_port(), free_port()
        env = {**os.environ, "AUTIMIT_DATABASE_URL": db_url, "AUTIMIT_ADMIN_TOKEN": ADMIN_TOKEN,
               "AUTIMIT_API_LISTEN": f"127.0.0.1:{self.api_port}",
               "AUTIMIT_OCPP_LISTEN": f"127.0.0.1:{self.ocpp_port}",
               "AUTIMIT_HEARTBEAT_INTERVAL": "1", "AUTIMIT_OFFLINE_AFTER_HEARTBEATS": "3",
               "AUTIMIT_SHUTDOWN_GRACE": "1", "AUTIMIT_NODE_SILENCE": str(SILENCE)}
        self.proc = subprocess.Popen([sys.executable, "-m", "autimit_csms", "serve"], env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.base = f"http://127.0.0.1:{self.api_port}"

    async def ready(self) -> None:
        with trio.fail_after(30):
            while True:
                try:
                    async with httpx.AsyncClient() as client:
                        await client.get(self.base + "/api/stations")
                    return
                except httpx.TransportError:
                    assert self.proc.poll() is None, "serve exited"
                    await trio.sleep(0.1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()


async def until(db_url: str, wanted: list[tuple[object, ...]], query: str,
                *params: object) -> None:
    """Poll the database until `query` gives `wanted`; the bound is a safety net only."""
    with trio.fail_after(30):
        while rows(db_url, query, *params) != wanted:  # noqa: ASYNC110 - polling the DB
            await trio.sleep(0.1)


@pytest.fixture
async def nodes(db_url: str) -> AsyncIterator[tuple[Node, Node]]:
    """Two ready serve processes; the API is used on A, stations connect to B."""
    a, b = Node(db_url), Node(db_url)
    try:
        await a.ready()
        await b.ready()
        yield a, b
    finally:
        a.stop()
        b.stop()


@asynccontextmanager
async def booted_on(node: Node, station: Provisioned) -> AsyncIterator[WebSocketConnection]:
    url = f"ws://127.0.0.1:{node.ocpp_port}/ocpp/1.6/{station.code}"
    async with open_websocket_url(url, subprotocols=["ocpp1.6"],
                                  extra_headers=[basic(station.code, station.secret)]) as ws:
        await boot(ws)
        yield ws


async def test_command_on_one_process_reaches_a_station_on_the_other(
        nodes: tuple[Node, Node], db_url: str) -> None:
    a, b = nodes
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with httpx.AsyncClient(base_url=a.base, headers=headers, timeout=30) as api_a:
        station = await provision(api_a, code="MULTI-1")
        async with booted_on(b, station) as ws:

            async def charger() -> None:
                try:
                    while True:
                        frame = json.loads(await ws.get_message())
                        if frame[0] == 2:
                            await ws.send_message(json.dumps([3, frame[1], {"status":
                                                                              "Accepted"}]))
                except ConnectionClosed:
                    return

            async with trio.open_nursery() as nursery:
                nursery.start_soon(charger)
                with trio.fail_after(20):
                    r = await api_a.post(f"/api/stations/{station.id}/commands/Reset",
                                         json={"type": "Soft"})
                assert r.status_code == 200, r.text
                command = r.json()
                assert command["response"] == {"status": "Accepted"}
                nursery.cancel_scope.cancel()

        with psycopg.connect(db_url) as conn:
            node_b = conn.execute("SELECT id FROM csms_nodes WHERE pid = %s",
                                  (b.proc.pid,)).fetchone()[0]
            row = conn.execute(
                "SELECT status, node_id, requested_by, created_at <= sent_at, "
                "sent_at <= finished_at FROM station_commands WHERE id = %s",
                (command["id"],)).fetchone()
        assert row == ("answered", node_b, "admin", True, True)
        # the full history is readable from either process
        async with httpx.AsyncClient(base_url=b.base, headers=headers) as api_b:
            r = await api_b.get(f"/api/commands/{command['id']}")
            assert r.json()["status"] == "answered" and r.json()["nodeId"] == str(node_b)


async def test_a_killed_process_leaves_no_station_held_after_restart(
        nodes: tuple[Node, Node], db_url: str) -> None:
    a, b = nodes
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with httpx.AsyncClient(base_url=a.base, headers=headers, timeout=30) as api_a:
        station = await provision(api_a, code="MULTI-2")
    async with booted_on(b, station):
        b.proc.kill()  # no cleanup of any kind
        b.proc.wait()
        with psycopg.connect(db_url) as conn:
            assert conn.execute("SELECT status FROM station_runtime_state").fetchone() == (
                "online",)
    a.stop()  # nobody else left: only the restarted process can sweep
    restarted = Node(db_url)
    try:
        await restarted.ready()
        # B's heartbeat stopped at the kill; SILENCE seconds later the restarted
        # process finds the station's holder gone. The bound is a safety net only.
        await until(db_url, [("offline", None)],
                    "SELECT status, node_id FROM station_runtime_state")
        (last_beat,), = rows(db_url, "SELECT last_seen_at FROM csms_nodes WHERE pid = %s",
                             b.proc.pid)
        swept_at, disconnected_at = rows(
            db_url, "SELECT updated_at, disconnected_at FROM station_runtime_state")[0]
        assert (swept_at - last_beat).total_seconds() >= SILENCE  # not before the rule's time
        events = rows(db_url, "SELECT event_type, occurred_at FROM station_connection_events "
                      "ORDER BY occurred_at")
        assert [e[0] for e in events] == ["connected", "timed_out"]
        # dated at the holder's last sign of life, not at the sweep
        assert events[1][1] == disconnected_at <= last_beat + dt.timedelta(seconds=1)
        async with httpx.AsyncClient(base_url=restarted.base, headers=headers) as api_r:
            r = await api_r.post(f"/api/stations/{station.id}/commands/Reset",
                                 json={"type": "Soft"})
        assert r.status_code == 409
    finally:
        restarted.stop()


async def test_stations_whose_holder_is_gone_are_swept_and_live_ones_kept(
        db: Database, db_url: str, api: httpx.AsyncClient, nursery: trio.Nursery) -> None:
    """Two Server objects on one database; a third process 'died' holding stations
    (its csms_nodes row stops at its last heartbeat)."""
    settings = server_settings(db_url, node_silence=SILENCE)
    a = await nursery.start(Server(settings, db).run)
    b = await nursery.start(Server(settings, db).run)
    live = await provision(api, code="LIVE-1")
    dead = await provision(api, code="DEAD-1", account_id=live.account_id)
    orphan = await provision(api, code="ORPHAN-1", account_id=live.account_id)
    async with connect(b, live.code, live.secret) as ws:
        await boot(ws)
        gone_node = "00000000-0000-4000-8000-000000000001"
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute("INSERT INTO csms_nodes (id, hostname, pid) VALUES (%s, 'gone', 1)",
                         (gone_node,))
            # held by the dead process, last message a minute before it died
            conn.execute("UPDATE station_runtime_state SET status = 'online', node_id = %s, "
                         "connected_at = now() - interval '2 minutes', "
                         "last_seen_at = now() - interval '1 minute' WHERE station_id = %s",
                         (gone_node, dead.id))
            # online with no holder at all (left by an older version)
            conn.execute("UPDATE station_runtime_state SET status = 'online', "
                         "connected_at = now() - interval '1 hour', "
                         "last_seen_at = now() - interval '1 hour' WHERE station_id = %s",
                         (orphan.id,))
        await until(db_url, [(2,)], "SELECT count(*) FROM station_runtime_state WHERE "
                    "status = 'offline' AND station_id IN (%s, %s)", dead.id, orphan.id)
        state = {str(r[0]): r[1:] for r in rows(
            db_url, "SELECT station_id, status, node_id FROM station_runtime_state")}
        # the sweep that took the dead process's stations left B's alone
        assert state == {live.id: ("online", b.sessions.node_id), dead.id: ("offline", None),
                         orphan.id: ("offline", None)}
        (last_beat,), = rows(db_url, "SELECT last_seen_at FROM csms_nodes WHERE id = %s",
                             gone_node)
        events = dict(rows(db_url, "SELECT station_id::text, occurred_at FROM "
                           "station_connection_events WHERE event_type = 'timed_out'"))
        assert events[dead.id] == last_beat  # the holder's last sign of life
        assert events[orphan.id] < last_beat  # its own last message, an hour ago
        swept_at = rows(db_url, "SELECT updated_at FROM station_runtime_state "
                        "WHERE station_id = %s", dead.id)[0][0]
        assert (swept_at - last_beat).total_seconds() >= SILENCE
        # B's station still takes commands through A's API
        async with httpx.AsyncClient(base_url=a.api_urls[0], headers={
                "Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=30) as api_a:
            async def answer() -> None:
                frame = json.loads(await ws.get_message())
                await ws.send_message(json.dumps([3, frame[1], {"status": "Accepted"}]))

            async with trio.open_nursery() as charger:
                charger.start_soon(answer)
                r = await api_a.post(f"/api/stations/{live.id}/commands/Reset",
                                     json={"type": "Soft"})
            assert r.status_code == 200, r.text
            r = await api_a.post(f"/api/stations/{dead.id}/commands/Reset",
                                 json={"type": "Soft"})
            assert r.status_code == 409
    a.stop()
    b.stop()
