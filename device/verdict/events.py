"""Build the event for one showing: identity, time, verdict, and only the fields kept.

The builder makes an `EventDraft`: the whole event but its seq, which only the journal gives, as
it takes the event (device/journal/journal.py). The draft becomes the wire `Event` there, built
and validated once, with that seq.

Every Event made from a draft built here passes the protocol's validation, whatever the code
held, so the collector never dead-letters an honest gate's entry:
- the gate's identity (device id, site id, boot id) is checked once, when the builder is made, and
  a bad one is a ValueError at startup rather than a refused message per scan;
- a CCCD's name has already passed the same rule in device/verdict/credentials.py (else the card is
invalid);
- a raw code's text that the protocol refuses (control or bidi characters, or too long) is left
  out and the event says so (`code_text_withheld`); the code's digest still identifies it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from device.system.clock import Clock
from device.verdict.credentials import Credential, ParseResult
from device.verdict.policy import Verdict
from protocol.event_ids import new_event_id
from protocol.messages import BOOT_ID_PATTERN, Event
from protocol.text import code_text_problem, plain_text_problem, printable
from protocol.topics import is_valid_device_id
from protocol.verdicts import CredentialType, Direction, Reason, VerdictStatus

_BOOT_ID = re.compile(BOOT_ID_PATTERN)


@dataclass(frozen=True, kw_only=True)
class EventDraft:
    """An event before the journal takes it: every field of the `Event` but its seq.

    Its fields are the Event's (with its defaults), as the builder made them; they are validated
    once, when `numbered` makes the Event.
    """

    event_id: str
    device_id: str
    site_id: str = ""
    boot_id: str
    ts: datetime
    clock_synced: bool
    direction: Direction
    status: VerdictStatus
    reason: Reason
    credential_type: CredentialType
    subject_id: str
    subject_name: str = ""
    code_sha256: str
    code_length: int = 0
    code_text: str | None = None
    code_text_withheld: bool = False

    @classmethod
    def from_event(cls, event: Event) -> EventDraft:
        """The draft of an existing Event (its seq dropped): for tests and tools holding Events."""
        return cls(**event.model_dump(exclude={"seq"}))

    def numbered(self, seq: int) -> Event:
        """The wire Event with this seq; a ValueError (pydantic's) if it breaks the protocol."""
        return Event(seq=seq, **vars(self))


class EventBuilder:
    """Makes the draft of each showing at one gate; the journal numbers it (`EventDraft`)."""

    def __init__(
        self,
        *,
        device_id: str,
        site_id: str,
        direction: Direction,
        boot_id: str,
        clock: Clock,
        record_raw_text: bool = False,
    ) -> None:
        _check_identity(device_id, site_id, boot_id)
        self.device_id = device_id
        self.site_id = site_id
        self.direction = direction
        self.boot_id = boot_id
        self.clock = clock
        self.record_raw_text = record_raw_text

    def build(self, parsed: ParseResult, verdict: Verdict) -> EventDraft:
        # Unique by its 74 random bits (a clock that jumps back never repeats it), and ordered by
        # time so the collector's index of ids grows at its end (protocol/event_ids.py).
        code_text, withheld = self._kept_text(parsed)
        return EventDraft(
            event_id=new_event_id(),
            device_id=self.device_id,
            site_id=self.site_id,
            boot_id=self.boot_id,
            ts=self.clock.now(),
            clock_synced=self.clock.is_synced(),
            direction=self.direction,
            status=verdict.status,
            reason=verdict.reason,
            credential_type=parsed.credential_type,
            subject_id=parsed.subject_id,
            subject_name=parsed.subject_name if isinstance(parsed, Credential) else "",
            code_sha256=parsed.code_sha256,
            code_length=parsed.code_length,
            code_text=code_text,
            code_text_withheld=withheld,
        )

    def _kept_text(self, parsed: ParseResult) -> tuple[str | None, bool]:
        """(code_text, withheld). Raw codes' text is personal data of unknown shape: kept only
        where the site asks, and only when the protocol accepts it."""
        if not isinstance(parsed, Credential) or parsed.credential_type is not CredentialType.RAW:
            return None, False
        if not self.record_raw_text or parsed.text is None:
            return None, False
        if code_text_problem(parsed.text) is not None:
            return None, True
        return parsed.text, False


def _check_identity(device_id: str, site_id: str, boot_id: str) -> None:
    problems = []
    if not is_valid_device_id(device_id):
        problems.append(f"device_id '{printable(device_id, 80)}' is not a valid device id")
    site_problem = plain_text_problem(site_id)
    if site_problem is not None:
        problems.append(f"site_id {site_problem}")
    if not _BOOT_ID.match(boot_id):
        problems.append(f"boot_id '{printable(boot_id, 80)}' is not 1-64 of A-Z a-z 0-9 -")
    if problems:
        raise ValueError("the gate's identity breaks the protocol: " + "; ".join(problems))
