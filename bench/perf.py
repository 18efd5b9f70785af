"""Side-by-side benchmark: Autimit CSMS against the usual Python OCPP 1.6 central system.

Run by hand (never in the test suite):

    .venv/bin/python bench/perf.py [--rounds 3] [--scenario idle,storm,meter,heartbeat]
                                   [--stations 50] [--idle-stations 3000]
                                   [--storm-stations 3000] [--scale 50,500,5000] [--markdown]

One invocation measures both sides with the same load generator:
  reference  bench/reference_cs.py: the PyPI `ocpp` library on `websockets`, answering every
             CALL without storing anything and without authentication;
  ours       `autimit-csms serve` on a private PostgreSQL with fsync on, stations provisioned
             in SQL with real bcrypt hashes, every message committed before its CALLRESULT.
Each scenario runs reference then ours, --rounds times (A B A B ...), each run on a freshly
started server process; tables report medians. Scenarios:
  meter      N stations each send MeterValues (5 sampled values, each message its own
             timestamp) one after another, each awaited: msg/s, server CPU per message,
             round trip p50/p99; for ours, meter_values rows stored == acknowledged samples.
  heartbeat  the same with Heartbeat (ours: UPDATE + INSERT per heartbeat, ADR 0002).
  idle       N stations connected and booted, each a Heartbeat every 30 s (random phase):
             server RSS per connection, heartbeat round trip p50/p99, server CPU.
  storm      cold start, N stations connect at once (bounded in-flight handshakes per
             generator) while a few connected stations heartbeat: time until all admitted,
             handshake p50/p99, the heartbeaters' round trip p99 meanwhile.
  --scale    meter on ours at several station counts: how CPU per message grows.
Server CPU is the server process's own utime + stime (/proc/<pid>/stat, all its threads)
over the measured window only. The server runs on the first CPU, the load generator
processes (bench/_perf_load.py) on the others, PostgreSQL where --pg-cpus says. The exit
status is non-zero only when a run failed outright (a process died, a charger could not
connect, a CALLERROR, or rows stored != acknowledged), never because of a figure.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import io
import json
import math
import os
import platform
import pstats
import queue
import resource
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import bcrypt  # noqa: E402
import psycopg  # noqa: E402
from _drill_common import ROOT, SERVE, Cluster, percentile  # noqa: E402

from autimit_csms.credentials import BCRYPT_ROUNDS, new_station_secret  # noqa: E402
from autimit_csms.localpg import free_port  # noqa: E402

BENCH = Path(__file__).resolve().parent
REFERENCE_CS = BENCH / "reference_cs.py"
LOAD = BENCH / "_perf_load.py"
SIDES = ("reference", "ours")  # the order of every round: A B A B ...
SCENARIOS = ("idle", "storm", "meter", "heartbeat")
SAMPLES_PER_METER_VALUES = 5
OURS_ENV = {
    "AUTIMIT_WS_PING_INTERVAL": "0",          # the reference sends no pings either
    "AUTIMIT_MAX_CALLS_PER_SECOND": "0",      # no per-connection pacing in a benchmark
    "AUTIMIT_MAX_CONNECTIONS": "0",           # --idle-stations up to 20,000 and more
    "AUTIMIT_MAX_CONNECTIONS_PER_SOURCE": "0",  # every charger comes from 127.0.0.1
    "AUTIMIT_SHUTDOWN_GRACE": "2",
}
STATIONS_PER_GENERATOR = 5000  # idle/storm: more generator processes beyond this
GENERATOR_LIMIT, CORES_LIMIT = 80, 95  # % above which a table warns of its load generator
FD_MARGIN = 100  # a server's own files: listeners, database connections, logs, epoll


class RunFailed(Exception):
    pass


# ---------------------------------------------------------------- /proc


def proc_cpu(pid: int) -> float:
    """utime + stime of a process (all its threads), seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def tree_cpu(root: int) -> float:
    """CPU seconds of `root` and its direct children (the postmaster and its backends)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:
            continue
        fields = text.rsplit(")", 1)[1].split()
        if int(entry.name) == root or int(fields[1]) == root:
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def children(root: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == root:
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def core_ticks() -> dict[int, tuple[int, int]]:
    """Per CPU: (busy, total) jiffies from /proc/stat."""
    out = {}
    for line in Path("/proc/stat").read_text().splitlines():
        name, *values = line.split()
        if name.startswith("cpu") and name[3:].isdigit():
            ticks = [int(v) for v in values[:8]]
            idle = ticks[3] + ticks[4]
            out[int(name[3:])] = (sum(ticks) - idle, sum(ticks))
    return out


def busy_percent(t0: dict[int, tuple[int, int]], t1: dict[int, tuple[int, int]],
                 cores: list[int]) -> float:
    busy = sum(t1[c][0] - t0[c][0] for c in cores)
    total = sum(t1[c][1] - t0[c][1] for c in cores)
    return 100 * busy / total if total else float("nan")


@dataclass
class Snapshot:
    at: float
    server: float
    pg: float
    ticks: dict[int, tuple[int, int]]


# ---------------------------------------------------------------- the run's context


@dataclass
class Context:
    args: argparse.Namespace
    work: Path
    server_cpus: list[int] | None
    generator_cpus: list[int] | None
    pg_cpus: list[int] | None
    cluster: Cluster | None = None
    stations: list[tuple[str, str]] = field(default_factory=list)
    postmaster: int = 0
    last_ts: float = 0.0
    live: list[subprocess.Popen[Any]] = field(default_factory=list)
    tree: Path = Path()  # the copy of the server's code that every run of ours uses

    def generators_for(self, count: int, scenario: str) -> int:
        n = self.args.generators or max(1, len(self.generator_cpus or [0]))
        if scenario in ("idle", "storm"):
            n = max(n, math.ceil(count / STATIONS_PER_GENERATOR))
        return max(1, min(n, count))

    def snapshot(self, server: Server) -> Snapshot:
        return Snapshot(time.time(), proc_cpu(server.pid),
                        tree_cpu(self.postmaster) if server.side == "ours" else 0.0,
                        core_ticks())

    def query(self, sql: str, *params: Any) -> Any:
        assert self.cluster is not None
        with psycopg.connect(self.cluster.url, autocommit=True) as conn:
            return conn.execute(sql, params).fetchone()[0]  # type: ignore[index]


class Server:
    """The server under test, a fresh process per run, pinned to the server CPU."""

    def __init__(self, ctx: Context, side: str) -> None:
        self.ctx, self.side = ctx, side
        self.profile: Path | None = None
        self.port = free_port()
        self.log = ctx.work / f"{side}-{uuid.uuid4().hex[:8]}.log"
        level = ctx.args.log_level
        env = dict(os.environ)
        if side == "reference":
            command = [sys.executable, str(REFERENCE_CS), "--listen", f"127.0.0.1:{self.port}",
                       "--log-level", level]
        else:
            assert ctx.cluster is not None
            command = [str(SERVE), "--log-level", level, "serve"]
            if ctx.args.profile:  # the event-loop thread only: cProfile sees no worker threads
                self.profile = self.log.with_suffix(".pstats")
                command = [sys.executable, "-m", "cProfile", "-o", str(self.profile), *command]
            env.update({"PYTHONPATH": str(ctx.tree),  # the snapshot wins over the checkout
                        "AUTIMIT_DATABASE_URL": ctx.cluster.url,
                        "AUTIMIT_ADMIN_TOKEN": "perf-admin-token-0123456789",
                        "AUTIMIT_OCPP_LISTEN": f"127.0.0.1:{self.port}",
                        "AUTIMIT_API_LISTEN": f"127.0.0.1:{free_port()}",
                        "AUTIMIT_PUBLIC_OCPP_URL": f"ws://127.0.0.1:{self.port}/ocpp/1.6",
                        **OURS_ENV})
        if ctx.server_cpus:
            command = ["taskset", "-c", ",".join(map(str, ctx.server_cpus)), *command]
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(command, env=env, stdout=log, stderr=log,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        ctx.live.append(self.proc)
        try:
            self._wait_listening()
        except BaseException:
            self.stop()
            raise

    def _wait_listening(self) -> None:
        deadline = time.time() + 60
        while True:
            self.check()
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if time.time() > deadline:
                    raise RunFailed(f"{self.side} server not listening after 60 s") from None
                time.sleep(0.05)
        time.sleep(1.0)  # let start-up work (pool, first sweeps) settle
        self.check()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def check(self) -> None:
        if self.proc.poll() is not None:
            raise RunFailed(f"{self.side} server exited with {self.proc.returncode}:\n"
                            + tail(self.log))

    def stop(self) -> None:
        stop_process(self.proc)
        if self.proc in self.ctx.live:
            self.ctx.live.remove(self.proc)
        text = tail(self.log, 10_000_000)
        problems = sum(1 for line in text.splitlines()
                       if "ERROR" in line or "Traceback" in line or "CRITICAL" in line)
        if problems:
            log(f"  note: {problems} ERROR/Traceback lines in the {self.side} server's log "
                f"({self.log}{'' if self.ctx.args.keep else ', removed at exit; --keep'})")
        if self.profile is not None and self.profile.exists():
            out = io.StringIO()
            stats = pstats.Stats(str(self.profile), stream=out)
            stats.sort_stats("tottime").print_stats(15)
            log(f"  profile of ours (event-loop thread, cProfile): {self.profile}\n"
                + out.getvalue().split("\n", 4)[-1].rstrip())


def stop_process(proc: subprocess.Popen[Any], grace: float = 20) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def tail(path: Path, chars: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


class Generators:
    """The load generator processes of one run; their events arrive on a queue."""

    def __init__(self, ctx: Context, server: Server, scenario: str,
                 shares: list[list[tuple[str, str]]], **job: Any) -> None:
        self.ctx, self.server = ctx, server
        self.events: queue.Queue[tuple[int, dict[str, Any] | None]] = queue.Queue()
        self.procs: list[subprocess.Popen[str]] = []
        self.logs: list[Path] = []
        for n, share in enumerate(shares):
            spec = {"scenario": scenario, "port": server.port, "stations": share,
                    "concurrency": ctx.args.concurrency, "connect_timeout": 120,
                    "cpus": ctx.generator_cpus, "seed": n, **job}
            if n > 0:
                spec.pop("watchers", None)
            path = ctx.work / f"job-{uuid.uuid4().hex[:8]}.json"
            path.write_text(json.dumps(spec))
            log = path.with_suffix(".log")
            self.logs.append(log)
            with log.open("w") as err:
                proc = subprocess.Popen([sys.executable, str(LOAD), str(path)], text=True,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=err, start_new_session=True)
            ctx.live.append(proc)
            self.procs.append(proc)
            assert proc.stdout is not None
            threading.Thread(target=self._read, args=(n, proc.stdout), daemon=True).start()

    def _read(self, n: int, stream: TextIO) -> None:
        for line in stream:
            self.events.put((n, json.loads(line)))
        self.events.put((n, None))

    def collect(self, event: str, timeout: float) -> list[dict[str, Any]]:
        """One `event` from every generator, in generator order."""
        got: dict[int, dict[str, Any]] = {}
        deadline = time.time() + timeout
        while len(got) < len(self.procs):
            self.server.check()
            try:
                n, message = self.events.get(timeout=0.5)
            except queue.Empty:
                if time.time() > deadline:
                    raise RunFailed(f"no '{event}' from the load generators after "
                                    f"{timeout:.0f} s") from None
                continue
            if message is None:
                self.procs[n].wait(5)
                raise RunFailed(f"load generator {n} exited ({self.procs[n].returncode}) "
                                f"before '{event}':\n{tail(self.logs[n])}")
            if message.get("event") != event:
                raise RunFailed(f"load generator {n}: expected '{event}', got {message}")
            got[n] = message
        return [got[n] for n in range(len(self.procs))]

    def send(self, command: dict[str, Any]) -> None:
        line = json.dumps(command) + "\n"
        for proc in self.procs:
            assert proc.stdin is not None
            proc.stdin.write(line)
            proc.stdin.flush()

    def __enter__(self) -> Generators:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: Any) -> None:
        """After `done` they close their connections and exit; after a failure, at once."""
        for proc in self.procs:
            if kind is None:
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    pass
            stop_process(proc, grace=5)
            if proc in self.ctx.live:
                self.ctx.live.remove(proc)


def split(items: list[Any], parts: int) -> list[list[Any]]:
    return [items[n::parts] for n in range(parts)]


def sleep_until(epoch: float) -> None:
    time.sleep(max(0.0, epoch - time.time()))


def merged(done: list[dict[str, Any]], key: str) -> list[float]:
    return [value for d in done for value in d[key]]


def counters(done: list[dict[str, Any]], key: str) -> Counter[str]:
    total: Counter[str] = Counter()
    for d in done:
        total.update(d[key])
    return total


def require_connected(ready: list[dict[str, Any]], expected: int) -> None:
    connected = sum(r["connected"] for r in ready)
    if connected != expected:
        raise RunFailed(f"{connected} of {expected} chargers connected; failures: "
                        f"{dict(counters(ready, 'failures'))}")


def generator_figures(done: list[dict[str, Any]]) -> dict[str, float]:
    cpu = [d["cpu"]["seconds"] / d["cpu"]["window"] * 100 for d in done if d["cpu"]]
    return {"generator_cpu": max(cpu) if cpu else float("nan")}


def core_figures(ctx: Context, s0: Snapshot, s1: Snapshot) -> dict[str, float]:
    out = {}
    if ctx.server_cpus:
        out["server_core_busy"] = busy_percent(s0.ticks, s1.ticks, ctx.server_cpus)
    if ctx.generator_cpus:
        out["generator_cores_busy"] = busy_percent(s0.ticks, s1.ticks, ctx.generator_cpus)
    return out


# ---------------------------------------------------------------- scenarios


def run_steady(ctx: Context, side: str, scenario: str, count: int) -> dict[str, Any]:
    """meter / heartbeat: every station one awaited CALL after another."""
    args = ctx.args
    stations = ctx.stations[:count]
    server = Server(ctx, side)
    try:
        with Generators(ctx, server, scenario,
                        split(stations, ctx.generators_for(count, scenario))) as gens:
            require_connected(gens.collect("ready", 600), count)
            start = time.time() + 1.0
            ts_base = float(math.ceil(max(start, ctx.last_ts + 1)))  # samples are sent to the ms
            frm = start + args.warmup
            to = frm + args.seconds
            gens.send({"cmd": "go", "start": start, "from": frm, "to": to, "end": to,
                       "ts_base": ts_base})
            sleep_until(frm)
            s0 = ctx.snapshot(server)
            sleep_until(to)
            s1 = ctx.snapshot(server)
            done = gens.collect("done", 120)
        server.check()
    finally:
        server.stop()
    window = s1.at - s0.at
    in_window = sum(d["window_acked"] for d in done)
    acked = sum(d["acked"] for d in done)
    errors = counters(done, "errors")
    if errors:
        raise RunFailed(f"{side}: {dict(errors)}")
    if not in_window:
        raise RunFailed(f"{side}: no message acknowledged in the window")
    rtts = merged(done, "round_trips")
    figures: dict[str, Any] = {
        "msg_per_s": in_window / window,
        "server_cpu_us": (s1.server - s0.server) / in_window * 1e6,
        "server_cpu_pct": (s1.server - s0.server) / window * 100,
        "p50": percentile(rtts, 50), "p99": percentile(rtts, 99),
        "acked": acked,
        **generator_figures(done), **core_figures(ctx, s0, s1),
    }
    if side == "ours":
        figures["pg_cpu_us"] = (s1.pg - s0.pg) / in_window * 1e6
        codes = [code for code, _ in stations]
        if scenario == "meter":
            max_seq = max(d["max_seq"] for d in done)
            ctx.last_ts = ts_base + (max_seq + 1) / 1000
            rows = ctx.query(
                "SELECT count(*) FROM meter_values v JOIN stations s ON s.id = v.station_id "
                "WHERE s.station_code = ANY(%s) AND v.sampled_at >= to_timestamp(%s) "
                "AND v.sampled_at < to_timestamp(%s)", codes, ts_base, ctx.last_ts + 0.001)
            expected = acked * SAMPLES_PER_METER_VALUES
        else:
            rows = ctx.query(
                "SELECT count(*) FROM station_heartbeat_events h JOIN stations s "
                "ON s.id = h.station_id WHERE s.station_code = ANY(%s) "
                "AND h.occurred_at >= to_timestamp(%s) AND h.occurred_at < to_timestamp(%s)",
                codes, start - 0.5, time.time() + 1)
            expected = acked
        figures["stored"] = (rows, expected)
        if rows != expected:
            raise RunFailed(f"ours: {rows} rows stored for {expected} acknowledged "
                            f"({scenario})")
    return figures


def run_idle(ctx: Context, side: str) -> dict[str, Any]:
    args = ctx.args
    count = args.idle_stations
    stations = ctx.stations[:count]
    server = Server(ctx, side)
    try:
        rss0 = proc_rss_kib(server.pid)
        t0 = time.time()
        with Generators(ctx, server, "idle", split(stations, ctx.generators_for(count, "idle")),
                        interval=args.idle_interval) as gens:
            require_connected(gens.collect("ready", 1800), count)
            connect_s = time.time() - t0
            time.sleep(2)
            rss_connected = proc_rss_kib(server.pid)
            start = time.time() + 1.0
            to = start + args.idle_seconds
            gens.send({"cmd": "go", "start": start, "from": start, "to": to, "end": to,
                       "ts_base": start})
            sleep_until(start)
            s0 = ctx.snapshot(server)
            sleep_until(to)
            s1 = ctx.snapshot(server)
            rss_end = proc_rss_kib(server.pid)
            done = gens.collect("done", args.idle_interval + 120)
        server.check()
    finally:
        server.stop()
    errors = counters(done, "errors")
    if errors:
        raise RunFailed(f"{side}: {dict(errors)}")
    rtts = merged(done, "round_trips")
    return {
        "connected": count, "connect_s": connect_s,
        "rss_per_conn": (max(rss_connected, rss_end) - rss0) / count,
        "rss_mib": max(rss_connected, rss_end) / 1024,
        "heartbeats": len(rtts), "p50": percentile(rtts, 50), "p99": percentile(rtts, 99),
        "server_cpu_pct": (s1.server - s0.server) / (s1.at - s0.at) * 100,
        **generator_figures(done), **core_figures(ctx, s0, s1),
    }


def run_storm(ctx: Context, side: str) -> dict[str, Any]:
    args = ctx.args
    count, nwatch = args.storm_stations, args.storm_watchers
    stations = ctx.stations[:count]
    watchers = ctx.stations[count:count + nwatch]
    server = Server(ctx, side)  # a fresh process: empty caches
    try:
        with Generators(ctx, server, "storm",
                        split(stations, ctx.generators_for(count, "storm")),
                        watchers=watchers, interval=args.storm_heartbeat) as gens:
            require_connected(gens.collect("ready", 120), nwatch)
            start = time.time() + 1.0
            gens.send({"cmd": "go", "start": start, "from": start, "to": start, "end": start,
                       "ts_base": start})
            sleep_until(start)
            s0 = ctx.snapshot(server)
            admitted = gens.collect("admitted", 1800)
            s1 = ctx.snapshot(server)
            last = max(a["last"] for a in admitted)
            gens.send({"cmd": "stop", "until": last})
            done = gens.collect("done", 60)
        server.check()
    finally:
        server.stop()
    failures = counters(admitted, "failures")
    if failures:
        raise RunFailed(f"{side}: storm handshakes failed: {dict(failures)}")
    errors = counters(done, "errors")
    if errors:
        raise RunFailed(f"{side}: watchers: {dict(errors)}")
    handshakes = merged(admitted, "handshakes")
    rtts = merged(done, "round_trips")
    return {
        "admitted": len(handshakes), "all_admitted_s": last - start,
        "hs_p50": percentile(handshakes, 50), "hs_p99": percentile(handshakes, 99),
        "watch_p50": percentile(rtts, 50), "watch_p99": percentile(rtts, 99),
        "watch_n": len(rtts),
        "server_cpu_s": s1.server - s0.server,
        **generator_figures(done), **core_figures(ctx, s0, s1),
    }


# ---------------------------------------------------------------- tables

# (key, label, format); a row is shown when either side has the figure.
ROWS: dict[str, list[tuple[str, str, str]]] = {
    "meter": [
        ("msg_per_s", "MeterValues/s", ",.0f"),
        ("server_cpu_us", "server CPU per MeterValues (µs)", ",.0f"),
        ("p50", "round trip p50 (ms)", ".1f"),
        ("p99", "round trip p99 (ms)", ".1f"),
        ("server_cpu_pct", "server CPU (% of one core)", ".0f"),
        ("pg_cpu_us", "PostgreSQL CPU per MeterValues (µs)", ",.0f"),
        ("stored", "meter_values rows stored / samples acknowledged (all rounds)", "s"),
        ("generator_cpu", "load generator CPU (% of a core, busiest process)", ".0f"),
        ("generator_cores_busy", "generator CPUs busy (%, all processes)", ".0f"),
    ],
    "heartbeat": [
        ("msg_per_s", "Heartbeat/s", ",.0f"),
        ("server_cpu_us", "server CPU per Heartbeat (µs)", ",.0f"),
        ("p50", "round trip p50 (ms)", ".1f"),
        ("p99", "round trip p99 (ms)", ".1f"),
        ("server_cpu_pct", "server CPU (% of one core)", ".0f"),
        ("pg_cpu_us", "PostgreSQL CPU per Heartbeat (µs)", ",.0f"),
        ("stored", "heartbeat events stored / acknowledged (all rounds)", "s"),
        ("generator_cpu", "load generator CPU (% of a core, busiest process)", ".0f"),
        ("generator_cores_busy", "generator CPUs busy (%, all processes)", ".0f"),
    ],
    "idle": [
        ("rss_per_conn", "server RSS per connection (KiB)", ",.1f"),
        ("rss_mib", "server RSS with all connected (MiB)", ",.0f"),
        ("p50", "Heartbeat round trip p50 (ms)", ".1f"),
        ("p99", "Heartbeat round trip p99 (ms)", ".1f"),
        ("heartbeats", "heartbeats measured", ",.0f"),
        ("server_cpu_pct", "server CPU (% of one core)", ".1f"),
        ("connect_s", "connect + boot all, 500 in flight per generator (s)", ".1f"),
        ("generator_cpu", "load generator CPU (% of a core, busiest process)", ".0f"),
        ("generator_cores_busy", "generator CPUs busy (%, all processes)", ".0f"),
    ],
    "storm": [
        ("all_admitted_s", "all admitted after (s)", ".2f"),
        ("hs_p50", "handshake p50 (ms)", ",.0f"),
        ("hs_p99", "handshake p99 (ms)", ",.0f"),
        ("watch_p50", "connected stations' Heartbeat p50 meanwhile (ms)", ".1f"),
        ("watch_p99", "connected stations' Heartbeat p99 meanwhile (ms)", ".1f"),
        ("watch_n", "heartbeats measured meanwhile", ",.0f"),
        ("server_cpu_s", "server CPU during the storm (s)", ".2f"),
        ("generator_cpu", "load generator CPU (% of a core, busiest process)", ".0f"),
        ("generator_cores_busy", "generator CPUs busy (%, all processes)", ".0f"),
    ],
}


# counts and the generator's own load: shown for both sides, no ratio
NO_RATIO = {"stored", "heartbeats", "watch_n", "generator_cpu", "generator_cores_busy"}


def median(values: list[Any]) -> Any:
    if not values or not isinstance(values[0], int | float):
        return None
    return statistics.median(values)


def fmt(value: Any, spec: str) -> str:
    if value is None:
        return "—"
    if spec == "s":
        return str(value)
    if isinstance(value, float) and math.isnan(value):
        return "—"
    return format(value, spec)


def render(title: str, header: list[str], rows: list[list[str]], markdown: bool) -> str:
    if markdown:
        lines = [f"**{title}**", "", "| " + " | ".join(header) + " |",
                 "| " + " | ".join("---" for _ in header) + " |"]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(lines)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    out = [title, "  " + "  ".join(h.ljust(w) if i == 0 else h.rjust(w)
                                  for i, (h, w) in enumerate(zip(header, widths, strict=True)))]
    for row in rows:
        out.append("  " + "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                                    for i, (c, w) in enumerate(zip(row, widths, strict=True))))
    return "\n".join(out)


def side_by_side(scenario: str, title: str, results: dict[str, list[dict[str, Any]]],
                 markdown: bool) -> str:
    rows = []
    for key, label, spec in ROWS[scenario]:
        values = {side: median([r[key] for r in results[side] if key in r]) for side in SIDES}
        if key == "stored":  # summed over the rounds
            pairs = [r[key] for r in results["ours"] if key in r]
            values["ours"] = (f"{sum(p[0] for p in pairs):,} / {sum(p[1] for p in pairs):,}"
                              if pairs else None)
        if all(v is None for v in values.values()):
            continue
        ours, ref = values["ours"], values["reference"]
        ratio = "—"
        numbers = isinstance(ours, int | float) and isinstance(ref, int | float)
        if key not in NO_RATIO and numbers and ref:
            ratio = f"{ours / ref:.2f}"
        rows.append([label, fmt(ours, spec), fmt(ref, spec), ratio])
    done = {side: len(results[side]) for side in SIDES}
    title += f"; median of {done['ours']} / {done['reference']} rounds (ours / reference)"
    table = render(title, ["figure", "ours", "reference", "ours / reference"], rows, markdown)
    busiest = max((r.get("generator_cpu", 0) for side in SIDES for r in results[side]),
                  default=0)
    busy = max((r.get("generator_cores_busy", 0) for side in SIDES for r in results[side]),
               default=0)
    if busiest > GENERATOR_LIMIT or busy > CORES_LIMIT:
        table += (f"\n\nWARNING: a load generator process used {busiest:.0f} % of its CPU and "
                  f"its CPUs were {busy:.0f} % busy in some run: the generator side may have "
                  "limited these figures (fewer stations per --generators, or more CPUs)")
    return table


def scale_table(results: dict[int, list[dict[str, Any]]], markdown: bool) -> str:
    rows, base = [], None
    for count, runs in results.items():
        if not runs:
            rows.append([f"{count:,}", "failed", "", "", "", "", "", ""])
            continue
        cpu = median([r["server_cpu_us"] for r in runs])
        base = base or cpu
        rows.append([f"{count:,}", fmt(median([r["msg_per_s"] for r in runs]), ",.0f"),
                     fmt(cpu, ",.0f"), f"{cpu / base:.2f}",
                     fmt(median([r["p50"] for r in runs]), ".1f"),
                     fmt(median([r["p99"] for r in runs]), ".1f"),
                     fmt(median([r["server_cpu_pct"] for r in runs]), ".0f"),
                     fmt(median([r["generator_cpu"] for r in runs]), ".0f")])
    return render("scale — ours, meter at several station counts, every station sending; "
                  "medians (rows stored == acknowledged samples in every run)",
                  ["stations", "MeterValues/s", "server CPU per msg (µs)", "vs first",
                   "p50 (ms)", "p99 (ms)", "server CPU %", "generator CPU %"], rows, markdown)


# ---------------------------------------------------------------- set-up


def provision(url: str, count: int) -> list[tuple[str, str]]:
    """`count` stations in SQL, each its own secret and real bcrypt hash (2 connectors)."""
    secrets = [new_station_secret() for _ in range(count)]
    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:  # bcrypt releases the GIL
        hashes = list(pool.map(
            lambda s: bcrypt.hashpw(s.encode(), bcrypt.gensalt(BCRYPT_ROUNDS)).decode(),
            secrets))
    stations = [(f"PERF-{n:05d}", secret) for n, secret in enumerate(secrets)]
    with psycopg.connect(url, autocommit=True) as conn:
        account = conn.execute("INSERT INTO accounts (name, document) VALUES ('Perf', 'P') "
                               "RETURNING id").fetchone()[0]  # type: ignore[index]
        location = conn.execute(
            "INSERT INTO locations (account_id, name, address, latitude, longitude) "
            "VALUES (%s, 'Perf', 'Lab', 0, 0) RETURNING id",
            (account,)).fetchone()[0]  # type: ignore[index]
        with conn.transaction(), conn.cursor() as cur:
            with cur.copy("COPY stations (id, account_id, location_id, station_code, "
                          "station_secret_hash, connectors) FROM STDIN") as copy:
                for (code, _), digest in zip(stations, hashes, strict=True):
                    copy.write_row((uuid.uuid4(), account, location, code, digest, 2))
            cur.execute("INSERT INTO station_runtime_state (station_id) SELECT id FROM stations")
            cur.execute("INSERT INTO station_connectors (station_id, connector_number) "
                        "SELECT id, n FROM stations, generate_series(1, 2) n")
            cur.execute("INSERT INTO connector_runtime_state (station_id, connector_number) "
                        "SELECT station_id, connector_number FROM station_connectors")
    return stations


def snapshot_tree(work: Path) -> Path:
    """The server's code as it is now, so that edits during a long run change no round."""
    tree = work / "tree"
    for name in ("autimit_csms", "ocpp_schemas"):
        shutil.copytree(ROOT / name, tree / name,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("schema.sql", "timescale_policies.sql"):
        shutil.copy2(ROOT / name, tree / name)
    return tree


def raise_nofile(want: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = max(want, hard) if os.geteuid() == 0 else hard
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, target))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def layout(args: argparse.Namespace) -> tuple[list[int] | None, ...]:
    cpus = sorted(os.sched_getaffinity(0))
    if args.no_pin or len(cpus) < 2 or shutil.which("taskset") is None:
        return None, None, None
    server, generators = cpus[:1], cpus[1:]
    pg = {"generators": generators, "server": server, "any": None}[args.pg_cpus]
    return server, generators, pg


def pin_postgres(ctx: Context) -> None:
    assert ctx.cluster is not None
    pidfile = ctx.cluster.pg.datadir / "postmaster.pid"
    ctx.postmaster = int(pidfile.read_text().split()[0])
    cpus = set(ctx.pg_cpus or sorted(os.sched_getaffinity(0)))
    for pid in [ctx.postmaster, *children(ctx.postmaster)]:
        os.sched_setaffinity(pid, cpus)  # new backends inherit the postmaster's


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def tree_state() -> str:
    try:
        return subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT,
                              capture_output=True, text=True, timeout=10).stdout.strip()
    except OSError:
        return "unknown"


def header(ctx: Context, argv: list[str]) -> str:
    args = ctx.args
    versions = ", ".join(f"{p} {importlib.metadata.version(p)}"
                         for p in ("ocpp", "websockets", "trio-websocket"))
    pin = "not pinned"
    if ctx.server_cpus:
        pin = (f"server (either side) on CPU {ctx.server_cpus[0]}, load generators on CPU "
               f"{','.join(map(str, ctx.generator_cpus or []))}, PostgreSQL on "
               + (f"CPU {','.join(map(str, ctx.pg_cpus))}" if ctx.pg_cpus else "any CPU"))
    return "\n".join([
        f"bench/perf.py — {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC",
        f"machine: {os.cpu_count()} CPUs ({cpu_model()}), Linux {platform.release()}, "
        f"load average {os.getloadavg()[0]:.2f} at start",
        f"command: {' '.join(shlex.quote(a) for a in argv)}",
        f"tree: {tree_state()} (ours runs a copy taken at start); {versions}",
        f"pinning: {pin}",
        "ours: autimit-csms serve, PostgreSQL fsync on, "
        + " ".join(f"{k}={v}" for k, v in OURS_ENV.items())
        + f" (no pacing, no connection limits in a benchmark), log level {args.log_level}",
        "reference: bench/reference_cs.py (ocpp v16 ChargePoint on websockets, asyncio, no "
        f"database, no auth, no pings), log level {args.log_level}",
        "server CPU = utime+stime of the server process (/proc/<pid>/stat, all threads) "
        "over the measured window",
    ])


def interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # SIGTERM cleans up as Ctrl-C does


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def brief(figures: dict[str, Any]) -> str:
    keys = ("msg_per_s", "server_cpu_us", "p50", "p99", "rss_per_conn",
            "all_admitted_s", "hs_p99", "watch_p99", "server_cpu_pct", "generator_cpu")
    text = ", ".join(f"{k}={figures[k]:.1f}" if isinstance(figures[k], float)
                     else f"{k}={figures[k]}" for k in keys if k in figures)
    if "stored" in figures:
        text += ", rows stored {:,} = acknowledged {:,}".format(*figures["stored"])
    return text


# ---------------------------------------------------------------- main


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3, help="A B rounds per scenario [3]")
    p.add_argument("--scenario", default=",".join(SCENARIOS),
                   help="comma-separated, from idle,storm,meter,heartbeat [all]")
    p.add_argument("--sides", default=",".join(SIDES), help="reference,ours [both]")
    p.add_argument("--stations", type=int, default=50, help="meter/heartbeat stations [50]")
    p.add_argument("--seconds", type=float, default=10, help="meter/heartbeat window [10]")
    p.add_argument("--warmup", type=float, default=2, help="before the window [2]")
    p.add_argument("--idle-stations", type=int, default=3000)
    p.add_argument("--idle-seconds", type=float, default=60, help="idle window [60]")
    p.add_argument("--idle-interval", type=float, default=30, help="heartbeat period [30]")
    p.add_argument("--storm-stations", type=int, default=3000)
    p.add_argument("--storm-watchers", type=int, default=20,
                   help="connected stations heartbeating during the storm [20]")
    p.add_argument("--storm-heartbeat", type=float, default=0.5,
                   help="their heartbeat period in seconds [0.5]")
    p.add_argument("--scale", default="",
                   help="station counts for meter on ours, e.g. 50,500,5000 [off]")
    p.add_argument("--concurrency", type=int, default=500,
                   help="handshakes in flight per generator process [500]")
    p.add_argument("--generators", type=int, default=0,
                   help="load generator processes [one per generator CPU; idle/storm: "
                        f"also at least one per {STATIONS_PER_GENERATOR} stations]")
    p.add_argument("--pg-cpus", choices=("generators", "server", "any"), default="generators",
                   help="where PostgreSQL runs [generators: the server's CPU is its own]")
    p.add_argument("--no-pin", action="store_true", help="no CPU pinning at all")
    p.add_argument("--log-level", default="WARNING", help="of both servers [WARNING]")
    p.add_argument("--markdown", action="store_true", help="also print Markdown tables")
    p.add_argument("--keep", action="store_true", help="keep the server and generator logs")
    p.add_argument("--profile", action="store_true",
                   help="run ours under cProfile (slower: for where the time goes, not for "
                        "figures); prints each run's top functions, keeps the .pstats files")
    args = p.parse_args(argv)
    args.keep = args.keep or args.profile
    args.scenarios = [s for s in args.scenario.split(",") if s]
    args.side_list = [s for s in SIDES if s in args.sides.split(",")]
    args.scale_counts = [int(s) for s in args.scale.split(",") if s]
    bad = set(args.scenarios) - set(SCENARIOS)
    if bad or not args.side_list:
        p.error(f"unknown scenario {bad}" if bad else "--sides: reference and/or ours")
    return args


def main(argv: list[str]) -> int:
    args = parse(argv[1:])
    server_cpus, generator_cpus, pg_cpus = layout(args)
    need = max([args.stations if {"meter", "heartbeat"} & set(args.scenarios) else 0,
                args.idle_stations if "idle" in args.scenarios else 0,
                args.storm_stations + args.storm_watchers if "storm" in args.scenarios else 0,
                *args.scale_counts])
    limit = raise_nofile(need + 1000)
    most = max(args.idle_stations if "idle" in args.scenarios else 0,
               args.storm_stations + args.storm_watchers if "storm" in args.scenarios else 0,
               *args.scale_counts)
    if most + FD_MARGIN > limit:
        log(f"a server process may open {limit:,} files here (hard RLIMIT_NOFILE; raise it with "
            f"`ulimit -Hn` or LimitNOFILE as root): at most {limit - FD_MARGIN:,} stations "
            f"connected at once, not {most:,}")
        return 2
    work = Path(tempfile.mkdtemp(prefix="autimit-perf-"))
    ctx = Context(args, work, server_cpus, generator_cpus, pg_cpus)
    ctx.tree = snapshot_tree(work)
    signal.signal(signal.SIGTERM, interrupt)
    head = header(ctx, [sys.executable.replace(str(ROOT) + "/", ""), *argv])
    print(head + "\n", flush=True)
    tables: list[Callable[[bool], str]] = []  # each renders plain or Markdown
    failed: list[str] = []
    try:
        if "ours" in args.side_list:
            t = time.time()
            ctx.cluster = Cluster()
            ctx.stations = provision(ctx.cluster.url, need)
            pin_postgres(ctx)
            log(f"PostgreSQL (fsync on) ready, {need:,} stations provisioned in "
                f"{time.time() - t:.1f} s")
        else:
            ctx.stations = [(f"PERF-{n:05d}", "x" * 24) for n in range(need)]
        if generator_cpus:
            os.sched_setaffinity(0, set(generator_cpus))
        for scenario in args.scenarios:
            results: dict[str, list[dict[str, Any]]] = {side: [] for side in SIDES}
            for round_ in range(1, args.rounds + 1):
                for side in args.side_list:
                    try:
                        if scenario == "idle":
                            figures = run_idle(ctx, side)
                        elif scenario == "storm":
                            figures = run_storm(ctx, side)
                        else:
                            figures = run_steady(ctx, side, scenario, args.stations)
                    except RunFailed as exc:
                        failed.append(f"{scenario} round {round_} {side}: {exc}")
                        log(f"{scenario} round {round_} {side}: FAILED: {exc}")
                        continue
                    results[side].append(figures)
                    log(f"{scenario} round {round_}/{args.rounds} {side}: {brief(figures)}")
            titles = {
                "meter": f"meter — {args.stations} stations, MeterValues of 5 sampled values "
                         f"each awaited, {args.seconds:g} s window after {args.warmup:g} s",
                "heartbeat": f"heartbeat — {args.stations} stations, Heartbeat each awaited, "
                             f"{args.seconds:g} s window after {args.warmup:g} s",
                "idle": f"idle — {args.idle_stations:,} stations connected and booted, a "
                        f"Heartbeat every {args.idle_interval:g} s each (random phase), "
                        f"{args.idle_seconds:g} s window",
                "storm": f"storm — cold start, {args.storm_stations:,} stations connect at "
                         f"once ({args.concurrency} handshakes in flight per generator), "
                         f"{args.storm_watchers} connected stations heartbeat every "
                         f"{args.storm_heartbeat:g} s",
            }
            tables.append(lambda md, s=scenario, t=titles[scenario], r=results:
                          side_by_side(s, t, r, md))
            print(tables[-1](False) + "\n", flush=True)
        if args.scale_counts:
            scale: dict[int, list[dict[str, Any]]] = {}
            for count in args.scale_counts:
                scale[count] = []
                for round_ in range(1, args.rounds + 1):
                    try:
                        figures = run_steady(ctx, "ours", "meter", count)
                    except RunFailed as exc:
                        failed.append(f"scale {count} round {round_}: {exc}")
                        log(f"scale {count} round {round_}: FAILED: {exc}")
                        continue
                    scale[count].append(figures)
                    log(f"scale {count} round {round_}/{args.rounds} ours: {brief(figures)}")
            tables.append(lambda md: scale_table(scale, md))
            print(tables[-1](False) + "\n", flush=True)
        if args.markdown:
            lines = "\n".join(f"- {line}" for line in head.splitlines())
            print("\n\n".join(["Markdown:", lines, *(render(True) for render in tables)])
                  + "\n", flush=True)
    except KeyboardInterrupt:
        log("interrupted")
        failed.append("interrupted")
    finally:
        for proc in list(ctx.live):
            stop_process(proc, grace=10)
        if ctx.cluster is not None:
            ctx.cluster.stop()
        if args.keep:
            log(f"server and generator logs kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    if failed:
        print("FAILED runs:\n  " + "\n  ".join(failed), flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
