"""Every command of the API, answered by a charge point this project did not write.

The charger is the `ocpp` package (mobilityhouse) ChargePoint on `websockets`,
both asyncio, run in a worker thread (`trio.to_thread`) as in
test_charger_flow.py. It answers each of the 19 central-system-initiated
OCPP 1.6 actions through the library's own `@on(Action...)` routing, schema
validation and `call_result` serialization, and records what it received.
The test posts each command through the REST API and checks that the charger
got it and that the API returns the charger's answer; then the charger
unplugs and the next command is 409.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import httpx
import trio
import websockets
from ocpp.charge_point import (
    camel_to_snake_case,
    remove_nones,
    serialize_as_dict,
    snake_to_camel_case,
)
from ocpp.routing import on
from ocpp.v16 import ChargePoint, call, call_result, datatypes
from ocpp.v16.enums import (
    Action,
    AvailabilityStatus,
    CancelReservationStatus,
    ChargingProfileStatus,
    ClearCacheStatus,
    ClearChargingProfileStatus,
    ConfigurationStatus,
    DataTransferStatus,
    GetCompositeScheduleStatus,
    RemoteStartStopStatus,
    ReservationStatus,
    ResetStatus,
    TriggerMessageStatus,
    UnlockStatus,
    UpdateStatus,
)

from autimit_csms.server import Server

from .conftest import Provisioned, ocpp_url
from .test_commands import COMMANDS

LIMIT = 25  # seconds: the worker thread ends by itself after this, whatever happens

# What the library charger answers, as the library's own call_result objects.
# On the wire these must be exactly the answers of test_commands.COMMANDS.
ANSWERS: dict[str, Any] = {
    Action.remote_start_transaction: call_result.RemoteStartTransaction(
        status=RemoteStartStopStatus.accepted),
    Action.remote_stop_transaction: call_result.RemoteStopTransaction(
        status=RemoteStartStopStatus.accepted),
    Action.reset: call_result.Reset(status=ResetStatus.accepted),
    Action.unlock_connector: call_result.UnlockConnector(status=UnlockStatus.unlocked),
    Action.change_availability: call_result.ChangeAvailability(
        status=AvailabilityStatus.scheduled),
    Action.change_configuration: call_result.ChangeConfiguration(
        status=ConfigurationStatus.accepted),
    Action.get_configuration: call_result.GetConfiguration(configuration_key=[
        datatypes.KeyValue(key="HeartbeatInterval", readonly=False, value="120"),
        datatypes.KeyValue(key="NumberOfConnectors", readonly=True, value="2")]),
    Action.clear_cache: call_result.ClearCache(status=ClearCacheStatus.accepted),
    Action.trigger_message: call_result.TriggerMessage(status=TriggerMessageStatus.accepted),
    Action.data_transfer: call_result.DataTransfer(status=DataTransferStatus.accepted,
                                                   data="pong"),
    Action.update_firmware: call_result.UpdateFirmware(),
    Action.get_diagnostics: call_result.GetDiagnostics(file_name="diag.tar"),
    Action.reserve_now: call_result.ReserveNow(status=ReservationStatus.accepted),
    Action.cancel_reservation: call_result.CancelReservation(
        status=CancelReservationStatus.rejected),
    Action.send_local_list: call_result.SendLocalList(status=UpdateStatus.accepted),
    Action.get_local_list_version: call_result.GetLocalListVersion(list_version=3),
    Action.set_charging_profile: call_result.SetChargingProfile(
        status=ChargingProfileStatus.accepted),
    Action.clear_charging_profile: call_result.ClearChargingProfile(
        status=ClearChargingProfileStatus.unknown),
    Action.get_composite_schedule: call_result.GetCompositeSchedule(
        status=GetCompositeScheduleStatus.rejected),
}


def on_wire(result: Any) -> Any:
    """A call_result as the library puts it on the wire (camelCase, no Nones)."""
    return snake_to_camel_case(remove_nones(serialize_as_dict(result)))


class Received:
    """What the charger got, shared between its asyncio thread and the Trio test."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: list[tuple[str, dict[str, Any]]] = []

    def add(self, action: str, kwargs: dict[str, Any]) -> None:
        with self._lock:
            self._calls.append((action, kwargs))

    def calls(self) -> list[tuple[str, dict[str, Any]]]:
        with self._lock:
            return list(self._calls)


class LibraryCharger(ChargePoint):
    """One `@on` handler per central-system action: record the call, answer ANSWERS."""

    def __init__(self, *args: Any, received: Received, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.received = received

    def _answer(self, action: Action, kwargs: dict[str, Any]) -> Any:
        self.received.add(str(action), kwargs)
        return ANSWERS[action]

    @on(Action.remote_start_transaction)
    def on_remote_start_transaction(self, **kwargs: Any) -> Any:
        return self._answer(Action.remote_start_transaction, kwargs)

    @on(Action.remote_stop_transaction)
    def on_remote_stop_transaction(self, **kwargs: Any) -> Any:
        return self._answer(Action.remote_stop_transaction, kwargs)

    @on(Action.reset)
    def on_reset(self, **kwargs: Any) -> Any:
        return self._answer(Action.reset, kwargs)

    @on(Action.unlock_connector)
    def on_unlock_connector(self, **kwargs: Any) -> Any:
        return self._answer(Action.unlock_connector, kwargs)

    @on(Action.change_availability)
    def on_change_availability(self, **kwargs: Any) -> Any:
        return self._answer(Action.change_availability, kwargs)

    @on(Action.change_configuration)
    def on_change_configuration(self, **kwargs: Any) -> Any:
        return self._answer(Action.change_configuration, kwargs)

    @on(Action.get_configuration)
    def on_get_configuration(self, **kwargs: Any) -> Any:
        return self._answer(Action.get_configuration, kwargs)

    @on(Action.clear_cache)
    def on_clear_cache(self, **kwargs: Any) -> Any:
        return self._answer(Action.clear_cache, kwargs)

    @on(Action.trigger_message)
    def on_trigger_message(self, **kwargs: Any) -> Any:
        return self._answer(Action.trigger_message, kwargs)

    @on(Action.data_transfer)
    def on_data_transfer(self, **kwargs: Any) -> Any:
        return self._answer(Action.data_transfer, kwargs)

    @on(Action.update_firmware)
    def on_update_firmware(self, **kwargs: Any) -> Any:
        return self._answer(Action.update_firmware, kwargs)

    @on(Action.get_diagnostics)
    def on_get_diagnostics(self, **kwargs: Any) -> Any:
        return self._answer(Action.get_diagnostics, kwargs)

    @on(Action.reserve_now)
    def on_reserve_now(self, **kwargs: Any) -> Any:
        return self._answer(Action.reserve_now, kwargs)

    @on(Action.cancel_reservation)
    def on_cancel_reservation(self, **kwargs: Any) -> Any:
        return self._answer(Action.cancel_reservation, kwargs)

    @on(Action.send_local_list)
    def on_send_local_list(self, **kwargs: Any) -> Any:
        return self._answer(Action.send_local_list, kwargs)

    @on(Action.get_local_list_version)
    def on_get_local_list_version(self, **kwargs: Any) -> Any:
        return self._answer(Action.get_local_list_version, kwargs)

    @on(Action.set_charging_profile)
    def on_set_charging_profile(self, **kwargs: Any) -> Any:
        return self._answer(Action.set_charging_profile, kwargs)

    @on(Action.clear_charging_profile)
    def on_clear_charging_profile(self, **kwargs: Any) -> Any:
        return self._answer(Action.clear_charging_profile, kwargs)

    @on(Action.get_composite_schedule)
    def on_get_composite_schedule(self, **kwargs: Any) -> Any:
        return self._answer(Action.get_composite_schedule, kwargs)


class Plug:
    """The charger's worker thread: connects, boots, serves until `stop` is set."""

    def __init__(self, server: Server, station: Provisioned) -> None:
        self.url = ocpp_url(server, station.code)
        self.code = station.code
        self.token = base64.b64encode(f"{station.code}:{station.secret}".encode()).decode()
        self.received = Received()
        self.ready = trio.Event()  # booted and accepted (set from the worker thread)
        self.trio_token = trio.lowlevel.current_trio_token()
        self.stop = threading.Event()  # unplug

    async def _serve(self) -> None:
        async with websockets.connect(
                self.url, subprotocols=["ocpp1.6"], open_timeout=10, close_timeout=5,
                additional_headers={"Authorization": f"Basic {self.token}"}) as ws:
            assert ws.subprotocol == "ocpp1.6"
            cp = LibraryCharger(self.code, ws, response_timeout=10, received=self.received)
            reader = asyncio.create_task(cp.start())
            try:
                conf = await cp.call(call.BootNotification(
                    charge_point_vendor="ThirdParty", charge_point_model="Wallbox-X"),
                    suppress=False)
                assert conf.status == "Accepted", conf
                trio.from_thread.run_sync(self.ready.set, trio_token=self.trio_token)
                while not self.stop.is_set():
                    if reader.done():  # the server closed the socket, or the reader failed
                        reader.result()
                        raise AssertionError("the charger stopped reading")
                    await asyncio.sleep(0.02)
            finally:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError, websockets.ConnectionClosed):
                    await reader
        # leaving `connect` closed the websocket (close handshake done)

    def run(self) -> None:
        asyncio.run(asyncio.wait_for(self._serve(), LIMIT))


@asynccontextmanager
async def plugged_in(server: Server, station: Provisioned) -> AsyncIterator[Plug]:
    """A library charger connected and booted; unplugged (thread ended) on exit."""
    plug = Plug(server, station)
    with trio.fail_after(LIMIT + 5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(lambda: trio.to_thread.run_sync(plug.run,
                                                               abandon_on_cancel=True))
            try:
                with trio.fail_after(10):
                    await plug.ready.wait()
                yield plug
            finally:
                plug.stop.set()  # the thread closes its socket and ends


async def post_command(api: httpx.AsyncClient, station: Provisioned, action: str,
                       payload: dict[str, Any]) -> httpx.Response:
    with trio.fail_after(10):
        return await api.post(f"/api/stations/{station.id}/commands/{action}", json=payload)


def test_library_answers_are_the_command_table_answers() -> None:
    assert set(ANSWERS) == set(COMMANDS)
    for action, (_, answer) in COMMANDS.items():
        assert on_wire(ANSWERS[Action(action)]) == answer, action


async def test_every_command_reaches_the_library_charger_and_returns_its_answer(
        server: Server, api: httpx.AsyncClient, station: Provisioned) -> None:
    async with plugged_in(server, station) as plug:
        for number, (action, (request, answer)) in enumerate(COMMANDS.items(), start=1):
            r = await post_command(api, station, action, request)
            assert r.status_code == 200, (action, r.text)
            body = r.json()
            assert body["status"] == "answered", (action, body)
            assert body["error"] is None, (action, body)
            # the API returns what the library handler returned, as on the wire
            assert body["response"] == on_wire(ANSWERS[Action(action)]) == answer, action

            calls = plug.received.calls()
            assert len(calls) == number, (action, calls)  # one delivery per command
            got_action, got = calls[-1]
            assert got_action == action
            if action == "ReserveNow":
                assert "reservationId" not in request
                reservation_id = body["payload"]["reservationId"]  # allocated by the CSMS
                assert isinstance(reservation_id, int) and not isinstance(reservation_id, bool)
                assert got["reservation_id"] == reservation_id
                assert body["payload"] == {**request, "reservationId": reservation_id}
            else:
                assert body["payload"] == request, action
            # the handler got the request's values, as the library hands them over
            # (it gives numbers with a fraction as Decimal)
            sent = json.loads(r.text, parse_float=Decimal)["payload"]
            assert got == camel_to_snake_case(sent), (action, got)

        by_action = dict(plug.received.calls())
        assert list(by_action) == list(COMMANDS)
        assert by_action["Reset"] == {"type": "Soft"}
        assert by_action["RemoteStartTransaction"] == {"id_tag": "TAG-1", "connector_id": 1}
        assert by_action["ChangeConfiguration"] == {"key": "HeartbeatInterval", "value": "120"}
        assert by_action["GetConfiguration"] == {}
        assert by_action["ReserveNow"]["id_tag"] == "TAG-1"
        assert by_action["ReserveNow"]["connector_id"] == 1
        profile = by_action["SetChargingProfile"]["cs_charging_profiles"]
        assert profile["charging_profile_id"] == 7
        assert profile["charging_schedule"]["charging_schedule_period"] == [
            {"start_period": 0, "limit": Decimal("11.10")}]
        assert by_action["SendLocalList"]["local_authorization_list"] == [
            {"id_tag": "TAG-1", "id_tag_info": {"status": "Accepted"}}]


async def test_unplugged_library_charger_gets_409(
        server: Server, api: httpx.AsyncClient, station: Provisioned) -> None:
    async with plugged_in(server, station) as plug:
        r = await post_command(api, station, "Reset", {"type": "Soft"})
        assert r.status_code == 200, r.text
        assert r.json()["response"] == {"status": "Accepted"}
        assert plug.received.calls() == [("Reset", {"type": "Soft"})]
    # unplugged: the worker thread has closed its websocket and ended
    assert plug.stop.is_set()

    status = None
    with trio.move_on_after(5):  # offline once the server has seen the close
        while status != "offline":
            r = await api.get(f"/api/stations/{station.id}")
            assert r.status_code == 200, r.text
            status = r.json()["runtime"]["status"]
            if status != "offline":
                await trio.sleep(0.05)
    assert status == "offline"

    r = await post_command(api, station, "Reset", {"type": "Soft"})
    assert r.status_code == 409, r.text
    assert r.json()["error"]["code"] == "station_offline"
    assert plug.received.calls() == [("Reset", {"type": "Soft"})]  # nothing more arrived
