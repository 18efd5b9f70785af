"""Property-based tests of the codec and the protocol: any text gets a specified answer.

`decode` returns a Message or raises OcppError; `OcppProtocol.receive` returns an Event for
any str and never raises; a reply is always a sendable 1.6 CALLERROR; a readable CALL id is
always answered; valid frames round-trip exactly; what reaches a handler is storable; what
reaches a log holds no id tag.
"""

import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from autimit_csms.ocpp16.codec import (
    MAX_UNIQUE_ID_LENGTH,
    Call,
    CallError,
    CallResult,
    ErrorCode,
    Message,
    OcppError,
    call_id_prefix,
    decode,
    encode,
    encode_json,
    redact_for_log,
)
from autimit_csms.ocpp16.protocol import (
    CallReceived,
    ErrorReceived,
    Event,
    Ignored,
    OcppProtocol,
    Rejected,
    ResultReceived,
)
from autimit_csms.ocpp16.schemas import KNOWN_ACTIONS, SchemaRegistry

REGISTRY = SchemaRegistry()
FUZZ = settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

# every code point, lone surrogates and NUL included (text from a fuzzer need not be UTF-8)
ANY_CHAR = st.characters(exclude_categories=())
ANY_TEXT = st.text(ANY_CHAR, max_size=40)

# numbers within the codec's bounds, as Decimal or int
DECIMALS = st.builds(
    lambda sign, digits, exponent: Decimal((sign, tuple(digits), exponent)),
    st.integers(0, 1),
    st.lists(st.integers(0, 9), min_size=1, max_size=30),
    st.integers(-60, 60),
).filter(lambda d: str(d) != "-0")  # "-0" reads back as the integer 0
INTEGERS = st.integers(-(10**30), 10**30)
JSON = st.recursive(
    st.none() | st.booleans() | INTEGERS | DECIMALS | ANY_TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(ANY_TEXT, inner, max_size=4),
    max_leaves=12,
)
PAYLOADS = st.dictionaries(ANY_TEXT, JSON, max_size=5)
UNIQUE_IDS = st.text(ANY_CHAR, max_size=MAX_UNIQUE_ID_LENGTH)
ACTIONS = st.sampled_from(sorted(KNOWN_ACTIONS)) | ANY_TEXT
MESSAGES: st.SearchStrategy[Message] = st.one_of(
    st.builds(Call, UNIQUE_IDS, ACTIONS, PAYLOADS),
    st.builds(CallResult, UNIQUE_IDS, PAYLOADS),
    st.builds(CallError, UNIQUE_IDS, ANY_TEXT, ANY_TEXT, PAYLOADS),
)

# text that looks like frames: JSON-ish tokens, glued together in any order
TOKENS = st.sampled_from(
    [
        "[", "]", "{", "}", ",", ":", " ", "2", "3", "4", "7", "-", "0", "5", "2.0", "1e999",
        "1e99999999999999999999", "9" * 60, "NaN", "Infinity", "-Infinity", "null", "true",
        '"', '"a"', '"id-1"', '"Heartbeat"', '"BootNotification"', '"Authorize"',
        '"StatusNotification"', '"idTag"', '"\\u0000"', '"\\ud800"', '"\\', "\\u", "\x00",
        "\ud800", '"connectorId"', '"chargePointVendor"', '"x' + "y" * 40 + '"',
    ]  # fmt: skip
)
FRAME_LIKE = st.lists(TOKENS, max_size=30).map("".join)


def frames_and_texts() -> st.SearchStrategy[str]:
    valid = MESSAGES.map(encode)
    return st.one_of(st.text(ANY_CHAR), FRAME_LIKE, valid, valid.flatmap(_mutated))


def _mutated(text: str) -> st.SearchStrategy[str]:
    """A valid frame cut short, or with one character dropped or inserted."""
    positions = st.integers(0, len(text))
    return st.one_of(
        positions.map(lambda i: text[:i]),
        positions.map(lambda i: text[:i] + text[i + 1 :]),
        st.tuples(positions, ANY_CHAR).map(lambda p: text[: p[0]] + p[1] + text[p[0] :]),
    )


def assert_sendable_callerror(reply: str) -> list[Any]:
    reply.encode("utf-8")  # a WebSocket text frame must be UTF-8
    frame = json.loads(reply)  # strict JSON: no NaN, no control characters
    assert isinstance(frame, list) and len(frame) == 5, reply
    assert frame[0] == 4
    assert isinstance(frame[1], str) and len(frame[1]) <= MAX_UNIQUE_ID_LENGTH
    assert frame[2] in {code.value for code in ErrorCode}
    assert isinstance(frame[3], str) and frame[4] == {}
    return frame


def assert_storable(value: Any) -> None:
    """PostgreSQL text/jsonb take it: no NUL, UTF-8-encodable, keys included."""
    if isinstance(value, str):
        assert "\x00" not in value
        value.encode("utf-8")
    elif isinstance(value, dict):
        for key, item in value.items():
            assert_storable(key)
            assert_storable(item)
    elif isinstance(value, list):
        for item in value:
            assert_storable(item)


@FUZZ
@given(frames_and_texts())
@example("[" * 100_000)
@example('[2,"deep",' + "[" * 100_000)
@example('{"a":' * 50_000)
@example('[2,"n","Heartbeat",{"x":1e99999999999999999999}]')
@example('[2,"n","Heartbeat",{"x":' + "9" * 10_000 + "}]")
@example('[2,"n","Heartbeat",NaN]')
@example('[2,"n","Heartbeat",-Infinity]')
@example('[2,"\\ud800","Heartbeat",{}]')
@example('[2,"\ud800","Heartbeat",{}]')
@example('[2,"\\u0000","Heartbeat",{\x00}]')
def test_decode_returns_a_message_or_raises_ocpp_error(text: str) -> None:
    try:
        message = decode(text)
    except OcppError as error:
        call_error = error.to_call_error()
        if call_error is not None:
            assert_sendable_callerror(encode(call_error))
        return
    assert isinstance(message, Call | CallResult | CallError)
    encode(message).encode("utf-8")


@FUZZ
@given(frames_and_texts(), st.booleans())
@example("[" * 100_000, False)
@example('[2,"n","StartTransaction",{"connectorId":1e99999999999999999999}]', False)
@example('[2,"s","StatusNotification",{"info":"\\ud800","status":"\\u0000"}]', True)
def test_receive_never_raises_and_answers_every_readable_call(text: str, relaxed: bool) -> None:
    protocol = OcppProtocol(REGISTRY, relaxed=relaxed)
    protocol.send_call("GetConfiguration", {})  # so that answers can match
    event: Event = protocol.receive(text)
    assert isinstance(event, CallReceived | ResultReceived | ErrorReceived | Rejected | Ignored)
    if isinstance(event, Rejected) and event.reply is not None:
        assert_sendable_callerror(event.reply)
    readable = call_id_prefix(text)
    if readable is not None:  # a CALL whose id can be read is never met with silence
        if isinstance(event, CallReceived):
            assert event.call.unique_id == readable
        else:
            assert isinstance(event, Rejected) and event.reply is not None, event
            assert json.loads(event.reply)[1] == readable
    if isinstance(event, CallReceived):
        assert_storable(event.call.payload)
        assert event.call.action in KNOWN_ACTIONS
        for warning in event.warnings:
            assert_storable(warning)
    if isinstance(event, ResultReceived):
        assert_storable(event.result.payload)
    if isinstance(event, ErrorReceived):
        assert_storable([event.error.error_code, event.error.description, event.error.details])


@FUZZ
@given(MESSAGES)
def test_valid_frames_round_trip_exactly(message: Message) -> None:
    text = encode(message)
    text.encode("utf-8")  # lone surrogates go out escaped
    decoded = decode(text)
    assert decoded == message
    assert encode(decoded) == text


@FUZZ
@given(st.lists(DECIMALS, min_size=1, max_size=10))
def test_decimal_numbers_are_exact(numbers: list[Decimal]) -> None:
    text = encode(CallResult("a", {"n": numbers}))
    decoded = decode(text)
    assert isinstance(decoded, CallResult)
    assert [str(n) for n in decoded.payload["n"]] == [str(n) for n in numbers]


@FUZZ
@given(
    st.builds(Call, UNIQUE_IDS, ACTIONS, PAYLOADS),
    st.integers(0, 10_000),
)
def test_a_call_cut_after_its_id_is_answered_with_that_id(call: Call, cut: int) -> None:
    text = encode(call)
    id_end = len("[2," + encode_json(call.unique_id))
    broken = text[: id_end + cut % (len(text) - id_end)]  # never the whole frame
    event = OcppProtocol(REGISTRY).receive(broken)
    assert isinstance(event, Rejected) and event.reply is not None
    assert assert_sendable_callerror(event.reply)[1:3] == [call.unique_id, "FormationViolation"]


TAG = "ZQXTAG0471"
KEY = "ZQXKEY0815"
TAG_TEXT = st.text(st.characters(codec="ascii", exclude_characters="ZQ"), max_size=30)
TAGGED = st.recursive(
    st.none() | st.integers() | TAG_TEXT,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(TAG_TEXT, inner, max_size=3),
        st.builds(lambda rest: {**rest, "idTag": TAG}, st.dictionaries(TAG_TEXT, inner)),
        st.just({"idTagInfo": {"status": "Accepted", "parentIdTag": TAG}}),
        st.just({"key": "AuthorizationKey", "value": KEY}),
    ),
    max_leaves=10,
)


@FUZZ
@given(
    st.builds(
        Call,
        UNIQUE_IDS.filter(lambda s: "ZQX" not in s),
        st.sampled_from(sorted(KNOWN_ACTIONS)),
        st.builds(lambda rest: {**rest, "idTag": TAG}, st.dictionaries(TAG_TEXT, TAGGED)),
    ),
    st.integers(0, 10_000),
)
def test_logged_frames_hold_no_id_tag_or_key(call: Call, cut: int) -> None:
    text = encode(call)
    for logged in (redact_for_log(text), redact_for_log(text[: cut % len(text)])):
        assert TAG not in logged and KEY not in logged, logged
    assert redact_for_log(encode(CallResult("a", call.payload))).count(TAG) == 0


@pytest.mark.parametrize("depth", [31, 32, 33, 1000, 100_000])
def test_depth_is_bounded_exactly(depth: int) -> None:
    text = '[3,"a",{"x":' + "[" * (depth - 2) + "]" * (depth - 2) + "}]"
    if depth <= 32:
        assert isinstance(decode(text), CallResult)
    else:
        with pytest.raises(OcppError, match="nested deeper than 32 levels"):
            decode(text)
