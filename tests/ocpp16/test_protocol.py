"""Per-connection protocol rules, driven with literal frames (no sockets, no clock)."""

import itertools

import pytest

from autimit_csms.ocpp16.codec import Call, CallError, CallResult, ErrorCode, OcppError
from autimit_csms.ocpp16.protocol import (
    CallInProgress,
    CallReceived,
    ErrorReceived,
    Ignored,
    OcppProtocol,
    Rejected,
    ResultReceived,
)
from autimit_csms.ocpp16.schemas import SchemaRegistry

NOW = "2024-05-01T10:00:00Z"
HEARTBEAT = '[2,"a","Heartbeat",{}]'
STATUS_ERROR = (
    '[2,"s","StatusNotification",{"connectorId":1,"errorCode":"Error","status":"Faulted"}]'
)


@pytest.fixture(scope="module")
def registry() -> SchemaRegistry:
    return SchemaRegistry()


@pytest.fixture
def protocol(registry: SchemaRegistry) -> OcppProtocol:
    counter = itertools.count(1)
    return OcppProtocol(registry, lambda: f"m{next(counter)}")


def test_call_received_and_answered(protocol: OcppProtocol) -> None:
    event = protocol.receive(HEARTBEAT)
    assert event == CallReceived(Call("a", "Heartbeat", {}), [])
    assert protocol.answer(event.call, {"currentTime": NOW}) == f'[3,"a",{{"currentTime":"{NOW}"}}]'


@pytest.mark.parametrize(
    ("text", "reply"),
    [
        ('[2,"a","NoSuchAction",{}]', '[4,"a","NotImplemented","unknown action",{}]'),
        (
            '[2,"a","Reset",{"type":"Hard"}]',
            '[4,"a","NotSupported","action not sent by charge points",{}]',
        ),
        (
            '[2,"a","Authorize",{}]',
            '[4,"a","OccurenceConstraintViolation","\'idTag\' is a required property",{}]',
        ),
        (
            '[2,"a","Heartbeat",{"x":1}]',
            '[4,"a","PropertyConstraintViolation",'
            "\"Additional properties are not allowed ('x' was unexpected)\",{}]",
        ),
        ('[2,"a","Heartbeat"]', '[4,"a","FormationViolation","CALL must have 4 elements",{}]'),
        (
            f'[2,"{"x" * 37}","Heartbeat",{{}}]',
            f'[4,"{"x" * 37}","ProtocolError","unique id longer than 36 characters",{{}}]',
        ),
        ('[2, 5, "Heartbeat", {}]', '[4,"5","FormationViolation","unique id is not a string",{}]'),
        (
            '[2,"mv","MeterValues",{"connectorId":1,"meterValue":[{"timestamp":"x",'
            '"sampledValue":[,{"value":"1"}]}]}]',
            '[4,"mv","FormationViolation","not valid JSON",{}]',
        ),
        (
            '[2,"a","Authorize",{"idTag":"SECRET-TAG-4711-XXXXX"}]',
            '[4,"a","PropertyConstraintViolation","idTag: longer than 20 characters",{}]',
        ),
        ('[2, null, "Heartbeat", {}]', None),
        ("garbage", None),
    ],
)
def test_call_rejected(protocol: OcppProtocol, text: str, reply: str | None) -> None:
    event = protocol.receive(text)
    assert isinstance(event, Rejected)
    assert event.reply == reply


def test_schema_violation_reply_carries_mapped_code(protocol: OcppProtocol) -> None:
    event = protocol.receive(STATUS_ERROR)
    assert isinstance(event, Rejected)
    assert event.error.code == ErrorCode.PropertyConstraintViolation
    assert event.reply is not None and event.reply.startswith(
        '[4,"s","PropertyConstraintViolation","errorCode: \'Error\' is not one of'
    )


def test_relaxed_protocol_warns(registry: SchemaRegistry) -> None:
    event = OcppProtocol(registry, relaxed=True).receive(STATUS_ERROR)
    assert isinstance(event, CallReceived)
    assert event.warnings and event.warnings[0].startswith("errorCode: 'Error'")


def test_duplicate_id_in_progress(protocol: OcppProtocol) -> None:
    first = protocol.receive(HEARTBEAT)
    assert isinstance(first, CallReceived)
    duplicate = protocol.receive(HEARTBEAT)
    assert duplicate == Rejected(
        '[4,"a","ProtocolError","duplicate id in progress",{}]', duplicate.error
    )
    protocol.answer(first.call, {"currentTime": NOW})
    assert isinstance(protocol.receive(HEARTBEAT), CallReceived)


def test_invalid_answer_is_internal_error_and_call_stays_open(protocol: OcppProtocol) -> None:
    event = protocol.receive(HEARTBEAT)
    assert isinstance(event, CallReceived)
    with pytest.raises(OcppError) as caught:
        protocol.answer(event.call, {"currentTime": "now"})
    assert caught.value.code == ErrorCode.InternalError
    assert caught.value.to_call_error() is None
    assert protocol.answer_error(event.call, ErrorCode.InternalError) == (
        '[4,"a","InternalError","",{}]'
    )


def test_answer_only_once(protocol: OcppProtocol) -> None:
    event = protocol.receive(HEARTBEAT)
    assert isinstance(event, CallReceived)
    protocol.answer_error("a", ErrorCode.GenericError, "database unavailable")
    with pytest.raises(ValueError):
        protocol.answer(event.call, {"currentTime": NOW})
    with pytest.raises(ValueError):
        protocol.answer_error("a", ErrorCode.GenericError)


def test_send_call_and_match_result(protocol: OcppProtocol) -> None:
    unique_id, text = protocol.send_call("Reset", {"type": "Soft"})
    assert (unique_id, text) == ("m1", '[2,"m1","Reset",{"type":"Soft"}]')
    assert protocol.outstanding_call == "m1"
    event = protocol.receive('[3,"m1",{"status":"Accepted"}]')
    assert event == ResultReceived("Reset", CallResult("m1", {"status": "Accepted"}))
    assert protocol.outstanding_call is None
    assert protocol.send_call("ClearCache", {})[0] == "m2"


def test_one_outstanding_call(protocol: OcppProtocol) -> None:
    protocol.send_call("Reset", {"type": "Soft"})
    with pytest.raises(CallInProgress):
        protocol.send_call("ClearCache", {})


def test_crossing_calls_are_legal(protocol: OcppProtocol) -> None:
    protocol.send_call("Reset", {"type": "Soft"})
    assert isinstance(protocol.receive(HEARTBEAT), CallReceived)
    assert isinstance(protocol.receive('[3,"m1",{"status":"Accepted"}]'), ResultReceived)


def test_call_error_matched(protocol: OcppProtocol) -> None:
    protocol.send_call("Reset", {"type": "Soft"})
    event = protocol.receive('[4,"m1","NotSupported","",{}]')
    assert event == ErrorReceived("Reset", CallError("m1", "NotSupported"))
    assert protocol.outstanding_call is None


def test_bad_result_is_reported_to_the_caller(protocol: OcppProtocol) -> None:
    protocol.send_call("Reset", {"type": "Soft"})
    event = protocol.receive('[3,"m1",{"status":"Maybe"}]')
    assert isinstance(event, ResultReceived)
    assert event.error is not None
    assert event.error.code == ErrorCode.PropertyConstraintViolation
    assert protocol.outstanding_call is None


@pytest.mark.parametrize(
    "text",
    [
        '[3,"other",{"status":"Accepted"}]',
        '[4,"other","GenericError","",{}]',
        '[3,"m1",[]]',  # malformed answer: not trusted as the answer, the timeout handles it
        '[9,"m1"]',
    ],
)
def test_unmatched_or_malformed_answers_are_ignored(protocol: OcppProtocol, text: str) -> None:
    protocol.send_call("Reset", {"type": "Soft"})
    assert isinstance(protocol.receive(text), Ignored)
    assert protocol.outstanding_call == "m1"


def test_answer_without_outstanding_call_is_ignored(protocol: OcppProtocol) -> None:
    assert isinstance(protocol.receive('[3,"m1",{}]'), Ignored)


def test_timeout_then_late_answer_ignored(protocol: OcppProtocol) -> None:
    protocol.send_call("Reset", {"type": "Soft"})
    protocol.cancel_call()
    assert protocol.outstanding_call is None
    protocol.send_call("ClearCache", {})
    assert isinstance(protocol.receive('[3,"m1",{"status":"Accepted"}]'), Ignored)
    assert isinstance(protocol.receive('[3,"m2",{"status":"Accepted"}]'), ResultReceived)


@pytest.mark.parametrize(
    ("action", "payload", "code"),
    [
        ("Reset", {"type": "Warm"}, ErrorCode.PropertyConstraintViolation),
        ("NoSuchAction", {}, ErrorCode.NotSupported),
        (
            "BootNotification",
            {"chargePointVendor": "V", "chargePointModel": "M"},
            ErrorCode.NotSupported,
        ),
    ],
)
def test_invalid_outbound_call(
    protocol: OcppProtocol, action: str, payload: dict, code: str
) -> None:
    with pytest.raises(OcppError) as caught:
        protocol.send_call(action, payload)
    assert caught.value.code == code
    assert protocol.outstanding_call is None


def test_default_ids_are_uuid4(registry: SchemaRegistry) -> None:
    unique_id, _ = OcppProtocol(registry).send_call("ClearCache", {})
    assert len(unique_id) == 36 and unique_id[14] == "4"


BOOT_PADDED = (
    '[2,"b","BootNotification",{"chargePointVendor":"ABB\\u0000\\u0000\\u0000",'
    '"chargePointModel":"' + "M" * 20 + '\\u0000\\u0000","firmwareVersion":"1.0\\u0000"}]'
)


def test_nul_padding_is_removed_before_validation(protocol: OcppProtocol) -> None:
    # 20 characters of model and its padding: valid once the padding is gone (CiString20)
    event = protocol.receive(BOOT_PADDED)
    assert isinstance(event, CallReceived), event
    assert event.call.payload == {
        "chargePointVendor": "ABB",
        "chargePointModel": "M" * 20,
        "firmwareVersion": "1.0",
    }
    assert event.warnings == [
        "chargePointVendor: NUL characters removed",
        "chargePointModel: NUL characters removed",
        "firmwareVersion: NUL characters removed",
    ]


def test_lone_surrogates_are_replaced_in_values_and_names(protocol: OcppProtocol) -> None:
    event = protocol.receive(
        '[2,"s","StatusNotification",{"connectorId":1,"errorCode":"NoError","status":"Available",'
        '"info":"bad \\ud800 \\udfff\\u0000"}]'
    )
    assert isinstance(event, CallReceived), event
    assert event.call.payload["info"] == "bad \ufffd \ufffd"
    assert event.warnings == ["info: NUL characters removed and lone surrogates replaced by U+FFFD"]
    event = protocol.receive('[2,"h","Heartbeat",{"\\ud800x\\u0000":1}]')
    assert isinstance(event, Rejected)  # the cleaned name is still not a Heartbeat member
    assert event.reply is not None and event.reply.encode("utf-8")


def test_answers_to_our_calls_are_made_storable(protocol: OcppProtocol) -> None:
    protocol.send_call("GetConfiguration", {})
    event = protocol.receive(
        '[3,"m1",{"configurationKey":[{"key":"Vendor\\u0000","readonly":true,'
        '"value":"ABB\\u0000\\ud83d"}]}]'
    )
    assert isinstance(event, ResultReceived) and event.error is None
    assert event.result.payload == {
        "configurationKey": [{"key": "Vendor", "readonly": True, "value": "ABB\ufffd"}]
    }
    assert event.warnings == [
        "configurationKey/0/key: NUL characters removed",
        "configurationKey/0/value: NUL characters removed and lone surrogates replaced by U+FFFD",
    ]
    protocol.send_call("ClearCache", {})
    event = protocol.receive('[4,"m2","Generic\\u0000Error","no\\ud800",{"why\\u0000":"x\\u0000"}]')
    assert isinstance(event, ErrorReceived)
    assert event.error == CallError("m2", "GenericError", "no\ufffd", {"why": "x"})
    assert len(event.warnings) == 4


def test_deep_nesting_is_refused_with_the_id(protocol: OcppProtocol) -> None:
    event = protocol.receive('[2,"deep","DataTransfer",' + "[" * 100_000)
    assert isinstance(event, Rejected)
    assert event.reply == '[4,"deep","FormationViolation","nested deeper than 32 levels",{}]'
