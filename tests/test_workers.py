"""`autimit-csms serve --workers 2`: two processes on the same ports (SO_REUSEPORT),
each a full node -- chargers spread over both, and a command sent through either
API reaches a station held by either process."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import httpx
import psycopg
import trio

from autimit_csms.localpg import LocalPostgres

from .conftest import new_database
from .test_cli import TOKEN, open_charger, run_cli, serve

STATIONS = 16


async def chargers(base: str, port: int, stations: list[tuple[str, str, str]]) -> list[int]:
    """Every station connects and boots; then each is sent a command through the API
    (which lands on either worker); returns the HTTP statuses."""
    statuses: list[int] = []
    booted = trio.Semaphore(0)

    async def charger(code: str, secret: str, done: trio.Event) -> None:
        async with open_charger(port, code, secret) as ws:
            await ws.send_message(json.dumps([2, "b", "BootNotification", {
                "chargePointVendor": "V", "chargePointModel": "M"}]))
            assert json.loads(await ws.get_message())[0] == 3
            booted.release()
            with trio.move_on_after(30):
                while not done.is_set():
                    frame = json.loads(await ws.get_message())
                    if frame[0] == 2:  # a command: accept it
                        await ws.send_message(json.dumps([3, frame[1], {"status": "Accepted"}]))
                        done.set()

    async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {TOKEN}"},
                                 timeout=30) as api, trio.open_nursery() as nursery:
        done = {code: trio.Event() for code, _, _ in stations}
        for code, secret, _ in stations:
            nursery.start_soon(charger, code, secret, done[code])
        for _ in stations:
            await booted.acquire()
        for _, _, station_id in stations:
            r = await api.post(f"/api/stations/{station_id}/commands/Reset",
                               json={"type": "Soft"})
            statuses.append(r.status_code)
    return statuses


def test_two_workers_share_the_ports_and_command_each_others_stations(
        pg: LocalPostgres) -> None:
    url = pg.url(new_database(pg))
    with serve(pg, "serve", "--workers", "2", url=url) as (base, port, lines):
        headers = {"Authorization": f"Bearer {TOKEN}"}
        account = httpx.post(base + "/api/accounts", headers=headers,
                             json={"name": "W", "document": "W"}).json()
        location = httpx.post(base + "/api/locations", headers=headers, json={
            "accountId": account["id"], "name": "L", "address": "A", "latitude": 0,
            "longitude": 0}).json()
        stations = []
        for n in range(STATIONS):
            r = httpx.post(base + "/api/stations", headers=headers, json={
                "accountId": account["id"], "locationId": location["id"],
                "stationCode": f"W-{n}", "connectors": 1}).json()
            stations.append((f"W-{n}", r["provisioning"]["stationSecret"], r["station"]["id"]))
        statuses = trio.run(chargers, base, port, stations)
        with psycopg.connect(url) as conn:
            holders = conn.execute("SELECT count(DISTINCT node_id) FROM station_commands "
                                   "WHERE status = 'answered'").fetchone()
    assert statuses == [200] * STATIONS
    # both processes held stations and delivered their commands (16 connections all
    # hashed to one of the two sockets: 2**-15)
    assert holders == (2,)
    assert sum(f"worker {n} of 2 started" in line for line in lines for n in (1, 2)) == 2
    assert any("all workers stopped" in line for line in lines)


def test_workers_need_fixed_ports(pg: LocalPostgres) -> None:
    result = run_cli("serve", "--workers", "2", env={
        "AUTIMIT_DATABASE_URL": pg.url(), "AUTIMIT_ADMIN_TOKEN": TOKEN,
        "AUTIMIT_API_LISTEN": "127.0.0.1:0"})
    assert result.returncode == 2 and "--workers needs fixed ports" in result.stderr


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(child) for child in path.read_text().split()] if path.exists() else []


def workers_of(pid: int) -> list[int]:
    # multiprocessing's spawn also starts a resource tracker; workers run our package
    return [child for child in children(pid)
            if "spawn_main" in Path(f"/proc/{child}/cmdline").read_text(errors="replace")
            and "resource_tracker" not in Path(f"/proc/{child}/cmdline").read_text(
                errors="replace")]


def test_a_worker_that_dies_is_started_again(pg: LocalPostgres) -> None:
    pids: list[int] = []
    with serve(pg, "serve", "--workers", "2", pids=pids) as (base, _, lines):
        before = workers_of(pids[0])
        assert len(before) == 2, before
        os.kill(before[0], signal.SIGKILL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            now = workers_of(pids[0])
            if len(now) == 2 and before[0] not in now:
                break
            time.sleep(0.1)
        assert len(now) == 2 and before[0] not in now, now
        time.sleep(2)  # the new worker binds and serves
        assert httpx.get(base + "/api/openapi.json", timeout=5).status_code == 200
    assert any("exited with -9; starting it again" in line for line in lines), lines
