"""`autimit-csms dev`: the embedded default, for trying the CSMS on one machine.

Owns: a private PostgreSQL cluster in a local folder (localpg), the schema, a
demo account/location/station, printing how to connect (the console's URL first),
and stopping the database cleanly when the server stops. Not for production.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
from pathlib import Path
from typing import Any

import psycopg
import trio

from . import settings as settings_mod
from .credentials import hash_secret, new_station_secret
from .db import SQL, Database
from .db.schema import apply, upgrade
from .localpg import LocalPostgres, find_bindir, free_port
from .settings import Settings, split_listen

DEMO_STATION_CODE = "DEMO-0001"


def run_dev(args: argparse.Namespace) -> None:
    data_dir = Path(args.data_dir).resolve()
    pg = LocalPostgres(data_dir / "postgres", free_port(), find_bindir())
    print(f"starting PostgreSQL ({pg.bindir}) in {pg.datadir} ...", flush=True)
    pg.start()
    try:
        with psycopg.connect(pg.url(), autocommit=True) as conn:
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = 'autimit'").fetchone():
                conn.execute("CREATE DATABASE autimit")
        url = pg.url("autimit")
        apply(url)
        upgraded = upgrade(url)  # a data folder made by an earlier version
        if any(line.startswith("applied") for line in upgraded):
            print("\n".join(upgraded), flush=True)
        public_url = args.public_ocpp_url
        if public_url == Settings.public_ocpp_url and not os.environ.get(
                settings_mod.env_name("public_ocpp_url")):
            host, port = split_listen(args.ocpp_listen)
            host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
            public_url = f"ws://{host}:{port}/ocpp/1.6"
        settings = settings_mod.from_args(
            args, database_url=url, admin_token=secrets.token_urlsafe(32),
            public_ocpp_url=public_url)
        trio.run(_serve_dev, settings, data_dir / "demo.json")
    except KeyboardInterrupt:
        pass
    finally:
        print("stopping PostgreSQL ...", flush=True)
        pg.stop()


async def _serve_dev(settings: Settings, demo_file: Path) -> None:
    from .server import serve

    assert settings.database_url
    db = Database(settings.database_url, max_size=2)
    await db.open()
    try:
        demo = await _demo_station(db, demo_file)
    finally:
        await db.close()
    api_host, api_port = split_listen(settings.api_listen)
    code = demo["station_code"]
    print(f"""
Autimit CSMS dev server
  console         http://{api_host}:{api_port}/console/   (sign in with the admin token)
  admin token     {settings.admin_token}
  REST API        http://{api_host}:{api_port}/api   (Authorization: Bearer <admin token>)
  OCPP endpoint   {settings.public_ocpp_url}/{code}   (subprotocol ocpp1.6, HTTP Basic Auth)
  station code    {code}
  station secret  {demo['secret']}   (shown once; a new one is issued at each `dev` start)
  API docs        http://{api_host}:{api_port}/api/docs
  try             curl -H 'Authorization: Bearer {settings.admin_token}' http://{api_host}:{api_port}/api/stations
  simulate        scripts/run cli simulate --speed 60 --api-url http://{api_host}:{api_port} \\
                      --admin-token {settings.admin_token}
Ctrl-C stops the server and its database.
""", flush=True)
    await serve(settings)


async def _demo_station(db: Database, demo_file: Path) -> dict[str, Any]:
    """Create the demo account/location/station once; later runs rotate its secret."""
    secret = new_station_secret()
    secret_hash = await hash_secret(secret)
    if demo_file.exists():
        station_id = json.loads(demo_file.read_text())["station_id"]
        row = await db.fetch_one(SQL.set_station_secret,
                                 {"id": station_id, "secret_hash": secret_hash})
        if row is not None:
            return {"station_code": row["station_code"], "secret": secret}
    account = await db.fetch_one(SQL.insert_account, {
        "name": "Autimit Demo", "document": "DEMO", "is_active": True})
    assert account is not None
    location = await db.fetch_one(SQL.insert_location, {
        "account_id": account["id"], "name": "Demo site", "address": "1 Demo Street",
        "latitude": 52.52, "longitude": 13.405, "is_public": True, "is_active": True})
    assert location is not None
    station = await db.fetch_one(SQL.create_station, {
        "account_id": account["id"], "location_id": location["id"],
        "station_code": DEMO_STATION_CODE, "secret_hash": secret_hash,
        "serial_number": "DEMO-SN-1", "manufacturer": "Autimit", "model": "Demo", "connectors": 2})
    assert station is not None
    demo_file.write_text(json.dumps({"station_id": str(station["id"])}))
    return {"station_code": station["station_code"], "secret": secret}
