"""Test helper: a sample Event factory, and (run as a program) a journal writer to be killed.

    python -m tests.unit.journal_writer DATA_DIR HISTORY_MAX_ENTRIES

opens the real Journal in DATA_DIR, prints `ready`, then records events for ever, printing each
event_id (flushed) only after record() has returned. The crash test kills it with SIGKILL.
"""

import hashlib
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

from device.journal import Journal
from protocol import CredentialType, Direction, Event, Reason, VerdictStatus


def make_event(
    seq: int,
    *,
    ts: datetime | None = None,
    event_id: str | None = None,
    boot_id: str = "boot-1",
) -> Event:
    """A plausible CCCD entry (Vietnamese name included, to check UTF-8 survives the files)."""
    code = f"001099012345||Nguyễn Văn An|01011990|Nam|Hà Nội|01012021#{seq}".encode()
    return Event(
        event_id=event_id or f"ev-{uuid.uuid4().hex}",
        device_id="gate-01",
        site_id="hq",
        seq=seq,
        boot_id=boot_id,
        ts=ts or datetime.now(UTC),
        clock_synced=True,
        direction=Direction.IN,
        status=VerdictStatus.RECORDED,
        reason=Reason.OK,
        credential_type=CredentialType.CCCD,
        subject_id="001099012345",
        subject_name="Nguyễn Văn An",
        code_sha256=hashlib.sha256(code).hexdigest(),
        code_length=len(code),
    )


def main(argv: list[str]) -> int:
    data_dir, history_max_entries = Path(argv[0]), int(argv[1])
    boot_id = uuid.uuid4().hex[:12]
    with Journal(data_dir, history_max_entries=history_max_entries) as journal:
        print("ready", flush=True)
        while True:
            event = make_event(journal.next_seq(), boot_id=boot_id)
            journal.record(event)
            print(event.event_id, flush=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
