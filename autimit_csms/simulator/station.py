"""Simulated stations on the wire: one Trio task per station against a live CSMS.

Owns the simulator's I/O and time: each station's WebSocket link (HTTP Basic auth,
reconnects, a reader task, one outstanding CALL per direction), the transaction messages
queued while offline and replayed in order with their old timestamps, the scenarios, and
the tallies for the summary. What a charger decides is `charger.ChargePoint`'s; this
module carries it out. Task owners:

    Simulation.run            progress line; one StationRun.run per station
    StationRun.run            link supervisor, heartbeats, command follow-ups
      _connection             one WebSocket: its reader, bring-up (boot, replay, statuses)
      scenario scope          the scenario, and the sessions it or the CSMS starts
"""

from __future__ import annotations

import base64
import datetime as dt
import logging
import random
import ssl
from collections import deque
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any, Final

import trio
from trio_websocket import (
    ConnectionClosed,
    ConnectionRejected,
    ConnectionTimeout,
    HandshakeError,
    WebSocketConnection,
    open_websocket_url,
)

from .. import logs
from ..ocpp16 import (
    CallReceived,
    ErrorCode,
    ErrorReceived,
    Ignored,
    OcppError,
    Rejected,
    ResultReceived,
    SchemaRegistry,
)
from ..ocpp16.codec import redact_for_log
from .charger import (
    ChargePoint,
    ChargerRpc,
    ChargerSettings,
    FollowUp,
    Payload,
    Reboot,
    Reply,
    Send,
    StartCharging,
    StopCharging,
)
from .provision import StationSpec

log = logging.getLogger("autimit_csms.simulate")

SUBPROTOCOL: Final = "ocpp1.6"
DETAILED_UP_TO: Final = 20  # stations; beyond, per-station events are DEBUG, progress stays


@dataclass(frozen=True)
class Options:
    """Scenario knobs. Durations and intervals are charger seconds: `speed` of them pass
    per real second (meters follow charger time; timestamps stay real wall-clock time)."""

    duration: float = 300.0  # boot scenario: how long to stay connected
    charge_duration: float = 1800.0
    sessions: int = 1  # session scenario: one after the other, on connectors 1, 2, ...
    pause: float = 60.0  # between two sessions
    reconnect_delay: float = 30.0  # offline scenario: offline this long after the stop
    connectors: int = 2
    meter_interval: int = 60
    heartbeat_interval: int | None = None  # None: what BootNotification.conf says
    power_kw: float = 11.0
    speed: float = 1.0
    call_timeout: float = 30.0  # real seconds
    connect_attempts: int = 3
    progress_every: float = 5.0  # real seconds; 0: no progress lines
    seed: int | None = None
    ca_file: str | None = None  # trusted for wss:// besides the system's CAs


@dataclass
class Tally:
    connected: bool = False
    calls_sent: int = 0
    answered: int = 0
    call_errors: int = 0
    timeouts: int = 0
    commands: int = 0  # central-system CALLs answered
    sessions: int = 0  # StopTransaction delivered
    energy_wh: int = 0
    queued: int = 0
    replayed: int = 0
    charging: int = 0
    failures: list[str] = field(default_factory=list)

    def add(self, other: Tally) -> None:
        for name in ("calls_sent", "answered", "call_errors", "timeouts", "commands",
                     "sessions", "energy_wh", "queued", "replayed", "charging"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.failures += other.failures


class Offline(Exception):
    """No link to the CSMS right now."""


class CallFailed(Exception):
    """A CALL got a CALLERROR, no answer in time, or an answer breaking its schema
    (already recorded as a failure)."""


class StationFailed(Exception):
    """The station cannot go on (credentials refused, never connected, boot refused)."""


@dataclass
class Link:
    """One WebSocket connection and its RPC state."""

    ws: WebSocketConnection
    rpc: ChargerRpc
    answers_in: trio.MemorySendChannel[ResultReceived | ErrorReceived]
    answers: trio.MemoryReceiveChannel[ResultReceived | ErrorReceived]


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class StationRun:
    """One simulated charger for the life of the simulation."""

    def __init__(self, spec: StationSpec, scenario: str, id_tag: str, options: Options,
                 registry: SchemaRegistry, simulation: Simulation, index: int) -> None:
        self.spec, self.scenario, self.id_tag, self.options = spec, scenario, id_tag, options
        self.registry = registry
        self.simulation = simulation
        self.tally = Tally()
        self.cp = ChargePoint(ChargerSettings(
            connectors=options.connectors, max_power_w=options.power_kw * 1000,
            meter_interval=options.meter_interval,
            heartbeat_interval=options.heartbeat_interval, serial_number=spec.code),
            random.Random(None if options.seed is None else options.seed + index))
        self.event = log.info if simulation.detailed else log.debug
        self.link: Link | None = None  # set once booted and replayed: CALLs may go out
        self._current: Link | None = None  # the open connection, ready or not
        self._lock = trio.Lock()  # one outstanding CALL (OCPP-J §4.1.1)
        self._ready = trio.Event()
        self._want_online = False
        self._wanted = trio.Event()
        self._boot_needed = True
        self.queue: deque[tuple[str, Payload]] = deque()
        self._stop_events: dict[int, trio.Event] = {}
        self._session_ended: dict[int, trio.Event] = {}
        self._nursery: trio.Nursery | None = None
        self._activity: trio.Nursery | None = None
        self.scenario_scope = trio.CancelScope()
        self._handlers: dict[type, Callable[[Link, Any], Awaitable[None]]] = {
            ResultReceived: self._on_answer, ErrorReceived: self._on_answer,
            CallReceived: self._on_call, Rejected: self._on_rejected, Ignored: self._on_ignored}

    @property
    def online_now(self) -> bool:
        return self.link is not None

    def charging_now(self) -> list[str]:
        """What each charging connector's meter reads, for progress lines."""
        readings = []
        for number, connector in self.cp.connectors.items():
            session, meter = connector.session, connector.meter
            if session is not None and session.transaction_id is not None:
                soc = "" if meter.soc is None else f", SoC {meter.soc:.0f} %"
                readings.append(
                    f"connector {number}: {(meter.register_wh - session.meter_start) / 1000:.2f}"
                    f" kWh, {meter.power_w / 1000:.1f} kW, {meter.voltage_v:.1f} V, "
                    f"{meter.current_a:.1f} A{soc}")
        return readings

    def delivered_wh(self) -> float:
        """Energy of delivered sessions and of the ones under way."""
        return self.tally.energy_wh + sum(
            c.meter.register_wh - c.session.meter_start
            for c in self.cp.connectors.values() if c.session is not None)

    def fail(self, message: str) -> None:
        self.tally.failures.append(message)
        log.warning("%s", message)

    async def sleep(self, seconds: float) -> None:
        """Wait `seconds` of charger time."""
        await trio.sleep(max(0.0, seconds) / self.options.speed)

    # -- lifetime -----------------------------------------------------------------------
    async def run(self) -> None:
        logs.STATION.set(self.spec.code)
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._keep_connected)
                nursery.start_soon(self._heartbeats)
                with self.scenario_scope:
                    try:
                        async with trio.open_nursery() as activity:
                            self._activity = activity
                            await SCENARIOS[self.scenario](self)
                            self.cp.accepting_sessions = False
                            self.stop_sessions("Local")
                    except* (CallFailed, Offline):
                        pass  # recorded where it happened; the station winds down
                self._activity = None
                self.cp.accepting_sessions = False
                self.simulation.scenario_done(self)
                await self.simulation.released.wait()
                await self._wind_down()
                nursery.cancel_scope.cancel()
        except* StationFailed as failed:
            for error in failed.exceptions:
                self.fail(str(error))
        finally:
            self.simulation.scenario_done(self)

    async def _wind_down(self) -> None:
        for number, connector in self.cp.connectors.items():
            if connector.session is not None and connector.session.transaction_id is not None:
                self.cp.request_stop(number, "Local")
                await self._finish(number)
        if self.queue:
            with trio.move_on_after(self.options.call_timeout):
                await self.online()
            if self.queue:
                self.fail(f"{len(self.queue)} transaction messages were never delivered")
        await self.go_offline()

    # -- the link -----------------------------------------------------------------------
    async def online(self) -> None:
        """Connect if need be; return once connected, booted and replayed."""
        self._want(True)
        await self._ready.wait()

    async def start(self) -> None:
        """Connect and boot at the start of a scenario; Offline (recorded) if a CSMS keeps
        the station Pending or Rejected longer than its connection attempts may take."""
        limit = self.options.call_timeout * self.options.connect_attempts
        with trio.move_on_after(limit):
            await self.online()
            return
        self.fail(f"not connected and booted within {limit:g} s")
        raise Offline()

    async def go_offline(self) -> None:
        """Drop the link (as a charger losing its network would) and stay offline."""
        self._want(False)
        await self._drop_link()

    def _want(self, online: bool) -> None:
        self._want_online = online
        if online:
            self._wanted.set()
        elif self._wanted.is_set():
            self._wanted = trio.Event()

    async def _drop_link(self) -> None:
        link = self._current
        if link is not None:
            with trio.move_on_after(2):
                await link.ws.aclose()

    async def _keep_connected(self) -> None:
        """Keep a connection while one is wanted; give up only on refused credentials or
        when the very first connection cannot be made."""
        failures = 0
        while True:
            while not self._want_online:
                await self._wanted.wait()
            try:
                await self._connection()
                failures = 0
            except ConnectionRejected as err:
                if err.status_code in (401, 403, 404):
                    raise StationFailed(f"the CSMS refused the handshake with HTTP "
                                        f"{err.status_code} (wrong station code or secret?)"
                                        ) from None
                failures += 1
                reason = f"HTTP {err.status_code}"
            except (HandshakeError, ConnectionTimeout, OSError) as err:
                failures += 1
                cause = err.__cause__ or err.__context__ or err
                reason = str(cause) or type(cause).__name__
            if failures and not self.tally.connected:
                if failures >= self.options.connect_attempts:
                    raise StationFailed(f"could not connect to {self.spec.url} after "
                                        f"{failures} attempts: {reason}")
            if failures:
                log.debug("connection attempt failed: %s", reason)
            await trio.sleep(min(0.25 * 2 ** failures, 10.0) if failures else 0.2)

    async def _connection(self) -> None:
        token = base64.b64encode(f"{self.spec.code}:{self.spec.secret}".encode()).decode()
        async with open_websocket_url(
                self.spec.url, self.simulation.ssl_context(self.spec.url),
                subprotocols=[SUBPROTOCOL],
                extra_headers=[(b"Authorization", f"Basic {token}".encode())],
                connect_timeout=self.options.call_timeout, disconnect_timeout=2) as ws:
            if ws.subprotocol != SUBPROTOCOL:
                raise StationFailed(f"the CSMS did not agree to subprotocol {SUBPROTOCOL}")
            answers_in, answers = trio.open_memory_channel[ResultReceived | ErrorReceived](1)
            link = Link(ws, ChargerRpc(self.registry), answers_in, answers)
            self._current = link
            self.tally.connected = True
            self.event("connected to %s", self.spec.url)
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._read, link, nursery.cancel_scope)
                    await self._bring_up(link)
                    await trio.sleep_forever()  # until the reader sees the link close
            finally:
                self._current = self.link = None
                if self._ready.is_set():
                    self._ready = trio.Event()
                self.event("disconnected")

    async def _bring_up(self, link: Link) -> None:
        """Boot when needed (nothing else is sent before Accepted, OCPP 1.6 §4.2), replay
        what was queued offline, report every connector's status; then open for CALLs."""
        try:
            async with self._lock:
                while self._boot_needed:
                    try:
                        conf = await self._exchange(link, "BootNotification",
                                                    self.cp.boot_notification())
                    except CallFailed as err:
                        raise StationFailed(f"BootNotification failed: {err}") from None
                    status = self.cp.boot_answered(conf)
                    if status == "Accepted":
                        self._boot_needed = False
                        self.event("booted: Accepted, heartbeat every %d s",
                                   self.cp.heartbeat_interval)
                    else:
                        self.event("boot %s; booting again in %d s", status, conf["interval"])
                        await self.sleep(conf["interval"] or 60)
                if self.queue:
                    self.event("replaying %d queued transaction messages", len(self.queue))
                    await self._replay(link)
                    self.event("replayed")
                for number in (0, *self.cp.connectors):
                    with suppress(CallFailed):
                        await self._exchange(link, "StatusNotification",
                                             self.cp.status_notification(number, now()))
                self.link = link
        except Offline:
            return
        self._ready.set()

    async def _read(self, link: Link, connection_scope: trio.CancelScope) -> None:
        try:
            while True:
                text = await link.ws.get_message()
                if not isinstance(text, str):
                    continue  # OCPP-J §4.1: text frames only; a binary frame is not OCPP
                log.debug("received %s", redact_for_log(text))
                event = link.rpc.receive(text)
                await self._handlers[type(event)](link, event)
        except ConnectionClosed:
            pass
        finally:
            link.answers_in.close()
            connection_scope.cancel()

    async def _on_answer(self, link: Link, event: ResultReceived | ErrorReceived) -> None:
        with suppress(trio.WouldBlock, trio.BrokenResourceError):
            link.answers_in.send_nowait(event)

    async def _on_rejected(self, link: Link, event: Rejected) -> None:
        log.warning("the CSMS sent a CALL this charger refused: %s", event.error)
        if event.reply is not None:
            await self._send_text(link, event.reply)

    async def _on_ignored(self, link: Link, event: Ignored) -> None:
        log.debug("ignored a frame: %s", event.reason)

    async def _on_call(self, link: Link, event: CallReceived) -> None:
        call = event.call
        self.tally.commands += 1
        reply = self.cp.handle(call, now())
        try:
            if reply.error is not None:
                text = link.rpc.answer_error(call, *reply.error)
            else:
                assert reply.payload is not None
                text = link.rpc.answer(call, reply.payload)
        except OcppError as err:  # our answer broke its schema: a simulator bug
            self.fail(f"{call.action}.conf of this simulator is invalid: {err}")
            reply = Reply(error=(ErrorCode.InternalError, "simulator bug"))
            text = link.rpc.answer_error(call, ErrorCode.InternalError, "simulator bug")
        outcome = reply.error[0] if reply.error else (reply.payload or {}).get("status", "done")
        self.event("%s from the CSMS: %s", call.action, outcome)
        await self._send_text(link, text)
        if reply.then and self._nursery is not None:
            self._nursery.start_soon(self._follow_up, reply.then)

    async def _send_text(self, link: Link, text: str) -> None:
        log.debug("sending %s", redact_for_log(text))
        with suppress(ConnectionClosed):
            await link.ws.send_message(text)

    # -- CALLs --------------------------------------------------------------------------
    async def _exchange(self, link: Link, action: str, payload: Payload) -> Payload:
        """One CALL and its answer; the caller holds `_lock`."""
        unique_id, text = link.rpc.send_call(action, payload)
        self.tally.calls_sent += 1
        try:
            log.debug("sending %s", redact_for_log(text))
            await link.ws.send_message(text)
            with trio.move_on_after(self.options.call_timeout) as waited:
                while True:
                    event = await link.answers.receive()
                    answered = event.result if isinstance(event, ResultReceived) else event.error
                    if answered.unique_id == unique_id:
                        break
        except (ConnectionClosed, trio.EndOfChannel, trio.ClosedResourceError):
            link.rpc.cancel_call()
            raise Offline() from None
        if waited.cancelled_caught:
            link.rpc.cancel_call()
            self.tally.timeouts += 1
            self.fail(f"{action}: no answer within {self.options.call_timeout:g} s")
            raise CallFailed(f"{action}: timeout")
        if isinstance(event, ErrorReceived):
            self.tally.call_errors += 1
            error = event.error
            self.fail(f"{action}: CALLERROR {error.error_code} {error.description}".rstrip())
            raise CallFailed(f"{action}: {error.error_code}")
        if event.error is not None:
            self.fail(f"{action}.conf breaks its schema: {event.error}")
            raise CallFailed(f"{action}: invalid answer")
        self.tally.answered += 1
        return event.result.payload

    async def call(self, action: str, payload: Payload) -> Payload:
        """A CALL now, its CALLRESULT payload; Offline when there is no link."""
        async with self._lock:
            if self.link is None:
                raise Offline()
            return await self._exchange(self.link, action, payload)

    async def send(self, action: str, payload: Payload) -> None:
        """A message that is not about a transaction: dropped when offline."""
        with suppress(Offline, CallFailed):
            conf = await self.call(action, payload)
            if action == "BootNotification":
                self.cp.boot_answered(conf)

    async def _deliver(self, link: Link, action: str, payload: Payload) -> Payload:
        """A transaction message, resent after a CALLERROR or timeout up to
        TransactionMessageAttempts times, TransactionMessageRetryInterval x n apart
        (OCPP 1.6 §4.10); then given up (CallFailed). The caller holds `_lock`."""
        attempts = max(1, self.cp.int_key("TransactionMessageAttempts"))
        for attempt in range(1, attempts + 1):
            try:
                conf = await self._exchange(link, action, payload)
            except CallFailed:
                if attempt == attempts:
                    raise
                await self.sleep(self.cp.int_key("TransactionMessageRetryInterval") * attempt)
                continue
            if action == "StopTransaction":
                self.tally.sessions += 1
                self.tally.energy_wh += self.cp.energy_by_transaction.get(
                    payload["transactionId"], 0)
            return conf
        raise AssertionError("unreachable")

    async def transaction_message(self, action: str, payload: Payload) -> None:
        """Send now if connected and nothing older waits; else queue it, in order, for the
        next connection (OCPP 1.6 §4.8: transaction messages are delivered, in order)."""
        async with self._lock:
            if self.link is not None and not self.queue:
                try:
                    await self._deliver(self.link, action, payload)
                    return
                except CallFailed:
                    return  # given up after its attempts, as a charger would
                except Offline:
                    pass
            self.queue.append((action, payload))
            self.tally.queued += 1

    async def _replay(self, link: Link) -> None:
        while self.queue:
            action, payload = self.queue[0]
            with suppress(CallFailed):
                await self._deliver(link, action, payload)
            self.queue.popleft()
            self.tally.replayed += 1

    async def _heartbeats(self) -> None:
        while True:
            interval = self.cp.heartbeat_interval
            await self.sleep(interval if interval > 0 else 60)
            if interval > 0 and self.link is not None:
                await self.send("Heartbeat", {})

    async def status(self, number: int, status: str) -> None:
        payload = self.cp.set_status(number, status, now())
        await self.send("StatusNotification", payload)

    # -- sessions -----------------------------------------------------------------------
    async def begin(self, number: int, id_tag: str, *, remote: bool) -> bool:
        """Authorize (a remote start only if AuthorizeRemoteTxRequests), plug in, and
        StartTransaction; False (recorded) if the session did not start."""
        self._stop_events[number] = trio.Event()
        self._session_ended[number] = trio.Event()
        try:
            if not remote:
                with trio.move_on_after(self.options.call_timeout):
                    await self.online()
            if not remote or self.cp.bool_key("AuthorizeRemoteTxRequests"):
                conf = await self.call("Authorize", {"idTag": id_tag})
                if conf["idTagInfo"]["status"] != "Accepted":
                    self.fail(f"Authorize: the id tag is {conf['idTagInfo']['status']}")
                    raise CallFailed("not authorized")
            await self.status(number, "Preparing")
            start = self.cp.begin_session(number, id_tag, now(), remote=remote)
            async with self._lock:
                if self.link is None:
                    raise Offline()
                conf = await self._deliver(self.link, "StartTransaction", start)
        except (Offline, CallFailed) as err:
            if isinstance(err, Offline):
                self.fail(f"connector {number}: offline when a session was to start")
            self.cp.abandon_session(number)
            self._session_ended[number].set()
            await self.status(number, self.cp.idle_status(number))
            return False
        status = self.cp.session_started(number, conf)
        self.event("transaction %d started on connector %d%s", conf["transactionId"], number,
                   " (remote start)" if remote else "")
        if status != "Accepted":
            self.fail(f"StartTransaction: the id tag is {status}; stopping (DeAuthorized)")
        return True

    async def run_session(self, number: int, duration: float) -> None:
        """Charge until `duration` has passed or something asks to stop; a MeterValues
        every MeterValueSampleInterval, each sample with its own timestamp."""
        session = self.cp.connectors[number].session
        assert session is not None
        stop = self._stop_events[number]
        self.tally.charging += 1
        try:
            if session.stop_reason is None:
                await self.status(number, "Charging")
            last = trio.current_time()
            deadline = last + duration / self.options.speed
            while session.stop_reason is None and trio.current_time() < deadline:
                interval = self.cp.meter_interval
                wake = deadline if interval <= 0 else min(
                    deadline, trio.current_time() + interval / self.options.speed)
                with trio.move_on_at(wake):
                    await stop.wait()
                at = trio.current_time()
                self.cp.charge(number, (at - last) * self.options.speed)
                last = at
                if self.cp.ev_full(number) and self.cp.connectors[number].status == "Charging":
                    await self.status(number, "SuspendedEV")  # plugged in, taking nothing
                if session.stop_reason is None and at < deadline:
                    await self.transaction_message("MeterValues",
                                                   self.cp.meter_values(number, now()))
        finally:
            self.tally.charging -= 1
            # A cancelled simulation still ends the transaction as a charger would.
            with trio.CancelScope(shield=True), trio.move_on_after(
                    2 * self.options.call_timeout):
                self.cp.request_stop(number, "Local")
                await self._finish(number)

    async def _finish(self, number: int) -> None:
        if self.cp.connectors[number].session is None:
            return
        stop = self.cp.end_session(number, now())
        self.event("transaction %d stopped (%s): %d Wh%s", stop["transactionId"], stop["reason"],
                   self.cp.energy_by_transaction[stop["transactionId"]],
                   "" if self.link else "; offline, StopTransaction queued")
        await self.transaction_message("StopTransaction", stop)
        await self.status(number, "Finishing")
        await self.status(number, self.cp.idle_status(number))
        self._session_ended[number].set()

    async def charge(self, number: int, id_tag: str, duration: float) -> None:
        if await self.begin(number, id_tag, remote=False):
            await self.run_session(number, duration)

    async def _remote_session(self, number: int, id_tag: str) -> None:
        if await self.begin(number, id_tag, remote=True):
            await self.run_session(number, self.options.charge_duration)

    def stop_sessions(self, reason: str) -> None:
        for number in self.cp.connectors:
            if self.cp.request_stop(number, reason):
                self._stop_events[number].set()

    async def _follow_up(self, steps: tuple[FollowUp, ...]) -> None:
        for step in steps:
            if isinstance(step, StartCharging):
                try:
                    assert self._activity is not None
                    self._activity.start_soon(self._remote_session, step.connector, step.id_tag)
                except (AssertionError, RuntimeError):  # the scenario just ended
                    self.cp.release_claim(step.connector)
            elif isinstance(step, StopCharging):
                self._stop_events[step.connector].set()
            elif isinstance(step, Send):
                await self.send(step.action, step.payload)
            elif isinstance(step, Reboot):
                await self._reboot(step.kind)

    async def _reboot(self, kind: str) -> None:
        for ended in list(self._session_ended.values()):
            await ended.wait()
        self.event("rebooting (%s reset)", kind)
        self._boot_needed = True
        await self._drop_link()  # the supervisor reconnects and boots


# -- scenarios ----------------------------------------------------------------------------
async def boot_scenario(st: StationRun) -> None:
    """Boot, then heartbeats and answers to the CSMS's commands for `duration`."""
    await st.start()
    await st.sleep(st.options.duration)


async def session_scenario(st: StationRun) -> None:
    """Boot, then `sessions` charging sessions one after the other."""
    await st.start()
    for index in range(st.options.sessions):
        if index:
            await st.sleep(st.options.pause)
        await st.charge(1 + index % st.options.connectors, st.id_tag,
                        st.options.charge_duration)


async def offline_scenario(st: StationRun) -> None:
    """A session whose link drops a third of the way in: the charger goes on charging and
    stops offline, queueing MeterValues and StopTransaction, then reconnects
    `reconnect_delay` later and replays them in order with their original timestamps."""
    await st.start()
    if not await st.begin(1, st.id_tag, remote=False):
        return
    async with trio.open_nursery() as nursery:
        nursery.start_soon(st.run_session, 1, st.options.charge_duration)
        await st.sleep(st.options.charge_duration / 3)
        st.event("link lost (offline scenario)")
        await st.go_offline()
    await st.sleep(st.options.reconnect_delay)
    with trio.move_on_after(st.options.call_timeout) as waited:
        await st.online()
    if waited.cancelled_caught:
        st.fail(f"could not reconnect within {st.options.call_timeout:g} s")


SCENARIOS: Final[dict[str, Callable[[StationRun], Awaitable[None]]]] = {
    "boot": boot_scenario,
    "session": session_scenario,
    "offline": offline_scenario,
}


class Simulation:
    """All simulated stations of one run."""

    def __init__(self, options: Options, stations: list[tuple[StationSpec, str, str]]) -> None:
        """`stations`: (spec, scenario name, id tag) each."""
        unknown = {scenario for _, scenario, _ in stations} - set(SCENARIOS)
        if unknown:
            raise ValueError(f"unknown scenario {', '.join(sorted(unknown))}")
        self.options = options
        self.stations = stations
        self.detailed = len(stations) <= DETAILED_UP_TO
        self.runs: list[StationRun] = []
        self.released = trio.Event()
        self._done: set[int] = set()
        self._all_done = trio.Event()
        self._stopping = False
        self._ssl: ssl.SSLContext | None = None

    def ssl_context(self, url: str) -> ssl.SSLContext | None:
        """One client context for every wss:// station (None for ws://)."""
        if not url.lower().startswith("wss:"):
            return None
        if self._ssl is None:
            self._ssl = ssl.create_default_context(cafile=self.options.ca_file)
        return self._ssl

    async def run(self, before_release: Callable[[], Awaitable[None]] | None = None) -> None:
        """Run every station to the end of its scenario; `before_release` runs once all
        scenarios are over, while the stations are still connected."""
        registry = SchemaRegistry()
        self.runs = [StationRun(spec, scenario, tag, self.options, registry, self, index)
                     for index, (spec, scenario, tag) in enumerate(self.stations)]
        async with trio.open_nursery() as nursery:
            if self.options.progress_every > 0:
                nursery.start_soon(self._progress)
            async with trio.open_nursery() as stations:
                for station in self.runs:
                    stations.start_soon(station.run)
                await self._all_done.wait()
                if before_release is not None and not self._stopping:
                    await before_release()
                self.released.set()
            nursery.cancel_scope.cancel()

    def stop(self) -> None:
        """End the scenarios now; sessions are stopped and queues flushed as usual."""
        self._stopping = True
        for station in self.runs:
            station.scenario_scope.cancel()

    def scenario_done(self, station: StationRun) -> None:
        self._done.add(id(station))
        if len(self._done) == len(self.stations):
            self._all_done.set()

    def tallies(self) -> dict[str, tuple[int, int, Tally]]:
        """Per scenario: stations, stations that connected, summed tally."""
        rows: dict[str, tuple[int, int, Tally]] = {}
        for station in self.runs:
            count, connected, tally = rows.get(station.scenario, (0, 0, Tally()))
            tally.add(station.tally)
            rows[station.scenario] = (count + 1, connected + station.tally.connected, tally)
        return rows

    async def _progress(self) -> None:
        while True:
            await trio.sleep(self.options.progress_every)
            total = Tally()
            for station in self.runs:
                total.add(station.tally)
            online = sum(station.online_now for station in self.runs)
            energy_wh = sum(station.delivered_wh() for station in self.runs)
            log.info("progress: %d/%d online, %d CALLs sent, %d answered, %d CALLERRORs, "
                     "%d charging, %d sessions done, %.2f kWh, %d queued offline",
                     online, len(self.runs), total.calls_sent, total.answered,
                     total.call_errors, total.charging, total.sessions,
                     energy_wh / 1000, total.queued - total.replayed)
            if self.detailed:
                for station in self.runs:
                    for reading in station.charging_now():
                        log.info("%s %s", station.spec.code, reading)
