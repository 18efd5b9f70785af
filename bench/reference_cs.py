"""Reference central system for bench/perf.py: the usual Python OCPP 1.6 server.

    .venv/bin/python bench/reference_cs.py --listen 127.0.0.1:9100

The PyPI `ocpp` library (v16 ChargePoint, one `@on` handler per charger-initiated
action, its own JSON-schema validation of every payload) on `websockets` (asyncio,
subprotocol ocpp1.6, path /ocpp/1.6/{code}), as its documentation shows it. It answers
every CALL at once and stores nothing: no database, no authentication (an Authorization
header is ignored), no WebSocket pings (as the CSMS under test runs with
AUTIMIT_WS_PING_INTERVAL=0). bench/perf.py starts it in its own process, pinned like the
CSMS, and measures it with the same load generator.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import itertools
import logging
import resource
import signal
from typing import Any

from ocpp.routing import on
from ocpp.v16 import ChargePoint as Cp
from ocpp.v16 import call_result
from ocpp.v16.datatypes import IdTagInfo
from ocpp.v16.enums import (
    Action,
    AuthorizationStatus,
    DataTransferStatus,
    GenericStatus,
    RegistrationStatus,
)
from websockets.asyncio.server import ServerConnection, serve

_transaction_ids = itertools.count(1)


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _accepted() -> IdTagInfo:
    return IdTagInfo(status=AuthorizationStatus.accepted)


class ChargePoint(Cp):
    """Every charger-initiated action of OCPP 1.6 (and of the security whitepaper)."""

    @on(Action.boot_notification)
    def on_boot_notification(self, **_: Any) -> call_result.BootNotification:
        return call_result.BootNotification(current_time=_now(), interval=300,
                                            status=RegistrationStatus.accepted)

    @on(Action.heartbeat)
    def on_heartbeat(self, **_: Any) -> call_result.Heartbeat:
        return call_result.Heartbeat(current_time=_now())

    @on(Action.status_notification)
    def on_status_notification(self, **_: Any) -> call_result.StatusNotification:
        return call_result.StatusNotification()

    @on(Action.meter_values)
    def on_meter_values(self, **_: Any) -> call_result.MeterValues:
        return call_result.MeterValues()

    @on(Action.authorize)
    def on_authorize(self, **_: Any) -> call_result.Authorize:
        return call_result.Authorize(id_tag_info=_accepted())

    @on(Action.start_transaction)
    def on_start_transaction(self, **_: Any) -> call_result.StartTransaction:
        return call_result.StartTransaction(transaction_id=next(_transaction_ids),
                                            id_tag_info=_accepted())

    @on(Action.stop_transaction)
    def on_stop_transaction(self, **_: Any) -> call_result.StopTransaction:
        return call_result.StopTransaction(id_tag_info=_accepted())

    @on(Action.data_transfer)
    def on_data_transfer(self, **_: Any) -> call_result.DataTransfer:
        return call_result.DataTransfer(status=DataTransferStatus.accepted)

    @on(Action.diagnostics_status_notification)
    def on_diagnostics_status_notification(
            self, **_: Any) -> call_result.DiagnosticsStatusNotification:
        return call_result.DiagnosticsStatusNotification()

    @on(Action.firmware_status_notification)
    def on_firmware_status_notification(self, **_: Any) -> call_result.FirmwareStatusNotification:
        return call_result.FirmwareStatusNotification()

    @on(Action.log_status_notification)
    def on_log_status_notification(self, **_: Any) -> call_result.LogStatusNotification:
        return call_result.LogStatusNotification()

    @on(Action.security_event_notification)
    def on_security_event_notification(
            self, **_: Any) -> call_result.SecurityEventNotification:
        return call_result.SecurityEventNotification()

    @on(Action.sign_certificate)
    def on_sign_certificate(self, **_: Any) -> call_result.SignCertificate:
        return call_result.SignCertificate(status=GenericStatus.accepted)

    @on(Action.signed_firmware_status_notification)
    def on_signed_firmware_status_notification(
            self, **_: Any) -> call_result.SignedFirmwareStatusNotification:
        return call_result.SignedFirmwareStatusNotification()


async def on_connect(connection: ServerConnection) -> None:
    path = connection.request.path if connection.request else ""
    prefix = "/ocpp/1.6/"
    if not path.startswith(prefix) or connection.subprotocol != "ocpp1.6":
        await connection.close()
        return
    try:
        await ChargePoint(path[len(prefix):], connection).start()
    except Exception:  # noqa: BLE001 - the charger went away (ConnectionClosed and kin)
        return


async def main(host: str, port: int) -> None:
    stop = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set_result, None)
    async with serve(on_connect, host, port, subprotocols=["ocpp1.6"],  # type: ignore[list-item]
                     ping_interval=None, backlog=4096):
        await stop


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--listen", default="127.0.0.1:9100")
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args()
    logging.basicConfig(level=args.log_level)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    listen_host, _, listen_port = args.listen.rpartition(":")
    asyncio.run(main(listen_host, int(listen_port)))
