"""What the collector makes of one message before storing it: server/collector/prepare.py, no
I/O."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from protocol.messages import MAX_MESSAGE_BYTES, Event, MessageError, parse_message
from protocol.topics import Topic, device_topic
from server.collector.prepare import (
    AcceptedEvent,
    DeviceReport,
    IncomingMessage,
    Refused,
    parse_event,
    prepare,
)
from server.store.writes import EntryRow

NOW = datetime(2026, 11, 26, 1, 0, tzinfo=UTC)


def event_fields(**changes: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "event_id": "evt-00000001",
        "device_id": "gate-01",
        "site_id": "Bến xe Mỹ Đình",
        "seq": 1,
        "boot_id": "boot-1",
        "ts": "2026-11-26T01:12:28.132562Z",
        "clock_synced": True,
        "direction": "in",
        "status": "recorded",
        "reason": "ok",
        "credential_type": "cccd",
        "subject_id": "079203012345",
        "subject_name": "Nguyễn Thị Thu Uyên",
        "code_sha256": "9a" * 32,
        "code_length": 121,
    }
    return fields | changes


GOOD = json.dumps(event_fields(), ensure_ascii=False).encode()
SIDEWAYS = GOOD.replace(b'"in"', b'"up"')  # no such direction
# Each of these is refused by one of the two parsers for sure: the other must refuse it too.
CORNER_CASES = {
    "valid": GOOD,
    "valid, ASCII escapes": json.dumps(event_fields()).encode(),
    "raw LF inside a string": GOOD.replace(b'"site_id": "', b'"site_id": "a\nb'),
    "raw TAB inside a string": GOOD.replace(b'"subject_name": "', b'"subject_name": "\t'),
    "raw NUL inside a string": GOOD.replace(b'"site_id": "', b'"site_id": "\x00'),
    "escaped NUL": GOOD.replace(b'"site_id": "', b'"site_id": "\\u0000'),
    "escaped ESC": GOOD.replace(b'"site_id": "', b'"site_id": "\\u001b'),
    "lone surrogate": GOOD.replace(b'"site_id": "', b'"site_id": "\\ud800'),
    "surrogate pair": GOOD.replace(b'"site_id": "', b'"site_id": "\\ud83d\\ude00'),
    "byte order mark": b"\xef\xbb\xbf" + GOOD,
    "UTF-16": GOOD.decode().encode("utf-16"),
    "invalid UTF-8": GOOD.replace(b'"site_id": "', b'"site_id": "\xff'),
    "overlong UTF-8": GOOD.replace(b'"site_id": "', b'"site_id": "\xc0\xaf'),
    "duplicate key, last wins": GOOD[:-1] + b', "device_id": "gate-02"}',
    "seq as float": GOOD.replace(b'"seq": 1', b'"seq": 1.0'),
    "seq with exponent": GOOD.replace(b'"seq": 1', b'"seq": 1e0'),
    "seq NaN": GOOD.replace(b'"seq": 1', b'"seq": NaN'),
    "seq Infinity": GOOD.replace(b'"seq": 1', b'"seq": Infinity'),
    "seq leading zero": GOOD.replace(b'"seq": 1', b'"seq": 01'),
    "seq of 5000 digits": GOOD.replace(b'"seq": 1', b'"seq": ' + b"9" * 5000),
    "seq -0": GOOD.replace(b'"seq": 1', b'"seq": -0'),
    "flag as 1": GOOD.replace(b'"clock_synced": true', b'"clock_synced": 1'),
    "trailing garbage": GOOD + b"x",
    "trailing comma": GOOD[:-1] + b",}",
    "comment": GOOD[:-1] + b"/* x */}",
    "single quotes": GOOD.replace(b'"site_id"', b"'site_id'"),
    "whitespace around": b" \r\n\t" + GOOD + b"\n ",
    "vertical tab": GOOD.replace(b"{", b"{\x0b", 1),
    "no-break space": GOOD.replace(b"{", b"{\xc2\xa0", 1),
    "deep nesting": b'{"x": ' + b"[" * 5000 + b"]" * 5000 + b"}",
    "an array": b"[" + GOOD + b"]",
    "empty": b"",
    "time without offset": GOOD.replace(b'Z"', b'"'),
    "digest in capitals": GOOD.replace(b"9a9a", b"9A9A"),
    "unknown nested field": GOOD[:-1] + b', "note": {"a": [1, {"b": null}]}}',
    "too large": GOOD[:-1] + b', "pad": "' + b"x" * MAX_MESSAGE_BYTES + b'"}',
}


@pytest.mark.parametrize("payload", CORNER_CASES.values(), ids=CORNER_CASES.keys())
def test_the_fast_event_parser_accepts_and_refuses_exactly_what_parse_message_does(
    payload: bytes,
) -> None:
    try:
        expected: Event | str = parse_message(Topic.EVENTS, payload)
    except MessageError as exc:
        expected = exc.reason
    try:
        got: Event | str = parse_event(payload)
    except MessageError as exc:
        got = exc.reason

    assert got == expected


def entry_row(event: Event) -> EntryRow:
    return EntryRow(event.event_id, (event.seq,))


def test_a_valid_event_from_its_own_gate_is_accepted_with_its_row() -> None:
    message = IncomingMessage(device_topic("gate-01", Topic.EVENTS), GOOD)

    prepared = prepare(message, entry_row, lambda: NOW)

    assert prepared == AcceptedEvent(message, "gate-01", EntryRow("evt-00000001", (1,)))


@pytest.mark.parametrize(
    ("topic", "payload", "reason", "told"),
    [
        (device_topic("gate-02", Topic.EVENTS), GOOD, "device_mismatch", "gate-02"),
        (device_topic("gate-01", Topic.EVENTS), SIDEWAYS, "schema", "gate-01"),
        (device_topic("gate-01", Topic.EVENTS), b"{not json", "not_json", None),
        ("gatescan/v1/devices/bad!id/events", GOOD, "bad_topic", None),
        (device_topic("gate-01", Topic.STATUS), b'{"state": "asleep"}', "schema", None),
    ],
    ids=["other-gate", "schema", "not-json", "bad-topic", "bad-status"],
)
def test_a_refused_message_carries_its_reason_and_a_rejection_only_for_its_topics_gate(
    topic: str, payload: bytes, reason: str, told: str | None
) -> None:
    prepared = prepare(IncomingMessage(topic, payload), entry_row, lambda: NOW)

    assert isinstance(prepared, Refused)
    assert prepared.reason == reason
    if told is None:  # no event id to name, or not an event at all
        assert (prepared.device_id, prepared.rejection) == (None, None)
    else:  # the topic's gate, never the one named in the payload
        assert prepared.rejection is not None
        assert (prepared.device_id, prepared.rejection.event_id) == (told, "evt-00000001")


def test_status_becomes_a_device_update_and_an_empty_one_clears_it() -> None:
    topic = device_topic("gate-01", Topic.STATUS)

    online = prepare(IncomingMessage(topic, b'{"state": "online"}'), entry_row, lambda: NOW)
    cleared = prepare(IncomingMessage(topic, b""), entry_row, lambda: NOW)

    assert isinstance(online, DeviceReport) and online.update is not None
    assert online.update.values["state"] == "online"
    assert online.update.values["status_received_at"] == NOW
    assert isinstance(cleared, DeviceReport) and cleared.update is None


def event_at(ts: str, synced: bool) -> IncomingMessage:
    payload = json.dumps(event_fields(ts=ts, clock_synced=synced)).encode()
    return IncomingMessage(device_topic("gate-01", Topic.EVENTS), payload)


@pytest.mark.parametrize(
    ("ts", "synced", "accepted"),
    [
        ("2026-11-26T02:59:00Z", True, True),  # 2 h ahead of the collector: a clock a bit fast
        ("2026-11-27T01:00:00Z", True, True),  # a day ahead: the last moment believed
        ("2026-11-27T01:00:01Z", True, False),
        ("9999-12-31T23:59:59Z", True, False),
        ("2019-12-31T23:59:59Z", True, False),
        ("2020-01-01T00:00:00Z", True, True),
        ("9999-12-31T23:59:59Z", False, True),  # an unsynchronised clock may say anything...
        ("1970-01-01T00:00:00Z", False, True),  # (a Pi without a real-time clock, at boot)
        ("0001-01-01T00:00:00+14:00", False, False),  # ...that has a UTC time
        ("9999-12-31T23:59:59-14:00", False, False),
    ],
)
def test_a_synchronised_ts_outside_2020_to_a_day_ahead_is_refused_and_answered(
    ts: str, synced: bool, accepted: bool
) -> None:
    prepared = prepare(event_at(ts, synced), entry_row, lambda: NOW)

    if accepted:
        assert isinstance(prepared, AcceptedEvent), prepared
        return
    assert isinstance(prepared, Refused)
    assert prepared.reason == "bad_time"
    assert prepared.rejection is not None and prepared.rejection.event_id == "evt-00000001"
    assert prepared.device_id == "gate-01"


def test_a_valid_event_the_store_cannot_convert_is_refused_and_answered_not_left_unanswered() -> (
    None
):
    def failing_row(event: Event) -> EntryRow:
        raise OverflowError("date value out of range")

    prepared = prepare(event_at("2026-11-26T01:00:00Z", True), failing_row, lambda: NOW)

    assert isinstance(prepared, Refused) and prepared.reason == "unstorable"
    assert prepared.rejection is not None and prepared.rejection.event_id == "evt-00000001"


def test_a_registered_gate_s_event_naming_another_site_is_refused_as_wrong_site() -> None:
    topic = device_topic("gate-01", Topic.EVENTS)
    registered = {"gate-01": "Bến xe Giáp Bát"}

    refused = prepare(IncomingMessage(topic, GOOD), entry_row, lambda: NOW, sites=registered)
    right = {"gate-01": "Bến xe Mỹ Đình"}
    accepted = prepare(IncomingMessage(topic, GOOD), entry_row, lambda: NOW, sites=right)
    unregistered = prepare(IncomingMessage(topic, GOOD), entry_row, lambda: NOW,
                           sites={"gate-02": "elsewhere"})  # fmt: skip

    assert isinstance(refused, Refused) and refused.reason == "wrong_site"
    assert refused.rejection is not None and refused.rejection.reason == "wrong_site"
    assert refused.device_id == "gate-01"
    assert "Bến xe Giáp Bát" not in refused.detail  # the registered site is not told back
    assert isinstance(accepted, AcceptedEvent)
    assert isinstance(unregistered, AcceptedEvent)
