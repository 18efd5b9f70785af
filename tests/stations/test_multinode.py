"""Two `autimit-csms serve` processes on one database: commands cross between them."""

from __future__ import annotations

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

from autimit_csms.localpg import free_port

from ..conftest import ADMIN_TOKEN
from .conftest import Provisioned, basic, boot, provision


class Node:
    def __init__(self, db_url: str) -> None:
        self.api_port, self.ocpp_port = free_port(), free_port()
        env = {**os.environ, "AUTIMIT_DATABASE_URL": db_url, "AUTIMIT_ADMIN_TOKEN": ADMIN_TOKEN,
               "AUTIMIT_API_LISTEN": f"127.0.0.1:{self.api_port}",
               "AUTIMIT_OCPP_LISTEN": f"127.0.0.1:{self.ocpp_port}",
               "AUTIMIT_HEARTBEAT_INTERVAL": "1", "AUTIMIT_OFFLINE_AFTER_HEARTBEATS": "3",
               "AUTIMIT_SHUTDOWN_GRACE": "1"}
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


async def test_a_dead_process_leaves_no_station_held(nodes: tuple[Node, Node],
                                                     db_url: str) -> None:
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
        # Process A's watchdog (1 s heartbeat × 3) finds it silent and unheld.
        with trio.fail_after(15):
            while True:
                with psycopg.connect(db_url) as conn:
                    state = conn.execute(
                        "SELECT status, node_id FROM station_runtime_state").fetchone()
                if state == ("offline", None):
                    break
                await trio.sleep(0.2)
        r = await api_a.post(f"/api/stations/{station.id}/commands/Reset", json={"type": "Soft"})
        assert r.status_code == 409
