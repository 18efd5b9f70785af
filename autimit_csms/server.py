"""The root nursery: what runs, who owns it, and the order of a graceful shutdown.

    trio.run(main)
    └── Server.run: root nursery
        ├── GroupCommitWriter.run         (outlives everything that submits to it)
        └── front nursery
            ├── CommandBus.run            (LISTEN/NOTIFY: commands for our stations)
            ├── REST API                  (api.serve_api, Hypercorn Trio worker)
            ├── OCPP listener             (stations.listener; one task per connection)
            ├── housekeeping              (heartbeat watchdog, in the OCPP listener)
            └── retention                 (ADR 0002 retention without policies; optional)

Dependency direction: ocpp16 <- handlers <- stations <- server -> api; db is used
by handlers, api and stations. Shutdown: stop accepting, close the chargers'
connections (1001) and give them and API requests in flight at most
`shutdown_grace` seconds -- it ends as soon as they are done, not at the
deadline -- then close the writer, which commits what it holds.
"""

from __future__ import annotations

import gc
import logging
from dataclasses import dataclass, field
from typing import Any

import trio

from . import metrics, retention
from .api.app import create_app
from .api.serve import serve_api
from .credentials import Verifier
from .db import Database
from .db.writer import GroupCommitWriter
from .ocpp16 import SchemaRegistry
from .settings import Settings
from .stations import OcppService, SessionRegistry
from .stations.commands import CommandBus

log = logging.getLogger(__name__)


@dataclass
class Server:
    settings: Settings
    db: Database
    verifier: Verifier = field(default_factory=Verifier)
    schemas: SchemaRegistry = field(default_factory=SchemaRegistry)  # compiled once
    sessions: SessionRegistry = field(default_factory=SessionRegistry)
    api_urls: list[str] = field(default_factory=list)
    ocpp_port: int = 0
    grace_expired: bool = False  # set by run(): the grace deadline had to cut something off
    _stop: trio.Event = field(default_factory=trio.Event)

    def stop(self) -> None:
        self._stop.set()

    async def run(self, *, task_status: trio.TaskStatus[Server] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        settings = self.settings
        assert settings.admin_token, "checked by serve()"
        self.writer = GroupCommitWriter(self.db)
        metrics.register(self)
        async with trio.open_nursery() as root:
            await root.start(self.writer.run)
            shutdown = trio.Event()
            self.ocpp = OcppService(settings, self.db, self.writer, self.verifier, self.schemas,
                                    self.sessions)
            try:
                async with trio.open_nursery() as front:
                    self.commands = CommandBus(self.db, self.writer, self.sessions,
                                               settings.command_timeout,
                                               settings.node_silence)
                    await front.start(self.commands.run, shutdown)
                    app = create_app(self.db, admin_token=settings.admin_token,
                                     public_ocpp_url=settings.public_ocpp_url,
                                     verifier=self.verifier, commands=self.commands,
                                     schemas=self.schemas)
                    requests = app.asgi_app = _RequestsInFlight(app.asgi_app)
                    api = trio.CancelScope()

                    async def run_api(task_status: trio.TaskStatus[list[str]]) -> None:
                        with api:
                            await serve_api(app, settings.api_listen, certfile=settings.tls_cert,
                                            keyfile=settings.tls_key, shutdown=shutdown,
                                            reuse_port=settings.reuse_port,
                                            task_status=task_status)

                    async def stop_api() -> None:
                        # Hypercorn keeps an idle keep-alive connection until its own
                        # graceful_timeout (quart-trio cancels the idle timer that would
                        # close it); once no request is in flight nothing is lost by
                        # cancelling it.
                        await shutdown.wait()
                        await requests.idle()
                        api.cancel()

                    self.api_urls = await front.start(run_api)
                    front.start_soon(stop_api)
                    log.info("REST API on %s", ", ".join(self.api_urls))
                    self.ocpp_port = await front.start(self.ocpp.serve, shutdown)
                    # also when off: it says once where compression is unavailable
                    await front.start(retention.run, self.db, settings.retention, shutdown)
                    task_status.started(self)
                    await self._stop.wait()
                    log.info("shutting down: %.0f s grace for open connections",
                             settings.shutdown_grace)
                    shutdown.set()
                    front.cancel_scope.deadline = trio.current_time() + settings.shutdown_grace
                self.grace_expired = front.cancel_scope.cancel_called
                if self.grace_expired:
                    log.warning("shutdown grace of %.0f s expired; the rest was cancelled",
                                settings.shutdown_grace)
            finally:
                # Also when cancelled: nothing submits any more, so the writer
                # commits what it holds and returns.
                self.writer.close()
        metrics.unregister(self)
        log.info("stopped")


class _RequestsInFlight:
    """ASGI middleware counting HTTP requests being answered."""

    def __init__(self, app: Any) -> None:
        self._app = app
        self._count = 0
        self._idle = trio.Event()
        self._idle.set()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        if not self._count:
            self._idle = trio.Event()
        self._count += 1
        try:
            await self._app(scope, receive, send)
        finally:
            self._count -= 1
            if not self._count:
                self._idle.set()

    async def idle(self) -> None:
        while self._count:
            await self._idle.wait()


def tune_gc() -> None:
    """The cyclic collector set for a server, not a script (once everything is started).

    CPython collects its youngest generation every 700 net allocations. With thousands
    of connections and messages waiting on their commit, that promoted every message's
    objects to the old generation and made full collections of half a million objects
    frequent: at 5,000 stations the collector took half the server's CPU (measured with
    gc.callbacks; docs/performance.md). At 20,000 allocations its pauses stay in
    milliseconds, and the objects made at start-up (schemas, the app) are frozen out of
    every collection.
    """
    gc.freeze()
    gc.set_threshold(20_000, 10, 10)


async def serve(settings: Settings) -> None:
    """`autimit-csms serve`: run until SIGINT or SIGTERM."""
    import signal

    if not settings.database_url:
        raise ValueError("a database URL is required (--database-url / AUTIMIT_DATABASE_URL)")
    if not settings.admin_token:
        raise ValueError("an admin token is required (--admin-token / AUTIMIT_ADMIN_TOKEN)")
    db = Database(settings.database_url, max_size=settings.db_pool_size)
    await db.open()
    try:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:
                server = await nursery.start(Server(settings, db).run)
                tune_gc()
                async for signum in signals:
                    log.info("received %s", signal.Signals(signum).name)
                    server.stop()
                    break
    finally:
        await db.close()
