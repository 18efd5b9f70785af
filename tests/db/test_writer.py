"""The group-commit writer on a real database: one unstorable item fails alone.

A lone surrogate in a parameter is refused by psycopg before PostgreSQL sees it, with
a Python UnicodeEncodeError rather than a driver error; it once escaped the writer
and stopped the whole server. Whatever an item holds, its own waiter gets a
DatabaseError and every other item of the batch is committed.
"""

from __future__ import annotations

import uuid

import pytest
import trio

from autimit_csms.db import Database, DatabaseError
from autimit_csms.db.writer import GroupCommitWriter

from ..stations.conftest import rows

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
