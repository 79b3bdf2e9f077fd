"""Build the wire Event for one showing: identity, time, verdict, and only the fields kept."""

from __future__ import annotations

import uuid

from device.clock import Clock
from device.credentials import Credential, ParseResult
from device.policy import Verdict
from protocol import Direction, Event


class EventBuilder:
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
        self.device_id = device_id
        self.site_id = site_id
        self.direction = direction
        self.boot_id = boot_id
        self.clock = clock
        self.record_raw_text = record_raw_text

    def build(self, seq: int, parsed: ParseResult, verdict: Verdict) -> Event:
        # A random id, not one derived from the clock: a clock that jumps back never repeats it.
        return Event(
            event_id=uuid.uuid4().hex,
            device_id=self.device_id,
            site_id=self.site_id,
            seq=seq,
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
            code_text=self._kept_text(parsed),
        )

    def _kept_text(self, parsed: ParseResult) -> str | None:
        """Raw codes' text is personal data of unknown shape: kept only where the site asks."""
        if not isinstance(parsed, Credential) or parsed.card is not None:
            return None
        return parsed.text if self.record_raw_text else None
