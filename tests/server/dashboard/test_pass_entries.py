"""Entries of the `pass` credential type (issue 15): the collector's validation takes them, the
store keeps them, the entries page and the API show them with the pass id and their reason."""

from __future__ import annotations

import hashlib
import json

import pytest
from fastapi.testclient import TestClient

from protocol.messages import Event, MessageError, parse_message
from protocol.topics import Topic
from protocol.verdicts import CredentialType, Direction, Reason, VerdictStatus
from server.accounts.users import Role
from server.store.database import Store
from tests.support.web import START, log_in

PASS_ID = "0123456789abcdef"
CODE = bytes([0xA7]) + bytes(83)


def pass_event(n: int, subject: str = PASS_ID, reason: Reason = Reason.REVOKED) -> Event:
    return Event(
        event_id=f"evt-gate-1-{n:06d}",
        device_id="gate-1",
        site_id="hq",
        seq=n,
        boot_id="boot-1",
        ts=START,
        clock_synced=True,
        direction=Direction.IN,
        status=VerdictStatus.DENIED,
        reason=reason,
        credential_type=CredentialType.PASS,
        subject_id=subject,
        code_sha256=hashlib.sha256(CODE).hexdigest(),
        code_length=len(CODE),
    )


def test_the_wire_takes_a_pass_event_and_refuses_one_that_breaks_its_shape() -> None:
    event = pass_event(1)
    assert parse_message(Topic.EVENTS, event.to_json()) == event
    assert pass_event(2, subject="", reason=Reason.INVALID).subject_id == ""  # a malformed pass
    for bad in ({"subject_id": "079193012345"}, {"subject_name": "Uyên"}, {"code_text": "x"}):
        wire = event.model_dump(mode="json") | bad
        with pytest.raises(MessageError):
            parse_message(Topic.EVENTS, json.dumps(wire).encode())


def test_the_store_and_the_dashboard_show_a_pass_entry(client: TestClient, store: Store) -> None:
    store.add_events([pass_event(1)], received_at=START)
    [stored] = store.device_events("gate-1")
    assert stored.event.credential_type is CredentialType.PASS
    assert stored.event.subject_id == PASS_ID

    log_in(client, Role.MANAGER.label)
    page = client.get("/entries")
    assert page.status_code == 200
    # The pass id is shown, masked as a card number is (its last four digits), with its reason.
    assert "************cdef" in page.text and "Thẻ ra vào" in page.text
    assert "Đã thu hồi" in page.text
    api = client.get("/api/v1/entries").json()
    assert any(row.get("credential_type") == "pass" for row in api["items"]), api
