"""Applying the SQL files a DBA would apply with psql: no DDL lives in Python.

Owns: locating `schema.sql` / `timescale_policies.sql` and running them, each as
one script, on a plain blocking connection (used from the CLI, before Trio).
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

import psycopg

from .database import DatabaseUnavailable

ROOT: Final = Path(__file__).resolve().parents[2]
SCHEMA: Final = ROOT / "schema.sql"
TIMESCALE_POLICIES: Final = ROOT / "timescale_policies.sql"


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
