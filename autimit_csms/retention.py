"""ADR 0002's retention table, enforced by the CSMS where no TimescaleDB policy does it.

Owns: the housekeeping task `run` (`--retention enforce|dry-run`: a first pass
FIRST_PASS_AFTER seconds after start, then every PASS_INTERVAL) and `Retention.sweep`,
one pass over the five event tables: `drop_chunks` for whole chunks of a
hypertable, then batched DELETEs of what is left older than the cut-off (all of
it on plain PostgreSQL), each batch one short transaction with a lock timeout.
A dry run counts and logs, and removes nothing. A table whose TimescaleDB
retention policy exists is left to it. Must not touch anything else:
charging_sessions keeps the billing figures for good (ADR 0002), and the
meter_values of a still-active session are kept however old. SQL: db/retention.sql.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

import trio

from .db import SQL, Database, DatabaseError, Row
from .settings import RETENTION_MODES

log = logging.getLogger(__name__)

FIRST_PASS_AFTER: Final = 60.0  # s: not while chargers reconnect after a (re)start
PASS_INTERVAL: Final = 3600.0
BATCH_SIZE: Final = 5000
BATCH_PAUSE: Final = 0.05  # s between batches: the writer's transactions go first
LOCK_TIMEOUT: Final = "2s"


@dataclass(frozen=True)
class Period:
    """One row of ADR 0002's retention table and its two statements."""

    table: str
    keep: timedelta
    count: str
    delete: str


PERIODS: Final = (
    Period("station_heartbeat_events", timedelta(days=90),
           SQL.retention_count_station_heartbeat_events,
           SQL.retention_delete_station_heartbeat_events),
    Period("station_boot_events", timedelta(days=365),
           SQL.retention_count_station_boot_events, SQL.retention_delete_station_boot_events),
    Period("connector_status_events", timedelta(days=180),
           SQL.retention_count_connector_status_events,
           SQL.retention_delete_connector_status_events),
    Period("meter_values", timedelta(days=730),
           SQL.retention_count_meter_values, SQL.retention_delete_meter_values),
    Period("session_events", timedelta(days=730),
           SQL.retention_count_session_events, SQL.retention_delete_session_events),
)


@dataclass(frozen=True)
class Backend:
    timescaledb: str | None          # extension version, None on plain PostgreSQL
    license: str | None              # 'apache' or 'timescale' (Community)
    hypertables: frozenset[str]
    compressed: frozenset[str]       # hypertables with compression enabled
    policy_tables: frozenset[str]    # hypertables a TimescaleDB retention policy handles

    def describe(self) -> str:
        if self.timescaledb is None:
            return ("plain PostgreSQL (no TimescaleDB): ADR 0002 compression is unavailable; "
                    "retention by batched DELETEs")
        hyper = len(self.hypertables & {p.table for p in PERIODS})
        how = f"drop_chunks on {hyper} hypertable(s)"
        if hyper < len(PERIODS):
            how += f", batched DELETEs on {len(PERIODS) - hyper} plain table(s)"
        if self.license != "timescale":
            return (f"TimescaleDB {self.timescaledb}, {self.license or 'unknown'} edition: "
                    f"ADR 0002 compression is unavailable (compression and policies need the "
                    f"Community edition); retention by {how}")
        return f"TimescaleDB {self.timescaledb}, Community edition; retention by {how}"


@dataclass
class TableReport:
    """What one pass did (enforce) or would do (dry-run) to one table."""

    table: str
    cutoff: datetime
    hypertable: bool = False
    rows: int = 0        # deleted by batches (enforce), or older than the cut-off (dry-run)
    chunks: int = 0      # whole chunks dropped (enforce) or droppable (dry-run)
    batches: int = 0
    skipped: str = ""    # why the table was left alone this pass
    kept_for: str = ""   # the active session whose samples hold the cut-off back


@dataclass
class Retention:
    db: Database
    mode: str
    batch_size: int = BATCH_SIZE
    batch_pause: float = BATCH_PAUSE
    # what was already said, so each is said once per process
    _announced: bool = field(default=False, init=False)
    _policy_logged: set[str] = field(default_factory=set, init=False)

    def __post_init__(self) -> None:
        if self.mode not in RETENTION_MODES:  # off: only say, once, what the database lacks
            raise ValueError(f"retention mode must be one of {', '.join(RETENTION_MODES)}")

    async def inspect(self) -> tuple[Backend, datetime]:
        """The database as it is now (policies can be added while we run), and its clock.
        Logs the backend once: a WARNING where compression is unavailable."""
        row = await self.db.fetch_one(SQL.retention_backend)
        assert row is not None
        hyper: list[Row] = []
        if row["timescaledb"] is not None:
            hyper = await self.db.fetch_all(SQL.retention_hypertables)
        backend = Backend(
            timescaledb=row["timescaledb"], license=row["license"],
            hypertables=frozenset(r["table_name"] for r in hyper),
            compressed=frozenset(r["table_name"] for r in hyper if r["compression_enabled"]),
            policy_tables=frozenset(r["table_name"] for r in hyper if r["has_retention_policy"]))
        if not self._announced:
            self._announced = True
            message = f"retention ({self.mode}): {backend.describe()}"
            if self.mode == "off":
                message += ("; ADR 0002's retention periods are not applied by this process "
                            "(--retention enforce or dry-run)")
            if backend.timescaledb is None or backend.license != "timescale":
                log.warning(message)
            else:
                log.info(message)
        for table in sorted(backend.policy_tables - self._policy_logged):
            if table in {p.table for p in PERIODS}:
                self._policy_logged.add(table)
                log.info("retention: %s has a TimescaleDB retention policy; left to it", table)
        return backend, row["now"]

    async def sweep(self, shutdown: trio.Event | None = None) -> list[TableReport]:
        """One pass over ADR 0002's retention table; stops between batches at shutdown."""
        stop = shutdown if shutdown is not None else trio.Event()
        started = trio.current_time()
        backend, now = await self.inspect()
        active = await self.db.fetch_one(SQL.retention_oldest_active_session)
        reports = []
        for period in PERIODS:
            if stop.is_set():
                break
            report = TableReport(period.table, now - period.keep,
                                 hypertable=period.table in backend.hypertables)
            reports.append(report)
            if period.table in backend.policy_tables:
                report.skipped = "TimescaleDB retention policy"
                continue
            if period.table == "meter_values" and active and active["started_at"] < report.cutoff:
                report.cutoff = active["started_at"]
                report.kept_for = (f"transaction {active['transaction_id']} of station "
                                   f"{active['station_code']}, active since "
                                   f"{active['started_at']:%Y-%m-%d %H:%M:%S%z}")
                log.warning("retention: meter_values kept back to %s for the billing of %s "
                            "(close it: POST /api/sessions/:id/close)",
                            _iso(report.cutoff), report.kept_for)
            try:
                if self.mode == "dry-run":
                    await self._count(period, report)
                else:
                    await self._remove(period, report, period.table in backend.compressed, stop)
            except DatabaseError as exc:
                report.skipped = f"{type(exc).__name__}: {exc}"
                log.warning("retention: %s skipped this pass (%s); next pass in %.0f s",
                            period.table, report.skipped, PASS_INTERVAL)
        self._log(reports, trio.current_time() - started)
        return reports

    async def _count(self, period: Period, report: TableReport) -> None:
        params = {"cutoff": report.cutoff, "table": period.table}
        row = await self.db.fetch_one(period.count, params)
        report.rows = row["rows"] if row else 0
        if report.hypertable:
            row = await self.db.fetch_one(SQL.retention_count_chunks, params)
            report.chunks = row["chunks"] if row else 0

    async def _remove(self, period: Period, report: TableReport, compressed: bool,
                      stop: trio.Event) -> None:
        params: dict[str, Any] = {"cutoff": report.cutoff, "table": period.table,
                                  "batch": self.batch_size}
        if report.hypertable:
            _, row = await self._short_transaction(SQL.retention_drop_chunks, params)
            report.chunks = row["chunks"] if row else 0
            if compressed:
                # DELETE would decompress the chunk straddling the cut-off: rows
                # leave with their whole chunk, as with TimescaleDB's own policy.
                return
        while not stop.is_set():
            deleted, _ = await self._short_transaction(period.delete, params)
            report.rows += deleted
            report.batches += 1
            if deleted < self.batch_size:
                break
            with trio.move_on_after(self.batch_pause):
                await stop.wait()

    async def _short_transaction(self, statement: str, params: dict[str, Any]
                                 ) -> tuple[int, Row | None]:
        def work(conn: Any) -> tuple[int, Row | None]:
            with conn.transaction():
                conn.execute(SQL.retention_lock_timeout, {"lock_timeout": LOCK_TIMEOUT})
                cursor = conn.execute(statement, params)
                return cursor.rowcount, cursor.fetchone() if cursor.description else None

        return await self.db.run(work)

    def _log(self, reports: list[TableReport], seconds: float) -> None:
        done = [r for r in reports if not r.skipped]
        for r in done:
            if self.mode == "dry-run":
                log.info("retention dry run: %s: %d row(s) older than %s would be removed%s",
                         r.table, r.rows, _iso(r.cutoff),
                         f" ({r.chunks} whole chunk(s))" if r.chunks else "")
            elif r.rows or r.chunks:
                log.info("retention: %s: %s%d row(s) deleted in %d batch(es), older than %s",
                         r.table, f"{r.chunks} chunk(s) dropped, " if r.hypertable else "",
                         r.rows, r.batches, _iso(r.cutoff))
        log.info("retention pass (%s) over %d table(s) in %.1f s: %d chunk(s), %d row(s)%s",
                 self.mode, len(done), seconds, sum(r.chunks for r in done),
                 sum(r.rows for r in done), " (nothing removed)" if self.mode == "dry-run" else "")


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")


async def run(db: Database, mode: str, shutdown: trio.Event, *,
              task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """The housekeeping task: passes until `shutdown` is set, then returns (between
    batches at the latest). A failed pass is logged and retried at the next one.
    With mode "off" it only says at start-up what the database lacks, and returns."""
    retention = Retention(db, mode)
    try:
        await retention.inspect()
    except DatabaseError as exc:
        log.warning("retention: database not reachable at start-up (%s); the first pass "
                    "will try again", exc)
    task_status.started()
    if mode == "off":
        return
    delay = FIRST_PASS_AFTER
    while True:
        with trio.move_on_after(delay):
            await shutdown.wait()
        if shutdown.is_set():
            return
        try:
            await retention.sweep(shutdown)
        except DatabaseError as exc:
            log.warning("retention pass failed (%s); next pass in %.0f s", exc, PASS_INTERVAL)
        delay = PASS_INTERVAL
