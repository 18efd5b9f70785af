"""Admission limits: failed-handshake throttling, connection caps, the CALL pace.

Real server, real sockets. Clients bind to other loopback addresses (127.0.0.x)
to act as other sources; raw handshakes compare refusals byte for byte.
"""

from __future__ import annotations

import base64
import json
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
import trio
from trio_websocket import WebSocketConnection, wrap_client_stream

from autimit_csms.db import Database
from autimit_csms.server import Server
from autimit_csms.stations.limits import FLOOD_RATE, FLOOD_WINDOW, PRESSURE_COST

from ..conftest import server_settings
from .conftest import Provisioned, basic, boot, call, connect, provision


async def start(nursery: trio.Nursery, db: Database, db_url: str, **limits: object) -> Server:
    return await nursery.start(Server(server_settings(db_url, **limits), db).run)


async def tcp_from(server: Server, source: str) -> trio.SocketStream:
    sock = trio.socket.socket()
    await sock.bind((source, 0))
    await sock.connect(("127.0.0.1", server.ocpp_port))
    return trio.SocketStream(sock)


async def handshake(server: Server, code: str, headers: list[tuple[str, str]],
                    source: str = "127.0.0.1") -> bytes:
    """A raw upgrade request from `source`; every byte the server answers, until it closes."""
    stream = await tcp_from(server, source)
    key = base64.b64encode(os.urandom(16)).decode()
    request = [f"GET /ocpp/1.6/{code} HTTP/1.1", f"Host: 127.0.0.1:{server.ocpp_port}",
               "Upgrade: websocket", "Connection: Upgrade", f"Sec-WebSocket-Key: {key}",
               "Sec-WebSocket-Version: 13", "Sec-WebSocket-Protocol: ocpp1.6",
               *(f"{name}: {value}" for name, value in headers)]
    answer = b""
    async with stream:
        await stream.send_all(("\r\n".join(request) + "\r\n\r\n").encode())
        with trio.fail_after(10):
            while True:
                try:
                    chunk = await stream.receive_some(65536)
                except trio.BrokenResourceError:  # reset: closed without an answer
                    break
                if not chunk:
                    break
                answer += chunk
    return answer


def status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer else 0


def wrong(station: Provisioned) -> list[tuple[str, str]]:
    last = "y" if station.secret.endswith("x") else "x"
    return [basic(station.code, station.secret[:-1] + last)]


def right(station: Provisioned) -> list[tuple[str, str]]:
    return [basic(station.code, station.secret)]


@asynccontextmanager
async def connect_from(server: Server, station: Provisioned,
                       source: str) -> AsyncIterator[WebSocketConnection]:
    stream = await tcp_from(server, source)
    (name, value), = right(station)
    async with trio.open_nursery() as nursery:
        ws = await wrap_client_stream(nursery, stream, "127.0.0.1", f"/ocpp/1.6/{station.code}",
                                      subprotocols=["ocpp1.6"],
                                      extra_headers=[(name.encode(), value.encode())])
        try:
            yield ws
        finally:
            await ws.aclose()


async def test_failures_are_throttled_before_bcrypt_and_a_verified_station_still_gets_in(
        api: httpx.AsyncClient, server: Server, station: Provisioned, db: Database,
        db_url: str, nursery: trio.Nursery) -> None:
    limited = await start(nursery, db, db_url, auth_failures_per_source=3,
                          auth_failures_per_station=0)
    async with connect(limited, station.code, station.secret) as ws:  # verified once
        await boot(ws)
    assert [status(await handshake(limited, station.code, wrong(station)))
            for _ in range(3)] == [401, 401, 401]
    checks = limited.verifier.bcrypt_checks
    throttled = await handshake(limited, station.code, wrong(station))
    unknown = await handshake(limited, "CP-404", [basic("CP-404", station.secret)])
    assert status(throttled) == 429 and b"\r\nretry-after: 60\r\n" in throttled.lower()
    assert unknown == throttled  # a throttled probe learns nothing either
    # the station verified before is let in without bcrypt, throttled source or not
    async with connect(limited, station.code, station.secret) as ws:
        assert (await call(ws, "Heartbeat", {}))[0] == 3
    assert limited.verifier.bcrypt_checks == checks
    # only this source is throttled
    assert status(await handshake(limited, station.code, wrong(station), "127.0.0.2")) == 401
    assert limited.verifier.bcrypt_checks == checks + 1


async def test_a_station_code_is_throttled_from_every_source_known_or_not(
        api: httpx.AsyncClient, server: Server, station: Provisioned, db: Database,
        db_url: str, nursery: trio.Nursery) -> None:
    limited = await start(nursery, db, db_url, auth_failures_per_source=0,
                          auth_failures_per_station=2)
    unknown = [basic("CP-404", "x" * 24)]
    known_answers = [status(await handshake(limited, station.code, wrong(station), source))
                     for source in ("127.0.0.2", "127.0.0.3")]
    unknown_answers = [status(await handshake(limited, "CP-404", unknown, source))
                       for source in ("127.0.0.2", "127.0.0.3")]
    assert known_answers == unknown_answers == [401, 401]
    checks = limited.verifier.bcrypt_checks
    on_known = await handshake(limited, station.code, wrong(station), "127.0.0.4")
    on_unknown = await handshake(limited, "CP-404", unknown, "127.0.0.4")
    assert status(on_known) == 429 and on_known == on_unknown
    assert limited.verifier.bcrypt_checks == checks
    # another code from the same source is not affected
    assert status(await handshake(limited, "CP-405", [basic("CP-405", "x" * 24)],
                                  "127.0.0.4")) == 401


async def test_refusals_of_unknown_and_known_codes_are_byte_identical(
        api: httpx.AsyncClient, server: Server, station: Provisioned) -> None:
    known = await handshake(server, station.code, wrong(station))
    unknown = await handshake(server, "CP-404", [basic("CP-404", station.secret)])
    assert status(known) == 401 and known == unknown


async def test_a_source_that_keeps_failing_is_dropped_at_accept(
        api: httpx.AsyncClient, server: Server, station: Provisioned, db: Database,
        db_url: str, nursery: trio.Nursery) -> None:
    limited = await start(nursery, db, db_url, auth_failures_per_source=2,
                          auth_failures_per_station=0)
    answers = [status(await handshake(limited, "CP-404", [basic("CP-404", "x" * 24)]))
               for _ in range(4)]
    assert answers == [401, 401, 429, 429]
    # a second budget spent while throttled: closed at once, not one byte answered
    assert await handshake(limited, station.code, right(station)) == b""
    assert limited.ocpp.limits.refusals.totals["dropped"] == 1
    # other sources are not touched
    async with connect_from(limited, station, "127.0.0.2") as ws:
        await boot(ws)


async def test_a_flood_from_many_addresses_makes_each_failure_cost_more(
        api: httpx.AsyncClient, server: Server, station: Provisioned) -> None:
    # Above FLOOD_RATE failures a second (averaged over FLOOD_WINDOW) from 100
    # addresses, each inside its own budget of 60 a minute ...
    burst = int(FLOOD_RATE * FLOOD_WINDOW * 1.2)
    limiter = trio.CapacityLimiter(20)

    async def fail(n: int) -> None:
        async with limiter:
            code = f"NOPE-{n}"  # unknown codes: no per-code budget spent twice
            await handshake(server, code, [basic(code, "x" * 24)], f"127.0.1.{n % 100 + 1}")

    async with trio.open_nursery() as flood:
        for n in range(burst):
            flood.start_soon(fail, n)
    assert server.ocpp.limits.flood.flooded()
    # ... a new address pays PRESSURE_COST a failure: throttled after 60 / 10 failures
    # (not 60), dropped at accept after twice that
    fresh = [status(await handshake(server, f"NEW-{n}", [basic(f"NEW-{n}", "x" * 24)],
                                    "127.0.2.1")) for n in range(13)]
    cost = PRESSURE_COST
    assert fresh == [401] * (60 // cost) + [429] * (60 // cost) + [0], fresh
    # a station that does not fail is untouched by the flood
    async with connect(server, station.code, station.secret) as ws:
        await boot(ws)


async def test_refusal_log_is_one_line_per_source_without_codes_or_secrets(
        api: httpx.AsyncClient, server: Server, station: Provisioned,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    probes = [f"PROBE{n}ZQX" for n in range(5)]
    for code in probes:
        await handshake(server, code, [basic(code, "GuessGuessGuessGuess42")])
    (_, sent), = wrong(station)
    await handshake(server, station.code, wrong(station))
    await handshake(server, station.code, [("Authorization", "Basic !!!")])
    async with connect_from(server, station, "127.0.0.2"):  # accepted: not counted
        pass
    server.ocpp.limits.refusals.flush(60)
    summaries = [r.getMessage() for r in caplog.records if "handshakes refused" in r.getMessage()]
    assert summaries == [
        "handshakes refused from 127.0.0.1 in the last 60 s: malformed=1 unknown=5 wrong_secret=1"]
    everything = "\n".join(r.getMessage() for r in caplog.records)
    for sent_by_client in [*probes, "GuessGuessGuessGuess42", sent.split()[1], "!!!"]:
        assert sent_by_client not in everything


async def test_connections_are_capped_per_source_and_per_process(
        api: httpx.AsyncClient, server: Server, station: Provisioned, db: Database,
        db_url: str, nursery: trio.Nursery) -> None:
    limited = await start(nursery, db, db_url, max_connections=3, max_connections_per_source=2)
    s2, s3, s4 = [await provision(api, f"CP-{n}", account_id=station.account_id)
                  for n in (2, 3, 4)]
    async with connect(limited, station.code, station.secret) as a, \
            connect(limited, s2.code, s2.secret) as b:
        per_source = await handshake(limited, s3.code, right(s3))
        assert status(per_source) == 503 and b"\r\nretry-after: 60\r\n" in per_source.lower()
        async with connect_from(limited, s3, "127.0.0.2") as c:  # another source: in
            await boot(c)
            per_process = await handshake(limited, s4.code, right(s4), "127.0.0.3")
            assert status(per_process) == 503
            for ws in (a, b, c):  # those already in are untouched
                await boot(ws)
        with trio.fail_after(5):
            while limited.ocpp.limits.open > 2:  # noqa: ASYNC110 - the server's own count
                await trio.sleep(0.01)
        async with connect_from(limited, s4, "127.0.0.3") as d:  # room again
            await boot(d)
    assert limited.ocpp.limits.refusals.totals["over_limit"] == 2


async def test_a_charger_flooding_calls_is_paced_without_starving_another(
        api: httpx.AsyncClient, server: Server, station: Provisioned, db: Database,
        db_url: str, nursery: trio.Nursery) -> None:
    limited = await start(nursery, db, db_url, max_calls_per_second=20, call_burst=5)
    other = await provision(api, "CP-2", account_id=station.account_id)
    ids = [f"flood-{n}" for n in range(40)]
    answers: list[list[object]] = []
    async with connect(limited, station.code, station.secret) as flooder, \
            connect(limited, other.code, other.secret) as calm:
        await boot(flooder)
        await boot(calm)

        async def read_flood() -> None:
            for _ in ids:
                answers.append(json.loads(await flooder.get_message()))

        for unique_id in ids:  # all at once, not waiting for answers
            await flooder.send_message(json.dumps([2, unique_id, "Heartbeat", {}]))
        async with trio.open_nursery() as readers:
            readers.start_soon(read_flood)
            answer = await call(calm, "Heartbeat", {})
            flood_answered_by_then = len(answers)
    assert answer[0] == 3
    assert flood_answered_by_then < len(ids)  # the calm charger did not queue behind it
    # the flood was slowed, not cut: every CALL answered, in order, none an error
    assert [a[1] for a in answers] == ids and {a[0] for a in answers} == {3}
    assert limited.sessions.metrics.frames_paced > 0


async def test_a_request_that_is_not_an_upgrade_is_a_counted_400(server: Server) -> None:
    stream = await tcp_from(server, "127.0.0.1")
    async with stream:
        await stream.send_all(b"GET /ocpp/1.6/CP-1 HTTP/1.1\r\nHost: x\r\n\r\n")
        with trio.fail_after(5):
            answer = await stream.receive_some(4096)
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert server.ocpp.limits.refusals.totals["bad_request"] == 1
