"""`self` is a self check-in's credential type (issue 18): the wire takes it from the check-in
page only. No gate's config, no dashboard settings form offers or accepts it, and the collector
refuses it from a gate."""

from __future__ import annotations

import json

import pytest

from firmware_config.errors import ConfigError
from firmware_config.schema import PolicyConfig
from protocol.messages import Event
from protocol.topics import Topic, device_topic
from protocol.verdicts import GATE_CREDENTIAL_TYPES, CredentialType
from server.collector.prepare import IncomingMessage, Refused, prepare
from server.dashboard.gate_settings.form import KINDS, read_form, setting_fields
from server.store.writes import EntryRow
from tests.support.web import START


def test_gates_read_every_kind_but_self() -> None:
    assert set(CredentialType) - set(GATE_CREDENTIAL_TYPES) == {CredentialType.SELF}
    assert PolicyConfig().accept == list(GATE_CREDENTIAL_TYPES)
    for refused in (["self"], ["cccd", "self"]):
        with pytest.raises(ValueError, match="'cccd', 'pass' or 'raw'"):
            PolicyConfig.model_validate({"accept": refused})
    assert "self" not in json.dumps(PolicyConfig.model_json_schema())


def test_the_settings_form_neither_offers_nor_takes_self() -> None:
    assert KINDS["policy.accept"][1] == ("cccd", "pass", "raw")
    fields = {f.key: f for f in setting_fields({}, manager=True)}
    assert "self" not in fields["policy.accept"].choices
    with pytest.raises(ConfigError, match="not a kind of code: 'self'"):
        read_form({"policy.accept": ["cccd", "self"]})


def self_event(**changes: object) -> Event:
    fields: dict[str, object] = {
        "event_id": "evt-00000001",
        "device_id": "gate-01",
        "site_id": "hq",
        "seq": 1,
        "boot_id": "boot-1",
        "ts": START,
        "clock_synced": True,
        "direction": "in",
        "status": "recorded",
        "reason": "ok",
        "credential_type": "self",
        "subject_id": "079203012345",
        "subject_name": "Nguyễn Văn An",
        "code_sha256": "0" * 64,
    }
    return Event.model_validate(fields | changes)


def test_the_wire_s_rules_for_a_self_check_in() -> None:
    assert self_event().credential_type is CredentialType.SELF
    assert self_event(subject_id="tel-" + "a" * 20, code_text="health=n tel=+84901234567")
    for bad in (
        {"subject_id": "tel-+84901234567"},
        {"subject_id": ""},
        {"subject_name": ""},
        {"subject_name": "<script>"},
    ):
        with pytest.raises(ValueError):
            self_event(**bad)


def test_the_collector_refuses_a_self_check_in_from_a_gate() -> None:
    payload = self_event().model_dump_json().encode()
    message = IncomingMessage(device_topic("gate-01", Topic.EVENTS), payload)
    prepared = prepare(message, lambda e: EntryRow(e.event_id, ()), lambda: START)
    assert isinstance(prepared, Refused) and prepared.reason == "not_a_gate_kind"
    assert prepared.rejection is not None, "the gate is told, and sets it aside"
