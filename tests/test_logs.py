"""Operator logs of a real `autimit-csms serve` process: JSON lines with the station
context, --log-level/--log-format before or after the subcommand, text by default."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import trio
from trio_websocket import open_websocket_url

from autimit_csms.localpg import LocalPostgres, free_port

from .conftest import new_database
from .test_cli import CLI

TOKEN = "logs-token-0123456789"


@contextmanager
def serve(pg: LocalPostgres, *args: str, env: dict[str, str] | None = None,
          url: str | None = None, pids: list[int] | None = None
          ) -> Iterator[tuple[str, int, list[str]]]:
    """`autimit-csms ARGS` on a fresh database (or `url`): (API base URL, OCPP port,
    output lines once it stopped -- filled in after the block); `pids` gets its pid."""
    url = url or pg.url(new_database(pg))
    subprocess.run([*CLI, "db", "apply", "--database-url", url], check=True,
                   capture_output=True)
    api_port, ocpp_port = free_port(), free_port()
    environment = {**os.environ, "AUTIMIT_DATABASE_URL": url, "AUTIMIT_ADMIN_TOKEN": TOKEN,
                   "AUTIMIT_API_LISTEN": f"127.0.0.1:{api_port}",
                   "AUTIMIT_OCPP_LISTEN": f"127.0.0.1:{ocpp_port}", **(env or {})}
    proc = subprocess.Popen([*CLI, *args], env=environment, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    if pids is not None:
        pids.append(proc.pid)
    base = f"http://127.0.0.1:{api_port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(base + "/api/stations", timeout=1)
                break
            except httpx.TransportError:
                assert proc.poll() is None and time.monotonic() < deadline
                time.sleep(0.1)
        yield base, ocpp_port, lines
    finally:
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=30)
        lines.extend(output.splitlines())
    assert proc.returncode == 0, output


def provision(base: str) -> tuple[str, str]:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    account = httpx.post(base + "/api/accounts", headers=headers,
                         json={"name": "Ops", "document": "X"}).json()
    location = httpx.post(base + "/api/locations", headers=headers, json={
        "accountId": account["id"], "name": "L", "address": "A", "latitude": 0,
        "longitude": 0}).json()
    r = httpx.post(base + "/api/stations", headers=headers, json={
        "accountId": account["id"], "locationId": location["id"], "stationCode": "LOG-1",
        "connectors": 1})
    return "LOG-1", r.json()["provisioning"]["stationSecret"]


def charger(port: int, code: str, secret: str) -> None:
    """Boot with NUL-padded strings (a warning naming the message), then an Authorize."""
    async def run() -> None:
        auth = base64.b64encode(f"{code}:{secret}".encode()).decode()
        async with open_websocket_url(f"ws://127.0.0.1:{port}/ocpp/1.6/{code}",
                                      subprotocols=["ocpp1.6"],
                                      extra_headers=[("Authorization", f"Basic {auth}")]) as ws:
            await ws.send_message(json.dumps([2, "boot-77", "BootNotification", {
                "chargePointVendor": "Vendor\u0000\u0000", "chargePointModel": "M"}]))
            assert json.loads(await ws.get_message())[0] == 3
            await ws.send_message(json.dumps([2, "auth-1", "Authorize",
                                              {"idTag": "SECRET-TAG-4711"}]))
            assert json.loads(await ws.get_message())[0] == 3

    trio.run(run)


def test_json_lines_carry_station_connection_and_message(pg: LocalPostgres) -> None:
    with serve(pg, "--log-format", "json", "serve") as (base, port, lines):
        code, secret = provision(base)
        charger(port, code, secret)
    records: list[dict[str, Any]] = [json.loads(line) for line in lines]  # every line is JSON
    assert all({"time", "level", "logger", "message"} <= set(r) for r in records)
    about = [r for r in records if r.get("station") == code]
    assert any("connected from" in r["message"] for r in about), records
    connections = {r.get("connection") for r in about}
    assert len(connections) == 1 and None not in connections  # one connection, named
    warning = [r for r in about if r["level"] == "WARNING" and "boot-77" == r.get("messageId")]
    assert warning and "chargePointVendor" in warning[0]["message"], about
    assert not any("SECRET-TAG-4711" in line or secret in line or TOKEN in line
                   for line in lines)


def test_level_and_format_after_the_subcommand_and_from_the_environment(
        pg: LocalPostgres) -> None:
    with serve(pg, "serve", "--log-level", "warning") as (base, port, lines):
        code, secret = provision(base)
        charger(port, code, secret)
    assert lines and all(" INFO " not in line for line in lines), lines
    assert any(" WARNING " in line and f"[{code} c" in line and "boot-77]" in line
               for line in lines), lines  # text: [station connection message]
    with serve(pg, "serve", env={"AUTIMIT_LOG_FORMAT": "json"}) as (_, _, lines):
        pass
    assert lines and all(json.loads(line)["level"] for line in lines)
