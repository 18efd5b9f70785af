"""Applying the SQL files a DBA would apply with psql: no DDL lives in Python.

Owns: locating `schema.sql` / `timescale_policies.sql` and running them, each as
one script, on a plain blocking connection (used from the CLI, before Trio); and
`upgrade`, which runs the numbered steps of `db/migrations/` a database has not
recorded in `schema_version`, each file as it is (its own BEGIN ... COMMIT).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import psycopg
import psycopg.errors

from .database import DatabaseUnavailable
from .statements import SQL

ROOT: Final = Path(__file__).resolve().parents[2]
SCHEMA: Final = ROOT / "schema.sql"
TIMESCALE_POLICIES: Final = ROOT / "timescale_policies.sql"
MIGRATIONS: Final = Path(__file__).resolve().parent / "migrations"
# pg_try_advisory_lock key of `db upgrade` (the bytes of "autimit\x01")
UPGRADE_LOCK_KEY: Final = int.from_bytes(b"autimit\x01", "big")
_STEP_FILE: Final = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


class UpgradeError(ValueError):
    """`db upgrade` cannot go on; the message says why and what to do (a ValueError,
    so the CLI prints it as one line and exits 2)."""


@dataclass(frozen=True)
class Step:
    version: int
    name: str
    path: Path


def apply(database_url: str, *, timescale: bool = False) -> list[str]:
    """Apply schema.sql (and timescale_policies.sql); return the server's notices."""
    notices: list[str] = []
    files = [SCHEMA, TIMESCALE_POLICIES] if timescale else [SCHEMA]
    try:
        with psycopg.connect(database_url, autocommit=True, connect_timeout=10) as conn:
            conn.add_notice_handler(
                lambda diag: notices.append(f"{diag.severity}: {diag.message_primary}"))
            for path in files:
                # psycopg runs a parameterless multi-statement string with the
                # simple query protocol, like psql -f.
                conn.execute(path.read_bytes())
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailable(str(exc).splitlines()[0]) from None
    return notices


def steps() -> list[Step]:
    """The upgrade steps shipped with this version, numbered 1, 2, 3... without gaps."""
    found = []
    for path in sorted(MIGRATIONS.glob("*.sql")):
        match = _STEP_FILE.match(path.name)
        if not match:
            raise RuntimeError(f"{path.name}: upgrade steps are named NNNN_name.sql")
        found.append(Step(int(match[1]), match[2], path))
    if [step.version for step in found] != list(range(1, len(found) + 1)):
        raise RuntimeError(f"upgrade steps in {MIGRATIONS} are not numbered 1..{len(found)}")
    return found


def upgrade(database_url: str) -> list[str]:
    """Apply the steps `schema_version` lacks, in order, each in its own transaction;
    return what was done, one line each.

    A database without schema_version rows (and with the tables of some
    schema.sql) predates versioning: it counts as version 0 and gets every step;
    each step checks the catalog and changes only what its database lacks, so one
    list of steps serves every earlier schema.sql.
    """
    known = steps()
    latest = known[-1].version
    lines: list[str] = []

    def warned(diag: psycopg.errors.Diagnostic) -> None:
        if diag.severity not in ("NOTICE", "DEBUG", "LOG", "INFO"):  # not "already exists"
            lines.append(f"{diag.severity}: {diag.message_primary}")

    try:
        with psycopg.connect(database_url, autocommit=True, connect_timeout=10) as conn:
            conn.add_notice_handler(warned)
            if not _row(conn, SQL.upgrade_try_lock, {"key": UPGRADE_LOCK_KEY})[0]:
                raise UpgradeError("another `db upgrade` is running on this database")
            versioned, has_schema = _row(conn, SQL.schema_version_state)
            applied = ({row[0] for row in conn.execute(SQL.schema_versions_applied)}
                       if versioned else set())
            if not applied and not has_schema:
                raise UpgradeError("this database has no Autimit schema to upgrade; "
                                   "create one with `autimit-csms db apply`")
            if not applied:
                lines.append("no schema_version rows: a database made by a schema.sql from "
                             "before versioning (version 0); applying every step")
            elif max(applied) > latest:
                raise UpgradeError(
                    f"the database is at version {max(applied)}, newer than this "
                    f"autimit-csms knows (version {latest}); upgrade autimit-csms first")
            ran = 0
            for step in known:
                if step.version in applied:
                    continue
                try:
                    conn.execute(step.path.read_bytes())
                except psycopg.Error as exc:
                    if conn.broken:
                        raise
                    reason = exc.diag.message_primary or type(exc).__name__
                    raise UpgradeError(
                        f"step {step.path.name} failed and was rolled back ({reason}); "
                        f"steps applied: {sorted(applied) or 'none'}") from None
                applied.add(step.version)
                ran += 1
                lines.append(f"applied {step.path.name}")
            lines.append(f"schema at version {latest}" if ran else
                         f"schema already at version {latest}; nothing to do")
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailable(str(exc).splitlines()[0]) from None
    return lines


def _row(conn: psycopg.Connection[tuple[Any, ...]], statement: str,
         params: dict[str, object] | None = None) -> tuple[Any, ...]:
    row = conn.execute(statement, params).fetchone()
    assert row is not None  # the statements above always return one row
    return row
