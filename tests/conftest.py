"""Test fixtures: one real PostgreSQL for the session, a fresh database per test.

The cluster is started by the tests themselves (autimit_csms.localpg), never one
someone left running. The schema is applied once to a template database; each
test gets a copy (CREATE DATABASE ... TEMPLATE), which takes milliseconds.
TimescaleDB is loaded when this PostgreSQL has it; AUTIMIT_REQUIRE_TIMESCALE=1
(set by .ci/run) turns its absence into a failure instead of a skip.
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
import trio

from autimit_csms.db import Database
from autimit_csms.db.schema import apply
from autimit_csms.localpg import LocalPostgres, find_bindir, free_port, has_timescaledb
from autimit_csms.server import Server
from autimit_csms.settings import Settings

ADMIN_TOKEN = "test-admin-token-0123456789"
_counter = itertools.count()


@pytest.fixture(scope="session")
def pg() -> Iterator[LocalPostgres]:
    bindir = find_bindir()
    # Not under pytest's tmp_path: as root the cluster runs as another user, who
    # cannot enter /tmp/pytest-of-root.
    base = Path(tempfile.mkdtemp(prefix="autimit-test-pg-"))
    base.chmod(0o755)
    cluster = LocalPostgres(base / "data", free_port(), bindir,
                            preload_timescaledb=has_timescaledb(bindir))
    cluster.start(fsync=False)
    try:
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(base, ignore_errors=True)


def admin(pg: LocalPostgres, sql: str) -> None:
    with psycopg.connect(pg.url(), autocommit=True) as conn:
        conn.execute(sql)


@pytest.fixture(scope="session")
def template_db(pg: LocalPostgres) -> str:
    admin(pg, "CREATE DATABASE autimit_template")
    apply(pg.url("autimit_template"))
    # No connections to the template, not even TimescaleDB's background launcher
    # (CREATE DATABASE ... TEMPLATE fails while anyone is connected to it).
    admin(pg, "ALTER DATABASE autimit_template WITH IS_TEMPLATE true ALLOW_CONNECTIONS false")
    return "autimit_template"


def new_database(pg: LocalPostgres, template: str = "template0") -> str:
    name = f"t_{os.getpid()}_{next(_counter)}"
    with psycopg.connect(pg.url(), autocommit=True) as conn:
        conn.execute(
            psycopg.sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                psycopg.sql.Identifier(name), psycopg.sql.Identifier(template)))
    return name


@pytest.fixture
def db_url(pg: LocalPostgres, template_db: str) -> str:
    """A fresh database with the schema applied."""
    return pg.url(new_database(pg, template_db))


@pytest.fixture
def empty_db_url(pg: LocalPostgres) -> str:
    return pg.url(new_database(pg))


@pytest.fixture
def timescale_url(pg: LocalPostgres) -> str:
    if not pg.preload_timescaledb:
        if os.environ.get("AUTIMIT_REQUIRE_TIMESCALE") == "1":
            pytest.fail("TimescaleDB is required here (AUTIMIT_REQUIRE_TIMESCALE=1) but "
                        f"{pg.bindir} has no timescaledb extension; "
                        "see scripts/install-timescaledb.sh")
        pytest.skip("TimescaleDB not installed for this PostgreSQL")
    return pg.url(new_database(pg))


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    database = Database(db_url, min_size=1, max_size=4)
    await database.open()
    yield database
    await database.close()


def server_settings(db_url: str, **overrides: object) -> Settings:
    values: dict[str, object] = dict(
        database_url=db_url, admin_token=ADMIN_TOKEN, api_listen="127.0.0.1:0",
        ocpp_listen="127.0.0.1:0", public_ocpp_url="ws://127.0.0.1:9/ocpp/1.6",
        shutdown_grace=0.5)
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
async def server(db: Database, db_url: str) -> AsyncIterator[Server]:
    """A real server on ephemeral ports; stopped gracefully, and waited for, after the test."""
    async with trio.open_nursery() as nursery:
        running: Server = await nursery.start(Server(server_settings(db_url), db).run)
        yield running
        running.stop()


@pytest.fixture
async def api(server: Server) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client on the real socket, authenticated as the admin."""
    async with httpx.AsyncClient(base_url=server.api_urls[0],
                                 headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as client:
        yield client


ROOT = Path(__file__).resolve().parents[1]
