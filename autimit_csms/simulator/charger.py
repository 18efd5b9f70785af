"""What a simulated charge point knows and decides, sans-I/O.

Owns one charger's state -- connectors, sessions, an energy meter with an EV behind each
connector, its configuration keys --, the payloads it sends, its answer to each central-system
command together with what it does next (`FollowUp`), and the charger side of OCPP-J RPC
(`ChargerRpc`). Fed payloads, elapsed seconds and `now`; it must not do I/O, sleep or read
a clock (the caller, `station`, does).
"""

from __future__ import annotations

import datetime as dt
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from ..ocpp16 import (
    CHARGER_TO_CSMS,
    CSMS_TO_CHARGER,
    Call,
    CallError,
    CallInProgress,
    CallReceived,
    CallResult,
    ErrorCode,
    ErrorReceived,
    Event,
    Ignored,
    OcppError,
    Rejected,
    ResultReceived,
    SchemaRegistry,
    decode,
    encode,
)

Payload = dict[str, Any]


def iso(at: dt.datetime) -> str:
    """An OCPP dateTime as chargers write it: UTC, milliseconds, `Z`."""
    return at.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _new_id() -> str:
    return str(uuid.uuid4())


class ChargerRpc:
    """The charger side of one OCPP-J connection (OCPP-J §4).

    Our CALLs go out one at a time (§4.1.1), each checked against its schema first; the
    central system's CALLs and its answers to ours are checked on arrival. It mirrors
    `ocpp16.OcppProtocol`, which takes the CSMS side only (it accepts charger-to-CSMS
    actions and sends CSMS-to-charger ones).
    """

    def __init__(self, registry: SchemaRegistry, id_factory: Callable[[], str] = _new_id) -> None:
        self._registry = registry
        self._new_id = id_factory
        self._outstanding: tuple[str, str] | None = None  # (unique id, action)

    def send_call(self, action: str, payload: Payload) -> tuple[str, str]:
        """Validate and encode our CALL; return (unique id, text) and expect its answer.

        A payload that breaks its schema raises `OcppError`: that is a simulator bug,
        never sent.
        """
        if self._outstanding is not None:
            raise CallInProgress(f"{self._outstanding[1]} is still unanswered")
        if action not in CHARGER_TO_CSMS:
            raise OcppError(ErrorCode.NotSupported, f"{action!r} is not sent by a charge point")
        self._registry.validate_request(action, payload)
        unique_id = self._new_id()
        self._outstanding = (unique_id, action)
        return unique_id, encode(Call(unique_id, action, payload))

    def cancel_call(self) -> None:
        """Forget our outstanding CALL (timed out, or the link dropped)."""
        self._outstanding = None

    def receive(self, text: str) -> Event:
        """The event for one text frame from the central system; never raises."""
        try:
            message = decode(text)
        except OcppError as error:
            return _rejected(error) if error.answerable else Ignored(str(error))
        if isinstance(message, Call):
            return self._receive_call(message)
        if self._outstanding is None or message.unique_id != self._outstanding[0]:
            return Ignored(f"answer for unknown or timed-out id {message.unique_id!r}")
        action = self._outstanding[1]
        self._outstanding = None
        if isinstance(message, CallError):
            return ErrorReceived(action, message)
        try:
            self._registry.validate_response(action, message.payload)
        except OcppError as error:
            return ResultReceived(action, message, error)
        return ResultReceived(action, message)

    def _receive_call(self, call: Call) -> Event:
        try:
            if not self._registry.is_known(call.action):
                raise OcppError(ErrorCode.NotImplemented, "unknown action")
            if call.action not in CSMS_TO_CHARGER:
                raise OcppError(ErrorCode.NotSupported, "action not sent by a central system")
            self._registry.validate_request(call.action, call.payload)
        except OcppError as error:
            return _rejected(OcppError(error.code, error.description, call.unique_id))
        return CallReceived(call)

    def answer(self, call: Call, payload: Payload) -> str:
        """The CALLRESULT text; a payload that breaks its schema raises `OcppError` (our bug)."""
        self._registry.validate_response(call.action, payload)
        return encode(CallResult(call.unique_id, payload))

    @staticmethod
    def answer_error(call: Call, code: str, description: str = "") -> str:
        return encode(CallError(call.unique_id, code, description))


def _rejected(error: OcppError) -> Rejected:
    call_error = error.to_call_error()
    return Rejected(None if call_error is None else encode(call_error), error)


# What the simulated meter measures: unit and location of each measurand (OCPP 1.6 §7.31).
MEASURANDS: Final = {
    "Energy.Active.Import.Register": ("Wh", "Outlet"),
    "Power.Active.Import": ("W", "Outlet"),
    "Voltage": ("V", "Outlet"),
    "Current.Import": ("A", "Outlet"),
    "SoC": ("Percent", "EV"),
}
RAMP_SECONDS: Final = 30.0  # the EV's charger needs this long to reach full power
TAPER_FROM_SOC: Final = 80.0  # above it the battery takes less and less
STEP_SECONDS: Final = 5.0


@dataclass
class Meter:
    """One connector's energy meter, and the EV plugged into it (`soc` is None without one)."""

    register_wh: float
    voltage_v: float = 230.0
    power_w: float = 0.0
    soc: float | None = None
    capacity_wh: float = 60_000.0
    ev_max_power_w: float = 11_000.0  # what the car's on-board charger takes
    charging_s: float = 0.0

    @property
    def current_a(self) -> float:
        return self.power_w / (3 * self.voltage_v)  # three phases, balanced

    def plug_in(self, rng: random.Random) -> None:
        self.soc = rng.uniform(15, 50)
        self.capacity_wh = rng.choice((40_000.0, 60_000.0, 77_000.0, 100_000.0))
        self.ev_max_power_w = rng.choice((7_400.0, 11_000.0, 11_000.0, 22_000.0))
        self.charging_s = 0.0

    def unplug(self) -> None:
        self.soc, self.power_w = None, 0.0

    def advance(self, seconds: float, max_power_w: float, rng: random.Random) -> None:
        """Charge for `seconds` of charger time, in small steps so ramp and taper show."""
        while seconds > 0:
            step = min(STEP_SECONDS, seconds)
            seconds -= step
            self.power_w = self._power(max_power_w, rng)
            energy_wh = self.power_w * step / 3600
            self.register_wh += energy_wh
            if self.soc is not None:
                self.soc = min(100.0, self.soc + energy_wh / self.capacity_wh * 100)
            self.charging_s += step
        self.voltage_v = rng.gauss(230.0, 1.2)

    def _power(self, max_power_w: float, rng: random.Random) -> float:
        if self.soc is None or self.soc >= 100:
            return 0.0
        ramp = min(1.0, (self.charging_s + STEP_SECONDS) / RAMP_SECONDS)
        taper = 1.0 if self.soc < TAPER_FROM_SOC else max(0.1, (100 - self.soc) / 20)
        return min(max_power_w, self.ev_max_power_w) * ramp * taper * rng.uniform(0.97, 1.0)

    def sampled_values(self, measurands: list[str], context: str) -> list[Payload]:
        readings = {
            "Energy.Active.Import.Register": f"{int(self.register_wh)}",
            "Power.Active.Import": f"{self.power_w:.0f}",
            "Voltage": f"{self.voltage_v:.1f}",
            "Current.Import": f"{self.current_a:.1f}",
        }
        if self.soc is not None:
            readings["SoC"] = f"{self.soc:.0f}"
        values = []
        for measurand in measurands:
            if measurand in readings:
                unit, location = MEASURANDS[measurand]
                values.append({"value": readings[measurand], "context": context,
                               "format": "Raw", "measurand": measurand,
                               "location": location, "unit": unit})
        return values


@dataclass
class Session:
    connector: int
    id_tag: str
    meter_start: int
    remote: bool
    transaction_id: int | None = None
    stop_reason: str | None = None  # set when something asked it to stop


@dataclass
class Connector:
    number: int
    meter: Meter
    status: str = "Available"
    operative: bool = True
    inoperative_after_session: bool = False  # ChangeAvailability answered Scheduled
    claimed: bool = False  # a RemoteStartTransaction was accepted for it
    session: Session | None = None

    @property
    def free(self) -> bool:
        return self.operative and not self.claimed and self.session is None


@dataclass
class ConfigKey:
    value: str
    kind: str = "text"  # int | bool | measurands | text: what ChangeConfiguration accepts
    readonly: bool = False


@dataclass(frozen=True)
class ChargerSettings:
    connectors: int = 2
    max_power_w: float = 11_000.0  # 3 phases x 16 A x 230 V
    meter_interval: int = 60  # MeterValueSampleInterval, charger seconds
    heartbeat_interval: int | None = None  # None: the interval BootNotification.conf gives
    vendor: str = "Autimit"
    model: str = "Simulator"
    serial_number: str = ""
    firmware_version: str = "autimit-csms-simulate 1"


# Follow-ups: what the charger does after answering a command (the I/O layer runs them).
@dataclass(frozen=True, slots=True)
class StartCharging:
    connector: int
    id_tag: str


@dataclass(frozen=True, slots=True)
class StopCharging:
    connector: int  # its session's stop_reason says why


@dataclass(frozen=True, slots=True)
class Send:
    action: str
    payload: Payload


@dataclass(frozen=True, slots=True)
class Reboot:
    kind: str


FollowUp = StartCharging | StopCharging | Send | Reboot


@dataclass(frozen=True, slots=True)
class Reply:
    """The answer to a central-system CALL: a CALLRESULT payload or a CALLERROR, then what
    the charger does next."""

    payload: Payload | None = None
    error: tuple[str, str] | None = None  # (code, description)
    then: tuple[FollowUp, ...] = ()


def _default_config(settings: ChargerSettings) -> dict[str, ConfigKey]:
    # OCPP 1.6 §9.1 Core keys (and the ones this charger acts on).
    return {
        "AuthorizeRemoteTxRequests": ConfigKey("false", "bool"),
        "ClockAlignedDataInterval": ConfigKey("0", "int"),
        "ConnectionTimeOut": ConfigKey("60", "int"),
        "GetConfigurationMaxKeys": ConfigKey("50", readonly=True),
        "HeartbeatInterval": ConfigKey(str(settings.heartbeat_interval or 300), "int"),
        "LocalAuthorizeOffline": ConfigKey("true", "bool"),
        "LocalPreAuthorize": ConfigKey("false", "bool"),
        "MeterValueSampleInterval": ConfigKey(str(settings.meter_interval), "int"),
        "MeterValuesAlignedData": ConfigKey("", "measurands"),
        "MeterValuesSampledData": ConfigKey(",".join(MEASURANDS), "measurands"),
        "NumberOfConnectors": ConfigKey(str(settings.connectors), readonly=True),
        "StopTransactionOnEVSideDisconnect": ConfigKey("true", "bool"),
        "StopTransactionOnInvalidId": ConfigKey("true", "bool"),
        "StopTxnSampledData": ConfigKey("Energy.Active.Import.Register", "measurands"),
        "SupportedFeatureProfiles": ConfigKey("Core,RemoteTrigger", readonly=True),
        "TransactionMessageAttempts": ConfigKey("3", "int"),
        "TransactionMessageRetryInterval": ConfigKey("30", "int"),
        "UnlockConnectorOnEVSideDisconnect": ConfigKey("true", "bool"),
        "WebSocketPingInterval": ConfigKey("0", "int"),
    }


def _valid(kind: str, value: str) -> bool:
    if kind == "int":
        return value.isascii() and value.isdigit() and int(value) < 2**31
    if kind == "bool":
        return value.lower() in ("true", "false")
    if kind == "measurands":  # only what this meter can measure (§9.1.16: else Rejected)
        return all(m.strip() in MEASURANDS for m in value.split(",") if m.strip())
    return True


class ChargePoint:
    """One simulated charger: connectors 1..n (0 is the charge point itself)."""

    def __init__(self, settings: ChargerSettings, rng: random.Random) -> None:
        self.settings = settings
        self.rng = rng
        self.connectors = {
            n: Connector(n, Meter(register_wh=float(rng.randint(100_000, 5_000_000))))
            for n in range(1, settings.connectors + 1)}
        self.station_status = "Available"
        self.config = _default_config(settings)
        self.accepting_sessions = True
        self.energy_by_transaction: dict[int, int] = {}  # Wh, for the summary

    # -- configuration ------------------------------------------------------------------
    def int_key(self, key: str) -> int:
        return int(self.config[key].value)

    def bool_key(self, key: str) -> bool:
        return self.config[key].value.lower() == "true"

    def measurands(self, key: str) -> list[str]:
        return [m.strip() for m in self.config[key].value.split(",") if m.strip()]

    @property
    def heartbeat_interval(self) -> int:
        return self.int_key("HeartbeatInterval")

    @property
    def meter_interval(self) -> int:
        return self.int_key("MeterValueSampleInterval")

    # -- what the charger sends -----------------------------------------------------------
    def boot_notification(self) -> Payload:
        s = self.settings
        payload: Payload = {"chargePointVendor": s.vendor, "chargePointModel": s.model}
        if s.serial_number:
            payload["chargePointSerialNumber"] = s.serial_number[:25]
        payload["firmwareVersion"] = s.firmware_version
        return payload

    def boot_answered(self, conf: Payload) -> str:
        """Apply BootNotification.conf; its `interval` is the heartbeat interval once
        Accepted, the time to wait before booting again otherwise (OCPP 1.6 §4.2)."""
        if conf["status"] == "Accepted" and self.settings.heartbeat_interval is None:
            self.config["HeartbeatInterval"].value = str(conf["interval"])
        return str(conf["status"])

    def status_notification(self, number: int, now: dt.datetime) -> Payload:
        status = self.station_status if number == 0 else self.connectors[number].status
        return {"connectorId": number, "errorCode": "NoError", "status": status,
                "timestamp": iso(now)}

    def set_status(self, number: int, status: str, now: dt.datetime) -> Payload:
        self.connectors[number].status = status
        return self.status_notification(number, now)

    def begin_session(self, number: int, id_tag: str, now: dt.datetime, *,
                      remote: bool) -> Payload:
        """An EV is plugged in and authorized: the StartTransaction payload."""
        connector = self.connectors[number]
        connector.claimed = False
        connector.meter.plug_in(self.rng)
        meter_start = int(connector.meter.register_wh)
        connector.session = Session(number, id_tag, meter_start, remote)
        return {"connectorId": number, "idTag": id_tag, "meterStart": meter_start,
                "timestamp": iso(now)}

    def session_started(self, number: int, conf: Payload) -> str:
        """Apply StartTransaction.conf; the idTag's status. A charger stops a transaction
        whose tag is not Accepted (StopTransactionOnInvalidId, OCPP 1.6 §5.3)."""
        session = self.connectors[number].session
        assert session is not None
        session.transaction_id = conf["transactionId"]
        status = str(conf["idTagInfo"]["status"])
        if status != "Accepted" and self.bool_key("StopTransactionOnInvalidId"):
            self.request_stop(number, "DeAuthorized")
        return status

    def abandon_session(self, number: int) -> None:
        """The session never started (StartTransaction was not answered)."""
        connector = self.connectors[number]
        connector.session, connector.claimed = None, False
        connector.meter.unplug()

    def release_claim(self, number: int) -> None:
        self.connectors[number].claimed = False

    def charge(self, number: int, seconds: float) -> None:
        self.connectors[number].meter.advance(seconds, self.settings.max_power_w, self.rng)

    def ev_full(self, number: int) -> bool:
        soc = self.connectors[number].meter.soc
        return soc is not None and soc >= 100

    def meter_values(self, number: int, now: dt.datetime,
                     context: str = "Sample.Periodic") -> Payload:
        connector = self.connectors[number]
        payload: Payload = {"connectorId": number}
        if connector.session is not None and connector.session.transaction_id is not None:
            payload["transactionId"] = connector.session.transaction_id
        values = connector.meter.sampled_values(self.measurands("MeterValuesSampledData"),
                                                context)
        if not values:  # MeterValuesSampledData may be set empty; the register is always read
            values = connector.meter.sampled_values(["Energy.Active.Import.Register"], context)
        payload["meterValue"] = [{"timestamp": iso(now), "sampledValue": values}]
        return payload

    def request_stop(self, number: int, reason: str) -> bool:
        """Ask the session on `number` to stop; False if there is none or it is stopping."""
        session = self.connectors[number].session
        if session is None or session.stop_reason is not None:
            return False
        session.stop_reason = reason
        return True

    def end_session(self, number: int, now: dt.datetime) -> Payload:
        """The EV is done or was told to stop: the StopTransaction payload."""
        connector = self.connectors[number]
        session = connector.session
        assert session is not None and session.transaction_id is not None
        reason = session.stop_reason or "Local"
        meter_stop = int(connector.meter.register_wh)
        self.energy_by_transaction[session.transaction_id] = meter_stop - session.meter_start
        payload: Payload = {}
        if reason == "Local":  # the driver's own card ended it; remote and resets carry none
            payload["idTag"] = session.id_tag
        payload.update({"meterStop": meter_stop, "timestamp": iso(now),
                        "transactionId": session.transaction_id, "reason": reason})
        end = connector.meter.sampled_values(self.measurands("StopTxnSampledData"),
                                             "Transaction.End")
        if end:
            payload["transactionData"] = [{"timestamp": iso(now), "sampledValue": end}]
        connector.session = None
        connector.meter.unplug()
        if connector.inoperative_after_session:
            connector.operative, connector.inoperative_after_session = False, False
        return payload

    def idle_status(self, number: int) -> str:
        return "Available" if self.connectors[number].operative else "Unavailable"

    # -- what the charger answers ---------------------------------------------------------
    def handle(self, call: Call, now: dt.datetime) -> Reply:
        """The answer to a schema-valid central-system CALL and what follows it."""
        command = _COMMANDS.get(call.action)
        if command is None:  # a known 1.6 action of a profile this charger does not have
            return Reply(error=(ErrorCode.NotSupported,
                                f"{call.action} is not supported by this charge point"))
        return command(self, call.payload, now)

    def _remote_start(self, p: Payload, now: dt.datetime) -> Reply:
        number = p.get("connectorId")
        if number is None:
            number = next((c.number for c in self.connectors.values() if c.free), None)
        connector = None if number is None else self.connectors.get(number)
        if not self.accepting_sessions or connector is None or not connector.free:
            return Reply({"status": "Rejected"})
        connector.claimed = True
        return Reply({"status": "Accepted"}, then=(StartCharging(connector.number, p["idTag"]),))

    def _remote_stop(self, p: Payload, now: dt.datetime) -> Reply:
        for connector in self.connectors.values():
            session = connector.session
            if session is not None and session.transaction_id == p["transactionId"]:
                if self.request_stop(connector.number, "Remote"):
                    return Reply({"status": "Accepted"},
                                 then=(StopCharging(connector.number),))
        return Reply({"status": "Rejected"})

    def _reset(self, p: Payload, now: dt.datetime) -> Reply:
        reason = "HardReset" if p["type"] == "Hard" else "SoftReset"
        stops = tuple(StopCharging(n) for n in self.connectors if self.request_stop(n, reason))
        return Reply({"status": "Accepted"}, then=(*stops, Reboot(p["type"])))

    def _change_availability(self, p: Payload, now: dt.datetime) -> Reply:
        number, operative = p["connectorId"], p["type"] == "Operative"
        if number == 0:
            targets = list(self.connectors.values())
        elif number in self.connectors:
            targets = [self.connectors[number]]
        else:
            return Reply({"status": "Rejected"})
        scheduled = False
        then: list[FollowUp] = []
        if number == 0:
            self.station_status = "Available" if operative else "Unavailable"
            then.append(Send("StatusNotification", self.status_notification(0, now)))
        for connector in targets:
            if connector.session is not None and not operative:
                # OCPP 1.6 §5.2: a transaction in progress finishes first.
                connector.inoperative_after_session = scheduled = True
                continue
            connector.inoperative_after_session = False
            if connector.operative != operative:
                connector.operative = operative
                if connector.session is None and not connector.claimed:
                    status = self.idle_status(connector.number)
                    then.append(Send("StatusNotification",
                                     self.set_status(connector.number, status, now)))
        return Reply({"status": "Scheduled" if scheduled else "Accepted"}, then=tuple(then))

    def _change_configuration(self, p: Payload, now: dt.datetime) -> Reply:
        key, value = p["key"], p["value"]
        if key == "AuthorizationKey":
            # This CSMS issues new secrets through its REST API, not through this key: keep
            # the old one (security whitepaper A01.FR.04: Rejected leaves it in force).
            return Reply({"status": "Rejected"})
        entry = self.config.get(key)
        if entry is None:
            return Reply({"status": "NotSupported"})
        if entry.readonly or not _valid(entry.kind, value):
            return Reply({"status": "Rejected"})
        entry.value = value
        return Reply({"status": "Accepted"})

    def _get_configuration(self, p: Payload, now: dt.datetime) -> Reply:
        wanted = p.get("key") or list(self.config)
        known = [k for k in wanted if k in self.config]
        payload: Payload = {"configurationKey": [
            {"key": k, "readonly": self.config[k].readonly, "value": self.config[k].value}
            for k in known]}
        unknown = [k for k in wanted if k not in self.config]
        if unknown:
            payload["unknownKey"] = unknown
        return Reply(payload)

    def _trigger_message(self, p: Payload, now: dt.datetime) -> Reply:
        requested, number = p["requestedMessage"], p.get("connectorId")
        if number is not None and number != 0 and number not in self.connectors:
            return Reply({"status": "Rejected"})
        numbers = [number] if number is not None else [0, *self.connectors]
        if requested == "StatusNotification":
            sends = [Send(requested, self.status_notification(n, now)) for n in numbers]
        elif requested == "MeterValues":
            sends = [Send(requested, self.meter_values(n, now, "Trigger"))
                     for n in numbers if n != 0]
        elif requested == "BootNotification":
            sends = [Send(requested, self.boot_notification())]
        elif requested == "Heartbeat":
            sends = [Send(requested, {})]
        else:  # Diagnostics- and FirmwareStatusNotification: nothing under way
            sends = [Send(requested, {"status": "Idle"})]
        return Reply({"status": "Accepted"}, then=tuple(sends))

    def _unlock_connector(self, p: Payload, now: dt.datetime) -> Reply:
        number = p["connectorId"]
        if number not in self.connectors:
            return Reply({"status": "NotSupported"})
        # OCPP 1.6 §5.18: unlocking ends a transaction on the connector first.
        then = (StopCharging(number),) if self.request_stop(number, "UnlockCommand") else ()
        return Reply({"status": "Unlocked"}, then=then)

    def _clear_cache(self, p: Payload, now: dt.datetime) -> Reply:
        return Reply({"status": "Accepted"})

    def _data_transfer(self, p: Payload, now: dt.datetime) -> Reply:
        return Reply({"status": "UnknownVendorId"})


_COMMANDS: Final[dict[str, Callable[[ChargePoint, Payload, dt.datetime], Reply]]] = {
    "ChangeAvailability": ChargePoint._change_availability,
    "ChangeConfiguration": ChargePoint._change_configuration,
    "ClearCache": ChargePoint._clear_cache,
    "DataTransfer": ChargePoint._data_transfer,
    "GetConfiguration": ChargePoint._get_configuration,
    "RemoteStartTransaction": ChargePoint._remote_start,
    "RemoteStopTransaction": ChargePoint._remote_stop,
    "Reset": ChargePoint._reset,
    "TriggerMessage": ChargePoint._trigger_message,
    "UnlockConnector": ChargePoint._unlock_connector,
}
