"""ADR 0002 retention without TimescaleDB policies: placeholder while it is written (issue 10)."""

from __future__ import annotations

import trio

from .db import Database


async def run(db: Database, mode: str, shutdown: trio.Event, *,
              task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    task_status.started()
    await shutdown.wait()
