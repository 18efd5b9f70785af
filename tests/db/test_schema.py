"""schema.sql and timescale_policies.sql on a real PostgreSQL / TimescaleDB."""

from __future__ import annotations

import re
import subprocess
import uuid

import psycopg
import pytest
from psycopg import errors

from autimit_csms.db.schema import SCHEMA, TIMESCALE_POLICIES, apply
from autimit_csms.localpg import LocalPostgres

ADR_TABLES = {
    "accounts", "locations", "stations", "station_connectors", "station_runtime_state",
    "connector_runtime_state", "charging_sessions", "station_heartbeat_events",
    "station_boot_events", "connector_status_events", "meter_values", "session_events",
}
EVENT_TABLES = {  # ADR 0002: hypertable -> partition column, retention, compression
    "station_heartbeat_events": ("occurred_at", "90 days", "7 days"),
    "station_boot_events": ("occurred_at", "365 days", "30 days"),
    "connector_status_events": ("occurred_at", "180 days", "14 days"),
    "meter_values": ("sampled_at", "730 days", "30 days"),
    "session_events": ("occurred_at", "730 days", "30 days"),
}


def test_psql_applies_schema_twice(pg: LocalPostgres, empty_db_url: str) -> None:
    for _ in range(2):
        result = subprocess.run(
            [str(pg.bindir / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", str(SCHEMA),
             empty_db_url], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
    with psycopg.connect(empty_db_url) as conn:
        tables = {r[0] for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
        assert ADR_TABLES <= tables
        # timestamptz everywhere
        naive = conn.execute(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = 'public' AND data_type = 'timestamp without time zone'"
        ).fetchall()
        assert naive == []


def _account_and_location(conn: psycopg.Connection) -> tuple[uuid.UUID, uuid.UUID]:
    account = conn.execute(
        "INSERT INTO accounts (name, document) VALUES ('A', 'D') RETURNING id").fetchone()[0]
    location = conn.execute(
        "INSERT INTO locations (account_id, name, address, latitude, longitude) "
        "VALUES (%s, 'L', 'Street 1', 1, 2) RETURNING id", (account,)).fetchone()[0]
    return account, location


def _station(conn: psycopg.Connection, account: uuid.UUID, location: uuid.UUID, code: str,
             connectors: int = 1) -> None:
    conn.execute(
        "INSERT INTO stations (account_id, location_id, station_code, station_secret_hash, "
        "connectors) VALUES (%s, %s, %s, 'x', %s)", (account, location, code, connectors))


def test_constraints_bite(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        account, location = _account_and_location(conn)
        _station(conn, account, location, "CP-ONE")
        with pytest.raises(errors.UniqueViolation):
            _station(conn, account, location, "cp-one")  # same code, other case
        with pytest.raises(errors.CheckViolation):
            _station(conn, account, location, "CP-ZERO", connectors=0)
        with pytest.raises(errors.ForeignKeyViolation):
            _station(conn, uuid.uuid4(), location, "CP-NOACCOUNT")
        other, _ = _account_and_location(conn)
        with pytest.raises(errors.ForeignKeyViolation):  # location of another account
            _station(conn, other, location, "CP-CROSS")
        with pytest.raises(errors.CheckViolation):
            _station(conn, account, location, "has space")
        station = conn.execute("SELECT id FROM stations WHERE station_code = 'CP-ONE'"
                               ).fetchone()[0]
        conn.execute("INSERT INTO station_connectors (station_id, connector_number) "
                     "VALUES (%s, 1)", (station,))
        with pytest.raises(errors.UniqueViolation):
            conn.execute("INSERT INTO station_connectors (station_id, connector_number) "
                         "VALUES (%s, 1)", (station,))
        with pytest.raises(errors.CheckViolation):
            conn.execute("INSERT INTO station_connectors (station_id, connector_number, "
                         "max_power_kw) VALUES (%s, 2, 0)", (station,))
        with pytest.raises(errors.CheckViolation):
            conn.execute("INSERT INTO station_runtime_state (station_id, status) "
                         "VALUES (%s, 'sleeping')", (station,))
        with pytest.raises(errors.CheckViolation):
            conn.execute("INSERT INTO connector_runtime_state (station_id, connector_number, "
                         "status) VALUES (%s, 1, 'Charging')", (station,))


def test_transaction_ids_fit_ocpp_integer(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        row = conn.execute("SELECT data_type, maximum_value FROM information_schema.sequences "
                           "WHERE sequence_name = 'ocpp_transaction_id_seq'").fetchone()
        assert row == ("integer", str(2**31 - 1))


def _exec_each(conn: psycopg.Connection, sql: str) -> None:
    conn.execute(sql.encode())


def test_timescale_policies_apply_twice(timescale_url: str) -> None:
    warnings: list[str] = []
    for _ in range(2):
        notices = apply(timescale_url, timescale=True)
        warnings += [n for n in notices if n.startswith("WARNING")]
    with psycopg.connect(timescale_url) as conn:
        rows = dict(conn.execute(
            "SELECT hypertable_name, column_name FROM timescaledb_information.dimensions"
        ).fetchall())
        assert rows == {name: spec[0] for name, spec in EVENT_TABLES.items()}
        license_ = conn.execute("SELECT current_setting('timescaledb.license')").fetchone()[0]
        if license_ == "timescale":  # Community edition: the policies are really there
            jobs = conn.execute(
                "SELECT hypertable_name, proc_name, config FROM timescaledb_information.jobs "
                "WHERE proc_name IN ('policy_retention', 'policy_compression')").fetchall()
            assert len(jobs) == 2 * len(EVENT_TABLES)
        else:  # Apache edition: skipped loudly, each run
            assert len(warnings) == 2 and "policies skipped" in warnings[0]
        # drop_chunks works on either edition: the retention fallback
        conn.execute("SELECT drop_chunks('meter_values', older_than => INTERVAL '730 days')")


def test_policies_file_states_adr_0002_exactly() -> None:
    """The Community-only statements are checked by text where the edition cannot run them."""
    text = TIMESCALE_POLICIES.read_text()
    for table, (column, retention, compression) in EVENT_TABLES.items():
        assert re.search(rf"create_hypertable\('{table}', by_range\('{column}'", text)
        assert re.search(
            rf"add_retention_policy\('{table}', INTERVAL '{retention}', if_not_exists => TRUE\)",
            text)
        assert re.search(
            rf"add_compression_policy\('{table}', INTERVAL '{compression}', "
            r"if_not_exists => TRUE\)", text)
        assert re.search(rf"ALTER TABLE {table} SET \(\s*timescaledb.compress,\s*"
                         r"timescaledb.compress_segmentby = 'station_id'", text)
