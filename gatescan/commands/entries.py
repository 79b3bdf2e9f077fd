"""`gatescan entries export`: the stored entries as JSON Lines or CSV, in UTC or a given zone.

`gatescan person export|erase ID`: one person's own data (a CCCD number or a pass id; or
`--phone N --site S`, a self check-in's phone, found by the subject the check-in page made of it),
as the personal data protection law gives them the right to see and to have erased
(server/store/person_data.py; docs/operations.md, "A person's own data"). Admin commands, each
audited (an erasure's audit row names the ID's SHA-256, never the ID).

Exit codes: 0 done; 2 bad input (an ID of neither form, no database, erase not confirmed); 3
erase of an ID nothing names (unknown, or erased before with nothing new since), or a --site
with no self check-ins.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from gatescan.options import (
    EXIT_BAD_INPUT,
    EXIT_NO_SUCH,
    EXIT_OK,
    Commands,
    add_config_option,
    no_database,
)

if TYPE_CHECKING:
    from server.store.database import Store


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
    add_person_parser(commands)


def add_person_parser(commands: Commands[argparse.ArgumentParser]) -> None:
    person = commands.add_parser(
        "person", help="one person's own data: export it, or erase it (admin, audited)"
    )
    actions = person.add_subparsers(title="actions", metavar="ACTION", required=True)
    for name, help, run in (
        ("export", "write as JSON what is kept about a CCCD number or pass id", run_person_export),
        ("erase", "erase their entries, dead letters and list entries", run_person_erase),
    ):
        parser = actions.add_parser(name, help=help, description=help)
        parser.add_argument(
            "id", metavar="ID", nargs="?", help="a 12-digit CCCD number or a 16-hex pass id"
        )
        parser.add_argument(
            "--phone", help="instead of an ID: the phone a self check-in gave (with --site)"
        )
        parser.add_argument("--site", help="the site of those self check-ins (with --phone)")
        parser.add_argument("--db", help="SQLAlchemy URL or a SQLite file path (or --config)")
        add_config_option(parser)
        if name == "export":
            parser.add_argument("--output", "-o", type=Path, help="file (default: stdout)")
        else:
            parser.add_argument("--yes", action="store_true", help="do not ask to confirm")
        parser.set_defaults(run=run, command=parser.prog)


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


def _on_store(args: argparse.Namespace, work: object) -> int:
    from gatescan.commands.gates import run_on_store

    if not args.db:
        print(f"{args.command}: give --db, or --config server.toml", file=sys.stderr)
        return EXIT_BAD_INPUT
    return run_on_store(args, work)


def _checked_id(args: argparse.Namespace, store: Store) -> str:
    from gatescan.commands.gates import CommandStop
    from server.store.person_data import person_subject

    if (args.id is None) == (args.phone is None):
        raise CommandStop(EXIT_BAD_INPUT, "give an ID, or --phone NUMBER --site S (not both)")
    if (args.site is None) != (args.phone is None):
        raise CommandStop(EXIT_BAD_INPUT, "--phone and --site go together")
    if args.phone is not None:
        return _phone_subject(args, store)
    try:
        return person_subject(args.id)[0]
    except ValueError:
        raise CommandStop(
            EXIT_BAD_INPUT, "the ID is neither a 12-digit CCCD number nor a 16-hex-digit pass id"
        ) from None


def _phone_subject(args: argparse.Namespace, store: Store) -> str:
    """The subject a phone-only self check-in was stored under at that site: the page's own
    normaliser and keyed hash (server/checkin/declaration.py) under the site's secret."""
    from gatescan.commands.gates import CommandStop, check_text
    from server.checkin.declaration import normal_phone, phone_subject_id
    from server.store.site_policy import kept_rotation_secret

    phone = normal_phone(args.phone)
    if phone is None:
        raise CommandStop(EXIT_BAD_INPUT, "--phone: not a Vietnamese phone number (0..., +84...)")
    site = check_text("--site", args.site, required=True)
    secret = kept_rotation_secret(store.engine, site)
    if secret is None:
        raise CommandStop(EXIT_NO_SUCH, f"site {site!r} has no self check-ins: nothing kept")
    return phone_subject_id(phone, secret)


def run_person_export(args: argparse.Namespace) -> int:
    from gatescan.commands.gates import record_audit
    from server.clock import utc_now
    from server.store.person_data import find_person

    def export(store: Store) -> int:
        subject_id = _checked_id(args, store)
        data = find_person(store.engine, subject_id)
        document = data.to_json(utc_now())
        counts = {
            "entries": len(data.entries),
            "dead_letters": len(data.dead_letters),
            "audit": len(data.audit),
            "passes": len(data.passes),
            "lists": len(data.lists),
        }
        record_audit(store, "person", subject_id, "person export", **counts)
        if args.output is None:
            sys.stdout.buffer.write(document + b"\n")
            sys.stdout.flush()
        else:
            # Names and ID numbers: readable by its owner only.
            fd = os.open(args.output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(document + b"\n")
        shown = ", ".join(f"{count} {name.replace('_', ' ')}" for name, count in counts.items())
        print(f"{args.command}: {shown}", file=sys.stderr)
        return EXIT_OK

    return _on_store(args, export)


def run_person_erase(args: argparse.Namespace) -> int:
    from gatescan.commands.gates import CommandStop, record_audit
    from server.clock import utc_now
    from server.store.person_data import NOT_REACHED, erase_person

    def erase(store: Store) -> int:
        subject_id = _checked_id(args, store)
        if not args.yes:
            if not sys.stdin.isatty():
                raise CommandStop(EXIT_BAD_INPUT, "give --yes to erase without a terminal")
            given = args.id if args.phone is None else args.phone
            answer = input(f"erase everything kept about {given}? type it again: ")
            if answer.strip().lower() != given.strip().lower():
                raise CommandStop(EXIT_BAD_INPUT, "not confirmed; nothing was erased")
        erasure = erase_person(store.engine, subject_id, utc_now())
        if erasure.nothing:
            before = erasure.erased_before
            why = "" if before is None else f" (erased before, at {before:%Y-%m-%d %H:%M} UTC)"
            raise CommandStop(
                EXIT_NO_SUCH,
                f"nothing kept names this ID{why}: no entries, dead letters or list entries;"
                " nothing was erased",
            )
        lists = [f"{site}/{kind}" for site, kind in erasure.list_entries]
        record_audit(
            store,
            "person",
            f"sha256:{erasure.subject_sha256}",
            "person erase",
            entries=erasure.entries,
            dead_letters=erasure.dead_letters,
            lists=lists,
        )
        print(
            f"erased: {erasure.entries} entries, {erasure.dead_letters} dead letters,"
            f" {len(lists)} list entries{' (' + ', '.join(lists) + ')' if lists else ''};"
            " the collector will not store an event naming this ID again"
        )
        print("not reached by this command:")
        for line in NOT_REACHED:
            print(f"  - {line}")
        return EXIT_OK

    return _on_store(args, erase)
