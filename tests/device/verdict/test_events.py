"""EventBuilder: every Event made from its drafts passes the protocol, whatever code the gate was
shown; EventDraft: an Event but its seq."""

import dataclasses
import time
import uuid
from datetime import UTC, datetime

import pytest

from device.verdict.credentials import parse_credential
from device.verdict.events import EventBuilder, EventDraft
from device.verdict.policy import Policy
from protocol.messages import Event, parse_message
from protocol.topics import Topic
from protocol.verdicts import CredentialType, Direction, Reason

CARD = "079193012345|272345678|Nguyễn Thị Thu Uyên|05061993|Nữ|Hà Nội|21042021".encode()


class StoppedClock:
    """A clock that reads one instant and is not synchronised (a Pi after a power cut)."""

    def now(self) -> datetime:
        return datetime(2026, 11, 26, 1, 12, 28, tzinfo=UTC)

    def is_synced(self) -> bool:
        return False


def builder(
    *,
    record_raw_text: bool = True,
    device_id: str = "gate-01",
    site_id: str = "Bến xe Mỹ Đình",
    boot_id: str = "boot-1",
) -> EventBuilder:
    return EventBuilder(
        device_id=device_id,
        site_id=site_id,
        boot_id=boot_id,
        direction=Direction.IN,
        clock=StoppedClock(),
        record_raw_text=record_raw_text,
    )


def event_for(code: bytes, *, record_raw_text: bool = True) -> Event:
    parsed = parse_credential(code)
    draft = builder(record_raw_text=record_raw_text).build(parsed, Policy("log").decide(parsed))
    event = draft.numbered(7)
    assert parse_message(Topic.EVENTS, event.to_json()) == event  # what the collector accepts
    return event


def test_a_card_gives_its_number_and_name_and_no_text() -> None:
    event = event_for(CARD)

    assert (event.credential_type, event.subject_id) == (CredentialType.CCCD, "079193012345")
    assert event.subject_name == "Nguyễn Thị Thu Uyên"
    assert (event.code_text, event.code_text_withheld) == (None, False)
    assert (event.seq, event.boot_id, event.clock_synced) == (7, "boot-1", False)


def test_a_damaged_card_is_an_invalid_event_naming_the_card_number() -> None:
    event = event_for(CARD.replace(b"05061993", b"31021993"))  # 31 February

    assert (event.reason, event.subject_id, event.subject_name) == (
        Reason.INVALID,
        "079193012345",
        "",
    )
    assert event.credential_type is CredentialType.CCCD


@pytest.mark.parametrize(
    "text", ["VISITOR-2931", "BEGIN:VCARD\r\nFN:Đức\r\nEND:VCARD", "=HYPERLINK(<b>)"]
)
def test_a_raw_codes_text_is_kept_where_the_site_asks(text: str) -> None:
    assert event_for(text.encode()).code_text == text
    assert event_for(text.encode(), record_raw_text=False).code_text is None


@pytest.mark.parametrize("text", ["bell\x07", "nul\x00", "gate\u202eetag", "esc\x1b[2J"])
def test_text_the_protocol_refuses_is_withheld_and_flagged(text: str) -> None:
    event = event_for(text.encode())

    assert (event.code_text, event.code_text_withheld) == (None, True)
    assert event.code_length == len(text.encode())


def test_a_binary_code_has_no_text_and_nothing_withheld() -> None:
    event = event_for(b"\xff\xfe\x00binary")

    assert (event.code_text, event.code_text_withheld) == (None, False)


def test_a_code_longer_than_a_qr_code_still_gives_a_valid_event() -> None:
    event = event_for(b"x" * 10_000)

    assert event.code_length == 10_000
    assert event.code_text_withheld is True  # beyond code_text's 8,192 characters


@pytest.mark.parametrize(
    ("what", "value"),
    [
        ("site_id", "hq\r\nfake"),
        ("site_id", "hq\u202e"),
        ("device_id", "gate 01"),
        ("boot_id", "boot\n1"),
    ],
)
def test_an_identity_the_protocol_refuses_is_a_startup_error(what: str, value: str) -> None:
    identity = {"device_id": "gate-01", "site_id": "hq", "boot_id": "boot-1", what: value}

    with pytest.raises(ValueError, match=what) as caught:
        builder(
            device_id=identity["device_id"],
            site_id=identity["site_id"],
            boot_id=identity["boot_id"],
        )

    assert str(caught.value).isprintable()


def test_a_gate_gives_each_event_a_new_id_of_its_time() -> None:
    gate = builder()
    parsed = parse_credential(CARD)
    verdict = Policy("log").decide(parsed)
    start = time.time_ns() // 1_000_000
    ids = [gate.build(parsed, verdict).event_id for _ in range(100)]
    end = time.time_ns() // 1_000_000

    assert len(set(ids)) == 100
    millis = [int(event_id[:12], 16) for event_id in ids]
    assert millis == sorted(millis) and start <= millis[0] and millis[-1] <= end
    assert all(uuid.UUID(hex=event_id).version == 7 for event_id in ids)


def test_a_draft_holds_every_field_of_an_event_but_its_seq() -> None:
    # A field added to Event and not to EventDraft would be lost between the scan and the wire.
    draft_fields = [field.name for field in dataclasses.fields(EventDraft)]

    assert draft_fields == [name for name in Event.model_fields if name != "seq"]


def test_the_draft_of_an_event_numbers_back_to_that_event() -> None:
    event = event_for(b"https://example.vn/ve/0042")

    draft = EventDraft.from_event(event)

    assert (draft.event_id, draft.ts) == (event.event_id, event.ts)
    assert draft.numbered(event.seq) == event
    assert draft.numbered(8) == event.model_copy(update={"seq": 8})
