"""The OpenAPI 3.1 document (issue 10, item 2) against the app and the running server.

Every route of the app's url_map is in it with its methods; it validates as OpenAPI
3.1; real answers of the real server validate against its response schemas; its
request limits are the ones the server enforces; /api/docs names every path; and
/metrics is the admin's Prometheus exposition.
"""

from __future__ import annotations

import html
import json
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import trio
from jsonschema import Draft202012Validator, FormatChecker
from openapi_spec_validator import validate
from openapi_spec_validator.validation import OpenAPIV31SpecValidator
from prometheus_client.parser import text_string_to_metric_families
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from autimit_csms.api.stations import STATION_CODE_PATTERN
from autimit_csms.ocpp16 import CSMS_TO_CHARGER
from autimit_csms.server import Server

from ..stations.conftest import boot, connect
from ..stations.test_commands import COMMANDS, Charger
from .test_hardening import routes
from .test_provisioning import tenant
from .test_reads import (
    ENERGY,
    add_connection_events,
    add_meter_values,
    add_session,
    add_status_events,
    at,
    iso,
)

DOC_URN = "urn:autimit:openapi"


async def fetch_document(server: Server) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=server.api_urls[0]) as anonymous:  # no token
        r = await anonymous.get("/api/openapi.json")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    return r.json()  # type: ignore[no-any-return]


@pytest.fixture
async def doc(server: Server) -> dict[str, Any]:
    return await fetch_document(server)


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def template(rule: str) -> str:
    return re.sub(r"<(\w+)>", lambda m: "{" + camel(m[1]) + "}", rule)


async def test_every_route_is_documented_with_its_methods(server: Server,
                                                          doc: dict[str, Any]) -> None:
    expected: set[tuple[str, str]] = set()
    for method, rule, arguments in routes(server):
        path = template(rule)
        paths = ([path.replace("{action}", a) for a in CSMS_TO_CHARGER] if "action" in arguments
                 else [path])
        expected |= {(method.lower(), p) for p in paths}
    documented = {(method, path) for path, item in doc["paths"].items() for method in item}
    assert expected == documented
    assert len(expected) >= 33 + len(CSMS_TO_CHARGER)
    for path in ("/api/openapi.json", "/api/docs", "/metrics", "/api/accounts"):
        assert "get" in doc["paths"][path], path


async def test_document_validates_as_openapi_3_1(doc: dict[str, Any]) -> None:
    assert doc["openapi"].startswith("3.1")
    validate(doc, cls=OpenAPIV31SpecValidator)


async def test_components_error_page_security_and_ocpp_bodies(doc: dict[str, Any]) -> None:
    schemas = doc["components"]["schemas"]
    error = schemas["Error"]["properties"]["error"]
    assert set(error["properties"]) == {"code", "message", "field"}
    assert error["required"] == ["code", "message"]
    assert set(schemas["Page"]["required"]) == {"items", "limit", "offset", "nextOffset"}
    assert doc["components"]["securitySchemes"]["bearer"] == {
        "type": "http", "scheme": "bearer",
        "description": doc["components"]["securitySchemes"]["bearer"]["description"]}
    assert doc["security"] == [{"bearer": []}]
    assert doc["paths"]["/api/openapi.json"]["get"]["security"] == []
    assert doc["paths"]["/api/docs"]["get"]["security"] == []
    assert "security" not in doc["paths"]["/metrics"]["get"]  # the admin token
    listing = doc["paths"]["/api/stations"]["get"]
    assert schemas[listing["responses"]["200"]["content"]["application/json"]["schema"][
        "$ref"].rsplit("/", 1)[-1]]["allOf"] == [{"$ref": "#/components/schemas/Page"}]
    assert {"401", "403", "422", "503"} <= set(listing["responses"])
    create = doc["paths"]["/api/stations"]["post"]
    assert {"400", "409", "413", "422"} <= set(create["responses"])
    # each command endpoint takes its action's official OCPP request schema
    for action in CSMS_TO_CHARGER:
        op = doc["paths"][f"/api/stations/{{stationId}}/commands/{action}"]["post"]
        ref = op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        assert ref == f"#/components/schemas/ocpp.{action}Request"
        assert {"200", "202", "409", "502", "504"} <= set(op["responses"])
    assert schemas["ocpp.ResetRequest"]["properties"]["type"]["enum"] == ["Hard", "Soft"]
    # draft-06 definitions of the security whitepaper became components
    assert schemas["ocpp.DeleteCertificateRequest"]["properties"]["certificateHashData"] == {
        "$ref": "#/components/schemas/ocpp.DeleteCertificateRequest.CertificateHashDataType"}


# ---------------------------------------------------------------- the limits are the server's

def request_schema(doc: dict[str, Any], path: str, method: str = "post") -> dict[str, Any]:
    ref = doc["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"]
    return doc["components"]["schemas"][ref["$ref"].rsplit("/", 1)[-1]]  # type: ignore


def breaking(prop: dict[str, Any]) -> list[Any]:
    """Values the property's schema refuses."""
    kinds = prop["type"] if isinstance(prop["type"], list) else [prop["type"]]
    values: list[Any] = [[1]]  # an array is no property's type here
    if "maxLength" in prop:
        values.append("x" * (prop["maxLength"] + 1))
    if "maximum" in prop:
        values.append(prop["maximum"] + 1)
    if "minimum" in prop:
        values.append(prop["minimum"] - 1)
    if "enum" in prop:
        values.append("not-" + str(prop["enum"][0]))
    if "pattern" in prop:
        values.append("has space:")
    if "integer" in kinds or "number" in kinds:
        values.append("1")
    return values


def at_limits(prop: dict[str, Any]) -> list[Any]:
    """Values at the edges the property's schema allows (ids and codes excepted)."""
    if prop.get("format") == "uuid":
        return []
    values: list[Any] = [prop[k] for k in ("minimum", "maximum") if k in prop]
    if "maxLength" in prop:
        values.append("X" * prop["maxLength"])
    if "enum" in prop:
        values += [v for v in prop["enum"] if v is not None]
    return values


async def test_declared_limits_are_what_the_server_refuses(
        api: httpx.AsyncClient, doc: dict[str, Any]) -> None:
    account = (await api.post("/api/accounts", json={"name": "A", "document": "D"})).json()
    location = (await api.post("/api/locations", json={
        "accountId": account["id"], "name": "L", "address": "A", "latitude": 1,
        "longitude": 2})).json()
    valid = {
        "/api/accounts": {"name": "N", "document": "D"},
        "/api/locations": {"accountId": account["id"], "name": "L", "address": "A",
                           "latitude": 1, "longitude": 2},
        "/api/stations": {"accountId": account["id"], "locationId": location["id"],
                          "stationCode": "CP-LIMITS", "connectors": 1},
        "/api/id-tags": {"accountId": account["id"], "idTag": "LIMITS"},
    }
    checked = 0
    for path, body in valid.items():
        schema = request_schema(doc, path)
        assert schema["additionalProperties"] is False
        assert set(schema["required"]) <= set(body)
        for name in schema["required"]:
            r = await api.post(path, json={k: v for k, v in body.items() if k != name})
            assert r.status_code == 422 and r.json()["error"]["field"] == name, (path, name)
        for name, prop in schema["properties"].items():
            for bad in breaking(prop):
                r = await api.post(path, json={**body, name: bad})
                assert r.status_code == 422, (path, name, bad, r.text)
                assert r.json()["error"]["field"] == name, (path, name, bad, r.text)
                checked += 1
        r = await api.post(path, json={**body, "notDeclared": 1})
        assert r.status_code == 422 and r.json()["error"]["field"] == "notDeclared"
        # and exactly at each declared limit, accepted: the document is not stricter
        for name, prop in schema["properties"].items():
            for edge in at_limits(prop):
                fresh = {**body, **{k: f"{body[k]}-{checked}" for k in ("stationCode", "idTag")
                                    if k in body}}
                r = await api.post(path, json={**fresh, name: edge})
                assert r.status_code == 201, (path, name, edge, r.text)
                checked += 1
    assert checked >= 40
    station = request_schema(doc, "/api/stations")["properties"]["stationCode"]
    assert station["pattern"] == f"^(?:{STATION_CODE_PATTERN})$" and station["maxLength"] == 48
    # query parameters too
    limit = next(p for p in doc["paths"]["/api/stations"]["get"]["parameters"]
                 if p["name"] == "limit")
    assert (limit["schema"]["minimum"], limit["schema"]["maximum"]) == (1, 500)
    for value, status in ((500, 200), (501, 422), (1, 200), (0, 422)):
        assert (await api.get("/api/stations", params={"limit": value})).status_code == status


# ---------------------------------------------------------------- real answers match the schemas

class Answers:
    """Validates real responses against the document's schema for their route and status."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc
        resource = Resource.from_contents(doc, default_specification=DRAFT202012)
        self.registry: Registry[Any] = Registry().with_resource(DOC_URN, resource)
        # concrete paths (one per OCPP action) before templated ones
        self.paths = sorted(doc["paths"], key=lambda p: p.count("{"))
        self.seen: set[tuple[str, str, int]] = set()

    def template_of(self, path: str) -> str:
        for candidate in self.paths:
            pattern = re.sub(r"\\\{\w+\\\}", "[^/]+", re.escape(candidate))
            if re.fullmatch(pattern, path):
                return candidate
        raise AssertionError(f"{path} is not in the document")

    def check(self, r: httpx.Response, status: int | None = None) -> dict[str, Any]:
        if status is not None:
            assert r.status_code == status, r.text
        method = r.request.method.lower()
        path = self.template_of(r.request.url.path)
        answer = self.doc["paths"][path][method]["responses"].get(str(r.status_code))
        assert answer is not None, (method, path, r.status_code, "not documented")
        pointer = f"/paths/{escape(path)}/{method}/responses/{r.status_code}"
        if "$ref" in answer:
            name = answer["$ref"].rsplit("/", 1)[-1]
            pointer, answer = f"/components/responses/{name}", self.doc["components"][
                "responses"][name]
        [(media, _)] = answer["content"].items()
        assert r.headers["content-type"].startswith(media.split(";")[0]), r.headers
        validator = Draft202012Validator(
            {"$ref": f"{DOC_URN}#{pointer}/content/{escape(media)}/schema"},
            registry=self.registry, format_checker=FormatChecker())
        body = r.json()
        errors = sorted(validator.iter_errors(body), key=str)
        assert not errors, (method, path, r.status_code, [e.message for e in errors][:3])
        self.seen.add((method, path, r.status_code))
        return body  # type: ignore[no-any-return]


def escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


@pytest.fixture
async def charged(api: httpx.AsyncClient, server: Server, db_url: str
                  ) -> AsyncIterator[dict[str, Any]]:
    """A tenant with a connected charger that answers every command, a finished
    session with samples, status and connection history."""
    account, location, client = await tenant(api, server, "Docs")
    r = await api.post("/api/stations", json={
        "accountId": account["id"], "locationId": location["id"], "stationCode": "CP-DOC",
        "serialNumber": "SN", "connectors": 2})
    station = r.json()
    station_id = station["station"]["id"]
    session_id, tx = add_session(db_url, station_id, started=at(10), stopped=at(10, 10),
                                 meter_stop=4600, reason="Local")
    add_meter_values(db_url, station_id, tx, [(at(10, m), ENERGY, 1000 + 400 * m)
                                              for m in range(10)])
    add_status_events(db_url, station_id, [(at(10, 1), 0, "available", "Available", "NoError"),
                                           (at(10, 3), 1, "faulted", "Faulted", "GroundFailure")])
    add_connection_events(db_url, station_id, [(at(9), "connected"), (at(11), "disconnected")])
    async with client, connect(server, "CP-DOC", station["provisioning"]["stationSecret"]) as ws:
        await boot(ws)
        bot = Charger(ws, lambda action, _: COMMANDS[action][1])
        async with trio.open_nursery() as nursery:
            nursery.start_soon(bot.run)
            yield {"account": account, "location": location, "client": client,
                   "station": station, "station_id": station_id, "session_id": session_id}
            nursery.cancel_scope.cancel()


async def test_real_answers_validate_against_the_document(
        api: httpx.AsyncClient, server: Server, doc: dict[str, Any],
        charged: dict[str, Any]) -> None:
    answers = Answers(doc)
    check = answers.check
    account, location = charged["account"], charged["location"]
    station_id, session_id = charged["station_id"], charged["session_id"]
    client: httpx.AsyncClient = charged["client"]
    window = {"from": iso(at(8)), "to": iso(at(12))}

    check(await api.post("/api/accounts", json={"name": "Other", "document": "D"}), 201)
    check(await api.get("/api/accounts", params={"limit": 1}), 200)
    check(await api.get(f"/api/accounts/{account['id']}"), 200)
    check(await api.post(f"/api/accounts/{account['id']}/api-keys", json={"name": "x"}), 201)
    check(await api.post("/api/locations", json={
        "accountId": account["id"], "name": "L2", "address": "A", "latitude": 45.5,
        "longitude": -3}), 201)
    check(await client.get("/api/locations"), 200)
    check(await client.get(f"/api/locations/{location['id']}"), 200)
    check(await client.post("/api/stations", json={
        "locationId": location["id"], "stationCode": "CP-DOC2", "connectors": 1}), 201)
    listed = check(await client.get("/api/stations", params={"stationCode": "cp-doc"}), 200)
    assert [s["id"] for s in listed["items"]] == [station_id]
    check(await api.get(f"/api/stations/{station_id}"), 200)
    check(await api.patch(f"/api/stations/{station_id}", json={"model": "M"}), 200)
    check(await api.post(f"/api/stations/{station_id}/secret"), 201)
    tag = check(await client.post("/api/id-tags", json={
        "idTag": "DOC-1", "expiresAt": "2030-01-01T00:00:00+01:00"}), 201)
    check(await client.get("/api/id-tags"), 200)
    check(await client.patch(f"/api/id-tags/{tag['id']}", json={"status": "blocked"}), 200)
    check(await client.get("/api/availability", params={"locationId": location["id"]}), 200)
    check(await client.get("/api/sessions", params={"stationId": station_id}), 200)
    check(await client.get(f"/api/sessions/{session_id}"), 200)
    check(await client.get(f"/api/stations/{station_id}/active-sessions"), 200)
    raw = check(await client.get(f"/api/sessions/{session_id}/meter-values"), 200)
    assert len(raw["items"]) == 10
    check(await client.get(f"/api/stations/{station_id}/meter-values",
                           params={**window, "bucket": 300}), 200)
    check(await client.get(f"/api/stations/{station_id}/status-history", params=window), 200)
    check(await client.get(f"/api/stations/{station_id}/uptime", params=window), 200)
    check(await client.get(f"/api/stations/{station_id}/faults", params=window), 200)
    # commands, answered by the connected charger, and what they changed
    base = f"/api/stations/{station_id}"
    for action in ("ReserveNow", "SendLocalList", "SetChargingProfile", "GetConfiguration"):
        check(await client.post(f"{base}/commands/{action}", json=COMMANDS[action][0]), 200)
    queued = check(await client.post(f"{base}/commands/Reset", params={"wait": "false"},
                                     json={"type": "Soft"}), 202)
    check(await client.get(f"/api/commands/{queued['id']}", params={"wait": 5}), 200)
    check(await client.get(f"{base}/commands"), 200)
    for what in ("reservations", "local-auth-list", "charging-profiles", "configuration"):
        check(await client.get(f"{base}/{what}"), 200)
    # errors, in the documented shape
    check(await client.get(f"/api/stations/{uuid.uuid4()}"), 404)
    check(await client.get("/api/accounts"), 403)
    check(await client.post("/api/id-tags", json={"idTag": "a b"}), 422)
    check(await client.post("/api/stations", content=b"{"), 400)
    check(await client.post("/api/id-tags", json={"idTag": "DOC-1"}), 409)
    check(await client.post(f"{base}/commands/Reset", json={"type": "Warm"}), 422)
    async with httpx.AsyncClient(base_url=server.api_urls[0]) as anonymous:
        check(await anonymous.get("/api/stations"), 401)
        check(await anonymous.get("/api/openapi.json"), 200)
    assert len({(m, p) for m, p, _ in answers.seen}) >= 35, sorted(answers.seen)


# ---------------------------------------------------------------- the page and /metrics

async def test_docs_page_names_every_path_without_a_token(server: Server,
                                                         doc: dict[str, Any]) -> None:
    async with httpx.AsyncClient(base_url=server.api_urls[0]) as anonymous:
        r = await anonymous.get("/api/docs")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    page = r.text
    assert page.startswith("<!doctype html>") and "<script" not in page
    assert not re.search(r"(src|href)=\"https?://", page)  # nothing fetched from elsewhere
    for path, item in doc["paths"].items():
        assert html.escape(path) in page, path
        for op in item.values():
            assert f'id="{op["operationId"]}"' in page, op["operationId"]
    for name in doc["components"]["schemas"]:
        assert f'id="schema-{html.escape(name)}"' in page, name


async def test_metrics_are_the_admins_prometheus_exposition(
        server: Server, api: httpx.AsyncClient) -> None:
    async with httpx.AsyncClient(base_url=server.api_urls[0]) as anonymous:
        r = await anonymous.get("/metrics")
        assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
    account = (await api.post("/api/accounts", json={"name": "M", "document": "D"})).json()
    key = (await api.post(f"/api/accounts/{account['id']}/api-keys", json={})).json()["apiKey"]
    r = await api.get("/metrics", headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    r = await api.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain; version=")
    families = list(text_string_to_metric_families(r.text))
    assert families and all(f.name.startswith(("autimit_", "python_", "process_"))
                            for f in families), [f.name for f in families][:5]
    with pytest.raises(json.JSONDecodeError):
        json.loads(r.text)
