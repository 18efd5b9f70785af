"""Shared pieces of the reliability drills (bench/drills.py).

Owns: the private PostgreSQL of a drill (fsync on, restartable), the `autimit-csms serve`
subprocess (start, SIGKILL, SIGTERM, its log file, its CPU time), provisioning through
the REST API, the raw OCPP-J charger helpers (trio-websocket) and the printed tables.
It knows nothing of a particular scenario.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import trio
from trio_websocket import WebSocketConnection, open_websocket_url

ROOT = Path(__file__).resolve().parents[1]
SERVE = ROOT / ".venv" / "bin" / "autimit-csms"
ADMIN_TOKEN = "drill-admin-token-0123456789"

from autimit_csms.db.schema import apply  # noqa: E402
from autimit_csms.localpg import LocalPostgres, find_bindir, free_port  # noqa: E402


def cpus() -> list[int]:
    return sorted(os.sched_getaffinity(0))


class Cluster:
    """A private PostgreSQL with fsync on (as in production) and one database."""

    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="autimit-drill-"))
        self.base.chmod(0o755)  # as root, PostgreSQL runs as another user
        self.pg = LocalPostgres(self.base / "pg", free_port(), find_bindir())
        self.pg.start(fsync=True)
        with psycopg.connect(self.pg.url(), autocommit=True) as conn:
            conn.execute("CREATE DATABASE drill")
        self.url = self.pg.url("drill")
        apply(self.url)

    def restart(self) -> None:
        """`pg_ctl restart -m fast`: every connection is cut, the server comes back."""
        self.pg._pg("pg_ctl", "-D", str(self.pg.datadir), "-l",
                    str(self.pg.datadir / "server.log"), "-m", "fast", "-w", "-t", "60",
                    "restart")
        # pg_ctl ran from the (pinned) drill process: give the new postmaster every core.
        pid = int((self.pg.datadir / "postmaster.pid").read_text().split()[0])
        os.sched_setaffinity(pid, set(range(os.cpu_count() or 1)))

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.url, autocommit=True, connect_timeout=10) as conn:
            return conn.execute(sql, params).fetchall()

    def stop(self) -> None:
        self.pg.stop()
        shutil.rmtree(self.base, ignore_errors=True)


@dataclass
class Serve:
    """`autimit-csms serve` as a subprocess, on fixed ports so a successor can take over."""

    db_url: str
    env: dict[str, str] = field(default_factory=dict)
    pin: str | None = None  # taskset CPU list for the server
    ocpp_port: int = field(default_factory=free_port)
    api_port: int = field(default_factory=free_port)
    log_path: Path = field(default_factory=lambda: Path(tempfile.mkstemp(
        prefix="autimit-drill-serve-", suffix=".log")[1]))
    proc: subprocess.Popen[bytes] | None = None
    log_level: str = "INFO"

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def start(self) -> float:
        """Start and wait until both listeners answer; returns the wall time it took."""
        env = {**os.environ, "AUTIMIT_DATABASE_URL": self.db_url,
               "AUTIMIT_ADMIN_TOKEN": ADMIN_TOKEN,
               "AUTIMIT_OCPP_LISTEN": f"127.0.0.1:{self.ocpp_port}",
               "AUTIMIT_API_LISTEN": f"127.0.0.1:{self.api_port}",
               "AUTIMIT_PUBLIC_OCPP_URL": f"ws://127.0.0.1:{self.ocpp_port}/ocpp/1.6",
               **self.env}
        command = [str(SERVE), "--log-level", self.log_level, "serve"]
        if self.pin:
            command = ["taskset", "-c", self.pin, *command]
        t0 = time.perf_counter()
        with self.log_path.open("ab") as log:
            # Popen returns at once; the server runs on its own.
            self.proc = subprocess.Popen(  # noqa: ASYNC220
                command, env=env, stdout=log, stderr=log, start_new_session=True)
        with trio.fail_after(60):
            async with httpx.AsyncClient(base_url=self.api, headers=admin_headers()) as http:
                while True:
                    if self.proc.poll() is not None:
                        raise RuntimeError(f"serve exited with {self.proc.returncode}; "
                                           f"see {self.log_path}")
                    try:
                        if (await http.get("/api/locations?limit=1")).status_code == 200:
                            stream = await trio.open_tcp_stream("127.0.0.1", self.ocpp_port)
                            await stream.aclose()
                            return time.perf_counter() - t0
                    except (httpx.TransportError, OSError):
                        pass
                    await trio.sleep(0.1)

    def kill9(self) -> None:
        os.kill(self.pid, signal.SIGKILL)
        assert self.proc is not None
        self.proc.wait()

    def sigterm(self) -> None:
        os.kill(self.pid, signal.SIGTERM)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def cpu_seconds(self) -> float:
        """utime + stime of the server process (all its threads), from /proc/<pid>/stat."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def log_lines(self) -> int:
        with self.log_path.open("rb") as log:
            return sum(1 for _ in log)


def admin_headers(token: str = ADMIN_TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class Station:
    id: str
    code: str
    secret: str
    account_id: str
    location_id: str


async def new_account(http: httpx.AsyncClient, name: str = "Drill Co") -> tuple[str, str]:
    """(account id, location id) of a new account with one location."""
    r = await http.post("/api/accounts", json={"name": name, "document": "DRILL"})
    r.raise_for_status()
    account = r.json()["id"]
    r = await http.post("/api/locations", json={
        "accountId": account, "name": "Drill site", "address": "Lab 1", "latitude": 1,
        "longitude": 2})
    r.raise_for_status()
    return account, r.json()["id"]


async def provision(http: httpx.AsyncClient, count: int, prefix: str = "DRILL",
                    account: tuple[str, str] | None = None) -> list[Station]:
    account_id, location_id = account or await new_account(http)
    stations = []
    for n in range(count):
        code = f"{prefix}-{n:04d}"
        r = await http.post("/api/stations", json={
            "accountId": account_id, "locationId": location_id, "stationCode": code,
            "connectors": 2})
        if r.status_code != 201:
            raise RuntimeError(f"provisioning {code}: {r.status_code} {r.text}")
        body = r.json()
        stations.append(Station(body["station"]["id"], code,
                                body["provisioning"]["stationSecret"], account_id,
                                location_id))
    return stations


def basic(user: str, password: str) -> tuple[str, str]:
    return ("Authorization",
            "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode())


def open_charger(port: int, station: Station, timeout: float = 10):  # type: ignore[no-untyped-def]
    return open_websocket_url(f"ws://127.0.0.1:{port}/ocpp/1.6/{station.code}",
                              subprotocols=["ocpp1.6"], connect_timeout=timeout,
                              disconnect_timeout=2,
                              extra_headers=[basic(station.code, station.secret)])


async def call(ws: WebSocketConnection, action: str, payload: dict[str, Any]) -> list[Any]:
    unique_id = uuid.uuid4().hex
    await ws.send_message(json.dumps([2, unique_id, action, payload]))
    while True:
        answer = json.loads(await ws.get_message())
        if len(answer) > 1 and answer[1] == unique_id:
            return answer  # type: ignore[no-any-return]


async def boot(ws: WebSocketConnection) -> None:
    answer = await call(ws, "BootNotification", {"chargePointVendor": "Drill",
                                                 "chargePointModel": "D1"})
    if answer[0] != 3:
        raise RuntimeError(f"BootNotification answered {answer}")


BASE_TIME = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(days=1)


def meter_values(seq: int) -> dict[str, Any]:
    """Message `seq` of a station: 5 meterValue entries, each its own timestamp, so it is
    exactly 5 rows, and a replay of the same seq is the same content (stored once)."""
    entries = []
    for k in range(5):
        at = BASE_TIME + dt.timedelta(seconds=seq * 5 + k)
        entries.append({"timestamp": at.isoformat().replace("+00:00", "Z"), "sampledValue": [
            {"value": str(1000 + seq * 5 + k), "measurand": "Energy.Active.Import.Register",
             "unit": "Wh"}]})
    return {"connectorId": 1, "meterValue": entries}


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def table(title: str, rows: list[tuple[str, Any]]) -> None:
    print(f"\n{title}")
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")


def machine() -> str:
    return (f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs, "
            f"load average {os.getloadavg()[0]:.2f}")
