"""`gatescan collector`: receive, validate, store and acknowledge gate events (no dashboard)."""

from __future__ import annotations

import argparse
import sys

from gatescan.options import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    Commands,
    MqttLoginError,
    add_broker_options,
    add_config_option,
    add_db_option,
    collector_login,
    stop_on_signals,
)


def add_parser(commands: Commands[argparse.ArgumentParser]) -> None:
    collector = commands.add_parser("collector", help="store gate events in a database")
    add_broker_options(collector)
    add_db_option(collector)
    add_config_option(collector)
    collector.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from server.app import ServerOptions, build_server

    try:
        login = collector_login(args)
    except MqttLoginError as exc:
        print(f"gatescan collector: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    stop = stop_on_signals()
    server = build_server(ServerOptions(db_url=args.db, collector=login))
    return 0 if server.run(stop) else EXIT_FAILED
