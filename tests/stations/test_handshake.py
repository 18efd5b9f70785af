"""The OCPP-J 1.6 handshake over real sockets: who is let in, on which path, how.

ADR 0001 / issue 3 item 3: credential refusals are HTTP 401 before the upgrade and
look the same whatever the reason; a wrong path is 404; the station code is
case-insensitive and percent-decoded; the subprotocol rules are OCPP-J §3.
Item 4: one connection per station, online/offline bookkeeping, and the
accepted state that outlives a connection (OCPP-J errata §3.8).
"""

from __future__ import annotations

import base64
import logging
import uuid
from typing import Any

import bcrypt
import httpx
import psycopg
import pytest
import trio
from trio_websocket import ConnectionClosed, ConnectionRejected, open_websocket_url

from autimit_csms.db import Database
from autimit_csms.server import Server
from autimit_csms.stations.listener import LoginLookup

from ..conftest import server_settings
from .conftest import Provisioned, basic, boot, call, connect, ocpp_url, provision


def sql(db_url: str, query: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(db_url, autocommit=True) as conn:
        cursor = conn.execute(query, params)
        return cursor.fetchall() if cursor.description else []


def runtime_state(db_url: str, station_id: str) -> tuple[str, str]:
    rows = sql(db_url, "SELECT status, registration_status FROM station_runtime_state "
                       "WHERE station_id = %s", station_id)
    assert len(rows) == 1, rows
    return rows[0]


async def refused(url: str, headers: list[tuple[str, str]]) -> ConnectionRejected:
    """Open a WebSocket that must be refused before the upgrade; return the refusal."""
    with trio.fail_after(5), pytest.raises(ConnectionRejected) as info:
        async with open_websocket_url(url, subprotocols=["ocpp1.6"], extra_headers=headers):
            pass
    return info.value


def raw_header(value: str) -> list[tuple[str, str]]:
    return [("Authorization", value)]


# ------------------------------------------------------------------ refusals (401)

@pytest.mark.parametrize("case", [
    "wrong secret", "unknown station", "inactive station", "missing Authorization",
    "wrong username", "username of another station", "not base64", "no colon", "Bearer",
    "empty password",
])
async def test_bad_credentials_are_refused_with_401(
        case: str, server: Server, api: httpx.AsyncClient, station: Provisioned,
        db_url: str) -> None:
    code, headers = station.code, [basic(station.code, station.secret)]
    if case == "wrong secret":
        # a different last character, whatever the secret ends with
        last = "y" if station.secret.endswith("x") else "x"
        headers = [basic(station.code, station.secret[:-1] + last)]
    elif case == "unknown station":
        code, headers = "CP-404", [basic("CP-404", station.secret)]
    elif case == "inactive station":
        sql(db_url, "UPDATE stations SET is_active = false WHERE id = %s", station.id)
    elif case == "missing Authorization":
        headers = []
    elif case == "wrong username":
        headers = [basic("CP-2", station.secret)]
    elif case == "username of another station":
        other = await provision(api, "CP-2", account_id=station.account_id)
        headers = [basic(other.code, other.secret)]
    elif case == "not base64":
        headers = raw_header("Basic !!!not-base64!!!")
    elif case == "no colon":
        token = base64.b64encode(f"{station.code}{station.secret}".encode()).decode()
        headers = raw_header(f"Basic {token}")
    elif case == "Bearer":
        headers = raw_header(f"Bearer {station.secret}")
    elif case == "empty password":
        headers = [basic(station.code, "")]
    rejection = await refused(ocpp_url(server, code), headers)
    assert rejection.status_code == 401
    www = dict(rejection.headers).get(b"www-authenticate", b"")
    assert www.lower().startswith(b"basic "), rejection.headers


async def test_refusals_do_not_reveal_why(server: Server, api: httpx.AsyncClient,
                                         db_url: str) -> None:
    """Unknown, inactive and wrong secret: the same status, header and body."""
    active = await provision(api, "CP-1")
    inactive = await provision(api, "CP-2", account_id=active.account_id)
    sql(db_url, "UPDATE stations SET is_active = false WHERE id = %s", inactive.id)
    rejections = [
        await refused(ocpp_url(server, "CP-404"), [basic("CP-404", active.secret)]),
        await refused(ocpp_url(server, inactive.code), [basic(inactive.code, inactive.secret)]),
        await refused(ocpp_url(server, active.code), [basic(active.code, "x" * 24)]),
    ]

    def looks(rejection: ConnectionRejected) -> tuple[object, ...]:
        headers = sorted((k.lower(), v) for k, v in rejection.headers if k.lower() != b"date")
        return rejection.status_code, headers, rejection.body or b""

    assert [r.status_code for r in rejections] == [401, 401, 401]
    assert len({dict(r.headers).get(b"www-authenticate") for r in rejections}) == 1
    assert looks(rejections[0]) == looks(rejections[1]) == looks(rejections[2])
    # and the active station's correct secret is let in: the refusals above were about them
    async with connect(server, active.code, active.secret) as ws:
        assert ws.subprotocol == "ocpp1.6"


# ------------------------------------------------------------------ paths (404)

@pytest.mark.parametrize("path", [
    "/ocpp/1.5/CP-1", "/other", "/ocpp/1.6/", "/ocpp/1.6/CP-1/extra", "/ocpp/1.6/a/b",
    "/ocpp/1.6",
])
async def test_wrong_path_is_404(path: str, server: Server, station: Provisioned) -> None:
    rejection = await refused(f"ws://127.0.0.1:{server.ocpp_port}{path}",
                              [basic(station.code, station.secret)])
    assert rejection.status_code == 404


# ------------------------------------------------------------------ accepted variants

async def test_code_in_other_letter_case_is_bound_to_the_right_station(
        server: Server, api: httpx.AsyncClient, station: Provisioned, db_url: str) -> None:
    other = await provision(api, "CP-10", account_id=station.account_id)
    async with connect(server, "cp-1", station.secret) as ws:
        assert ws.subprotocol == "ocpp1.6"
        await boot(ws)
        assert runtime_state(db_url, station.id) == ("online", "accepted")
        assert runtime_state(db_url, other.id) == ("offline", "new")
        # the row is keyed by the stored code's station, whatever case the charger used
        rows = sql(db_url, "SELECT s.station_code FROM station_boot_events b "
                           "JOIN stations s ON s.id = b.station_id")
        assert rows == [("CP-1",)]


async def test_percent_encoded_code_is_decoded(server: Server, station: Provisioned,
                                               db_url: str) -> None:
    async with connect(server, station.code, station.secret, path_code="CP%2D1") as ws:
        assert ws.subprotocol == "ocpp1.6"
        await boot(ws)
        assert runtime_state(db_url, station.id) == ("online", "accepted")


# ------------------------------------------------------------------ subprotocol (OCPP-J §3)

@pytest.mark.parametrize("offered", [[], ["ocpp2.0.1"], ["ocpp1.5", "ocpp2.0"]])
async def test_without_ocpp16_handshake_completes_then_closes(
        offered: list[str], server: Server, station: Provisioned, db_url: str) -> None:
    async with connect(server, station.code, station.secret, subprotocols=offered) as ws:
        assert ws.subprotocol is None
        with trio.fail_after(5), pytest.raises(ConnectionClosed):
            await ws.get_message()
    # never treated as the station being online: no connection event
    assert sql(db_url, "SELECT count(*) FROM station_connection_events") == [(0,)]


async def test_ocpp16_is_chosen_among_several(server: Server, station: Provisioned) -> None:
    async with connect(server, station.code, station.secret,
                       subprotocols=["ocpp2.0.1", "ocpp1.6", "ocpp1.5"]) as ws:
        assert ws.subprotocol == "ocpp1.6"
        with trio.fail_after(5):
            answer = await boot(ws)
        assert answer[0] == 3


# ------------------------------------------------------------------ connection lifetime

async def test_second_connection_replaces_the_first(server: Server, station: Provisioned,
                                                   db_url: str) -> None:
    async with connect(server, station.code, station.secret) as first:
        with trio.fail_after(5):
            await boot(first)
        async with connect(server, station.code, station.secret) as second:
            with trio.fail_after(5), pytest.raises(ConnectionClosed):
                await first.get_message()
            with trio.fail_after(5):
                answer = await call(second, "Heartbeat", {})
            assert answer[0] == 3 and "currentTime" in answer[2]
            # the old connection's close (its DB write follows the close handshake)
            # must not mark the station offline under its successor
            await trio.sleep(1)
            with trio.fail_after(5):
                answer = await call(second, "Heartbeat", {})
            assert answer[0] == 3
            assert runtime_state(db_url, station.id) == ("online", "accepted")
    assert server.sessions.metrics.connections_replaced == 1


async def test_clean_disconnect_marks_offline(server: Server, station: Provisioned,
                                              db_url: str) -> None:
    async with connect(server, station.code, station.secret) as ws:
        with trio.fail_after(5):
            await boot(ws)
        assert runtime_state(db_url, station.id)[0] == "online"
    with trio.fail_after(3):
        while runtime_state(db_url, station.id)[0] != "offline":  # noqa: ASYNC110 - DB poll
            await trio.sleep(0.05)
    events = [r[0] for r in sql(db_url, "SELECT event_type FROM station_connection_events "
                                        "WHERE station_id = %s ORDER BY occurred_at",
                                station.id)]
    assert events == ["connected", "disconnected"]


async def test_accepted_state_is_needed_and_persists(server: Server, station: Provisioned,
                                                     db_url: str) -> None:
    async with connect(server, station.code, station.secret) as ws:
        with trio.fail_after(5):
            answer = await call(ws, "Heartbeat", {}, unique_id="hb-1")
        assert answer[:3] == [4, "hb-1", "SecurityError"] and answer[4] == {}
        assert sql(db_url, "SELECT count(*) FROM station_heartbeat_events") == [(0,)]
        with trio.fail_after(5):
            await boot(ws)
            answer = await call(ws, "Heartbeat", {}, unique_id="hb-2")
        assert answer[:2] == [3, "hb-2"]
    # a reconnecting charger does not boot again (OCPP-J 1.6 §5)
    async with connect(server, station.code, station.secret) as ws:
        with trio.fail_after(5):
            answer = await call(ws, "Heartbeat", {}, unique_id="hb-3")
        assert answer[:2] == [3, "hb-3"], answer
    assert sql(db_url, "SELECT count(*) FROM station_heartbeat_events") == [(2,)]


async def test_rotated_secret(server: Server, station: Provisioned, db_url: str) -> None:
    # a first successful login puts the old secret in the verifier's cache
    async with connect(server, station.code, station.secret) as ws:
        assert ws.subprotocol == "ocpp1.6"
    new = "Rotated" + uuid.uuid4().hex[:17]
    new_hash = bcrypt.hashpw(new.encode(), bcrypt.gensalt(5)).decode()
    sql(db_url, "UPDATE stations SET station_secret_hash = %s WHERE id = %s",
        new_hash, station.id)
    rejection = await refused(ocpp_url(server, station.code), [basic(station.code,
                                                                     station.secret)])
    assert rejection.status_code == 401
    async with connect(server, station.code, new) as ws:
        assert ws.subprotocol == "ocpp1.6"
        with trio.fail_after(5):
            await boot(ws)


async def test_hang_up_right_after_handshake_is_a_clean_disconnect(
        server: Server, station: Provisioned, db_url: str,
        caplog: pytest.LogCaptureFixture) -> None:
    """A charger that sends its close frame and hangs up while its 'connected' row is
    being committed (the server reads the connection once that row is stored)."""
    with psycopg.connect(db_url) as lock:
        # hold the runtime row so the server's station_connected write waits
        lock.execute("SELECT 1 FROM station_runtime_state WHERE station_id = %s FOR UPDATE",
                     (station.id,))
        with trio.move_on_after(0.3):  # close frame sent; no wait for the answer
            async with connect(server, station.code, station.secret):
                pass  # the charger closes at once
        lock.rollback()
    with trio.fail_after(3):
        while runtime_state(db_url, station.id)[0] != "offline":  # noqa: ASYNC110 - DB poll
            await trio.sleep(0.05)
    failures = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert failures == []
    reasons = sql(db_url, "SELECT reason FROM station_connection_events "
                          "WHERE event_type = 'disconnected'")
    assert len(reasons) == 1 and reasons[0][0].startswith("closed by peer"), reasons


async def test_stop_without_connections_does_not_wait_for_the_grace(
        db: Database, db_url: str) -> None:
    async with trio.open_nursery() as nursery:
        running: Server = await nursery.start(
            Server(server_settings(db_url, shutdown_grace=3), db).run)
        started = trio.current_time()
        running.stop()
    assert trio.current_time() - started < 1.5


async def test_cancelled_server_still_marks_offline(
        api: httpx.AsyncClient, db: Database, db_url: str, nursery: trio.Nursery) -> None:
    """Cancelling the server from outside (as a parent nursery does) must still
    leave the database true: its connected stations are marked offline."""
    station = await provision(api, "CP-7")
    scope = trio.CancelScope()
    stopped = trio.Event()

    async def run_server(task_status: trio.TaskStatus[Server]) -> None:
        with scope:
            await Server(server_settings(db_url), db).run(task_status=task_status)
        stopped.set()

    other: Server = await nursery.start(run_server)
    async with connect(other, station.code, station.secret) as ws:
        with trio.fail_after(5):
            await boot(ws)
        assert runtime_state(db_url, station.id)[0] == "online"
        scope.cancel()
        with trio.fail_after(5):
            await stopped.wait()
    assert runtime_state(db_url, station.id)[0] == "offline"


async def test_handshakes_waiting_at_once_share_one_login_lookup(
        api: httpx.AsyncClient, db: Database) -> None:
    """A reconnect storm's lookups go out in waves (listener.LoginLookup): every
    handshake gets its own station, any letter case, unknown codes get None."""
    known = [await provision(api, f"WAVE-{n}") for n in range(3)]
    lookup = LoginLookup(db)
    asked = [s.code.lower() for s in known] * 5 + ["NOPE-1", "NOPE-2"] * 5
    found: dict[int, Any] = {}
    before = db.pool_stats().get("requests_num", 0)

    async def find(number: int, code: str) -> None:
        found[number] = await lookup.find(code)

    async with trio.open_nursery() as nursery:
        for number, code in enumerate(asked):
            nursery.start_soon(find, number, code)
    queries = db.pool_stats().get("requests_num", 0) - before
    for number, code in enumerate(asked):
        row = found[number]
        if code.startswith("NOPE"):
            assert row is None
        else:
            assert row is not None and row["station_code"].lower() == code
    assert 1 <= queries <= 2, queries  # the first handshake's query, then one for the rest
