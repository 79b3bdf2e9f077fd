"""Issue 3, scenario 11: any bytes a QR code can hold, shown to a gate.

Up to the QR maximum of 2,953 bytes, invalid UTF-8, control, bidi and markup characters included:
credential parsing and the policy (both modes, any set of accepted types) always give a verdict
and never raise; the event built for it is one the collector accepts and stores exactly; and no
text from the code can forge a log line or a line of the demo's screen.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from hypothesis import event as label
from hypothesis import given, settings
from hypothesis import strategies as st

from device.decode.base import DecodedCode
from device.scanner import Scan
from device.verdict.credentials import Credential, RefusedCode, parse_credential
from device.verdict.events import EventBuilder
from device.verdict.policy import Policy, PolicyMode
from gatescan.commands.demo import describe_scan
from protocol.messages import Event, parse_message
from protocol.topics import Topic
from protocol.verdicts import CredentialType, Direction, Reason, VerdictStatus
from server.store.database import Store

QR_MAX_BYTES = 2953
HOSTILE = [
    "\x00", "\r", "\n", "\r\n", "\t", "\x1b[2J", "\x7f", "\x85", "\u2028", "\u2029", "\u202e",
    "\u2066", "\u200d", "\ufeff", "\ud800", "\udfff", "<script>", "=HYPERLINK(", "|", "\\",
    "Nguyễn", "2026-01-01 INFO collector: ok",
]  # fmt: skip
hostile_text = st.lists(
    st.one_of(st.sampled_from(HOSTILE), st.characters(), st.text(max_size=8)), max_size=12
).map("".join)


def utf8_with_surrogates(text: str) -> bytes:
    """A lone surrogate becomes bytes no UTF-8 decoder accepts (CESU-8): invalid UTF-8 too."""
    return text.encode("utf-8", "surrogatepass")[:QR_MAX_BYTES]


# Letters and marks of any script, and the punctuation names use: the names the rule accepts.
name_like = st.text(
    st.one_of(st.characters(categories=["L", "M"]), st.sampled_from(" '’-.")),
    min_size=1,
    max_size=40,
)
card_number = st.from_regex(r"[0-9]{12}", fullmatch=True)
# Twelve digits then "|": the parser treats these as CCCD claims, with fields of any text.
cccd_claims = st.builds(
    lambda number, fields: utf8_with_surrogates(number + "|" + "|".join(fields)),
    card_number,
    st.lists(hostile_text, max_size=9),
)
# Well-formed cards whose name, gender and address are hostile: the name rule decides.
cards_with_hostile_text = st.builds(
    lambda number, name, gender, address: utf8_with_surrogates(
        f"{number}|272345678|{name}|05061993|{gender}|{address}|21042021"
    ),
    card_number,
    st.one_of(hostile_text, name_like),
    st.sampled_from(["Nữ", "Nam", "N\u202eam"]),
    st.one_of(hostile_text, name_like),
)
qr_bytes = st.one_of(
    st.binary(max_size=QR_MAX_BYTES),
    hostile_text.map(utf8_with_surrogates),
    cccd_claims,
    cards_with_hostile_text,
)
policies = st.builds(
    Policy,
    st.sampled_from(["log", "access"]),
    st.frozensets(st.sampled_from(list(CredentialType))),
)


class StoppedClock:
    def now(self) -> datetime:
        return datetime(2026, 11, 26, 1, 12, 28, 132562, tzinfo=UTC)

    def is_synced(self) -> bool:
        return False


def gate_builder(record_raw_text: bool) -> EventBuilder:
    return EventBuilder(
        device_id="gate-hostile-01",
        site_id="Bến xe Mỹ Đình",
        direction=Direction.IN,
        boot_id="6b7ea7a3-810e-4299-b27a-390d521f2cd4",
        clock=StoppedClock(),
        record_raw_text=record_raw_text,
    )


class RecordsKept(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextmanager
def every_log_record() -> Iterator[list[logging.LogRecord]]:
    """Every record any logger emits while the block runs, at any level."""
    root = logging.getLogger()
    handler, level = RecordsKept(), root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handler.records
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def shown_to_a_gate(data: bytes, policy: Policy, record_raw_text: bool) -> Scan:
    parsed = parse_credential(data)
    verdict = policy.decide(parsed)
    event = gate_builder(record_raw_text).build(parsed, verdict).numbered(1042)
    return Scan(code=DecodedCode(data), parsed=parsed, verdict=verdict, event=event, journaled=True)


@settings(max_examples=400, deadline=None)
@given(data=qr_bytes, policy=policies, record_raw_text=st.booleans())
def test_any_qr_bytes_give_a_verdict_and_an_event_the_collector_accepts(
    data: bytes, policy: Policy, record_raw_text: bool
) -> None:
    with every_log_record() as records:
        scan = shown_to_a_gate(data, policy, record_raw_text)
        received = parse_message(Topic.EVENTS, scan.event.to_json())
        screen_line = describe_scan(scan)

    event = scan.event
    label(f"{type(scan.parsed).__name__} {event.credential_type} {event.status}")
    kept = "kept" if event.code_text else "withheld" if event.code_text_withheld else "none"
    label(f"code_text {kept}")
    assert isinstance(scan.parsed, Credential | RefusedCode)
    assert isinstance(scan.verdict.status, VerdictStatus)
    assert isinstance(scan.verdict.reason, Reason)
    assert (event.status, event.reason) == (scan.verdict.status, scan.verdict.reason)
    assert received == event
    assert event.code_sha256 == hashlib.sha256(data).hexdigest()
    assert event.code_length == len(data)
    assert screen_line.isprintable()
    assert [
        record.getMessage() for record in records if not record.getMessage().isprintable()
    ] == []


@settings(max_examples=60, deadline=None)
@given(data=qr_bytes, mode=st.sampled_from(["log", "access"]))
def test_a_hostile_codes_event_is_stored_exactly_as_the_gate_built_it(
    data: bytes, mode: PolicyMode
) -> None:
    scan = shown_to_a_gate(data, Policy(mode), record_raw_text=True)
    received: Event = parse_message(Topic.EVENTS, scan.event.to_json())

    with tempfile.TemporaryDirectory() as directory:
        store = Store(Path(directory) / "gatescan.db")
        try:
            store.add_events([received], datetime.now(UTC))
            [stored] = store.device_events("gate-hostile-01")
        finally:
            store.close()

    assert stored.event == scan.event
    if stored.event.code_text is not None:
        assert stored.event.code_text.encode() == data  # the code's exact text, nothing altered


def test_a_card_naming_a_fake_log_line_is_refused_and_quoted_on_one_line() -> None:
    forged = (
        "079203012345|272345678|Uyên\n2026-01-01 INFO collector: stored|05061993|Nữ|Huế|21042021"
    )

    scan = shown_to_a_gate(forged.encode(), Policy("access"), record_raw_text=True)

    assert isinstance(scan.parsed, RefusedCode)
    assert (scan.verdict.status, scan.verdict.reason) == (VerdictStatus.DENIED, Reason.INVALID)
    assert scan.event.subject_name == ""
    assert describe_scan(scan).isprintable()


def test_a_code_with_a_bidi_override_keeps_its_digest_but_not_its_text() -> None:
    data = "gate\u202eetag".encode()

    scan = shown_to_a_gate(data, Policy("log"), record_raw_text=True)

    assert (scan.event.code_text, scan.event.code_text_withheld) == (None, True)
    assert scan.event.code_sha256 == hashlib.sha256(data).hexdigest()
