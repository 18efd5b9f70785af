"""Serving the API app with Hypercorn's Trio worker, inside the caller's nursery."""

from __future__ import annotations

import logging

import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from quart_trio import QuartTrio

from ..workers import shared_socket


async def serve_api(app: QuartTrio, listen: str, *, certfile: str | None = None,
                    keyfile: str | None = None, shutdown: trio.Event, reuse_port: bool = False,
                    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve until `shutdown` is set; `task_status.started` gets the bound URLs.
    `reuse_port`: one of several worker processes on the same port (workers.py)."""
    config = Config()
    # Hypercorn owns the descriptor from here (fd://), so ours lets it go.
    config.bind = [f"fd://{shared_socket(listen).detach()}" if reuse_port else listen]
    config.certfile, config.keyfile = certfile, keyfile
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")  # ours, not a second stderr
    config.graceful_timeout = 5
    await serve(app, config, shutdown_trigger=shutdown.wait,  # type: ignore[arg-type]
                task_status=task_status)
