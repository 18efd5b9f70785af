"""OCPP-J framing with literal frames: decode errors and their CALLERROR, exact round trips."""

import re
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from autimit_csms.ocpp16.codec import (
    REDACTED,
    Call,
    CallError,
    CallResult,
    ErrorCode,
    OcppError,
    decode,
    encode,
    encode_json,
    redact_for_log,
)

FV = ErrorCode.FormationViolation
LONG_ID = "x" * 37


@pytest.mark.parametrize(
    ("text", "code", "unique_id", "answerable"),
    [
        ("not json", FV, None, True),
        # broken JSON whose unique id can still be read: answered (the charger stops retrying)
        ('[2,"a","Heartbeat",{}', FV, "a", True),
        ('[2,"a","Heartbeat",NaN]', FV, "a", True),
        ('[2,"a","Heartbeat",Infinity]', FV, "a", True),
        (' [ 2 , "a\\u00e9" ,"MeterValues",{"meterValue":[,{}]}]', FV, "a\u00e9", True),
        ('[2,"a"', FV, "a", True),
        (f'[2,"{"y" * 36}",', FV, "y" * 36, True),
        (f'[2,"{LONG_ID}",', FV, None, True),  # longer than a unique id may be
        ('[2,"a\\x",{}', FV, None, True),  # not a JSON string
        ('[2,"a\n",{}', FV, None, True),  # control character in a string
        ('[20,"a",{', FV, None, True),
        ('[2.0,"a",{', FV, None, True),
        ('[3,"a",{', FV, None, True),  # answers are never answered
        ('[4,"a","GenericError",', FV, None, True),
        ("[2,null,", FV, None, True),
        ("[2,true,", FV, None, True),
        ('[2,{"a":1},', FV, None, True),
        # a numeric unique id is answered as the string the charger wrote
        ('[2, 5, "Heartbeat", {}]', FV, "5", True),
        ('[2,-5.0e3,"Heartbeat",{}]', FV, "-5.0e3", True),
        ("[2,5,{", FV, "5", True),
        (f'[2,{"9" * 37},"Heartbeat",{{}}]', FV, None, True),
        # deep nesting and numbers beyond any 1.6 field: refused, not a RecursionError
        ("[" * 100_000, FV, None, True),
        ('[2,"deep",' + "[" * 100_000, FV, "deep", True),
        ('[2,"deep","DataTransfer",{"x":' + "[" * 31 + "]" * 31 + "}]", FV, "deep", True),
        ('[2,"n","Heartbeat",{"x":1e999999999999999999999}]', FV, "n", True),
        ('[2,"n","Heartbeat",{"x":1e101}]', FV, "n", True),
        ('[2,"n","Heartbeat",{"x":' + "1" * 51 + "}]", FV, "n", True),
        ('[2,"n","Heartbeat",{"x":' + "1" * 5000 + "}]", FV, "n", True),
        ("{}", FV, None, True),
        ("[]", FV, None, True),
        ('"text"', FV, None, True),
        ("[2]", FV, None, True),
        ('[2,"id"]', FV, "id", True),
        ('[2,null,"Heartbeat",{}]', FV, None, True),
        ('[2,false,"Heartbeat",{}]', FV, None, True),
        ('[2,[],"Heartbeat",{}]', FV, None, True),
        (f'[2,"{LONG_ID}","Heartbeat",{{}}]', ErrorCode.ProtocolError, LONG_ID, True),
        ('["2","a","Heartbeat",{}]', FV, "a", True),
        ('[true,"a","Heartbeat",{}]', FV, "a", True),
        ('[2.0,"a","Heartbeat",{}]', FV, "a", True),
        ('[2,"a",7,{}]', FV, "a", True),
        ('[2,"a","Heartbeat",[]]', FV, "a", True),
        ('[2,"a","Heartbeat","{}"]', FV, "a", True),
        ('[2,"a","Heartbeat",{},{}]', FV, "a", True),
        # never answered: unknown message type (OCPP-J §4.1.3) and broken answers
        ('[9,"a"]', ErrorCode.ProtocolError, "a", False),
        ("[0]", ErrorCode.ProtocolError, None, False),
        ('[3,"a"]', FV, "a", False),
        ('[3,"a",[]]', FV, "a", False),
        ("[3,5,{}]", FV, None, False),
        (f'[3,"{LONG_ID}",{{}}]', ErrorCode.ProtocolError, LONG_ID, False),
        ('[4,"a","GenericError"]', FV, "a", False),
        ('[4,"a",1,"",{}]', FV, "a", False),
        ('[4,"a","GenericError",null,{}]', FV, "a", False),
        ('[4,"a","GenericError","",[]]', FV, "a", False),
    ],
)
def test_malformed_frame(text: str, code: str, unique_id: str | None, answerable: bool) -> None:
    with pytest.raises(OcppError) as caught:
        decode(text)
    error = caught.value
    assert (error.code, error.unique_id, error.answerable) == (code, unique_id, answerable)
    expected = CallError(unique_id, code, error.description) if answerable and unique_id else None
    assert error.to_call_error() == expected


@pytest.mark.parametrize(
    "text",
    [
        '[2,"19223201","BootNotification",'
        '{"chargePointVendor":"VendorX","chargePointModel":"SingleSocketCharger"}]',
        '[3,"19223201",{"status":"Accepted","currentTime":"2013-02-01T20:53:32.486Z","interval":300}]',
        '[4,"162376037","NotSupported","SetDisplayMessageRequest not implemented",{}]',
        '[4,"a","GenericError","",{"detail":[1,true,false,null,"x"]}]',
        '[2,"a","Heartbeat",{}]',
        '[2,"a","DataTransfer",{"vendorId":"Ünïcødé","data":"€ \\"quoted\\"\\n"}]',
        '[2,"a","SetChargingProfile",{"connectorId":1,"csChargingProfiles":{"chargingProfileId":1,'
        '"stackLevel":0,"chargingProfilePurpose":"TxDefaultProfile","chargingProfileKind":'
        '"Absolute","chargingSchedule":{"chargingRateUnit":"A","chargingSchedulePeriod":'
        '[{"startPeriod":0,"limit":11.10},{"startPeriod":60,"limit":0.30}]}}}]',
        '[3,"a",{"n":-0.000,"big":123456789012345678901234567890.123456789}]',
        f'[2,"{"y" * 36}","Heartbeat",{{}}]',
        # the bounds themselves: 50-character numbers, exponents of ±100, 32 levels
        '[3,"a",{"n":' + "1" * 50 + ',"m":-1.' + "0" * 47 + "}]",
        '[3,"a",{"big":1E+100,"small":1E-100}]',
        '[3,"a",{"x":' + "[" * 30 + "]" * 30 + "}]",  # MAX_DEPTH levels
    ],
)
def test_round_trip_is_exact(text: str) -> None:
    assert encode(decode(text)) == text


def test_decoded_types() -> None:
    call = decode('[2,"a","MeterValues",{"connectorId":1,"limit":11.10,"value":"12.50"}]')
    assert call == Call(
        "a", "MeterValues", {"connectorId": 1, "limit": Decimal("11.10"), "value": "12.50"}
    )
    assert type(call.payload["connectorId"]) is int
    assert str(call.payload["limit"]) == "11.10"


def test_null_payload_is_empty_object() -> None:
    assert decode('[2,"a","Heartbeat",null]') == Call("a", "Heartbeat", {})
    assert decode('[3,"a",null]') == CallResult("a", {})


def test_callerror_without_details_is_tolerated() -> None:
    assert decode('[4,"a","InternalError","boom"]') == CallError("a", "InternalError", "boom", {})


def test_encode_callerror_defaults() -> None:
    assert encode(CallError("a", ErrorCode.InternalError)) == '[4,"a","InternalError","",{}]'


def test_encode_numbers_exactly() -> None:
    payload = {"a": Decimal("12.50"), "b": Decimal("1E+2"), "c": 0.1, "d": 3, "e": True}
    assert encode(CallResult("x", payload)) == '[3,"x",{"a":12.50,"b":1E+2,"c":0.1,"d":3,"e":true}]'


def test_encode_keeps_key_order_and_accepts_tuples() -> None:
    payload = {"z": 1, "a": (1, 2), "m": []}
    assert encode(CallResult("x", payload)) == '[3,"x",{"z":1,"a":[1,2],"m":[]}]'


@pytest.mark.parametrize(
    ("value", "exception"),
    [
        (Decimal("NaN"), ValueError),
        (Decimal("Infinity"), ValueError),
        (float("inf"), ValueError),
        (object(), TypeError),
        ({1: "x"}, TypeError),
    ],
)
def test_encode_refuses_non_json(value: object, exception: type[Exception]) -> None:
    with pytest.raises(exception):
        encode(CallResult("x", {"v": value}))


def test_lone_surrogate_is_sent_escaped() -> None:
    # UTF-8 cannot carry "\ud800"; escaped it is the very id the charger sent
    text = encode(CallError("\ud800x", ErrorCode.FormationViolation))
    assert text == '[4,"\\ud800x","FormationViolation","",{}]'
    assert text.encode("utf-8")
    assert decode(text) == CallError("\ud800x", ErrorCode.FormationViolation)


@pytest.mark.parametrize(
    ("text", "logged"),
    [
        ('[2,"a","Heartbeat",{}]', '[2,"a","Heartbeat",{}]'),
        ('[2, "a", "Authorize", {"idTag": "TAG-9"}]', '[2,"a","Authorize",{"idTag":"<redacted>"}]'),
        (
            '[3,"a",{"transactionId":5,"idTagInfo":{"status":"Accepted","parentIdTag":"P-9"}}]',
            '[3,"a",{"transactionId":5,"idTagInfo":{"status":"Accepted",'
            '"parentIdTag":"<redacted>"}}]',
        ),
        (
            '[2,"a","SendLocalList",{"listVersion":1,"updateType":"Full","localAuthorizationList":'
            '[{"idTag":"TAG-9","idTagInfo":{"status":"Accepted"}},{"idTag":"TAG-8"}]}]',
            '[2,"a","SendLocalList",{"listVersion":1,"updateType":"Full","localAuthorizationList":'
            '[{"idTag":"<redacted>","idTagInfo":{"status":"Accepted"}},{"idTag":"<redacted>"}]}]',
        ),
        (
            '[2,"a","ChangeConfiguration",{"key":"AuthorizationKey","value":"KEY-9"}]',
            '[2,"a","ChangeConfiguration",{"key":"AuthorizationKey","value":"<redacted>"}]',
        ),
        (
            '[3,"a",{"configurationKey":[{"key":"AuthorizationKey","readonly":false,'
            '"value":"KEY-9"},{"key":"HeartbeatInterval","readonly":false,"value":"60"}]}]',
            '[3,"a",{"configurationKey":[{"key":"AuthorizationKey","readonly":false,'
            '"value":"<redacted>"},{"key":"HeartbeatInterval","readonly":false,"value":"60"}]}]',
        ),
        (
            '[2,"a","GetDiagnostics",{"location":"ftp://user:KEY-9@diag.example/"}]',
            '[2,"a","GetDiagnostics",{"location":"ftp://<redacted>@diag.example/"}]',
        ),
        # an escaped member name is still the member
        (
            '[2,"a","Authorize",{"id\\u0054ag":"TAG-9"}]',
            '[2,"a","Authorize",{"idTag":"<redacted>"}]',
        ),
        ('[2,"a","Authorize",{"idTag":12.50}]', '[2,"a","Authorize",{"idTag":"<redacted>"}]'),
        # not JSON: redacted by pattern
        ('[2,"a","StartTransaction",{"idTag" : "TAG-9", "x":[,', None),
        ('[2,"a","StartTransaction",{"idTag":"TAG\\"-9', None),
        ('[2,"a","StartTransaction",{"idTag":TAG-9}', None),
        ('[2,"a","ChangeConfiguration",{"key":"AuthorizationKey","value":"KEY-9",]', None),
        ('[2,"a","UpdateFirmware",{"location":"https://u:KEY-9@fw.example/",', None),
    ],
)
def test_frames_are_logged_without_id_tags_or_keys(text: str, logged: str | None) -> None:
    result = redact_for_log(text)
    if logged is not None:
        assert result == logged
    for secret in ("TAG-9", "TAG-8", "P-9", "KEY-9", "12.50"):
        assert secret not in result
    assert REDACTED in result or text == result


def test_encode_refuses_non_messages() -> None:
    with pytest.raises(TypeError):
        encode([2, "a", "Heartbeat", {}])  # type: ignore[arg-type]


def test_error_code_spellings_are_ocpp16() -> None:
    assert {code.value for code in ErrorCode} == {
        "NotImplemented",
        "NotSupported",
        "InternalError",
        "ProtocolError",
        "SecurityError",
        "FormationViolation",
        "PropertyConstraintViolation",
        "OccurenceConstraintViolation",
        "TypeConstraintViolation",
        "GenericError",
    }


def test_package_imports_no_io_library() -> None:
    code = (
        "import autimit_csms.ocpp16, sys; "
        "io = {'trio', 'psycopg', 'trio_websocket', 'wsproto', 'asyncio', 'httpx'}; "
        "assert not io & set(sys.modules), io & set(sys.modules)"
    )
    repo = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-c", code], cwd=repo, check=True)
    # `socket` itself is loaded by the stdlib's email.utils, which jsonschema_rs
    # imports; the codec's own modules must not touch it.
    for module in (repo / "autimit_csms" / "ocpp16").glob("*.py"):
        assert not re.search(r"^\s*(import|from)\s+(socket|ssl|select|selectors)\b",
                             module.read_text(), re.MULTILINE), module


@pytest.mark.parametrize(
    ("value", "text"),
    [
        # orjson's path: numbers exactly as written, compact, UTF-8 kept
        ({"v": Decimal("11.10"), "e": Decimal("1E+3"), "t": ("é", None, True)},
         '{"v":11.10,"e":1E+3,"t":["é",null,true]}'),
        ([{"a": -0, "b": "\x00\"\\"}], '[{"a":0,"b":"\\u0000\\"\\\\"}]'),
        # the exact encoder's path: what orjson refuses
        ({"id": "\ud800x"}, '{"id":"\\ud800x"}'),
        ([2 ** 70], f"[{2 ** 70}]"),
    ],
)
def test_encode_json_is_exact_on_both_paths(value: object, text: str) -> None:
    assert encode_json(value) == text


@pytest.mark.parametrize("value", [Decimal("NaN"), Decimal("-Infinity"), {1: "x"}, object()])
def test_encode_json_refuses_non_json(value: object) -> None:
    with pytest.raises((ValueError, TypeError)):
        encode_json({"v": value})
