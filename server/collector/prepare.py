"""What the collector makes of one MQTT message before anything is stored: a typed verdict.

`prepare` runs on paho's network thread for every message, and does there all the per-message
work that needs no database: parse the topic, validate the payload (protocol.parse_message), and
for an accepted event convert it to the row the database driver takes. What it returns is one of

- `AcceptedEvent`: a valid event from the gate its topic names, with its ready row;
- `DeviceReport`: a valid status or telemetry message, as the device update to write (or
  nothing, for an emptied retained status);
- `Refused`: anything else, with the dead-letter reason and detail, and (for an events message
  whose payload names a well-formed event_id) the `Rejection` to send back to the topic's gate;
- `Limited`: a message over its gate's limits (server/collector/limits.py), not even parsed: it
  is dropped, stored nowhere and answered to no one (its gate resends it), only PUBACKed.

The writer thread then stores a whole batch of these in one transaction
(server/collector/writer.py). Nothing a message holds can make `prepare` raise.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from protocol.messages import (
    MAX_MESSAGE_BYTES,
    REJECTION_DETAIL_MAX_CHARS,
    Event,
    MessageError,
    Rejection,
    event_id_of,
    parse_message,
)
from protocol.topics import Topic, parse_topic
from protocol.verdicts import GATE_CREDENTIAL_TYPES
from server.collector.latency import LatencyHistogram
from server.collector.limits import GateLimiter
from server.store.database import status_update, telemetry_update
from server.store.writes import DeadLetterRecord, DeviceUpdate, EntryRow


@dataclass
class CollectorCounters:
    """What the collector has done since it started; read by logs and tests."""

    received: int = 0  # events messages received
    stored: int = 0  # events newly committed
    duplicates: int = 0  # events already stored (resends): acked again, not stored again
    conflicts: int = 0  # an event_id stored before with other content: dead-lettered, rejected
    erased: int = 0  # events naming an erased subject (`gatescan person erase`): acked, not stored
    dead_lettered: int = 0  # messages of any kind refused and kept in dead_letters
    dead_letter_reasons: Counter[str] = field(default_factory=Counter)  # dead_lettered by reason
    acks_sent: int = 0  # application ack messages published (rejections included)
    rejected: int = 0  # refused events named back to their gate in an ack's `rejected`
    errors: int = 0  # handling failures (e.g. the database refused a commit): nothing was acked
    batches: int = 0  # transactions committed
    rate_limited: int = 0  # messages over their gate's limits: dropped unread, PUBACKed only
    rate_limited_gates: Counter[str] = field(default_factory=Counter)  # rate_limited by gate
    # How long each committed batch's write_batch took (server/metrics/ shows it).
    commit_latency: LatencyHistogram = field(default_factory=LatencyHistogram, repr=False)


# The two NamedTuples below are made for every message on paho's network thread, the
# collector's busiest: a NamedTuple costs a fraction of a frozen dataclass there.


class IncomingMessage(NamedTuple):
    """One MQTT message as the handler sees it, without paho's types."""

    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = False


class AcceptedEvent(NamedTuple):
    message: IncomingMessage
    device_id: str
    row: EntryRow

    @property
    def event_id(self) -> str:
        return self.row.event_id


@dataclass(frozen=True)
class DeviceReport:
    message: IncomingMessage
    update: DeviceUpdate | None  # None: a retained status cleared (an empty payload)


@dataclass(frozen=True)
class Refused:
    message: IncomingMessage
    reason: str
    detail: str
    # The gate to tell, and what: only for an events message that names a well-formed event_id.
    device_id: str | None = None
    rejection: Rejection | None = None

    def dead_letter(self) -> DeadLetterRecord:
        """What the store keeps of it: the payload's digest, size and first 4 KiB."""
        event_id = None if self.rejection is None else self.rejection.event_id
        return DeadLetterRecord(
            self.message.topic, self.message.payload, self.reason, self.detail, event_id=event_id
        )


class Limited(NamedTuple):
    """A message over its gate's limits: dropped unread (its gate resends it), PUBACKed only.
    `device_id` is the topic's ("" for a topic that names no valid device)."""

    message: IncomingMessage
    device_id: str


Prepared = AcceptedEvent | DeviceReport | Refused | Limited

# The one bucket of every topic that names no valid device id (a broker without an ACL).
NO_DEVICE = ""


def prepare(
    message: IncomingMessage,
    entry_row: Callable[[Event], EntryRow],
    received_at: Callable[[], datetime],
    limiter: GateLimiter | None = None,
    sites: Mapping[str, str] | None = None,
) -> Prepared:
    """Validate one message and prepare what will be written for it (no I/O). With a
    `limiter`, a message over its gate's limits is `Limited`, before anything is parsed.
    `sites`: each registered gate's site; an event of such a gate naming another is refused."""
    parsed = parse_topic(message.topic)
    if parsed is None:
        if limiter is not None and not limiter.allow(NO_DEVICE, len(message.payload)):
            return Limited(message, NO_DEVICE)
        return Refused(message, "bad_topic", "not a gatescan device topic")
    device_id, kind = parsed
    if limiter is not None and not limiter.allow(device_id, len(message.payload)):
        return Limited(message, device_id)
    if kind is Topic.EVENTS:
        return _prepare_event(message, device_id, entry_row, received_at, sites)
    if kind is Topic.STATUS and not message.payload:
        return DeviceReport(message, None)  # an empty retained payload clears a status
    if kind not in (Topic.STATUS, Topic.TELEMETRY):
        return Refused(message, "bad_topic", "not a gatescan device topic")
    try:
        report = parse_message(kind, message.payload)
    except MessageError as exc:
        return Refused(message, exc.reason, exc.detail)
    if kind is Topic.STATUS:
        return DeviceReport(message, status_update(device_id, report, received_at()))
    return DeviceReport(message, telemetry_update(device_id, report, received_at()))


def parse_event(payload: bytes) -> Event:
    """protocol.parse_message(Topic.EVENTS, payload), in one pass for a valid event.

    pydantic's own JSON parser validates straight from the bytes, without json.loads building a
    dict first: about a quarter of the cost. Whatever it refuses goes through parse_message,
    which refuses it too and says why (not_json, schema, ...). Both accept exactly the same
    payloads (tests/server/collector/test_prepare.py holds the corner cases: control characters,
    lone surrogates, duplicate keys, NaN, huge integers, a BOM, other encodings...).
    """
    if len(payload) <= MAX_MESSAGE_BYTES:
        try:
            return Event.model_validate_json(payload)
        except ValueError:  # pydantic's ValidationError, whatever the cause: ask parse_message
            pass
    event: Event = parse_message(Topic.EVENTS, payload)
    return event


def _prepare_event(
    message: IncomingMessage,
    device_id: str,
    entry_row: Callable[[Event], EntryRow],
    received_at: Callable[[], datetime],
    sites: Mapping[str, str] | None = None,
) -> Prepared:
    try:
        event = parse_event(message.payload)
    except MessageError as exc:
        return _refused_event(message, device_id, exc.reason, exc.detail)
    if event.device_id != device_id:
        # A gate may only speak for itself (the broker's ACL enforces the topic, not the body).
        detail = f"topic names {device_id!r}, payload names {event.device_id!r}"
        return _refused_event(message, device_id, "device_mismatch", detail)
    if sites and event.site_id != sites.get(device_id, event.site_id):
        # A registered gate's site is its registration's (its card could say any).
        detail = f"gate {device_id!r} is registered to another site than {event.site_id!r}"
        return _refused_event(message, device_id, "wrong_site", detail)
    if event.credential_type not in GATE_CREDENTIAL_TYPES:
        # A self check-in is made by the server's check-in page (server/checkin/), never a gate.
        detail = "credential_type self is a self check-in's: a gate never sends it"
        return _refused_event(message, device_id, "not_a_gate_kind", detail)
    problem = time_problem(event.ts, event.clock_synced, received_at())
    if problem is not None:
        return _refused_event(message, device_id, "bad_time", problem)
    try:
        row = entry_row(event)
    except (ValueError, OverflowError) as exc:  # a valid event the store cannot take, for good
        return _refused_event(message, device_id, "unstorable", type(exc).__name__)
    return AcceptedEvent(message, device_id, row)


# A synchronised gate clock's `ts` is believed within these bounds (docs/protocol.md): before the
# first gatescan gate and later than a day after the collector received it, it is a lie or a
# broken clock. An unsynchronised clock may say anything (a Pi without a real-time clock boots
# at its last shutdown, or in 1970): those are stored as they came, and ordered by arrival.
EARLIEST_SYNCED_TS = datetime(2020, 1, 1)  # naive UTC, as time_problem compares
FUTURE_SLACK = timedelta(days=1)


def time_problem(ts: datetime, clock_synced: bool, now: datetime) -> str | None:
    """Why the collector refuses an event's `ts`, or None. Any `ts` must have a UTC time (year 1
    at +14:00 has none); a synchronised one must lie within EARLIEST_SYNCED_TS .. now + 1 day."""
    offset = ts.utcoffset()
    try:
        utc = ts.replace(tzinfo=None) - offset if offset else ts.replace(tzinfo=None)
    except OverflowError:
        return "ts has no UTC time: it is past the first or last year a time can hold"
    if not clock_synced:
        return None
    latest = (now + FUTURE_SLACK).astimezone(UTC).replace(tzinfo=None)
    if EARLIEST_SYNCED_TS <= utc <= latest:
        return None
    return (
        f"ts {utc:%Y-%m-%dT%H:%M:%S}Z from a synchronised clock is outside 2020-01-01 .. "
        "one day after the collector received it"
    )


def _refused_event(message: IncomingMessage, device_id: str, reason: str, detail: str) -> Refused:
    """A refused event, with the rejection its topic's gate (never one named inside the
    payload) is told about once the dead letter is stored, if the payload names its id."""
    event_id = event_id_of(message.payload)
    if event_id is None:
        return Refused(message, reason, detail)
    clipped = detail[:REJECTION_DETAIL_MAX_CHARS]  # printable text already
    rejection = Rejection(event_id=event_id, reason=reason, detail=clipped)
    return Refused(message, reason, detail, device_id, rejection)
