"""Load benchmark: reconnect storm and committed MeterValues throughput.

Run by hand (never in the test suite):

    .venv/bin/python bench/ocpp_load.py --stations 1000 --messages 20

It starts a private PostgreSQL (fsync on, as in production), applies the
schema, provisions N stations (each its own secret and bcrypt hash), starts
`autimit-csms serve` as a separate process, then from this process:
  1. storm: all N stations connect at once (handshake + Basic Auth + bcrypt);
     time until every one is admitted, cold (empty verification cache);
  2. each station boots, then sends M MeterValues of 5 sampled values in turn,
     each awaited (every answer means committed); messages/s and the server's
     CPU seconds per message.
Load generator and server share this machine's cores: read the figures as a
lower bound of the server's capacity.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import bcrypt
import psycopg
import trio
from trio_websocket import open_websocket_url

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from autimit_csms.credentials import BCRYPT_ROUNDS, new_station_secret  # noqa: E402
from autimit_csms.db.schema import apply  # noqa: E402
from autimit_csms.localpg import LocalPostgres, find_bindir, free_port  # noqa: E402


def provision(url: str, count: int) -> list[tuple[str, str]]:
    stations = []
    with psycopg.connect(url, autocommit=True) as conn:
        account = conn.execute("INSERT INTO accounts (name, document) VALUES ('Bench', 'B') "
                               "RETURNING id").fetchone()[0]
        location = conn.execute(
            "INSERT INTO locations (account_id, name, address, latitude, longitude) "
            "VALUES (%s, 'Bench', 'Lab', 0, 0) RETURNING id", (account,)).fetchone()[0]
        rows = []
        for n in range(count):
            code, secret = f"BENCH-{n:05d}", new_station_secret()
            digest = bcrypt.hashpw(secret.encode(), bcrypt.gensalt(BCRYPT_ROUNDS)).decode()
            rows.append((uuid.uuid4(), account, location, code, digest))
            stations.append((code, secret))
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO stations (id, account_id, location_id, station_code, "
                "station_secret_hash, connectors) VALUES (%s, %s, %s, %s, %s, 2)", rows)
            cur.execute("INSERT INTO station_runtime_state (station_id) SELECT id FROM stations")
            cur.execute("INSERT INTO station_connectors (station_id, connector_number) "
                        "SELECT id, n FROM stations, generate_series(1, 2) n")
            cur.execute("INSERT INTO connector_runtime_state (station_id, connector_number) "
                        "SELECT station_id, connector_number FROM station_connectors")
    return stations


def meter_values(n: int) -> str:
    ts = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=n)).isoformat()
    sampled = [
        {"value": str(1000 + n), "measurand": "Energy.Active.Import.Register", "unit": "Wh"},
        {"value": "7200", "measurand": "Power.Active.Import", "unit": "W"},
        {"value": "230.1", "measurand": "Voltage", "unit": "V", "phase": "L1"},
        {"value": "31.2", "measurand": "Current.Import", "unit": "A", "phase": "L1"},
        {"value": "55", "measurand": "SoC", "unit": "Percent"},
    ]
    return json.dumps([2, uuid.uuid4().hex, "MeterValues", {
        "connectorId": 1, "meterValue": [{"timestamp": ts, "sampledValue": sampled}]}])


class Run:
    def __init__(self, port: int, stations: list[tuple[str, str]], messages: int) -> None:
        self.port, self.stations, self.messages = port, stations, messages
        self.admitted = 0
        self.all_admitted = trio.Event()
        self.start_load = trio.Event()
        self.done = 0
        self.errors = 0
        self.admit_times: list[float] = []

    async def station(self, code: str, secret: str, t0: float) -> None:
        auth = base64.b64encode(f"{code}:{secret}".encode()).decode()
        url = f"ws://127.0.0.1:{self.port}/ocpp/1.6/{code}"
        async with open_websocket_url(url, subprotocols=["ocpp1.6"], connect_timeout=120,
                                      extra_headers=[("Authorization", f"Basic {auth}")]) as ws:
            self.admit_times.append(time.perf_counter() - t0)
            await ws.send_message(json.dumps([2, "b", "BootNotification", {
                "chargePointVendor": "Bench", "chargePointModel": "B"}]))
            await ws.get_message()
            self.admitted += 1
            if self.admitted == len(self.stations):
                self.all_admitted.set()
            await self.start_load.wait()
            for n in range(self.messages):
                await ws.send_message(meter_values(n))
                answer = json.loads(await ws.get_message())
                if answer[0] != 3:
                    self.errors += 1
                self.done += 1


def server_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def server_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def drive(port: int, pid: int, stations: list[tuple[str, str]], messages: int) -> dict:
    run = Run(port, stations, messages)
    rss0 = server_rss_kib(pid)
    cpu0 = server_cpu(pid)
    t0 = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for code, secret in stations:
            nursery.start_soon(run.station, code, secret, t0)
        await run.all_admitted.wait()
        storm = time.perf_counter() - t0
        cpu_storm = server_cpu(pid) - cpu0
        await trio.sleep(1)
        rss_connected = server_rss_kib(pid) - rss0
        cpu1 = server_cpu(pid)
        t1 = time.perf_counter()
        run.start_load.set()
    elapsed = time.perf_counter() - t1
    cpu_load = server_cpu(pid) - cpu1
    total = len(stations) * messages
    return {
        "stations": len(stations), "storm_seconds_all_admitted": round(storm, 2),
        "storm_server_cpu_seconds": round(cpu_storm, 2),
        "server_rss_kib_per_booted_connection": round(rss_connected / len(stations), 1),
        "meter_values": total, "load_seconds": round(elapsed, 2),
        "meter_values_per_second": round(total / elapsed, 1),
        "server_cpu_us_per_meter_values": round(cpu_load / total * 1e6, 1),
        "errors": run.errors,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stations", type=int, default=500)
    parser.add_argument("--messages", type=int, default=20)
    args = parser.parse_args()

    base = Path(tempfile.mkdtemp(prefix="autimit-bench-"))
    base.chmod(0o755)
    pg = LocalPostgres(base / "pg", free_port(), find_bindir())
    pg.start()
    server = None
    try:
        with psycopg.connect(pg.url(), autocommit=True) as conn:
            conn.execute("CREATE DATABASE bench")
        url = pg.url("bench")
        apply(url)
        t = time.perf_counter()
        stations = provision(url, args.stations)
        print(f"provisioned {len(stations)} stations in {time.perf_counter() - t:.1f} s",
              file=sys.stderr)
        port = free_port()
        env = {**os.environ, "AUTIMIT_DATABASE_URL": url, "AUTIMIT_ADMIN_TOKEN": "bench",
               "AUTIMIT_OCPP_LISTEN": f"127.0.0.1:{port}",
               "AUTIMIT_API_LISTEN": f"127.0.0.1:{free_port()}",
               "AUTIMIT_WS_PING_INTERVAL": "0"}
        server = subprocess.Popen([sys.executable, "-m", "autimit_csms", "--log-level",
                                   "WARNING", "serve"], env=env)
        time.sleep(2.5)
        result = trio.run(drive, port, server.pid, stations, args.messages)
        with psycopg.connect(url) as conn:
            result["meter_values_rows"] = conn.execute(
                "SELECT count(*) FROM meter_values").fetchone()[0]
        print(json.dumps(result, indent=2))
    finally:
        if server is not None:
            server.terminate()
            server.wait(30)
        pg.stop()


if __name__ == "__main__":
    main()
