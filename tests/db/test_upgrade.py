"""`autimit-csms db upgrade`: every landed schema.sql, with data, to today's schema.

The landed files are frozen in tests/db/landed/ (see its README). Each test makes
a database as an old release left it, fills it like a running CSMS would, runs
the real console script, and compares the result with a database made by
today's schema.sql: same catalog, same rows, and the service's own statements
work on it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from autimit_csms.db import SQL, as_json
from autimit_csms.db.schema import MIGRATIONS, SCHEMA, TIMESCALE_POLICIES, apply, steps
from autimit_csms.localpg import LocalPostgres

from ..conftest import new_database

LANDED = Path(__file__).parent / "landed"
LANDED_SCHEMAS = ["dbaebcd", "c04a6c3", "21b26bf", "4fc294c", "da86881"]
FIRST_LANDED = "4fc294c"  # the "first landed schema.sql"
CLI = [sys.executable, "-m", "autimit_csms"]
NOW = datetime.now(UTC).replace(microsecond=0)

# The catalog of the public schema, as comparable rows: tables, columns (type,
# default, nullability, position), constraints, indexes, sequences, triggers.
CATALOG = {
    "relations": """
        SELECT c.relname, c.relkind::text FROM pg_class c
        WHERE c.relnamespace = 'public'::regnamespace
          AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'i')
        ORDER BY 1""",
    "columns": """
        SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
               pg_get_expr(d.adbin, d.adrelid), a.attidentity::text, a.attgenerated::text,
               row_number() OVER (PARTITION BY c.oid ORDER BY a.attnum)
        FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
        LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p', 'v')
          AND a.attnum > 0 AND NOT a.attisdropped
        ORDER BY 1, 8""",
    "constraints": """
        SELECT c.relname, k.conname, k.contype::text, pg_get_constraintdef(k.oid),
               k.convalidated, k.condeferrable
        FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid
        WHERE c.relnamespace = 'public'::regnamespace ORDER BY 1, 2""",
    "indexes": """
        SELECT tablename, indexname, indexdef FROM pg_indexes
        WHERE schemaname = 'public' ORDER BY 1, 2""",
    "sequences": """
        SELECT s.sequencename, s.data_type::text, s.start_value, s.min_value, s.max_value,
               s.increment_by, s.cycle,
               (SELECT d.refobjid::regclass::text || '.' || a.attname FROM pg_depend d
                JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
                WHERE d.classid = 'pg_class'::regclass
                  AND d.objid = (quote_ident(s.sequencename))::regclass AND d.deptype = 'a')
        FROM pg_sequences s WHERE s.schemaname = 'public' ORDER BY 1""",
    "triggers": """
        SELECT c.relname, t.tgname, pg_get_triggerdef(t.oid) FROM pg_trigger t
        JOIN pg_class c ON c.oid = t.tgrelid
        WHERE c.relnamespace = 'public'::regnamespace AND NOT t.tgisinternal ORDER BY 1, 2""",
    "functions": """
        SELECT p.proname, pg_get_function_identity_arguments(p.oid) FROM pg_proc p
        WHERE p.pronamespace = 'public'::regnamespace ORDER BY 1, 2""",
}
TIMESCALE_CATALOG = {
    "dimensions": """
        SELECT hypertable_name, column_name, time_interval
        FROM timescaledb_information.dimensions ORDER BY 1""",
}


def catalog(url: str, *, timescale: bool = False) -> dict[str, list[tuple[Any, ...]]]:
    queries = {**CATALOG, **(TIMESCALE_CATALOG if timescale else {})}
    with psycopg.connect(url) as conn:
        return {name: conn.execute(query).fetchall() for name, query in queries.items()}


def assert_same_catalog(url: str, fresh_url: str, *, timescale: bool = False) -> None:
    got, want = catalog(url, timescale=timescale), catalog(fresh_url, timescale=timescale)
    for name, rows in want.items():
        missing = [row for row in rows if row not in got[name]]
        extra = [row for row in got[name] if row not in rows]
        assert (name, missing, extra) == (name, [], [])
        assert got[name] == rows, name  # column positions too


def run_script(url: str, *paths: Path) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for path in paths:
            conn.execute(path.read_bytes())


def upgrade_cli(url: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, "db", "upgrade", "--database-url", url], capture_output=True,
                          text=True, timeout=120, env={**os.environ, **env})


def versions(url: str) -> list[tuple[int, str]]:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT version, name FROM schema_version ORDER BY 1").fetchall()


def expected_versions() -> list[tuple[int, str]]:
    return [(step.version, step.name) for step in steps()]


# ------------------------------------------------------------------ data of a running CSMS

def fill(url: str) -> dict[str, Any]:
    """What a CSMS of any landed version wrote: only columns every version has."""
    with psycopg.connect(url, autocommit=True) as conn:
        def one(query: str, params: tuple[Any, ...] = ()) -> Any:
            row = conn.execute(query, params).fetchone()
            assert row is not None
            return row[0]

        account = one("INSERT INTO accounts (name, document) VALUES ('Autimit Ops', '12.345') "
                      "RETURNING id")
        conn.execute("INSERT INTO account_api_keys (account_id, key_id, key_hash, name) "
                     "VALUES (%s, 'k1', '$2b$12$hash', 'billing')", (account,))
        location = one("INSERT INTO locations (account_id, name, address, latitude, longitude, "
                       "is_public) VALUES (%s, 'Depot', 'Rua 1', -23.5, -46.6, true) "
                       "RETURNING id", (account,))
        station = one("INSERT INTO stations (account_id, location_id, station_code, "
                      "station_secret_hash, serial_number, manufacturer, model, connectors) "
                      "VALUES (%s, %s, 'CP-OLD-1', '$2b$12$secret', 'SN1', 'ACME', 'X2', 2) "
                      "RETURNING id", (account, location))
        conn.execute("INSERT INTO station_connectors (station_id, connector_number, "
                     "connector_type, max_power_kw) VALUES (%s, 1, 'Type2', 22), "
                     "(%s, 2, 'CCS2', 50)", (station, station))
        conn.execute("INSERT INTO station_runtime_state (station_id, status, last_heartbeat_at, "
                     "booted_at, firmware_version, registration_status, last_seen_at) "
                     "VALUES (%s, 'online', %s, %s, '1.2.3', 'accepted', %s)",
                     (station, NOW, NOW - timedelta(days=3), NOW))
        conn.execute("INSERT INTO connector_runtime_state (station_id, connector_number, status, "
                     "ocpp_status, ocpp_error_code, status_at) VALUES "
                     "(%s, 1, 'charging', 'Charging', 'NoError', %s), "
                     "(%s, 2, 'available', 'Available', 'NoError', %s)",
                     (station, NOW, station, NOW))
        conn.execute("INSERT INTO id_tags (account_id, id_tag, label) VALUES (%s, 'TAG-1', 'x')",
                     (account,))
        started = NOW - timedelta(days=40)
        completed = one(
            "INSERT INTO charging_sessions (station_id, connector_number, id_tag, id_tag_status, "
            "status, meter_start_wh, meter_stop_wh, energy_wh, started_at, stopped_at, "
            "stop_reason, billing_status) VALUES (%s, 2, 'TAG-1', 'Accepted', 'completed', "
            "1000, 31000, 30000, %s, %s, 'Local', 'billed') RETURNING transaction_id",
            (station, started, started + timedelta(hours=1)))
        active = one(
            "INSERT INTO charging_sessions (station_id, connector_number, id_tag, id_tag_status, "
            "meter_start_wh, started_at) VALUES (%s, 1, 'TAG-1', 'Accepted', 5000, %s) "
            "RETURNING transaction_id", (station, NOW - timedelta(minutes=30)))
        for day in range(0, 60, 3):  # history over many TimescaleDB chunks
            at = NOW - timedelta(days=day)
            conn.execute("INSERT INTO station_heartbeat_events VALUES (%s, %s)", (station, at))
            conn.execute("INSERT INTO connector_status_events (station_id, connector_number, "
                         "occurred_at, status, ocpp_status, ocpp_error_code) VALUES "
                         "(%s, 1, %s, 'available', 'Available', 'NoError')", (station, at))
            conn.execute("INSERT INTO station_connection_events VALUES "
                         "(%s, %s, 'connected', NULL)", (station, at))
        conn.execute("INSERT INTO station_boot_events (station_id, occurred_at, "
                     "registration_status, charge_point_vendor, charge_point_model, "
                     "firmware_version) VALUES (%s, %s, 'Accepted', 'ACME', 'X2', '1.2.3')",
                     (station, NOW - timedelta(days=3)))
        for minute in range(0, 60, 10):
            for transaction, connector, at, wh in (
                    (completed, 2, started + timedelta(minutes=minute), 1000 + minute * 500),
                    (active, 1, NOW - timedelta(minutes=30 - minute // 2), 5000 + minute * 10)):
                for measurand, unit, value in (("Energy.Active.Import.Register", "Wh", wh),
                                               ("Power.Active.Import", "W", 7400)):
                    conn.execute(
                        "INSERT INTO meter_values (station_id, connector_number, transaction_id, "
                        "sampled_at, measurand, location, context, unit, value, format) VALUES "
                        "(%s, %s, %s, %s, %s, 'Outlet', 'Sample.Periodic', %s, %s, 'Raw')",
                        (station, connector, transaction, at, measurand, unit, value))
        conn.execute("INSERT INTO session_events (station_id, transaction_id, occurred_at, "
                     "event_type, id_tag, meter_wh) SELECT station_id, transaction_id, started_at, "
                     "'started', id_tag, meter_start_wh FROM charging_sessions")
        conn.execute("INSERT INTO session_events (station_id, transaction_id, occurred_at, "
                     "event_type, id_tag, meter_wh, reason) VALUES "
                     "(%s, %s, %s, 'stopped', 'TAG-1', 31000, 'Local')",
                     (station, completed, started + timedelta(hours=1)))
        conn.execute("INSERT INTO station_notifications (station_id, occurred_at, action, "
                     "payload) VALUES (%s, %s, 'DataTransfer', '{\"vendorId\": \"ACME\"}')",
                     (station, NOW))
    return {"station": station, "completed": completed, "active": active, "started": started}


def snapshot(url: str, tables: dict[str, list[str]] | None = None
             ) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """(columns of each table, its rows as sorted text of those columns); `tables`
    chooses the columns: those an old database had, to read them after its upgrade."""
    with psycopg.connect(url) as conn:
        if tables is None:
            tables = {}
            for (table,) in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = "
                                         "'public' AND tablename <> 'schema_version'"):
                tables[table] = [r[0] for r in conn.execute(
                    "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass "
                    "AND attnum > 0 AND NOT attisdropped ORDER BY attnum", (table,))]
        rows = {}
        for table, columns in tables.items():
            query = sql.SQL("SELECT {} FROM {}").format(
                sql.SQL(", ").join(map(sql.Identifier, columns)), sql.Identifier(table))
            rows[table] = sorted(repr(row) for row in conn.execute(query))
        return tables, rows


def same_rows(before: tuple[dict[str, list[str]], dict[str, list[str]]], url: str) -> None:
    """Every table the old database had still has exactly its rows (new columns aside)."""
    tables, rows = before
    assert snapshot(url, tables)[1] == rows


def works_like_today(url: str, ids: dict[str, Any]) -> None:
    """The service's statements on the upgraded database: a replayed sample is stored
    once, its signed twin (format) is kept, a StopTransaction records stop_source."""
    with psycopg.connect(url, autocommit=True) as conn:
        sample = {"station_id": str(ids["station"]), "connector_number": 1,
                  "transaction_id": ids["active"], "sampled_at": NOW.isoformat(),
                  "measurand": "Energy.Active.Import.Register", "phase": None,
                  "location": "Outlet", "context": "Sample.Periodic", "unit": "Wh",
                  "value": 5600, "format": "Raw", "raw_value": None}
        signed = {**sample, "format": "SignedData", "value": None, "raw_value": "AB01"}
        for rows in ([sample], [sample], [signed]):
            conn.execute(SQL.insert_meter_values, {"rows": as_json(rows)})
        stored = conn.execute(
            "SELECT format FROM meter_values WHERE station_id = %s AND sampled_at = %s "
            "AND measurand = 'Energy.Active.Import.Register' ORDER BY format",
            (ids["station"], NOW)).fetchall()
        assert stored == [("Raw",), ("SignedData",)]
        stop = conn.execute(SQL.stop_transaction, {
            "station_id": ids["station"], "transaction_id": ids["active"], "meter_stop": 5600,
            "stopped_at": NOW, "reason": "Local", "id_tag": "TAG-1"}).fetchone()
        assert stop is not None and stop[1] is True and stop[2] == 600
        assert conn.execute(
            "SELECT stop_source, billing_status FROM charging_sessions WHERE transaction_id = %s",
            (ids["active"],)).fetchone() == ("charger", "pending")


# ------------------------------------------------------------------ tests


def test_steps_are_numbered_files_that_record_themselves() -> None:
    found = steps()
    assert [s.version for s in found] == list(range(1, len(found) + 1))
    assert sorted(p.name for p in MIGRATIONS.iterdir()) == [s.path.name for s in found]
    for step in found:
        text = step.path.read_text()
        assert text.count("BEGIN;") == 1 and text.rstrip().endswith("COMMIT;"), step.path.name
        assert (f"INSERT INTO schema_version (version, name) VALUES ({step.version}, "
                f"'{step.name}')") in text, step.path.name


def test_fresh_schema_is_at_the_latest_version_and_upgrade_has_nothing_to_do(
        db_url: str) -> None:
    apply(db_url)  # a second apply records nothing new and breaks nothing
    assert versions(db_url) == expected_versions()
    result = upgrade_cli(db_url)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"schema already at version {len(steps())}; nothing to do"


@pytest.mark.parametrize("landed", LANDED_SCHEMAS)
def test_upgrade_from_every_landed_schema_keeps_data_and_matches_today(
        pg: LocalPostgres, db_url: str, landed: str) -> None:
    url = pg.url(new_database(pg))
    run_script(url, LANDED / f"schema-{landed}.sql")
    ids = fill(url)
    before = snapshot(url)
    assert len(before[1]["meter_values"]) == 24 and len(before[1]["charging_sessions"]) == 2

    first = upgrade_cli(url)
    assert first.returncode == 0, first.stderr
    assert "before versioning (version 0)" in first.stdout
    assert [line for line in first.stdout.splitlines() if line.startswith("applied")] == [
        f"applied {s.path.name}" for s in steps()]
    second = upgrade_cli(url)  # idempotent: nothing left to do, nothing changed
    assert second.returncode == 0, second.stderr
    assert "nothing to do" in second.stdout

    assert versions(url) == expected_versions()
    assert_same_catalog(url, db_url)
    same_rows(before, url)
    works_like_today(url, ids)


def test_psql_applies_the_step_files_twice(pg: LocalPostgres, db_url: str) -> None:
    psql = pg.bindir / "psql"
    if not psql.exists():
        pytest.skip(f"no psql in {pg.bindir}")
    url = pg.url(new_database(pg))
    run_script(url, LANDED / f"schema-{FIRST_LANDED}.sql")
    ids = fill(url)
    before = snapshot(url)
    files = [str(step.path) for step in steps()]
    for _ in range(2):
        result = subprocess.run(
            [str(psql), "-X", "-q", "-v", "ON_ERROR_STOP=1",
             *(arg for f in files for arg in ("-f", f)), url],
            capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        assert "ERROR" not in result.stderr
    assert versions(url) == expected_versions()
    assert_same_catalog(url, db_url)
    same_rows(before, url)
    assert "nothing to do" in upgrade_cli(url).stdout
    works_like_today(url, ids)


def test_schema_sql_over_an_old_database_leaves_it_for_upgrade(
        pg: LocalPostgres, db_url: str) -> None:
    """Today's schema.sql on an old database adds what IF NOT EXISTS can, records no
    version (it cannot widen the old meter_values key), and upgrade finishes the job."""
    url = pg.url(new_database(pg))
    run_script(url, LANDED / "schema-dbaebcd.sql")
    fill(url)
    apply(url)
    assert versions(url) == []
    assert catalog(url) != catalog(db_url)
    result = upgrade_cli(url)
    assert result.returncode == 0, result.stderr
    assert "before versioning" in result.stdout
    assert_same_catalog(url, db_url)


def test_a_failed_step_is_rolled_back_alone_and_upgrade_resumes(pg: LocalPostgres) -> None:
    url = pg.url(new_database(pg))
    run_script(url, LANDED / f"schema-{FIRST_LANDED}.sql")
    with psycopg.connect(url) as blocker:
        # an open transaction reading charging_sessions: step 5's ALTER cannot get its lock
        blocker.execute("SELECT count(*) FROM charging_sessions")
        result = upgrade_cli(url, PGOPTIONS="-c lock_timeout=300")
        assert result.returncode == 2
        assert "0005_sessions_closed_without_stop.sql failed and was rolled back" in (
            result.stderr)
    assert versions(url) == expected_versions()[:4]
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM pg_attribute WHERE attrelid = "
                            "'charging_sessions'::regclass AND attname = 'stop_source'"
                            ).fetchone() == (0,)
    result = upgrade_cli(url)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "applied 0005_sessions_closed_without_stop.sql"
    assert versions(url) == expected_versions()


def test_upgrade_refuses_an_empty_or_a_newer_database(pg: LocalPostgres, db_url: str) -> None:
    empty = pg.url(new_database(pg))
    result = upgrade_cli(empty)
    assert result.returncode == 2
    assert "no Autimit schema" in result.stderr and "db apply" in result.stderr
    with psycopg.connect(empty) as conn:
        assert conn.execute("SELECT to_regclass('schema_version')").fetchone() == (None,)

    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("INSERT INTO schema_version (version, name) VALUES (999, 'from_the_future')")
    result = upgrade_cli(db_url)
    assert result.returncode == 2
    assert "version 999, newer than this autimit-csms" in result.stderr


@pytest.mark.parametrize(("landed", "policies"), [("dbaebcd", "93d14df"),
                                                  (FIRST_LANDED, "c04a6c3")])
def test_upgrade_on_timescaledb_hypertables(pg: LocalPostgres, timescale_url: str,
                                            landed: str, policies: str) -> None:
    run_script(timescale_url, LANDED / f"schema-{landed}.sql",
               LANDED / f"timescale_policies-{policies}.sql")
    ids = fill(timescale_url)
    with psycopg.connect(timescale_url) as conn:
        chunks = conn.execute("SELECT count(*) FROM timescaledb_information.chunks "
                              "WHERE hypertable_name = 'meter_values'").fetchone()
        assert chunks is not None and chunks[0] > 1  # the data spans several chunks
    before = snapshot(timescale_url)
    for _ in range(2):
        result = upgrade_cli(timescale_url)
        assert result.returncode == 0, result.stderr
    assert versions(timescale_url) == expected_versions()

    fresh = pg.url(new_database(pg))
    run_script(fresh, SCHEMA, TIMESCALE_POLICIES)
    assert_same_catalog(timescale_url, fresh, timescale=True)
    same_rows(before, timescale_url)
    works_like_today(timescale_url, ids)
