"""`autimit-csms simulate` end to end: simulated stations against the real server on
ephemeral ports, the real PostgreSQL, and the REST API to see what the CSMS recorded.

Charger time runs fast (`speed`), so a half-hour session takes a few seconds.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import random
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
import trustme

from autimit_csms.db import Database
from autimit_csms.ocpp16 import CallInProgress, CallReceived, Rejected, SchemaRegistry
from autimit_csms.server import Server
from autimit_csms.simulator import (
    ChargePoint,
    ChargerRpc,
    ChargerSettings,
    Options,
    Simulation,
    StationSpec,
)
from autimit_csms.simulator.charger import StartCharging

from .conftest import ADMIN_TOKEN, ROOT, server_settings
from .stations.conftest import ocpp_url, provision, rows

FAST = Options(charge_duration=600, meter_interval=60, speed=300, pause=0, call_timeout=5,
               progress_every=0, seed=1)
MEASURANDS = {"Energy.Active.Import.Register", "Power.Active.Import", "Voltage",
              "Current.Import", "SoC"}


async def station(api: httpx.AsyncClient, server: Server, code: str,
                  tag: str = "SIM-TAG") -> StationSpec:
    """A provisioned station whose account knows `tag`."""
    p = await provision(api, code)
    r = await api.post("/api/id-tags", json={"accountId": p.account_id, "idTag": tag})
    assert r.status_code == 201, r.text
    return StationSpec(p.code, p.secret, ocpp_url(server, p.code), p.id, p.account_id)


async def eventually(check: Callable[[], Awaitable[Any]], seconds: float = 5) -> Any:
    """The first truthy result of `check`, polled until `seconds` pass."""
    with trio.fail_after(seconds):
        while not (result := await check()):  # noqa: ASYNC110 - polling the API
            await trio.sleep(0.05)
    return result


async def test_a_full_session_appears_in_the_api(api: httpx.AsyncClient, server: Server,
                                                  db_url: str) -> None:
    spec = await station(api, server, "SIM-SESSION")
    simulation = Simulation(FAST, [(spec, "session", "SIM-TAG")])
    with trio.fail_after(20):
        await simulation.run()

    tally = simulation.runs[0].tally
    assert tally.failures == [] and tally.sessions == 1 and tally.call_errors == 0
    assert tally.answered == tally.calls_sent

    r = await api.get("/api/sessions", params={"stationId": spec.station_id})
    [session] = r.json()["items"]
    assert session["status"] == "completed" and session["closedBy"] == "charger"
    assert session["stopReason"] == "Local" and session["idTag"] == "SIM-TAG"
    # 600 charger seconds at up to 11 kW: about 1.8 kWh, never more than the maximum
    assert 1000 < session["energyWh"] <= 11_000 * 600 / 3600
    assert session["energyWh"] == tally.energy_wh
    assert session["energyWh"] == session["meterStopWh"] - session["meterStartWh"]

    r = await api.get(f"/api/sessions/{session['id']}/meter-values", params={"limit": 10000})
    samples = r.json()["items"]
    assert {s["measurand"] for s in samples} == MEASURANDS
    periodic = [s for s in samples if s["context"] == "Sample.Periodic"]
    energy = [s for s in periodic if s["measurand"] == "Energy.Active.Import.Register"]
    assert len(energy) >= 8  # every 60 of the 600 charger seconds, minus the last
    times = [s["sampledAt"] for s in energy]
    assert times == sorted(set(times)), "each sample has its own, later timestamp"
    values = [s["value"] for s in energy]
    assert values == sorted(values) and values[0] < values[-1] <= session["meterStopWh"]
    assert all(s["unit"] == "Wh" for s in energy)
    units = {s["measurand"]: s["unit"] for s in periodic}
    assert units == {"Energy.Active.Import.Register": "Wh", "Power.Active.Import": "W",
                     "Voltage": "V", "Current.Import": "A", "SoC": "Percent"}
    voltages = [s["value"] for s in periodic if s["measurand"] == "Voltage"]
    assert all(220 < v < 240 for v in voltages)
    soc = [s["value"] for s in periodic if s["measurand"] == "SoC"]
    assert soc == sorted(soc) and 0 < soc[0] < soc[-1] <= 100
    [end] = [s for s in samples if s["context"] == "Transaction.End"]
    assert end["value"] == session["meterStopWh"]

    r = await api.get(f"/api/stations/{spec.station_id}")
    assert r.json()["runtime"]["registrationStatus"] == "accepted"
    [(connected, disconnected)] = rows(db_url, """
        SELECT count(*) FILTER (WHERE event_type = 'connected'),
               count(*) FILTER (WHERE event_type = 'disconnected')
        FROM station_connection_events WHERE station_id = %s""", spec.station_id)
    assert (connected, disconnected) == (1, 1)


async def test_offline_replay_keeps_the_old_timestamps(api: httpx.AsyncClient, server: Server,
                                                        db_url: str) -> None:
    spec = await station(api, server, "SIM-OFFLINE")
    options = dataclasses.replace(FAST, charge_duration=900, meter_interval=30, speed=300,
                                  reconnect_delay=300)
    simulation = Simulation(options, [(spec, "offline", "SIM-TAG")])
    with trio.fail_after(20):
        await simulation.run()

    tally = simulation.runs[0].tally
    assert tally.failures == [] and tally.sessions == 1
    # a third of the session online, the rest queued: MeterValues and the StopTransaction
    assert tally.queued >= 15 and tally.replayed == tally.queued

    [first, second] = rows(db_url, """
        SELECT occurred_at FROM station_connection_events
        WHERE station_id = %s AND event_type = 'connected' ORDER BY occurred_at""",
                           spec.station_id)
    [(lost,)] = rows(db_url, """
        SELECT occurred_at FROM station_connection_events
        WHERE station_id = %s AND event_type = 'disconnected' ORDER BY occurred_at LIMIT 1""",
                     spec.station_id)
    reconnected = second[0]
    [(stopped_at, energy_wh, status)] = rows(db_url, """
        SELECT stopped_at, energy_wh, status FROM charging_sessions WHERE station_id = %s""",
                                             spec.station_id)
    assert status == "completed" and energy_wh == tally.energy_wh
    assert lost < stopped_at < reconnected, "stopped while offline, recorded with its own time"

    late = rows(db_url, """
        SELECT sampled_at, recorded_at, value FROM meter_values
        WHERE station_id = %s AND measurand = 'Energy.Active.Import.Register'
          AND context = 'Sample.Periodic' AND sampled_at > %s
        ORDER BY sampled_at""", spec.station_id, lost)
    assert len(late) >= 15
    for sampled_at, recorded_at, _ in late:
        assert sampled_at < reconnected <= recorded_at, "sent late, stored with its old time"
    assert [v for _, _, v in late] == sorted(v for _, _, v in late)
    on_time = rows(db_url, """
        SELECT count(*) FROM meter_values
        WHERE station_id = %s AND sampled_at < %s AND recorded_at < %s""",
                   spec.station_id, lost, lost)
    assert on_time[0][0] > 0, "the first third was sent while online"
    assert first[0] < lost


async def test_commands_from_the_api_get_a_chargers_answers(api: httpx.AsyncClient,
                                                            server: Server) -> None:
    spec = await station(api, server, "SIM-COMMANDS", tag="REMOTE-TAG")
    # no periodic heartbeat: the one seen is the triggered one
    options = dataclasses.replace(FAST, duration=3600, speed=60, meter_interval=60,
                                  charge_duration=36_000, heartbeat_interval=100_000)
    simulation = Simulation(options, [(spec, "boot", "REMOTE-TAG")])
    command = f"/api/stations/{spec.station_id}/commands"

    async def answer(action: str, payload: dict[str, Any], status: int = 200) -> Any:
        r = await api.post(f"{command}/{action}", json=payload)
        assert r.status_code == status, r.text
        return r.json()

    async def active() -> list[dict[str, Any]]:
        r = await api.get(f"/api/stations/{spec.station_id}/active-sessions")
        return r.json()["items"]  # type: ignore[no-any-return]

    async with trio.open_nursery() as nursery:
        nursery.start_soon(simulation.run)
        async def online() -> bool:
            return bool(simulation.runs) and simulation.runs[0].online_now

        await eventually(online)

        started = await answer("RemoteStartTransaction", {"connectorId": 1,
                                                          "idTag": "REMOTE-TAG"})
        assert started["status"] == "answered"
        assert started["response"] == {"status": "Accepted"}
        [session] = await eventually(active)
        assert session["connectorNumber"] == 1 and session["idTag"] == "REMOTE-TAG"
        busy = await answer("RemoteStartTransaction", {"connectorId": 1, "idTag": "REMOTE-TAG"})
        assert busy["response"] == {"status": "Rejected"}, "connector 1 is charging"

        config = await answer("GetConfiguration", {"key": ["HeartbeatInterval", "Nope"]})
        assert config["response"]["unknownKey"] == ["Nope"]
        [key] = config["response"]["configurationKey"]
        assert key["key"] == "HeartbeatInterval" and key["readonly"] is False
        changed = await answer("ChangeConfiguration",
                               {"key": "MeterValueSampleInterval", "value": "30"})
        assert changed["response"] == {"status": "Accepted"}
        assert simulation.runs[0].cp.meter_interval == 30
        readonly = await answer("ChangeConfiguration",
                                {"key": "NumberOfConnectors", "value": "9"})
        assert readonly["response"] == {"status": "Rejected"}

        r = await api.get(f"/api/stations/{spec.station_id}")
        before = r.json()["runtime"]["lastHeartbeatAt"]
        triggered = await answer("TriggerMessage", {"requestedMessage": "Heartbeat"})
        assert triggered["response"] == {"status": "Accepted"}

        async def heartbeat_seen() -> bool:
            r = await api.get(f"/api/stations/{spec.station_id}")
            return r.json()["runtime"]["lastHeartbeatAt"] != before  # type: ignore[no-any-return]

        await eventually(heartbeat_seen)

        unavailable = await answer("ChangeAvailability",
                                   {"connectorId": 2, "type": "Inoperative"})
        assert unavailable["response"] == {"status": "Accepted"}
        scheduled = await answer("ChangeAvailability", {"connectorId": 1, "type": "Inoperative"})
        assert scheduled["response"] == {"status": "Scheduled"}, "connector 1 is charging"

        async def connector_2_unavailable() -> bool:
            r = await api.get("/api/availability", params={"stationId": spec.station_id})
            [item] = r.json()["items"]
            return {c["connectorNumber"]: c["ocppStatus"]  # type: ignore[no-any-return]
                    for c in item["connectors"]}.get(2) == "Unavailable"

        await eventually(connector_2_unavailable)

        unsupported = await answer("ReserveNow", {
            "connectorId": 2, "expiryDate": "2030-01-01T00:00:00Z", "idTag": "REMOTE-TAG"},
            status=502)
        assert unsupported["error"]["code"] == "NotSupported"

        stopped = await answer("RemoteStopTransaction",
                               {"transactionId": session["transactionId"]})
        assert stopped["response"] == {"status": "Accepted"}
        await eventually(lambda: _not(active))
        r = await api.get(f"/api/sessions/{session['id']}")
        assert r.json()["stopReason"] == "Remote" and r.json()["energyWh"] > 0

        r = await api.get(f"/api/stations/{spec.station_id}")
        booted_at = r.json()["runtime"]["bootedAt"]
        reset = await answer("Reset", {"type": "Soft"})
        assert reset["response"] == {"status": "Accepted"}

        async def rebooted() -> bool:
            r = await api.get(f"/api/stations/{spec.station_id}")
            runtime = r.json()["runtime"]
            return (simulation.runs[0].online_now  # type: ignore[no-any-return]
                    and runtime["status"] == "online" and runtime["bootedAt"] != booted_at)

        await eventually(rebooted)
        assert (await answer("ClearCache", {}))["response"] == {"status": "Accepted"}
        simulation.stop()

    tally = simulation.runs[0].tally
    assert tally.failures == [] and tally.sessions == 1 and tally.commands >= 11


async def _not(check: Callable[[], Awaitable[Any]]) -> bool:
    return not await check()


async def test_the_cli_provisions_runs_and_prints_a_summary(server: Server,
                                                            api: httpx.AsyncClient) -> None:
    env = {**os.environ, "AUTIMIT_ADMIN_TOKEN": ADMIN_TOKEN}
    result = await trio.run_process(
        [sys.executable, "-m", "autimit_csms", "simulate", "--api-url", server.api_urls[0],
         "--ocpp-url", f"ws://127.0.0.1:{server.ocpp_port}/ocpp/1.6",
         "--scenario", "session", "--scenario", "boot", "--stations", "2",
         "--charge-duration", "300", "--duration", "300", "--speed", "300",
         "--progress-every", "0.5"],
        cwd=ROOT, env=env, capture_stdout=True, capture_stderr=True, check=False)
    out, err = result.stdout.decode(), result.stderr.decode()
    assert result.returncode == 0, out + err
    lines = out.splitlines()
    header = next(line for line in lines if line.startswith("scenario"))
    assert header.split()[:4] == ["scenario", "stations", "connected", "CALLs"]
    table = {line.split()[0]: line.split() for line in lines
             if line.split() and line.split()[0] in ("session", "boot", "total")}
    assert table["session"][1:3] == ["2", "2"] and table["session"][8] == "2"
    assert float(table["session"][9]) > 0
    assert table["boot"][8] == "0" and table["total"][1] == "4"
    assert "result: OK" in out
    assert "progress:" in err
    assert ADMIN_TOKEN not in out + err, "the token is never printed"

    r = await api.get("/api/sessions", params={"limit": 500})
    finished = [s for s in r.json()["items"] if s["stationCode"].startswith("SIM-")]
    assert len(finished) == 2 and all(s["status"] == "completed" for s in finished)
    assert sum(s["energyWh"] for s in finished) > 0


async def test_wrong_secret_fails_the_run(server: Server, api: httpx.AsyncClient,
                                          tmp_path: Any) -> None:
    p = await provision(api, "SIM-WRONG")
    stations = tmp_path / "stations.csv"
    stations.write_text(f"# code,secret\n{p.code},{p.secret}x\n")
    result = await trio.run_process(
        [sys.executable, "-m", "autimit_csms", "simulate", "--stations-file", str(stations),
         "--ocpp-url", f"ws://127.0.0.1:{server.ocpp_port}/ocpp/1.6", "--scenario", "boot",
         "--duration", "1", "--progress-every", "0"],
        cwd=ROOT, env={k: v for k, v in os.environ.items() if k != "AUTIMIT_ADMIN_TOKEN"},
        capture_stdout=True, capture_stderr=True, check=False)
    out = result.stdout.decode()
    assert result.returncode == 1, out
    assert "HTTP 401" in out and "result: FAILED (1 of 1 stations had failures)" in out
    assert p.secret not in out + result.stderr.decode()


def test_the_charger_answers_commands_like_a_charger() -> None:
    """The sans-I/O part, with literal frames: what the simulated charger answers."""
    rpc = ChargerRpc(SchemaRegistry(), id_factory=lambda: "m1")
    cp = ChargePoint(ChargerSettings(connectors=1), random.Random(1))
    at = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)

    def answer(frame: str) -> str:
        event = rpc.receive(frame)
        if isinstance(event, Rejected):
            assert event.reply is not None
            return event.reply
        assert isinstance(event, CallReceived)
        reply = cp.handle(event.call, at)
        if reply.error is not None:
            return rpc.answer_error(event.call, *reply.error)
        assert reply.payload is not None
        return rpc.answer(event.call, reply.payload)

    assert answer('[2,"a","Frobnicate",{}]') == '[4,"a","NotImplemented","unknown action",{}]'
    assert answer('[2,"b","BootNotification",{}]').startswith('[4,"b","NotSupported"')
    assert answer('[2,"c","ReserveNow",{"connectorId":1,"expiryDate":"2030-01-01T00:00:00Z",'
                  '"idTag":"T","reservationId":1}]').startswith('[4,"c","NotSupported"')
    assert answer('[2,"d","Reset",{"type":"Warm"}]').startswith(
        '[4,"d","PropertyConstraintViolation"')

    event = rpc.receive('[2,"e","RemoteStartTransaction",{"idTag":"T"}]')
    assert isinstance(event, CallReceived)
    reply = cp.handle(event.call, at)
    assert reply.payload == {"status": "Accepted"} and reply.then == (StartCharging(1, "T"),)
    assert answer('[2,"f","RemoteStartTransaction",{"idTag":"T"}]') == \
        '[3,"f",{"status":"Rejected"}]', "its only connector is taken"
    assert answer('[2,"g","ChangeConfiguration",{"key":"AuthorizationKey","value":"x"}]') == \
        '[3,"g",{"status":"Rejected"}]'
    assert answer('[2,"h","ChangeConfiguration",{"key":"HeartbeatInterval","value":"-5"}]') == \
        '[3,"h",{"status":"Rejected"}]'
    assert answer('[2,"i","ChangeConfiguration",{"key":"Nope","value":"1"}]') == \
        '[3,"i",{"status":"NotSupported"}]'

    unique_id, text = rpc.send_call("Heartbeat", {})
    assert (unique_id, text) == ("m1", '[2,"m1","Heartbeat",{}]')
    with pytest.raises(CallInProgress):
        rpc.send_call("Heartbeat", {})


async def test_wss_and_https_with_a_private_ca(db: Database, db_url: str, nursery: trio.Nursery,
                                               tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert_file, key_file, ca_file = (tmp_path / name for name in ("c.pem", "k.pem", "ca.pem"))
    cert.private_key_and_cert_chain_pem.write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    ca.cert_pem.write_to_path(str(ca_file))
    server: Server = await nursery.start(Server(server_settings(
        db_url, tls_cert=str(cert_file), tls_key=str(key_file)), db).run)
    result = await trio.run_process(
        [sys.executable, "-m", "autimit_csms", "simulate", "--api-url", server.api_urls[0],
         "--ocpp-url", f"wss://127.0.0.1:{server.ocpp_port}/ocpp/1.6", "--ca-file", str(ca_file),
         "--charge-duration", "120", "--speed", "300", "--progress-every", "0"],
        cwd=ROOT, env={**os.environ, "AUTIMIT_ADMIN_TOKEN": ADMIN_TOKEN},
        capture_stdout=True, capture_stderr=True, check=False)
    out = result.stdout.decode()
    assert result.returncode == 0, out + result.stderr.decode()
    assert server.api_urls[0].startswith("https://") and "result: OK" in out
    [(count,)] = rows(db_url, "SELECT count(*) FROM charging_sessions WHERE status = 'completed'")
    assert count == 1
    server.stop()
