"""What each charger-initiated OCPP 1.6 message does: one function per action.

Owns: the routing table ROUTES (action -> handler) and the StationContext a
handler sees. A handler takes the validated payload, writes through the
group-commit writer (committed before it returns) and returns the .conf payload.
It never touches the socket; raising DatabaseError makes the session answer
CALLERROR InternalError, so the charger retries (OCPP-J errata §3.2).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Final

from ..ocpp16 import CHARGER_TO_CSMS
from .context import InvalidCall, StationContext
from .lifecycle import (
    boot_notification,
    data_transfer,
    heartbeat,
    notification,
    progress_notification,
    sign_certificate,
    status_notification,
)
from .transactions import authorize, meter_values, start_transaction, stop_transaction

Handler = Callable[[StationContext, dict[str, Any]], Awaitable[dict[str, Any]]]

ROUTES: Final[dict[str, Handler]] = {
    "BootNotification": boot_notification,
    "Heartbeat": heartbeat,
    "StatusNotification": status_notification,
    "Authorize": authorize,
    "StartTransaction": start_transaction,
    "StopTransaction": stop_transaction,
    "MeterValues": meter_values,
    "DataTransfer": data_transfer,
    "DiagnosticsStatusNotification": progress_notification("DiagnosticsStatusNotification"),
    "FirmwareStatusNotification": progress_notification("FirmwareStatusNotification"),
    "SecurityEventNotification": notification("SecurityEventNotification"),
    "SignedFirmwareStatusNotification": notification("SignedFirmwareStatusNotification"),
    "LogStatusNotification": notification("LogStatusNotification"),
    "SignCertificate": sign_certificate,
}

# Every charger-initiated action of OCPP 1.6 and the security whitepaper is
# routed; start-up fails here rather than a charger finding the gap.
if set(ROUTES) != set(CHARGER_TO_CSMS):
    raise RuntimeError(f"unrouted actions: {sorted(set(CHARGER_TO_CSMS) ^ set(ROUTES))}")

__all__ = ["ROUTES", "Handler", "InvalidCall", "StationContext"]
