"""A site's signing keys and its passes from the command line: `gatescan key rotate|list|retire`
and `gatescan pass issue|list|revoke`.

    gatescan key rotate --site hq --config server.toml
    gatescan pass issue "Nguyễn Thị Minh Khai" --site hq --valid-until 2026-12-31T18:00+07:00 \\
        --qr minh-khai.png --config server.toml

`key rotate` makes a new active key for a site (it signs new passes); the one active before
becomes verify-only (the passes it signed still verify). `key retire ID` makes a key verify
nothing; a site's only active key is never retired. `pass issue` signs a pass
(protocol/passes.py) with the site's active key, records it (holder, window, key) and writes
its QR (PNG or SVG, by the file's suffix; error correction M, a version 5 code). `pass revoke`
marks a pass revoked in the registry; the collector's publisher tells the site's gates
(docs/protocol.md, "Site policy").

Exit codes: 0 done; 2 bad input (a time without its zone, a window that ends before it begins,
an unknown image kind, a site with no key, retiring the only active key); 3 no such key or pass.
"""

from __future__ import annotations

import argparse
import unicodedata
from datetime import UTC, datetime
from pathlib import Path
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

QR_KINDS = {".png": "png", ".svg": "svg"}


def add_parser(commands: Commands[argparse.ArgumentParser]) -> None:
    key = commands.add_parser("key", help="a site's pass-signing keys")
    actions = key.add_subparsers(title="actions", metavar="ACTION", required=True)
    rotate = _action(
        actions, "rotate", "a new active key for a site (the old one: verify-only)", run_key_rotate
    )
    rotate.add_argument("--site", required=True, help="the site (a name, e.g. hq)")
    listing = _action(actions, "list", "keys: id, site, state, created, fingerprint", run_key_list)
    listing.add_argument("--site", help="only this site's keys")
    retire = _action(actions, "retire", "a key verifies nothing from now on", run_key_retire)
    retire.add_argument("key_id", metavar="ID", type=int)

    pass_ = commands.add_parser("pass", help="passes a site issues (signed QR codes)")
    actions = pass_.add_subparsers(title="actions", metavar="ACTION", required=True)
    issue = _action(actions, "issue", "sign a pass for a person and write its QR", run_issue)
    issue.add_argument("name", metavar="NAME", help="the holder's name, as written")
    issue.add_argument("--site", required=True, help="the site whose key signs it")
    issue.add_argument(
        "--valid-from",
        metavar="TIME",
        help="ISO 8601 with its zone, e.g. 2026-12-06T08:00+07:00 (default: now)",
    )
    issue.add_argument(
        "--valid-until",
        metavar="TIME",
        required=True,
        help="ISO 8601 with its zone: the pass ends at this minute",
    )
    shown = issue.add_mutually_exclusive_group(required=True)
    shown.add_argument(
        "--qr",
        type=Path,
        metavar="FILE.png|FILE.svg",
        help="a printed pass: where to write its QR (the kind from the suffix)",
    )
    shown.add_argument(
        "--phone",
        metavar="https://SERVER",
        help="a phone's pass: print the link to the holder's page on this server, whose QR"
        " changes every 30 s (a screenshot is refused after a minute); send it to the holder"
        " only: the link is the pass",
    )
    plist = _action(actions, "list", "passes: id, holder, site, window, state", run_pass_list)
    plist.add_argument("--site", help="only this site's passes")
    revoke = _action(actions, "revoke", "mark a pass revoked", run_pass_revoke)
    revoke.add_argument("pass_id", metavar="PASS_ID", help="16 hex digits (gatescan pass list)")


def _action(
    actions: Commands[argparse.ArgumentParser], name: str, help: str, run: object
) -> argparse.ArgumentParser:
    parser = actions.add_parser(name, help=help, description=help)
    add_db_option(parser)
    add_config_option(parser)
    parser.set_defaults(run=run, command=parser.prog)
    return parser


# --- key ---------------------------------------------------------------------------------------


def run_key_rotate(args: argparse.Namespace) -> int:
    from server.store.site_keys import SiteKeyError, SiteKeys

    def rotate(store: Store) -> int:
        site = check_text("--site", unicodedata.normalize("NFC", args.site), required=True)
        keys = SiteKeys(store.engine)
        before = keys.active(site)
        try:
            key = keys.rotate(site, utc_now())
        except SiteKeyError as exc:
            raise CommandStop(EXIT_BAD_INPUT, str(exc)) from None
        record_audit(store, "key", str(key.key_id), "key rotate", site=site)
        print(f"key {key.key_id} (site {site}) active, fingerprint {key.fingerprint()}")
        if before is not None:
            print(f"  key {before.key_id} is verify-only: the passes it signed still verify")
        return EXIT_OK

    return run_on_store(args, rotate, new_database_ok=True)


def run_key_list(args: argparse.Namespace) -> int:
    from server.store.site_keys import SiteKeys

    def show(store: Store) -> int:
        rows = [
            (
                str(k.key_id),
                k.site_id,
                k.state,
                local_time(k.created_at),
                local_time(k.retired_at) if k.retired_at else "-",
                k.fingerprint(),
            )
            for k in SiteKeys(store.engine).all(args.site)
        ]
        print_table(("ID", "SITE", "STATE", "CREATED", "RETIRED", "FINGERPRINT"), rows)
        return EXIT_OK

    return run_on_store(args, show)


def run_key_retire(args: argparse.Namespace) -> int:
    from server.store.site_keys import SiteKeyError, SiteKeys

    def retire(store: Store) -> int:
        try:
            key = SiteKeys(store.engine).retire(args.key_id, utc_now())
        except SiteKeyError as exc:
            code = EXIT_NO_SUCH if exc.reason == "unknown" else EXIT_BAD_INPUT
            raise CommandStop(code, str(exc)) from None
        record_audit(store, "key", str(key.key_id), "key retire", site=key.site_id)
        print(f"key {key.key_id} (site {key.site_id}) retired: its passes no longer verify")
        return EXIT_OK

    return run_on_store(args, retire)


# --- pass --------------------------------------------------------------------------------------


def parse_time(flag: str, text: str) -> datetime:
    """An ISO 8601 time that says its zone, or CommandStop."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise CommandStop(
            EXIT_BAD_INPUT, f"{flag} {text!r} is not an ISO 8601 time (e.g. 2026-12-06T08:00+07:00)"
        ) from None
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise CommandStop(
            EXIT_BAD_INPUT, f"{flag} {text!r} does not say its time zone: add it, e.g. +07:00 or Z"
        )
    return moment.astimezone(UTC)


def _floor_minute(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


def run_issue(args: argparse.Namespace) -> int:
    from protocol.passes import PassFlags
    from server.store.site_keys import SiteKeyError, issue_pass

    def issue(store: Store) -> int:
        name = check_text("NAME", unicodedata.normalize("NFC", args.name), required=True)
        site = check_text("--site", unicodedata.normalize("NFC", args.site), required=True)
        kind = QR_KINDS.get(args.qr.suffix.lower()) if args.qr is not None else None
        if args.qr is not None and kind is None:
            raise CommandStop(EXIT_BAD_INPUT, f"--qr {args.qr}: write a .png or an .svg file")
        if args.qr is not None and not args.qr.resolve().parent.is_dir():
            raise CommandStop(EXIT_BAD_INPUT, f"--qr {args.qr}: its folder does not exist")
        if args.phone is not None and not args.phone.startswith(("https://", "http://localhost")):
            raise CommandStop(
                EXIT_BAD_INPUT,
                f"--phone {args.phone!r}: the server's https:// address (a phone computes the"
                " code with WebCrypto, which browsers allow only over HTTPS)",
            )
        now = utc_now()
        start = _floor_minute(
            parse_time("--valid-from", args.valid_from) if args.valid_from else now
        )
        until = _floor_minute(parse_time("--valid-until", args.valid_until))
        if until <= start:
            raise CommandStop(
                EXIT_BAD_INPUT,
                f"--valid-until {args.valid_until} is not after the"
                f" pass begins ({start.isoformat()}, to the minute)",
            )
        flags = PassFlags.ISSUED | (PassFlags.PHONE if args.phone else PassFlags(0))
        try:
            signed = issue_pass(store.engine, site, name, start, until, now, flags)
        except SiteKeyError:
            raise CommandStop(
                EXIT_BAD_INPUT,
                f"site {site!r} has no signing key: run `gatescan key rotate --site {site}` first",
            ) from None
        except ValueError as exc:
            raise CommandStop(EXIT_BAD_INPUT, str(exc)) from None
        body = signed.body
        shown = (
            _write_qr(args.qr, kind, signed.to_bytes())
            if args.qr is not None and kind is not None
            else _phone_link(store, site, args.phone, signed.to_bytes(), name)
        )
        record_audit(
            store, "pass", body.pass_id_text(), "pass issue", site=site, key_id=body.key_id
        )
        print(f"pass {body.pass_id_text()} for {name} (site {site}, key {body.key_id})")
        print(f"  valid {local_time(start)} to {local_time(until)}")
        if args.qr is not None:
            print(f"  QR version {shown} (error correction M) written to {args.qr}")
        else:
            print("  the holder's page (send it to the holder alone: the link is the pass):")
            print(f"  {shown}")
        return EXIT_OK

    return run_on_store(args, issue, new_database_ok=True)


def _phone_link(store: Store, site: str, base_url: str, code: bytes, name: str) -> str:
    """The link to the holder's page: the pass and its own secret, in the fragment."""
    from protocol.rotating_passes import pass_secret
    from server.holder.routes import holder_link
    from server.store.site_policy import rotation_secret

    site_secret = rotation_secret(store.engine, site, utc_now())
    return holder_link(base_url, code, pass_secret(site_secret, code[4:12]), name)


def _write_qr(path: Path, kind: str, code: bytes) -> int:
    """The pass's QR, at error correction M, not boosted; its version."""
    import segno

    qr = segno.make(code, error="m", boost_error=False, micro=False)
    try:
        qr.save(str(path), kind=kind, scale=8, border=4)
    except OSError as exc:
        raise CommandStop(EXIT_BAD_INPUT, f"cannot write {path}: {exc.strerror}") from None
    return int(qr.version)


def run_pass_list(args: argparse.Namespace) -> int:
    from server.store.site_keys import PassRegistry

    def show(store: Store) -> int:
        rows = [
            (
                p.pass_id,
                p.holder_name,
                p.site_id,
                str(p.key_id),
                local_time(p.valid_from),
                local_time(p.valid_until),
                "revoked" if p.revoked else "valid",
            )
            for p in PassRegistry(store.engine).all(args.site)
        ]
        print_table(("PASS", "HOLDER", "SITE", "KEY", "FROM", "UNTIL", "STATE"), rows)
        return EXIT_OK

    return run_on_store(args, show)


def run_pass_revoke(args: argparse.Namespace) -> int:
    from server.store.site_keys import PassRegistry

    def revoke(store: Store) -> int:
        pass_id = args.pass_id.strip().lower()
        found = PassRegistry(store.engine).revoke(pass_id, utc_now())
        if found is None:
            raise CommandStop(EXIT_NO_SUCH, f"no pass {args.pass_id!r} (gatescan pass list)")
        record_audit(store, "pass", pass_id, "pass revoke", site=found.site_id)
        print(f"pass {pass_id} ({found.holder_name}, site {found.site_id}) revoked")
        return EXIT_OK

    return run_on_store(args, revoke)
