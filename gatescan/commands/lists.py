"""A site's allow and block lists from the command line: `gatescan list add|remove|show`.

    gatescan list add allow --site hq 001099012345 3f2a9c0e1b7d4a55 --config server.toml
    gatescan list remove block --site hq 079203001234 --config server.toml
    gatescan list show allow --site hq --config server.toml

An ID is a CCCD number (12 digits) or a pass id (16 hex digits, `gatescan pass list`). `allow`
names who access mode lets in besides a valid issued pass; `block` is refused in every mode.
A change grows the site's policy version in its own transaction; the collector's publisher
sends it to the site's gates within about a second (docs/protocol.md, "Site policy").

Exit codes: 0 done; 2 bad input (an ID of neither form: nothing is changed); 3 `remove` of
IDs none of which was listed.
"""

from __future__ import annotations

import argparse
import unicodedata
from typing import TYPE_CHECKING

from gatescan.commands.accounts import local_time, print_table
from gatescan.commands.gates import CommandStop, check_text, record_audit, run_on_store
from gatescan.options import (
    EXIT_BAD_INPUT,
    EXIT_NO_SUCH,
    EXIT_OK,
    Commands,
    add_config_option,
    add_db_option,
)
from server.clock import utc_now

if TYPE_CHECKING:
    from server.store.database import Store

LISTS = ("allow", "block")
AUDIT_ENTRIES = 1000  # the most IDs one audit row names (a bulk import: its count only)


def add_parser(commands: Commands[argparse.ArgumentParser]) -> None:
    list_ = commands.add_parser("list", help="a site's allow and block lists, pushed to its gates")
    actions = list_.add_subparsers(title="actions", metavar="ACTION", required=True)
    for name, help, run in (
        ("add", "add CCCD numbers or pass ids to a list", run_add),
        ("remove", "remove them from a list", run_remove),
        ("show", "the list's entries", run_show),
    ):
        parser = actions.add_parser(name, help=help, description=help)
        parser.add_argument("kind", metavar="LIST", choices=LISTS, help="allow or block")
        parser.add_argument("--site", required=True, help="the site (a name, e.g. hq)")
        if name != "show":
            # "+", not "*": argparse would give "*" its empty match before --site.
            parser.add_argument(
                "ids", metavar="ID", nargs="+", help="a CCCD number or a pass id (16 hex digits)"
            )
        add_db_option(parser)
        add_config_option(parser)
        parser.set_defaults(run=run, command=parser.prog)


def _site(args: argparse.Namespace) -> str:
    return check_text("--site", unicodedata.normalize("NFC", args.site), required=True)


def _subjects(args: argparse.Namespace) -> list[str]:
    """The IDs given, as list subjects; CommandStop naming every bad one (nothing changes)."""
    from protocol.site_policy import list_subject

    given = list(args.ids)
    subjects, bad = [], []
    for text in given:
        try:
            subjects.append(list_subject(text))
        except ValueError:
            bad.append(text)
    if bad:
        shown = ", ".join(repr(text[:40]) for text in bad[:5]) + (" ..." if len(bad) > 5 else "")
        raise CommandStop(
            EXIT_BAD_INPUT,
            f"{len(bad)} ID(s) are neither a 12-digit CCCD number nor a 16-hex-digit pass id:"
            f" {shown}; nothing was changed",
        )
    return subjects


def _audit(store: Store, change: str, site: str, kind: str, subjects: list[str]) -> None:
    named = subjects if len(subjects) <= AUDIT_ENTRIES else []
    subject = subjects[0] if len(subjects) == 1 else ""
    record_audit(
        store, "list", subject, change, site=site, list=kind, count=len(subjects), entries=named
    )


def run_add(args: argparse.Namespace) -> int:
    from server.store.site_policy import SiteLists

    def add(store: Store) -> int:
        site, subjects = _site(args), _subjects(args)
        added = SiteLists(store.engine).add(site, args.kind, subjects, utc_now())
        _audit(store, "list add", site, args.kind, subjects)
        had = len(set(subjects)) - added
        print(f"site {site}: {added} added to the {args.kind} list ({had} listed already)")
        return EXIT_OK

    return run_on_store(args, add, new_database_ok=True)


def run_remove(args: argparse.Namespace) -> int:
    from server.store.site_policy import SiteLists

    def remove(store: Store) -> int:
        site, subjects = _site(args), _subjects(args)
        removed = SiteLists(store.engine).remove(site, args.kind, subjects, utc_now())
        if not removed:
            raise CommandStop(EXIT_NO_SUCH, f"none of them is on site {site}'s {args.kind} list")
        _audit(store, "list remove", site, args.kind, subjects)
        missing = len(set(subjects)) - removed
        print(f"site {site}: {removed} removed from the {args.kind} list ({missing} not on it)")
        return EXIT_OK

    return run_on_store(args, remove)


def run_show(args: argparse.Namespace) -> int:
    from server.store.site_policy import SiteLists

    def show(store: Store) -> int:
        entries = SiteLists(store.engine).entries(_site(args), args.kind)
        rows = [(*subject.split(":", 1), local_time(added)) for subject, added in entries]
        print_table(("TYPE", "ID", "ADDED"), rows)
        return EXIT_OK

    return run_on_store(args, show)
