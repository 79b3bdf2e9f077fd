"""`gatescan journal rejected|requeue|export`: a technician's look at the gate's rejected events,
the way back for them once the cause is fixed, and the unacknowledged events of a card taken out
of service, carried to the server by hand.

An event the collector refused for good (schema, a device id that is not the topic's) or the
broker kept refusing (ACL, packet size) leaves the outbox for the journal's `rejected` table and
is never resent by itself. After the cause is fixed (the collector upgraded, the ACL or the gate's
device id corrected), `requeue` moves such events back to the outbox, in one durable write, and
the agent sends them when it next runs; an event refused again is set aside again.

    gatescan journal rejected [--data-dir DIR]
        one tab-separated line per event: seq, event id, when it was recorded, when it was set
        aside, reason, detail. Never the person's data (id number, name, code). It only reads
        the outbox file, so it is safe while the agent runs.

    gatescan journal requeue [--data-dir DIR] (--event-id ID [--event-id ID ...] | --all)
        Run it with the agent STOPPED (`systemctl stop gatescan-agent`), as the journal's owner
        (`sudo -u gatescan ...`). The journal takes one process at a time (an exclusive lock):
        beside a running agent the command refuses and changes nothing, and as another user it
        refuses too, since a file it rewrote would then belong to that user and lock the agent
        out.

    gatescan journal export --data-dir DIR --out FILE
        The outbox's unacknowledged events, one wire JSON object a line (JSON Lines), lowest seq
        first, in a new file (0600: it holds ID numbers and names, as the journal does). For a
        replaced gate's old SD card, read in a card reader (--data-dir is the card's
        /var/lib/gatescan): the server stores them under the gate's id with `gatescan gate
        deliver ID FILE` (docs/operations.md, "Replacing a gate"). Reads only, like `rejected`.

Exit codes: 0 done; 1 the journal is busy or could not be written, or an id asked for is not set
aside (the others are still moved); 2 no journal in DIR or bad arguments.
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from gatescan.options import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK, Commands

if TYPE_CHECKING:
    from device.journal.outbox import RejectedEvent

AGENT_UNIT = "gatescan-agent"
COLUMNS = ("seq", "event_id", "recorded_at", "rejected_at", "reason", "detail")


def add_parser(commands: Commands[argparse.ArgumentParser]) -> None:
    """Register `gatescan journal ...` on the main command's subparsers."""
    journal = commands.add_parser("journal", help="look at and repair the gate's journal")
    actions = journal.add_subparsers(title="actions", metavar="ACTION", required=True)
    listing = actions.add_parser(
        "rejected", help="list the events set aside as rejected (safe while the agent runs)"
    )
    _add_data_dir(listing)
    listing.set_defaults(run=run_rejected)
    requeue = actions.add_parser(
        "requeue",
        help="move rejected events back to the outbox (stop the agent first)",
        description="Move rejected events back to the outbox; the agent sends them when it next"
        " runs. Run it with the agent stopped, as the journal's owner (sudo -u gatescan).",
    )
    _add_data_dir(requeue)
    which = requeue.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "--event-id",
        action="append",
        dest="event_ids",
        metavar="ID",
        help="an event to move back, as `journal rejected` lists it (repeatable)",
    )
    which.add_argument("--all", action="store_true", help="every rejected event")
    requeue.set_defaults(run=run_requeue)
    export = actions.add_parser(
        "export",
        help="write the outbox's unacknowledged events to a file, for `gatescan gate deliver`",
        description="Write the outbox's unacknowledged events, one JSON event a line, to a new"
        " file (0600); the server stores them with `gatescan gate deliver ID FILE`. Reads only.",
    )
    _add_data_dir(export)
    export.add_argument("--out", type=Path, required=True, metavar="FILE", help="a new file")
    export.set_defaults(run=run_export)


def _add_data_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        type=Path,
        metavar="DIR",
        help="the agent's data_dir, which holds journal/ (default: the agent's default)",
    )


def run_rejected(args: argparse.Namespace) -> int:
    from device.journal.outbox import OUTBOX_FILE, read_rejected

    root = _journal_root(args.data_dir, "rejected")
    if root is None:
        return EXIT_BAD_INPUT
    rejected = read_rejected(root / OUTBOX_FILE)
    sys.stdout.write("\t".join(COLUMNS) + "\n")
    sys.stdout.writelines(_line(found) for found in rejected)
    print(f"{len(rejected)} rejected event(s) in {root}", file=sys.stderr)
    return EXIT_OK


def run_requeue(args: argparse.Namespace) -> int:
    from device.journal.journal import Journal, JournalError
    from device.journal.outbox import OUTBOX_FILE

    root = _journal_root(args.data_dir, "requeue")
    if root is None:
        return EXIT_BAD_INPUT
    if not _owned_by_me(root / OUTBOX_FILE):
        return EXIT_FAILED
    wanted = None if args.all else set(args.event_ids)
    try:
        # retention_days=None: this tool does not know the site's retention, so it purges nothing.
        with Journal(root.parent, retention_days=None) as journal:
            moved = journal.requeue(wanted)
            depth = journal.outbox_depth()
    except JournalError as exc:
        busy = exc.errno == errno.EBUSY
        hint = f": stop the agent first (systemctl stop {AGENT_UNIT})" if busy else ""
        _complain("requeue", f"{exc.strerror}{hint}; nothing was moved")
        return EXIT_FAILED
    sys.stdout.write("\t".join(COLUMNS) + "\n")
    sys.stdout.writelines(_line(found) for found in moved)
    print(f"moved {len(moved)} event(s) back to the outbox ({depth} pending)", file=sys.stderr)
    missing = sorted((wanted or set()) - {found.event.event_id for found in moved})
    if missing:
        _complain("requeue", "not set aside (unknown, or already back): " + ", ".join(missing))
        return EXIT_FAILED
    return EXIT_OK


def run_export(args: argparse.Namespace) -> int:
    from device.journal.outbox import OUTBOX_FILE, read_pending

    root = _journal_root(args.data_dir, "export")
    if root is None:
        return EXIT_BAD_INPUT
    events = read_pending(root / OUTBOX_FILE)
    try:
        fd = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        _complain("export", f"cannot create {args.out}: {exc.strerror} (a new file only)")
        return EXIT_BAD_INPUT
    with os.fdopen(fd, "wb") as out:
        out.writelines(event.to_json() + b"\n" for event in events)
        out.flush()
        os.fsync(out.fileno())
    devices = sorted({event.device_id for event in events})
    print(f"{len(events)} unacknowledged event(s) of {', '.join(devices) or 'no gate'} written"
          f" to {args.out}", file=sys.stderr)  # fmt: skip
    return EXIT_OK


def _line(found: RejectedEvent) -> str:
    """One tab-separated line of COLUMNS: never the person's data, never a second line."""
    from protocol.messages import REJECTION_DETAIL_MAX_CHARS
    from protocol.text import printable

    event = found.event
    fields = (
        str(event.seq),
        event.event_id,
        event.ts.isoformat(),
        found.rejected_at.isoformat(),
        printable(found.reason),
        printable(found.detail, REJECTION_DETAIL_MAX_CHARS),
    )
    return "\t".join(fields) + "\n"


def _journal_root(data_dir: Path | None, action: str) -> Path | None:
    """`<data_dir>/journal` if it holds a journal; a mistyped directory must not get a new one."""
    from device.journal.outbox import OUTBOX_FILE

    if data_dir is None:
        from firmware_config.schema import DEFAULT_DATA_DIR

        data_dir = DEFAULT_DATA_DIR
    root = data_dir / "journal"
    if not (root / OUTBOX_FILE).is_file():
        _complain(action, f"no journal in {data_dir} (is --data-dir the agent's data_dir?)")
        return None
    return root


def _owned_by_me(outbox: Path) -> bool:
    owner = outbox.stat().st_uid
    if owner == os.geteuid():
        return True
    _complain("requeue", f"{outbox} belongs to uid {owner}: run this as that user (sudo -u ...)")
    return False


def _complain(action: str, message: str) -> None:
    print(f"gatescan journal {action}: {message}", file=sys.stderr)
