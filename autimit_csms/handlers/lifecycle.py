"""Station lifecycle messages: boot, heartbeat, status, and the notifications."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final

from ..db import SQL, as_json
from ..ocpp16.codec import encode_json
from .context import StationContext, iso, now, parse_time

log = logging.getLogger(__name__)

# OCPP 1.6 ChargePointStatus -> the normalized connector set of ADR 0002.
CONNECTOR_STATUS: Final = {
    "Available": "available",
    "Preparing": "occupied",
    "Charging": "charging",
    "SuspendedEVSE": "suspended",
    "SuspendedEV": "suspended",
    "Finishing": "occupied",
    "Reserved": "reserved",
    "Unavailable": "unavailable",
    "Faulted": "faulted",
}
# Connector 0 reports the charge point itself (OCPP 1.6 §4.9).
STATION_STATUS: Final = {"Faulted": "faulted", "Unavailable": "unavailable"}


async def boot_notification(ctx: StationContext, p: dict[str, Any]) -> dict[str, Any]:
    at = now()
    await ctx.writer.submit(SQL.boot_notification, {
        "station_id": ctx.station_id, "at": at, "registration_status": "accepted",
        "vendor": p["chargePointVendor"], "model": p["chargePointModel"],
        "serial": p.get("chargePointSerialNumber"),
        "charge_box_serial": p.get("chargeBoxSerialNumber"),
        "firmware_version": p.get("firmwareVersion"), "iccid": p.get("iccid"),
        "imsi": p.get("imsi"), "meter_type": p.get("meterType"),
        "meter_serial": p.get("meterSerialNumber")})
    ctx.registration = "accepted"
    log.info("%s booted: %s %s firmware %s", ctx.station_code, p["chargePointVendor"],
             p["chargePointModel"], p.get("firmwareVersion"))
    return {"status": "Accepted", "currentTime": iso(at), "interval": ctx.heartbeat_interval}


async def heartbeat(ctx: StationContext, p: dict[str, Any]) -> dict[str, Any]:
    at = now()
    await ctx.writer.submit(SQL.heartbeat, {"rows": encode_json(
        [{"station_id": str(ctx.station_id), "at": at.isoformat()}])})
    return {"currentTime": iso(at)}


async def status_notification(ctx: StationContext, p: dict[str, Any]) -> dict[str, Any]:
    received = now()
    ocpp_status = p["status"]
    params = {
        "station_id": ctx.station_id, "connector_number": p["connectorId"],
        "at": parse_time(p["timestamp"]) if "timestamp" in p else received,
        "received_at": received,
        # relaxed mode may let an out-of-enum status through: stored raw, normalized unknown
        "status": CONNECTOR_STATUS.get(ocpp_status, "unknown"), "ocpp_status": ocpp_status,
        "error_code": p["errorCode"], "info": p.get("info"), "vendor_id": p.get("vendorId"),
        "vendor_error_code": p.get("vendorErrorCode")}
    if p["connectorId"] == 0:
        params["station_status"] = STATION_STATUS.get(ocpp_status, "online")
        await ctx.writer.submit(SQL.station_status_notification, params)
    else:
        rows = await ctx.writer.submit(SQL.connector_status_notification, params)
        if rows and rows[0]["discovered"]:
            log.warning("%s reported connector %d, which was not provisioned; created it",
                        ctx.station_code, p["connectorId"])
    return {}


async def data_transfer(ctx: StationContext, p: dict[str, Any]) -> dict[str, Any]:
    await _store(ctx, "DataTransfer", p)
    # OCPP 1.6 §4.3: no implementation for this vendorId -> UnknownVendorId.
    return {"status": "UnknownVendorId"}


def progress_notification(action: str) -> Callable[[StationContext, dict[str, Any]],
                                                   Awaitable[dict[str, Any]]]:
    """Firmware/DiagnosticsStatusNotification: always answered {}, never an error
    (OCPP 1.6 §4.4, §4.5)."""

    async def store(ctx: StationContext, p: dict[str, Any]) -> dict[str, Any]:
        await ctx.writer.submit(SQL.progress_notification, {
            "station_id": ctx.station_id, "at": now(), "status": p["status"],
            "action": action, "payload": as_json(p)})
        return {}

    return store


def notification(action: str) -> Callable[[StationContext, dict[str, Any]],
                                          Awaitable[dict[str, Any]]]:
    """Security whitepaper notifications: an append-only log, answered with {}."""

    async def store(ctx: StationContext, p: dict[str, Any]) -> dict[str, Any]:
        await _store(ctx, action, p)
        if action == "SecurityEventNotification":
            log.warning("%s security event %s", ctx.station_code, p["type"])
        return {}

    return store


async def sign_certificate(ctx: StationContext, p: dict[str, Any]) -> dict[str, Any]:
    # No certificate authority is configured: a business refusal, not an error.
    log.info("%s asked for a certificate signature; no CA configured", ctx.station_code)
    return {"status": "Rejected"}


async def _store(ctx: StationContext, action: str, p: dict[str, Any]) -> None:
    await ctx.writer.submit(SQL.station_notification, {
        "station_id": ctx.station_id, "at": now(), "action": action, "payload": as_json(p)})
