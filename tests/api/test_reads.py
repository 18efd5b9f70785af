"""The read API over a real HTTP socket against a real database.

Stations are provisioned through the API; history rows with known timestamps
are then inserted with psycopg (what the charger path would have written), and
one test produces its data with a real charger flow over the OCPP socket.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import httpx
import psycopg
import pytest
import trio

from autimit_csms.server import Server

from ..stations.conftest import boot, call, connect
from .test_provisioning import make_location, make_station, tenant

DAY = dt.datetime(2026, 1, 5, tzinfo=dt.UTC)  # a Monday, in the past


def at(hour: int, minute: int = 0, second: int = 0, day: dt.datetime = DAY) -> dt.datetime:
    return day.replace(hour=hour, minute=minute, second=second)


def iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def execute(db_url: str, sql: str, rows: list[tuple[Any, ...]] | tuple[Any, ...]) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn, conn.cursor() as cur:
        if isinstance(rows, list):
            cur.executemany(sql, rows)
        else:
            cur.execute(sql, rows)


async def station_of(api: httpx.AsyncClient, account: dict[str, Any], location: dict[str, Any],
                     code: str, connectors: int = 2) -> str:
    r = await make_station(api, account["id"], location["id"], code=code, connectors=connectors)
    assert r.status_code == 201, r.text
    return r.json()["station"]["id"]


def add_session(db_url: str, station_id: str, *, connector: int = 1, id_tag: str = "TAG-1",
                started: dt.datetime, stopped: dt.datetime | None = None,
                meter_start: int = 1000, meter_stop: int | None = None,
                reason: str | None = None) -> tuple[str, int]:
    with psycopg.connect(db_url, autocommit=True) as conn:
        row = conn.execute(
            "INSERT INTO charging_sessions (station_id, connector_number, id_tag, id_tag_status,"
            " status, meter_start_wh, meter_stop_wh, energy_wh, started_at, stopped_at,"
            " stop_reason, billing_status)"
            " VALUES (%s, %s, %s, 'Accepted', %s, %s, %s, %s, %s, %s, %s, %s)"
            " RETURNING id, transaction_id",
            (station_id, connector, id_tag, "completed" if stopped else "active", meter_start,
             meter_stop, None if meter_stop is None else meter_stop - meter_start, started,
             stopped, reason, "pending" if stopped else "open")).fetchone()
    assert row is not None
    return str(row[0]), row[1]


def add_meter_values(db_url: str, station_id: str, transaction_id: int | None,
                     samples: list[tuple[dt.datetime, str, float]], *, connector: int = 1,
                     unit: str = "Wh") -> None:
    execute(db_url,
            "INSERT INTO meter_values (station_id, connector_number, transaction_id, sampled_at,"
            " measurand, phase, location, context, unit, value, format)"
            " VALUES (%s, %s, %s, %s, %s, NULL, 'Outlet', 'Sample.Periodic', %s, %s, 'Raw')",
            [(station_id, connector, transaction_id, when, measurand, unit, value)
             for when, measurand, value in samples])


def add_connection_events(db_url: str, station_id: str,
                          events: list[tuple[dt.datetime, str]]) -> None:
    execute(db_url, "INSERT INTO station_connection_events (station_id, occurred_at, event_type)"
            " VALUES (%s, %s, %s)", [(station_id, when, kind) for when, kind in events])


def add_status_events(db_url: str, station_id: str,
                      events: list[tuple[dt.datetime, int, str, str, str]]) -> None:
    execute(db_url,
            "INSERT INTO connector_status_events (station_id, connector_number, occurred_at,"
            " status, ocpp_status, ocpp_error_code) VALUES (%s, %s, %s, %s, %s, %s)",
            [(station_id, connector, when, status, ocpp_status, error)
             for when, connector, status, ocpp_status, error in events])


ENERGY = "Energy.Active.Import.Register"
POWER = "Power.Active.Import"


async def test_session_energy_and_samples_per_bucket(
        api: httpx.AsyncClient, server: Server, db_url: str) -> None:
    account, location, client = await tenant(api, server, "Acme")
    async with client:
        station_id = await station_of(api, account, location, "CP-E")
        session_id, tx = add_session(db_url, station_id, started=at(10), stopped=at(10, 10),
                                     meter_stop=4600, reason="EVDisconnected")
        # 10 energy samples at 10:00..10:09, 400 Wh apart, and 3 power samples
        add_meter_values(db_url, station_id, tx, [
            (at(10, m), ENERGY, 1000 + 400 * m) for m in range(10)])
        add_meter_values(db_url, station_id, tx, [
            (at(10, 1), POWER, 7000), (at(10, 2), POWER, 7400), (at(10, 6), POWER, 3000)],
            unit="W")
        # a signed twin of the 10:09 reading: billing evidence, not a chart number
        execute(db_url,
                "INSERT INTO meter_values (station_id, connector_number, transaction_id,"
                " sampled_at, measurand, location, context, unit, value, format, raw_value)"
                " VALUES (%s, 1, %s, %s, %s, 'Outlet', 'Sample.Periodic', 'Wh', NULL,"
                " 'SignedData', 'c2lnbmVk')", (station_id, tx, at(10, 9), ENERGY))
        # another transaction on the same station must not leak into this session
        _, other_tx = add_session(db_url, station_id, connector=2, started=at(9),
                                  stopped=at(11), meter_stop=2000)
        add_meter_values(db_url, station_id, other_tx, [(at(10, 3), ENERGY, 99)], connector=2)

        r = await client.get(f"/api/sessions/{session_id}")
        assert r.status_code == 200, r.text
        s = r.json()
        assert s["transactionId"] == tx and s["stationId"] == station_id
        assert s["stationCode"] == "CP-E" and s["connectorNumber"] == 1
        assert s["energyWh"] == 3600 and s["energySource"] == "meterStop"
        assert s["durationSeconds"] == 600
        assert (s["meterStartWh"], s["meterStopWh"]) == (1000, 4600)
        assert s["startedAt"] == "2026-01-05T10:00:00Z"
        assert s["stoppedAt"] == "2026-01-05T10:10:00Z"
        assert s["stopReason"] == "EVDisconnected" and s["billingStatus"] == "pending"
        assert s["status"] == "completed" and s["idTag"] == "TAG-1"

        r = await client.get(f"/api/sessions/{session_id}/meter-values",
                             params={"bucket": 300, "measurand": ENERGY})
        assert r.status_code == 200, r.text
        buckets = r.json()["items"]
        assert [(b["bucket"], b["count"]) for b in buckets] == [
            ("2026-01-05T10:00:00Z", 5), ("2026-01-05T10:05:00Z", 5)]
        assert (buckets[0]["min"], buckets[0]["max"], buckets[0]["last"]) == (1000, 2600, 2600)
        assert buckets[0]["avg"] == 1800
        assert (buckets[1]["min"], buckets[1]["max"], buckets[1]["last"]) == (3000, 4600, 4600)
        assert all(b["measurand"] == ENERGY and b["unit"] == "Wh" for b in buckets)

        # both measurands: one row per (bucket, measurand)
        r = await client.get(f"/api/sessions/{session_id}/meter-values",
                             params={"bucket": "300"})
        rows = [(b["bucket"][11:16], b["measurand"], b["count"]) for b in r.json()["items"]]
        assert rows == [("10:00", ENERGY, 5), ("10:00", POWER, 2),
                        ("10:05", ENERGY, 5), ("10:05", POWER, 1)]

        # raw: the session's 14 samples, oldest first, none of the other transaction
        r = await client.get(f"/api/sessions/{session_id}/meter-values")
        raw = r.json()["items"]
        assert len(raw) == 14 and r.json()["bucketSeconds"] is None
        assert [x["rawValue"] for x in raw if x["format"] == "SignedData"] == ["c2lnbmVk"]
        assert all(x["transactionId"] == tx for x in raw)
        assert [x["sampledAt"] for x in raw] == sorted(x["sampledAt"] for x in raw)

        # the station view sees both transactions; connector narrows it
        r = await client.get(f"/api/stations/{station_id}/meter-values", params={
            "from": iso(at(10)), "to": iso(at(11)), "bucket": 3600, "measurand": ENERGY})
        assert [(b["connectorNumber"], b["count"]) for b in r.json()["items"]] == [(1, 10),
                                                                                   (2, 1)]
        r = await client.get(f"/api/stations/{station_id}/meter-values", params={
            "from": iso(at(10)), "to": iso(at(11)), "bucket": 3600, "measurand": ENERGY,
            "connector": 2})
        assert [(b["connectorNumber"], b["count"], b["last"]) for b in r.json()["items"]] == [
            (2, 1, 99)]
        # the range is half-open: 10:05 itself belongs to the next range
        r = await client.get(f"/api/stations/{station_id}/meter-values", params={
            "from": iso(at(10)), "to": iso(at(10, 5)), "measurand": ENERGY, "connector": 1})
        assert len(r.json()["items"]) == 5


async def test_bucket_edges_match_time_bucket_origin(
        api: httpx.AsyncClient, db_url: str) -> None:
    """Buckets align to TimescaleDB's default origin, Monday 2000-01-03 00:00 UTC.

    7000 s does not divide the two days between 2000-01-01 and 2000-01-03, so
    this fails if the origin is anything else.
    """
    account, location = await _account_and_location(api)
    station_id = await station_of(api, account, location, "CP-B")
    moment = at(10, 17, 31)
    add_meter_values(db_url, station_id, None, [(moment, POWER, 1)], unit="W")
    origin = dt.datetime(2000, 1, 3, tzinfo=dt.UTC)
    width = 7000
    expected = origin + dt.timedelta(
        seconds=(moment - origin).total_seconds() // width * width)
    r = await api.get(f"/api/stations/{station_id}/meter-values", params={
        "from": iso(at(0)), "to": iso(at(23)), "bucket": width})
    assert [b["bucket"] for b in r.json()["items"]] == [iso(expected)]
    assert expected != dt.datetime(2000, 1, 1, tzinfo=dt.UTC) + dt.timedelta(
        seconds=(moment - dt.datetime(2000, 1, 1, tzinfo=dt.UTC)).total_seconds()
        // width * width)


async def _account_and_location(api: httpx.AsyncClient) -> tuple[dict[str, Any], dict[str, Any]]:
    r = await api.post("/api/accounts", json={"name": "Solo", "document": "D"})
    account = r.json()
    return account, await make_location(api, account["id"])


async def test_raw_meter_values_are_paged_and_capped(api: httpx.AsyncClient,
                                                     db_url: str) -> None:
    account, location = await _account_and_location(api)
    station_id = await station_of(api, account, location, "CP-P")
    add_meter_values(db_url, station_id, None, [(at(10, m), ENERGY, m) for m in range(10)])
    path = f"/api/stations/{station_id}/meter-values"
    window = {"from": iso(at(9)), "to": iso(at(11))}
    seen: list[float] = []
    offset: int | None = 0
    pages = 0
    while offset is not None:
        body = (await api.get(path, params={**window, "limit": 4, "offset": offset})).json()
        seen += [x["value"] for x in body["items"]]
        offset = body["nextOffset"]
        pages += 1
    assert seen == list(range(10)) and pages == 3
    assert (await api.get(path, params={**window, "limit": 10_000})).status_code == 200
    r = await api.get(path, params={**window, "limit": 10_001})
    assert r.status_code == 422 and r.json()["error"]["field"] == "limit"
    # outside the default window (the last 24 hours) nothing is returned
    assert (await api.get(path)).json()["items"] == []


async def test_uptime_matches_connect_disconnect_history(
        api: httpx.AsyncClient, db_url: str) -> None:
    account, location = await _account_and_location(api)
    station_id = await station_of(api, account, location, "CP-U")
    add_connection_events(db_url, station_id, [
        (at(8), "connected"), (at(8, 30), "timed_out"),      # before the range
        (at(10), "connected"), (at(10, 30), "disconnected"),
        (at(11), "connected"),                                  # still connected
    ])
    path = f"/api/stations/{station_id}/uptime"

    async def uptime(start: dt.datetime, end: dt.datetime) -> dict[str, Any]:
        r = await api.get(path, params={"from": iso(start), "to": iso(end)})
        assert r.status_code == 200, r.text
        return r.json()

    u = await uptime(at(10), at(12))
    assert u["onlineSeconds"] == 5400 and u["observedSeconds"] == 7200
    assert u["offlineSeconds"] == 1800 and u["ratio"] == 0.75
    assert u["intervals"] == [
        {"from": iso(at(10)), "to": iso(at(10, 30))}, {"from": iso(at(11)), "to": iso(at(12))}]
    # the state at `from` is the last event before it: connected since 10:00
    u = await uptime(at(10, 15), at(11, 30))
    assert u["onlineSeconds"] == 15 * 60 + 30 * 60
    # ... and offline since 08:30 (timed_out ends an interval like disconnected)
    u = await uptime(at(9), at(10))
    assert u["onlineSeconds"] == 0 and u["ratio"] == 0 and u["intervals"] == []
    u = await uptime(at(7), at(9))
    assert u["onlineSeconds"] == 1800
    # still connected: the last interval runs to `to`, days later
    u = await uptime(at(0, day=DAY + dt.timedelta(days=3)), at(1, day=DAY + dt.timedelta(days=3)))
    assert u["onlineSeconds"] == 3600 and u["ratio"] == 1


async def test_uptime_reconnect_and_future_end(api: httpx.AsyncClient, db_url: str) -> None:
    account, location = await _account_and_location(api)
    station_id = await station_of(api, account, location, "CP-R")
    # a replacing connection: connected twice, one disconnect; and at one
    # instant a disconnect and a reconnect (zero offline time)
    add_connection_events(db_url, station_id, [
        (at(10), "connected"), (at(10, 20), "connected"), (at(10, 40), "disconnected"),
        (at(11), "connected"), (at(11, 10), "disconnected"), (at(11, 10), "connected"),
        (at(11, 20), "disconnected")])
    r = await api.get(f"/api/stations/{station_id}/uptime",
                      params={"from": iso(at(9)), "to": iso(at(12))})
    assert r.json()["onlineSeconds"] == 40 * 60 + 20 * 60
    # the state at 11:15 comes from the reconnect at 11:10, not its twin disconnect
    r = await api.get(f"/api/stations/{station_id}/uptime",
                      params={"from": iso(at(11, 15)), "to": iso(at(11, 30))})
    assert r.json()["onlineSeconds"] == 300

    other = await station_of(api, account, location, "CP-NOW")
    now = dt.datetime.now(dt.UTC)
    add_connection_events(db_url, other, [(now - dt.timedelta(hours=2), "connected")])
    r = await api.get(f"/api/stations/{other}/uptime", params={
        "from": iso(now - dt.timedelta(hours=1)), "to": iso(now + dt.timedelta(hours=1))})
    u = r.json()
    # the future half is not observed: online until now, not until `to`
    assert 3590 <= u["onlineSeconds"] <= 3700
    assert u["onlineSeconds"] == u["observedSeconds"] and u["ratio"] == 1
    # default range: the last 24 hours
    u = (await api.get(f"/api/stations/{other}/uptime")).json()
    assert 7190 <= u["onlineSeconds"] <= 7300 and 86_390 <= u["observedSeconds"] <= 86_410


async def test_status_history_and_faults(api: httpx.AsyncClient, db_url: str) -> None:
    account, location = await _account_and_location(api)
    station_id = await station_of(api, account, location, "CP-F")
    add_connection_events(db_url, station_id, [(at(10), "connected"),
                                               (at(12), "disconnected")])
    add_status_events(db_url, station_id, [
        (at(10, 1), 0, "available", "Available", "NoError"),
        (at(10, 2), 1, "available", "Available", "NoError"),
        (at(10, 3), 1, "faulted", "Faulted", "GroundFailure"),
        (at(10, 4), 2, "charging", "Charging", "HighTemperature"),
        (at(10, 5), 0, "faulted", "Faulted", "NoError"),
        (at(10, 6), 1, "available", "Available", "NoError"),
        (at(13), 1, "faulted", "Faulted", "OverVoltage"),          # after the range
    ])
    window = {"from": iso(at(9)), "to": iso(at(12, 30))}
    r = await api.get(f"/api/stations/{station_id}/status-history", params=window)
    assert r.status_code == 200, r.text
    history = [(x["occurredAt"][11:16], x["kind"], x["event"]) for x in r.json()["items"]]
    assert history == [("10:00", "connection", "connected"), ("10:01", "status", "available"),
                       ("10:05", "status", "faulted"), ("12:00", "connection", "disconnected")]

    r = await api.get(f"/api/stations/{station_id}/faults", params=window)
    faults = [(x["occurredAt"][11:16], x["connectorNumber"], x["errorCode"])
              for x in r.json()["items"]]
    assert faults == [("10:05", 0, "NoError"), ("10:04", 2, "HighTemperature"),
                      ("10:03", 1, "GroundFailure")]
    r = await api.get(f"/api/stations/{station_id}/faults",
                      params={**window, "limit": 2, "offset": 2})
    assert [x["errorCode"] for x in r.json()["items"]] == ["GroundFailure"]
    assert r.json()["nextOffset"] is None
    r = await api.get(f"/api/stations/{station_id}/faults", params={**window, "connector": 1})
    assert [x["errorCode"] for x in r.json()["items"]] == ["GroundFailure"]


async def test_availability_from_current_state(api: httpx.AsyncClient, server: Server,
                                               db_url: str) -> None:
    account, location, client = await tenant(api, server, "Acme")
    async with client:
        online = await station_of(api, account, location, "CP-ON", connectors=3)
        offline = await station_of(api, account, location, "CP-OFF", connectors=1)
        execute(db_url, "UPDATE station_runtime_state SET status = 'online' "
                "WHERE station_id = %s", (online,))
        execute(db_url, "UPDATE connector_runtime_state SET status = %s "
                "WHERE station_id = %s AND connector_number = %s",
                [("available", online, 1), ("charging", online, 2),
                 ("available", offline, 1)])
        # history says otherwise: availability must not read it
        add_status_events(db_url, online, [(at(10), 1, "faulted", "Faulted", "OtherError")])

        r = await client.get("/api/availability", params={"locationId": location["id"]})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["counts"] == {"stations": 2, "stationsOnline": 1, "connectors": 4,
                                  "availableNow": 1,
                                  "byStatus": {"available": 2, "charging": 1, "unknown": 1}}
        by_code = {s["stationCode"]: s for s in body["items"]}
        assert by_code["CP-ON"]["online"] is True and by_code["CP-OFF"]["online"] is False
        assert [(c["connectorNumber"], c["status"], c["availableNow"])
                for c in by_code["CP-ON"]["connectors"]] == [
            (1, "available", True), (2, "charging", False), (3, "unknown", False)]
        assert by_code["CP-OFF"]["connectors"][0]["availableNow"] is False

        r = await client.get("/api/availability", params={"stationId": offline})
        assert r.json()["counts"]["connectors"] == 1
        assert [s["stationId"] for s in r.json()["items"]] == [offline]
        # paging keeps the counts of the whole scope
        r = await client.get("/api/availability",
                             params={"locationId": location["id"], "limit": 1, "offset": 1})
        assert [s["stationCode"] for s in r.json()["items"]] == ["CP-ON"]
        assert r.json()["counts"]["stations"] == 2
        r = await client.get("/api/availability",
                             params={"locationId": location["id"], "offset": 5})
        assert r.json()["items"] == [] and r.json()["counts"]["connectors"] == 4

        r = await client.get("/api/availability")
        assert r.status_code == 422 and r.json()["error"]["field"] == "locationId"
        r = await client.get("/api/availability", params={"locationId": str(uuid.uuid4())})
        assert r.status_code == 404

        other_account, other_location, other = await tenant(api, server, "Other")
        async with other:
            for params in ({"locationId": location["id"]}, {"stationId": online}):
                r = await other.get("/api/availability", params=params)
                assert r.status_code == 403, params


async def test_sessions_listing_filters_paging_and_scope(
        api: httpx.AsyncClient, server: Server, db_url: str) -> None:
    account_a, location_a, client_a = await tenant(api, server, "A")
    account_b, location_b, client_b = await tenant(api, server, "B")
    async with client_a, client_b:
        station_a = await station_of(api, account_a, location_a, "CP-A")
        station_b = await station_of(api, account_b, location_b, "CP-B")
        done, _ = add_session(db_url, station_a, id_tag="Card-1", started=at(8),
                              stopped=at(9), meter_stop=1500, reason="Local")
        active, active_tx = add_session(db_url, station_a, connector=2, id_tag="CARD-2",
                                        started=at(10))
        add_meter_values(db_url, station_a, active_tx, [(at(10, 5), ENERGY, 1250),
                                                        (at(10, 9), ENERGY, 1700)],
                         connector=2)
        other_b, _ = add_session(db_url, station_b, id_tag="card-1", started=at(11))

        async def ids(client: httpx.AsyncClient, **params: Any) -> list[str]:
            r = await client.get("/api/sessions", params=params)
            assert r.status_code == 200, r.text
            return [s["id"] for s in r.json()["items"]]

        assert await ids(api) == [other_b, active, done]          # newest first, admin: all
        assert await ids(api, accountId=account_b["id"]) == [other_b]
        assert await ids(client_a) == [active, done]               # own account only
        assert await ids(client_b) == [other_b]
        assert await ids(client_a, active="true") == [active]
        assert await ids(client_a, active="false") == [done]
        assert await ids(client_a, idTag="card-1") == [done]       # any letter case
        assert await ids(client_a, stationId=station_a, **{"from": iso(at(9)),
                                                          "to": iso(at(10, 30))}) == [active]
        assert await ids(client_a, limit=1, offset=1) == [done]

        live = (await client_a.get(f"/api/sessions/{active}")).json()
        assert live["status"] == "active" and live["stoppedAt"] is None
        assert live["durationSeconds"] is None and live["meterStopWh"] is None
        assert live["energyWh"] == 700 and live["energySource"] == "meterValues"

        r = await client_a.get(f"/api/stations/{station_a}/active-sessions")
        assert [s["id"] for s in r.json()["items"]] == [active]
        assert r.json()["items"][0]["transactionId"] == active_tx

        # across accounts: 403, unknown: 404
        for path in (f"/api/sessions/{other_b}", f"/api/sessions/{other_b}/meter-values",
                     f"/api/stations/{station_b}/active-sessions",
                     f"/api/stations/{station_b}/meter-values",
                     f"/api/stations/{station_b}/uptime",
                     f"/api/stations/{station_b}/status-history",
                     f"/api/stations/{station_b}/faults",
                     f"/api/sessions?stationId={station_b}",
                     f"/api/sessions?accountId={account_b['id']}"):
            r = await client_a.get(path)
            assert r.status_code == 403, path
            assert r.json()["error"]["code"] == "forbidden"
        unknown = uuid.uuid4()
        for path in (f"/api/sessions/{unknown}", f"/api/sessions/{unknown}/meter-values",
                     f"/api/stations/{unknown}/active-sessions",
                     f"/api/stations/{unknown}/meter-values", f"/api/stations/{unknown}/uptime",
                     f"/api/stations/{unknown}/status-history",
                     f"/api/stations/{unknown}/faults"):
            r = await api.get(path)
            assert r.status_code == 404, path
        r = await api.get("/api/sessions/not-a-uuid")
        assert r.status_code == 422 and r.json()["error"]["field"] == "id"


@pytest.mark.parametrize(("params", "field"), [
    ({"from": "2026-01-05T10:00:00"}, "from"),                       # no time zone
    ({"from": "2026-01-05"}, "from"),
    ({"to": "yesterday"}, "to"),
    ({"from": "2026-01-05T10:00:00Z", "to": "2026-01-05T10:00:00Z"}, "to"),
    ({"from": "2026-01-05T11:00:00Z", "to": "2026-01-05T10:00:00Z"}, "to"),
    ({"from": "2025-01-01T00:00:00Z", "to": "2026-01-05T00:00:00Z"}, "from"),  # > 366 days
    ({"from": "2099-01-01T00:00:00Z"}, "from"),                     # after the default `to`
    ({"bucket": "0"}, "bucket"),
    ({"bucket": "86401"}, "bucket"),
    ({"bucket": "1.5"}, "bucket"),
    ({"measurand": "Power Active"}, "measurand"),
    ({"connector": "-1"}, "connector"),
    ({"limit": "0"}, "limit"),
])
async def test_invalid_query_parameters_are_422(api: httpx.AsyncClient, params: dict[str, str],
                                                field: str) -> None:
    account, location = await _account_and_location(api)
    station_id = await station_of(api, account, location, "CP-V")
    r = await api.get(f"/api/stations/{station_id}/meter-values", params=params)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"] == field


async def test_range_edge_cases(api: httpx.AsyncClient) -> None:
    account, location = await _account_and_location(api)
    station_id = await station_of(api, account, location, "CP-X")
    path = f"/api/stations/{station_id}/uptime"
    # exactly 366 days is allowed; an offset '+' left unencoded (a space) is read as '+'
    ok = await api.get(path, params={"from": "2025-01-05T00:00:00+00:00",
                                     "to": "2026-01-06T00:00:00+00:00"})
    assert ok.status_code == 200, ok.text
    assert ok.json()["observedSeconds"] == 366 * 86400
    r = await api.get(path + "?from=2026-01-05T10:00:00 01:00&to=2026-01-05T12:00:00Z")
    assert r.status_code == 200, r.text
    assert r.json()["from"] == "2026-01-05T09:00:00Z"
    r = await api.get("/api/sessions", params={"active": "yes"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "active"
    r = await api.get("/api/sessions", params={"from": "2026-01-05T10:00:00"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "from"


async def test_real_charger_session_through_read_api(
        api: httpx.AsyncClient, server: Server, db_url: str) -> None:
    """A charger over the OCPP socket: start, 10 meter values, stop; then read it back."""
    account, location, client = await tenant(api, server, "Fleet")
    async with client:
        r = await make_station(api, account["id"], location["id"], code="CP-REAL")
        station_id = r.json()["station"]["id"]
        secret = r.json()["provisioning"]["stationSecret"]
        r = await api.post("/api/id-tags", json={"accountId": account["id"], "idTag": "RFID-9"})
        assert r.status_code == 201, r.text
        # a past, 5-minute aligned start, so bucket=300 splits the samples 5 and 5
        start = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)).replace(
            minute=0, second=0, microsecond=0)
        async with connect(server, "CP-REAL", secret) as ws:
            await boot(ws)
            answer = await call(ws, "StartTransaction", {
                "connectorId": 1, "idTag": "RFID-9", "meterStart": 20_000,
                "timestamp": iso(start)})
            assert answer[0] == 3 and answer[2]["idTagInfo"]["status"] == "Accepted", answer
            tx = answer[2]["transactionId"]
            answer = await call(ws, "MeterValues", {
                "connectorId": 1, "transactionId": tx, "meterValue": [
                    {"timestamp": iso(start + dt.timedelta(minutes=m)), "sampledValue": [
                        {"value": f"{20 + m * 0.5:.1f}", "unit": "kWh",
                         "measurand": ENERGY},
                        {"value": "11000", "measurand": POWER, "unit": "W"}]}
                    for m in range(10)]})
            assert answer == [3, answer[1], {}]

            r = await client.get(f"/api/stations/{station_id}/active-sessions")
            [live] = r.json()["items"]
            assert live["transactionId"] == tx and live["energyWh"] == 4500  # 24.5 kWh - 20

            answer = await call(ws, "StopTransaction", {
                "transactionId": tx, "meterStop": 25_300,
                "timestamp": iso(start + dt.timedelta(minutes=10))})
            assert answer[0] == 3, answer

        r = await client.get("/api/sessions", params={"stationId": station_id})
        [session] = r.json()["items"]
        assert session["transactionId"] == tx and session["status"] == "completed"
        assert session["energyWh"] == 5300 and session["durationSeconds"] == 600
        assert session["stopReason"] == "Local" and session["idTag"] == "RFID-9"
        assert session["billingStatus"] == "pending"
        assert (await client.get(f"/api/stations/{station_id}/active-sessions")
                ).json()["items"] == []

        r = await client.get(f"/api/sessions/{session['id']}/meter-values",
                             params={"bucket": 300, "measurand": ENERGY})
        buckets = r.json()["items"]
        assert [(b["bucket"], b["count"], b["unit"]) for b in buckets] == [
            (iso(start), 5, "Wh"), (iso(start + dt.timedelta(minutes=5)), 5, "Wh")]
        assert buckets[0]["min"] == 20_000 and buckets[1]["last"] == 24_500
        r = await client.get(f"/api/sessions/{session['id']}/meter-values",
                             params={"measurand": f"{ENERGY},{POWER}", "limit": 100})
        assert len(r.json()["items"]) == 20

        # the connection shows in the station's history and uptime (the
        # disconnect is written after the socket closes: wait for it)
        events: list[str] = []
        with trio.fail_after(10):
            while events != ["connected", "disconnected"]:
                r = await client.get(f"/api/stations/{station_id}/status-history")
                events = [x["event"] for x in r.json()["items"] if x["kind"] == "connection"]
                assert events in (["connected"], ["connected", "disconnected"]), events
                await trio.sleep(0.05)
        u = (await client.get(f"/api/stations/{station_id}/uptime")).json()
        assert len(u["intervals"]) == 1 and 0 < u["onlineSeconds"] < 60

