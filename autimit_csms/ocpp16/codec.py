"""OCPP-J 1.6 RPC framing (OCPP-J §4): text <-> Call / CallResult / CallError, and error codes.

Owns the wire format only: JSON with exact Decimal numbers, frame structure, the 1.6 error
spellings and `OcppError`, which carries the CALLERROR to send. It must stay pure and
synchronous: no I/O, no schema validation (see `schemas`), no connection state (see `protocol`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Any, Final

CALL: Final = 2
CALLRESULT: Final = 3
CALLERROR: Final = 4
MAX_UNIQUE_ID_LENGTH: Final = 36  # OCPP-J §4.1.4


class ErrorCode(StrEnum):
    """CALLERROR codes as spelled by OCPP-J 1.6 §4.2.3 (kept by errata §5; not the 2.x spelling)."""

    NotImplemented = "NotImplemented"
    NotSupported = "NotSupported"
    InternalError = "InternalError"
    ProtocolError = "ProtocolError"
    SecurityError = "SecurityError"
    FormationViolation = "FormationViolation"
    PropertyConstraintViolation = "PropertyConstraintViolation"
    OccurenceConstraintViolation = "OccurenceConstraintViolation"
    TypeConstraintViolation = "TypeConstraintViolation"
    GenericError = "GenericError"


@dataclass(frozen=True, slots=True)
class Call:
    unique_id: str
    action: str
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class CallResult:
    unique_id: str
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class CallError:
    unique_id: str
    error_code: str
    description: str = ""
    details: dict[str, Any] = field(default_factory=dict)


Message = Call | CallResult | CallError


class OcppError(Exception):
    """A frame or payload that breaks OCPP; carries what to answer, if anything.

    `answerable` is False for frames that are not CALLs: a CALLRESULT or CALLERROR is never
    answered, and unknown message type numbers are ignored (OCPP-J §4.1.3).
    """

    def __init__(
        self,
        code: str,
        description: str = "",
        unique_id: str | None = None,
        *,
        answerable: bool = True,
    ) -> None:
        super().__init__(f"{code}: {description}" if description else code)
        self.code = code
        self.description = description
        self.unique_id = unique_id
        self.answerable = answerable

    def to_call_error(self) -> CallError | None:
        if not self.answerable or self.unique_id is None:
            return None
        return CallError(self.unique_id, self.code, self.description)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def decode(text: str) -> Message:
    """Parse one WebSocket text frame; raise `OcppError` if it is not a well-formed frame."""
    try:
        frame = json.loads(text, parse_float=Decimal, parse_constant=_reject_constant)
    except ValueError:  # JSONDecodeError and NaN/Infinity
        raise OcppError(ErrorCode.FormationViolation, "not valid JSON") from None
    if not isinstance(frame, list) or not frame:
        raise OcppError(ErrorCode.FormationViolation, "frame is not a non-empty JSON array")

    unique_id = frame[1] if len(frame) > 1 and isinstance(frame[1], str) else None
    message_type = frame[0]
    if type(message_type) is not int:
        raise OcppError(ErrorCode.FormationViolation, "message type is not a number", unique_id)
    if message_type not in (CALL, CALLRESULT, CALLERROR):
        raise OcppError(
            ErrorCode.ProtocolError,
            f"unknown message type {message_type}",
            unique_id,
            answerable=False,
        )

    answerable = message_type == CALL
    if unique_id is None:
        raise OcppError(
            ErrorCode.FormationViolation, "unique id is not a string", answerable=answerable
        )
    if len(unique_id) > MAX_UNIQUE_ID_LENGTH:
        raise OcppError(
            ErrorCode.ProtocolError,
            f"unique id longer than {MAX_UNIQUE_ID_LENGTH} characters",
            unique_id,
            answerable=answerable,
        )

    def malformed(what: str) -> OcppError:
        return OcppError(ErrorCode.FormationViolation, what, unique_id, answerable=answerable)

    # A null payload is read as {}: OCPP-J §4.1 only "prefers" {} over null, and firmware
    # in the field sends null for empty payloads (Heartbeat, ClearCache.conf).
    if message_type == CALL:
        if len(frame) != 4:
            raise malformed("CALL must have 4 elements")
        action, payload = frame[2], frame[3]
        if not isinstance(action, str):
            raise malformed("action is not a string")
        if payload is None:
            payload = {}
        if not isinstance(payload, dict):
            raise malformed("payload is not an object")
        return Call(unique_id, action, payload)

    if message_type == CALLRESULT:
        if len(frame) != 3:
            raise malformed("CALLRESULT must have 3 elements")
        payload = {} if frame[2] is None else frame[2]
        if not isinstance(payload, dict):
            raise malformed("payload is not an object")
        return CallResult(unique_id, payload)

    # CALLERROR. Details are tolerated when missing (some firmware sends 4 elements).
    if len(frame) not in (4, 5):
        raise malformed("CALLERROR must have 5 elements")
    error_code, description = frame[2], frame[3]
    details = frame[4] if len(frame) == 5 else {}
    if not isinstance(error_code, str) or not isinstance(description, str):
        raise malformed("error code and description must be strings")
    if not isinstance(details, dict):
        raise malformed("error details is not an object")
    return CallError(unique_id, error_code, description, details)


def encode(message: Message) -> str:
    """Serialize a frame as compact UTF-8 JSON, numbers exact, keys in the payload's order."""
    if isinstance(message, Call):
        frame: list[Any] = [CALL, message.unique_id, message.action, message.payload]
    elif isinstance(message, CallResult):
        frame = [CALLRESULT, message.unique_id, message.payload]
    elif isinstance(message, CallError):
        frame = [
            CALLERROR,
            message.unique_id,
            message.error_code,
            message.description,
            message.details,
        ]
    else:
        raise TypeError(f"not an OCPP message: {type(message).__name__}")
    parts: list[str] = []
    _encode_value(frame, parts)
    return "".join(parts)


def encode_json(value: Any) -> str:
    """Any JSON value, compact, numbers exact (Decimal stays as written)."""
    parts: list[str] = []
    _encode_value(value, parts)
    return "".join(parts)


_encode_str = json.encoder.encode_basestring  # ensure_ascii=False


def _encode_value(value: Any, out: list[str]) -> None:
    # json.dumps cannot emit a Decimal as a bare number without a float round trip, which
    # turns 11.10 into 11.1 (or 0.30000000000000004); hence this small encoder.
    if isinstance(value, str):
        out.append(_encode_str(value))
    elif value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, int):
        out.append(int.__repr__(value))
    elif isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"{value} cannot be encoded as JSON")
        out.append(str(value))
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{value} cannot be encoded as JSON")
        out.append(float.__repr__(value))
    elif isinstance(value, dict):
        out.append("{")
        first = True
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"object keys must be strings, not {type(key).__name__}")
            if not first:
                out.append(",")
            first = False
            out.append(_encode_str(key))
            out.append(":")
            _encode_value(item, out)
        out.append("}")
    elif isinstance(value, list | tuple):
        out.append("[")
        for index, item in enumerate(value):
            if index:
                out.append(",")
            _encode_value(item, out)
        out.append("]")
    else:
        raise TypeError(f"{type(value).__name__} is not JSON serializable")
