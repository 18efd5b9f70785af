"""The compiled fast validator never accepts what the reference (jsonschema) refuses,
and it does accept the messages chargers send all day (or the speed-up is lost).

Payloads are generated from each schema itself: mostly-valid shapes with values
pushed to and beyond every limit (types, 32-bit integers, decimals, lengths, enums,
date-times, unknown members, missing required ones).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autimit_csms.ocpp16 import SchemaRegistry
from autimit_csms.ocpp16.schemas import KNOWN_ACTIONS

REGISTRY = SchemaRegistry()
KEYS = sorted((action, direction) for action in KNOWN_ACTIONS
              for direction in ("request", "response"))

TIMESTAMPS = st.sampled_from([
    "2024-05-01T12:00:00Z", "2024-05-01T12:00:00.123+02:00", "2024-05-01T12:00:00",
    "2024-13-01T12:00:00Z", "2024-02-30T00:00:00Z", "2024-05-01 12:00:00Z", "", "now",
    "2024-05-01t12:00:00z", "9999-12-31T23:59:59Z"])
NUMBERS = st.one_of(
    st.integers(min_value=-(2**40), max_value=2**40),
    st.sampled_from([2**31 - 1, 2**31, -(2**31), -(2**31) - 1, 0, -1]),
    st.decimals(allow_nan=False, allow_infinity=False, places=3),
    st.sampled_from([Decimal("11.1"), Decimal("11.15"), Decimal("5.0"), Decimal("0.1")]))
ANY = st.one_of(st.none(), st.booleans(), NUMBERS, st.text(max_size=30), st.just([]),
                st.just({}))


def value_for(schema: Any, depth: int = 0) -> st.SearchStrategy[Any]:
    """Values shaped by `schema`, often valid, often just beyond a limit."""
    if not isinstance(schema, dict) or depth > 6:
        return ANY
    if "$ref" in schema or "oneOf" in schema or "anyOf" in schema:
        return ANY
    kind = schema.get("type")
    if "enum" in schema:
        return st.one_of(st.sampled_from(schema["enum"]), st.text(max_size=12), ANY)
    if kind == "object":
        properties = schema.get("properties", {})
        required = set(schema.get("required", []))

        @st.composite
        def build(draw: st.DrawFn) -> dict[str, Any]:
            result: dict[str, Any] = {}
            for name, sub in properties.items():
                if name in required and draw(st.integers(0, 19)) or draw(st.booleans()):
                    result[name] = draw(value_for(sub, depth + 1))
            if draw(st.integers(0, 9)) == 0:
                result[draw(st.text(min_size=1, max_size=8))] = draw(ANY)
            return result

        return st.one_of(build(), ANY) if depth else build()
    if kind == "array":
        return st.one_of(st.lists(value_for(schema.get("items", {}), depth + 1), max_size=3),
                         ANY)
    if kind == "string":
        if schema.get("format") == "date-time":
            return st.one_of(TIMESTAMPS, ANY)
        limit = schema.get("maxLength", 50)
        return st.one_of(st.text(max_size=limit + 2), st.just("x" * limit),
                         st.just("x" * (limit + 1)), ANY)
    if kind in ("integer", "number"):
        return st.one_of(NUMBERS, ANY)
    if kind == "boolean":
        return st.one_of(st.booleans(), ANY)
    return ANY


@st.composite
def payloads(draw: st.DrawFn) -> tuple[tuple[str, str], Any]:
    key = draw(st.sampled_from(KEYS))
    return key, draw(value_for(REGISTRY._validators[key].schema))  # type: ignore[index]


def reference_valid(key: tuple[str, str], payload: Any) -> bool:
    return next(iter(REGISTRY._validators[key].iter_errors(payload)), None) is None  # type: ignore[index]


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payloads())
def test_fast_valid_implies_reference_valid(case: tuple[tuple[str, str], Any]) -> None:
    key, payload = case
    try:
        fast = REGISTRY._fast[key](payload)  # type: ignore[index]
    except ValueError:
        return  # a value the compiled validator cannot take: the reference decides
    if fast:
        assert reference_valid(key, payload), (key, payload)


EVERYDAY = [
    ("BootNotification", {"chargePointVendor": "V", "chargePointModel": "M",
                          "firmwareVersion": "1.2.3"}),
    ("Heartbeat", {}),
    ("StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Charging",
                            "timestamp": "2024-05-01T12:00:00Z"}),
    ("Authorize", {"idTag": "TAG-1"}),
    ("StartTransaction", {"connectorId": 1, "idTag": "TAG-1", "meterStart": 0,
                          "timestamp": "2024-05-01T12:00:00.5+02:00"}),
    ("StopTransaction", {"transactionId": 7, "meterStop": 12000,
                         "timestamp": "2024-05-01T13:00:00Z", "reason": "Local"}),
    ("MeterValues", {"connectorId": 1, "transactionId": 7, "meterValue": [
        {"timestamp": "2024-05-01T12:01:00Z", "sampledValue": [
            {"value": "1234.5", "measurand": "Energy.Active.Import.Register", "unit": "Wh"},
            {"value": "7000", "measurand": "Power.Active.Import", "unit": "W"},
            {"value": "21.5", "measurand": "Temperature", "unit": "Celcius"},
            {"value": "55", "measurand": "SoC", "unit": "Percent"}]}]}),
]


@pytest.mark.parametrize(("action", "payload"), EVERYDAY, ids=[a for a, _ in EVERYDAY])
def test_everyday_messages_take_the_fast_path(action: str, payload: dict[str, Any]) -> None:
    assert REGISTRY._fast[action, "request"](payload)  # type: ignore[index]
    assert REGISTRY.validate_request(action, payload) == []
