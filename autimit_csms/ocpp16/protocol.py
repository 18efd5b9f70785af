"""Per-connection OCPP-J 1.6 protocol state, sans-I/O (in the manner of h11 / wsproto).

Owns the RPC rules of one station connection: which charger CALLs await our answer, the one
CALL we may have outstanding (OCPP-J §4.1.1, errata §3.4), matching answers to it, making
every string the charger sends storable, and validating both directions. Fed text, returns
events and texts to send; it must not do I/O, know about time (the caller times out and calls
`cancel_call`) or decide business outcomes.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from .codec import Call, CallError, CallResult, ErrorCode, OcppError, decode, encode
from .schemas import CHARGER_TO_CSMS, CSMS_TO_CHARGER, SchemaRegistry


@dataclass(frozen=True, slots=True)
class CallReceived:
    """A schema-valid CALL from the charger; answer it with `answer` or `answer_error`.

    `warnings` name what was corrected or tolerated (NUL characters removed, relaxed mode):
    the message is processed, and the warnings are for the log.
    """

    call: Call
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ResultReceived:
    """The charger's CALLRESULT to our outstanding CALL.

    `error` is set when the payload breaks the response schema: the charger did answer, but
    badly, and the command's caller must learn that rather than time out.
    """

    action: str
    result: CallResult
    error: OcppError | None = None
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ErrorReceived:
    """The charger's CALLERROR to our outstanding CALL."""

    action: str
    error: CallError
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Rejected:
    """A CALL refused at protocol level; send `reply` (a CALLERROR) unless it is None."""

    reply: str | None
    error: OcppError


@dataclass(frozen=True, slots=True)
class Ignored:
    """A frame dropped without answer (OCPP-J §4.1.3); log `reason`, the connection stays up."""

    reason: str


Event = CallReceived | ResultReceived | ErrorReceived | Rejected | Ignored


class CallInProgress(Exception):
    """`send_call` while our previous CALL is unanswered (OCPP-J §4.1.1: one at a time)."""


def _uuid4() -> str:
    return str(uuid.uuid4())


_SURROGATE: Final = re.compile("[\ud800-\udfff]")


def _storable(value: Any, path: str, warnings: list[str]) -> Any:
    """`value` with every string (object keys too) one that PostgreSQL can store.

    C firmware pads fixed buffers with NULs ("ABB\\u0000\\u0000"), which text and jsonb
    refuse; a lone UTF-16 surrogate ("\\ud800") cannot be encoded at all. Left in, either
    turns the message into an InternalError the charger retries forever, so NULs are dropped
    and lone surrogates become U+FFFD, each said in a warning naming the member, not its value.
    """
    if isinstance(value, str):
        text, problem = _storable_str(value)
        if problem:
            warnings.append(f"{path[:100] or 'payload'}: {problem}")
        return text
    if isinstance(value, list):
        return [_storable(item, f"{path}/{index}", warnings) for index, item in enumerate(value)]
    if isinstance(value, dict):
        members: dict[str, Any] = {}
        for key, item in value.items():
            name, problem = _storable_str(key)
            member = f"{path}/{name}" if path else name
            if problem:
                warnings.append(f"{member[:100]}: {problem} in the member name")
            members[name] = _storable(item, member, warnings)
        return members
    return value


def _storable_str(text: str) -> tuple[str, str]:
    """The storable text, and what was changed ("" if nothing)."""
    if "\x00" not in text and (text.isascii() or _SURROGATE.search(text) is None):
        return text, ""
    problems: list[str] = []
    if "\x00" in text:
        text = text.replace("\x00", "")
        problems.append("NUL characters removed")
    if _SURROGATE.search(text) is not None:
        text = _SURROGATE.sub("\ufffd", text)
        problems.append("lone surrogates replaced by U+FFFD")
    return text, " and ".join(problems)


class OcppProtocol:
    def __init__(
        self,
        registry: SchemaRegistry,
        id_factory: Callable[[], str] = _uuid4,
        *,
        relaxed: bool = False,
    ) -> None:
        self._registry = registry
        self._new_id = id_factory
        self.relaxed = relaxed
        self._in_progress: set[str] = set()
        self._outstanding: tuple[str, str] | None = None  # (unique id, action)

    @property
    def outstanding_call(self) -> str | None:
        """Unique id of our unanswered CALL, if any."""
        return None if self._outstanding is None else self._outstanding[0]

    def receive(self, text: str) -> Event:
        """The event for one text frame from the charger; never raises."""
        try:
            message = decode(text)
        except OcppError as error:
            if not error.answerable:
                return Ignored(str(error))
            return self._reject(error)
        warnings: list[str] = []
        if isinstance(message, Call):
            # In an ASCII frame a NUL or a lone surrogate can only be a \u escape (the
            # JSON decoder refuses raw control characters): most frames skip the walk.
            payload = (_storable(message.payload, "", warnings)
                       if "\\u" in text or not text.isascii() else message.payload)
            return self._receive_call(Call(message.unique_id, message.action, payload), warnings)
        if self._outstanding is None or message.unique_id != self._outstanding[0]:
            kind = "CALLRESULT" if isinstance(message, CallResult) else "CALLERROR"
            return Ignored(f"{kind} for unknown or timed-out id {message.unique_id!r}")
        action = self._outstanding[1]
        self._outstanding = None
        # Answers to commands are stored (jsonb) as well.
        if isinstance(message, CallError):
            call_error = CallError(
                message.unique_id,
                _storable(message.error_code, "errorCode", warnings),
                _storable(message.description, "errorDescription", warnings),
                _storable(message.details, "errorDetails", warnings),
            )
            return ErrorReceived(action, call_error, warnings)
        result = CallResult(message.unique_id, _storable(message.payload, "", warnings))
        try:
            warnings += self._registry.validate_response(
                action, result.payload, relaxed=self.relaxed
            )
        except OcppError as error:
            return ResultReceived(action, result, error, warnings)
        return ResultReceived(action, result, None, warnings)

    def _receive_call(self, call: Call, warnings: list[str]) -> Event:
        unique_id = call.unique_id
        if unique_id in self._in_progress:
            return self._reject(
                OcppError(ErrorCode.ProtocolError, "duplicate id in progress", unique_id)
            )
        if not self._registry.is_known(call.action):
            return self._reject(OcppError(ErrorCode.NotImplemented, "unknown action", unique_id))
        if call.action not in CHARGER_TO_CSMS:
            return self._reject(
                OcppError(ErrorCode.NotSupported, "action not sent by charge points", unique_id)
            )
        try:
            warnings += self._registry.validate_request(
                call.action, call.payload, relaxed=self.relaxed
            )
        except OcppError as error:
            return self._reject(OcppError(error.code, error.description, unique_id))
        self._in_progress.add(unique_id)
        return CallReceived(call, warnings)

    @staticmethod
    def _reject(error: OcppError) -> Rejected:
        call_error = error.to_call_error()
        return Rejected(None if call_error is None else encode(call_error), error)

    def answer(self, call: Call, payload: dict[str, Any]) -> str:
        """Encode the CALLRESULT for `call`.

        A payload that breaks the response schema is our bug: `OcppError(InternalError)` is
        raised and the call stays open so the caller can still `answer_error` it.
        """
        self._require_in_progress(call.unique_id)
        try:
            self._registry.validate_response(call.action, payload)
        except OcppError as error:
            raise OcppError(
                ErrorCode.InternalError, f"invalid {call.action}.conf: {error.description}"
            ) from error
        self._in_progress.discard(call.unique_id)
        return encode(CallResult(call.unique_id, payload))

    def answer_error(self, call_or_unique_id: Call | str, code: str, description: str = "") -> str:
        """Encode a CALLERROR for a CALL in progress (errata §3.2: failure to process)."""
        unique_id = (
            call_or_unique_id.unique_id
            if isinstance(call_or_unique_id, Call)
            else call_or_unique_id
        )
        self._require_in_progress(unique_id)
        self._in_progress.discard(unique_id)
        return encode(CallError(unique_id, code, description))

    def _require_in_progress(self, unique_id: str) -> None:
        if unique_id not in self._in_progress:
            raise ValueError(f"no CALL {unique_id!r} awaits an answer")

    def send_call(self, action: str, payload: dict[str, Any]) -> tuple[str, str]:
        """Validate and encode our CALL; return (unique id, text) and expect its answer."""
        if self._outstanding is not None:
            raise CallInProgress(
                f"{self._outstanding[1]} {self._outstanding[0]!r} is still unanswered"
            )
        if action not in CSMS_TO_CHARGER:
            raise OcppError(ErrorCode.NotSupported, f"{action[:50]!r} is not sent by a CSMS")
        self._registry.validate_request(action, payload)
        unique_id = self._new_id()
        # Members in the schema's order: some firmware parses rigidly.
        text = encode(Call(unique_id, action, self._registry.in_schema_order(action, payload)))
        self._outstanding = (unique_id, action)
        return unique_id, text

    def cancel_call(self) -> None:
        """Forget our outstanding CALL (timed out); a late answer becomes `Ignored`."""
        self._outstanding = None
