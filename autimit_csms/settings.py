"""Settings of `autimit-csms serve` and `dev`: each a flag that also reads AUTIMIT_*.

Owns: names, defaults, parsing of listen addresses. Nothing here opens sockets.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, fields
from typing import Any, Final


@dataclass(frozen=True)
class Settings:
    database_url: str | None = None
    ocpp_listen: str = "0.0.0.0:9000"
    api_listen: str = "127.0.0.1:8080"
    admin_token: str | None = None
    public_ocpp_url: str = "wss://ws.autimit.com/ocpp/1.6"
    tls_cert: str | None = None
    tls_key: str | None = None
    heartbeat_interval: int = 300        # seconds, sent in BootNotification.conf
    offline_after_heartbeats: float = 3  # watchdog: silent this many intervals -> offline
    ws_ping_interval: float = 60         # seconds; 0 disables server pings
    max_frame_bytes: int = 65536         # larger frames close the connection with 1009
    db_pool_size: int = 10
    shutdown_grace: float = 10           # seconds connections get to finish on SIGTERM
    command_timeout: float = 30          # seconds a command waits for the charger's answer
    node_silence: float = 10             # a process silent this long holds no station (offline)
    retention: str = "off"               # ADR 0002 retention by housekeeping: enforce|dry-run|off
    workers: int = 1                     # processes on the same ports (SO_REUSEPORT)
    reuse_port: bool = False             # set for each of them by workers.py, not a flag
    # Limits (docs/ocpp.md "Limits and floods"); 0 disables each.
    max_connections: int = 20000         # open OCPP connections per process (mind `ulimit -n`)
    max_connections_per_source: int = 2000  # per IPv4 address / IPv6 /64: chargers behind NAT
    auth_failures_per_source: int = 60   # failed handshakes a minute before throttling
    auth_failures_per_station: int = 10  # the same, per station code (known or not)
    max_calls_per_second: float = 20     # frames a connection may send, after a burst of
    call_burst: int = 500                # ... this many (an offline queue being replayed)


# (name, type, help): flag --name-with-dashes, env AUTIMIT_NAME; the contract first.
_OPTIONS: list[tuple[str, type, str]] = [
    ("database_url", str, "PostgreSQL URL (required for serve)"),
    ("ocpp_listen", str, "host:port of the OCPP-J listener"),
    ("api_listen", str, "host:port of the REST API"),
    ("admin_token", str, "bearer token with every right (required for serve)"),
    ("public_ocpp_url", str, "OCPP URL given to chargers; the station code is appended"),
    ("tls_cert", str, "PEM certificate: serve WSS and HTTPS"),
    ("tls_key", str, "PEM private key for --tls-cert"),
    ("heartbeat_interval", int, "heartbeat interval in seconds told to chargers"),
    ("offline_after_heartbeats", float, "mark a silent station offline after N intervals"),
    ("ws_ping_interval", float, "seconds between WebSocket pings (0 = off)"),
    ("max_frame_bytes", int, "largest accepted OCPP frame in bytes"),
    ("db_pool_size", int, "database connections per process"),
    ("shutdown_grace", float, "seconds open connections get to finish at shutdown"),
    ("command_timeout", float, "seconds an API command waits for the charger (then 504)"),
    ("node_silence", float, "seconds without a process heartbeat before its stations are "
                            "marked offline"),
    ("max_connections", int, "open OCPP connections per process (then HTTP 503)"),
    ("max_connections_per_source", int, "open OCPP connections per source address (then 503)"),
    ("auth_failures_per_source", int, "failed handshakes a minute per source before throttling"),
    ("auth_failures_per_station", int, "failed handshakes a minute per station code before "
                                       "throttling"),
    ("workers", int, "processes serving the same ports (SO_REUSEPORT), each a full node"),
    ("retention", str, "enforce ADR 0002's retention without TimescaleDB policies: "
                       "enforce, dry-run (report only) or off"),
    ("max_calls_per_second", float, "frames a second one connection may send (then reading waits)"),
    ("call_burst", int, "frames a connection may send at once before the pace applies"),
]


def env_name(field: str) -> str:
    return "AUTIMIT_" + field.upper()


def add_arguments(parser: argparse.ArgumentParser, *, only: set[str] | None = None) -> None:
    defaults = Settings()
    for name, kind, text in _OPTIONS:
        if only is not None and name not in only:
            continue
        # An empty variable is unset (compose files write `AUTIMIT_TLS_CERT=` for "none").
        default: Any = os.environ.get(env_name(name)) or getattr(defaults, name)
        parser.add_argument(
            "--" + name.replace("_", "-"), dest=name, type=kind,
            default=kind(default) if default is not None else None,
            help=f"{text} [env {env_name(name)}; default {getattr(defaults, name)!r}]",
        )


RETENTION_MODES: Final = ("enforce", "dry-run", "off")


def from_args(args: argparse.Namespace, **overrides: Any) -> Settings:
    values = {f.name: getattr(args, f.name) for f in fields(Settings) if hasattr(args, f.name)}
    values.update(overrides)
    for name in ("database_url", "admin_token", "tls_cert", "tls_key"):
        if values.get(name) == "":
            values[name] = None  # `--tls-cert ""` means no TLS, not a file named ""
    settings = Settings(**values)
    if settings.workers < 1:
        raise ValueError("--workers must be at least 1")
    if settings.retention not in RETENTION_MODES:
        raise ValueError(f"--retention must be one of {', '.join(RETENTION_MODES)}")
    return settings


def split_listen(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"listen address must be host:port, got {listen!r}")
    return host.strip("[]") or "0.0.0.0", int(port)
