"""Load generator process of bench/perf.py (one Trio loop, many chargers).

    python bench/_perf_load.py JOB.json

bench/perf.py starts one or more of these, pinned to other cores than the server under
test. Each reads its job (scenario, port, its share of stations) from JOB.json, connects
its chargers (raw OCPP-J frames over a minimal WebSocket client on Trio streams, below,
HTTP Basic auth; the reference ignores it), then talks JSON lines: events on stdout,
commands on stdin.

    stdout {"event": "ready", ...}     every charger connected (and booted) or failed
    stdin  {"cmd": "go", "start", "from", "to", "end", "ts_base"}   wall-clock epochs
    stdout {"event": "admitted", ...}  storm only: every storm charger admitted or failed
    stdin  {"cmd": "stop", "until"}    storm only: stop the watchers' heartbeats
    stdout {"event": "done", ...}      counts, round trips (ms), own CPU in [from, to]

Round trips are measured per charger from sending a CALL to reading its answer; each
charger has one CALL in flight at a time, as OCPP-J requires.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os
import random
import resource
import struct
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import trio

BOOT = '[2,"b","BootNotification",{"chargePointVendor":"Autimit","chargePointModel":"Bench"}]'
HEARTBEAT = '[2,"h{seq}","Heartbeat",{{}}]'
METER_VALUES = (
    '[2,"m{seq}","MeterValues",{{"connectorId":1,"meterValue":[{{"timestamp":"{ts}",'
    '"sampledValue":['
    '{{"value":"{wh}","context":"Sample.Periodic","measurand":"Energy.Active.Import.Register",'
    '"unit":"Wh"}},'
    '{{"value":"{w}","context":"Sample.Periodic","measurand":"Power.Active.Import","unit":"W"}},'
    '{{"value":"230.1","context":"Sample.Periodic","measurand":"Voltage","phase":"L1",'
    '"unit":"V"}},'
    '{{"value":"{a}","context":"Sample.Periodic","measurand":"Current.Import","phase":"L1",'
    '"unit":"A"}},'
    '{{"value":"{soc}","context":"Sample.Periodic","measurand":"SoC","unit":"Percent"}}'
    ']}}]}}]')
SAMPLES_PER_METER_VALUES = 5


def meter_values_frame(seq: int, ts_base: float) -> str:
    """Message `seq` of a charger's stream: its own timestamp (ts_base + seq ms), so each
    of its 5 samples is a row of its own (identical timestamps are deduplicated)."""
    at = dt.datetime.fromtimestamp(ts_base + seq / 1000, dt.UTC)
    return METER_VALUES.format(
        seq=seq, ts=at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        wh=10_000 + seq * 2, w=7200 + seq % 50, a=f"{31 + seq % 7 / 10:.1f}", soc=20 + seq % 80)


class CallFailed(Exception):
    pass


class Rejected(Exception):
    def __init__(self, status_code: int, reason: str) -> None:
        super().__init__(f"HTTP {status_code} {reason}")
        self.status_code = status_code


class Closed(Exception):
    pass


_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class WebSocket:
    """The client end of one RFC 6455 connection, as little as a charger needs.

    Text frames out (masked, a fresh key per frame), text frames in (unfragmented or
    continued), pings answered, a close frame ends it. No extensions are offered. It is
    a few times cheaper per message and per handshake than a general client library,
    which is what keeps one generator core ahead of the server under test.
    """

    def __init__(self, stream: trio.SocketStream, buffered: bytes) -> None:
        self.stream = stream
        self.buffer = bytearray(buffered)

    @classmethod
    async def connect(cls, port: int, path: str, authorization: str) -> WebSocket:
        sock = trio.socket.socket()
        try:
            await sock.connect(("127.0.0.1", port))
        except BaseException:
            sock.close()
            raise
        stream = trio.SocketStream(sock)
        try:
            key = base64.b64encode(os.urandom(16))
            await stream.send_all(
                b"GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: ocpp1.6\r\n"
                b"Authorization: %s\r\n\r\n" % (path.encode(), port, key,
                                                  authorization.encode()))
            data = bytearray()
            while b"\r\n\r\n" not in data:
                chunk = await stream.receive_some(65536)
                if not chunk:
                    raise Closed("closed during the handshake")
                data += chunk
            head, _, rest = bytes(data).partition(b"\r\n\r\n")
            status_line, *lines = head.decode("latin-1").split("\r\n")
            parts = status_line.split(" ", 2)
            if parts[1] != "101":
                raise Rejected(int(parts[1]), parts[2] if len(parts) > 2 else "")
            headers = {}
            for line in lines:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            accept = base64.b64encode(hashlib.sha1(key + _GUID).digest()).decode()
            if headers.get("sec-websocket-accept") != accept:
                raise Closed("bad Sec-WebSocket-Accept")
            if headers.get("sec-websocket-protocol") != "ocpp1.6":
                raise Closed("subprotocol ocpp1.6 not accepted")
        except BaseException:
            await trio.aclose_forcefully(stream)
            raise
        return cls(stream, rest)

    async def _send_frame(self, opcode: int, payload: bytes) -> None:
        n = len(payload)
        if n < 126:
            head = bytes((0x80 | opcode, 0x80 | n))
        elif n < 65536:
            head = struct.pack("!BBH", 0x80 | opcode, 0xFE, n)
        else:
            head = struct.pack("!BBQ", 0x80 | opcode, 0xFF, n)
        mask = os.urandom(4)
        keys = (mask * (n // 4 + 1))[:n]
        masked = (int.from_bytes(payload, "little") ^ int.from_bytes(keys, "little")
                  ).to_bytes(n, "little")
        await self.stream.send_all(head + mask + masked)

    async def send(self, text: str) -> None:
        await self._send_frame(0x1, text.encode())

    async def receive(self) -> str:
        """The next text message (pings answered on the way)."""
        parts: list[bytes] = []
        while True:
            buf = self.buffer
            while len(buf) < 2:
                await self._fill()
            opcode, length = buf[0] & 0x0F, buf[1] & 0x7F
            start = 2
            if length == 126:
                start = 4
            elif length == 127:
                start = 10
            if buf[1] & 0x80:
                start += 4  # a masked server frame is a protocol error; read it anyway
            while len(buf) < start:
                await self._fill()
            if length == 126:
                length = struct.unpack_from("!H", buf, 2)[0]
            elif length == 127:
                length = struct.unpack_from("!Q", buf, 2)[0]
            while len(buf) < start + length:
                await self._fill()
            payload = bytes(buf[start:start + length])
            if buf[1] & 0x80:
                mask = bytes(buf[start - 4:start])
                keys = (mask * (length // 4 + 1))[:length]
                payload = (int.from_bytes(payload, "little") ^ int.from_bytes(keys, "little")
                           ).to_bytes(length, "little")
            fin = buf[0] & 0x80
            del buf[:start + length]
            if opcode in (0x0, 0x1):
                parts.append(payload)
                if fin:
                    return b"".join(parts).decode()
            elif opcode == 0x9:
                await self._send_frame(0xA, payload)
            elif opcode == 0x8:
                raise Closed(f"close frame {payload[:2].hex()}")

    async def _fill(self) -> None:
        chunk = await self.stream.receive_some(65536)
        if not chunk:
            raise Closed("connection closed")
        self.buffer += chunk

    async def aclose(self) -> None:
        """Close frame, the server's close frame (briefly), then the TCP connection."""
        try:
            with trio.move_on_after(2):
                await self._send_frame(0x8, (1000).to_bytes(2, "big"))
                while True:
                    await self.receive()
        except (Closed, trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        await trio.aclose_forcefully(self.stream)


@dataclass
class Charger:
    code: str
    secret: str
    ws: WebSocket | None = None


@dataclass
class Generator:
    job: dict[str, Any]
    chargers: list[Charger] = field(default_factory=list)
    watchers: list[Charger] = field(default_factory=list)
    failures: Counter[str] = field(default_factory=Counter)   # connect/boot failures
    errors: Counter[str] = field(default_factory=Counter)     # CALLERRORs, lost connections
    acked: int = 0             # CALLRESULTs of the scenario's messages (not the boot)
    window_acked: int = 0      # ... read within [from, to)
    round_trips: list[float] = field(default_factory=list)    # ms, sent and read in window
    handshakes: list[float] = field(default_factory=list)     # ms, storm
    last_admitted: float = 0.0                                # epoch, storm
    cpu: dict[str, float] = field(default_factory=dict)
    max_seq: int = 0
    sent_at: list[float] = field(default_factory=list)        # epoch of each round trip

    def __post_init__(self) -> None:
        self.chargers = [Charger(c, s) for c, s in self.job["stations"]]
        self.watchers = [Charger(c, s) for c, s in self.job.get("watchers", [])]
        self.limit = trio.Semaphore(self.job["concurrency"])

    # ------------------------------------------------------------------ connections

    async def connect(self, charger: Charger, boot: bool) -> float | None:
        """Open (and boot) one charger; the handshake in ms, or None when it failed."""
        auth = "Basic " + base64.b64encode(f"{charger.code}:{charger.secret}".encode()).decode()
        async with self.limit:
            t0 = time.perf_counter()
            phase, ws = "handshake", None
            try:
                with trio.fail_after(self.job["connect_timeout"]):
                    ws = await WebSocket.connect(self.job["port"], f"/ocpp/1.6/{charger.code}",
                                                 auth)
                    handshake = (time.perf_counter() - t0) * 1000
                    if boot:
                        phase = "BootNotification"
                        await ws.send(BOOT)
                        answer = await ws.receive()
                        if not answer.startswith("[3,"):
                            raise CallFailed(f"answered {answer[:200]}")
            except Exception as exc:  # noqa: BLE001 - counted and reported, never fatal
                self.failures[f"{phase}: {failure_name(exc)}"] += 1
                if ws is not None:
                    await trio.aclose_forcefully(ws.stream)
                return None
        charger.ws = ws
        return handshake

    async def connect_all(self, chargers: list[Charger], boot: bool) -> None:
        async with trio.open_nursery() as inner:
            for charger in chargers:
                inner.start_soon(self.connect, charger, boot)

    async def call(self, ws: WebSocket, frame: str) -> bool:
        """Send one CALL, read its answer; True for a CALLRESULT."""
        await ws.send(frame)
        answer = await ws.receive()
        if answer.startswith("[3,"):
            return True
        try:
            code = json.loads(answer)[2]
        except (ValueError, IndexError, TypeError):
            code = "unparsable answer"
        self.errors[f"CALLERROR {code}"] += 1
        return False

    # ------------------------------------------------------------------ scenarios

    async def steady(self, charger: Charger, go: dict[str, float]) -> None:
        """meter / heartbeat: one CALL after another, each awaited, until `end`."""
        ws = charger.ws
        if ws is None:
            return
        meter = self.job["scenario"] == "meter"
        start, frm, to, end = (at_perf(go[k]) for k in ("start", "from", "to", "end"))
        ts_base = go["ts_base"]
        await trio.sleep_until(trio.current_time() + max(0.0, start - time.perf_counter()))
        seq = 0
        try:
            while True:
                t = time.perf_counter()
                if t >= end:
                    break
                frame = meter_values_frame(seq, ts_base) if meter else HEARTBEAT.format(seq=seq)
                ok = await self.call(ws, frame)
                t2 = time.perf_counter()
                seq += 1
                if ok:
                    self.acked += 1
                    if frm <= t2 < to:
                        self.window_acked += 1
                        if t >= frm:
                            self.round_trips.append((t2 - t) * 1000)
        except Exception as exc:  # noqa: BLE001
            self.errors[f"connection lost: {failure_name(exc)}"] += 1
        self.max_seq = max(self.max_seq, seq)

    async def periodic(self, charger: Charger, interval: float, first: float, end: float,
                       stop: trio.Event | None = None) -> None:
        """idle and storm watchers: a Heartbeat every `interval` s from `first` (perf)."""
        ws = charger.ws
        if ws is None:
            return
        at = first
        try:
            while True:
                if stop is not None and stop.is_set():
                    break
                await trio.sleep(max(0.0, at - time.perf_counter()))
                if at >= end or (stop is not None and stop.is_set()):
                    break
                t = time.perf_counter()
                if await self.call(ws, HEARTBEAT.format(seq=0)):
                    self.acked += 1
                    self.round_trips.append((time.perf_counter() - t) * 1000)
                    self.sent_at.append(time.time() - (time.perf_counter() - t))
                at += interval
        except Exception as exc:  # noqa: BLE001
            self.errors[f"connection lost: {failure_name(exc)}"] += 1

    async def storm(self) -> None:
        async def one(charger: Charger) -> None:
            handshake = await self.connect(charger, boot=False)
            if handshake is not None:
                self.handshakes.append(handshake)
                self.last_admitted = max(self.last_admitted, time.time())

        async with trio.open_nursery() as inner:
            for charger in self.chargers:
                inner.start_soon(one, charger)
        emit({"event": "admitted", "admitted": len(self.handshakes),
              "failures": dict(self.failures), "last": self.last_admitted,
              "handshakes": [round(h, 3) for h in self.handshakes]})

    async def cpu_window(self, frm: float, to: float) -> None:
        await trio.sleep(max(0.0, frm - time.perf_counter()))
        c0 = time.process_time()
        await trio.sleep(max(0.0, to - time.perf_counter()))
        self.cpu = {"seconds": time.process_time() - c0, "window": to - frm}

    # ------------------------------------------------------------------ main

    async def run(self) -> None:
        scenario = self.job["scenario"]
        commands = Commands()
        if scenario == "storm":
            await self.connect_all(self.watchers, boot=True)
        else:
            await self.connect_all(self.chargers, boot=True)
        emit({"event": "ready", "connected": sum(c.ws is not None for c in
                                                 self.chargers + self.watchers),
              "failures": dict(self.failures)})
        go = await commands.next()
        frm, to, end = at_perf(go["from"]), at_perf(go["to"]), at_perf(go["end"])
        async with trio.open_nursery() as work:
            if scenario in ("meter", "heartbeat"):
                work.start_soon(self.cpu_window, frm, to)
                for charger in self.chargers:
                    work.start_soon(self.steady, charger, go)
            elif scenario == "idle":
                work.start_soon(self.cpu_window, frm, to)
                interval = self.job["interval"]
                rng = random.Random(self.job.get("seed", 0))
                for charger in self.chargers:
                    first = at_perf(go["start"]) + rng.uniform(0, interval)
                    work.start_soon(self.periodic, charger, interval, first, end)
            else:  # storm
                stop = trio.Event()
                start = at_perf(go["start"])
                interval = self.job["interval"]
                for n, charger in enumerate(self.watchers):
                    first = start + interval * n / max(1, len(self.watchers))
                    work.start_soon(self.periodic, charger, interval, first, float("inf"),
                                    stop)
                await trio.sleep(max(0.0, start - time.perf_counter()))
                c0 = time.process_time()
                await self.storm()
                self.cpu = {"seconds": time.process_time() - c0,
                            "window": time.perf_counter() - start}
                until = (await commands.next())["until"]
                stop.set()
                keep = [rt for rt, at in zip(self.round_trips, self.sent_at, strict=True)
                        if at <= until]
                self.round_trips = keep
        emit({"event": "done", "acked": self.acked, "window_acked": self.window_acked,
              "errors": dict(self.errors), "failures": dict(self.failures),
              "round_trips": [round(r, 3) for r in self.round_trips],
              "cpu": self.cpu, "max_seq": self.max_seq})
        with trio.move_on_after(5):
            async with trio.open_nursery() as closing:
                for charger in self.chargers + self.watchers:
                    if charger.ws is not None:
                        closing.start_soon(charger.ws.aclose)


class Commands:
    """JSON lines from stdin, read without blocking the Trio loop."""

    def __init__(self) -> None:
        self.stream = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
        self.buffer = b""

    async def next(self) -> dict[str, Any]:
        while b"\n" not in self.buffer:
            chunk = await self.stream.receive_some(65536)
            if not chunk:
                raise SystemExit("perf.py went away")
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return json.loads(line)  # type: ignore[no-any-return]


def at_perf(epoch: float) -> float:
    """A wall-clock epoch (shared by the processes of a run) on this process's perf clock."""
    return time.perf_counter() + (epoch - time.time())


def failure_name(exc: BaseException) -> str:
    status = getattr(exc, "status_code", None)
    if status is not None:
        return f"HTTP {status}"
    if isinstance(exc, trio.TooSlowError):
        return "timeout"
    text = str(exc)
    return f"{type(exc).__name__}: {text[:80]}" if text else type(exc).__name__


def emit(event: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


def main() -> None:
    with open(sys.argv[1]) as f:
        job = json.load(f)
    if job.get("cpus") and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, set(job["cpus"]))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    trio.run(Generator(job).run)


if __name__ == "__main__":
    main()
