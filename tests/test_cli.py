"""The console script as an operator runs it: real processes, real sockets."""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import AbstractAsyncContextManager, contextmanager

import httpx
import psycopg
from trio_websocket import WebSocketConnection, open_websocket_url

from autimit_csms.localpg import LocalPostgres, free_port

from .conftest import new_database

CLI = [sys.executable, "-m", "autimit_csms"]


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


TOKEN = "logs-token-0123456789"


@contextmanager
def serve(pg: LocalPostgres, *args: str, env: dict[str, str] | None = None,
          url: str | None = None, pids: list[int] | None = None
          ) -> Iterator[tuple[str, int, list[str]]]:
    """`autimit-csms ARGS` on a fresh database (or `url`): (API base URL, OCPP port,
    output lines once it stopped -- filled in after the block); `pids` gets its pid."""
    url = url or pg.url(new_database(pg))
    subprocess.run([*CLI, "db", "apply", "--database-url", url], check=True,
                   capture_output=True)
    api_port, ocpp_port = free_port(), free_port()
    environment = {**os.environ, "AUTIMIT_DATABASE_URL": url, "AUTIMIT_ADMIN_TOKEN": TOKEN,
                   "AUTIMIT_API_LISTEN": f"127.0.0.1:{api_port}",
                   "AUTIMIT_OCPP_LISTEN": f"127.0.0.1:{ocpp_port}", **(env or {})}
    proc = subprocess.Popen([*CLI, *args], env=environment, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    if pids is not None:
        pids.append(proc.pid)
    base = f"http://127.0.0.1:{api_port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(base + "/api/stations", timeout=1)
                break
            except httpx.TransportError:
                assert proc.poll() is None and time.monotonic() < deadline
                time.sleep(0.1)
        yield base, ocpp_port, lines
    finally:
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=30)
        lines.extend(output.splitlines())
    assert proc.returncode == 0, output


def open_charger(port: int, code: str, secret: str
                 ) -> AbstractAsyncContextManager[WebSocketConnection]:
    """An OCPP-J 1.6 connection to a served process, authenticated as `code`."""
    auth = base64.b64encode(f"{code}:{secret}".encode()).decode()
    return open_websocket_url(f"ws://127.0.0.1:{port}/ocpp/1.6/{code}",
                              subprotocols=["ocpp1.6"],
                              extra_headers=[("Authorization", f"Basic {auth}")])


def test_db_apply_twice_then_serve_and_stop(pg: LocalPostgres) -> None:
    url = pg.url(new_database(pg))
    for _ in range(2):
        result = run_cli("db", "apply", "--database-url", url)
        assert result.returncode == 0, result.stderr
        assert "schema applied" in result.stdout
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM pg_tables WHERE tablename = 'stations'"
                            ).fetchone() == (1,)

    with serve(pg, "serve", url=url, env={"AUTIMIT_ADMIN_TOKEN": "cli-token"}) as (
            base, _, lines):
        headers = {"Authorization": "Bearer cli-token"}
        account = httpx.post(base + "/api/accounts", headers=headers,
                             json={"name": "Ops", "document": "X"}).json()
        location = httpx.post(base + "/api/locations", headers=headers, json={
            "accountId": account["id"], "name": "L", "address": "A", "latitude": 0,
            "longitude": 0}).json()
        r = httpx.post(base + "/api/stations", headers=headers, json={
            "accountId": account["id"], "locationId": location["id"], "stationCode": "CLI-1",
            "connectors": 1})
        assert r.status_code == 201
        assert r.json()["station"]["ocppConnectionUrl"] == (
            "wss://ws.autimit.com/ocpp/1.6/CLI-1")  # the contract's default public URL
        assert httpx.get(base + "/api/stations").status_code == 401
    output = "\n".join(lines)
    assert "shutting down" in output and "stopped" in output
    assert "cli-token" not in output


def test_serve_refuses_without_required_settings(pg: LocalPostgres) -> None:
    env = {"AUTIMIT_DATABASE_URL": "", "AUTIMIT_ADMIN_TOKEN": ""}
    result = run_cli("serve", env=env)
    assert result.returncode == 2
    assert "database URL is required" in result.stderr
    url = pg.url(new_database(pg))
    result = run_cli("serve", "--database-url", url, env={"AUTIMIT_ADMIN_TOKEN": ""})
    assert result.returncode == 2
    assert "admin token is required" in result.stderr


def test_db_apply_reports_unreachable_database_without_password() -> None:
    result = run_cli("db", "apply", "--database-url",
                     f"postgresql://u:hunter2secret@127.0.0.1:{free_port()}/x")
    assert result.returncode == 2
    assert "hunter2secret" not in result.stderr + result.stdout
    assert "autimit-csms:" in result.stderr
