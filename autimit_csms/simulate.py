"""`autimit-csms simulate`: the command line of the charge-point simulator (issue 10).

Owns the flags, where the stations come from (a file, or provisioned through the REST API
with the admin token), running the simulation under Trio with Ctrl-C as a graceful stop,
and the summary table. The simulator itself is `autimit_csms.simulator`; it never prints
the admin token, a station secret or an id tag.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import signal
import ssl
import sys
from pathlib import Path
from typing import Final

import httpx
import trio

from .simulator import SCENARIOS, Options, Simulation, StationSpec, Tally
from .simulator.provision import (
    DEFAULT_OCPP_URL,
    ProvisioningError,
    RestApi,
    read_station_file,
    write_station_file,
)

log = logging.getLogger("autimit_csms.simulate")

ID_TAG: Final = re.compile(r"[\x21-\x7e]{1,20}")  # OCPP CiString20, printable, no spaces
CSMS_VIEW_STATIONS: Final = 10
EXAMPLES: Final = """\
examples:
  # against `autimit-csms dev`: provision a station, charge 30 charger-minutes in 30 s
  autimit-csms simulate --admin-token TOKEN --speed 60
  # 10 stations of each scenario, their secrets kept for the next run
  autimit-csms simulate --admin-token TOKEN --scenario boot --scenario session \\
      --scenario offline --stations 10 --speed 60 --save-stations sim.jsonl
  # stations you provisioned yourself (lines `stationCode,secret`); their id tag must exist
  autimit-csms simulate --stations-file stations.csv --ocpp-url ws://host:9000/ocpp/1.6
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Simulated OCPP 1.6 charge points against a running CSMS: they boot, send "
        "heartbeats, charge (Authorize, StartTransaction, MeterValues, StopTransaction), "
        "queue and replay offline, and answer the central system's commands. Durations "
        "and intervals are charger seconds; --speed N makes N of them pass per second.")
    parser.epilog = EXAMPLES
    parser.formatter_class = argparse.RawDescriptionHelpFormatter

    what = parser.add_argument_group("what to run")
    what.add_argument("--scenario", action="append", choices=sorted(SCENARIOS),
                      help="boot (boot, heartbeats, answer commands for --duration), session "
                           "(a full charging session), offline (link lost mid-session, "
                           "replay); repeat to run several side by side [default session]")
    what.add_argument("--stations", type=int, metavar="N",
                      help="stations per scenario [default 1, or all of --stations-file]")
    what.add_argument("--sessions", type=int, default=1, metavar="N",
                      help="session scenario: sessions per station, one after the other "
                           "[default 1]")
    what.add_argument("--id-tag", default="SIMTAG",
                      help="id tag the simulated drivers use; with several stations each "
                           "gets TAG-<n> [default SIMTAG]")

    where = parser.add_argument_group("stations and the CSMS")
    where.add_argument("--stations-file", type=Path, metavar="PATH",
                       help="stations to use: lines `stationCode,secret`, or JSON lines "
                            "with stationCode, stationSecret[, ocppConnectionUrl]")
    where.add_argument("--api-url", default="http://127.0.0.1:8080",
                       help="the CSMS REST API [default http://127.0.0.1:8080]")
    where.add_argument("--admin-token", default=os.environ.get("AUTIMIT_ADMIN_TOKEN"),
                       help="admin token: provision stations and register the id tags "
                            "[env AUTIMIT_ADMIN_TOKEN]")
    where.add_argument("--ocpp-url", metavar="URL",
                       help="OCPP endpoint without the station code, e.g. "
                            "ws://127.0.0.1:9000/ocpp/1.6 [default: the URL the API gives, "
                            f"or {DEFAULT_OCPP_URL} for --stations-file]")
    where.add_argument("--account-id", help="provision into this account [default: a new one]")
    where.add_argument("--location-id",
                       help="provision into this location [default: a new one]")
    where.add_argument("--code-prefix", default="SIM",
                       help="provisioned codes are PREFIX-<run>-<n> [default SIM]")
    where.add_argument("--save-stations", type=Path, metavar="PATH",
                       help="write the provisioned codes and one-time secrets here (mode "
                            "600), for a later --stations-file")
    where.add_argument("--ca-file", type=Path, metavar="PEM",
                       help="also trust this CA for wss:// and https:// (a private or "
                            "self-signed certificate of the CSMS)")
    where.add_argument("--connectors", type=int, default=2,
                       help="connectors per station [default 2]")

    timing = parser.add_argument_group("timing (charger seconds unless said)")
    timing.add_argument("--duration", type=float, default=300.0,
                        help="boot scenario: how long to stay connected [default 300]")
    timing.add_argument("--charge-duration", type=float, default=1800.0,
                        help="length of a charging session [default 1800]")
    timing.add_argument("--pause", type=float, default=60.0,
                        help="between two sessions of a station [default 60]")
    timing.add_argument("--meter-interval", type=int, default=60,
                        help="MeterValueSampleInterval [default 60]")
    timing.add_argument("--heartbeat-interval", type=int,
                        help="[default: what the CSMS says in BootNotification.conf]")
    timing.add_argument("--reconnect-delay", type=float, default=30.0,
                        help="offline scenario: offline this long after the session "
                             "stopped [default 30]")
    timing.add_argument("--speed", type=float, default=1.0,
                        help="charger seconds per real second; meters follow, timestamps "
                             "stay real [default 1]")
    timing.add_argument("--power-kw", type=float, default=11.0,
                        help="maximum charging power [default 11]")
    timing.add_argument("--call-timeout", type=float, default=30.0,
                        help="real seconds to wait for an answer [default 30]")
    timing.add_argument("--progress-every", type=float, default=5.0,
                        help="real seconds between progress lines, 0 for none [default 5]")
    timing.add_argument("--seed", type=int, help="random seed, for repeatable meter figures")


def options_from(args: argparse.Namespace) -> Options:
    checks = [(args.speed > 0, "--speed must be > 0"),
              (args.stations is None or args.stations >= 1, "--stations must be >= 1"),
              (1 <= args.connectors <= 64, "--connectors must be 1..64"),
              (args.sessions >= 1, "--sessions must be >= 1"),
              (args.power_kw > 0, "--power-kw must be > 0"),
              (args.call_timeout > 0, "--call-timeout must be > 0"),
              (min(args.duration, args.charge_duration, args.pause,
                   args.reconnect_delay, args.meter_interval) >= 0,
               "durations and intervals must be >= 0"),
              (args.heartbeat_interval is None or args.heartbeat_interval >= 0,
               "--heartbeat-interval must be >= 0"),
              (ID_TAG.fullmatch(args.id_tag) is not None,
               "--id-tag must be 1-20 printable characters without spaces")]
    for ok, message in checks:
        if not ok:
            raise ValueError(message)
    return Options(
        duration=args.duration, charge_duration=args.charge_duration, sessions=args.sessions,
        pause=args.pause, reconnect_delay=args.reconnect_delay, connectors=args.connectors,
        meter_interval=args.meter_interval, heartbeat_interval=args.heartbeat_interval,
        power_kw=args.power_kw, speed=args.speed, call_timeout=args.call_timeout,
        progress_every=args.progress_every, seed=args.seed,
        ca_file=None if args.ca_file is None else str(args.ca_file))


def id_tags(base: str, count: int) -> list[str]:
    """One tag per station: the CSMS answers ConcurrentTx to a tag already charging
    elsewhere in its account (OCPP 1.6 §7.22)."""
    if count == 1:
        return [base]
    tags = [f"{base}-{n}" for n in range(1, count + 1)]
    if len(tags[-1]) > 20:
        raise ValueError(f"--id-tag is too long for {count} stations (TAG-{count} must fit "
                         "20 characters)")
    return tags


def main(args: argparse.Namespace) -> int:
    options = options_from(args)
    try:
        return trio.run(_main, args, options)
    except ProvisioningError as err:
        print(f"autimit-csms simulate: {err}", file=sys.stderr)
        return 1


async def _main(args: argparse.Namespace, options: Options) -> int:
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request is noise here
    scenarios = args.scenario or ["session"]
    headers = {"Authorization": f"Bearer {args.admin_token}"} if args.admin_token else {}
    verify = True if options.ca_file is None else ssl.create_default_context(
        cafile=options.ca_file)
    async with httpx.AsyncClient(base_url=args.api_url, headers=headers, verify=verify,
                                 timeout=30) as client:
        rest = RestApi(client) if args.admin_token else None
        specs = await _stations(args, rest, len(scenarios))
        per_scenario = len(specs) // len(scenarios)
        tags = id_tags(args.id_tag, len(specs))
        if rest is not None:
            for spec, tag in zip(specs, tags, strict=True):
                assert spec.account_id is not None
                await rest.ensure_id_tag(spec.account_id, tag)
        else:
            log.info("no admin token: the CSMS must already know the id tags")
        simulation = Simulation(options, [
            (spec, scenarios[index // per_scenario], tag)
            for index, (spec, tag) in enumerate(zip(specs, tags, strict=True))])
        csms_view: list[str] = []

        async def look_in_the_api() -> None:
            if rest is None:
                return
            # the first stations of every scenario, not ten of the first scenario
            shown = sorted(range(len(specs)), key=lambda index: index % per_scenario)
            for spec in [specs[index] for index in shown[:CSMS_VIEW_STATIONS]]:
                try:
                    csms_view.append(await rest.csms_view(spec))
                except ProvisioningError as err:
                    csms_view.append(f"{spec.code}: {err}")

        log.info("simulating %d station(s): %s", len(specs), ", ".join(
            f"{per_scenario} x {scenario}" for scenario in scenarios))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_stop_on_signal, simulation, nursery.cancel_scope)
            await simulation.run(look_in_the_api)
            nursery.cancel_scope.cancel()
    print(summary(simulation, csms_view, api_url=args.api_url), flush=True)
    failed = any(run.tally.failures or not run.tally.connected for run in simulation.runs)
    return 1 if failed else 0


async def _stations(args: argparse.Namespace, rest: RestApi | None,
                    scenarios: int) -> list[StationSpec]:
    if args.stations_file is not None:
        specs = read_station_file(args.stations_file, args.ocpp_url)
        wanted = (args.stations or len(specs) // scenarios) * scenarios
        if wanted == 0 or wanted > len(specs):
            raise ValueError(f"{args.stations_file} has {len(specs)} station(s); "
                             f"{scenarios} scenario(s) x {args.stations or 1} need more")
        specs = specs[:wanted]
        return await rest.identify(specs) if rest is not None else specs
    if rest is None:
        raise ValueError("give --stations-file, or --admin-token (or AUTIMIT_ADMIN_TOKEN) to "
                         "provision stations through the REST API")
    count = (args.stations or 1) * scenarios
    log.info("provisioning %d station(s) through %s", count, args.api_url)
    specs = await rest.provision(count, connectors=args.connectors, prefix=args.code_prefix,
                                 account_id=args.account_id, location_id=args.location_id,
                                 ocpp_url=args.ocpp_url)
    if args.save_stations is not None:
        write_station_file(args.save_stations, specs)
        log.info("codes and secrets written to %s", args.save_stations)
    return specs


async def _stop_on_signal(simulation: Simulation, everything: trio.CancelScope) -> None:
    """First Ctrl-C (or SIGTERM): end the scenarios gracefully; the second: quit now."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        stopping = False
        async for _ in signals:
            if stopping:
                everything.cancel()
                return
            stopping = True
            log.info("stopping: ending sessions and disconnecting (again to quit at once)")
            simulation.stop()


COLUMNS: Final = ("scenario", "stations", "connected", "CALLs", "answered", "CALLERRORs",
                  "timeouts", "commands", "sessions", "energy kWh", "replayed", "failures")


def _row(name: str, stations: int, connected: int, tally: Tally) -> list[str]:
    return [name, str(stations), str(connected), str(tally.calls_sent), str(tally.answered),
            str(tally.call_errors), str(tally.timeouts), str(tally.commands),
            str(tally.sessions), f"{tally.energy_wh / 1000:.2f}", str(tally.replayed),
            str(len(tally.failures))]


def summary(simulation: Simulation, csms_view: list[str], *, api_url: str) -> str:
    """The table printed at the end: one row per scenario, and a total."""
    rows = []
    total, total_stations, total_connected = Tally(), 0, 0
    for name, (stations, connected, tally) in simulation.tallies().items():
        rows.append(_row(name, stations, connected, tally))
        total.add(tally)
        total_stations += stations
        total_connected += connected
    if len(rows) > 1:
        rows.append(_row("total", total_stations, total_connected, total))
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(COLUMNS)]
    lines = ["", "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                           for i, (c, w) in enumerate(zip(COLUMNS, widths, strict=True)))]
    lines += ["  ".join(v.ljust(w) if i == 0 else v.rjust(w)
                        for i, (v, w) in enumerate(zip(row, widths, strict=True)))
              for row in rows]
    problems = [(run.spec.code, failure) for run in simulation.runs
                for failure in run.tally.failures]
    if problems:
        lines += ["", "failures:"] + [f"  {code}: {failure}" for code, failure in problems[:20]]
        if len(problems) > 20:
            lines.append(f"  ... and {len(problems) - 20} more")
    if csms_view:
        lines += ["", f"in the CSMS, read back through its REST API ({api_url}):"]
        lines += [f"  {line}" for line in csms_view]
    failed = sum(bool(run.tally.failures) or not run.tally.connected for run in simulation.runs)
    lines += ["", f"result: {'FAILED' if failed else 'OK'} "
                  f"({failed} of {len(simulation.runs)} stations had failures)"]
    return "\n".join(lines)
