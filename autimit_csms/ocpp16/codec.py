"""OCPP-J 1.6 RPC framing (OCPP-J §4): text <-> Call / CallResult / CallError, and error codes.

Owns the wire format only: JSON with exact Decimal numbers, frame structure, the 1.6 error
spellings, `OcppError` (which carries the CALLERROR to send) and the text of a frame as it may
be logged (`redact_for_log`). It must stay pure and synchronous: no I/O, no schema validation
(see `schemas`), no connection state (see `protocol`).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from decimal import Decimal, DecimalException
from enum import StrEnum
from typing import Any, Final

import orjson

CALL: Final = 2
CALLRESULT: Final = 3
CALLERROR: Final = 4
MAX_UNIQUE_ID_LENGTH: Final = 36  # OCPP-J §4.1.4
# The deepest 1.6 frame (SetChargingProfile ... chargingSchedulePeriod[i]) is 6 levels; the
# bound keeps every recursive step after decoding (validation, encoding, storing) shallow.
MAX_DEPTH: Final = 32
# 1.6 numbers are 32-bit integers and decimals of a few digits (OCPP 1.6 §7); a bound on the
# literal keeps exact arithmetic on them (multipleOf, unit conversion, numeric columns) cheap.
MAX_NUMBER_LENGTH: Final = 50
MAX_EXPONENT: Final = 100
REDACTED: Final = "<redacted>"


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


class _Unreadable(ValueError):
    """Well-formed JSON that no frame may hold; the message is the CALLERROR description."""


def _parse_decimal(literal: str) -> Decimal:
    try:
        number = Decimal(literal)
    except DecimalException:  # an exponent beyond what Decimal can hold
        raise _Unreadable("number out of range") from None
    if len(literal) > MAX_NUMBER_LENGTH or abs(number.adjusted()) > MAX_EXPONENT:
        raise _Unreadable("number out of range")
    return number


def _parse_int(literal: str) -> int:
    if len(literal) > MAX_NUMBER_LENGTH:
        raise _Unreadable("number out of range")
    return int(literal)


def _too_deep(value: Any) -> bool:
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        for child in node.values() if isinstance(node, dict) else node:
            if isinstance(child, dict | list):
                if depth >= MAX_DEPTH:
                    return True
                stack.append((child, depth + 1))
    return False


# Built once: json.loads with these arguments builds a decoder (and its scanner) per call.
_DECODER: Final = json.JSONDecoder(parse_float=_parse_decimal, parse_int=_parse_int,
                                   parse_constant=_reject_constant)


def _loads(text: str) -> Any:
    """JSON text -> value, numbers exact and bounded, nesting bounded; ValueError if not."""
    try:
        value = _DECODER.decode(text)
    except RecursionError:  # the C scanner stops at the interpreter's recursion limit
        value = None
    else:
        if not isinstance(value, dict | list) or not _too_deep(value):
            return value
    raise _Unreadable(f"nested deeper than {MAX_DEPTH} levels")


# OCPP-J §4.1.3: a CALL is `[2, "<uniqueId>", ...`. When the rest of the text cannot be read,
# these first two members still can, and answering them stops the charger's retries.
_CALL_PREFIX: Final = re.compile(
    r"[ \t\n\r]*\[[ \t\n\r]*2[ \t\n\r]*,[ \t\n\r]*"
    r'(?:("(?:[^"\\\x00-\x1f]|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4}){0,72}")'
    r"|(-?(?:0|[1-9][0-9]{0,35})(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)(?![0-9.eE]))"
)


def call_id_prefix(text: str) -> str | None:
    """The unique id of a text that starts like a CALL, however broken the rest is.

    A JSON string of at most 36 characters, or a number, which is answered as the string
    the charger wrote (`[2, 5, ...` -> "5"); anything else (null, true, an object, a longer
    string) cannot be read and gets no answer.
    """
    match = _CALL_PREFIX.match(text)
    if match is None:
        return None
    if match[2] is not None:
        return match[2] if len(match[2]) <= MAX_UNIQUE_ID_LENGTH else None
    unique_id: str = json.loads(match[1])
    return unique_id if len(unique_id) <= MAX_UNIQUE_ID_LENGTH else None


def decode(text: str) -> Message:
    """Parse one WebSocket text frame; raise `OcppError` if it is not a well-formed frame."""
    try:
        frame = _loads(text)
    except ValueError as error:  # JSONDecodeError, NaN/Infinity, out of bounds
        description = str(error) if isinstance(error, _Unreadable) else "not valid JSON"
        raise OcppError(ErrorCode.FormationViolation, description, call_id_prefix(text)) from None
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
            ErrorCode.FormationViolation,
            "unique id is not a string",
            call_id_prefix(text) if answerable else None,
            answerable=answerable,
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
    """Any JSON value, compact, numbers exact (Decimal stays as written).

    orjson writes it when it can -- a MeterValues' rows in 1.6 µs instead of 20 µs
    here -- and this module's encoder when orjson refuses (a lone surrogate, an
    integer beyond 64 bits, a non-finite Decimal). One difference: orjson writes a
    non-finite float as null; none reaches here (payloads parse numbers as Decimal,
    and the REST API refuses NaN and Infinity with 400).
    """
    try:
        return orjson.dumps(value, default=_exact_decimal).decode()
    except TypeError:  # orjson.JSONEncodeError
        parts: list[str] = []
        _encode_value(value, parts)
        return "".join(parts)


def _exact_decimal(value: Any) -> orjson.Fragment:
    if isinstance(value, Decimal) and value.is_finite():
        return orjson.Fragment(str(value))
    raise TypeError


_SURROGATE: Final = re.compile("[\ud800-\udfff]")


def _encode_str(text: str) -> str:
    # A lone surrogate cannot be sent as UTF-8; escaped (\ud800) it is still the same string,
    # so a charger's odd unique id is echoed exactly.
    if text.isascii() or _SURROGATE.search(text) is None:
        return json.encoder.encode_basestring(text)
    return json.encoder.encode_basestring_ascii(text)


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


# Id tags are personal data and the AuthorizationKey a credential (security whitepaper
# A01.FR.08): neither may reach a log, whichever message carries them.
_REDACTED_MEMBERS: Final = frozenset({"idTag", "parentIdTag"})
_USERINFO: Final = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/?#@\s\"]+@")
_REDACTED_MEMBER_TEXT: Final = re.compile(
    r'("(?:idTag|parentIdTag)"\s*:\s*)("(?:[^"\\]|\\.)*"?|[^,\]}]*)'
)
_VALUE_MEMBER_TEXT: Final = re.compile(r'("value"\s*:\s*)("(?:[^"\\]|\\.)*"?|[^,\]}]*)')


def redact_for_log(text: str) -> str:
    """The text of a frame (either direction) as it may be logged.

    Id tags (`idTag`, `parentIdTag`, wherever they appear: Authorize, Start/StopTransaction,
    idTagInfo, SendLocalList, RemoteStartTransaction, ReserveNow), the value of the
    `AuthorizationKey` configuration key and the password of a URL are replaced by
    `REDACTED`. A frame that is not JSON is redacted by pattern.
    """
    try:
        frame = _loads(text)
    except ValueError:
        text = _REDACTED_MEMBER_TEXT.sub(rf'\1"{REDACTED}"', text)
        if "AuthorizationKey" in text:
            text = _VALUE_MEMBER_TEXT.sub(rf'\1"{REDACTED}"', text)
        return _USERINFO.sub(rf"\1{REDACTED}@", text)
    redacted = _redact(frame)
    return text if redacted is frame else encode_json(redacted)


def _redact(value: Any) -> Any:
    """`value` itself when nothing in it is secret, else a redacted copy."""
    if isinstance(value, str):
        return _USERINFO.sub(rf"\1{REDACTED}@", value) if "@" in value else value
    if isinstance(value, list):
        items = [_redact(item) for item in value]
        return value if all(a is b for a, b in zip(items, value, strict=True)) else items
    if not isinstance(value, dict):
        return value
    secret_value = value.get("key") == "AuthorizationKey"  # ChangeConfiguration, its .conf
    members = {
        key: REDACTED
        if key in _REDACTED_MEMBERS or (secret_value and key == "value")
        else _redact(item)
        for key, item in value.items()
    }
    return value if all(members[k] is v for k, v in value.items()) else members
