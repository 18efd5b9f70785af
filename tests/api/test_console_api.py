"""What the operator console adds to the API listener: `GET /api/overview` (the network
at a glance), `GET /api/me` (who a token is), and the console's static files at
/console/ with their security headers -- against the real server and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import re
import uuid

import httpx
import psycopg

from autimit_csms.api.console import CSP, ROOT
from autimit_csms.server import Server

from .test_hardening import assert_error_shape
from .test_provisioning import tenant
from .test_reads import add_meter_values, add_session, iso


def set_status(db_url: str, station_id: str, status: str,
               connectors: dict[int, str] | None = None) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("UPDATE station_runtime_state SET status = %s WHERE station_id = %s",
                     (status, station_id))
        for number, state in (connectors or {}).items():
            conn.execute("UPDATE connector_runtime_state SET status = %s"
                         " WHERE station_id = %s AND connector_number = %s",
                         (state, station_id, number))


async def test_overview_counts_one_accounts_network(api: httpx.AsyncClient, server: Server,
                                                    db_url: str) -> None:
    account, location, client = await tenant(api, server, "Ov")
    other, other_location, other_client = await tenant(api, server, "Other")
    async with client, other_client:
        ids = []
        for code, connectors in (("OV-1", 2), ("OV-2", 1), ("OV-3", 1)):
            r = await client.post("/api/stations", json={
                "locationId": location["id"], "stationCode": code, "connectors": connectors})
            assert r.status_code == 201, r.text
            ids.append(r.json()["station"]["id"])
        r = await other_client.post("/api/stations", json={
            "locationId": other_location["id"], "stationCode": "OTHER-1", "connectors": 4})
        assert r.status_code == 201
        set_status(db_url, ids[0], "online", {1: "charging", 2: "available"})
        set_status(db_url, ids[1], "faulted", {1: "faulted"})
        r = await client.patch(f"/api/stations/{ids[2]}", json={"isActive": False})
        assert r.status_code == 200
        now = dt.datetime.now(dt.UTC)
        _, tx = add_session(db_url, ids[0], started=now - dt.timedelta(minutes=10),
                            meter_start=1000)
        add_meter_values(db_url, ids[0], tx, [(now - dt.timedelta(minutes=1),
                                               "Energy.Active.Import.Register", 3500)])
        add_session(db_url, ids[1], started=now - dt.timedelta(minutes=30),
                    stopped=now - dt.timedelta(minutes=20), meter_start=0, meter_stop=700)
        add_session(db_url, ids[1], started=now - dt.timedelta(days=3),  # before `from`
                    stopped=now - dt.timedelta(days=3, hours=-1), meter_start=0,
                    meter_stop=9000)

        since = now - dt.timedelta(hours=2)
        r = await client.get("/api/overview", params={"from": iso(since)})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["stations"] == {"total": 3, "inactive": 1,
                                    "byStatus": {"faulted": 1, "online": 1}}
        assert body["connectors"] == {"total": 3, "byStatus": {
            "available": 1, "charging": 1, "faulted": 1}}
        assert body["sessions"] == {"active": 1, "startedSince": 2, "energyWh": 2500 + 700}
        assert body["from"] == iso(since).replace("+00:00", "Z")
        generated = dt.datetime.fromisoformat(body["generatedAt"])
        assert abs(generated - dt.datetime.now(dt.UTC)) < dt.timedelta(minutes=1)

        # the admin sees every account, or one; an account key only its own
        r = await api.get("/api/overview", params={"from": iso(since)})
        assert r.json()["stations"]["total"] == 4
        assert r.json()["connectors"]["total"] == 3 + 4
        r = await api.get("/api/overview", params={"accountId": other["id"]})
        assert r.json()["stations"] == {"total": 1, "inactive": 0, "byStatus": {"offline": 1}}
        assert r.json()["sessions"] == {"active": 0, "startedSince": 0, "energyWh": 0}
        assert assert_error_shape(await client.get(
            "/api/overview", params={"accountId": other["id"]}), 403)["code"] == "forbidden"
        assert assert_error_shape(await client.get(
            "/api/overview", params={"accountId": str(uuid.uuid4())}), 404)
        # default: today 00:00 UTC
        r = await client.get("/api/overview")
        assert r.json()["from"] == now.strftime("%Y-%m-%dT00:00:00Z") or now.hour == 23
        for bad in (iso(now + dt.timedelta(hours=1)), iso(now - dt.timedelta(days=400)),
                    "yesterday"):
            assert assert_error_shape(await client.get("/api/overview", params={"from": bad}),
                                      422)["field"] == "from"


async def test_me_names_the_caller(api: httpx.AsyncClient, server: Server) -> None:
    r = await api.get("/api/me")
    assert r.json() == {"role": "admin", "accountId": None, "apiKeyId": None, "account": None}
    account, _, client = await tenant(api, server, "Me")
    async with client:
        r = await client.get("/api/me")
        assert r.status_code == 200
        body = r.json()
        assert body["role"] == "account" and body["accountId"] == account["id"]
        assert body["account"]["name"] == "Me" and body["apiKeyId"]
        key = client.headers["Authorization"].split()[1]
        assert key not in r.text and body["apiKeyId"] in key
    async with httpx.AsyncClient(base_url=server.api_urls[0]) as anonymous:
        assert_error_shape(await anonymous.get("/api/me"), 401)


async def test_console_files_are_served_with_a_strict_policy(server: Server) -> None:
    async with httpx.AsyncClient(base_url=server.api_urls[0]) as browser:  # no token
        r = await browser.get("/console")
        assert r.status_code == 308 and r.headers["location"] == "/console/"
        page = await browser.get("/console/")
        assert page.status_code == 200
        assert page.headers["content-type"] == "text/html; charset=utf-8"
        assert page.text == (ROOT / "index.html").read_text()
        for name, media in (("app.js", "text/javascript"), ("style.css", "text/css"),
                            ("vendor/uPlot.esm.js", "text/javascript")):
            r = await browser.get(f"/console/{name}")
            assert r.status_code == 200 and r.headers["content-type"].startswith(media), name
            assert r.content == (ROOT / name).read_bytes()
            assert r.headers["content-security-policy"] == CSP
            assert r.headers["x-content-type-options"] == "nosniff"
            cached = await browser.get(f"/console/{name}",
                                       headers={"If-None-Match": r.headers["etag"]})
            assert cached.status_code == 304 and cached.content == b""
        assert "'unsafe-inline'" not in CSP and "script-src 'self'" in CSP
        assert page.headers["x-frame-options"] == "DENY"
        # no inline script or style, nothing from elsewhere
        assert not re.search(r"<script(?![^>]*\bsrc=)", page.text)
        assert "<style" not in page.text and " style=" not in page.text
        assert not re.search(r"(src|href)=\"(https?:)?//", page.text)
        for path in ("/console/nothing.js",
                     "/console/%2e%2e/pyproject.toml", "/console/vendor"):
            r = await browser.get(path)
            assert r.status_code == 404 and "csms" not in r.text.lower(), path
        r = await browser.post("/console/", content=b"x")
        assert r.status_code == 405 and r.headers["allow"] == "GET, HEAD"
        r = await browser.head("/console/app.js")
        assert r.status_code == 200 and r.content == b""
        # the API around it is untouched: still JSON, still needs a token
        assert_error_shape(await browser.get("/api/stations"), 401)
        assert_error_shape(await browser.get("/consoles"), 401)  # the API's, not ours
