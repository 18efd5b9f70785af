"""The group-commit writer on a real database: one unstorable item fails alone; the
pool's connection check.

A lone surrogate in a parameter is refused by psycopg before PostgreSQL sees it, with
a Python UnicodeEncodeError rather than a driver error; it once escaped the writer
and stopped the whole server. Whatever an item holds, its own waiter gets a
DatabaseError and every other item of the batch is committed.
"""

from __future__ import annotations

import os
import resource
import uuid

import httpx
import psycopg
import pytest
import trio

from autimit_csms.db import SQL, Database, DatabaseError
from autimit_csms.db.database import _check_if_spoken_to
from autimit_csms.db.writer import GroupCommitWriter
from autimit_csms.ocpp16.codec import encode_json

from ..stations.conftest import provision, rows

INSERT = "INSERT INTO accounts (id, name, document) VALUES (%(id)s, %(name)s, 'D')"


@pytest.mark.parametrize("bad_name", ["lone \ud800 surrogate", "nul \x00 inside"])
async def test_one_unstorable_item_fails_alone(db: Database, db_url: str,
                                               bad_name: str) -> None:
    writer = GroupCommitWriter(db)
    good = [uuid.uuid4() for _ in range(5)]
    outcomes: dict[str, object] = {}

    async def submit(key: str, account_id: uuid.UUID, name: str) -> None:
        try:
            await writer.submit(INSERT, {"id": account_id, "name": name})
            outcomes[key] = "ok"
        except DatabaseError as err:
            outcomes[key] = err

    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run)
        async with trio.open_nursery() as clients:  # all queued before the first batch runs
            for number, account_id in enumerate(good):
                clients.start_soon(submit, f"good-{number}", account_id, f"Account {number}")
            clients.start_soon(submit, "bad", uuid.uuid4(), bad_name)
        # the writer still works after the failure
        await writer.submit(INSERT, {"id": uuid.uuid4(), "name": "after"})
        writer.close()

    assert isinstance(outcomes.pop("bad"), DatabaseError)
    assert set(outcomes.values()) == {"ok"} and len(outcomes) == 5
    stored = {r[0] for r in rows(db_url, "SELECT id FROM accounts")}
    assert set(good) <= stored and len(stored) == 6


async def test_heartbeats_of_a_batch_share_one_statement(api: httpx.AsyncClient, db: Database,
                                                         db_url: str) -> None:
    """Merged heartbeats (ADR 0002: UPDATE state + INSERT history) lose no beat, and a
    station beating twice in one batch keeps its latest as its state."""
    one = uuid.UUID((await provision(api, "HB-1")).id)
    two = uuid.UUID((await provision(api, "HB-2")).id)
    beats = [(one, "2026-12-03T10:00:00+00:00"), (two, "2026-12-03T10:00:01+00:00"),
             (one, "2026-12-03T10:00:05+00:00"), (one, "2026-12-03T10:00:02+00:00")]
    writer = GroupCommitWriter(db)
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run)
        async with trio.open_nursery() as clients:  # all queued before the first batch runs
            for station, at in beats:
                clients.start_soon(writer.submit, SQL.heartbeat, {"rows": encode_json(
                    [{"station_id": str(station), "at": at}])})
        writer.close()
    assert writer.stats.batch_sizes.total == 4 and sum(writer.stats.batch_sizes.counts) == 1
    stored = rows(db_url, "SELECT station_id, count(*) FROM station_heartbeat_events "
                          "GROUP BY station_id")
    assert dict(stored) == {one: 3, two: 1}
    state = dict(rows(db_url, "SELECT station_id, last_heartbeat_at::text "
                              "FROM station_runtime_state"))
    assert state[one] == "2026-12-03 10:00:05+00"
    assert state[two] == "2026-12-03 10:00:01+00"


def test_pool_check_works_above_select_descriptor_limit(db_url: str) -> None:
    """A server holding over a thousand charger sockets opens pool connections on
    descriptors above 1024, where select() fails: the check must still pass them."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1200:
        pytest.skip(f"needs 1,200 descriptors, the hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1200), hard))
    fillers = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        with psycopg.connect(db_url, autocommit=True) as conn:
            assert conn.fileno() >= 1024
            _check_if_spoken_to(conn)  # nothing sent while idle: no round trip, no error
            # the server speaks to an idle connection (here: a notice of our own asking)
            conn.execute("LISTEN pool_check; NOTIFY pool_check")
            _check_if_spoken_to(conn)  # readable: the full check runs, and passes
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        for fd in fillers:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
