"""Schema registry: action tables, keyword -> error code, errata corrections, relaxed mode."""

import json
import shutil
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from jsonschema.exceptions import ValidationError

from autimit_csms.ocpp16.codec import ErrorCode, OcppError
from autimit_csms.ocpp16.schemas import (
    CHARGER_TO_CSMS,
    CSMS_TO_CHARGER,
    DEFAULT_SCHEMA_DIR,
    KNOWN_ACTIONS,
    SchemaRegistry,
    error_code_for,
)

OCCURENCE = ErrorCode.OccurenceConstraintViolation
PROPERTY = ErrorCode.PropertyConstraintViolation
TYPE = ErrorCode.TypeConstraintViolation
NOW = "2024-05-01T10:00:00Z"


@pytest.fixture(scope="module")
def registry() -> SchemaRegistry:
    return SchemaRegistry()


def sampled(**extra: Any) -> dict[str, Any]:
    return {"connectorId": 1, "meterValue": [{"timestamp": NOW, "sampledValue": [extra]}]}


def test_action_tables() -> None:
    assert len(CHARGER_TO_CSMS) == 14
    assert len(CSMS_TO_CHARGER) == 26
    assert CHARGER_TO_CSMS & CSMS_TO_CHARGER == {"DataTransfer"}
    assert KNOWN_ACTIONS == CHARGER_TO_CSMS | CSMS_TO_CHARGER
    files = {path.stem for path in DEFAULT_SCHEMA_DIR.glob("*.json")}
    assert files == KNOWN_ACTIONS | {f"{action}Response" for action in KNOWN_ACTIONS}


def test_schema_files_are_unchanged_copies() -> None:
    ocpp = pytest.importorskip("ocpp")
    upstream = Path(ocpp.__file__).parent / "v16" / "schemas"
    for path in upstream.glob("*.json"):
        assert (DEFAULT_SCHEMA_DIR / path.name).read_bytes() == path.read_bytes(), path.name


@pytest.mark.parametrize(
    ("action", "payload", "code", "description"),
    [
        (
            "BootNotification",
            {"chargePointVendor": "X"},
            OCCURENCE,
            "'chargePointModel' is a required property",
        ),
        (
            "StartTransaction",
            {"connectorId": 1, "idTag": "T", "meterStart": "100", "timestamp": NOW},
            TYPE,
            "meterStart: string is not of type 'integer'",
        ),
        (
            "StartTransaction",
            {"connectorId": 1, "idTag": "T", "meterStart": Decimal("100.0"), "timestamp": NOW},
            TYPE,
            "meterStart: number is not of type 'integer'",
        ),
        (
            "MeterValues",
            sampled(value="1", unit="Hz"),
            PROPERTY,
            "meterValue/0/sampledValue/0/unit: 'Hz' is not one of [",
        ),
        ("Authorize", {"idTag": "x" * 21}, PROPERTY, "idTag: longer than 20 characters"),
        ("Authorize", {"idTag": 12345}, TYPE, "idTag: integer is not of type 'string'"),
        (
            "StartTransaction",
            {"connectorId": 2**31, "idTag": "T", "meterStart": 0, "timestamp": NOW},
            TYPE,
            "connectorId: integer beyond 32 bits is not of type 'integer'",
        ),
        (
            "StopTransaction",
            {"transactionId": 1, "meterStop": -(2**31) - 1, "timestamp": NOW},
            TYPE,
            "meterStop: integer beyond 32 bits is not of type 'integer'",
        ),
        (
            "Heartbeat",
            {"foo": 1},
            PROPERTY,
            "Additional properties are not allowed ('foo' was unexpected)",
        ),
        (
            "StatusNotification",
            {
                "connectorId": 1,
                "errorCode": "NoError",
                "status": "Available",
                "timestamp": "yesterday",
            },
            TYPE,
            "timestamp: not a valid date-time",
        ),
        (
            "MeterValues",
            {"connectorId": 1, "meterValue": []},
            OCCURENCE,
            "meterValue: fewer than 1 items",
        ),
        ("Authorize", [], TYPE, "array is not of type 'object'"),
        (
            "InstallCertificate",
            {"certificateType": "Other", "certificate": "x"},
            PROPERTY,
            "certificateType: 'Other'",
        ),
    ],
)
def test_request_violation(
    registry: SchemaRegistry, action: str, payload: Any, code: str, description: str
) -> None:
    with pytest.raises(OcppError) as caught:
        registry.validate_request(action, payload)
    assert caught.value.code == code
    assert caught.value.description.startswith(description)
    assert caught.value.unique_id is None


def test_description_is_short(registry: SchemaRegistry) -> None:
    with pytest.raises(OcppError) as caught:
        registry.validate_request("Authorize", {"idTag": "x" * 100_000})
    assert len(caught.value.description) <= 200


TAG = "SECRET-TAG-4711"


@pytest.mark.parametrize(
    ("action", "direction", "payload"),
    [
        ("Authorize", "request", {"idTag": TAG * 2}),  # maxLength
        ("Authorize", "request", {"idTag": [TAG]}),  # type
        ("Authorize", "request", {"idTag": {"tag": TAG}}),
        ("StopTransaction", "request", {"transactionId": 1, "meterStop": 0, "timestamp": TAG}),
        (
            "StartTransaction",
            "response",
            {"transactionId": 1, "idTagInfo": {"status": "Accepted", "parentIdTag": TAG * 2}},
        ),
        ("RemoteStartTransaction", "request", {"idTag": TAG * 2}),
        (
            "SendLocalList",
            "request",
            {
                "listVersion": 1,
                "updateType": "Full",
                "localAuthorizationList": [{"idTag": TAG * 2}],
            },
        ),
        (
            "GetConfiguration",
            "response",
            {
                "configurationKey": [
                    {"key": "AuthorizationKey", "readonly": False, "value": TAG * 40}
                ]
            },
        ),
    ],
)
def test_description_never_quotes_the_value(
    registry: SchemaRegistry, action: str, direction: str, payload: Any
) -> None:
    # descriptions are sent in CALLERRORs and logged; an id tag is personal data
    validate = registry.validate_request if direction == "request" else registry.validate_response
    with pytest.raises(OcppError) as caught:
        validate(action, payload)
    assert "SECRET" not in caught.value.description
    assert caught.value.description  # still says what is wrong, and where


def test_most_relevant_error_is_chosen_deterministically(registry: SchemaRegistry) -> None:
    payload = {"connectorId": "1", "errorCode": "Oops", "extra": 1}
    codes = set()
    for _ in range(3):
        with pytest.raises(OcppError) as caught:
            registry.validate_request("StatusNotification", payload)
        codes.add((caught.value.code, caught.value.description))
    assert len(codes) == 1


@pytest.mark.parametrize(
    "timestamp",
    [
        "2024-05-01T10:00:00Z",
        "2024-05-01T10:00:00.123Z",
        "2024-05-01T10:00:00.123456789Z",
        "2024-05-01T10:00:00+02:00",
        "2024-05-01T10:00:00.5-05:30",
        "2024-05-01t10:00:00z",
    ],
)
def test_date_time_accepted(registry: SchemaRegistry, timestamp: str) -> None:
    registry.validate_response("Heartbeat", {"currentTime": timestamp})


@pytest.mark.parametrize(
    "timestamp",
    [
        "yesterday",
        "2024-05-01",
        "2024-05-01T10:00:00",
        "2024-05-01 10:00:00Z",
        "2024-13-01T10:00:00Z",
        "2024-05-01T25:00:00Z",
        "2024-05-01T10:00:00+0200",
        "2024-05-01T10:00:00.Z",
    ],
)
def test_date_time_rejected(registry: SchemaRegistry, timestamp: str) -> None:
    with pytest.raises(OcppError) as caught:
        registry.validate_response("Heartbeat", {"currentTime": timestamp})
    assert caught.value.code == TYPE


@pytest.mark.parametrize("unit", ["Celsius", "Celcius"])
def test_both_celsius_spellings(registry: SchemaRegistry, unit: str) -> None:
    registry.validate_request("MeterValues", sampled(value="21.5", unit=unit))
    registry.validate_request(
        "StopTransaction",
        {
            "transactionId": 1,
            "timestamp": NOW,
            "meterStop": 10,
            "transactionData": [{"timestamp": NOW, "sampledValue": [{"value": "1", "unit": unit}]}],
        },
    )


def test_stop_transaction_reason_optional(registry: SchemaRegistry) -> None:
    registry.validate_request(
        "StopTransaction", {"transactionId": 1, "timestamp": NOW, "meterStop": 0}
    )


def test_boot_notification_empty_iccid(registry: SchemaRegistry) -> None:
    registry.validate_request(
        "BootNotification", {"chargePointVendor": "V", "chargePointModel": "M", "iccid": ""}
    )


def test_boot_notification_interval_is_integer(registry: SchemaRegistry) -> None:
    response = {"status": "Accepted", "currentTime": NOW, "interval": 300}
    registry.validate_response("BootNotification", response)
    with pytest.raises(OcppError) as caught:
        registry.validate_response("BootNotification", {**response, "interval": Decimal("300.5")})
    assert caught.value.code == TYPE


@pytest.mark.parametrize(
    ("limit", "valid"),
    [(Decimal("11.10"), True), (11.1, True), (16, True), (Decimal("11.15"), False)],
)
def test_multiple_of_is_exact(registry: SchemaRegistry, limit: Any, valid: bool) -> None:
    payload = {
        "connectorId": 1,
        "csChargingProfiles": {
            "chargingProfileId": 1,
            "stackLevel": 0,
            "chargingProfilePurpose": "TxDefaultProfile",
            "chargingProfileKind": "Absolute",
            "chargingSchedule": {
                "chargingRateUnit": "A",
                "chargingSchedulePeriod": [{"startPeriod": 0, "limit": limit}],
            },
        },
    }
    if valid:
        registry.validate_request("SetChargingProfile", payload)
    else:
        with pytest.raises(OcppError) as caught:
            registry.validate_request("SetChargingProfile", payload)
        assert caught.value.code == PROPERTY


def test_relaxed_mode_turns_enum_errors_into_warnings(registry: SchemaRegistry) -> None:
    payload = {"connectorId": 1, "errorCode": "Error", "status": "Faulted"}
    with pytest.raises(OcppError) as caught:
        registry.validate_request("StatusNotification", payload)
    assert caught.value.code == PROPERTY
    warnings = registry.validate_request("StatusNotification", payload, relaxed=True)
    assert len(warnings) == 1
    assert warnings[0].startswith("errorCode: 'Error' is not one of")
    assert (
        registry.validate_request(
            "StatusNotification", {**payload, "errorCode": "NoError"}, relaxed=True
        )
        == []
    )


def test_relaxed_mode_still_raises_other_violations(registry: SchemaRegistry) -> None:
    payload = {"connectorId": "1", "errorCode": "Error", "status": "Faulted"}
    with pytest.raises(OcppError) as caught:
        registry.validate_request("StatusNotification", payload, relaxed=True)
    assert caught.value.code == TYPE


def test_unknown_action(registry: SchemaRegistry) -> None:
    assert not registry.is_known("NoSuchAction")
    assert registry.is_known("Reset")
    with pytest.raises(OcppError) as caught:
        registry.validate_request("NoSuchAction", {})
    assert caught.value.code == ErrorCode.NotImplemented


def test_registry_is_immutable(registry: SchemaRegistry) -> None:
    with pytest.raises(AttributeError):
        registry.extra = 1  # type: ignore[attr-defined]
    with pytest.raises(TypeError):
        registry._validators["Reset", "request"] = None  # type: ignore[index]


@pytest.mark.parametrize(
    ("keyword", "code"),
    [
        ("type", TYPE),
        ("format", TYPE),
        ("required", OCCURENCE),
        ("minItems", OCCURENCE),
        ("maxItems", OCCURENCE),
        ("enum", PROPERTY),
        ("maxLength", PROPERTY),
        ("minLength", PROPERTY),
        ("pattern", PROPERTY),
        ("minimum", PROPERTY),
        ("maximum", PROPERTY),
        ("multipleOf", PROPERTY),
        ("additionalProperties", PROPERTY),
        ("uniqueItems", ErrorCode.FormationViolation),
        ("oneOf", ErrorCode.FormationViolation),
    ],
)
def test_error_code_for(keyword: str, code: str) -> None:
    assert error_code_for(ValidationError("message", validator=keyword)) == code


def copy_schemas(tmp_path: Path) -> Path:
    target = tmp_path / "schemas"
    shutil.copytree(DEFAULT_SCHEMA_DIR, target)
    return target


def edit(directory: Path, name: str, change: Any) -> None:
    path = directory / f"{name}.json"
    schema = json.loads(path.read_text())
    change(schema)
    path.write_text(json.dumps(schema))


def test_errata_applied_to_older_schemas(tmp_path: Path) -> None:
    directory = copy_schemas(tmp_path)

    def only_celsius(schema: dict[str, Any]) -> None:
        sampled_value = schema["properties"]["meterValue"]["items"]["properties"]["sampledValue"]
        sampled_value["items"]["properties"]["unit"]["enum"].remove("Celcius")

    edit(directory, "MeterValues", only_celsius)
    edit(directory, "StopTransaction", lambda s: s["required"].append("reason"))
    edit(
        directory,
        "BootNotificationResponse",
        lambda s: s["properties"]["interval"].update(type="number"),
    )

    registry = SchemaRegistry(directory)
    registry.validate_request("MeterValues", sampled(value="1", unit="Celcius"))
    registry.validate_request(
        "StopTransaction", {"transactionId": 1, "timestamp": NOW, "meterStop": 0}
    )
    with pytest.raises(OcppError):
        registry.validate_response(
            "BootNotification",
            {"status": "Accepted", "currentTime": NOW, "interval": Decimal("1.5")},
        )


def test_missing_schema_fails_start_up(tmp_path: Path) -> None:
    directory = copy_schemas(tmp_path)
    (directory / "SignCertificateResponse.json").unlink()
    with pytest.raises(FileNotFoundError, match="SignCertificateResponse.json"):
        SchemaRegistry(directory)


def test_unsupported_draft_fails_start_up(tmp_path: Path) -> None:
    directory = copy_schemas(tmp_path)
    edit(
        directory,
        "Heartbeat",
        lambda s: s.update({"$schema": "https://json-schema.org/draft/2020-12/schema"}),
    )
    with pytest.raises(ValueError, match="Heartbeat.json: unsupported"):
        SchemaRegistry(directory)
