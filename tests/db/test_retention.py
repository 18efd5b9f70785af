"""ADR 0002 retention by the CSMS itself, on plain PostgreSQL and on TimescaleDB.

Rows are placed just either side of each table's period (one hour), far beyond it
(whole TimescaleDB chunks) and recently; a pass must remove exactly the old ones,
never a session, and never the samples billing still needs.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest
import trio

from autimit_csms import retention
from autimit_csms.db import SQL, Database, as_json
from autimit_csms.db.schema import apply
from autimit_csms.retention import PERIODS, Retention, TableReport
from autimit_csms.server import Server

from ..conftest import server_settings

KEEP = {p.table: p.keep for p in PERIODS}
ADR_0002 = {"station_heartbeat_events": 90, "station_boot_events": 365,
            "connector_status_events": 180, "meter_values": 730, "session_events": 730}
TIME_COLUMN = {table: "sampled_at" if table == "meter_values" else "occurred_at"
               for table in ADR_0002}
HOUR = timedelta(hours=1)
# ages relative to each table's period: the first three are older than it
OLD = (timedelta(days=45), timedelta(days=2), HOUR)
YOUNG = (-HOUR, -timedelta(days=2))
RECENT = (timedelta(days=1), timedelta(0))  # absolute ages


@pytest.fixture(params=["postgresql", "timescaledb"])
async def any_db(request: pytest.FixtureRequest) -> AsyncIterator[Database]:
    """The same schema on plain PostgreSQL and, where installed, as TimescaleDB hypertables."""
    if request.param == "postgresql":
        url = request.getfixturevalue("db_url")
    else:
        url = request.getfixturevalue("timescale_url")
        apply(url, timescale=True)
    database = Database(url, min_size=1, max_size=4)
    await database.open()
    yield database
    await database.close()


async def one(db: Database, query: str, params: Any = None) -> Any:
    row = await db.fetch_one(query, params)
    assert row is not None
    return next(iter(row.values()))


async def new_station(db: Database, code: str = "CP-RET") -> uuid.UUID:
    account = await one(db, "INSERT INTO accounts (name, document) VALUES ('A', 'D') RETURNING id")
    location = await one(db, "INSERT INTO locations (account_id, name, address, latitude, "
                             "longitude) VALUES (%s, 'L', 'Street 1', 1, 2) RETURNING id",
                         (account,))
    station = await one(db, "INSERT INTO stations (account_id, location_id, station_code, "
                            "station_secret_hash, connectors) VALUES (%s, %s, %s, 'x', 2) "
                            "RETURNING id", (account, location, code))
    await db.execute("INSERT INTO station_connectors (station_id, connector_number) "
                     "VALUES (%s, 1), (%s, 2)", (station, station))
    return station  # type: ignore[no-any-return]


async def insert_event(db: Database, table: str, station: uuid.UUID, age: timedelta,
                       n: int) -> None:
    """One row of `table`, `age` old by the database clock; `n` makes it unique."""
    at = "now() - %(age)s::interval"
    statements = {
        "station_heartbeat_events": f"INSERT INTO station_heartbeat_events VALUES (%(s)s, {at})",
        "station_boot_events":
            "INSERT INTO station_boot_events (station_id, occurred_at, registration_status, "
            f"charge_point_vendor, charge_point_model) VALUES (%(s)s, {at}, 'Accepted', 'V', 'M')",
        "connector_status_events":
            "INSERT INTO connector_status_events (station_id, connector_number, occurred_at, "
            f"status, ocpp_status, ocpp_error_code) VALUES (%(s)s, 1, {at}, 'available', "
            "'Available', 'NoError')",
        "meter_values":
            "INSERT INTO meter_values (station_id, connector_number, sampled_at, measurand, "
            f"location, context, unit, value, format) VALUES (%(s)s, 1, {at}, "
            "'Energy.Active.Import.Register', 'Outlet', 'Sample.Periodic', 'Wh', %(n)s, 'Raw')",
        "session_events":
            "INSERT INTO session_events (station_id, transaction_id, occurred_at, event_type, "
            f"reason) VALUES (%(s)s, %(n)s, {at}, 'stop_unmatched', 'test')",
    }
    await db.execute(statements[table], {"s": station, "age": age, "n": n})


async def fill(db: Database, station: uuid.UUID) -> None:
    n = 0
    for table, keep in KEEP.items():
        for age in [keep + a for a in OLD] + [keep + a for a in YOUNG] + list(RECENT):
            n += 1
            await insert_event(db, table, station, age, n)


async def ages_in_days(db: Database, table: str) -> list[float]:
    column = TIME_COLUMN[table]
    rows = await db.fetch_all(  # table and column names from the fixed lists above
        f"SELECT EXTRACT(EPOCH FROM now() - {column}) / 86400 AS days FROM {table} "
        f"ORDER BY {column}")
    return [round(float(r["days"]), 2) for r in rows]


async def chunks(db: Database, table: str) -> int:
    return int(await one(db, "SELECT count(*) FROM show_chunks(%s::regclass)", (table,)))


async def is_timescale(db: Database) -> bool:
    return bool(await one(db, "SELECT count(*) FROM pg_extension WHERE extname = 'timescaledb'"))


async def eventually(check: Callable[[], Awaitable[bool]], seconds: float = 10) -> None:
    """Polls a database condition (nothing in the database can wake an Event here)."""
    with trio.fail_after(seconds):
        while True:
            if await check():
                return
            await trio.sleep(0.01)


def by_table(reports: list[TableReport]) -> dict[str, TableReport]:
    return {r.table: r for r in reports}


# ------------------------------------------------------------------ tests


def test_periods_are_adr_0002s_table() -> None:
    assert {table: keep.days for table, keep in KEEP.items()} == ADR_0002
    assert all(keep == timedelta(days=keep.days) for keep in KEEP.values())


async def test_enforce_removes_exactly_what_is_older_than_the_period(any_db: Database) -> None:
    db = any_db
    station = await new_station(db)
    await fill(db, station)
    timescale = await is_timescale(db)
    chunks_before = {t: await chunks(db, t) for t in KEEP} if timescale else {}

    reports = by_table(await Retention(db, "enforce", batch_size=2).sweep())

    for table, keep in KEEP.items():
        days = keep.days
        # the two just younger than the period and the two recent ones, oldest first
        assert await ages_in_days(db, table) == [round(days - 1 / 24, 2), days - 2, 1, 0], table
        report = reports[table]
        assert report.skipped == "" and report.kept_for == ""
        if timescale:  # whole chunks by drop_chunks (the 45-day-old row's at least), then
            # the old rows left in the chunk straddling the cut-off, in batches
            assert report.chunks >= 1, table
            assert await chunks(db, table) == chunks_before[table] - report.chunks
            assert report.rows <= 2 and report.batches >= 1
        else:  # three old rows, batches of at most two: 2 + 1
            assert (report.rows, report.batches, report.chunks) == (3, 2, 0), table


async def test_dry_run_counts_and_removes_nothing(any_db: Database,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="autimit_csms.retention")
    db = any_db
    station = await new_station(db)
    await fill(db, station)
    timescale = await is_timescale(db)
    before = {t: await ages_in_days(db, t) for t in KEEP}
    chunks_before = {t: await chunks(db, t) for t in KEEP} if timescale else {}

    reports = by_table(await Retention(db, "dry-run").sweep())

    for table in KEEP:
        assert reports[table].rows == 3, table
        assert reports[table].batches == 0
        assert await ages_in_days(db, table) == before[table]
        if timescale:
            assert reports[table].chunks >= 1
            assert await chunks(db, table) == chunks_before[table]
    dry = [r.getMessage() for r in caplog.records if "dry run" in r.getMessage()]
    assert len(dry) == len(KEEP)
    cutoff = reports["meter_values"].cutoff.isoformat(timespec="seconds")
    assert any(f"meter_values: 3 row(s) older than {cutoff} would be removed" in m for m in dry)


async def test_billing_figures_survive_their_raw_samples(any_db: Database) -> None:
    """A session 800 days old: its samples and events go (730 days), its charging_sessions
    row and the figures the API shows for it stay exactly as they were."""
    db = any_db
    station = await new_station(db)
    started = await one(db, "SELECT date_trunc('second', now()) - interval '800 days'")
    await db.execute("INSERT INTO id_tags (account_id, id_tag) SELECT account_id, 'TAG-1' "
                     "FROM stations WHERE id = %s", (station,))
    start = await db.fetch_one(SQL.start_transaction, {
        "station_id": station, "connector_number": 1, "id_tag": "TAG-1",
        "id_tag_status": "Accepted", "reservation_id": None, "meter_start": 10_000,
        "started_at": started})
    assert start is not None
    transaction = start["transaction_id"]
    samples = [{"station_id": str(station), "connector_number": 1,
                "transaction_id": transaction,
                "sampled_at": (started + timedelta(minutes=m)).isoformat(),
                "measurand": "Energy.Active.Import.Register", "phase": None,
                "location": "Outlet", "context": "Sample.Periodic", "unit": "Wh",
                "value": 10_000 + 500 * m, "format": "Raw", "raw_value": None}
               for m in range(0, 60, 5)]
    await db.execute(SQL.insert_meter_values, {"rows": as_json(samples)})
    stop = await db.fetch_one(SQL.stop_transaction, {
        "station_id": station, "transaction_id": transaction, "meter_stop": 40_000,
        "stopped_at": started + HOUR, "reason": "Local", "id_tag": "TAG-1"})
    assert stop is not None and stop["energy_wh"] == 30_000
    await db.execute("UPDATE charging_sessions SET billing_status = 'billed' "
                     "WHERE transaction_id = %s", (transaction,))
    query = {"id": None, "account_id": None, "station_id": station, "transaction_id": None,
             "id_tag": None, "active": None, "from_at": None, "to_at": None, "limit": 10,
             "offset": 0}
    before = await db.fetch_all(SQL.select_sessions, query)
    assert len(before) == 1 and before[0]["energy_wh"] == 30_000

    reports = by_table(await Retention(db, "enforce").sweep())

    assert reports["meter_values"].rows + reports["meter_values"].chunks > 0
    assert await one(db, "SELECT count(*) FROM meter_values WHERE transaction_id = %s",
                     (transaction,)) == 0
    assert await one(db, "SELECT count(*) FROM session_events WHERE transaction_id = %s",
                     (transaction,)) == 0
    after = await db.fetch_all(SQL.select_sessions, query)
    assert after == before
    assert (after[0]["meter_start_wh"], after[0]["meter_stop_wh"], after[0]["energy_wh"],
            after[0]["billing_status"], after[0]["energy_source"]) == (
        10_000, 40_000, 30_000, "billed", "meterStop")


async def test_samples_of_an_active_session_are_kept_for_its_billing(
        any_db: Database, caplog: pytest.LogCaptureFixture) -> None:
    db = any_db
    station = await new_station(db, "CP-STUCK")
    started = await one(db, "SELECT date_trunc('second', now()) - interval '800 days'")
    transaction = await one(
        db, "INSERT INTO charging_sessions (station_id, connector_number, id_tag, id_tag_status, "
            "meter_start_wh, started_at) VALUES (%s, 1, 'TAG', 'Accepted', 100, %s) "
            "RETURNING transaction_id", (station, started))
    await db.execute(
        "INSERT INTO meter_values (station_id, connector_number, transaction_id, sampled_at, "
        "measurand, location, context, unit, value, format) "
        "SELECT %s, 1, %s, %s + m * interval '1 minute', 'Energy.Active.Import.Register', "
        "'Outlet', 'Sample.Periodic', 'Wh', 100 + m * 10, 'Raw' FROM generate_series(1, 5) m",
        (station, transaction, started))
    await insert_event(db, "meter_values", station, timedelta(days=900), 1)  # older: it goes

    reports = by_table(await Retention(db, "enforce").sweep())

    assert reports["meter_values"].cutoff == started
    assert f"transaction {transaction} of station CP-STUCK" in reports["meter_values"].kept_for
    assert await ages_in_days(db, "meter_values") == [
        round(800 - m / 1440, 2) for m in range(1, 6)]
    assert any("kept back" in r.getMessage() and r.levelno == logging.WARNING
               for r in caplog.records)
    # the operator closes it: its meterStop still comes from its samples
    session = await one(db, "SELECT id FROM charging_sessions WHERE transaction_id = %s",
                        (transaction,))
    await db.execute(SQL.close_session, {"id": session, "requested_by": "admin",
                                         "reason": "stuck"})
    assert await one(db, "SELECT energy_wh FROM charging_sessions WHERE id = %s",
                     (session,)) == 50


async def test_a_table_with_a_timescaledb_retention_policy_is_left_to_it(
        timescale_url: str, caplog: pytest.LogCaptureFixture) -> None:
    """The Apache edition cannot add_retention_policy; the job row it would write is
    written here (never scheduled), which is what the task looks at."""
    caplog.set_level(logging.INFO, logger="autimit_csms.retention")
    apply(timescale_url, timescale=True)
    db = Database(timescale_url, min_size=1, max_size=2)
    await db.open()
    try:
        await db.execute(
            "INSERT INTO _timescaledb_config.bgw_job (application_name, schedule_interval, "
            "max_runtime, max_retries, retry_period, proc_schema, proc_name, scheduled, "
            "hypertable_id, config, check_schema, check_name) "
            "SELECT 'Retention Policy [test]', interval '1 day', interval '5 min', -1, "
            "interval '5 min', '_timescaledb_functions', 'policy_retention', false, id, "
            "jsonb_build_object('drop_after', '90 days', 'hypertable_id', id), "
            "'_timescaledb_functions', 'policy_retention_check' "
            "FROM _timescaledb_catalog.hypertable WHERE table_name = 'station_heartbeat_events'")
        station = await new_station(db)
        await fill(db, station)
        task = Retention(db, "enforce")
        for _ in range(2):
            reports = by_table(await task.sweep())
            assert reports["station_heartbeat_events"].skipped == "TimescaleDB retention policy"
            assert reports["meter_values"].skipped == ""
        assert len(await ages_in_days(db, "station_heartbeat_events")) == 7  # untouched
        assert len(await ages_in_days(db, "meter_values")) == 4
        said = [r.getMessage() for r in caplog.records
                if "station_heartbeat_events has a TimescaleDB retention policy" in r.getMessage()]
        assert len(said) == 1
    finally:
        await db.close()


async def test_compression_unavailable_is_said_once_at_start_up(
        any_db: Database, caplog: pytest.LogCaptureFixture) -> None:
    db = any_db
    task = Retention(db, "enforce")
    for _ in range(3):
        await task.inspect()
        await task.sweep()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert "compression is unavailable" in warnings[0]
    if await is_timescale(db):
        assert "apache edition" in warnings[0] and "drop_chunks on 5 hypertable(s)" in warnings[0]
    else:
        assert "plain PostgreSQL" in warnings[0] and "batched DELETEs" in warnings[0]


async def test_a_pass_stops_between_batches_at_shutdown(db: Database) -> None:
    station = await new_station(db)
    await db.execute("INSERT INTO station_heartbeat_events SELECT %s, now() - interval '100 days' "
                     "- n * interval '1 second' FROM generate_series(1, 50) n", (station,))
    shutdown = trio.Event()
    task = Retention(db, "enforce", batch_size=1, batch_pause=0.01)
    reports: list[TableReport] = []

    async def sweep() -> None:
        reports.extend(await task.sweep(shutdown))

    async def some_deleted() -> bool:
        return bool(await one(db, "SELECT count(*) FROM station_heartbeat_events") <= 45)

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sweep)
            await eventually(some_deleted)
            shutdown.set()
    left = await one(db, "SELECT count(*) FROM station_heartbeat_events")
    assert 0 < left <= 45
    assert [r.table for r in reports] == ["station_heartbeat_events"]  # no other table begun
    assert reports[0].rows == 50 - left


async def test_run_in_a_real_server_and_stop_at_shutdown(
        db: Database, db_url: str, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="autimit_csms.retention")
    monkeypatch.setattr(retention, "FIRST_PASS_AFTER", 0.0)
    station = await new_station(db)
    await fill(db, station)

    async def first_pass_done() -> bool:
        return len(await ages_in_days(db, "session_events")) == 4  # the last table of a pass

    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            server: Server = await nursery.start(
                Server(server_settings(db_url, retention="enforce"), db).run)
            await eventually(first_pass_done)
            stopping = trio.current_time()
            server.stop()  # the task is now waiting out the hour to its next pass
    assert trio.current_time() - stopping < 2
    assert not server.grace_expired
    messages = [r.getMessage() for r in caplog.records]
    assert sum("retention (enforce): plain PostgreSQL" in m for m in messages) == 1
    assert any(m.startswith("retention pass (enforce) over 5 table(s)") for m in messages)
    for table in KEEP:
        assert len(await ages_in_days(db, table)) == 4, table


async def test_a_server_with_retention_off_says_once_what_the_database_lacks(
        db: Database, db_url: str, caplog: pytest.LogCaptureFixture) -> None:
    station = await new_station(db)
    await fill(db, station)
    before = {table: await ages_in_days(db, table) for table in KEEP}
    async with trio.open_nursery() as nursery:
        server: Server = await nursery.start(Server(server_settings(db_url), db).run)
        server.stop()
    said = [r.getMessage() for r in caplog.records
            if r.name == "autimit_csms.retention" and r.levelno == logging.WARNING]
    assert len(said) == 1, said
    assert said[0].startswith("retention (off): plain PostgreSQL") and (
        "compression is unavailable" in said[0] and "--retention enforce" in said[0])
    assert {table: await ages_in_days(db, table) for table in KEEP} == before  # nothing removed
