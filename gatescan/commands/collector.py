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
    add_gate_limit_options,
    collector_login,
    stop_on_signals,
)


def add_parser(commands: Commands[argparse.ArgumentParser]) -> None:
    collector = commands.add_parser("collector", help="store gate events in a database")
    add_broker_options(collector)
    add_db_option(collector)
    add_config_option(collector)
    add_gate_limit_options(collector)
    collector.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from server.app import ServerOptions, build_server
    from server.collector.limits import GateLimits

    try:
        login = collector_login(args)
    except MqttLoginError as exc:
        print(f"gatescan collector: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    stop = stop_on_signals()
    limits = GateLimits(args.gate_max_messages_per_second, args.gate_max_bytes_per_minute)
    server = build_server(ServerOptions(db_url=args.db, collector=login, gate_limits=limits))
    return 0 if server.run(stop) else EXIT_FAILED
