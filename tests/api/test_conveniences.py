"""API conveniences (issue 10, item 1) over real sockets and a real database: a station
by its code, the list of accounts, and commands sent without waiting (202, then
`GET /api/commands/:id?wait=N`), also across two server processes' command buses."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
import trio

from autimit_csms.db import Database
from autimit_csms.server import Server

from ..conftest import ADMIN_TOKEN, server_settings
from ..stations.conftest import Provisioned, boot, connect, provision
from ..stations.test_commands import Charger
from .test_provisioning import make_station, tenant
from .test_reads import execute

# ---------------------------------------------------------------- a station by its code


async def test_station_by_code_in_any_case_with_the_filter_rules(
        api: httpx.AsyncClient, server: Server) -> None:
    a, location_a, client_a = await tenant(api, server, "A")
    b, location_b, client_b = await tenant(api, server, "B")
    async with client_a, client_b:
        r = await make_station(api, a["id"], location_a["id"], code="Cp-Look.01")
        station_a = r.json()["station"]["id"]
        assert (await make_station(api, b["id"], location_b["id"], code="CP-B")
                ).status_code == 201

        for code in ("Cp-Look.01", "cp-look.01", "CP-LOOK.01"):
            for client in (api, client_a):
                r = await client.get("/api/stations", params={"stationCode": code})
                assert r.status_code == 200, r.text
                assert [s["id"] for s in r.json()["items"]] == [station_a], code
                assert r.json()["items"][0]["stationCode"] == "Cp-Look.01"
        # with the other filters, AND-ed
        r = await api.get("/api/stations", params={"stationCode": "cp-look.01",
                                                   "accountId": a["id"],
                                                   "locationId": location_a["id"]})
        assert [s["id"] for s in r.json()["items"]] == [station_a]
        r = await api.get("/api/stations", params={"stationCode": "cp-look.01",
                                                   "accountId": b["id"]})
        assert r.status_code == 200 and r.json()["items"] == []
        # another account's station: 403; unknown: 404; not a code at all: 422
        r = await client_a.get("/api/stations", params={"stationCode": "cp-b"})
        assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
        for client in (api, client_a):
            r = await client.get("/api/stations", params={"stationCode": "CP-NONE"})
            assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
        for bad in ("a b", "x" * 49, "", "a:b"):
            r = await api.get("/api/stations", params={"stationCode": bad})
            assert r.status_code == 422 and r.json()["error"]["field"] == "stationCode", bad


# ---------------------------------------------------------------- accounts


async def test_accounts_are_listed_for_the_admin_only(api: httpx.AsyncClient,
                                                      server: Server) -> None:
    a, _, client_a = await tenant(api, server, "A")
    names = ["A"] + [f"T{n}" for n in range(4)]
    for name in names[1:]:
        assert (await api.post("/api/accounts", json={"name": name, "document": "D"})
                ).status_code == 201
    async with client_a:
        r = await client_a.get("/api/accounts")
        assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    first = (await api.get("/api/accounts", params={"limit": 3})).json()
    assert [x["name"] for x in first["items"]] == names[:3]  # oldest first
    assert first["items"][0]["id"] == a["id"] and first["nextOffset"] == 3
    rest = (await api.get("/api/accounts", params={"limit": 3, "offset": 3})).json()
    assert [x["name"] for x in rest["items"]] == names[3:] and rest["nextOffset"] is None
    assert set(first["items"][0]) == {"id", "name", "document", "isActive", "createdAt",
                                      "updatedAt"}
    r = await api.get("/api/accounts", params={"limit": 0})
    assert r.status_code == 422 and r.json()["error"]["field"] == "limit"


# ---------------------------------------------------------------- commands without waiting

@pytest.fixture
async def station(api: httpx.AsyncClient) -> Provisioned:
    return await provision(api)


@pytest.fixture
async def slow_charger(server: Server, station: Provisioned) -> AsyncIterator[Charger]:
    """A charger that answers every command after 0.3 s."""
    async with connect(server, station.code, station.secret) as ws:
        await boot(ws)
        bot = Charger(ws, lambda action, _: None)

        async def run() -> None:
            while True:
                frame = json.loads(await ws.get_message())
                bot.received.append(frame[2])
                await trio.sleep(0.3)
                await ws.send_message(json.dumps([3, frame[1], {"status": "Accepted"}]))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(run)
            yield bot
            nursery.cancel_scope.cancel()


async def test_a_command_without_waiting_is_202_then_followed(
        api: httpx.AsyncClient, station: Provisioned, slow_charger: Charger) -> None:
    url = f"/api/stations/{station.id}/commands/Reset"
    with trio.fail_after(0.25):  # well before the charger answers
        r = await api.post(url, params={"wait": "false"}, json={"type": "Soft"})
    assert r.status_code == 202, r.text
    queued = r.json()
    assert queued["status"] in ("queued", "sent") and queued["response"] is None
    assert r.headers["location"] == f"/api/commands/{queued['id']}"
    # without `wait` the row is shown as it is now
    now = (await api.get(f"/api/commands/{queued['id']}")).json()
    assert now["status"] in ("queued", "sent")
    with trio.fail_after(5):
        r = await api.get(f"/api/commands/{queued['id']}", params={"wait": 10})
    assert r.status_code == 200
    done = r.json()
    assert done["status"] == "answered" and done["response"] == {"status": "Accepted"}
    assert slow_charger.received == ["Reset"]
    # a finished command answers at once, whatever the wait
    with trio.fail_after(1):
        r = await api.get(f"/api/commands/{queued['id']}", params={"wait": 60})
    assert r.json()["status"] == "answered"
    # the waiting form is unchanged: 200 with the answer
    with trio.fail_after(5):
        r = await api.post(url, json={"type": "Hard"})
    assert r.status_code == 200 and r.json()["status"] == "answered"
    # and explicitly asked for
    r = await api.post(url, params={"wait": "true"}, json={"type": "Hard"})
    assert r.status_code == 200 and r.json()["status"] == "answered"


async def test_a_command_without_waiting_keeps_every_refusal(
        api: httpx.AsyncClient, station: Provisioned, db_url: str) -> None:
    url = f"/api/stations/{station.id}/commands/Reset"
    r = await api.post(url, params={"wait": "false"}, json={"type": "Soft"})
    assert r.status_code == 409 and r.json()["error"]["code"] == "station_offline"
    r = await api.post(url, params={"wait": "false"}, json={"type": "Warm"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "type"
    r = await api.post(url, params={"wait": "no"}, json={"type": "Soft"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "wait"
    r = await api.post(f"/api/stations/{station.id}/commands/Heartbeat",
                       params={"wait": "false"}, json={})
    assert r.status_code == 404
    command = (await api.get(f"/api/stations/{station.id}/commands")).json()["items"][0]
    for bad in ("61", "-1", "1.5", "soon"):
        r = await api.get(f"/api/commands/{command['id']}", params={"wait": bad})
        assert r.status_code == 422 and r.json()["error"]["field"] == "wait", bad
    r = await api.get(f"/api/commands/{uuid.uuid4()}", params={"wait": 5})
    assert r.status_code == 404


async def test_an_unfinished_command_is_bounded_without_a_waiting_request(
        station: Provisioned, db: Database, db_url: str) -> None:
    # The station is recorded as held by a live-looking process that never delivers
    # (as one that died a moment ago): only the requester's bound can end the command.
    holder = uuid.uuid4()
    execute(db_url, "INSERT INTO csms_nodes (id, hostname, pid) VALUES (%s, 'elsewhere', 1)",
            (holder,))
    execute(db_url, "UPDATE station_runtime_state SET status = 'online', node_id = %s "
            "WHERE station_id = %s", (holder, station.id))
    async with trio.open_nursery() as nursery:
        quick: Server = await nursery.start(
            Server(server_settings(db_url, command_timeout=0.5), db).run)
        async with httpx.AsyncClient(base_url=quick.api_urls[0], headers={
                "Authorization": f"Bearer {ADMIN_TOKEN}"}) as api:
            r = await api.post(f"/api/stations/{station.id}/commands/ClearCache",
                               params={"wait": "false"}, json={})
            assert r.status_code == 202, r.text
            command_id = r.json()["id"]
            # the time is up before the command ends: its row as it is then
            with trio.fail_after(3):
                r = await api.get(f"/api/commands/{command_id}", params={"wait": 1})
            assert r.status_code == 200 and r.json()["status"] == "queued"
            # nobody waits on the POST, yet it is marked timeout at 2 x 0.5 + 2 s
            with trio.fail_after(5):
                r = await api.get(f"/api/commands/{command_id}", params={"wait": 10})
            body = r.json()
            assert body["status"] == "timeout" and body["error"]["code"] == "Timeout", body
            assert body["finishedAt"] is not None and body["nodeId"] is None
        quick.stop()


async def test_waiting_on_a_command_another_process_delivers(
        server: Server, station: Provisioned, slow_charger: Charger, db: Database,
        db_url: str) -> None:
    """The charger is held by `server`; the command is sent and followed through a
    second server on the same database: its wait wakes on the completion NOTIFY."""
    async with trio.open_nursery() as nursery:
        other: Server = await nursery.start(Server(server_settings(db_url), db).run)
        async with httpx.AsyncClient(base_url=other.api_urls[0], headers={
                "Authorization": f"Bearer {ADMIN_TOKEN}"}) as other_api:
            r = await other_api.post(f"/api/stations/{station.id}/commands/Reset",
                                     params={"wait": "false"}, json={"type": "Soft"})
            assert r.status_code == 202, r.text
            with trio.fail_after(5):
                r = await other_api.get(f"/api/commands/{r.json()['id']}",
                                        params={"wait": 30})
            body = r.json()
            assert body["status"] == "answered", body
            # delivered by the process holding the socket, not by the one asked
            assert body["nodeId"] == str(server.commands.node_id) != str(other.commands.node_id)
        other.stop()
