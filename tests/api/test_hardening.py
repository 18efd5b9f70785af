"""Hostile REST input answered precisely (issue 7, defects 1 and 5, the body-size limit).

Every case runs against the real server and database: deep or broken JSON is a 400,
characters PostgreSQL cannot store a 422 naming the field, a filter or path naming
another account's object a 403 and an unknown object a 404 on every route, an
oversized body a 413, and every error in the contract's JSON shape.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from autimit_csms.api.app import MAX_JSON_DEPTH, create_app
from autimit_csms.server import Server

from ..conftest import ADMIN_TOKEN
from .test_provisioning import tenant
from .test_reads import DAY, add_session, execute

WRITE_METHODS = ("POST", "PATCH")
# What must never reach a client: driver text, Python internals.
INTERNALS = re.compile(r"Traceback|psycopg|Error\(|Exception|SQLSTATE|violates|relation \"|"
                       r"File \"|line \d+|<built-in|object at 0x|syntax error", re.IGNORECASE)


@dataclass
class Tenant:
    client: httpx.AsyncClient
    ids: dict[str, str]  # url_map argument name -> an object of this tenant


@dataclass
class World:
    server: Server
    admin: httpx.AsyncClient
    a: Tenant
    b: Tenant


async def make_tenant(api: httpx.AsyncClient, server: Server, db_url: str, name: str) -> Tenant:
    """An account with a location, a station, an id tag, a session and a command."""
    account, location, client = await tenant(api, server, name)
    r = await api.post("/api/stations", json={
        "accountId": account["id"], "locationId": location["id"], "stationCode": f"CP-{name}",
        "connectors": 2})
    assert r.status_code == 201, r.text
    station_id = r.json()["station"]["id"]
    r = await api.post("/api/id-tags", json={"accountId": account["id"], "idTag": f"TAG-{name}"})
    assert r.status_code == 201, r.text
    session_id, _ = add_session(db_url, station_id, started=DAY)
    command_id = str(uuid.uuid4())
    execute(db_url, "INSERT INTO station_commands (id, station_id, action, payload, requested_by)"
            " VALUES (%s, %s, 'Reset', '{\"type\": \"Soft\"}', 'admin')", (command_id, station_id))
    return Tenant(client, {"account_id": account["id"], "location_id": location["id"],
                           "station_id": station_id, "tag_id": r.json()["id"],
                           "session_id": session_id, "command_id": command_id,
                           "action": "Reset"})


@pytest.fixture
async def world(api: httpx.AsyncClient, server: Server, db_url: str) -> AsyncIterator[World]:
    a = await make_tenant(api, server, db_url, "A")
    b = await make_tenant(api, server, db_url, "B")
    async with a.client, b.client:
        yield World(server, api, a, b)


def routes(server: Server) -> list[tuple[str, str, frozenset[str]]]:
    """(method, rule, argument names) of every route the app serves, from its url_map."""
    app = create_app(server.db, admin_token=ADMIN_TOKEN, public_ocpp_url="ws://x/ocpp/1.6",
                     verifier=server.verifier, commands=server.commands, schemas=server.schemas)
    return sorted((method, rule.rule, frozenset(rule.arguments))
                  for rule in app.url_map.iter_rules()
                  for method in rule.methods or () if method not in ("HEAD", "OPTIONS"))


def fill(rule: str, ids: dict[str, str]) -> str:
    return re.sub(r"<(\w+)>", lambda m: ids[m[1]], rule)


def assert_error_shape(r: httpx.Response, status: int | None = None) -> dict[str, Any]:
    """A JSON error in the contract's shape, nothing internal in it; returns the error."""
    if status is not None:
        assert r.status_code == status, (r.request.method, r.request.url, r.text)
    assert r.status_code >= 400
    assert r.headers["content-type"].startswith("application/json"), r.headers
    body = r.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert isinstance(error["code"], str) and re.fullmatch(r"[a-z_]+", error["code"]), error
    assert isinstance(error["message"], str) and error["message"], error
    assert set(error) <= {"code", "message", "field"}, error
    assert not INTERNALS.search(r.text), r.text
    return error  # type: ignore[no-any-return]


# ---------------------------------------------------------------- defect 1: malformed JSON

DEEP_BODIES = [
    "[" * 10_000 + "]" * 10_000,
    '{"a":' * 10_000 + "1" + "}" * 10_000,
    '{"name": ' + "[" * 100_000,                      # deep and unterminated
]


async def test_deep_json_is_400_on_every_post_and_patch(world: World) -> None:
    writes = [(m, rule) for m, rule, _ in routes(world.server) if m in WRITE_METHODS]
    assert len(writes) >= 8, writes  # the url_map really was read
    for method, rule in writes:
        for body in DEEP_BODIES:
            r = await world.admin.request(method, fill(rule, world.a.ids), content=body,
                                          headers={"Content-Type": "application/json"})
            error = assert_error_shape(r, 400)
            assert error["code"] == "malformed_json", (rule, error)
    assert (await world.admin.get("/api/stations")).status_code == 200  # still serving


@pytest.mark.parametrize(("depth", "status"), [(MAX_JSON_DEPTH, 422), (MAX_JSON_DEPTH + 1, 400)])
async def test_json_depth_cap_is_explicit(api: httpx.AsyncClient, depth: int, status: int) -> None:
    # the outer object is one level; strings with brackets in them do not count
    body = '{"document": "[[[{{{", "name": ' + "[" * (depth - 1) + "]" * (depth - 1) + "}"
    r = await api.post("/api/accounts", content=body)
    error = assert_error_shape(r, status)
    assert error["code"] == ("invalid_field" if status == 422 else "malformed_json")


@pytest.mark.parametrize("raw", [
    b'{"name": "\xff\xfe", "document": "D"}',                  # not UTF-8
    '{"name": "Acme", "document": "D"}'.encode("utf-16"),       # valid JSON, not UTF-8
    b'\xef\xbb\xbf{"name": "Acme", "document": "D"}',          # UTF-8 byte order mark
    b'{"name": "Acme", "document": "D", "isActive": NaN}',
    b'{"name": "Acme", "document": "D", "isActive": -Infinity}',
    b'{"name": "Acme", "document": "D", "n": ' + b"9" * 5000 + b"}",  # past int()'s limit
    b'{"name": "Acme", "document": "D"',
    b'{"name": "Acme", "document": "D"} {}',
    b"[]", b'"text"', b"null", b"",
])
async def test_malformed_bodies_are_400(api: httpx.AsyncClient, raw: bytes) -> None:
    r = await api.post("/api/accounts", content=raw)
    assert assert_error_shape(r, 400)["code"] == "malformed_json"


async def test_extreme_numbers_are_422_or_rounded(api: httpx.AsyncClient) -> None:
    account = (await api.post("/api/accounts", json={"name": "N", "document": "D"})).json()

    def location(latitude: str) -> str:
        return (f'{{"accountId": "{account["id"]}", "name": "L", "address": "A", '
                f'"latitude": {latitude}, "longitude": 1}}')

    for huge in ("1E+99999", "-1e400", "1" + "0" * 4000):
        r = await api.post("/api/locations", content=location(huge))
        assert assert_error_shape(r, 422)["field"] == "latitude"
    # Decimal takes these, PostgreSQL's numeric would refuse the exponent: rounded
    for tiny, stored in (("1E-99999", 0), ("0." + "0" * 5000 + "1", 0), ("45.0000004", 45)):
        r = await api.post("/api/locations", content=location(tiny))
        assert r.status_code == 201, r.text
        assert r.json()["latitude"] == stored


@pytest.mark.parametrize("value", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00",
                                   "1899-12-31T23:59:59Z", "2026-01-05T10:00:00\u0000Z"])
async def test_timestamps_out_of_range_are_422(api: httpx.AsyncClient, value: str) -> None:
    account = (await api.post("/api/accounts", json={"name": "T", "document": "D"})).json()
    r = await api.post("/api/id-tags", json={"accountId": account["id"], "idTag": "T-1",
                                             "expiresAt": value})
    assert assert_error_shape(r, 422)["field"] == "expiresAt"
    for name in ("from", "to"):
        r = await api.get("/api/sessions", params={name: value})
        assert assert_error_shape(r, 422)["field"] == name


# ---------------------------------------------------------------- defect 1: unstorable text

UNSTORABLE = ["ab\u0000cd", "ab\ud800cd", "\udfff"]


def raw_json(body: dict[str, Any]) -> str:
    # ensure_ascii keeps a lone surrogate as the JSON escape \ud800 (httpx's json= cannot)
    return json.dumps(body, ensure_ascii=True)


def text_field_cases(w: World) -> list[tuple[str, str, dict[str, Any], str]]:
    """(method, path, a valid body, the free-text field to spoil) for every text field."""
    a = w.a.ids
    account = {"name": "Acme", "document": "DOC"}
    location = {"accountId": a["account_id"], "name": "Depot", "address": "1 Main St",
                "latitude": 1, "longitude": 2}
    station = {"accountId": a["account_id"], "locationId": a["location_id"],
               "stationCode": "CP-NEW", "serialNumber": "SN", "manufacturer": "M",
               "model": "X", "connectors": 1}
    patch = {"serialNumber": "SN", "manufacturer": "M", "model": "X"}
    tag = {"accountId": a["account_id"], "idTag": "NEW-TAG", "parentIdTag": "PARENT",
           "label": "Ann"}
    cases = [("POST", "/api/accounts", account, f) for f in account]
    cases += [("POST", f"/api/accounts/{a['account_id']}/api-keys", {"name": "ci"}, "name")]
    cases += [("POST", "/api/locations", location, f) for f in ("name", "address")]
    cases += [("POST", "/api/stations", {**station, "stationCode": f"CP-{f}"}, f)
              for f in ("stationCode", "serialNumber", "manufacturer", "model")]
    cases += [("PATCH", f"/api/stations/{a['station_id']}", patch, f) for f in patch]
    cases += [("POST", "/api/id-tags", {**tag, "idTag": f"T-{f}"}, f)
              for f in ("idTag", "parentIdTag", "label")]
    cases += [("PATCH", f"/api/id-tags/{a['tag_id']}", {"label": "Bob"}, "label")]
    return cases


async def test_unstorable_text_is_422_naming_the_field(world: World) -> None:
    for method, path, body, field in text_field_cases(world):
        for bad in UNSTORABLE:
            r = await world.admin.request(method, path, content=raw_json({**body, field: bad}))
            error = assert_error_shape(r, 422)
            assert (error["code"], error["field"]) == ("invalid_field", field), (path, error)
        # the same body with clean text is accepted: the 422 was the character
        r = await world.admin.request(method, path, content=raw_json(body))
        assert r.status_code in (200, 201), (path, r.text)
    view = (await world.admin.get(f"/api/stations/{world.a.ids['station_id']}")).json()
    assert view["serialNumber"] == "SN"  # nothing of the refused PATCHes was written


async def test_unstorable_field_names_are_escaped_in_the_answer(api: httpx.AsyncClient) -> None:
    r = await api.post("/api/accounts", content=raw_json({
        "name": "Acme", "document": "D", "x\u0000\ud800" + "y" * 5000: 1}))
    error = assert_error_shape(r, 422)
    assert error["field"].startswith("x\\u0000\\ud800y") and len(error["field"]) < 120
    assert error["message"].startswith(error["field"]) and len(error["message"]) < 200
    assert "\x00" not in r.text and r.content.decode("utf-8")  # no NUL, no lone surrogate


@pytest.mark.parametrize("query", ["idTag=ab%00cd", "idTag=%00", "x%00y=1", "limit=1%00",
                                   "accountId=%00", "idTag=%ED%A0%80"])
async def test_unstorable_query_strings_are_422(api: httpx.AsyncClient, query: str) -> None:
    r = await api.get(f"/api/sessions?{query}")
    if "%ED%A0%80" in query:  # not UTF-8 at all: decoded to U+FFFD, an ordinary idTag
        assert r.status_code == 200, r.text
        return
    error = assert_error_shape(r, 422)
    assert error["code"] == "invalid_field"


async def test_nul_or_surrogate_in_a_path_parameter_is_422(api: httpx.AsyncClient) -> None:
    for path in ("/api/stations/%00", "/api/sessions/ab%00cd/meter-values",
                 "/api/locations/%ED%A0%80", "/api/commands/%F0%9F%98%80"):
        r = await api.get(path)
        assert assert_error_shape(r, 422)["field"] == "id"


# ---------------------------------------------------------------- defect 5: tenant consistency

# Every query parameter that names an object, per listing route.
OBJECT_FILTERS = [
    ("/api/locations", "accountId", "account_id"),
    ("/api/stations", "accountId", "account_id"),
    ("/api/stations", "locationId", "location_id"),
    ("/api/id-tags", "accountId", "account_id"),
    ("/api/sessions", "accountId", "account_id"),
    ("/api/sessions", "stationId", "station_id"),
    ("/api/availability", "stationId", "station_id"),
    ("/api/availability", "locationId", "location_id"),
]


@pytest.mark.parametrize(("path", "param", "kind"), OBJECT_FILTERS)
async def test_filter_on_a_foreign_object_is_403_and_unknown_is_404(
        world: World, path: str, param: str, kind: str) -> None:
    a, b = world.a, world.b
    own = await a.client.get(path, params={param: a.ids[kind]})
    assert own.status_code == 200, own.text
    assert own.json()["items"], own.text  # the filter found the key's own object
    error = assert_error_shape(await a.client.get(path, params={param: b.ids[kind]}), 403)
    assert error["code"] == "forbidden"
    unknown = str(uuid.uuid4())
    for client in (a.client, world.admin):
        error = assert_error_shape(await client.get(path, params={param: unknown}), 404)
        assert error["code"] == "not_found"
    assert (await world.admin.get(path, params={param: b.ids[kind]})).status_code == 200


async def test_path_on_a_foreign_object_is_403_and_unknown_is_404_on_every_route(
        world: World) -> None:
    a, b = world.a, world.b
    with_ids = [(m, rule, args) for m, rule, args in routes(world.server) if args - {"action"}]
    assert len(with_ids) >= 20, with_ids
    unknown = {name: str(uuid.uuid4()) for name in b.ids} | {"action": "Reset"}
    for method, rule, _ in with_ids:
        body = {} if method in WRITE_METHODS else None
        r = await a.client.request(method, fill(rule, b.ids), json=body)
        assert assert_error_shape(r, 403)["code"] == "forbidden", (method, rule)
        r = await world.admin.request(method, fill(rule, unknown), json=body)
        assert assert_error_shape(r, 404)["code"] == "not_found", (method, rule)
        if method == "GET" and "account_id" not in rule:  # accounts are admin only
            r = await a.client.get(fill(rule, a.ids))
            assert r.status_code == 200, (rule, r.text)


# ---------------------------------------------------------------- body size limit

LIMIT = 1 << 20


async def test_oversized_body_with_content_length_is_413(api: httpx.AsyncClient) -> None:
    for size in (LIMIT + 1, 8 * LIMIT):
        r = await api.post("/api/accounts", content=b" " * size)
        assert assert_error_shape(r, 413)["code"] == "payload_too_large"
    # exactly the limit is read (and is then just not JSON)
    r = await api.post("/api/accounts", content=b" " * (LIMIT - 2) + b"[]")
    assert assert_error_shape(r, 400)["code"] == "malformed_json"
    assert (await api.get("/api/stations")).status_code == 200


async def test_oversized_chunked_body_is_413(api: httpx.AsyncClient) -> None:
    sent = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal sent
        for _ in range(64):  # 4 MiB in 64 KiB chunks, no Content-Length
            sent += 1
            yield b" " * 65_536

    r = await api.post("/api/accounts", content=chunks())
    assert "content-length" not in r.request.headers
    assert r.request.headers["transfer-encoding"] == "chunked"
    assert assert_error_shape(r, 413)["code"] == "payload_too_large"
    assert sent >= 16  # the server read past the limit before refusing
    assert (await api.get("/api/stations")).status_code == 200


# ---------------------------------------------------------------- every error's shape

async def test_every_kind_of_error_has_the_contract_shape(world: World) -> None:
    api, a = world.admin, world.a
    anonymous = httpx.AsyncClient(base_url=world.server.api_urls[0])
    async with anonymous:
        cases: list[tuple[int, httpx.Response]] = [
            (404, await api.get("/api/nope")),
            (404, await api.get("/")),
            (404, await api.get("/api/stations/" + str(uuid.uuid4()))),
            (405, await api.delete("/api/stations")),
            (405, await api.put(f"/api/stations/{a.ids['station_id']}", json={})),
            (401, await anonymous.get("/api/stations")),
            (401, await api.get("/api/stations", headers={"Authorization": "Bearer wrong"})),
            (401, await api.get("/api/stations", headers={"Authorization": "Basic eDp5"})),
            (403, await a.client.post("/api/accounts", json={"name": "x", "document": "y"})),
            (409, await api.post("/api/stations", json={
                "accountId": a.ids["account_id"], "locationId": a.ids["location_id"],
                "stationCode": "cp-a", "connectors": 1})),
            (422, await api.post("/api/accounts", json={"name": 5, "document": "y"})),
            (400, await api.post("/api/accounts", content=b"{")),
            (413, await api.post("/api/accounts", content=b" " * (LIMIT + 1))),
        ]
    for status, r in cases:
        assert_error_shape(r, status)
    methods = cases[3][1].headers["allow"]
    assert "GET" in methods and "POST" in methods and "DELETE" not in methods
