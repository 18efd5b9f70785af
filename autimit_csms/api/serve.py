"""Serving the API app with Hypercorn's Trio worker, inside the caller's nursery."""

from __future__ import annotations

import logging

import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from quart_trio import QuartTrio


async def serve_api(app: QuartTrio, listen: str, *, certfile: str | None = None,
                    keyfile: str | None = None, shutdown: trio.Event,
                    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve until `shutdown` is set; `task_status.started` gets the bound URLs."""
    config = Config()
    config.bind = [listen]
    config.certfile, config.keyfile = certfile, keyfile
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")  # ours, not a second stderr
    config.graceful_timeout = 5
    await serve(app, config, shutdown_trigger=shutdown.wait,  # type: ignore[arg-type]
                task_status=task_status)
