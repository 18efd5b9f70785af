"""Operator logs of a real `autimit-csms serve` process: JSON lines with the station
context, --log-level/--log-format before or after the subcommand, text by default."""

from __future__ import annotations

import json
from typing import Any

import httpx
import trio

from autimit_csms.localpg import LocalPostgres

from .test_cli import TOKEN, open_charger, serve


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
        async with open_charger(port, code, secret) as ws:
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
