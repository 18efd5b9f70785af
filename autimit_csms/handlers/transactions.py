"""Authorization and charging transactions: Authorize, Start/StopTransaction, MeterValues.

Chargers queue these while offline and replay them later, re-sent with new
message ids after a CALLERROR or a lost answer (OCPP 1.6 §3.6, §4.8); every
write here is therefore idempotent on content, and every message is answered.
A StartTransaction also closes a session its charger never stopped on that
connector (the stop was lost), for billing review (db/queries.sql).
"""

from __future__ import annotations

import datetime as dt
import logging
from decimal import Decimal, DecimalException
from typing import Any, Final

from ..db import SQL
from ..ocpp16 import ErrorCode
from ..ocpp16.codec import encode_json
from .context import InvalidCall, StationContext, iso, now, parse_time

log = logging.getLogger(__name__)

# OCPP 1.6 §7.31 SampledValue defaults, applied when the charger omits a field.
SAMPLE_DEFAULTS: Final = {"measurand": "Energy.Active.Import.Register",
                          "context": "Sample.Periodic", "location": "Outlet",
                          "unit": "Wh", "format": "Raw"}
# Values are stored in base units; the factor converts from the reported unit.
BASE_UNITS: Final = {"kWh": ("Wh", 1000), "kW": ("W", 1000), "kvarh": ("varh", 1000),
                     "kvar": ("var", 1000), "kVA": ("VA", 1000),
                     "Celcius": ("Celsius", 1)}  # OCPP 1.6 errata spelling


async def id_tag_info(ctx: StationContext, id_tag: str,
                      connector_number: int | None = None) -> dict[str, Any]:
    """idTagInfo for a tag at this station (OCPP 1.6 §7.23, status §7.22)."""
    row = await ctx.db.fetch_one(SQL.id_tag_info, {
        "station_id": ctx.station_id, "id_tag": id_tag, "connector_number": connector_number})
    if row is None:
        return {"status": "Invalid"}
    info: dict[str, Any] = {}
    if row["expires_at"] is not None:
        info["expiryDate"] = iso(row["expires_at"])
    if row["parent_id_tag"]:
        info["parentIdTag"] = row["parent_id_tag"]
    if row["status"] == "blocked":
        status = "Blocked"
    elif row["expires_at"] is not None and row["expires_at"] <= now():
        status = "Expired"
    elif row["in_other_session"]:
        status = "ConcurrentTx"
    else:
        status = "Accepted"
    return {"status": status, **info}


async def authorize(ctx: StationContext, p: dict[str, Any]) -> dict[str, Any]:
    return {"idTagInfo": await id_tag_info(ctx, p["idTag"])}


async def start_transaction(ctx: StationContext, p: dict[str, Any]) -> dict[str, Any]:
    if p["connectorId"] < 1:  # OCPP 1.6 §6.45: connectorId > 0
        raise InvalidCall(ErrorCode.PropertyConstraintViolation, "connectorId must be > 0")
    # The CSMS re-verifies the tag (it may have been authorized offline with
    # stale data) but records the transaction whatever the verdict: the charger
    # may already be delivering energy (OCPP 1.6 §4.8).
    info = await id_tag_info(ctx, p["idTag"], p["connectorId"])
    rows = await ctx.writer.submit(SQL.start_transaction, {
        "station_id": ctx.station_id, "connector_number": p["connectorId"],
        "id_tag": p["idTag"], "id_tag_status": info["status"],
        "reservation_id": p.get("reservationId"), "meter_start": p["meterStart"],
        "started_at": parse_time(p["timestamp"])})
    row = rows[0]
    if row["created"]:
        log.info("%s transaction %d started on connector %d (%s)", ctx.station_code,
                 row["transaction_id"], p["connectorId"], info["status"])
        for stale in row["closed_stale"]:  # its StopTransaction never came
            log.warning("%s transaction %d closed without a stop (transaction %d started on "
                        "connector %d); marked for billing review", ctx.station_code, stale,
                        row["transaction_id"], p["connectorId"])
    else:  # a replay: same transactionId, same verdict as the first time
        info["status"] = row["id_tag_status"]
    return {"transactionId": row["transaction_id"], "idTagInfo": info}


async def stop_transaction(ctx: StationContext, p: dict[str, Any]) -> dict[str, Any]:
    transaction_id = p["transactionId"]
    stopped_at = parse_time(p["timestamp"])
    samples = _samples(p.get("transactionData", []))
    rows = await ctx.writer.submit(SQL.stop_transaction, {
        "station_id": ctx.station_id, "transaction_id": transaction_id,
        "meter_stop": p["meterStop"], "stopped_at": stopped_at,
        # OCPP 1.6 §7.36: an omitted reason means Local
        "reason": p.get("reason", "Local"), "id_tag": p.get("idTag")},
        *([(SQL.insert_meter_values, _meter_rows(ctx, None, transaction_id, samples))]
          if samples else []))
    row = rows[0]
    if row["closed"]:
        log.info("%s transaction %d stopped: %s Wh", ctx.station_code, transaction_id,
                 row["energy_wh"])
    elif row["session_id"] is None:
        log.warning("%s stopped unknown transaction %d; recorded as unmatched",
                    ctx.station_code, transaction_id)
    answer: dict[str, Any] = {}
    if "idTag" in p:
        answer["idTagInfo"] = await id_tag_info(ctx, p["idTag"])
    return answer


async def meter_values(ctx: StationContext, p: dict[str, Any]) -> dict[str, Any]:
    samples = _samples(p["meterValue"])
    await ctx.writer.submit(SQL.insert_meter_values,
                            _meter_rows(ctx, p["connectorId"], p.get("transactionId"), samples))
    return {}


def _samples(meter_values: list[dict[str, Any]]) -> list[tuple[dt.datetime, dict[str, Any]]]:
    return [(parse_time(mv["timestamp"]), sv)
            for mv in meter_values for sv in mv["sampledValue"]]


# Beyond any meter (1e100 Wh) and far inside what PostgreSQL's numeric stores: a value
# like "1e999999" would otherwise fail the whole write and the charger would resend it
# forever; it is kept as raw text instead, like any other value that is not a number.
_MAX_EXPONENT: Final = 100


def _number(text: str, factor: int) -> Decimal | None:
    """The sampled value in base units, or None when it is not a storable number."""
    try:
        value = Decimal(text)
        if not value.is_finite() or abs(value.adjusted()) > _MAX_EXPONENT:
            return None
        return value * factor
    except DecimalException:  # InvalidOperation, and Overflow on absurd exponents
        return None


def _meter_rows(ctx: StationContext, connector_number: int | None, transaction_id: int | None,
                samples: list[tuple[dt.datetime, dict[str, Any]]]) -> dict[str, Any]:
    """Parameters of insert_meter_values: every sample as a row of one JSON array
    (the writer may merge the arrays of many messages into one statement)."""
    rows = []
    for sampled_at, sv in samples:
        sample = {**SAMPLE_DEFAULTS, **sv}
        unit, factor = BASE_UNITS.get(sample["unit"], (sample["unit"], 1))
        value = _number(sample["value"], factor) if sample["format"] == "Raw" else None
        keep_raw = sample["format"] == "SignedData" or value is None
        rows.append({"station_id": str(ctx.station_id), "connector_number": connector_number,
                     "transaction_id": transaction_id, "sampled_at": sampled_at.isoformat(),
                     "measurand": sample["measurand"], "phase": sample.get("phase"),
                     "location": sample["location"], "context": sample["context"],
                     "unit": unit, "value": value, "format": sample["format"],
                     "raw_value": sample["value"] if keep_raw else None})
    return {"rows": encode_json(rows)}
