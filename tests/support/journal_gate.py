"""A gate without its camera, for the collector tests: each code shown goes the agent's way from
the parser on (policy, event, journal, uplink), and every event shown is kept to count."""

from __future__ import annotations

import threading
from pathlib import Path

from device.journal.journal import Journal
from device.system.clock import FixedSyncClock
from device.uplink.link import Uplink
from device.verdict.credentials import parse_credential
from device.verdict.events import EventBuilder
from device.verdict.policy import Policy
from protocol.messages import Event
from protocol.verdicts import Direction


class JournalGate:
    def __init__(
        self,
        broker_url: str,
        data_dir: Path,
        *,
        device_id: str,
        boot_id: str,
        resend_after: float,
        version: str,
    ) -> None:
        self.journal = Journal(data_dir)
        self.uplink = Uplink(
            device_id=device_id,
            broker_url=broker_url,
            journal=self.journal,
            version=version,
            boot_id=boot_id,
            resend_after=resend_after,
        )
        self.builder = EventBuilder(
            device_id=device_id,
            site_id="hq",
            direction=Direction.IN,
            boot_id=boot_id,
            clock=FixedSyncClock(),
        )
        self.policy = Policy("log")
        self.shown: list[Event] = []
        self._lock = threading.Lock()

    def show(self, code: bytes) -> Event:
        parsed = parse_credential(code)
        with self._lock:
            event = self.journal.record(self.builder.build(parsed, self.policy.decide(parsed)))
            self.shown.append(event)
        self.uplink.event_recorded()
        return event

    def pending_ids(self) -> set[str]:
        return {event.event_id for event in self.journal.pending()}

    def close(self) -> None:
        self.uplink.stop()
        self.journal.close()
