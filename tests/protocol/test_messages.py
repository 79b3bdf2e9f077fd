"""protocol.parse_message: each way a payload can be wrong gets its reason, and a clean detail."""

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.messages import (
    MAX_MESSAGE_BYTES,
    Ack,
    Event,
    MessageError,
    Rejection,
    Status,
    Telemetry,
    ack_payload,
    event_id_of,
    parse_message,
)
from protocol.topics import Topic

DIGEST = "ab" * 32


def event_fields(**changes: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "event_id": "evt-00000001",
        "device_id": "gate-01",
        "site_id": "Bến xe Mỹ Đình",
        "seq": 1,
        "boot_id": "6b7ea7a3-810e-4299-b27a-390d521f2cd4",
        "ts": "2026-11-26T01:12:28.132562Z",
        "clock_synced": True,
        "direction": "in",
        "status": "recorded",
        "reason": "ok",
        "credential_type": "cccd",
        "subject_id": "079203012345",
        "subject_name": "Nguyễn Thị Thu Uyên",
        "code_sha256": DIGEST,
        "code_length": 121,
        "code_text": None,
    }
    fields.update(changes)
    return fields


RAW = {"credential_type": "raw", "subject_id": DIGEST, "subject_name": ""}


def refused(payload: bytes, kind: Topic = Topic.EVENTS) -> MessageError:
    with pytest.raises(MessageError) as caught:
        parse_message(kind, payload)
    return caught.value


def encoded(fields: dict[str, Any]) -> bytes:
    return json.dumps(fields, ensure_ascii=False).encode("utf-8")


def test_a_valid_event_round_trips_through_its_json() -> None:
    event = parse_message(Topic.EVENTS, encoded(event_fields()))

    assert isinstance(event, Event)
    assert parse_message(Topic.EVENTS, event.to_json()) == event
    assert event.code_text_withheld is False  # a field added in v1: absent means false


def test_unknown_fields_are_ignored() -> None:
    event = parse_message(Topic.EVENTS, encoded(event_fields(extra="<script>", v2={"a": 1})))

    assert "extra" not in event.model_dump()


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"", "not_json"),
        (b"{not json", "not_json"),
        (b"\xff\xfe{}", "not_json"),
        (b"[" * 60_000 + b"]" * 60_000, "too_large"),
        (b"[" * 30_000 + b"]" * 30_000, "not_json"),  # deep: json.loads raises RecursionError
        (b'{"seq": ' + b"9" * 5000 + b"}", "not_json"),  # int longer than Python converts
        (b"[1, 2]", "not_object"),
        (b'"a string"', "not_object"),
        (b"null", "not_object"),
        (b"{" + b" " * MAX_MESSAGE_BYTES + b"}", "too_large"),
    ],
)
def test_payloads_that_are_no_json_object_are_refused_with_a_reason(
    payload: bytes, reason: str
) -> None:
    assert refused(payload).reason == reason


@pytest.mark.parametrize(
    ("changes", "where"),
    [
        ({"seq": "one"}, "seq"),
        ({"seq": "1"}, "seq"),  # a number as a string is a wrong type, not a number
        ({"seq": 1.0}, "seq"),
        ({"seq": True}, "seq"),
        ({"clock_synced": "yes"}, "clock_synced"),
        ({"clock_synced": 1}, "clock_synced"),
        ({"code_length": "121"}, "code_length"),
        ({"seq": -1}, "seq"),
        ({"seq": 2**64}, "seq"),
        ({"seq": float("nan")}, "seq"),
        ({"ts": "yesterday"}, "ts"),
        ({"ts": "2026-11-26T01:12:28"}, "ts"),  # no offset: whose clock?
        ({"clock_synced": "maybe"}, "clock_synced"),
        ({"status": "maybe"}, "status"),
        ({"event_id": "<script>x</script>"}, "event_id"),
        ({"event_id": "evt\r\n0001"}, "event_id"),
        ({"device_id": "gate\x0001"}, "device_id"),
        ({"boot_id": "boot\u202e1"}, "boot_id"),
        ({"subject_name": "Uyên\x00"}, "subject_name"),
        ({"subject_name": "Uyên\r\n2026-01-01 INFO ok"}, "subject_name"),
        ({"subject_name": "\u202eUyên"}, "subject_name"),
        ({"subject_name": "<script>alert(1)</script>"}, "subject_name"),
        ({"subject_name": '=HYPERLINK("http://x.example")'}, "subject_name"),
        ({"subject_name": "\ud800"}, "subject_name"),  # JSON can spell a lone surrogate
        ({"site_id": "hq\n"}, "site_id"),
        ({"code_length": -1}, "code_length"),
        ({"subject_name": ["deep"] * 3}, "subject_name"),
        ({**RAW, "code_text": "a\x00b"}, "code_text"),
        ({**RAW, "code_text": "gate\u202eetag"}, "code_text"),
        ({"subject_id": "07920301234X"}, "(root)"),
        ({"code_text": "079203012345|..."}, "(root)"),  # a card's text is never sent
        ({**RAW, "subject_id": "someone-else"}, "(root)"),
        ({**RAW, "subject_name": "Uyên"}, "(root)"),
        ({**RAW, "code_text_withheld": True, "code_text": "x"}, "(root)"),
        ({"status": "denied"}, "(root)"),  # denied goes with a reason other than ok
    ],
)
def test_events_breaking_the_schema_are_refused_saying_where(
    changes: dict[str, Any], where: str
) -> None:
    payload = json.dumps(event_fields(**changes)).encode("utf-8")  # ASCII escapes, as JSON allows

    problem = refused(payload)

    assert problem.reason == "schema"
    assert problem.detail.startswith(f"{where}:")


@pytest.mark.parametrize(
    "hostile", ["<script>", "=HYPERLINK(", "\r\n", "\x00", "\u202e", "\ud800", "9" * 300]
)
def test_a_refusal_never_quotes_the_hostile_value(hostile: str) -> None:
    for field in ("subject_name", "event_id", "boot_id", "seq"):
        problem = refused(json.dumps(event_fields(**{field: hostile})).encode("utf-8"))

        assert hostile not in problem.detail
        assert problem.detail.isprintable()


def test_a_raw_code_keeps_its_text_with_line_breaks_markup_and_formulas() -> None:
    text = '=HYPERLINK("x")\r\n<script>alert(1)</script>\tend'

    event = parse_message(Topic.EVENTS, encoded(event_fields(**RAW, code_text=text)))

    assert event.code_text == text


def test_a_raw_code_may_leave_its_subject_id_empty() -> None:
    event = parse_message(Topic.EVENTS, encoded(event_fields(**{**RAW, "subject_id": ""})))

    assert event.subject_id == ""


def test_a_code_length_beyond_a_qr_code_is_still_an_honest_event() -> None:
    event = parse_message(Topic.EVENTS, encoded(event_fields(code_length=100_000)))

    assert event.code_length == 100_000


def test_ack_names_only_event_ids() -> None:
    assert parse_message(Topic.ACK, b'{"event_ids": ["evt-00000001"]}') == Ack(
        event_ids=["evt-00000001"]
    )
    assert refused(b'{"event_ids": ["evt\\n0001"]}', Topic.ACK).reason == "schema"


@pytest.mark.parametrize(
    "changes",
    [
        {"version": "0.1.0\r\nfake"},
        {"version": "v" * 65},
        {"boot_id": "boot\x00"},
        {"faults": ["camera\u202e"]},
        {"faults": ["camera"] * 17},
    ],
)
def test_status_text_is_held_to_the_same_rules(changes: dict[str, Any]) -> None:
    fields = {"state": "online", "version": "0.1.0", "boot_id": "b-1", "faults": ["camera"]}
    fields.update(changes)

    assert refused(json.dumps(fields).encode("utf-8"), Topic.STATUS).reason == "schema"


def test_a_status_as_the_gate_sends_it_is_accepted() -> None:
    status = Status(
        state="online", ts=datetime.now(UTC), version="0.1.0", boot_id="b-1", faults=["storage"]
    )

    assert parse_message(Topic.STATUS, status.to_json()) == status


def test_an_ack_without_rejected_refuses_nothing() -> None:
    # What an older collector sends: still a valid ack, with no rejections.
    ack = parse_message(Topic.ACK, b'{"event_ids": ["evt-00000001"]}')

    assert ack.rejected == []


def test_an_ack_names_refused_events_with_their_reason() -> None:
    payload = (
        b'{"event_ids": [], "rejected": [{"event_id": "evt-00000001", "reason": "schema",'
        b" \"detail\": \"direction: Input should be 'in' or 'out'\"}]}"
    )

    ack = parse_message(Topic.ACK, payload)

    assert ack == Ack(
        event_ids=[],
        rejected=[
            Rejection(
                event_id="evt-00000001",
                reason="schema",
                detail="direction: Input should be 'in' or 'out'",
            )
        ],
    )
    assert parse_message(Topic.ACK, ack.to_json()) == ack


@pytest.mark.parametrize(
    "rejection",
    [
        {"event_id": "evt\n0001", "reason": "schema"},
        {"event_id": "evt-00000001", "reason": "schema\r\nfake"},
        {"event_id": "evt-00000001", "reason": "schema", "detail": "x\u202e"},
        {"event_id": "evt-00000001", "reason": "s" * 65},
        {"event_id": "evt-00000001"},
    ],
)
def test_a_rejection_is_held_to_the_text_rules(rejection: dict[str, str]) -> None:
    payload = json.dumps({"event_ids": [], "rejected": [rejection]}).encode()

    assert refused(payload, Topic.ACK).reason == "schema"


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (encoded(event_fields(seq="one")), "evt-00000001"),  # refused by the schema
        (encoded(event_fields(device_id="gate-99")), "evt-00000001"),
        (encoded({"event_id": "evt-00000001"}), "evt-00000001"),
        (encoded(event_fields(event_id="evt\n0001")), None),  # not an event id's shape
        (encoded(event_fields(event_id="short")), None),
        (encoded(event_fields(event_id=12345678)), None),
        (b'[{"event_id": "evt-00000001"}]', None),
        (b"{not json", None),
        (b"\xff\xfe", None),
    ],
    ids=[
        "schema",
        "other-device",
        "only-an-id",
        "newline",
        "too-short",
        "a-number",
        "not-an-object",
        "not-json",
        "not-utf8",
    ],
)
def test_event_id_of_names_the_event_a_refused_payload_claims(
    payload: bytes, expected: str | None
) -> None:
    assert event_id_of(payload) == expected


def test_event_id_of_a_payload_too_large_to_parse_reads_only_its_start() -> None:
    padding = b"x" * MAX_MESSAGE_BYTES
    as_a_gate_writes_it = b'{"event_id":"evt-00000001","pad":"' + padding + b'"}'
    id_not_first = b'{"pad":"' + padding + b'","event_id":"evt-00000001"}'

    assert event_id_of(as_a_gate_writes_it) == "evt-00000001"
    assert event_id_of(id_not_first) is None


def test_telemetry_counts_rejected_events_and_an_older_gate_sends_none() -> None:
    fields = {
        "ts": "2026-11-26T01:12:28Z",
        "uptime_s": 1.0,
        "fps": 10.0,
        "decode_ms": 3.0,
        "outbox_depth": 0,
        "clock_synced": True,
        "version": "0.1.0",
    }

    older = parse_message(Topic.TELEMETRY, encoded(fields))
    newer = parse_message(Topic.TELEMETRY, encoded({**fields, "rejected_total": 3}))

    assert (older.rejected_total, newer.rejected_total) == (0, 3)
    assert refused(encoded({**fields, "rejected_total": "3"}), Topic.TELEMETRY).reason == "schema"
    assert isinstance(newer, Telemetry)


def test_telemetry_carries_the_read_rate_counts_together_or_not_at_all() -> None:
    fields = {
        "ts": "2026-11-26T01:12:28Z",
        "uptime_s": 1.0,
        "fps": 10.0,
        "decode_ms": 3.0,
        "outbox_depth": 0,
        "clock_synced": True,
        "version": "0.1.0",
    }

    older = parse_message(Topic.TELEMETRY, encoded(fields))
    newer = parse_message(Topic.TELEMETRY, encoded({**fields, **_counts(4, 3)}))

    assert isinstance(older, Telemetry) and isinstance(newer, Telemetry)
    assert (older.frames_with_code, older.frames_read) == (None, None)  # no rate, not 100 %
    assert (newer.frames_with_code, newer.frames_read) == (4, 3)
    for wrong in (_counts(3, 4), {"frames_with_code": 4}, {"frames_read": 0}, _counts(-1, 0)):
        assert refused(encoded({**fields, **wrong}), Topic.TELEMETRY).reason == "schema", wrong


def _counts(with_code: int, read: int) -> dict[str, int]:
    return {"frames_with_code": with_code, "frames_read": read}


# --- ack_payload: the collector's acks, written without the model ---------------------------

_ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.:-"


@given(st.lists(st.text(_ID_ALPHABET, min_size=8, max_size=80), max_size=50))
def test_an_ack_of_ids_is_the_models_json_byte_for_byte(event_ids: list[str]) -> None:
    assert ack_payload(event_ids) == Ack(event_ids=event_ids).to_json()


def test_an_ack_with_rejections_is_the_models_json() -> None:
    rejection = Rejection(event_id="ev-00000001", reason="schema", detail='seq: "x" is no number')
    payload = ack_payload(["ev-00000002"], [rejection])

    assert payload == Ack(event_ids=["ev-00000002"], rejected=[rejection]).to_json()
    assert Ack.model_validate_json(payload).rejected == [rejection]


def test_an_id_of_another_shape_is_escaped_by_the_model_not_written_raw() -> None:
    odd = 'not"an id\\'  # never acked by the collector (not valid), but must stay JSON
    payload = ack_payload([odd])

    assert json.loads(payload) == {"event_ids": [odd], "rejected": []}
    assert payload == Ack.model_construct(event_ids=[odd], rejected=[]).to_json()
