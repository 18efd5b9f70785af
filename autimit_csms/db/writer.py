"""The group-commit writer: the one owner of the charger write path.

Owns: batching many stations' write rules into one transaction, and answering
each waiter only after its batch committed (DESIGN.md durability rule). A batch
that fails on one item is retried item by item, so one bad row costs its own
charger a CALLERROR and nobody else anything. It must not decide what to write.

Several batches may be in flight at once (IN_FLIGHT): while one commits, the next is
gathered and sent, so a charger's round trip is not one whole commit longer than
it must be. Order still holds where it matters: a waiter submits its next write
only after its previous one committed (one CALL in flight per charger), and the
rules that two connections of one station may race on are guarded in their SQL
(station_disconnected); a rare deadlock between two batches is retried item by item.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from functools import partial

import psycopg
import trio

from ..metrics import BATCH_SIZES, LATENCY_SECONDS, Distribution
from .database import Database, DatabaseError, DatabaseUnavailable, Params, Row

log = logging.getLogger(__name__)


@dataclass
class _Item:
    statements: list[tuple[str, Params]]  # one write rule; committed together
    done: trio.Event = field(default_factory=trio.Event)
    rows: list[Row] = field(default_factory=list)
    error: DatabaseError | None = None


@dataclass
class WriterStats:
    """Counters read by autimit_csms/metrics.py at scrape time; cheap to keep."""

    failed_items: int = 0
    batch_sizes: Distribution = field(default_factory=lambda: Distribution(BATCH_SIZES))
    commit_latency: Distribution = field(
        default_factory=lambda: Distribution(LATENCY_SECONDS))

    @property
    def items(self) -> int:
        """Write rules committed or failed, all batches."""
        return int(self.batch_sizes.total)


IN_FLIGHT = 4  # batches committing at once (pool permitting); A/B in docs/performance.md


class GroupCommitWriter:
    def __init__(self, db: Database, *, max_batch: int = 1000) -> None:
        self._db = db
        self._max_batch = max_batch
        # Unbounded on purpose: each submitter waits for its own answer, so the
        # queue is bounded by the number of connections, not by this channel.
        self._send, self._receive = trio.open_memory_channel[_Item](math.inf)
        self.stats = WriterStats()

    async def submit(self, sql: str, params: Params = None,
                     *more: tuple[str, Params]) -> list[Row]:
        """Commit one write rule (a statement, or several that belong together).

        Returns the first statement's rows once committed, or raises DatabaseError.
        """
        item = _Item([(sql, params), *more])
        try:
            self._send.send_nowait(item)
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            raise DatabaseUnavailable("writer stopped") from None
        await item.done.wait()
        if item.error is not None:
            raise item.error
        return item.rows

    def queue_depth(self) -> int:
        """Write rules waiting for the next batch."""
        return self._receive.statistics().current_buffer_used

    def close(self) -> None:
        """No new items; `run` returns after committing what was already queued."""
        self._send.close()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Commit batches until `close()`; cancellation does not stop it.

        Shielded on purpose: when the server is cancelled, connection tasks
        still submit their last writes (offline marks) from shielded cleanup,
        and every waiter must get its answer. The owner calls `close()` once
        nothing can submit any more (server.py does so in a `finally`).
        """
        task_status.started()
        with trio.CancelScope(shield=True):
            async with self._receive, trio.open_nursery() as batches:
                # at most half the pool: handshakes, commands and the API need the rest
                slots = trio.Semaphore(max(1, min(IN_FLIGHT, self._db.max_size // 2)))
                async for first in self._receive:
                    await slots.acquire()  # meanwhile more items queue for this batch
                    batch = [first]
                    while len(batch) < self._max_batch:
                        try:
                            batch.append(self._receive.receive_nowait())
                        except (trio.WouldBlock, trio.EndOfChannel):
                            break
                    batches.start_soon(self._commit_and_release, batch, slots)

    async def _commit_and_release(self, batch: list[_Item], slots: trio.Semaphore) -> None:
        try:
            await self._commit(batch)
        finally:
            slots.release()

    async def _commit(self, batch: list[_Item]) -> None:
        started = time.perf_counter()
        try:
            await self._db.run(lambda conn: _run_batch(conn, batch))
        except DatabaseUnavailable as err:
            for item in batch:
                item.error = err
        except Exception as err:  # noqa: BLE001 - whatever it is, the writer must go on
            if not isinstance(err, DatabaseError):
                log.exception("write batch failed unexpectedly; retrying its items one by one")
            # One item broke the transaction: give each its own.
            for item in batch:
                try:
                    await self._db.run(partial(_run_alone, item))
                except DatabaseError as err:
                    item.error = err
                    self.stats.failed_items += 1
                except Exception:  # noqa: BLE001 - a bug in one write rule costs only its own
                    log.exception("write rule failed unexpectedly")
                    item.error = DatabaseError("write failed")
                    self.stats.failed_items += 1
        self.stats.batch_sizes.observe(len(batch))
        self.stats.commit_latency.observe(time.perf_counter() - started)
        for item in batch:
            item.done.set()


def _run_alone(item: _Item, conn: psycopg.Connection[Row]) -> None:
    _run_batch(conn, [item])


def _mergeable(params: Params) -> str | None:
    """A statement whose only parameter is `rows`, a JSON array, can share one
    execution with its like (heartbeat, insert_meter_values): its rows, or None."""
    if isinstance(params, dict) and len(params) == 1 and "rows" in params:
        rows = params["rows"]
        return rows if isinstance(rows, str) else None
    return None


def _run_batch(conn: psycopg.Connection[Row], batch: list[_Item]) -> None:
    # Pipeline mode: the whole batch and its COMMIT go out in one round trip.
    # Mergeable statements run once per SQL text, after every other statement of
    # the batch (their rows may refer to a session the batch creates).
    merged: dict[str, list[str]] = {}
    with conn.pipeline():
        with conn.transaction():
            cursors: list[psycopg.Cursor[Row] | None] = []
            for item in batch:
                for number, (sql, params) in enumerate(item.statements):
                    rows = _mergeable(params)
                    cur = None
                    if rows is None:
                        cur = conn.cursor()
                        cur.execute(sql, params)
                    elif rows != "[]":
                        merged.setdefault(sql, []).append(rows[1:-1])
                    if number == 0:
                        cursors.append(cur)
            for sql, parts in merged.items():
                conn.execute(sql, {"rows": "[" + ",".join(parts) + "]"})
    for item, cursor in zip(batch, cursors, strict=True):
        item.rows = cursor.fetchall() if cursor is not None and cursor.description else []
