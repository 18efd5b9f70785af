"""`autimit-csms`: serve, db apply|upgrade, dev, simulate. Parses settings, sets up
logging (autimit_csms.logs), runs Trio."""

from __future__ import annotations

import argparse
import os
import sys

import trio

from . import logs
from . import settings as settings_mod
from .db import DatabaseUnavailable


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="autimit-csms",
        description="Autimit charging-station management server (OCPP-J 1.6 + REST API)")
    add_log_arguments(parser, top=True)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the OCPP listener and the REST API")
    settings_mod.add_arguments(serve)

    db = commands.add_parser("db", help="database administration")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    apply = db_commands.add_parser("apply", help="apply schema.sql (and timescale_policies.sql)")
    settings_mod.add_arguments(apply, only={"database_url"})
    apply.add_argument("--timescale", action="store_true",
                       help="also apply timescale_policies.sql (TimescaleDB)")
    upgrade = db_commands.add_parser(
        "upgrade", help="bring a database made by an earlier schema.sql to this version")
    settings_mod.add_arguments(upgrade, only={"database_url"})

    dev = commands.add_parser(
        "dev", help="private PostgreSQL + schema + demo station, then serve (Ctrl-C stops)")
    settings_mod.add_arguments(dev, only={"ocpp_listen", "api_listen", "public_ocpp_url",
                                          "heartbeat_interval"})
    dev.add_argument("--data-dir", default=".autimit-dev",
                     help="folder of the private PostgreSQL cluster [default .autimit-dev]")

    from . import simulate

    simulate.add_arguments(commands.add_parser(
        "simulate", help="charge-point simulator: N stations against a running CSMS"))
    for subparser in (*commands.choices.values(), apply, upgrade):
        add_log_arguments(subparser, top=False)
    return parser


def add_log_arguments(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """--log-level and --log-format, accepted before or after the subcommand (the
    later one wins); each also reads AUTIMIT_LOG_LEVEL / AUTIMIT_LOG_FORMAT."""
    level = os.environ.get("AUTIMIT_LOG_LEVEL", "INFO").upper()
    form = os.environ.get("AUTIMIT_LOG_FORMAT", "text").lower()
    parser.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                        type=str.upper, default=level if top else argparse.SUPPRESS,
                        help=f"[env AUTIMIT_LOG_LEVEL; default {level}]")
    parser.add_argument("--log-format", choices=["text", "json"], type=str.lower,
                        default=form if top else argparse.SUPPRESS,
                        help=f"text for people, json (one object a line) for a log pipeline "
                             f"[env AUTIMIT_LOG_FORMAT; default {form}]")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logs.configure(args.log_level, args.log_format)
    try:
        if args.command == "serve":
            from .server import serve

            settings = settings_mod.from_args(args)
            if settings.workers > 1:
                from .workers import supervise

                return supervise(settings, args.log_level, args.log_format)
            trio.run(serve, settings)
        elif args.command == "db":
            from .db import schema

            if not args.database_url:
                raise ValueError("--database-url (or AUTIMIT_DATABASE_URL) is required")
            if args.db_command == "upgrade":
                for line in schema.upgrade(args.database_url):
                    print(line)
                return 0
            for notice in schema.apply(args.database_url, timescale=args.timescale):
                if not notice.startswith("NOTICE"):
                    print(notice, file=sys.stderr)
            print("schema applied" + (" with TimescaleDB policies" if args.timescale else ""))
        elif args.command == "dev":
            from .dev import run_dev

            run_dev(args)
        elif args.command == "simulate":
            from . import simulate

            return simulate.main(args)
    except (ValueError, DatabaseUnavailable) as err:
        print(f"autimit-csms: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
