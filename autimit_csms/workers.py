"""`serve --workers N`: N processes on the same ports, each a full node.

Owns: the supervisor (a plain process, no Trio) that starts N worker processes,
passes SIGTERM/SIGINT on to them, restarts one that dies while the rest run, and
exits when all have stopped; and `shared_socket`, the listening socket every worker
binds with SO_REUSEPORT so the kernel spreads new connections over them. Each
worker is the ordinary single-process server (server.serve): its own pool, writer,
command bus and node row, so commands reach any station through PostgreSQL exactly
as between separate machines (docs/operator-guide.md, several nodes).
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import multiprocessing.connection
import signal
import socket
import time
from typing import Any, Final

from .settings import Settings, split_listen

log = logging.getLogger(__name__)

RESTART_PAUSE: Final = 1.0  # seconds before a worker that died is started again
STOP_TIMEOUT: Final = 60.0  # seconds past --shutdown-grace before a worker is killed


def shared_socket(listen: str) -> socket.socket:
    """A listening TCP socket on `listen` that other processes may bind too."""
    host, port = split_listen(listen)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(4096)
    return sock


def _worker(settings: Settings, index: int, log_level: str, log_format: str) -> None:
    import trio

    from . import logs
    from .server import serve

    logs.configure(log_level, log_format)
    # A worker stops on SIGTERM from the supervisor; Ctrl-C in a terminal reaches the
    # whole process group, and the supervisor passes it on anyway.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    log.info("worker %d of %d started", index + 1, settings.workers)
    trio.run(serve, dataclasses.replace(
        settings, workers=1, reuse_port=True,
        # retention once per deployment is enough; worker 1 does it
        retention=settings.retention if index == 0 else "off"))


def supervise(settings: Settings, log_level: str, log_format: str) -> int:
    """Run `settings.workers` workers until SIGTERM/SIGINT; the exit status is 0 when
    every worker stopped cleanly."""
    for listen in (settings.ocpp_listen, settings.api_listen):
        if split_listen(listen)[1] == 0:
            raise ValueError("--workers needs fixed ports (not :0) for the OCPP and API "
                             "listeners: every worker binds the same ones")
    context = multiprocessing.get_context("spawn")
    stopping = False

    def start(index: int) -> Any:
        process = context.Process(target=_worker, name=f"autimit-worker-{index + 1}",
                                  args=(settings, index, log_level, log_format))
        process.start()
        return process

    def stop(signum: int, _frame: Any) -> None:
        nonlocal stopping
        if not stopping:
            log.info("received %s; stopping %d workers", signal.Signals(signum).name,
                     settings.workers)
        stopping = True
        for process in workers.values():
            if process.is_alive() and process.pid is not None:
                process.terminate()  # SIGTERM: each shuts down gracefully

    workers = {index: start(index) for index in range(settings.workers)}
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    failed = False
    deadline: float | None = None
    while workers:
        if stopping and deadline is None:
            deadline = time.monotonic() + settings.shutdown_grace + STOP_TIMEOUT
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        ready = multiprocessing.connection.wait(
            [p.sentinel for p in workers.values()], timeout=timeout)
        if not ready and deadline is not None:
            for process in workers.values():
                log.error("worker %s did not stop in time; killed", process.name)
                process.kill()
                failed = True
            deadline = time.monotonic() + 5
            continue
        for index, process in list(workers.items()):
            if process.sentinel not in ready:
                continue
            process.join()
            del workers[index]
            if stopping:
                failed |= process.exitcode != 0
                continue
            log.error("worker %d exited with %s; starting it again in %.0f s", index + 1,
                      process.exitcode, RESTART_PAUSE)
            time.sleep(RESTART_PAUSE)
            if not stopping:
                workers[index] = start(index)
    log.info("all workers stopped")
    return 1 if failed else 0
