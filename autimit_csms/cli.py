"""`autimit-csms`: serve, db apply, dev. Parses settings, sets up logging, runs Trio."""

from __future__ import annotations

import argparse
import logging
import sys

import trio

from . import settings as settings_mod
from .db import DatabaseUnavailable


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="autimit-csms",
        description="Autimit charging-station management server (OCPP-J 1.6 + REST API)")
    parser.add_argument("--log-level", default="INFO",
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the OCPP listener and the REST API")
    settings_mod.add_arguments(serve)

    db = commands.add_parser("db", help="database administration")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    apply = db_commands.add_parser("apply", help="apply schema.sql (and timescale_policies.sql)")
    settings_mod.add_arguments(apply, only={"database_url"})
    apply.add_argument("--timescale", action="store_true",
                       help="also apply timescale_policies.sql (TimescaleDB)")

    dev = commands.add_parser(
        "dev", help="private PostgreSQL + schema + demo station, then serve (Ctrl-C stops)")
    settings_mod.add_arguments(dev, only={"ocpp_listen", "api_listen", "public_ocpp_url",
                                          "heartbeat_interval"})
    dev.add_argument("--data-dir", default=".autimit-dev",
                     help="folder of the private PostgreSQL cluster [default .autimit-dev]")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "serve":
            from .server import serve

            trio.run(serve, settings_mod.from_args(args))
        elif args.command == "db":
            from .db.schema import apply

            if not args.database_url:
                raise ValueError("--database-url (or AUTIMIT_DATABASE_URL) is required")
            for notice in apply(args.database_url, timescale=args.timescale):
                if not notice.startswith("NOTICE"):
                    print(notice, file=sys.stderr)
            print("schema applied" + (" with TimescaleDB policies" if args.timescale else ""))
        elif args.command == "dev":
            from .dev import run_dev

            run_dev(args)
    except (ValueError, DatabaseUnavailable) as err:
        print(f"autimit-csms: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
