"""The enrolment code and the exchange's messages: the contract of protocol/enrolment.py."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from protocol.enrolment import (
    REFUSAL_REASONS,
    EnrolmentCode,
    EnrolmentCodeError,
    EnrolmentGrant,
    EnrolmentRefusal,
    ca_fingerprint,
    is_enrolment_code,
    parse_enrolment_code,
)

TOKEN = "Zm9vYmFyYmF6cXV4cXV1eHh5enp5Ynl0ZXM"
CA = ca_fingerprint(b"a certificate's DER bytes")


def code(**changes: object) -> EnrolmentCode:
    fields: dict[str, object] = {
        "version": 1,
        "server": "https://broker.lan:8443",
        "token": TOKEN,
        "ca_sha256": CA,
    }
    return EnrolmentCode.model_validate({**fields, **changes})


def test_a_code_reads_back_as_written() -> None:
    text = code().text()
    assert text.startswith("GATESCAN-ENROL/1?")
    assert parse_enrolment_code(text) == code()
    assert parse_enrolment_code(f"  {text.lower()[:16]}{text[16:]}\n") == code()


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("GATESCAN-ENROL/2?server=https://x&token=" + TOKEN + "&ca=" + CA, "version 2"),
        ("GATESCAN-ENROL/?server=https://x", "no handshake version"),
        ("GATESCAN-ENROL/1?server=https://x&token=" + TOKEN, "missing ca"),
        ("GATESCAN-ENROL/1?server=http://x&token=" + TOKEN + "&ca=" + CA, "not an https"),
        ("GATESCAN-ENROL/1?server=https://x&token=short&ca=" + CA, "token"),
        ("GATESCAN-ENROL/1?server=https://x&token=" + TOKEN + "&ca=abc", "fingerprint"),
        ("079123456789|123456789|Nguyễn Văn A", "not an enrolment code"),
    ],
)
def test_a_bad_code_is_refused_saying_why(text: str, why: str) -> None:
    with pytest.raises(EnrolmentCodeError, match=why):
        parse_enrolment_code(text)


def test_text_meant_as_a_code_is_recognised_even_when_broken() -> None:
    assert is_enrolment_code("gatescan-enrol/9?garbage")
    assert not is_enrolment_code("https://example.com/GATESCAN-ENROL/1")


def test_a_grant_holds_a_tls_broker_and_a_device_id_of_the_protocols_shape() -> None:
    grant = {
        "device_id": "gate-hq-01",
        "site_id": "hq",
        "direction": "in",
        "broker_url": "mqtts://broker.lan:8883",
        "username": "gate-hq-01",
        "password": "x" * 24,
        "ca_pem": "-----BEGIN CERTIFICATE-----",
    }
    assert EnrolmentGrant.model_validate(grant).device_id == "gate-hq-01"
    for bad in ({"broker_url": "mqtt://broker.lan"}, {"device_id": "../etc"}, {"extra": 1}):
        with pytest.raises(ValidationError):
            EnrolmentGrant.model_validate({**grant, **bad})


def test_refusals_name_a_known_reason() -> None:
    assert {EnrolmentRefusal(reason=r).reason for r in REFUSAL_REASONS} == set(REFUSAL_REASONS)  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        EnrolmentRefusal.model_validate({"reason": "because"})
