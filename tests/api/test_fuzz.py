"""Property-based fuzz of the REST API (issue 7): any body, query string or path
parameter on any route gets a contract answer -- never a 5xx, never internals.

One real server (own thread, own Trio loop) and database serve every example, so
hypothesis can try hundreds of requests in seconds; each example is one real HTTP
request over a real socket. Routes come from the app's own url_map, so a route
added later is fuzzed without touching this file.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autimit_csms.db import Database
from autimit_csms.localpg import LocalPostgres
from autimit_csms.server import Server

from ..conftest import ADMIN_TOKEN, new_database, server_settings
from .test_hardening import WRITE_METHODS, assert_error_shape, fill, routes

# Query names the API reads, plus whatever hypothesis invents.
QUERY_NAMES = ["accountId", "active", "connector", "from", "idTag", "limit", "locationId",
               "measurand", "measurands", "offset", "stationId", "stationCode", "to",
               "bucket", "wait"]
# Body fields the API reads somewhere, so fuzzed bodies reach the validators.
BODY_FIELDS = ["name", "document", "accountId", "locationId", "stationCode", "serialNumber",
               "manufacturer", "model", "connectors", "latitude", "longitude", "isPublic",
               "isActive", "ocppRelaxedValidation", "idTag", "status", "expiresAt",
               "parentIdTag", "label", "reason", "type", "connectorId", "vendorId", "data"]


@dataclass
class Running:
    url: str
    routes: list[tuple[str, str, frozenset[str]]]
    ids: dict[str, str]       # a tenant's objects, by url_map argument name
    account_key: str          # that tenant's API key


@pytest.fixture(scope="module")
def running(pg: LocalPostgres, template_db: str) -> Iterator[Running]:
    """A real `Server` in a thread of its own, on a fresh database, until the module ends."""
    db_url = pg.url(new_database(pg, template_db))
    started: dict[str, Any] = {}
    ready = threading.Event()

    async def main() -> None:
        db = Database(db_url, min_size=1, max_size=4)
        await db.open()
        try:
            async with trio.open_nursery() as nursery:
                server: Server = await nursery.start(Server(server_settings(db_url), db).run)
                started["server"] = server
                started["routes"] = routes(server)
                started["token"] = trio.lowlevel.current_trio_token()
                ready.set()  # runs until the fixture calls server.stop()
        finally:
            await db.close()

    thread = threading.Thread(target=trio.run, args=(main,), daemon=True)
    thread.start()
    assert ready.wait(30), "server did not start"
    server = started["server"]
    url = server.api_urls[0]
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as api:
        account = api.post("/api/accounts", json={"name": "Fuzz", "document": "F"}).json()
        location = api.post("/api/locations", json={
            "accountId": account["id"], "name": "L", "address": "A", "latitude": 1,
            "longitude": 2}).json()
        station = api.post("/api/stations", json={
            "accountId": account["id"], "locationId": location["id"], "stationCode": "CP-FUZZ",
            "connectors": 2}).json()["station"]
        tag = api.post("/api/id-tags", json={"accountId": account["id"], "idTag": "FUZZ"}).json()
        key = api.post(f"/api/accounts/{account['id']}/api-keys", json={}).json()["apiKey"]
    ids = {"account_id": account["id"], "location_id": location["id"],
           "station_id": station["id"], "tag_id": tag["id"], "session_id": str(uuid.uuid4()),
           "command_id": str(uuid.uuid4()), "action": "Reset"}
    try:
        yield Running(url, started["routes"], ids, key)
    finally:
        trio.from_thread.run_sync(server.stop, trio_token=started["token"])
        thread.join(30)


# Successes that are not JSON: the readable API page and the Prometheus exposition.
NOT_JSON = {"/api/docs": "text/html", "/metrics": "text/plain"}

# Text PostgreSQL cannot store, JSON escapes, path tricks, huge and odd numbers.
NASTY = st.sampled_from(["", "\x00", "\ud800", "\udfff", "%00", "../", "'; --", "null",
                         "1e999999", "-1", "9" * 400, "a" * 5000, "\u202e", "😀",
                         "2026-13-45T99:99:99Z", "0001-01-01T00:00:00Z"])
TEXT = st.one_of(st.text(max_size=40), NASTY)
SCALAR = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
                   TEXT)
JSON_VALUE = st.recursive(SCALAR, lambda inner: st.one_of(
    st.lists(inner, max_size=4),
    st.dictionaries(st.one_of(st.sampled_from(BODY_FIELDS), TEXT), inner, max_size=4)),
    max_leaves=12)
BODY = st.one_of(
    st.dictionaries(st.sampled_from(BODY_FIELDS), JSON_VALUE, max_size=8).map(
        lambda d: json.dumps(d, ensure_ascii=True).encode()),
    JSON_VALUE.map(lambda v: json.dumps(v, ensure_ascii=True).encode()),
    st.binary(max_size=200),
    st.none())
QUERY = st.lists(st.tuples(st.one_of(st.sampled_from(QUERY_NAMES), TEXT),
                           st.one_of(TEXT, st.integers().map(str),
                                     st.uuids().map(str))), max_size=4)


def path_value(running: Running, name: str) -> st.SearchStrategy[str]:
    own = running.ids.get(name, "x")
    return st.one_of(st.just(own), st.uuids().map(str), TEXT.filter(lambda t: "/" not in t))


@st.composite
def requests(draw: st.DrawFn, running: Running) -> tuple[str, str, list[Any], bytes | None,
                                                         str]:
    method, rule, arguments = draw(st.sampled_from(running.routes))
    values = {name: draw(path_value(running, name)) for name in arguments}
    path = fill(rule, {name: quote(value.encode("utf-8", "surrogatepass"), safe="")
                       for name, value in values.items()})
    body = draw(BODY) if method in WRITE_METHODS else None
    token = draw(st.sampled_from([ADMIN_TOKEN, running.account_key]))
    return method, path, draw(QUERY), body, token


@settings(max_examples=400, deadline=None, suppress_health_check=[
    HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_any_request_gets_a_contract_answer(running: Running, data: st.DataObject) -> None:
    method, path, query, body, token = data.draw(requests(running))
    with httpx.Client(base_url=running.url, timeout=30) as client:
        params = [(k.encode("utf-8", "surrogatepass").decode("utf-8", "replace"),
                   v.encode("utf-8", "surrogatepass").decode("utf-8", "replace"))
                  for k, v in query]
        r = client.request(method, path, params=params, content=body, headers={
            "Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    assert r.status_code < 500, (method, path, query, body, r.status_code, r.text)
    if r.status_code >= 400:
        assert_error_shape(r)
    elif path in NOT_JSON:  # the two documents that are not JSON carry their own type
        assert r.headers["content-type"].startswith(NOT_JSON[path]), r.headers
    else:
        r.json()  # a success is JSON too


def test_the_server_still_serves_after_the_fuzz(running: Running) -> None:
    with httpx.Client(base_url=running.url,
                      headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as client:
        assert client.get(f"/api/stations/{running.ids['station_id']}").status_code == 200
