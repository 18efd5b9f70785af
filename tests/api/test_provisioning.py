"""The REST API over a real HTTP socket against a real database."""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx
import pytest

from autimit_csms.server import Server

from ..conftest import ADMIN_TOKEN


async def make_account(api: httpx.AsyncClient, name: str = "Acme") -> dict[str, Any]:
    r = await api.post("/api/accounts", json={"name": name, "document": "DOC-1"})
    assert r.status_code == 201, r.text
    return r.json()


async def make_location(api: httpx.AsyncClient, account_id: str) -> dict[str, Any]:
    r = await api.post("/api/locations", json={
        "accountId": account_id, "name": "Depot", "address": "1 Main St",
        "latitude": 52.5, "longitude": 13.4, "isPublic": True})
    assert r.status_code == 201, r.text
    return r.json()


async def make_station(api: httpx.AsyncClient, account_id: str, location_id: str,
                       code: str = "CP-001", connectors: int = 2) -> httpx.Response:
    return await api.post("/api/stations", json={
        "accountId": account_id, "locationId": location_id, "stationCode": code,
        "serialNumber": "SN-1", "manufacturer": "ACME", "model": "Fast", "connectors": connectors})


async def tenant(api: httpx.AsyncClient, server: Server, name: str
                 ) -> tuple[dict[str, Any], dict[str, Any], httpx.AsyncClient]:
    account = await make_account(api, name)
    location = await make_location(api, account["id"])
    r = await api.post(f"/api/accounts/{account['id']}/api-keys", json={"name": "ci"})
    assert r.status_code == 201
    key = r.json()["apiKey"]
    client = httpx.AsyncClient(base_url=server.api_urls[0],
                               headers={"Authorization": f"Bearer {key}"})
    return account, location, client


async def test_create_station_returns_adr_0001_shape_once(api: httpx.AsyncClient) -> None:
    account = await make_account(api)
    location = await make_location(api, account["id"])
    r = await make_station(api, account["id"], location["id"], code="Cp-Mixed.01_x")
    assert r.status_code == 201, r.text
    body = r.json()
    assert set(body) == {"station", "provisioning"}
    assert set(body["station"]) == {"id", "stationCode", "ocppConnectionUrl"}
    assert set(body["provisioning"]) == {"stationCode", "ocppConnectionUrl", "stationSecret"}
    url = "ws://127.0.0.1:9/ocpp/1.6/Cp-Mixed.01_x"
    assert body["station"]["ocppConnectionUrl"] == url == body["provisioning"]["ocppConnectionUrl"]
    assert body["station"]["stationCode"] == body["provisioning"]["stationCode"] == "Cp-Mixed.01_x"
    uuid.UUID(body["station"]["id"])
    secret = body["provisioning"]["stationSecret"]
    assert re.fullmatch(r"[A-Za-z0-9]{16,40}", secret)
    assert not re.fullmatch(r"[0-9A-Fa-f]+", secret)

    # Never again: not in the station view, not in the list, not hashed either.
    station_id = body["station"]["id"]
    for path in (f"/api/stations/{station_id}", "/api/stations",
                 f"/api/stations?accountId={account['id']}"):
        r = await api.get(path)
        assert r.status_code == 200
        assert secret not in r.text
        assert "$2b$" not in r.text and "secret" not in r.text.lower()

    view = (await api.get(f"/api/stations/{station_id}")).json()
    assert view["connectorCount"] == 2
    assert [c["connectorNumber"] for c in view["connectors"]] == [1, 2]
    assert all(c["status"] == "unknown" for c in view["connectors"])
    assert view["runtime"]["status"] == "offline"
    assert view["runtime"]["registrationStatus"] == "new"


async def test_secret_is_random_and_only_hash_stored(api: httpx.AsyncClient, db_url: str) -> None:
    import bcrypt
    import psycopg

    account = await make_account(api)
    location = await make_location(api, account["id"])
    secrets_ = []
    for n in range(3):
        r = await make_station(api, account["id"], location["id"], code=f"CP-{n}")
        secrets_.append(r.json()["provisioning"]["stationSecret"])
    assert len(set(secrets_)) == 3
    with psycopg.connect(db_url) as conn:
        rows = conn.execute("SELECT station_code, station_secret_hash FROM stations "
                            "ORDER BY station_code").fetchall()
    for (_code, stored), secret in zip(rows, secrets_, strict=True):
        assert stored != secret and stored.startswith("$2b$")
        assert bcrypt.checkpw(secret.encode(), stored.encode())


async def test_duplicate_code_any_case_is_409(api: httpx.AsyncClient) -> None:
    account = await make_account(api)
    location = await make_location(api, account["id"])
    assert (await make_station(api, account["id"], location["id"], "CP-DUP")).status_code == 201
    r = await make_station(api, account["id"], location["id"], "cp-dup")
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "duplicate_station_code"


@pytest.mark.parametrize(("change", "field"), [
    ({"connectors": 0}, "connectors"),
    ({"connectors": "2"}, "connectors"),
    ({"connectors": True}, "connectors"),
    ({"stationCode": "has space"}, "stationCode"),
    ({"stationCode": "a:b"}, "stationCode"),
    ({"stationCode": "x" * 49}, "stationCode"),
    ({"stationCode": None}, "stationCode"),
    ({"locationId": "not-a-uuid"}, "locationId"),
    ({"locationId": str(uuid.uuid4())}, "locationId"),
    ({"accountId": str(uuid.uuid4())}, "accountId"),
    ({"model": 7}, "model"),
    ({"colour": "red"}, "colour"),
])
async def test_invalid_station_fields_are_422(api: httpx.AsyncClient, change: dict[str, Any],
                                              field: str) -> None:
    account = await make_account(api)
    location = await make_location(api, account["id"])
    body = {"accountId": account["id"], "locationId": location["id"], "stationCode": "CP-9",
            "connectors": 1, **change}
    if change.get("accountId"):  # an unknown account: no location of it either
        body["locationId"] = location["id"]
    r = await api.post("/api/stations", json=body)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"] == field


async def test_location_of_another_account_is_422(api: httpx.AsyncClient) -> None:
    a = await make_account(api, "A")
    b = await make_account(api, "B")
    location_b = await make_location(api, b["id"])
    r = await make_station(api, a["id"], location_b["id"])
    assert r.status_code == 422
    assert r.json()["error"]["field"] == "locationId"


@pytest.mark.parametrize("raw", [b"{", b"[1,2]", b"\xff\xfe", b"null"])
async def test_malformed_json_is_400(api: httpx.AsyncClient, raw: bytes) -> None:
    r = await api.post("/api/stations", content=raw,
                       headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "malformed_json"


@pytest.mark.parametrize("header", [None, "Bearer", "Bearer wrong", "Basic abc",
                                    f"Token {ADMIN_TOKEN}", "Bearer ak_0123456789abcdef_nope"])
async def test_missing_or_bad_token_is_401(server: Server, header: str | None) -> None:
    headers = {"Authorization": header} if header else {}
    async with httpx.AsyncClient(base_url=server.api_urls[0], headers=headers) as client:
        for method, path in (("GET", "/api/stations"), ("POST", "/api/accounts"),
                             ("GET", f"/api/stations/{uuid.uuid4()}")):
            r = await client.request(method, path, json={})
            assert r.status_code == 401
            assert r.json()["error"]["code"] == "unauthorized"


async def test_unknown_ids_are_404(api: httpx.AsyncClient) -> None:
    for path in (f"/api/stations/{uuid.uuid4()}", f"/api/locations/{uuid.uuid4()}",
                 f"/api/accounts/{uuid.uuid4()}", "/api/nothing-here"):
        r = await api.get(path)
        assert r.status_code == 404, path
        assert "error" in r.json()
    r = await api.post(f"/api/accounts/{uuid.uuid4()}/api-keys", json={})
    assert r.status_code == 404


async def test_account_key_sees_only_its_own_account(api: httpx.AsyncClient,
                                                     server: Server) -> None:
    a, loc_a, client_a = await tenant(api, server, "A")
    b, loc_b, client_b = await tenant(api, server, "B")
    async with client_a, client_b:
        r = await client_a.post("/api/stations", json={
            "locationId": loc_a["id"], "stationCode": "A-1", "connectors": 1})
        assert r.status_code == 201, r.text  # accountId defaults to the key's account
        station_a = r.json()["station"]["id"]
        r = await client_b.post("/api/stations", json={
            "accountId": b["id"], "locationId": loc_b["id"], "stationCode": "B-1",
            "connectors": 1})
        assert r.status_code == 201
        station_b = r.json()["station"]["id"]

        listed = (await client_a.get("/api/stations")).json()["items"]
        assert [s["id"] for s in listed] == [station_a]
        assert (await client_a.get(f"/api/stations/{station_b}")).status_code == 403
        assert (await client_a.get(f"/api/stations?accountId={b['id']}")).status_code == 403
        assert (await client_a.get(f"/api/locations/{loc_b['id']}")).status_code == 403
        assert [x["id"] for x in (await client_a.get("/api/locations")).json()["items"]] == [
            loc_a["id"]]
        r = await client_a.post("/api/stations", json={
            "accountId": b["id"], "locationId": loc_b["id"], "stationCode": "A-2",
            "connectors": 1})
        assert r.status_code == 403
        # Tenants are the admin's business.
        assert (await client_a.post("/api/accounts", json={"name": "x", "document": "y"})
                ).status_code == 403
        assert (await client_a.get(f"/api/accounts/{a['id']}")).status_code == 403
        assert (await client_a.post(f"/api/accounts/{a['id']}/api-keys", json={})
                ).status_code == 403
    # The admin sees both.
    assert {s["id"] for s in (await api.get("/api/stations")).json()["items"]} == {
        station_a, station_b}


async def test_listing_filters_and_pages(api: httpx.AsyncClient) -> None:
    account = await make_account(api)
    loc1 = await make_location(api, account["id"])
    loc2 = await make_location(api, account["id"])
    for n in range(5):
        loc = loc1 if n < 3 else loc2
        assert (await make_station(api, account["id"], loc["id"], f"P-{n}")).status_code == 201
    r = await api.get(f"/api/stations?locationId={loc1['id']}")
    assert [s["stationCode"] for s in r.json()["items"]] == ["P-0", "P-1", "P-2"]
    first = (await api.get("/api/stations?limit=2")).json()
    assert [s["stationCode"] for s in first["items"]] == ["P-0", "P-1"]
    assert first["nextOffset"] == 2
    last = (await api.get("/api/stations?limit=2&offset=4")).json()
    assert [s["stationCode"] for s in last["items"]] == ["P-4"]
    assert last["nextOffset"] is None
    assert (await api.get("/api/stations?limit=0")).status_code == 422
    assert (await api.get("/api/stations?limit=abc")).status_code == 422
    assert (await api.get("/api/stations?accountId=nope")).status_code == 422


async def test_accounts_and_locations(api: httpx.AsyncClient) -> None:
    account = await make_account(api, "Tenant")
    r = await api.get(f"/api/accounts/{account['id']}")
    assert r.status_code == 200 and r.json()["name"] == "Tenant"
    assert (await api.post("/api/accounts", json={"name": "x"})).status_code == 422
    location = await make_location(api, account["id"])
    got = (await api.get(f"/api/locations/{location['id']}")).json()
    assert got["latitude"] == 52.5 and got["accountId"] == account["id"]
    r = await api.post("/api/locations", json={
        "accountId": account["id"], "name": "x", "address": "y", "latitude": 91,
        "longitude": 0})
    assert r.status_code == 422 and r.json()["error"]["field"] == "latitude"
