"""Prometheus metrics of a real server: what chargers and the API did shows up in the
exposition, in the format Prometheus parses, and only for the admin."""

from __future__ import annotations

import json
from typing import Any

import httpx
import trio
from prometheus_client.parser import text_string_to_metric_families

from autimit_csms import metrics
from autimit_csms.server import Server

from .conftest import ADMIN_TOKEN
from .stations.conftest import basic, boot, call, connect, provision


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """{(sample name, sorted labels): value} of an exposition text."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(text: str, name: str, **labels: str) -> float:
    return samples(text).get((name, tuple(sorted(labels.items()))), 0.0)


async def scrape(api: httpx.AsyncClient) -> str:
    r = await api.get("/metrics")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain"), r.headers
    return r.text


async def answer_commands(ws: Any) -> None:
    """A charger that accepts every command it is sent."""
    while True:
        frame = json.loads(await ws.get_message())
        if frame[0] == 2:
            await ws.send_message(json.dumps([3, frame[1], {"status": "Accepted"}]))


async def test_exposition_counts_what_happened(server: Server, api: httpx.AsyncClient) -> None:
    station = await provision(api)
    before = await scrape(api)
    async with connect(server, station.code, station.secret) as ws:
        await boot(ws)
        for _ in range(3):
            assert (await call(ws, "Heartbeat", {}))[0] == 3
        bad = await call(ws, "StatusNotification", {"connectorId": 1, "status": "Available"})
        assert bad[:3] == [4, bad[1], "OccurenceConstraintViolation"]
        during = await scrape(api)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(answer_commands, ws)
            r = await api.post(f"/api/stations/{station.id}/commands/Reset",
                               json={"type": "Soft"})
            assert r.status_code == 200, r.text
            nursery.cancel_scope.cancel()
        after = await scrape(api)
    # a refused handshake: wrong secret
    async with httpx.AsyncClient() as client:
        r = await client.get(f"http://127.0.0.1:{server.ocpp_port}/ocpp/1.6/{station.code}",
                             headers=dict([basic(station.code, "Wrong" * 5)]) | {
                                 "Connection": "Upgrade", "Upgrade": "websocket",
                                 "Sec-WebSocket-Version": "13",
                                 "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="})
        assert r.status_code == 401
    last = await scrape(api)

    assert value(before, "autimit_ocpp_stations_connected") == 0
    assert value(during, "autimit_ocpp_stations_connected") == 1
    assert value(during, "autimit_ocpp_handshakes_total", result="accepted") == 1
    assert value(during, "autimit_ocpp_messages_total", action="Heartbeat",
                 outcome="result") == 3
    assert value(during, "autimit_ocpp_messages_total", action="BootNotification",
                 outcome="result") == 1
    assert value(during, "autimit_ocpp_call_errors_sent_total",
                 code="OccurenceConstraintViolation") == 1
    assert value(after, "autimit_commands_total", action="Reset", status="answered") == 1
    assert value(after, "autimit_command_seconds_count") == 1
    # every write went through group commit: batches were counted and timed
    assert value(during, "autimit_db_write_batch_size_count") >= 5
    assert value(during, "autimit_db_write_commit_seconds_bucket", le="+Inf") == value(
        during, "autimit_db_write_batch_size_count")
    assert value(during, "autimit_db_write_batch_size_sum") >= 5
    assert value(last, "autimit_ocpp_handshakes_total", result="wrong_secret") == 1
    assert value(last, "autimit_auth_bcrypt_checks_total") >= 2  # the right one, the wrong one
    assert value(last, "autimit_db_pool_connections", state="max") == 4  # the test pool
    assert ("autimit_db_writer_queue_depth", ()) in samples(last)
    assert ("autimit_db_pool_requests_waiting", ()) in samples(last)


async def test_metrics_are_for_the_admin_only(server: Server, api: httpx.AsyncClient) -> None:
    async with httpx.AsyncClient(base_url=server.api_urls[0]) as anonymous:
        r = await anonymous.get("/metrics")
        assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
    account = await provision(api, "CP-M")
    r = await api.post(f"/api/accounts/{account.account_id}/api-keys", json={})
    key = r.json()["apiKey"]
    r = await api.get("/metrics", headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    assert "autimit_ocpp_stations_connected" in (await scrape(api))


def test_render_is_the_process_exposition() -> None:
    body, content_type = metrics.render()
    assert content_type.startswith("text/plain; version=")
    names = {family.name for family in text_string_to_metric_families(body.decode())}
    assert {"autimit_ocpp_stations_connected", "autimit_ocpp_handshakes",
            "autimit_ocpp_messages", "autimit_db_write_batch_size",
            "autimit_command_seconds", "autimit_db_pool_connections"} <= names
    assert ADMIN_TOKEN not in body.decode()
