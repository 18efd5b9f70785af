"""Reliability drills: faults and floods against a real `autimit-csms serve`, counted.

Run by hand (never in the test suite), one scenario at a time:

    .venv/bin/python bench/drills.py pg-restart  [--stations 20 --duration 20]
    .venv/bin/python bench/drills.py kill9       [--stations 20 --stay-away 5]
    .venv/bin/python bench/drills.py sigterm     [--stations 20 --shutdown-grace 5]
    .venv/bin/python bench/drills.py auth-flood  [--rate 200 --flood 10]
    .venv/bin/python bench/drills.py hostile

Each scenario starts its own PostgreSQL (fsync on), applies the schema, starts
`autimit-csms serve` as a subprocess, provisions stations through the REST API and
drives chargers (raw OCPP-J over trio-websocket) from this process, which is pinned
to another core than the server when taskset exists. It prints what it observed; a
scenario whose expectation fails exits with status 1. docs/reliability.md has the
figures and what each one means.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402
import trio  # noqa: E402
from _drill_common import (  # noqa: E402
    Cluster,
    Serve,
    Station,
    admin_headers,
    basic,
    boot,
    call,
    cpus,
    machine,
    meter_values,
    open_charger,
    percentile,
    provision,
    table,
)
from trio_websocket import ConnectionClosed  # noqa: E402

# ---------------------------------------------------------------- load under a fault


@dataclass
class Charger:
    """One station's view of a run: what it sent, what came back."""

    station: Station
    stay_away: bool = False
    seq: int = 0                 # next message to send; a message is resent until acked
    acked: int = 0
    call_errors: Counter[str] = field(default_factory=Counter)
    connections: int = 0
    refusals: Counter[str] = field(default_factory=Counter)
    booted: bool = False


@dataclass
class LoadRun:
    port: int
    retry_delay: float
    stop_sending: trio.Event = field(default_factory=trio.Event)
    fault: trio.Event = field(default_factory=trio.Event)   # set when the fault starts
    ack_times: list[float] = field(default_factory=list)

    async def charger(self, c: Charger, give_up: float) -> None:
        while trio.current_time() < give_up:
            if c.stay_away and self.fault.is_set():
                return
            if self.stop_sending.is_set() and c.seq == c.acked:
                return
            try:
                async with open_charger(self.port, c.station) as ws:
                    c.connections += 1
                    if not c.booted:
                        await boot(ws)
                        c.booted = True
                    await self._send_loop(ws, c)
                    return
            except ConnectionClosed as closed:
                c.refusals[f"closed {closed.reason.code}"] += 1
            except Exception as err:  # noqa: BLE001 - refused handshake, reset, timeout
                c.refusals[type(err).__name__] += 1
            await trio.sleep(self.retry_delay)

    async def _send_loop(self, ws: Any, c: Charger) -> None:
        while True:
            if c.seq == c.acked:  # the previous message is acked: a new one, or stop
                if self.stop_sending.is_set():
                    return
                c.seq += 1
            with trio.fail_after(30):
                answer = await call(ws, "MeterValues", meter_values(c.acked))
            if answer[0] == 3:
                c.acked += 1
                self.ack_times.append(trio.current_time())
            else:
                c.call_errors[str(answer[2])] += 1
                await trio.sleep(self.retry_delay)  # chargers retry, same content


def stored_per_station(cluster: Cluster) -> dict[str, int]:
    return {str(sid): n for sid, n in cluster.query(
        "SELECT station_id, count(*) FROM meter_values GROUP BY station_id")}


def load_results(run: LoadRun, chargers: list[Charger], cluster: Cluster
                 ) -> list[tuple[str, Any]]:
    stored = stored_per_station(cluster)
    acked = sum(c.acked for c in chargers)
    total = sum(stored.values())
    lost = sum(max(0, c.acked * 5 - stored.get(c.station.id, 0)) for c in chargers)
    # rows without an answer: committed, then the answer was lost with the socket
    unanswered = sum(max(0, stored.get(c.station.id, 0) - c.acked * 5) for c in chargers)
    errors: Counter[str] = sum((c.call_errors for c in chargers), Counter())
    refusals: Counter[str] = sum((c.refusals for c in chargers), Counter())
    acks = sorted(run.ack_times)
    gaps = [b - a for a, b in zip(acks, acks[1:], strict=False)]
    return [
        ("MeterValues acknowledged", acked),
        ("meter_values rows stored", total),
        ("expected rows (acknowledged x 5)", acked * 5),
        ("acknowledged rows missing (must be 0)", lost),
        ("rows stored without an answer", unanswered),
        ("CALLERRORs received", dict(errors) or 0),
        ("connection failures seen by chargers", dict(refusals) or 0),
        ("longest gap between two acks (s)", f"{max(gaps, default=0):.2f}"),
    ]


def start_chargers(nursery: trio.Nursery, run: LoadRun, chargers: list[Charger],
                   give_up: float) -> None:
    for c in chargers:
        nursery.start_soon(run.charger, c, give_up)


async def drill_pg_restart(args: argparse.Namespace, cluster: Cluster, serve: Serve) -> bool:
    await serve.start()
    stations = await provision_admin(serve, args.stations)
    run = LoadRun(serve.ocpp_port, args.retry_delay)
    chargers = [Charger(s) for s in stations]
    t_fault = t_back = 0.0
    async with trio.open_nursery() as nursery:
        start_chargers(nursery, run, chargers, trio.current_time() + args.duration + 60)
        await trio.sleep(args.duration / 3)
        t_fault = trio.current_time()
        run.fault.set()
        await trio.to_thread.run_sync(cluster.restart)
        t_back = trio.current_time()
        await trio.sleep(args.duration * 2 / 3)
        run.stop_sending.set()
    first_after = min((t for t in run.ack_times if t > t_back), default=None)
    rows = load_results(run, chargers, cluster)
    rows += [
        ("sockets kept (never reconnected)",
         f"{sum(c.connections == 1 for c in chargers)}/{len(chargers)}"),
        ("pg_ctl restart took (s)", f"{t_back - t_fault:.2f}"),
        ("recovery: restart issued -> first ack after it (s)",
         f"{first_after - t_fault:.2f}" if first_after else "never"),
    ]
    table(f"pg-restart: {args.stations} stations, {args.duration:.0f} s, "
          f"PostgreSQL restarted (-m fast) at {args.duration / 3:.0f} s", rows)
    return rows[3][1] == 0 and first_after is not None


async def drill_kill9(args: argparse.Namespace, cluster: Cluster, serve: Serve) -> bool:
    await serve.start()
    stations = await provision_admin(serve, args.stations)
    run = LoadRun(serve.ocpp_port, args.retry_delay)
    chargers = [Charger(s, stay_away=n < args.stay_away) for n, s in enumerate(stations)]
    away_ids = [c.station.id for c in chargers if c.stay_away]
    still_online: list[tuple[float, int]] = []
    t_kill = t_started = 0.0

    def online_away() -> int:
        return int(cluster.query(
            "SELECT count(*) FROM station_runtime_state WHERE station_id = ANY(%s::uuid[]) "
            "AND status <> 'offline'", away_ids)[0][0])

    async with trio.open_nursery() as nursery:
        start_chargers(nursery, run, chargers, trio.current_time() + args.duration + 60)
        await trio.sleep(args.duration / 3)
        before = online_away()
        run.fault.set()
        t_kill = trio.current_time()
        serve.kill9()
        restart_took = await serve.start()
        t_started = trio.current_time()
        deadline = t_started + args.offline_timeout
        while trio.current_time() < deadline:
            n = await trio.to_thread.run_sync(online_away)
            still_online.append((trio.current_time(), n))
            if n == 0:
                break
            await trio.sleep(0.5)
        remaining = max(0.0, t_kill + args.duration - trio.current_time())
        await trio.sleep(remaining)
        run.stop_sending.set()
    cleared = next((t for t, n in still_online if n == 0), None)
    rows = load_results(run, chargers, cluster)
    rows += [
        ("restart of serve after kill -9 (s)", f"{restart_took:.2f}"),
        ("stations that stayed away", len(away_ids)),
        ("  of them online just before the kill", before),
        ("  of them still online at the end (must be 0)", still_online[-1][1]),
        ("  all offline after kill (s)",
         f"{cleared - t_kill:.1f}" if cleared else f"not within {args.offline_timeout:.0f}"),
        ("  all offline after new serve was up (s)",
         f"{cleared - t_started:.1f}" if cleared else "-"),
        ("--node-silence of serve (s)", serve.env.get("AUTIMIT_NODE_SILENCE", "10 (default)")),
    ]
    table(f"kill9: {args.stations} stations, kill -9 of serve at {args.duration / 3:.0f} s, "
          f"{len(away_ids)} stay away", rows)
    return rows[3][1] == 0 and still_online[-1][1] == 0


async def provision_admin(serve: Serve, count: int, prefix: str = "DRILL") -> list[Station]:
    async with httpx.AsyncClient(base_url=serve.api, headers=admin_headers(),
                                 timeout=30) as http:
        return await provision(http, count, prefix)


# ---------------------------------------------------------------- SIGTERM


async def drill_sigterm(args: argparse.Namespace, cluster: Cluster, serve: Serve) -> bool:
    await serve.start()
    stations = await provision_admin(serve, args.stations)
    codes: Counter[str] = Counter()
    closed_after: list[float] = []
    busy_acked = [0]
    t_signal = [0.0]
    connected = [0]
    all_connected = trio.Event()
    signalled = trio.Event()

    async def charger(n: int, station: Station) -> None:
        try:
            async with open_charger(serve.ocpp_port, station) as ws:
                await boot(ws)
                connected[0] += 1
                if connected[0] == len(stations):
                    all_connected.set()
                try:
                    if n % 2 == 0:  # half of them idle, half busy sending MeterValues
                        await ws.get_message()
                        codes["no close (a message arrived)"] += 1
                    else:
                        seq = 0
                        while True:
                            answer = await call(ws, "MeterValues", meter_values(seq))
                            if answer[0] == 3:
                                busy_acked[0] += 1
                                seq += 1
                except ConnectionClosed as closed:
                    codes[str(closed.reason.code)] += 1
                    closed_after.append(time.perf_counter() - t_signal[0])
        except Exception as err:  # noqa: BLE001
            codes[type(err).__name__] += 1

    async with trio.open_nursery() as nursery:
        for n, station in enumerate(stations):
            nursery.start_soon(charger, n, station)
        with trio.fail_after(60):
            await all_connected.wait()
        await trio.sleep(1)
        t_signal[0] = time.perf_counter()
        serve.sigterm()
        signalled.set()
        assert serve.proc is not None
        exit_code = await trio.to_thread.run_sync(serve.proc.wait)
        exit_after = time.perf_counter() - t_signal[0]
    stored = sum(stored_per_station(cluster).values())
    rows = [
        ("close codes seen by chargers", dict(codes)),
        ("exit code (0 expected)", exit_code),
        ("signal -> exit (s; below the grace expected)", f"{exit_after:.2f}"),
        ("--shutdown-grace (s)", args.shutdown_grace),
        ("signal -> last charger closed (s)", f"{max(closed_after, default=0):.2f}"),
        ("busy stations: MeterValues acknowledged", busy_acked[0]),
        ("busy stations: rows stored (>= acked x 5)", stored),
    ]
    table(f"sigterm: {args.stations} connected stations (half sending), SIGTERM", rows)
    return (codes == Counter({"1001": len(stations)}) and exit_code == 0
            and exit_after < args.shutdown_grace and stored >= busy_acked[0] * 5)


# ---------------------------------------------------------------- failed-auth flood


HANDSHAKE = ("GET /ocpp/1.6/{code} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
             "Upgrade: websocket\r\nConnection: Upgrade\r\n"
             "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
             "Sec-WebSocket-Protocol: ocpp1.6\r\n{auth}\r\n")


async def raw_handshake(port: int, source: str, code: str, auth: str) -> str:
    """One handshake from `source`; the HTTP status it got ('error' if none)."""
    sock = trio.socket.socket()
    try:
        await sock.bind((source, 0))
        await sock.connect(("127.0.0.1", port))
        stream = trio.SocketStream(sock)
        await stream.send_all(HANDSHAKE.format(code=code, port=port, auth=auth).encode())
        data = b""
        with trio.move_on_after(10):
            while b"\r\n" not in data:
                chunk = await stream.receive_some(4096)
                if not chunk:
                    break
                data += chunk
        await stream.aclose()
        parts = data.split(b" ", 2)
        return parts[1].decode() if len(parts) > 1 else "no answer"
    except trio.BrokenResourceError:
        return "reset"  # a source still failing while throttled is dropped at accept
    except OSError as err:
        return type(err).__name__
    finally:
        sock.close()


def flood_attempt(victim: Station, n: int) -> tuple[str, str]:
    """(path code, Authorization header line) of failed handshake `n`: the kinds in turn."""
    kind = n % 5
    if kind == 0:  # wrong secret for a known code
        wrong = basic(victim.code, "WrongSecret0000000000000")[1]
        return victim.code, f"Authorization: {wrong}\r\n"
    if kind == 1:  # unknown code, well-formed credentials
        code = f"NOPE-{n}"
        return code, f"Authorization: {basic(code, 'NotTheSecret000000000000')[1]}\r\n"
    if kind == 2:
        return victim.code, "Authorization: Basic !!!not-base64\r\n"
    if kind == 3:
        return victim.code, "Authorization: Bearer abc\r\n"
    return victim.code, ""  # no Authorization at all


async def drill_auth_flood(args: argparse.Namespace, cluster: Cluster, serve: Serve) -> bool:
    await serve.start()
    stations = await provision_admin(serve, args.stations + 2)
    legit, reconnector, victim = stations[:-2], stations[-2], stations[-1]
    phase = ["warmup"]
    rtts: dict[str, list[float]] = {"quiet": [], "flood": []}
    handshakes: dict[str, Counter[str]] = {"quiet": Counter(), "flood": Counter()}
    handshake_times: dict[str, list[float]] = {"quiet": [], "flood": []}
    victim_result: Counter[str] = Counter()
    answers: Counter[str] = Counter()
    done = trio.Event()
    first = ipaddress.ip_address(args.flood_source)
    sources = [str(first + i) for i in range(args.sources)]

    async def heartbeater(station: Station) -> None:
        async with open_charger(serve.ocpp_port, station) as ws:
            await boot(ws)
            while not done.is_set():
                t = time.perf_counter()
                answer = await call(ws, "Heartbeat", {})
                if phase[0] in rtts and answer[0] == 3:
                    rtts[phase[0]].append(time.perf_counter() - t)
                await trio.sleep(args.heartbeat_every)

    async def legit_handshakes(station: Station, into: dict[str, Counter[str]] | None) -> None:
        while not done.is_set():
            name = phase[0]
            t = time.perf_counter()
            try:
                async with open_charger(serve.ocpp_port, station, timeout=10):
                    result = "accepted"
            except Exception as err:  # noqa: BLE001
                result = getattr(getattr(err, "response", None), "status_code", None) or \
                    type(err).__name__
            if into is not None and name in into:
                into[name][str(result)] += 1
                if result == "accepted":
                    handshake_times[name].append(time.perf_counter() - t)
            elif into is None and name == "flood":
                victim_result[str(result)] += 1
            await trio.sleep(0.5)

    async def one_attempt(n: int, limiter: trio.CapacityLimiter) -> None:
        async with limiter:
            code, auth = flood_attempt(victim, n)
            source = sources[n % len(sources)]
            answers[await raw_handshake(serve.ocpp_port, source, code, auth)] += 1

    async with trio.open_nursery() as nursery:
        for station in legit:
            nursery.start_soon(heartbeater, station)
        nursery.start_soon(legit_handshakes, reconnector, handshakes)
        nursery.start_soon(legit_handshakes, victim, None)
        await trio.sleep(2)
        phase[0] = "quiet"
        cpu0, lines0, t0 = serve.cpu_seconds(), serve.log_lines(), time.perf_counter()
        await trio.sleep(args.quiet)
        cpu1, lines1, t1 = serve.cpu_seconds(), serve.log_lines(), time.perf_counter()
        phase[0] = "flood"
        limiter = trio.CapacityLimiter(args.concurrency)
        sent = 0
        async with trio.open_nursery() as flood:
            start = trio.current_time()
            while trio.current_time() - start < args.flood:
                flood.start_soon(one_attempt, sent, limiter)
                sent += 1
                await trio.sleep_until(start + sent / args.rate)
            flood_wall = trio.current_time() - start
        cpu2, lines2, t2 = serve.cpu_seconds(), serve.log_lines(), time.perf_counter()
        phase[0] = "after"
        done.set()
    quiet_cpu = (cpu1 - cpu0) / (t1 - t0) * 100
    flood_cpu = (cpu2 - cpu1) / (t2 - t1) * 100
    refused = sum(n for k, n in handshakes["flood"].items() if k != "accepted")
    p99q, p99f = percentile(rtts["quiet"], 99), percentile(rtts["flood"], 99)
    rows = [
        ("failed handshakes sent / achieved rate",
         f"{sent} / {sent / flood_wall:.0f} per s (asked {args.rate:g})"),
        ("answers to the flood (HTTP status)", dict(answers)),
        ("server CPU quiet / flood (% of one core)", f"{quiet_cpu:.0f} / {flood_cpu:.0f}"),
        ("server log lines quiet / flood",
         f"{lines1 - lines0} in {t1 - t0:.0f} s / {lines2 - lines1} in {t2 - t1:.0f} s"),
        ("Heartbeat p50 quiet / flood (ms)",
         f"{percentile(rtts['quiet'], 50) * 1e3:.1f} / {percentile(rtts['flood'], 50) * 1e3:.1f}"),
        ("Heartbeat p99 quiet / flood (ms)", f"{p99q * 1e3:.1f} / {p99f * 1e3:.1f}"),
        ("Heartbeats measured quiet / flood", f"{len(rtts['quiet'])} / {len(rtts['flood'])}"),
        ("legit handshakes quiet", dict(handshakes["quiet"])),
        ("legit handshakes during flood", dict(handshakes["flood"])),
        ("legit handshake p99 quiet / flood (ms)",
         f"{percentile(handshake_times['quiet'], 99) * 1e3:.1f} / "
         f"{percentile(handshake_times['flood'], 99) * 1e3:.1f}"),
        ("victim station (its code flooded) during flood", dict(victim_result)),
        ("target: p99 flood <= 2 x quiet", "met" if p99f <= 2 * p99q else "NOT met"),
        ("target: flood CPU - quiet CPU <= 25 %",
         "met" if flood_cpu - quiet_cpu <= 25 else "NOT met"),
    ]
    table(f"auth-flood: {len(legit)} stations heartbeating every {args.heartbeat_every:g} s; "
          f"{args.quiet:g} s quiet, then {args.flood:g} s of failed handshakes from "
          f"{args.flood_source}" + (f" and {args.sources - 1} more addresses"
                                    if args.sources > 1 else ""), rows)
    return refused == 0 and p99f <= 2 * p99q and flood_cpu - quiet_cpu <= 25


# ---------------------------------------------------------------- main


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--no-pin", action="store_true",
                        help="do not pin the server and this load generator to separate cores")
    parser.add_argument("--env", action="append", default=[], metavar="AUTIMIT_X=VALUE",
                        help="extra setting for serve (repeatable)")
    sub = parser.add_subparsers(dest="scenario", required=True)
    for name in ("pg-restart", "kill9"):
        p = sub.add_parser(name)
        p.add_argument("--stations", type=int, default=20)
        p.add_argument("--duration", type=float, default=20, help="seconds of load")
        p.add_argument("--retry-delay", type=float, default=0.5,
                       help="charger back-off after a CALLERROR or a lost connection")
    sub.choices["kill9"].add_argument("--stay-away", type=int, default=5,
                                      help="stations that do not come back after the kill")
    sub.choices["kill9"].add_argument(
        "--node-silence", type=float, help="serve's --node-silence (default: serve's own)")
    sub.choices["kill9"].add_argument(
        "--offline-timeout", type=float, default=40,
        help="how long to wait for the stations that stayed away to be marked offline")
    p = sub.add_parser("sigterm")
    p.add_argument("--stations", type=int, default=20)
    p.add_argument("--shutdown-grace", type=float, default=5)
    p = sub.add_parser("auth-flood")
    p.add_argument("--stations", type=int, default=10, help="legitimate stations")
    p.add_argument("--heartbeat-every", type=float, default=0.2)
    p.add_argument("--rate", type=float, default=200, help="failed handshakes per second")
    p.add_argument("--quiet", type=float, default=5)
    p.add_argument("--flood", type=float, default=10)
    p.add_argument("--concurrency", type=int, default=100)
    p.add_argument("--flood-source", default="127.0.0.2",
                   help="first source address of the flood (legit chargers use 127.0.0.1)")
    p.add_argument("--sources", type=int, default=1,
                   help="spread the flood over this many addresses from --flood-source on "
                        "(a botnet: each stays longer within its own budget)")
    sub.add_parser("hostile")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    env = dict(item.split("=", 1) for item in args.env)
    env.setdefault("AUTIMIT_WS_PING_INTERVAL", "0")
    if args.scenario == "kill9":
        if args.node_silence is not None:
            env.setdefault("AUTIMIT_NODE_SILENCE", str(args.node_silence))
    if args.scenario == "sigterm":
        env.setdefault("AUTIMIT_SHUTDOWN_GRACE", str(args.shutdown_grace))
    available = cpus()
    pin = None
    print(f"{args.scenario}: {machine()}", flush=True)
    cluster = Cluster()
    if not args.no_pin and len(available) >= 2 and os.path.exists("/usr/bin/taskset"):
        pin = ",".join(map(str, available[:-1]))
        os.sched_setaffinity(0, {available[-1]})  # after PostgreSQL started: it stays free
    serve = Serve(cluster.url, env=env, pin=pin)
    print(f"server log: {serve.log_path}; server CPUs {pin or 'any'}", flush=True)
    try:
        if args.scenario == "hostile":
            from _drill_hostile import drill_hostile
            ok = trio.run(drill_hostile, args, cluster, serve)
        else:
            drill = {"pg-restart": drill_pg_restart, "kill9": drill_kill9,
                     "sigterm": drill_sigterm, "auth-flood": drill_auth_flood}[args.scenario]
            ok = trio.run(drill, args, cluster, serve)
    finally:
        serve.stop()
        cluster.stop()
    print(f"\n{args.scenario}: {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
