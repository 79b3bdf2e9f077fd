"""Verdicts: log mode records, access mode grants, the closed set of reasons."""

from device.verdict.credentials import parse_credential
from device.verdict.policy import Policy, Verdict
from protocol.verdicts import CredentialType, Reason, VerdictStatus

CARD = "001090012345|Trần Văn Đức|01011990|Nam|Hà Nội|15082021".encode()
BROKEN_CARD = "001099012345|Trần Văn Đức|32011990|Nam|Hà Nội|15082021".encode()


def test_log_mode_records_every_readable_code() -> None:
    policy = Policy("log")
    for data in (CARD, b"any pass", b"\xff\x00"):
        assert policy.decide(parse_credential(data)) == Verdict(VerdictStatus.RECORDED, Reason.OK)


def test_access_mode_grants_accepted_codes() -> None:
    verdict = Policy("access").decide(parse_credential(CARD))
    assert verdict == Verdict(VerdictStatus.GRANTED, Reason.OK)


def test_damaged_card_is_denied_as_invalid_in_access_mode() -> None:
    verdict = Policy("access").decide(parse_credential(BROKEN_CARD))
    assert verdict == Verdict(VerdictStatus.DENIED, Reason.INVALID)


def test_damaged_card_is_recorded_with_its_reason_in_log_mode() -> None:
    verdict = Policy("log").decide(parse_credential(BROKEN_CARD))
    assert verdict == Verdict(VerdictStatus.RECORDED, Reason.INVALID)


def test_damaged_card_is_denied_in_log_mode_where_cards_are_not_taken() -> None:
    verdict = Policy("log", accept=[CredentialType.RAW]).decide(parse_credential(BROKEN_CARD))
    assert verdict == Verdict(VerdictStatus.DENIED, Reason.INVALID)


def test_site_that_takes_only_cards_denies_other_codes_as_unknown_format() -> None:
    policy = Policy("log", accept=[CredentialType.CCCD])
    assert policy.decide(parse_credential(b"hello")) == Verdict.denied(Reason.UNKNOWN_FORMAT)
    assert policy.decide(parse_credential(CARD)).status is VerdictStatus.RECORDED


def test_site_that_refuses_cards_denies_them_as_not_allowed() -> None:
    policy = Policy("log", accept=[CredentialType.RAW])
    assert policy.decide(parse_credential(CARD)) == Verdict.denied(Reason.NOT_ALLOWED)
