"""The one bridge from Trio to PostgreSQL, and the translation of driver errors.

Owns: the psycopg connection pool, the thread hop (`trio.to_thread` under a
CapacityLimiter sized to the pool), and turning psycopg exceptions into the
domain errors below. Only the `db` package imports psycopg. psycopg has no Trio
support (psycopg issue #29), so every blocking call goes through `Database.run`;
replace the bridge, not its callers, if measurement says the hop matters.
"""

from __future__ import annotations

import json
import logging
import select
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from functools import partial
from typing import Any, TypeVar

import psycopg
import psycopg.errors
import trio
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb, set_json_loads
from psycopg_pool import ConnectionPool, PoolTimeout

from ..ocpp16.codec import encode_json

log = logging.getLogger(__name__)
T = TypeVar("T")
Params = Mapping[str, Any] | Sequence[Any] | None
Row = dict[str, Any]


def as_json(value: Any) -> Jsonb:
    """A jsonb parameter; Decimal numbers are written exactly (11.10 stays 11.10)."""
    return Jsonb(value, dumps=encode_json)


def _configure(conn: psycopg.Connection[Any]) -> None:
    # json/jsonb come back with exact numbers, as OCPP payloads went in.
    set_json_loads(partial(json.loads, parse_float=Decimal), conn)


class DatabaseError(Exception):
    """A statement failed for a reason the caller may report (no driver text leaks)."""


class DatabaseUnavailable(DatabaseError):
    """The server cannot be reached or the pool is exhausted; retry later."""


class UnstorableValue(DatabaseError):
    """A parameter PostgreSQL cannot take (e.g. a lone UTF-16 surrogate in text)."""


class ConstraintViolation(DatabaseError):
    def __init__(self, kind: str, constraint: str | None) -> None:
        super().__init__(f"{kind} violation on {constraint}")
        self.kind = kind  # "unique", "foreign_key", "check", "not_null"
        self.constraint = constraint or ""


_CONSTRAINT_KINDS: dict[type[psycopg.Error], str] = {
    psycopg.errors.UniqueViolation: "unique",
    psycopg.errors.ForeignKeyViolation: "foreign_key",
    psycopg.errors.CheckViolation: "check",
    psycopg.errors.NotNullViolation: "not_null",
}


def translate(exc: psycopg.Error) -> DatabaseError:
    for cls, kind in _CONSTRAINT_KINDS.items():
        if isinstance(exc, cls):
            return ConstraintViolation(kind, exc.diag.constraint_name)
    if isinstance(exc, PoolTimeout | psycopg.OperationalError | psycopg.InterfaceError):
        return DatabaseUnavailable(type(exc).__name__)
    log.error("database error: %s (%s)", type(exc).__name__, exc.sqlstate)
    return DatabaseError(type(exc).__name__)


def _check_if_spoken_to(conn: psycopg.Connection[Any]) -> None:
    """Check a pooled connection only if the server sent it something while idle.

    An idle autocommit connection hears nothing unless the server is going away
    (a restart sends a FATAL, then closes; a crash closes): then its socket is
    readable and the full check (a round trip) finds it broken, so the pool replaces
    it. Otherwise the round trip is skipped -- it doubled the cost of every write
    batch and lookup under load.
    """
    # poll, not select: a server with a thousand charger sockets opens its pool
    # connections above select()'s descriptor limit (1024), where every check failed
    # and the pool discarded good connections until requests timed out.
    poller = select.poll()
    poller.register(conn.fileno(), select.POLLIN)
    if poller.poll(0):
        ConnectionPool.check_connection(conn)


class Database:
    """A pool of autocommit connections reached from Trio through worker threads."""

    def __init__(self, url: str, *, min_size: int = 2, max_size: int = 10,
                 timeout: float = 5.0) -> None:
        self._url = url
        self._pool = ConnectionPool(
            url,
            min_size=min_size,
            max_size=max_size,
            open=False,
            timeout=timeout,
            # A connection that fails is not retried in the background with
            # growing back-off (which after an outage leaves the pool empty for
            # up to a minute): it is dropped, and the next request that needs a
            # connection opens one at once.
            reconnect_timeout=0,
            # A connection cut by a database restart is found (and replaced)
            # before use, not by a charger's message failing on it.
            check=_check_if_spoken_to,
            kwargs={"autocommit": True, "row_factory": dict_row},
            configure=_configure,
            name="autimit",
        )
        self._limiter = trio.CapacityLimiter(max_size)

    async def open(self, *, wait_seconds: float = 10.0) -> None:
        def open_pool() -> None:
            self._pool.open(wait=True, timeout=wait_seconds)

        try:
            await trio.to_thread.run_sync(open_pool)
        except psycopg.Error as exc:
            raise translate(exc) from None

    async def close(self) -> None:
        await trio.to_thread.run_sync(self._pool.close)

    @property
    def max_size(self) -> int:
        """Connections the pool may open."""
        return self._pool.max_size

    def pool_stats(self) -> dict[str, int]:
        """psycopg_pool's counters (pool_size, pool_available, requests_waiting, ...)."""
        return self._pool.get_stats()

    async def run(self, work: Callable[[psycopg.Connection[Row]], T]) -> T:
        """Run `work(conn)` in a worker thread with a pooled connection.

        Not abandoned on cancel: a commit in flight finishes, so what the
        database says and what the caller was told never disagree.
        """

        def in_thread() -> T:
            with self._pool.connection() as conn:
                return work(conn)

        try:
            return await trio.to_thread.run_sync(in_thread, limiter=self._limiter)
        except psycopg.Error as exc:
            raise translate(exc) from None
        except UnicodeEncodeError:
            # A lone surrogate ("\ud800" in JSON) cannot be sent to PostgreSQL at all;
            # callers clean or refuse such text first, this keeps a miss a plain error.
            raise UnstorableValue("text that cannot be encoded for PostgreSQL") from None

    async def fetch_one(self, sql: str, params: Params = None) -> Row | None:
        return await self.run(lambda conn: conn.execute(sql, params).fetchone())

    async def fetch_all(self, sql: str, params: Params = None) -> list[Row]:
        return await self.run(lambda conn: conn.execute(sql, params).fetchall())

    async def execute(self, sql: str, params: Params = None) -> int:
        return await self.run(lambda conn: conn.execute(sql, params).rowcount)

    async def listen(self, channels: tuple[str, ...],
                     on_notify: Callable[[str, str], None]) -> None:
        """LISTEN on `channels` with a dedicated connection; call `on_notify(channel,
        payload)` for each notification until cancelled. Raises DatabaseUnavailable
        when the connection is lost (the caller decides to retry)."""

        def connect() -> psycopg.Connection[Any]:
            conn = psycopg.connect(self._url, autocommit=True, connect_timeout=10)
            for channel in channels:
                conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
            return conn

        def received(conn: psycopg.Connection[Any]) -> list[tuple[str, str]]:
            # timeout=0: only what already arrived; never blocks the event loop
            return [(n.channel, n.payload) for n in conn.notifies(timeout=0.0)]

        try:
            conn = await trio.to_thread.run_sync(connect)
        except psycopg.Error as exc:
            raise translate(exc) from None
        try:
            while True:
                for channel, payload in received(conn):
                    on_notify(channel, payload)
                # Waited on in Trio, not in a thread with a poll timeout, so a
                # cancellation (shutdown) ends the wait at once.
                await trio.lowlevel.wait_readable(conn.fileno())
        except psycopg.Error as exc:
            raise translate(exc) from None
        finally:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(conn.close)
