"""The `gatescan` command: one entry point, a subcommand per process or task."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from gatescan.commands import journal as journal_command
from gatescan.commands.server import add_web_commands
from protocol.release import __version__

EXIT_CANNOT_START = 1
EXIT_CONFIG = 2


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = args.log_level or getattr(args, "default_log_level", "info")
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )
    if not hasattr(args, "run"):
        parser.print_help()
        return EXIT_CONFIG
    return int(args.run(args))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gatescan", description=__doc__)
    parser.add_argument("--version", action="version", version=f"gatescan {__version__}")
    parser.add_argument(
        "--log-level",
        choices=["debug", "info", "warning", "error"],
        help="default: info (warning for the demo, whose screen shows what happens)",
    )
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    _add_agent(commands)
    _add_collector(commands)
    _add_decode(commands)
    _add_entries(commands)
    _add_demo(commands)
    journal_command.add_parser(commands)
    add_web_commands(commands)
    return parser


def _add_agent(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    agent = commands.add_parser("agent", help="run a gate: camera, decoder, indicator, uplink")
    agent.add_argument("--config", type=Path, help="gate config file (.toml, .yaml)")
    agent.add_argument(
        "--source",
        help="picamera2 | /dev/video0 | 0 | rtsp://... | FILE | replay:DIR (overrides the config)",
    )
    agent.add_argument("--broker", help="mqtt://host:port or mqtts://host:port")
    agent.add_argument("--device-id", help="this gate's id (a topic level and broker user)")
    agent.add_argument("--data-dir", type=Path, help="where the journal lives")
    agent.set_defaults(run=run_agent)


def _add_collector(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    collector = commands.add_parser("collector", help="store gate events in a database")
    collector.add_argument("--broker", default="mqtt://localhost:1883")
    collector.add_argument(
        "--db", default="sqlite:///gatescan.db", help="SQLAlchemy URL or a SQLite file path"
    )
    collector.add_argument("--client-id", default="gatescan-collector")
    collector.add_argument(
        "--username",
        default="collector",
        help="broker user, the ACL's `user collector` (default: collector; '' logs in anonymously);"
        " the password comes from $GATESCAN_MQTT_PASSWORD or the systemd credential mqtt_password",
    )
    collector.set_defaults(run=run_collector)


def _add_decode(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    decode = commands.add_parser("decode", help="decode QR codes in image files (JSON lines)")
    decode.add_argument("images", nargs="+", metavar="IMAGE")
    decode.add_argument(
        "--backend",
        default="auto",
        choices=["auto", "ensemble", "zxing", "pyzbar"],
        help="decoder (default auto: the ensemble when zxing-cpp is installed, else pyzbar)",
    )
    decode.set_defaults(run=run_decode)


def _add_entries(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    entries = commands.add_parser("entries", help="work with stored entries")
    actions = entries.add_subparsers(title="actions", metavar="ACTION", required=True)
    export = actions.add_parser("export", help="write stored entries as JSON lines or CSV")
    export.add_argument("--db", required=True, help="SQLAlchemy URL or a SQLite file path")
    export.add_argument("--format", default="jsonl", choices=["jsonl", "csv"])
    export.add_argument("--output", "-o", type=Path, help="file to write (default: stdout)")
    export.add_argument(
        "--timezone",
        metavar="ZONE",
        help="write times in this IANA zone with its offset, e.g. Asia/Ho_Chi_Minh"
        " (default: UTC, written with Z)",
    )
    export.set_defaults(run=run_export)


def _add_demo(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = commands.add_parser("demo", help="a simulated gate, broker and collector, here")
    demo.add_argument("--data-dir", type=Path, default=Path("demo-data"))
    demo.add_argument(
        "--seconds",
        type=float,
        default=0.0,
        help="stop after this long (default: run until Ctrl-C)",
    )
    demo.set_defaults(run=run_demo, default_log_level="warning")


def stop_on_signals() -> threading.Event:
    """An event set by SIGINT or SIGTERM, so every process shuts down the same clean way."""
    stop = threading.Event()

    def handler(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    return stop


def startup_errors() -> tuple[type[BaseException], ...]:
    """What can stop a gate from starting: hardware, files, libraries. Each says what is wrong."""
    from gpiozero import GPIOZeroError

    from device.camera.source import CameraError
    from device.decode.base import DecoderError
    from device.journal.journal import JournalError

    return (CameraError, JournalError, DecoderError, GPIOZeroError, OSError)


def run_agent(args: argparse.Namespace) -> int:
    from device.app import build_agent
    from firmware_config.errors import ConfigError
    from firmware_config.loader import ConfigOverrides, load_config

    overrides = ConfigOverrides(
        source=args.source, broker=args.broker, device_id=args.device_id, data_dir=args.data_dir
    )
    try:
        config = load_config(args.config, overrides=overrides)
    except ConfigError as exc:
        print(f"gatescan agent: bad configuration\n{exc}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        agent = build_agent(config)
    except startup_errors() as exc:
        # systemd restarts the unit; the technician reads one line, not a traceback.
        print(f"gatescan agent: cannot start: {exc}", file=sys.stderr)
        return EXIT_CANNOT_START
    agent.run(stop_on_signals())
    return 0


def run_collector(args: argparse.Namespace) -> int:
    from gatescan.options import MqttLoginError, collector_login
    from server.collector.service import Collector
    from server.store.database import Store

    try:
        username, password = collector_login(args.broker, args.username)
    except MqttLoginError as exc:
        print(f"gatescan collector: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    collector = Collector(
        broker_url=args.broker,
        store=Store(args.db),
        client_id=args.client_id,
        username=username,
        password=password,
    )
    collector.run_forever(stop_on_signals())
    return 0


def run_decode(args: argparse.Namespace) -> int:
    from gatescan.commands.decode import run

    return run(args.images, args.backend, sys.stdout)


def run_export(args: argparse.Namespace) -> int:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    from server.store.database import Store
    from server.store.entry_export import export_entries

    missing = missing_sqlite_file(args.db)
    if missing is not None:
        print(f"gatescan entries export: no database at {missing}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        tz = ZoneInfo(args.timezone) if args.timezone else None
    except (ZoneInfoNotFoundError, ValueError):
        print(f"gatescan entries export: unknown time zone {args.timezone!r}", file=sys.stderr)
        return EXIT_CONFIG
    store = Store(args.db)
    try:
        if args.output is None:
            export_entries(store, args.format, sys.stdout.buffer, tz=tz)
            sys.stdout.flush()
            return 0
        with args.output.open("wb") as out:
            count = export_entries(store, args.format, out, tz=tz)
    except BrokenPipeError:
        # `| head` closed the pipe: not an error. Point stdout at devnull so exit stays quiet.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    finally:
        store.close()
    print(f"wrote {count} entries to {args.output}", file=sys.stderr)
    return 0


def missing_sqlite_file(db: str) -> Path | None:
    """A SQLite database named by a URL or path that does not exist (a typo, not a new site)."""
    if "://" in db and not db.startswith("sqlite:///"):
        return None
    path = Path(db.removeprefix("sqlite:///")) if db.startswith("sqlite:///") else Path(db)
    return None if str(path) in ("", ":memory:") or path.exists() else path


def run_demo(args: argparse.Namespace) -> int:
    from gatescan.commands.demo import run_demo as demo

    return demo(args.data_dir, seconds=args.seconds, stop=stop_on_signals())


if __name__ == "__main__":
    sys.exit(main())
