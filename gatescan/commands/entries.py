"""`gatescan entries export`: the stored entries as JSON Lines or CSV, in UTC or a given zone."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from gatescan.options import (
    EXIT_BAD_INPUT,
    Commands,
    add_config_option,
    no_database,
)


def add_parser(commands: Commands[argparse.ArgumentParser]) -> None:
    entries = commands.add_parser("entries", help="work with stored entries")
    actions = entries.add_subparsers(title="actions", metavar="ACTION", required=True)
    export = actions.add_parser("export", help="write stored entries as JSON lines or CSV")
    # --db, or --config's db: required, but said at run time (argparse would refuse --config
    # alone before the file is read).
    export.add_argument("--db", help="SQLAlchemy URL or a SQLite file path (or --config)")
    add_config_option(export)
    export.add_argument("--format", default="jsonl", choices=["jsonl", "csv"])
    export.add_argument("--output", "-o", type=Path, help="file to write (default: stdout)")
    export.add_argument(
        "--timezone",
        metavar="ZONE",
        help="write times in this IANA zone with its offset, e.g. Asia/Ho_Chi_Minh"
        " (default: UTC, written with Z)",
    )
    export.set_defaults(run=run_export)


def run_export(args: argparse.Namespace) -> int:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    from server.store.database import Store
    from server.store.entry_export import export_entries

    if not args.db:
        print("gatescan entries export: give --db, or --config server.toml", file=sys.stderr)
        return EXIT_BAD_INPUT
    if no_database(args.db, "gatescan entries export"):
        return EXIT_BAD_INPUT
    try:
        tz = ZoneInfo(args.timezone) if args.timezone else None
    except (ZoneInfoNotFoundError, ValueError):
        print(f"gatescan entries export: unknown time zone {args.timezone!r}", file=sys.stderr)
        return EXIT_BAD_INPUT
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
