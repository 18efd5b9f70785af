"""Fixtures for charger-side tests: a provisioned station and a raw OCPP-J client.

The client is trio-websocket, the server is the real Server on ephemeral ports,
the database is the real PostgreSQL of tests/conftest.py.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import psycopg
import pytest
from trio_websocket import WebSocketConnection, open_websocket_url

from autimit_csms.server import Server


@dataclass
class Provisioned:
    id: str
    code: str
    secret: str
    account_id: str
    location_id: str


async def provision(api: httpx.AsyncClient, code: str = "CP-1", connectors: int = 2,
                    account_id: str | None = None) -> Provisioned:
    if account_id is None:
        r = await api.post("/api/accounts", json={"name": "Charge Co", "document": "D"})
        account_id = r.json()["id"]
    r = await api.post("/api/locations", json={
        "accountId": account_id, "name": "Site", "address": "Road 1", "latitude": 1,
        "longitude": 2})
    location_id = r.json()["id"]
    r = await api.post("/api/stations", json={
        "accountId": account_id, "locationId": location_id, "stationCode": code,
        "connectors": connectors})
    assert r.status_code == 201, r.text
    body = r.json()
    return Provisioned(body["station"]["id"], code, body["provisioning"]["stationSecret"],
                       account_id, location_id)


@pytest.fixture
async def station(api: httpx.AsyncClient) -> Provisioned:
    return await provision(api)


def basic(user: str, password: str) -> tuple[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return ("Authorization", f"Basic {token}")


def ocpp_url(server: Server, code: str) -> str:
    return f"ws://127.0.0.1:{server.ocpp_port}/ocpp/1.6/{code}"


@asynccontextmanager
async def connect(server: Server, code: str, secret: str, *,
                  subprotocols: list[str] | None = None,
                  path_code: str | None = None) -> AsyncIterator[WebSocketConnection]:
    """A raw OCPP-J connection authenticated as `code`."""
    async with open_websocket_url(
            ocpp_url(server, path_code or code),
            subprotocols=["ocpp1.6"] if subprotocols is None else subprotocols,
            extra_headers=[basic(code, secret)]) as ws:
        yield ws


async def call(ws: WebSocketConnection, action: str, payload: dict[str, Any],
               unique_id: str | None = None) -> list[Any]:
    """Send a CALL and return the decoded answer frame."""
    await ws.send_message(json.dumps([2, unique_id or str(uuid.uuid4()), action, payload]))
    return json.loads(await ws.get_message())


def iso(at: dt.datetime) -> str:
    """An OCPP dateTime, as chargers write it."""
    return at.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def rows(db_url: str, query: str, *params: Any) -> list[tuple[Any, ...]]:
    """Read the database from outside the server (what is committed is visible)."""
    with psycopg.connect(db_url, autocommit=True, connect_timeout=5,
                         options="-c statement_timeout=5000") as conn:
        return conn.execute(query, params).fetchall()


async def boot(ws: WebSocketConnection) -> list[Any]:
    answer = await call(ws, "BootNotification", {
        "chargePointVendor": "TestVendor", "chargePointModel": "TestModel",
        "firmwareVersion": "1.2.3", "chargePointSerialNumber": "SN-42"})
    assert answer[0] == 3 and answer[2]["status"] == "Accepted", answer
    return answer
