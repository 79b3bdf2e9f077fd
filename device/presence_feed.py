"""What feeds the gate's view of who is inside (device/verdict/presence.py): the site policy it
holds (the server's `inside` list, with this gate's `presence_seq` and the day's start), its own
journal when it starts (so a gate restarted offline still knows who came in through it), and
each scan it journals (a person who passed counts at once, before the server's next list)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, timedelta

from device.journal.journal import Journal, JournalError
from device.scanner import Scan
from device.site_policy.held import HeldPolicy
from device.site_policy.holder import PolicyHolder
from device.system.clock import Clock
from device.verdict.presence import Presence
from protocol.messages import Event
from protocol.verdicts import CredentialType, VerdictStatus

log = logging.getLogger("gatescan.agent")


def presence_follows(holder: PolicyHolder, presence: Presence, device_id: str) -> None:
    """Every site policy held gives the gate's presence the server's `inside` list."""

    def on_change(held: HeldPolicy) -> None:
        manifest = held.manifest
        presence.update(
            held.inside_lookup(),
            held.count("inside"),
            manifest.presence_seq.get(device_id) if manifest is not None else None,
            manifest.presence_since if manifest is not None else None,
        )

    holder.watch(on_change)
    on_change(holder.read())


def remember_passages(
    presence: Presence, holder: PolicyHolder, journal: Journal, clock: Clock
) -> None:
    """At start, the gate's own passages of the last two days from its journal: a gate that
    restarts offline still knows who came in through it (what the server's list already holds,
    or what came before the site's day began, Presence drops)."""
    today = clock.now().astimezone(UTC).date()
    try:
        events = journal.history(today - timedelta(days=1)) + journal.history(today)
    except JournalError as exc:
        log.warning("presence: the journal's history cannot be read (%s)", exc)
        return
    for event in events:
        passage = passage_of(holder, event)
        if passage is not None:
            presence.record(event.seq, passage, event.direction, event.ts)


def passage_of(holder: PolicyHolder, event: Event) -> bytes | None:
    """The presence entry of a journaled event when it is a person passing (a card or a pass,
    not denied); None otherwise, or with no list key held yet."""
    person = event.credential_type in (CredentialType.CCCD, CredentialType.PASS)
    if not person or event.status is VerdictStatus.DENIED:
        return None
    return holder.read().entry(f"{event.credential_type.value}:{event.subject_id}")


def passages_into(
    presence: Presence, holder: PolicyHolder, *, then: Callable[[Scan], None]
) -> Callable[[Scan], None]:
    """After each journaled scan: a person who passed (not denied; a card or a pass) counts in
    the gate's presence at once, before the server's next list holds it."""

    def on_scan(scan: Scan) -> None:
        event = scan.event
        if scan.journaled and isinstance(event, Event):
            entry = passage_of(holder, event)
            if entry is not None:
                presence.record(event.seq, entry, event.direction, event.ts)
        then(scan)

    return on_scan
