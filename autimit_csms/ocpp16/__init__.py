"""OCPP-J 1.6 for the CSMS, sans-I/O: codec, schema registry, per-connection protocol state.

Pure and synchronous: nothing here may import trio, psycopg or a socket library, so every
rule can be tested with literal strings (tests/ocpp16).
"""

from .codec import (
    REDACTED,
    Call,
    CallError,
    CallResult,
    ErrorCode,
    Message,
    OcppError,
    decode,
    encode,
    redact_for_log,
)
from .protocol import (
    CallInProgress,
    CallReceived,
    ErrorReceived,
    Event,
    Ignored,
    OcppProtocol,
    Rejected,
    ResultReceived,
)
from .schemas import (
    CHARGER_TO_CSMS,
    CSMS_TO_CHARGER,
    KNOWN_ACTIONS,
    SchemaRegistry,
    error_code_for,
)

__all__ = [
    "CHARGER_TO_CSMS",
    "CSMS_TO_CHARGER",
    "KNOWN_ACTIONS",
    "REDACTED",
    "Call",
    "CallError",
    "CallInProgress",
    "CallReceived",
    "CallResult",
    "ErrorCode",
    "ErrorReceived",
    "Event",
    "Ignored",
    "Message",
    "OcppError",
    "OcppProtocol",
    "Rejected",
    "ResultReceived",
    "SchemaRegistry",
    "decode",
    "encode",
    "error_code_for",
    "redact_for_log",
]
