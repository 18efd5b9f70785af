"""OCPP 1.6 actions by direction and the schema registry that validates their payloads.

Owns the action tables, the compiled OCA JSON schemas (`ocpp_schemas/`, loaded once, with the
errata corrections applied in memory) and the jsonschema-keyword -> CALLERROR code mapping.
It must not edit the schema files, hold per-connection state or do I/O after construction.

Two validators per schema: jsonschema_rs (compiled, ~150x faster here) answers "valid?"
for every payload; only a payload it refuses goes to jsonschema, the reference, which
decides and classifies the violation (the CALLERROR code and description). The fast one
is given the same schema made stricter where ours is (32-bit integers), so it never
accepts what the reference refuses; where it refuses more (e.g. "uri" formats, text Rust
cannot take), the reference has the last word.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, Literal

import jsonschema_rs
from jsonschema import Draft4Validator, Draft6Validator, FormatChecker, TypeChecker
from jsonschema.exceptions import ValidationError, best_match
from jsonschema.protocols import Validator
from jsonschema.validators import extend

from .codec import ErrorCode, OcppError

CHARGER_TO_CSMS: Final = frozenset(
    {
        # OCPP 1.6 ed.2 §3.3 (Core, FirmwareManagement)
        "Authorize",
        "BootNotification",
        "DataTransfer",
        "DiagnosticsStatusNotification",
        "FirmwareStatusNotification",
        "Heartbeat",
        "MeterValues",
        "StartTransaction",
        "StatusNotification",
        "StopTransaction",
        # Security whitepaper ed.2 §5
        "SecurityEventNotification",
        "SignCertificate",
        "SignedFirmwareStatusNotification",
        "LogStatusNotification",
    }
)
CSMS_TO_CHARGER: Final = frozenset(
    {
        "CancelReservation",
        "ChangeAvailability",
        "ChangeConfiguration",
        "ClearCache",
        "ClearChargingProfile",
        "DataTransfer",
        "GetCompositeSchedule",
        "GetConfiguration",
        "GetDiagnostics",
        "GetLocalListVersion",
        "RemoteStartTransaction",
        "RemoteStopTransaction",
        "ReserveNow",
        "Reset",
        "SendLocalList",
        "SetChargingProfile",
        "TriggerMessage",
        "UnlockConnector",
        "UpdateFirmware",
        # Security whitepaper ed.2 §5
        "CertificateSigned",
        "DeleteCertificate",
        "ExtendedTriggerMessage",
        "GetInstalledCertificateIds",
        "GetLog",
        "InstallCertificate",
        "SignedUpdateFirmware",
    }
)
KNOWN_ACTIONS: Final = CHARGER_TO_CSMS | CSMS_TO_CHARGER

DEFAULT_SCHEMA_DIR: Final = Path(__file__).resolve().parents[2] / "ocpp_schemas"
MAX_DESCRIPTION_LENGTH: Final = 200

Direction = Literal["request", "response"]

_CODE_BY_KEYWORD: Final[Mapping[str, ErrorCode]] = MappingProxyType(
    {
        "type": ErrorCode.TypeConstraintViolation,
        "format": ErrorCode.TypeConstraintViolation,
        "required": ErrorCode.OccurenceConstraintViolation,
        "minItems": ErrorCode.OccurenceConstraintViolation,
        "maxItems": ErrorCode.OccurenceConstraintViolation,
        "enum": ErrorCode.PropertyConstraintViolation,
        "maxLength": ErrorCode.PropertyConstraintViolation,
        "minLength": ErrorCode.PropertyConstraintViolation,
        "pattern": ErrorCode.PropertyConstraintViolation,
        "minimum": ErrorCode.PropertyConstraintViolation,
        "maximum": ErrorCode.PropertyConstraintViolation,
        "multipleOf": ErrorCode.PropertyConstraintViolation,
        "additionalProperties": ErrorCode.PropertyConstraintViolation,
    }
)


def error_code_for(error: ValidationError) -> str:
    """The OCPP-J §4.2.3 CALLERROR code for a schema violation."""
    return _CODE_BY_KEYWORD.get(str(error.validator), ErrorCode.FormationViolation)


# RFC 3339 §5.6 date-time; the offset is mandatory, fractional seconds optional.
_DATE_TIME = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[Zz]|[+-]\d{2}:\d{2})\Z", re.ASCII
)
_FORMAT_CHECKER: Final = FormatChecker(formats=())  # "uri" stays unchecked, as jsonschema's default


@_FORMAT_CHECKER.checks("date-time")
def _is_date_time(instance: object) -> bool:
    if not isinstance(instance, str):
        return True  # the "type" keyword reports it
    if _DATE_TIME.match(instance) is None:
        return False
    try:
        datetime.fromisoformat(instance.upper())
    except ValueError:  # e.g. month 13
        return False
    return True


INT32: Final = range(-(2**31), 2**31)


def _is_strict_integer(checker: TypeChecker, instance: object) -> bool:
    # Draft 6 counts 5.0 as an integer; a charger sending meterStop 5.0 or 5.00 is not conformant.
    # An OCPP 1.6 integer is 32 bits (1.6 ed.2 §7); a wider one would only fail later, in an
    # integer column, as an InternalError the charger retries forever.
    return isinstance(instance, int) and not isinstance(instance, bool) and instance in INT32


def _exact_multiple_of(
    validator: Validator, divisor: Any, instance: Any, schema: Mapping[str, Any]
) -> Iterator[ValidationError]:
    # jsonschema divides floats: 11.1 / 0.1 != 111 would reject a valid charging limit.
    if validator.is_type(instance, "number"):
        if (Fraction(str(instance)) / Fraction(str(divisor))).denominator != 1:
            yield ValidationError(f"{instance} is not a multiple of {divisor}")


def _strict(base: type[Validator]) -> type[Validator]:
    return extend(  # type: ignore[no-any-return,no-untyped-call]  # jsonschema's stubs
        base,
        validators={"multipleOf": _exact_multiple_of},
        type_checker=base.TYPE_CHECKER.redefine("integer", _is_strict_integer),
    )


# The 1.6 core schemas are draft-04; the security whitepaper's are draft-06 ($id, definitions).
_VALIDATOR_BY_METASCHEMA: Final[Mapping[str, type[Validator]]] = MappingProxyType(
    {
        "http://json-schema.org/draft-04/schema#": _strict(Draft4Validator),
        "http://json-schema.org/draft-06/schema#": _strict(Draft6Validator),
    }
)

# Errata corrections (OCPP 1.6 errata sheet 2019, OCPP16-NOTES §2), applied to the loaded dicts
# so the files stay byte-identical to the OCA release. Most are no-ops on the 2019 schemas and
# guard against an older schema set being dropped in.
_CELSIUS_SPELLINGS: Final = ("Celsius", "Celcius")
_OPTIONAL_FIELDS: Final = MappingProxyType({"StopTransaction": ("reason",)})  # default Local
_INTEGER_FIELDS: Final = MappingProxyType(
    {"BootNotificationResponse": ("interval",), "UpdateFirmware": ("retries", "retryInterval")}
)


def _accept_both_celsius_spellings(node: Any) -> None:
    if isinstance(node, dict):
        enum = node.get("enum")
        if isinstance(enum, list) and any(unit in enum for unit in _CELSIUS_SPELLINGS):
            enum.extend(unit for unit in _CELSIUS_SPELLINGS if unit not in enum)
        for child in node.values():
            _accept_both_celsius_spellings(child)
    elif isinstance(node, list):
        for child in node:
            _accept_both_celsius_spellings(child)


def _apply_errata(name: str, schema: dict[str, Any]) -> None:
    _accept_both_celsius_spellings(schema)
    if name in _OPTIONAL_FIELDS and "required" in schema:
        schema["required"] = [f for f in schema["required"] if f not in _OPTIONAL_FIELDS[name]]
    for field_name in _INTEGER_FIELDS.get(name, ()):
        schema["properties"][field_name]["type"] = "integer"


def _compile(path: Path) -> Validator:
    # Decimal divisors keep multipleOf exact against Decimal payload numbers.
    schema = json.loads(path.read_text(encoding="utf-8"), parse_float=Decimal)
    _apply_errata(path.stem, schema)
    cls = _VALIDATOR_BY_METASCHEMA.get(schema.get("$schema", ""))
    if cls is None:
        raise ValueError(f"{path.name}: unsupported $schema {schema.get('$schema')!r}")
    cls.check_schema(schema)
    return cls(schema, format_checker=_FORMAT_CHECKER)


def _with_int32_bounds(node: Any) -> Any:
    """A copy of `node` where every integer is bounded to 32 bits, as _is_strict_integer
    is; the fast validator has no custom types."""
    if isinstance(node, dict):
        bounded = {key: _with_int32_bounds(value) for key, value in node.items()}
        types = node.get("type")
        if types == "integer" or (isinstance(types, list) and "integer" in types):
            bounded["minimum"] = max(node.get("minimum", INT32.start), INT32.start)
            bounded["maximum"] = min(node.get("maximum", INT32.stop - 1), INT32.stop - 1)
        return bounded
    if isinstance(node, list):
        return [_with_int32_bounds(item) for item in node]
    return node


FastCheck = Callable[[Any], bool]


def _compile_fast(schema: Mapping[str, Any]) -> FastCheck:
    validator = jsonschema_rs.validator_for(
        _with_int32_bounds(schema),  # a new tree: the reference keeps its own
        formats={"date-time": _is_date_time}, validate_formats=True)
    return validator.is_valid


def _json_type(instance: object) -> str:
    if isinstance(instance, bool):
        return "boolean"
    if isinstance(instance, int):
        return "integer" if instance in INT32 else "integer beyond 32 bits"
    if isinstance(instance, Decimal | float):
        return "number"
    if isinstance(instance, str):
        return "string"
    if isinstance(instance, list):
        return "array"
    if isinstance(instance, dict):
        return "object"
    return "null" if instance is None else "value"


def _limit(error: ValidationError) -> str:
    return str(error.validator_value)


# The charger's value is never quoted back: it may be an id tag (personal data) and the
# description is both sent and logged. Enum violations are the exception, because no id tag
# field is an enum and the value is what an operator needs to see (relaxed mode, firmware).
_MESSAGE_BY_KEYWORD: Final[Mapping[str, Callable[[ValidationError], str]]] = MappingProxyType(
    {
        "type": lambda e: f"{_json_type(e.instance)} is not of type {e.validator_value!r}",
        "format": lambda e: f"not a valid {e.validator_value}",
        "maxLength": lambda e: f"longer than {_limit(e)} characters",
        "minLength": lambda e: f"shorter than {_limit(e)} characters",
        "pattern": lambda e: "does not match the expected pattern",
        "minimum": lambda e: f"less than the minimum of {_limit(e)}",
        "maximum": lambda e: f"greater than the maximum of {_limit(e)}",
        "multipleOf": lambda e: f"not a multiple of {_limit(e)}",
        "minItems": lambda e: f"fewer than {_limit(e)} items",
        "maxItems": lambda e: f"more than {_limit(e)} items",
        "required": lambda e: e.message,  # names the missing member
        "additionalProperties": lambda e: e.message,  # names the members, not their values
        "enum": lambda e: e.message,
    }
)


def _describe(error: ValidationError) -> str:
    path = "/".join(str(part) for part in error.absolute_path)
    message = _MESSAGE_BY_KEYWORD.get(str(error.validator), _violates)(error)
    text = f"{path}: {message}" if path else message
    if len(text) > MAX_DESCRIPTION_LENGTH:
        text = text[: MAX_DESCRIPTION_LENGTH - 3] + "..."
    return text


def _violates(error: ValidationError) -> str:
    return f"violates {error.validator}"


class SchemaRegistry:
    """Compiled validators for every action in `KNOWN_ACTIONS`, both directions; immutable."""

    __slots__ = ("_fast", "_validators")

    def __init__(self, schema_dir: Path | str | None = None) -> None:
        directory = DEFAULT_SCHEMA_DIR if schema_dir is None else Path(schema_dir)
        validators: dict[tuple[str, Direction], Validator] = {}
        missing: list[str] = []
        for action in sorted(KNOWN_ACTIONS):
            for direction, name in (("request", action), ("response", f"{action}Response")):
                path = directory / f"{name}.json"
                if path.is_file():
                    validators[action, direction] = _compile(path)  # type: ignore[index]
                else:
                    missing.append(path.name)
        if missing:
            raise FileNotFoundError(f"OCPP schemas missing in {directory}: {', '.join(missing)}")
        self._validators: Mapping[tuple[str, Direction], Validator] = MappingProxyType(validators)
        self._fast: Mapping[tuple[str, Direction], FastCheck] = MappingProxyType(
            {key: _compile_fast(v.schema) for key, v in validators.items()
             if isinstance(v.schema, Mapping)})

    def is_known(self, action: str) -> bool:
        return action in KNOWN_ACTIONS

    def in_schema_order(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        """The request payload with members in the schema's order, recursively.

        Some charger firmware parses rigidly; outbound CALLs follow the schema's
        member order whatever order the API client used.
        """
        validator = self._validators[action, "request"]
        return _ordered(validator.schema, payload)  # type: ignore[no-any-return]

    def validate_request(
        self, action: str, payload: dict[str, Any], *, relaxed: bool = False
    ) -> list[str]:
        """Raise `OcppError` on a violation; return the warnings relaxed mode tolerated."""
        return self._validate(action, "request", payload, relaxed)

    def validate_response(
        self, action: str, payload: dict[str, Any], *, relaxed: bool = False
    ) -> list[str]:
        """Raise `OcppError` on a violation; return the warnings relaxed mode tolerated."""
        return self._validate(action, "response", payload, relaxed)

    def _validate(
        self, action: str, direction: Direction, payload: dict[str, Any], relaxed: bool
    ) -> list[str]:
        validator = self._validators.get((action, direction))
        if validator is None:
            raise OcppError(ErrorCode.NotImplemented, f"unknown action {action[:50]!r}")
        try:
            if self._fast[action, direction](payload):
                return []
        except (ValueError, TypeError, OverflowError):  # a value Rust cannot take: see below
            pass
        warnings: list[str] = []
        errors: Iterable[ValidationError] = validator.iter_errors(payload)
        if relaxed:
            errors = _enum_errors_to(warnings, errors)
        error = best_match(errors)  # consumes every error, so all warnings are collected
        if error is not None:
            raise OcppError(error_code_for(error), _describe(error))
        return warnings


def _ordered(schema: Any, value: Any) -> Any:
    if isinstance(value, dict) and isinstance(schema, dict):
        properties = schema.get("properties", {})
        keys = [k for k in properties if k in value] + [k for k in value if k not in properties]
        return {k: _ordered(properties.get(k, {}), value[k]) for k in keys}
    if isinstance(value, list) and isinstance(schema, dict):
        return [_ordered(schema.get("items", {}), item) for item in value]
    return value


def _enum_errors_to(
    warnings: list[str], errors: Iterable[ValidationError]
) -> Iterator[ValidationError]:
    # Relaxed mode (per station, for known firmware quirks such as StatusNotification
    # errorCode "Error" or unit "Hz"): out-of-enum values are logged, not refused.
    for error in errors:
        if error.validator == "enum":
            warnings.append(f"{_describe(error)} (relaxed mode)")
        else:
            yield error
